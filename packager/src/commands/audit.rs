//! `tally-pack audit TRAIL --customer NAME`: the vendor's side of [0041] and [0104].
//!
//! Verifies a customer's trail file against the card key in the registry (every
//! signature, every counter, the start at the card's origin) without the card, then
//! reports use per licence this vendor issued, for billing. Records of other vendors'
//! licences are counted but not itemised ([0049]: each licence reads only its own).
//!
//! A trail that was restored from the validation server's backup ([0062]) or had its
//! vouched-for prefix archived ([0094]) carries records signed by the vendor's validation
//! server; `--own-server` trusts that server's key (derived from the vendor secret, so
//! the password is asked for). Totals then start from the newest validator record, as
//! the reader's viewer counts them, and lost records charged in full show as used up.
//!
//! Without the card, truncation and rollback cannot be seen ([0050], property 3): the
//! report gives the last counter so it can be compared with the card's own counter
//! (GetCounter), or with a nonce the vendor asked the customer to write ([0104]).

use super::{Ctx, refused};
use anyhow::Result;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::policy::{Decision, SystemClock, Tally, evaluate};
use tally_core::trail::{LicenceId, Trail, Usage};

/// Arguments of `audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The customer's trail file.
    pub trail: PathBuf,
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
    /// or archived trail needs it); the server key is derived from the vendor secret.
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

fn status(d: &Decision) -> String {
    match d {
        Decision::Allowed { remaining } => format!("active: {remaining} left"),
        Decision::Limited { reason } => format!("used up: {reason}"),
        Decision::Denied { reason } => format!("refused: {reason}"),
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
    let check = |e: tally_core::trail::TrailError| {
        if e.is_invalid() {
            refused(format!(
                "{}: trail does not verify against {}'s card ({}): {e}",
                args.trail.display(),
                customer.name,
                e.check()
            ))
        } else {
            anyhow::Error::new(e).context(format!("reading {}", args.trail.display()))
        }
    };
    let mut trail = Trail::open(&args.trail, &customer.card).map_err(check)?;
    if args.own_server {
        let vendor = ctx.open_vendor()?;
        let key = tally_core::validation::ServerSecret::derive(&vendor)?;
        trail.set_trusted_validators(vec![key.public().clone()]);
    }
    trail.verify_offline().map_err(|e| {
        let hint = matches!(
            e,
            tally_core::trail::TrailError::BadRecovery { .. }
                | tally_core::trail::TrailError::Archived { .. }
        ) && !args.own_server;
        let e = check(e);
        if hint {
            e.context(
                "the trail holds records of the validation server: audit it with --own-server",
            )
        } else {
            e
        }
    })?;
    let first_counter = trail.header().first_counter;
    let last_counter = trail.records().last().map_or(first_counter, |r| r.counter);

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
    let mut records = 0u64;
    // After a fast start the validator's totals stand for the records it vouches for.
    for row in rows.values_mut() {
        row.tally = Tally::resume(row.licence, trail.vouched(), std::iter::empty());
    }
    let bodies: Vec<(u64, tally_core::trail::Body)> = trail.unvouched_bodies().collect();
    for (counter, body) in &bodies {
        records += 1;
        if let Usage::Nonce { value } = &body.usage {
            nonces.push((*counter, value.clone()));
        }
        for row in rows.values_mut() {
            row.tally.add(body);
        }
        if let Some(lic) = body.usage.licence()
            && !rows.contains_key(&lic)
        {
            other_records += 1;
        }
    }
    for i in &issued {
        if let Some(row) = rows.get_mut(&i.licence) {
            row.status = status(&evaluate(&i.limits, &row.tally, &SystemClock));
        }
    }
    let rows: Vec<&Row> = rows.values().filter(|r| r.issued).collect();

    if args.json {
        let v = serde_json::json!({
            "trail": args.trail.display().to_string(),
            "customer": customer.name,
            "card_serial": customer.card.serial.to_hex(),
            "verified_records": records,
            "first_counter": first_counter,
            "last_counter": last_counter,
            "other_licence_records": other_records,
            "nonces": nonces.iter().map(|(c, v)| serde_json::json!({"counter": c, "value": v})).collect::<Vec<_>>(),
            "licences": rows.iter().map(|r| serde_json::json!({
                "licence": r.licence.to_hex(),
                "title": r.title,
                "document_id": r.document_id,
                "issued_at": r.issued_at,
                "opens": r.tally.opens,
                "page_views_prepaid": r.tally.page_views,
                "page_records": r.tally.page_records,
                "seconds": r.tally.seconds,
                "time_records": r.tally.time_records,
                "printed_pages": r.tally.printed,
                "status": r.status,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if args.csv {
        println!(
            "licence,title,opens,page_views_prepaid,page_records,seconds,time_records,printed_pages,status"
        );
        for r in &rows {
            let t = &r.tally;
            println!(
                "{},{},{},{},{},{},{},{},{}",
                r.licence,
                csv_field(&r.title),
                t.opens,
                t.page_views,
                t.page_records,
                t.seconds,
                t.time_records,
                t.printed,
                csv_field(&r.status)
            );
        }
    } else {
        println!("trail: {}", args.trail.display());
        println!(
            "customer: {} (card {})",
            customer.name, customer.card.serial
        );
        println!(
            "verified: {records} records, counters {first_counter}..={last_counter}; every signature checked"
        );
        println!(
            "note: compare {last_counter} with the card's counter minus one to rule out a truncated or restored trail"
        );
        for (c, v) in &nonces {
            println!("nonce: {v} (counter {c})");
        }
        if rows.is_empty() {
            println!("licences: none issued to {}", customer.name);
        }
        for r in &rows {
            let t = &r.tally;
            println!(
                "licence {} ({}): {} openings, {} page views prepaid in {} blocks, {} min {} s in {} time units, {} pages printed — {}",
                r.licence,
                r.title,
                t.opens,
                t.page_views,
                t.page_records,
                t.seconds / 60,
                t.seconds % 60,
                t.time_records,
                t.printed,
                r.status
            );
        }
        if other_records > 0 {
            println!("other licences: {other_records} records (not this vendor's, not itemised)");
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
