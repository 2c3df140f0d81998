//! The validation server's tables in the registry (migration 3) and every query on
//! them. `serve`, `revoke`, `copies` and `viewer register` share these functions, so
//! they agree while the server runs — on SQLite (WAL; one writer at a time) and on
//! PostgreSQL, where several `serve` nodes share the database: a copy's row is locked
//! (`SELECT … FOR UPDATE`, [`lookup_for_update`]) for the transaction that decides and
//! stores its next state, so requests for one copy racing across nodes take turns.

use crate::params;
use crate::sql::{Db, Row, Value};
use anyhow::{Context, Result};
use tally_core::card::{CardIdentity, Serial};
use tally_core::icv::{Icv, Iv, Ui};
use tally_core::trail::LicenceId;
use tally_core::validation::{CopyState, Lookup};

/// Migration 3 of the registry.
pub const MIGRATION_SQL: &str = "CREATE TABLE copies (
        id            INTEGER PRIMARY KEY,
        licence_id    TEXT NOT NULL UNIQUE,   -- the keyfile's licence = the copy's first UI
        customer      TEXT NOT NULL,
        document_id   TEXT NOT NULL,
        ui            TEXT NOT NULL UNIQUE,   -- confirmed UI, hex
        vssi          INTEGER NOT NULL,       -- u64 stored bit for bit
        iv            BLOB NOT NULL,
        pending_ui    TEXT UNIQUE,            -- UI of the last ticket, until presented
        pending_vssi  INTEGER,
        pending_iv    BLOB,
        last_psi      INTEGER NOT NULL,
        status        TEXT NOT NULL,          -- active | revoked
        flags         TEXT NOT NULL,          -- comma-separated: clone, modified-viewer, icv-mismatch
        created       TEXT NOT NULL
    );
    CREATE INDEX copies_by_customer ON copies (customer);
    CREATE TABLE retired_uis (
        ui       TEXT PRIMARY KEY,            -- presenting one again is a clone
        copy_id  INTEGER NOT NULL REFERENCES copies (id)
    );
    CREATE TABLE validations (
        id       INTEGER PRIMARY KEY,
        copy_id  INTEGER REFERENCES copies (id),
        at       TEXT NOT NULL,               -- RFC 3339 UTC
        unix     INTEGER NOT NULL,
        status   TEXT NOT NULL,
        psi      INTEGER NOT NULL,
        vssi     INTEGER NOT NULL
    );
    CREATE INDEX validations_by_copy ON validations (copy_id, unix);
    CREATE TABLE viewer_builds (
        icv            TEXT PRIMARY KEY,      -- tally_core::icv::executable_icv, hex
        name           TEXT NOT NULL,
        size           INTEGER NOT NULL,
        registered_at  TEXT NOT NULL
    );";

/// u64 ↔ BIGINT, bit for bit.
fn to_sql(v: u64) -> i64 {
    v as i64
}
fn from_sql(v: i64) -> u64 {
    v as u64
}

fn iv_from(blob: &[u8]) -> Result<Iv> {
    Ok(Iv(blob
        .try_into()
        .context("registry: an IV is not 32 bytes")?))
}

fn ui_from(hex: &str) -> Result<Ui> {
    Ui::from_hex(hex).with_context(|| format!("registry: bad UI {hex:?}"))
}

/// Gives every issued keyfile its copy row (first UI = licence id). Idempotent, and safe
/// when several nodes run it at once (`ON CONFLICT DO NOTHING`). Scans every keyfile:
/// for start-up and the CLI; a request uses [`sync_copy`].
pub fn sync_copies(db: &mut Db) -> Result<usize> {
    let missing = db.query(
        "SELECT k.licence_id, k.customer, k.document_id FROM keyfiles k
         LEFT JOIN copies c ON c.licence_id = k.licence_id WHERE c.id IS NULL",
        &[],
    )?;
    insert_copies(db, &missing)
}

/// Gives the keyfile whose licence id is `ui` its copy row if it has none yet (a keyfile
/// issued after the server started): a copy's first UI is its licence id, so an unknown
/// UI costs one indexed lookup, never a scan of every keyfile.
pub fn sync_copy(db: &mut Db, ui: &Ui) -> Result<bool> {
    let missing = db.query(
        "SELECT k.licence_id, k.customer, k.document_id FROM keyfiles k
         LEFT JOIN copies c ON c.licence_id = k.licence_id
         WHERE k.licence_id = $1 AND c.id IS NULL",
        params![ui.to_hex()],
    )?;
    Ok(insert_copies(db, &missing)? > 0)
}

fn insert_copies(db: &mut Db, missing: &[Row]) -> Result<usize> {
    for r in missing {
        let lic = r.text(0)?;
        let licence = LicenceId::from_hex(&lic)
            .with_context(|| format!("registry: bad licence id {lic:?}"))?;
        let s = CopyState::new(licence);
        db.execute(
            "INSERT INTO copies (licence_id, customer, document_id, ui, vssi, iv, last_psi, status, flags, created)
             VALUES ($1, $2, $3, $4, 0, $5, 0, 'active', '', $6) ON CONFLICT DO NOTHING",
            params![
                lic,
                r.text(1)?,
                r.text(2)?,
                s.ui.to_hex(),
                s.iv.0.to_vec(),
                crate::commands::now_rfc3339()
            ],
        )?;
    }
    Ok(missing.len())
}

/// A copy row.
#[derive(Debug, Clone)]
pub struct CopyRow {
    /// Row id.
    pub id: i64,
    /// The licence (= first UI), hex.
    pub licence: String,
    /// The customer.
    pub customer: String,
    /// The document, hex.
    pub document: String,
    /// The rules' view of it.
    pub state: CopyState,
    /// Flags, comma-separated.
    pub flags: String,
    /// When the row was made.
    pub created: String,
}

const COPY_COLUMNS: &str = "id, licence_id, customer, document_id, ui, vssi, iv, pending_ui, pending_vssi, pending_iv, last_psi, status, flags, created, card_counter";

fn to_row(r: &Row) -> Result<CopyRow> {
    let pending = match (r.opt_text(7)?, r.opt_int(8)?, r.opt_blob(9)?) {
        (Some(u), Some(v), Some(i)) => Some((ui_from(&u)?, from_sql(v), iv_from(&i)?)),
        _ => None,
    };
    let licence = r.text(1)?;
    Ok(CopyRow {
        id: r.int(0)?,
        customer: r.text(2)?,
        document: r.text(3)?,
        state: CopyState {
            licence: LicenceId::from_hex(&licence)
                .with_context(|| format!("registry: bad licence id {licence:?}"))?,
            ui: ui_from(&r.text(4)?)?,
            vssi: from_sql(r.int(5)?),
            iv: iv_from(&r.blob(6)?)?,
            pending,
            last_psi: from_sql(r.int(10)?),
            revoked: r.text(11)? == "revoked",
            card_counter: r.opt_int(14)?.map(from_sql),
        },
        licence,
        flags: r.text(12)?,
        created: r.text(13)?,
    })
}

/// Finds the copy a UI belongs to, and how, and locks the copy's row until the
/// transaction ends, so the decision and the stored state are one step however many
/// nodes serve the copy. Call it inside
/// [`Db::transaction`]. A row another node changed meanwhile is read as it is now (READ
/// COMMITTED re-checks the condition on the newest row version): a UI retired by that
/// node is then found in `retired_uis`, i.e. as a clone.
pub fn lookup_for_update(db: &mut Db, ui: &Ui) -> Result<Option<(CopyRow, Lookup)>> {
    find(db, ui, " FOR UPDATE")
}

fn find(db: &mut Db, ui: &Ui, lock: &str) -> Result<Option<(CopyRow, Lookup)>> {
    let hex = ui.to_hex();
    let found = db.query_opt(
        &format!("SELECT {COPY_COLUMNS} FROM copies WHERE ui = $1 OR pending_ui = $1{lock}"),
        params![hex.clone()],
    )?;
    if let Some(r) = found {
        let row = to_row(&r)?;
        let how = if row.state.ui == *ui {
            Lookup::Current
        } else {
            Lookup::Pending
        };
        return Ok(Some((row, how)));
    }
    let retired = db.query_opt(
        &format!(
            "SELECT {COPY_COLUMNS} FROM copies WHERE id = (SELECT copy_id FROM retired_uis WHERE ui = $1){lock}"
        ),
        params![hex],
    )?;
    retired
        .map(|r| Ok((to_row(&r)?, Lookup::Superseded)))
        .transpose()
}

/// The card serial a keyfile was issued for.
const KEYFILE_SERIAL: &str = "SELECT serial FROM keyfiles WHERE licence_id = $1";

/// Readies a new connection for validations: runs the statements a validation reads with,
/// on values that match nothing, and prepares the batch writer's, so the first validations
/// a node serves find them parsed and planned and the backend's caches loaded.
pub fn warm(db: &mut Db) -> Result<()> {
    let nothing = Ui([0; tally_core::icv::UI_LEN]);
    find(db, &nothing, "")?;
    row_and_card(db, &nothing)?;
    viewer_registered(db, &Icv([0; 32]))?;
    db.query_opt(KEYFILE_SERIAL, params![String::new()])?;
    super::trail::customer_by_serial(db, &Serial([0; 16]))?;
    if db.is_postgres() {
        db.prepare(STORE_RETIRE_LOG)?;
    }
    Ok(())
}

/// A copy's row, and how the UI a request presented found it.
pub type Found = (CopyRow, Lookup);

/// A copy's row found by its current or pending UI, with the card registered for it
/// (`None`: no customer registered with its keyfile's card), in one query: a copy's first
/// validation on a node reads both so, where separately it took four statements (the row, the
/// keyfile's card serial, the customer, and the row again to judge). `None` when no copy has
/// the UI as its current or pending one (a retired UI, an unknown or unsynced copy:
/// [`registered_card`] sees to those). Read without a lock, like [`lookup`].
pub fn row_and_card(db: &mut Db, ui: &Ui) -> Result<Option<(Found, Option<CardIdentity>)>> {
    let columns: Vec<String> = COPY_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let Some(r) = db.query_opt(
        &format!(
            "SELECT {}, k.serial, u.name, u.public_key, u.origin FROM copies c
             LEFT JOIN keyfiles k ON k.licence_id = c.licence_id
             LEFT JOIN customers u ON u.serial = k.serial
             WHERE c.ui = $1 OR c.pending_ui = $1",
            columns.join(", ")
        ),
        params![ui.to_hex()],
    )?
    else {
        return Ok(None);
    };
    let row = to_row(&r)?;
    let how = if row.state.ui == *ui {
        Lookup::Current
    } else {
        Lookup::Pending
    };
    let n = columns.len();
    let card = match (
        r.opt_text(n)?,
        r.opt_text(n + 1)?,
        r.opt_blob(n + 2)?,
        r.opt_text(n + 3)?,
    ) {
        (Some(serial), Some(name), Some(key), Some(origin)) => {
            let serial = Serial::from_hex(&serial)
                .with_context(|| format!("registry: bad card serial {serial:?}"))?;
            Some(super::trail::card_identity(serial, &name, &key, &origin)?)
        }
        _ => None,
    };
    Ok(Some(((row, how), card)))
}

/// The card registered for the copy a UI belongs to (any of its UIs: current, pending or
/// retired): the card serial of the copy's keyfile, with the key its customer registered.
/// `None` when no copy has this UI, or no customer is registered with the keyfile's card.
/// Read without a lock: a UI's copy, a copy's keyfile and a keyfile's card never change.
pub fn registered_card(db: &mut Db, ui: &Ui) -> Result<Option<CardIdentity>> {
    let mut found = find(db, ui, "")?;
    if found.is_none() && sync_copy(db, ui)? {
        found = find(db, ui, "")?;
    }
    let Some((row, _)) = found else {
        return Ok(None);
    };
    let serial = db.query_opt(KEYFILE_SERIAL, params![row.licence])?;
    let Some(serial) = serial else {
        return Ok(None);
    };
    let hex = serial.text(0)?;
    let serial =
        Serial::from_hex(&hex).with_context(|| format!("registry: bad card serial {hex:?}"))?;
    Ok(super::trail::customer_by_serial(db, &serial)?.map(|(_, card)| card))
}

/// `$1`…`$10` of [`store`]: the row's id and the copy's new state.
fn state_params(id: i64, s: &CopyState) -> Vec<Value> {
    let (pu, pv, pi) = match &s.pending {
        Some((u, v, i)) => (Some(u.to_hex()), Some(to_sql(*v)), Some(i.0.to_vec())),
        None => (None, None, None),
    };
    params![
        id,
        s.ui.to_hex(),
        to_sql(s.vssi),
        s.iv.0.to_vec(),
        pu,
        pv,
        pi,
        to_sql(s.last_psi),
        i64::from(s.revoked),
        s.card_counter.map(to_sql)
    ]
    .to_vec()
}

/// Stores a copy's new state.
pub fn store(db: &mut Db, id: i64, s: &CopyState) -> Result<()> {
    db.execute(
        "UPDATE copies SET ui = $2, vssi = $3, iv = $4, pending_ui = $5, pending_vssi = $6,
         pending_iv = $7, last_psi = $8,
         status = CASE WHEN $9 = 1 THEN 'revoked' ELSE status END, card_counter = $10
         WHERE id = $1",
        &state_params(id, s),
    )?;
    Ok(())
}

/// Records UIs a copy moved on from.
pub fn retire(db: &mut Db, id: i64, uis: &[Ui]) -> Result<()> {
    for u in uis {
        db.execute(
            "INSERT INTO retired_uis (ui, copy_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            params![u.to_hex(), id],
        )?;
    }
    Ok(())
}

/// Adds a flag to a copy (once). Inside the transaction that locked the row.
pub fn flag(db: &mut Db, id: i64, flag: &str) -> Result<()> {
    let flags = db
        .query_opt("SELECT flags FROM copies WHERE id = $1", params![id])?
        .context("registry: the flagged copy is gone")?
        .text(0)?;
    if flags.split(',').any(|f| f == flag) {
        return Ok(());
    }
    let new = if flags.is_empty() {
        flag.to_string()
    } else {
        format!("{flags},{flag}")
    };
    db.execute(
        "UPDATE copies SET flags = $2 WHERE id = $1",
        params![id, new],
    )?;
    Ok(())
}

/// Logs one validation (time, date; frequency is computed from these rows).
pub fn log(
    db: &mut Db,
    copy: Option<i64>,
    unix: i64,
    status: &str,
    psi: u64,
    vssi: u64,
) -> Result<()> {
    db.execute(
        "INSERT INTO validations (copy_id, at, unix, status, psi, vssi) VALUES ($1, $2, $3, $4, $5, $6)",
        params![copy, rfc3339(unix), unix, status, to_sql(psi), to_sql(vssi)],
    )?;
    Ok(())
}

/// The `at` column of a validation: its time as RFC 3339 (the number if out of range).
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// One validation's writes for [`store_retire_log`]: the copy's row as the decision read
/// it, its new state, the UIs it moved on from, and the log row.
#[derive(Debug, Clone)]
pub struct Write {
    /// The copy's row as read.
    pub seen: CopyRow,
    /// Its new state.
    pub state: CopyState,
    /// UIs to retire.
    pub retired: Vec<Ui>,
    /// The copy the log row names (`None` for a request its card did not sign).
    pub logged_copy: Option<i64>,
    /// When (Unix seconds).
    pub unix: i64,
    /// The outcome, by name.
    pub status: &'static str,
    /// The request's PSI.
    pub psi: u64,
    /// The VSSI answered.
    pub vssi: u64,
}

impl Write {
    /// The writes of decision `d` on the copy's row `seen`, which moves it to `state`.
    pub fn of(
        seen: &CopyRow,
        state: &CopyState,
        d: &tally_core::validation::Decision,
        logged_copy: Option<i64>,
        unix: i64,
        psi: u64,
    ) -> Self {
        Self {
            seen: seen.clone(),
            state: state.clone(),
            retired: d.retired.clone(),
            logged_copy,
            unix,
            status: d.verdict.status.name(),
            psi,
            vssi: d.verdict.vssi,
        }
    }
}

/// [`store_retire_log`]'s statement: the writes of many validations, each applied only if
/// its copy's row is still as read.
const STORE_RETIRE_LOG: &str = "WITH v AS (SELECT * FROM json_to_recordset($1::text::json) AS v(
        id BIGINT, ui TEXT, vssi BIGINT, iv TEXT, pu TEXT, pv BIGINT, pi TEXT,
        last_psi BIGINT, revoke INTEGER, cc BIGINT, retired TEXT, log_copy BIGINT,
        at TEXT, unix BIGINT, status TEXT, psi BIGINT, log_vssi BIGINT,
        was_ui TEXT, was_pu TEXT, was_vssi BIGINT, was_psi BIGINT, was_revoked INTEGER,
        was_flags TEXT, was_cc BIGINT)),
      s AS (UPDATE copies c SET ui = v.ui, vssi = v.vssi, iv = decode(v.iv, 'hex'),
                pending_ui = v.pu, pending_vssi = v.pv, pending_iv = decode(v.pi, 'hex'),
                last_psi = v.last_psi,
                status = CASE WHEN v.revoke = 1 THEN 'revoked' ELSE c.status END,
                card_counter = v.cc
            FROM v
            WHERE c.id = v.id AND c.ui = v.was_ui
              AND c.pending_ui IS NOT DISTINCT FROM v.was_pu
              AND c.vssi = v.was_vssi AND c.last_psi = v.was_psi
              AND (CASE WHEN c.status = 'revoked' THEN 1 ELSE 0 END) = v.was_revoked
              AND c.flags = v.was_flags AND c.card_counter IS NOT DISTINCT FROM v.was_cc
            RETURNING c.id),
      r AS (INSERT INTO retired_uis (ui, copy_id)
            SELECT u, v.id FROM v JOIN s ON s.id = v.id,
                 unnest(string_to_array(v.retired, ',')) AS u
            ON CONFLICT DO NOTHING),
      l AS (INSERT INTO validations (copy_id, at, unix, status, psi, vssi)
            SELECT v.log_copy, v.at, v.unix, v.status, v.psi, v.log_vssi
            FROM v JOIN s ON s.id = v.id)
SELECT id FROM s";

/// [`store`], [`retire`] and [`log`] of any number of validations in one PostgreSQL
/// statement (a data-modifying `WITH` over the writes given as one JSON parameter), each
/// done only if its copy's row is still as its `seen` was read (UIs, VSSI, PSI, status,
/// flags, card counter): for each write, whether it was. Every statement is a round trip
/// to the database, a wake-up of its backend and, alone, a commit; with this the common
/// validation is one read and a share of one statement — optimistic: a write whose row
/// another request changed meanwhile writes nothing, and that validation is decided again
/// on the new row. Under the row's lock (one write) it is simply true. Two writes for one
/// copy in one call: only the first is tried (an `UPDATE … FROM` applies one of them, but
/// which is not defined), the other answered false, to be decided again. PostgreSQL only:
/// SQLite has no data-modifying `WITH`, and its statements cost no round trip.
pub fn store_retire_log(db: &mut Db, writes: &[Write]) -> Result<Vec<bool>> {
    let mut ids = std::collections::HashSet::new();
    let mut tried = Vec::with_capacity(writes.len());
    let mut members: Vec<(i64, serde_json::Value)> = writes
        .iter()
        .filter_map(|w| {
            let first = ids.insert(w.seen.id);
            tried.push(first);
            first.then(|| (w.seen.id, write_json(w)))
        })
        .collect();
    if members.is_empty() {
        return Ok(tried);
    }
    // In the copies' order, so two nodes' batches touching the same copies lock their rows
    // in one order (a deadlock between them costs a second and sends both batches' requests
    // to the locked transaction; correct, but slow).
    members.sort_unstable_by_key(|(id, _)| *id);
    let members: Vec<serde_json::Value> = members.into_iter().map(|(_, m)| m).collect();
    let rows = db.query(
        STORE_RETIRE_LOG,
        params![serde_json::Value::Array(members).to_string()],
    )?;
    let mut applied = std::collections::HashSet::with_capacity(rows.len());
    for r in &rows {
        applied.insert(r.int(0)?);
    }
    Ok(writes
        .iter()
        .zip(tried)
        .map(|(w, tried)| tried && applied.contains(&w.seen.id))
        .collect())
}

/// One member of [`store_retire_log`]'s JSON: bytes as hex, UIs joined by commas (hex
/// never holds one; '' is no UI at all), u64 as the BIGINT it is stored as.
fn write_json(w: &Write) -> serde_json::Value {
    let (s, was) = (&w.state, &w.seen.state);
    let pending = s.pending.as_ref();
    serde_json::json!({
        "id": w.seen.id,
        "ui": s.ui.to_hex(),
        "vssi": to_sql(s.vssi),
        "iv": hex::encode(s.iv.0),
        "pu": pending.map(|(u, _, _)| u.to_hex()),
        "pv": pending.map(|(_, v, _)| to_sql(*v)),
        "pi": pending.map(|(_, _, i)| hex::encode(i.0)),
        "last_psi": to_sql(s.last_psi),
        "revoke": i64::from(s.revoked),
        "cc": s.card_counter.map(to_sql),
        "retired": w.retired.iter().map(Ui::to_hex).collect::<Vec<_>>().join(","),
        "log_copy": w.logged_copy,
        "at": rfc3339(w.unix),
        "unix": w.unix,
        "status": w.status,
        "psi": to_sql(w.psi),
        "log_vssi": to_sql(w.vssi),
        "was_ui": was.ui.to_hex(),
        "was_pu": was.pending.as_ref().map(|(u, _, _)| u.to_hex()),
        "was_vssi": to_sql(was.vssi),
        "was_psi": to_sql(was.last_psi),
        "was_revoked": i64::from(was.revoked),
        "was_flags": w.seen.flags,
        "was_cc": was.card_counter.map(to_sql),
    })
}

/// Finds the copy a UI belongs to, and how, without locking it (see [`store_retire_log`]).
pub fn lookup(db: &mut Db, ui: &Ui) -> Result<Option<(CopyRow, Lookup)>> {
    find(db, ui, "")
}

/// Whether a viewer build is registered.
pub fn viewer_registered(db: &mut Db, icv: &Icv) -> Result<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM viewer_builds WHERE icv = $1",
            params![hex::encode(icv.0)],
        )?
        .is_some())
}

/// Registers a viewer build; false when it was already registered.
pub fn register_viewer(db: &mut Db, icv: &Icv, name: &str, size: u64) -> Result<bool> {
    let n = db.execute(
        "INSERT INTO viewer_builds (icv, name, size, registered_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        params![
            hex::encode(icv.0),
            name,
            i64::try_from(size).unwrap_or(i64::MAX),
            crate::commands::now_rfc3339()
        ],
    )?;
    Ok(n == 1)
}

/// Revokes copies: by any of their UIs or licence id, or every copy of a customer.
/// Returns the licence ids revoked. One statement, so it takes each row's lock and waits
/// for a validation holding it.
pub fn revoke(db: &mut Db, copy: Option<&str>, customer: Option<&str>) -> Result<Vec<String>> {
    sync_copies(db)?;
    let rows = db.query(
        "UPDATE copies SET status = 'revoked'
         WHERE (CAST($1 AS TEXT) IS NOT NULL AND (licence_id = $1 OR ui = $1 OR pending_ui = $1
                OR id = (SELECT copy_id FROM retired_uis WHERE ui = $1)))
            OR (CAST($2 AS TEXT) IS NOT NULL AND customer = $2)
         RETURNING licence_id",
        params![copy, customer],
    )?;
    rows.iter().map(|r| r.text(0)).collect()
}

/// A copy with its validation history, for `tally-pack copies`.
#[derive(Debug, Clone)]
pub struct CopySummary {
    /// The copy.
    pub row: CopyRow,
    /// Validations logged (any outcome).
    pub validations: u64,
    /// Successful ones.
    pub ok: u64,
    /// First and last validation (RFC 3339).
    pub first: Option<String>,
    /// The last.
    pub last: Option<String>,
    /// Validations per day between the first and the last (or over one day).
    pub per_day: f64,
}

/// Every copy, by customer then licence.
pub fn copies(db: &mut Db) -> Result<Vec<CopySummary>> {
    sync_copies(db)?;
    let rows = db.query(
        &format!("SELECT {COPY_COLUMNS} FROM copies ORDER BY customer, licence_id"),
        &[],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let row = to_row(&r)?;
        let s = db
            .query_opt(
                "SELECT CAST(COUNT(*) AS BIGINT),
                        CAST(COALESCE(SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0) AS BIGINT),
                        MIN(unix), MAX(unix)
                 FROM validations WHERE copy_id = $1",
                params![row.id],
            )?
            .context("registry: no validation summary")?;
        let (n, ok, lo, hi) = (s.int(0)?, s.int(1)?, s.opt_int(2)?, s.opt_int(3)?);
        let fmt = |u: Option<i64>| {
            u.and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
        };
        let span_days = match (lo, hi) {
            (Some(a), Some(b)) => ((b - a) as f64 / 86_400.0).max(1.0),
            _ => 1.0,
        };
        out.push(CopySummary {
            validations: u64::try_from(n).unwrap_or(0),
            ok: u64::try_from(ok).unwrap_or(0),
            first: fmt(lo),
            last: fmt(hi),
            per_day: n as f64 / span_days,
            row,
        });
    }
    Ok(out)
}
