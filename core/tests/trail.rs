//! The audit-trail threats of THREATS.md (T1–T7, T9–T12, T14, T22) against the emulated card.
//! Each attack must be detected with the specific error that names the record.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardError, CardIdentity, StatusWord};
use tally_core::crypto::RingVerifier;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{
    Body, CrashPoint, LicenceId, Record, Trail, TrailError, Usage, intent_path,
};

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    card_path: PathBuf,
    trail_path: PathBuf,
    identity: CardIdentity,
}

impl Fixture {
    /// A card at `origin` and a trail with a genesis record plus `n` page records.
    fn new(origin: u64, n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let card_path = path.join("card.state");
        let state = CardState::generate(&mut rand_core::OsRng, origin, "test card");
        EmulatedCard::create(&card_path, &state).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let identity = card.identity().unwrap();
        let trail_path = path.join("trail");
        let mut trail = Trail::create(&trail_path, &mut card, &identity).unwrap();
        for i in 0..n {
            trail.write(&mut card, &page(i as u32 + 1)).unwrap();
        }
        Self {
            _dir: dir,
            dir: path,
            card_path,
            trail_path,
            identity,
        }
    }

    fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }

    fn open(&self) -> Trail {
        Trail::open(&self.trail_path, &self.identity).unwrap()
    }

    fn verify(&self) -> Result<tally_core::trail::Verification, TrailError> {
        Trail::open(&self.trail_path, &self.identity)?.verify(&mut self.card())
    }

    fn records(&self) -> Vec<Record> {
        let bytes = std::fs::read(&self.trail_path).unwrap();
        parse_frames(&bytes[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records
    }

    /// Rewrites the trail with these records and valid checksums (an attacker can recompute CRCs).
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

fn page(first: u32) -> Body {
    Body::now(Usage::Pages {
        licence: LicenceId([7; 16]),
        first,
        count: 5,
    })
}

#[test]
fn write_and_validate_from_a_random_origin() {
    // T10: a card whose counter starts far from zero ([0095]).
    let f = Fixture::new(0x1234_5678_9abc, 3);
    let v = f.verify().unwrap();
    assert_eq!(v.records, 5); // genesis + 3 pages + the nonce record
    assert_eq!(v.first_counter, 0x1234_5678_9abc);
    assert_eq!(v.last_counter, 0x1234_5678_9abc + 4);
    let recs = f.records();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.counter, 0x1234_5678_9abc + i as u64);
    }
    // The nonce record holds the card counter read in step [1].
    let last = Body::parse(&recs[4].body).unwrap();
    assert_eq!(
        last.usage,
        Usage::Nonce {
            value: (0x1234_5678_9abc_u64 + 4).to_string()
        }
    );
}

#[test]
fn incremental_validation_verifies_only_new_records() {
    let f = Fixture::new(10, 20);
    let mut card = f.card();
    let mut t = f.open();
    assert_eq!(t.verify(&mut card).unwrap().newly_verified, 22);
    t.write(&mut card, &page(30)).unwrap();
    assert_eq!(t.verify(&mut card).unwrap().newly_verified, 1); // Write verified its own record ([0059] step [7])
    // Records written by another process are picked up and verified.
    let mut other = f.open();
    other.write(&mut card, &page(31)).unwrap();
    other.write(&mut card, &page(32)).unwrap();
    assert_eq!(t.verify(&mut card).unwrap().newly_verified, 3);
    assert_eq!(t.verified_len(), t.records().len());
}

#[test]
fn t1_every_bit_of_every_field_is_caught_and_the_record_named() {
    let f = Fixture::new(100, 3);
    let good = f.records();
    let mut tried = 0;
    for i in 0..good.len() {
        // nonce, counter, signature: every bit; body: every bit too.
        let fields = 32 * 8 + 8 * 8 + 64 * 8 + good[i].body.len() * 8;
        for bit in 0..fields {
            let mut recs = good.clone();
            let r = &mut recs[i];
            let (field, b) = match bit {
                b if b < 256 => (0, b),
                b if b < 320 => (1, b - 256),
                b if b < 832 => (2, b - 320),
                b => (3, b - 832),
            };
            match field {
                0 => r.nonce[b / 8] ^= 1 << (b % 8),
                1 => r.counter ^= 1 << b,
                2 => r.signature.0[b / 8] ^= 1 << (b % 8),
                _ => r.body[b / 8] ^= 1 << (b % 8),
            }
            f.rewrite(&recs);
            let err = f.open().verify_offline().unwrap_err();
            assert!(
                matches!(err, TrailError::BadSignature { index, .. } if index == i as u64),
                "record {i} field {field} bit {b}: {err}"
            );
            tried += 1;
        }
    }
    assert!(tried > 4000);
    // Untouched, it verifies; and raw byte flips are caught by the frame checksum, named too.
    f.rewrite(&good);
    f.open().verify_offline().unwrap();
    let bytes = std::fs::read(&f.trail_path).unwrap();
    let frame_len = encode_frame(&good[0]).len();
    for off in [HEADER_LEN + 10, HEADER_LEN + frame_len + 60] {
        let mut bad = bytes.clone();
        bad[off] ^= 0x40;
        std::fs::write(&f.trail_path, &bad).unwrap();
        let err = Trail::open(&f.trail_path, &f.identity).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }
}

#[test]
fn t2_a_deleted_record_is_a_gap_at_its_place() {
    let f = Fixture::new(500, 5);
    let good = f.records();
    let card_backup = std::fs::read(&f.card_path).unwrap();
    for i in 0..good.len() - 1 {
        let mut recs = good.clone();
        recs.remove(i);
        f.rewrite(&recs);
        let err = f.verify().unwrap_err();
        if i == 0 {
            assert!(matches!(err, TrailError::FirstNotGenesis), "{err}");
        } else {
            assert!(
                matches!(err, TrailError::Gap { index, expected, found } if index == i as u64 && expected == 500 + i as u64 && found == 501 + i as u64),
                "delete {i}: {err}"
            );
            assert!(err.to_string().contains(&format!("gap at record {i}")));
        }
        std::fs::write(&f.card_path, &card_backup).unwrap();
    }
}

#[test]
fn t3_a_truncated_tail_is_refused() {
    let f = Fixture::new(0, 6);
    let good = f.records();
    for k in 1..=3 {
        f.rewrite(&good[..good.len() - k]);
        let err = f.verify().unwrap_err();
        assert!(matches!(err, TrailError::Behind { .. }), "drop {k}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("{k} record(s) are missing")),
            "{err}"
        );
    }
}

#[test]
fn t4_backup_and_restore_is_refused() {
    let f = Fixture::new(7, 2);
    f.verify().unwrap();
    let backup = std::fs::read(&f.trail_path).unwrap();
    let intent_backup = std::fs::read(intent_path(&f.trail_path)).unwrap();
    let mut t = f.open();
    let mut card = f.card();
    t.write(&mut card, &page(50)).unwrap();
    t.verify(&mut card).unwrap();
    std::fs::write(&f.trail_path, &backup).unwrap();
    std::fs::write(intent_path(&f.trail_path), &intent_backup).unwrap();
    let err = f.verify().unwrap_err();
    assert!(matches!(err, TrailError::Behind { .. }), "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    // Even one record removed after it was committed counts as a rollback: the intent
    // file says it was committed, so its absence is not a crash.
    let g = Fixture::new(7, 2);
    g.open().write(&mut g.card(), &page(9)).unwrap();
    let mut all = g.records();
    all.pop();
    g.rewrite(&all);
    assert!(matches!(g.verify().unwrap_err(), TrailError::Behind { .. }));
}

#[test]
fn t5_swapped_records_are_reordered() {
    let f = Fixture::new(40, 5);
    let good = f.records();
    let card_backup = std::fs::read(&f.card_path).unwrap();
    for i in 1..good.len() - 1 {
        let mut recs = good.clone();
        recs.swap(i, i + 1);
        f.rewrite(&recs);
        let err = f.verify().unwrap_err();
        assert!(
            matches!(err, TrailError::Reordered { index, .. } if index == i as u64),
            "swap {i}: {err}"
        );
        std::fs::write(&f.card_path, &card_backup).unwrap();
    }
}

#[test]
fn t6_duplicates_and_forks_are_refused() {
    let f = Fixture::new(3, 4);
    let good = f.records();
    for i in 1..good.len() {
        let mut recs = good.clone();
        recs.insert(i, good[i].clone());
        f.rewrite(&recs);
        let err = f.open().verify_offline().unwrap_err();
        assert!(
            matches!(err, TrailError::Duplicate { index, .. } if index == i as u64 + 1),
            "dup {i}: {err}"
        );
    }
    // A cloned card (same key, serial and counter) signs a different record at the same counter.
    f.rewrite(&good);
    let clone_path = f.dir.join("clone.state");
    std::fs::copy(&f.card_path, &clone_path).unwrap();
    let trail_b = f.dir.join("trail-b");
    std::fs::copy(&f.trail_path, &trail_b).unwrap();
    std::fs::copy(intent_path(&f.trail_path), intent_path(&trail_b)).unwrap();
    let mut card_a = f.card();
    let mut card_b = Card::new(Box::new(EmulatedCard::open(&clone_path).unwrap()));
    let ra = f.open().write(&mut card_a, &page(70)).unwrap();
    let rb = Trail::open(&trail_b, &f.identity)
        .unwrap()
        .write(&mut card_b, &page(80))
        .unwrap();
    assert_eq!(ra.counter, rb.counter);
    assert_ne!(ra, rb);
    let mut forked = good.clone();
    forked.push(ra);
    forked.push(rb);
    f.rewrite(&forked);
    let err = f.open().verify_offline().unwrap_err();
    assert!(
        matches!(err, TrailError::Duplicate { index, .. } if index == good.len() as u64 + 1),
        "{err}"
    );
    assert!(err.to_string().contains("cloned"));
}

#[test]
fn t7_records_from_another_card_are_refused() {
    let a = Fixture::new(0, 3);
    let b = Fixture::new(0, 3);
    // Same counters, other card: the serial and key are bound into every signature.
    let mut spliced = a.records();
    spliced[2] = b.records()[2].clone();
    a.rewrite(&spliced);
    let err = a.open().verify_offline().unwrap_err();
    assert!(
        matches!(err, TrailError::BadSignature { index: 2, .. }),
        "{err}"
    );
    // Another card's trail, or another card presented, is refused up front.
    let err = Trail::open(&b.trail_path, &a.identity).unwrap_err();
    assert!(matches!(err, TrailError::WrongCard(_)), "{err}");
    let err = b.open().verify(&mut a.card()).unwrap_err();
    assert!(matches!(err, TrailError::WrongCard(_)), "{err}");
}

#[test]
fn t9_record_hash_boundaries_do_not_shift() {
    let h = |n: &[u8; 32], b: &[u8]| tally_core::trail::record::h1(n, b);
    let mut n2 = [0u8; 32];
    n2[31] = b'x';
    // Moving a byte between nonce and body, or between counter and serial, changes the digest.
    assert_ne!(h(&[0; 32], b"xabc"), h(&n2, b"abc"));
    let s = tally_core::card::Serial([1; 16]);
    let m1 = tally_core::card::signed_message(&[0; 32], &s, 1);
    let m2 = tally_core::card::signed_message(&[0; 32], &s, 256);
    assert_ne!(m1, m2);
    assert_eq!(m1.len(), 73);
}

#[test]
fn t11_crash_at_every_step_of_write_loses_nothing() {
    for point in [
        CrashPoint::AfterIntent,
        CrashPoint::AfterSign,
        CrashPoint::MidAppend,
        CrashPoint::AfterAppend,
    ] {
        let f = Fixture::new(1000, 2);
        let mut card = f.card();
        let mut t = f.open();
        t.crash_at(Some(point));
        let err = t.write(&mut card, &page(42)).unwrap_err();
        assert!(matches!(err, TrailError::InjectedCrash(p) if p == point));
        drop(t);
        // A new process opens the trail: it recovers, and validates.
        let mut t = f.open();
        let v = t.verify(&mut card).unwrap();
        let recs = f.records();
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.counter, 1000 + i as u64, "{point:?}");
        }
        let signed = !matches!(point, CrashPoint::AfterIntent);
        // genesis + 2 + (the crashed record if the card signed it) + nonce
        assert_eq!(v.records, 4 + signed as u64, "{point:?}");
        let has_42 = recs.iter().any(|r| {
            matches!(
                Body::parse(&r.body).unwrap().usage,
                Usage::Pages { first: 42, .. }
            )
        });
        assert_eq!(
            has_42, signed,
            "{point:?}: a signed record must never be lost"
        );
        if matches!(point, CrashPoint::AfterSign | CrashPoint::MidAppend) {
            assert_eq!(t.last_recovery(), Some(1003));
        }
    }
}

#[test]
fn t12_a_torn_last_record_is_repaired_or_refused_never_half_accepted() {
    let f = Fixture::new(20, 3);
    let mut card = f.card();
    let mut t = f.open();
    t.crash_at(Some(CrashPoint::AfterSign));
    t.write(&mut card, &page(9)).unwrap_err();
    drop(t);
    // The card signed record 24; simulate the append torn at every byte.
    let base = std::fs::read(&f.trail_path).unwrap();
    let card_state = std::fs::read(&f.card_path).unwrap();
    let intent = std::fs::read(intent_path(&f.trail_path)).unwrap();
    let mut probe = f.open();
    let err = probe.verify(&mut f.card());
    assert!(err.is_ok());
    let full = f.records();
    let frame = encode_frame(&full[4]);
    for cut in 0..frame.len() {
        std::fs::write(&f.card_path, &card_state).unwrap();
        std::fs::write(intent_path(&f.trail_path), &intent).unwrap();
        let mut bytes = base.clone();
        bytes.extend_from_slice(&frame[..cut]);
        std::fs::write(&f.trail_path, &bytes).unwrap();
        let mut t = f.open();
        t.verify(&mut f.card()).unwrap();
        assert_eq!(
            f.records()[4],
            full[4],
            "cut {cut}: repaired record differs"
        );
    }
    // A committed last record torn afterwards is rebuilt from the card too; with the intent gone it is refused.
    std::fs::write(&f.card_path, &card_state).unwrap();
    std::fs::remove_file(intent_path(&f.trail_path)).unwrap();
    let mut bytes = base.clone();
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&f.trail_path, &bytes).unwrap();
    let err = f.verify().unwrap_err();
    assert!(
        matches!(err, TrailError::LostPending { counter: 24 }),
        "{err}"
    );
    // Garbage after a trail the card agrees with: refused, not dropped.
    std::fs::write(&f.card_path, &card_state).unwrap();
    std::fs::write(intent_path(&f.trail_path), &intent).unwrap();
    let mut t = f.open();
    t.verify(&mut f.card()).unwrap();
    let mut bytes = std::fs::read(&f.trail_path).unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    std::fs::write(&f.trail_path, &bytes).unwrap();
    let err = f.verify().unwrap_err();
    assert!(matches!(err, TrailError::TornTail { bytes: 3 }), "{err}");
}

#[test]
fn t14_a_card_at_its_maximum_refuses_and_never_wraps() {
    let f = Fixture::new(u64::MAX - 2, 0); // genesis at MAX-2
    let mut card = f.card();
    let mut t = f.open();
    t.write(&mut card, &page(1)).unwrap(); // at MAX-1; counter is now MAX
    let err = t.write(&mut card, &page(2)).unwrap_err();
    match &err {
        TrailError::Card(CardError::Status { status, .. }) => {
            assert_eq!(*status, StatusWord::COUNTER_EXHAUSTED)
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("used up"), "{err}");
    assert_eq!(card.session().unwrap().get_counter().unwrap(), u64::MAX);
    // The trail stays intact and verifiable.
    f.open().verify_offline().unwrap();
}

#[test]
fn t22_the_wrong_key_fails() {
    let f = Fixture::new(0, 2);
    let other = Fixture::new(0, 0);
    let mut wrong = f.identity.clone();
    wrong.public_key = other.identity.public_key.clone();
    // Header says another key.
    assert!(matches!(
        Trail::open(&f.trail_path, &wrong).unwrap_err(),
        TrailError::WrongCard(_)
    ));
    // Even with a header re-made for the wrong key, every signature fails.
    rewrite(&f.trail_path, &wrong, &f.records());
    let err = Trail::open(&f.trail_path, &wrong)
        .unwrap()
        .verify_offline()
        .unwrap_err();
    assert!(
        matches!(err, TrailError::BadSignature { index: 0, .. }),
        "{err}"
    );
    let recs = f.records();
    assert!(
        tally_core::trail::verify::first_bad_signature(&recs, &wrong, &RingVerifier, 2) == Some(0)
    );
}

#[test]
fn a_restored_card_state_is_seen() {
    let f = Fixture::new(0, 1);
    let old_card = std::fs::read(&f.card_path).unwrap();
    f.verify().unwrap();
    std::fs::write(&f.card_path, old_card).unwrap();
    let err = f.verify().unwrap_err();
    assert!(matches!(err, TrailError::Ahead { .. }), "{err}");
}

#[test]
fn a_new_trail_for_a_used_card_is_refused() {
    let f = Fixture::new(5, 1);
    std::fs::remove_file(&f.trail_path).unwrap();
    let err = Trail::create(&f.trail_path, &mut f.card(), &f.identity).unwrap_err();
    assert!(
        matches!(err, TrailError::CardAlreadyUsed { origin: 5, used: 2 }),
        "{err}"
    );
}

#[test]
fn parallel_and_serial_validation_agree() {
    let f = Fixture::new(0, 150);
    let good = f.records();
    for bad in [0usize, 77, 150] {
        let mut recs = good.clone();
        recs[bad].signature.0[5] ^= 1;
        for threads in [1, 2, 3] {
            let got = tally_core::trail::verify::first_bad_signature(
                &recs,
                &f.identity,
                &RingVerifier,
                threads,
            );
            assert_eq!(got, Some(bad));
        }
    }
}
