//! `tally-view status` and `tally-view trust` as a reader runs them: exit codes 0/1/2 and
//! what they print.

// Setup helpers outside #[test] fns: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use rand_core::OsRng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tally_core::vendor::VendorSecret;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
}

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally-view"))
        .args(args)
        .env("TALLY_HOME", home)
        .env_remove("TALLY_CARD")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn status_of_the_demo_is_allowed_and_reports_what_is_left() {
    let home = tempfile::tempdir().unwrap();
    let pkg = samples().join("sample.tly");
    let kf = samples().join("sample.tkey");
    let (p, k) = (pkg.to_str().unwrap(), kf.to_str().unwrap());
    let o = run(home.path(), &["status", "--demo", p, k]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("reading is allowed"), "{}", text(&o));
    assert!(text(&o).contains("Pages left: 5000"), "{}", text(&o));

    let o = run(home.path(), &["status", "--demo", "--json", p, k]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["remaining"]["pages"], 5000);
    assert_eq!(v["remaining"]["prints"], 50);
    assert_eq!(v["used"]["opens"], 0);

    // Without --demo the demo publisher is not trusted: exit 1 with the reason.
    let o = run(home.path(), &["status", "--json", p, k]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert!(
        v["reason"].as_str().unwrap().contains("does not trust"),
        "{v}"
    );
}

#[test]
fn status_on_another_card_is_refused() {
    let home = tempfile::tempdir().unwrap();
    // Another card where --demo expects its copy of the demo card.
    let other = home.path().join("demo-card.state");
    let o = Command::new(env!("CARGO_BIN_EXE_tally-view"))
        .args(["card", "init"])
        .env("TALLY_HOME", home.path())
        .env("TALLY_CARD", format!("emulated:{}", other.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pkg = samples().join("sample.tly");
    let kf = samples().join("sample.tkey");
    let o = run(
        home.path(),
        &[
            "status",
            "--demo",
            pkg.to_str().unwrap(),
            kf.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("This is not the card for this rental"),
        "{}",
        text(&o)
    );
}

#[test]
fn trust_adds_lists_and_removes_publishers_but_never_a_demo_one() {
    let home = tempfile::tempdir().unwrap();
    let demo = samples().join("demo-vendor.pub");
    let o = run(home.path(), &["trust", "add", demo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("DEMO publisher"), "{}", text(&o));

    let vendor = VendorSecret::generate("Acme Books", false, &mut OsRng).unwrap();
    let file = home.path().join("acme.pub");
    std::fs::write(&file, vendor.public().to_export(&vendor)).unwrap();
    let o = run(home.path(), &["trust", "add", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fp = vendor.public().fingerprint_hex();
    let o = run(home.path(), &["trust", "list"]);
    assert!(text(&o).contains(&fp) && text(&o).contains("Acme Books"));

    // An edited publisher file is refused (its self-signature breaks).
    let mut edited = std::fs::read_to_string(&file).unwrap();
    edited = edited.replacen("Acme Books", "Acme Bookz", 1);
    let bad = home.path().join("bad.pub");
    std::fs::write(&bad, edited).unwrap();
    let o = run(home.path(), &["trust", "add", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let o = run(home.path(), &["trust", "remove", &fp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(home.path(), &["trust", "list"]);
    assert!(!text(&o).contains(&fp));
    let o = run(home.path(), &["trust", "remove", "xyz"]);
    assert_eq!(o.status.code(), Some(2));
}
