//! Core's package test vectors (`core/tests/data/package/`, format 2, and
//! `core/tests/data/package-v1/`, format 1) through `tally-pack inspect`, with no key and no
//! registry: only the vendors' public files the vector names.
//!
//! Format 2: `verifies: yes` exactly when the header verifies and the body matches the digest
//! it signs; a vector that only the content key can refuse (`expect: decrypt`) is a file the
//! vendor really signed whole, so it verifies. Format 1: the body is not signed, so the best
//! inspect can say is `verifies: header only`, and a body of the wrong length is refused.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "../../core/tests/support/vector.rs"]
mod vector;

use std::path::{Path, PathBuf};
use std::process::Command;
use tally_core::package::PackageHeader;

const KEYS: &[&str] = &["expect", "comment", "trust", "key", "plaintext-sha256"];

fn core_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data")
}

/// The words of the error each expectation names, as `inspect` prints it.
fn words(expect: &str) -> &'static str {
    match expect {
        "truncated-header" => "truncated",
        "header-length" => "outside the accepted range",
        "bad-header" => "package header: bad",
        "media-type" => "media type",
        "unsupported-version" => "unsupported package version",
        "untrusted-vendor" => "untrusted vendor",
        "bad-signature" => "signature does not verify",
        "body-length" => "than its header says",
        "body-digest" => "does not match the digest signed",
        other => panic!("no words for `{other}`"),
    }
}

fn run(area: &str) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let vectors = vector::load_dir(&core_data().join(area), KEYS);
    for v in &vectors {
        let file = tmp.path().join(v.name());
        std::fs::write(&file, &v.bytes).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally-pack"));
        cmd.env_remove("TALLY_VENDOR")
            .env_remove("TALLY_DATABASE")
            .env_remove("TALLY_VENDOR_PASSWORD")
            .arg("inspect");
        for t in v.get("trust").split(',') {
            cmd.arg("--trust")
                .arg(core_data().join("package-trust").join(t));
        }
        let out = cmd.arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let what = format!("{area}/{}: {stdout}{stderr}", v.name());
        let expect = v.get("expect");
        if expect == "bad-magic" || v.bytes.len() < 8 {
            assert_eq!(code, Some(1), "{what}");
            assert!(stderr.contains("not a Tally file"), "{what}");
            continue;
        }
        let format_1 = v.bytes[8] == 1;
        let keyless = match expect {
            "ok" | "decrypt" if format_1 => {
                // Without the key, format 1 shows only a wrong length.
                let header = PackageHeader::read_unverified(&mut &v.bytes[..]).unwrap();
                if v.bytes.len() as u64 == header.package_len() {
                    "header only"
                } else {
                    "body-length"
                }
            }
            "ok" | "decrypt" => "yes",
            other => other,
        };
        match keyless {
            "yes" => {
                assert_eq!(code, Some(0), "{what}");
                assert!(stdout.contains("verifies: yes"), "{what}");
                assert!(stdout.contains("whole file is checked"), "{what}");
            }
            "header only" => {
                assert_eq!(code, Some(0), "{what}");
                assert!(stdout.contains("verifies: header only"), "{what}");
                assert!(stdout.contains("format 1 does not sign the body"), "{what}");
            }
            refused => {
                assert_eq!(code, Some(1), "{what}");
                assert!(stdout.contains("verifies: NO"), "{what}");
                assert!(
                    stdout
                        .lines()
                        .any(|l| l.starts_with("problem: ") && l.contains(words(refused))),
                    "{what}"
                );
            }
        }
        assert!(
            !(keyless != "yes" && stdout.contains("verifies: yes")),
            "{what}"
        );
    }
    vectors.len()
}

#[test]
fn format_2_vectors_through_inspect() {
    assert!(run("package") > 40);
}

#[test]
fn format_1_vectors_through_inspect() {
    assert!(run("package-v1") > 40);
}
