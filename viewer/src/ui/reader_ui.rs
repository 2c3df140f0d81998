//! The reading view: toolbar, sidebar (thumbnails, outline, search), the page, and the
//! status bar with what is left.

use crate::app::{Reader, ReaderApp, Screen, SidebarTab, Zoom};
use egui::{Align, Color32, Layout, RichText, Sense, Vec2};
use tally_core::rental::{Mode, Problem};

const PAGE_MARGIN: f32 = 12.0;

pub(super) fn draw(app: &mut ReaderApp, ui: &mut egui::Ui) {
    let Screen::Reading(r) = &mut app.screen else {
        return;
    };
    let r: &mut Reader = r;
    let mut open_other = false;
    egui::Panel::top("toolbar").show(ui, |ui| toolbar(r, ui, &mut open_other));
    egui::Panel::bottom("status").show(ui, |ui| status_bar(r, ui));
    if r.session.paused() && matches!(r.session.mode(), Mode::Reading) {
        egui::CentralPanel::default().show(ui, |ui| paused_ui(r, ui));
        return;
    }
    if r.show_sidebar {
        egui::Panel::left("sidebar")
            .resizable(true)
            .default_size(190.0)
            .min_size(150.0)
            .show(ui, |ui| sidebar(r, ui));
    }
    egui::CentralPanel::default()
        .frame(egui::Frame::new().fill(Color32::from_gray(200)))
        .show(ui, |ui| page_view(r, ui));
    if open_other {
        app.screen = Screen::Welcome;
    }
}

fn toolbar(r: &mut Reader, ui: &mut egui::Ui, open_other: &mut bool) {
    let reading = matches!(r.session.mode(), Mode::Reading);
    let n = r.session.page_count();
    let cur = r.session.pending_page().unwrap_or(r.session.current());
    ui.horizontal(|ui| {
        if ui
            .selectable_label(r.show_sidebar, "Sidebar")
            .on_hover_text("Show or hide thumbnails, contents and search")
            .clicked()
        {
            r.show_sidebar = !r.show_sidebar;
        }
        if ui.button("Open…").clicked() {
            *open_other = true;
        }
        ui.separator();
        if ui
            .add_enabled(reading && cur > 0, egui::Button::new("Previous"))
            .on_hover_text("Previous page (Left, Page Up)")
            .clicked()
        {
            r.session.previous();
        }
        let label = ui.label("Page");
        let goto = ui
            .add(
                egui::TextEdit::singleline(&mut r.goto)
                    .desired_width(40.0)
                    .hint_text(format!("{}", cur + 1)),
            )
            .labelled_by(label.id);
        if goto.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            if let Ok(p) = r.goto.trim().parse::<usize>()
                && p >= 1
            {
                r.session.go_to(p - 1);
            }
            r.goto.clear();
        }
        ui.label(format!("of {n}"));
        if ui
            .add_enabled(reading && cur + 1 < n, egui::Button::new("Next"))
            .on_hover_text("Next page (Right, Page Down, Space)")
            .clicked()
        {
            r.session.next();
        }
        ui.separator();
        if ui
            .selectable_label(r.zoom == Zoom::FitWidth, "Fit width")
            .clicked()
        {
            r.zoom = Zoom::FitWidth;
        }
        if ui
            .selectable_label(r.zoom == Zoom::FitPage, "Fit page")
            .clicked()
        {
            r.zoom = Zoom::FitPage;
        }
        if ui.button("−").on_hover_text("Zoom out (Ctrl −)").clicked() {
            r.zoom_by(0.8);
        }
        let pct = match r.zoom {
            Zoom::Scale(s) => format!("{:.0}%", s * 100.0),
            Zoom::FitWidth | Zoom::FitPage => "Zoom".into(),
        };
        ui.label(pct);
        if ui.button("+").on_hover_text("Zoom in (Ctrl +)").clicked() {
            r.zoom_by(1.25);
        }
        ui.separator();
        let copy_ok = r.session.copy_offered();
        if ui
            .add_enabled(copy_ok, egui::Button::new("Copy text"))
            .on_hover_text("Copy this page's text (Ctrl C)")
            .on_disabled_hover_text("This rental does not allow copying text")
            .clicked()
        {
            let ctx = ui.ctx().clone();
            r.copy_page_text(&ctx);
        }
        let print_ok = r.print_available();
        if ui
            .add_enabled(print_ok, egui::Button::new("Print…"))
            .on_hover_text("Print this page (Ctrl P)")
            .on_disabled_hover_text(if r.session.info().rights.print {
                "No printing service (lp) on this computer"
            } else {
                "This rental does not allow printing"
            })
            .clicked()
        {
            r.print_current();
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.label(RichText::new(&r.session.info().title).strong());
        });
    });
}

fn status_bar(r: &mut Reader, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let n = r.session.page_count();
        ui.label(format!("Showing page {} of {n}", r.session.current() + 1));
        ui.separator();
        match r.session.mode() {
            Mode::Reading => {
                for part in r.session.left_lines(time::OffsetDateTime::now_utc()) {
                    ui.label(part);
                    ui.separator();
                }
            }
            Mode::Limited(_) => {
                ui.label(
                    RichText::new("This rental is used up: only the first page can be shown")
                        .color(Color32::DARK_RED),
                );
            }
            Mode::Stopped(_) => {}
        }
        if let Some(v) = r.session.info().validated {
            ui.label(format!(
                "Checked online: {:04}-{:02}-{:02}",
                v.year(),
                u8::from(v.month()),
                v.day()
            ));
            ui.separator();
        }
        if r.session.busy() {
            ui.label(RichText::new("Recording use on your card…").italics());
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.label(RichText::new(format!("Licensed to {}", r.session.info().customer)).weak());
            // The automatic backup (tally-core runs it; shown only while it runs for this
            // licence): one quiet word, the details on hover.
            if let Some(b) = r.session.backup_status() {
                let word = match &b.last {
                    _ if b.running => "Backing up…",
                    Some((_, tally_core::rental::BackupOutcome::Done { .. })) => "Backed up",
                    Some((_, tally_core::rental::BackupOutcome::Failed(_))) => "Backup pending",
                    None => "Backup: not yet",
                };
                ui.separator();
                ui.label(RichText::new(word).weak())
                    .on_hover_text(b.lines().join("\n"));
            }
        });
    });
    if let Some(n) = &r.notice {
        let n = n.clone();
        ui.horizontal(|ui| {
            ui.label(RichText::new(n).color(Color32::from_rgb(140, 60, 0)));
            if ui.small_button("Dismiss").clicked() {
                r.notice = None;
            }
        });
    }
}

fn sidebar(r: &mut Reader, ui: &mut egui::Ui) {
    let reading = matches!(r.session.mode(), Mode::Reading);
    let has_outline = r.doc.as_ref().is_some_and(|d| !d.outline.is_empty());
    ui.horizontal(|ui| {
        if ui
            .selectable_label(r.tab == SidebarTab::Thumbnails, "Pages")
            .clicked()
        {
            r.tab = SidebarTab::Thumbnails;
        }
        if has_outline
            && ui
                .selectable_label(r.tab == SidebarTab::Outline, "Contents")
                .clicked()
        {
            r.tab = SidebarTab::Outline;
        }
        if ui
            .selectable_label(r.tab == SidebarTab::Search, "Search")
            .clicked()
        {
            r.tab = SidebarTab::Search;
        }
    });
    ui.separator();
    match r.tab {
        SidebarTab::Thumbnails => thumbnails(r, ui, reading),
        SidebarTab::Outline => outline(r, ui, reading),
        SidebarTab::Search => search(r, ui, reading),
    }
}

fn thumbnails(r: &mut Reader, ui: &mut egui::Ui, reading: bool) {
    // In limited mode only the cover exists for the reader.
    let n = if reading { r.session.page_count() } else { 1 };
    let (pw, ph) = r.page_size(0);
    let w = crate::render::THUMB_WIDTH as f32;
    let row_h = w * ph / pw.max(1.0) + 36.0;
    let cur = r.session.current();
    egui::ScrollArea::vertical()
        .id_salt("thumbs")
        .auto_shrink([false, false])
        .show_rows(ui, row_h, n, |ui, rows| {
            for i in rows {
                let (pw, ph) = r.page_size(i);
                let size = Vec2::new(w, w * ph / pw.max(1.0));
                let label = format!("Page {}", i + 1);
                let clicked = match r.thumb(i) {
                    Some(t) => {
                        let img = egui::Image::from_texture(t).fit_to_exact_size(size);
                        ui.add(egui::Button::image_and_text(img, label).selected(i == cur))
                            .clicked()
                    }
                    None => ui
                        .add_sized(
                            size + Vec2::new(0.0, 24.0),
                            egui::Button::new(label).selected(i == cur),
                        )
                        .clicked(),
                };
                if clicked {
                    r.session.go_to(i);
                }
            }
        });
}

fn outline(r: &mut Reader, ui: &mut egui::Ui, reading: bool) {
    let entries = r
        .doc
        .as_ref()
        .map(|d| d.outline.clone())
        .unwrap_or_default();
    egui::ScrollArea::vertical()
        .id_salt("outline")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for e in entries {
                ui.horizontal(|ui| {
                    ui.add_space(12.0 * e.depth as f32);
                    let enabled = reading && e.page.is_some();
                    let title = if e.title.is_empty() {
                        "(untitled)".to_string()
                    } else {
                        e.title.clone()
                    };
                    if ui
                        .add_enabled(enabled, egui::Button::new(title).frame(false))
                        .clicked()
                        && let Some(p) = e.page
                    {
                        r.session.go_to(p);
                    }
                });
            }
        });
}

fn search(r: &mut Reader, ui: &mut egui::Ui, reading: bool) {
    let label = ui.label("Find in document");
    let resp = ui
        .add_enabled(
            reading,
            egui::TextEdit::singleline(&mut r.search).hint_text("word or phrase"),
        )
        .labelled_by(label.id);
    let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if ui.add_enabled(reading, egui::Button::new("Find")).clicked() || enter {
        r.run_search();
    }
    if !r.search.trim().is_empty() {
        ui.label(format!("{} matches", r.hits.len()));
    }
    let hits = r.hits.clone();
    egui::ScrollArea::vertical()
        .id_salt("hits")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for h in hits {
                let text = format!("p. {}: …{}…", h.page + 1, h.snippet.trim());
                if ui
                    .add(egui::Button::new(RichText::new(text).small()).frame(false))
                    .clicked()
                {
                    r.session.go_to(h.page);
                }
            }
        });
}

/// The screen in front of a paused session: no page, no thumbnails, no reading time
/// charged, until the reader presses a key or clicks.
fn paused_ui(r: &Reader, ui: &mut egui::Ui) {
    let idle = r.session.info().idle_pause.as_secs();
    let after = if idle.is_multiple_of(60) {
        tally_core::rental::plural(idle / 60, "minute", "minutes")
    } else {
        tally_core::rental::plural(idle, "second", "seconds")
    };
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() / 3.0);
        ui.heading("Paused");
        ui.add_space(8.0);
        ui.label(format!(
            "Reading pauses after {after} without a key or a click. No reading time is charged \
             while paused, nor while the window is minimised."
        ));
        ui.add_space(8.0);
        ui.label(RichText::new("Press any key or click to go on reading").strong());
    });
}

fn page_view(r: &mut Reader, ui: &mut egui::Ui) {
    if let Mode::Limited(reason) = r.session.mode() {
        let (title, _, _) = super::problem_text(&Problem::Refused(reason.clone()));
        let reason = reason.to_string();
        let hint = r.session.info().renew_hint.clone();
        egui::Frame::new()
            .fill(Color32::from_rgb(255, 244, 214))
            .inner_margin(10.0)
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.heading(title);
                ui.label(reason);
                ui.label("You can still see the cover page.");
                ui.label(hint);
            });
    }
    if let Some(e) = &r.load_error {
        ui.colored_label(
            Color32::DARK_RED,
            format!("The document cannot be shown: {e}"),
        );
        return;
    }
    let cur = r.session.current();
    let (pw, ph) = r.page_size(cur);
    let avail = ui.available_size() - Vec2::splat(2.0 * PAGE_MARGIN);
    let disp_w = match r.zoom {
        Zoom::FitWidth => avail.x,
        Zoom::FitPage => (avail.x / pw).min(avail.y / ph) * pw,
        Zoom::Scale(s) => pw * s * 96.0 / 72.0,
    }
    .max(50.0);
    let size = Vec2::new(disp_w, disp_w * ph / pw.max(1.0));
    let ppp = ui.ctx().pixels_per_point();
    if r.doc.is_some() && r.session.page_shown() {
        r.want_page((size.x * ppp).round() as u32);
    }
    let n = r.session.page_count();
    egui::ScrollArea::both()
        .id_salt("page")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            ui.add_space(PAGE_MARGIN);
            ui.vertical_centered(|ui| {
                let alt = format!("Page {} of {n}", cur + 1);
                match (r.session.page_shown(), r.page_texture(cur)) {
                    (true, Some(t)) => {
                        ui.add(
                            egui::Image::from_texture(t)
                                .fit_to_exact_size(size)
                                .alt_text(alt)
                                .sense(Sense::hover()),
                        );
                    }
                    _ => {
                        let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
                        ui.painter().rect_filled(rect, 0.0, Color32::WHITE);
                        let msg = if r.session.page_shown() {
                            "Rendering…"
                        } else {
                            "Recording this page view on your card…"
                        };
                        ui.painter().text(
                            rect.center(),
                            egui::Align2::CENTER_CENTER,
                            msg,
                            egui::FontId::proportional(16.0),
                            Color32::GRAY,
                        );
                    }
                }
            });
            ui.add_space(PAGE_MARGIN);
        });
}
