//! Archiving the vouched-for prefix of a trail out of the working trail (\[0094\]): the
//! working trail then starts at a validator record's `upto` + 1 and is anchored by it.
//! Real card emulation, real ECDSA, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use tally_core::trail::body::LostCharge;
use tally_core::trail::file::Header;
use tally_core::trail::{Body, LicenceId, Trail, TrailError, Usage};
use tally_core::validation::{CardProgress, ServerSecret};

#[path = "support/restore.rs"]
mod restore_support;
use restore_support::Fx;

const A: LicenceId = LicenceId([0xaa; 16]);
const B: LicenceId = LicenceId([0xbb; 16]);

/// A card from counter 50 with a trail of its genesis record.
fn fx() -> Fx {
    Fx::new(50)
}

/// `n` rounds of an opening (licence A) and ten prepaid pages (A and B in turn).
fn use_some(f: &Fx, n: u32) {
    for i in 0..n {
        f.write(Usage::Open { licence: A });
        f.write(Usage::Pages {
            licence: if i % 2 == 0 { A } else { B },
            first: 1,
            count: 10,
        });
    }
}

#[test]
fn archiving_keeps_the_totals_and_the_trail_valid() {
    let f = fx();
    use_some(&f, 5); // genesis 50, then 51..=60
    f.vouch(); // totals at 61, validator at 62, upto 60
    use_some(&f, 1); // 63, 64
    let (a, b) = (f.tally(A), f.tally(B));
    let archive = Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_eq!((archive.first, archive.upto, archive.records), (50, 60, 11));
    assert_eq!(archive.kept, 4);
    let (h, recs) = f.read();
    assert_eq!(h.first_counter, 61);
    assert_eq!(recs.len(), 4);
    // The archive is a trail prefix that verifies on its own.
    let arch = std::fs::read(&archive.path).unwrap();
    assert_eq!(Header::decode(&arch).unwrap().first_counter, 50);
    // Same totals after the cut, and ValidateTrail with the card passes and goes on.
    assert_eq!(f.tally(A).opens, a.opens);
    assert_eq!(f.tally(A).page_views, a.page_views);
    assert_eq!(f.tally(B).page_views, b.page_views);
    f.verify(f.keys()).unwrap();
    use_some(&f, 1);
    assert_eq!(f.tally(A).opens, a.opens + 1);
    // Again: vouched for by the server as an archived trail, then archived once more.
    f.vouch();
    let second = Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_eq!(second.first, 61);
    assert_eq!(f.tally(A).opens, a.opens + 1);
    assert_eq!(f.tally(A).page_views, a.page_views + 10);
    assert_eq!(f.tally(B).page_views, b.page_views);
    f.verify(f.keys()).unwrap();
    // Nothing newer than the anchor: nothing to archive.
    let e = Trail::archive(&f.trail, &f.id, f.keys()).unwrap_err();
    assert_eq!(e.check(), "archive", "{e}");
}

#[test]
fn an_archived_trail_needs_its_anchor_and_a_cut_elsewhere_is_refused() {
    let f = fx();
    use_some(&f, 3);
    f.vouch(); // upto 56, totals at 57, validator at 58
    use_some(&f, 2); // 59..=62
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    // Without the server's key the archived trail can't be validated.
    let e = f.verify(vec![]).unwrap_err();
    assert!(matches!(e, TrailError::Archived { first: 57 }), "{e}");
    let other = ServerSecret::random(&mut rand_core::OsRng);
    assert_eq!(
        f.verify(vec![other.public().clone()]).unwrap_err().check(),
        "start"
    );
    let (_, recs) = f.read();
    // The front cut two records later (the anchor and its totals dropped): no anchor.
    f.rewrite(59, &recs[2..]);
    assert_eq!(f.verify(f.keys()).unwrap_err().check(), "start");
    // A trail that was never archived, with its beginning cut just after a validator.
    let g = fx();
    use_some(&g, 3);
    g.vouch();
    use_some(&g, 2);
    let (_, recs) = g.read();
    g.rewrite(recs[9].counter, &recs[9..]);
    assert_eq!(g.verify(g.keys()).unwrap_err().check(), "start");
    // The anchor's header claims a first counter before the card's origin.
    g.rewrite(10, &recs);
    assert!(matches!(
        g.verify(g.keys()).unwrap_err(),
        TrailError::NotAtOrigin { .. }
    ));
    // The archive refuses without trusted keys, and on an unvouched trail.
    let h = fx();
    use_some(&h, 1);
    assert_eq!(
        Trail::archive(&h.trail, &h.id, vec![]).unwrap_err().check(),
        "archive"
    );
    assert_eq!(
        Trail::archive(&h.trail, &h.id, h.keys())
            .unwrap_err()
            .check(),
        "archive"
    );
}

#[test]
fn a_write_off_outlives_the_archived_recovery_and_restore_works_from_an_archived_backup() {
    let f = fx();
    use_some(&f, 2);
    f.vouch();
    use_some(&f, 1);
    // Lose and restore (A charged in full: a record was written after the backup).
    let backup = std::fs::read(&f.trail).unwrap();
    f.write(Usage::Open { licence: A });
    let restore = |backup: &[u8], lic: Vec<LicenceId>| {
        f.lose_and_restore(backup, lic, LostCharge::Full).unwrap();
    };
    restore(&backup, vec![A]);
    assert!(f.tally(A).written_off);
    f.write(Usage::Open { licence: B });
    // Vouched and archived past the recovery: A stays written off, B keeps its count.
    f.vouch();
    let b = f.tally(B);
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert!(f.tally(A).written_off);
    assert!(!f.tally(B).written_off);
    assert_eq!(f.tally(B).opens, b.opens);
    f.verify(f.keys()).unwrap();
    // The archived trail is backed up and lost in turn: restored from the archived backup.
    use_some(&f, 1);
    f.vouch();
    let archived_backup = std::fs::read(&f.trail).unwrap();
    f.write(Usage::Open { licence: B });
    restore(&archived_backup, vec![B]);
    f.verify(f.keys()).unwrap();
    assert!(
        f.tally(A).written_off,
        "A's charge survives two cuts and a restore"
    );
    assert!(f.tally(B).written_off);
}

#[test]
fn an_every_licence_recovery_is_never_archived() {
    let f = fx();
    use_some(&f, 1);
    let empty = Header::for_card(&f.id, f.id.origin).encode().to_vec();
    f.lose_and_restore(&empty, vec![], LostCharge::Full)
        .unwrap();
    f.write(Usage::Open { licence: A });
    f.vouch();
    let e = Trail::archive(&f.trail, &f.id, f.keys()).unwrap_err();
    assert!(e.to_string().contains("charging every licence"), "{e}");
    assert!(f.tally(B).written_off);
}

#[test]
fn a_handle_open_while_the_trail_is_archived_follows_it_and_anything_else_stops_it() {
    let f = fx();
    use_some(&f, 3);
    f.vouch();
    use_some(&f, 2);
    let mut held = Trail::open(&f.trail, &f.id).unwrap();
    held.set_trusted_validators(f.keys());
    held.verify(&mut f.card()).unwrap();
    let a = f.tally(A);
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    // The file under the held handle was replaced by its archived version (another
    // process archived it): the handle goes on with it, from its anchor.
    held.write(&mut f.card(), &Body::now(Usage::Open { licence: A }))
        .unwrap();
    assert_eq!(held.generation(), 1);
    assert_eq!(held.header().first_counter, f.read().0.first_counter);
    assert!(held.vouched().is_some());
    assert_eq!(f.tally(A).opens, a.opens + 1);
    f.verify(f.keys()).unwrap();
    // Replaced by something that is not this trail archived — here the same records with
    // one of the kept ones changed: refused, nothing written.
    let (h, recs) = f.read();
    let mut changed = recs.clone();
    changed[recs.len() - 1].signature.0[0] ^= 1;
    let path = f.trail.clone();
    // Moved aside, not deleted: a deleted file's inode number may be reused at once for the
    // new one, which the handle (following its file by device and inode) would take for
    // the file it holds (noted as a limit in the closing note).
    std::fs::rename(&path, path.with_extension("aside")).unwrap();
    f.rewrite(h.first_counter, &changed);
    let before = std::fs::read(&f.trail).unwrap();
    let e = held
        .write(&mut f.card(), &Body::now(Usage::Open { licence: A }))
        .unwrap_err();
    assert_eq!(e.check(), "replaced", "{e}");
    assert_eq!(std::fs::read(&f.trail).unwrap(), before);
}

#[test]
fn a_licence_that_does_not_trust_the_anchor_gets_the_archived_records_back() {
    use tally_core::policy::{Limits, SystemClock};
    use tally_core::rental::CardMeter;
    let f = fx();
    use_some(&f, 4); // B's page blocks are among the records to archive
    f.vouch();
    use_some(&f, 1);
    let b_before = f.tally(B).page_views;
    assert_eq!(b_before, 20);
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_ne!(f.read().0.first_counter, f.id.origin);
    // Licence B's opening trusts only its own publisher's server (here: none). It can't
    // take A's server's word for the records before the anchor, so they are put back from
    // the archive beside the trail and verified by their card signatures.
    let meter = CardMeter::validate(
        f.card(),
        &f.id,
        &f.trail,
        B,
        Limits::default(),
        std::sync::Arc::new(SystemClock),
        vec![],
    )
    .unwrap();
    assert_eq!(meter.tally().page_views, b_before);
    assert!(meter.trail().vouched().is_none());
    drop(meter);
    assert_eq!(f.read().0.first_counter, f.id.origin);
    // The reader trusting A's server reads the same trail, now whole, as before.
    assert_eq!(f.tally(B).page_views, b_before);
    f.verify(f.keys()).unwrap();
    // With the archive gone, nothing can be put back: refused, never guessed.
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    for e in std::fs::read_dir(f.trail.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().contains(".archive-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let e = Trail::rejoin(&f.trail, &f.id).unwrap_err();
    assert_eq!(e.check(), "start", "{e}");
}

/// T34 after an archive: reading time charged after a ticket's request still counts toward
/// the offline bound when the records that charged it were archived — the working trail no
/// longer holds them, the validator's totals do. (Before, only the trail's own records
/// counted, and an archive made after the ticket gave that reading time back.)
#[test]
fn t34_time_charged_after_a_ticket_still_counts_once_archived() {
    let f = fx();
    let time = |licence, seconds| f.write(Usage::Time { licence, seconds });
    // As a viewer reads it: trusting the server, verified against the file (no card write).
    let progress = |f: &Fx| {
        let mut t = Trail::open(&f.trail, &f.id).unwrap();
        t.set_trusted_validators(f.keys());
        t.verify_offline().unwrap();
        CardProgress::of_trail(&t, A)
    };
    let last = |f: &Fx| f.read().1.last().unwrap().counter;
    time(A, 100); // before the ticket
    let ticket = last(&f); // the card counter of the ticket's request: what follows counts
    time(A, 3_600);
    time(B, 50); // another licence's
    time(A, 7_200);
    assert_eq!(progress(&f).seconds_after(ticket), 10_800);
    assert_eq!(progress(&f).archived, None);
    f.vouch();
    time(A, 60);
    let archive = Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert!(archive.upto > ticket);
    let after = progress(&f);
    assert_eq!(
        after.archived.map(|a| (a.first_counter, a.seconds)),
        Some((archive.upto + 1, 10_900))
    );
    // The archived records after the ticket count; the one before it is not told apart in
    // the archive and counts too (more, never less, than was read since).
    assert_eq!(after.seconds_after(ticket), 10_960);
    // A ticket after the cut: only what the trail holds after it.
    assert_eq!(after.seconds_after(last(&f) - 1), 60);
    assert_eq!(after.seconds_after(last(&f)), 0);
    // Vouched and archived once more: still counted, from the new anchor's totals.
    f.vouch();
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_eq!(progress(&f).seconds_after(ticket), 10_960);
    assert_eq!(progress(&f).seconds_after(last(&f)), 0);
}
