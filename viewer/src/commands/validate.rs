//! `tally-view validate PACKAGE KEYFILE [--server URL] [--json]`: one online validation
//! of this installed copy (WO 98/33296, Figure 2), headless. Exit 0 when the server
//! issued a VAL_OK, 1 when it refused the copy (or the answer does not verify), 2 when
//! the server cannot be reached or a file cannot be read.
//!
//! The rules — the ICV, the sequence numbers, the rolling UI, the ticket checks — are
//! `tally_core::validation::ClientState`; this command reads files, talks HTTP and prints.

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
use tally_core::validation::{ClientState, VERDICT_LEN, ValidationError};

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
    /// The ICV variant to compute (the server accepts V7 unless told otherwise).
    #[arg(long, value_name = "V1..V7", default_value = "V7")]
    pub icv: IcvVariant,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Largest package read into memory for the ICV.
const MAX_PACKAGE: u64 = 1 << 30;

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
        return Err(Failure::Check(anyhow!(
            "this keyfile names no validation server: the licence works offline only"
        )));
    };
    let url = args.server.as_deref().unwrap_or(&server.url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Usage(anyhow!("--server must be an http(s) URL")));
    }
    let endpoint = format!("{}/v1/validate", url.trim_end_matches('/'));
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
    let mut state = match ClientState::load(home, &kf.licence()) {
        Ok(Some(s)) => s,
        Ok(None) => ClientState::new(kf.licence()),
        Err(e) => return Err(Failure::Check(anyhow!(e).context("validation state"))),
    };
    let envelope = state.prepare(
        args.icv,
        &package,
        &server.public_key,
        viewer_icv,
        &SystemClock,
        &mut rand_core::OsRng,
    );
    // Saved before sending, so a crash never reuses a sequence number.
    state.save(home).context("saving the validation state")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .post(&endpoint)
        .header("content-type", "application/octet-stream")
        .send(&envelope[..])
        .map_err(|e| {
            Failure::Usage(anyhow!(
                "cannot reach the validation server {endpoint}: {e}"
            ))
        })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .map_err(|e| Failure::Usage(anyhow!("reading the server's answer: {e}")))?;
    if body.len() != VERDICT_LEN {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(Failure::Check(anyhow!(
            "the validation server answered HTTP {status}: {}",
            text.trim()
        )));
    }
    let result = state.accept(&body, &server.public_key);
    state.save(home).context("saving the validation state")?;
    match result {
        Ok(ticket) => {
            let standing = state
                .check_offline(
                    &server.public_key,
                    server.require_online_every_days,
                    &SystemClock,
                )
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
        Err(e) => {
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
    }
}
