//! `tally-view validate PACKAGE KEYFILE [--server URL] [--json]`: one online validation
//! of this installed copy (WO 98/33296, Figure 2), headless. Exit 0 when the server
//! issued a VAL_OK, 1 when it refused the copy (or the answer does not verify), 2 when
//! the server cannot be reached or a file cannot be read.
//!
//! The rules — the ICV, the sequence numbers, the rolling UI, the ticket checks — are
//! `tally_core::validation::ClientState`; the round is `tally_core::rental::validate_online`
//! (shared with opening a document) over [`crate::online::Http`]; this command reads files
//! and prints.

use super::{Failure, Outcome};
use anyhow::{Context, anyhow};
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;
use tally_core::home::Home;
use tally_core::icv::IcvVariant;
use tally_core::keyfile::Keyfile;
use tally_core::policy::SystemClock;
use tally_core::rental::{Round, RoundError, validate_online};
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
    /// The integrity-check variant to compute (the server accepts V7 unless told otherwise).
    #[arg(long, value_name = "V1..V7", default_value = "V7")]
    pub icv: IcvVariant,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Largest package read into memory for the ICV.
const MAX_PACKAGE: u64 = 1 << 30;

/// A command run by hand may wait longer than the window does ([`tally_core::rental::OPEN_TIMEOUT`]).
const TIMEOUT: Duration = Duration::from_secs(30);

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Runs `validate`.
pub fn run(args: &ValidateArgs, home: &Home) -> Outcome {
    let trusted = super::trust::trusted(home);
    let kf_bytes = std::fs::read(&args.keyfile)
        .with_context(|| format!("reading {}", args.keyfile.display()))?;
    let kf = Keyfile::open(&kf_bytes, &trusted).map_err(|e| {
        Failure::Check(anyhow!(e).context(format!("keyfile {}", args.keyfile.display())))
    })?;
    let Some(server) = kf.server() else {
        return Err(Failure::Check(anyhow!(RoundError::NoServer)));
    };
    let url = args.server.as_deref().unwrap_or(&server.url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Usage(anyhow!("--server must be an http(s) URL")));
    }
    let mut package = Vec::new();
    std::fs::File::open(&args.package)
        .with_context(|| format!("opening {}", args.package.display()))?
        .take(MAX_PACKAGE + 1)
        .read_to_end(&mut package)
        .with_context(|| format!("reading {}", args.package.display()))?;
    if package.len() as u64 > MAX_PACKAGE {
        return Err(Failure::Usage(anyhow!("the package is larger than 1 GiB")));
    }
    let viewer_icv = tally_core::icv::current_executable_icv()
        .context("reading this viewer's executable for its ICV")?;
    let round = Round {
        url,
        package: &package,
        variant: args.icv,
        viewer_icv,
        clock: &SystemClock,
        timeout: TIMEOUT,
    };
    match validate_online(home, &kf, &round, &crate::online::Http) {
        Ok((state, ticket)) => {
            let standing = tally_core::rental::standing_after_round(&state, &kf, &SystemClock)
                .map_err(|e| Failure::Check(anyhow!(e)))?;
            if args.json {
                println!(
                    "{:#}",
                    serde_json::json!({
                        "validated": true,
                        "licence": kf.licence().to_hex(),
                        "psi": ticket.psi,
                        "vssi": ticket.vssi,
                        "last_validated": rfc3339(standing.last_validated),
                        "valid_until": rfc3339(standing.valid_until),
                    })
                );
            } else {
                println!(
                    "validated by {url} at {}; usable offline until {}",
                    rfc3339(standing.last_validated),
                    rfc3339(standing.valid_until)
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
        // A refusal without a verdict (a 4xx reason) and an unreadable state are checks
        // that failed; no answer at all, or a state that can't be saved, is exit 2.
        Err(e @ (RoundError::NotAVerdict { .. } | RoundError::StateUnreadable(_))) => {
            Err(Failure::Check(anyhow!(e)))
        }
        Err(e) => Err(Failure::Usage(anyhow!(e))),
    }
}
