//! `POST /v1/trail/validate`: the trusted audit-trail validation service of EP 0 895 148
//! \[0094\] with the encrypted backup of \[0062\].
//!
//! Body: an encrypted trail validation request (`tally_core::validation::seal_trail_request`:
//! the card's serial and the whole trail file, ECIES to the server key), at most
//! `MAX_TRAIL_ENVELOPE` bytes. The server finds the customer registered with that card,
//! checks the trail against the card's registered key (`tally_core::trail::validator::vouch`:
//! every signature, the counters from the origin, the start rule) and answers 200 with a
//! validator body signed by the server key, preceded by the `totals` bodies whose digest it
//! signs (text, one body per line, each at most 1024 bytes), which the reader appends as
//! card-signed records. It keeps the request, still encrypted, as the card's
//! backup (table `trail_backups`, migration 4), replacing an older one only by one that
//! vouches for more records, and notes the answers to the publisher's challenges it holds
//! ([`super::challenge`]). Refusals: 400 (not a request for this server), 404 (no
//! customer has this card), 422 (the trail is invalid; header `x-tally-check` names the
//! check), 413/408 for oversized or slow bodies.

use super::{App, bad, blocking, read_body, unprocessable};
use crate::params;
use crate::sql::Db;
use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::PublicKey;
use tally_core::trail::validator::{VouchError, vouch};
use tally_core::validation::{
    ExtendError, MAX_EXTENSION_ENVELOPE, MAX_TRAIL_ENVELOPE, extend_backup, seal_trail_request,
};

/// Migration 4 of the registry.
pub const MIGRATION_SQL: &str = "CREATE TABLE trail_backups (
        serial       TEXT PRIMARY KEY,        -- the card's, 32 lower-case hex digits
        customer     TEXT NOT NULL,
        upto         TEXT NOT NULL,           -- last counter vouched for: 20-digit decimal, sorts as a number
        records      INTEGER NOT NULL,
        envelope     BLOB NOT NULL,           -- the request as received, still encrypted to the server key
        received_at  TEXT NOT NULL            -- RFC 3339 UTC
    );";

/// How long a client may take to send a trail: 10 s plus 1 s per MiB declared, at most
/// [`TRAIL_BODY_MAX_TIME`] (a body without a declared length gets the maximum).
fn trail_body_timeout(declared: Option<u64>) -> std::time::Duration {
    let secs = declared.map_or(TRAIL_BODY_MAX_TIME.as_secs(), |n| 10 + n / (1 << 20));
    std::time::Duration::from_secs(secs).min(TRAIL_BODY_MAX_TIME)
}
const TRAIL_BODY_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(120);

/// Trails being received at once: each holds its body in memory (up to
/// `MAX_TRAIL_ENVELOPE`); more wait (up to [`SLOT_WAIT`]) or get 503. A slow client holds
/// one of these, never a validation slot, and the per-client limit of the server bounds how
/// many one address can hold.
const RECEIVE_SLOTS: usize = 8;
/// Trail validations in progress at once: each keeps a core busy. Taken only once the
/// whole body is in, so a slow sender cannot hold one.
const TRAIL_SLOTS: usize = 2;
/// How long a request waits for a free slot before 503.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
static RECEIVING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RECEIVE_SLOTS);
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(TRAIL_SLOTS);

/// The handler of `POST /v1/trail/validate`.
pub(super) async fn trail_validate(State(app): State<Arc<App>>, req: Request) -> Response {
    let (body, receiving, slot) = match receive_trail(req).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let r = blocking(move || app.handle_trail(&body)).await;
    drop((receiving, slot));
    r
}

/// A whole trail request's body, with the receive slot held while it was read and the
/// validation slot taken once it was in (both to be held until the answer is made).
pub(super) async fn receive_trail(
    req: Request,
) -> Result<
    (
        axum::body::Bytes,
        tokio::sync::SemaphorePermit<'static>,
        tokio::sync::SemaphorePermit<'static>,
    ),
    Response,
> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_TRAIL_ENVELOPE as u64) {
        return Err(bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("trail refused: larger than {MAX_TRAIL_ENVELOPE} bytes"),
        ));
    }
    let busy = || {
        bad(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy validating other trails; try again later",
        )
    };
    // A receive slot before the body is read, so memory stays bounded by RECEIVE_SLOTS trails.
    let Ok(Ok(receiving)) = tokio::time::timeout(SLOT_WAIT, RECEIVING.acquire()).await else {
        return Err(busy());
    };
    let body = read_body(
        req,
        MAX_TRAIL_ENVELOPE,
        trail_body_timeout(declared),
        "trail",
    )
    .await?;
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, SLOTS.acquire()).await else {
        return Err(busy());
    };
    Ok((body, receiving, slot))
}

/// How long a client may take to send a backup extension (at most about 1 MiB).
const EXTEND_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The handler of `POST /v1/trail/extend` (\[0062\]): the records a reader wrote after the
/// trail this server last backed up — the answer to that vouch, and what was metered
/// meanwhile — sealed to the server key (`tally_core::validation::seal_backup_extension`).
/// The server checks them (`tally_core::validation::extend_backup`: this card's records,
/// continuing the backup with no hole, every card signature, and this server's validator
/// record vouching for exactly the backup among them) and stores the extended backup,
/// encrypted to its own key like a received trail, so a restore right after a vouch finds
/// nothing lost. 200 with one line of text; 400 (not an extension for this server), 404
/// (no customer has this card, or no backup), 409 (the backup changed meanwhile: the
/// records do not start after it, or a longer one was stored), 422 (`x-tally-check` names
/// the check).
pub(super) async fn trail_extend(State(app): State<Arc<App>>, req: Request) -> Response {
    let body = match read_body(
        req,
        MAX_EXTENSION_ENVELOPE,
        EXTEND_BODY_TIMEOUT,
        "backup extension",
    )
    .await
    {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    blocking(move || app.handle_extend(&body)).await
}

/// The registered customer and card for `serial`.
pub fn customer_by_serial(db: &mut Db, serial: &Serial) -> Result<Option<(String, CardIdentity)>> {
    customer_row(db, serial, "")
}

/// As [`customer_by_serial`], locking the customer's row until the transaction ends: the
/// restore endpoint's replay check and its log entry are then one step across nodes.
pub fn customer_for_update(db: &mut Db, serial: &Serial) -> Result<Option<(String, CardIdentity)>> {
    customer_row(db, serial, " FOR UPDATE")
}

fn customer_row(
    db: &mut Db,
    serial: &Serial,
    lock: &str,
) -> Result<Option<(String, CardIdentity)>> {
    let Some(r) = db.query_opt(
        &format!("SELECT name, public_key, origin FROM customers WHERE serial = $1{lock}"),
        params![serial.to_hex()],
    )?
    else {
        return Ok(None);
    };
    let (name, key, origin) = (r.text(0)?, r.blob(1)?, r.text(2)?);
    let card = card_identity(*serial, &name, &key, &origin)?;
    Ok(Some((name, card)))
}

/// The card a customer row registers: its serial, public key (SEC1) and origin.
pub fn card_identity(serial: Serial, name: &str, key: &[u8], origin: &str) -> Result<CardIdentity> {
    Ok(CardIdentity {
        serial,
        public_key: PublicKey::from_sec1(key)
            .with_context(|| format!("registry: customer {name}: bad key"))?,
        origin: origin
            .parse()
            .with_context(|| format!("registry: customer {name}: bad origin"))?,
    })
}

/// Keeps `envelope` as the backup of `serial` unless the stored one vouches for more.
/// Returns whether it was stored.
pub fn store_backup(
    db: &mut Db,
    serial: &Serial,
    customer: &str,
    upto: u64,
    records: u64,
    envelope: &[u8],
    now: &str,
) -> Result<bool> {
    let n = db.execute(
        "INSERT INTO trail_backups (serial, customer, upto, records, envelope, received_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (serial) DO UPDATE SET
             customer = excluded.customer, upto = excluded.upto, records = excluded.records,
             envelope = excluded.envelope, received_at = excluded.received_at
         WHERE excluded.upto >= trail_backups.upto",
        params![
            serial.to_hex(),
            customer,
            format!("{upto:020}"),
            i64::try_from(records).unwrap_or(i64::MAX),
            envelope,
            now
        ],
    )?;
    Ok(n > 0)
}

/// The records of a trail file that `vouch` has verified, with their counters and bodies.
fn trail_bodies(trail: &[u8]) -> Vec<(u64, tally_core::trail::Body)> {
    use tally_core::trail::file::{HEADER_LEN, parse_frames};
    parse_frames(
        trail.get(HEADER_LEN..).unwrap_or_default(),
        HEADER_LEN as u64,
        0,
    )
    .map(|f| {
        f.records
            .iter()
            .filter_map(|r| {
                tally_core::trail::Body::parse(&r.body)
                    .ok()
                    .map(|b| (r.counter, b))
            })
            .collect()
    })
    .unwrap_or_default()
}

impl App {
    fn handle_extend(&self, envelope: &[u8]) -> Result<Response> {
        let req = match self.key.open_backup_extension(envelope) {
            Ok(r) => r,
            Err(e) => {
                return Ok(bad(
                    StatusCode::BAD_REQUEST,
                    format!("backup extension refused: {e}"),
                ));
            }
        };
        let (found, stored) = {
            let mut db = self.pool.get(super::POOL_WAIT)?;
            (
                customer_by_serial(&mut db, &req.serial)?,
                super::restore::backup_envelope(&mut db, &req.serial)?,
            )
        };
        let Some((customer, card)) = found else {
            return Ok(bad(
                StatusCode::NOT_FOUND,
                format!("no customer is registered with card {}", req.serial),
            ));
        };
        let Some(stored) = stored else {
            return Ok(bad(
                StatusCode::NOT_FOUND,
                format!("no backup of card {}'s trail to extend", req.serial),
            ));
        };
        let backup = self
            .key
            .open_trail_request(&stored)
            .context("the stored backup does not decrypt under this server's key")?
            .trail;
        let extended = match extend_backup(&self.key, &card, &backup, &req.trail) {
            Ok(x) => x,
            Err(e @ ExtendError::NotNext { .. }) => {
                return Ok(bad(
                    StatusCode::CONFLICT,
                    format!("backup of card {} not extended: {e}", req.serial),
                ));
            }
            Err(e) => {
                return Ok(unprocessable(
                    e.check(),
                    format!("backup of card {} not extended: {e}\n", req.serial),
                ));
            }
        };
        // Kept as a received trail is: encrypted to this server's own key.
        let sealed = seal_trail_request(
            self.key.public(),
            &req.serial,
            &extended.trail,
            &mut tally_core::crypto::OsRng,
        )
        .context("sealing the extended backup")?;
        let at = self
            .clock
            .now()
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the time")?;
        let kept = store_backup(
            &mut *self.pool.get(super::POOL_WAIT)?,
            &req.serial,
            &customer,
            extended.upto,
            extended.records,
            &sealed,
            &at,
        )?;
        if !kept {
            return Ok(bad(
                StatusCode::CONFLICT,
                format!(
                    "backup of card {} not extended: a longer backup was stored meanwhile",
                    req.serial
                ),
            ));
        }
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("backup extended up to counter {}\n", extended.upto),
        )
            .into_response())
    }

    fn handle_trail(&self, envelope: &[u8]) -> Result<Response> {
        let req = match self.key.open_trail_request(envelope) {
            Ok(r) => r,
            Err(e) => {
                return Ok(bad(
                    StatusCode::BAD_REQUEST,
                    format!("trail validation request refused: {e}"),
                ));
            }
        };
        let found = customer_by_serial(&mut *self.pool.get(super::POOL_WAIT)?, &req.serial)?;
        let Some((customer, card)) = found else {
            return Ok(bad(
                StatusCode::NOT_FOUND,
                format!("no customer is registered with card {}", req.serial),
            ));
        };
        let now = self.clock.now();
        // The whole check runs without the database lock: it is the expensive part.
        let vouching = match vouch(&self.key, &card, &req.trail, now.unix_timestamp()) {
            Ok(b) => b,
            Err(e) => {
                let check = match &e {
                    VouchError::Trail(t) => t.check(),
                    VouchError::Empty => "empty",
                    VouchError::TotalTooLarge(_) => "total-too-large",
                    _ => "refused",
                };
                return Ok(unprocessable(
                    check,
                    format!("trail of card {} refused: {e}\n", req.serial),
                ));
            }
        };
        let upto = vouching.upto();
        let records = upto.saturating_sub(card.origin).saturating_add(1);
        let at = now
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the time")?;
        {
            let mut db = self.pool.get(super::POOL_WAIT)?;
            store_backup(
                &mut db,
                &req.serial,
                &customer,
                upto,
                records,
                envelope,
                &at,
            )?;
            // The publisher's challenges answered in this trail ([0104]): verified above.
            super::challenge::note_answers(
                &mut db,
                &req.serial,
                &self.key.vsi(),
                &trail_bodies(&req.trail),
                &at,
            )?;
        }
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            vouching.encode(),
        )
            .into_response())
    }
}
