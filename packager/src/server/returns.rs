//! Early returns (issue 13, T38): the registry's verified returns and loan caps
//! (migration 9), `POST /v1/return`, and the queries `tally-pack returns`, `tally-pack loans`,
//! `tally-pack issue` and the restore endpoints share.
//!
//! A receipt (`tally_core::receipt`) is checked against the card registered for the licence
//! it returns — looked up in the registry by licence, never taken from the receipt — and
//! recorded once per licence. Recording is idempotent: the same receipt again, from the
//! server or a file, gets the same answer, and a second receipt for a licence already
//! returned changes nothing. A verified return frees the loan's place at once
//! ([`loans_of`]), and from then on every recovery record for that card charges the licence
//! in full (`tally_core::validation::recovery_terms`), so a restore of an older backup does
//! not bring it back.
//!
//! `POST /v1/return`: body, the receipt (at most `MAX_RECEIPT` bytes). 200 with one line
//! naming the return (the same line for a replay); 400 for a malformed receipt and 404 for a
//! licence this publisher did not issue; 422 for a receipt of another card or with a
//! signature that does not verify (header `x-tally-check` names the check, as
//! `ReceiptError::check` does).

use super::{App, bad, blocking, read_body, unprocessable};
use crate::params;
use crate::sql::Db;
use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tally_core::card::Serial;
use tally_core::loans::Loan;
use tally_core::policy::Limits;
use tally_core::receipt::{MAX_RECEIPT, Receipt, ReceiptError};
use tally_core::trail::LicenceId;

/// Migration 9 of the registry.
pub const MIGRATION_SQL: &str = "CREATE TABLE returns (
        licence_id   TEXT PRIMARY KEY,        -- 32 lower-case hex digits
        customer     TEXT NOT NULL,
        serial       TEXT NOT NULL,           -- the card's, hex
        document_id  TEXT NOT NULL,
        counter      TEXT NOT NULL,           -- the return record's card counter, 20-digit decimal
        returned_at  TEXT NOT NULL,           -- the record's time, RFC 3339 UTC
        received_at  TEXT NOT NULL,           -- when the publisher verified it, RFC 3339 UTC
        via          TEXT NOT NULL,           -- server | file
        receipt      BLOB NOT NULL            -- the receipt as verified
    );
    CREATE INDEX returns_by_serial ON returns (serial);
    ALTER TABLE packages ADD COLUMN loan_cap INTEGER;   -- concurrent loans allowed; NULL: no cap";

/// How long a client may take to send its (small) receipt.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A return the publisher verified.
#[derive(Debug, Clone)]
pub struct ReturnRow {
    /// The licence.
    pub licence: LicenceId,
    /// Its customer.
    pub customer: String,
    /// The card that returned it, hex.
    pub serial: String,
    /// The document id, hex.
    pub document_id: String,
    /// The document's title (from the issued licence).
    pub title: String,
    /// The return record's card counter.
    pub counter: u64,
    /// When the reader returned it (the record's time).
    pub returned_at: String,
    /// When the publisher verified the receipt.
    pub received_at: String,
    /// How it came: `server` or `file`.
    pub via: String,
}

impl ReturnRow {
    /// One line for the publisher and the reader: the same for a first receipt and a replay.
    pub fn line(&self) -> String {
        format!(
            "return of licence {} of “{}” (customer {}) recorded: returned {}, card counter {}",
            self.licence, self.title, self.customer, self.returned_at, self.counter
        )
    }
}

/// Why a receipt was not recorded.
#[derive(Debug)]
pub enum Refusal {
    /// The bytes are not a well-formed receipt.
    Malformed(ReceiptError),
    /// This publisher issued no such licence.
    UnknownLicence(LicenceId),
    /// The licence's card is not registered (any more).
    UnknownCard(String),
    /// The receipt does not verify against the licence's registered card.
    Refused(ReceiptError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not a valid return receipt: {e}"),
            Self::UnknownLicence(l) => {
                write!(f, "licence {l} was not issued by this publisher")
            }
            Self::UnknownCard(s) => write!(
                f,
                "the licence's card {s} is not registered to any customer"
            ),
            Self::Refused(e) => write!(f, "receipt refused: {e}"),
        }
    }
}

impl Refusal {
    /// The check that failed, as the `x-tally-check` header names it.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Malformed(e) | Self::Refused(e) => e.check(),
            Self::UnknownLicence(_) => "licence",
            Self::UnknownCard(_) => "card",
        }
    }
}

/// The licence's issue record: customer, card serial, document.
fn issued(db: &mut Db, licence: &LicenceId) -> Result<Option<(String, Serial, String)>> {
    let Some(r) = db.query_opt(
        "SELECT customer, serial, document_id FROM keyfiles WHERE licence_id = $1",
        params![licence.to_hex()],
    )?
    else {
        return Ok(None);
    };
    let serial = r.text(1)?;
    Ok(Some((
        r.text(0)?,
        Serial::from_hex(&serial).with_context(|| format!("registry: bad serial {serial:?}"))?,
        r.text(2)?,
    )))
}

/// Verifies the receipt `bytes` against the card registered for the licence it returns and
/// records the return (`via`: `server` or `file`), once per licence: a licence returned
/// already keeps its first record, and the answer names it.
pub fn record(db: &mut Db, bytes: &[u8], via: &str) -> Result<Result<ReturnRow, Refusal>> {
    let receipt = match Receipt::parse(bytes) {
        Ok(r) => r,
        Err(e) => return Ok(Err(Refusal::Malformed(e))),
    };
    let licence = receipt.licence;
    let Some((customer, serial, document_id)) = issued(db, &licence)? else {
        return Ok(Err(Refusal::UnknownLicence(licence)));
    };
    // The card the publisher registered for the licence's customer, never the receipt's.
    let Some((_, card)) = super::trail::customer_by_serial(db, &serial)? else {
        return Ok(Err(Refusal::UnknownCard(serial.to_hex())));
    };
    let verified = match receipt.verify(&card, &licence) {
        Ok(v) => v,
        Err(e) => return Ok(Err(Refusal::Refused(e))),
    };
    let returned_at = verified
        .returned_at
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the return time")?;
    db.execute(
        "INSERT INTO returns (licence_id, customer, serial, document_id, counter, returned_at,
                              received_at, via, receipt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (licence_id) DO NOTHING",
        params![
            licence.to_hex(),
            customer,
            serial.to_hex(),
            document_id,
            format!("{:020}", verified.counter),
            returned_at,
            crate::commands::now_rfc3339(),
            via,
            bytes
        ],
    )?;
    let row = returns_where(db, "WHERE r.licence_id = $1", params![licence.to_hex()])?
        .into_iter()
        .next()
        .context("registry: the return just recorded is missing")?;
    Ok(Ok(row))
}

fn returns_where(db: &mut Db, filter: &str, p: &[crate::sql::Value]) -> Result<Vec<ReturnRow>> {
    let rows = db.query(
        &format!(
            "SELECT r.licence_id, r.customer, r.serial, r.document_id, COALESCE(k.title, ''),
                    r.counter, r.returned_at, r.received_at, r.via
             FROM returns r LEFT JOIN keyfiles k ON k.licence_id = r.licence_id
             {filter} ORDER BY r.received_at, r.licence_id"
        ),
        p,
    )?;
    rows.iter()
        .map(|r| {
            let lic = r.text(0)?;
            Ok(ReturnRow {
                licence: LicenceId::from_hex(&lic)
                    .with_context(|| format!("registry: bad licence id {lic:?}"))?,
                customer: r.text(1)?,
                serial: r.text(2)?,
                document_id: r.text(3)?,
                title: r.text(4)?,
                counter: r.text(5)?.parse().context("registry: bad return counter")?,
                returned_at: r.text(6)?,
                received_at: r.text(7)?,
                via: r.text(8)?,
            })
        })
        .collect()
}

/// Every verified return, oldest first.
pub fn all(db: &mut Db) -> Result<Vec<ReturnRow>> {
    returns_where(db, "", &[])
}

/// The licences of card `serial` whose return the publisher verified.
pub fn returned_of(db: &mut Db, serial: &Serial) -> Result<Vec<LicenceId>> {
    let rows = db.query(
        "SELECT licence_id FROM returns WHERE serial = $1",
        params![serial.to_hex()],
    )?;
    rows.iter()
        .map(|r| {
            let hex = r.text(0)?;
            LicenceId::from_hex(&hex).with_context(|| format!("registry: bad licence id {hex}"))
        })
        .collect()
}

/// A document's cap on concurrent loans (`None`: no cap).
pub fn cap_of(db: &mut Db, document: &str) -> Result<Option<u64>> {
    Ok(db
        .query_opt(
            "SELECT loan_cap FROM packages WHERE document_id = $1",
            params![document],
        )?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .map(|c| c.max(0) as u64))
}

/// Sets (or with `None` lifts) a document's cap; false when the document is not registered.
pub fn set_cap(db: &mut Db, document: &str, cap: Option<u64>) -> Result<bool> {
    let cap = cap
        .map(|c| i64::try_from(c).context("the cap is too large"))
        .transpose()?;
    Ok(db.execute(
        "UPDATE packages SET loan_cap = $1 WHERE document_id = $2",
        params![cap, document],
    )? == 1)
}

/// One licence of a document, with who holds it.
#[derive(Debug, Clone)]
pub struct LoanRow {
    /// The loan, as the cap counts it.
    pub loan: Loan,
    /// The customer.
    pub customer: String,
    /// When it was issued.
    pub issued_at: String,
}

/// Every licence issued for `document` (hex), with whether it was revoked or returned.
/// `lock`: lock the document's package row first (`FOR UPDATE`), so that counting and
/// issuing are one step across processes (SQLite: the transaction already holds the
/// database).
pub fn loans_of(db: &mut Db, document: &str, lock: bool) -> Result<Vec<LoanRow>> {
    if lock {
        db.query(
            "SELECT document_id FROM packages WHERE document_id = $1 FOR UPDATE",
            params![document],
        )?;
    }
    let rows = db.query(
        "SELECT k.licence_id, k.customer, k.policy, k.issued_at,
                CAST(CASE WHEN c.status = 'revoked' THEN 1 ELSE 0 END AS BIGINT),
                CAST(CASE WHEN r.licence_id IS NULL THEN 0 ELSE 1 END AS BIGINT)
         FROM keyfiles k
         LEFT JOIN copies c ON c.licence_id = k.licence_id
         LEFT JOIN returns r ON r.licence_id = k.licence_id
         WHERE k.document_id = $1
         ORDER BY k.issued_at, k.licence_id",
        params![document],
    )?;
    rows.iter()
        .map(|r| {
            let lic = r.text(0)?;
            let licence = LicenceId::from_hex(&lic)
                .with_context(|| format!("registry: bad licence id {lic:?}"))?;
            let limits = Limits::parse(r.text(2)?.as_bytes())
                .with_context(|| format!("registry: licence {lic}: policy"))?;
            Ok(LoanRow {
                loan: Loan::new(licence, &limits, r.int(4)? != 0, r.int(5)? != 0),
                customer: r.text(1)?,
                issued_at: r.text(3)?,
            })
        })
        .collect()
}

/// The handler of `POST /v1/return`.
pub(super) async fn post_return(State(app): State<Arc<App>>, req: Request) -> Response {
    let body = match read_body(req, MAX_RECEIPT, BODY_TIMEOUT, "return receipt").await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    blocking(move || {
        let mut db = app.pool.get(super::POOL_WAIT)?;
        let out = db.transaction(|db| record(db, &body, "server"))?;
        Ok(match out {
            Ok(row) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", row.line()),
            )
                .into_response(),
            Err(r @ Refusal::Malformed(_)) => bad(StatusCode::BAD_REQUEST, r.to_string()),
            Err(r @ Refusal::UnknownLicence(_)) => bad(StatusCode::NOT_FOUND, r.to_string()),
            Err(r) => unprocessable(r.check(), format!("{r}\n")),
        })
    })
    .await
}
