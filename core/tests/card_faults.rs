//! Faults on the card link (DESIGN threat 15, THREATS T11/T13 at the APDU level) and the
//! clock set back (T20) at the trail level.
//!
//! A [`FaultyCard`] fails the N-th APDU before the card sees it, or lets the card execute
//! it and loses the answer. Write and ValidateTrail are run with the fault at every APDU
//! position they use; afterwards a new trail handle and a new card handle (a restarted
//! viewer) — or the same trail handle retrying — must recover: every record the card
//! signed is in the trail, counters are contiguous from the card's origin to its counter
//! − 1, nothing is bricked (the next Write succeeds).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

#[path = "support/faulty_card.rs"]
mod faulty_card;

use faulty_card::{Fault, FaultyCard, SharedPlan};
use std::path::PathBuf;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::policy::{Decision, Limits, Reason, Tally, TestClock, evaluate};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};
use time::{Duration, OffsetDateTime};

const LIC: LicenceId = LicenceId([7; 16]);

struct Fixture {
    _dir: tempfile::TempDir,
    card_path: PathBuf,
    trail_path: PathBuf,
    identity: CardIdentity,
}

impl Fixture {
    /// A card at a non-zero origin, a trail with its genesis record and two page records.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("card.state");
        let state = CardState::generate(&mut rand_core::OsRng, 1_000, "fault test card");
        EmulatedCard::create(&card_path, &state).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let identity = card.identity().unwrap();
        let trail_path = dir.path().join("trail");
        let mut trail = Trail::create(&trail_path, &mut card, &identity).unwrap();
        trail.write(&mut card, &page(1)).unwrap();
        trail.write(&mut card, &page(2)).unwrap();
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

    fn faulty_card(&self, fault: Option<(usize, Fault)>) -> (Card, SharedPlan) {
        let (c, plan) = FaultyCard::new(EmulatedCard::open(&self.card_path).unwrap(), fault);
        (Card::new(Box::new(c)), plan)
    }

    /// The card's counter, read from its state (not through the link under test).
    fn card_counter(&self) -> u64 {
        EmulatedCard::open(&self.card_path)
            .unwrap()
            .load()
            .unwrap()
            .counter
    }

    fn open(&self) -> Trail {
        Trail::open(&self.trail_path, &self.identity).unwrap()
    }
}

fn page(first: u32) -> Body {
    Body::now(Usage::Pages {
        licence: LIC,
        first,
        count: 5,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Write,
    Validate,
}

fn run(op: Op, trail: &mut Trail, card: &mut Card, body: &Body) -> Result<(), TrailError> {
    match op {
        Op::Write => trail.write(card, body).map(|_| ()),
        Op::Validate => trail.verify(card).map(|_| ()),
    }
}

/// The APDUs `op` sends from a freshly opened trail handle (identity check included).
fn apdus_of(op: Op) -> Vec<u8> {
    let f = Fixture::new();
    let (mut card, plan) = f.faulty_card(None);
    run(op, &mut f.open(), &mut card, &page(99)).unwrap();
    plan.lock().unwrap().log.clone()
}

/// The invariants after recovery: contiguous counters from the origin to the card's
/// counter − 1, the records from before the fault unchanged, every signature valid.
fn check_recovered(f: &Fixture, before: &[Record], what: &str) -> Vec<Record> {
    let mut t = f.open();
    t.verify_offline().unwrap_or_else(|e| panic!("{what}: {e}"));
    let recs = t.records().to_vec();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(
            r.counter,
            f.identity.origin + i as u64,
            "{what}: counter of record {i}"
        );
    }
    assert_eq!(
        recs.last().unwrap().counter + 1,
        f.card_counter(),
        "{what}: trail and card out of step"
    );
    assert_eq!(
        &recs[..before.len()],
        before,
        "{what}: earlier records changed"
    );
    recs
}

#[test]
fn a_fault_at_every_apdu_of_write_and_validate_is_recovered() {
    let mut scenarios = 0;
    let mut recovered_from_card = 0;
    for op in [Op::Write, Op::Validate] {
        let apdus = apdus_of(op);
        // SELECT, GET_SERIAL, GET_PUBLIC_KEY, GET_COUNTER …, SIGN_AND_INCREMENT, GET_COUNTER.
        assert!(apdus.contains(&0x10), "{op:?} signs: {apdus:02x?}");
        for fault in [Fault::Fail, Fault::DropAnswer] {
            for (at, ins) in apdus.iter().enumerate() {
                for same_handle in [false, true] {
                    let what = format!(
                        "{op:?}, {fault:?} at APDU {at} (INS {:02x}), {}",
                        ins,
                        if same_handle {
                            "same handle retries"
                        } else {
                            "reopened"
                        }
                    );
                    let f = Fixture::new();
                    let mut trail = f.open();
                    let before = trail.records().to_vec();
                    let counter_before = f.card_counter();
                    let body = page(100 + at as u32);
                    let (mut card, plan) = f.faulty_card(Some((at, fault)));
                    let r = run(op, &mut trail, &mut card, &body);
                    assert!(plan.lock().unwrap().fired, "{what}: fault not reached");
                    assert!(r.is_err(), "{what}: a faulted operation reported success");
                    let signed = f.card_counter() > counter_before;
                    assert!(
                        f.card_counter() <= counter_before + 1,
                        "{what}: signed twice"
                    );

                    // Restart: a new card handle, and a new trail handle unless retrying.
                    let mut card = f.card();
                    let mut trail = if same_handle { trail } else { f.open() };
                    let v = trail
                        .verify(&mut card)
                        .unwrap_or_else(|e| panic!("{what}: validate after the fault: {e}"));
                    assert_eq!(v.last_counter + 1, f.card_counter(), "{what}");
                    let recs = check_recovered(&f, &before, &what);
                    // Nothing lost: what the card signed is in the trail, right after `before`.
                    let expected_len = before.len() + usize::from(signed) + 1;
                    assert_eq!(recs.len(), expected_len, "{what}: record count");
                    if signed {
                        recovered_from_card += 1;
                        let rec = &recs[before.len()];
                        let b = Body::parse(&rec.body).unwrap();
                        match op {
                            Op::Write => assert_eq!(b, body, "{what}: recovered body"),
                            Op::Validate => {
                                assert!(matches!(b.usage, Usage::Nonce { .. }), "{what}: {b:?}")
                            }
                        }
                    }
                    // Not bricked: the next Write goes through, and a fresh handle agrees.
                    trail.write(&mut card, &page(500)).unwrap();
                    check_recovered(&f, &before, &what);
                    scenarios += 1;
                }
            }
        }
    }
    println!(
        "card faults: {scenarios} scenarios, {recovered_from_card} records the card signed \
         before the fault recovered from GET_LAST_SIGNATURE, none lost"
    );
    assert!(
        recovered_from_card > 0,
        "no fault hit after the card signed"
    );
}

#[test]
fn a_trail_created_through_a_faulty_link_recovers_or_starts_cleanly() {
    // Trail::create's own genesis Write, faulted at each APDU.
    for fault in [Fault::Fail, Fault::DropAnswer] {
        for at in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let card_path = dir.path().join("card.state");
            let state = CardState::generate(&mut rand_core::OsRng, 7, "fault test card");
            EmulatedCard::create(&card_path, &state).unwrap();
            let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
            let identity = card.identity().unwrap();
            let trail_path = dir.path().join("trail");
            let (faulty, plan) =
                FaultyCard::new(EmulatedCard::open(&card_path).unwrap(), Some((at, fault)));
            let r = Trail::create(&trail_path, &mut Card::new(Box::new(faulty)), &identity);
            if !plan.lock().unwrap().fired {
                assert!(r.is_ok());
                continue;
            }
            assert!(r.is_err(), "{fault:?} at {at}: create reported success");
            let counter = EmulatedCard::open(&card_path)
                .unwrap()
                .load()
                .unwrap()
                .counter;
            // Either the card never signed (the trail can be created again, or was left
            // empty and in step) or the genesis record is recovered from the card.
            let mut t = if trail_path.exists() {
                Trail::open(&trail_path, &identity).unwrap()
            } else {
                assert_eq!(counter, 7, "{fault:?} at {at}: signed without a trail file");
                Trail::create(&trail_path, &mut card, &identity).unwrap()
            };
            t.verify(&mut card)
                .unwrap_or_else(|e| panic!("{fault:?} at {at}: {e}"));
            let recs = t.records();
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(r.counter, 7 + i as u64);
            }
            assert_eq!(
                recs.last().unwrap().counter + 1,
                EmulatedCard::open(&card_path)
                    .unwrap()
                    .load()
                    .unwrap()
                    .counter
            );
        }
    }
}

/// T20 at the trail level: the reader sets the clock back between records.
#[test]
fn t20_records_written_with_the_clock_set_back_validate_in_counter_order_and_dates_refuse() {
    let f = Fixture::new();
    let mut card = f.card();
    let mut trail = f.open();
    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // Wall-clock times go forward, then a day back, then back again.
    let times = [
        t0,
        t0 + Duration::hours(2),
        t0 - Duration::days(1),
        t0 - Duration::days(2),
    ];
    for (i, at) in times.iter().enumerate() {
        let body = Body {
            at: *at,
            usage: Usage::Pages {
                licence: LIC,
                first: 10 + i as u32,
                count: 5,
            },
        };
        trail.write(&mut card, &body).unwrap();
    }
    // Order comes from the card counter, not from the clock: the trail is valid.
    let v = Trail::open(&f.trail_path, &f.identity)
        .unwrap()
        .verify(&mut f.card())
        .unwrap();
    let mut t = f.open();
    t.verify_offline().unwrap();
    let bodies: Vec<(u64, Body)> = t.verified_bodies().collect();
    assert_eq!(bodies.len() as u64, v.records);
    let counters: Vec<u64> = bodies.iter().map(|(c, _)| *c).collect();
    assert!(
        counters.windows(2).all(|w| w[1] == w[0] + 1),
        "{counters:?}"
    );
    let ours: Vec<OffsetDateTime> = bodies
        .iter()
        .filter(|(_, b)| matches!(b.usage, Usage::Pages { first, .. } if first >= 10))
        .map(|(_, b)| b.at)
        .collect();
    assert_eq!(
        ours, times,
        "records come back in counter order, times as written"
    );

    let tally = Tally::from_bodies(LIC, &[], bodies.iter().map(|(_, b)| b));
    // The clock still set back (now = the last record's time): a date-limited licence is
    // refused, naming the newest record, whatever the counter order.
    let dated = Limits::parse(b"tally-policy/1\nnot-after 9999-12-31\n").unwrap();
    let back = TestClock::at(times[3]);
    match evaluate(&dated, &tally, &back) {
        Decision::Denied {
            reason: Reason::ClockSetBack { newest_record, now },
        } => {
            assert_eq!(newest_record, times[1]);
            assert_eq!(now, times[3]);
        }
        d => panic!("clock set back was not refused: {d:?}"),
    }
    // A licence whose date limit passed by the newest record stays ended even with the
    // clock set back to just within the tolerance before it.
    let limit = times[1] - Duration::minutes(1);
    let ended = Limits::parse(
        format!(
            "tally-policy/1\nnot-after {}\n",
            limit
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        )
        .as_bytes(),
    )
    .unwrap();
    let d = evaluate(
        &ended,
        &tally,
        &TestClock::at(times[1] - Duration::seconds(30)),
    );
    assert!(
        matches!(
            d,
            Decision::Limited {
                reason: Reason::Expired { .. }
            }
        ),
        "a date limit was extended by setting the clock back: {d:?}"
    );
    // Without dates, the clock does not matter and every page is still counted.
    let pages = Limits::parse(b"tally-policy/1\npages 1000\n").unwrap();
    assert!(evaluate(&pages, &tally, &back).is_allowed());
}
