//! `tally-view` with a card behind the real pcscd: `card serve-virtual` runs as one
//! process (the card in vpcd's reader), `card info` / `trail verify --card pcsc…` as others.
//!
//! Needs pcscd with vsmartcard's vpcd: `TALLY_PCSCD=1` (scripts/test.sh) means one is up
//! and the test fails if it is not reachable; otherwise a running pcscd is used, or started
//! when root, or the test fails saying why. It never skips.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

#[path = "../../core/tests/support/pcscd.rs"]
#[allow(dead_code)] // shared with core's PC/SC tests, which use more of it
mod pcscd;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

const EMPTY_READER: &str = "Virtual PCD 00 01";

fn view(home: &Path) -> Command {
    let mut c = Command::cargo_bin("tally-view").unwrap();
    c.env("TALLY_HOME", home).env_remove("TALLY_CARD");
    c
}

/// The card server process, killed when the test ends (also on failure).
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn viewer_commands_through_pcscd() {
    let _port = pcscd::vpcd_port_lock().unwrap();
    let (_pcscd, ctx) = pcscd::ensure_pcscd().unwrap_or_else(|e| panic!("{e}"));
    pcscd::wait_reader(&ctx, pcscd::READER, false, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}; is another virtual card connected to vpcd?"));

    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "init", "--origin", "7"])
        .assert()
        .success();
    let served = Served(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("tally-view"))
            .args(["card", "serve-virtual"])
            .env("TALLY_HOME", home.path())
            .env_remove("TALLY_CARD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    pcscd::wait_reader(&ctx, pcscd::READER, true, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("serve-virtual never reached the reader: {e}"));

    // `pcsc` finds the reader holding our applet.
    let out = view(home.path())
        .args(["card", "info", "--json", "--card", "pcsc"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["card"], "pcsc:Virtual PCD 00 00", "{v}");
    assert_eq!(v["origin"], 7, "{v}");
    assert_eq!(v["counter"], 7, "{v}");

    // TALLY_CARD names the reader; ValidateTrail runs through pcscd.
    view(home.path())
        .env("TALLY_CARD", "pcsc:Virtual PCD 00 00")
        .args(["trail", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("trail OK"));

    // The emulated card behind it saw the same signatures (genesis + nonce record).
    let out = view(home.path())
        .args(["card", "info", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["counter"], 9, "{v}");

    // Clear errors, exit code 2.
    view(home.path())
        .args(["card", "info", "--card", "pcsc:No Such Reader"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no card reader found named"));
    view(home.path())
        .args(["card", "info", "--card", &format!("pcsc:{EMPTY_READER}")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no card in the reader"));

    // Card pulled: the server stops, pcscd notices, and the viewer says so.
    drop(served);
    pcscd::wait_reader(&ctx, pcscd::READER, false, Duration::from_secs(10)).unwrap();
    view(home.path())
        .args(["card", "info", "--card", "pcsc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no card in the reader"));
    view(home.path())
        .args(["card", "serve-virtual", "--state"])
        .arg(home.path().join("missing.state"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no card at"));
}
