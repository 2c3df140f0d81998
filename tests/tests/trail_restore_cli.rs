//! `tally-view trail restore` against a real `tally-pack serve` on loopback (real SQLite
//! registry, real HTTP): a reader's trail is backed up by `trail vouch`, metered further,
//! then lost; the restore brings back the backup with a server-signed recovery record that
//! charges the lost use in full, so the rental reads as used up and nothing is forgiven.
//! Also: a second restore, a card the server does not know, a replayed request, hostile
//! request bodies, and a server restarted in the middle.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use predicates::prelude::*;
use std::path::{Path, PathBuf};
use tally_core::card::CardIdentity;
use tally_core::home::Home;
use tally_tests::{Server, http, pack, publisher_and_reader, serve, view_at};

fn post(url: &str, path: &str, body: &[u8]) -> (u16, String) {
    http(url, path, Some(body))
}

/// A vendor, a reader (emulated card, registered), one package, the server running, and a
/// keyfile naming it (30 page views, 5 openings).
fn setup(dir: &Path, home: &Path) -> (PathBuf, PathBuf, Server, String) {
    let package = publisher_and_reader(dir, home);
    // This viewer build is a registered release (the window validates online at opening).
    pack(dir)
        .args(["viewer", "register"])
        .arg(assert_cmd::cargo::cargo_bin("tally-view"))
        .assert()
        .success();
    let (server, url) = serve(dir, "127.0.0.1:0", &[]);
    let keyfile = dir.join("ada.key");
    pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card"])
        .args(["--pages", "30", "--opens", "5", "--package"])
        .arg(&package)
        .arg("-o")
        .arg(&keyfile)
        .args(["--server", &url])
        .assert()
        .success();
    (package, keyfile, server, url)
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap()
}

/// Loses the trail (and its intent file): the disk it was on is gone.
fn lose(trail: &Path) {
    std::fs::remove_file(trail).unwrap();
    let mut intent = trail.as_os_str().to_os_string();
    intent.push(".intent");
    let _ = std::fs::remove_file(intent);
}

#[test]
fn a_lost_trail_is_restored_and_the_lost_use_is_charged_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (package, keyfile, server, url) = setup(dir, &home);
    let view = || view_at(&home);
    let status = || {
        let mut c = view_at(&home);
        c.arg("status").arg(&package).arg(&keyfile);
        c
    };
    let (identity, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    let trail = Home::new(&home).trail_path(&identity.serial);

    status()
        .assert()
        .success()
        .stdout(predicate::str::contains("reading is allowed"));
    // `status` only reads; ValidateTrail makes the trail.
    view().args(["trail", "verify"]).assert().success();
    // Backed up: the server keeps the trail it vouched for.
    let out = view()
        .args(["trail", "vouch", "--json", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let vouched = json(&out.stdout);
    // The server's backup covers the answer it gave: its totals record and validator.
    let validator = vouched["validator_counter"].as_u64().unwrap();
    assert_eq!(
        vouched["backup_upto"].as_u64(),
        Some(validator),
        "{vouched}"
    );
    // More use after the backup, then the disk is lost.
    for _ in 0..3 {
        view().args(["trail", "verify"]).assert().success();
    }
    lose(&trail);
    status()
        .assert()
        .code(1)
        .stdout(predicate::str::contains("restore"));

    let out = view()
        .args(["trail", "restore", "--json", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(&out.stdout);
    assert_eq!(r["restored"], true);
    assert_eq!(r["charge"], "full");
    // Lost: the three verify nonces and the restore request.
    let from = r["lost_from"].as_u64().unwrap();
    let to = r["lost_to"].as_u64().unwrap();
    assert_eq!(from, validator + 1);
    assert_eq!(to - from + 1, 4, "{r}");
    assert_eq!(r["recovery_counter"].as_u64().unwrap(), to + 1);
    // The restored trail validates, and the rental reads as used up (cover page only).
    view().args(["trail", "verify"]).assert().success();
    status()
        .assert()
        .code(1)
        .stdout(predicate::str::contains("used up"))
        .stdout(predicate::str::contains(
            "restored from the publisher's backup",
        ));
    let shown = view().args(["trail", "show"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!(
            ": counters {from} to {to} lost, charged in full to 1 licence"
        )),
        "{shown:?}"
    );
    // The publisher's audit of the restored trail: its recovery record needs the vendor's
    // own validation server trusted, and the lost use shows as used up.
    pack(dir)
        .arg("audit")
        .arg(&trail)
        .args(["--customer", "Ada"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--own-server"));
    let out = pack(dir)
        .arg("audit")
        .arg(&trail)
        .args(["--customer", "Ada", "--own-server", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let audit = json(&out.stdout);
    let status = audit["licences"][0]["status"].as_str().unwrap();
    assert_eq!(status, "used up: written off at restore", "{audit}");
    // No placeholder totals: the licence reads as written off, its totals as unknown.
    assert_eq!(audit["licences"][0]["written_off"], true, "{audit}");
    assert!(audit["licences"][0]["opens"].is_null(), "{audit}");
    let out = pack(dir)
        .arg("audit")
        .arg(&trail)
        .args(["--customer", "Ada", "--own-server"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let licence = audit["licences"][0]["licence"].as_str().unwrap();
    assert!(
        report.contains(&format!(
            "licence {licence} (sample): written off at restore: the reader's trail was lost and restored from the validation server's backup, and the use after that backup counts in full, so the licence is used up\n"
        )),
        "{report}"
    );
    for placeholder in ["4294967295", "71582788"] {
        assert!(!report.contains(placeholder), "{report}");
    }
    // An existing trail is never replaced without being asked.
    view()
        .args(["trail", "restore", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));

    // The server restarts (same port, same SQLite file): a second restore, asked for with
    // --replace and the keyfile's server given by its address too, still works and still
    // charges everything since the backup.
    let addr = url.strip_prefix("http://").unwrap().to_string();
    drop(server);
    let (server, url2) = serve(dir, &addr, &[]);
    assert_eq!(url, url2);
    let out = view()
        .args(["trail", "restore", "--json", "--replace", "--server", &url2])
        .arg("--keyfile")
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r2 = json(&out.stdout);
    assert_eq!(r2["lost_from"].as_u64().unwrap(), from);
    assert!(r2["lost_to"].as_u64().unwrap() > to + 1);
    let aside: Vec<_> = std::fs::read_dir(trail.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "the replaced trail is kept aside");
    view().args(["trail", "verify"]).assert().success();

    // A replayed request: the same card-signed request sent twice. The first is answered,
    // the second refused by its counter — over real HTTP, after the restart.
    let mut card = tally_core::card::Card::new(Box::new(
        tally_core::card::emulated::EmulatedCard::open(home.join("card.state")).unwrap(),
    ));
    let key_hex = {
        let kf = std::fs::read(&keyfile).unwrap();
        let vendor = tally_core::vendor::VendorPublic::from_export(
            &std::fs::read(dir.join("vendor/vendor.pub")).unwrap(),
        )
        .unwrap();
        let kf = tally_core::keyfile::Keyfile::open(&kf, &[vendor]).unwrap();
        kf.server().unwrap().public_key.clone()
    };
    let spare = dir.join("no-trail-here");
    let body = tally_core::validation::restore_request_body(
        &key_hex,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    let req = tally_core::trail::Trail::sign_detached(&spare, &mut card, &identity, &body).unwrap();
    let (env, _) = tally_core::validation::seal_restore_request(
        &key_hex,
        &identity.serial,
        &req,
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert_eq!(post(&url, "/v1/trail/restore", &env).0, 200);
    let (code, text) = post(&url, "/v1/trail/restore", &env);
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("replayed"), "{text}");
    // Hostile bodies: a clear 4xx with a reason, never a crash.
    let (code, text) = post(&url, "/v1/trail/restore", b"not a request");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("restore request refused"), "{text}");
    let (code, _) = post(&url, "/v1/trail/restore", &vec![0u8; 100_000]);
    assert_eq!(code, 413);
    let mut flipped = env.clone();
    let n = flipped.len() - 1;
    flipped[n] ^= 1;
    let (code, text) = post(&url, "/v1/trail/restore", &flipped);
    assert_eq!(code, 400, "{text}");
    drop(server);
}

#[test]
fn a_restore_right_after_a_vouch_charges_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    // The server charges lost records in full (the default, `--lost-records full`).
    let (package, keyfile, _server, url) = setup(dir, &home);
    let view = || view_at(&home);
    let (identity, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    let trail = Home::new(&home).trail_path(&identity.serial);
    view().args(["trail", "verify"]).assert().success();
    let out = view()
        .args(["trail", "vouch", "--json", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v = json(&out.stdout);
    let validator = v["validator_counter"].as_u64().unwrap();
    assert_eq!(v["backup_upto"].as_u64(), Some(validator), "{v}");
    assert!(v["backup_error"].is_null(), "{v}");
    // The answer sent again (a replay, or a second reader process): the backup already
    // covers it, so the server refuses with 409 and changes nothing.
    let key = {
        let vendor = tally_core::vendor::VendorPublic::from_export(
            &std::fs::read(dir.join("vendor/vendor.pub")).unwrap(),
        )
        .unwrap();
        let kf = tally_core::keyfile::Keyfile::open(&std::fs::read(&keyfile).unwrap(), &[vendor])
            .unwrap();
        kf.server().unwrap().public_key.clone()
    };
    let records = {
        let bytes = std::fs::read(&trail).unwrap();
        tally_core::trail::file::parse_frames(
            &bytes[tally_core::trail::file::HEADER_LEN..],
            tally_core::trail::file::HEADER_LEN as u64,
            0,
        )
        .unwrap()
        .records
    };
    let answer = &records[records.len() - 2..];
    assert_eq!(answer[1].counter, validator);
    let env = tally_core::validation::seal_backup_extension(
        &key,
        &identity,
        answer,
        &mut rand_core::OsRng,
    )
    .unwrap();
    let (code, text) = post(&url, "/v1/trail/extend", &env);
    assert_eq!(code, 409, "{text}");
    // Ordinary records are no answer to a vouch: they extend nothing.
    let env = tally_core::validation::seal_backup_extension(
        &key,
        &identity,
        &records[1..3],
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert_eq!(post(&url, "/v1/trail/extend", &env).0, 409);
    let (code, text) = post(&url, "/v1/trail/extend", b"not an extension");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("backup extension refused"), "{text}");
    assert_eq!(post(&url, "/v1/trail/extend", &vec![0u8; 2 << 20]).0, 413);
    // The disk is lost right after the vouch: only the restore request's own counter is
    // missing, and nothing is charged.
    lose(&trail);
    let out = view()
        .args(["trail", "restore", "--json", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(&out.stdout);
    assert_eq!(r["lost_from"].as_u64(), Some(validator + 1), "{r}");
    assert_eq!(r["lost_to"], r["lost_from"], "{r}");
    assert_eq!(r["charge"], "forgive", "{r}");
    view().args(["trail", "verify"]).assert().success();
    view()
        .arg("status")
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .success()
        .stdout(predicate::str::contains("reading is allowed"));
}

#[test]
fn a_card_the_server_does_not_know_gets_nothing_and_forgiving_servers_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (package, keyfile, server, url) = setup(dir, &home);
    // Another reader, whose card no customer has: nothing to restore, exit 1 with the reason.
    let stranger = dir.join("stranger");
    view_at(&stranger).args(["card", "init"]).assert().success();
    view_at(&stranger)
        .args(["trust", "add"])
        .arg(dir.join("vendor/vendor.pub"))
        .assert()
        .success();
    let (identity, _) = {
        let out = dir.join("stranger.card");
        view_at(&stranger)
            .args(["card", "export", "-o"])
            .arg(&out)
            .assert()
            .success();
        CardIdentity::from_export(&std::fs::read(&out).unwrap()).unwrap()
    };
    assert!(!Home::new(&stranger).trail_path(&identity.serial).exists());
    // The server's URL alone: no server is believed because it was named.
    view_at(&stranger)
        .args(["trail", "restore", "--server", &url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--keyfile"));
    view_at(&stranger)
        .args(["trail", "restore", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no customer is registered"));
    // The registered reader reads, never has a backup made, and loses the trail; the
    // publisher forgives lost records:
    // the trail comes back as just the recovery record, and reading goes on.
    drop(server);
    let addr = url.strip_prefix("http://").unwrap().to_string();
    let (_server, _) = serve(dir, &addr, &["--lost-records", "forgive"]);
    let (id, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    view_at(&home)
        .arg("status")
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .success();
    view_at(&home).args(["trail", "verify"]).assert().success();
    lose(&Home::new(&home).trail_path(&id.serial));
    let out = view_at(&home)
        .args(["trail", "restore", "--json", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = json(&out.stdout);
    assert_eq!(r["charge"], "forgive");
    assert_eq!(r["backup_records"], 0);
    assert_eq!(r["lost_from"].as_u64(), Some(id.origin));
    view_at(&home).args(["trail", "verify"]).assert().success();
    view_at(&home)
        .arg("status")
        .arg(&package)
        .arg(&keyfile)
        .assert()
        .success();
}

#[test]
fn the_vouched_prefix_is_archived_and_the_archived_trail_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let (package, keyfile, _server, url) = setup(dir, &home);
    let view = || view_at(&home);
    let status_json = || {
        let out = view_at(&home)
            .arg("status")
            .arg(&package)
            .arg(&keyfile)
            .arg("--json")
            .output()
            .unwrap();
        json(&out.stdout)
    };
    let (identity, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    let trail = Home::new(&home).trail_path(&identity.serial);
    view().args(["trail", "verify"]).assert().success();
    for _ in 0..3 {
        assert_eq!(status_json()["allowed"], true);
    }
    // Nothing vouched for yet: nothing may be archived.
    view()
        .args(["trail", "archive"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing archived"));
    view()
        .args(["trail", "vouch", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .success();
    view().args(["trail", "verify"]).assert().success();
    let before = status_json();
    let records_before = std::fs::metadata(&trail).unwrap().len();
    let out = view()
        .args(["trail", "archive", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let a = json(&out.stdout);
    // Genesis, `trail verify`'s nonce and the vouch's own (status writes nothing).
    assert!(a["archived"].as_u64().unwrap() >= 3, "{a}");
    assert!(Path::new(a["archive"].as_str().unwrap()).exists());
    assert!(std::fs::metadata(&trail).unwrap().len() < records_before);
    // Same use counted after the cut.
    let after = status_json();
    assert_eq!(after["used"]["opens"], before["used"]["opens"], "{after}");
    view()
        .args(["trail", "verify", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"fast_start\""));
    // The archived trail is vouched for again, lost, and restored from that backup.
    view()
        .args(["trail", "vouch", "--keyfile"])
        .arg(&keyfile)
        .assert()
        .success();
    // The publisher audits that backup — an archived trail, starting at its anchor — with
    // no file from the reader: the same use as the reader's own count.
    let out = pack(dir)
        .args(["audit", "--customer", "Ada", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let audited = json(&out.stdout);
    assert_eq!(audited["source"], "server-backup", "{audited}");
    assert_eq!(
        audited["licences"][0]["opens"], after["used"]["opens"],
        "{audited}"
    );
    // The backup covers the validator: lost are a nonce written after it, and the restore
    // request's counter.
    let validator_at = {
        let out = view().args(["trail", "show", "--json"]).output().unwrap();
        let shown = json(&out.stdout);
        shown["records"].as_array().unwrap().last().unwrap()["counter"]
            .as_u64()
            .unwrap()
    };
    let licence = {
        let kf = std::fs::read(&keyfile).unwrap();
        let vendor = tally_core::vendor::VendorPublic::from_export(
            &std::fs::read(dir.join("vendor/vendor.pub")).unwrap(),
        )
        .unwrap();
        tally_core::keyfile::Keyfile::open(&kf, &[vendor])
            .unwrap()
            .licence()
    };
    view().args(["trail", "verify"]).assert().success();
    lose(&trail);
    let out = view()
        .args(["trail", "restore", "--keyfile"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Before: what will happen; after: what came back, what was lost, what was charged.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next().unwrap(),
        format!(
            "Restoring the trail of card {} from the backup kept by {url}. What this card recorded after that backup is lost; the publisher's policy decides how that is charged, and the answer says which licences were charged.",
            identity.serial
        )
    );
    let told = String::from_utf8_lossy(&out.stdout);
    let told: Vec<&str> = told.lines().collect();
    assert!(
        told[0].starts_with(&format!("Trail restored from {url}: ")),
        "{told:?}"
    );
    let want = [
        format!(
            "Lost: 2 card counters ({} to {}) were used after the server's backup, the last by this restore request; the server never saw their records, so it cannot tell what they were.",
            validator_at + 1,
            validator_at + 2
        ),
        format!(
            "Charged in full, as the publisher's policy says for lost use: licence {licence} (this keyfile's) now counts as used up."
        ),
    ];
    assert_eq!(told[1..], [want[0].as_str(), want[1].as_str()]);
    view().args(["trail", "verify"]).assert().success();
    // A home that does not trust the server can't validate the archived trail.
    std::fs::remove_file(home.join("validators")).unwrap();
    view()
        .args(["trail", "verify"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("archived"));
}
