//! Restoring a lost trail from the validation server's backup (\[0062\]): the card-signed
//! restore request, the server's recovery plan, `Trail::restore`, and ValidateTrail's rule
//! that a hole in the counters is accepted only before a trusted recovery record naming
//! exactly the missing counters. Real card emulation, real ECDSA and AES-GCM, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use tally_core::card::Card;
use tally_core::policy::Tally;
use tally_core::trail::body::{LostCharge, Recovery};
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};
use tally_core::validation::{
    RestoreError, ServerSecret, open_restore_answer, plan_recovery, restore_request_body,
    seal_restore_answer, seal_restore_request,
};

#[path = "support/restore.rs"]
mod restore_support;
use restore_support::{Fx, now};

const A: LicenceId = LicenceId([0xaa; 16]);
const B: LicenceId = LicenceId([0xbb; 16]);

/// A card from counter 1000 with a trail of `n` open records of licence A.
fn fx(n: u32) -> Fx {
    let f = Fx::new(1000);
    for _ in 0..n {
        f.write(Usage::Open { licence: A });
    }
    f
}

fn recovery_of(t: &Trail) -> Recovery {
    let body = Body::parse(&t.records().last().unwrap().body).unwrap();
    match body.usage {
        Usage::Recovery(r) => *r,
        other => panic!("last record is not a recovery: {other:?}"),
    }
}

#[test]
fn restore_accounts_for_every_lost_counter_and_validates_afterwards() {
    let f = fx(3);
    let backup = f.backup(); // genesis + 3 opens: counters 1000..=1003
    for _ in 0..5 {
        f.write(Usage::Open { licence: A }); // lost: 1004..=1008
    }
    let t = f
        .lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    let r = recovery_of(&t);
    // The five lost records plus the restore request itself (1009).
    assert_eq!((r.from, r.to), (1004, 1009));
    assert_eq!(t.records().len(), 5);
    assert_eq!(t.records().last().unwrap().counter, 1010);
    // ValidateTrail trusting the server: valid, and metering goes on.
    let t = f.verify(vec![f.server.public().clone()]).unwrap();
    assert_eq!(t.records().last().unwrap().counter, 1011);
    f.write(Usage::Open { licence: B });
    f.verify(vec![f.server.public().clone()]).unwrap();
}

#[test]
fn a_restore_right_after_the_backup_charges_nothing() {
    // Only the restore request's own counter is lost: no licence lost any use, whatever the
    // publisher's policy for lost records.
    let f = fx(2);
    let backup = f.backup();
    let t = f
        .lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    let r = recovery_of(&t);
    assert_eq!(r.from, r.to, "one counter lost: the request's");
    assert_eq!(r.charge, LostCharge::Forgive);
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    let a = Tally::from_bodies(A, &[f.server.public().fingerprint()], &bodies);
    assert!(!a.written_off);
    assert_eq!(a.opens, 2);
}

#[test]
fn another_servers_recovery_keeps_the_trail_valid_but_accounts_for_none_of_our_licences() {
    // T30: the server that forgave (or charged) lost use speaks only for its own
    // publisher's licences; for every other licence the hole's use counts in full.
    let f = fx(1);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    let r = recovery_of(
        &f.lose_and_restore(&backup, vec![A], LostCharge::Forgive)
            .unwrap(),
    );
    let ours = [f.server.public().fingerprint()];
    let other = ServerSecret::random(&mut rand_core::OsRng);
    for trusted in [vec![], vec![other.public().clone()]] {
        let t = f.verify(trusted).unwrap();
        let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
        // B's licence trusts another server (or none): written off, the hole named.
        let b = Tally::from_bodies(B, &[other.public().fingerprint()], &bodies);
        assert!(b.written_off && !b.charged_in_full());
        assert_eq!(b.unaccounted(), &[(r.from, r.to)]);
        assert!(matches!(
            tally_core::policy::evaluate(
                &tally_core::policy::Limits {
                    opens: Some(10),
                    ..Default::default()
                },
                &b,
                &tally_core::policy::SystemClock
            ),
            tally_core::policy::Decision::Limited {
                reason: tally_core::policy::Reason::LostUnaccounted { .. }
            }
        ));
        // A's licence trusts the server that forgave: forgiven.
        let a = Tally::from_bodies(A, &ours, &bodies);
        assert!(!a.written_off && a.unaccounted().is_empty());
        assert_eq!(a.opens, 1);
    }
    // A recovery that names the trusted server but is not signed by it fails the trail.
    let mut recs = f.read().1;
    let last = recs
        .iter()
        .position(|r| r.body.starts_with(b"tally/1 recovery "))
        .unwrap();
    let text = String::from_utf8(recs[last].body.clone()).unwrap();
    let sig = text.rfind("sig=").unwrap() + 4;
    let mut forged = text.into_bytes();
    forged[sig] = if forged[sig] == b'0' { b'1' } else { b'0' };
    recs[last].body = forged;
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(vec![f.server.public().clone()]).unwrap_err();
    assert_eq!(e.check(), "signature", "{e}");
}

#[test]
fn a_hole_without_a_recovery_is_still_a_gap() {
    let f = fx(4);
    let mut recs = f.read().1;
    recs.remove(2);
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(vec![f.server.public().clone()]).unwrap_err();
    assert!(
        matches!(
            e,
            TrailError::Gap {
                index: 2,
                expected: 1002,
                found: 1003
            }
        ),
        "{e}"
    );
}

#[test]
fn a_recovery_cannot_cover_records_deleted_elsewhere_or_be_moved() {
    let f = fx(2);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    f.lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    f.write(Usage::Open { licence: B });
    f.write(Usage::Open { licence: B });
    let trusted = vec![f.server.public().clone()];
    let good = f.read().1;
    // A record of the backup deleted: the recovery's chain hash no longer matches.
    let mut recs = good.clone();
    recs.remove(1);
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(trusted.clone()).unwrap_err();
    assert!(matches!(e, TrailError::Gap { index: 1, .. }), "{e}");
    // A record after the recovery deleted: a plain gap.
    let mut recs = good.clone();
    recs.remove(4);
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(trusted.clone()).unwrap_err();
    assert!(matches!(e, TrailError::Gap { index: 4, .. }), "{e}");
    // The last backup record deleted so the recovery seems to cover one more: refused.
    let mut recs = good.clone();
    recs.remove(2);
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(trusted.clone()).unwrap_err();
    assert_eq!(e.check(), "recovery", "{e}");
    // The recovery's body edited (its range widened): the card signature fails.
    let mut recs = good.clone();
    let text = String::from_utf8(recs[3].body.clone()).unwrap();
    recs[3].body = text.replace(" from=1003 ", " from=1002 ").into_bytes();
    f.rewrite(f.id.origin, &recs);
    let e = f.verify(trusted.clone()).unwrap_err();
    assert!(
        matches!(e, TrailError::BadSignature { index: 3, .. }),
        "{e}"
    );
    // Intact, it validates.
    f.rewrite(f.id.origin, &good);
    f.verify(trusted).unwrap();
}

#[test]
fn lost_records_are_charged_in_full_to_the_named_licences_only() {
    let f = fx(2);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    let t = f
        .lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    let a = Tally::from_bodies(A, &[f.server.public().fingerprint()], &bodies);
    assert!(a.written_off);
    assert!(a.opens >= tally_core::policy::WRITTEN_OFF);
    assert!(a.page_views >= tally_core::policy::WRITTEN_OFF);
    let b = Tally::from_bodies(B, &[f.server.public().fingerprint()], &bodies);
    assert!(!b.written_off);
    assert_eq!(b.opens, 0);
}

#[test]
fn forgiven_and_all_licence_recoveries_say_so() {
    let f = fx(1);
    let backup = f.backup();
    let t = f
        .lose_and_restore(&backup, vec![], LostCharge::Forgive)
        .unwrap();
    let r = recovery_of(&t);
    assert_eq!(r.charge, LostCharge::Forgive);
    assert_eq!(r.licences, None);
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    let a = Tally::from_bodies(A, &[f.server.public().fingerprint()], &bodies);
    assert!(!a.written_off);
    assert_eq!(a.opens, 1);
    // Thirteen licences: more than a recovery names, so every licence is charged.
    let f = fx(1);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    let many: Vec<LicenceId> = (0..13u8).map(|i| LicenceId([i; 16])).collect();
    let t = f.lose_and_restore(&backup, many, LostCharge::Full).unwrap();
    assert_eq!(recovery_of(&t).licences, None);
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    assert!(Tally::from_bodies(B, &[f.server.public().fingerprint()], &bodies).written_off);
}

#[test]
fn the_server_refuses_requests_it_should_not_answer() {
    let f = fx(2);
    let backup = f.backup();
    std::fs::remove_file(&f.trail).unwrap();
    let mut card = f.card();
    let sign =
        |card: &mut Card, body: &Body| Trail::sign_detached(&f.trail, card, &f.id, body).unwrap();
    let plan = |rec: &Record, last: Option<u64>, at: i64| {
        let (env, _) =
            seal_restore_request(f.server.public(), &f.id.serial, rec, &mut rand_core::OsRng)
                .unwrap();
        let (req, _) = f.server.open_restore_request(&env).unwrap();
        plan_recovery(
            &f.server,
            &f.id,
            &req,
            &backup,
            last,
            vec![A],
            LostCharge::Full,
            at,
        )
    };
    let good = sign(&mut card, &restore_request_body(f.server.public(), now()));
    assert!(plan(&good, None, now()).is_ok());
    // Replayed: its counter is not above the last restore's.
    assert!(matches!(
        plan(&good, Some(good.counter), now()),
        Err(RestoreError::Replay { .. })
    ));
    // Stale: an hour off the server's clock.
    assert!(matches!(
        plan(&good, None, now() + 3600),
        Err(RestoreError::Stale { .. })
    ));
    // For another server.
    let other = ServerSecret::random(&mut rand_core::OsRng);
    let foreign = sign(&mut card, &restore_request_body(other.public(), now()));
    assert!(matches!(
        plan(&foreign, None, now()),
        Err(RestoreError::NotARequest)
    ));
    // Not a restore request at all.
    let plain = sign(&mut card, &Body::now(Usage::Open { licence: A }));
    assert!(matches!(
        plan(&plain, None, now()),
        Err(RestoreError::NotARequest)
    ));
    // Signature edited.
    let mut forged = good.clone();
    forged.signature.0[10] ^= 1;
    assert!(matches!(
        plan(&forged, None, now()),
        Err(RestoreError::NotTheCard(_))
    ));
    // Another card's request under this serial.
    let mut body_edit = good.clone();
    body_edit.counter += 1;
    assert!(matches!(
        plan(&body_edit, None, now()),
        Err(RestoreError::NotTheCard(_))
    ));
    // A damaged backup.
    let mut bad = backup.clone();
    let last = bad.len() - 3;
    bad[last] ^= 1;
    let (env, _) = seal_restore_request(
        f.server.public(),
        &f.id.serial,
        &good,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (req, _) = f.server.open_restore_request(&env).unwrap();
    assert!(matches!(
        plan_recovery(
            &f.server,
            &f.id,
            &req,
            &bad,
            None,
            vec![],
            LostCharge::Full,
            now()
        ),
        Err(RestoreError::Backup(_))
    ));
}

#[test]
fn a_forged_or_mismatched_answer_is_refused_before_anything_is_written() {
    let f = fx(2);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    std::fs::remove_file(&f.trail).unwrap();
    let mut card = f.card();
    let body = restore_request_body(f.server.public(), now());
    let request = Trail::sign_detached(&f.trail, &mut card, &f.id, &body).unwrap();
    let (env, key) = seal_restore_request(
        f.server.public(),
        &f.id.serial,
        &request,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (req, skey) = f.server.open_restore_request(&env).unwrap();
    let plan = plan_recovery(
        &f.server,
        &f.id,
        &req,
        &backup,
        None,
        vec![A],
        LostCharge::Full,
        now(),
    )
    .unwrap();
    let text = plan.body.encode();
    let restore = |backup: &[u8], recovery: &[u8], server: &ServerSecret| {
        let mut card = f.card();
        Trail::restore(
            &f.trail,
            &mut card,
            &f.id,
            backup,
            recovery,
            server.public(),
        )
    };
    // Signed by another server.
    let other = ServerSecret::random(&mut rand_core::OsRng);
    assert_eq!(
        restore(&backup, text.as_bytes(), &other)
            .unwrap_err()
            .check(),
        "recovery"
    );
    // Its text edited (charge forgiven): the server's signature fails.
    let edited = text.replace("charge=full", "charge=forgive");
    assert_eq!(
        restore(&backup, edited.as_bytes(), &f.server)
            .unwrap_err()
            .check(),
        "recovery"
    );
    // A shorter backup than the one it was made for: the chain hash / range don't match.
    let recs = parse_frames(&backup[HEADER_LEN..], HEADER_LEN as u64, 0)
        .unwrap()
        .records;
    let mut short = Header::for_card(&f.id, f.id.origin).encode().to_vec();
    for r in &recs[..recs.len() - 1] {
        short.extend(encode_frame(r));
    }
    assert_eq!(
        restore(&short, text.as_bytes(), &f.server)
            .unwrap_err()
            .check(),
        "recovery"
    );
    // The card used since the request: the recovery does not reach its counter.
    f.card()
        .session()
        .unwrap()
        .sign_and_increment(&[7; 32])
        .unwrap();
    assert!(matches!(
        restore(&backup, text.as_bytes(), &f.server),
        Err(TrailError::Behind { .. })
    ));
    // Nothing was written by any refusal.
    assert!(!f.trail.exists());
    // The answer opens only with this request's key.
    let sealed = seal_restore_answer(&skey, text.as_bytes(), &backup).unwrap();
    assert!(open_restore_answer(&key, &sealed).is_ok());
    let (_, key2) = seal_restore_request(
        f.server.public(),
        &f.id.serial,
        &request,
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert!(open_restore_answer(&key2, &sealed).is_err());
    let mut flipped = sealed.clone();
    let n = flipped.len() - 1;
    flipped[n] ^= 1;
    assert!(open_restore_answer(&key, &flipped).is_err());
}

#[test]
fn a_validator_after_a_recovery_keeps_the_write_off_on_a_fast_start() {
    let f = fx(2);
    let backup = f.backup();
    f.write(Usage::Open { licence: A });
    f.lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    f.write(Usage::Open { licence: B });
    // The server vouches for the restored trail (recovery included) and the reader appends it.
    f.vouch();
    let mut t = Trail::open(&f.trail, &f.id).unwrap();
    t.set_trusted_validators(vec![f.server.public().clone()]);
    t.verify_offline().unwrap();
    assert!(t.vouched().is_some(), "fast start from the validator");
    let later: Vec<Body> = t.unvouched_bodies().map(|(_, b)| b).collect();
    let a = Tally::resume(A, &[f.server.public().fingerprint()], t.vouched(), &later);
    assert!(a.written_off, "the write-off survives the fast start");
    let b = Tally::resume(B, &[f.server.public().fingerprint()], t.vouched(), &later);
    assert!(!b.written_off);
    assert_eq!(b.opens, 1);
}

#[test]
fn with_no_backup_at_all_everything_since_the_origin_is_charged() {
    let f = fx(3);
    f.write(Usage::Open { licence: A });
    // The server never saw this trail: its "backup" is a header with no records.
    let empty = Header::for_card(&f.id, f.id.origin).encode().to_vec();
    let t = f
        .lose_and_restore(&empty, vec![A], LostCharge::Full)
        .unwrap();
    assert_eq!(t.records().len(), 1);
    let r = recovery_of(&t);
    assert_eq!(r.from, f.id.origin);
    let t = f.verify(vec![f.server.public().clone()]).unwrap();
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    assert!(Tally::from_bodies(A, &[f.server.public().fingerprint()], &bodies).written_off);
    // For a licence of another server, a trail that starts with a recovery is valid, and
    // everything since the origin counts in full.
    let t = f.verify(vec![]).unwrap();
    let bodies: Vec<Body> = t.verified_bodies().map(|(_, b)| b).collect();
    let b = Tally::from_bodies(B, &[], &bodies);
    assert_eq!(b.unaccounted(), &[(r.from, r.to)]);
    assert!(b.written_off);
}
