//! `tally-view trail vouch` against a real `tally-pack serve` on loopback (real SQLite
//! registry): the server is the one the keyfile names; the validator record is appended and
//! a fast start uses it; a `--server-key` that is not the keyfile's is refused (exit 1), a
//! server without a keyfile and an unreachable server are usage failures (exit 2); a trail
//! tampered before the validator is caught by the chain hash (exit 1), also by `trail
//! verify` (signature).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;
use tally_core::card::CardIdentity;
use tally_core::crypto::PublicKey;
use tally_core::home::Home;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_tests::{Server, http, view_at};

fn view(dir: &Path) -> Command {
    view_at(&dir.join("home"))
}

fn serve(dir: &Path) -> (Server, String) {
    tally_tests::serve(dir, "127.0.0.1:0", &[])
}

/// `GET /v1/server-key`; the public key's hex.
fn server_key_hex(url: &str) -> String {
    let (code, body) = http(url, "/v1/server-key", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["public_key"].as_str().unwrap().to_string()
}

#[test]
fn vouch_appends_a_validator_that_fast_starts_and_catches_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let package = tally_tests::publisher_and_reader(dir, &dir.join("home"));
    let card = dir.join("reader.card");
    let (identity, _) = CardIdentity::from_export(&std::fs::read(&card).unwrap()).unwrap();
    let trail_path = Home::new(dir.join("home")).trail_path(&identity.serial);
    for _ in 0..3 {
        view(dir).args(["trail", "verify"]).assert().success();
    }
    let (server, url) = serve(dir);
    let key_hex = server_key_hex(&url);
    let key = PublicKey::from_sec1(&hex::decode(&key_hex).unwrap()).unwrap();
    // The server to vouch is the one a licence names.
    let keyfile = dir.join("ada.tkey");
    tally_tests::pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card", "--package"])
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .args(["--server", &url])
        .assert()
        .success();
    let kf = keyfile.to_str().unwrap();

    // Vouched: genesis + 3 nonce records, then vouch's own ValidateTrail nonce.
    let out = view(dir)
        .args(["trail", "vouch", "--json", "--keyfile", kf, "--server-key"])
        .arg(&key_hex)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let origin = identity.origin;
    assert_eq!(v["upto"].as_u64().unwrap(), origin + 4);
    assert_eq!(v["validator_counter"].as_u64().unwrap(), origin + 5);
    // The server key is now one of the home's trusted validation servers.
    assert_eq!(v["newly_trusted"], true, "{v}");
    let home = Home::new(dir.join("home"));
    assert_eq!(home.trusted_validators().unwrap(), vec![key.clone()]);

    // A fresh ValidateTrail trusting the key starts from the validator.
    let mut t = Trail::open(&trail_path, &identity).unwrap();
    t.set_trusted_validators(vec![key.clone()]);
    assert_eq!(t.verify_offline().unwrap(), 1); // only the validator record itself
    assert_eq!(t.vouched().unwrap().upto, origin + 4);
    // `trail verify` with no flags starts from it too (the home trusts the key), and says so.
    let out = view(dir)
        .args(["trail", "verify", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fast_start"]["upto"].as_u64(), Some(origin + 4), "{v}");
    assert_eq!(
        v["fast_start"]["validator_counter"].as_u64(),
        Some(origin + 5)
    );
    assert_eq!(
        v["fast_start"]["server_key"].as_str(),
        Some(hex::encode(key.fingerprint()).as_str())
    );
    // Signatures checked: the validator record and the two nonce records after it.
    assert_eq!(v["newly_verified"].as_u64(), Some(2), "{v}");
    view(dir)
        .args(["trail", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "vouched for counters up to {} (its record at counter {}), checked by its chain hash",
            origin + 4,
            origin + 5
        )));
    view(dir)
        .args(["trail", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("validator up to counter"))
        .stdout(predicate::str::contains(format!(
            "vouched for: counters up to {},",
            origin + 4
        )));
    // Without the home's list: full validation; --server-key trusts the key for one run.
    let validators = home.validators_path();
    let list = std::fs::read(&validators).unwrap();
    std::fs::remove_file(&validators).unwrap();
    let v: serde_json::Value = serde_json::from_slice(
        &view(dir)
            .args(["trail", "verify", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["fast_start"], serde_json::Value::Null, "{v}");
    let v: serde_json::Value = serde_json::from_slice(
        &view(dir)
            .args(["trail", "verify", "--json", "--server-key"])
            .arg(&key_hex)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["fast_start"]["upto"].as_u64(), Some(origin + 4), "{v}");
    view(dir)
        .args(["trail", "verify", "--server-key", "abcd"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--server-key must be 130 hex digits",
        ));
    std::fs::write(&validators, &list).unwrap();

    // A key that is not the keyfile's server's: refused before anything is sent (exit 1).
    let other = tally_core::validation::ServerSecret::random(&mut rand_core::OsRng);
    view(dir)
        .args(["trail", "vouch", "--keyfile", kf, "--server-key"])
        .arg(hex::encode(other.public().as_bytes()))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "is not the validation server the keyfile",
        ));
    // A server named without a keyfile is not one to vouch: usage (exit 2), even when its
    // key is in the home's list.
    view(dir)
        .args(["trail", "vouch", "--server", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keyfile"));
    // The keyfile's server reached at an address where nothing answers: exit 2.
    view(dir)
        .args(["trail", "vouch", "--keyfile", kf, "--server", "http://127.0.0.1:9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot reach the validation server"));

    // Tamper with a record before the validator (a different nonce record body).
    let bytes = std::fs::read(&trail_path).unwrap();
    let mut records = parse_frames(&bytes[HEADER_LEN..], HEADER_LEN as u64, 0)
        .unwrap()
        .records;
    records[2].body = Body::now(Usage::Open {
        licence: LicenceId([7; 16]),
    })
    .encode()
    .into_bytes();
    let mut out = Header::for_card(&identity, origin).encode().to_vec();
    for r in &records {
        out.extend(encode_frame(r));
    }
    std::fs::write(&trail_path, out).unwrap();
    view(dir)
        .args(["trail", "vouch", "--keyfile", kf])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("chain hash"));
    // Trusting the server, verify finds it by the chain hash; without, by record 2's signature.
    view(dir)
        .args(["trail", "verify"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("chain hash"));
    std::fs::remove_file(&validators).unwrap();
    view(dir)
        .args(["trail", "verify"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("record 2"));
    std::fs::write(&validators, &list).unwrap();

    // Put back, it verifies; vouching again keeps the key listed once.
    std::fs::write(&trail_path, &bytes).unwrap();
    view(dir).args(["trail", "verify"]).assert().success();
    let out = view(dir)
        .args(["trail", "vouch", "--json", "--keyfile", kf])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["newly_trusted"], false, "{v}");
    assert_eq!(home.trusted_validators().unwrap(), vec![key.clone()]);

    // A damaged list of trusted servers is an error naming the line, never ignored.
    let mut bad = list.clone();
    bad.extend_from_slice(b"not a key\n");
    std::fs::write(&validators, &bad).unwrap();
    let bad_line = format!(
        "validators, line {}",
        bad.split(|b| *b == b'\n').count() - 1
    );
    for args in [
        &["trail", "verify"][..],
        &["trail", "show"],
        &["trail", "vouch", "--keyfile", kf],
    ] {
        view(dir)
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(&bad_line));
    }
    std::fs::write(&validators, &list).unwrap();

    // With the server gone, vouch is a usage failure (exit 2).
    drop(server);
    view(dir)
        .args(["trail", "vouch", "--keyfile", kf])
        .assert()
        .code(2);
}
