//! `tally-pack returns [RECEIPT…] [--json]`: the publisher's side of an early return
//! (issue 13, T38).
//!
//! Each RECEIPT file (what `tally-view return` wrote, handed over by the reader) is checked
//! against the card this publisher registered for the licence it returns
//! (`tally_core::receipt::Receipt::verify`) and recorded in the registry — the database
//! `serve` uses, so a receipt its `POST /v1/return` took is already there, and one recorded
//! here frees the loan's place for `issue` at once and keeps the licence charged in any later
//! restore of the reader's trail. Recording is idempotent. Then every verified return is
//! listed: customer, licence, document, when it was returned, when and how it was received.
//!
//! Exit 0 when every file was recorded (or there were none), 1 when some receipt was
//! refused (each refusal says why), 2 when a file can't be read.

use super::{Ctx, refused};
use crate::server::returns::{self, Refusal, ReturnRow};
use anyhow::{Context as _, Result};
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::receipt::MAX_RECEIPT;

/// Arguments of `returns`.
#[derive(Args, Debug)]
pub struct ReturnsArgs {
    /// Return receipts handed over by readers (`tally-view return … -o RECEIPT`), to verify
    /// and record.
    #[arg(value_name = "RECEIPT")]
    pub receipts: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn row_json(r: &ReturnRow) -> serde_json::Value {
    serde_json::json!({
        "licence": r.licence.to_hex(),
        "customer": r.customer,
        "card": r.serial,
        "document_id": r.document_id,
        "title": r.title,
        "counter": r.counter,
        "returned_at": r.returned_at,
        "received_at": r.received_at,
        "via": r.via,
    })
}

/// Runs `returns`.
pub fn run(ctx: &Ctx, args: ReturnsArgs) -> Result<ExitCode> {
    let mut registry = ctx.registry()?;
    let db = registry.connection();
    let mut checked = Vec::new();
    let mut refusals = 0;
    for path in &args.receipts {
        // One byte more than any receipt: a larger file is refused by the parser.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_RECEIPT as u64 + 1).read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
        let out: std::result::Result<ReturnRow, Refusal> =
            db.transaction(|db| returns::record(db, &bytes, "file"))?;
        match &out {
            Ok(row) => {
                if !args.json {
                    println!("{}: {}", path.display(), row.line());
                }
            }
            Err(r) => {
                refusals += 1;
                eprintln!("{}: {r}", path.display());
            }
        }
        checked.push((path, out));
    }
    let all = returns::all(db)?;
    if args.json {
        let files: Vec<_> = checked
            .iter()
            .map(|(p, out)| match out {
                Ok(row) => serde_json::json!({
                    "file": p.display().to_string(), "recorded": true, "return": row_json(row),
                }),
                Err(r) => serde_json::json!({
                    "file": p.display().to_string(), "recorded": false,
                    "check": r.check(), "reason": r.to_string(),
                }),
            })
            .collect();
        println!(
            "{:#}",
            serde_json::json!({
                "files": files,
                "returns": all.iter().map(row_json).collect::<Vec<_>>(),
            })
        );
    } else if all.is_empty() {
        println!("no verified returns");
    } else {
        println!(
            "{} verified return{}:",
            all.len(),
            if all.len() == 1 { "" } else { "s" }
        );
        for r in &all {
            println!(
                "  {} licence {} of “{}”: returned {}, received {} ({})",
                r.customer,
                r.licence,
                r.title,
                r.returned_at,
                r.received_at,
                if r.via == "server" {
                    "through the validation server"
                } else {
                    "as a file"
                }
            );
        }
    }
    if refusals > 0 {
        return Err(refused(format!(
            "{refusals} of {} receipt{} refused",
            args.receipts.len(),
            if args.receipts.len() == 1 { "" } else { "s" }
        )));
    }
    Ok(ExitCode::SUCCESS)
}
