//! `POST /v1/trail/restore`: restoring a reader's lost trail from the backup the trail
//! validation service keeps (\[0062\]; the rules are `tally_core::validation::plan_recovery`).
//!
//! Body: an encrypted restore request (`tally_core::validation::seal_restore_request`: the
//! card's serial and a card-signed request record), at most `MAX_RESTORE_REQUEST` bytes.
//! The server finds the customer registered with that card and its newest backup, checks
//! the request (signed by the registered card, for this server, fresh, its counter above
//! the last restore request's and at least the backup's end), and answers 200 with the
//! backup and a server-signed recovery body that charges the lost counters as the
//! publisher's policy says (`serve --lost-records`, default `full`), encrypted to the
//! requester. Each restore is logged (table `trail_restores`, migration 5): its counter is
//! what makes a replayed request fail. Cheap work first: the card's signature, freshness
//! and the replay check (`check_restore_request`) run before the stored backup is loaded
//! and decrypted; the replay check and the log entry are one transaction holding the
//! customer's row lock, so one request replayed to several nodes at once is served once. Refusals: 400 (not a request for this server), 404
//! (no customer has this card), 422 (header `x-tally-check` names the check). With no
//! backup at all, the answer is an empty trail and a recovery from the card's origin.

use super::{App, bad, blocking, read_body, unprocessable};
use crate::params;
use crate::sql::Db;
use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tally_core::card::Serial;
use tally_core::trail::LicenceId;
use tally_core::validation::{
    MAX_RESTORE_REQUEST, check_restore_request, encode_accounts, plan_accounts, plan_recovery,
    recovery_terms, seal_restore_answer,
};

/// Migration 5 of the registry.
pub const MIGRATION_SQL: &str = "CREATE TABLE trail_restores (
        id           INTEGER PRIMARY KEY,
        serial       TEXT NOT NULL,           -- the card's, 32 lower-case hex digits
        customer     TEXT NOT NULL,
        counter      TEXT NOT NULL,           -- the request's card counter: 20-digit decimal
        lost_from    TEXT NOT NULL,           -- first lost counter, 20-digit decimal
        charge       TEXT NOT NULL,           -- full | forgive
        restored_at  TEXT NOT NULL            -- RFC 3339 UTC
    );
    CREATE INDEX trail_restores_by_serial ON trail_restores (serial, counter);";

/// How long a client may take to send its (small) request.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The handler of `POST /v1/trail/restore`.
pub(super) async fn trail_restore(State(app): State<Arc<App>>, req: Request) -> Response {
    let body = match read_body(req, MAX_RESTORE_REQUEST, BODY_TIMEOUT, "restore request").await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    blocking(move || app.handle_restore(&body)).await
}

/// The handler of `POST /v1/trail/account` (T30): the reader's whole trail, sealed like a
/// trail validation request; the answer is one recovery body, signed by this server and
/// charged by this publisher's policy, for each hole in the trail that another server's
/// recovery record accounts for and this server's do not
/// (`tally_core::validation::plan_accounts`). Same slots and limits as
/// `POST /v1/trail/validate`; refusals 400, 404 and 422 as there.
pub(super) async fn trail_account(State(app): State<Arc<App>>, req: Request) -> Response {
    let (body, receiving, slot) = match super::trail::receive_trail(req).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let r = blocking(move || app.handle_account(&body)).await;
    drop((receiving, slot));
    r
}

/// The newest backup envelope of `serial`, if any.
pub(super) fn backup_envelope(db: &mut Db, serial: &Serial) -> Result<Option<Vec<u8>>> {
    db.query_opt(
        "SELECT envelope FROM trail_backups WHERE serial = $1",
        params![serial.to_hex()],
    )?
    .map(|r| r.blob(0))
    .transpose()
}

/// The counter of the last restore request of `serial`, if any.
fn last_restore(db: &mut Db, serial: &Serial) -> Result<Option<u64>> {
    let v = db
        .query_opt(
            "SELECT MAX(counter) FROM trail_restores WHERE serial = $1",
            params![serial.to_hex()],
        )?
        .map(|r| r.opt_text(0))
        .transpose()?
        .flatten();
    v.map(|s| s.parse().context("registry: bad restore counter"))
        .transpose()
}

/// The licences issued for the card `serial`.
fn licences_of(db: &mut Db, serial: &Serial) -> Result<Vec<LicenceId>> {
    let rows = db.query(
        "SELECT licence_id FROM keyfiles WHERE serial = $1",
        params![serial.to_hex()],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let hex = r.text(0)?;
        out.push(
            LicenceId::from_hex(&hex).with_context(|| format!("registry: bad licence id {hex}"))?,
        );
    }
    Ok(out)
}

/// The charge a planned recovery body carries (what the restore log records).
fn plan_charge(body: &tally_core::trail::Body) -> tally_core::trail::body::LostCharge {
    match &body.usage {
        tally_core::trail::Usage::Recovery(r) => r.charge,
        _ => tally_core::trail::body::LostCharge::Full,
    }
}

/// What the locked re-check found.
enum Logged {
    /// Logged: answer.
    Yes,
    /// Another restore was logged meanwhile (another node): plan again with this counter.
    Moved(Option<u64>),
}

impl App {
    fn handle_account(&self, envelope: &[u8]) -> Result<Response> {
        let req = match self.key.open_trail_request(envelope) {
            Ok(r) => r,
            Err(e) => {
                return Ok(bad(
                    StatusCode::BAD_REQUEST,
                    format!("account request refused: {e}"),
                ));
            }
        };
        let (found, licences, returned) = {
            let mut db = self.pool.get(super::POOL_WAIT)?;
            (
                super::trail::customer_by_serial(&mut db, &req.serial)?,
                licences_of(&mut db, &req.serial)?,
                super::returns::returned_of(&mut db, &req.serial)?,
            )
        };
        // Returned licences stay returned (T38): charged in full whatever the policy.
        let (charge, licences) = recovery_terms(self.lost_records, licences, &returned);
        let Some((_, card)) = found else {
            return Ok(bad(
                StatusCode::NOT_FOUND,
                format!("no customer is registered with card {}", req.serial),
            ));
        };
        let now = self.clock.now().unix_timestamp();
        let bodies = match plan_accounts(&self.key, &card, &req.trail, licences, charge, now) {
            Ok(b) => b,
            Err(e) => {
                return Ok(unprocessable(
                    e.check(),
                    format!("trail of card {} refused: {e}\n", req.serial),
                ));
            }
        };
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            encode_accounts(&bodies),
        )
            .into_response())
    }

    fn handle_restore(&self, envelope: &[u8]) -> Result<Response> {
        let (req, answer_key) = match self.key.open_restore_request(envelope) {
            Ok(r) => r,
            Err(e) => {
                return Ok(bad(
                    StatusCode::BAD_REQUEST,
                    format!("restore request refused: {e}"),
                ));
            }
        };
        let (found, mut last) = {
            let mut db = self.pool.get(super::POOL_WAIT)?;
            (
                super::trail::customer_by_serial(&mut db, &req.serial)?,
                last_restore(&mut db, &req.serial)?,
            )
        };
        let Some((customer, card)) = found else {
            return Ok(bad(
                StatusCode::NOT_FOUND,
                format!("no customer is registered with card {}", req.serial),
            ));
        };
        let refuse = |e: tally_core::validation::RestoreError| {
            unprocessable(
                e.check(),
                format!("restore of card {} refused: {e}\n", req.serial),
            )
        };
        // The card's signature, freshness and replay before the backup is even loaded.
        let now = self.clock.now();
        if let Err(e) = check_restore_request(&self.key, &card, &req, last, now.unix_timestamp()) {
            return Ok(refuse(e));
        }
        let (backup, licences, returned) = {
            let mut db = self.pool.get(super::POOL_WAIT)?;
            (
                backup_envelope(&mut db, &req.serial)?,
                licences_of(&mut db, &req.serial)?,
                super::returns::returned_of(&mut db, &req.serial)?,
            )
        };
        // A licence whose return this publisher verified stays returned when a backup from
        // before the return comes back (T38): it is charged in full whatever the policy.
        let (charge, licences) = recovery_terms(self.lost_records, licences, &returned);
        // No backup (the reader never had its trail vouched for): the restored trail holds
        // only the recovery record, which charges every counter since the card's origin.
        let trail = match backup {
            Some(envelope) => {
                self.key
                    .open_trail_request(&envelope)
                    .context("the stored backup does not decrypt under this server's key")?
                    .trail
            }
            None => zeroize::Zeroizing::new(
                tally_core::trail::file::Header::for_card(&card, card.origin)
                    .encode()
                    .to_vec(),
            ),
        };
        let at = now
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the time")?;
        let plan = loop {
            let plan = match plan_recovery(
                &self.key,
                &card,
                &req,
                &trail,
                last,
                licences.clone(),
                charge,
                now.unix_timestamp(),
            ) {
                Ok(p) => p,
                Err(e) => return Ok(refuse(e)),
            };
            // Logged before answering: if the answer is lost, the next request (a higher
            // counter) is still accepted, and this one can never be replayed. The
            // customer's row lock makes "still the last restore" and the log one step.
            let mut db = self.pool.get(super::POOL_WAIT)?;
            let logged = db.transaction(|db| {
                super::trail::customer_for_update(db, &req.serial)?;
                let now_last = last_restore(db, &req.serial)?;
                if now_last != last {
                    return Ok(Logged::Moved(now_last));
                }
                db.execute(
                    "INSERT INTO trail_restores (serial, customer, counter, lost_from, charge, restored_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    params![
                        req.serial.to_hex(),
                        customer.clone(),
                        format!("{:020}", plan.to),
                        format!("{:020}", plan.from),
                        plan_charge(&plan.body).as_str(),
                        at.clone()
                    ],
                )?;
                Ok(Logged::Yes)
            })?;
            match logged {
                Logged::Yes => break plan,
                Logged::Moved(l) => last = l,
            }
        };
        let answer = seal_restore_answer(&answer_key, plan.body.encode().as_bytes(), &trail)
            .context("sealing the restore answer")?;
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            answer,
        )
            .into_response())
    }
}
