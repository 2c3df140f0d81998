//! `tally-view validate` against a real `tally-pack serve` on loopback (real SQLite):
//! validated (exit 0, state saved in TALLY_HOME), a viewer build the publisher did not
//! register (exit 1, the message naming `tally-pack viewer register`), a revoked copy (exit 1), an
//! unreachable server (exit 2). And the opening path (`tally-view status`, and the
//! window's checks in process with the clock moved on): validated online at the first
//! opening and when due, a revoked copy refused, an unreachable server falls back to the
//! offline grace.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::Clock;
use tally_core::rental::{Checked, OpenInputs, Problem, check_rental};
use tally_tests::{Server, pack, view_at};

fn view(dir: &Path) -> Command {
    view_at(&dir.join("home"))
}

fn serve(dir: &Path) -> (Server, String) {
    tally_tests::serve(dir, "127.0.0.1:0", &[])
}

/// A vendor, a reader with an emulated card trusting it, and one package.
fn reader(dir: &Path) -> PathBuf {
    tally_tests::publisher_and_reader(dir, &dir.join("home"))
}

/// Issues a keyfile `name` for Ada naming the server `url`, requiring an online check every
/// `days` days; returns it and its licence id.
fn issue(dir: &Path, package: &Path, name: &str, url: &str, days: u16) -> (PathBuf, String) {
    tally_tests::issue_online(dir, package, name, url, days)
}

/// A vendor, a reader with an emulated card, one package and a keyfile with a server.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let package = reader(dir);
    let (keyfile, _) = issue(dir, &package, "ada.key", "http://127.0.0.1:9/", 7);
    (package, keyfile)
}

#[test]
fn validate_registered_unregistered_revoked_and_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (package, keyfile) = setup(dir);
    let (_server, url) = serve(dir);
    let validate = |extra: &[&str]| {
        let mut c = view(dir);
        c.arg("validate").arg(&package).arg(&keyfile).args(extra);
        c
    };
    // The publisher has not registered this viewer build yet.
    validate(&["--server", &url]).assert().code(1).stderr(
        "tally-view: the validation server refused this copy: this viewer build is not \
             registered with the publisher's validation server (the publisher registers it \
             with `tally-pack viewer register PATH-TO-tally-view`)\n",
    );
    pack(dir)
        .args(["viewer", "register"])
        .arg(assert_cmd::cargo::cargo_bin("tally-view"))
        .assert()
        .success();
    let out = validate(&["--server", &url, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["validated"], true);
    assert_eq!(v["psi"], 2);
    validate(&["--server", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("usable offline until"));
    assert!(dir.join("home/validation").read_dir().unwrap().count() == 1);
    // Revoked: refused at the next validation.
    let licence = v["licence"].as_str().unwrap().to_string();
    pack(dir)
        .args(["revoke", "--copy", &licence])
        .assert()
        .success();
    validate(&["--server", &url])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    // Nobody listens at the keyfile's URL (port 9 on loopback).
    validate(&[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot reach"));
}

/// The reader's clock `days` ahead (the server keeps the real time): an opening that
/// happens after the keyfile's offline grace is over.
struct Later(i64);

impl Clock for Later {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::days(self.0)
    }
}

/// The checks of an opening (the window's and `status`'s path), run in this process with
/// the clock `days` ahead; the server sees this test binary as the viewer.
fn open_later(dir: &Path, package: &Path, keyfile: &Path, days: i64) -> Result<Checked, Problem> {
    let home = Home::new(dir.join("home"));
    let inputs = OpenInputs {
        package: package.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        home: home.clone(),
        card: CardSpec::Emulated(None),
        trusted: tally_viewer::commands::trust::trusted(&home),
        clock: Arc::new(Later(days)),
        transport: Arc::new(tally_viewer::online::Http),
    };
    check_rental(&inputs)
}

/// How many validations the server logged for the copy `licence` (`tally-pack copies`).
fn validations(dir: &Path, licence: &str) -> u64 {
    let out = pack(dir)
        .args(["copies", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["licence"] == licence)
        .unwrap()["validations"]
        .as_u64()
        .unwrap()
}

fn status(dir: &Path, package: &Path, keyfile: &Path, json: bool) -> Command {
    let mut c = view(dir);
    c.arg("status");
    if json {
        c.arg("--json");
    }
    c.arg(package).arg(keyfile);
    c
}

fn validate(dir: &Path, package: &Path, keyfile: &Path) -> Command {
    let mut c = view(dir);
    c.arg("validate").arg(package).arg(keyfile);
    c
}

fn json_of(a: assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

#[test]
fn opening_validates_online_when_due_and_falls_back_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let package = reader(dir);
    let (server, url) = serve(dir);
    for viewer in [
        assert_cmd::cargo::cargo_bin("tally-view"),
        std::env::current_exe().unwrap(),
    ] {
        pack(dir)
            .args(["viewer", "register"])
            .arg(viewer)
            .assert()
            .success();
    }
    let (a, lic_a) = issue(dir, &package, "a.key", &url, 7);
    let (b, _) = issue(dir, &package, "b.key", &url, 7);
    let (c, _) = issue(dir, &package, "c.key", &url, 7);

    // The first validation is the installation: validated online, the state written
    // (`status` only reads: it never goes online).
    validate(dir, &package, &a).assert().success();
    let v = json_of(status(dir, &package, &a, true).assert().success());
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v["last_validated"].is_string(), "{v}");
    assert!(v["valid_until"].is_string(), "{v}");
    assert_eq!(dir.join("home/validation").read_dir().unwrap().count(), 1);
    assert_eq!(validations(dir, &lic_a), 1);
    // Not due again for 7 days: the next opening stays offline and says when.
    status(dir, &package, &a, false)
        .assert()
        .success()
        .stdout(predicate::str::contains("last validated online"));
    assert_eq!(validations(dir, &lic_a), 1);

    // Revoked: the next opening that has to validate (8 days on) is refused by the server…
    pack(dir)
        .args(["revoke", "--copy", &lic_a])
        .assert()
        .success();
    let p = open_later(dir, &package, &a, 8).unwrap_err();
    assert!(matches!(p, Problem::Revoked(_)), "{p}");
    assert!(p.to_string().contains("revoked"), "{p}");
    assert_eq!(validations(dir, &lic_a), 2);
    // …and stays refused today: the signed refusal is remembered (and asked again).
    status(dir, &package, &a, false)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("withdrawn this copy"))
        .stdout(predicate::str::contains("revoked"));

    // Copy b is validated while the server runs.
    validate(dir, &package, &b).assert().success();
    status(dir, &package, &b, false).assert().success();
    // The opening trusts the keyfile's server for ValidateTrail's fast start ([0094]),
    // also without the home's list (which `trail vouch` fills).
    view(dir)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&b)
        .assert()
        .success();
    let validators = Home::new(dir.join("home")).validators_path();
    std::fs::remove_file(&validators).unwrap();
    let checked = open_later(dir, &package, &b, 0).unwrap();
    assert!(checked.meter.trail().vouched().is_some());
    assert!(checked.online.is_some());
    drop(checked);
    // The home's list neither widens nor decides the licence's trust: the keyfile's server
    // is the one trusted for it (T29), whatever the list says.
    std::fs::write(&validators, "# trusted\nnot a key\n").unwrap();
    status(dir, &package, &b, false).assert().success();
    std::fs::remove_file(&validators).unwrap();
    // Then the server goes away.
    drop(server);
    // Within the grace: it opens offline, saying when it was last validated.
    let v = json_of(status(dir, &package, &b, true).assert().success());
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v["last_validated"].is_string(), "{v}");
    // Beyond the grace: refused, saying the server could not be reached.
    let p = open_later(dir, &package, &b, 8).unwrap_err();
    assert!(matches!(p, Problem::ValidationNeeded(_)), "{p}");
    let text = p.to_string();
    assert!(text.contains("every 7 days"), "{text}");
    assert!(
        text.contains("cannot reach the validation server"),
        "{text}"
    );
    // Never validated, with a requirement: refused with the reason (status says what an
    // opening would do if its online round failed) …
    status(dir, &package, &c, false)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("needs to be checked online"))
        .stdout(predicate::str::contains("not been validated online yet"));
    // … and the opening's round, with the server gone, says why it did not help.
    let p = open_later(dir, &package, &c, 0).unwrap_err();
    assert!(
        p.to_string().contains("cannot reach the validation server"),
        "{p}"
    );
}
