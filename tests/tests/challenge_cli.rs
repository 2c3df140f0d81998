//! The publisher's nonce challenge (EP 0 895 148 \[0104\]) through the shipped binaries and a
//! real `tally-pack serve`: the publisher challenges (`tally-pack challenge`), the reader's
//! viewer answers — headless (`tally-view trail answer`), or on its own when it opens the
//! licence (any viewer linking tally-core: `Opened::start`) — and `tally-pack audit
//! --customer` bills from the server's backup with no file from the reader.
//!
//! The attacks, each with the reader running our tools: a server of the reader's own can
//! neither plant a challenge in the publisher's name nor answer one for the publisher; a
//! nonce copied into a hand-edited trail fails verification; a backup made before the
//! challenge leaves it pending; an answer to an earlier challenge does not count for the next.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::card::CardIdentity;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::{ChallengeOutcome, OpenInputs, open_rental};
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, Usage};
use tally_core::vendor::VendorPublic;
use tally_tests::{http, issue, pack, pack_sample, publisher_and_reader, serve, view_at};

/// Acme's server running and Ada's keyfile naming it: (keyfile, package, server, url).
fn acme(dir: &Path, home: &Path) -> (PathBuf, PathBuf, tally_tests::Server, String) {
    let package = publisher_and_reader(dir, home);
    let (server, url) = serve(dir, "127.0.0.1:0", &[]);
    let keyfile = dir.join("ada.tkey");
    issue(
        dir,
        "Ada",
        &package,
        &keyfile,
        &["--pages", "100", "--server", &url],
    );
    (keyfile, package, server, url)
}

fn identity(dir: &Path) -> CardIdentity {
    CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap())
        .unwrap()
        .0
}

/// `tally-pack challenge --customer Ada --json` for the vendor of `dir`: the nonce, hex.
fn challenge(dir: &Path, customer: &str) -> String {
    let out = pack(dir)
        .args(["challenge", "--customer", customer, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["challenge"].as_str().unwrap().to_string()
}

/// `tally-pack audit --customer Ada --json`: the challenges as (nonce, status, counter).
fn audited(dir: &Path) -> (serde_json::Value, Vec<(String, String, Option<u64>)>) {
    let out = pack(dir)
        .args(["audit", "--customer", "Ada", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["challenge"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["counter"].as_u64(),
            )
        })
        .collect();
    (v, c)
}

/// `tally-view trail answer --keyfile KEYFILE --json` with extra arguments.
fn answer(home: &Path, keyfile: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = view_at(home);
    c.args(["trail", "answer", "--json", "--keyfile"])
        .arg(keyfile)
        .args(extra);
    c
}

/// The records on the reader's trail with a `challenge` body: (counter, server key, nonce).
fn challenge_records(home: &Path, id: &CardIdentity) -> Vec<(u64, String, String)> {
    let path = Home::new(home).trail_path(&id.serial);
    let mut t = tally_core::trail::Trail::open(&path, id).unwrap();
    t.verify_offline().unwrap();
    t.verified_bodies()
        .filter_map(|(c, b)| match b.usage {
            Usage::Challenge { server_key, nonce } => {
                Some((c, hex::encode(server_key), hex::encode(nonce)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_viewer_answers_and_the_publisher_bills_from_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (keyfile, package, _server, _url) = acme(dir, &home);
    let id = identity(dir);

    // Nothing pending: the headless answer says so and writes nothing.
    let out = answer(&home, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answered"], false, "{v}");

    // The month's end: a challenge. The reader opens the document in a viewer linking
    // tally-core (this test's own process, whose build the publisher registers; over real
    // HTTP); the challenge is answered in the background.
    let nonce = challenge(dir, "Ada");
    pack(dir)
        .args(["viewer", "register"])
        .arg(std::env::current_exe().unwrap())
        .assert()
        .success();
    let opened = open_rental(&OpenInputs {
        package: package.clone(),
        keyfile: keyfile.clone(),
        home: Home::new(&home),
        card: CardSpec::Emulated(None),
        trusted: vec![
            VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap())
                .unwrap(),
        ],
        clock: Arc::new(SystemClock),
        transport: Arc::new(tally_viewer::online::Http),
    })
    .unwrap();
    let (mut session, _document) = opened.start(Box::new(|| {})).unwrap();
    let start = Instant::now();
    let outcome = loop {
        session.tick(Instant::now(), true);
        if let Some(o) = session.server_contact() {
            break format!("{o:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the contact did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(
            session.server_contact(),
            Some(Ok(ChallengeOutcome::Answered(_)))
        ),
        "{outcome}"
    );
    drop(session);
    let records = challenge_records(&home, &id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].2, nonce);

    // The publisher's audit from the server's backup: answered at that counter, with the
    // opening billed; no file from the reader.
    let (v, challenges) = audited(dir);
    assert_eq!(
        challenges,
        vec![(nonce.clone(), "answered".to_string(), Some(records[0].0))],
        "{v}"
    );
    assert_eq!(v["licences"][0]["opens"], 1, "{v}");
    pack(dir)
        .args(["audit", "--customer", "Ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the validation server's backup"))
        .stdout(predicate::str::contains(format!(
            "answered at counter {}",
            records[0].0
        )))
        .stdout(predicate::str::contains("1 opening"));
    // Answered, so no longer handed out.
    let v: serde_json::Value =
        serde_json::from_slice(&answer(&home, &keyfile, &[]).output().unwrap().stdout).unwrap();
    assert_eq!(v["answered"], false, "{v}");

    // Next month, headless: `trail answer` answers the new challenge.
    let next = challenge(dir, "Ada");
    let out = answer(&home, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answered"], true, "{v}");
    assert_eq!(v["challenge"], next.as_str());
    let counter = v["counter"].as_u64().unwrap();
    let (_, challenges) = audited(dir);
    assert_eq!(challenges[1], (next, "answered".to_string(), Some(counter)));
    // `trail show` names the record for what it is.
    view_at(&home)
        .args(["trail", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "answer to the publisher's challenge",
        ));
}

#[test]
fn the_readers_own_server_neither_plants_nor_answers_a_challenge_for_the_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (keyfile, _package, _server, _url) = acme(dir, &home);
    let id = identity(dir);
    let acme_nonce = challenge(dir, "Ada");

    // The reader's own publisher and server (stock tools), the reader's card its customer,
    // and a challenge of its own pending for that card.
    let own = dir.join("mallory");
    std::fs::create_dir_all(own.join("packages")).unwrap();
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
        .arg(dir.join("reader.card"))
        .assert()
        .success();
    let (_own_server, own_url) = serve(&own, "127.0.0.1:0", &[]);
    challenge(&own, "Me");

    // Acme's licence pointed at the reader's server: its challenge is not signed with the
    // key Acme's keyfile names, so nothing is written (exit 1), by `trail answer` or by
    // `trail vouch`.
    view_at(&home).args(["trail", "verify"]).assert().success();
    for cmd in ["answer", "vouch"] {
        view_at(&home)
            .args(["trail", cmd, "--keyfile"])
            .arg(&keyfile)
            .args(["--server", &own_url])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "another validation server than the one the licence names",
            ));
    }
    assert!(challenge_records(&home, &id).is_empty());

    // Through a licence of the reader's own naming the reader's server, the card does sign
    // the reader's own challenge — and Acme's audit does not count it.
    let package = own.join("packages/own.tly");
    pack_sample(&own, &package);
    let own_key = own.join("me.tkey");
    issue(&own, "Me", &package, &own_key, &["--server", &own_url]);
    view_at(&home)
        .args(["trust", "add"])
        .arg(own.join("vendor/vendor.pub"))
        .assert()
        .success();
    let out = answer(&home, &own_key, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(challenge_records(&home, &id).len(), 1);
    let (code, _) = http(&own_url, "/v1/challenge", Some(&id.serial.0));
    assert_eq!(code, 204, "the reader's own challenge is answered");
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .success();
    let (_, challenges) = audited(dir);
    assert_eq!(
        challenges,
        vec![(acme_nonce.clone(), "answered".to_string(), challenges[0].2)],
        "trail vouch answered Acme's own challenge on the way"
    );
    // Acme's audit found its own answer, not the reader's-server record.
    let records = challenge_records(&home, &id);
    assert_eq!(records.len(), 2, "{records:?}");
    let acme_record = records.iter().find(|r| r.2 == acme_nonce).unwrap();
    assert_eq!(Some(acme_record.0), challenges[0].2);
}

#[test]
fn edited_trails_old_backups_and_replayed_answers_leave_a_challenge_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (keyfile, _package, _server, url) = acme(dir, &home);
    let id = identity(dir);
    let trail_path = Home::new(&home).trail_path(&id.serial);
    for _ in 0..2 {
        view_at(&home).args(["trail", "verify"]).assert().success();
    }
    // A backup made before the challenge: pending.
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .success();
    let one = challenge(dir, "Ada");
    let (_, c) = audited(dir);
    assert_eq!(c, vec![(one.clone(), "pending".to_string(), None)]);

    // The nonce (anyone may ask the server for it) copied by hand into a record of the
    // trail: the card never signed it. The viewer refuses to send the trail (exit 1), the
    // server refuses it when sent directly (422), and the challenge stays pending.
    let (code, signed) = http(&url, "/v1/challenge", Some(&id.serial.0));
    assert_eq!(code, 200);
    assert!(signed.contains(&one), "{signed}");
    let key_fp = signed
        .split(' ')
        .find_map(|w| w.strip_prefix("key="))
        .unwrap()
        .to_string();
    let honest = std::fs::read(&trail_path).unwrap();
    let mut records = parse_frames(&honest[HEADER_LEN..], HEADER_LEN as u64, 0)
        .unwrap()
        .records;
    let mut fp = [0u8; 32];
    hex::decode_to_slice(&key_fp, &mut fp).unwrap();
    let mut nonce = [0u8; 32];
    hex::decode_to_slice(&one, &mut nonce).unwrap();
    let last = records.len() - 1;
    records[last].body = Body::now(Usage::Challenge {
        server_key: fp,
        nonce,
    })
    .encode()
    .into_bytes();
    let mut edited = Header::for_card(&id, id.origin).encode().to_vec();
    for r in &records {
        edited.extend(encode_frame(r));
    }
    std::fs::write(&trail_path, &edited).unwrap();
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .code(1);
    let key = {
        let (_, k) = http(&url, "/v1/server-key", None);
        let v: serde_json::Value = serde_json::from_str(&k).unwrap();
        tally_core::crypto::PublicKey::from_sec1(
            &hex::decode(v["public_key"].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    };
    let envelope = tally_core::validation::seal_trail_request(
        &key,
        &id.serial,
        &edited,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (code, body) = http(&url, "/v1/trail/validate", Some(&envelope));
    assert_eq!(code, 422, "{body}");
    let (_, c) = audited(dir);
    assert_eq!(c, vec![(one.clone(), "pending".to_string(), None)]);
    // The edited file, sent to the publisher, fails its audit by signature.
    let sent = dir.join("sent.trail");
    std::fs::write(&sent, &edited).unwrap();
    pack(dir)
        .args(["audit"])
        .arg(&sent)
        .args(["--customer", "Ada", "--own-server"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("signature"));

    // The honest trail back; the card answers challenge one.
    std::fs::write(&trail_path, &honest).unwrap();
    let out = answer(&home, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answered_at = v["counter"].as_u64().unwrap();
    let answered_trail = std::fs::read(&trail_path).unwrap();

    // Challenge two. The trail holding answer one, sent again (a replay), and a backup of
    // it: challenge two is pending, one stays answered.
    let two = challenge(dir, "Ada");
    let envelope = tally_core::validation::seal_trail_request(
        &key,
        &id.serial,
        &answered_trail,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (code, body) = http(&url, "/v1/trail/validate", Some(&envelope));
    assert_eq!(code, 200, "{body}");
    let (_, c) = audited(dir);
    assert_eq!(
        c,
        vec![
            (one.clone(), "answered".to_string(), Some(answered_at)),
            (two.clone(), "pending".to_string(), None),
        ]
    );
    // Answered by the card, it counts.
    let out = answer(&home, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, c) = audited(dir);
    assert_eq!(c[1].1, "answered");
}
