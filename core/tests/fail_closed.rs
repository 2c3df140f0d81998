//! T21, fail closed: random mutations of a valid trail file (flips, insertions, deletions,
//! truncations, splices) fed to ValidateTrail with the card. The only acceptable outcomes are
//! an error, or — when the damage was a torn last record the card can vouch for — a trail
//! whose records are exactly the original ones. Nothing else is ever accepted. The same for
//! a trail that was archived and then restored from the server's backup, validated trusting
//! the server: its anchor and its recovery record (the two places a trail may legitimately
//! not be contiguous from genesis) open no door either.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

#[path = "support/restore.rs"]
mod restore_support;

use proptest::prelude::*;
use std::sync::OnceLock;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::crypto::PublicKey;
use tally_core::trail::body::LostCharge;
use tally_core::trail::file::{HEADER_LEN, parse_frames};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage, intent_path};
use tally_core::validation::ServerSecret;

struct Base {
    trail: Vec<u8>,
    intent: Vec<u8>,
    card: Vec<u8>,
    identity: CardIdentity,
    records: Vec<Record>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("card");
        EmulatedCard::create(&cp, &CardState::generate(&mut rand_core::OsRng, 9, "t")).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&cp).unwrap()));
        let identity = card.identity().unwrap();
        let tp = dir.path().join("trail");
        let mut t = Trail::create(&tp, &mut card, &identity).unwrap();
        for i in 0..6 {
            t.write(
                &mut card,
                &Body::now(Usage::Pages {
                    licence: LicenceId([3; 16]),
                    first: i + 1,
                    count: 4,
                }),
            )
            .unwrap();
        }
        let trail = std::fs::read(&tp).unwrap();
        let records = parse_frames(&trail[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records;
        Base {
            intent: std::fs::read(intent_path(&tp)).unwrap(),
            card: std::fs::read(&cp).unwrap(),
            trail,
            identity,
            records,
        }
    })
}

/// An archived trail restored from its (archived) backup: anchor validator, records, a
/// hole, the recovery record, more records — and the server key that signed both.
struct Restored {
    base: Base,
    server: PublicKey,
}

fn restored() -> &'static Restored {
    static B: OnceLock<Restored> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cp = dir.path().join("card");
        EmulatedCard::create(&cp, &CardState::generate(&mut rand_core::OsRng, 40, "t")).unwrap();
        let card = || Card::new(Box::new(EmulatedCard::open(&cp).unwrap()));
        let identity = card().identity().unwrap();
        let server = ServerSecret::random(&mut rand_core::OsRng);
        let keys = vec![server.public().clone()];
        let tp = dir.path().join("trail");
        Trail::create(&tp, &mut card(), &identity).unwrap();
        let write = |usage: Usage| {
            let mut t = Trail::open(&tp, &identity).unwrap();
            t.set_trusted_validators(keys.clone());
            t.write(&mut card(), &Body::now(usage)).unwrap();
        };
        let open = || Usage::Open {
            licence: LicenceId([3; 16]),
        };
        let vouch = || {
            let v = tally_core::trail::validator::vouch(
                &server,
                &identity,
                &std::fs::read(&tp).unwrap(),
                restore_support::now(),
            )
            .unwrap();
            let mut t = Trail::open(&tp, &identity).unwrap();
            t.set_trusted_validators(keys.clone());
            let bodies: Vec<Body> = v.bodies().cloned().collect();
            t.write_all(&mut card(), &bodies).unwrap();
        };
        (0..3).for_each(|_| write(open()));
        vouch();
        (0..2).for_each(|_| write(open()));
        Trail::archive(&tp, &identity, keys.clone()).unwrap();
        let backup = std::fs::read(&tp).unwrap();
        write(open());
        restore_support::lose_and_restore(
            &tp,
            &mut card(),
            &identity,
            &server,
            &backup,
            vec![LicenceId([3; 16])],
            LostCharge::Full,
        )
        .unwrap();
        (0..2).for_each(|_| write(open()));
        let trail = std::fs::read(&tp).unwrap();
        let records = parse_frames(&trail[HEADER_LEN..], HEADER_LEN as u64, 0)
            .unwrap()
            .records;
        Restored {
            base: Base {
                intent: std::fs::read(intent_path(&tp)).unwrap(),
                card: std::fs::read(&cp).unwrap(),
                trail,
                identity,
                records,
            },
            server: server.public().clone(),
        }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..300).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(b: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = b.to_vec();
    for m in muts {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if !v.is_empty() {
                    v[i % len] ^= x;
                }
            }
            Mutation::Insert(i, bytes) => {
                let at = i % (v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(v.len());
                v.drain(at.min(v.len())..end);
            }
            Mutation::Truncate(i) => v.truncate(i % len),
            Mutation::Duplicate(i, n) => {
                let at = i % len;
                let end = (at + n).min(v.len());
                let copy = v[at.min(v.len())..end].to_vec();
                v.splice(end..end, copy);
            }
        }
    }
    v
}

/// ValidateTrail with the card on a copy of `b` (its card state and intent file) whose trail
/// file is `trail`, trusting `trusted`.
fn verify_as(b: &Base, trail: &[u8], trusted: Vec<PublicKey>) -> Result<Trail, TrailError> {
    let dir = tempfile::tempdir().unwrap();
    let tp = dir.path().join("trail");
    let cp = dir.path().join("card");
    std::fs::write(&tp, trail).unwrap();
    std::fs::write(intent_path(&tp), &b.intent).unwrap();
    std::fs::write(&cp, &b.card).unwrap();
    // The card state is the reader's own file (one others may read is refused): without
    // this every case would "fail closed" on the card, proving nothing about the trail.
    std::fs::set_permissions(
        &cp,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let mut card = Card::new(Box::new(EmulatedCard::open(&cp).unwrap()));
    let mut t = Trail::open(&tp, &b.identity)?;
    t.set_trusted_validators(trusted);
    t.verify(&mut card)?;
    Ok(t)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn mutated_trails_are_never_accepted(muts in prop::collection::vec(mutation(), 1..4)) {
        let b = base();
        let bad = apply(&b.trail, &muts);
        prop_assume!(bad != b.trail);
        if let Ok(t) = verify_as(b, &bad, vec![]) {
            // Accepted only if the torn tail was rebuilt into exactly the original records
            // (followed by the nonce record ValidateTrail appends).
            let recs = t.records();
            prop_assert_eq!(&recs[..recs.len() - 1], &b.records[..], "accepted a changed trail: {:?}", muts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn mutated_archived_and_restored_trails_are_never_accepted(muts in prop::collection::vec(mutation(), 1..4)) {
        let r = restored();
        let b = &r.base;
        // The unchanged trail is valid: the anchor and the recovery are accepted as such.
        prop_assume!(apply(&b.trail, &muts) != b.trail);
        let bad = apply(&b.trail, &muts);
        if let Ok(t) = verify_as(b, &bad, vec![r.server.clone()]) {
            let recs = t.records();
            prop_assert_eq!(&recs[..recs.len() - 1], &b.records[..], "accepted a changed trail: {:?}", muts);
        }
    }
}

#[test]
fn the_unchanged_archived_and_restored_trail_is_valid() {
    let r = restored();
    let b = &r.base;
    let t = verify_as(b, &b.trail, vec![r.server.clone()]).unwrap();
    assert!(t.header().first_counter > b.identity.origin, "archived");
    assert!(
        b.records
            .iter()
            .any(|r| r.body.starts_with(b"tally/1 recovery ")),
        "restored"
    );
}
