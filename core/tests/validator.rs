//! Validator records (\[0094\]): a validation server vouches for a trail, the viewer appends
//! its answer as a card-signed record, and a fresh ValidateTrail that trusts the server
//! starts from it. Real card emulation, real ECDSA, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::policy::{Tally, TimeWeights};
use tally_core::trail::body::LicenceTotals;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::validator::{VouchError, chain_hash, vouch};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};
use tally_core::validation::ServerSecret;

const A: LicenceId = LicenceId([0xaa; 16]);
const B: LicenceId = LicenceId([0xbb; 16]);

struct Fixture {
    _dir: tempfile::TempDir,
    card_path: PathBuf,
    trail_path: PathBuf,
    identity: CardIdentity,
}

fn uses(i: u32) -> [Usage; 4] {
    [
        Usage::Open { licence: A },
        Usage::Pages {
            licence: if i.is_multiple_of(2) { A } else { B },
            first: i + 1,
            count: 5,
        },
        Usage::Time {
            licence: B,
            seconds: 60,
        },
        Usage::Print {
            licence: A,
            pages: i + 1,
        },
    ]
}

impl Fixture {
    /// A card, and a trail with genesis plus `rounds` × 4 use records of two licences.
    fn new(rounds: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("card.state");
        let state = CardState::generate(&mut rand_core::OsRng, 7, "validator test card");
        EmulatedCard::create(&card_path, &state).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let identity = card.identity().unwrap();
        let trail_path = dir.path().join("trail");
        let mut trail = Trail::create(&trail_path, &mut card, &identity).unwrap();
        for i in 0..rounds {
            for u in uses(i) {
                trail.write(&mut card, &Body::now(u)).unwrap();
            }
        }
        Self {
            _dir: dir,
            card_path,
            trail_path,
            identity,
        }
    }

    fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.trail_path).unwrap()
    }

    fn write(&self, body: &Body) {
        let mut t = Trail::open(&self.trail_path, &self.identity).unwrap();
        t.write(&mut self.card(), body).unwrap();
    }

    fn open(&self, trusted: &[&ServerSecret]) -> Trail {
        let mut t = Trail::open(&self.trail_path, &self.identity).unwrap();
        t.set_trusted_validators(trusted.iter().map(|s| s.public().clone()).collect());
        t
    }

    fn records(&self) -> Vec<Record> {
        let b = self.bytes();
        parse_frames(&b[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records
    }

    fn rewrite(&self, records: &[Record]) {
        rewrite(&self.trail_path, &self.identity, records);
    }
}

fn rewrite(path: &Path, identity: &CardIdentity, records: &[Record]) {
    let mut out = Header::for_card(identity, identity.origin)
        .encode()
        .to_vec();
    for r in records {
        out.extend(encode_frame(r));
    }
    std::fs::write(path, out).unwrap();
}

fn server() -> ServerSecret {
    ServerSecret::random(&mut rand_core::OsRng)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Totals of `lic` from a full validation, and from a fast start trusting `trusted`.
fn tallies(f: &Fixture, lic: LicenceId, trusted: &ServerSecret) -> (Tally, Tally) {
    let mut full = f.open(&[]);
    full.verify_offline().unwrap();
    let bodies: Vec<Body> = full.verified_bodies().map(|(_, b)| b).collect();
    let servers = [trusted.public().fingerprint()];
    let full = Tally::from_bodies(lic, &servers, &bodies);
    let mut fast = f.open(&[trusted]);
    fast.verify_offline().unwrap();
    let later: Vec<Body> = fast.unvouched_bodies().map(|(_, b)| b).collect();
    let fast = Tally::resume(lic, &servers, fast.vouched(), &later);
    (full, fast)
}

#[test]
fn a_vouched_trail_fast_starts_with_the_same_totals() {
    let f = Fixture::new(10); // genesis + 40 records: counters 7..=47
    let s = server();
    let body = vouch(&s, &f.identity, &f.bytes(), now()).unwrap();
    let Usage::Validator(v) = &body.usage else {
        panic!("{body:?}")
    };
    assert_eq!(v.upto, 47);
    assert_eq!(v.chain, chain_hash(&f.identity, 7, &f.records()));
    f.write(&body); // counter 48, signed by the card
    for u in uses(10) {
        f.write(&Body::now(u)); // 49..=52
    }

    // Default (no trusted key): exactly the old behaviour, every record verified.
    let full = f.open(&[]).verify(&mut f.card()).unwrap();
    assert_eq!(full.newly_verified, 47); // 46 existing + the nonce record
    // Trusting the server: only the records after `upto` are verified by signature.
    let mut t = f.open(&[&s]);
    let fast = t.verify(&mut f.card()).unwrap();
    assert_eq!(fast.records, 48);
    assert_eq!(fast.last_counter, 54);
    // 48..=54: the validator, 4 uses, the full run's nonce, this run's nonce.
    assert_eq!(fast.newly_verified, 7);
    let vouched = t.vouched().unwrap();
    assert_eq!((vouched.index, vouched.counter, vouched.upto), (41, 48, 47));
    assert_eq!(vouched.server_key, s.public().fingerprint());

    for lic in [A, B] {
        let (full, fast) = tallies(&f, lic, &s);
        assert_eq!(
            (full.opens, full.page_views, full.seconds, full.printed),
            (fast.opens, fast.page_views, fast.seconds, fast.printed),
            "{lic}"
        );
        assert_eq!(full.time_records, fast.time_records);
        assert_eq!(
            full.units(&TimeWeights::default()),
            fast.units(&TimeWeights::default())
        );
        assert_eq!(full.newest_any, fast.newest_any);
    }
    let (full, _) = tallies(&f, A, &s);
    assert_eq!((full.opens, full.page_views, full.printed), (11, 30, 66));
}

#[test]
fn the_newest_trusted_validator_is_used() {
    let f = Fixture::new(3);
    let s = server();
    f.write(&vouch(&s, &f.identity, &f.bytes(), now()).unwrap());
    f.write(&Body::now(Usage::Open { licence: A }));
    f.write(&vouch(&s, &f.identity, &f.bytes(), now()).unwrap());
    let mut t = f.open(&[&s]);
    assert_eq!(t.verify_offline().unwrap(), 1);
    assert_eq!(t.vouched().unwrap().upto, 7 + 14);
    let (full, fast) = tallies(&f, A, &s);
    assert_eq!(full.opens, 4);
    assert_eq!(fast.opens, 4);
}

#[test]
fn a_validator_from_an_untrusted_server_is_not_used() {
    let f = Fixture::new(3);
    let (trusted, other) = (server(), server());
    f.write(&vouch(&other, &f.identity, &f.bytes(), now()).unwrap());
    let mut t = f.open(&[&trusted]);
    let v = t.verify(&mut f.card()).unwrap();
    assert!(t.vouched().is_none());
    assert_eq!(v.newly_verified, v.records);
}

#[test]
fn a_forged_validator_naming_a_trusted_key_is_refused() {
    let f = Fixture::new(3);
    let (trusted, forger) = (server(), server());
    // Signed by the forger's key but claiming to be the trusted server.
    let mut body = vouch(&forger, &f.identity, &f.bytes(), now()).unwrap();
    if let Usage::Validator(v) = &mut body.usage {
        v.server_key = trusted.public().fingerprint();
    }
    f.write(&body);
    let err = f.open(&[&trusted]).verify(&mut f.card()).unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert_eq!(err.record(), Some(13));
    assert!(err.to_string().contains("signature"), "{err}");
    // Inflated totals under a genuine key's name are refused the same way.
    let g = Fixture::new(3);
    let mut body = vouch(&trusted, &g.identity, &g.bytes(), now()).unwrap();
    if let Usage::Validator(v) = &mut body.usage {
        v.totals[0].opens = 0;
    }
    g.write(&body);
    let err = g.open(&[&trusted]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    // Without trust in any key the trail is still a valid trail (the card signed it all).
    g.open(&[]).verify(&mut g.card()).unwrap();
}

#[test]
fn a_validator_for_another_card_is_refused() {
    let (f, g) = (Fixture::new(2), Fixture::new(2));
    let s = server();
    // g's validator, appended to f's trail by f's card: the signature covers g's serial.
    f.write(&vouch(&s, &g.identity, &g.bytes(), now()).unwrap());
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
}

#[test]
fn tampering_before_the_validator_is_caught_by_the_chain_hash() {
    let f = Fixture::new(5);
    let s = server();
    f.write(&vouch(&s, &f.identity, &f.bytes(), now()).unwrap());
    f.write(&Body::now(Usage::Open { licence: B }));
    let good = f.records();

    // A changed body before the validator.
    let mut bad = good.clone();
    bad[3].body = Body::now(Usage::Open { licence: B }).encode().into_bytes();
    f.rewrite(&bad);
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert!(err.to_string().contains("chain hash"), "{err}");
    assert_eq!(f.open(&[]).verify_offline().unwrap_err().record(), Some(3));

    // A changed signature byte (nothing else checks signatures there).
    let mut bad = good.clone();
    bad[1].signature.0[5] ^= 1;
    f.rewrite(&bad);
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert!(err.to_string().contains("chain hash"), "{err}");

    // A deleted record before the validator: named as a gap.
    let mut bad = good.clone();
    bad.remove(2);
    f.rewrite(&bad);
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "gap", "{err}");

    // A changed record after the validator is caught by its card signature.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last].body = Body::now(Usage::Open { licence: A }).encode().into_bytes();
    f.rewrite(&bad);
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(
        (err.check(), err.record()),
        ("signature", Some(last as u64))
    );

    // Put back, it is valid again.
    f.rewrite(&good);
    f.open(&[&s]).verify(&mut f.card()).unwrap();
}

#[test]
fn the_server_refuses_to_vouch_for_an_invalid_trail() {
    let f = Fixture::new(2);
    let s = server();
    let mut bad = f.records();
    bad[4].body = Body::now(Usage::Open { licence: B }).encode().into_bytes();
    let good = f.records();
    f.rewrite(&bad);
    let err = vouch(&s, &f.identity, &f.bytes(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            VouchError::Trail(TrailError::BadSignature { index: 4, .. })
        ),
        "{err}"
    );
    f.rewrite(&good);
    let g = Fixture::new(1);
    let err = vouch(&s, &g.identity, &f.bytes(), now()).unwrap_err();
    assert!(
        matches!(err, VouchError::Trail(TrailError::WrongCard(_))),
        "{err}"
    );
    let mut torn = f.bytes();
    torn.truncate(torn.len() - 3);
    assert!(matches!(
        vouch(&s, &f.identity, &torn, now()),
        Err(VouchError::Trail(TrailError::TornTail { .. }))
    ));
    assert!(matches!(
        vouch(&s, &f.identity, &f.bytes()[..10], now()),
        Err(VouchError::Trail(TrailError::Format(_)))
    ));
}

#[test]
fn too_many_licences_are_not_vouched_for() {
    let f = Fixture::new(0);
    for i in 0..6u8 {
        f.write(&Body::now(Usage::Open {
            licence: LicenceId([i; 16]),
        }));
    }
    assert!(matches!(
        vouch(&server(), &f.identity, &f.bytes(), now()),
        Err(VouchError::TooManyLicences(6))
    ));
}

#[test]
fn vouched_time_records_cost_the_heaviest_weight() {
    let v = tally_core::trail::validator::Vouched {
        index: 5,
        counter: 12,
        upto: 11,
        prefix: 5,
        server_key: [0; 32],
        totals: vec![LicenceTotals {
            licence: B,
            opens: 1,
            pages: 0,
            seconds: 180,
            prints: 0,
            times: 3,
        }],
        recoveries: vec![],
    };
    let t = Tally::resume(B, &[[0; 32]], Some(&v), &[]);
    let mut w = TimeWeights::default();
    assert_eq!(t.units(&w), 3);
    w.bands.push(tally_core::policy::Band {
        start: 0,
        end: 60,
        weight: 4,
    });
    assert_eq!(t.units(&w), 12);
    assert_eq!(Tally::resume(A, &[[0; 32]], Some(&v), &[]).opens, 0);
}

#[test]
fn the_reader_checks_the_servers_answer_before_appending_it() {
    use tally_core::trail::validator::check_answer;
    let f = Fixture::new(2);
    let (s, other) = (server(), server());
    let answer = vouch(&s, &f.identity, &f.bytes(), now()).unwrap().encode();
    let records = f.records();
    let body = check_answer(
        answer.as_bytes(),
        s.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap();
    assert_eq!(body.encode(), answer);
    // Another key, a body that is not a validator, garbage.
    let err = check_answer(
        answer.as_bytes(),
        other.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    let open = Body::now(Usage::Open { licence: A }).encode();
    let err = check_answer(
        open.as_bytes(),
        s.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    let err = check_answer(
        b"\xff\x00",
        s.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap_err();
    assert_eq!(err.check(), "body", "{err}");
    // Vouching for records this trail lacks, or for different records.
    let err = check_answer(
        answer.as_bytes(),
        s.public(),
        &f.identity,
        f.identity.origin,
        &records[..3],
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not have"), "{err}");
    let mut changed = records.clone();
    changed[2].nonce[0] ^= 1;
    let err = check_answer(
        answer.as_bytes(),
        s.public(),
        &f.identity,
        f.identity.origin,
        &changed,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chain hash"), "{err}");
    // A bit flipped in the answer's signature.
    let mut forged = answer.clone().into_bytes();
    let n = forged.len();
    forged[n - 1] = if forged[n - 1] == b'0' { b'1' } else { b'0' };
    let err = check_answer(
        &forged,
        s.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
}

#[test]
fn a_fast_start_reads_copies_renewals_and_the_first_opening_from_the_vouched_records() {
    let f = Fixture::new(0);
    for u in [
        Usage::Open { licence: A },
        Usage::Copy {
            licence: A,
            chars: 40,
        },
        Usage::Renewal {
            licence: A,
            version: 2,
        },
    ] {
        f.write(&Body::at_unix(u, 1_800_000_000));
    }
    let s = server();
    f.write(&vouch(&s, &f.identity, &f.bytes(), now()).unwrap());
    f.write(&Body::at_unix(Usage::Open { licence: A }, 1_800_003_600));
    f.write(&Body::at_unix(
        Usage::Copy {
            licence: A,
            chars: 2,
        },
        1_800_003_600,
    ));
    let servers = [s.public().fingerprint()];
    let mut fast = f.open(&[&s]);
    fast.verify_offline().unwrap();
    assert!(fast.vouched().is_some(), "the trail fast-started");
    // Without reading the vouched records, what the validator's totals lack is unknown.
    let later: Vec<Body> = fast.unvouched_bodies().map(|(_, b)| b).collect();
    let bare = Tally::resume(A, &servers, fast.vouched(), &later);
    assert!(bare.history_unknown());
    assert_eq!(bare.first_open(), None);
    // What a reader's session counts: read from the vouched records.
    let t = tally_core::rental::tally_of(&fast, A, &servers);
    assert!(!t.history_unknown());
    assert_eq!((t.opens, t.copies, t.copied_chars), (2, 2, 42));
    assert_eq!(
        t.first_open().map(|t| t.unix_timestamp()),
        Some(1_800_000_000)
    );
    assert_eq!(t.newest_version, 2);
}
