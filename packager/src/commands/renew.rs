//! `tally-pack renew --keyfile OLD -o NEW [limits]`: a renewal (Readium LCP's `renew` and
//! `renew_expired`, issue 13).
//!
//! The new keyfile is the same licence — same licence id, customer, card, document, content
//! key and validation server — with the next licence version (`licence-version` in its
//! vendor-signed policy) and the limits and dates the flags give, each replacing the old
//! value (`--pages 60` means 60 in all: the use so far counts on, because the trail's records
//! carry the licence id). The first opening of the new keyfile on the reader's card writes a
//! `renewal` record, and from then on older versions of the licence are refused on that card.

use super::issue::{LimitArgs, apply_limits, summary};
use super::{Ctx, refused};
use crate::params;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::policy::{Limits, MAX_LICENCE_VERSION};

/// Arguments of `renew`.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The keyfile being renewed (the newest version the customer has).
    #[arg(long, value_name = "OLD")]
    pub keyfile: PathBuf,
    /// Where to write the renewed keyfile.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// The new limits: a policy file replaces the old policy as a whole; each flag replaces
    /// one old value and leaves the others as they were.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Runs `renew`.
pub fn run(ctx: &Ctx, args: RenewArgs) -> Result<ExitCode> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; pass --force to replace it",
            args.output.display()
        );
    }
    let vendor = ctx.open_vendor()?;
    let bytes = std::fs::read(&args.keyfile)
        .with_context(|| format!("reading {}", args.keyfile.display()))?;
    let old = Keyfile::open(&bytes, std::slice::from_ref(vendor.public())).map_err(|e| {
        refused(format!(
            "{}: not a keyfile of this vendor: {e}",
            args.keyfile.display()
        ))
    })?;
    let base = match &args.limits.policy {
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Limits::parse(&text).with_context(|| format!("policy file {}", p.display()))?
        }
        None => old.limits().clone(),
    };
    let mut limits = apply_limits(base, &args.limits, true)?;
    let version = old.limits().licence_version;
    if version >= MAX_LICENCE_VERSION {
        return Err(refused("this licence cannot be renewed again"));
    }
    limits.licence_version = version + 1;
    limits.check().context("the renewed limits")?;
    let mut registry = ctx.registry()?;
    let licence = old.licence();
    let Some(content_key) = registry.content_key(&vendor, &old.document())? else {
        return Err(refused(format!(
            "document {} is not in this vendor's registry",
            old.document()
        )));
    };
    let now = time::OffsetDateTime::now_utc();
    let issued_at = now.replace_nanosecond(0).unwrap_or(now);
    let cis = Cis {
        licence,
        document: old.document(),
        card: old.card().clone(),
        card_agreement_key: old.card_agreement_key().clone(),
        issuers: old.issuers().to_vec(),
        customer_name: old.customer_name().to_string(),
        content_key,
        limits,
        allow_emulated_card: old.allows_emulated_card(),
        server: old.server().cloned(),
        issued_at,
    };
    let new =
        Keyfile::issue(&vendor, &cis, &mut rand_core::OsRng).context("building the keyfile")?;
    // The registry's licence is the renewed one from now on (audits judge by its policy).
    let updated = registry
        .connection()
        .execute(
            "UPDATE keyfiles SET policy = $1, sha256 = $2, issued_at = $3 WHERE licence_id = $4",
            params![
                cis.limits.to_text(),
                hex::encode(tally_core::crypto::sha256(&new)),
                super::now_rfc3339(),
                licence.to_hex()
            ],
        )
        .context("recording the renewal in the registry")?;
    if updated != 1 {
        return Err(refused(format!(
            "licence {licence} is not in this vendor's registry"
        )));
    }
    tally_core::files::atomic_write(&args.output, &new)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("keyfile: {}", args.output.display());
    println!(
        "licence: {licence} (version {})",
        cis.limits.licence_version
    );
    println!("customer: {}", cis.customer_name);
    println!("limits: {}", summary(&cis.limits));
    println!(
        "once the reader opens it, versions before {} of this licence are refused on their card",
        cis.limits.licence_version
    );
    Ok(ExitCode::SUCCESS)
}
