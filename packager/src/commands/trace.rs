//! `tally-pack trace KEYFILE`: who a leaked keyfile was issued to (\[0069\]).
//!
//! Opens the identity sealed to the vendor's tracing key, and says whether the vendor's
//! signature over the keyfile still verifies: only a verifying keyfile proves what the
//! vendor issued (anyone can seal a name to the public tracing key).

use super::{Ctx, refused};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::keyfile::{Keyfile, MAX_KEYFILE_BYTES};

/// Arguments of `trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The keyfile.
    pub keyfile: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trace`.
pub fn run(ctx: &Ctx, args: TraceArgs) -> Result<ExitCode> {
    let mut bytes = Vec::new();
    std::fs::File::open(&args.keyfile)
        .with_context(|| format!("opening {}", args.keyfile.display()))?
        .take(MAX_KEYFILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", args.keyfile.display()))?;
    let vendor = ctx.open_vendor()?;
    let owner = Keyfile::trace(&bytes, &vendor)
        .map_err(|e| refused(format!("{}: {e}", args.keyfile.display())))?;
    let registered = match ctx.registry() {
        Ok(mut r) => super::issue::licence_owner(r.connection(), &owner.licence)?,
        Err(_) => None,
    };
    let issued = owner
        .issued_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if args.json {
        let v = serde_json::json!({
            "customer": owner.name,
            "card_serial": owner.serial.to_hex(),
            "licence": owner.licence.to_hex(),
            "issued_at": issued,
            "signature_valid": owner.signature_valid,
            "registry_customer": registered,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("customer: {}", owner.name);
        println!("card: {}", owner.serial);
        println!("licence: {}", owner.licence);
        println!("issued: {issued}");
        match &registered {
            Some(c) => println!("registry: issued to `{c}`"),
            None => println!("registry: licence not found in this vendor's registry"),
        }
        if owner.signature_valid {
            println!("signature: valid — this is a keyfile this vendor issued");
        } else {
            println!(
                "signature: INVALID — the keyfile was changed; the identity inside is not proof"
            );
        }
    }
    Ok(if owner.signature_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
