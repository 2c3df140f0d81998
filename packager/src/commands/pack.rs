//! `tally-pack pack INPUT.pdf -o DOC.tly`: one package per document, the same for
//! every customer (claim 30).

use super::{Ctx, refused};
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally_core::package::{PackOptions, seal_package};

/// Inputs at least this large get a progress bar.
const PROGRESS_FROM: u64 = 32 << 20;

/// Arguments of `pack`.
#[derive(Args, Debug)]
pub struct PackArgs {
    /// The PDF to encrypt.
    pub input: PathBuf,
    /// Where to write the package (refuses to overwrite).
    #[arg(short, long, value_name = "DOC.tly")]
    pub output: PathBuf,
    /// The title readers see (default: the input's file name without extension).
    #[arg(long)]
    pub title: Option<String>,
    /// Allow at most N loans of this document out at once (`issue` refuses beyond; a
    /// returned, revoked or ended loan frees its place). Change it later with `loans`.
    #[arg(long, value_name = "N")]
    pub loans: Option<u64>,
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Refuses anything that is not a PDF pdfium can open; returns the page count.
fn check_pdf(input: &Path) -> Result<u32> {
    let mut magic = [0u8; 5];
    let mut f =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let n = f
        .read(&mut magic)
        .with_context(|| format!("reading {}", input.display()))?;
    if n < 5 || &magic != b"%PDF-" {
        return Err(refused(format!(
            "{} is not a PDF (it does not start with %PDF-)",
            input.display()
        )));
    }
    match crate::pdf::page_count(input)? {
        Ok(0) => Err(refused(format!("{} has no pages", input.display()))),
        Ok(n) => Ok(n),
        Err(reason) => Err(refused(format!(
            "{} is not a readable PDF: {reason}",
            input.display()
        ))),
    }
}

/// Runs `pack`.
pub fn run(ctx: &Ctx, args: PackArgs) -> Result<ExitCode> {
    if args.output.exists() {
        return Err(refused(format!(
            "{} already exists; refusing to overwrite it",
            args.output.display()
        )));
    }
    let pages = check_pdf(&args.input)?;
    let title = match args.title {
        Some(t) => t,
        None => args
            .input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Untitled".into()),
    };
    let vendor = ctx.open_vendor()?;
    let mut registry = ctx.registry()?;

    let input = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let size = input.metadata()?.len();
    let dir = tally_core::files::parent_dir(&args.output);
    let mut tmp_name = args
        .output
        .file_name()
        .context("output has no file name")?
        .to_os_string();
    tmp_name.push(format!(".partial{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, out);
    let bar = if size >= PROGRESS_FROM {
        let b = ProgressBar::new(size);
        b.set_style(
            ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("packing");
        b
    } else {
        ProgressBar::hidden()
    };
    let result = seal_package(
        &vendor,
        &PackOptions::new(title, pages),
        size,
        input,
        &mut writer,
        &mut tally_core::crypto::OsRng,
        &mut |done| bar.set_position(done),
    );
    bar.finish_and_clear();
    let finish = |writer: std::io::BufWriter<std::fs::File>| -> Result<()> {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    };
    let (header, key) = match result
        .map_err(anyhow::Error::from)
        .and_then(|(h, k)| finish(writer).map(|()| (h, k)))
    {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("packing {}", args.input.display())));
        }
    };
    // Where the package will be, so `serve` finds it with no --packages flag.
    let location = std::path::absolute(&args.output)
        .with_context(|| format!("resolving {}", args.output.display()))?;
    // One more read of the file just written: its SHA-256 (the registry's record of the
    // whole file) and the chunk digests of ICV V8, both fixed now. The header's place was
    // filled in last (it signs a digest of the body), so the file is hashed as it is on
    // disk rather than as it was written.
    let digests = std::fs::File::open(&tmp)
        .and_then(|f| {
            let len = f.metadata()?.len();
            let mut reader = HashingReader {
                inner: std::io::BufReader::with_capacity(1 << 20, f),
                hash: Sha256::new(),
            };
            let d = tally_core::icv::ChunkDigests::read(&mut reader, len)?;
            Ok((d, hex::encode(reader.hash.finalize())))
        })
        .with_context(|| format!("reading back {}", tmp.display()));
    let (digests, sum) = match digests {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = registry.add_package(
        &vendor,
        &header,
        &sum,
        &key,
        Some(&location),
        Some(&digests.to_bytes()),
    ) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context("recording the package in the registry"));
    }
    if let Some(cap) = args.loans
        && let Err(e) = crate::server::returns::set_cap(
            registry.connection(),
            &header.document_id().to_hex(),
            Some(cap),
        )
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context("recording the loan cap in the registry"));
    }
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.output.display()))?;
    tally_core::files::sync_dir(dir)?;
    println!(
        "packed `{}`: {} page{}, {} bytes → {} (document {})",
        header.title(),
        header.page_count(),
        if header.page_count() == 1 { "" } else { "s" },
        header.plaintext_size(),
        args.output.display(),
        header.document_id()
    );
    println!("sha256: {sum}");
    if let Some(cap) = args.loans {
        println!("loans: at most {cap} out at once");
    }
    Ok(ExitCode::SUCCESS)
}
