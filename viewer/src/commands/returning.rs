//! `tally-view return PACKAGE KEYFILE [-o RECEIPT] [--json]`: give a borrowed licence back
//! early (issue 13). The opening's checks (keyfile, package, card, ValidateTrail), then a
//! card-signed `return` record on the trail: from then on the licence never opens again on
//! this card ("returned on …"), whatever keyfile, backup or copy of the trail comes back.
//! The record is the reader's receipt: saved in the home (`returns/<licence>.treceipt`),
//! written to RECEIPT when asked, and sent to the validation server the licence names, which
//! frees the loan for the next reader. Without a server, or when it can't be reached, hand
//! the receipt file to the publisher (`tally-pack returns RECEIPT`), or run `return` again
//! when the server is back: a licence already returned writes nothing more, and its saved
//! receipt is sent again.
//!
//! Exit 0 when the licence was returned and the publisher's server took the receipt (or the
//! licence names no server); 1 when a check refused the return (already returned, wrong
//! card, an invalid trail…) or the server refused the receipt; 2 when the card or a file
//! can't be reached, or the server can't (the licence is returned all the same: the
//! message says where the receipt is). The rules are `tally_core::rental::return_licence`.

use super::{Failure, Outcome};
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::{Delivery, OpenInputs, Problem, return_licence};

/// Arguments of `return`.
#[derive(Args, Debug)]
pub struct ReturnArgs {
    /// The package (.tly).
    pub package: PathBuf,
    /// Its keyfile (the licence to give back).
    pub keyfile: PathBuf,
    /// Also write the receipt to this file, to hand to the publisher.
    #[arg(short = 'o', long = "output", value_name = "RECEIPT")]
    pub output: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `return`.
pub fn run(args: &ReturnArgs, home: &Home, card: &CardSpec) -> Outcome {
    if let Some(o) = &args.output
        && o.exists()
    {
        return Err(Failure::Usage(anyhow!(
            "{} exists: give another file for the receipt",
            o.display()
        )));
    }
    let inputs = OpenInputs {
        package: args.package.clone(),
        keyfile: args.keyfile.clone(),
        home: home.clone(),
        card: card.clone(),
        trusted: super::trust::trusted(home),
        clock: Arc::new(SystemClock),
        transport: Arc::new(crate::online::Http),
    };
    let r = return_licence(&inputs).map_err(|p| match p {
        Problem::NoCard(_) | Problem::Other(_) => Failure::Usage(anyhow!(p)),
        other => Failure::Check(anyhow!(other)),
    })?;
    let bytes = r.receipt.encode();
    if let Some(o) = &args.output {
        tally_core::files::atomic_write(o, &bytes).map_err(|e| {
            Failure::Usage(anyhow!(
                "the licence was returned, but the receipt could not be written to {}: {e} (it is saved as {})",
                o.display(),
                r.saved.display()
            ))
        })?;
    }
    let hand_over = args.output.as_ref().unwrap_or(&r.saved);
    let vendor = r.keyfile.vendor().name().to_string();
    let (word, server, answer) = match &r.delivery {
        Delivery::NoServer => ("no-server", None, None),
        Delivery::Accepted { endpoint, answer } => ("accepted", Some(endpoint), Some(answer)),
        Delivery::Refused {
            endpoint, reason, ..
        } => ("refused", Some(endpoint), Some(reason)),
        Delivery::Unreachable { endpoint, reason } => ("unreachable", Some(endpoint), Some(reason)),
    };
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "returned": true,
                "again": r.again,
                "licence": r.receipt.licence.to_hex(),
                "title": r.title,
                "returned_at": rfc3339(r.receipt.returned_at),
                "counter": r.receipt.record.counter,
                "receipt": r.saved.display().to_string(),
                "output": args.output.as_ref().map(|o| o.display().to_string()),
                "delivery": word,
                "server": server,
                "answer": answer,
                "pending": r.pending,
            })
        );
    } else if r.again {
        println!(
            "already returned: “{}” (licence {}) on {}; its saved receipt was sent again",
            r.title,
            r.receipt.licence,
            rfc3339(r.receipt.returned_at)
        );
    } else {
        println!(
            "returned: “{}” (licence {}) at {}; it no longer opens on this card",
            r.title,
            r.receipt.licence,
            rfc3339(r.receipt.returned_at)
        );
    }
    if !args.json {
        println!("receipt: {}", hand_over.display());
        match &r.delivery {
            Delivery::NoServer => println!(
                "this licence names no validation server: give the receipt file to {vendor} (tally-pack returns RECEIPT), so the loan is freed"
            ),
            Delivery::Accepted { answer, .. } => {
                println!("{vendor}'s validation server took the receipt: {answer}")
            }
            Delivery::Refused { .. } | Delivery::Unreachable { .. } => {}
        }
    }
    match r.delivery {
        Delivery::Refused {
            endpoint,
            status,
            reason,
        } => Err(Failure::Check(anyhow!(
            "the licence is returned, but {endpoint} refused the receipt (HTTP {status}: {reason}); give the receipt file {} to {vendor}",
            hand_over.display()
        ))),
        Delivery::Unreachable { endpoint, reason } if r.pending => Err(Failure::Usage(anyhow!(
            "the licence is returned, but the receipt could not be sent to {endpoint} ({reason}); it goes there in the background the next time you read a document whose licence names a validation server, or run `tally-view return` again, or give the receipt file {} to {vendor}",
            hand_over.display()
        ))),
        Delivery::Unreachable { endpoint, reason } => Err(Failure::Usage(anyhow!(
            "the licence is returned, but the receipt could not be sent to {endpoint} ({reason}); run `tally-view return` again later, or give the receipt file {} to {vendor}",
            hand_over.display()
        ))),
        Delivery::NoServer | Delivery::Accepted { .. } => Ok(()),
    }
}
