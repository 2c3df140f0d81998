//! The validation server through real HTTP on loopback with a real SQLite file: a
//! `tally-pack serve` child process on 127.0.0.1 port 0, a copy driven by
//! `tally_core::validation::ClientState`, raw HTTP/1.1 over `TcpStream` so malformed
//! requests can be sent as they are. T15, T17, T18, T19, T23, T25, a modified viewer,
//! an unknown copy, and a server restart in the middle of a session.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tally_core::card::Card;
use tally_core::card::emulated::EmulatedCard;
use tally_core::crypto::PublicKey;
use tally_core::icv::{Icv, IcvVariant, executable_icv};
use tally_core::keyfile::Keyfile;
use tally_core::policy::{SystemClock, TestClock};
use tally_core::trail::LicenceId;
use tally_core::validation::{
    CardProgress, ClientState, RequestSigner, Status, TrailSigner, ValReq, ValidationError,
    Verdict, request_hash, request_record_body,
};
use tally_core::vendor::VendorPublic;

#[allow(
    dead_code,
    reason = "each test file is its own crate and uses only part of the shared set-up"
)]
mod support;
use support::{Backend, Env, on_both_databases};

const VIEWER_BUILD: &[u8] = b"\x7fELF pretend viewer build 1.0 with metering";

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A copy as the viewer holds it: its keyfile's licence, the package, the server key, and
/// the reader's card (its emulated state file) with its trail, which sign every request.
struct Copy {
    state: ClientState,
    package: Vec<u8>,
    server_key: PublicKey,
    days: Option<u16>,
    card: PathBuf,
    trail: PathBuf,
}

/// A vendor with two customers, a package and a registered viewer, on `db`; `None` when
/// `db` is PostgreSQL and no server is configured (see `support/pg.rs`).
fn set_up(db: Backend, test: &str) -> Option<Env> {
    let env = Env::new(db, test)?;
    env.customer_card("Ada", "ada", 100, Some("test card"));
    env.customer_card("Bob", "bob", 100, Some("test card"));
    env.pack_sample(&env.path("packages/doc.tly"))
        .assert()
        .success();
    let build = env.path("tally-view-1.0");
    std::fs::write(&build, VIEWER_BUILD).unwrap();
    env.cmd(&["viewer", "register", build.to_str().unwrap()])
        .assert()
        .success();
    Some(env)
}

impl Env {
    /// Issues a keyfile for the package at `package` (online every 3 days).
    fn issue_for(&self, customer: &str, out: &str, package: &Path) -> Copy {
        self.issue_package(customer, out, "3", package)
    }

    /// Issues a keyfile with a server and returns the copy as a viewer would hold it.
    fn issue(&self, customer: &str, out: &str, days: &str) -> Copy {
        self.issue_package(customer, out, days, &self.path("packages/doc.tly"))
    }

    fn issue_package(&self, customer: &str, out: &str, days: &str, package: &Path) -> Copy {
        self.issue_cmd(
            customer,
            package,
            out,
            &[
                "--keep-both",
                "--server",
                "http://127.0.0.1:1/",
                "--require-online-every",
                days,
            ],
        )
        .assert()
        .success();
        let out = self.path(out);
        let vendor =
            VendorPublic::from_export(&std::fs::read(self.path("vendor/vendor.pub")).unwrap())
                .unwrap();
        let kf = Keyfile::open(&std::fs::read(&out).unwrap(), &[vendor]).unwrap();
        let server = kf.server().unwrap();
        let file = customer.to_lowercase();
        Copy {
            state: ClientState::new(kf.licence()),
            package: std::fs::read(package).unwrap(),
            server_key: server.public_key.clone(),
            days: server.require_online_every_days,
            card: self.path(&format!("{file}.state")),
            trail: self.path(&format!("{file}.trail")),
        }
    }

    fn copies(&self) -> serde_json::Value {
        self.json(&["copies", "--json"])
    }
}

/// One HTTP/1.1 exchange; `raw` is sent as is.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413) before reading a large body: ignore a failed write.
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers: head,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

fn viewer_icv(bytes: &[u8]) -> Icv {
    executable_icv(bytes).unwrap()
}

impl Copy {
    fn request(&mut self) -> Vec<u8> {
        self.request_with(IcvVariant::V7, VIEWER_BUILD)
    }

    fn request_with(&mut self, variant: IcvVariant, viewer: &[u8]) -> Vec<u8> {
        let mut card = self.signer();
        self.state
            .prepare(
                variant,
                &self.package,
                &self.server_key,
                viewer_icv(viewer),
                &SystemClock,
                &mut card,
                &mut rand_core::OsRng,
            )
            .unwrap()
    }

    /// The reader's card and trail, as the viewer's meter holds them.
    fn signer(&self) -> TrailSigner {
        let card = Card::new(Box::new(EmulatedCard::open(&self.card).unwrap()));
        TrailSigner::open(card, &self.trail).unwrap()
    }

    /// What the card's trail says since the last ticket (T34).
    fn progress(&self) -> CardProgress {
        CardProgress::of(self.signer().trail().records(), self.licence())
    }

    /// `req` signed by this copy's card and sealed, as the viewer sends it.
    fn seal_signed(&self, req: &ValReq) -> Vec<u8> {
        let hash = request_hash(&req.encode());
        let proof = self
            .signer()
            .sign_request(&request_record_body(&hash, req.dt))
            .unwrap();
        req.seal(&proof, &self.server_key, &mut rand_core::OsRng)
    }

    /// Another installation of this copy (its state copied), with the same card.
    fn cloned(&self) -> Copy {
        Copy {
            state: self.state.clone(),
            package: self.package.clone(),
            server_key: self.server_key.clone(),
            days: self.days,
            card: self.card.clone(),
            trail: self.trail.clone(),
        }
    }

    /// One validation through the server; the reply's HTTP status must match the verdict.
    fn validate(&mut self, addr: SocketAddr) -> Result<Verdict, ValidationError> {
        let env = self.request();
        let r = post(addr, "/v1/validate", &env);
        check_http(&r);
        self.state.accept(&r.body, &self.server_key)
    }

    fn licence(&self) -> LicenceId {
        self.state.licence()
    }
}

fn check_http(r: &Reply) {
    assert!(
        r.status == 200 || r.status == 403,
        "{} {}",
        r.status,
        r.text()
    );
    let name = r
        .headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-tally-status: ")
                .map(str::to_string)
        })
        .unwrap();
    assert_eq!(r.status == 200, name == "ok", "{name}");
}

fn copy_json<'a>(all: &'a serde_json::Value, licence: &LicenceId) -> &'a serde_json::Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["licence"] == licence.to_hex())
        .unwrap()
}

fn validations_survive_a_server_restart_and_are_logged(db: Backend) {
    let Some(env) = set_up(db, "validations_survive_a_server_restart_and_are_logged") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    // The key the server publishes is the one in the keyfile.
    let r = exchange(
        server.addr,
        b"GET /v1/server-key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["public_key"].as_str().unwrap(),
        hex::encode(copy.server_key.as_bytes())
    );
    let ui0 = copy.state.ui();
    for k in 1..=3 {
        let t = copy.validate(server.addr).unwrap();
        assert_eq!((t.status, t.psi, t.vssi), (Status::Ok, k, k));
    }
    assert_ne!(copy.state.ui(), ui0, "the UI rolled forward");
    // A request sent, and the server stops before the copy sees the answer.
    let pending = copy.request();
    drop(server);
    let server = env.serve(&[]);
    let r = post(server.addr, "/v1/validate", &pending);
    let t = copy.state.accept(&r.body, &copy.server_key).unwrap();
    assert_eq!((t.psi, t.vssi), (4, 4));
    // And a session across another restart, with its answer lost this time: the copy
    // retries from the same UI and is still served.
    let lost = copy.request();
    let _ = post(server.addr, "/v1/validate", &lost);
    drop(server);
    let server = env.serve(&[]);
    let t = copy.validate(server.addr).unwrap();
    assert_eq!((t.psi, t.vssi), (6, 6));
    copy.validate(server.addr).unwrap();
    let status = copy
        .state
        .check_offline(&copy.server_key, copy.days, &SystemClock, &copy.progress())
        .unwrap();
    assert!(status.valid_until > status.last_validated);
    let all = env.copies();
    let c = copy_json(&all, &copy.licence());
    assert_eq!(c["customer"], "Ada");
    assert_eq!(c["status"], "active");
    assert_eq!(c["validations"], 7);
    assert_eq!(c["validations_ok"], 7);
    assert!(c["last_validation"].as_str().unwrap().ends_with('Z'));
    assert!(c["validations_per_day"].as_f64().unwrap() > 0.0);
}

fn t15_a_cloned_copy_is_flagged_and_revoked(db: Backend) {
    let Some(env) = set_up(db, "t15_a_cloned_copy_is_flagged_and_revoked") else {
        return;
    };
    let mut a = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    a.validate(server.addr).unwrap();
    // The installed copy (its state) is copied to another machine.
    let mut b = a.cloned();
    a.validate(server.addr).unwrap();
    a.validate(server.addr).unwrap();
    assert_eq!(
        b.validate(server.addr),
        Err(ValidationError::Refused(Status::Clone))
    );
    let all = env.copies();
    let c = copy_json(&all, &a.licence());
    assert_eq!(c["status"], "revoked");
    assert_eq!(c["flags"], serde_json::json!(["clone"]));
    // Both copies are now refused.
    assert_eq!(
        a.validate(server.addr),
        Err(ValidationError::Refused(Status::Revoked))
    );
    assert_eq!(
        a.state
            .check_offline(&a.server_key, a.days, &SystemClock, &a.progress()),
        Err(ValidationError::Refused(Status::Revoked))
    );
}

fn t15_clones_that_alternate_are_caught_too(db: Backend) {
    let Some(env) = set_up(db, "t15_clones_that_alternate_are_caught_too") else {
        return;
    };
    let mut a = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    a.validate(server.addr).unwrap();
    let mut b = a.cloned();
    a.validate(server.addr).unwrap();
    // b repeats a's sequence number: a replay.
    assert_eq!(
        b.validate(server.addr),
        Err(ValidationError::Refused(Status::Replay))
    );
    // b tries again from the UI the server last confirmed: served as a retry after a
    // lost answer, and the UI a was given is retired ...
    b.validate(server.addr).unwrap();
    // ... so when a comes back with it, the copy is a clone.
    assert_eq!(
        a.validate(server.addr),
        Err(ValidationError::Refused(Status::Clone))
    );
    assert_eq!(
        b.validate(server.addr),
        Err(ValidationError::Refused(Status::Revoked))
    );
    let all = env.copies();
    assert_eq!(copy_json(&all, &a.licence())["status"], "revoked");
}

fn t17_every_replay_is_rejected(db: Backend) {
    let Some(env) = set_up(db, "t17_every_replay_is_rejected") else {
        return;
    };
    let mut ada = env.issue("Ada", "ada.key", "3");
    let mut bob = env.issue("Bob", "bob.key", "3");
    let server = env.serve(&[]);
    // A replayed VAL_REQ: the server refuses it (signed), nothing changes.
    let env1 = ada.request();
    let r1 = post(server.addr, "/v1/validate", &env1);
    ada.state.accept(&r1.body, &ada.server_key).unwrap();
    let replay = post(server.addr, "/v1/validate", &env1);
    assert_eq!(replay.status, 403);
    assert_eq!(
        Verdict::open(&replay.body, &ada.server_key).unwrap().status,
        Status::Replay
    );
    // An old VAL_OK presented again: not for the copy's current UI.
    let env2 = ada.request();
    let r2 = post(server.addr, "/v1/validate", &env2);
    assert_eq!(
        ada.state.accept(&r1.body, &ada.server_key),
        Err(ValidationError::OtherCopy)
    );
    ada.state.accept(&r2.body, &ada.server_key).unwrap();
    // A VAL_OK for another copy.
    let rb = post(server.addr, "/v1/validate", &bob.request());
    ada.request();
    assert!(matches!(
        ada.state.accept(&rb.body, &ada.server_key),
        Err(ValidationError::OtherLicence { .. })
    ));
    bob.state.accept(&rb.body, &bob.server_key).unwrap();
    // One older than the newest seen: the answer to a superseded request of this copy.
    let older = post(server.addr, "/v1/validate", &ada.request());
    let newer = post(server.addr, "/v1/validate", &ada.request());
    ada.state.accept(&newer.body, &ada.server_key).unwrap();
    assert!(ada.state.accept(&older.body, &ada.server_key).is_err());
    // Still usable afterwards.
    ada.validate(server.addr).unwrap();
}

fn t18_tickets_expire_with_an_injected_clock(db: Backend) {
    let Some(env) = set_up(db, "t18_tickets_expire_with_an_injected_clock") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "2");
    let server = env.serve(&["--ticket-hours", "24"]);
    let t = copy.validate(server.addr).unwrap();
    let clock = TestClock::at_unix(t.dt);
    let key = copy.server_key.clone();
    assert!(
        copy.state
            .check_offline(&key, copy.days, &clock, &copy.progress())
            .is_ok()
    );
    clock.advance(time::Duration::hours(24));
    assert!(matches!(
        copy.state
            .check_offline(&key, copy.days, &clock, &copy.progress()),
        Err(ValidationError::TicketExpired { .. })
    ));
    // A longer ticket is still bounded by the keyfile's two days.
    drop(server);
    let server = env.serve(&["--ticket-hours", "240"]);
    let t = copy.validate(server.addr).unwrap();
    let clock = TestClock::at_unix(t.dt);
    clock.advance(time::Duration::days(2) - time::Duration::seconds(1));
    assert!(
        copy.state
            .check_offline(&key, copy.days, &clock, &copy.progress())
            .is_ok()
    );
    clock.advance(time::Duration::seconds(1));
    assert!(matches!(
        copy.state
            .check_offline(&key, copy.days, &clock, &copy.progress()),
        Err(ValidationError::OfflineTooLong { days: 2, .. })
    ));
    // Going online again restores it.
    copy.validate(server.addr).unwrap();
    assert!(
        copy.state
            .check_offline(&key, copy.days, &SystemClock, &copy.progress())
            .is_ok()
    );
}

fn t19_a_huge_sequence_number_does_not_brick_the_copy(db: Backend) {
    let Some(env) = set_up(db, "t19_a_huge_sequence_number_does_not_brick_the_copy") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    copy.validate(server.addr).unwrap();
    // The copy (its card signs) sends a request with a PSI near 2^64.
    let ui = copy.state.ui();
    let iv = copy.state.iv();
    let req = ValReq {
        variant: IcvVariant::V7,
        ui,
        icv: tally_core::icv::compute(IcvVariant::V7, &copy.package, &ui, &iv),
        psi: u64::MAX - 3,
        vssi: copy.state.vssi(),
        dt: 0,
        vsi: copy.server_key.fingerprint(),
        iv,
        viewer_icv: viewer_icv(VIEWER_BUILD),
    };
    let r = post(server.addr, "/v1/validate", &copy.seal_signed(&req));
    assert_eq!(r.status, 403);
    assert_eq!(
        Verdict::open(&r.body, &copy.server_key).unwrap().status,
        Status::SequenceJump
    );
    // The jump was not adopted: the copy goes on with its own next PSI.
    let t = copy.validate(server.addr).unwrap();
    assert_eq!(t.psi, 2);
    let all = env.copies();
    assert_eq!(copy_json(&all, &copy.licence())["last_psi"], 2);
}

fn t23_a_revoked_copy_is_refused_at_its_next_validation(db: Backend) {
    let Some(env) = set_up(db, "t23_a_revoked_copy_is_refused_at_its_next_validation") else {
        return;
    };
    let mut ada = env.issue("Ada", "ada.key", "3");
    let mut ada2 = env.issue("Ada", "ada2.key", "3");
    let mut bob = env.issue("Bob", "bob.key", "3");
    let server = env.serve(&[]);
    ada.validate(server.addr).unwrap();
    bob.validate(server.addr).unwrap();
    // Revoked by its current (rolled) UI, while the server runs.
    env.cmd(&["revoke", "--copy", &ada.state.ui().to_hex()])
        .assert()
        .success();
    assert_eq!(
        ada.validate(server.addr),
        Err(ValidationError::Refused(Status::Revoked))
    );
    assert!(
        ada.state
            .check_offline(&ada.server_key, ada.days, &SystemClock, &ada.progress())
            .is_err()
    );
    bob.validate(server.addr).unwrap();
    // Every copy of a customer.
    env.cmd(&["revoke", "--customer", "Bob"]).assert().success();
    assert_eq!(
        bob.validate(server.addr),
        Err(ValidationError::Refused(Status::Revoked))
    );
    ada2.validate(server.addr).unwrap();
    // Unknown names are refused with exit code 1 and a reason.
    env.cmd(&["revoke", "--copy", "00"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no copy"));
    env.cmd(&["revoke"]).assert().code(2);
}

fn a_modified_viewer_an_unknown_copy_and_a_weak_variant_are_refused(db: Backend) {
    let Some(env) = set_up(
        db,
        "a_modified_viewer_an_unknown_copy_and_a_weak_variant_are_refused",
    ) else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    let env_bytes = copy.request_with(IcvVariant::V7, b"\x7fELF patched: metering removed");
    let r = post(server.addr, "/v1/validate", &env_bytes);
    assert_eq!(r.status, 403);
    assert_eq!(
        copy.state.accept(&r.body, &copy.server_key),
        Err(ValidationError::Refused(Status::ModifiedViewer))
    );
    let r = post(
        server.addr,
        "/v1/validate",
        &copy.request_with(IcvVariant::V1, VIEWER_BUILD),
    );
    assert_eq!(
        copy.state.accept(&r.body, &copy.server_key),
        Err(ValidationError::Refused(Status::VariantRefused))
    );
    // A copy whose package bytes changed.
    copy.package[100] ^= 1;
    assert_eq!(
        copy.validate(server.addr),
        Err(ValidationError::Refused(Status::IcvMismatch))
    );
    copy.package[100] ^= 1;
    copy.validate(server.addr).unwrap();
    let all = env.copies();
    let flags = copy_json(&all, &copy.licence())["flags"].clone();
    assert_eq!(
        flags,
        serde_json::json!(["modified-viewer", "icv-mismatch"])
    );
    // A copy the server never issued.
    let mut stranger = copy.cloned();
    stranger.state = ClientState::new(LicenceId([0xee; 16]));
    assert_eq!(
        stranger.validate(server.addr),
        Err(ValidationError::Refused(Status::UnknownCopy))
    );
    // The server accepts V1 when told to.
    drop(server);
    let server = env.serve(&["--icv", "V1", "--icv", "V7"]);
    let r = post(
        server.addr,
        "/v1/validate",
        &copy.request_with(IcvVariant::V1, VIEWER_BUILD),
    );
    copy.state.accept(&r.body, &copy.server_key).unwrap();
}

fn post_raw(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn t25_oversized_and_malformed_requests_get_a_4xx_with_a_reason(db: Backend) {
    let Some(env) = set_up(
        db,
        "t25_oversized_and_malformed_requests_get_a_4xx_with_a_reason",
    ) else {
        return;
    };
    let copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&[]);
    let mut tampered = ValReq {
        variant: IcvVariant::V7,
        ui: copy.state.ui(),
        icv: Icv([0; 32]),
        psi: 1,
        vssi: 0,
        dt: 0,
        vsi: [0; 32],
        iv: copy.state.iv(),
        viewer_icv: Icv([0; 32]),
    }
    .seal_unsigned(&copy.server_key, &mut rand_core::OsRng);
    tampered[200] ^= 1;
    let mut bad_key = b"TALLYVRQ\x01".to_vec();
    bad_key.resize(260, 0);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("oversized", post_raw("/v1/validate", &vec![0u8; 200 * 1024]), 413, "length limit"),
        ("too long", post_raw("/v1/validate", &[0u8; 1000]), 413, "exactly 380 bytes"),
        ("empty", post_raw("/v1/validate", b""), 400, "exactly 380 bytes"),
        ("short", post_raw("/v1/validate", b"hello"), 400, "has 5"),
        ("zeros", post_raw("/v1/validate", &[0u8; 260]), 400, "magic"),
        ("bad point", post_raw("/v1/validate", &bad_key), 400, "ephemeral key"),
        ("tampered", post_raw("/v1/validate", &tampered), 400, "does not decrypt"),
        ("unknown path", post_raw("/v1/nothing", b"x"), 404, "no such endpoint"),
        (
            "wrong method",
            b"GET /v1/validate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "",
        ),
        (
            "huge content-length",
            b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n".to_vec(),
            413,
            "length limit",
        ),
        ("oversized, chunked", {
            let mut raw = b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
            for _ in 0..5 {
                raw.extend_from_slice(b"4000\r\n");
                raw.extend_from_slice(&[b'a'; 0x4000]);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            raw
        }, 413, "length limit"),
        ("not http", b"\x16\x03\x01 not http at all\r\n\r\n".to_vec(), 400, ""),
    ];
    for (name, raw, code, reason) in &cases {
        let r = exchange(server.addr, raw);
        assert_eq!(r.status, *code, "{name}: {}", r.text());
        assert!(r.text().contains(reason), "{name}: {}", r.text());
    }
    // The server is still up and serving.
    let mut copy = env.issue("Ada", "ada3.key", "3");
    copy.validate(server.addr).unwrap();
}

fn a_server_missing_the_package_judges_no_copy(db: Backend) {
    let Some(env) = set_up(db, "a_server_missing_the_package_judges_no_copy") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    // The package folder gone (moved away): 503, unsigned, and the copy is not flagged.
    std::fs::rename(env.path("packages"), env.path("packages.away")).unwrap();
    let server = env.serve(&[]);
    let r = post(server.addr, "/v1/validate", &copy.request());
    drop(server);
    std::fs::rename(env.path("packages.away"), env.path("packages")).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("cannot find the package"), "{}", r.text());
    let all = env.copies();
    let c = copy_json(&all, &copy.licence());
    assert_eq!(c["status"], "active");
    assert_eq!(c["flags"], serde_json::json!([]), "{c}");
    // With the package folder back, the same copy validates.
    let server = env.serve(&[]);
    let t = copy.validate(server.addr).unwrap();
    assert_eq!(t.status, Status::Ok);
}

/// The README's flow: `pack -o book.tly` anywhere, then `serve` with no `--packages`:
/// the server finds the package where `pack` wrote it.
fn the_server_finds_the_package_where_pack_wrote_it(db: Backend) {
    let Some(env) = set_up(db, "the_server_finds_the_package_where_pack_wrote_it") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    std::fs::rename(env.path("packages/doc.tly"), env.path("elsewhere/doc.tly")).unwrap();
    // Moved: the recorded place is wrong and no folder is named, so 503 ...
    let server = env.serve_logged(&[], Stdio::null());
    let r = post(server.addr, "/v1/validate", &copy.request());
    assert_eq!(r.status, 503, "{}", r.text());
    drop(server);
    // ... and packed again where the README puts it, it is found with no flag.
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf");
    let book = env.path("book.tly");
    env.cmd(&["pack", pdf.to_str().unwrap(), "-o", book.to_str().unwrap()])
        .assert()
        .success();
    let mut book_copy = env.issue_for("Ada", "book.key", &book);
    let server = env.serve_logged(&[], Stdio::null());
    let t = book_copy.validate(server.addr).unwrap();
    assert_eq!(t.status, Status::Ok);
}

/// One line per request on stderr: method, endpoint, status, outcome, client, time.
fn every_request_is_logged_on_one_line(db: Backend) {
    let Some(env) = set_up(db, "every_request_is_logged_on_one_line") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let log = env.path("serve.log");
    let server = env.serve_logged(&[], Stdio::from(std::fs::File::create(&log).unwrap()));
    copy.validate(server.addr).unwrap();
    let replayed = copy.request();
    post(server.addr, "/v1/validate", &replayed);
    post(server.addr, "/v1/validate", &replayed);
    post(server.addr, "/v1/validate", b"short");
    // A line is written by the log's thread just after its answer went: waited for.
    let posts = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("POST "))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while posts() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("POST ")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, want) in lines.iter().zip([
        "POST /v1/validate 200 ok 127.0.0.1 ",
        "POST /v1/validate 200 ok 127.0.0.1 ",
        "POST /v1/validate 403 replay 127.0.0.1 ",
        "POST /v1/validate 400 - 127.0.0.1 ",
    ]) {
        assert!(
            line.starts_with(want),
            "{line:?} should start with {want:?}"
        );
        assert!(line.ends_with("ms"), "{line}");
    }
}

/// A node whose standard error nobody reads (a full pipe: a stopped log collector) goes on
/// answering; the lines it could not write are dropped, and counted once it can.
fn a_node_whose_log_is_not_read_goes_on_answering(db: Backend) {
    let Some(env) = set_up(db, "a_node_whose_log_is_not_read_goes_on_answering") else {
        return;
    };
    let packages = env.path("packages");
    let mut server = env.serve_logged(&["--packages", packages.to_str().unwrap()], Stdio::piped());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let url = format!("{}/v1/server-key", server.url);
    let key = || agent.get(&url).call().expect("the node answers").status();
    // A pipe holds 64 KiB, about 1,500 of these lines, and the log's queue 1,024 more.
    for _ in 0..4000 {
        assert_eq!(key(), 200);
    }
    // Read now: the log's thread writes what it queued, after a count of what it dropped.
    let stderr = BufReader::new(server.take_stderr().unwrap());
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let (mut logged, mut count) = (0, None);
    while count.is_none() {
        let line = read
            .recv_timeout(Duration::from_secs(10))
            .expect("the node's log goes on once read");
        if line.starts_with("GET /v1/server-key 200") {
            logged += 1;
        }
        if let Some(rest) = line.strip_prefix("log: ") {
            count = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok());
        }
    }
    let dropped = count.unwrap();
    assert!(
        dropped > 0 && logged > 1000,
        "{logged} logged, {dropped} dropped"
    );
    assert_eq!(key(), 200);
}

/// A client holding its requests open cannot take more than its share: the next one from
/// the same address gets 429 at once, and the server goes on serving.
fn one_client_gets_a_bounded_share(db: Backend) {
    let Some(env) = set_up(db, "one_client_gets_a_bounded_share") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&["--max-per-client", "2"]);
    // Two slow requests: headers promising a body that never comes.
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 260\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = post(server.addr, "/v1/validate", &copy.request());
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("too many requests"), "{}", r.text());
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    copy.validate(server.addr).unwrap();
}

/// Two `serve` nodes on one database, and many installed copies of one licence racing
/// across them with the same request: every round exactly one is served and the others
/// are replays (PSI order holds across nodes); a copy whose UI the winner's node retired
/// is a clone, flagged and revoked, whichever node it reaches; a revocation made while
/// the nodes run is seen by both.
fn two_nodes_on_one_database_keep_every_rule(db: Backend) {
    let Some(env) = set_up(db, "two_nodes_on_one_database_keep_every_rule") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let mut bob = env.issue("Bob", "bob.key", "3");
    let nodes = [env.serve(&[]), env.serve(&[])];
    let addrs = [nodes[0].addr, nodes[1].addr];
    const ROUNDS: usize = 12;
    const RACERS: usize = 6;
    for round in 0..ROUNDS {
        // RACERS installations holding one state send the same next request at once.
        let request = copy.request();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let replies: Vec<Reply> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..RACERS)
                .map(|i| {
                    let request = &request;
                    let barrier = barrier.clone();
                    s.spawn(move || {
                        barrier.wait();
                        post(addrs[i % 2], "/v1/validate", request)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(ok.len(), 1, "round {round}: {} served", ok.len());
        for r in &replies {
            check_http(r);
            if r.status != 200 {
                let v = Verdict::open(&r.body, &copy.server_key).unwrap();
                assert_eq!(v.status, Status::Replay, "round {round}");
            }
        }
        copy.state.accept(&ok[0].body, &copy.server_key).unwrap();
    }
    // An installation left behind at the first UI comes back through either node: a clone.
    let all = env.copies();
    assert_eq!(copy_json(&all, &copy.licence())["validations_ok"], ROUNDS);
    assert_eq!(
        copy_json(&all, &copy.licence())["validations"],
        ROUNDS * RACERS
    );
    let mut stale = copy.cloned();
    stale.state = ClientState::new(copy.licence());
    assert_eq!(
        stale.validate(addrs[1]),
        Err(ValidationError::Refused(Status::Clone))
    );
    assert_eq!(
        copy.validate(addrs[0]),
        Err(ValidationError::Refused(Status::Revoked))
    );
    let all = env.copies();
    assert_eq!(
        copy_json(&all, &copy.licence())["flags"],
        serde_json::json!(["clone"])
    );
    // Revoked by the CLI while both nodes run: refused by both.
    bob.validate(addrs[0]).unwrap();
    env.cmd(&["revoke", "--customer", "Bob"]).assert().success();
    let r = post(addrs[1], "/v1/validate", &bob.request());
    assert_eq!(
        Verdict::open(&r.body, &bob.server_key).unwrap().status,
        Status::Revoked
    );
}

/// A PostgreSQL node judges a copy's next request on the row it last wrote for it, with no
/// read; when another node moved the copy on meanwhile that row is stale, and the write
/// made on it must not happen: a second installation of one state, validated first on the
/// other node, leaves the first installation's same request refused, not served again.
/// (Deterministic where the race above is not; on SQLite the same answers.)
fn a_row_a_node_remembers_never_outvotes_the_database(db: Backend) {
    let Some(env) = set_up(db, "a_row_a_node_remembers_never_outvotes_the_database") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let nodes = [env.serve(&[]), env.serve(&[])];
    // Node 0 serves the copy and remembers its row under the UI of its next request.
    copy.validate(nodes[0].addr).unwrap();
    copy.validate(nodes[0].addr).unwrap();
    // The same state, installed twice: the twin's next request is served by node 1.
    let mut twin = copy.cloned();
    twin.validate(nodes[1].addr).unwrap();
    // The first installation's next request reaches node 0, whose remembered row is stale.
    assert_eq!(
        copy.validate(nodes[0].addr),
        Err(ValidationError::Refused(Status::Replay))
    );
    // The twin goes on, on either node: node 0 now decides on the database's row.
    twin.validate(nodes[0].addr).unwrap();
    twin.validate(nodes[1].addr).unwrap();
    twin.validate(nodes[0].addr).unwrap();
    let all = env.copies();
    assert_eq!(copy_json(&all, &copy.licence())["validations_ok"], 6);
    assert_eq!(copy_json(&all, &copy.licence())["validations"], 7);
}

/// ICV V8 (V7 over the chunk digests `pack` stored): accepted by default, computed with
/// no package file at all, and a changed package byte is still an ICV mismatch.
fn v8_is_checked_from_the_digests_pack_stored(db: Backend) {
    let Some(env) = set_up(db, "v8_is_checked_from_the_digests_pack_stored") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    // No package anywhere the server could read it.
    std::fs::rename(env.path("packages"), env.path("packages.away")).unwrap();
    let server = env.serve(&[]);
    for _ in 0..2 {
        let r = post(
            server.addr,
            "/v1/validate",
            &copy.request_with(IcvVariant::V8, VIEWER_BUILD),
        );
        check_http(&r);
        copy.state.accept(&r.body, &copy.server_key).unwrap();
    }
    copy.package[5000] ^= 1;
    let r = post(
        server.addr,
        "/v1/validate",
        &copy.request_with(IcvVariant::V8, VIEWER_BUILD),
    );
    assert_eq!(
        copy.state.accept(&r.body, &copy.server_key),
        Err(ValidationError::Refused(Status::IcvMismatch))
    );
    // V7 over the bytes still needs the file: 503, no verdict.
    copy.package[5000] ^= 1;
    let r = post(server.addr, "/v1/validate", &copy.request());
    assert_eq!(r.status, 503, "{}", r.text());
}

/// A package larger than the server's cache (`--package-cache-mib 0`) is hashed from disk
/// for each request (never held whole in memory): the same verdicts as from memory.
fn a_package_larger_than_the_cache_is_hashed_from_disk(db: Backend) {
    let Some(env) = set_up(db, "a_package_larger_than_the_cache_is_hashed_from_disk") else {
        return;
    };
    let mut copy = env.issue("Ada", "ada.key", "3");
    let server = env.serve(&["--package-cache-mib", "0"]);
    copy.validate(server.addr).unwrap();
    copy.validate(server.addr).unwrap();
    copy.package[777] ^= 1;
    assert_eq!(
        copy.validate(server.addr),
        Err(ValidationError::Refused(Status::IcvMismatch))
    );
}

/// The copy's row as `copies --json` shows it: (status, flags).
fn standing(env: &Env, licence: &LicenceId) -> (serde_json::Value, serde_json::Value) {
    let all = env.copies();
    let c = copy_json(&all, licence);
    (c["status"].clone(), c["flags"].clone())
}

fn t32_requests_without_the_readers_card_change_nothing(db: Backend) {
    let Some(env) = set_up(db, "t32_requests_without_the_readers_card_change_nothing") else {
        return;
    };
    let mut ada = env.issue("Ada", "ada.key", "3");
    let bob = env.issue("Bob", "bob.key", "3");
    let server = env.serve(&[]);
    let ui0 = ada.state.ui();
    let captured = ada.request();
    let r = post(server.addr, "/v1/validate", &captured);
    ada.state.accept(&r.body, &ada.server_key).unwrap();
    ada.validate(server.addr).unwrap();
    ada.validate(server.addr).unwrap();
    let lic = ada.licence();
    let history = |env: &Env| copy_json(&env.copies(), &lic)["validations"].clone();
    let before = history(&env);
    let key = ada.server_key.clone();
    let refused = |body: &[u8], why: Status| {
        let r = post(server.addr, "/v1/validate", body);
        assert_eq!(r.status, 403, "{}", r.text());
        check_http(&r);
        assert_eq!(Verdict::open(&r.body, &key).unwrap().status, why);
    };
    // Anyone who knows the licence id (it is in the keyfile and the trail) builds a request
    // from the copy's first UI, long superseded: a clone if it counted. Without a card
    // proof (a version 1 envelope, as old viewers sent), it does not.
    let package = ada.package.clone();
    let forged = |ui: tally_core::icv::Ui, psi: u64| ValReq {
        variant: IcvVariant::V7,
        ui,
        icv: tally_core::icv::compute(
            IcvVariant::V7,
            &package,
            &ui,
            &tally_core::icv::Iv::first(&ui),
        ),
        psi,
        vssi: 0,
        dt: 0,
        vsi: key.fingerprint(),
        iv: tally_core::icv::Iv::first(&ui),
        viewer_icv: viewer_icv(VIEWER_BUILD),
    };
    refused(
        &forged(ui0, 100).seal_unsigned(&key, &mut rand_core::OsRng),
        Status::NotCardSigned,
    );
    // Signed by another registered card (Bob's): not the licence's card.
    refused(&bob.seal_signed(&forged(ui0, 101)), Status::NotCardSigned);
    // Not the copy's requests: its history does not count them.
    assert_eq!(history(&env), before);
    // A captured request of the owner, replayed after the owner's next validations.
    refused(&captured, Status::Replay);
    assert_eq!(
        standing(&env, &ada.licence()),
        (serde_json::json!("active"), serde_json::json!([]))
    );
    // The honest reader lost nothing.
    ada.validate(server.addr).unwrap();
    // The same superseded UI in a fresh request the licence's card signed is a clone (T15).
    refused(&ada.seal_signed(&forged(ui0, 200)), Status::Clone);
    assert_eq!(
        standing(&env, &ada.licence()),
        (serde_json::json!("revoked"), serde_json::json!(["clone"]))
    );
}

fn t33_a_ticket_from_another_copy_does_not_count_offline(db: Backend) {
    let Some(env) = set_up(db, "t33_a_ticket_from_another_copy_does_not_count_offline") else {
        return;
    };
    let mut ada = env.issue("Ada", "ada.key", "3");
    let mut ada2 = env.issue("Ada", "ada2.key", "3");
    let server = env.serve(&[]);
    ada.validate(server.addr).unwrap();
    ada2.validate(server.addr).unwrap();
    env.cmd(&["revoke", "--copy", &ada2.licence().to_hex()])
        .assert()
        .success();
    assert_eq!(
        ada2.validate(server.addr),
        Err(ValidationError::Refused(Status::Revoked))
    );
    // The revoked copy takes the good copy's fresh ticket into its own state file (its
    // checksum recomputed), the refusal removed.
    let mut st = ada2.state.encode();
    let at = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 8;
    st[at] = 1;
    st[at + 1..at + 1 + tally_core::validation::VERDICT_LEN]
        .copy_from_slice(ada.state.ticket_bytes().unwrap());
    let n = st.len() - 33;
    st[n] = 0xff;
    let sum = tally_core::crypto::sha256(&st[..n + 1]);
    st[n + 1..].copy_from_slice(&sum);
    let pasted = ClientState::parse(&st).unwrap();
    let e = pasted
        .check_offline(&ada.server_key, ada2.days, &SystemClock, &ada2.progress())
        .unwrap_err();
    assert!(matches!(e, ValidationError::OtherLicence { .. }), "{e:?}");
}

on_both_databases!(
    t32_requests_without_the_readers_card_change_nothing,
    t33_a_ticket_from_another_copy_does_not_count_offline,
    a_package_larger_than_the_cache_is_hashed_from_disk,
    v8_is_checked_from_the_digests_pack_stored,
    the_server_finds_the_package_where_pack_wrote_it,
    every_request_is_logged_on_one_line,
    a_node_whose_log_is_not_read_goes_on_answering,
    one_client_gets_a_bounded_share,
    two_nodes_on_one_database_keep_every_rule,
    a_row_a_node_remembers_never_outvotes_the_database,
    validations_survive_a_server_restart_and_are_logged,
    t15_a_cloned_copy_is_flagged_and_revoked,
    t15_clones_that_alternate_are_caught_too,
    t17_every_replay_is_rejected,
    t18_tickets_expire_with_an_injected_clock,
    t19_a_huge_sequence_number_does_not_brick_the_copy,
    t23_a_revoked_copy_is_refused_at_its_next_validation,
    a_modified_viewer_an_unknown_copy_and_a_weak_variant_are_refused,
    t25_oversized_and_malformed_requests_get_a_4xx_with_a_reason,
    a_server_missing_the_package_judges_no_copy
);
