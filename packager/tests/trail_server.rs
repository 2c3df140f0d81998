//! `POST /v1/trail/validate` of a real `tally-pack serve` on loopback with its real SQLite
//! registry (\[0094\], \[0062\]): a reader's trail (emulated card) is vouched for, the signed
//! validator is appended by the card, and a fresh ValidateTrail trusting the server key
//! fast-starts from it; a forged validator and a trail tampered before the validator are
//! refused; the encrypted trail is kept as the card's backup, newest first. Every test
//! runs on the SQLite registry and on a fresh PostgreSQL database (`support/pg.rs`); a
//! restore request replayed to two nodes at once is served once.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity, Serial};
use tally_core::crypto::PublicKey;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::validator::check_answer;
use tally_core::trail::{Body, LicenceId, Record, Trail, Usage};
use tally_core::validation::{
    ServerSecret, restore_request_body, seal_restore_request, seal_trail_request,
};

#[allow(
    dead_code,
    reason = "each test file is its own crate and uses only part of the shared set-up"
)]
mod support;
use support::{Backend, Env, NewCard, on_both_databases, post_to, server_key};

const LIC: LicenceId = LicenceId([0x5a; 16]);

struct Reader {
    card_path: PathBuf,
    trail_path: PathBuf,
    identity: CardIdentity,
}

impl Env {
    /// A reader with an emulated card and a trail of genesis + `n` records; registered as
    /// customer `name` when `register`.
    fn reader(&self, name: &str, n: u32, register: bool) -> Reader {
        let NewCard {
            path: card_path,
            identity,
            export,
        } = self.emulated_card(name, 100, Some("test card"));
        if register {
            self.add_customer(name, &export);
        }
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let trail_path = self.path(&format!("{name}.trail"));
        let mut trail = Trail::create(&trail_path, &mut card, &identity).unwrap();
        for i in 0..n {
            trail.write(&mut card, &usage(i)).unwrap();
        }
        Reader {
            card_path,
            trail_path,
            identity,
        }
    }

    /// The stored backup of `serial`: (upto, records, envelope), read from the database
    /// directly.
    fn backup(&self, serial: &Serial) -> Option<(String, i64, Vec<u8>)> {
        if let Some(pg) = &self.pg {
            let mut c = ::postgres::Client::connect(&pg.url, ::postgres::NoTls).unwrap();
            return c
                .query_opt(
                    "SELECT upto, records, envelope FROM trail_backups WHERE serial = $1",
                    &[&serial.to_hex()],
                )
                .unwrap()
                .map(|r| (r.get(0), r.get(1), r.get(2)));
        }
        use rusqlite::OptionalExtension as _;
        rusqlite::Connection::open(self.dir.join("vendor/registry.sqlite"))
            .unwrap()
            .query_row(
                "SELECT upto, records, envelope FROM trail_backups WHERE serial = ?1",
                [serial.to_hex()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .unwrap()
    }
}

fn usage(i: u32) -> Body {
    Body::now(match i % 3 {
        0 => Usage::Open { licence: LIC },
        1 => Usage::Pages {
            licence: LIC,
            first: i,
            count: 4,
        },
        _ => Usage::Print {
            licence: LIC,
            pages: 2,
        },
    })
}

impl Reader {
    fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.trail_path).unwrap()
    }
    fn records(&self) -> Vec<Record> {
        let b = self.bytes();
        parse_frames(&b[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records
    }
    fn open(&self, trusted: &[PublicKey]) -> Trail {
        let mut t = Trail::open(&self.trail_path, &self.identity).unwrap();
        t.set_trusted_validators(trusted.to_vec());
        t
    }
    fn write(&self, body: &Body) {
        self.open(&[]).write(&mut self.card(), body).unwrap();
    }
    /// Appends a server's answer: its totals records and validator, in one batch.
    fn append(&self, v: &tally_core::trail::validator::Vouching) {
        let bodies: Vec<Body> = v.bodies().cloned().collect();
        self.open(&[]).write_all(&mut self.card(), &bodies).unwrap();
    }
    fn rewrite(&self, records: &[Record]) {
        let mut out = Header::for_card(&self.identity, self.identity.origin)
            .encode()
            .to_vec();
        for r in records {
            out.extend(encode_frame(r));
        }
        std::fs::write(&self.trail_path, out).unwrap();
    }
}

/// POSTs `body` to the trail endpoint; returns the HTTP status, the `x-tally-check`
/// header and the body.
fn post(url: &str, body: &[u8]) -> (u16, Option<String>, String) {
    post_to(url, "/v1/trail/validate", body)
}

/// Sends `reader`'s trail and returns the envelope sent and the HTTP reply.
fn send(url: &str, key: &PublicKey, reader: &Reader) -> (Vec<u8>, (u16, Option<String>, String)) {
    let env = seal_trail_request(
        key,
        &reader.identity.serial,
        &reader.bytes(),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let reply = post(url, &env);
    (env, reply)
}

fn a_vouched_trail_fast_starts_and_is_backed_up(db: Backend) {
    let Some(env) = Env::new(db, "a_vouched_trail_fast_starts_and_is_backed_up") else {
        return;
    };
    let ada = env.reader("Ada", 30, true);
    let server = env.serve(&[]);
    let key = server_key(&server.url);

    let (sent, (status, _, answer)) = send(&server.url, &key, &ada);
    assert_eq!(status, 200, "{answer}");
    let vouching = check_answer(
        answer.as_bytes(),
        &key,
        &ada.identity,
        ada.identity.origin,
        &ada.records(),
    )
    .unwrap();
    assert_eq!(vouching.upto(), 130); // genesis at 100, then 30 records
    let [part] = &vouching.parts[..] else {
        panic!("{vouching:?}")
    };
    let Usage::Totals(p) = &part.usage else {
        panic!("{part:?}")
    };
    assert_eq!(p.totals.len(), 1);
    assert_eq!(
        (p.totals[0].opens, p.totals[0].pages, p.totals[0].prints),
        (10, 40, 20)
    );
    ada.append(&vouching); // counters 131 and 132, signed by the card
    ada.write(&usage(0)); // 133

    // The backup: the envelope exactly as sent (still encrypted), vouching up to 130.
    let (upto, records, stored) = env.backup(&ada.identity.serial).unwrap();
    assert_eq!((upto.as_str(), records), ("00000000000000000130", 31));
    assert_eq!(stored, sent);

    // A fresh ValidateTrail trusting the server key starts from the validator.
    let mut t = ada.open(std::slice::from_ref(&key));
    let r = t.verify(&mut ada.card()).unwrap();
    assert_eq!(t.vouched().unwrap().upto, 130);
    assert_eq!(r.newly_verified, 4); // the totals, the validator, the open, the nonce record
    let later: Vec<Body> = t.unvouched_bodies().map(|(_, b)| b).collect();
    let fast = tally_core::policy::Tally::resume(LIC, &[key.fingerprint()], t.vouched(), &later);
    assert_eq!((fast.opens, fast.page_views, fast.printed), (11, 40, 20));
    // Without trust, the same trail validates in full.
    let full = ada.open(&[]).verify(&mut ada.card()).unwrap();
    assert_eq!(full.newly_verified, full.records);

    // A second request vouches for more and replaces the backup.
    let (sent2, (status, _, answer2)) = send(&server.url, &key, &ada);
    assert_eq!(status, 200, "{answer2}");
    ada.append(
        &check_answer(
            answer2.as_bytes(),
            &key,
            &ada.identity,
            ada.identity.origin,
            &ada.records(),
        )
        .unwrap(),
    );
    let (upto, _, stored) = env.backup(&ada.identity.serial).unwrap();
    assert_eq!(upto, "00000000000000000135");
    assert_eq!(stored, sent2);
    let mut t = ada.open(std::slice::from_ref(&key));
    t.verify_offline().unwrap();
    assert_eq!(t.vouched().unwrap().upto, 135);
}

fn forged_validators_and_tampered_trails_are_refused(db: Backend) {
    let Some(env) = Env::new(db, "forged_validators_and_tampered_trails_are_refused") else {
        return;
    };
    let ada = env.reader("Ada", 12, true);
    let server = env.serve(&[]);
    let key = server_key(&server.url);
    let forger = ServerSecret::random(&mut rand_core::OsRng);

    // An answer checked against another key (a forger's, or a man in the middle's) is refused.
    let (_, (status, _, answer)) = send(&server.url, &key, &ada);
    assert_eq!(status, 200, "{answer}");
    let err = check_answer(
        answer.as_bytes(),
        forger.public(),
        &ada.identity,
        ada.identity.origin,
        &ada.records(),
    )
    .unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");

    // A validator signed by a forger but naming the server's key, appended by the card.
    let mut forged = tally_core::trail::validator::vouch(
        &forger,
        &ada.identity,
        &ada.bytes(),
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .unwrap();
    if let Usage::Validator(v) = &mut forged.validator.usage {
        v.server_key = key.fingerprint();
    }
    let good = ada.records();
    ada.append(&forged);
    let err = ada
        .open(std::slice::from_ref(&key))
        .verify(&mut ada.card())
        .unwrap_err();
    assert_eq!(
        (err.check(), err.record()),
        ("validator", Some(14)),
        "{err}"
    );
    ada.rewrite(&good);
    // (The card counter moved on; only chain checks below, no more writes on this card.)

    // A genuine validator, then a record before it changed: caught by the chain hash.
    let bob = env.reader("Bob", 12, true);
    let (_, (status, _, answer)) = send(&server.url, &key, &bob);
    assert_eq!(status, 200, "{answer}");
    bob.append(
        &check_answer(
            answer.as_bytes(),
            &key,
            &bob.identity,
            bob.identity.origin,
            &bob.records(),
        )
        .unwrap(),
    );
    let good = bob.records();
    let mut bad = good.clone();
    // A different body: 99 printed pages where the record said something else.
    bad[4].body = Body::now(Usage::Print {
        licence: LIC,
        pages: 99,
    })
    .encode()
    .into_bytes();
    assert_ne!(bad[4].body, good[4].body);
    bob.rewrite(&bad);
    let err = bob
        .open(std::slice::from_ref(&key))
        .verify(&mut bob.card())
        .unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert!(err.to_string().contains("chain hash"), "{err}");
    // The server refuses to vouch for it, naming the check; the backup stays the good one.
    let before = env.backup(&bob.identity.serial).unwrap();
    let (_, (status, check, text)) = send(&server.url, &key, &bob);
    assert_eq!(status, 422, "{text}");
    assert_eq!(check.as_deref(), Some("signature"), "{text}");
    assert!(text.contains("record 4"), "{text}");
    assert_eq!(env.backup(&bob.identity.serial).unwrap(), before);
    bob.rewrite(&good);
    bob.open(std::slice::from_ref(&key))
        .verify(&mut bob.card())
        .unwrap();

    // A card nobody registered, an envelope for another server, garbage.
    let eve = env.reader("Eve", 2, false);
    let (_, (status, _, text)) = send(&server.url, &key, &eve);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no customer"), "{text}");
    let (_, (status, _, text)) = send(&server.url, forger.public(), &bob);
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = post(&server.url, b"not a request");
    assert_eq!(status, 400, "{text}");
    // A declared length over the limit is refused before anything is read.
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v1/trail/validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        tally_core::validation::MAX_TRAIL_ENVELOPE + 1
    );
    std::io::Write::write_all(&mut tcp, head.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut tcp, &mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Bob's trail sent under Ada's serial is checked against Ada's card and refused.
    let env_wrong = seal_trail_request(
        &key,
        &ada.identity.serial,
        &bob.bytes(),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (status, check, text) = post(&server.url, &env_wrong);
    assert_eq!(
        (status, check.as_deref()),
        (422, Some("wrong-card")),
        "{text}"
    );
}

fn the_backup_survives_a_server_restart_and_is_not_replaced_by_an_older_trail(db: Backend) {
    let Some(env) = Env::new(
        db,
        "the_backup_survives_a_server_restart_and_is_not_replaced_by_an_older_trail",
    ) else {
        return;
    };
    let ada = env.reader("Ada", 6, true);
    let old = ada.bytes();
    ada.write(&usage(1));
    let server = env.serve(&[]);
    let key = server_key(&server.url);
    let (sent, (status, _, text)) = send(&server.url, &key, &ada);
    assert_eq!(status, 200, "{text}");
    drop(server);
    let server = env.serve(&[]);
    assert_eq!(server_key(&server.url), key);
    // The older copy of the trail is still valid and vouched for, but does not replace the backup.
    let env_old =
        seal_trail_request(&key, &ada.identity.serial, &old, &mut rand_core::OsRng).unwrap();
    let (status, _, text) = post(&server.url, &env_old);
    assert_eq!(status, 200, "{text}");
    let (upto, _, stored) = env.backup(&ada.identity.serial).unwrap();
    assert_eq!(upto, "00000000000000000107");
    assert_eq!(stored, sent);
}

/// One card-signed restore request sent to two `serve` nodes on one database at once (a
/// replay racing the original): exactly one is served, the other refused as a replay; a
/// request not signed by the registered card is refused (and costs no backup decryption).
fn a_restore_request_raced_to_two_nodes_is_served_once(db: Backend) {
    let Some(env) = Env::new(db, "a_restore_request_raced_to_two_nodes_is_served_once") else {
        return;
    };
    let ada = env.reader("Ada", 8, true);
    let nodes = [env.serve(&[]), env.serve(&[])];
    let key = server_key(&nodes[0].url);
    let (_, (status, _, text)) = send(&nodes[0].url, &key, &ada);
    assert_eq!(status, 200, "{text}");
    // The trail is lost; each round signs a restore request on the card.
    std::fs::remove_file(&ada.trail_path).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for round in 0..4 {
        let body = restore_request_body(&key, now);
        let request =
            Trail::sign_detached(&ada.trail_path, &mut ada.card(), &ada.identity, &body).unwrap();
        let (envelope, _answer_key) =
            seal_restore_request(&key, &ada.identity.serial, &request, &mut rand_core::OsRng)
                .unwrap();
        let barrier = std::sync::Barrier::new(2);
        let replies: Vec<(u16, Option<String>, String)> = std::thread::scope(|s| {
            let hs: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let (url, envelope, barrier) = (&n.url, &envelope, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        post_to(url, "/v1/trail/restore", envelope)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let outcomes: Vec<(u16, Option<&str>)> =
            replies.iter().map(|r| (r.0, r.1.as_deref())).collect();
        let served = replies.iter().filter(|r| r.0 == 200).count();
        assert_eq!(served, 1, "round {round}: {outcomes:?}");
        let refused = replies.iter().find(|r| r.0 != 200).unwrap();
        assert_eq!(
            (refused.0, refused.1.as_deref()),
            (422, Some("replay")),
            "round {round}: {}",
            refused.2
        );
    }
    // Signed by another card, claiming Ada's serial: refused, naming the check.
    let eve = env.reader("Eve", 1, false);
    std::fs::remove_file(&eve.trail_path).unwrap();
    let body = restore_request_body(&key, now);
    let forged =
        Trail::sign_detached(&eve.trail_path, &mut eve.card(), &eve.identity, &body).unwrap();
    let (envelope, _) =
        seal_restore_request(&key, &ada.identity.serial, &forged, &mut rand_core::OsRng).unwrap();
    let (status, check, text) = post_to(&nodes[1].url, "/v1/trail/restore", &envelope);
    assert_eq!(
        (status, check.as_deref()),
        (422, Some("not-the-card")),
        "{text}"
    );
}

fn the_backup_is_extended_by_the_answer_and_by_nothing_else(db: Backend) {
    let Some(env) = Env::new(
        db,
        "the_backup_is_extended_by_the_answer_and_by_nothing_else",
    ) else {
        return;
    };
    let ada = env.reader("Ada", 10, true);
    let nodes = [env.serve(&[]), env.serve(&[])];
    let key = server_key(&nodes[0].url);
    let (sent, (status, _, answer)) = send(&nodes[0].url, &key, &ada);
    assert_eq!(status, 200, "{answer}");
    let before = ada.records().len();
    ada.append(
        &check_answer(
            answer.as_bytes(),
            &key,
            &ada.identity,
            ada.identity.origin,
            &ada.records(),
        )
        .unwrap(),
    );
    let written = ada.records()[before..].to_vec();
    let seal = |records: &[Record]| {
        tally_core::validation::seal_backup_extension(
            &key,
            &ada.identity,
            records,
            &mut rand_core::OsRng,
        )
        .unwrap()
    };
    // Ordinary use is no answer to a vouch: refused, the backup as it was.
    ada.write(&usage(0));
    let (status, check, text) = post_to(
        &nodes[1].url,
        "/v1/trail/extend",
        &seal(&ada.records()[before + 2..]),
    );
    assert_eq!((status, check.as_deref()), (409, None), "{text}");
    let (_, _, stored) = env.backup(&ada.identity.serial).unwrap();
    assert_eq!(stored, sent);
    // The answer, through another node: the backup now ends with the validator.
    let (status, _, text) = post_to(&nodes[1].url, "/v1/trail/extend", &seal(&written));
    assert_eq!(status, 200, "{text}");
    let validator = written.last().unwrap().counter;
    assert!(
        text.contains(&format!("up to counter {validator}")),
        "{text}"
    );
    let (upto, records, _) = env.backup(&ada.identity.serial).unwrap();
    assert_eq!(upto, format!("{validator:020}"));
    assert_eq!(records, before as i64 + 2);
    // Sent again: the backup already covers it.
    let (status, _, text) = post_to(&nodes[0].url, "/v1/trail/extend", &seal(&written));
    assert_eq!(status, 409, "{text}");
    // A card no customer has, garbage, an envelope for another server.
    let eve = env.reader("Eve", 2, false);
    let (status, _, text) = post_to(
        &nodes[0].url,
        "/v1/trail/extend",
        &tally_core::validation::seal_backup_extension(
            &key,
            &eve.identity,
            &eve.records(),
            &mut rand_core::OsRng,
        )
        .unwrap(),
    );
    assert_eq!(status, 404, "{text}");
    let (status, _, _) = post_to(&nodes[0].url, "/v1/trail/extend", b"garbage");
    assert_eq!(status, 400);
    let other = ServerSecret::random(&mut rand_core::OsRng);
    let (status, _, _) = post_to(
        &nodes[0].url,
        "/v1/trail/extend",
        &tally_core::validation::seal_backup_extension(
            other.public(),
            &ada.identity,
            &written,
            &mut rand_core::OsRng,
        )
        .unwrap(),
    );
    assert_eq!(status, 400);
}

on_both_databases!(
    the_backup_is_extended_by_the_answer_and_by_nothing_else,
    a_vouched_trail_fast_starts_and_is_backed_up,
    forged_validators_and_tampered_trails_are_refused,
    the_backup_survives_a_server_restart_and_is_not_replaced_by_an_older_trail,
    a_restore_request_raced_to_two_nodes_is_served_once,
);
