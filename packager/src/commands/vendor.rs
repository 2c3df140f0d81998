//! `tally-pack vendor init|export|issuer`: the vendor's keys (\[0065\]) and the card
//! issuers whose attestation the vendor accepts (T16).

use super::{Ctx, PUBLIC_FILE, SECRET_FILE, refused};
use crate::registry::Registry;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally_core::card::attestation::{ISSUER_FILE_MAX_BYTES, IssuerPublic, MAX_ISSUERS};
use tally_core::vendor::{KdfParams, VendorSecret};

/// Vendor key commands.
#[derive(Subcommand, Debug)]
pub enum VendorCommand {
    /// Create a signing key, a tracing key and a layout key, encrypted under the
    /// vendor password (argon2id, at least 64 MiB and 3 passes, then AES-256-GCM).
    /// Refuses to overwrite existing keys.
    Init {
        /// The vendor's name, shown to readers.
        #[arg(long)]
        name: String,
        /// Mark this vendor as a demonstration vendor.
        #[arg(long)]
        demo: bool,
    },
    /// Write the public file that viewers trust (needs the password: the file is
    /// self-signed).
    Export {
        /// Where to write it (`-` for standard output).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// The card issuers whose attestation this vendor accepts: `customer add` refuses a
    /// card none of them vouches for, and every keyfile carries the list (signed).
    #[command(subcommand)]
    Issuer(IssuerCommand),
}

/// Card issuer commands.
#[derive(Subcommand, Debug)]
pub enum IssuerCommand {
    /// Accept the card issuer whose public file this is (`tally-card-issuer/1`).
    Add {
        /// The issuer's public file.
        #[arg(value_name = "ISSUER_PUB")]
        file: PathBuf,
    },
    /// List the accepted card issuers.
    List,
}

/// The folder of accepted issuers inside the vendor folder.
pub const ISSUERS_DIR: &str = "card-issuers";

/// The card issuers this vendor accepts, in file-name order. A malformed file is an
/// error, never skipped: the list decides which cards count.
pub fn accepted_issuers(vendor_dir: &Path) -> Result<Vec<IssuerPublic>> {
    let dir = vendor_dir.join(ISSUERS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    paths.retain(|p| p.extension().is_some_and(|x| x == "pub"));
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let bytes = tally_core::files::read_bounded(p, ISSUER_FILE_MAX_BYTES as u64)
                .with_context(|| format!("reading {}", p.display()))?;
            IssuerPublic::from_export(&bytes).map_err(|e| refused(format!("{}: {e}", p.display())))
        })
        .collect()
}

fn issuer(ctx: &Ctx, cmd: IssuerCommand) -> Result<ExitCode> {
    let dir = ctx.existing_vendor_dir()?;
    match cmd {
        IssuerCommand::Add { file } => {
            let bytes = tally_core::files::read_bounded(&file, ISSUER_FILE_MAX_BYTES as u64)
                .with_context(|| format!("reading {}", file.display()))?;
            let issuer = IssuerPublic::from_export(&bytes)
                .map_err(|e| refused(format!("{}: {e}", file.display())))?;
            let current = accepted_issuers(dir)?;
            if current.iter().any(|i| i.key() == issuer.key()) {
                println!("card issuer `{}` is already accepted", issuer.name());
                return Ok(ExitCode::SUCCESS);
            }
            if current.len() >= MAX_ISSUERS {
                return Err(refused(format!(
                    "at most {MAX_ISSUERS} card issuers fit in a keyfile"
                )));
            }
            let target = dir
                .join(ISSUERS_DIR)
                .join(format!("{}.pub", hex::encode(&issuer.fingerprint()[..8])));
            std::fs::create_dir_all(dir.join(ISSUERS_DIR))
                .with_context(|| format!("creating {}", dir.join(ISSUERS_DIR).display()))?;
            tally_core::files::atomic_write(&target, issuer.to_export().as_bytes())
                .with_context(|| format!("writing {}", target.display()))?;
            println!(
                "accepted card issuer `{}` (key {})",
                issuer.name(),
                hex::encode(&issuer.fingerprint()[..8])
            );
            if issuer.is_test_issuer() {
                eprintln!(
                    "warning: `{}` is a test issuer; its secret is public, so cards it attests prove nothing",
                    issuer.name()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IssuerCommand::List => {
            let list = accepted_issuers(dir)?;
            if list.is_empty() {
                println!("no card issuers accepted (only emulated-card keyfiles can be issued)");
            }
            for i in &list {
                println!("{}  {}", hex::encode(&i.fingerprint()[..8]), i.name());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a vendor command.
pub fn run(ctx: &Ctx, cmd: VendorCommand) -> Result<ExitCode> {
    match cmd {
        VendorCommand::Init { name, demo } => init(ctx, &name, demo),
        VendorCommand::Export { output } => export(ctx, &output),
        VendorCommand::Issuer(cmd) => issuer(ctx, cmd),
    }
}

fn init(ctx: &Ctx, name: &str, demo: bool) -> Result<ExitCode> {
    let dir = ctx.vendor_dir()?;
    let secret_path = dir.join(SECRET_FILE);
    if secret_path.exists() {
        return Err(refused(format!(
            "{} already holds vendor keys; refusing to overwrite them",
            dir.display()
        )));
    }
    let vendor = VendorSecret::generate(name, demo, &mut tally_core::crypto::OsRng)
        .map_err(|e| refused(format!("--name: {e}")))?;
    let password = ctx.password(true)?;
    let sealed = vendor
        .seal(
            password.as_bytes(),
            KdfParams::FLOOR,
            &mut tally_core::crypto::OsRng,
        )
        .map_err(|e| refused(e.to_string()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_new_private(&secret_path, &sealed)?;
    let public = vendor.public().to_export(&vendor);
    tally_core::files::atomic_write(&dir.join(PUBLIC_FILE), public.as_bytes())
        .with_context(|| format!("writing {}", dir.join(PUBLIC_FILE).display()))?;
    match &ctx.database {
        Some(d) => Registry::open_target(&crate::sql::Target::parse(d))?,
        None => Registry::open(dir)?,
    };
    println!(
        "vendor `{}`{} created in {}",
        vendor.name(),
        if demo { " (DEMO)" } else { "" },
        dir.display()
    );
    println!("fingerprint: {}", vendor.public().fingerprint_hex());
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (failing if it exists) readable by the owner only, writes and syncs it.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tally_core::files::sync_dir(tally_core::files::parent_dir(path))
        .with_context(|| format!("syncing the folder of {}", path.display()))?;
    Ok(())
}

fn export(ctx: &Ctx, output: &Path) -> Result<ExitCode> {
    let vendor = ctx.open_vendor()?;
    let text = vendor.public().to_export(&vendor);
    if output.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        tally_core::files::atomic_write(output, text.as_bytes())
            .with_context(|| format!("writing {}", output.display()))?;
        eprintln!(
            "wrote the public file of `{}` to {} (fingerprint {})",
            vendor.name(),
            output.display(),
            vendor.public().fingerprint_hex()
        );
    }
    Ok(ExitCode::SUCCESS)
}
