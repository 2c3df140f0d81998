//! The screens around reading: open a document, opening, and what went wrong — written
//! for a reader, with the technical detail one click away.

use crate::app::{ReaderApp, Screen, sniff};
use egui::{Color32, RichText};
use std::path::PathBuf;
use tally_core::policy::Reason;
use tally_core::rental::Problem;

/// Title, explanation and what to do, for each problem.
pub fn problem_text(p: &Problem) -> (&'static str, String, String) {
    match p {
        Problem::NoCard(_) => (
            "Your card is not connected",
            "This document is rented to a smart card, and the viewer cannot reach it.".into(),
            "Insert the card (or start the card service) and press Try again.".into(),
        ),
        Problem::WrongCard(_) => (
            "This is not the card for this rental",
            "The licence for this document was issued to another card, or needs a real \
             smart card rather than an emulated one."
                .into(),
            "Insert the card you used when you rented the document, then press Try again.".into(),
        ),
        Problem::KeyfileInvalid(_) => (
            "The licence file is damaged",
            "The licence (keyfile) could not be verified: it was changed or damaged after \
             the publisher issued it."
                .into(),
            "Download the licence again from the publisher.".into(),
        ),
        Problem::UntrustedVendor(_) => (
            "This licence is from a publisher you have not trusted",
            "The viewer only opens licences from publishers you have added.".into(),
            "If you know this publisher, add it with: tally-view trust add PUBLISHER_FILE \
             (the publisher gives you that file)."
                .into(),
        ),
        Problem::PackageInvalid(_) => (
            "The document file is damaged",
            "The document could not be decrypted: the file was changed or damaged, or it \
             does not belong to this licence."
                .into(),
            "Download the document again from the publisher.".into(),
        ),
        Problem::WrongPackage(what) => (
            "This document does not go with this licence",
            format!("The document file and the licence file do not belong together: {what}."),
            "Open the document together with the licence you received for it (both come \
             from the publisher)."
                .into(),
        ),
        Problem::TrailInvalid(_) => (
            "Your usage record has been changed or damaged",
            "Your card signs a record of your reading. One of the checks on that record \
             failed, so the rental cannot continue until it is put right."
                .into(),
            "A copy you kept yourself will not pass these checks. If the record was lost or \
             damaged, recover it from the publisher's backup (tally-view trail restore \
             --keyfile YOUR-KEYFILE; use since that backup is charged), or contact the \
             publisher with the details below."
                .into(),
        ),
        Problem::Refused(reason) => match reason {
            Reason::ClockSetBack { .. } => (
                "Your computer's clock looks wrong",
                reason.to_string(),
                "Set the date and time correctly, then press Try again.".into(),
            ),
            Reason::Expired { .. } => (
                "This rental has ended",
                reason.to_string(),
                "Ask the publisher for a new licence.".into(),
            ),
            Reason::Returned { .. } => (
                "You returned this licence",
                reason.to_string(),
                "To read it again, borrow the document anew from the publisher.".into(),
            ),
            Reason::NotYetValid { .. } => (
                "This rental has not started yet",
                reason.to_string(),
                "Come back when the rental starts.".into(),
            ),
            _ => (
                "This rental has been used up",
                reason.to_string(),
                "Ask the publisher for a new licence.".into(),
            ),
        },
        Problem::ValidationNeeded(_) => (
            "This rental needs to be checked online",
            "The publisher asks for this copy to be validated online from time to time. The \
             viewer could not do that just now (the details below say why, usually that the \
             publisher's validation service could not be reached), and the last check is \
             missing or too old."
                .into(),
            "Connect to the internet, then press Try again (the viewer validates the copy \
             itself)."
                .into(),
        ),
        Problem::Revoked(_) => (
            "The publisher has withdrawn this copy",
            "The publisher's validation service refused this copy of the document.".into(),
            "Contact the publisher with the details below.".into(),
        ),
        // Problem::Other, and any kind a newer tally-core adds.
        _ => (
            "The document could not be opened",
            "Something went wrong while opening the document.".into(),
            "Check the details below and try again.".into(),
        ),
    }
}

fn detail(p: &Problem) -> String {
    match p {
        Problem::NoCard(s)
        | Problem::WrongCard(s)
        | Problem::KeyfileInvalid(s)
        | Problem::UntrustedVendor(s)
        | Problem::PackageInvalid(s)
        | Problem::WrongPackage(s)
        | Problem::TrailInvalid(s)
        | Problem::ValidationNeeded(s)
        | Problem::Revoked(s)
        | Problem::Other(s) => s.clone(),
        other => other.to_string(),
    }
}

fn centered(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui)) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space((ui.available_height() * 0.12).min(80.0));
            ui.set_max_width(560.0);
            add(ui);
        });
    });
}

pub(super) fn opening(ui: &mut egui::Ui) {
    centered(ui, |ui| {
        ui.heading("Opening…");
        ui.label(
            "Checking the licence, your card and your usage record, and validating this copy \
             online when the publisher asks for it.",
        );
    });
}

pub(super) fn problem(app: &mut ReaderApp, ui: &mut egui::Ui) {
    let Screen::Problem(p) = &app.screen else {
        return;
    };
    let p = p.clone();
    let (title, body, action) = problem_text(&p);
    let mut retry = false;
    let mut other = false;
    centered(ui, |ui| {
        ui.label(
            RichText::new("!")
                .size(40.0)
                .color(Color32::from_rgb(190, 90, 0)),
        );
        ui.heading(RichText::new(title).size(24.0));
        ui.add_space(8.0);
        ui.label(RichText::new(body).size(15.0));
        ui.add_space(6.0);
        ui.label(RichText::new(action).size(15.0).strong());
        if let Problem::TrailInvalid(what) = &p {
            ui.add_space(6.0);
            ui.label(
                RichText::new(format!("What failed: {what}"))
                    .size(14.0)
                    .color(Color32::DARK_RED),
            );
        }
        ui.add_space(12.0);
        ui.horizontal(|ui| {
            if ui.button("Try again").clicked() {
                retry = true;
            }
            if ui.button("Open another document").clicked() {
                other = true;
            }
        });
        ui.add_space(12.0);
        ui.collapsing("Details", |ui| {
            ui.label(RichText::new(detail(&p)).monospace().small());
        });
    });
    if retry {
        let ctx = ui.ctx().clone();
        app.retry(&ctx);
    } else if other {
        app.screen = Screen::Welcome;
    }
}

pub(super) fn welcome(app: &mut ReaderApp, ui: &mut egui::Ui) {
    let mut open: Option<(PathBuf, PathBuf)> = None;
    egui::CentralPanel::default().show(ui, |ui| {
        ui.set_max_width(860.0);
        ui.add_space(12.0);
        ui.heading(RichText::new("Tally reader").size(26.0));
        ui.label("Open a rented document: choose the document (package) and its licence (keyfile), or drop both files on this window.");
        ui.add_space(8.0);
        egui::Grid::new("open-grid").num_columns(2).show(ui, |ui| {
            let l = ui.label("Document");
            ui.add(egui::TextEdit::singleline(&mut app.dialog.package).desired_width(420.0))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Licence");
            ui.add(egui::TextEdit::singleline(&mut app.dialog.keyfile).desired_width(420.0))
                .labelled_by(l.id);
            ui.end_row();
        });
        let ready = !app.dialog.package.trim().is_empty() && !app.dialog.keyfile.trim().is_empty();
        if ui.add_enabled(ready, egui::Button::new("Open")).clicked() {
            open = Some((
                PathBuf::from(app.dialog.package.trim()),
                PathBuf::from(app.dialog.keyfile.trim()),
            ));
        }
        ui.add_space(10.0);
        ui.columns(2, |cols| {
            browse(app, &mut cols[0]);
            cols[1].strong("Recent");
            if app.recent.entries.is_empty() {
                cols[1].weak("Nothing opened yet.");
            }
            for (p, k) in app.recent.entries.clone() {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if cols[1].button(name).on_hover_text(p.display().to_string()).clicked() {
                    open = Some((p, k));
                }
            }
        });
    });
    if let Some((p, k)) = open {
        let ctx = ui.ctx().clone();
        app.open(&ctx, p, k);
    }
}

fn browse(app: &mut ReaderApp, ui: &mut egui::Ui) {
    ui.strong("Browse");
    ui.label(RichText::new(app.dialog.dir.display().to_string()).small());
    let mut entries: Vec<(bool, PathBuf)> = std::fs::read_dir(&app.dialog.dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.path().is_dir(), e.path()))
                .filter(|(d, p)| {
                    let hidden = p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    !hidden && (*d || sniff(p).is_some())
                })
                .take(500)
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| (!a.0, &a.1).cmp(&(!b.0, &b.1)));
    egui::ScrollArea::vertical()
        .id_salt("browse")
        .max_height(260.0)
        .show(ui, |ui| {
            if let Some(parent) = app.dialog.dir.parent().map(|p| p.to_path_buf())
                && ui.button("Up one folder").clicked()
            {
                app.dialog.dir = parent;
            }
            for (is_dir, p) in entries {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if is_dir {
                    if ui.button(format!("{name}/")).clicked() {
                        app.dialog.dir = p;
                    }
                } else {
                    let kind = sniff(&p).unwrap_or("");
                    if ui.button(format!("{name}  ({kind})")).clicked() {
                        match kind {
                            "package" => app.dialog.package = p.display().to_string(),
                            _ => app.dialog.keyfile = p.display().to_string(),
                        }
                    }
                }
            }
        });
}
