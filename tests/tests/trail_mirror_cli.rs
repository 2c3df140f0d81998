//! `tally-view trail mirror` and `trail restore --from-mirror` (\[0062\]): the mirror on
//! "another medium" follows every record; a lost trail comes back from it when nothing is
//! missing; a mirror that lags the card is refused like any old copy (T4) and leaves
//! nothing behind; a malformed setting is a clear error.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use predicates::prelude::*;
use tally_core::card::CardIdentity;
use tally_core::home::Home;
use tally_tests::view_at;

#[test]
fn the_mirror_follows_the_trail_and_brings_a_lost_one_back() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let usb = tmp.path().join("usb");
    let view = || view_at(&home);
    view().args(["card", "init"]).assert().success();
    let card = tmp.path().join("reader.card");
    view()
        .args(["card", "export", "-o"])
        .arg(&card)
        .assert()
        .success();
    let (id, _) = CardIdentity::from_export(&std::fs::read(&card).unwrap()).unwrap();
    let trail = Home::new(&home).trail_path(&id.serial);
    let mirror = usb.join(format!("{}.trail", id.serial));

    view()
        .args(["trail", "mirror"])
        .arg(&usb)
        .assert()
        .success()
        .stdout(predicate::str::contains("there is no trail yet"));
    for _ in 0..3 {
        view().args(["trail", "verify"]).assert().success();
        assert_eq!(
            std::fs::read(&mirror).unwrap(),
            std::fs::read(&trail).unwrap()
        );
    }
    view()
        .args(["trail", "mirror", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"in_step\": true"));

    // The disk is lost: the trail is missing, the card has moved on.
    std::fs::remove_file(&trail).unwrap();
    view().args(["trail", "verify"]).assert().code(1);
    let out = view()
        .args(["trail", "restore", "--from-mirror", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    view().args(["trail", "verify"]).assert().success();
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        std::fs::read(&trail).unwrap()
    );

    // A mirror that lags the card (an old copy put in its place) is refused, and the
    // restore leaves no trail behind.
    let old = std::fs::read(&mirror).unwrap();
    view().args(["trail", "verify"]).assert().success();
    std::fs::write(&mirror, &old).unwrap();
    std::fs::remove_file(&trail).unwrap();
    view()
        .args(["trail", "restore", "--from-mirror"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a complete trail"))
        .stderr(predicate::str::contains("rolled back"));
    assert!(!trail.exists());

    // A malformed setting is named, never taken for "no mirror".
    std::fs::write(home.join("mirror"), "relative/folder\n").unwrap();
    view()
        .args(["trail", "mirror"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not one absolute folder path"));
    view().args(["trail", "mirror", "--off"]).assert().success();
    assert!(!home.join("mirror").exists());
}
