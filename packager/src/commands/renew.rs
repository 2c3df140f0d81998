//! `tally-pack renew (--licence ID | --keyfile OLD) -o NEW [limits]`: a renewal (Readium
//! LCP's `renew` and `renew_expired`, issue 13).
//!
//! The new keyfile is the same licence — same licence id, customer, card, document, content
//! key and validation server — with the next licence version (`licence-version` in its
//! vendor-signed policy) and the limits and dates the flags give, each replacing the old
//! value (`--pages 60` means 60 in all: the use so far counts on, because the trail's records
//! carry the licence id). The first opening of the new keyfile on the reader's card writes a
//! `renewal` record, and from then on older versions of the licence are refused on that card.
//!
//! `--licence` needs nothing but the registry: what a keyfile carries beyond the card, the
//! document and the limits — the validation server's address and online requirement, the
//! consent to an emulated card, the accepted card issuers — is recorded when the licence is
//! issued (migration 9). A licence issued before that is renewed once with `--keyfile`,
//! which records them. A licence that is unknown, revoked or superseded is refused.

use super::issue::{LimitArgs, apply_limits, summary};
use super::{Ctx, refused};
use crate::params;
use crate::registry::{Registry, keyfile_columns};
use crate::sql::Db;
use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tally_core::card::CardIdentity;
use tally_core::card::attestation::IssuerPublic;
use tally_core::crypto::PublicKey;
use tally_core::keyfile::{Cis, Keyfile, ServerInfo};
use tally_core::package::DocumentId;
use tally_core::policy::{Limits, MAX_LICENCE_VERSION};
use tally_core::trail::LicenceId;
use tally_core::vendor::VendorSecret;

/// Arguments of `renew`.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The licence to renew, by its id (32 hex digits, as `issue` printed it): everything
    /// else comes from the registry.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "keyfile",
        conflicts_with = "keyfile"
    )]
    pub licence: Option<String>,
    /// The keyfile being renewed (the newest version the customer has), instead of
    /// `--licence` (needed once for a licence issued before the registry kept what a
    /// renewal needs).
    #[arg(long, value_name = "OLD")]
    pub keyfile: Option<PathBuf>,
    /// Where to write the renewed keyfile.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// The new limits: a policy file replaces the old policy as a whole; each flag replaces
    /// one old value and leaves the others as they were.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The licence as it stands: what the renewed keyfile carries on.
struct Current {
    licence: LicenceId,
    document: DocumentId,
    card: CardIdentity,
    agreement_key: PublicKey,
    issuers: Vec<IssuerPublic>,
    customer: String,
    limits: Limits,
    allow_emulated: bool,
    server: Option<ServerInfo>,
}

/// The registry's row of a licence.
struct Registered {
    customer: String,
    serial: String,
    document: String,
    policy: Limits,
    server_url: Option<String>,
    online_every_days: Option<i64>,
    allow_emulated: Option<i64>,
    issuers: Option<String>,
}

fn registered(db: &mut Db, licence: &LicenceId) -> Result<Option<Registered>> {
    let Some(r) = db.query_opt(
        "SELECT customer, serial, document_id, policy, server_url, online_every_days,
                allow_emulated, issuers FROM keyfiles WHERE licence_id = $1",
        params![licence.to_hex()],
    )?
    else {
        return Ok(None);
    };
    let policy = r.text(3)?;
    Ok(Some(Registered {
        customer: r.text(0)?,
        serial: r.text(1)?,
        document: r.text(2)?,
        policy: Limits::parse(policy.as_bytes())
            .with_context(|| format!("registry: licence {licence}: policy"))?,
        server_url: r.opt_text(4)?,
        online_every_days: r.opt_int(5)?,
        allow_emulated: r.opt_int(6)?,
        issuers: r.opt_text(7)?,
    }))
}

/// Refuses a licence the validation server revoked: superseded by a newer licence for the
/// same document (`issue --supersede`, which names it), or revoked (`tally-pack revoke`).
fn refuse_revoked(db: &mut Db, licence: &LicenceId, reg: &Registered) -> Result<()> {
    crate::server::db::sync_copies(db)?;
    let revoked = db
        .query_opt(
            "SELECT status FROM copies WHERE licence_id = $1",
            params![licence.to_hex()],
        )?
        .map(|r| r.text(0))
        .transpose()?
        .is_some_and(|s| s == "revoked");
    if !revoked {
        return Ok(());
    }
    let newer = db
        .query_opt(
            "SELECT k.licence_id FROM keyfiles k JOIN copies c ON c.licence_id = k.licence_id
             WHERE k.customer = $1 AND k.document_id = $2 AND k.licence_id != $3
               AND c.status != 'revoked'
             ORDER BY k.issued_at DESC, k.licence_id LIMIT 1",
            params![&reg.customer, &reg.document, licence.to_hex()],
        )?
        .map(|r| r.text(0))
        .transpose()?;
    Err(refused(match newer {
        Some(n) => format!(
            "licence {licence} was superseded by licence {n} for the same document ({}'s): renew that one",
            reg.customer
        ),
        None => format!(
            "licence {licence} is revoked (`tally-pack revoke`): a revoked licence is not renewed; issue a new one"
        ),
    }))
}

/// The licence from the registry alone (`--licence`).
fn from_registry(vendor: &VendorSecret, registry: &mut Registry, id: &str) -> Result<Current> {
    let licence = LicenceId::from_hex(id.trim()).ok_or_else(|| {
        anyhow!("--licence {id}: a licence id is 32 lower-case hex digits (as `issue` printed it)")
    })?;
    let Some(reg) = registered(registry.connection(), &licence)? else {
        return Err(refused(format!(
            "licence {licence} is not in this vendor's registry"
        )));
    };
    refuse_revoked(registry.connection(), &licence, &reg)?;
    let (Some(allow), Some(issuers)) = (reg.allow_emulated, reg.issuers.as_deref()) else {
        return Err(refused(format!(
            "licence {licence} was issued before the registry kept what a renewal needs (its server, card issuers, emulated-card consent): renew it once with --keyfile and the customer's newest keyfile"
        )));
    };
    let Some(customer) = registry.customer(&reg.customer)? else {
        bail!(
            "registry: licence {licence} names customer `{}`, who is not registered",
            reg.customer
        );
    };
    if customer.card.serial.to_hex() != reg.serial {
        bail!(
            "registry: licence {licence} is for card {}, but customer `{}` has card {}",
            reg.serial,
            reg.customer,
            customer.card.serial
        );
    }
    let agreement_key = customer.agreement_key.clone().ok_or_else(|| {
        refused(format!(
            "customer `{}` was registered without the card's key-agreement key: register the card anew",
            customer.name
        ))
    })?;
    let issuers: Vec<String> = serde_json::from_str(issuers)
        .with_context(|| format!("registry: licence {licence}: card issuers"))?;
    let issuers = issuers
        .iter()
        .map(|e| {
            IssuerPublic::from_export(e.as_bytes())
                .with_context(|| format!("registry: licence {licence}: a card issuer"))
        })
        .collect::<Result<Vec<_>>>()?;
    let server = match &reg.server_url {
        Some(url) => Some(ServerInfo {
            url: url.clone(),
            public_key: tally_core::validation::ServerSecret::derive(vendor)?
                .public()
                .clone(),
            require_online_every_days: reg
                .online_every_days
                .map(u16::try_from)
                .transpose()
                .context("registry: online requirement")?,
        }),
        None => None,
    };
    let document = DocumentId::from_hex(&reg.document)
        .with_context(|| format!("registry: bad document id {:?}", reg.document))?;
    Ok(Current {
        licence,
        document,
        card: customer.card.clone(),
        agreement_key,
        issuers,
        customer: customer.name.clone(),
        limits: reg.policy.clone(),
        allow_emulated: allow != 0,
        server,
    })
}

/// The licence from the customer's newest keyfile (`--keyfile`).
fn from_keyfile(
    vendor: &VendorSecret,
    registry: &mut Registry,
    path: &std::path::Path,
) -> Result<Current> {
    let db = registry.connection();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let old = Keyfile::open(&bytes, std::slice::from_ref(vendor.public())).map_err(|e| {
        refused(format!(
            "{}: not a keyfile of this vendor: {e}",
            path.display()
        ))
    })?;
    let licence = old.licence();
    let Some(reg) = registered(db, &licence)? else {
        return Err(refused(format!(
            "licence {licence} is not in this vendor's registry"
        )));
    };
    refuse_revoked(db, &licence, &reg)?;
    // The registry's policy is the newest version issued; an older keyfile renewed again
    // still gets a version above it.
    let mut limits = old.limits().clone();
    limits.licence_version = limits.licence_version.max(reg.policy.licence_version);
    Ok(Current {
        licence,
        document: old.document(),
        card: old.card().clone(),
        agreement_key: old.card_agreement_key().clone(),
        issuers: old.issuers().to_vec(),
        customer: old.customer_name().to_string(),
        limits,
        allow_emulated: old.allows_emulated_card(),
        server: old.server().cloned(),
    })
}

/// Runs `renew`.
pub fn run(ctx: &Ctx, args: RenewArgs) -> Result<ExitCode> {
    super::may_write(&args.output, args.force)?;
    let vendor = ctx.open_vendor()?;
    let mut registry = ctx.registry()?;
    let old = match (&args.licence, &args.keyfile) {
        (Some(id), _) => from_registry(&vendor, &mut registry, id)?,
        (None, Some(path)) => from_keyfile(&vendor, &mut registry, path)?,
        (None, None) => bail!("give --licence ID or --keyfile OLD"),
    };
    let base = match &args.limits.policy {
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Limits::parse(&text).with_context(|| format!("policy file {}", p.display()))?
        }
        None => old.limits.clone(),
    };
    let mut limits = apply_limits(base, &args.limits, true)?;
    let version = old.limits.licence_version;
    if version >= MAX_LICENCE_VERSION {
        return Err(refused("this licence cannot be renewed again"));
    }
    limits.licence_version = version + 1;
    limits.check().context("the renewed limits")?;
    let licence = old.licence;
    let Some(content_key) = registry.content_key(&vendor, &old.document)? else {
        return Err(refused(format!(
            "document {} is not in this vendor's registry",
            old.document
        )));
    };
    let now = time::OffsetDateTime::now_utc();
    let issued_at = now.replace_nanosecond(0).unwrap_or(now);
    let cis = Cis {
        licence,
        document: old.document,
        card: old.card.clone(),
        card_agreement_key: old.agreement_key.clone(),
        issuers: old.issuers.clone(),
        customer_name: old.customer.clone(),
        content_key,
        limits,
        allow_emulated_card: old.allow_emulated,
        server: old.server.clone(),
        issued_at,
    };
    let new =
        Keyfile::issue(&vendor, &cis, &mut rand_core::OsRng).context("building the keyfile")?;
    // The registry's licence is the renewed one from now on (audits judge by its policy),
    // with what the next renewal by id needs (a licence issued before migration 9 gets it
    // here, from its keyfile).
    let mut row = keyfile_columns(&cis, &new);
    row.push(licence.to_hex().into());
    let updated = registry
        .connection()
        .execute(
            "UPDATE keyfiles SET policy = $1, sha256 = $2, issued_at = $3, server_url = $4,
                    online_every_days = $5, allow_emulated = $6, issuers = $7
             WHERE licence_id = $8",
            &row,
        )
        .context("recording the renewal in the registry")?;
    if updated != 1 {
        return Err(refused(format!(
            "licence {licence} is not in this vendor's registry"
        )));
    }
    tally_core::files::atomic_write(&args.output, &new)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("keyfile: {}", args.output.display());
    println!(
        "licence: {licence} (version {})",
        cis.limits.licence_version
    );
    println!("customer: {}", cis.customer_name);
    println!("limits: {}", summary(&cis.limits));
    println!(
        "once the reader opens it, versions before {} of this licence are refused on their card",
        cis.limits.licence_version
    );
    Ok(ExitCode::SUCCESS)
}
