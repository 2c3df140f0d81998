//! Archiving the vouched-for prefix of a trail out of the working trail ([0094]): the
//! working trail then starts at a validator record's `upto` + 1 and is anchored by it.
//! Real card emulation, real ECDSA, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::PathBuf;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::crypto::PublicKey;
use tally_core::policy::Tally;
use tally_core::trail::body::LostCharge;
use tally_core::trail::file::{HEADER_LEN, Header, encode_frame, parse_frames};
use tally_core::trail::validator::vouch;
use tally_core::trail::{Body, LicenceId, Record, Trail, TrailError, Usage};
use tally_core::validation::ServerSecret;

#[path = "support/restore.rs"]
mod restore_support;
use restore_support::{lose_and_restore, now};

const A: LicenceId = LicenceId([0xaa; 16]);
const B: LicenceId = LicenceId([0xbb; 16]);

struct Fx {
    _dir: tempfile::TempDir,
    card_path: PathBuf,
    trail: PathBuf,
    id: CardIdentity,
    server: ServerSecret,
}

impl Fx {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let card_path = dir.path().join("card.state");
        let state = CardState::generate(&mut rand_core::OsRng, 50, "archive test card");
        EmulatedCard::create(&card_path, &state).unwrap();
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
        let id = card.identity().unwrap();
        let trail = dir.path().join("t.trail");
        Trail::create(&trail, &mut card, &id).unwrap();
        Self {
            _dir: dir,
            card_path,
            trail,
            id,
            server: ServerSecret::random(&mut rand_core::OsRng),
        }
    }

    fn card(&self) -> Card {
        Card::new(Box::new(EmulatedCard::open(&self.card_path).unwrap()))
    }

    fn keys(&self) -> Vec<PublicKey> {
        vec![self.server.public().clone()]
    }

    fn write(&self, usage: Usage) {
        let mut t = Trail::open(&self.trail, &self.id).unwrap();
        t.set_trusted_validators(self.keys());
        t.write(&mut self.card(), &Body::now(usage)).unwrap();
    }

    fn use_some(&self, n: u32) {
        for i in 0..n {
            self.write(Usage::Open { licence: A });
            self.write(Usage::Pages {
                licence: if i % 2 == 0 { A } else { B },
                first: 1,
                count: 10,
            });
        }
    }

    /// The server vouches for the trail as it is; the reader appends the validator.
    fn vouch(&self) {
        let body = vouch(
            &self.server,
            &self.id,
            &std::fs::read(&self.trail).unwrap(),
            now(),
        )
        .unwrap();
        self.write(body.usage);
    }

    fn validate(&self, trusted: Vec<PublicKey>) -> Result<Trail, TrailError> {
        let mut t = Trail::open(&self.trail, &self.id)?;
        t.set_trusted_validators(trusted);
        t.validate(&mut self.card())?;
        Ok(t)
    }

    fn tally(&self, lic: LicenceId) -> Tally {
        let mut t = Trail::open(&self.trail, &self.id).unwrap();
        t.set_trusted_validators(self.keys());
        t.verify_offline().unwrap();
        let later: Vec<Body> = t.unvouched_bodies().map(|(_, b)| b).collect();
        Tally::resume(lic, t.vouched(), &later)
    }

    fn read(&self) -> (Header, Vec<Record>) {
        let b = std::fs::read(&self.trail).unwrap();
        let h = Header::decode(&b).unwrap();
        (
            h,
            parse_frames(&b[HEADER_LEN..], HEADER_LEN as u64, 0)
                .unwrap()
                .records,
        )
    }

    fn rewrite(&self, first: u64, records: &[Record]) {
        let mut out = Header::for_card(&self.id, first).encode().to_vec();
        for r in records {
            out.extend(encode_frame(r));
        }
        std::fs::write(&self.trail, out).unwrap();
    }
}

#[test]
fn archiving_keeps_the_totals_and_the_trail_valid() {
    let f = Fx::new();
    f.use_some(5); // genesis 50, then 51..=60
    f.vouch(); // validator at 61, upto 60
    f.use_some(1); // 62, 63
    let (a, b) = (f.tally(A), f.tally(B));
    let archive = Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_eq!((archive.first, archive.upto, archive.records), (50, 60, 11));
    assert_eq!(archive.kept, 3);
    let (h, recs) = f.read();
    assert_eq!(h.first_counter, 61);
    assert_eq!(recs.len(), 3);
    // The archive is a trail prefix that verifies on its own.
    let arch = std::fs::read(&archive.path).unwrap();
    assert_eq!(Header::decode(&arch).unwrap().first_counter, 50);
    // Same totals after the cut, and ValidateTrail with the card passes and goes on.
    assert_eq!(f.tally(A).opens, a.opens);
    assert_eq!(f.tally(A).page_views, a.page_views);
    assert_eq!(f.tally(B).page_views, b.page_views);
    f.validate(f.keys()).unwrap();
    f.use_some(1);
    assert_eq!(f.tally(A).opens, a.opens + 1);
    // Again: vouched for by the server as an archived trail, then archived once more.
    f.vouch();
    let second = Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    assert_eq!(second.first, 61);
    assert_eq!(f.tally(A).opens, a.opens + 1);
    assert_eq!(f.tally(A).page_views, a.page_views + 10);
    assert_eq!(f.tally(B).page_views, b.page_views);
    f.validate(f.keys()).unwrap();
    // Nothing newer than the anchor: nothing to archive.
    let e = Trail::archive(&f.trail, &f.id, f.keys()).unwrap_err();
    assert_eq!(e.check(), "archive", "{e}");
}

#[test]
fn an_archived_trail_needs_its_anchor_and_a_cut_elsewhere_is_refused() {
    let f = Fx::new();
    f.use_some(3);
    f.vouch(); // upto 56, validator at 57
    f.use_some(2); // 58..=61
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    // Without the server's key the archived trail can't be validated.
    let e = f.validate(vec![]).unwrap_err();
    assert!(matches!(e, TrailError::Archived { first: 57 }), "{e}");
    let other = ServerSecret::random(&mut rand_core::OsRng);
    assert_eq!(
        f.validate(vec![other.public().clone()])
            .unwrap_err()
            .check(),
        "start"
    );
    let (_, recs) = f.read();
    // The front cut one record later (the anchor itself dropped): no anchor, refused.
    f.rewrite(58, &recs[1..]);
    assert_eq!(f.validate(f.keys()).unwrap_err().check(), "start");
    // A trail that was never archived, with its beginning cut at a validator's upto + 2.
    let g = Fx::new();
    g.use_some(3);
    g.vouch();
    g.use_some(2);
    let (_, recs) = g.read();
    g.rewrite(recs[8].counter, &recs[8..]);
    assert_eq!(g.validate(g.keys()).unwrap_err().check(), "start");
    // The anchor's header claims a first counter before the card's origin.
    g.rewrite(10, &recs);
    assert!(matches!(
        g.validate(g.keys()).unwrap_err(),
        TrailError::NotAtOrigin { .. }
    ));
    // The archive refuses without trusted keys, and on an unvouched trail.
    let h = Fx::new();
    h.use_some(1);
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
    let f = Fx::new();
    f.use_some(2);
    f.vouch();
    f.use_some(1);
    // Lose and restore (A charged in full).
    let backup = std::fs::read(&f.trail).unwrap();
    let restore = |backup: &[u8], lic: Vec<LicenceId>| {
        lose_and_restore(
            &f.trail,
            &mut f.card(),
            &f.id,
            &f.server,
            backup,
            lic,
            LostCharge::Full,
        )
        .unwrap();
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
    f.validate(f.keys()).unwrap();
    // The archived trail is backed up and lost in turn: restored from the archived backup.
    f.use_some(1);
    f.vouch();
    let archived_backup = std::fs::read(&f.trail).unwrap();
    f.write(Usage::Open { licence: B });
    restore(&archived_backup, vec![B]);
    f.validate(f.keys()).unwrap();
    assert!(
        f.tally(A).written_off,
        "A's charge survives two cuts and a restore"
    );
    assert!(f.tally(B).written_off);
}

#[test]
fn an_every_licence_recovery_is_never_archived() {
    let f = Fx::new();
    f.use_some(1);
    let empty = Header::for_card(&f.id, f.id.origin).encode().to_vec();
    lose_and_restore(
        &f.trail,
        &mut f.card(),
        &f.id,
        &f.server,
        &empty,
        vec![],
        LostCharge::Full,
    )
    .unwrap();
    f.write(Usage::Open { licence: A });
    f.vouch();
    let e = Trail::archive(&f.trail, &f.id, f.keys()).unwrap_err();
    assert!(e.to_string().contains("charging every licence"), "{e}");
    assert!(f.tally(B).written_off);
}

#[test]
fn a_handle_open_while_the_trail_is_archived_stops_instead_of_misreading() {
    let f = Fx::new();
    f.use_some(3);
    f.vouch();
    f.use_some(2);
    let mut held = Trail::open(&f.trail, &f.id).unwrap();
    held.set_trusted_validators(f.keys());
    held.validate(&mut f.card()).unwrap();
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    // The file under the held handle was replaced: refused, nothing written.
    let before = std::fs::read(&f.trail).unwrap();
    let e = held
        .write(&mut f.card(), &Body::now(Usage::Open { licence: A }))
        .unwrap_err();
    assert_eq!(e.check(), "replaced", "{e}");
    assert_eq!(std::fs::read(&f.trail).unwrap(), before);
    // A fresh handle goes on.
    f.write(Usage::Open { licence: A });
    f.validate(f.keys()).unwrap();
}
