//! `tally-pack challenge --customer NAME [--days N]` and `tally-pack challenge --list
//! [--customer NAME]`: the publisher's nonce challenge of EP 0 895 148 \[0104\].
//!
//! Issuing stores a fresh random nonce for the customer's card in the registry, which the
//! validation server (`tally-pack serve` on the same database) hands out, signed with its
//! key, to the customer's viewer on its next contact: the viewer writes it on the trail as a
//! card-signed record and sends the trail to the server, which keeps it as the backup.
//! `tally-pack audit --customer NAME` then reports the challenge answered — at which card
//! counter — or pending. No file from the customer is needed. The rules are tally-core's
//! (`tally_core::validation::challenge`).

use super::{Ctx, refused};
use crate::server::challenge::{ChallengeRow, list, store};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;
use tally_core::validation::Challenge;
use tally_core::validation::challenge::{DEFAULT_CHALLENGE_LIFETIME, MAX_CHALLENGE_LIFETIME};

/// Arguments of `challenge`.
#[derive(Args, Debug)]
pub struct ChallengeArgs {
    /// The registered customer whose card is challenged (with `--list`: only theirs).
    #[arg(long, value_name = "NAME", required_unless_present = "list")]
    pub customer: Option<String>,
    /// Days the server hands the challenge out (1 to 366).
    #[arg(long, value_name = "DAYS", default_value_t = (DEFAULT_CHALLENGE_LIFETIME / 86_400) as u32, conflicts_with = "list")]
    pub days: u32,
    /// List the challenges issued and what the server has seen of their answers.
    #[arg(long)]
    pub list: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// RFC 3339 of a Unix time, to the second.
pub fn unix_rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Runs `challenge`.
pub fn run(ctx: &Ctx, args: ChallengeArgs) -> Result<ExitCode> {
    let mut registry = ctx.registry()?;
    if args.list {
        let rows = list(registry.connection(), args.customer.as_deref())?;
        return print_list(&rows, args.json);
    }
    let name = args.customer.as_deref().unwrap_or_default();
    let Some(customer) = registry.customer(name)? else {
        return Err(refused(format!(
            "no customer named `{name}` in the registry (see `tally-pack customer list`)"
        )));
    };
    let lifetime = i64::from(args.days) * 86_400;
    if args.days == 0 || lifetime > MAX_CHALLENGE_LIFETIME {
        anyhow::bail!("--days: a challenge is handed out for 1 to 366 days");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let c = Challenge::new(
        customer.card.serial,
        now,
        lifetime,
        &mut tally_core::crypto::OsRng,
    )?;
    store(registry.connection(), &customer.name, &c)?;
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({
                "challenge": c.nonce_hex(),
                "customer": customer.name,
                "card_serial": c.serial.to_hex(),
                "issued_at": unix_rfc3339(c.issued_at),
                "expires_at": unix_rfc3339(c.expires_at),
            })
        );
    } else {
        println!("challenge: {}", c.nonce_hex());
        println!(
            "customer: {} (card {})",
            customer.name, customer.card.serial
        );
        println!(
            "issued {}; the validation server hands it out until {}",
            unix_rfc3339(c.issued_at),
            unix_rfc3339(c.expires_at)
        );
        println!(
            "{}'s viewer answers it the next time it opens one of your licences that names your validation server (or with `tally-view trail answer --keyfile KEYFILE`); then `tally-pack audit --customer {}` shows it answered",
            customer.name,
            super::shell_word(&customer.name)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(rows: &[ChallengeRow], json: bool) -> Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let state = |r: &ChallengeRow| match (&r.seen_answered, r.challenge.is_open(now)) {
        (Some(_), _) => "answered",
        (None, true) => "pending",
        (None, false) => "expired",
    };
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "challenge": r.challenge.nonce_hex(),
                    "customer": r.customer,
                    "card_serial": r.challenge.serial.to_hex(),
                    "issued_at": unix_rfc3339(r.challenge.issued_at),
                    "expires_at": unix_rfc3339(r.challenge.expires_at),
                    "state": state(r),
                    "answer_counter": r.seen_answered.as_ref().map(|(c, _)| c),
                    "answer_seen_at": r.seen_answered.as_ref().map(|(_, at)| at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no challenges issued");
    }
    for r in rows {
        let seen = match &r.seen_answered {
            Some((c, at)) => format!(" at counter {c} (seen by the server {at})"),
            None => String::new(),
        };
        println!(
            "{}  {}  issued {}  {}{seen}",
            r.challenge.nonce_hex(),
            r.customer,
            unix_rfc3339(r.challenge.issued_at),
            state(r)
        );
    }
    Ok(ExitCode::SUCCESS)
}
