//! The publisher's nonce challenges (EP 0 895 148 \[0104\]): the table (migration 9), the
//! queries `tally-pack challenge`, `audit` and `serve` share, and
//! `POST /v1/challenge`.
//!
//! `tally-pack challenge --customer NAME` stores a fresh random nonce for the customer's
//! card. The endpoint hands the newest open, unanswered one to whoever asks with the card's
//! serial (body: the 16-byte serial), signed with the server key
//! (`tally_core::validation::challenge`): 200 with the signed text, 204 when nothing is
//! pending, 400 for a body that is not a serial. Handing it out to anyone is safe: only
//! the card can sign the answer, and only a card-verified trail counts. When the server
//! vouches for a trail (`/v1/trail/validate`) it notes the answers it finds in it, so the
//! challenge is no longer handed out and an audit still knows of the answer after the
//! reader archived the records holding it. What counts as answered, and what is handed
//! out, are tally-core's rules ([`answer_in`], [`to_hand_out`]).

use super::{App, bad, blocking, read_body};
use crate::params;
use crate::sql::Db;
use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tally_core::card::Serial;
use tally_core::crypto::Hash;
use tally_core::trail::Body;
use tally_core::validation::Challenge;
use tally_core::validation::challenge::{answer_in, to_hand_out};

/// Migration 9 of the registry: the challenges, and what renewing a licence by its id
/// needs that only its keyfile held until now (`tally-pack renew --licence`).
pub const MIGRATION_SQL: &str = "CREATE TABLE challenges (
        id                INTEGER PRIMARY KEY,  -- in the order issued
        nonce             TEXT NOT NULL UNIQUE, -- 64 lower-case hex digits
        serial            TEXT NOT NULL,        -- the challenged card's
        customer          TEXT NOT NULL,
        issued_unix       INTEGER NOT NULL,
        expires_unix      INTEGER NOT NULL,
        answered_counter  TEXT,                 -- 20-digit decimal: the answer record's counter, once the server saw it in a trail it verified
        answered_seen_at  TEXT                  -- RFC 3339 UTC: when it saw it
    );
    CREATE INDEX challenges_by_serial ON challenges (serial, issued_unix);
    ALTER TABLE keyfiles ADD COLUMN server_url TEXT;           -- NULL: no validation server
    ALTER TABLE keyfiles ADD COLUMN online_every_days INTEGER; -- NULL: no online requirement
    ALTER TABLE keyfiles ADD COLUMN allow_emulated INTEGER;    -- 0 or 1; NULL: issued before migration 9
    ALTER TABLE keyfiles ADD COLUMN issuers TEXT;              -- JSON array of the card issuers' public exports";

/// A challenge as the registry keeps it.
#[derive(Debug, Clone)]
pub struct ChallengeRow {
    /// The challenge.
    pub challenge: Challenge,
    /// The customer challenged.
    pub customer: String,
    /// The answer's counter and when the server saw it in a trail it verified.
    pub seen_answered: Option<(u64, String)>,
}

/// Stores a new challenge for `customer`'s card.
pub fn store(db: &mut Db, customer: &str, c: &Challenge) -> Result<()> {
    db.execute(
        "INSERT INTO challenges (nonce, serial, customer, issued_unix, expires_unix)
         VALUES ($1, $2, $3, $4, $5)",
        params![
            c.nonce_hex(),
            c.serial.to_hex(),
            customer,
            c.issued_at,
            c.expires_at
        ],
    )?;
    Ok(())
}

fn to_row(r: &crate::sql::Row) -> Result<ChallengeRow> {
    let nonce_hex = r.text(0)?;
    let serial_hex = r.text(1)?;
    let mut nonce = [0u8; 32];
    hex::decode_to_slice(&nonce_hex, &mut nonce)
        .with_context(|| format!("registry: bad challenge nonce {nonce_hex:?}"))?;
    let serial = Serial::from_hex(&serial_hex)
        .with_context(|| format!("registry: bad card serial {serial_hex:?}"))?;
    let answered = match (r.opt_text(5)?, r.opt_text(6)?) {
        (Some(c), Some(at)) => Some((
            c.parse()
                .with_context(|| format!("registry: bad answer counter {c:?}"))?,
            at,
        )),
        _ => None,
    };
    Ok(ChallengeRow {
        challenge: Challenge {
            serial,
            nonce,
            issued_at: r.int(3)?,
            expires_at: r.int(4)?,
        },
        customer: r.text(2)?,
        seen_answered: answered,
    })
}

const COLUMNS: &str =
    "nonce, serial, customer, issued_unix, expires_unix, answered_counter, answered_seen_at";

/// Every challenge, oldest first; only `customer`'s when given.
pub fn list(db: &mut Db, customer: Option<&str>) -> Result<Vec<ChallengeRow>> {
    let rows = db.query(
        &format!(
            "SELECT {COLUMNS} FROM challenges
             WHERE CAST($1 AS TEXT) IS NULL OR customer = $1
             ORDER BY id"
        ),
        params![customer],
    )?;
    rows.iter().map(to_row).collect()
}

/// The challenges of card `serial` the server has not seen answered, in the order issued.
pub fn unanswered(db: &mut Db, serial: &Serial) -> Result<Vec<Challenge>> {
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM challenges WHERE serial = $1 AND answered_counter IS NULL"),
        params![serial.to_hex()],
    )?;
    rows.iter().map(|r| Ok(to_row(r)?.challenge)).collect()
}

/// Notes the answers to card `serial`'s open challenges found among `bodies` — the records
/// of a trail this server has just verified against the card's registered key — with the
/// time `now` (RFC 3339). Returns how many were noted.
pub fn note_answers(
    db: &mut Db,
    serial: &Serial,
    server_key: &Hash,
    bodies: &[(u64, Body)],
    now: &str,
) -> Result<usize> {
    let mut noted = 0;
    for c in unanswered(db, serial)? {
        if let Some(a) = answer_in(bodies.iter().cloned(), server_key, &c.nonce) {
            noted += db.execute(
                "UPDATE challenges SET answered_counter = $2, answered_seen_at = $3
                 WHERE nonce = $1 AND answered_counter IS NULL",
                params![c.nonce_hex(), format!("{:020}", a.counter), now],
            )? as usize;
        }
    }
    Ok(noted)
}

/// The handler of `POST /v1/challenge`.
pub(super) async fn challenge(State(app): State<Arc<App>>, req: Request) -> Response {
    let body = match read_body(req, 64, super::BODY_TIMEOUT, "challenge request").await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    blocking(move || app.handle_challenge(&body)).await
}

impl App {
    fn handle_challenge(&self, body: &[u8]) -> Result<Response> {
        let Ok(serial) = <[u8; 16]>::try_from(body) else {
            return Ok(bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "a challenge request is the card's 16-byte serial; this body has {} bytes",
                    body.len()
                ),
            ));
        };
        let serial = Serial(serial);
        let open = unanswered(&mut *self.pool.get(super::POOL_WAIT)?, &serial)?;
        let now = self.clock.now().unix_timestamp();
        Ok(match to_hand_out(&open, now) {
            Some(c) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.key.sign_challenge(c),
            )
                .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
}
