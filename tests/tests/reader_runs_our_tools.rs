//! THREATS.md T29–T31: the reader runs our own tools against the rental — a vendor and a
//! validation server of their own (stock `tally-pack vendor init` and `tally-pack serve`),
//! and a keyfile of their own — through the shipped binaries. Each attack is refused and
//! the honest reader's licence keeps what it had.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_core::home::{CardSpec, Home};
use tally_core::policy::SystemClock;
use tally_core::rental::{NoNetwork, OpenInputs, open_rental};
use tally_core::vendor::VendorPublic;
use tally_tests::{http, pack, publisher_and_reader, serve, view_at};

/// `tally-pack` with the reader's own vendor folder `<dir>/vendor`: the shipped binary,
/// run by the reader.
fn own_pack(dir: &Path) -> Command {
    pack(dir)
}

/// The reader's own publisher "Mallory" in `<dir>/mallory`, made with the stock
/// `tally-pack vendor init`, with the reader's own card registered as customer "Me".
fn own_vendor(dir: &Path) -> PathBuf {
    let own = dir.join("mallory");
    std::fs::create_dir_all(own.join("packages")).unwrap();
    own_pack(&own)
        .args(["vendor", "init", "--name", "Mallory"])
        .assert()
        .success();
    own_pack(&own)
        .args([
            "customer",
            "add",
            "--name",
            "Me",
            "--allow-emulated-card",
            "--card",
        ])
        .arg(dir.join("reader.card"))
        .assert()
        .success();
    own
}

/// Acme's server running, and a keyfile naming it that allows one opening.
fn one_opening(dir: &Path, home: &Path) -> (PathBuf, PathBuf, tally_tests::Server) {
    let package = publisher_and_reader(dir, home);
    let (server, url) = serve(dir, "127.0.0.1:0", &[]);
    let keyfile = dir.join("ada.tkey");
    pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card"])
        .args(["--opens", "1", "--package"])
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .args(["--server", &url])
        .assert()
        .success();
    (package, keyfile, server)
}

/// The reader opens the document once (the opening of any viewer linking tally-core).
fn open_once(dir: &Path, home: &Path, package: &Path, keyfile: &Path) {
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    let opened = open_rental(&OpenInputs {
        package: package.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        home: Home::new(home),
        card: CardSpec::Emulated(None),
        trusted: vec![vendor],
        clock: Arc::new(SystemClock),
        transport: Arc::new(NoNetwork),
    })
    .unwrap();
    assert!(opened.decision.is_allowed(), "{:?}", opened.decision);
}

fn status(home: &Path, package: &Path, keyfile: &Path) -> Command {
    let mut c = view_at(home);
    c.arg("status").arg(package).arg(keyfile);
    c
}

#[test]
fn t29_a_restore_through_the_readers_own_forgiving_server_gives_no_opening_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (package, keyfile, _acme) = one_opening(dir, &home);
    open_once(dir, &home, &package, &keyfile);
    status(&home, &package, &keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("used up"));

    // The reader's own publisher: their card registered, a server that forgives lost use.
    let own = own_vendor(dir);
    let (_own_server, own_url) = serve(&own, "127.0.0.1:0", &["--lost-records", "forgive"]);
    let (code, own_key) = http(&own_url, "/v1/server-key", None);
    assert_eq!(code, 200);
    let own_key: serde_json::Value = serde_json::from_str(&own_key).unwrap();
    let own_key = own_key["public_key"].as_str().unwrap();
    // A server named on the command line is never trusted because it was named: restore and
    // vouch take the server from a keyfile, and `--server-key` only double-checks it.
    view_at(&home)
        .args(["trail", "restore", "--replace", "--server", &own_url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keyfile"));
    view_at(&home)
        .args(["trail", "restore", "--replace", "--keyfile"])
        .arg(&keyfile)
        .args(["--server-key", own_key])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "is not the validation server the keyfile",
        ));
    // Pointing Acme's keyfile at the reader's server: the request is sealed to Acme's key,
    // so the reader's server cannot even read it, and nothing is written.
    view_at(&home)
        .args(["trail", "restore", "--replace", "--keyfile"])
        .arg(&keyfile)
        .args(["--server", &own_url])
        .assert()
        .failure();
    // A keyfile of the reader's own vendor naming the reader's own server: the restore goes
    // through, and still the used-up licence stays used up, because the recovery record is
    // signed by a key Acme's licence does not name.
    let own_package = own.join("packages/own.tly");
    own_pack(&own)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(&own_package)
        .assert()
        .success();
    let own_keyfile = own.join("me.tkey");
    own_pack(&own)
        .args(["issue", "--customer", "Me", "--allow-emulated-card", "--package"])
        .arg(&own_package)
        .arg("-o")
        .arg(&own_keyfile)
        .args(["--server", &own_url])
        .assert()
        .success();
    view_at(&home)
        .args(["trust", "add"])
        .arg(own.join("vendor/vendor.pub"))
        .assert()
        .success();
    let _ = view_at(&home)
        .args(["trail", "restore", "--replace", "--keyfile"])
        .arg(&own_keyfile)
        .output()
        .unwrap();
    let out = status(&home, &package, &keyfile).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("reading is allowed"), "{text}");
}

/// An honest second publisher "Bolt Books" in `<dir>/bolt`: the reader's card registered,
/// trusted in the reader's home, its server running with `--lost-records LOST`, a package
/// and a keyfile (five openings) naming that server.
fn second_publisher(
    dir: &Path,
    home: &Path,
    lost: &str,
) -> (PathBuf, PathBuf, tally_tests::Server) {
    let bolt = dir.join("bolt");
    std::fs::create_dir_all(bolt.join("packages")).unwrap();
    pack(&bolt)
        .args(["vendor", "init", "--name", "Bolt Books"])
        .assert()
        .success();
    pack(&bolt)
        .args(["customer", "add", "--name", "Ada", "--allow-emulated-card", "--card"])
        .arg(dir.join("reader.card"))
        .assert()
        .success();
    view_at(home)
        .args(["trust", "add"])
        .arg(bolt.join("vendor/vendor.pub"))
        .assert()
        .success();
    let package = bolt.join("packages/bolt.tly");
    pack(&bolt)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(&package)
        .assert()
        .success();
    let (server, url) = serve(&bolt, "127.0.0.1:0", &["--lost-records", lost]);
    let keyfile = bolt.join("ada.tkey");
    pack(&bolt)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card", "--opens", "5"])
        .arg("--package")
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .args(["--server", &url])
        .assert()
        .success();
    (package, keyfile, server)
}

/// Opens `package` with `keyfile` once, trusting the publishers whose `vendor.pub` are given.
fn open_trusting(home: &Path, package: &Path, keyfile: &Path, vendors: &[PathBuf]) {
    let trusted = vendors
        .iter()
        .map(|v| VendorPublic::from_export(&std::fs::read(v).unwrap()).unwrap())
        .collect();
    let opened = open_rental(&OpenInputs {
        package: package.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        home: Home::new(home),
        card: CardSpec::Emulated(None),
        trusted,
        clock: Arc::new(SystemClock),
        transport: Arc::new(NoNetwork),
    })
    .unwrap();
    assert!(opened.decision.is_allowed(), "{:?}", opened.decision);
}

#[test]
fn t30_one_publishers_restore_forgives_nothing_of_another_publishers_licence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    // Acme forgives lost use, and so does Bolt: each for its own licences only.
    let acme_package = publisher_and_reader(dir, &home);
    let (_acme, acme_url) = serve(dir, "127.0.0.1:0", &["--lost-records", "forgive"]);
    let acme_keyfile = dir.join("ada.tkey");
    pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card", "--opens", "5"])
        .arg("--package")
        .arg(&acme_package)
        .arg("-o")
        .arg(&acme_keyfile)
        .args(["--server", &acme_url])
        .assert()
        .success();
    let (bolt_package, bolt_keyfile, _bolt) = second_publisher(dir, &home, "forgive");
    let vendors = [
        dir.join("vendor/vendor.pub"),
        dir.join("bolt/vendor/vendor.pub"),
    ];
    open_trusting(&home, &acme_package, &acme_keyfile, &vendors);
    open_trusting(&home, &bolt_package, &bolt_keyfile, &vendors);
    // Acme backs the trail up; Bolt's book is read again after that; the trail is lost.
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&acme_keyfile)
        .assert()
        .success();
    open_trusting(&home, &bolt_package, &bolt_keyfile, &vendors);
    let trails: Vec<PathBuf> = std::fs::read_dir(home.join("trails"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "trail"))
        .collect();
    assert_eq!(trails.len(), 1);
    std::fs::remove_file(&trails[0]).unwrap();

    // Restored from Acme: Acme's policy forgives, for Acme's licence alone.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&acme_keyfile)
        .assert()
        .success();
    status(&home, &acme_package, &acme_keyfile).assert().success();
    // Bolt's licence: the lost use (Bolt's second opening) is nobody's to forgive but
    // Bolt's, so it counts in full until Bolt accounts for it.
    status(&home, &bolt_package, &bolt_keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "only another publisher's server accounted for them",
        ))
        .stdout(predicate::str::contains("tally-view trail restore --keyfile"));
    // Bolt's own account of the same hole, by Bolt's policy: the licence is back.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&bolt_keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("accounted for card counters"))
        .stdout(predicate::str::contains("nothing charged"));
    status(&home, &bolt_package, &bolt_keyfile).assert().success();
    status(&home, &acme_package, &acme_keyfile).assert().success();
    view_at(&home).args(["trail", "verify"]).assert().success();
    // Asked again, there is nothing left for Bolt to account for.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&bolt_keyfile)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has accounted for everything lost"));
}

#[test]
fn t30_a_hole_another_server_accounted_for_is_charged_in_full_by_a_strict_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (acme_package, acme_keyfile, _acme) = one_opening(dir, &home);
    let (bolt_package, bolt_keyfile, _bolt) = second_publisher(dir, &home, "full");
    let vendors = [
        dir.join("vendor/vendor.pub"),
        dir.join("bolt/vendor/vendor.pub"),
    ];
    open_trusting(&home, &bolt_package, &bolt_keyfile, &vendors);
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&acme_keyfile)
        .assert()
        .success();
    open_trusting(&home, &bolt_package, &bolt_keyfile, &vendors);
    // The reader's own forgiving server restores (the T29 set-up): nothing of Acme's or
    // Bolt's is forgiven by it.
    let own = own_vendor(dir);
    let (_own_server, own_url) = serve(&own, "127.0.0.1:0", &["--lost-records", "forgive"]);
    let own_package = own.join("packages/own.tly");
    own_pack(&own)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(&own_package)
        .assert()
        .success();
    let own_keyfile = own.join("me.tkey");
    own_pack(&own)
        .args(["issue", "--customer", "Me", "--allow-emulated-card", "--package"])
        .arg(&own_package)
        .arg("-o")
        .arg(&own_keyfile)
        .args(["--server", &own_url])
        .assert()
        .success();
    view_at(&home)
        .args(["trust", "add"])
        .arg(own.join("vendor/vendor.pub"))
        .assert()
        .success();
    view_at(&home)
        .args(["trail", "restore", "--replace", "--keyfile"])
        .arg(&own_keyfile)
        .assert()
        .success();
    for (p, k) in [(&acme_package, &acme_keyfile), (&bolt_package, &bolt_keyfile)] {
        status(&home, p, k)
            .assert()
            .code(1)
            .stdout(predicate::str::contains("only another publisher's server"));
    }
    // Bolt accounts for the hole by its own, strict policy: charged in full.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&bolt_keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("charged in full"));
    status(&home, &bolt_package, &bolt_keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("charged in full"));
}

#[test]
fn t31_a_keyfile_from_the_readers_own_vendor_does_not_open_the_publishers_package() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    // The reader's own vendor packs something, trusts itself, and issues a keyfile…
    let own = own_vendor(dir);
    let own_package = own.join("packages/own.tly");
    own_pack(&own)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(&own_package)
        .assert()
        .success();
    let own_keyfile = own.join("me.tkey");
    own_pack(&own)
        .args([
            "issue",
            "--customer",
            "Me",
            "--allow-emulated-card",
            "--package",
        ])
        .arg(&own_package)
        .arg("-o")
        .arg(&own_keyfile)
        .assert()
        .success();
    view_at(&home)
        .args(["trust", "add"])
        .arg(own.join("vendor/vendor.pub"))
        .assert()
        .success();
    // … which opens its own package, and never the publisher's.
    status(&home, &own_package, &own_keyfile).assert().success();
    status(&home, &package, &own_keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "This document does not go with this licence",
        ))
        .stdout(predicate::str::contains(
            "the licence is from Mallory, but “",
        ))
        .stdout(predicate::str::contains("was packed by another publisher"));
}
