//! `tally-pack customer add|list`: the customer registry (cards bound by keyfiles).

use super::{Ctx, refused};
use crate::registry::{CardKeys, Duplicate};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tally_core::card::attestation::{Attestation, AttestationError};
use tally_core::card::{CardExport, PresentedCard};

/// Longest customer name, in bytes.
const MAX_NAME: usize = 100;

/// Customer commands.
#[derive(Subcommand, Debug)]
pub enum CustomerCommand {
    /// Register a customer's card (the file `tally-view card export` writes).
    /// Refuses a malformed card file, a taken name, and a card already registered.
    Add {
        /// A unique name for the customer.
        #[arg(long)]
        name: String,
        /// The card file.
        #[arg(long, value_name = "CARD_FILE")]
        card: PathBuf,
        /// Register a card no accepted issuer vouches for (an emulated card, for demos and
        /// tests). Keyfiles for it must then be issued with `--allow-emulated-card`.
        #[arg(long)]
        allow_emulated_card: bool,
    },
    /// List the registered customers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a customer command.
pub fn run(ctx: &Ctx, cmd: CustomerCommand) -> Result<ExitCode> {
    match cmd {
        CustomerCommand::Add {
            name,
            card,
            allow_emulated_card,
        } => add(ctx, &name, &card, allow_emulated_card),
        CustomerCommand::List { json } => list(ctx, json),
    }
}

/// Reads a card file with a size cap and parses it strictly.
pub fn read_card_file(path: &Path) -> Result<CardExport> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening card file {}", path.display()))?
        // Read a little more than any valid card file so `from_export` can say "too large".
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading card file {}", path.display()))?;
    CardExport::parse(&bytes).map_err(|e| refused(format!("card file {}: {e}", path.display())))
}

fn add(ctx: &Ctx, name: &str, card: &Path, allow_emulated: bool) -> Result<ExitCode> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        return Err(refused(format!(
            "customer name must be 1–{MAX_NAME} bytes without control characters or outer spaces"
        )));
    }
    let export = read_card_file(card)?;
    let identity = export.identity.clone();
    let Some(agreement_key) = export.agreement_key.clone() else {
        return Err(refused(format!(
            "card file {}: no key-agreement key (written by an older tally-view): export the card again",
            card.display()
        )));
    };
    // T16: the card's keys count only when an issuer this vendor accepts vouches for them.
    let issuers = super::vendor::accepted_issuers(ctx.existing_vendor_dir()?)?;
    let presented = PresentedCard {
        identity: identity.clone(),
        agreement_key: agreement_key.clone(),
        attestation: export.attestation.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let verdict = match &presented.attestation {
        None => Err(AttestationError::Missing),
        Some(b) => Attestation::parse(b)
            .and_then(|a| a.verify(&issuers, &presented.attested_card(), now).cloned()),
    };
    let attested_by = match verdict {
        Ok(issuer) => Some(issuer.name().to_string()),
        Err(why) if allow_emulated => {
            eprintln!("note: registering an emulated card ({why})");
            None
        }
        Err(why) => {
            return Err(refused(format!(
                "card file {}: no accepted card issuer vouches for this card: {why} \
                 (accept its issuer with `tally-pack vendor issuer add`, or pass --allow-emulated-card for a demo card)",
                card.display()
            )));
        }
    };
    let keys = CardKeys {
        agreement_key,
        attestation: export.attestation.clone(),
        attested_by: attested_by.clone(),
    };
    let mut reg = ctx.registry()?;
    match reg.add_customer_with_keys(name, &identity, export.label.as_deref(), Some(&keys))? {
        Ok(()) => {
            println!(
                "customer `{name}` added: card {} (key {}), {}",
                identity.serial,
                hex::encode(&identity.public_key.fingerprint()[..8]),
                match &attested_by {
                    Some(i) => format!("attested by `{i}`"),
                    None => "emulated (no accepted issuer attestation)".to_string(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ Duplicate::Name) => Err(refused(format!("`{name}`: {e}"))),
        Err(e) => Err(refused(format!("{}: {e}", card.display()))),
    }
}

fn list(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let customers = ctx.registry()?.customers()?;
    if json {
        let rows: Vec<_> = customers
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "serial": c.card.serial.to_hex(),
                    "public_key": hex::encode(c.card.public_key.as_bytes()),
                    "key_fingerprint": hex::encode(c.card.public_key.fingerprint()),
                    "origin": c.card.origin,
                    "label": c.label,
                    "added_at": c.added_at,
                    "agreement_key": c.agreement_key.as_ref().map(|k| hex::encode(k.as_bytes())),
                    "attested_by": c.attested_by,
                    "attestation": c.attestation.as_ref().map(hex::encode),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if customers.is_empty() {
        println!("no customers");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<32} {:<16} {:>20} ADDED",
        "NAME", "SERIAL", "KEY", "ORIGIN"
    );
    for c in &customers {
        println!(
            "{:<24} {:<32} {:<16} {:>20} {}",
            c.name,
            c.card.serial,
            hex::encode(&c.card.public_key.fingerprint()[..8]),
            c.card.origin,
            c.added_at
        );
    }
    Ok(ExitCode::SUCCESS)
}
