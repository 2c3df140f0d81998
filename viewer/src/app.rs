//! The reader window (eframe): a small state machine — welcome, opening, a problem
//! screen, or reading — plus the glue between the [`Session`] (what may be shown and
//! charged) and the [`Renderer`] (pixels). Drawing lives in `ui/*_ui.rs`; nothing here or
//! there charges anything directly: tally-core's session does, on its meter thread.

use crate::render::{DocumentInfo, Renderer, Reply, Request};
use crate::ui;
use egui::{Context, Key, Modifiers, TextureHandle, TextureOptions};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Instant;
use tally_core::rental::{Mode, OpenInputs, Opened, Problem, Session, open_rental};
use zeroize::Zeroizing;

/// Builds the inputs for opening a package with a keyfile (home, card, trusted
/// publishers, clock are fixed by how the viewer was started).
pub type InputsFactory = Box<dyn Fn(PathBuf, PathBuf) -> OpenInputs + Send + Sync>;

/// How the page is sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zoom {
    /// The page as wide as the view.
    FitWidth,
    /// The whole page in the view.
    FitPage,
    /// A fixed scale (1.0 = 96 px per inch of paper on a 1× screen).
    Scale(f32),
}

/// Which panel the sidebar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidebarTab {
    /// Page thumbnails.
    Thumbnails,
    /// The document outline.
    Outline,
    /// Text search.
    Search,
}

/// A search hit.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// Page (0-based).
    pub page: usize,
    /// Some text around the match.
    pub snippet: String,
}

/// The reading view's state.
pub struct Reader {
    /// The session (metering, what is shown).
    pub session: Session,
    renderer: Renderer,
    /// The document's page sizes and outline, once loaded.
    pub doc: Option<DocumentInfo>,
    /// Why the document could not be rendered.
    pub load_error: Option<String>,
    pages: HashMap<usize, (u32, TextureHandle)>,
    requested: Option<(usize, u32)>,
    thumbs: HashMap<usize, TextureHandle>,
    thumbs_requested: HashSet<usize>,
    texts: Vec<Option<Zeroizing<String>>>,
    /// The page whose text a copy request (waiting for the session's answer) is for.
    copy_page: Option<usize>,
    /// Zoom mode.
    pub zoom: Zoom,
    /// Sidebar visible.
    pub show_sidebar: bool,
    /// Sidebar tab.
    pub tab: SidebarTab,
    /// The search box.
    pub search: String,
    /// Results of the last search.
    pub hits: Vec<SearchHit>,
    searched: String,
    /// The go-to-page box.
    pub goto: String,
    /// A message for the reader and when it was set.
    pub notice: Option<String>,
    print_pages: Option<Vec<usize>>,
    printing: bool,
    /// The print command (`lp` found on the PATH at start); `None`: printing unavailable.
    pub printer: Option<PathBuf>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Where `lp` is, if the system has one.
pub fn lp_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("lp"))
        .find(|p| p.is_file())
}

impl Reader {
    /// Starts reading an opened rental: the meter moves to its worker thread, the
    /// document to the render worker, and page 1 is asked for (its view is charged first).
    pub fn start(ctx: &Context, opened: Opened) -> Result<Self, Problem> {
        let c1 = ctx.clone();
        let (session, document) = opened.start(Box::new(move || c1.request_repaint()))?;
        let watermark = format!("Licensed to {}", session.info().customer);
        let c2 = ctx.clone();
        let renderer = Renderer::start(document, watermark, Box::new(move || c2.request_repaint()));
        Ok(Self {
            session,
            renderer,
            doc: None,
            load_error: None,
            pages: HashMap::new(),
            requested: None,
            thumbs: HashMap::new(),
            thumbs_requested: HashSet::new(),
            texts: Vec::new(),
            copy_page: None,
            zoom: Zoom::FitPage,
            show_sidebar: true,
            tab: SidebarTab::Thumbnails,
            search: String::new(),
            hits: Vec::new(),
            searched: String::new(),
            goto: String::new(),
            notice: None,
            print_pages: None,
            printing: false,
            printer: lp_path(),
        })
    }

    /// Takes the workers' answers (never blocks).
    pub fn poll(&mut self, ctx: &Context, now: Instant) {
        // The session decides what pauses and what ends a pause; the window only says
        // what the reader did and whether the page can be seen (focused or not: only a
        // minimised window cannot).
        let (deliberate, motion, visible) = ctx.input(|i| {
            (
                i.events.iter().any(is_deliberate),
                i.pointer.is_moving(),
                !i.viewport().minimized.unwrap_or(false),
            )
        });
        let was_paused = self.session.paused();
        if deliberate {
            self.session.note_input(now);
            if was_paused {
                // The key that ends a pause only ends it: it turns no page and prints nothing.
                ctx.input_mut(|i| i.events.clear());
            }
        } else if motion {
            self.session.note_motion(now);
        }
        self.session.tick(now, visible);
        if self.session.take_copy_ready() {
            self.copy_ready_text(ctx);
        }
        if let Some(n) = self.session.take_notice() {
            self.notice = Some(n);
        }
        while let Some(reply) = self.renderer.try_recv() {
            match reply {
                Reply::Opened(info) => {
                    self.session.set_page_count(info.page_sizes.len());
                    self.texts = vec![None; info.page_sizes.len()];
                    if info.outline.is_empty() && self.tab == SidebarTab::Outline {
                        self.tab = SidebarTab::Thumbnails;
                    }
                    self.doc = Some(info);
                }
                Reply::OpenFailed(e) => self.load_error = Some(e),
                Reply::Page {
                    index,
                    width,
                    image,
                } => {
                    let tex = ctx.load_texture(
                        format!("page-{index}"),
                        image.into_color_image(),
                        TextureOptions::LINEAR,
                    );
                    self.pages.insert(index, (width, tex));
                    // Keep only the pages near the reader (memory stays bounded).
                    let cur = self.session.current();
                    self.pages.retain(|&i, _| i.abs_diff(cur) <= 3);
                }
                Reply::Thumb { index, image } => {
                    let tex = ctx.load_texture(
                        format!("thumb-{index}"),
                        image.into_color_image(),
                        TextureOptions::LINEAR,
                    );
                    self.thumbs.insert(index, tex);
                }
                Reply::Text { index, text } => {
                    if let Some(slot) = self.texts.get_mut(index) {
                        *slot = Some(text);
                    }
                    if !self.searched.is_empty() {
                        let q = self.searched.clone();
                        self.search_page(index, &q);
                    }
                }
                Reply::PrintReady(result) => {
                    self.printing = false;
                    match result {
                        Ok(pdf) => self.send_to_printer(pdf),
                        Err(e) => self.notice = Some(format!("Printing failed: {e}")),
                    }
                }
                Reply::Failed { index, error } => {
                    self.notice = Some(format!("Page {} could not be shown: {error}", index + 1));
                }
            }
        }
        if let Some(n) = self.session.take_print_ready()
            && let Some(pages) = self.print_pages.take()
        {
            let pages: Vec<usize> = pages.into_iter().take(n as usize).collect();
            self.printing = true;
            self.renderer.send(Request::Print { pages, dpi: 150 });
        }
    }

    fn send_to_printer(&mut self, pdf: Zeroizing<Vec<u8>>) {
        let Some(lp) = self.printer.clone() else {
            self.notice = Some("No printing service (lp) was found on this computer.".into());
            return;
        };
        // The job goes to the spooler through a pipe; the viewer writes no file.
        std::thread::spawn(move || {
            use std::io::Write as _;
            if let Ok(mut child) = std::process::Command::new(lp)
                .arg("-t")
                .arg("Tally document")
                .arg("-")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&pdf);
                }
                let _ = child.wait();
            }
        });
        self.notice = Some("Sent to the printer.".into());
    }

    /// Asks the renderer for the current page at `width` pixels (deduplicated).
    pub fn want_page(&mut self, width: u32) {
        let width = width.clamp(64, 6000).div_ceil(64) * 64;
        let cur = self.session.current();
        let have = self.pages.get(&cur).is_some_and(|(w, _)| *w == width);
        if !have && self.requested != Some((cur, width)) {
            self.requested = Some((cur, width));
            self.renderer.send(Request::Page { index: cur, width });
        }
    }

    /// True when nothing is in flight: the page asked for and every thumbnail asked for
    /// have arrived and no charge is being recorded (tests wait for this before a snapshot).
    pub fn settled(&self) -> bool {
        let page_ok = match self.requested {
            Some((i, w)) => self.pages.get(&i).is_some_and(|(pw, _)| *pw == w),
            None => !self.session.page_shown() || self.load_error.is_some(),
        };
        self.doc.is_some()
            && page_ok
            && self
                .thumbs_requested
                .iter()
                .all(|i| self.thumbs.contains_key(i))
            && !self.session.busy()
    }

    /// The texture for a page, at whatever width is available.
    pub fn page_texture(&self, index: usize) -> Option<&TextureHandle> {
        self.pages.get(&index).map(|(_, t)| t)
    }

    /// The thumbnail of a page, asking for it when missing.
    pub fn thumb(&mut self, index: usize) -> Option<&TextureHandle> {
        if !self.thumbs.contains_key(&index) && self.thumbs_requested.insert(index) {
            self.renderer.send(Request::Thumb { index });
        }
        self.thumbs.get(&index)
    }

    /// Page size in points.
    pub fn page_size(&self, index: usize) -> (f32, f32) {
        self.doc
            .as_ref()
            .and_then(|d| d.page_sizes.get(index).copied())
            .unwrap_or((612.0, 792.0))
    }

    /// Runs a search over the text extracted so far (the rest is searched as it arrives).
    pub fn run_search(&mut self) {
        self.hits.clear();
        self.searched = self.search.trim().to_string();
        if self.searched.is_empty() {
            return;
        }
        let q = self.searched.clone();
        for i in 0..self.texts.len() {
            self.search_page(i, &q);
        }
    }

    fn search_page(&mut self, index: usize, q: &str) {
        const MAX_HITS: usize = 500;
        let Some(Some(text)) = self.texts.get(index) else {
            return;
        };
        let lower = text.to_lowercase();
        let ql = q.to_lowercase();
        let mut from = 0;
        while let Some(pos) = lower[from..].find(&ql) {
            if self.hits.len() >= MAX_HITS {
                return;
            }
            let at = from + pos;
            // Same byte offsets in the original only when lower-casing kept every length.
            let src: &str = if lower.len() == text.len() {
                text
            } else {
                &lower
            };
            let start = src.floor_char_boundary(at.saturating_sub(30));
            let snippet: String = src[start..]
                .chars()
                .take(70)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            self.hits.push(SearchHit {
                page: index,
                snippet,
            });
            from = at + ql.len().max(1);
            if from >= lower.len() {
                break;
            }
        }
        self.hits.sort_by_key(|h| h.page);
    }

    /// Asks to copy the current page's text: the session asks the licence's policy with the
    /// text's length and records the copy; the text goes to the clipboard only when it says
    /// yes ([`Reader::poll`]).
    pub fn copy_page_text(&mut self, _ctx: &Context) {
        let cur = self.session.current();
        match self.texts.get(cur) {
            Some(Some(t)) => {
                self.copy_page = Some(cur);
                self.session.request_copy(t.chars().count());
            }
            _ => self.notice = Some("The page's text is still being read; try again.".into()),
        }
    }

    /// Puts the text the session allowed (and recorded) on the clipboard.
    fn copy_ready_text(&mut self, ctx: &Context) {
        let Some(page) = self.copy_page.take() else {
            return;
        };
        if let Some(Some(t)) = self.texts.get(page) {
            ctx.copy_text(t.to_string());
            self.notice = Some(format!("Copied the text of page {}.", page + 1));
        }
    }

    /// Prints the current page, if the licence allows it (charged first).
    pub fn print_current(&mut self) {
        if !self.print_available() {
            self.notice = Some(if self.session.info().rights.print {
                "No printing service (lp) was found on this computer.".into()
            } else {
                "This rental does not allow printing.".into()
            });
            return;
        }
        self.print_pages = Some(vec![self.session.current()]);
        self.session.request_print(1);
    }

    /// Printing is possible: the right, a running rental, and a printing service.
    pub fn print_available(&self) -> bool {
        self.session.info().rights.print
            && matches!(self.session.mode(), Mode::Reading)
            && !self.printing
            && self.printer.is_some()
    }

    /// Keyboard: page turns and shortcuts. Ignored while a text box has the focus.
    pub fn handle_keys(&mut self, ctx: &Context) {
        if ctx.memory(|m| m.focused().is_some()) {
            return;
        }
        // Counted, not flagged: on a slow frame two presses arrive together, and each is a
        // page turn (and a page view) of its own.
        let mut next = 0usize;
        let mut prev = 0usize;
        let mut first = false;
        let mut last = false;
        let mut copy = false;
        let mut print = false;
        let mut zoom_in = false;
        let mut zoom_out = false;
        ctx.input_mut(|i| {
            for k in [Key::ArrowRight, Key::ArrowDown, Key::PageDown, Key::Space] {
                while i.consume_key(Modifiers::NONE, k) {
                    next += 1;
                }
            }
            for k in [Key::ArrowLeft, Key::ArrowUp, Key::PageUp] {
                while i.consume_key(Modifiers::NONE, k) {
                    prev += 1;
                }
            }
            first = i.consume_key(Modifiers::NONE, Key::Home);
            last = i.consume_key(Modifiers::NONE, Key::End);
            print = i.consume_key(Modifiers::COMMAND, Key::P);
            zoom_in = i.consume_key(Modifiers::COMMAND, Key::Plus)
                || i.consume_key(Modifiers::COMMAND, Key::Equals);
            zoom_out = i.consume_key(Modifiers::COMMAND, Key::Minus);
            let before = i.events.len();
            i.events.retain(|e| !matches!(e, egui::Event::Copy));
            copy = i.events.len() != before || i.consume_key(Modifiers::COMMAND, Key::C);
        });
        for _ in 0..next {
            self.session.next();
        }
        for _ in 0..prev {
            self.session.previous();
        }
        if first {
            self.session.go_to(0);
        }
        if last {
            self.session
                .go_to(self.session.page_count().saturating_sub(1));
        }
        if copy {
            self.copy_page_text(ctx);
        }
        if print {
            self.print_current();
        }
        if zoom_in {
            self.zoom_by(1.25);
        }
        if zoom_out {
            self.zoom_by(0.8);
        }
    }

    /// Zooms relative to the current scale.
    pub fn zoom_by(&mut self, f: f32) {
        let s = match self.zoom {
            Zoom::Scale(s) => s,
            _ => 1.0,
        };
        self.zoom = Zoom::Scale((s * f).clamp(0.25, 5.0));
    }
}

/// Recently opened package/keyfile pairs, kept in `<TALLY_HOME>/recent.txt`.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    file: Option<PathBuf>,
    /// Newest first.
    pub entries: Vec<(PathBuf, PathBuf)>,
}

impl Recent {
    const MAX: usize = 10;

    /// Loads the list (a missing or unreadable file gives an empty list).
    pub fn load(home: Option<&Path>) -> Self {
        let file = home.map(|h| h.join("recent.txt"));
        let mut entries = Vec::new();
        if let Some(f) = &file
            && let Ok(text) = std::fs::read_to_string(f)
        {
            for line in text.lines().take(Self::MAX) {
                if let Some((p, k)) = line.split_once('\t') {
                    entries.push((PathBuf::from(p), PathBuf::from(k)));
                }
            }
        }
        Self { file, entries }
    }

    /// Puts a pair on top and saves.
    pub fn add(&mut self, package: &Path, keyfile: &Path) {
        let p = package
            .canonicalize()
            .unwrap_or_else(|_| package.to_path_buf());
        let k = keyfile
            .canonicalize()
            .unwrap_or_else(|_| keyfile.to_path_buf());
        self.entries.retain(|(a, b)| !(a == &p && b == &k));
        self.entries.insert(0, (p, k));
        self.entries.truncate(Self::MAX);
        if let Some(f) = &self.file {
            let text: String = self
                .entries
                .iter()
                .filter(|(a, b)| {
                    !a.to_string_lossy().contains(['\t', '\n'])
                        && !b.to_string_lossy().contains(['\t', '\n'])
                })
                .map(|(a, b)| format!("{}\t{}\n", a.display(), b.display()))
                .collect();
            if let Some(dir) = f.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(f, text);
        }
    }
}

/// The file dialog (an egui one: no system portal is needed).
#[derive(Debug, Clone, Default)]
pub struct OpenDialog {
    /// The package path being typed or picked.
    pub package: String,
    /// The keyfile path.
    pub keyfile: String,
    /// The folder being browsed.
    pub dir: PathBuf,
}

/// What kind of Tally file the first bytes say a file is.
pub fn sniff(path: &Path) -> Option<&'static str> {
    use std::io::Read as _;
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path).ok()?;
    f.read_exact(&mut magic).ok()?;
    match &magic {
        b"TALLYPKG" => Some("package"),
        b"TALLYKEY" => Some("keyfile"),
        _ => None,
    }
}

/// The screens.
pub enum Screen {
    /// Nothing open: the open dialog and the recent files.
    Welcome,
    /// Checks and decryption running on a worker thread.
    Opening(Receiver<Result<Opened, Problem>>),
    /// A plain-language problem screen.
    Problem(Problem),
    /// Reading.
    Reading(Box<Reader>),
}

/// The eframe application.
pub struct ReaderApp {
    /// The current screen.
    pub screen: Screen,
    /// Recent files.
    pub recent: Recent,
    /// The open dialog.
    pub dialog: OpenDialog,
    inputs: Option<InputsFactory>,
    last: Option<(PathBuf, PathBuf)>,
    /// True in `--demo` (the screens say so).
    pub demo: bool,
    /// The window title last asked for, so it is sent only when it changes.
    title: String,
}

impl ReaderApp {
    /// A window that opens packages with `inputs`; `initial` is opened at once.
    pub fn new(
        ctx: &Context,
        inputs: Option<InputsFactory>,
        home: Option<&Path>,
        initial: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        ui::style(ctx);
        let mut app = Self {
            screen: Screen::Welcome,
            recent: Recent::load(home),
            dialog: OpenDialog {
                dir: std::env::current_dir().unwrap_or_default(),
                ..OpenDialog::default()
            },
            inputs,
            last: None,
            demo: false,
            title: String::new(),
        };
        if let Some((p, k)) = initial {
            app.open(ctx, p, k);
        }
        app
    }

    /// A window on an already opened rental (tests and benchmarks drive this directly).
    pub fn with_opened(ctx: &Context, opened: Opened) -> Self {
        ui::style(ctx);
        let screen = match Reader::start(ctx, opened) {
            Ok(r) => Screen::Reading(Box::new(r)),
            Err(p) => Screen::Problem(p),
        };
        Self {
            screen,
            recent: Recent::default(),
            dialog: OpenDialog::default(),
            inputs: None,
            last: None,
            demo: false,
            title: String::new(),
        }
    }

    /// Starts opening `package` with `keyfile` on a worker thread.
    pub fn open(&mut self, ctx: &Context, package: PathBuf, keyfile: PathBuf) {
        let Some(factory) = &self.inputs else {
            self.screen = Screen::Problem(Problem::Other(
                "this window cannot open other documents".into(),
            ));
            return;
        };
        let inputs = factory(package.clone(), keyfile.clone());
        self.last = Some((package, keyfile));
        let (tx, rx) = channel();
        let c = ctx.clone();
        // Dropping the old reader here stops its workers (and zeroizes its document).
        self.screen = Screen::Opening(rx);
        std::thread::spawn(move || {
            let _ = tx.send(open_rental(&inputs));
            c.request_repaint();
        });
    }

    /// Re-runs the last opening (the "Try again" button).
    pub fn retry(&mut self, ctx: &Context) {
        if let Some((p, k)) = self.last.clone() {
            self.open(ctx, p, k);
        } else {
            self.screen = Screen::Welcome;
        }
    }

    /// The reader, when reading.
    pub fn reader(&self) -> Option<&Reader> {
        match &self.screen {
            Screen::Reading(r) => Some(r),
            _ => None,
        }
    }

    /// The reader, mutably.
    pub fn reader_mut(&mut self) -> Option<&mut Reader> {
        match &mut self.screen {
            Screen::Reading(r) => Some(r),
            _ => None,
        }
    }

    /// The logic of one frame: workers' answers, keys, dropped files. No drawing.
    pub fn logic(&mut self, ctx: &Context) {
        let now = Instant::now();
        if let Screen::Opening(rx) = &self.screen {
            match rx.try_recv() {
                Ok(Ok(opened)) => {
                    if let Some((p, k)) = &self.last {
                        self.recent.add(p, k);
                    }
                    self.screen = match Reader::start(ctx, opened) {
                        Ok(r) => Screen::Reading(Box::new(r)),
                        Err(p) => Screen::Problem(p),
                    };
                }
                Ok(Err(p)) => self.screen = Screen::Problem(p),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.screen =
                        Screen::Problem(Problem::Other("opening stopped unexpectedly".into()))
                }
            }
        }
        self.take_dropped_files(ctx);
        // Ctrl+Q closes the window on every screen, as its close button does.
        if ctx.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::Q)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if let Screen::Reading(r) = &mut self.screen {
            r.poll(ctx, now);
            r.handle_keys(ctx);

            if let Mode::Stopped(p) = r.session.mode() {
                let p = p.clone();
                self.screen = Screen::Problem(p);
            } else if let Some(end) = r.session.unit_ends() {
                ctx.request_repaint_after(end.saturating_duration_since(now));
            }
        }
        // The title names the document and the page while reading, as a reader's window list
        // shows it (and what a test driving the real window waits on between key presses).
        let title = match &self.screen {
            Screen::Reading(r) => format!(
                "{} — page {} of {} — Tally reader",
                r.session.info().title,
                r.session.current() + 1,
                r.session.page_count()
            ),
            _ => "Tally reader".to_string(),
        };
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    fn take_dropped_files(&mut self, ctx: &Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if dropped.is_empty() {
            return;
        }
        for p in dropped {
            match sniff(&p) {
                Some("package") => self.dialog.package = p.display().to_string(),
                Some("keyfile") => self.dialog.keyfile = p.display().to_string(),
                _ => {}
            }
        }
        if !self.dialog.package.is_empty() && !self.dialog.keyfile.is_empty() {
            let (p, k) = (
                PathBuf::from(&self.dialog.package),
                PathBuf::from(&self.dialog.keyfile),
            );
            self.open(ctx, p, k);
        } else if !matches!(self.screen, Screen::Reading(_)) {
            self.screen = Screen::Welcome;
        }
    }
}

impl eframe::App for ReaderApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.logic(&ctx);
        ui::draw(self, ui);
    }
}

/// A key pressed, a click, a scroll, typed text or a clipboard command: what a reader does
/// on purpose (focus changes and pointer motion are not).
fn is_deliberate(e: &egui::Event) -> bool {
    matches!(
        e,
        egui::Event::Key { pressed: true, .. }
            | egui::Event::PointerButton { pressed: true, .. }
            | egui::Event::MouseWheel { .. }
            | egui::Event::Text(_)
            | egui::Event::Copy
            | egui::Event::Cut
            | egui::Event::Paste(_)
            | egui::Event::Zoom(_)
    )
}
