//! The validation server of WO 98/33296 (Figures 1–4): HTTP on loopback, SQLite (the
//! registry, WAL, `synchronous = FULL`) as its database. Every rule is
//! `tally_core::validation::decide`; this module only decrypts, looks up, stores, signs.
//!
//! * `POST /v1/validate` — body: an encrypted VAL_REQ (exactly `ENVELOPE_LEN` bytes).
//!   200 with a signed VAL_OK, or 403 with a signed refusal (header `x-tally-status`
//!   names it); 400/404/405/413/415 with a one-line reason for anything malformed (T25).
//! * `GET /v1/server-key` — the server's public key and identifier, as JSON.
//! * `POST /v1/trail/validate` — a reader's encrypted trail: validated and vouched for with a
//!   signed validator record, kept (encrypted) as its backup ([0094], [0062]; see [`trail`]).
//! * `POST /v1/trail/restore` — a card-signed request for that backup: answered with the
//!   backup and a signed recovery record charging the lost records ([0062]; see [`restore`]).

pub mod db;
pub mod restore;
pub mod trail;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tally_core::icv::{self, IcvVariant, Iv};
use tally_core::policy::Clock;
use tally_core::validation::{ENVELOPE_LEN, Lookup, Presented, ServerSecret, Status, decide};

/// Largest request body accepted (the real one is `ENVELOPE_LEN` bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest package file the server loads to compute ICVs.
const MAX_PACKAGE: u64 = 1 << 30;
/// How long a client may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How the server runs.
pub struct Config {
    /// The server key.
    pub key: ServerSecret,
    /// The registry database.
    pub db: PathBuf,
    /// Folders holding the packages (matched to the registry by SHA-256).
    pub package_dirs: Vec<PathBuf>,
    /// Ticket lifetime in seconds.
    pub lifetime: i64,
    /// ICV variants accepted.
    pub variants: Vec<IcvVariant>,
    /// The server's clock.
    pub clock: Arc<dyn Clock>,
    /// How a restored trail's lost records are charged (the publisher's policy).
    pub lost_records: tally_core::trail::body::LostCharge,
}

struct App {
    key: ServerSecret,
    conn: Mutex<Connection>,
    package_dirs: Vec<PathBuf>,
    packages: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    lifetime: i64,
    variants: Vec<IcvVariant>,
    clock: Arc<dyn Clock>,
    lost_records: tally_core::trail::body::LostCharge,
}

/// Opens the database and builds the router.
pub fn router(config: Config) -> Result<Router> {
    let registry = crate::registry::Registry::open_file(&config.db)?;
    drop(registry);
    let conn =
        Connection::open(&config.db).with_context(|| format!("opening {}", config.db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    db::sync_copies(&conn)?;
    let app = Arc::new(App {
        key: config.key,
        conn: Mutex::new(conn),
        package_dirs: config.package_dirs,
        packages: Mutex::new(HashMap::new()),
        lifetime: config.lifetime,
        variants: config.variants,
        clock: config.clock,
        lost_records: config.lost_records,
    });
    Ok(Router::new()
        .route("/v1/validate", post(validate))
        .route("/v1/server-key", get(server_key))
        .route("/v1/trail/validate", post(trail::trail_validate))
        .route("/v1/trail/restore", post(restore::trail_restore))
        .fallback(|| async {
            bad(
                StatusCode::NOT_FOUND,
                "no such endpoint (try POST /v1/validate or GET /v1/server-key)",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app))
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
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => bad(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("server error: {e:#}"),
        ),
        Err(_) => bad(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server error: handler failed",
        ),
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
    if body.len() != ENVELOPE_LEN {
        let code = if body.len() > ENVELOPE_LEN {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        return bad(
            code,
            format!(
                "an encrypted VAL_REQ is exactly {ENVELOPE_LEN} bytes; this body has {}",
                body.len()
            ),
        );
    }
    blocking(move || app.handle(&body)).await
}

impl App {
    fn handle(&self, body: &[u8]) -> Result<Response> {
        let (req, hash) = match self.key.open_request(body) {
            Ok(x) => x,
            Err(e) => {
                return Ok(bad(
                    StatusCode::BAD_REQUEST,
                    format!("VAL_REQ refused: {e}"),
                ));
            }
        };
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = db::lookup(&conn, &req.ui)?;
        if found.is_none() && db::sync_copies(&conn)? > 0 {
            found = db::lookup(&conn, &req.ui)?;
        }
        let (row, how) = match &found {
            Some((r, h)) => (Some(r), *h),
            None => (None, Lookup::Unknown),
        };
        let expected_icv = match row {
            Some(r) if how != Lookup::Superseded => {
                let Some(p) = self.package(&conn, &r.document)? else {
                    // The server's own configuration is at fault, not the copy: no verdict
                    // (a signed ICV mismatch would stop an honest reader's copy), nothing
                    // logged against it. The viewer treats this as a server it can't use.
                    return Ok(bad(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "this server cannot find the package of document {} in its package folders (tally-pack serve --packages DIR); the copy was not judged",
                            r.document
                        ),
                    ));
                };
                Some(icv::compute(req.variant, &p, &req.ui, &req.iv))
            }
            _ => None,
        };
        let viewer_registered = db::viewer_registered(&conn, &req.viewer_icv)?;
        let mut iv = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
        let now = self.clock.now().unix_timestamp();
        let d = decide(
            &self.key,
            row.map(|r| &r.state),
            Presented {
                req: &req,
                request_hash: hash,
                lookup: how,
                expected_icv,
                viewer_registered,
                variant_accepted: self.variants.contains(&req.variant),
            },
            now,
            self.lifetime,
            Iv(iv),
        );
        let tx = conn.transaction()?;
        if let Some(r) = row {
            if let Some(s) = &d.new_state {
                db::store(&tx, r.id, s)?;
            }
            db::retire(&tx, r.id, &d.retired)?;
            if let Some(f) = d.flag {
                db::flag(&tx, r.id, f)?;
            }
        }
        db::log(
            &tx,
            row.map(|r| r.id),
            now,
            d.verdict.status.name(),
            req.psi,
            d.verdict.vssi,
        )?;
        tx.commit()?;
        drop(conn);
        let signed = self.key.sign(&d.verdict);
        let code = if d.verdict.status == Status::Ok {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        Ok((
            code,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-tally-status"),
                    d.verdict.status.name().to_string(),
                ),
            ],
            signed,
        )
            .into_response())
    }

    /// The bytes of a registered package, found in the package folders by SHA-256.
    fn package(&self, conn: &Connection, document: &str) -> Result<Option<Arc<Vec<u8>>>> {
        let mut cache = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(document) {
            return Ok(Some(p.clone()));
        }
        let want: Option<String> = rusqlite::OptionalExtension::optional(conn.query_row(
            "SELECT sha256 FROM packages WHERE document_id = ?1",
            [document],
            |r| r.get(0),
        ))?;
        let Some(want) = want else {
            return Ok(None);
        };
        for dir in &self.package_dirs {
            if let Some(bytes) = find_package(dir, &want)? {
                let bytes = Arc::new(bytes);
                cache.insert(document.to_string(), bytes.clone());
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
}

fn find_package(dir: &Path, sha256_hex: &str) -> Result<Option<Vec<u8>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > MAX_PACKAGE {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if hex::encode(tally_core::crypto::sha256(&bytes)) == sha256_hex {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Binds `listen`, prints the address, serves until Ctrl-C or SIGTERM.
pub fn run(config: Config, listen: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let app = router(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving")
    })
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
