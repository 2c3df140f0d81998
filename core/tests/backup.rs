//! Extending the validation server's backup by the answer to a vouch (\[0062\], \[0094\]):
//! the records written after the backup — the `totals` records and the validator — are
//! checked by the server (`validation::extend_backup`) and appended to its backup, so a
//! restore right after a vouch loses nothing and charges nothing. Every other fragment is
//! refused. Real card emulation, real ECDSA, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use tally_core::trail::body::LostCharge;
use tally_core::trail::validator::vouch;
use tally_core::trail::{Body, LicenceId, Record, Trail, Usage};
use tally_core::validation::{
    ExtendError, ServerSecret, extend_backup, extension_fragment, seal_backup_extension,
};

#[path = "support/restore.rs"]
mod restore_support;
use restore_support::{Fx, now};

const A: LicenceId = LicenceId([0xaa; 16]);

/// A trail with some use, the backup the server takes when it vouches, and the records the
/// reader writes for its answer (the totals record and the validator).
fn vouched(f: &Fx) -> (Vec<u8>, Vec<Record>) {
    for _ in 0..3 {
        f.write(Usage::Open { licence: A });
    }
    let backup = f.backup();
    let before = f.read().1.len();
    let v = vouch(&f.server, &f.id, &backup, now()).unwrap();
    let mut t = Trail::open(&f.trail, &f.id).unwrap();
    t.write_all(&mut f.card(), &v.bodies().cloned().collect::<Vec<_>>())
        .unwrap();
    let after = f.read().1[before..].to_vec();
    assert_eq!(after.len(), 2, "a totals record and the validator");
    (backup, after)
}

#[test]
fn the_answer_extends_the_backup_and_a_restore_right_after_charges_nothing() {
    let f = Fx::new(20);
    let (backup, answer) = vouched(&f);
    // Through the envelope, as the server receives it.
    let env =
        seal_backup_extension(f.server.public(), &f.id, &answer, &mut rand_core::OsRng).unwrap();
    let req = f.server.open_backup_extension(&env).unwrap();
    assert_eq!(req.serial, f.id.serial);
    let x = extend_backup(&f.server, &f.id, &backup, &req.trail).unwrap();
    assert_eq!(x.upto, answer[1].counter);
    assert_eq!(x.records, 6);
    assert_eq!(
        &x.trail[..],
        &f.backup()[..],
        "the backup is the trail as it is"
    );
    // Lost right now: only the restore request's own counter, which the server holds.
    let t = f
        .lose_and_restore(&x.trail, vec![A], LostCharge::Full)
        .unwrap();
    drop(t);
    let tally = f.tally(A);
    assert!(!tally.written_off, "{tally:?}");
    assert_eq!(tally.opens, 3);
    // Without the extension, the same restore writes the licence off: the validator and
    // its totals record count as lost use.
    let g = Fx::new(20);
    let (backup, _) = vouched(&g);
    g.lose_and_restore(&backup, vec![A], LostCharge::Full)
        .unwrap();
    assert!(g.tally(A).written_off);
}

#[test]
fn records_that_do_not_continue_the_backup_with_this_servers_answer_are_refused() {
    let f = Fx::new(20);
    let (backup, answer) = vouched(&f);
    let ext = |records: &[Record]| {
        extend_backup(
            &f.server,
            &f.id,
            &backup,
            &extension_fragment(&f.id, records),
        )
    };
    // The validator without its totals record: they no longer start after the backup.
    assert!(matches!(
        ext(&answer[1..]),
        Err(ExtendError::NotNext { .. })
    ));
    // Replayed once the backup was extended: no longer next.
    let x = extend_backup(
        &f.server,
        &f.id,
        &backup,
        &extension_fragment(&f.id, &answer),
    )
    .unwrap();
    assert!(matches!(
        extend_backup(
            &f.server,
            &f.id,
            &x.trail,
            &extension_fragment(&f.id, &answer)
        ),
        Err(ExtendError::NotNext { .. })
    ));
    // Records that are not the answer to a vouch of this backup: ordinary use.
    let g = Fx::new(20);
    for _ in 0..3 {
        g.write(Usage::Open { licence: A });
    }
    let gb = g.backup();
    g.write(Usage::Open { licence: A });
    let more = g.read().1[4..].to_vec();
    let e = extend_backup(&g.server, &g.id, &gb, &extension_fragment(&g.id, &more)).unwrap_err();
    assert_eq!(e.check(), "no-validator", "{e}");
    // Another server's answer (its validator is not this server's).
    let other = ServerSecret::random(&mut rand_core::OsRng);
    let v = vouch(&other, &g.id, &g.backup(), now()).unwrap();
    let gb = g.backup();
    let mut t = Trail::open(&g.trail, &g.id).unwrap();
    t.write_all(&mut g.card(), &v.bodies().cloned().collect::<Vec<_>>())
        .unwrap();
    let theirs = g.read().1[5..].to_vec();
    let e = extend_backup(&g.server, &g.id, &gb, &extension_fragment(&g.id, &theirs)).unwrap_err();
    assert_eq!(e.check(), "no-validator", "{e}");
    // A validator of this server for an older backup (one record shorter).
    let h = Fx::new(20);
    for _ in 0..3 {
        h.write(Usage::Open { licence: A });
    }
    let older = h.backup();
    let v = vouch(&h.server, &h.id, &older, now()).unwrap();
    h.write(Usage::Open { licence: A });
    let newer = h.backup();
    let mut t = Trail::open(&h.trail, &h.id).unwrap();
    t.write_all(&mut h.card(), &v.bodies().cloned().collect::<Vec<_>>())
        .unwrap();
    let recs = h.read().1[5..].to_vec();
    let e = extend_backup(&h.server, &h.id, &newer, &extension_fragment(&h.id, &recs)).unwrap_err();
    assert_eq!(e.check(), "no-validator", "{e}");
    // A record of the answer with a changed byte: its card signature fails.
    let mut bad = answer.clone();
    bad[0].body = Body::now(Usage::Open { licence: A }).encode().into_bytes();
    let e = ext(&bad).unwrap_err();
    assert_eq!(e.check(), "signature", "{e}");
    // Another card's records: refused before anything is checked.
    let other_card = Fx::new(20);
    let (_, theirs) = vouched(&other_card);
    let e = extend_backup(
        &f.server,
        &f.id,
        &backup,
        &extension_fragment(&other_card.id, &theirs),
    )
    .unwrap_err();
    assert_eq!(e.check(), "wrong-card", "{e}");
    // A fragment that is not a trail, and an envelope for another server.
    assert!(extend_backup(&f.server, &f.id, &backup, b"garbage").is_err());
    let env = seal_backup_extension(other.public(), &f.id, &answer, &mut rand_core::OsRng).unwrap();
    assert!(f.server.open_backup_extension(&env).is_err());
    // Untouched by all of it, the genuine answer still extends the backup.
    assert!(ext(&answer).is_ok());
}
