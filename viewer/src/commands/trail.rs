//! `tally-view trail verify | show`.

use super::{Failure, Outcome, trail_failure};
use crate::cli::TrailCommand;
use anyhow::Context as _;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::{Body, Trail, TrailError, Usage};

/// Runs a trail subcommand.
pub fn run(cmd: &TrailCommand, home: &Home, spec: &CardSpec) -> Outcome {
    match cmd {
        TrailCommand::Verify(a) => verify(a.json, home, spec),
        TrailCommand::Show(a) => show(a.json, home, spec),
        TrailCommand::Vouch(a) => super::vouch::run(a, home, spec),
    }
}

fn report_failure(json: bool, e: TrailError) -> Failure {
    if json {
        let v = serde_json::json!({ "ok": false, "check": e.check(), "record": e.record(), "error": e.to_string() });
        println!("{v:#}");
    }
    trail_failure(e)
}

fn verify(json: bool, home: &Home, spec: &CardSpec) -> Outcome {
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let mut trail =
        Trail::open_or_create(&path, &mut card, &id).map_err(|e| report_failure(json, e))?;
    let v = trail
        .validate(&mut card)
        .map_err(|e| report_failure(json, e))?;
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
        });
        println!("{out:#}");
    } else {
        println!(
            "trail OK: {} records, counters {}..={}, every signature verified against card {}",
            v.records, v.first_counter, v.last_counter, id.serial
        );
    }
    Ok(())
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
            format!("pages {count} from page {first}"),
            Some(licence.to_hex()),
        ),
        Usage::Time { licence, seconds } => (format!("time {seconds}s"), Some(licence.to_hex())),
        Usage::Print { licence, pages } => (format!("print {pages} pages"), Some(licence.to_hex())),
        Usage::Nonce { value } => (format!("nonce {value}"), None),
        Usage::Validator(v) => (
            format!(
                "validator up to counter {} by server {}",
                v.upto,
                hex::encode(&v.server_key[..8])
            ),
            None,
        ),
    }
}

fn show(json: bool, home: &Home, spec: &CardSpec) -> Outcome {
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let mut trail = Trail::open(&path, &id).map_err(|e| report_failure(json, e))?;
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
            serde_json::json!({"trail": path, "card": id.serial.to_hex(), "status": status, "records": recs})
        );
    } else {
        println!("trail {} (card {})", path.display(), id.serial);
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
