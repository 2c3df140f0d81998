//! `tally-view trail verify | show`.
//!
//! Both trust the validation servers listed in the home folder (`<home>/validators`,
//! filled by `trail vouch`): a trail carrying a validator record signed by one of them
//! starts from the newest such record (\[0094\]) — the records it vouches for are checked by
//! their chain hash, the later ones by signature — and the output says so.

use super::{Failure, Outcome, trail_failure};
use crate::cli::TrailCommand;
use anyhow::{Context as _, anyhow};
use clap::Args;
use tally_core::crypto::PublicKey;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::validator::Vouched;
use tally_core::trail::{Body, Trail, TrailError, Usage};

/// Arguments of `trail verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also trust this validation server's key for this run (130 hex digits, uncompressed
    /// SEC1; repeatable). The home folder's trusted servers are always used.
    #[arg(long = "server-key", value_name = "HEX")]
    pub server_keys: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The home's trusted validation-server keys plus `extra` (hex). A malformed validators
/// file is an error naming the line, never a silently shorter list (which would only
/// slow verification down, but would hide a damaged file).
pub(super) fn validators(home: &Home, extra: &[String]) -> Result<Vec<PublicKey>, Failure> {
    let mut keys = home
        .trusted_validators()
        .map_err(|e| Failure::Usage(anyhow!(e).context("the trusted validation servers")))?;
    for hex_key in extra {
        let key = super::parse_server_key(hex_key)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The fast start, for JSON output.
fn fast_start_json(v: Option<&Vouched>) -> serde_json::Value {
    match v {
        Some(v) => serde_json::json!({
            "validator_index": v.index,
            "validator_counter": v.counter,
            "upto": v.upto,
            "server_key": hex::encode(v.server_key),
        }),
        None => serde_json::Value::Null,
    }
}

/// Runs a trail subcommand.
pub fn run(cmd: &TrailCommand, home: &Home, spec: &CardSpec) -> Outcome {
    match cmd {
        TrailCommand::Verify(a) => verify(a, home, spec),
        TrailCommand::Show(a) => show(a.json, home, spec),
        TrailCommand::Vouch(a) => super::vouch::run(a, home, spec),
        TrailCommand::Answer(a) => super::answer::run(a, home, spec),
        TrailCommand::Restore(a) => super::restore::run(a, home, spec),
        TrailCommand::Archive(a) => super::archive::run(a, home, spec),
        TrailCommand::Mirror(a) => super::mirror::run(a, home, spec),
    }
}

fn report_failure(json: bool, e: TrailError) -> Failure {
    if json {
        let v = serde_json::json!({ "ok": false, "check": e.check(), "record": e.record(), "error": e.to_string() });
        println!("{v:#}");
    }
    trail_failure(e)
}

fn verify(args: &VerifyArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let json = args.json;
    let keys = validators(home, &args.server_keys)?;
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let mut trail =
        Trail::open_or_create(&path, &mut card, &id).map_err(|e| report_failure(json, e))?;
    trail.set_trusted_validators(keys);
    super::mirror_trail(&mut trail, home, &id.serial)?;
    let v = trail
        .verify(&mut card)
        .map_err(|e| report_failure(json, e))?;
    super::warn_mirror(&trail);
    if let Some(c) = trail.last_recovery() {
        eprintln!(
            "note: record {c}, signed by the card just before an interruption, was recovered from the card"
        );
    }
    if json {
        let out = serde_json::json!({
            "ok": true,
            "trail": path,
            "records": v.records,
            "first_counter": v.first_counter,
            "last_counter": v.last_counter,
            "newly_verified": v.newly_verified,
            "recovered": trail.last_recovery(),
            "fast_start": fast_start_json(trail.vouched()),
        });
        println!("{out:#}");
    } else if let Some(f) = trail.vouched() {
        println!(
            "trail OK: {}; the validation server (key {}) vouched for counters up to {} \
             (its record at counter {}), checked by its chain hash; the {} after them \
             checked by signature against card {}",
            super::records_with_counters(v.records, v.first_counter, v.last_counter),
            hex::encode(&f.server_key[..8]),
            f.upto,
            f.counter,
            super::plural(v.newly_verified, "record", "records"),
            id.serial
        );
    } else {
        println!(
            "trail OK: {}, every signature verified against card {}",
            super::records_with_counters(v.records, v.first_counter, v.last_counter),
            id.serial
        );
    }
    Ok(())
}

/// "counter 12", "counters 12 to 15".
fn lost_counters(from: u64, to: u64) -> String {
    if from == to {
        format!("counter {from}")
    } else {
        format!("counters {from} to {to}")
    }
}

fn describe(usage: &Usage) -> (String, Option<String>) {
    match usage {
        Usage::Genesis => ("genesis".into(), None),
        Usage::Open { licence } => ("open".into(), Some(licence.to_hex())),
        Usage::Pages {
            licence,
            first,
            count,
        } => (
            format!(
                "{} from page {first}",
                super::plural(u64::from(*count), "page", "pages")
            ),
            Some(licence.to_hex()),
        ),
        Usage::Time { licence, seconds } => (format!("time {seconds}s"), Some(licence.to_hex())),
        Usage::Print { licence, pages } => (
            format!(
                "print {}",
                super::plural(u64::from(*pages), "page", "pages")
            ),
            Some(licence.to_hex()),
        ),
        Usage::Copy { licence, chars } => (
            format!(
                "copy {}",
                super::plural(u64::from(*chars), "character", "characters")
            ),
            Some(licence.to_hex()),
        ),
        Usage::Renewal { licence, version } => (
            format!("renewal to version {version}"),
            Some(licence.to_hex()),
        ),
        Usage::Return { licence } => ("returned".into(), Some(licence.to_hex())),
        Usage::Nonce { value } => (format!("nonce {value}"), None),
        Usage::Challenge { server_key, nonce } => (
            format!(
                "answer to the publisher's challenge {} (server {})",
                hex::encode(&nonce[..8]),
                hex::encode(&server_key[..8])
            ),
            None,
        ),
        Usage::Totals(p) => (
            format!(
                "totals part {} of the validator up to counter {}: {}",
                p.part,
                p.upto,
                super::plural(p.totals.len() as u64, "licence", "licences")
            ),
            None,
        ),
        Usage::Validator(v) => (
            format!(
                "validator up to counter {} by server {}",
                v.upto,
                hex::encode(&v.server_key[..8])
            ),
            None,
        ),
        Usage::Recovery(r) => (
            format!(
                "restored by server {}: {} lost, {}",
                hex::encode(&r.server_key[..8]),
                lost_counters(r.from, r.to),
                match (r.charge, &r.licences) {
                    (tally_core::trail::body::LostCharge::Forgive, _) => "forgiven".to_string(),
                    (_, None) => "charged in full to every licence".to_string(),
                    (_, Some(l)) => format!(
                        "charged in full to {}",
                        super::plural(l.len() as u64, "licence", "licences")
                    ),
                }
            ),
            None,
        ),
    }
}

fn show(json: bool, home: &Home, spec: &CardSpec) -> Outcome {
    let keys = validators(home, &[])?;
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let mut trail = Trail::open(&path, &id).map_err(|e| report_failure(json, e))?;
    trail.set_trusted_validators(keys);
    // Show never writes; it checks signatures and order (truncation needs `trail verify`).
    let check = trail.verify_offline();
    let mut rows = Vec::new();
    for (i, r) in trail.records().iter().enumerate() {
        let body = Body::parse(&r.body);
        let (what, lic, at) = match &body {
            Ok(b) => {
                let (w, l) = describe(&b.usage);
                (w, l, b.at.unix_timestamp().to_string())
            }
            Err(e) => (format!("unreadable body: {e}"), None, String::new()),
        };
        rows.push((
            i,
            r.counter,
            at,
            what,
            lic,
            body.as_ref().map(|b| b.encode()).unwrap_or_default(),
        ));
    }
    if json {
        let recs: Vec<_> = rows
            .iter()
            .map(|(i, c, _, what, lic, text)| serde_json::json!({"index": i, "counter": c, "use": what, "licence": lic, "body": text}))
            .collect();
        let status = match &check {
            Ok(_) => serde_json::json!({"ok": true}),
            Err(e) => {
                serde_json::json!({"ok": false, "check": e.check(), "record": e.record(), "error": e.to_string()})
            }
        };
        println!(
            "{:#}",
            serde_json::json!({"trail": path, "card": id.serial.to_hex(), "status": status,
                "fast_start": fast_start_json(trail.vouched()), "records": recs})
        );
    } else {
        println!("trail {} (card {})", path.display(), id.serial);
        if let Some(f) = trail.vouched() {
            println!(
                "vouched for: counters up to {}, by the validation server's record at counter {} (server key {}); those records were checked by their chain hash",
                f.upto,
                f.counter,
                hex::encode(&f.server_key[..8])
            );
        }
        for (i, c, _, what, lic, text) in &rows {
            let lic = lic
                .as_deref()
                .map(|l| format!(" licence {}", &l[..8]))
                .unwrap_or_default();
            let at = text
                .split(' ')
                .nth(2)
                .and_then(|w| w.strip_prefix("at="))
                .unwrap_or("");
            println!("{i:>6}  #{c}  {at}  {what}{lic}");
        }
    }
    check.map(|_| ()).map_err(trail_failure)
}
