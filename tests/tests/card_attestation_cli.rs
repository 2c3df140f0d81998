//! The card proves what it is (T16, T36), through the shipped binaries and the real pcscd:
//!
//! - the vendor accepts the test issuer (`tally-pack vendor issuer add`); a reader's
//!   virtual card attested by it (`tally-view card init --attest-with`) registers, an
//!   emulated one is refused unless the publisher allows emulated cards, and a real-card
//!   keyfile is refused for an emulated customer;
//! - a keyfile that does not allow emulated cards refuses the emulated card served through
//!   `tally-view card serve-virtual` + `--card pcsc` (the keyfile card's very keys, without
//!   an attestation), and `tally-view status` says why;
//! - the same keyfile opens with the test-issuer-attested virtual card through pcscd: the
//!   status allows reading and the reading window decrypts the document and writes its
//!   `open` record (under Xvfb);
//! - another card is refused by name.
//!
//! Needs pcscd with vsmartcard's vpcd (see `pcsc_cli.rs`) and Xvfb (`TALLY_XVFB_DISPLAY`,
//! else one is started on a free display from :130).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

#[path = "../../core/tests/support/pcscd.rs"]
#[allow(dead_code)] // shared with core's PC/SC tests, which use more of it
mod pcscd;

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tally_core::CardIdentity;
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::Usage;
use tally_tests::{Reap, pack, view_at};

fn issuer_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data/issuer")
        .join(name)
}

fn serve(home: &Path, state: &Path, ctx: &pcsc::Context) -> Reap {
    let served = Reap(
        Command::new(assert_cmd::cargo::cargo_bin("tally-view"))
            .args(["card", "serve-virtual", "--state"])
            .arg(state)
            .env("TALLY_HOME", home)
            .env_remove("TALLY_CARD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    pcscd::wait_reader(ctx, pcscd::READER, true, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("serve-virtual never reached the reader: {e}"));
    served
}

fn unplug(served: Reap, ctx: &pcsc::Context) {
    drop(served);
    pcscd::wait_reader(ctx, pcscd::READER, false, Duration::from_secs(10)).unwrap();
}

#[test]
fn attested_virtual_card_opens_and_emulated_cards_are_refused_on_every_transport() {
    let _port = pcscd::vpcd_port_lock().unwrap();
    let (_pcscd, ctx) = pcscd::ensure_pcscd().unwrap_or_else(|e| panic!("{e}"));
    pcscd::wait_reader(&ctx, pcscd::READER, false, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}; is another virtual card connected to vpcd?"));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (home, emu_home, other_home) = (d.join("ada"), d.join("eve"), d.join("bob"));

    // The publisher accepts the test issuer (and is warned what that means).
    pack(d)
        .args(["vendor", "init", "--name", "Test Press"])
        .assert()
        .success();
    pack(d)
        .args(["vendor", "issuer", "add"])
        .arg(issuer_file("test-issuer.pub"))
        .assert()
        .success()
        .stdout(predicate::str::contains("TEST ISSUER — NOT FOR PRODUCTION"))
        .stderr(predicate::str::contains("test issuer"));

    // Ada: a virtual card the test issuer attests; it registers as attested.
    view_at(&home)
        .args(["card", "init", "--origin", "7", "--attest-with"])
        .arg(issuer_file("test-issuer.secret"))
        .assert()
        .success()
        .stdout(predicate::str::contains("attested by card issuer"));
    let info = view_at(&home)
        .args(["card", "info", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert!(
        v["attestation"].as_str().unwrap().starts_with("by issuer"),
        "{v}"
    );
    view_at(&home)
        .args(["card", "export", "-o"])
        .arg(d.join("ada.card"))
        .assert()
        .success();
    pack(d)
        .args(["customer", "add", "--name", "Ada", "--card"])
        .arg(d.join("ada.card"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "attested by `TEST ISSUER — NOT FOR PRODUCTION`",
        ));

    // Eve: an emulated card. Refused at registration unless the publisher allows it, and
    // then no real-card keyfile can be issued for it.
    view_at(&emu_home).args(["card", "init"]).assert().success();
    view_at(&emu_home)
        .args(["card", "export", "-o"])
        .arg(d.join("eve.card"))
        .assert()
        .success();
    pack(d)
        .args(["customer", "add", "--name", "Eve", "--card"])
        .arg(d.join("eve.card"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no accepted card issuer vouches for this card",
        ));
    pack(d)
        .args([
            "customer",
            "add",
            "--name",
            "Eve",
            "--allow-emulated-card",
            "--card",
        ])
        .arg(d.join("eve.card"))
        .assert()
        .success();

    std::fs::create_dir_all(d.join("packages")).unwrap();
    let package = d.join("packages/doc.tly");
    pack(d)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(&package)
        .assert()
        .success();
    pack(d)
        .args(["issue", "--customer", "Eve", "--pages", "30", "--package"])
        .arg(&package)
        .arg("-o")
        .arg(d.join("eve.tkey"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has an emulated card"));
    let keyfile = d.join("ada.tkey");
    pack(d)
        .args(["issue", "--customer", "Ada", "--pages", "30", "--package"])
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .assert()
        .success();
    for h in [&home, &other_home] {
        view_at(h)
            .args(["trust", "add"])
            .arg(d.join("vendor/vendor.pub"))
            .assert()
            .success();
    }

    // The keyfile card's own keys, but emulated (no attestation), served through vpcd and
    // pcscd: refused, and `status` says why.
    let card_state = home.join("card.state");
    let mut state = EmulatedCard::open(&card_state).unwrap().load().unwrap();
    let identity = CardIdentity {
        serial: state.serial,
        public_key: state.public_key(),
        origin: state.origin,
    };
    state.attestation = None;
    let stripped = d.join("stripped.state");
    EmulatedCard::create(&stripped, &state).unwrap();
    let served = serve(&home, &stripped, &ctx);
    view_at(&home)
        .args(["--card", "pcsc", "status"])
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("emulated cards are not accepted")
                .and(predicate::str::contains("no issuer attestation")),
        );
    unplug(served, &ctx);
    assert!(
        tally_tests::usages(&home, &identity).is_empty(),
        "the refused card signed something"
    );

    // The attested virtual card through the same pcscd: allowed, and the window opens it.
    let served = serve(&home, &card_state, &ctx);
    view_at(&home)
        .args(["--card", "pcsc", "status"])
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("reading is allowed"));
    let (display, _xvfb) = tally_tests::xvfb(130);
    let viewer = Reap(
        Command::new(assert_cmd::cargo::cargo_bin("tally-view"))
            .args(["--card", "pcsc"])
            .arg(&package)
            .arg(&keyfile)
            .env("TALLY_HOME", &home)
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("TALLY_CARD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // open_rental writes the `open` record only after the content key was unwrapped by
    // the card and the package decrypted.
    let start = Instant::now();
    while !tally_tests::usages(&home, &identity)
        .iter()
        .any(|u| matches!(u, Usage::Open { .. }))
    {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the window never opened the document: {:?}",
            tally_tests::usages(&home, &identity)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(viewer);
    unplug(served, &ctx);

    // Another card (attested too) with Ada's keyfile: refused by name.
    view_at(&other_home)
        .args(["card", "init", "--attest-with"])
        .arg(issuer_file("test-issuer.secret"))
        .assert()
        .success();
    view_at(&other_home)
        .arg("status")
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "belongs to card {}",
            identity.serial
        )));
}
