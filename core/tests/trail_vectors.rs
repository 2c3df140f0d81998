//! Trail and card-file test vectors as files (age style), under `tests/data/trail/` and
//! `tests/data/card-file/`. Each file: header lines (`expect:`, `comment:`), a blank line,
//! then the bytes in hex. Unknown header keys fail the test. Every vector goes through
//! every entry point that reads that kind of file.
//!
//! `UPDATE_VECTORS=1 cargo test -p tally-core --test trail_vectors` regenerates the trail
//! vectors (deterministic: fixed key, RFC 6979 signatures, fixed nonces).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::{PublicKey, Signature, sign_low_s};
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};

fn data(area: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(area)
}

struct Vector {
    name: String,
    expect: String,
    bytes: Vec<u8>,
}

fn load(area: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(data(area))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p).unwrap();
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
        out.push(Vector {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            expect: expect.unwrap_or_else(|| panic!("{}: no expect", p.display())),
            bytes: hex::decode(clean).unwrap(),
        });
    }
    out
}

fn save(area: &str, name: &str, expect: &str, comment: &str, bytes: &[u8]) {
    let hex = hex::encode(bytes);
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let text = format!(
        "expect: {expect}\ncomment: {comment}\n\n{}\n",
        lines.join("\n")
    );
    std::fs::write(data(area).join(name), text).unwrap();
}

fn key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
}

fn identity() -> CardIdentity {
    CardIdentity {
        serial: Serial([0x5e; 16]),
        public_key: PublicKey::from_verifying_key(key().verifying_key()),
        origin: 100,
    }
}

fn rec(i: u64, body: Body, ident: &CardIdentity) -> Record {
    let mut r = Record {
        nonce: [i as u8; 32],
        body: body.encode().into_bytes(),
        counter: ident.origin + i,
        signature: Signature([0; 64]),
    };
    r.signature = sign_low_s(&key(), &r.signed_message(ident));
    r
}

fn file(records: &[Record], ident: &CardIdentity) -> Vec<u8> {
    let mut b = Header::for_card(ident, ident.origin).encode().to_vec();
    for r in records {
        b.extend(encode_frame(r));
    }
    b
}

fn generate() {
    let id = identity();
    let lic = LicenceId([0xab; 16]);
    let t0 = 1_764_000_000;
    let good: Vec<Record> = vec![
        rec(0, Body::at_unix(Usage::Genesis, t0), &id),
        rec(1, Body::at_unix(Usage::Open { licence: lic }, t0 + 1), &id),
        rec(
            2,
            Body::at_unix(
                Usage::Pages {
                    licence: lic,
                    first: 1,
                    count: 10,
                },
                t0 + 2,
            ),
            &id,
        ),
        rec(
            3,
            Body::at_unix(
                Usage::Time {
                    licence: lic,
                    seconds: 60,
                },
                t0 + 3,
            ),
            &id,
        ),
    ];
    let v = |name: &str, expect: &str, comment: &str, bytes: Vec<u8>| {
        save("trail", name, expect, comment, &bytes)
    };
    v(
        "valid-four-records",
        "ok",
        "genesis, open, pages, time at counters 100..=103",
        file(&good, &id),
    );
    v(
        "valid-genesis-only",
        "ok",
        "a fresh trail",
        file(&good[..1], &id),
    );
    let mut r = good.clone();
    r[1].signature.0[10] ^= 1;
    v(
        "signature-flipped",
        "signature 1",
        "one bit of record 1's signature flipped, checksum recomputed",
        file(&r, &id),
    );
    let mut r = good.clone();
    r[2].counter += 1;
    v(
        "counter-edited",
        "signature 2",
        "record 2's counter changed: its signature no longer covers it",
        file(&r, &id),
    );
    let mut r = good.clone();
    r[3].body = Body::at_unix(
        Usage::Time {
            licence: lic,
            seconds: 6,
        },
        t0 + 3,
    )
    .encode()
    .into_bytes();
    v(
        "body-edited",
        "signature 3",
        "a time unit shortened from 60 to 6 seconds",
        file(&r, &id),
    );
    let mut r = good.clone();
    r.remove(2);
    v(
        "hole",
        "gap 2",
        "record at counter 102 deleted",
        file(&r, &id),
    );
    let mut r = good.clone();
    r.swap(1, 2);
    v(
        "swapped",
        "order 1",
        "records 1 and 2 swapped",
        file(&r, &id),
    );
    let mut r = good.clone();
    r.insert(2, good[1].clone());
    v(
        "duplicated",
        "duplicate 2",
        "record 1 repeated",
        file(&r, &id),
    );
    let r = good[1..].to_vec();
    v(
        "no-genesis",
        "start 0",
        "the genesis record removed",
        file(&r, &id),
    );
    let mut r = good.clone();
    r.push(rec(4, Body::at_unix(Usage::Genesis, t0 + 4), &id));
    v(
        "second-genesis",
        "start 4",
        "a genesis record spliced in later",
        file(&r, &id),
    );
    let mut other = identity();
    other.serial = Serial([0x77; 16]);
    let mut r = good.clone();
    r[3] = rec(
        3,
        Body::at_unix(
            Usage::Time {
                licence: lic,
                seconds: 60,
            },
            t0 + 3,
        ),
        &other,
    );
    v(
        "other-card-record",
        "signature 3",
        "record 3 signed for another card's serial (same key)",
        file(&r, &id),
    );
    let mut b = file(&good, &id);
    b.extend_from_slice(
        &encode_frame(&rec(
            4,
            Body::at_unix(Usage::Open { licence: lic }, t0 + 4),
            &id,
        ))[..50],
    );
    v(
        "torn-tail",
        "torn-tail",
        "a record cut after 50 bytes (crash while appending)",
        b,
    );
    let mut b = file(&good, &id);
    let off = HEADER_LEN + encode_frame(&good[0]).len() + 40;
    b[off] ^= 0x80;
    v(
        "checksum-middle",
        "format 1",
        "a byte of record 1 flipped without fixing the checksum",
        b,
    );
    let mut b = file(&good, &id);
    b[0] = b'X';
    v("bad-magic", "format", "not a trail file", b);
    let mut b = file(&good, &id);
    b[9] = 2;
    v("version-2", "format", "a future version", b);
    let mut b = file(&good, &id);
    b[60] ^= 1;
    v(
        "header-checksum",
        "format",
        "the first counter changed without fixing the header checksum",
        b,
    );
    let mut b = Header::for_card(&id, 101).encode().to_vec();
    for r in &good[1..] {
        b.extend(encode_frame(r));
    }
    v(
        "header-origin-moved",
        "start",
        "header claims the trail starts at 101, after the card's origin",
        b,
    );
    let mut b = file(&good[..1], &id);
    b.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
    b.extend_from_slice(&[0u8; 200]);
    v("huge-frame-length", "format 1", "a frame claiming 4 GiB", b);
    v("empty", "format", "zero bytes", Vec::new());
    v(
        "header-only-short",
        "format",
        "half a header",
        file(&[], &id)[..30].to_vec(),
    );
    std::fs::write(
        data("trail-card.pub").with_extension("pub"),
        id.to_export(Some("test-vector card")),
    )
    .unwrap();
}

/// Runs one trail vector through the entry points and returns the outcome as "ok" or the check.
fn outcome_from_file(bytes: &[u8], id: &CardIdentity) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.trail");
    std::fs::write(&p, bytes).unwrap();
    let res = Trail::open(&p, id).and_then(|mut t| t.verify_offline());
    describe(res.map(|_| ()))
}

fn outcome_from_bytes(bytes: &[u8], id: &CardIdentity) -> String {
    // The in-memory entry point: header, frames, then the validator over the parsed records.
    let res = (|| -> Result<(), TrailError> {
        // The start rule (origin, or an archived trail's anchor) is verify_range's own.
        let h = Header::decode(bytes)?;
        let f = parse_frames(&bytes[HEADER_LEN..], HEADER_LEN as u64, 0)?;
        if f.torn_bytes > 0 {
            return Err(TrailError::TornTail {
                bytes: f.torn_bytes,
            });
        }
        tally_core::trail::verify::verify_range(
            &f.records,
            0,
            id,
            h.first_counter,
            &[],
            &tally_core::crypto::RingVerifier,
            2,
        )
    })();
    describe(res)
}

fn describe(res: Result<(), TrailError>) -> String {
    match res {
        Ok(()) => "ok".into(),
        Err(e) => match e.record() {
            Some(i) => format!("{} {i}", e.check()),
            None => e.check().to_string(),
        },
    }
}

#[test]
fn trail_vectors() {
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        generate();
    }
    let (id, _) = CardIdentity::from_export(
        &std::fs::read(data("trail-card.pub").with_extension("pub")).unwrap(),
    )
    .unwrap();
    let all = load("trail");
    let ids: Vec<_> = all.iter().collect();
    assert!(ids.len() >= 18, "vectors missing: {}", ids.len());
    let negatives = ids.iter().filter(|v| v.expect != "ok").count();
    assert!(
        negatives > 2 * (ids.len() - negatives),
        "more negative vectors than positive"
    );
    for v in ids {
        let a = outcome_from_file(&v.bytes, &id);
        let b = outcome_from_bytes(&v.bytes, &id);
        // A format error may be named more precisely in one path; the check name must match.
        assert!(
            a == v.expect || a.starts_with(&format!("{} ", v.expect)),
            "{} via file: got {a}, expected {}",
            v.name,
            v.expect
        );
        assert!(
            b == v.expect || b.starts_with(&format!("{} ", v.expect)),
            "{} via bytes: got {b}, expected {}",
            v.name,
            v.expect
        );
    }
}

#[test]
fn card_file_vectors() {
    let all = load("card-file");
    assert!(all.len() >= 8);
    for v in all {
        let got = match CardIdentity::from_export(&v.bytes) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            got.contains(&v.expect),
            "{}: got {got:?}, expected {:?}",
            v.name,
            v.expect
        );
    }
}
