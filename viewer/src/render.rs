//! Rendering with PDFium, off the UI thread.
//!
//! PDFium is bound once per process ([`pdfium`]). A [`Renderer`] owns one worker thread
//! that holds the decrypted document bytes and the `PdfDocument` loaded from them in
//! memory (`load_pdf_from_byte_slice`: nothing decrypted ever touches the disk). The UI
//! sends [`Request`]s and picks up [`Reply`]s without blocking; the worker pre-renders
//! the neighbours of the page asked for and extracts each page's text in idle time.
//!
//! Every page gets the customer's name stamped into its content before it is first
//! rendered, so the watermark is in the pixels: screenshots and prints carry it.

use pdfium_render::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use zeroize::Zeroizing;

/// Environment variable naming the folder that holds `libpdfium.so`.
pub const PDFIUM_DIR_ENV: &str = "TALLY_PDFIUM_DIR";

static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();

/// Folders searched for `libpdfium.so`, in order: `TALLY_PDFIUM_DIR`, then
/// `<exe dir>/../../.deps/pdfium` (a cargo build in the repository), then the
/// repository's `.deps/pdfium` as known at build time.
pub fn pdfium_search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(PDFIUM_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.join("../../.deps/pdfium"));
        // Test and bench binaries live one level deeper (target/debug/deps).
        dirs.push(dir.join("../../../.deps/pdfium"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/pdfium"));
    dirs
}

/// The process-wide PDFium binding, bound on first use.
pub fn pdfium() -> Result<&'static Pdfium, String> {
    PDFIUM
        .get_or_init(|| {
            let mut tried = Vec::new();
            for dir in pdfium_search_path() {
                let lib = Pdfium::pdfium_platform_library_name_at_path(&dir);
                if !lib.exists() {
                    tried.push(dir.display().to_string());
                    continue;
                }
                return Pdfium::bind_to_library(&lib)
                    .map(Pdfium::new)
                    .map_err(|e| format!("loading {}: {e}", lib.display()));
            }
            Err(format!(
                "libpdfium.so not found (set {PDFIUM_DIR_ENV}; looked in {})",
                tried.join(", ")
            ))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A rendered page, already in egui's pixel format: the conversion is done on the render
/// worker, so the UI thread only hands the pixels to a texture (a page turn costs it less
/// than a frame).
#[derive(Clone)]
pub struct PageImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    color: egui::ColorImage,
}

impl std::fmt::Debug for PageImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageImage({}x{})", self.width, self.height)
    }
}

impl PageImage {
    /// From `width * height * 4` bytes of RGBA (not premultiplied); converted here, off the
    /// UI thread.
    fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Self {
        Self {
            width,
            height,
            color: egui::ColorImage::from_rgba_unmultiplied([width, height], rgba),
        }
    }

    /// The egui image, moved out (no conversion and no copy on the UI thread).
    pub fn into_color_image(self) -> egui::ColorImage {
        self.color
    }

    /// The pixels as RGBA bytes (printing, tests).
    pub fn rgba(&self) -> Vec<u8> {
        self.color
            .pixels
            .iter()
            .flat_map(|c| c.to_srgba_unmultiplied())
            .collect()
    }
}

/// One entry of the document outline (bookmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineEntry {
    /// Nesting depth, 0 for top-level entries.
    pub depth: usize,
    /// The title.
    pub title: String,
    /// Target page (0-based), when the entry points into this document.
    pub page: Option<usize>,
}

/// What the worker learned when it loaded the document.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// Page sizes in PDF points (width, height).
    pub page_sizes: Vec<(f32, f32)>,
    /// The outline; empty when the PDF has none.
    pub outline: Vec<OutlineEntry>,
}

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Render page `index` (0-based) at `width` pixels wide; the neighbours follow.
    Page {
        /// Page index.
        index: usize,
        /// Width in pixels.
        width: u32,
    },
    /// Render a small thumbnail of page `index`.
    Thumb {
        /// Page index.
        index: usize,
    },
    /// Rasterize pages for printing and wrap them in a PDF of images.
    Print {
        /// Page indexes.
        pages: Vec<usize>,
        /// Resolution.
        dpi: u32,
    },
}

/// The worker's answers.
pub enum Reply {
    /// The document loaded.
    Opened(DocumentInfo),
    /// The document could not be loaded; the renderer is finished.
    OpenFailed(String),
    /// A rendered page.
    Page {
        /// Page index.
        index: usize,
        /// The width it was asked for.
        width: u32,
        /// The pixels.
        image: PageImage,
    },
    /// A rendered thumbnail.
    Thumb {
        /// Page index.
        index: usize,
        /// The pixels.
        image: PageImage,
    },
    /// The text of one page, for search and copy (kept only in memory).
    Text {
        /// Page index.
        index: usize,
        /// The text.
        text: Zeroizing<String>,
    },
    /// A print job: a PDF holding the rasterized, watermarked pages.
    PrintReady(Result<Zeroizing<Vec<u8>>, String>),
    /// Rendering one page failed.
    Failed {
        /// Page index.
        index: usize,
        /// Why.
        error: String,
    },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Opened(i) => write!(f, "Opened({} pages)", i.page_sizes.len()),
            Reply::OpenFailed(e) => write!(f, "OpenFailed({e})"),
            Reply::Page { index, width, .. } => write!(f, "Page({index}, {width})"),
            Reply::Thumb { index, .. } => write!(f, "Thumb({index})"),
            Reply::Text { index, .. } => write!(f, "Text({index})"),
            Reply::PrintReady(r) => write!(f, "PrintReady(ok={})", r.is_ok()),
            Reply::Failed { index, error } => write!(f, "Failed({index}, {error})"),
        }
    }
}

/// Thumbnail width in pixels.
pub const THUMB_WIDTH: u32 = 96;

/// A handle on the render worker. Dropping it stops the worker, which drops (and zeroizes)
/// the document bytes.
pub struct Renderer {
    tx: Option<Sender<Request>>,
    rx: Receiver<Reply>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Renderer {
    /// Starts a worker on `bytes` (the decrypted PDF, e.g. core's zeroizing `Plaintext`;
    /// it is dropped on the worker when the renderer is dropped). `watermark` is stamped on every
    /// page; `wake` is called after each reply (the UI requests a repaint there).
    pub fn start<B: AsRef<[u8]> + Send + 'static>(
        bytes: B,
        watermark: String,
        wake: Box<dyn Fn() + Send>,
    ) -> Self {
        let (tx, req_rx) = channel();
        let (reply_tx, rx) = channel();
        let worker = std::thread::Builder::new()
            .name("tally-render".into())
            .spawn(move || worker(bytes, watermark, req_rx, reply_tx, wake))
            .ok();
        if worker.is_none() {
            // No thread, no document: the UI shows the failure from the closed channel.
            drop(tx);
            return Self {
                tx: None,
                rx,
                worker: None,
            };
        }
        Self {
            tx: Some(tx),
            rx,
            worker,
        }
    }

    /// Queues a request (never blocks).
    pub fn send(&self, req: Request) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(req);
        }
    }

    /// The next reply, if one is ready (never blocks).
    pub fn try_recv(&self) -> Option<Reply> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next reply (for tests, benchmarks and headless use only).
    pub fn recv_timeout(&self, d: std::time::Duration) -> Option<Reply> {
        self.rx.recv_timeout(d).ok()
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn worker<B: AsRef<[u8]>>(
    bytes: B,
    watermark: String,
    rx: Receiver<Request>,
    tx: Sender<Reply>,
    wake: Box<dyn Fn() + Send>,
) {
    let send = |r: Reply| {
        let ok = tx.send(r).is_ok();
        wake();
        ok
    };
    let pdfium = match pdfium() {
        Ok(p) => p,
        Err(e) => {
            send(Reply::OpenFailed(e));
            return;
        }
    };
    let mut doc = match pdfium.load_pdf_from_byte_slice(bytes.as_ref(), None) {
        Ok(d) => d,
        Err(e) => {
            send(Reply::OpenFailed(format!(
                "the document could not be read: {e}"
            )));
            return;
        }
    };
    let page_sizes: Vec<(f32, f32)> = match doc.pages().page_sizes() {
        Ok(s) => s
            .iter()
            .map(|r| (r.width().value, r.height().value))
            .collect(),
        Err(e) => {
            send(Reply::OpenFailed(format!(
                "the document has no readable pages: {e}"
            )));
            return;
        }
    };
    let outline = read_outline(&doc);
    let n = page_sizes.len();
    if !send(Reply::Opened(DocumentInfo {
        page_sizes,
        outline,
    })) {
        return;
    }
    let mut w = Work {
        watermark,
        stamped: HashSet::new(),
        texts: HashMap::new(),
        font: None,
    };
    let mut queue: VecDeque<Request> = VecDeque::new();
    let mut prefetch: VecDeque<(usize, u32)> = VecDeque::new();
    let mut next_text = 0usize;
    loop {
        // Gather everything asked so far without waiting.
        loop {
            match rx.try_recv() {
                Ok(r) => queue.push_back(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // The newest page request wins: the reader has moved on from older ones.
        if let Some(pos) = queue
            .iter()
            .rposition(|r| matches!(r, Request::Page { .. }))
        {
            let Some(Request::Page { index, width }) = queue.remove(pos) else {
                continue;
            };
            queue.retain(|r| !matches!(r, Request::Page { .. }));
            let reply = match w.render(&mut doc, index, RenderSize::Width(width)) {
                Ok(image) => Reply::Page {
                    index,
                    width,
                    image,
                },
                Err(error) => Reply::Failed { index, error },
            };
            if !send(reply) {
                return;
            }
            prefetch.clear();
            if index + 1 < n {
                prefetch.push_back((index + 1, width));
            }
            if index > 0 {
                prefetch.push_back((index - 1, width));
            }
            continue;
        }
        if let Some(pos) = queue
            .iter()
            .position(|r| matches!(r, Request::Print { .. }))
        {
            let Some(Request::Print { pages, dpi }) = queue.remove(pos) else {
                continue;
            };
            if !send(Reply::PrintReady(w.print(&mut doc, &pages, dpi))) {
                return;
            }
            continue;
        }
        if let Some((index, width)) = prefetch.pop_front() {
            let reply = match w.render(&mut doc, index, RenderSize::Width(width)) {
                Ok(image) => Reply::Page {
                    index,
                    width,
                    image,
                },
                Err(error) => Reply::Failed { index, error },
            };
            if !send(reply) {
                return;
            }
            continue;
        }
        if let Some(Request::Thumb { index }) = queue.pop_front() {
            if let Ok(image) = w.render(&mut doc, index, RenderSize::Width(THUMB_WIDTH))
                && !send(Reply::Thumb { index, image })
            {
                return;
            }
            continue;
        }
        if next_text < n {
            let text = w.text(&doc, next_text);
            if !send(Reply::Text {
                index: next_text,
                text,
            }) {
                return;
            }
            next_text += 1;
            continue;
        }
        // Idle: wait for the next request.
        match rx.recv() {
            Ok(r) => queue.push_back(r),
            Err(_) => return,
        }
    }
}

enum RenderSize {
    Width(u32),
    Dpi(u32),
}

struct Work {
    watermark: String,
    stamped: HashSet<usize>,
    texts: HashMap<usize, Zeroizing<String>>,
    font: Option<PdfFontToken>,
}

/// Largest rendered dimension in pixels (a hostile page size can't exhaust memory).
const MAX_PIXELS: u32 = 6000;

impl Work {
    /// The page's text, extracted before the watermark is added (so search never finds it).
    fn text(&mut self, doc: &PdfDocument<'_>, index: usize) -> Zeroizing<String> {
        if let Some(t) = self.texts.get(&index) {
            return t.clone();
        }
        let t = Zeroizing::new(
            i32::try_from(index)
                .ok()
                .and_then(|i| doc.pages().get(i).ok())
                .and_then(|p| p.text().ok().map(|t| t.all()))
                .unwrap_or_default(),
        );
        self.texts.insert(index, t.clone());
        t
    }

    fn stamp(&mut self, doc: &mut PdfDocument<'_>, index: usize) -> Result<(), String> {
        if self.stamped.contains(&index) {
            return Ok(());
        }
        self.text(doc, index);
        let font = match self.font {
            Some(f) => f,
            None => {
                let f = doc.fonts_mut().helvetica_bold();
                self.font = Some(f);
                f
            }
        };
        let i = i32::try_from(index).map_err(|_| "page index out of range".to_string())?;
        let mut page = doc.pages().get(i).map_err(|e| e.to_string())?;
        let (w, h) = (page.width().value, page.height().value);
        let size = (w.min(h) / 22.0).clamp(8.0, 48.0);
        // A diagonal mark across the middle and a small line at the foot of the page.
        let mut big = PdfPageTextObject::new(doc, &self.watermark, font, PdfPoints::new(size))
            .map_err(|e| e.to_string())?;
        big.set_fill_color(PdfColor::new(200, 30, 30, 46))
            .map_err(|e| e.to_string())?;
        let text_w = size * 0.6 * self.watermark.chars().count() as f32;
        big.translate(PdfPoints::new(-text_w / 2.0), PdfPoints::new(-size / 3.0))
            .map_err(|e| e.to_string())?;
        big.rotate_counter_clockwise_degrees(35.0)
            .map_err(|e| e.to_string())?;
        big.translate(PdfPoints::new(w / 2.0), PdfPoints::new(h / 2.0))
            .map_err(|e| e.to_string())?;
        page.objects_mut()
            .add_text_object(big)
            .map_err(|e| e.to_string())?;
        let small_size = (size / 3.0).clamp(6.0, 12.0);
        let mut small =
            PdfPageTextObject::new(doc, &self.watermark, font, PdfPoints::new(small_size))
                .map_err(|e| e.to_string())?;
        small
            .set_fill_color(PdfColor::new(150, 20, 20, 150))
            .map_err(|e| e.to_string())?;
        small
            .translate(PdfPoints::new(small_size * 2.0), PdfPoints::new(small_size))
            .map_err(|e| e.to_string())?;
        page.objects_mut()
            .add_text_object(small)
            .map_err(|e| e.to_string())?;
        self.stamped.insert(index);
        Ok(())
    }

    fn render(
        &mut self,
        doc: &mut PdfDocument<'_>,
        index: usize,
        size: RenderSize,
    ) -> Result<PageImage, String> {
        self.stamp(doc, index)?;
        let i = i32::try_from(index).map_err(|_| "page index out of range".to_string())?;
        let page = doc.pages().get(i).map_err(|e| e.to_string())?;
        let cfg = PdfRenderConfig::new()
            .set_reverse_byte_order(true)
            .render_form_data(true)
            .render_annotations(true)
            .set_maximum_width(MAX_PIXELS as i32)
            .set_maximum_height(MAX_PIXELS as i32);
        let cfg = match size {
            RenderSize::Width(px) => cfg.set_target_width(px.clamp(16, MAX_PIXELS) as i32),
            RenderSize::Dpi(dpi) => cfg.scale_page_by_factor(dpi as f32 / 72.0),
        };
        let bitmap = page.render_with_config(&cfg).map_err(|e| e.to_string())?;
        let (width, height) = (bitmap.width() as usize, bitmap.height() as usize);
        let raw = bitmap.as_raw_bytes();
        if height == 0 || width == 0 {
            return Err("empty page".into());
        }
        let stride = raw.len() / height;
        if stride < width * 4 {
            return Err("unexpected bitmap layout".into());
        }
        let mut rgba = Vec::with_capacity(width * height * 4);
        for row in raw.chunks_exact(stride) {
            rgba.extend_from_slice(&row[..width * 4]);
        }
        Ok(PageImage::from_rgba(width, height, &rgba))
    }

    fn print(
        &mut self,
        doc: &mut PdfDocument<'_>,
        pages: &[usize],
        dpi: u32,
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut images = Vec::with_capacity(pages.len());
        for &p in pages {
            let img = self.render(doc, p, RenderSize::Dpi(dpi))?;
            images.push(img);
        }
        Ok(Zeroizing::new(images_to_pdf(&images, dpi)))
    }
}

fn read_outline(doc: &PdfDocument<'_>) -> Vec<OutlineEntry> {
    const MAX_ENTRIES: usize = 2000;
    let mut out = Vec::new();
    let Some(root) = doc.bookmarks().root() else {
        return out;
    };
    // Depth-first over siblings and children, bounded (a hostile outline may loop).
    let mut stack = vec![(root, 0usize)];
    while let Some((b, depth)) = stack.pop() {
        if out.len() >= MAX_ENTRIES {
            break;
        }
        let page = b
            .destination()
            .and_then(|d| d.page_index().ok())
            .or_else(|| {
                b.action().and_then(|a| {
                    a.as_local_destination_action()
                        .and_then(|l| l.destination().ok())
                        .and_then(|d| d.page_index().ok())
                })
            })
            .and_then(|i| usize::try_from(i).ok());
        out.push(OutlineEntry {
            depth,
            title: b.title().unwrap_or_default(),
            page,
        });
        if let Some(next) = b.next_sibling() {
            stack.push((next, depth));
        }
        if depth < 8
            && let Some(child) = b.first_child()
        {
            stack.push((child, depth + 1));
        }
    }
    out
}

/// Wraps RGBA page images into a minimal PDF (one uncompressed RGB image per page), for
/// `lp`. The bytes stay in memory and go to the print spooler through a pipe.
pub fn images_to_pdf(images: &[PageImage], dpi: u32) -> Vec<u8> {
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets: Vec<usize> = Vec::new();
    let n = images.len();
    // Objects: 1 catalog, 2 pages, then per page: page, content, image.
    let obj = |out: &mut Vec<u8>, offsets: &mut Vec<usize>, body: &[u8]| {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    obj(&mut out, &mut offsets, b"<< /Type /Catalog /Pages 2 0 R >>");
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 3 + i * 3)).collect();
    obj(
        &mut out,
        &mut offsets,
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).as_bytes(),
    );
    let scale = 72.0 / dpi.max(1) as f32;
    for (i, img) in images.iter().enumerate() {
        let (w, h) = (img.width as f32 * scale, img.height as f32 * scale);
        let page_no = 3 + i * 3;
        obj(
            &mut out,
            &mut offsets,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w:.2} {h:.2}] /Resources << /XObject << /Im0 {} 0 R >> >> /Contents {} 0 R >>",
                page_no + 2,
                page_no + 1
            )
            .as_bytes(),
        );
        let content = format!("q {w:.2} 0 0 {h:.2} 0 0 cm /Im0 Do Q");
        obj(
            &mut out,
            &mut offsets,
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .as_bytes(),
        );
        let mut rgb = Vec::with_capacity(img.width * img.height * 3);
        for px in img.rgba().chunks_exact(4) {
            rgb.extend_from_slice(&px[..3]);
        }
        let mut body = format!(
            "<< /Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length {} >>\nstream\n",
            img.width,
            img.height,
            rgb.len()
        )
        .into_bytes();
        body.extend_from_slice(&rgb);
        body.extend_from_slice(b"\nendstream");
        obj(&mut out, &mut offsets, &body);
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for o in &offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    out
}
