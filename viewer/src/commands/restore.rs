//! `tally-view trail restore --keyfile KEYFILE [--server URL] [--server-key HEX] [--replace] [--json]`:
//! recovers a lost trail from the validation server's backup (\[0062\]), headless.
//!
//! The card signs a restore request (one counter value, accounted for by the recovery);
//! the server answers — encrypted to this request — with the newest trail it vouched for
//! and a recovery record it signed, charging the records lost since that backup as the
//! publisher's policy says (default: in full). Both are checked and written by
//! `tally_core::trail::Trail::restore`, which appends the recovery record through Write.
//! The server's key is added to the trusted validation servers (`<home>/validators`), so
//! later ValidateTrails accept the recovery record.
//!
//! Exit 0 when the trail was restored; 1 when the server refused or its answer does not
//! verify; 2 when the server can't be reached, a trail is in the way, or a file can't be read.

use super::{Failure, Outcome, trail_failure};
use crate::commands::vouch::ServerArgs;
use anyhow::{Context as _, anyhow};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tally_core::home::{CardSpec, Home};
use tally_core::trail::body::{LostCharge, Recovery};
use tally_core::trail::{LicenceId, Trail, Usage};
use tally_core::validation::{
    MAX_ACCOUNT_ANSWER, MAX_RESTORE_ANSWER, MAX_TRAIL_REQUEST_TRAIL, check_accounts,
    open_restore_answer, restore_request_body, seal_restore_request, seal_trail_request,
    unaccounted_holes,
};

/// Arguments of `trail restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The validation server that keeps the backup.
    #[command(flatten)]
    pub target: ServerArgs,
    /// Move a damaged or rolled-back trail aside (`<trail>.replaced-<unix time>`) first.
    /// Without it, an existing trail is never touched.
    #[arg(long)]
    pub replace: bool,
    /// Restore from the mirror copy (`tally-view trail mirror DIR`) instead of the server:
    /// accepted only if the card confirms that nothing is missing from it.
    #[arg(long, conflicts_with_all = ["keyfile", "server", "server_key"])]
    pub from_mirror: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Refuses when a trail exists at `path`, unless `replace`: then moves it aside.
fn make_room(path: &std::path::Path, replace: bool) -> Result<(), Failure> {
    if !path.exists() {
        return Ok(());
    }
    if !replace {
        return Err(Failure::Usage(anyhow!(
            "a trail already exists at {}; restore only replaces a lost trail (give --replace to move this one aside first)",
            path.display()
        )));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut aside = path.as_os_str().to_os_string();
    aside.push(format!(".replaced-{now}"));
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    eprintln!(
        "note: the old trail was moved to {}",
        PathBuf::from(&aside).display()
    );
    Ok(())
}

/// `--from-mirror`: the mirror copy put in place, kept only if ValidateTrail accepts it
/// with the card — a mirror that lags the card is a rollback like any old copy (T4).
fn from_mirror(args: &RestoreArgs, home: &Home, spec: &CardSpec) -> Outcome {
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    let Some(mirror) = home
        .mirror_path(&id.serial)
        .map_err(|e| Failure::Usage(anyhow!(e)))?
    else {
        return Err(Failure::Usage(anyhow!(
            "no mirror folder is set (tally-view trail mirror DIR)"
        )));
    };
    let bytes = tally_core::files::read_bounded(&mirror, tally_core::trail::MAX_TRAIL_BYTES)
        .with_context(|| format!("reading the mirror {}", mirror.display()))?;
    make_room(&path, args.replace)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    tally_core::files::atomic_write(&path, &bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    let keys = super::trail::validators(home, &[])?;
    let checked = Trail::open(&path, &id).and_then(|mut t| {
        t.set_trusted_validators(keys);
        // The nonce record ValidateTrail writes is appended to the mirror as well.
        t.set_mirror(Some(mirror.clone()));
        t.verify(&mut card).map(|v| (t, v))
    });
    match checked {
        Ok((t, v)) => {
            super::warn_mirror(&t);
            if args.json {
                println!(
                    "{:#}",
                    serde_json::json!({
                        "restored": true,
                        "trail": path,
                        "from_mirror": mirror,
                        "records": v.records,
                        "last_counter": v.last_counter,
                    })
                );
            } else {
                println!(
                    "trail restored from the mirror {}: {}, nothing missing",
                    mirror.display(),
                    super::records_with_counters(v.records, v.first_counter, v.last_counter)
                );
            }
            Ok(())
        }
        Err(e) => {
            // Only the copy just put there is removed; the mirror itself is untouched.
            let _ = std::fs::remove_file(&path);
            Err(Failure::Check(anyhow!(e).context(
                "the mirror is not a complete trail of this card (restore from the publisher's backup instead: tally-view trail restore --keyfile KEYFILE)",
            )))
        }
    }
}

/// Runs `trail restore`.
pub fn run(args: &RestoreArgs, home: &Home, spec: &CardSpec) -> Outcome {
    if args.from_mirror {
        return from_mirror(args, home, spec);
    }
    let (url, key) = super::vouch::server(&args.target, home)?;
    let endpoint = format!("{}/v1/trail/restore", url.trim_end_matches('/'));
    let mut card = spec.open(home)?;
    let id = card.identity().context("reading the card")?;
    let path = home.trail_path(&id.serial);
    if path.exists() && !args.replace {
        return account(args, home, &mut card, &id, &url, &key);
    }
    make_room(&path, args.replace)?;
    if !args.json {
        eprintln!(
            "Restoring the trail of card {} from the backup kept by {url}. What this card \
             recorded after that backup is lost; the publisher's policy decides how that is \
             charged, and the answer says which licences were charged.",
            id.serial
        );
    }
    // The card signs the request: only this card can ask for its trail.
    let body = restore_request_body(&key, time::OffsetDateTime::now_utc().unix_timestamp());
    let request = Trail::sign_detached(&path, &mut card, &id, &body).map_err(trail_failure)?;
    let (envelope, answer_key) =
        seal_restore_request(&key, &id.serial, &request, &mut tally_core::crypto::OsRng)
            .map_err(|e| Failure::Usage(anyhow!(e)))?;
    let (status, answer) = crate::online::post(
        &endpoint,
        &envelope,
        Duration::from_secs(300),
        MAX_RESTORE_ANSWER as u64,
    )
    .map_err(|e| {
        Failure::Usage(anyhow!(
            "cannot reach the validation server {endpoint}: {e} (the card counter {} spent on the request is accounted for by the next restore)",
            request.counter
        ))
    })?;
    if status != 200 {
        return Err(super::http_refusal(status, &answer));
    }
    let answer = open_restore_answer(&answer_key, &answer)
        .map_err(|e| Failure::Check(anyhow!(e).context("the server's restore answer")))?;
    let mut trail = Trail::restore(&path, &mut card, &id, &answer.trail, &answer.recovery, &key)
        .map_err(trail_failure)?;
    let mirror = home
        .mirror_path(&id.serial)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    trail.set_mirror_now(mirror);
    super::warn_mirror(&trail);
    let added = home
        .add_trusted_validator(&key)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    let last = trail.records().last();
    let recovery = last
        .and_then(|r| tally_core::trail::Body::parse(&r.body).ok())
        .and_then(|b| match b.usage {
            Usage::Recovery(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| {
            Failure::Check(anyhow!(
                "the restored trail does not end with the server's recovery record"
            ))
        })?;
    let backup_records = trail.records().len().saturating_sub(1) as u64;
    let lost = recovery.to.saturating_sub(recovery.from).saturating_add(1);
    let this_licence = this_licence(&args.target, home);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "restored": true,
                "trail": path,
                "server": url,
                "server_key": hex::encode(key.fingerprint()),
                "backup_records": backup_records,
                "lost_from": recovery.from,
                "lost_to": recovery.to,
                "lost_counters": lost,
                "charge": recovery.charge.as_str(),
                "charged_licences": match (&recovery.licences, recovery.charge) {
                    (_, LostCharge::Forgive) => serde_json::json!([]),
                    (None, LostCharge::Full) => serde_json::json!("every"),
                    (Some(l), LostCharge::Full) => serde_json::json!(l.iter().map(|l| l.to_hex()).collect::<Vec<_>>()),
                },
                "recovery_counter": last.map(|r| r.counter),
                "server_trusted_now": added,
            })
        );
    } else {
        let returned = |l: &LicenceId| home.receipt_path(l).exists();
        for line in restored_report(
            &url,
            backup_records,
            &recovery,
            this_licence.as_ref(),
            &returned,
        ) {
            println!("{line}");
        }
        if added {
            eprintln!(
                "note: validation server {} is now trusted for validator and recovery records",
                hex::encode(&key.fingerprint()[..8])
            );
        }
    }
    Ok(())
}

/// The trail is there, restored from another publisher's server: this licence's server
/// accounts for the records lost there, by its own publisher's policy (T30). Without such
/// a hole, a trail in the way is refused as before.
fn account(
    args: &RestoreArgs,
    home: &Home,
    card: &mut tally_core::Card,
    id: &tally_core::CardIdentity,
    url: &str,
    key: &tally_core::crypto::PublicKey,
) -> Outcome {
    let path = home.trail_path(&id.serial);
    let mut trail = Trail::open(&path, id).map_err(trail_failure)?;
    trail.set_trusted_validators(vec![key.clone()]);
    trail.verify(card).map_err(trail_failure)?;
    let holes = unaccounted_holes(trail.records(), &key.fingerprint());
    if holes.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "a trail already exists at {} and {url} has accounted for everything lost from it; restore only replaces a lost trail (give --replace to move this one aside first)",
            path.display()
        )));
    }
    let bytes = tally_core::files::read_bounded(&path, MAX_TRAIL_REQUEST_TRAIL as u64)
        .with_context(|| format!("reading {}", path.display()))?;
    let envelope = seal_trail_request(key, &id.serial, &bytes, &mut rand_core::OsRng)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    let endpoint = format!("{}/v1/trail/account", url.trim_end_matches('/'));
    let (status, answer) = crate::online::post(
        &endpoint,
        &envelope,
        Duration::from_secs(300),
        MAX_ACCOUNT_ANSWER as u64,
    )
    .map_err(|e| {
        Failure::Usage(anyhow!(
            "cannot reach the validation server {endpoint}: {e}"
        ))
    })?;
    if status != 200 {
        return Err(super::http_refusal(status, &answer));
    }
    let bodies = check_accounts(&answer, key, id, trail.records()).map_err(trail_failure)?;
    super::mirror_trail(&mut trail, home, &id.serial)?;
    let mut lines = Vec::new();
    for body in &bodies {
        let rec = trail.write(card, body).map_err(trail_failure)?;
        if let Usage::Recovery(r) = &body.usage {
            lines.push(account_line(url, rec.counter, r, &|l: &LicenceId| {
                home.receipt_path(l).exists()
            }));
        }
    }
    super::warn_mirror(&trail);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "accounted": bodies.iter().filter_map(|b| match &b.usage {
                    Usage::Recovery(r) => Some(serde_json::json!({
                        "lost_from": r.from,
                        "lost_to": r.to,
                        "charge": r.charge.as_str(),
                    })),
                    _ => None,
                }).collect::<Vec<_>>(),
                "server": url,
            })
        );
    } else {
        for l in lines {
            println!("{l}");
        }
        if bodies.len() < holes.len() {
            println!(
                "{} more lost ranges are not accounted for yet: run the same command again.",
                holes.len() - bodies.len()
            );
        }
    }
    Ok(())
}

/// One account, in the reader's words (a licence `returned` on this card said so: it is
/// charged in full whatever the policy, T38).
fn account_line(
    url: &str,
    counter: u64,
    r: &Recovery,
    returned: &dyn Fn(&LicenceId) -> bool,
) -> String {
    let charged = match (r.charge, &r.licences) {
        (LostCharge::Forgive, _) => "nothing charged (its publisher forgives lost use)".to_string(),
        (LostCharge::Full, None) => {
            "charged in full: every licence of its publisher on this card counts as used up"
                .to_string()
        }
        (LostCharge::Full, Some(l)) => format!(
            "charged in full to {}",
            l.iter()
                .map(|l| if returned(l) {
                    format!("{l} (returned on this card: used up whatever the policy)")
                } else {
                    l.to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{url} accounted for card counters {} to {}, lost in an earlier restore: {charged} (its record at counter {counter}).",
        r.from, r.to
    )
}

/// The licence of `--keyfile`, if one was given and opens (to name it in the report).
fn this_licence(target: &ServerArgs, home: &Home) -> Option<LicenceId> {
    let bytes = std::fs::read(target.keyfile.as_ref()?).ok()?;
    tally_core::keyfile::Keyfile::open(&bytes, &super::trust::trusted(home))
        .ok()
        .map(|k| k.licence())
}

/// What a restore did, in the reader's words: what came back, what was lost, and what the
/// publisher's policy charged for it, licence by licence. A licence `returned` on this card
/// (its receipt is in the home) is charged in full whatever the policy (T38: a restore never
/// reopens a returned licence), and said so, not put down to the policy.
fn restored_report(
    url: &str,
    backup_records: u64,
    r: &Recovery,
    this: Option<&LicenceId>,
    returned: &dyn Fn(&LicenceId) -> bool,
) -> Vec<String> {
    let lost = r.to.saturating_sub(r.from).saturating_add(1);
    let mut out = vec![format!(
        "Trail restored from {url}: {} from the backup.",
        super::plural(backup_records, "record", "records")
    )];
    out.push(if lost == 1 {
        format!(
            "Lost: 1 card counter ({}), used by this restore request; nothing was recorded after the server's backup.",
            r.to
        )
    } else {
        format!(
            "Lost: {lost} card counters ({} to {}) were used after the server's backup, the last by this restore request; the server never saw their records, so it cannot tell what they were.",
            r.from, r.to
        )
    });
    let name = |l: &LicenceId| {
        if Some(l) == this {
            format!("{l} (this keyfile's)")
        } else {
            l.to_string()
        }
    };
    out.push(match (r.charge, &r.licences) {
        (LostCharge::Forgive, _) => {
            "Charged: nothing; the publisher's policy forgives lost use (the loss stays on record in the trail).".to_string()
        }
        (LostCharge::Full, None) => {
            "Charged in full, as the publisher's policy says for lost use: every licence of this card now counts as used up.".to_string()
        }
        (LostCharge::Full, Some(l)) => {
            let (back, charged): (Vec<&LicenceId>, Vec<&LicenceId>) =
                l.iter().partition(|l| returned(l));
            let list = |l: &[&LicenceId]| l.iter().map(|l| name(l)).collect::<Vec<_>>().join(", ");
            let mut said = Vec::new();
            if !charged.is_empty() {
                said.push(format!(
                    "Charged in full, as the publisher's policy says for lost use: {} {} now {} as used up.",
                    if charged.len() == 1 { "licence" } else { "licences" },
                    list(&charged),
                    if charged.len() == 1 { "counts" } else { "count" },
                ));
            }
            if !back.is_empty() {
                said.push(format!(
                    "Returned on this card, and so used up whatever the policy: {} {} (a restore never reopens a returned licence).",
                    if back.len() == 1 { "licence" } else { "licences" },
                    list(&back),
                ));
            }
            said.join(" ")
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recovery(licences: Vec<LicenceId>) -> Recovery {
        Recovery {
            server_key: [0; 32],
            from: 5,
            to: 7,
            chain: [0; 32],
            charge: LostCharge::Full,
            licences: Some(licences),
            signature: tally_core::crypto::Signature([0; 64]),
        }
    }

    #[test]
    fn a_returned_licence_is_said_returned_not_charged_by_the_policy() {
        let (loan, kept) = (LicenceId([1; 16]), LicenceId([2; 16]));
        let is_loan = |l: &LicenceId| *l == loan;
        let text = restored_report("http://x", 3, &recovery(vec![loan]), None, &is_loan).join("\n");
        assert!(
            text.contains(&format!(
                "Returned on this card, and so used up whatever the policy: licence {loan}"
            )),
            "{text}"
        );
        assert!(!text.contains("as the publisher's policy says"), "{text}");
        let text = restored_report(
            "http://x",
            3,
            &recovery(vec![loan, kept]),
            Some(&kept),
            &is_loan,
        )
        .join("\n");
        assert!(
            text.contains(&format!(
                "policy says for lost use: licence {kept} (this keyfile's) now counts"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "used up whatever the policy: licence {loan} (a restore"
            )),
            "{text}"
        );
        let line = account_line("http://x", 9, &recovery(vec![loan, kept]), &is_loan);
        assert!(line.contains(&format!("charged in full to {loan} (returned on this card: used up whatever the policy), {kept} ")), "{line}");
        let none = |_: &LicenceId| false;
        let text = restored_report("http://x", 3, &recovery(vec![loan]), None, &none).join("\n");
        assert!(!text.contains("Returned on this card"), "{text}");
    }
}
