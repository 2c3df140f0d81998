//! `tally-pack issue`: the keyfile generator of \[0064\]–\[0069\].
//!
//! Looks the customer up in the registry (\[0065\]: the name indexes the database of
//! card keys), reads the package's signed header for its document id, takes the content
//! key from the registry, builds the limits from `--policy` and the flags, and writes a
//! vendor-signed keyfile (`tally_core::keyfile`). Every issued licence is recorded in
//! the registry so `audit` can name it.
//!
//! Re-issuing a document to a customer who already holds a licence for it is the
//! publisher's choice, never a silent second licence: `--supersede` revokes the old one on
//! the validation server, `--keep-both` leaves both valid; without either, `issue` refuses
//! and names both.

use super::{Ctx, refused};
use crate::params;
use crate::registry::keyfile_columns;
use crate::sql::Db;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::PackageHeader;
use tally_core::policy::{Limits, Rights, describe_period, parse_date_limit, parse_period};
use tally_core::trail::LicenceId;

/// Arguments of `issue`.
#[derive(Args, Debug)]
pub struct IssueArgs {
    /// The registered customer (see `customer list`).
    #[arg(long, value_name = "NAME")]
    pub customer: String,
    /// The package the keyfile opens (made by `pack` with this vendor).
    #[arg(long, value_name = "DOC.tly")]
    pub package: PathBuf,
    /// Where to write the keyfile.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// When the customer already holds a licence for this document: revoke the old one on
    /// the validation server (it is refused at its next online check).
    #[arg(long, conflicts_with = "keep_both")]
    pub supersede: bool,
    /// When the customer already holds a licence for this document: leave it valid beside
    /// the new one.
    #[arg(long)]
    pub keep_both: bool,
    /// What the licence allows.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Accept an emulated (software) card, e.g. for demos.
    #[arg(long)]
    pub allow_emulated_card: bool,
    /// The validation server this copy reports to (`tally-pack serve`); its key, derived
    /// from the vendor secret, goes into the keyfile with the URL.
    #[arg(long, value_name = "URL", value_parser = super::server_url)]
    pub server: Option<String>,
    /// Days between required online validations (needs `--server`).
    #[arg(long, value_name = "DAYS", requires = "server")]
    pub require_online_every: Option<u16>,
}

/// The limit flags of `issue` (and `renew`, where each replaces the old licence's value).
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// A policy file (`docs/policy-format.md`); the flags below add to it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// At most N page views.
    #[arg(long, value_name = "N")]
    pub pages: Option<u64>,
    /// At most N minutes of reading.
    #[arg(long, value_name = "N")]
    pub minutes: Option<u64>,
    /// At most N openings.
    #[arg(long, value_name = "N")]
    pub opens: Option<u64>,
    /// At most N printed pages (implies `--allow print`).
    #[arg(long, value_name = "N")]
    pub prints: Option<u64>,
    /// At most N copies of text to the clipboard (implies `--allow copy`).
    #[arg(long, value_name = "N")]
    pub copies: Option<u64>,
    /// At most N characters copied in all (implies `--allow copy`).
    #[arg(long, value_name = "N")]
    pub copy_chars: Option<u64>,
    /// Reading ends this long after the reader first opens the document: 48h, 7d, 90m
    /// (days, hours, minutes; from one minute to ten years).
    #[arg(long, value_name = "PERIOD")]
    pub period_after_first_open: Option<String>,
    /// The reader must first open the document by DATE (YYYY-MM-DD: its last second, UTC;
    /// or RFC 3339 …Z); needs `--period-after-first-open`.
    #[arg(long, value_name = "DATE", requires = "period_after_first_open")]
    pub start_by: Option<String>,
    /// Usable up to and including DATE (YYYY-MM-DD: its last second, UTC; or RFC 3339 …Z).
    #[arg(long, value_name = "DATE")]
    pub not_after: Option<String>,
    /// Usable from DATE (YYYY-MM-DD: its first second, UTC; or RFC 3339 …Z).
    #[arg(long, value_name = "DATE")]
    pub not_before: Option<String>,
    /// Rights: `print`, `copy` or `print,copy`.
    #[arg(long, value_name = "RIGHTS")]
    pub allow: Option<String>,
    /// Page views prepaid by one page record (default 10).
    #[arg(long, value_name = "N")]
    pub page_block: Option<u32>,
    /// Seconds charged by one time record (default 60).
    #[arg(long, value_name = "SECONDS")]
    pub time_unit: Option<u32>,
    /// Seconds without input after which the reader's window pauses: the page is hidden and
    /// no reading time is charged until the reader presses a key (30 to 3600; default 300).
    #[arg(long, value_name = "SECONDS")]
    pub idle_pause: Option<u32>,
}

/// Extra schema for issued keyfiles (migration 2 of the registry).
pub const MIGRATION_SQL: &str = "CREATE TABLE keyfiles (
        licence_id   TEXT PRIMARY KEY,        -- 32 lower-case hex digits
        customer     TEXT NOT NULL,
        serial       TEXT NOT NULL,           -- the card's, hex
        document_id  TEXT NOT NULL,
        title        TEXT NOT NULL,
        policy       TEXT NOT NULL,           -- canonical tally-policy/1
        sha256       TEXT NOT NULL,           -- of the keyfile
        issued_at    TEXT NOT NULL
    );
    CREATE INDEX keyfiles_by_customer ON keyfiles (customer);";

/// An issued licence as recorded in the registry.
#[derive(Debug, Clone)]
pub struct IssuedRow {
    /// The licence.
    pub licence: LicenceId,
    /// The document's title.
    pub title: String,
    /// The document id, hex.
    pub document_id: String,
    /// The limits.
    pub limits: Limits,
    /// When it was issued.
    pub issued_at: String,
}

/// Every licence issued to `customer`.
pub fn issued_to(db: &mut Db, customer: &str) -> Result<Vec<IssuedRow>> {
    let rows = db.query(
        "SELECT licence_id, title, document_id, policy, issued_at FROM keyfiles
         WHERE customer = $1 ORDER BY issued_at, licence_id",
        params![customer],
    )?;
    rows.iter()
        .map(|row| {
            let (lic, title, document_id, policy, issued_at) = (
                row.text(0)?,
                row.text(1)?,
                row.text(2)?,
                row.text(3)?,
                row.text(4)?,
            );
            Ok(IssuedRow {
                licence: LicenceId::from_hex(&lic)
                    .with_context(|| format!("registry: bad licence id {lic:?}"))?,
                title,
                document_id,
                limits: Limits::parse(policy.as_bytes())
                    .with_context(|| format!("registry: licence {lic}: policy"))?,
                issued_at,
            })
        })
        .collect()
}

/// The licences (id, issue time) `customer` holds for `document` (hex) and that are not
/// revoked, oldest first.
fn earlier_licences(db: &mut Db, customer: &str, document: &str) -> Result<Vec<(String, String)>> {
    let rows = db.query(
        "SELECT k.licence_id, k.issued_at FROM keyfiles k
         LEFT JOIN copies c ON c.licence_id = k.licence_id
         WHERE k.customer = $1 AND k.document_id = $2
           AND (c.status IS NULL OR c.status != 'revoked')
         ORDER BY k.issued_at, k.licence_id",
        params![customer, document],
    )?;
    rows.iter()
        .map(|r| {
            let issued_at = r.text(1)?;
            // To the second: the fraction is noise in a message.
            let issued_at = match issued_at.split_once('.') {
                Some((seconds, _)) => format!("{seconds}Z"),
                None => issued_at,
            };
            Ok((r.text(0)?, issued_at))
        })
        .collect()
}

/// The customer a licence was issued to, if this vendor issued it.
pub fn licence_owner(db: &mut Db, licence: &LicenceId) -> Result<Option<String>> {
    db.query_opt(
        "SELECT customer FROM keyfiles WHERE licence_id = $1",
        params![licence.to_hex()],
    )?
    .map(|r| r.text(0))
    .transpose()
}

/// Refuses (exit 1, naming the count) when the document's loan cap is reached
/// (`tally_core::loans`), not counting the licences in `leaving` (superseded by this issue).
/// `lock`: inside the recording transaction, lock the document first.
fn check_loan_cap(
    db: &mut Db,
    document: &str,
    title: &str,
    leaving: &[String],
    lock: bool,
) -> Result<()> {
    let Some(cap) = crate::server::returns::cap_of(db, document)? else {
        return Ok(());
    };
    let loans: Vec<tally_core::loans::Loan> = crate::server::returns::loans_of(db, document, lock)?
        .into_iter()
        .map(|l| l.loan)
        .filter(|l| !leaving.contains(&l.licence.to_hex()))
        .collect();
    tally_core::loans::check_cap(Some(cap), &loans, title, time::OffsetDateTime::now_utc())
        .map_err(|e| refused(e.to_string()))?;
    Ok(())
}

/// Sets `slot` to `v` when given: over an old value when `replace`, else refusing one.
fn put<T>(replace: bool, slot: &mut Option<T>, v: Option<T>, name: &str) -> Result<()> {
    if let Some(v) = v {
        if replace {
            *slot = Some(v);
            return Ok(());
        }
        if slot.is_some() {
            bail!("--{name} is also set in the policy file: give it in one place");
        }
        *slot = Some(v);
    }
    Ok(())
}

/// The limits from `--policy` and the flags (a limit given in both is a usage error).
pub fn build_limits(args: &LimitArgs) -> Result<Limits> {
    let l = match &args.policy {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Limits::parse(&bytes).with_context(|| format!("policy file {}", p.display()))?
        }
        None => Limits::default(),
    };
    apply_limits(l, args, false)
}

/// `base` with the flags of `args` applied: added where `replace` is false (a limit set in
/// both is a usage error), replacing the old value where it is true (a renewal).
pub fn apply_limits(mut l: Limits, args: &LimitArgs, replace: bool) -> Result<Limits> {
    put(replace, &mut l.pages, args.pages, "pages")?;
    put(replace, &mut l.minutes, args.minutes, "minutes")?;
    put(replace, &mut l.opens, args.opens, "opens")?;
    put(replace, &mut l.prints, args.prints, "prints")?;
    put(replace, &mut l.copies, args.copies, "copies")?;
    put(replace, &mut l.copy_chars, args.copy_chars, "copy-chars")?;
    let period = args
        .period_after_first_open
        .as_deref()
        .map(|p| parse_period(p).map_err(|e| anyhow::anyhow!("--period-after-first-open: {e}")))
        .transpose()?;
    put(
        replace,
        &mut l.period_after_first_open,
        period,
        "period-after-first-open",
    )?;
    let date = |v: &Option<String>, end: bool, name: &str| -> Result<Option<_>> {
        v.as_deref()
            .map(|s| parse_date_limit(s, end).map_err(|e| anyhow::anyhow!("--{name}: {e}")))
            .transpose()
    };
    put(
        replace,
        &mut l.not_after,
        date(&args.not_after, true, "not-after")?,
        "not-after",
    )?;
    put(
        replace,
        &mut l.not_before,
        date(&args.not_before, false, "not-before")?,
        "not-before",
    )?;
    put(
        replace,
        &mut l.start_by,
        date(&args.start_by, true, "start-by")?,
        "start-by",
    )?;
    if let Some(a) = &args.allow {
        let r = Rights::parse_list(a).map_err(|e| anyhow::anyhow!("--allow: {e}"))?;
        l.rights.print |= r.print;
        l.rights.copy |= r.copy;
    }
    if args.prints.is_some() {
        l.rights.print = true;
    }
    if args.copies.is_some() || args.copy_chars.is_some() {
        l.rights.copy = true;
    }
    if let Some(b) = args.page_block {
        l.page_block = b;
    }
    if let Some(t) = args.time_unit {
        l.time_unit = t;
    }
    if let Some(t) = args.idle_pause {
        l.idle_pause = t;
    }
    l.check().context("the limits given")?;
    Ok(l)
}

/// Runs `issue`.
pub fn run(ctx: &Ctx, args: IssueArgs) -> Result<ExitCode> {
    let limits = build_limits(&args.limits)?;
    super::may_write(&args.output, args.force)?;
    let vendor = ctx.open_vendor()?;
    let mut registry = ctx.registry()?;
    let Some(customer) = registry.customer(&args.customer)? else {
        return Err(refused(format!(
            "no customer named `{}` in the registry (see `tally-pack customer list`)",
            args.customer
        )));
    };
    tally_core::keyfile::check_name(&customer.name)
        .map_err(|e| refused(format!("customer name cannot go into a keyfile: {e}")))?;
    let Some(agreement_key) = customer.agreement_key.clone() else {
        return Err(refused(format!(
            "customer `{}` was registered without the card's key-agreement key: export the card again and register it anew",
            customer.name
        )));
    };
    // The keyfile carries the accepted issuers, so every opening re-checks the live card.
    let issuers = super::vendor::accepted_issuers(ctx.existing_vendor_dir()?)?;
    if !args.allow_emulated_card {
        if issuers.is_empty() {
            return Err(refused(
                "this vendor accepts no card issuer, so only --allow-emulated-card keyfiles can be issued \
                 (add one with `tally-pack vendor issuer add`)",
            ));
        }
        if customer.attested_by.is_none() {
            return Err(refused(format!(
                "customer `{}` has an emulated card (no accepted issuer vouched for it at registration): \
                 pass --allow-emulated-card, or register a card its issuer attests",
                customer.name
            )));
        }
    }
    let mut f = std::fs::File::open(&args.package)
        .with_context(|| format!("opening {}", args.package.display()))?;
    let (header, _) = PackageHeader::read(&mut f, std::slice::from_ref(vendor.public()))
        .with_context(|| format!("package {}", args.package.display()))?;
    let document = header.document_id();
    let Some(content_key) = registry.content_key(&vendor, &document)? else {
        return Err(refused(format!(
            "package {} (document {document}) is not in this vendor's registry",
            args.package.display()
        )));
    };
    let earlier = earlier_licences(registry.connection(), &customer.name, &document.to_hex())?;
    if let Some((old, issued_at)) = earlier.first()
        && !args.supersede
        && !args.keep_both
    {
        let more = match earlier.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        return Err(refused(format!(
            "{} already holds licence {old}{more} for \"{}\" (issued {issued_at}). Give --supersede to revoke the old licence on the validation server (it is refused at its next online check), or --keep-both to leave it valid beside the new one",
            customer.name,
            header.title()
        )));
    }
    // The document's loan cap, before anything is made (checked again, with the document
    // locked, as the licence is recorded). Licences this one supersedes leave as it comes.
    let doc_hex = document.to_hex();
    let leaving: Vec<String> = if args.supersede {
        earlier.iter().map(|(l, _)| l.clone()).collect()
    } else {
        Vec::new()
    };
    check_loan_cap(
        registry.connection(),
        &doc_hex,
        header.title(),
        &leaving,
        false,
    )?;
    let mut lic = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut tally_core::crypto::OsRng, &mut lic);
    let licence = LicenceId(lic);
    let now = time::OffsetDateTime::now_utc();
    let issued_at = now.replace_nanosecond(0).unwrap_or(now);
    let cis = Cis {
        licence,
        document,
        card: customer.card.clone(),
        card_agreement_key: agreement_key,
        issuers,
        customer_name: customer.name.clone(),
        content_key,
        limits,
        allow_emulated_card: args.allow_emulated_card,
        server: match &args.server {
            Some(url) => Some(tally_core::keyfile::ServerInfo {
                url: url.clone(),
                public_key: tally_core::validation::ServerSecret::derive(&vendor)?
                    .public()
                    .clone(),
                require_online_every_days: args.require_online_every,
            }),
            None => None,
        },
        issued_at,
    };
    let bytes = Keyfile::issue(&vendor, &cis, &mut tally_core::crypto::OsRng)
        .context("building the keyfile")?;
    tally_core::files::atomic_write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let recorded = registry.connection().transaction(|db| {
        // Counting and recording are one step, so two issues at once never both take the
        // last place.
        check_loan_cap(db, &doc_hex, header.title(), &leaving, true)?;
        let mut row = params![
            licence.to_hex(),
            &customer.name,
            customer.card.serial.to_hex(),
            document.to_hex(),
            header.title(),
        ]
        .to_vec();
        row.extend(keyfile_columns(&cis, &bytes));
        db.execute(
            "INSERT INTO keyfiles (licence_id, customer, serial, document_id, title, policy, sha256, issued_at,
                                   server_url, online_every_days, allow_emulated, issuers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &row,
        )
        .context("recording the keyfile in the registry")
    });
    if let Err(e) = recorded {
        // A keyfile the registry does not know is never handed out.
        let _ = std::fs::remove_file(&args.output);
        return Err(e);
    }
    let mut superseded = Vec::new();
    if args.supersede {
        for (old, _) in &earlier {
            superseded.extend(crate::server::db::revoke(
                registry.connection(),
                Some(old),
                None,
            )?);
        }
    }
    println!("keyfile: {}", args.output.display());
    println!("licence: {licence}");
    println!(
        "customer: {} (card {})",
        customer.name, customer.card.serial
    );
    println!("document: {} ({document})", header.title());
    println!("limits: {}", summary(&cis.limits));
    if args.allow_emulated_card {
        println!("emulated card: accepted");
    }
    for old in &superseded {
        println!(
            "superseded: licence {old} is revoked on the validation server (it is refused at its next online check)"
        );
    }
    if args.keep_both {
        for (old, _) in &earlier {
            println!("kept: licence {old} stays valid beside this one");
        }
    }
    if let Some(s) = &cis.server {
        println!(
            "validation server: {} (key {}){}",
            s.url,
            hex::encode(&s.public_key.fingerprint()[..8]),
            s.require_online_every_days
                .map(|d| format!(", online check every {d} days"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The card issuers a keyfile carries, as the registry keeps them (`keyfiles.issuers`, a
/// JSON array of their public exports), so `renew --licence` can carry them on.
pub fn issuers_json(issuers: &[tally_core::card::attestation::IssuerPublic]) -> String {
    serde_json::Value::from(
        issuers
            .iter()
            .map(|i| serde_json::Value::from(i.to_export()))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// One line saying what a licence allows.
pub fn summary(l: &Limits) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<u64>| {
        if let Some(v) = v {
            parts.push(format!("{v} {name}"));
        }
    };
    add("pages", l.pages);
    add("minutes", l.minutes);
    add("openings", l.opens);
    add("units", l.units);
    add("prints", l.prints);
    add("copies", l.copies);
    add("characters to copy", l.copy_chars);
    if let Some(p) = l.period_after_first_open {
        parts.push(format!("{} from the first opening", describe_period(p)));
    }
    if let Some(t) = l.start_by {
        parts.push(format!("first opening by {t}"));
    }
    if let Some(t) = l.not_before {
        parts.push(format!("from {t}"));
    }
    if let Some(t) = l.not_after {
        parts.push(format!("until {t}"));
    }
    if let Some(r) = &l.rule {
        parts.push(format!("rule {r}"));
    }
    if parts.is_empty() {
        parts.push("unlimited (billed from the audited trail)".into());
    }
    format!(
        "{}; rights {}; page block {}; time unit {} s; pauses after {} s idle",
        parts.join(", "),
        l.rights,
        l.page_block,
        l.time_unit,
        l.idle_pause
    )
}
