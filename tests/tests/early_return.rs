//! T38 — early return through the shipped binaries (issue 13): `tally-view return` writes a
//! card-signed `return` record, after which the licence never opens again on that card —
//! not a second time, not with a renewed keyfile, not after the reader puts back an old trail
//! or an old mirror, not after a restore from the publisher's backup made before the return.
//! The receipt reaches the publisher through its validation server or as a file; `tally-pack
//! returns` records it, which frees the loan's place under the document's cap; a receipt
//! edited in any byte, made by another card, or rewritten for another licence is refused.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::home::{CardSpec, Home};
use tally_core::policy::{Decision, Reason, SystemClock};
use tally_core::receipt::Receipt;
use tally_core::rental::{NoNetwork, OpenInputs, open_rental};
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::vendor::VendorPublic;
use tally_tests::{pack, publisher_and_reader, serve, view_at};

fn status(home: &Path, package: &Path, keyfile: &Path) -> Command {
    let mut c = view_at(home);
    c.arg("status").arg(package).arg(keyfile);
    c
}

/// `tally-view return PACKAGE KEYFILE --json EXTRA…`.
fn give_back(home: &Path, package: &Path, keyfile: &Path, extra: &[&str]) -> Command {
    let mut c = view_at(home);
    c.arg("return")
        .arg(package)
        .arg(keyfile)
        .arg("--json")
        .args(extra);
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

/// Issues `<dir>/<name>` to `customer` for `package` with `extra` flags; returns it and its
/// licence id.
fn issue(
    dir: &Path,
    customer: &str,
    package: &Path,
    name: &str,
    extra: &[&str],
) -> (PathBuf, String) {
    let keyfile = dir.join(name);
    let out = pack(dir)
        .args(["issue", "--customer", customer, "--allow-emulated-card"])
        .args(["--keep-both", "--package"])
        .arg(package)
        .arg("-o")
        .arg(&keyfile)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let licence = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("licence: "))
        .unwrap()
        .trim()
        .to_string();
    (keyfile, licence)
}

/// A second reader with an emulated card in `<dir>/<who>-home`, registered as `customer`,
/// who trusts the publisher.
fn second_reader(dir: &Path, who: &str, customer: &str) -> PathBuf {
    let home = dir.join(format!("{who}-home"));
    view_at(&home).args(["card", "init"]).assert().success();
    let card = dir.join(format!("{who}.card"));
    view_at(&home)
        .args(["card", "export", "-o"])
        .arg(&card)
        .assert()
        .success();
    pack(dir)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            customer,
        ])
        .arg("--card")
        .arg(&card)
        .assert()
        .success();
    view_at(&home)
        .args(["trust", "add"])
        .arg(dir.join("vendor/vendor.pub"))
        .assert()
        .success();
    home
}

/// The reader's card (from `<dir>/reader.card`) and its trail's path in `home`.
fn reader_trail(dir: &Path, home: &Path) -> (CardIdentity, PathBuf) {
    let (id, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    let trail = Home::new(home).trail_path(&id.serial);
    (id, trail)
}

/// Opens the document once (the opening any viewer linking tally-core makes); its decision.
fn open(dir: &Path, home: &Path, package: &Path, keyfile: &Path) -> Decision {
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    open_rental(&OpenInputs {
        package: package.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        home: Home::new(home),
        card: CardSpec::Emulated(None),
        trusted: vec![vendor],
        clock: Arc::new(SystemClock),
        transport: Arc::new(NoNetwork),
    })
    .unwrap()
    .decision
}

#[test]
fn t38_a_returned_loan_never_opens_again_and_its_receipt_frees_the_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let (_server, url) = serve(dir, "127.0.0.1:0", &[]);
    // One copy, one reader: the publisher lends one loan of the document at a time.
    pack(dir)
        .args(["loans", "--cap", "1"])
        .arg(&package)
        .assert()
        .success();
    let bob_home = second_reader(dir, "bob", "Bob");
    let (keyfile, licence) = issue(dir, "Ada", &package, "ada.tkey", &["--server", &url]);
    pack(dir)
        .args([
            "issue",
            "--customer",
            "Bob",
            "--allow-emulated-card",
            "--package",
        ])
        .arg(&package)
        .arg("-o")
        .arg(dir.join("bob.tkey"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("1 of 1 loans of “sample” are out"));

    assert!(open(dir, &home, &package, &keyfile).is_allowed());
    let out = give_back(&home, &package, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(&out.stdout);
    assert_eq!(r["returned"], true);
    assert_eq!(r["licence"], licence.as_str());
    assert_eq!(r["delivery"], "accepted", "{r}");
    let answer = r["answer"].as_str().unwrap();
    assert!(
        answer.contains(&format!(
            "return of licence {licence} of “sample” (customer Ada) recorded"
        )),
        "{answer}"
    );
    let saved = PathBuf::from(r["receipt"].as_str().unwrap());
    assert!(saved.starts_with(&home), "the receipt is kept in the home");

    // Refused on this card from now on, in the reader's words, headless and in a session.
    status(&home, &package, &keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("this licence was returned"))
        .stdout(predicate::str::contains("This licence was returned on "));
    let d = open(dir, &home, &package, &keyfile);
    assert!(matches!(d.reason(), Some(Reason::Returned { .. })), "{d:?}");
    // Returning it again writes nothing: the saved receipt is sent once more, and the
    // server answers the replay as it answered the first.
    let out = give_back(&home, &package, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let again = json(&out.stdout);
    assert_eq!(again["again"], true, "{again}");
    assert_eq!(
        again["counter"], r["counter"],
        "no second return record: {again}"
    );
    assert_eq!(again["answer"], r["answer"], "{again}");
    // Without its saved receipt, or with a file that is not this card's receipt of this
    // licence in its place, there is nothing to send: refused, as returned.
    let kept = std::fs::read(&saved).unwrap();
    for replaced in [&b"not a receipt"[..], &kept[..kept.len() - 1]] {
        std::fs::write(&saved, replaced).unwrap();
        give_back(&home, &package, &keyfile, &[])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("This licence was returned on "));
    }
    std::fs::remove_file(&saved).unwrap();
    give_back(&home, &package, &keyfile, &[])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("This licence was returned on "));
    std::fs::write(&saved, &kept).unwrap();
    view_at(&home)
        .args(["trail", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("returned"));
    // A renewal of the returned licence does not bring it back.
    let renewed = dir.join("ada-renewed.tkey");
    pack(dir)
        .args(["renew", "--opens", "50", "--keyfile"])
        .arg(&keyfile)
        .arg("-o")
        .arg(&renewed)
        .assert()
        .success();
    status(&home, &package, &renewed)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("This licence was returned on "));

    // The publisher has it: listed, and the place is free for the next reader.
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "Ada licence {licence} of “sample”"
        )))
        .stdout(predicate::str::contains("through the validation server"));
    // The same receipt handed over as a file too: the same return, recorded once.
    pack(dir)
        .arg("returns")
        .arg(&saved)
        .assert()
        .success()
        .stdout(predicate::str::contains("1 verified return:"));
    let (bob_key, _) = issue(dir, "Bob", &package, "bob.tkey", &[]);
    status(&bob_home, &package, &bob_key).assert().success();
    // The publisher's audit of the reader's trail says so too.
    let (_, trail) = reader_trail(dir, &home);
    let out = pack(dir)
        .arg("audit")
        .arg(&trail)
        .args(["--customer", "Ada", "--json"])
        .output()
        .unwrap();
    let audit = json(&out.stdout);
    let row = audit["licences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["licence"] == licence.as_str())
        .unwrap();
    assert!(
        row["status"].as_str().unwrap().starts_with("returned on "),
        "{audit}"
    );
}

#[test]
fn t38_a_returned_licence_stays_refused_when_an_old_trail_or_mirror_is_put_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let usb = dir.join("usb");
    let package = publisher_and_reader(dir, &home);
    let (keyfile, _) = issue(dir, "Ada", &package, "ada.tkey", &["--opens", "10"]);
    view_at(&home)
        .args(["trail", "mirror"])
        .arg(&usb)
        .assert()
        .success();
    assert!(open(dir, &home, &package, &keyfile).is_allowed());
    let (id, trail) = reader_trail(dir, &home);
    let mirror = usb.join(format!("{}.trail", id.serial));
    let (old_trail, old_mirror) = (
        std::fs::read(&trail).unwrap(),
        std::fs::read(&mirror).unwrap(),
    );

    // No validation server: the receipt is a file for the publisher.
    let receipt = dir.join("ada.treceipt");
    let out = give_back(
        &home,
        &package,
        &keyfile,
        &["-o", receipt.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out.stdout)["delivery"], "no-server");
    pack(dir).arg("returns").arg(&receipt).assert().success();
    let returned_trail = std::fs::read(&trail).unwrap();
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        returned_trail,
        "the mirror has the return"
    );

    // The trail from before the return put back: the card has signed past it.
    std::fs::write(&trail, &old_trail).unwrap();
    let out = status(&home, &package, &keyfile).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("reading is allowed"), "{text}");
    assert!(
        text.contains("rolled back") || text.contains("restored from an old copy"),
        "{text}"
    );
    view_at(&home).args(["trail", "verify"]).assert().code(1);
    // The old mirror put back in place of a lost trail: refused the same way, nothing left.
    std::fs::remove_file(&trail).unwrap();
    std::fs::write(&mirror, &old_mirror).unwrap();
    view_at(&home)
        .args(["trail", "restore", "--from-mirror"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("rolled back"));
    assert!(!trail.exists());
    // Only the trail with the return is accepted, and with it the licence stays returned.
    std::fs::write(&trail, &returned_trail).unwrap();
    view_at(&home).args(["trail", "verify"]).assert().success();
    status(&home, &package, &keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("This licence was returned on "));
}

#[test]
fn t38_a_restore_from_a_backup_made_before_the_return_keeps_the_licence_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    // A publisher that forgives lost use: the most a reader restoring could hope for.
    let (_server, url) = serve(dir, "127.0.0.1:0", &["--lost-records", "forgive"]);
    let (loan, _) = issue(dir, "Ada", &package, "loan.tkey", &["--server", &url]);
    let (other, _) = issue(dir, "Ada", &package, "other.tkey", &["--server", &url]);
    assert!(open(dir, &home, &package, &loan).is_allowed());
    assert!(open(dir, &home, &package, &other).is_allowed());
    // The backup the server keeps, made before the return.
    view_at(&home)
        .args(["trail", "vouch", "--keyfile"])
        .arg(&loan)
        .assert()
        .success();
    let out = give_back(&home, &package, &loan, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out.stdout)["delivery"], "accepted");

    // The reader "loses" the trail and restores the backup from before the return.
    let (_, trail) = reader_trail(dir, &home);
    std::fs::remove_file(&trail).unwrap();
    let out = view_at(&home)
        .args(["trail", "restore", "--json", "--keyfile"])
        .arg(&loan)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(&out.stdout);
    assert_eq!(r["restored"], true);
    assert_eq!(r["charge"], "full", "the returned licence is charged: {r}");
    view_at(&home).args(["trail", "verify"]).assert().success();
    // The returned loan stays closed; the other licence is forgiven as the policy says.
    let out = status(&home, &package, &loan).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored from the publisher's backup"),
        "{out:?}"
    );
    status(&home, &package, &other)
        .assert()
        .success()
        .stdout(predicate::str::contains("reading is allowed"));
}

#[test]
fn t38_edited_foreign_and_replayed_receipts_are_refused_by_the_publisher() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let (loan, licence) = issue(dir, "Ada", &package, "loan.tkey", &[]);
    let (kept, kept_licence) = issue(dir, "Ada", &package, "kept.tkey", &[]);
    let receipt = dir.join("loan.treceipt");
    give_back(&home, &package, &loan, &["-o", receipt.to_str().unwrap()])
        .assert()
        .success();
    let good = std::fs::read(&receipt).unwrap();

    // Every byte flipped, each a file, all handed over at once: every one refused.
    let edited = dir.join("edited");
    std::fs::create_dir_all(&edited).unwrap();
    let files: Vec<PathBuf> = (0..good.len())
        .map(|i| {
            let mut b = good.clone();
            b[i] ^= 0x01;
            let f = edited.join(format!("byte-{i:04}.treceipt"));
            std::fs::write(&f, b).unwrap();
            f
        })
        .collect();
    let out = pack(dir)
        .arg("returns")
        .arg("--json")
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out.stdout);
    let verdicts = v["files"].as_array().unwrap();
    assert_eq!(verdicts.len(), good.len());
    for f in verdicts {
        assert_eq!(f["recorded"], false, "{f}");
    }
    assert!(v["returns"].as_array().unwrap().is_empty(), "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} of {} receipts refused",
            good.len(),
            good.len()
        )),
        "{err}"
    );

    // Replayed for another licence of the same reader: the licence in the header alone, or
    // in the header and the signed record.
    let other = LicenceId::from_hex(&kept_licence).unwrap();
    let mut header_only = good.clone();
    header_only[10..26].copy_from_slice(&other.0);
    let mut both = header_only.clone();
    let at = both.len() - 32;
    both[at..].copy_from_slice(kept_licence.as_bytes());
    for (name, bytes, why) in [
        ("header-only", header_only, "its record returns licence"),
        ("both", both, "signature on the receipt does not verify"),
    ] {
        let f = dir.join(format!("replayed-{name}.treceipt"));
        std::fs::write(&f, bytes).unwrap();
        pack(dir)
            .arg("returns")
            .arg(&f)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(why));
    }

    // A genuine return record of Ada's licence, signed by Bob's card (his own tools and
    // tally-core, on his own trail): the licence was not issued to that card.
    let bob_home = second_reader(dir, "bob", "Bob");
    let bob = Home::new(&bob_home);
    let mut card = Card::new(Box::new(EmulatedCard::open(bob.card_path()).unwrap()));
    let bob_id = card.identity().unwrap();
    let bob_trail = bob.trail_path(&bob_id.serial);
    let mut trail = Trail::open_or_create(&bob_trail, &mut card, &bob_id).unwrap();
    let record = trail
        .write(
            &mut card,
            &Body::now(Usage::Return {
                licence: LicenceId::from_hex(&licence).unwrap(),
            }),
        )
        .unwrap();
    let foreign = dir.join("foreign.treceipt");
    std::fs::write(&foreign, Receipt::new(&bob_id, record).unwrap().encode()).unwrap();
    pack(dir)
        .arg("returns")
        .arg(&foreign)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "the receipt comes from card {}, but the licence was issued to card",
            bob_id.serial
        )));

    // Nothing was recorded; the genuine receipt is, once; the licence kept still opens.
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains("no verified returns"));
    pack(dir)
        .arg("returns")
        .arg(&receipt)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "return of licence {licence}"
        )));
    status(&home, &package, &kept).assert().success();
}

/// A free loopback port and its URL: a server that is down now, started there later.
fn server_not_yet_up() -> (u16, String) {
    let [one] = servers_not_yet_up();
    one
}

/// `N` distinct free ports on loopback, with their servers' URLs: each port is held until all
/// are chosen, so no two are the same.
fn servers_not_yet_up<const N: usize>() -> [(u16, String); N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| {
        let port = held[i].local_addr().unwrap().port();
        (port, format!("http://127.0.0.1:{port}"))
    })
}

#[test]
fn t38_a_receipt_the_server_could_not_take_is_sent_again_when_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    // The licence names a server that is down when the reader gives the loan back.
    let (port, url) = server_not_yet_up();
    pack(dir)
        .args(["loans", "--cap", "1"])
        .arg(&package)
        .assert()
        .success();
    let (keyfile, licence) = issue(dir, "Ada", &package, "ada.tkey", &["--server", &url]);
    let out = give_back(&home, &package, &keyfile, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let first = json(&out.stdout);
    assert_eq!(first["delivery"], "unreachable", "{first}");
    assert_eq!(first["again"], false, "{first}");
    assert_eq!(first["pending"], true, "{first}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give the receipt file"),
        "{out:?}"
    );
    // Still refused on the card, and the publisher's place is still taken.
    status(&home, &package, &keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("This licence was returned on "));
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains(&licence).not());

    // The server is back: the reader returns the licence again, and the saved receipt goes.
    let (_server, served) = serve(dir, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(served, url);
    let out = give_back(&home, &package, &keyfile, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let again = json(&out.stdout);
    assert_eq!(again["again"], true, "{again}");
    assert_eq!(again["delivery"], "accepted", "{again}");
    assert_eq!(again["pending"], false, "{again}");
    assert_eq!(again["counter"], first["counter"], "{again}");
    let mut text = view_at(&home);
    text.arg("return").arg(&package).arg(&keyfile);
    text.assert()
        .success()
        .stdout(predicate::str::contains("already returned: “sample”"))
        .stdout(predicate::str::contains("its saved receipt was sent again"));
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "Ada licence {licence} of “sample”"
        )));
}

/// Returns `lent` while its server is down: the receipt is marked pending. The marker.
fn returned_while_down(home: &Path, package: &Path, lent: &Path, licence: &str) -> PathBuf {
    let out = give_back(home, package, lent, &[]).output().unwrap();
    assert_eq!(json(&out.stdout)["delivery"], "unreachable", "{out:?}");
    let marker = Home::new(home)
        .receipt_path(&LicenceId::from_hex(licence).unwrap())
        .with_extension("pending");
    assert!(marker.exists(), "the receipt is marked pending");
    marker
}

/// Opens `keyfile` in a viewer linking tally-core (this test's own process, over real
/// HTTP) and waits for its session's background contact with the licence's server, and its
/// sending of pending receipts, to end.
fn session_contact(dir: &Path, home: &Path, package: &Path, keyfile: &Path) {
    let mut session = started(dir, home, package, keyfile);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while session.server_contact().is_none() || session.pending_returns_sent().is_none() {
        assert!(std::time::Instant::now() < deadline, "no contact in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A session of `keyfile` started in a viewer linking tally-core (this test's own process,
/// over real HTTP): its background contact and sending of pending receipts are under way.
fn started(dir: &Path, home: &Path, package: &Path, keyfile: &Path) -> tally_core::rental::Session {
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    let opened = open_rental(&OpenInputs {
        package: package.to_path_buf(),
        keyfile: keyfile.to_path_buf(),
        home: Home::new(home),
        card: CardSpec::Emulated(None),
        trusted: vec![vendor],
        clock: Arc::new(SystemClock),
        transport: Arc::new(tally_viewer::online::Http),
    })
    .unwrap();
    assert!(opened.decision.is_allowed(), "{:?}", opened.decision);
    opened.start(Box::new(|| {})).unwrap().0
}

/// The publisher's server has not recorded the return of `licence`.
fn not_recorded(dir: &Path, licence: &str) {
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains(licence).not());
}

/// The publisher's server has recorded the return of `licence`.
fn recorded(dir: &Path, licence: &str) {
    pack(dir)
        .arg("returns")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "Ada licence {licence} of “sample”"
        )));
}

/// A reader with licences of the sample from one publisher: `lent`, naming the server at
/// `lent_url`, returned while that server is down (its receipt marked pending: `marker`),
/// and `kept`, naming `kept_url`, to open afterwards.
struct Pending {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    package: PathBuf,
    lent: PathBuf,
    licence: String,
    kept: PathBuf,
    marker: PathBuf,
}

fn returned_pending(lent_url: &str, kept_url: &str) -> Pending {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let home = dir.join("home");
    let package = publisher_and_reader(&dir, &home);
    let (lent, licence) = issue(&dir, "Ada", &package, "lent.tkey", &["--server", lent_url]);
    let (kept, _) = issue(&dir, "Ada", &package, "kept.tkey", &["--server", kept_url]);
    let marker = returned_while_down(&home, &package, &lent, &licence);
    Pending {
        _tmp: tmp,
        dir,
        home,
        package,
        lent,
        licence,
        kept,
        marker,
    }
}

/// A receipt the server could not take goes with the next session of any licence that
/// contacts a server — in the background, nothing asked of the reader — to the server its
/// own licence names: the marker keeps the returned licence's vendor-signed keyfile, so the
/// address is the publisher's (T29). Here the session's own server is down the whole time.
/// A marker holding another licence's keyfile is not sent, not even to that keyfile's server.
#[test]
fn t38_a_pending_receipt_goes_with_the_next_session_of_any_licence_to_its_own_server() {
    let [(port, url), (_, elsewhere)] = servers_not_yet_up();
    let p = returned_pending(&url, &elsewhere);
    let (dir, home, package, lent, marker) = (&p.dir, &p.home, &p.package, &p.lent, &p.marker);
    let (other, other_licence) = issue(dir, "Ada", package, "other.tkey", &["--server", &url]);
    assert_eq!(
        std::fs::read(marker).unwrap(),
        std::fs::read(lent).unwrap(),
        "the marker keeps the licence's keyfile"
    );
    // Another returned licence, its receipt saved, whose marker now holds `lent`'s keyfile
    // (a valid keyfile naming the server that will be up, but not this licence's).
    let swapped = returned_while_down(home, package, &other, &other_licence);
    std::fs::copy(lent, &swapped).unwrap();

    let (_server, served) = serve(dir, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(served, url);
    session_contact(dir, home, package, &p.kept);
    assert!(!marker.exists(), "sent, and no longer pending");
    recorded(dir, &p.licence);
    assert!(swapped.exists(), "another licence's keyfile: not sent");
    not_recorded(dir, &other_licence);
}

/// A marker of the older form (written before the marker kept the keyfile: the server key's
/// fingerprint) goes with the next session of a licence naming that server, at the address
/// in that licence's vendor-signed keyfile.
#[test]
fn t38_an_older_pending_marker_goes_with_a_session_on_that_server() {
    let (port, url) = server_not_yet_up();
    let p = returned_pending(&url, &url);
    let (dir, home, package, marker) = (&p.dir, &p.home, &p.package, &p.marker);
    let (other, other_licence) = issue(dir, "Ada", package, "other.tkey", &["--server", &url]);
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    let keyfile =
        tally_core::keyfile::Keyfile::open(&std::fs::read(&p.lent).unwrap(), &[vendor]).unwrap();
    let server = keyfile.server().unwrap().public_key.fingerprint();
    std::fs::write(marker, hex::encode(server)).unwrap();
    // Another returned licence, its receipt saved, whose older-form marker names another
    // server's key: not this session's server, so not sent to it.
    let foreign = returned_while_down(home, package, &other, &other_licence);
    std::fs::write(&foreign, "00".repeat(32)).unwrap();

    let (_server, served) = serve(dir, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(served, url);
    pack(dir)
        .args(["viewer", "register"])
        .arg(std::env::current_exe().unwrap())
        .assert()
        .success();
    session_contact(dir, home, package, &p.kept);
    assert!(!marker.exists(), "sent, and no longer pending");
    recorded(dir, &p.licence);
    assert!(foreign.exists(), "another server's key: not sent");
    not_recorded(dir, &other_licence);
}

/// A publisher moved its server: the returned licence's keyfile names the old address, which
/// no longer answers, and the licence opened now names the same server key at the new one.
/// The pending receipt goes to the new address.
#[test]
fn t38_a_pending_receipt_follows_its_server_to_a_new_address() {
    let [(_, old), (port, new)] = servers_not_yet_up();
    let p = returned_pending(&old, &new);
    let (_server, served) = serve(&p.dir, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(served, new);
    pack(&p.dir)
        .args(["viewer", "register"])
        .arg(std::env::current_exe().unwrap())
        .assert()
        .success();
    session_contact(&p.dir, &p.home, &p.package, &p.kept);
    assert!(!p.marker.exists(), "sent, and no longer pending");
    recorded(&p.dir, &p.licence);
}

/// A pending receipt whose server takes the connection and never answers does not hold up
/// the session's own contact with its server: that ends while the receipt's request is
/// still waiting (sent one after the other, the contact would come only once the request
/// had timed out and its connection was closed). The marker stays.
#[test]
fn t38_a_silent_server_of_a_pending_receipt_does_not_hold_up_the_session() {
    let [(port, silent), (_, down)] = servers_not_yet_up();
    let p = returned_pending(&silent, &down);
    // Now a server at the lent licence's address that accepts and never answers.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = tx.send(stream);
        }
    });

    let mut session = started(&p.dir, &p.home, &p.package, &p.kept);
    let held = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pending receipt's request came");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while session.server_contact().is_none() {
        assert!(std::time::Instant::now() < deadline, "no contact in 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        session.server_contact().unwrap().is_err(),
        "its server is down"
    );
    // The receipt's request is still open: the client has not given up on it.
    held.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    let mut reader = &held;
    loop {
        match std::io::Read::read(&mut reader, &mut byte) {
            Ok(0) => panic!("the receipt's request was closed before the contact ended"),
            Ok(_) => continue, // the request's own bytes
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                );
                break;
            }
        }
    }
    assert!(session.pending_returns_sent().is_none(), "still waiting");
    drop(held);
    while session.pending_returns_sent().is_none() {
        assert!(std::time::Instant::now() < deadline, "the send did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sent = session.pending_returns_sent().unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        matches!(sent[0].1, tally_core::rental::Delivery::Unreachable { .. }),
        "{sent:?}"
    );
    assert!(p.marker.exists(), "still pending");
}

/// A server that cannot be reached is tried once per session, whatever the number of
/// receipts pending for it: three receipts for a server that closes every connection
/// unanswered cost one connection, and all three stay pending.
#[test]
fn t38_an_unreachable_server_is_tried_once_per_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let [(port, closing), (_, down)] = servers_not_yet_up();
    let markers: Vec<PathBuf> = (0..3)
        .map(|n| {
            let (lent, licence) = issue(
                dir,
                "Ada",
                &package,
                &format!("lent{n}.tkey"),
                &["--server", &closing],
            );
            returned_while_down(&home, &package, &lent, &licence)
        })
        .collect();
    let (kept, _) = issue(dir, "Ada", &package, "kept.tkey", &["--server", &down]);
    // Now a server at their address that closes each connection without an answer.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut connections = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        drop(stream);
                        connections += 1;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            connections
        })
    };
    session_contact(dir, &home, &package, &kept);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let connections = closer.join().unwrap();
    assert_eq!(connections, 1, "one try for the server");
    for m in &markers {
        assert!(m.exists(), "{} still pending", m.display());
    }
}
