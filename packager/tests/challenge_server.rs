//! The publisher's nonce challenge (\[0104\]) against a real `tally-pack serve` on loopback,
//! and `tally-pack audit --customer NAME` from the server's backup, each test once on the
//! SQLite registry and once on a fresh PostgreSQL database (`support/pg.rs`):
//! `POST /v1/challenge` hands out the newest open challenge signed with the server key (204
//! when none, 400 for a body that is not a serial); an answer found in a trail the server
//! vouches for stops the hand-out and shows in the audit at its counter; a backup made
//! before the challenge, a replayed answer to an older challenge and a hand-edited record
//! holding the nonce all leave it pending; a damaged backup is refused by name.

#![allow(clippy::unwrap_used)]

use predicates::prelude::*;
use std::path::PathBuf;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::crypto::{PublicKey, default_verifier};
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::validation::{Challenge, open_challenge, seal_trail_request};

#[allow(
    dead_code,
    reason = "each test file is its own crate and uses only part of the shared set-up"
)]
mod support;
use support::{Backend, Env, NewCard, on_both_databases, post_bytes, server_key};

on_both_databases!(
    a_challenge_is_handed_out_answered_and_audited_from_the_backup,
    old_backups_replayed_answers_and_edited_records_leave_a_challenge_pending,
);

/// Ada: an emulated card registered as a customer, a licence issued to her, her trail.
struct Ada {
    card_path: PathBuf,
    trail_path: PathBuf,
    identity: CardIdentity,
    licence: LicenceId,
}

impl Env {
    /// Ada with a trail of genesis, an opening and a print of her licence.
    fn ada(&self) -> Ada {
        let NewCard {
            path: card_path,
            identity,
            ..
        } = self.customer_card("Ada", "ada", 500, None);
        let package = self.path("packages/doc.tly");
        self.pack_sample(&package).assert().success();
        let out = self
            .issue_cmd("Ada", &package, "ada.tkey", &["--pages", "50"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let licence = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("licence: "))
            .and_then(|l| LicenceId::from_hex(l.trim()))
            .unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let trail_path = self.path("ada.trail");
        let mut trail = Trail::create(&trail_path, &mut card, &identity).unwrap();
        trail
            .write(&mut card, &Body::now(Usage::Open { licence }))
            .unwrap();
        trail
            .write(&mut card, &Body::now(Usage::Print { licence, pages: 2 }))
            .unwrap();
        Ada {
            card_path,
            trail_path,
            identity,
            licence,
        }
    }

    /// `tally-pack challenge --customer Ada --json`: the nonce, hex.
    fn challenge(&self) -> String {
        self.json(&["challenge", "--customer", "Ada", "--json"])["challenge"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `tally-pack audit --customer Ada --json` (from the server's backup).
    fn audit(&self) -> serde_json::Value {
        self.json(&["audit", "--customer", "Ada", "--json"])
    }

    /// Overwrites the stored backup's envelope (a damaged database row).
    fn damage_backup(&self, serial_hex: &str) {
        let sql = "UPDATE trail_backups SET envelope = $1 WHERE serial = $2";
        let junk = vec![0x42u8; 300];
        if let Some(pg) = &self.pg {
            let mut c = ::postgres::Client::connect(&pg.url, ::postgres::NoTls).unwrap();
            c.execute(sql, &[&junk, &serial_hex]).unwrap();
        } else {
            rusqlite::Connection::open(self.dir.join("vendor/registry.sqlite"))
                .unwrap()
                .execute(&sql.replace('$', "?"), rusqlite::params![junk, serial_hex])
                .unwrap();
        }
    }
}

impl Ada {
    fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }
    fn write(&self, body: &Body) -> u64 {
        let mut t = Trail::open(&self.trail_path, &self.identity).unwrap();
        t.write(&mut self.card(), body).unwrap().counter
    }
}

/// Asks for Ada's pending challenge: the verified challenge, or `None` on 204.
fn fetch(url: &str, key: &PublicKey, ada: &Ada) -> Option<Challenge> {
    let (status, _, body) = post_bytes(url, "/v1/challenge", &ada.identity.serial.0);
    match status {
        204 => None,
        200 => Some(
            open_challenge(
                &body,
                key,
                &ada.identity.serial,
                time::OffsetDateTime::now_utc().unix_timestamp(),
                default_verifier(),
            )
            .unwrap(),
        ),
        s => panic!("HTTP {s}: {}", String::from_utf8_lossy(&body)),
    }
}

/// Sends trail bytes for vouching; the HTTP status.
fn send(url: &str, key: &PublicKey, ada: &Ada, trail: &[u8]) -> u16 {
    let env = seal_trail_request(key, &ada.identity.serial, trail, &mut rand_core::OsRng).unwrap();
    post_bytes(url, "/v1/trail/validate", &env).0
}

fn challenges(audit: &serde_json::Value) -> Vec<(String, String, Option<u64>)> {
    audit["challenges"]
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
        .collect()
}

fn a_challenge_is_handed_out_answered_and_audited_from_the_backup(db: Backend) {
    let Some(env) = Env::new(
        db,
        "a_challenge_is_handed_out_answered_and_audited_from_the_backup",
    ) else {
        return;
    };
    let ada = env.ada();
    let server = env.serve(&[]);
    let key = server_key(&server.url);

    // Nothing pending yet; no backup yet, so no audit without a file.
    assert_eq!(fetch(&server.url, &key, &ada), None);
    env.cmd(&["audit", "--customer", "Ada"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the validation server holds no backup of Ada's trail",
        ));
    // Bodies that are not a serial: 400, naming what was expected.
    for bad in [&[][..], &[1u8; 15][..], &[1u8; 17][..]] {
        let (status, _, body) = post_bytes(&server.url, "/v1/challenge", bad);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("16-byte serial"));
    }
    let (status, _, _) = post_bytes(&server.url, "/v1/challenge", &[0u8; 65]);
    assert_eq!(status, 413);
    // An unknown card: nothing pending (the customer list is not probed this way).
    let (status, _, _) = post_bytes(&server.url, "/v1/challenge", &[9u8; 16]);
    assert_eq!(status, 204);

    // Issued: the server hands out the newest open challenge, signed for Ada's card.
    let first = env.challenge();
    let second = env.challenge();
    let c = fetch(&server.url, &key, &ada).unwrap();
    assert_eq!(c.nonce_hex(), second, "the newest");
    assert_ne!(first, second);
    let listed = env.json(&["challenge", "--list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[1]["state"], "pending");

    // Ada's card writes the answer; the trail goes to the server for vouching.
    let at = time::OffsetDateTime::now_utc().unix_timestamp();
    let counter = ada.write(&c.answer_body(&key, at));
    assert_eq!(
        send(
            &server.url,
            &key,
            &ada,
            &std::fs::read(&ada.trail_path).unwrap()
        ),
        200
    );
    // Seen answered: the older one is handed out now, the answered one never again.
    assert_eq!(
        fetch(&server.url, &key, &ada).unwrap().nonce_hex(),
        first,
        "the older, still open"
    );

    let v = env.audit();
    assert_eq!(v["source"], "server-backup", "{v}");
    assert_eq!(v["trail"], serde_json::Value::Null);
    assert_eq!(v["last_counter"].as_u64(), Some(counter));
    assert_eq!(v["server_backup"]["upto"].as_u64(), Some(counter));
    assert_eq!(
        challenges(&v),
        vec![
            (first.clone(), "pending".to_string(), None),
            (second.clone(), "answered".to_string(), Some(counter)),
        ],
        "{v}"
    );
    assert!(v["complete_up_to"].is_string(), "{v}");
    assert_eq!(v["licences"][0]["licence"], ada.licence.to_hex());
    assert_eq!(v["licences"][0]["opens"], 1);
    assert_eq!(v["licences"][0]["printed_pages"], 2);
    env.cmd(&["audit", "--customer", "Ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "trail: the validation server's backup of card",
        ))
        .stdout(predicate::str::contains(format!(
            "and it ends at counter {counter}"
        )))
        .stdout(predicate::str::contains(format!(
            "challenge {}… (issued ",
            &second[..16]
        )))
        .stdout(predicate::str::contains(format!(
            "answered at counter {counter}: the records up to it hold all use on the card up to"
        )))
        .stdout(predicate::str::contains("pending: not in this trail"))
        .stdout(predicate::str::contains("1 opening"));
    env.cmd(&["audit", "--customer", "Ada", "--csv"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{},", ada.licence)));
    // The same trail as a file, with the server key: the same answer found.
    let v = env.json(&[
        "audit",
        ada.trail_path.to_str().unwrap(),
        "--customer",
        "Ada",
        "--own-server",
        "--json",
    ]);
    assert_eq!(v["source"], "file");
    assert_eq!(challenges(&v)[1].1, "answered");
    // Without the key, a file audit says it did not check them.
    env.cmd(&[
        "audit",
        ada.trail_path.to_str().unwrap(),
        "--customer",
        "Ada",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("not checked"));

    // A backup damaged in the database is refused by name, never audited.
    env.damage_backup(&ada.identity.serial.to_hex());
    env.cmd(&["audit", "--customer", "Ada"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not decrypt"));
}

fn old_backups_replayed_answers_and_edited_records_leave_a_challenge_pending(db: Backend) {
    let Some(env) = Env::new(
        db,
        "old_backups_replayed_answers_and_edited_records_leave_a_challenge_pending",
    ) else {
        return;
    };
    let ada = env.ada();
    let server = env.serve(&[]);
    let key = server_key(&server.url);

    // A backup made before the challenge: the challenge is pending.
    assert_eq!(
        send(
            &server.url,
            &key,
            &ada,
            &std::fs::read(&ada.trail_path).unwrap()
        ),
        200
    );
    let one = env.challenge();
    let v = env.audit();
    assert_eq!(
        challenges(&v),
        vec![(one.clone(), "pending".to_string(), None)]
    );
    assert_eq!(v["complete_up_to"], serde_json::Value::Null);

    // Answered and sent: challenge one is answered.
    let c1 = fetch(&server.url, &key, &ada).unwrap();
    let counter = ada.write(&c1.answer_body(&key, 1_780_000_000));
    let answered_trail = std::fs::read(&ada.trail_path).unwrap();
    assert_eq!(send(&server.url, &key, &ada, &answered_trail), 200);

    // Challenge two: the old answer, sent again (a replay), does not answer it.
    let two = env.challenge();
    assert_eq!(send(&server.url, &key, &ada, &answered_trail), 200);
    let v = env.audit();
    assert_eq!(
        challenges(&v),
        vec![
            (one.clone(), "answered".to_string(), Some(counter)),
            (two.clone(), "pending".to_string(), None),
        ]
    );

    // Challenge two's nonce copied into the answer record by hand (the card never signed
    // it): the server refuses the trail, the audit still says pending, and the edited file
    // fails its audit by signature.
    let c2 = fetch(&server.url, &key, &ada).unwrap();
    assert_eq!(c2.nonce_hex(), two);
    let mut records = parse_frames(&answered_trail[HEADER_LEN..], HEADER_LEN as u64, 0)
        .unwrap()
        .records;
    let last = records.len() - 1;
    records[last].body = c2.answer_body(&key, 1_780_000_000).encode().into_bytes();
    let mut edited = Header::for_card(&ada.identity, ada.identity.origin)
        .encode()
        .to_vec();
    for r in &records {
        edited.extend(encode_frame(r));
    }
    assert_eq!(send(&server.url, &key, &ada, &edited), 422);
    let v = env.audit();
    assert_eq!(
        challenges(&v)[1],
        (two.clone(), "pending".to_string(), None)
    );
    let edited_path = env.dir.join("edited.trail");
    std::fs::write(&edited_path, &edited).unwrap();
    env.cmd(&[
        "audit",
        edited_path.to_str().unwrap(),
        "--customer",
        "Ada",
        "--own-server",
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("signature"));

    // The card's own answer to two counts.
    let counter2 = ada.write(&c2.answer_body(&key, 1_780_000_100));
    assert_eq!(
        send(
            &server.url,
            &key,
            &ada,
            &std::fs::read(&ada.trail_path).unwrap()
        ),
        200
    );
    assert_eq!(fetch(&server.url, &key, &ada), None, "nothing pending");
    let v = env.audit();
    assert_eq!(
        challenges(&v),
        vec![
            (one, "answered".to_string(), Some(counter)),
            (two, "answered".to_string(), Some(counter2)),
        ]
    );
}
