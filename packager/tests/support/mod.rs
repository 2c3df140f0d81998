//! The set-up the packager's server tests share (`server.rs`, `trail_server.rs`,
//! `challenge_server.rs`, `returns.rs`): a vendor in a temporary folder on the SQLite
//! registry or a fresh PostgreSQL database (`pg.rs`), `tally-pack` commands run against
//! it, emulated cards registered as customers, the sample PDF packed, keyfiles issued, a
//! `tally-pack serve` child on loopback (killed when dropped) and the HTTP helpers that
//! talk to it. Each test file adds what only it needs in its own `impl Env` block.
//!
//! Each test file is its own crate and uses only part of this: include it with
//! `#[allow(dead_code)]`.

pub mod pg;

pub use pg::{Backend, PgDb};

use assert_cmd::Command;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardExport, CardIdentity};
use tally_core::crypto::PublicKey;

/// Each test runs twice: on the SQLite registry and on a fresh PostgreSQL database.
/// `on_both_databases!(a, b)` makes `sqlite::a`, `postgres::a`, … calling `a(Backend)`
/// of the module it is used in.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::support::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::support::Backend::Postgres) })*
        }
    };
}
pub(crate) use on_both_databases;

/// The vendor key's password in every test.
pub const PASSWORD: &str = "correct horse battery staple";

/// A `tally-pack serve` child on 127.0.0.1; killed (and reaped) when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, as its first line said.
    pub url: String,
    /// The same, as an address for raw TCP.
    pub addr: SocketAddr,
}

impl Server {
    /// The node's standard error, when it was started with a pipe for it (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A vendor in a temporary folder (`vendor/`, `packages/`), on SQLite or PostgreSQL.
pub struct Env {
    _tmp: tempfile::TempDir,
    /// The temporary folder.
    pub dir: PathBuf,
    /// The PostgreSQL database, when the test runs on one (dropped after the servers).
    pub pg: Option<PgDb>,
}

/// An emulated card made by [`Env::emulated_card`].
pub struct NewCard {
    /// Its state file, `<file>.state`.
    pub path: PathBuf,
    /// Its identity, read from the card.
    pub identity: CardIdentity,
    /// Its export (`<file>.card`), what `customer add --card` reads.
    pub export: PathBuf,
}

impl Env {
    /// `tally-pack vendor init` in a fresh folder with an empty `packages/`, on `db`;
    /// `None` when `db` is PostgreSQL and no server is configured (see `pg.rs`).
    pub fn new(db: Backend, test: &str) -> Option<Self> {
        let pg = match db {
            Backend::Sqlite => None,
            Backend::Postgres => Some(pg::fresh(test)?),
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let env = Self { _tmp: tmp, dir, pg };
        env.cmd(&["vendor", "init", "--name", "Test Press"])
            .assert()
            .success();
        std::fs::create_dir_all(env.path("packages")).unwrap();
        Some(env)
    }

    /// `name` in the temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The environment every `tally-pack` of this test gets: vendor, password, database.
    pub fn configure(&self, c: &mut std::process::Command) {
        c.env("TALLY_VENDOR", self.path("vendor"))
            .env("TALLY_VENDOR_PASSWORD", PASSWORD);
        match &self.pg {
            Some(pg) => c.env("TALLY_DATABASE", &pg.url),
            None => c.env_remove("TALLY_DATABASE"),
        };
    }

    /// `tally-pack ARGS` for this vendor.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tally-pack"));
        self.configure(&mut c);
        c.args(args);
        Command::from_std(c)
    }

    /// `tally-pack ARGS`, which must succeed, its stdout read as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A fresh emulated card in `<file>.state` whose trail counter starts at `origin`,
    /// and its export `<file>.card` (identity and agreement key) labelled `label`.
    pub fn emulated_card(&self, file: &str, origin: u64, label: Option<&str>) -> NewCard {
        let state = CardState::generate(&mut rand_core::OsRng, origin, "test card");
        let path = self.path(&format!("{file}.state"));
        EmulatedCard::create(&path, &state).unwrap();
        let identity = Card::new(Box::new(EmulatedCard::open(&path).unwrap()))
            .identity()
            .unwrap();
        let export = self.path(&format!("{file}.card"));
        std::fs::write(
            &export,
            CardExport {
                identity: identity.clone(),
                agreement_key: Some(state.agreement_key()),
                attestation: None,
                label: label.map(str::to_string),
            }
            .to_text(),
        )
        .unwrap();
        NewCard {
            path,
            identity,
            export,
        }
    }

    /// `tally-pack customer add --allow-emulated-card --name NAME --card CARD`.
    pub fn add_customer(&self, name: &str, card: &Path) {
        self.cmd(&["customer", "add", "--allow-emulated-card", "--name", name])
            .arg("--card")
            .arg(card)
            .assert()
            .success();
    }

    /// [`Env::emulated_card`] registered as customer `name`.
    pub fn customer_card(
        &self,
        name: &str,
        file: &str,
        origin: u64,
        label: Option<&str>,
    ) -> NewCard {
        let card = self.emulated_card(file, origin, label);
        self.add_customer(name, &card.export);
        card
    }

    /// `tally-pack pack samples/sample.pdf -o OUT` (add flags to the command).
    pub fn pack_sample(&self, out: &Path) -> Command {
        let mut c = self.cmd(&["pack"]);
        c.arg(sample_pdf()).arg("-o").arg(out);
        c
    }

    /// `tally-pack issue` for `customer` (an emulated card) of `package` to `out` in the
    /// temporary folder, with `extra` flags.
    pub fn issue_cmd(&self, customer: &str, package: &Path, out: &str, extra: &[&str]) -> Command {
        let mut c = self.cmd(&["issue", "--customer", customer, "--allow-emulated-card"]);
        c.arg("--package")
            .arg(package)
            .arg("-o")
            .arg(self.path(out))
            .args(extra);
        c
    }

    /// A `serve` node on port 0 for `packages/`, with `extra` arguments; its stderr is
    /// dropped.
    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["--packages", self.path("packages").to_str().unwrap()]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.serve_logged(&args, Stdio::null())
    }

    /// A `serve` node with exactly these arguments; its stderr (one line per request) goes
    /// to `log`. Waits for its first line, `listening on http://ADDR`.
    pub fn serve_logged(&self, extra: &[&str], log: Stdio) -> Server {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tally-pack"));
        self.configure(&mut c);
        c.args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        let addr = url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"));
        Server { child, url, addr }
    }
}

/// `samples/sample.pdf`.
pub fn sample_pdf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf")
}

/// An HTTP client that hands back 4xx and 5xx replies instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The server's validation key, from `GET /v1/server-key`.
pub fn server_key(url: &str) -> PublicKey {
    let mut r = agent().get(format!("{url}/v1/server-key")).call().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    PublicKey::from_sec1(&hex::decode(v["public_key"].as_str().unwrap()).unwrap()).unwrap()
}

/// POSTs `body` to `path`; returns the HTTP status, the `x-tally-check` header and the
/// body.
pub fn post_bytes(url: &str, path: &str, body: &[u8]) -> (u16, Option<String>, Vec<u8>) {
    let mut r = agent()
        .post(format!("{url}{path}"))
        .header("content-type", "application/octet-stream")
        .send(body)
        .unwrap();
    let check = r
        .headers()
        .get("x-tally-check")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (r.status().as_u16(), check, bytes)
}

/// [`post_bytes`] with the body as (lossy) text.
pub fn post_to(url: &str, path: &str, body: &[u8]) -> (u16, Option<String>, String) {
    let (status, check, bytes) = post_bytes(url, path, body);
    (status, check, String::from_utf8_lossy(&bytes).into_owned())
}
