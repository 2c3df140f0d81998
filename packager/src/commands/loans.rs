//! `tally-pack loans PACKAGE [--cap N | --no-cap] [--json]`: a document's cap on concurrent
//! loans, and its loans (issue 13).
//!
//! With `--cap N`, at most N licences of the document may be out at once: `issue` refuses
//! beyond it, naming the count. A licence is out until it is returned (its receipt verified:
//! `tally-pack returns`, or the validation server), revoked or superseded, or past the end
//! its policy gives (`tally_core::loans`). `--no-cap` lifts the cap. Without either, the cap
//! and every loan of the document are listed.

use super::{Ctx, refused};
use crate::server::returns::{self, LoanRow};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::loans::out_now;
use tally_core::package::{DocumentId, PackageHeader};

/// Arguments of `loans`.
#[derive(Args, Debug)]
pub struct LoansArgs {
    /// The document: its package (DOC.tly, made by `pack`) or its document id (32 hex digits).
    #[arg(value_name = "PACKAGE")]
    pub document: String,
    /// Allow at most N loans of the document out at once (0: no new loans).
    #[arg(long, value_name = "N", conflicts_with = "no_cap")]
    pub cap: Option<u64>,
    /// Lift the document's cap.
    #[arg(long)]
    pub no_cap: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The document id of `arg`: 32 hex digits, or a package of this vendor.
pub fn document_of(ctx: &Ctx, arg: &str) -> Result<DocumentId> {
    if let Some(id) = DocumentId::from_hex(arg) {
        return Ok(id);
    }
    let path = PathBuf::from(arg);
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let Some(vendor) = ctx.vendor_public()? else {
        bail!("the vendor folder has no public file to check the package against");
    };
    let (header, _) = PackageHeader::read(&mut f, std::slice::from_ref(&vendor))
        .with_context(|| format!("package {}", path.display()))?;
    Ok(header.document_id())
}

/// What one loan is now, in a word.
fn state(l: &LoanRow, now: time::OffsetDateTime) -> &'static str {
    if l.loan.returned {
        "returned"
    } else if l.loan.revoked {
        "revoked"
    } else if l.loan.is_out(now) {
        "out"
    } else {
        "ended"
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `loans`.
pub fn run(ctx: &Ctx, args: LoansArgs) -> Result<ExitCode> {
    let document = document_of(ctx, &args.document)?;
    let mut registry = ctx.registry()?;
    let Some(package) = registry.package(&document)? else {
        return Err(refused(format!(
            "document {document} is not in this vendor's registry"
        )));
    };
    let db = registry.connection();
    let doc = document.to_hex();
    if args.cap.is_some() || args.no_cap {
        returns::set_cap(db, &doc, args.cap)?;
    }
    let cap = returns::cap_of(db, &doc)?;
    let loans = returns::loans_of(db, &doc, false)?;
    let now = time::OffsetDateTime::now_utc();
    let only: Vec<_> = loans.iter().map(|l| l.loan.clone()).collect();
    let out = out_now(&only, now);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "document_id": doc,
                "title": package.title,
                "cap": cap,
                "out": out,
                "loans": loans.iter().map(|l| serde_json::json!({
                    "licence": l.loan.licence.to_hex(),
                    "customer": l.customer,
                    "issued_at": l.issued_at,
                    "ends": l.loan.ends.map(rfc3339),
                    "state": state(l, now),
                })).collect::<Vec<_>>(),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    match cap {
        Some(c) => println!(
            "“{}” (document {doc}): {out} of {c} loans out",
            package.title
        ),
        None => println!(
            "“{}” (document {doc}): {out} loan{} out, no cap",
            package.title,
            if out == 1 { "" } else { "s" }
        ),
    }
    for l in &loans {
        println!(
            "  {}: licence {} to {}, issued {}, {}",
            state(l, now),
            l.loan.licence,
            l.customer,
            l.issued_at,
            match l.loan.ends {
                Some(e) => format!("ends {}", rfc3339(e)),
                None => "no end date".into(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
