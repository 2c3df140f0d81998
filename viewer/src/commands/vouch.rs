//! `tally-view trail vouch (--keyfile KEYFILE | --server URL --server-key HEX) [--json]`:
//! the trusted audit-trail validation service of EP 0 895 148 \[0094\], headless.
//!
//! Runs ValidateTrail locally, sends the whole trail (encrypted to the server key, with the
//! card's serial) to `POST /v1/trail/validate`, checks the answer — a validator body signed
//! by that server key for this card, vouching for exactly these records — and appends it
//! through Write, so the card signs it, and adds the server key to the home's trusted
//! validation servers (`<home>/validators`): later ValidateTrails — `trail verify`, `trail
//! show`, opening a document — start from it. The server keeps the encrypted trail as a
//! backup (\[0062\]).
//!
//! Exit 0 when the validator record was appended; 1 when the local trail is invalid, the
//! server refused the trail, or its answer does not verify; 2 when the server can't be
//! reached or a file can't be read. The rules are `tally_core::trail::validator`.

use super::{Failure, Outcome, trail_failure};
use anyhow::{Context as _, anyhow};
use clap::Args;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;
use tally_core::crypto::PublicKey;
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::Keyfile;
use tally_core::trail::file::{HEADER_LEN, parse_frames};
use tally_core::trail::validator::check_answer;
use tally_core::trail::{Trail, Usage};
use tally_core::validation::{MAX_TRAIL_REQUEST_TRAIL, seal_trail_request};

/// Which validation server to talk to (`trail vouch`, `trail restore`).
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Take the validation server's URL and key from this keyfile (signed by its vendor).
    #[arg(long, value_name = "KEYFILE")]
    pub keyfile: Option<PathBuf>,
    /// The validation server (overrides the keyfile's URL).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The server's public key, 130 hex digits (uncompressed SEC1), when no keyfile is given
    /// (without it, `--server` must announce a key this home already trusts).
    #[arg(long, value_name = "HEX", conflicts_with = "keyfile")]
    pub server_key: Option<String>,
}

/// Arguments of `trail vouch`.
#[derive(Args, Debug)]
pub struct VouchArgs {
    /// The validation server.
    #[command(flatten)]
    pub target: ServerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Largest answer read (a validator body is at most 1024 bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// `--server URL` alone: the key the server announces (`GET /v1/server-key`), accepted only
/// when it is already one of the home's trusted validation servers — a key fetched over
/// the network is never trusted by itself.
fn trusted_key_of(url: &str, home: &Home) -> Result<PublicKey, Failure> {
    let endpoint = format!("{}/v1/server-key", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let text = agent
        .get(&endpoint)
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(64 * 1024).read_to_string())
        .map_err(|e| {
            Failure::Usage(anyhow!(
                "cannot reach the validation server {endpoint}: {e}"
            ))
        })?;
    let key = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["public_key"].as_str().and_then(|h| hex::decode(h).ok()))
        .and_then(|b| PublicKey::from_sec1(&b).ok())
        .ok_or_else(|| Failure::Usage(anyhow!("{endpoint} did not answer a server key")))?;
    let trusted = home
        .trusted_validators()
        .map_err(|e| Failure::Usage(anyhow!(e).context("the trusted validation servers")))?;
    if !trusted.contains(&key) {
        return Err(Failure::Usage(anyhow!(
            "the key {url} announces ({}…) is not a trusted validation server here: give --keyfile or --server-key",
            hex::encode(&key.fingerprint()[..8])
        )));
    }
    Ok(key)
}

/// The server's URL (an http(s) URL) and key, from the keyfile or the flags.
pub(super) fn server(args: &ServerArgs, home: &Home) -> Result<(String, PublicKey), Failure> {
    // The keyfile's server (URL and key, signed by its vendor), if one is given.
    let from_keyfile = match &args.keyfile {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let kf = Keyfile::open(&bytes, &super::trust::trusted(home)).map_err(|e| {
                Failure::Check(anyhow!(e).context(format!("keyfile {}", path.display())))
            })?;
            let Some(s) = kf.server() else {
                return Err(Failure::Usage(anyhow!(
                    "this keyfile names no validation server"
                )));
            };
            Some((s.url.clone(), s.public_key.clone()))
        }
        None => None,
    };
    let Some(url) = args
        .server
        .clone()
        .or_else(|| from_keyfile.as_ref().map(|(u, _)| u.clone()))
    else {
        return Err(Failure::Usage(anyhow!(
            "give --keyfile, or --server (with --server-key unless the server is trusted here)"
        )));
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Usage(anyhow!("--server must be an http(s) URL")));
    }
    let key = match (from_keyfile, &args.server_key) {
        (Some((_, key)), _) => key,
        (None, Some(hex_key)) => super::parse_server_key(hex_key)?,
        (None, None) => trusted_key_of(&url, home)?,
    };
    Ok((url, key))
}

/// Runs `trail vouch`.
pub fn run(args: &VouchArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let (url, key) = server(&args.target, home)?;
    let endpoint = format!("{}/v1/trail/validate", url.trim_end_matches('/'));
    // The key is added to the home's trusted validators afterwards: read that list first,
    // so a damaged file stops us before anything is sent or written.
    home.trusted_validators()
        .map_err(|e| Failure::Usage(anyhow!(e).context("the trusted validation servers")))?;
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    // ValidateTrail first: never send (or vouch on top of) a trail that is not valid here.
    let mut trail = Trail::open(&path, &id).map_err(trail_failure)?;
    trail.set_trusted_validators(vec![key.clone()]);
    trail.validate(&mut card).map_err(trail_failure)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(MAX_TRAIL_REQUEST_TRAIL as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > MAX_TRAIL_REQUEST_TRAIL {
        return Err(Failure::Usage(anyhow!(
            "the trail is larger than the 64 MiB a validation request carries"
        )));
    }
    // The records sent, exactly: the answer must vouch for these.
    let sent = parse_frames(
        bytes.get(HEADER_LEN..).unwrap_or_default(),
        HEADER_LEN as u64,
        0,
    )
    .map_err(|e| trail_failure(e.into()))?
    .records;
    let envelope = seal_trail_request(&key, &id.serial, &bytes, &mut tally_core::crypto::OsRng)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    let (status, answer) =
        crate::online::post(&endpoint, &envelope, Duration::from_secs(300), MAX_ANSWER).map_err(
            |e| {
                Failure::Usage(anyhow!(
                    "cannot reach the validation server {endpoint}: {e}"
                ))
            },
        )?;
    if status != 200 {
        return Err(super::http_refusal(status, &answer));
    }
    let body = check_answer(&answer, &key, &id, trail.header().first_counter, &sent)
        .map_err(trail_failure)?;
    super::mirror_trail(&mut trail, home, &id.serial)?;
    let rec = trail.write(&mut card, &body).map_err(trail_failure)?;
    super::warn_mirror(&trail);
    let upto = match &body.usage {
        Usage::Validator(v) => v.upto,
        _ => 0,
    };
    // From now on `trail verify`, `trail show` and opening a document start from this
    // server's validator records ([0094]); the record is already written, so a failure
    // here is reported as such.
    let newly_trusted = home.add_trusted_validator(&key).map_err(|e| {
        Failure::Usage(anyhow!(e).context(format!(
            "the validator record was written at counter {}, but the server key could not be added to the trusted validation servers",
            rec.counter
        )))
    })?;
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "vouched": true,
                "server": url,
                "server_key": hex::encode(key.fingerprint()),
                "upto": upto,
                "validator_counter": rec.counter,
                "newly_trusted": newly_trusted,
            })
        );
    } else {
        println!(
            "trail vouched for by {url} up to counter {upto} (server key {}); its record is at counter {}, and the server keeps a backup of the trail",
            hex::encode(&key.fingerprint()[..8]),
            rec.counter
        );
        if newly_trusted {
            println!(
                "note: this server is now trusted to vouch for your trail, so later checks start from its record ({})",
                home.validators_path().display()
            );
        }
    }
    Ok(())
}
