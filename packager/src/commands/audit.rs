//! `tally-pack audit [TRAIL] --customer NAME`: the vendor's side of \[0041\] and \[0104\].
//!
//! Verifies a customer's trail against the card key in the registry (every signature,
//! every counter, the start at the card's origin) without the card, then reports use per
//! licence this vendor issued, for billing. Records of other vendors' licences are counted
//! but not itemised (\[0049\]: each licence reads only its own).
//!
//! The trail is the file TRAIL the customer sent, or — without TRAIL — the newest backup
//! of the customer's trail the validation server holds (`trail_backups`, kept when the
//! reader's viewer has the trail vouched for or answers a challenge). The backup is
//! encrypted to the server key, so the vendor password is asked for; it is decrypted in
//! memory and verified in full (`tally_core::trail::Trail::from_backup`), and the report
//! says how fresh it is: when the server received it and its last counter.
//!
//! The publisher's challenges to the customer's card (`tally-pack challenge`, \[0104\]) are
//! reported answered — the card wrote the nonce at counter c, so the trail up to c holds
//! all use up to the moment the challenge was issued — pending, or expired
//! (`tally_core::validation::ChallengeStatus`).
//!
//! A trail that was restored from the validation server's backup (\[0062\]) or had its
//! vouched-for prefix archived (\[0094\]) carries records signed by the vendor's validation
//! server; `--own-server` trusts that server's key (derived from the vendor secret, so
//! the password is asked for). Totals then start from the newest validator record, as
//! the reader's viewer counts them, and lost records charged in full show as used up.
//!
//! Without the card, truncation and rollback cannot be seen (\[0050\], property 3). What the
//! publisher can see is the validation server's newest backup of the card's trail (the
//! registry's `trail_backups`): a trail that ends before it is an old copy, and the report
//! says so; and a nonce the vendor asked the customer to write (\[0104\]) is listed.
//!
//! A licence charged in full for lost records (\[0062\]) has every total at
//! `tally_core::policy::WRITTEN_OFF`; the report says "written off at restore" instead of
//! printing those placeholders (JSON: `"written_off": true` and null totals).

use super::{Ctx, refused};
use crate::params;
use crate::sql::Db;
use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::policy::{Decision, SystemClock, Tally, evaluate};
use tally_core::rental::tally_of;
use tally_core::trail::{LicenceId, Trail, Usage};
use tally_core::validation::ChallengeStatus;

/// Arguments of `audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The customer's trail file. Without it: the newest backup of the customer's trail your
    /// validation server holds (in the registry's database, `--database`; the vendor
    /// password is asked for).
    pub trail: Option<PathBuf>,
    /// The registered customer whose card made the trail.
    #[arg(long, value_name = "NAME")]
    pub customer: String,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (one row per licence).
    #[arg(long)]
    pub csv: bool,
    /// Trust this vendor's validation server for validator and recovery records (a restored
    /// or archived trail needs it; so does checking the answers to challenges); the server
    /// key is derived from the vendor secret. Always on without TRAIL.
    #[arg(long)]
    pub own_server: bool,
}

struct Row {
    licence: LicenceId,
    title: String,
    document_id: String,
    issued_at: String,
    tally: Tally,
    status: String,
    issued: bool,
}

fn status(d: &Decision, tally: &Tally) -> String {
    if let Some(on) = tally.returned() {
        return format!("returned on {}", rfc3339(on));
    }
    match d {
        Decision::Allowed { remaining } => format!("active: {remaining} left"),
        // Its own sentence says why; the reader's reason would repeat it.
        Decision::Limited { .. } if tally.written_off => {
            "used up: written off at restore".to_string()
        }
        Decision::Limited { reason } => format!("used up: {reason}"),
        Decision::Denied { reason } => format!("refused: {reason}"),
    }
}

/// `n` and the right one of `one` / `many`: "1 record", "7 records".
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "7 records (counters 3251375168 to 3251375174)", "1 record (counter 12)", "no records".
fn counter_range(n: u64, first: u64, last: u64) -> String {
    match n {
        0 => "no records".to_string(),
        1 => format!("1 record (counter {last})"),
        _ => format!(
            "{} (counters {first} to {last})",
            plural(n, "record", "records")
        ),
    }
}

/// A total to bill by, or `None` for a written-off licence, whose totals are only the
/// `WRITTEN_OFF` placeholder.
fn total(r: &Row, v: u64) -> Option<u64> {
    (!r.tally.written_off).then_some(v)
}

/// A copy total to bill by: `None` when written off, or when a fast start's validator
/// named use whose copies were archived and so cannot be counted here.
fn copies_total(r: &Row, v: u64) -> Option<u64> {
    total(r, v).filter(|_| !r.tally.history_unknown())
}

/// A time as RFC 3339 UTC.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// What one licence used, in words.
fn use_line(r: &Row, vouched: bool) -> String {
    let t = &r.tally;
    if t.written_off && t.returned().is_some() {
        // A validator writes a returned licence's totals as fully used: only the return
        // itself is known.
        return format!(
            "{}: the reader's card signed its return; its use before the return is in the validation server's totals",
            r.status
        );
    }
    if t.written_off {
        return "written off at restore: the reader's trail was lost and restored from the validation server's backup, and the use after that backup counts in full, so the licence is used up".to_string();
    }
    // After a fast start the validator's totals carry no count of page blocks.
    let blocks = if vouched {
        String::new()
    } else {
        format!(" in {}", plural(t.page_records, "block", "blocks"))
    };
    // Copies are said only when there are some (or when they cannot be counted), so the
    // line of a licence without copying reads as before.
    let copies = if t.history_unknown() {
        ", copies in the archived records not counted".to_string()
    } else if t.copies > 0 {
        format!(
            ", {} copied ({})",
            plural(t.copies, "text", "texts"),
            plural(t.copied_chars, "character", "characters")
        )
    } else {
        String::new()
    };
    format!(
        "{}, {} prepaid{blocks}, {} min {} s in {}, {} printed{copies} ({})",
        plural(t.opens, "opening", "openings"),
        plural(t.page_views, "page view", "page views"),
        t.seconds / 60,
        t.seconds % 60,
        plural(t.time_records, "time unit", "time units"),
        plural(t.printed, "page", "pages"),
        r.status
    )
}

/// The validation server's newest backup of a card's trail (`tally-view trail vouch`).
struct Backup {
    upto: u64,
    received_at: String,
    /// The request as received, still encrypted to the server key.
    envelope: Vec<u8>,
}

/// The registry's record of the newest backup of card `serial`'s trail, if any (the
/// validation server shares the registry, `tally-pack serve`).
fn server_backup(db: &mut Db, serial: &tally_core::card::Serial) -> Result<Option<Backup>> {
    let row = db.query_opt(
        "SELECT upto, received_at, envelope FROM trail_backups WHERE serial = $1",
        params![serial.to_hex()],
    )?;
    row.map(|r| {
        let upto = r.text(0)?;
        let received_at = r.text(1)?;
        Ok(Backup {
            upto: upto
                .parse()
                .map_err(|_| anyhow::anyhow!("registry: bad backup counter {upto:?}"))?,
            // RFC 3339 to the second: the fraction is noise in a report.
            received_at: match received_at.split_once('.') {
                Some((seconds, _)) => format!("{seconds}Z"),
                None => received_at,
            },
            envelope: r.blob(2)?,
        })
    })
    .transpose()
}

/// Where the trail audited came from.
enum Source {
    /// The file the customer sent.
    File(PathBuf),
    /// The validation server's newest backup.
    Backup,
}

/// The newest backup of `customer`'s trail, decrypted with the server key and verified in
/// full against the registered card (`Trail::from_backup`).
fn backup_trail(
    backup: Option<&Backup>,
    customer: &crate::registry::Customer,
    key: &tally_core::validation::ServerSecret,
) -> Result<Trail> {
    let serial = &customer.card.serial;
    let Some(b) = backup else {
        return Err(refused(format!(
            "the validation server holds no backup of {}'s trail (card {serial}): it keeps one when their viewer has the trail vouched for or answers a challenge (`tally-pack challenge --customer {}`); or audit a trail file they send (`tally-pack audit TRAIL --customer {}`)",
            customer.name,
            super::shell_word(&customer.name),
            super::shell_word(&customer.name)
        )));
    };
    let req = key.open_trail_request(&b.envelope).map_err(|e| {
        refused(format!(
            "the validation server's backup of card {serial} does not decrypt under this vendor's server key: {e}"
        ))
    })?;
    if req.serial != *serial {
        return Err(refused(format!(
            "the validation server's backup filed under card {serial} is of card {}",
            req.serial
        )));
    }
    Trail::from_backup(
        format!("the validation server's backup of card {serial}"),
        &req.trail,
        &customer.card,
        vec![key.public().clone()],
    )
    .map_err(|e| {
        refused(format!(
            "the validation server's backup of {}'s trail does not verify against their registered card ({}): {e}",
            customer.name,
            e.check()
        ))
    })
}

/// One challenge as the report states it.
struct ChallengeLine {
    row: crate::server::challenge::ChallengeRow,
    /// `None`: not checked (a trail file audited without the server key).
    status: Option<ChallengeStatus>,
    /// Answered in a trail the server verified before, whose records are no longer in the
    /// one audited (archived since): the counter and when the server saw it.
    seen_earlier: Option<(u64, String)>,
}

impl ChallengeLine {
    fn state(&self) -> &'static str {
        match (&self.status, &self.seen_earlier) {
            (None, _) => "unchecked",
            (Some(ChallengeStatus::Answered(_)), _) | (Some(_), Some(_)) => "answered",
            (Some(ChallengeStatus::Pending), None) => "pending",
            (Some(ChallengeStatus::Expired), None) => "expired",
        }
    }

    fn counter(&self) -> Option<u64> {
        match (&self.status, &self.seen_earlier) {
            (Some(ChallengeStatus::Answered(a)), _) => Some(a.counter),
            (_, Some((c, _))) => Some(*c),
            _ => None,
        }
    }
}

/// The trail file `path`, verified against `customer`'s registered card; with `key`, the
/// vendor's own server's validator and recovery records are trusted.
fn file_trail(
    path: &std::path::Path,
    customer: &crate::registry::Customer,
    key: Option<&tally_core::validation::ServerSecret>,
    own_server: bool,
) -> Result<Trail> {
    let check = |e: tally_core::trail::TrailError| {
        if e.is_invalid() {
            refused(format!(
                "{}: trail does not verify against {}'s card ({}): {e}",
                path.display(),
                customer.name,
                e.check()
            ))
        } else {
            // The error names the file already.
            anyhow::Error::new(e)
        }
    };
    if !path.exists() {
        return Err(anyhow::anyhow!(
            "there is no file {}: {}'s trail is the file trails/{}.trail in their Tally folder (TALLY_HOME, by default ~/.local/share/tally); ask them to send it, or audit the validation server's backup of it (`tally-pack audit --customer {}`)",
            path.display(),
            customer.name,
            customer.card.serial,
            super::shell_word(&customer.name)
        ));
    }
    let mut trail = Trail::open(path, &customer.card).map_err(check)?;
    if let Some(k) = key {
        trail.set_trusted_validators(vec![k.public().clone()]);
    }
    trail.verify_offline().map_err(|e| {
        let hint = matches!(
            e,
            tally_core::trail::TrailError::BadRecovery { .. }
                | tally_core::trail::TrailError::Archived { .. }
        ) && !own_server;
        let e = check(e);
        if hint {
            e.context(
                "the trail holds records of the validation server: audit it with --own-server",
            )
        } else {
            e
        }
    })?;
    // Lost records are billed by this publisher's own recovery records, which only its
    // server key can check: without it, every licence would read as written off.
    if !own_server
        && trail
            .records()
            .iter()
            .any(|r| tally_core::trail::validator::looks_like_recovery(&r.body))
    {
        return Err(refused(format!(
            "{}: the trail was restored, and its recovery records are checked with this publisher's validation server key: audit it with --own-server",
            path.display()
        )));
    }
    Ok(trail)
}

/// How a trail file compares with the validation server's newest backup of the card's trail.
fn report_file_against_backup(backup: Option<&Backup>, last_counter: u64, customer: &str) {
    match backup {
        Some(b) if b.upto > last_counter => println!(
            "warning: this trail ends at counter {last_counter}, before the validation server's backup of this card's trail (received {}, up to counter {}): it is an old copy, and the use after it is missing; ask {customer} for the current trail",
            b.received_at, b.upto
        ),
        Some(b) => println!(
            "backup: this trail reaches the validation server's newest backup of the card's trail (up to counter {}, received {})",
            b.upto, b.received_at
        ),
        None => println!(
            "note: the validation server holds no backup of this card's trail, so a copy cut short cannot be told from a complete one here (the reader's `tally-view trail vouch` sends one)"
        ),
    }
}

/// One challenge in words.
fn challenge_line(c: &ChallengeLine) -> String {
    let ch = &c.row.challenge;
    let issued = super::challenge::unix_rfc3339(ch.issued_at);
    let head = format!("challenge {}… (issued {issued})", &ch.nonce_hex()[..16]);
    match (&c.status, &c.seen_earlier) {
        (None, _) => format!(
            "{head}: not checked: the answers are checked with your server key (add --own-server)"
        ),
        (Some(ChallengeStatus::Answered(a)), _) => format!(
            "{head}: answered at counter {}: the records up to it hold all use on the card up to {issued}",
            a.counter
        ),
        (Some(_), Some((counter, at))) => format!(
            "{head}: answered at counter {counter} (seen by the validation server {at} in a trail it verified, not in this one)"
        ),
        (Some(ChallengeStatus::Expired), None) => format!(
            "{head}: expired unanswered (the server stopped handing it out {})",
            super::challenge::unix_rfc3339(ch.expires_at)
        ),
        (Some(_), None) => format!(
            "{head}: pending: not in this trail; the server hands it out until {}",
            super::challenge::unix_rfc3339(ch.expires_at)
        ),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Runs `audit`.
pub fn run(ctx: &Ctx, args: AuditArgs) -> Result<ExitCode> {
    let mut registry = ctx.registry()?;
    let Some(customer) = registry.customer(&args.customer)? else {
        return Err(refused(format!(
            "no customer named `{}` in the registry (see `tally-pack customer list`)",
            args.customer
        )));
    };
    let backup = server_backup(registry.connection(), &customer.card.serial)?;
    // The recovery records that count for this publisher's licences: its own server's.
    let mut servers = Vec::new();
    let (trail, source) = match &args.trail {
        Some(path) => {
            let key = if args.own_server {
                let vendor = ctx.open_vendor()?;
                Some(tally_core::validation::ServerSecret::derive(&vendor)?)
            } else {
                None
            };
            if let Some(k) = &key {
                servers.push(k.public().fingerprint());
            }
            (
                file_trail(path, &customer, key.as_ref(), args.own_server)?,
                Source::File(path.clone()),
            )
        }
        None => {
            let vendor = ctx.open_vendor()?;
            let key = tally_core::validation::ServerSecret::derive(&vendor)?;
            servers.push(key.public().fingerprint());
            (
                backup_trail(backup.as_ref(), &customer, &key)?,
                Source::Backup,
            )
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let challenges: Vec<ChallengeLine> =
        crate::server::challenge::list(registry.connection(), Some(&customer.name))?
            .into_iter()
            .map(|row| {
                let status = servers.first().map(|fp| {
                    ChallengeStatus::of(&row.challenge, fp, trail.verified_bodies(), now)
                });
                let seen_earlier = match status {
                    Some(ChallengeStatus::Answered(_)) | None => None,
                    Some(_) => row.seen_answered.clone(),
                };
                ChallengeLine {
                    row,
                    status,
                    seen_earlier,
                }
            })
            .collect();
    let in_file = trail.records().len() as u64;
    let first_counter = trail
        .records()
        .first()
        .map_or(trail.header().first_counter, |r| r.counter);
    let last_counter = trail.records().last().map_or(first_counter, |r| r.counter);
    // The moment up to which the trail audited is proven complete: the issue time of the
    // newest challenge answered in it ([0104]).
    let complete_up_to = challenges
        .iter()
        .filter(|c| c.counter().is_some_and(|n| n <= last_counter))
        .map(|c| c.row.challenge.issued_at)
        .max();

    let issued = super::issue::issued_to(registry.connection(), &customer.name)?;
    let mut rows: BTreeMap<LicenceId, Row> = BTreeMap::new();
    for i in &issued {
        rows.insert(
            i.licence,
            Row {
                licence: i.licence,
                title: i.title.clone(),
                document_id: i.document_id.clone(),
                issued_at: i.issued_at.clone(),
                tally: Tally::new(i.licence),
                status: String::new(),
                issued: true,
            },
        );
    }
    let mut nonces = Vec::new();
    let mut other_records = 0u64;
    // After a fast start the validator's totals stand for the records it vouches for, as
    // the reader's viewer counts them (copies and first openings read from those records).
    for row in rows.values_mut() {
        row.tally = tally_of(&trail, row.licence, &servers);
    }
    for (counter, body) in trail.unvouched_bodies() {
        if let Usage::Nonce { value } = &body.usage {
            nonces.push((counter, value.clone()));
        }
        if let Some(lic) = body.usage.licence()
            && !rows.contains_key(&lic)
        {
            other_records += 1;
        }
    }
    for i in &issued {
        if let Some(row) = rows.get_mut(&i.licence) {
            row.status = status(&evaluate(&i.limits, &row.tally, &SystemClock), &row.tally);
        }
    }
    let rows: Vec<&Row> = rows.values().filter(|r| r.issued).collect();

    if args.json {
        let v = serde_json::json!({
            "source": match &source { Source::File(_) => "file", Source::Backup => "server-backup" },
            "trail": match &source { Source::File(p) => Some(p.display().to_string()), Source::Backup => None },
            "customer": customer.name,
            "card_serial": customer.card.serial.to_hex(),
            "verified_records": in_file,
            "first_counter": first_counter,
            "last_counter": last_counter,
            "other_licence_records": other_records,
            "server_backup": backup.as_ref().map(|b| serde_json::json!({"upto": b.upto, "received_at": b.received_at})),
            "complete_up_to": complete_up_to.map(super::challenge::unix_rfc3339),
            "challenges": challenges.iter().map(|c| serde_json::json!({
                "challenge": c.row.challenge.nonce_hex(),
                "issued_at": super::challenge::unix_rfc3339(c.row.challenge.issued_at),
                "expires_at": super::challenge::unix_rfc3339(c.row.challenge.expires_at),
                "status": c.state(),
                "counter": c.counter(),
                "in_this_trail": matches!(c.status, Some(ChallengeStatus::Answered(_))),
            })).collect::<Vec<_>>(),
            "nonces": nonces.iter().map(|(c, v)| serde_json::json!({"counter": c, "value": v})).collect::<Vec<_>>(),
            "licences": rows.iter().map(|r| serde_json::json!({
                "licence": r.licence.to_hex(),
                "title": r.title,
                "document_id": r.document_id,
                "issued_at": r.issued_at,
                "written_off": r.tally.written_off,
                "returned_at": r.tally.returned().map(rfc3339),
                "opens": total(r, r.tally.opens),
                "page_views_prepaid": total(r, r.tally.page_views),
                "page_records": total(r, r.tally.page_records),
                "seconds": total(r, r.tally.seconds),
                "time_records": total(r, r.tally.time_records),
                "printed_pages": total(r, r.tally.printed),
                "copies": copies_total(r, r.tally.copies),
                "copied_chars": copies_total(r, r.tally.copied_chars),
                "status": r.status,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if args.csv {
        println!(
            "licence,title,opens,page_views_prepaid,page_records,seconds,time_records,printed_pages,copies,copied_chars,status"
        );
        for r in &rows {
            let t = &r.tally;
            // A written-off licence has no totals to bill by: empty cells, never placeholders.
            let cell = |v: u64| total(r, v).map(|v| v.to_string()).unwrap_or_default();
            let copies_cell = |v: u64| {
                copies_total(r, v)
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            println!(
                "{},{},{},{},{},{},{},{},{},{},{}",
                r.licence,
                csv_field(&r.title),
                cell(t.opens),
                cell(t.page_views),
                cell(t.page_records),
                cell(t.seconds),
                cell(t.time_records),
                cell(t.printed),
                copies_cell(t.copies),
                copies_cell(t.copied_chars),
                csv_field(&r.status)
            );
        }
    } else {
        match &source {
            Source::File(p) => println!("trail: {}", p.display()),
            Source::Backup => println!(
                "trail: the validation server's backup of card {}",
                customer.card.serial
            ),
        }
        println!(
            "customer: {} (card {})",
            customer.name, customer.card.serial
        );
        println!(
            "verified: {}; every signature checked",
            counter_range(in_file, first_counter, last_counter)
        );
        match (&source, &backup) {
            (Source::Backup, Some(b)) => println!(
                "freshness: the server received this backup {} and it ends at counter {last_counter}; use after that is not in it{}",
                b.received_at,
                match complete_up_to {
                    Some(t) => format!(
                        "; an answered challenge proves it holds all use up to {}",
                        super::challenge::unix_rfc3339(t)
                    ),
                    None => format!(
                        " (to know it is complete up to a moment of your choosing: `tally-pack challenge --customer {}`)",
                        super::shell_word(&customer.name)
                    ),
                }
            ),
            (Source::Backup, None) => {}
            (Source::File(_), b) => {
                report_file_against_backup(b.as_ref(), last_counter, &customer.name)
            }
        }
        for c in &challenges {
            println!("{}", challenge_line(c));
        }
        for (c, v) in &nonces {
            println!("nonce: {v} (counter {c})");
        }
        if rows.is_empty() {
            println!("licences: none issued to {}", customer.name);
        }
        for r in &rows {
            println!(
                "licence {} ({}): {}",
                r.licence,
                r.title,
                use_line(r, trail.vouched().is_some())
            );
        }
        if other_records > 0 {
            println!(
                "other licences: {} (not this vendor's, not itemised)",
                plural(other_records, "record", "records")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
