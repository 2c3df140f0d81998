//! THREATS.md T29–T34: the reader (or a third party) runs our own tools against the rental —
//! a vendor and a validation server of their own (stock `tally-pack vendor init` and
//! `tally-pack serve`), a keyfile of their own, validation requests of their own making or
//! captured on the network, a validation ticket taken from another copy, a frozen clock —
//! through the shipped binaries. Each attack is refused and the honest reader's licence
//! keeps what it had.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tally_core::home::{CardSpec, Home};
use tally_core::icv::{IcvVariant, Iv, Ui};
use tally_core::policy::{Clock, SystemClock, TestClock};
use tally_core::rental::{NoNetwork, OpenInputs, Problem, open_rental};
use tally_core::trail::LicenceId;
use tally_core::validation::{
    RequestSigner, Status, TrailSigner, ValReq, Verdict, request_hash, request_record_body,
};
use tally_core::vendor::VendorPublic;
use tally_tests::{http, issue, pack, pack_sample, publisher_and_reader, serve, view_at};

/// A publisher `name` made with the stock `tally-pack vendor init` in `<dir>/<folder>`, with
/// the reader's card (`<dir>/reader.card`) registered as its customer `customer`.
fn vendor_with_reader(dir: &Path, folder: &str, name: &str, customer: &str) -> PathBuf {
    let v = dir.join(folder);
    std::fs::create_dir_all(v.join("packages")).unwrap();
    pack(&v)
        .args(["vendor", "init", "--name", name])
        .assert()
        .success();
    pack(&v)
        .args([
            "customer",
            "add",
            "--name",
            customer,
            "--allow-emulated-card",
            "--card",
        ])
        .arg(dir.join("reader.card"))
        .assert()
        .success();
    v
}

/// The reader's own publisher "Mallory" in `<dir>/mallory`, made with the stock
/// `tally-pack vendor init`, with the reader's own card registered as customer "Me".
fn own_vendor(dir: &Path) -> PathBuf {
    vendor_with_reader(dir, "mallory", "Mallory", "Me")
}

/// The reader's own vendor packs the sample, issues the reader a licence naming the
/// reader's own server `url`, and the reader trusts it: the keyfile.
fn own_licence(own: &Path, home: &Path, url: &str) -> PathBuf {
    let package = own.join("packages/own.tly");
    pack_sample(own, &package);
    let keyfile = own.join("me.tkey");
    issue(own, "Me", &package, &keyfile, &["--server", url]);
    view_at(home)
        .args(["trust", "add"])
        .arg(own.join("vendor/vendor.pub"))
        .assert()
        .success();
    keyfile
}

/// Acme's server running, and a keyfile naming it that allows one opening.
fn one_opening(dir: &Path, home: &Path) -> (PathBuf, PathBuf, tally_tests::Server) {
    let package = publisher_and_reader(dir, home);
    let (server, url) = serve(dir, "127.0.0.1:0", &[]);
    let keyfile = dir.join("ada.tkey");
    issue(
        dir,
        "Ada",
        &package,
        &keyfile,
        &["--opens", "1", "--server", &url],
    );
    (package, keyfile, server)
}

/// The reader opens the document once (the opening of any viewer linking tally-core).
fn open_once(dir: &Path, home: &Path, package: &Path, keyfile: &Path) {
    open_trusting(home, package, keyfile, &[dir.join("vendor/vendor.pub")]);
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
    let own_keyfile = own_licence(&own, &home, &own_url);
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
    let bolt = vendor_with_reader(dir, "bolt", "Bolt Books", "Ada");
    view_at(home)
        .args(["trust", "add"])
        .arg(bolt.join("vendor/vendor.pub"))
        .assert()
        .success();
    let package = bolt.join("packages/bolt.tly");
    pack_sample(&bolt, &package);
    let (server, url) = serve(&bolt, "127.0.0.1:0", &["--lost-records", lost]);
    let keyfile = bolt.join("ada.tkey");
    issue(
        &bolt,
        "Ada",
        &package,
        &keyfile,
        &["--opens", "5", "--server", &url],
    );
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
    issue(
        dir,
        "Ada",
        &acme_package,
        &acme_keyfile,
        &["--opens", "5", "--server", &acme_url],
    );
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
    status(&home, &acme_package, &acme_keyfile)
        .assert()
        .success();
    // Bolt's licence: the lost use (Bolt's second opening) is nobody's to forgive but
    // Bolt's, so it counts in full until Bolt accounts for it.
    status(&home, &bolt_package, &bolt_keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "only another publisher's server accounted for them",
        ))
        .stdout(predicate::str::contains(
            "tally-view trail restore --keyfile",
        ));
    // Bolt's own account of the same hole, by Bolt's policy: the licence is back.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&bolt_keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("accounted for card counters"))
        .stdout(predicate::str::contains("nothing charged"));
    status(&home, &bolt_package, &bolt_keyfile)
        .assert()
        .success();
    status(&home, &acme_package, &acme_keyfile)
        .assert()
        .success();
    view_at(&home).args(["trail", "verify"]).assert().success();
    // Asked again, there is nothing left for Bolt to account for.
    view_at(&home)
        .args(["trail", "restore", "--keyfile"])
        .arg(&bolt_keyfile)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "has accounted for everything lost",
        ));
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
    let own_keyfile = own_licence(&own, &home, &own_url);
    view_at(&home)
        .args(["trail", "restore", "--replace", "--keyfile"])
        .arg(&own_keyfile)
        .assert()
        .success();
    for (p, k) in [
        (&acme_package, &acme_keyfile),
        (&bolt_package, &bolt_keyfile),
    ] {
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
    pack_sample(&own, &own_package);
    let own_keyfile = own.join("me.tkey");
    issue(&own, "Me", &own_package, &own_keyfile, &[]);
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

/// The publisher's validation server's key, as `GET /v1/server-key` publishes it.
fn server_key(url: &str) -> tally_core::crypto::PublicKey {
    let (code, body) = http(url, "/v1/server-key", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    tally_core::crypto::PublicKey::from_sec1(
        &hex::decode(v["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap()
}

/// One raw POST to `addr` (`HOST:PORT`) with `Connection: close`: the whole response.
fn post_raw(addr: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    buf
}

/// A VAL_REQ body POSTed to the server at `url`: the HTTP status, the `x-tally-status`
/// header and the verdict, verified under `key`.
fn validate_raw(
    url: &str,
    key: &tally_core::crypto::PublicKey,
    body: &[u8],
) -> (u16, String, Verdict) {
    let raw = post_raw(url.strip_prefix("http://").unwrap(), "/v1/validate", body);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let code = head[9..12].parse().unwrap();
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("x-tally-status: "))
        .unwrap_or("-")
        .to_string();
    let verdict = Verdict::open(&raw[split + 4..], key).unwrap();
    (code, status, verdict)
}

/// A recording proxy on loopback in front of the server at `upstream`: each request is
/// forwarded as it is, and its body kept — what anyone on the network path between the
/// reader and the publisher captures. Returns the proxy's URL and the bodies seen.
fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (up, kept) = (
        upstream.strip_prefix("http://").unwrap().to_string(),
        seen.clone(),
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (path, body) = loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                if buf.len() >= end + 4 + len {
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    break (path, buf[end + 4..end + 4 + len].to_vec());
                }
            };
            if path.is_empty() {
                continue;
            }
            kept.lock().unwrap().push(body.clone());
            let answer = post_raw(&up, &path, &body);
            let _ = c.write_all(&answer);
        }
    });
    (url, seen)
}

/// Acme's keyfile for Ada naming `url` (online every 7 days; several per reader); returns
/// it and its licence id.
fn issue_online(dir: &Path, package: &Path, name: &str, url: &str) -> (PathBuf, String) {
    tally_tests::issue_online(dir, package, name, url, 7)
}

/// The publisher registers the shipped viewer build, so its requests are served.
fn register_viewer(dir: &Path) {
    pack(dir)
        .args(["viewer", "register"])
        .arg(assert_cmd::cargo::cargo_bin("tally-view"))
        .assert()
        .success();
}

fn validate(home: &Path, package: &Path, keyfile: &Path) -> Command {
    let mut c = view_at(home);
    c.arg("validate").arg(package).arg(keyfile);
    c
}

/// The copy's standing at the publisher: `tally-pack copies --json`'s status and flags.
fn at_publisher(dir: &Path, licence: &str) -> (String, serde_json::Value) {
    let out = pack(dir).args(["copies", "--json"]).output().unwrap();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["licence"] == licence)
        .unwrap();
    (
        c["status"].as_str().unwrap().to_string(),
        c["flags"].clone(),
    )
}

#[test]
fn t32_requests_without_the_readers_card_neither_flag_nor_revoke_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let (_acme, url) = serve(dir, "127.0.0.1:0", &[]);
    register_viewer(dir);
    let key = server_key(&url);
    // The reader's requests cross a network someone watches.
    let (proxy, captured) = recording_proxy(&url);
    let (keyfile, licence) = issue_online(dir, &package, "ada.tkey", &proxy);
    validate(&home, &package, &keyfile).assert().success();
    validate(&home, &package, &keyfile).assert().success();
    let old_request = captured.lock().unwrap()[0].clone();

    // A third party with a copy of the keyfile and the package (neither is secret) and a
    // card of their own: the shipped viewer does not even ask for another card's licence.
    let mallory = dir.join("mallory-home");
    view_at(&mallory).args(["card", "init"]).assert().success();
    view_at(&mallory)
        .args(["trust", "add"])
        .arg(dir.join("vendor/vendor.pub"))
        .assert()
        .success();
    validate(&mallory, &package, &keyfile)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong card"));
    // A request of their own making, from the licence id (the copy's first UI, which the
    // copy has moved on from: a clone, if anyone could say so).
    let lic = LicenceId::from_hex(&licence).unwrap();
    let ui0 = Ui::initial(&lic);
    let bytes = std::fs::read(&package).unwrap();
    let forged = |psi: u64| ValReq {
        variant: IcvVariant::V8,
        ui: ui0,
        icv: tally_core::icv::compute(IcvVariant::V8, &bytes, &ui0, &Iv::first(&ui0)),
        psi,
        vssi: 0,
        dt: SystemClock.now().unix_timestamp(),
        vsi: key.fingerprint(),
        iv: Iv::first(&ui0),
        viewer_icv: tally_core::icv::executable_icv(
            &std::fs::read(assert_cmd::cargo::cargo_bin("tally-view")).unwrap()[..],
        )
        .unwrap(),
    };
    // Unsigned (as a viewer from before card-signed requests sends it)…
    let (code, said, v) = validate_raw(
        &url,
        &key,
        &forged(10).seal_unsigned(&key, &mut rand_core::OsRng),
    );
    assert_eq!((code, said.as_str()), (403, "not-card-signed"));
    assert_eq!(v.status, Status::NotCardSigned);
    assert!(
        v.status.to_string().contains("changed nothing"),
        "{}",
        v.status
    );
    // …and signed by Mallory's own card, through her own trail.
    let mut theirs = TrailSigner::open(
        CardSpec::Emulated(None).open(&Home::new(&mallory)).unwrap(),
        &dir.join("mallory.trail"),
    )
    .unwrap();
    let req = forged(11);
    let proof = theirs
        .sign_request(&request_record_body(&request_hash(&req.encode()), req.dt))
        .unwrap();
    let (code, said, _) = validate_raw(&url, &key, &req.seal(&proof, &key, &mut rand_core::OsRng));
    assert_eq!((code, said.as_str()), (403, "not-card-signed"));
    // The reader's own first request, captured and replayed after the next validation.
    let (code, said, v) = validate_raw(&url, &key, &old_request);
    assert_eq!((code, said.as_str()), (403, "replay"));
    assert_eq!(v.status, Status::Replay);
    // Nothing changed: the copy is active, unflagged, and the reader carries on.
    assert_eq!(
        at_publisher(dir, &licence),
        ("active".to_string(), serde_json::json!([]))
    );
    validate(&home, &package, &keyfile).assert().success();
    status(&home, &package, &keyfile).assert().success();
}

/// `state` (a copy's validation state file) with the ticket of `from` in it, the refusal
/// it remembered removed and its checksum recomputed: what a reader with a text editor
/// for bytes does to `<home>/validation/<licence>.state`.
fn pasted_ticket(state: &[u8], from: &[u8]) -> Vec<u8> {
    let at = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 8;
    let len = tally_core::validation::VERDICT_LEN;
    let mut st = state.to_vec();
    st[at] = 1;
    st[at + 1..at + 1 + len].copy_from_slice(&from[at + 1..at + 1 + len]);
    let n = st.len() - 32;
    st[n - 1] = 0xff;
    let sum = tally_core::crypto::sha256(&st[..n]);
    st[n..].copy_from_slice(&sum);
    st
}

#[test]
fn t33_another_copys_fresh_ticket_pasted_into_the_state_is_refused_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let (acme, url) = serve(dir, "127.0.0.1:0", &[]);
    register_viewer(dir);
    let (good, lic_good) = issue_online(dir, &package, "good.tkey", &url);
    let (bad, lic_bad) = issue_online(dir, &package, "bad.tkey", &url);
    validate(&home, &package, &good).assert().success();
    validate(&home, &package, &bad).assert().success();
    pack(dir)
        .args(["revoke", "--copy", &lic_bad])
        .assert()
        .success();
    validate(&home, &package, &bad)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("revoked"));
    drop(acme);
    // The revoked copy borrows the good copy's fresh ticket.
    let states = Home::new(&home).root().join("validation");
    let good_state = std::fs::read(states.join(format!("{lic_good}.state"))).unwrap();
    let bad_path = states.join(format!("{lic_bad}.state"));
    let bad_state = std::fs::read(&bad_path).unwrap();
    std::fs::write(&bad_path, pasted_ticket(&bad_state, &good_state)).unwrap();
    status(&home, &package, &bad)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "the validation ticket is for licence {lic_good}, not for this licence {lic_bad}: a ticket from another copy does not count"
        )));
    // The good copy is untouched and still opens offline.
    status(&home, &package, &good).assert().success();
}

#[test]
fn t34_a_frozen_clock_does_not_stretch_offline_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    // The publisher allows 6 card records between validations (a small number, so the
    // test is short; the default is about a week of continuous reading).
    let (acme, url) = serve(dir, "127.0.0.1:0", &["--offline-records", "6"]);
    register_viewer(dir);
    let (keyfile, _) = issue_online(dir, &package, "ada.tkey", &url);
    validate(&home, &package, &keyfile).assert().success();
    drop(acme);
    // Offline, the reader's clock held just after the ticket (faketime, in any viewer
    // linking tally-core): each opening is card records all the same.
    let frozen = Arc::new(TestClock::at(SystemClock.now()));
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    let open = || {
        open_rental(&OpenInputs {
            package: package.clone(),
            keyfile: keyfile.clone(),
            home: Home::new(&home),
            card: CardSpec::Emulated(None),
            trusted: vec![vendor.clone()],
            clock: frozen.clone(),
            transport: Arc::new(NoNetwork),
        })
    };
    let mut opened = 0;
    let refusal = loop {
        match open() {
            Ok(o) => {
                assert!(o.decision.is_allowed(), "{:?}", o.decision);
                opened += 1;
                assert!(opened < 10, "the card's progress never stopped the copy");
            }
            Err(p) => break p,
        }
    };
    assert!((2..=4).contains(&opened), "{opened} openings");
    assert!(matches!(refusal, Problem::ValidationNeeded(_)), "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("records since the last online validation, and the ticket allows 6"),
        "{refusal}"
    );
    // The shipped viewer says the same, whatever its clock.
    status(&home, &package, &keyfile)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("and the ticket allows 6"));
    // Online again: validated, and reading goes on with nothing lost.
    let port = url.rsplit(':').next().unwrap().to_string();
    let (_acme, _) = serve(
        dir,
        &format!("127.0.0.1:{port}"),
        &["--offline-records", "6"],
    );
    validate(&home, &package, &keyfile).assert().success();
    status(&home, &package, &keyfile).assert().success();
}
