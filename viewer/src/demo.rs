//! The demo: a DEMO publisher, a DEMO emulated card, the sample package and a generous
//! DEMO licence, all regenerated reproducibly by `samples/make-samples.sh`, and
//! `tally-view --demo`, which opens them with the demo card copied into `TALLY_HOME`.
//!
//! Everything here is marked DEMO. The demo keys come from a public seed, so they
//! protect nothing: the demo publisher is trusted only in `--demo` mode, and a real
//! viewer's trust list refuses it (`tally-view trust add` rejects demo publishers).

use anyhow::{Context as _, bail};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::{PackOptions, seal_package};
use tally_core::policy::{Limits, Rights};
use tally_core::trail::LicenceId;
use tally_core::vendor::{KdfParams, VendorPublic, VendorSecret};
use tally_core::{CardIdentity, PublicKey};

/// The demo publisher's secret-file password (documented in `samples/README.md`).
pub const DEMO_VENDOR_PASSWORD: &str = "tally-demo-vendor";
/// The demo customer (the watermark says so).
pub const DEMO_CUSTOMER: &str = "DEMO Reader";
/// File names inside `samples/`.
pub const PDF: &str = "sample.pdf";
/// The sealed package.
pub const PACKAGE: &str = "sample.tly";
/// The demo licence.
pub const KEYFILE: &str = "sample.tkey";
/// The demo publisher's public file.
pub const VENDOR_PUBLIC: &str = "demo-vendor.pub";
/// The demo publisher's secret file (password above).
pub const VENDOR_SECRET: &str = "demo-vendor.secret";
/// The demo card's state (its private key included: DEMO only).
pub const CARD: &str = "demo-card.state";
/// Where `--demo` keeps its copy of the demo card inside `TALLY_HOME`.
pub const HOME_CARD: &str = "demo-card.state";

/// A deterministic generator for the demo files: SHA-256 in counter mode over a public
/// seed. It is marked `CryptoRng` only so core's APIs accept it; the keys it makes are
/// public by construction and must never protect anything real.
#[derive(Debug)]
pub struct DemoRng {
    seed: [u8; 32],
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl DemoRng {
    /// A generator for `label` (one per kind of demo file, so each is stable alone).
    pub fn new(label: &str) -> Self {
        let seed: [u8; 32] = Sha256::digest(format!("tally DEMO seed/{label}")).into();
        Self {
            seed,
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for DemoRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.buf = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *d = self.buf[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for DemoRng {}

/// The demo licence's limits: generous, with print and copy.
pub fn demo_limits() -> Limits {
    Limits {
        pages: Some(5000),
        minutes: Some(6000),
        opens: Some(500),
        prints: Some(50),
        not_after: Some(time::macros::datetime!(2036-12-31 23:59:59 UTC)),
        rights: Rights {
            print: true,
            copy: true,
        },
        ..Limits::default()
    }
}

fn card_identity(state: &CardState) -> CardIdentity {
    CardIdentity {
        serial: state.serial,
        public_key: PublicKey::from_verifying_key(state.key.verifying_key()),
        origin: state.origin,
    }
}

/// Writes the demo publisher, card, package and licence for the PDF at
/// `<dir>/sample.pdf` into `dir`. Byte-for-byte reproducible.
pub fn make_samples(dir: &Path) -> anyhow::Result<()> {
    let pdf_path = dir.join(PDF);
    let pdf =
        std::fs::read(&pdf_path).with_context(|| format!("reading {}", pdf_path.display()))?;
    let pages = page_count(&pdf)?;

    let mut rng = DemoRng::new("vendor");
    let vendor = VendorSecret::generate("DEMO Publisher", true, &mut rng)?;
    let sealed = vendor.seal(DEMO_VENDOR_PASSWORD.as_bytes(), KdfParams::FLOOR, &mut rng)?;
    std::fs::write(dir.join(VENDOR_SECRET), sealed)?;
    std::fs::write(dir.join(VENDOR_PUBLIC), vendor.public().to_export(&vendor))?;

    let mut rng = DemoRng::new("card");
    let card = CardState::generate(&mut rng, 1000, "DEMO card - not for real rentals");
    let card_path = dir.join(CARD);
    if card_path.exists() {
        std::fs::remove_file(&card_path)?;
    }
    EmulatedCard::create(&card_path, &card)?;

    let mut rng = DemoRng::new("package");
    let mut out = Vec::new();
    let (header, key) = seal_package(
        &vendor,
        &PackOptions::new("Shakespeare's Sonnets (DEMO)", pages),
        pdf.len() as u64,
        &pdf[..],
        std::io::Cursor::new(&mut out),
        &mut rng,
        &mut |_| {},
    )?;
    std::fs::write(dir.join(PACKAGE), out)?;

    let mut rng = DemoRng::new("keyfile");
    let mut lic = [0u8; 16];
    rng.fill_bytes(&mut lic);
    let cis = Cis {
        licence: LicenceId(lic),
        document: header.document_id(),
        card: card_identity(&card),
        card_agreement_key: card.agreement_key(),
        // The DEMO card stays emulated: no issuer vouches for it, and this licence says so.
        issuers: Vec::new(),
        customer_name: DEMO_CUSTOMER.into(),
        content_key: key,
        limits: demo_limits(),
        allow_emulated_card: true,
        server: None,
        issued_at: time::macros::datetime!(2026-01-01 00:00:00 UTC),
    };
    let kf = Keyfile::issue(&vendor, &cis, &mut rng)?;
    std::fs::write(dir.join(KEYFILE), kf)?;
    Ok(())
}

/// Counts the pages of a PDF with pdfium.
pub fn page_count(pdf: &[u8]) -> anyhow::Result<u32> {
    let pdfium = crate::render::pdfium().map_err(anyhow::Error::msg)?;
    let doc = pdfium
        .load_pdf_from_byte_slice(pdf, None)
        .map_err(|e| anyhow::anyhow!("not a readable PDF: {e}"))?;
    let n = doc.pages().len();
    if n < 1 {
        bail!("the PDF has no pages");
    }
    Ok(n as u32)
}

/// The samples folder: `TALLY_SAMPLES`, else next to the executable's repository, else
/// the source tree's.
pub fn samples_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TALLY_SAMPLES") {
        return PathBuf::from(d);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for up in ["../../samples", "../../../samples"] {
            let p = dir.join(up);
            if p.join(PACKAGE).exists() {
                return p;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

/// What `--demo` opens.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The package.
    pub package: PathBuf,
    /// The licence.
    pub keyfile: PathBuf,
    /// The demo card inside the home folder.
    pub card: PathBuf,
    /// The demo publisher (trusted for this run only).
    pub vendor: VendorPublic,
}

/// Prepares `--demo`: finds the samples and copies the demo card into `home` on first
/// use (later runs keep that copy, so its counter and trail carry on).
pub fn prepare(home: &Path) -> anyhow::Result<Demo> {
    let dir = samples_dir();
    let package = dir.join(PACKAGE);
    let keyfile = dir.join(KEYFILE);
    for p in [&package, &keyfile] {
        if !p.exists() {
            bail!(
                "the demo files are missing ({}); run samples/make-samples.sh",
                p.display()
            );
        }
    }
    let vendor_path = dir.join(VENDOR_PUBLIC);
    let vendor = VendorPublic::from_export(
        &std::fs::read(&vendor_path)
            .with_context(|| format!("reading {}", vendor_path.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("demo publisher file: {e}"))?;
    if !vendor.is_demo() {
        bail!("the demo publisher file is not marked DEMO");
    }
    let card = home.join(HOME_CARD);
    if !card.exists() {
        std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
        // The sample is public by design (DEMO keys from a public seed) and a checkout
        // leaves it world-readable, so it is read as bytes; the copy is created 0600.
        let sample = dir.join(CARD);
        let bytes = std::fs::read(&sample)
            .with_context(|| format!("reading the demo card {}", sample.display()))?;
        let state = tally_core::card::emulated::decode_state(&bytes)
            .map_err(|e| anyhow::anyhow!("the demo card {}: {e}", sample.display()))?;
        EmulatedCard::create(&card, &state)?;
    }
    Ok(Demo {
        package,
        keyfile,
        card,
        vendor,
    })
}
