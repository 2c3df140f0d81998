//! `tally-view trail answer --keyfile KEYFILE [--server URL] [--server-key HEX] [--json]`:
//! answers the publisher's nonce challenge (EP 0 895 148 \[0104\]) headless — what the reading
//! window does on its own in the background whenever it opens a licence that names a server.
//!
//! Asks the licence's validation server whether its publisher has a challenge pending for
//! this card; if so, checks it (signed by the server key in the vendor-signed keyfile, for
//! this card, not expired), writes the nonce on the trail as a card-signed `challenge`
//! record, and sends the trail for vouching, so the server keeps a backup holding the
//! answer — the publisher's audit then finds it there, and bills from that backup.
//!
//! Exit 0 when a challenge was answered or none is pending; 1 when a check failed (the
//! challenge, the card, the trail, or the server's answer); 2 when the server can't be
//! reached or a file can't be read. The rules are tally-core's
//! (`tally_core::rental::answer_challenge`).

use super::vouch::{ServerArgs, licence_server};
use super::{Failure, Outcome, contact_failure};
use anyhow::anyhow;
use clap::Args;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::{ChallengeOutcome, answer_challenge};

/// Arguments of `trail answer`.
#[derive(Args, Debug)]
pub struct AnswerArgs {
    /// The validation server.
    #[command(flatten)]
    pub target: ServerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `trail answer`.
pub fn run(args: &AnswerArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let (keyfile, url, key) = licence_server(&args.target, home)?;
    home.trusted_validators()
        .map_err(|e| Failure::Usage(anyhow!(e).context("the trusted validation servers")))?;
    let mut card = spec.open(home)?;
    let outcome = answer_challenge(
        home,
        &mut card,
        &keyfile,
        Some(&url),
        &crate::online::Http,
        &SystemClock,
    )
    .map_err(contact_failure)?;
    match outcome {
        ChallengeOutcome::NonePending => {
            if args.json {
                println!(
                    "{:#}",
                    serde_json::json!({ "answered": false, "server": url })
                );
            } else {
                println!(
                    "no challenge from {} is pending for your card ({url})",
                    keyfile.vendor().name()
                );
            }
        }
        ChallengeOutcome::Answered(a) => {
            let counter = a.counter;
            // As after `trail vouch`: later checks start from the server's record.
            let newly_trusted = home.add_trusted_validator(&key).map_err(|e| {
                Failure::Usage(anyhow!(e).context(format!(
                    "the challenge was answered at counter {counter}, but the server key could not be added to the trusted validation servers"
                )))
            })?;
            if args.json {
                println!(
                    "{:#}",
                    serde_json::json!({
                        "answered": true,
                        "server": url,
                        "challenge": a.challenge.nonce_hex(),
                        "counter": counter,
                        "newly_written": a.newly_written,
                        "upto": a.vouched.upto,
                        "validator_counter": a.vouched.validator_counter,
                        "newly_trusted": newly_trusted,
                    })
                );
            } else {
                println!(
                    "answered {}'s challenge {}… with the record at counter {counter}; the trail was vouched for up to counter {} and {url} keeps it as the backup",
                    keyfile.vendor().name(),
                    &a.challenge.nonce_hex()[..16],
                    a.vouched.upto
                );
            }
        }
        // A later kind of outcome: nothing of it to say here.
        _ => {}
    }
    Ok(())
}
