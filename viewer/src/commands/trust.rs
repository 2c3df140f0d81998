//! `tally-view trust add | list | remove`: the publishers whose keyfiles this viewer opens
//! (T22). Kept as their public files in `<TALLY_HOME>/vendors/<fingerprint>.pub`.

use super::{Failure, Outcome};
use crate::cli::TrustCommand;
use anyhow::Context as _;
use std::path::PathBuf;
use tally_core::home::Home;
use tally_core::vendor::{PUBLIC_MAX_BYTES, VendorPublic};

fn dir(home: &Home) -> PathBuf {
    home.vendors_dir()
}

/// The trusted publishers. Demo publishers are never among them (they are trusted only
/// for `--demo`); damaged files are skipped with a warning.
pub fn trusted(home: &Home) -> Vec<VendorPublic> {
    let (vendors, warnings) = home.trusted_vendors();
    for w in warnings {
        eprintln!("warning: {w}");
    }
    vendors
}

/// Runs a trust subcommand.
pub fn run(cmd: &TrustCommand, home: &Home) -> Outcome {
    match cmd {
        TrustCommand::Add { file } => {
            let meta =
                std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
            if meta.len() > PUBLIC_MAX_BYTES as u64 {
                return Err(Failure::Check(anyhow::anyhow!(
                    "{} is not a publisher file (too large)",
                    file.display()
                )));
            }
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let v = VendorPublic::from_export(&bytes)
                .map_err(|e| Failure::Check(anyhow::anyhow!("{}: {e}", file.display())))?;
            if v.is_demo() {
                return Err(Failure::Check(anyhow::anyhow!(
                    "{} is a DEMO publisher: demo publishers are trusted only in --demo mode",
                    v.name()
                )));
            }
            let d = dir(home);
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            let dest = d.join(format!("{}.pub", v.fingerprint_hex()));
            std::fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
            println!(
                "trusted publisher \"{}\" ({})",
                v.name(),
                v.fingerprint_hex()
            );
            Ok(())
        }
        TrustCommand::List => {
            for v in trusted(home) {
                println!("{}  {}", v.fingerprint_hex(), v.name());
            }
            Ok(())
        }
        TrustCommand::Remove { fingerprint } => {
            if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "a fingerprint is 64 hex digits (see `tally-view trust list`)"
                )));
            }
            let p = dir(home).join(format!("{}.pub", fingerprint.to_ascii_lowercase()));
            std::fs::remove_file(&p).map_err(|_| {
                Failure::Check(anyhow::anyhow!("no trusted publisher {fingerprint}"))
            })?;
            println!("publisher {fingerprint} is no longer trusted");
            Ok(())
        }
    }
}
