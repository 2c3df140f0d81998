//! The validation server of WO 98/33296 (Figures 1–4): HTTP on loopback, the registry as
//! its database — a SQLite file (WAL, `synchronous = FULL`) or PostgreSQL shared by any
//! number of `serve` nodes (see [`crate::sql`]). Every rule is
//! `tally_core::validation::decide`; this module only decrypts, looks up, stores, signs.
//!
//! Cost per request, cheap work first: a VAL_REQ is decrypted, then judged on the copy's
//! row (replay, sequence, revocation, clone) before any package-sized work; the ICV is
//! computed only for a request that would otherwise pass: a V8 ICV over chunk digests the
//! node holds (≤ 32 KiB) at once, in the same transaction; anything package-sized with no
//! database connection or lock held, the decision then taken again under the copy's row
//! lock. On SQLite the validations running side by side share one commit, made by one
//! writer thread (`sql::Writer`); on PostgreSQL the common validation is one unlocked read
//! (none when this node made the copy's last validation) and its share of a batch writer's
//! statement, each write done only if its row is still as read (else the locked
//! transaction). No answer is sent before its writes are durable. A request's cryptography
//! runs on the async runtime's threads (as many as cores); only database work waits on
//! others. Per client address at most `max_per_client` requests are in flight (429
//! beyond); every request is logged to stderr as one line (method, path, status, outcome,
//! milliseconds).
//!
//! * `POST /v1/validate` — body: an encrypted VAL_REQ (exactly `ENVELOPE_LEN` bytes).
//!   200 with a signed VAL_OK, or 403 with a signed refusal (header `x-tally-status`
//!   names it); 400/404/405/413/415 with a one-line reason for anything malformed (T25).
//! * `GET /v1/server-key` — the server's public key and identifier, as JSON.
//! * `POST /v1/trail/validate` — a reader's encrypted trail: validated and vouched for with a
//!   signed validator record, kept (encrypted) as its backup (\[0094\], \[0062\]; see [`trail`]).
//! * `POST /v1/trail/restore` — a card-signed request for that backup: answered with the
//!   backup and a signed recovery record charging the lost records (\[0062\]; see [`restore`]).
//! * `POST /v1/trail/account` — a restored trail whose lost records another server
//!   accounted for: answered with this server's own account of them (T30; see [`restore`]).
//! * `POST /v1/challenge` — a card's serial: the publisher's pending nonce challenge for it,
//!   signed (\[0104\]; see [`challenge`]); the answer comes back inside a trail sent to
//!   `/v1/trail/validate`.
//! * `POST /v1/return` — a reader's return receipt: verified against the licence's
//!   registered card and recorded, which frees the loan's place (T38; see [`returns`]).

pub mod challenge;
pub mod db;
mod lru;
mod next_ui;
mod request_log;
pub mod restore;
pub mod returns;
pub mod trail;

use crate::sql::{Db, Pool, Target};
use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::Digest as _;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_core::CardIdentity;
use tally_core::icv::{self, ChunkDigests, Icv, IcvVariant, Iv};
use tally_core::policy::Clock;
use tally_core::validation::{
    CardCheck, CopyState, ENVELOPE_LEN, ENVELOPE_V1_LEN, Lookup, Presented, ServerSecret, Status,
    Terms, ValReq, decide,
};

/// Largest request body accepted (the real one is `ENVELOPE_LEN` bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest package file the server loads to compute ICVs.
const MAX_PACKAGE: u64 = 1 << 30;
/// How long a client may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a handler waits for a free database connection before answering 503.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How the server runs.
pub struct Config {
    /// The server key.
    pub key: ServerSecret,
    /// The registry database: a SQLite file or a PostgreSQL URL.
    pub db: Target,
    /// Database connections per node (PostgreSQL; SQLite uses one).
    pub pool_size: usize,
    /// Requests one client address may have in flight at once (more get 429).
    pub max_per_client: usize,
    /// Bytes of package files kept in memory for ICVs (least recently used go first).
    pub package_cache: u64,
    /// Folders holding the packages (matched to the registry by SHA-256).
    pub package_dirs: Vec<PathBuf>,
    /// What a ticket grants: its lifetime, the card records allowed offline.
    pub terms: Terms,
    /// ICV variants accepted.
    pub variants: Vec<IcvVariant>,
    /// The server's clock.
    pub clock: Arc<dyn Clock>,
    /// How a restored trail's lost records are charged (the publisher's policy).
    pub lost_records: tally_core::trail::body::LostCharge,
}

struct App {
    key: ServerSecret,
    pool: Arc<Pool>,
    /// SQLite's group writer: every validation's database step (`None` on PostgreSQL).
    writer: Option<crate::sql::Writer>,
    /// PostgreSQL's batch writer: the common validations' writes, many to a statement
    /// (`None` on SQLite).
    batcher: Option<crate::sql::Batcher<db::Write, bool>>,
    /// A copy's row as this node last wrote it, by the UI of its next request, so that
    /// request, when it comes to this node, is judged without a read (PostgreSQL): its
    /// write is done only if the row is still so ([`db::store_retire_log`]), so a row
    /// another node changed since costs a read then, never a wrong decision.
    rows: next_ui::NextUi<db::CopyRow>,
    package_dirs: Vec<PathBuf>,
    packages: Mutex<PackageCache>,
    digests: Mutex<lru::Lru<String, Arc<ChunkDigests>>>,
    terms: Terms,
    variants: Vec<IcvVariant>,
    clock: Arc<dyn Clock>,
    lost_records: tally_core::trail::body::LostCharge,
    max_per_client: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
    /// Validations in flight at once; the rest wait here, on the async runtime, rather
    /// than contending for database connections and cores.
    validations: tokio::sync::Semaphore,
    /// The registered card of a copy by the UI of its next request (a copy's card never
    /// changes), so a copy's next validation on this node finds it without a query: one
    /// entry per copy this node validated.
    cards: next_ui::NextUi<CardIdentity>,
    /// Viewer builds found registered (a build is never unregistered), so the common
    /// request makes one query fewer; one not found is asked again each time, since
    /// another node may register it meanwhile.
    viewers: Mutex<lru::Lru<Icv, ()>>,
    /// One line per request, written to standard error by a thread of its own.
    log: request_log::RequestLog,
    /// SQLite: a read-only connection for the cards of copies this node has not validated
    /// lately (`None` on PostgreSQL, whose pool has many).
    card_reader: Option<Mutex<Db>>,
}

/// Viewer builds a node remembers as registered; past this those not used lately go.
const MAX_VIEWER_ENTRIES: usize = 4096;

/// Copies whose card a node remembers (≈ 150 bytes each); past this those not validated
/// lately go.
const MAX_CARD_ENTRIES: usize = 100_000;

/// Documents whose chunk digests a node keeps in memory (≤ 32 KiB each); past this those
/// not used lately go, and are read again from the database when asked for.
const MAX_DIGEST_ENTRIES: usize = 4096;

/// Copy rows a node remembers (≈ 500 bytes each); past this those not validated lately go.
const MAX_ROW_ENTRIES: usize = 100_000;

/// Optimistic tries of a PostgreSQL validation before it takes the row's lock.
const OPTIMISTIC_TRIES: usize = 3;

/// Package files in memory, bounded in bytes; the least recently used go first.
struct PackageCache {
    limit: u64,
    used: u64,
    tick: u64,
    entries: HashMap<String, (Arc<Vec<u8>>, u64)>,
}

impl PackageCache {
    fn get(&mut self, document: &str) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(document).map(|(p, t)| {
            *t = tick;
            p.clone()
        })
    }

    fn put(&mut self, document: &str, bytes: Arc<Vec<u8>>) {
        let size = bytes.len() as u64;
        if size > self.limit {
            return;
        }
        while self.used + size > self.limit {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((p, _)) = self.entries.remove(&oldest) {
                self.used -= p.len() as u64;
            }
        }
        self.tick += 1;
        if let Some((old, _)) = self
            .entries
            .insert(document.to_string(), (bytes, self.tick))
        {
            self.used -= old.len() as u64;
        }
        self.used += size;
    }
}

/// Opens (and migrates) the database and builds the router; also returns the state, so
/// the caller can drop it (and close the database connections) outside the async runtime:
/// the synchronous PostgreSQL client blocks on its own runtime when it closes.
fn build(config: Config) -> Result<(Router, Arc<App>)> {
    let registry = crate::registry::Registry::open_target(&config.db)?;
    let mut first = registry.into_db();
    // A bound on the validations in flight at once (the rest wait on the async runtime):
    // twice the database connections, and at least 32 so SQLite's group commits have
    // members to share them (measured: fewer meant smaller groups and fewer validations per
    // second on both databases).
    let validation_threads = (2 * config.pool_size).max(32);
    db::sync_copies(&mut first)?;
    // SQLite: a second, read-only connection for the cards of copies this node has not
    // validated lately, so reading one never waits for the writer's group (which holds the
    // pool's one connection through its statements and its fsync); WAL lets it read beside
    // the writer, and a copy's card never changes.
    let card_reader = match &config.db {
        Target::Sqlite(_) => {
            let mut db = Db::open(&config.db)?;
            db.batch("PRAGMA query_only = ON")?;
            Some(Mutex::new(db))
        }
        Target::Postgres(_) => None,
    };
    let pool = Arc::new(Pool::new(config.db, first, config.pool_size));
    let writer = crate::sql::Writer::of(&pool)?;
    if writer.is_none() {
        // The pool's PostgreSQL connections opened and readied beside the first requests,
        // not by them (a request meanwhile takes a ready one or opens its own).
        let pool = pool.clone();
        std::thread::Builder::new()
            .name("postgres-warm".into())
            .spawn(move || {
                loop {
                    match pool.grow(db::warm) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            eprintln!(
                                "database: readying a connection failed, the rest open when needed: {e:#}"
                            );
                            break;
                        }
                    }
                }
            })
            .context("starting the database warm-up thread")?;
    }
    let batcher = match writer {
        Some(_) => None,
        None => Some(crate::sql::Batcher::start(
            pool.clone(),
            "postgres-writer",
            db::store_retire_log,
        )?),
    };
    let app = Arc::new(App {
        key: config.key,
        pool,
        writer,
        batcher,
        rows: next_ui::NextUi::new(MAX_ROW_ENTRIES),
        package_dirs: config.package_dirs,
        packages: Mutex::new(PackageCache {
            limit: config.package_cache,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
        }),
        digests: Mutex::new(lru::Lru::new(MAX_DIGEST_ENTRIES)),
        terms: config.terms,
        variants: config.variants,
        clock: config.clock,
        lost_records: config.lost_records,
        max_per_client: config.max_per_client.max(1),
        in_flight: Mutex::new(HashMap::new()),
        validations: tokio::sync::Semaphore::new(validation_threads),
        cards: next_ui::NextUi::new(MAX_CARD_ENTRIES),
        viewers: Mutex::new(lru::Lru::new(MAX_VIEWER_ENTRIES)),
        log: request_log::RequestLog::start().context("starting the request log thread")?,
        card_reader,
    });
    let router = Router::new()
        .route("/v1/validate", post(validate))
        .route("/v1/server-key", get(server_key))
        .route("/v1/trail/validate", post(trail::trail_validate))
        .route("/v1/trail/extend", post(trail::trail_extend))
        .route("/v1/trail/restore", post(restore::trail_restore))
        .route("/v1/trail/account", post(restore::trail_account))
        .route("/v1/challenge", post(challenge::challenge))
        .route("/v1/return", post(returns::post_return))
        .fallback(|| async {
            bad(
                StatusCode::NOT_FOUND,
                "no such endpoint (try POST /v1/validate or GET /v1/server-key)",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            admit_and_log,
        ))
        .with_state(app.clone());
    Ok((router, app))
}

/// Releases a client's in-flight slot when the request ends (however it ends).
struct InFlight<'a> {
    app: &'a App,
    ip: IpAddr,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.app.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Every request: the per-client limit (429 beyond `max_per_client` in flight from one
/// address), then one line to stderr: method, path, status, outcome (`x-tally-status` or
/// `x-tally-check` when the answer has one), client, milliseconds.
async fn admit_and_log(
    State(app): State<Arc<App>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let admitted = match ip {
        Some(ip) => {
            let mut m = app.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n >= app.max_per_client {
                None
            } else {
                *n += 1;
                Some(Some(InFlight { app: &app, ip }))
            }
        }
        None => Some(None),
    };
    let response = match admitted {
        None => bad(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests in flight from this address (at most {})",
                app.max_per_client
            ),
        ),
        Some(slot) => {
            let r = next.run(req).await;
            drop(slot);
            r
        }
    };
    let outcome = ["x-tally-status", "x-tally-check"]
        .iter()
        .find_map(|h| response.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // Formatted first and written in one call by the log's thread (standard error is
    // unbuffered, and `eprintln!` makes a system call for each piece of a line): a standard
    // error nobody reads must not stop the server answering.
    let line = format!(
        "{method} {path} {} {outcome} {} {:.1}ms\n",
        response.status().as_u16(),
        ip.map_or_else(|| "-".to_string(), |i| i.to_string()),
        start.elapsed().as_secs_f64() * 1000.0
    );
    app.log.line(line);
    response
}

fn bad(code: StatusCode, reason: impl Into<String>) -> Response {
    let mut msg = reason.into();
    msg.push('\n');
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// Runs a handler's database and crypto work off the async runtime; an error or a panic
/// in it is a 500 naming it (never a dropped connection).
pub(crate) async fn blocking(f: impl FnOnce() -> Result<Response> + Send + 'static) -> Response {
    match blocking_value(f).await {
        Ok(r) | Err(r) => r,
    }
}

/// [`blocking`] for work that returns a value: the value, or the answer to send instead
/// (503 when the database is busy, 500 naming any other error or a panic).
pub(crate) async fn blocking_value<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_answer(e)),
        Err(_) => Err(bad(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server error: handler failed",
        )),
    }
}

/// The answer to a handler's error: 503 when the database is busy, else 500 naming it.
pub(crate) fn error_answer(e: anyhow::Error) -> Response {
    if e.chain().any(|c| c.is::<crate::sql::Busy>()) {
        bad(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("server busy, try again later: {e:#}"),
        )
    } else {
        bad(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("server error: {e:#}"),
        )
    }
}

/// A 422: the request was understood and refused; header `x-tally-check` names the check.
pub(crate) fn unprocessable(check: &str, reason: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-tally-check"),
                check.to_string(),
            ),
        ],
        reason,
    )
        .into_response()
}

/// Reads a request body of at most `limit` bytes within `timeout`; otherwise the 4xx
/// answer to send, naming `what` was refused (413 too long or unreadable, 408 too slow).
pub(crate) async fn read_body(
    req: Request,
    limit: usize,
    timeout: std::time::Duration,
    what: &str,
) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(req.into_body(), limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} refused: length limit exceeded or unreadable ({e})"),
        )),
        Err(_) => Err(bad(
            StatusCode::REQUEST_TIMEOUT,
            format!("{what} refused: not received in time"),
        )),
    }
}

async fn server_key(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({
        "public_key": hex::encode(app.key.public().as_bytes()),
        "vsi": hex::encode(app.key.vsi()),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn validate(State(app): State<Arc<App>>, req: Request) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body refused: length limit exceeded ({MAX_BODY} bytes at most)"),
        );
    }
    let body = match read_body(req, MAX_BODY, BODY_TIMEOUT, "request body").await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    if body.len() != ENVELOPE_LEN && body.len() != ENVELOPE_V1_LEN {
        let code = if body.len() > ENVELOPE_LEN {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        return bad(
            code,
            format!(
                "an encrypted VAL_REQ is exactly {ENVELOPE_LEN} bytes (card-signed); this body has {}",
                body.len()
            ),
        );
    }
    let Ok(_permit) = app.validations.acquire().await else {
        return bad(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
    };
    // The request's own cryptography (ECIES open, the card's signature; at the end the
    // VAL_OK's signature) runs here, on the runtime's threads — as many as the cores, so
    // the CPU-bound part of every request takes turns on few threads instead of switching
    // among dozens; only the database step (and any package-sized work) goes to a thread
    // that may block.
    let (req, hash, proof) = match app.key.open_request(&body) {
        Ok(x) => x,
        Err(e) => {
            return bad(StatusCode::BAD_REQUEST, format!("VAL_REQ refused: {e}"));
        }
    };
    // The card's signature is checked once, before any lock (T32): the registered card of
    // the copy never changes, and the counter order is applied under the lock.
    let (registered, read) = match app.cards.get(&req.ui) {
        Some(card) => (Some(card), None),
        None => {
            // A copy this node has not validated lately: its card and, in the same query,
            // its row — which PostgreSQL's optimistic step then judges on (its write checks
            // that the row is still so; SQLite's step reads it in its transaction).
            let (a, ui, icv) = (app.clone(), req.ui, req.viewer_icv);
            let found = blocking_value(move || {
                if let Some(reader) = &a.card_reader {
                    // SQLite: its own connection; what it does not find (a retired UI, a
                    // copy not synced yet) the pool's connection looks up and syncs.
                    let found = {
                        let mut db = reader.lock().unwrap_or_else(|e| e.into_inner());
                        db::row_and_card(&mut db, &ui)?
                    };
                    return match found {
                        Some((_, card)) => Ok((card, None)),
                        None => Ok((
                            db::registered_card(&mut *a.pool.get(POOL_WAIT)?, &ui)?,
                            None,
                        )),
                    };
                }
                let mut db = a.pool.get(POOL_WAIT)?;
                match db::row_and_card(&mut db, &ui)? {
                    Some((row, card)) => {
                        let viewer = a.viewer_registered(&mut db, &icv)?;
                        Ok((card, Some((viewer, row))))
                    }
                    None => Ok((db::registered_card(&mut db, &ui)?, None)),
                }
            })
            .await;
            match found {
                Ok(found) => found,
                Err(answer) => return answer,
            }
        }
    };
    let card = CardCheck::of(&req, &hash, proof.as_ref(), registered.as_ref());
    let req = Arc::new(req);
    let decision = match decided(&app, &req, hash, card, read).await {
        Ok(d) => d,
        Err(answer) => return answer,
    };
    app.answer(&req, registered.as_ref(), &decision)
}

/// A validation decided and stored: its database step, by SQLite's group writer or in a
/// transaction on a pooled PostgreSQL connection, then — if the step needs the ICV and the
/// node does not hold the package's digests — the ICV on a blocking thread and the step
/// again. The decision, or the answer to send instead.
async fn decided(
    app: &Arc<App>,
    req: &Arc<ValReq>,
    hash: [u8; 32],
    card: CardCheck,
    mut read: Option<Read>,
) -> Result<tally_core::validation::Decision, Response> {
    let variant_accepted = app.variants.contains(&req.variant);
    let mut computed: Option<Icv> = None;
    loop {
        let mut iv = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
        let now = app.clock.now().unix_timestamp();
        let inputs = Inputs {
            hash,
            card,
            computed,
            now,
            iv: Iv(iv),
            variant_accepted,
        };
        let (a, r) = (app.clone(), req.clone());
        // SQLite: one transaction per request, its commit shared with the requests beside
        // it. PostgreSQL: optimistic, else one locked transaction.
        let step = match &app.writer {
            Some(w) => w
                .run(move |db: &mut Db| a.step(db, &r, &inputs))
                .await
                .map_err(error_answer)?,
            None => step_postgres(&a, &r, inputs, read.take()).await?,
        };
        match step {
            Step::Done(d) => return Ok(*d),
            Step::NeedIcv(document) => {
                let (a, r, d) = (app.clone(), req.clone(), document.clone());
                match blocking_value(move || a.icv_for(&r, &d)).await? {
                    Some(icv) => computed = Some(icv),
                    None => return Err(no_package(&document)),
                }
            }
        }
    }
}

/// A validation's database step on PostgreSQL: first optimistically — the copy's row as
/// this node last wrote it, or as read with its card (`read`), or else read without a lock
/// or a transaction; judged; and its writes queued for the node's batch writer, which does
/// them, with the other requests' queued meanwhile, in one statement and only if the row is
/// still as read ([`db::store_retire_log`]). The common validation thus costs one read (none
/// when the copy's last validation was on this node; the card's own query when it was not
/// lately) and a share of one statement, where the locked transaction takes four round trips
/// of its own. When another request changed the row meanwhile it is read and judged again.
/// A request that is not the common case (an unknown copy, a refusal, a flag), a copy still
/// contended after a few tries and a failed batch take the locked transaction
/// ([`App::step`]); the rules are the same.
async fn step_postgres(
    app: &Arc<App>,
    req: &Arc<ValReq>,
    inputs: Inputs,
    mut read: Option<Read>,
) -> Result<Step, Response> {
    if let Some(batcher) = &app.batcher {
        for attempt in 0..OPTIMISTIC_TRIES {
            let known = if attempt == 0 {
                app.remembered(req)
                    .map(|found| (true, found))
                    .or(read.take())
            } else {
                None
            };
            let (viewer_registered, (row, how)) = match known {
                Some(known) => known,
                None => {
                    let (a, r) = (app.clone(), req.clone());
                    let read = blocking_value(move || {
                        let mut db = a.pool.get(POOL_WAIT)?;
                        let viewer = a.viewer_registered(&mut db, &r.viewer_icv)?;
                        Ok((viewer, db::lookup(&mut db, &r.ui)?))
                    })
                    .await?;
                    match read {
                        (viewer, Some(found)) => (viewer, found),
                        (_, None) => break,
                    }
                }
            };
            let d = match app.judge(req, &inputs, Some(&row), how, viewer_registered) {
                Step::Done(d) => d,
                need => return Ok(need),
            };
            let (Some(s), None, Status::Ok) = (&d.new_state, d.flag, d.verdict.status) else {
                break;
            };
            let write = db::Write::of(&row, s, &d, Some(row.id), inputs.now, req.psi);
            match batcher.run(write).await {
                Ok(true) => {
                    app.remember(req, row, s);
                    return Ok(Step::Done(d));
                }
                Ok(false) => app.forget(req),
                Err(e) => {
                    // Rare (a deadlock between two nodes' batches, a lost connection): said
                    // once per request that met it, then the locked transaction.
                    app.log.line(format!(
                        "validation: the batched write failed, taking the row lock: {e:#}\n"
                    ));
                    app.forget(req);
                    break;
                }
            }
        }
    }
    let (a, r) = (app.clone(), req.clone());
    blocking_value(move || {
        a.pool
            .get(POOL_WAIT)?
            .transaction(|db| a.step(db, &r, &inputs))
    })
    .await
}

/// A copy's row as read with its card before the database step, and whether the request's
/// viewer build is registered: what PostgreSQL's optimistic step judges on first.
type Read = (bool, db::Found);

/// One request's inputs to `decide` beside the request itself, the same for each of its
/// database steps.
#[derive(Clone, Copy)]
struct Inputs {
    hash: [u8; 32],
    card: CardCheck,
    /// The ICV over the package, once computed (it depends only on the request).
    computed: Option<Icv>,
    now: i64,
    iv: Iv,
    variant_accepted: bool,
}

/// What one pass over the copy's locked row found.
enum Step {
    /// Decided and stored.
    Done(Box<tally_core::validation::Decision>),
    /// The request passes every check but the ICV: compute it (no lock held) and decide
    /// again.
    NeedIcv(String),
}

impl App {
    /// `decide` on the copy's row as read (`None`: no copy has the UI). Until the ICV is
    /// computed, decide as if it matched: any other refusal comes first in `decide`, so a
    /// replayed, revoked, cloned or unknown copy is answered without touching the package.
    /// A request that would pass needs its ICV: V8 over chunk digests this node holds in
    /// memory (≤ 32 KiB) costs microseconds whatever the package's size, so it is computed
    /// here, in the same step; anything else is asked for ([`Step::NeedIcv`]) and done
    /// outside any transaction. [`Step::Done`] here is decided, not yet stored.
    fn judge(
        &self,
        req: &ValReq,
        inputs: &Inputs,
        row: Option<&db::CopyRow>,
        how: Lookup,
        viewer_registered: bool,
    ) -> Step {
        let judge = |expected: Icv| {
            decide(
                &self.key,
                row.map(|r| &r.state),
                Presented {
                    req,
                    request_hash: inputs.hash,
                    lookup: how,
                    expected_icv: Some(expected),
                    viewer_registered,
                    variant_accepted: inputs.variant_accepted,
                    card: inputs.card,
                },
                inputs.now,
                self.terms,
                inputs.iv,
            )
        };
        let mut d = judge(inputs.computed.unwrap_or(req.icv));
        if let Some(r) = row
            && d.verdict.status == Status::Ok
            && inputs.computed.is_none()
        {
            match self.cached_digests(&r.document) {
                Some(digests) if req.variant == IcvVariant::V8 => {
                    d = judge(icv::compute_v8(&digests, &req.ui, &req.iv));
                }
                _ => return Step::NeedIcv(r.document.clone()),
            }
        }
        Step::Done(Box::new(d))
    }

    /// The database step of a validation, in one transaction: the copy's row locked,
    /// judged ([`App::judge`]), the new state stored, the request logged.
    fn step(&self, db: &mut Db, req: &ValReq, inputs: &Inputs) -> Result<Step> {
        let viewer_registered = self.viewer_registered(db, &req.viewer_icv)?;
        let mut found = db::lookup_for_update(db, &req.ui)?;
        if found.is_none() && db::sync_copy(db, &req.ui)? {
            found = db::lookup_for_update(db, &req.ui)?;
        }
        let (row, how) = match &found {
            Some((r, h)) => (Some(r), *h),
            None => (None, Lookup::Unknown),
        };
        let d = match self.judge(req, inputs, row, how, viewer_registered) {
            Step::Done(d) => d,
            need => return Ok(need),
        };
        let now = inputs.now;
        // A request the licence's card did not sign is not the copy's: it is logged
        // without it, so forged requests do not inflate its history (T32).
        let by_the_copy = d.verdict.status != Status::NotCardSigned;
        let logged_copy = row.filter(|_| by_the_copy).map(|r| r.id);
        let (status, vssi) = (d.verdict.status.name(), d.verdict.vssi);
        match (row, &d.new_state) {
            // The common validation on PostgreSQL: its writes in one round trip.
            (Some(r), Some(s)) if db.is_postgres() && d.flag.is_none() => {
                let write = db::Write::of(r, s, &d, logged_copy, now, req.psi);
                let stored = db::store_retire_log(db, &[write])?;
                anyhow::ensure!(
                    stored == [true],
                    "registry: copy {} changed under its row lock",
                    r.id
                );
            }
            _ => {
                if let Some(r) = row {
                    if let Some(s) = &d.new_state {
                        db::store(db, r.id, s)?;
                    }
                    db::retire(db, r.id, &d.retired)?;
                    if let Some(f) = d.flag {
                        db::flag(db, r.id, f)?;
                    }
                }
                db::log(db, logged_copy, now, status, req.psi, vssi)?;
            }
        }
        Ok(Step::Done(d))
    }

    /// The copy's row as this node last wrote it, if the request presents the UI that
    /// write issued and its viewer build is known registered.
    fn remembered(&self, req: &ValReq) -> Option<(db::CopyRow, Lookup)> {
        if !self.viewer_known(&req.viewer_icv) {
            return None;
        }
        let row = self.rows.get(&req.ui)?;
        let how = if row.state.ui == req.ui {
            Lookup::Current
        } else if row.state.pending.as_ref().is_some_and(|p| p.0 == req.ui) {
            Lookup::Pending
        } else {
            return None;
        };
        Some((row, how))
    }

    /// Remembers a copy's row as just written (`seen` with its new `state`) under the UI
    /// of its next request, and forgets it under the one just presented.
    fn remember(&self, req: &ValReq, seen: db::CopyRow, state: &CopyState) {
        let Some(next) = state.pending.as_ref().map(|p| p.0) else {
            self.forget(req);
            return;
        };
        self.rows.advance(
            &req.ui,
            next,
            db::CopyRow {
                state: state.clone(),
                ..seen
            },
        );
    }

    /// Forgets the row remembered under the UI a request presented.
    fn forget(&self, req: &ValReq) {
        self.rows.forget(&req.ui);
    }

    /// The ICV a request should carry, computed outside any transaction and without a
    /// connection held while a package is read: from the chunk digests (V8) or the package
    /// itself. `None` when this node finds neither.
    fn icv_for(&self, req: &ValReq, document: &str) -> Result<Option<Icv>> {
        if req.variant == IcvVariant::V8 {
            let db = self.pool.get(POOL_WAIT)?;
            return Ok(self
                .chunk_digests(db, document)?
                .map(|d| icv::compute_v8(&d, &req.ui, &req.iv)));
        }
        let mut db = self.pool.get(POOL_WAIT)?;
        let located = self.locate(&mut db, document)?;
        drop(db);
        let Some(p) = self.package(document, located)? else {
            return Ok(None);
        };
        Ok(Some(match p {
            Found::Bytes(p) => icv::compute(req.variant, &p, &req.ui, &req.iv),
            Found::Large(path, len) => {
                let mut f = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                icv::compute_from_reader(req.variant, &mut f, len, &req.ui, &req.iv)
                    .with_context(|| format!("reading {}", path.display()))?
            }
        }))
    }

    /// The signed answer to a decided validation; the copy's card is remembered under the
    /// UI of its next request.
    fn answer(
        &self,
        req: &ValReq,
        registered: Option<&CardIdentity>,
        decision: &tally_core::validation::Decision,
    ) -> Response {
        if let (Some(card), Some(next)) = (
            registered,
            decision.new_state.as_ref().and_then(|s| s.pending.as_ref()),
        ) {
            // Under the next request's UI only (keeping every UI a copy ever had filled the
            // map with an entry per validation, emptied whole every 100,000 validations,
            // each time sending every active copy's next request to the database at once).
            self.cards.advance(&req.ui, next.0, card.clone());
        }
        let signed = self.key.sign(&decision.verdict);
        let code = if decision.verdict.status == Status::Ok {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        (
            code,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-tally-status"),
                    decision.verdict.status.name().to_string(),
                ),
            ],
            signed,
        )
            .into_response()
    }

    /// Whether the viewer build `icv` is registered: from memory when this node found it
    /// so before, else from the database (and remembered when it is).
    fn viewer_registered(&self, db: &mut Db, icv: &Icv) -> Result<bool> {
        if self.viewer_known(icv) {
            return Ok(true);
        }
        let registered = db::viewer_registered(db, icv)?;
        if registered {
            self.viewers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*icv, ());
        }
        Ok(registered)
    }

    /// Whether this node found the viewer build `icv` registered before (and still
    /// remembers it): a build in use is kept, as the other caches keep theirs.
    fn viewer_known(&self, icv: &Icv) -> bool {
        self.viewers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(icv)
            .is_some()
    }

    /// The chunk digests of a document's package (ICV V8): from memory, from the registry
    /// (`pack` stores them), or — for a package packed before they were stored — computed
    /// once from the package file and stored for every node. `db` is given back to the
    /// pool before any file is read.
    fn chunk_digests(
        &self,
        mut db: crate::sql::Pooled<'_>,
        document: &str,
    ) -> Result<Option<Arc<ChunkDigests>>> {
        if let Some(d) = self.cached_digests(document) {
            return Ok(Some(d));
        }
        let stored = db
            .query_opt(
                "SELECT chunk_digests FROM packages WHERE document_id = $1",
                crate::params![document],
            )?
            .map(|r| r.opt_blob(0))
            .transpose()?
            .flatten();
        let digests = match stored {
            Some(bytes) => ChunkDigests::from_bytes(&bytes).with_context(|| {
                format!("registry: the chunk digests of document {document} are damaged")
            })?,
            None => {
                let located = self.locate(&mut db, document)?;
                drop(db);
                let d = match self.package(document, located)? {
                    None => return Ok(None),
                    Some(Found::Bytes(p)) => ChunkDigests::of(&p),
                    Some(Found::Large(path, len)) => std::fs::File::open(&path)
                        .and_then(|f| ChunkDigests::read(std::io::BufReader::new(f), len))
                        .with_context(|| format!("reading {}", path.display()))?,
                };
                self.pool.get(POOL_WAIT)?.execute(
                    "UPDATE packages SET chunk_digests = $2 WHERE document_id = $1",
                    crate::params![document, d.to_bytes()],
                )?;
                d
            }
        };
        let digests = Arc::new(digests);
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(document.to_string(), digests.clone());
        Ok(Some(digests))
    }

    /// The chunk digests of a document if this node holds them in memory (no I/O).
    fn cached_digests(&self, document: &str) -> Option<Arc<ChunkDigests>> {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(document)
            .cloned()
    }

    /// The registry's SHA-256 of a document's package and where `pack` wrote it.
    fn locate(&self, db: &mut Db, document: &str) -> Result<Option<(String, Option<PathBuf>)>> {
        let row = db.query_opt(
            "SELECT sha256, location FROM packages WHERE document_id = $1",
            crate::params![document],
        )?;
        row.map(|r| Ok((r.text(0)?, r.opt_text(1)?.map(PathBuf::from))))
            .transpose()
    }

    /// A registered package: its bytes (from the cache, or read and cached), or — when it
    /// is larger than the cache — the file to hash from disk, never held whole in memory.
    /// Found where `pack` wrote it or in the package folders; always checked against the
    /// registry's SHA-256 (streamed for a large file).
    fn package(
        &self,
        document: &str,
        located: Option<(String, Option<PathBuf>)>,
    ) -> Result<Option<Found>> {
        let limit = {
            let mut cache = self.packages.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = cache.get(document) {
                return Ok(Some(Found::Bytes(p)));
            }
            cache.limit
        };
        let Some((want, location)) = located else {
            return Ok(None);
        };
        let mut candidates: Vec<PathBuf> = location.into_iter().collect();
        for dir in &self.package_dirs {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for e in entries {
                        candidates.push(e?.path());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            }
        }
        for path in candidates {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_PACKAGE {
                continue;
            }
            if meta.len() > limit {
                let f = std::fs::File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let mut h = sha2::Sha256::new();
                std::io::copy(&mut std::io::BufReader::new(f), &mut h)
                    .with_context(|| format!("reading {}", path.display()))?;
                if hex::encode(h.finalize()) == want {
                    return Ok(Some(Found::Large(path, meta.len())));
                }
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if hex::encode(tally_core::crypto::sha256(&bytes)) == want {
                let bytes = Arc::new(bytes);
                self.packages
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(document, bytes.clone());
                return Ok(Some(Found::Bytes(bytes)));
            }
        }
        Ok(None)
    }
}

/// Where a package's bytes are.
enum Found {
    /// In memory (cached).
    Bytes(Arc<Vec<u8>>),
    /// Too large for the cache: this file, of this length, hashed from disk.
    Large(PathBuf, u64),
}

/// The 503 of a server that cannot find a copy's package. Its own configuration is at
/// fault, not the copy: no verdict (a signed ICV mismatch would stop an honest reader's
/// copy), nothing logged against it. The viewer treats this as a server it can't use.
fn no_package(document: &str) -> Response {
    bad(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "this server cannot find the package of document {document} (not where `pack` wrote it, nor in the folders of tally-pack serve --packages DIR); the copy was not judged"
        ),
    )
}

/// Binds `listen`, prints the address, serves until Ctrl-C or SIGTERM.
pub fn run(config: Config, listen: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Opened outside the runtime: connecting blocks (PostgreSQL's client runs its own).
    let (router, app) = build(config)?;
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
    });
    // The runtime first (its tasks hold clones of the state), then the last clone.
    drop(rt);
    drop(app);
    result
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
