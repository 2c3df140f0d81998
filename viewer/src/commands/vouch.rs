//! `tally-view trail vouch --keyfile KEYFILE [--server URL] [--server-key HEX] [--json]`:
//! the trusted audit-trail validation service of EP 0 895 148 \[0094\], headless.
//!
//! Runs ValidateTrail locally, then one round of `tally_core::rental::vouch_trail`:
//! sends the whole trail (encrypted to the server key, with the card's serial) to
//! `POST /v1/trail/validate`, checks the answer — `totals` records and a validator body
//! signed by that server key for this card, vouching for exactly these records — appends it
//! through Write, so the card signs it, and sends the records written since to
//! `POST /v1/trail/extend`, so the server's encrypted backup (\[0062\]) covers them. Then
//! adds the server key to the home's trusted validation servers (`<home>/validators`): later
//! ValidateTrails — `trail verify`, `trail show`, opening a document — start from it. A
//! reading session does the same on its own (`tally-view backup`). A challenge the publisher has
//! pending for the card (\[0104\]) is answered first, so the backup holds the answer
//! (`tally_core::rental::write_answer`).
//!
//! Exit 0 when the validator record was appended; 1 when the local trail is invalid, the
//! server refused the trail, or its answer does not verify; 2 when the server can't be
//! reached or a file can't be read. The rules are `tally_core::trail::validator` and
//! `tally_core::rental::vouch_and_back_up`.

use super::{Failure, Outcome, contact_failure, trail_failure};
use anyhow::{Context as _, anyhow};
use clap::Args;
use std::path::PathBuf;
use tally_core::crypto::PublicKey;
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Keyfile, VerifiedKeyfile};
use tally_core::rental::{ServerContact, fetch_challenge, vouch_trail, write_answer};
use tally_core::trail::Trail;

/// Which validation server to talk to (`trail vouch`, `trail restore`): always the one a
/// licence's vendor-signed keyfile names. A server the reader names on the command line is
/// never trusted because it was named (T29): `--server` only changes where the keyfile's
/// server is reached, and `--server-key` only double-checks the keyfile's key.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// A keyfile of yours that names the validation server (its address and key, signed by
    /// the publisher).
    #[arg(long, value_name = "KEYFILE")]
    pub keyfile: Option<PathBuf>,
    /// Reach the keyfile's server at this address instead (a mirror or a proxy of it): the
    /// answer must still be signed with the keyfile's server key.
    #[arg(long, value_name = "URL", requires = "keyfile")]
    pub server: Option<String>,
    /// Refuse unless the keyfile's server key is this one (130 hex digits, uncompressed
    /// SEC1), e.g. the key your publisher gave you.
    #[arg(long, value_name = "HEX", requires = "keyfile")]
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

/// The server's URL (an http(s) URL) and key: the keyfile's, the URL possibly replaced by
/// `--server`, the key only ever compared with `--server-key`.
pub(super) fn server(args: &ServerArgs, home: &Home) -> Result<(String, PublicKey), Failure> {
    licence_server(args, home).map(|(_, url, key)| (url, key))
}

/// [`server`] with the verified keyfile that names it.
pub(super) fn licence_server(
    args: &ServerArgs,
    home: &Home,
) -> Result<(VerifiedKeyfile, String, PublicKey), Failure> {
    let Some(path) = &args.keyfile else {
        return Err(Failure::Usage(anyhow!(
            "give --keyfile KEYFILE: the validation server is the one your licence names"
        )));
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let kf = Keyfile::open(&bytes, &super::trust::trusted(home))
        .map_err(|e| Failure::Check(anyhow!(e).context(format!("keyfile {}", path.display()))))?;
    let Some(s) = kf.server() else {
        return Err(Failure::Usage(anyhow!(
            "the keyfile {} names no validation server (its licence works offline only)",
            path.display()
        )));
    };
    if let Some(hex_key) = &args.server_key {
        let pinned = super::parse_server_key(hex_key)?;
        if pinned != s.public_key {
            return Err(Failure::Check(anyhow!(
                "--server-key {}… is not the validation server the keyfile {} names ({}…): nothing was sent",
                hex::encode(&pinned.fingerprint()[..8]),
                path.display(),
                hex::encode(&s.public_key.fingerprint()[..8])
            )));
        }
    }
    let url = args.server.clone().unwrap_or_else(|| s.url.clone());
    tally_core::rental::http_url(&url).map_err(|e| Failure::Usage(anyhow!("--server: {e}")))?;
    let key = s.public_key.clone();
    Ok((kf, url, key))
}

/// Runs `trail vouch`.
pub fn run(args: &VouchArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let (url, key) = server(&args.target, home)?;
    // The key is added to the home's trusted validators afterwards: read that list first,
    // so a damaged file stops us before anything is sent or written.
    home.trusted_validators()
        .map_err(|e| Failure::Usage(anyhow!(e).context("the trusted validation servers")))?;
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let mut trail = Trail::open(&path, &id).map_err(trail_failure)?;
    trail.set_trusted_validators(vec![key.clone()]);
    super::mirror_trail(&mut trail, home, &id.serial)?;
    let contact = ServerContact {
        url: &url,
        key: &key,
        transport: &crate::online::Http,
    };
    // A challenge the publisher has pending for this card is answered first, so the backup
    // the server keeps holds the answer ([0104]).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let answered = match fetch_challenge(&contact, &id.serial, now).map_err(contact_failure)? {
        Some(c) => {
            let (counter, _) =
                write_answer(&mut trail, &mut card, &c, &key, now).map_err(trail_failure)?;
            Some((c, counter))
        }
        None => None,
    };
    let report = vouch_trail(&mut trail, &mut card, &contact).map_err(contact_failure)?;
    super::warn_mirror(&trail);
    let upto = report.upto;
    let counter = report.validator_counter;
    // From now on `trail verify`, `trail show` and opening a document start from this
    // server's validator records ([0094]); the record is already written, so a failure
    // here is reported as such.
    let newly_trusted = home.add_trusted_validator(&key).map_err(|e| {
        Failure::Usage(anyhow!(e).context(format!(
            "the validator record was written at counter {counter}, but the server key could not be added to the trusted validation servers"
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
                "validator_counter": counter,
                "backup_upto": report.backup.as_ref().ok(),
                "backup_error": report.backup.as_ref().err(),
                "newly_trusted": newly_trusted,
                "challenge": answered.as_ref().map(|(c, counter)| serde_json::json!({
                    "nonce": c.nonce_hex(),
                    "counter": counter,
                })),
            })
        );
    } else {
        if let Some((c, counter)) = &answered {
            println!(
                "answered the publisher's challenge {}… (record at counter {counter})",
                &c.nonce_hex()[..16]
            );
        }
        println!(
            "trail vouched for by {url} up to counter {upto} (server key {}); its record is at counter {counter}",
            hex::encode(&key.fingerprint()[..8]),
        );
        match &report.backup {
            Ok(b) => println!("the server's backup of the trail reaches counter {b}"),
            Err(e) => println!(
                "note: the server's backup of the trail ends at counter {upto}: {e} (the next vouch brings it up to date)"
            ),
        }
        if newly_trusted {
            println!(
                "note: this server is now trusted to vouch for your trail, so later checks start from its record ({})",
                home.validators_path().display()
            );
        }
    }
    Ok(())
}
