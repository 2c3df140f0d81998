//! The automatic backup (issue 13) through the shipped binaries: a reading window
//! (`tally-view PACKAGE KEYFILE` under Xvfb) whose licence names a real `tally-pack serve`
//! on loopback gets its trail vouched for and backed up with no command; the reader's
//! opt-out (`tally-view backup off`) is honoured; an unreachable server neither blocks nor
//! fails the reading; and a validation server the reader runs and trusts is never used —
//! only the one the publisher's keyfile names.
//!
//! Needs Xvfb (`TALLY_XVFB_DISPLAY`, or an Xvfb of its own from display :160).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tally_core::card::CardIdentity;
use tally_core::trail::Usage;
use tally_tests::{Reap, Server, http, issue, pack, publisher_and_reader, serve, usages, view_at};

/// A publisher, the reader (emulated card, registered), the sample packed, this viewer
/// registered as a release, the publisher's server running, and a keyfile naming `url`
/// (the server's when `None`).
struct Setup {
    dir: PathBuf,
    home: PathBuf,
    package: PathBuf,
    keyfile: PathBuf,
    identity: CardIdentity,
    url: String,
    _server: Server,
}

fn setup(dir: &Path, keyfile_url: Option<&str>) -> Setup {
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    pack(dir)
        .args(["viewer", "register"])
        .arg(assert_cmd::cargo::cargo_bin("tally-view"))
        .assert()
        .success();
    let (server, url) = serve(dir, "127.0.0.1:0", &[]);
    let keyfile = dir.join("ada.tkey");
    issue(
        dir,
        "Ada",
        &package,
        &keyfile,
        &["--pages", "200", "--server", keyfile_url.unwrap_or(&url)],
    );
    let (identity, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    Setup {
        dir: dir.to_path_buf(),
        home,
        package,
        keyfile,
        identity,
        url,
        _server: server,
    }
}

/// The reading window on `s`'s document, on the display `display`.
fn window(s: &Setup, display: &str) -> Reap {
    Reap(
        Command::new(assert_cmd::cargo::cargo_bin("tally-view"))
            .arg(&s.package)
            .arg(&s.keyfile)
            .env("TALLY_HOME", &s.home)
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("TALLY_CARD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits (at most 90 s) until the trail holds a record `found` accepts.
fn wait_for(s: &Setup, what: &str, found: impl Fn(&Usage) -> bool) {
    let start = Instant::now();
    while !usages(&s.home, &s.identity).iter().any(&found) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no {what} on the trail: {:?}",
            usages(&s.home, &s.identity)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_validator(u: &Usage) -> bool {
    matches!(u, Usage::Validator(_))
}

/// `tally-view status --json`'s backup lines.
fn backup_lines(s: &Setup) -> Vec<String> {
    let out = view_at(&s.home)
        .arg("status")
        .arg(&s.package)
        .arg(&s.keyfile)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// What the publisher's audit of the reader's trail says about the server's backup.
fn audit_backup_line(
    vendor: &Path,
    home: &Path,
    identity: &CardIdentity,
    customer: &str,
) -> String {
    let trail = tally_core::home::Home::new(home).trail_path(&identity.serial);
    let out = pack(vendor)
        .arg("audit")
        .arg(&trail)
        .args(["--customer", customer, "--own-server"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("backup:") || l.starts_with("note: the validation server"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_reading_session_is_vouched_for_and_backed_up_without_any_command() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), None);
    assert!(
        backup_lines(&s)[0].contains("not been backed up"),
        "{:?}",
        backup_lines(&s)
    );
    let (display, _xvfb) = tally_tests::xvfb(160);
    let w = window(&s, &display);
    // Reading starts (the first page block is charged), and soon after, with no command,
    // the licence's server vouches for the trail: its totals record and validator record
    // are written through the same Write as the charges.
    wait_for(&s, "page block", |u| matches!(u, Usage::Pages { .. }));
    wait_for(&s, "validator record", is_validator);
    // The status the session noted: backed up by the keyfile's server, and the server's
    // copy covers the answer it gave.
    let start = Instant::now();
    while !backup_lines(&s)[0].starts_with("Reading record backed up by") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            backup_lines(&s)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = backup_lines(&s);
    assert!(lines[0].contains(&s.url), "{lines:?}");
    assert_eq!(lines.len(), 1, "no backup error: {lines:?}");
    drop(w);
    // The trail verifies with the card, and now starts from the validator (fast start:
    // the server's key joined the home's trusted validation servers, as after `trail vouch`).
    let out = view_at(&s.home)
        .args(["trail", "verify", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["fast_start"].is_null(), "{v}");
    // The publisher's side: its server holds a backup of the card's trail.
    let line = audit_backup_line(&s.dir, &s.home, &s.identity, "Ada");
    assert!(line.starts_with("backup:"), "{line}");
}

#[test]
fn the_readers_opt_out_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), None);
    view_at(&s.home)
        .args(["backup", "off"])
        .assert()
        .success()
        .stdout(predicate::str::contains("automatic backup is off"));
    view_at(&s.home)
        .args(["backup", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"automatic_backup\": false"));
    let (display, _xvfb) = tally_tests::xvfb(160);
    let w = window(&s, &display);
    wait_for(&s, "page block", |u| matches!(u, Usage::Pages { .. }));
    // Well past the first look (3 s after reading starts): nothing was vouched for.
    std::thread::sleep(Duration::from_secs(8));
    assert!(!usages(&s.home, &s.identity).iter().any(is_validator));
    drop(w);
    let lines = backup_lines(&s);
    assert!(lines[0].starts_with("Automatic backup is off"), "{lines:?}");
    // Nothing reached the server either.
    let line = audit_backup_line(&s.dir, &s.home, &s.identity, "Ada");
    assert!(line.contains("holds no backup"), "{line}");
    // A setting that is neither on nor off is named, never guessed.
    std::fs::write(s.home.join("backup"), "maybe\n").unwrap();
    view_at(&s.home)
        .arg("backup")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected `on` or `off`"));
    view_at(&s.home).args(["backup", "on"]).assert().success();
    assert!(backup_lines(&s)[0].contains("not been backed up"));
}

#[test]
fn an_unreachable_server_neither_blocks_nor_fails_the_reading() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on (bound, then closed).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let s = setup(tmp.path(), Some(&closed));
    let (display, _xvfb) = tally_tests::xvfb(160);
    let w = window(&s, &display);
    // The opening's online round and the backup find nothing: reading goes on.
    wait_for(&s, "page block", |u| matches!(u, Usage::Pages { .. }));
    let start = Instant::now();
    while !backup_lines(&s)[0].starts_with("The last backup of your reading record") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            backup_lines(&s)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = backup_lines(&s);
    assert!(lines[0].contains("cannot reach"), "{lines:?}");
    assert!(lines[0].contains("reading is not affected"), "{lines:?}");
    // The window is still reading: a key turns the page and charges (or shows a prepaid
    // page) without an error; the trail stays valid and has no validator.
    drop(w);
    assert!(!usages(&s.home, &s.identity).iter().any(is_validator));
    view_at(&s.home)
        .arg("status")
        .arg(&s.package)
        .arg(&s.keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("reading is allowed"))
        .stdout(predicate::str::contains("backup: The last backup"));
}

#[test]
fn a_validation_server_the_reader_runs_and_trusts_is_never_used() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path(), None);
    // The reader's own publisher and server (stock `tally-pack vendor init` and `serve`),
    // with the reader's card as its customer, and its key in the home's trusted validation
    // servers — as a reader who wants their own server to vouch for everything would set it.
    let own = s.dir.join("mallory");
    std::fs::create_dir_all(&own).unwrap();
    pack(&own)
        .args(["vendor", "init", "--name", "Mallory"])
        .assert()
        .success();
    pack(&own)
        .args([
            "customer",
            "add",
            "--name",
            "Me",
            "--allow-emulated-card",
            "--card",
        ])
        .arg(s.dir.join("reader.card"))
        .assert()
        .success();
    let (_own_server, own_url) = serve(&own, "127.0.0.1:0", &[]);
    let (code, body) = http(&own_url, "/v1/server-key", None);
    assert_eq!(code, 200);
    let key: serde_json::Value = serde_json::from_str(&body).unwrap();
    std::fs::write(
        s.home.join("validators"),
        format!("{}\n", key["public_key"].as_str().unwrap()),
    )
    .unwrap();
    let (display, _xvfb) = tally_tests::xvfb(160);
    let w = window(&s, &display);
    wait_for(&s, "validator record", is_validator);
    drop(w);
    // Every validator record on the trail is the publisher's server's.
    let publisher_key = {
        let (_, body) = http(&s.url, "/v1/server-key", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        tally_core::crypto::PublicKey::from_sec1(
            &hex::decode(v["public_key"].as_str().unwrap()).unwrap(),
        )
        .unwrap()
        .fingerprint()
    };
    for u in usages(&s.home, &s.identity) {
        if let Usage::Validator(v) = u {
            assert_eq!(v.server_key, publisher_key);
        }
    }
    // The reader's own server holds nothing of this card; the publisher's does.
    let line = audit_backup_line(&own, &s.home, &s.identity, "Me");
    assert!(line.contains("holds no backup"), "{line}");
    let line = audit_backup_line(&s.dir, &s.home, &s.identity, "Ada");
    assert!(line.starts_with("backup:"), "{line}");
}
