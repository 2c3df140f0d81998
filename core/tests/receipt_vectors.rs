//! Return-receipt test vectors as files (age style), under `tests/data/receipt/`, for the
//! card `tests/data/receipt-card.pub` (issue 13, T38). Each file: header lines (`expect:`
//! `ok` or the check that refuses it, as `ReceiptError::check` names it; `comment:`), a
//! blank line, then the receipt's bytes in hex. Unknown header keys fail the test. Every
//! vector goes through `Receipt::parse` on the bytes and on the file read back, then
//! `Receipt::verify` against the vector card, as the publisher checks it (for the licence
//! the receipt returns). `tally-pack returns` and `POST /v1/return` run the same files
//! (packager/tests/returns.rs).
//!
//! `UPDATE_VECTORS=1 cargo test -p tally-core --test receipt_vectors` regenerates them
//! (deterministic: fixed keys, RFC 6979 signatures, fixed nonces).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::{PublicKey, Signature, sign_low_s};
use tally_core::receipt::{RECEIPT_HEADER_LEN, Receipt};
use tally_core::trail::{Body, LicenceId, Record, Usage};

/// The licence the vectors return (the packager's test registers it for the vector card).
const LICENCE: LicenceId = LicenceId([0xab; 16]);
/// A second licence of the same card (the packager's test registers it too).
const OTHER_LICENCE: LicenceId = LicenceId([0xcd; 16]);

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn key(seed: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap()
}

/// The vector card (`receipt-card.pub`).
fn card() -> CardIdentity {
    let (id, _) =
        CardIdentity::from_export(&std::fs::read(data("receipt-card.pub")).unwrap()).unwrap();
    assert_eq!(
        id.public_key,
        PublicKey::from_verifying_key(key(0x42).verifying_key())
    );
    id
}

/// Another card: another key and serial.
fn other_card() -> CardIdentity {
    CardIdentity {
        serial: Serial([0x77; 16]),
        public_key: PublicKey::from_verifying_key(key(0x43).verifying_key()),
        origin: 100,
    }
}

fn record(seed: u8, id: &CardIdentity, usage: Usage, counter: u64) -> Record {
    let mut r = Record {
        nonce: [7; 32],
        body: Body::at_unix(usage, 1_764_000_000).encode().into_bytes(),
        counter,
        signature: Signature([0; 64]),
    };
    r.signature = sign_low_s(&key(seed), &r.signed_message(id));
    r
}

fn receipt(seed: u8, id: &CardIdentity, usage: Usage, counter: u64) -> Vec<u8> {
    let r = record(seed, id, usage, counter);
    // Built by hand so that a record of another kind makes a (refused) receipt too.
    let mut out = b"TALLYRCT\x00\x01".to_vec();
    out.extend_from_slice(&LICENCE.0);
    out.extend_from_slice(&id.serial.0);
    out.extend_from_slice(&id.public_key.fingerprint());
    let rec = r.encode();
    out.extend_from_slice(&(rec.len() as u16).to_be_bytes());
    out.extend_from_slice(&rec);
    out
}

fn save(name: &str, expect: &str, comment: &str, bytes: &[u8]) {
    let hex = hex::encode(bytes);
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    std::fs::write(
        data("receipt").join(name),
        format!(
            "expect: {expect}\ncomment: {comment}\n\n{}\n",
            lines.join("\n")
        ),
    )
    .unwrap();
}

/// Offsets in a receipt: the header's fields, then the record's.
const SERIAL_AT: usize = 26;
const KEY_AT: usize = 42;
const NONCE_AT: usize = RECEIPT_HEADER_LEN;
const COUNTER_AT: usize = NONCE_AT + 32;
const SIG_AT: usize = COUNTER_AT + 8;
const BODY_LEN_AT: usize = SIG_AT + 64;
const BODY_AT: usize = BODY_LEN_AT + 2;

fn generate() {
    let id = card();
    let ret = Usage::Return { licence: LICENCE };
    let good = receipt(0x42, &id, ret.clone(), 142);
    assert_eq!(Receipt::parse(&good).unwrap().encode(), good);
    save(
        "good",
        "ok",
        "the return of licence abab… by the vector card at counter 142",
        &good,
    );
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    save("empty", "format", "no bytes", b"");
    save(
        "bad-magic",
        "format",
        "TALLYRCX instead of TALLYRCT",
        &edit(&|b| b[7] = b'X'),
    );
    save(
        "version-2",
        "version",
        "a format version this build does not read",
        &edit(&|b| b[9] = 2),
    );
    save(
        "cut-short",
        "format",
        "the last byte of the body is missing",
        &edit(&|b| {
            b.pop();
        }),
    );
    save(
        "extra-byte",
        "format",
        "one byte after the record",
        &edit(&|b| b.push(0)),
    );
    save(
        "header-only",
        "format",
        "the header alone, announcing a record",
        &good[..RECEIPT_HEADER_LEN],
    );
    save(
        "huge-record-length",
        "format",
        "the header announces a 65535-byte record",
        &edit(&|b| {
            b[RECEIPT_HEADER_LEN - 2] = 0xff;
            b[RECEIPT_HEADER_LEN - 1] = 0xff;
        }),
    );
    save(
        "record-body-length",
        "record",
        "the record's own body length says one byte less than follows",
        &edit(&|b| b[BODY_LEN_AT + 1] -= 1),
    );
    save(
        "body-not-canonical",
        "body",
        "the body's licence in upper-case hex (not the one spelling of the record)",
        &edit(&|b| {
            let at = b.len() - 32;
            b[at..].make_ascii_uppercase();
        }),
    );
    save(
        "not-a-return",
        "not-return",
        "a card-signed open record of the licence presented as a receipt",
        &receipt(0x42, &id, Usage::Open { licence: LICENCE }, 142),
    );
    save(
        "licence-header-edited",
        "licence",
        "the header names licence cdcd…, the signed record returns abab…",
        &edit(&|b| b[10..26].copy_from_slice(&OTHER_LICENCE.0)),
    );
    save(
        "licence-replayed",
        "signature",
        "replayed for another licence of the same card: cdcd… in the header and the body",
        &edit(&|b| {
            b[10..26].copy_from_slice(&OTHER_LICENCE.0);
            let at = b.len() - 32;
            b[at..].copy_from_slice(OTHER_LICENCE.to_hex().as_bytes());
        }),
    );
    save(
        "body-time-edited",
        "signature",
        "the return's time moved a year back (still canonical)",
        &edit(&|b| {
            let t = b"2025-11-24";
            let text = String::from_utf8_lossy(&b[BODY_AT..]).into_owned();
            let at = BODY_AT + text.find("2025-11-24").unwrap();
            b[at..at + t.len()].copy_from_slice(b"2024-11-24");
        }),
    );
    save(
        "counter-edited",
        "signature",
        "the record moved to counter 143",
        &edit(&|b| b[COUNTER_AT + 7] += 1),
    );
    save(
        "nonce-edited",
        "signature",
        "one bit of the nonce flipped",
        &edit(&|b| b[NONCE_AT] ^= 1),
    );
    save(
        "signature-flipped",
        "signature",
        "one bit of the card's signature flipped",
        &edit(&|b| b[SIG_AT + 40] ^= 0x80),
    );
    save(
        "serial-edited",
        "card",
        "the header's card serial changed",
        &edit(&|b| b[SERIAL_AT] ^= 1),
    );
    save(
        "key-edited",
        "card",
        "the header's card key fingerprint changed",
        &edit(&|b| b[KEY_AT] ^= 1),
    );
    let other = other_card();
    save(
        "other-card",
        "card",
        "a genuine return of licence abab… signed by another card (serial 7777…)",
        &receipt(0x43, &other, ret.clone(), 142),
    );
    let posing = CardIdentity {
        serial: id.serial,
        ..other.clone()
    };
    save(
        "other-card-same-serial",
        "card",
        "signed by another card's key over the vector card's serial, naming that key",
        &receipt(0x43, &posing, ret.clone(), 142),
    );
    let mut claimed = receipt(0x43, &posing, ret.clone(), 142);
    claimed[KEY_AT..KEY_AT + 32].copy_from_slice(&id.public_key.fingerprint());
    save(
        "other-card-posing",
        "signature",
        "signed by another card's key, the header claiming the vector card's key",
        &claimed,
    );
    save(
        "before-origin",
        "origin",
        "signed by the vector card at counter 99, below its first counter 100",
        &receipt(0x42, &id, ret, 99),
    );
}

struct Vector {
    name: String,
    expect: String,
    bytes: Vec<u8>,
}

fn load() -> Vec<Vector> {
    let mut paths: Vec<_> = std::fs::read_dir(data("receipt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let (head, hexpart) = text
                .split_once("\n\n")
                .unwrap_or_else(|| panic!("{}: no blank line", p.display()));
            let mut expect = None;
            for line in head.lines() {
                let (k, v) = line
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{}: bad header line {line}", p.display()));
                match k {
                    "expect" => expect = Some(v.to_string()),
                    "comment" => {}
                    other => panic!("{}: unknown header key {other}", p.display()),
                }
            }
            let clean: String = hexpart.split_whitespace().collect();
            Vector {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                expect: expect.unwrap_or_else(|| panic!("{}: no expect", p.display())),
                bytes: hex::decode(clean).unwrap(),
            }
        })
        .collect()
}

/// The publisher's verdict: `ok`, or the check that refused it.
fn verdict(bytes: &[u8], card: &CardIdentity) -> String {
    match Receipt::parse(bytes).and_then(|r| r.verify(card, &r.licence)) {
        Ok(v) => {
            assert_eq!(v.licence, LICENCE);
            "ok".to_string()
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.check().to_string()
        }
    }
}

#[test]
fn every_vector_is_judged_as_its_file_says() {
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        generate();
    }
    let card = card();
    let vectors = load();
    assert!(vectors.len() >= 20, "{} vectors", vectors.len());
    let good = vectors.iter().filter(|v| v.expect == "ok").count();
    assert_eq!(good, 1, "one good receipt, the rest refused");
    let dir = tempfile::tempdir().unwrap();
    for v in &vectors {
        assert_eq!(verdict(&v.bytes, &card), v.expect, "vector {}", v.name);
        // From a file, as `tally-pack returns` reads it.
        let path = dir.path().join(&v.name);
        std::fs::write(&path, &v.bytes).unwrap();
        let read = tally_core::files::read_bounded(&path, tally_core::receipt::MAX_RECEIPT as u64)
            .unwrap();
        assert_eq!(verdict(&read, &card), v.expect, "vector {} (file)", v.name);
    }
}

#[test]
fn the_good_vector_is_refused_with_every_byte_flipped() {
    let card = card();
    let good = load().into_iter().find(|v| v.name == "good").unwrap().bytes;
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x01;
        assert_ne!(verdict(&b, &card), "ok", "byte {i} flipped");
    }
    // And for any other card.
    assert_eq!(verdict(&good, &other_card()), "card");
}
