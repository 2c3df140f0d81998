//! `tally-view validate PACKAGE KEYFILE [--server URL] [--json]`: one online validation
//! of this installed copy (WO 98/33296, Figure 2), headless. Exit 0 when the server
//! issued a VAL_OK, 1 when it refused the copy (or the answer does not verify, or a check
//! before the round failed: keyfile, package, card, trail), 2 when the server cannot be
//! reached or a file cannot be read.
//!
//! The request is signed by the licence's card as a record of its trail (T32), so the
//! card must be present (`--card`). The rules — the opening's checks, the ICV, the
//! sequence numbers, the rolling UI, the ticket checks — are tally-core's
//! (`tally_core::rental::validate_now`, shared with opening a document) over
//! [`crate::online::Http`]; this command reads arguments and prints.

use super::{Failure, Outcome};
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tally_core::home::{CardSpec, Home};
use tally_core::icv::IcvVariant;
use tally_core::policy::SystemClock;
use tally_core::rental::{OpenInputs, RoundError, validate_now};
use tally_core::validation::ValidationError;

/// Arguments of `validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The package (.tly).
    pub package: PathBuf,
    /// Its keyfile (it names the validation server and its key).
    pub keyfile: PathBuf,
    /// Ask this server instead of the keyfile's URL (the key must still be the keyfile's).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The integrity-check variant to compute (the server accepts V7 and V8 unless told
    /// otherwise; V8's cost on the server does not grow with the document).
    #[arg(long, value_name = "V1..V8", default_value = "V8")]
    pub icv: IcvVariant,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A command run by hand may wait longer than the window does ([`tally_core::rental::OPEN_TIMEOUT`]).
const TIMEOUT: Duration = Duration::from_secs(30);

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `validate`.
pub fn run(args: &ValidateArgs, home: &Home, card: &CardSpec) -> Outcome {
    if let Some(url) = &args.server {
        tally_core::rental::http_url(url).map_err(|e| Failure::Usage(anyhow!("--server: {e}")))?;
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
    match validate_now(&inputs, args.server.as_deref(), args.icv, TIMEOUT) {
        Ok(v) => {
            let url = args
                .server
                .clone()
                .or_else(|| v.keyfile.server().map(|s| s.url.clone()))
                .unwrap_or_default();
            if args.json {
                println!(
                    "{:#}",
                    serde_json::json!({
                        "validated": true,
                        "licence": v.keyfile.licence().to_hex(),
                        "psi": v.ticket.psi,
                        "vssi": v.ticket.vssi,
                        "card_counter": v.ticket.card_counter,
                        "last_validated": rfc3339(v.standing.last_validated),
                        "valid_until": rfc3339(v.standing.valid_until),
                    })
                );
            } else {
                println!(
                    "validated by {url} at {}; usable offline until {}",
                    rfc3339(v.standing.last_validated),
                    rfc3339(v.standing.valid_until)
                );
            }
            Ok(())
        }
        Err(RoundError::Answer(e)) => {
            if args.json {
                let status = match &e {
                    ValidationError::Refused(s) => s.name(),
                    _ => "invalid-answer",
                };
                println!(
                    "{:#}",
                    serde_json::json!({ "validated": false, "status": status, "reason": e.to_string() })
                );
            }
            Err(Failure::Check(anyhow!(e)))
        }
        // A refusal without a verdict (a 4xx reason), an unreadable state and a failed
        // check before the round are checks that failed; no answer at all, or a state that
        // can't be saved, is exit 2.
        Err(
            e @ (RoundError::NotAVerdict { .. }
            | RoundError::StateUnreadable(_)
            | RoundError::Opening(_)
            | RoundError::NoServer),
        ) => Err(Failure::Check(anyhow!(e))),
        Err(e) => Err(Failure::Usage(anyhow!(e))),
    }
}
