//! `tally-view validate` against a real `tally-pack serve` on loopback (real SQLite):
//! validated (exit 0, state saved in TALLY_HOME), a viewer build the publisher did not
//! register (exit 1, "not a registered release build"), a revoked copy (exit 1), an
//! unreachable server (exit 2).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

const PASSWORD: &str = "correct horse battery staple";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pack(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("tally-pack").unwrap();
    c.env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD);
    c
}

fn view(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("tally-view").unwrap();
    c.env("TALLY_HOME", dir.join("home"))
        .env_remove("TALLY_CARD");
    c
}

fn serve(dir: &Path) -> (Server, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tally-pack"))
        .env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args(["serve", "--listen", "127.0.0.1:0", "--packages"])
        .arg(dir.join("packages"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (Server(child), url)
}

/// A vendor, a reader with an emulated card, one package and a keyfile with a server.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    pack(dir)
        .args(["vendor", "init", "--name", "Test Press"])
        .assert()
        .success();
    view(dir).args(["card", "init"]).assert().success();
    let card = dir.join("reader.card");
    view(dir)
        .args(["card", "export", "-o"])
        .arg(&card)
        .assert()
        .success();
    pack(dir)
        .args(["customer", "add", "--name", "Ada", "--card"])
        .arg(&card)
        .assert()
        .success();
    view(dir)
        .args(["trust", "add"])
        .arg(dir.join("vendor/vendor.pub"))
        .assert()
        .success();
    std::fs::create_dir_all(dir.join("packages")).unwrap();
    let package = dir.join("packages/doc.tly");
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf");
    pack(dir)
        .arg("pack")
        .arg(&pdf)
        .arg("-o")
        .arg(&package)
        .assert()
        .success();
    let keyfile = dir.join("ada.key");
    pack(dir)
        .args([
            "issue",
            "--customer",
            "Ada",
            "--allow-emulated-card",
            "--package",
        ])
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .args([
            "--server",
            "http://127.0.0.1:9/",
            "--require-online-every",
            "7",
        ])
        .assert()
        .success();
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
    validate(&["--server", &url])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a registered release build"));
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
