//! The one thing the packer asks pdfium: can this file be opened, and how many pages has it.

use anyhow::{Context, Result, anyhow};
use pdfium_render::prelude::Pdfium;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the folder that holds libpdfium.
pub const ENV: &str = "TALLY_PDFIUM_DIR";

/// The folder holding libpdfium: `TALLY_PDFIUM_DIR`, else `<exe dir>/../../.deps/pdfium`
/// (the repository's `.deps` when running from `target/<profile>/`).
pub fn library_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(ENV) {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    dir.join("../../.deps/pdfium")
}

static PDFIUM: OnceLock<std::result::Result<Pdfium, String>> = OnceLock::new();

fn pdfium() -> Result<&'static Pdfium> {
    PDFIUM
        .get_or_init(|| {
            let dir = library_dir();
            let lib = Pdfium::pdfium_platform_library_name_at_path(&dir);
            Pdfium::bind_to_library(&lib)
                .map(Pdfium::new)
                .map_err(|e| format!("cannot load pdfium from {}: {e} (set {ENV})", lib.display()))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// Opens `path` with pdfium (streaming from the file, not reading it into memory) and
/// counts its pages. `Ok(Err(reason))` means pdfium refused the document.
pub fn page_count(path: &Path) -> Result<std::result::Result<u32, String>> {
    let pdfium = pdfium().context("loading pdfium")?;
    match pdfium.load_pdf_from_file(path, None) {
        Ok(doc) => {
            let n = doc.pages().len();
            Ok(u32::try_from(n).map_err(|_| format!("pdfium reports {n} pages")))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}
