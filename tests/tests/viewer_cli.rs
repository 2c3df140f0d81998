//! CLI cases for the reader's headless commands: `tally-view card …` and `tally-view trail …`.
//! Exit codes: 0 ok, 1 check failed (message names the check and the record), 2 usage or I/O.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

fn view(home: &Path) -> Command {
    let mut c = Command::cargo_bin("tally-view").unwrap();
    c.env("TALLY_HOME", home).env_remove("TALLY_CARD");
    c
}

fn trail_file(home: &Path) -> PathBuf {
    let dir = home.join("trails");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "trail"))
        .unwrap()
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap()
}

#[test]
fn card_init_info_export() {
    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "init", "--origin", "41"])
        .assert()
        .success()
        .stdout(predicate::str::contains("counter starts at 41"));
    // Refuses to overwrite: deleting a card is losing it.
    view(home.path())
        .args(["card", "init"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    let out = view(home.path())
        .args(["card", "info", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json(&out);
    assert_eq!(v["origin"], 41);
    assert_eq!(v["counter"], 41);
    assert_eq!(v["serial"].as_str().unwrap().len(), 32);
    let export = home.path().join("me.card");
    view(home.path())
        .args(["card", "export", "-o"])
        .arg(&export)
        .assert()
        .success();
    let (id, label) =
        tally_core::card::CardIdentity::from_export(&std::fs::read(&export).unwrap()).unwrap();
    assert_eq!(id.origin, 41);
    assert_eq!(id.serial.to_hex(), v["serial"].as_str().unwrap());
    assert!(label.unwrap().contains("emulated"));
}

#[test]
fn missing_card_and_bad_card_spec_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "info"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("card init"));
    view(home.path())
        .args(["--card", "floppy", "card", "info"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad card"));
    view(home.path()).args(["trail", "verify"]).assert().code(2);
    // A damaged card state is named.
    view(home.path()).args(["card", "init"]).assert().success();
    let card = home.path().join("card.state");
    let mut b = std::fs::read(&card).unwrap();
    b[20] ^= 1;
    std::fs::write(&card, b).unwrap();
    view(home.path())
        .args(["card", "info"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("checksum mismatch"));
}

#[test]
fn verify_then_rollback_is_named() {
    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "init", "--origin", "1000"])
        .assert()
        .success();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("trail OK: 2 records"));
    let out = view(home.path())
        .args(["trail", "verify", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json(&out)["last_counter"], 1002);
    // Copy the trail, verify again, put the copy back.
    let trail = trail_file(home.path());
    let copy = std::fs::read(&trail).unwrap();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    std::fs::write(&trail, &copy).unwrap();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("rolled back")
                .and(predicate::str::contains("1 record(s) are missing")),
        );
    let out = view(home.path())
        .args(["trail", "verify", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    assert_eq!(json(&out)["check"], "rollback");
}

#[test]
fn a_modified_record_is_named_by_show_and_verify() {
    let home = tempfile::tempdir().unwrap();
    view(home.path()).args(["card", "init"]).assert().success();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    let out = view(home.path())
        .args(["trail", "show", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json(&out);
    assert_eq!(v["status"]["ok"], true);
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    assert_eq!(v["records"][0]["use"], "genesis");
    // Change the nonce value in record 1 and fix the frame checksum, as an attacker would.
    let trail = trail_file(home.path());
    let bytes = std::fs::read(&trail).unwrap();
    let hdr = tally_core::trail::file::HEADER_LEN;
    let frames = tally_core::trail::file::parse_frames(&bytes[hdr..], hdr as u64, 0).unwrap();
    let mut recs = frames.records;
    let last = recs[1].body.len() - 1;
    recs[1].body[last] = if recs[1].body[last] == b'9' {
        b'8'
    } else {
        b'9'
    };
    let mut out = bytes[..hdr].to_vec();
    for r in &recs {
        out.extend(tally_core::trail::file::encode_frame(r));
    }
    std::fs::write(&trail, out).unwrap();
    view(home.path())
        .args(["trail", "show"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("record 1"));
    let out = view(home.path())
        .args(["trail", "verify", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v = json(&out);
    assert_eq!(v["check"], "signature");
    assert_eq!(v["record"], 1);
}

#[test]
fn another_cards_trail_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for h in [a.path(), b.path()] {
        view(h).args(["card", "init"]).assert().success();
        view(h).args(["trail", "verify"]).assert().success();
    }
    // Put B's trail under A's card's name.
    let ta = trail_file(a.path());
    std::fs::copy(trail_file(b.path()), &ta).unwrap();
    view(a.path())
        .args(["trail", "verify"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong card"));
}

#[test]
fn global_options_go_before_or_after_the_command() {
    let home = tempfile::tempdir().unwrap();
    let card = home.path().join("elsewhere.state");
    let spec = format!("emulated:{}", card.display());
    view(home.path())
        .args(["--card", &spec, "card", "init"])
        .assert()
        .success();
    view(home.path())
        .args(["card", "info", "--card", &spec])
        .assert()
        .success()
        .stdout(predicate::str::contains("elsewhere.state"));
    // A document and a command at once is a usage error, not a silent choice.
    view(home.path())
        .args(["a.tly", "b.key", "card", "info"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("can't be combined"));
}
