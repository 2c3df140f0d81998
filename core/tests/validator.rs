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
use tally_core::trail::validator::{VouchError, Vouching, chain_hash, vouch};
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

    /// Appends a server's answer as the reader does: its bodies in one batch.
    fn append(&self, v: &Vouching) {
        self.append_trusting(v, &[]);
    }

    fn append_trusting(&self, v: &Vouching, trusted: &[&ServerSecret]) {
        let mut t = self.open(trusted);
        let bodies: Vec<Body> = v.bodies().cloned().collect();
        t.write_all(&mut self.card(), &bodies).unwrap();
    }

    /// Has `s` vouch for the trail as it is, and appends the answer (trusting `s`, so an
    /// archived trail can be written to).
    fn vouched_by(&self, s: &ServerSecret) -> Vouching {
        let v = vouch(s, &self.identity, &self.bytes(), now()).unwrap();
        self.append_trusting(&v, &[s]);
        v
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
    let vouching = vouch(&s, &f.identity, &f.bytes(), now()).unwrap();
    let Usage::Validator(v) = &vouching.validator.usage else {
        panic!("{vouching:?}")
    };
    assert_eq!(v.upto, 47);
    assert_eq!(v.chain, chain_hash(&f.identity, 7, &f.records()));
    // Two licences: one totals record, then the validator.
    assert_eq!(vouching.parts.len(), 1);
    f.append(&vouching); // counters 48 and 49, signed by the card
    for u in uses(10) {
        f.write(&Body::now(u)); // 50..=53
    }

    // Default (no trusted key): exactly the old behaviour, every record verified.
    let full = f.open(&[]).verify(&mut f.card()).unwrap();
    assert_eq!(full.newly_verified, 48); // 47 existing + the nonce record
    // Trusting the server: only the records after `upto` are verified by signature.
    let mut t = f.open(&[&s]);
    let fast = t.verify(&mut f.card()).unwrap();
    assert_eq!(fast.records, 49);
    assert_eq!(fast.last_counter, 55);
    // 48..=55: the totals, the validator, 4 uses, the full run's nonce, this run's nonce.
    assert_eq!(fast.newly_verified, 8);
    let vouched = t.vouched().unwrap();
    assert_eq!((vouched.index, vouched.counter, vouched.upto), (42, 49, 47));
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
    f.vouched_by(&s);
    f.write(&Body::now(Usage::Open { licence: A }));
    f.vouched_by(&s);
    let mut t = f.open(&[&s]);
    // The second validator and its totals record.
    assert_eq!(t.verify_offline().unwrap(), 2);
    assert_eq!(t.vouched().unwrap().upto, 7 + 15);
    let (full, fast) = tallies(&f, A, &s);
    assert_eq!(full.opens, 4);
    assert_eq!(fast.opens, 4);
}

#[test]
fn a_validator_from_an_untrusted_server_is_not_used() {
    let f = Fixture::new(3);
    let (trusted, other) = (server(), server());
    f.vouched_by(&other);
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
    let mut vouching = vouch(&forger, &f.identity, &f.bytes(), now()).unwrap();
    if let Usage::Validator(v) = &mut vouching.validator.usage {
        v.server_key = trusted.public().fingerprint();
    }
    f.append(&vouching);
    let err = f.open(&[&trusted]).verify(&mut f.card()).unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert_eq!(err.record(), Some(14));
    assert!(err.to_string().contains("signature"), "{err}");
    // Lowered totals under a genuine key's name are refused the same way: the validator
    // signs their digest.
    let g = Fixture::new(3);
    let mut vouching = vouch(&trusted, &g.identity, &g.bytes(), now()).unwrap();
    if let Usage::Totals(p) = &mut vouching.parts[0].usage {
        p.totals[0].opens = 0;
    }
    g.append(&vouching);
    let err = g.open(&[&trusted]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert!(err.to_string().contains("digest"), "{err}");
    // Without trust in any key the trail is still a valid trail (the card signed it all).
    g.open(&[]).verify(&mut g.card()).unwrap();
}

#[test]
fn a_validator_for_another_card_is_refused() {
    let (f, g) = (Fixture::new(2), Fixture::new(2));
    let s = server();
    // g's validator, appended to f's trail by f's card: the signature covers g's serial.
    f.append(&vouch(&s, &g.identity, &g.bytes(), now()).unwrap());
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
}

#[test]
fn tampering_before_the_validator_is_caught_by_the_chain_hash() {
    let f = Fixture::new(5);
    let s = server();
    f.vouched_by(&s);
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

/// Licence `i` of many.
fn lic(i: u32) -> LicenceId {
    let mut id = [0x5a; 16];
    id[12..].copy_from_slice(&i.to_be_bytes());
    LicenceId(id)
}

/// What a licence's totals say, for comparing a full count with a fast start.
fn summary(t: &Tally) -> (u64, u64, u64, u64, u64, u32, Option<i64>, bool) {
    (
        t.opens,
        t.page_views,
        t.printed,
        t.copies,
        t.copied_chars,
        t.newest_version,
        t.first_open().map(|t| t.unix_timestamp()),
        t.history_unknown(),
    )
}

#[test]
fn any_number_of_licences_is_vouched_for_fast_started_archived_and_resumed() {
    for n in [6u32, 20, 200] {
        let f = Fixture::new(0);
        let mut card = f.card();
        let mut t = Trail::open(&f.trail_path, &f.identity).unwrap();
        for i in 0..n {
            let at = 1_800_000_000 + i64::from(i);
            let mut uses = vec![
                Usage::Open { licence: lic(i) },
                Usage::Pages {
                    licence: lic(i),
                    first: 1,
                    count: i + 1,
                },
                Usage::Copy {
                    licence: lic(i),
                    chars: 10 * i,
                },
            ];
            if i % 3 == 0 {
                uses.insert(
                    0,
                    Usage::Renewal {
                        licence: lic(i),
                        version: 2 + i,
                    },
                );
            }
            let bodies: Vec<Body> = uses.into_iter().map(|u| Body::at_unix(u, at)).collect();
            t.write_all(&mut card, &bodies).unwrap();
        }
        drop((t, card));
        let s = server();
        let v = f.vouched_by(&s);
        // Every body bounded, however many licences: four licences per totals record.
        assert_eq!(v.parts.len(), n.div_ceil(4) as usize, "{n}");
        assert!(
            v.bodies()
                .all(|b| b.encode().len() <= tally_core::trail::body::MAX_BODY)
        );
        // Use after the validator: a second opening, and a copy.
        f.write(&Body::at_unix(
            Usage::Open { licence: lic(1) },
            1_900_000_000,
        ));
        f.write(&Body::at_unix(
            Usage::Copy {
                licence: lic(1),
                chars: 5,
            },
            1_900_000_000,
        ));
        let servers = [s.public().fingerprint()];
        let mut full = f.open(&[]);
        full.verify_offline().unwrap();
        let mut fast = f.open(&[&s]);
        fast.verify_offline().unwrap();
        let vouched = fast.vouched().unwrap();
        assert_eq!(vouched.totals.len(), n as usize);
        let expected: Vec<_> = (0..n)
            .map(|i| summary(&tally_core::rental::tally_of(&full, lic(i), &servers)))
            .collect();
        for i in 0..n {
            // Read from the validator's totals alone (no vouched record replayed).
            let later: Vec<Body> = fast.unvouched_bodies().map(|(_, b)| b).collect();
            let resumed = Tally::resume(lic(i), &servers, fast.vouched(), &later);
            assert_eq!(summary(&resumed), expected[i as usize], "{n}: licence {i}");
        }
        assert_eq!(expected[1].0, 2);
        assert_eq!(expected[1].3, 2);
        assert_eq!(expected[3].5, 5);
        assert_eq!(expected[4].6, Some(1_800_000_004));
        // Archived: the vouched records leave the working trail, every total stays.
        let a = Trail::archive(&f.trail_path, &f.identity, vec![s.public().clone()]).unwrap();
        assert_eq!(a.upto, vouched.upto);
        let mut after = f.open(&[&s]);
        after.verify(&mut f.card()).unwrap();
        for i in 0..n {
            let t = tally_core::rental::tally_of(&after, lic(i), &servers);
            assert_eq!(
                summary(&t),
                expected[i as usize],
                "{n}: archived licence {i}"
            );
        }
        // And vouched again on top of the archived trail: the server's totals start from
        // its own validator's, and still carry everything.
        f.vouched_by(&s);
        let a = Trail::archive(&f.trail_path, &f.identity, vec![s.public().clone()]).unwrap();
        assert_eq!(a.records, 4 + u64::from(n.div_ceil(4)));
        let mut again = f.open(&[&s]);
        again.verify(&mut f.card()).unwrap();
        for i in 0..n {
            let t = tally_core::rental::tally_of(&again, lic(i), &servers);
            assert_eq!(summary(&t), expected[i as usize], "{n}: twice archived {i}");
        }
    }
}

#[test]
fn a_renewal_archived_still_refuses_the_older_keyfile() {
    use tally_core::policy::{Limits, Reason, TestClock, evaluate};
    let f = Fixture::new(0);
    f.write(&Body::now(Usage::Open { licence: A }));
    f.write(&Body::now(Usage::Renewal {
        licence: A,
        version: 2,
    }));
    f.write(&Body::now(Usage::Open { licence: A }));
    let s = server();
    f.vouched_by(&s);
    Trail::archive(&f.trail_path, &f.identity, vec![s.public().clone()]).unwrap();
    let mut t = f.open(&[&s]);
    t.verify(&mut f.card()).unwrap();
    assert!(
        t.records()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains(" renewal ")),
        "the renewal record is in the archive"
    );
    let tally = tally_core::rental::tally_of(&t, A, &[s.public().fingerprint()]);
    assert_eq!(tally.newest_version, 2);
    let clock = TestClock::at(time::OffsetDateTime::now_utc());
    let v1 = Limits::default();
    assert!(matches!(
        evaluate(&v1, &tally, &clock).reason(),
        Some(Reason::Superseded { newest: 2, this: 1 })
    ));
    let v2 = Limits::parse(b"tally-policy/1\nlicence-version 2\n").unwrap();
    assert!(evaluate(&v2, &tally, &clock).is_allowed());
}

#[test]
fn a_validator_whose_totals_records_are_missing_or_moved_is_refused() {
    let f = Fixture::new(2);
    let s = server();
    let v = vouch(&s, &f.identity, &f.bytes(), now()).unwrap();
    // The validator written without its totals record.
    f.write(&v.validator);
    let err = f.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert!(err.to_string().contains("totals records"), "{err}");
    // Or with another record between them (written one by one, not as one batch).
    let g = Fixture::new(2);
    let v = vouch(&s, &g.identity, &g.bytes(), now()).unwrap();
    g.write(&v.parts[0]);
    g.write(&Body::now(Usage::Open { licence: A }));
    g.write(&v.validator);
    let err = g.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    // Or with its totals record stamped at another time than the validator.
    let h = Fixture::new(2);
    let v = vouch(&s, &h.identity, &h.bytes(), now()).unwrap();
    let mut retimed = v.parts[0].clone();
    retimed.at += time::Duration::SECOND;
    h.write(&retimed);
    h.write(&v.validator);
    let err = h.open(&[&s]).verify_offline().unwrap_err();
    assert_eq!(err.check(), "validator", "{err}");
    assert!(err.to_string().contains("totals records"), "{err}");
    // Without trust in the key, all are valid trails (the card signed every record).
    f.open(&[]).verify(&mut f.card()).unwrap();
    g.open(&[]).verify(&mut g.card()).unwrap();
    h.open(&[]).verify(&mut h.card()).unwrap();
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
            history: None,
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
    let vouching = vouch(&s, &f.identity, &f.bytes(), now()).unwrap();
    let answer = String::from_utf8(vouching.encode()).unwrap();
    let records = f.records();
    let checked = check_answer(
        answer.as_bytes(),
        s.public(),
        &f.identity,
        f.identity.origin,
        &records,
    )
    .unwrap();
    assert_eq!(checked, vouching);
    assert_eq!(answer.lines().count(), 2, "{answer}");
    // The totals records dropped, reordered, changed or duplicated: refused.
    let (part, validator) = answer.split_once('\n').unwrap();
    let changed_part = part.replace("opens=", "opens=1");
    // The digest binds the totals, the validator's time binds the part's time (a byte of
    // the answer that nothing signed would let it be re-spelled: found by fuzzing).
    let mut retimed = Body::parse(part.as_bytes()).unwrap();
    retimed.at += time::Duration::SECOND;
    let retimed = retimed.encode();
    for bad in [
        validator.to_string(),
        format!("{validator}\n{part}"),
        format!("{changed_part}\n{validator}"),
        format!("{retimed}\n{validator}"),
        format!("{part}\n{part}\n{validator}"),
    ] {
        let err = check_answer(
            bad.as_bytes(),
            s.public(),
            &f.identity,
            f.identity.origin,
            &records,
        )
        .unwrap_err();
        assert_eq!(err.check(), "validator", "{bad}: {err}");
    }
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
fn a_fast_start_reads_copies_renewals_and_the_first_opening_from_the_totals() {
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
    f.vouched_by(&s);
    f.write(&Body::at_unix(Usage::Open { licence: A }, 1_800_003_600));
    let servers = [s.public().fingerprint()];
    let mut fast = f.open(&[&s]);
    fast.verify_offline().unwrap();
    let later: Vec<Body> = fast.unvouched_bodies().map(|(_, b)| b).collect();
    let t = Tally::resume(A, &servers, fast.vouched(), &later);
    assert!(!t.history_unknown());
    assert_eq!((t.opens, t.copies, t.copied_chars), (2, 1, 40));
    assert_eq!(
        t.first_open().map(|t| t.unix_timestamp()),
        Some(1_800_000_000)
    );
    assert_eq!(t.newest_version, 2);
}

/// A validator of the first form (totals inline, without copies, versions or the first
/// opening), as servers wrote them before `totals` records: it still parses and verifies.
#[test]
fn a_first_form_validator_still_fast_starts_and_its_records_are_read_for_what_it_lacks() {
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
    let v = vouch(&s, &f.identity, &f.bytes(), now()).unwrap();
    let mut first_form = v.validator.clone();
    if let Usage::Validator(val) = &mut first_form.usage {
        val.parts = None;
        val.totals = v
            .parts
            .iter()
            .flat_map(|p| match &p.usage {
                Usage::Totals(p) => p.totals.clone(),
                _ => vec![],
            })
            .map(|t| LicenceTotals { history: None, ..t })
            .collect();
    }
    assert!(s.sign_body(&f.identity.serial, &mut first_form));
    assert!(!first_form.encode().contains("copies="));
    f.write(&first_form);
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
