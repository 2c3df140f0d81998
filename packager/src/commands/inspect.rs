//! `tally-pack inspect FILE`: what a Tally file is, what it says, and whether it verifies.
//!
//! Each kind of file has one `inspect_*` function filling a [`Report`]; adding a kind
//! is a [`Kind`] variant, a line in [`detect`] and one function.

use super::{Ctx, refused};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally_core::card::CardIdentity;
use tally_core::package::{BodyCheck, PackageError, PackageHeader, open_package};
use tally_core::vendor::{VendorPublic, VendorSecret};

/// Arguments of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The file to inspect.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// A vendor public file to trust (repeatable). The `--vendor` folder's own public
    /// file is always trusted.
    #[arg(long, value_name = "VENDOR_FILE")]
    pub trust: Vec<PathBuf>,
    /// For a package: also decrypt the whole body with the content key kept in the
    /// vendor's registry (needs the vendor password).
    #[arg(long)]
    pub full: bool,
}

/// The kinds of Tally file `inspect` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A package (`TALLYPKG`).
    Package,
    /// A vendor's encrypted secret keys (`TALLYVSK`).
    VendorSecret,
    /// A vendor public file (`tally-vendor/1`).
    VendorPublic,
    /// A card file (`tally-card/1`).
    Card,
    /// A keyfile (`TALLYKEY`).
    Keyfile,
}

/// Recognises a file by its first bytes.
pub fn detect(prefix: &[u8]) -> Option<Kind> {
    if prefix.starts_with(tally_core::package::MAGIC) {
        Some(Kind::Package)
    } else if prefix.starts_with(b"TALLYVSK") {
        Some(Kind::VendorSecret)
    } else if prefix.starts_with(b"tally-vendor/1\n") {
        Some(Kind::VendorPublic)
    } else if prefix.starts_with(b"tally-card/1\n") {
        Some(Kind::Card)
    } else if prefix.starts_with(tally_core::keyfile::MAGIC) {
        Some(Kind::Keyfile)
    } else {
        None
    }
}

/// What `inspect` found: ordered fields, problems, and the verdict.
pub struct Report {
    kind: &'static str,
    fields: Vec<(&'static str, Value)>,
    problems: Vec<String>,
    /// Why only part of the file could be checked (a package whose body nothing vouches
    /// for here): then it is not said to verify, though nothing failed.
    partial: Option<String>,
}

impl Report {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            fields: Vec::new(),
            problems: Vec::new(),
            partial: None,
        }
    }
    /// Adds a field.
    pub fn field(&mut self, name: &'static str, v: impl Into<Value>) {
        self.fields.push((name, v.into()));
    }
    /// Records why the file does not verify.
    pub fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
    /// Nothing failed.
    fn passes(&self) -> bool {
        self.problems.is_empty()
    }
    /// Nothing failed and every part was checked.
    fn verifies(&self) -> bool {
        self.passes() && self.partial.is_none()
    }
    fn print(&self, as_json: bool) -> Result<()> {
        if as_json {
            let mut m = serde_json::Map::new();
            m.insert("kind".into(), self.kind.into());
            for (k, v) in &self.fields {
                m.insert((*k).into(), v.clone());
            }
            m.insert("verifies".into(), self.verifies().into());
            if let (true, Some(why)) = (self.passes(), &self.partial) {
                m.insert("partly_checked".into(), why.clone().into());
            }
            m.insert("problems".into(), self.problems.clone().into());
            println!("{}", serde_json::to_string_pretty(&Value::Object(m))?);
            return Ok(());
        }
        println!("kind: {}", self.kind);
        for (k, v) in &self.fields {
            match v {
                Value::String(s) => println!("{k}: {s}"),
                other => println!("{k}: {other}"),
            }
        }
        if self.verifies() {
            println!("verifies: yes");
        } else if let (true, Some(why)) = (self.passes(), &self.partial) {
            println!("verifies: header only ({why})");
        } else {
            println!("verifies: NO");
            for p in &self.problems {
                println!("problem: {p}");
            }
        }
        Ok(())
    }
}

/// Runs `inspect`.
pub fn run(ctx: &Ctx, args: InspectArgs) -> Result<ExitCode> {
    let path = &args.file;
    let mut prefix = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(32)
        .read_to_end(&mut prefix)
        .with_context(|| format!("reading {}", path.display()))?;
    let Some(kind) = detect(&prefix) else {
        return Err(refused(format!("{} is not a Tally file", path.display())));
    };
    let report = match kind {
        Kind::Package => inspect_package(ctx, &args)?,
        Kind::VendorSecret => inspect_vendor_secret(path)?,
        Kind::VendorPublic => inspect_vendor_public(path)?,
        Kind::Card => inspect_card(ctx, path)?,
        Kind::Keyfile => inspect_keyfile(ctx, &args)?,
    };
    report.print(args.json)?;
    Ok(if report.passes() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(64 * 1024)
        .read_to_end(&mut b)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(b)
}

/// The vendors a package may be signed by: `--trust` files and the `--vendor` folder's.
fn trust_list(ctx: &Ctx, files: &[PathBuf]) -> Result<Vec<VendorPublic>> {
    let mut trust = Vec::new();
    for f in files {
        let v = VendorPublic::from_export(&read_small(f)?)
            .with_context(|| format!("trusted vendor file {}", f.display()))?;
        trust.push(v);
    }
    if let Some(own) = ctx.vendor_public()? {
        trust.push(own);
    }
    Ok(trust)
}

fn inspect_package(ctx: &Ctx, args: &InspectArgs) -> Result<Report> {
    let mut r = Report::new("package");
    let path = &args.file;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let header = match PackageHeader::read_unverified(&mut file) {
        Ok(h) => h,
        Err(PackageError::Io(e)) => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(e) => {
            r.problem(format!("header: {e}"));
            return Ok(r);
        }
    };
    r.field("format_version", header.version());
    r.field("document_id", header.document_id().to_hex());
    r.field("title", header.title());
    r.field("media_type", header.media_type());
    r.field("pages", header.page_count());
    r.field("plaintext_size", header.plaintext_size());
    r.field("chunk_size", header.chunk_size());
    r.field("chunks", header.chunk_count());
    r.field(
        "vendor_fingerprint",
        hex::encode(header.vendor_fingerprint()),
    );
    let trust = trust_list(ctx, &args.trust)?;
    if trust.is_empty() {
        r.problem("signature not checked: no trusted vendor (pass --trust FILE or --vendor DIR)");
    } else {
        match header.verify(&trust) {
            Ok(v) => {
                r.field("vendor", v.name());
                r.field("signature", "valid");
            }
            Err(e) => r.problem(format!("header: {e}")),
        }
    }
    // The body, without any key: its length, and (format 2) the digest the header signs.
    // `file` is just past the header.
    let body = match header.check_body(std::io::BufReader::with_capacity(1 << 20, file)) {
        Ok(b) => Some(b),
        Err(PackageError::Io(e)) => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(e) => {
            r.problem(format!("body: {e}"));
            None
        }
    };
    let header_ok = r.passes();
    match body {
        Some(BodyCheck::Signed) if header_ok => r.field(
            "body",
            "matches the digest signed in the header (the whole file is checked)",
        ),
        Some(BodyCheck::Signed) => r.field(
            "body",
            "matches the digest in the header, which is worth nothing until its signature verifies",
        ),
        // Format 1 signs the header only: the whole file against the SHA-256 `pack`
        // recorded in this vendor's registry, if it is there.
        Some(_) if header_ok => {
            let recorded = match ctx.registry() {
                Ok(mut reg) => reg.package(&header.document_id())?.map(|p| p.sha256),
                Err(_) => None,
            };
            match recorded {
                Some(want) => {
                    let f = std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    let got = sha256_reader(std::io::BufReader::new(f))
                        .with_context(|| format!("reading {}", path.display()))?;
                    if got == want {
                        r.field(
                            "body",
                            "not covered by the signature (format 1); the whole file matches the SHA-256 recorded by `pack`",
                        );
                    } else {
                        r.problem(
                            "body: the file's SHA-256 is not the one `pack` recorded for this document (bytes changed)",
                        );
                    }
                }
                None if !args.full => {
                    r.partial = Some(
                        "format 1 does not sign the body, and this document is not in the --vendor registry, so only --full with its key could check it".into(),
                    );
                }
                None => {}
            }
        }
        _ => {}
    }
    if args.full && header_ok {
        let vendor = ctx.open_vendor()?;
        let key = ctx
            .registry()?
            .content_key(&vendor, &header.document_id())?;
        match key {
            None => r.problem("--full: this document is not in the vendor's registry"),
            Some(key) => {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                match open_package(std::io::BufReader::new(f), &trust, &key) {
                    Ok((_, plain)) => r.field("body", format!("decrypts ({} bytes)", plain.len())),
                    Err(PackageError::Io(e)) => {
                        return Err(e).with_context(|| format!("reading {}", path.display()));
                    }
                    Err(e) => r.problem(format!("body: {e}")),
                }
            }
        }
    }
    Ok(r)
}

/// The SHA-256 of everything `reader` yields, as lower-case hex.
fn sha256_reader(mut reader: impl Read) -> std::io::Result<String> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn inspect_vendor_secret(path: &Path) -> Result<Report> {
    let mut r = Report::new("vendor-secret");
    let bytes = read_small(path)?;
    match VendorSecret::peek_params(&bytes) {
        Ok(p) => {
            r.field("kdf", p.to_string());
            r.field("note", "encrypted; the vendor password opens it");
            if let Err(e) = tally_core::vendor::KdfParams::new(p.m_kib(), p.t(), p.p()) {
                r.problem(e.to_string());
            }
        }
        Err(e) => r.problem(e.to_string()),
    }
    Ok(r)
}

fn inspect_vendor_public(path: &Path) -> Result<Report> {
    let mut r = Report::new("vendor-public");
    match VendorPublic::from_export(&read_small(path)?) {
        Ok(v) => {
            r.field("name", v.name());
            r.field("demo", v.is_demo());
            r.field("fingerprint", v.fingerprint_hex());
            r.field(
                "signing_key",
                hex::encode(&v.signing_key().fingerprint()[..8]),
            );
            r.field(
                "tracing_key",
                hex::encode(&v.tracing_key().fingerprint()[..8]),
            );
            r.field("signature", "valid (self-signed)");
        }
        Err(e) => r.problem(e.to_string()),
    }
    Ok(r)
}

fn inspect_card(ctx: &Ctx, path: &Path) -> Result<Report> {
    let mut r = Report::new("card");
    match CardIdentity::from_export(&read_small(path)?) {
        Ok((card, label)) => {
            r.field("serial", card.serial.to_hex());
            r.field("public_key", hex::encode(card.public_key.as_bytes()));
            r.field(
                "key_fingerprint",
                hex::encode(card.public_key.fingerprint()),
            );
            r.field("origin", card.origin);
            if let Some(l) = label {
                r.field("label", l);
            }
            if ctx.existing_vendor_dir().is_ok() {
                let owner = ctx
                    .registry()?
                    .customers()?
                    .into_iter()
                    .find(|c| c.card == card)
                    .map(|c| c.name);
                r.field("customer", owner.map_or(Value::Null, Value::from));
            }
        }
        Err(e) => r.problem(e.to_string()),
    }
    Ok(r)
}

fn inspect_keyfile(ctx: &Ctx, args: &InspectArgs) -> Result<Report> {
    use tally_core::keyfile::{Keyfile, MAX_KEYFILE_BYTES};
    let mut r = Report::new("keyfile");
    let path = &args.file;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(MAX_KEYFILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    r.field("size", bytes.len());
    match Keyfile::peek(&bytes) {
        Ok(h) => r.field("vendor_fingerprint", hex::encode(h.vendor_fingerprint)),
        Err(e) => {
            r.problem(e.to_string());
            return Ok(r);
        }
    }
    let trust = trust_list(ctx, &args.trust)?;
    if trust.is_empty() {
        r.problem("signature not checked: no trusted vendor (pass --trust FILE or --vendor DIR)");
        return Ok(r);
    }
    match Keyfile::open(&bytes, &trust) {
        Ok(k) => {
            r.field("vendor", k.vendor().name());
            r.field("signature", "valid");
            r.field("licence", k.licence().to_hex());
            r.field("document_id", k.document().to_hex());
            r.field("customer", k.customer_name());
            r.field("card_serial", k.card().serial.to_hex());
            r.field("allows", super::issue::summary(k.limits()));
            r.field(
                "emulated_card",
                if k.allows_emulated_card() {
                    "accepted"
                } else {
                    "refused"
                },
            );
            r.field(
                "card_issuers",
                k.issuers()
                    .iter()
                    .map(|i| i.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            r.field(
                "issued_at",
                k.issued_at()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            );
            match k.server() {
                Some(s) => r.field("server", s.url.clone()),
                None => r.field("server", "none (offline only)"),
            }
            r.field("policy", k.limits().to_text());
        }
        Err(e) => r.problem(e.to_string()),
    }
    Ok(r)
}
