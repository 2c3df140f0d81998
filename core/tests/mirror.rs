//! The mirror copy of a trail on another medium (\[0062\]): kept in step by every Write,
//! rebuilt when it is missing or not a prefix, never a reason for a Write to fail, and a
//! complete replacement for a lost trail. Real card emulation, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use tally_core::card::Card;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::{Body, LicenceId, Trail, Usage};

const A: LicenceId = LicenceId([0xaa; 16]);

fn open() -> Usage {
    Usage::Open { licence: A }
}

#[test]
fn the_mirror_follows_every_write_and_replaces_a_lost_trail() {
    let dir = tempfile::tempdir().unwrap();
    let card_path = dir.path().join("card.state");
    let state = CardState::generate(&mut rand_core::OsRng, 9, "mirror test card");
    EmulatedCard::create(&card_path, &state).unwrap();
    let card = || Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
    let mut c = card();
    let id = c.identity().unwrap();
    let path = dir.path().join("disk").join("t.trail");
    let mirror = dir.path().join("usb").join("t.trail");
    let mut t = Trail::create(&path, &mut c, &id).unwrap();
    t.set_mirror(Some(mirror.clone()));
    // The first write finds no mirror and makes a whole copy; later ones append.
    for _ in 0..3 {
        t.write(&mut c, &Body::now(open())).unwrap();
        assert_eq!(t.mirror_error(), None);
        assert_eq!(
            std::fs::read(&mirror).unwrap(),
            std::fs::read(&path).unwrap()
        );
    }
    // A mirror that is not a prefix (another file of the same length) is rewritten whole.
    let len = std::fs::metadata(&mirror).unwrap().len() as usize;
    std::fs::write(&mirror, vec![0x55; len]).unwrap();
    t.write(&mut c, &Body::now(open())).unwrap();
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        std::fs::read(&path).unwrap()
    );
    // The medium gone (its folder is now a file): the write still succeeds, the failure is
    // reported, and the next write after the medium is back clears it.
    std::fs::remove_dir_all(dir.path().join("usb")).unwrap();
    std::fs::write(dir.path().join("usb"), b"not a folder").unwrap();
    t.write(&mut c, &Body::now(open())).unwrap();
    assert!(t.mirror_error().is_some());
    std::fs::remove_file(dir.path().join("usb")).unwrap();
    t.write(&mut c, &Body::now(open())).unwrap();
    assert_eq!(t.mirror_error(), None);
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        std::fs::read(&path).unwrap()
    );
    t.verify(&mut c).unwrap();
    drop(t);
    // The disk is lost: the mirror, copied back, is the whole trail — ValidateTrail passes.
    std::fs::remove_file(&path).unwrap();
    std::fs::copy(&mirror, &path).unwrap();
    let mut t = Trail::open(&path, &id).unwrap();
    t.verify(&mut card()).unwrap();
    // A mirror that lags behind the card is a rollback like any old copy (T4).
    let mut t = Trail::open(&path, &id).unwrap();
    t.write(&mut card(), &Body::now(open())).unwrap();
    std::fs::copy(&mirror, &path).unwrap();
    let e = Trail::open(&path, &id)
        .unwrap()
        .verify(&mut card())
        .unwrap_err();
    assert_eq!(e.check(), "rollback", "{e}");
}

#[test]
fn sync_mirror_makes_a_whole_copy_now() {
    let dir = tempfile::tempdir().unwrap();
    let card_path = dir.path().join("card.state");
    let state = CardState::generate(&mut rand_core::OsRng, 0, "mirror test card");
    EmulatedCard::create(&card_path, &state).unwrap();
    let mut c = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
    let id = c.identity().unwrap();
    let path = dir.path().join("t.trail");
    let mut t = Trail::create(&path, &mut c, &id).unwrap();
    t.write(&mut c, &Body::now(open())).unwrap();
    let mirror = dir.path().join("m").join("t.trail");
    t.set_mirror(Some(mirror.clone()));
    assert!(!mirror.exists());
    t.sync_mirror().unwrap();
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        std::fs::read(&path).unwrap()
    );
    // A mirror path that can't be written is an error here (it is asked for explicitly).
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    t.set_mirror(Some(dir.path().join("f").join("t.trail")));
    assert!(t.sync_mirror().is_err());
}
