//! `tally-pack issue`, `trace`, `audit` and `inspect` on keyfiles, driven as a user would
//! (assert_cmd): a tampered keyfile, an unknown customer, an untrusted vendor, trace
//! naming the owner, and an audit of a real card-signed trail.

#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::attestation::IssuerSecret;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::trail::{Body, LicenceId, Trail, Usage};

const PASSWORD: &str = "correct horse battery staple";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn issuer_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data/issuer")
        .join(name)
}

fn sample_pdf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf")
}

impl Env {
    /// A vendor accepting the test issuer, with one customer (`Ada`, a virtual card the
    /// test issuer attests) and one package.
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let env = Self { _tmp: tmp, dir };
        env.pack(&["vendor", "init", "--name", "Test Press"])
            .assert()
            .success();
        env.pack(&[
            "vendor",
            "issuer",
            "add",
            issuer_file("test-issuer.pub").to_str().unwrap(),
        ])
        .assert()
        .success();
        env.add_customer("Ada", "ada");
        env.pack(&[
            "pack",
            sample_pdf().to_str().unwrap(),
            "-o",
            env.path("doc.tly").to_str().unwrap(),
        ])
        .assert()
        .success();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn vendor_dir(&self) -> PathBuf {
        self.path("vendor")
    }

    fn pack(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("tally-pack").unwrap();
        c.env("TALLY_VENDOR", self.vendor_dir())
            .env("TALLY_VENDOR_PASSWORD", PASSWORD)
            .args(args);
        c
    }

    /// Creates a virtual card `<file>.state` attested by the test issuer and registers it
    /// as customer `name`.
    fn add_customer(&self, name: &str, file: &str) -> CardIdentity {
        let mut state = CardState::generate(&mut rand_core::OsRng, 100, "test card");
        let issuer =
            IssuerSecret::from_export(&std::fs::read(issuer_file("test-issuer.secret")).unwrap())
                .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        state.attestation = Some(issuer.attest(&state.attested_card(), now - 60, now + 86_400));
        let card_path = self.path(&format!("{file}.state"));
        EmulatedCard::create(&card_path, &state).unwrap();
        let identity = self.card(file).identity().unwrap();
        let export = self.path(&format!("{file}.card"));
        std::fs::write(
            &export,
            tally_core::card::CardExport {
                identity: identity.clone(),
                agreement_key: Some(state.agreement_key()),
                attestation: state.attestation.clone(),
                label: Some("test card".into()),
            }
            .to_text(),
        )
        .unwrap();
        self.pack(&[
            "customer",
            "add",
            "--name",
            name,
            "--card",
            export.to_str().unwrap(),
        ])
        .assert()
        .success();
        identity
    }

    fn card(&self, file: &str) -> Card {
        Card::new(Box::new(
            EmulatedCard::open(self.path(&format!("{file}.state"))).unwrap(),
        ))
    }

    /// Issues `out` for Ada with extra flags.
    fn issue(&self, out: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
        let doc = self.path("doc.tly");
        let out = self.path(out);
        let mut args = vec![
            "issue",
            "--customer",
            "Ada",
            "--package",
            doc.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            // Several licences of one document for Ada (re-issuing: first_hour.rs).
            "--keep-both",
        ];
        args.extend_from_slice(extra);
        self.pack(&args).assert()
    }

    /// Ada's card-signed trail `ada.trail` with a genesis record and `usages`.
    fn trail(&self, usages: &[Usage]) -> PathBuf {
        let mut card = self.card("ada");
        let identity = card.identity().unwrap();
        let path = self.path("ada.trail");
        let mut trail = Trail::create(&path, &mut card, &identity).unwrap();
        for usage in usages {
            trail.write(&mut card, &Body::now(usage.clone())).unwrap();
        }
        path
    }

    fn licence_of(&self, keyfile: &str) -> LicenceId {
        let out = self
            .pack(&["inspect", "--json", self.path(keyfile).to_str().unwrap()])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        LicenceId::from_hex(v["licence"].as_str().unwrap()).unwrap()
    }
}

#[test]
fn issue_inspect_and_trace_name_the_owner() {
    let env = Env::new();
    env.issue(
        "ada.key",
        &[
            "--pages",
            "30",
            "--not-after",
            "2099-12-31",
            "--allow",
            "print",
        ],
    )
    .success()
    .stdout(predicate::str::contains("customer: Ada"))
    .stdout(predicate::str::contains("30 pages"));
    let key = env.path("ada.key");
    let len = std::fs::metadata(&key).unwrap().len();
    assert!(len > 60_000, "about 480,000 decoy bits: {len} bytes");
    env.pack(&["inspect", key.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("kind: keyfile"))
        .stdout(predicate::str::contains("customer: Ada"))
        .stdout(predicate::str::contains("signature: valid"))
        .stdout(predicate::str::contains("not-after 2099-12-31T23:59:59Z"));
    env.pack(&["trace", key.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("customer: Ada"))
        .stdout(predicate::str::contains("registry: issued to `Ada`"))
        .stdout(predicate::str::contains("signature: valid"));
}

#[test]
fn a_tampered_keyfile_is_refused_and_still_traced() {
    let env = Env::new();
    env.issue("ada.key", &["--pages", "30"]).success();
    let key = env.path("ada.key");
    let mut bytes = std::fs::read(&key).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let bad = env.path("bad.key");
    std::fs::write(&bad, &bytes).unwrap();
    env.pack(&["inspect", bad.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("verifies: NO"))
        .stdout(predicate::str::contains("signature does not verify"));
    env.pack(&["trace", bad.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("customer: Ada"))
        .stdout(predicate::str::contains("signature: INVALID"));
    // Cut short: refused with the reason, exit 1.
    std::fs::write(&bad, &bytes[..bytes.len() - 10]).unwrap();
    env.pack(&["inspect", bad.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("truncated"));
}

#[test]
fn unknown_customer_and_conflicting_limits_are_refused() {
    let env = Env::new();
    env.issue("x.key", &[])
        .success()
        .stdout(predicate::str::contains("unlimited"));
    let doc = env.path("doc.tly");
    let out = env.path("bob.key");
    env.pack(&[
        "issue",
        "--customer",
        "Bob",
        "--package",
        doc.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("no customer named `Bob`"));
    assert!(!out.exists());
    // Existing output without --force.
    env.issue("x.key", &[])
        .code(2)
        .stderr(predicate::str::contains("--force"));
    // A policy file and a flag for the same limit.
    let policy = env.path("policy.txt");
    std::fs::write(
        &policy,
        "tally-policy/1\npages 10\nrule any(pages 10, minutes 5)\n",
    )
    .unwrap();
    env.issue(
        "p.key",
        &["--policy", policy.to_str().unwrap(), "--pages", "5"],
    )
    .code(2)
    .stderr(predicate::str::contains("also set in the policy file"));
    env.issue(
        "p.key",
        &["--policy", policy.to_str().unwrap(), "--minutes", "5"],
    )
    .success()
    .stdout(predicate::str::contains("rule any(pages 10, minutes 5)"));
    // A malformed policy names the line.
    std::fs::write(&policy, "tally-policy/1\npagez 10\n").unwrap();
    env.issue("q.key", &["--policy", policy.to_str().unwrap()])
        .code(1)
        .stderr(predicate::str::contains(
            "line 2: unknown directive `pagez`",
        ));
    env.issue("q.key", &["--not-after", "31/12/2026"])
        .code(2)
        .stderr(predicate::str::contains("--not-after"));
}

#[test]
fn an_untrusted_vendor_is_refused() {
    let env = Env::new();
    env.issue("ada.key", &[]).success();
    let key = env.path("ada.key");
    // Another vendor's folder: its viewer trusts only that vendor.
    let other = env.path("other");
    let mut c = Command::cargo_bin("tally-pack").unwrap();
    c.env("TALLY_VENDOR", &other)
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args(["vendor", "init", "--name", "Other Press"])
        .assert()
        .success();
    let mut c = Command::cargo_bin("tally-pack").unwrap();
    c.env("TALLY_VENDOR", &other)
        .args(["inspect", key.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("does not trust"));
    let mut c = Command::cargo_bin("tally-pack").unwrap();
    c.env("TALLY_VENDOR", &other)
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args(["trace", key.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not trust"));
}

#[test]
fn audit_reports_use_per_licence_from_a_card_signed_trail() {
    let env = Env::new();
    env.issue("ada.key", &["--pages", "30", "--minutes", "10"])
        .success();
    let lic = env.licence_of("ada.key");
    let other = LicenceId([0x77; 16]);
    let trail_path = env.trail(&[
        Usage::Open { licence: lic },
        Usage::Pages {
            licence: lic,
            first: 1,
            count: 10,
        },
        Usage::Time {
            licence: lic,
            seconds: 60,
        },
        Usage::Time {
            licence: lic,
            seconds: 60,
        },
        Usage::Pages {
            licence: other,
            first: 1,
            count: 99,
        },
        Usage::Nonce {
            value: "vendor-challenge-42".into(),
        },
        Usage::Print {
            licence: lic,
            pages: 0,
        },
    ]);
    let t = trail_path.to_str().unwrap();
    env.pack(&["audit", t, "--customer", "Ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains("verified: 8 records (counters "))
        .stdout(predicate::str::contains(
            "1 opening, 10 page views prepaid in 1 block, 2 min 0 s in 2 time units",
        ))
        .stdout(predicate::str::contains("nonce: vendor-challenge-42"))
        .stdout(predicate::str::contains(
            "other licences: 1 record (not this vendor's, not itemised)",
        ))
        .stdout(predicate::str::contains("active: 20 pages · 8 min"));
    env.pack(&["audit", t, "--customer", "Ada", "--csv"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("licence,title,opens,"))
        .stdout(predicate::str::contains(format!("{lic},")))
        .stdout(predicate::str::contains(",1,10,1,120,2,0,"));
    let out = env
        .pack(&["audit", t, "--customer", "Ada", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["licences"][0]["licence"], lic.to_hex());
    assert_eq!(v["licences"][0]["seconds"], 120);
    assert_eq!(v["last_counter"], 107);
    // Another customer's card: the trail is not theirs.
    env.add_customer("Bob", "bob");
    env.pack(&["audit", t, "--customer", "Bob"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong-card"));
    // A changed byte in a record: refused, the check named.
    let mut bytes = std::fs::read(&trail_path).unwrap();
    let n = bytes.len();
    bytes[n - 80] ^= 0x01;
    std::fs::write(&trail_path, &bytes).unwrap();
    env.pack(&["audit", t, "--customer", "Ada"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not verify"));
    env.pack(&["audit", t, "--customer", "Nobody"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no customer named `Nobody`"));
}

#[test]
fn audit_reports_copies_and_copied_characters_in_text_json_and_csv() {
    let env = Env::new();
    env.issue("ada.key", &["--copies", "3", "--copy-chars", "500"])
        .success()
        .stdout(predicate::str::contains("3 copies, 500 characters to copy"));
    let lic = env.licence_of("ada.key");
    let trail_path = env.trail(&[
        Usage::Open { licence: lic },
        Usage::Copy {
            licence: lic,
            chars: 40,
        },
        Usage::Copy {
            licence: lic,
            chars: 15,
        },
    ]);
    let t = trail_path.to_str().unwrap();
    env.pack(&["audit", t, "--customer", "Ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0 pages printed, 2 texts copied (55 characters) (active",
        ));
    env.pack(&["audit", t, "--customer", "Ada", "--csv"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "printed_pages,copies,copied_chars,status",
        ))
        .stdout(predicate::str::contains(",0,2,55,"));
    let out = env
        .pack(&["audit", t, "--customer", "Ada", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["licences"][0]["copies"], 2);
    assert_eq!(v["licences"][0]["copied_chars"], 55);
}

#[test]
fn renew_issues_the_same_licence_with_the_next_version_and_the_new_limits() {
    let env = Env::new();
    env.issue("ada.key", &["--pages", "30", "--not-after", "2030-01-31"])
        .success();
    let lic = env.licence_of("ada.key");
    let old = env.path("ada.key");
    let new = env.path("ada2.key");
    env.pack(&[
        "renew",
        "--keyfile",
        old.to_str().unwrap(),
        "--pages",
        "60",
        "-o",
        new.to_str().unwrap(),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains(format!(
        "licence: {lic} (version 2)"
    )))
    .stdout(predicate::str::contains("60 pages"));
    assert_eq!(env.licence_of("ada2.key"), lic, "the same licence");
    let out = env
        .pack(&["inspect", "--json", new.to_str().unwrap()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let policy = v["policy"].as_str().unwrap();
    assert!(policy.contains("\npages 60\n"), "{policy}");
    assert!(
        policy.contains("\nnot-after 2030-01-31T23:59:59Z\n"),
        "kept: {policy}"
    );
    assert!(policy.contains("\nlicence-version 2\n"), "{policy}");
    // Renewing the renewal: version 3, the dates extended.
    let third = env.path("ada3.key");
    env.pack(&[
        "renew",
        "--keyfile",
        new.to_str().unwrap(),
        "--not-after",
        "2030-06-30",
        "-o",
        third.to_str().unwrap(),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("(version 3)"));
    // A keyfile of another vendor is refused.
    let other = Env::new();
    other
        .pack(&[
            "renew",
            "--keyfile",
            old.to_str().unwrap(),
            "-o",
            other.path("x.key").to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a keyfile of this vendor"));
}

/// The keyfile `name` of `env`, opened with the vendor's public file.
fn open_keyfile(env: &Env, name: &str) -> tally_core::keyfile::VerifiedKeyfile {
    let vendor = tally_core::vendor::VendorPublic::from_export(
        &std::fs::read(env.vendor_dir().join("vendor.pub")).unwrap(),
    )
    .unwrap();
    tally_core::keyfile::Keyfile::open(&std::fs::read(env.path(name)).unwrap(), &[vendor]).unwrap()
}

#[test]
fn renew_by_licence_id_needs_only_the_registry() {
    let env = Env::new();
    env.issue(
        "ada.key",
        &[
            "--pages",
            "30",
            "--server",
            "http://127.0.0.1:9/tally",
            "--require-online-every",
            "7",
        ],
    )
    .success();
    let lic = env.licence_of("ada.key");
    let renew = |args: &[&str]| {
        let mut all = vec!["renew"];
        all.extend_from_slice(args);
        env.pack(&all).assert()
    };
    renew(&[
        "--licence",
        &lic.to_hex(),
        "--pages",
        "60",
        "-o",
        env.path("ada2.key").to_str().unwrap(),
    ])
    .success()
    .stdout(predicate::str::contains(format!(
        "licence: {lic} (version 2)"
    )))
    .stdout(predicate::str::contains("60 pages"));
    // Everything the keyfile carries beyond its limits came from the registry.
    let (old, new) = (
        open_keyfile(&env, "ada.key"),
        open_keyfile(&env, "ada2.key"),
    );
    assert_eq!(new.licence(), lic);
    assert_eq!(new.document(), old.document());
    assert_eq!(new.card(), old.card());
    assert_eq!(new.card_agreement_key(), old.card_agreement_key());
    assert_eq!(new.customer_name(), "Ada");
    assert_eq!(
        new.server(),
        old.server(),
        "address, key and online requirement"
    );
    assert_eq!(
        new.server().unwrap().require_online_every_days,
        Some(7),
        "the online requirement kept"
    );
    assert_eq!(new.issuers(), old.issuers(), "the accepted card issuers");
    assert!(!new.issuers().is_empty());
    assert_eq!(new.allows_emulated_card(), old.allows_emulated_card());
    assert_eq!(new.limits().pages, Some(60));
    assert_eq!(new.limits().licence_version, 2);

    // Again by id: version 3. From the customer's oldest keyfile: still a version above
    // the newest issued (4), never a second version 2.
    renew(&[
        "--licence",
        &lic.to_hex(),
        "--not-after",
        "2030-06-30",
        "-o",
        env.path("ada3.key").to_str().unwrap(),
    ])
    .success()
    .stdout(predicate::str::contains("(version 3)"));
    renew(&[
        "--keyfile",
        env.path("ada.key").to_str().unwrap(),
        "-o",
        env.path("ada4.key").to_str().unwrap(),
    ])
    .success()
    .stdout(predicate::str::contains("(version 4)"));

    // An emulated-card licence keeps its consent when renewed by id.
    env.issue("emu.key", &["--pages", "5", "--allow-emulated-card"])
        .success();
    let emu = env.licence_of("emu.key");
    renew(&[
        "--licence",
        &emu.to_hex(),
        "-o",
        env.path("emu2.key").to_str().unwrap(),
    ])
    .success();
    assert!(open_keyfile(&env, "emu2.key").allows_emulated_card());
    assert!(open_keyfile(&env, "emu2.key").server().is_none());

    // Refusals: unknown (exit 1), malformed (exit 2), neither or both flags (exit 2).
    renew(&[
        "--licence",
        &"ab".repeat(16),
        "-o",
        env.path("x.key").to_str().unwrap(),
    ])
    .code(1)
    .stderr(predicate::str::contains(format!(
        "licence {} is not in this vendor's registry",
        "ab".repeat(16)
    )));
    renew(&[
        "--licence",
        "not-an-id",
        "-o",
        env.path("x.key").to_str().unwrap(),
    ])
    .code(2)
    .stderr(predicate::str::contains("a licence id is 32"));
    renew(&["-o", env.path("x.key").to_str().unwrap()]).code(2);
    renew(&[
        "--licence",
        &lic.to_hex(),
        "--keyfile",
        env.path("ada.key").to_str().unwrap(),
        "-o",
        env.path("x.key").to_str().unwrap(),
    ])
    .code(2);
    assert!(!env.path("x.key").exists(), "nothing written");
}

#[test]
fn renew_refuses_revoked_superseded_and_unrecorded_licences() {
    let env = Env::new();
    env.issue("ada.key", &["--pages", "30"]).success();
    let first = env.licence_of("ada.key");
    // Superseded by a newer licence for the same document: named in the refusal, by id
    // and by keyfile alike.
    let doc = env.path("doc.tly");
    env.pack(&[
        "issue",
        "--customer",
        "Ada",
        "--package",
        doc.to_str().unwrap(),
        "-o",
        env.path("ada-new.key").to_str().unwrap(),
        "--supersede",
        "--pages",
        "40",
    ])
    .assert()
    .success();
    let newer = env.licence_of("ada-new.key");
    let out = env.path("x.key");
    let first_hex = first.to_hex();
    let ada_key = env.path("ada.key");
    for by in [
        ["--licence", first_hex.as_str()],
        ["--keyfile", ada_key.to_str().unwrap()],
    ] {
        env.pack(&["renew", by[0], by[1], "-o", out.to_str().unwrap()])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "licence {first} was superseded by licence {newer}"
            )));
    }
    // Revoked (`tally-pack revoke`), with no newer licence to name.
    env.pack(&["revoke", "--copy", &newer.to_hex()])
        .assert()
        .success();
    env.pack(&[
        "renew",
        "--licence",
        &newer.to_hex(),
        "-o",
        out.to_str().unwrap(),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains(format!(
        "licence {newer} is revoked"
    )));
    assert!(!out.exists(), "nothing written");

    // A licence issued before the registry kept what a renewal needs: refused by id with
    // the way out; renewed once by keyfile, which records it; then by id.
    env.issue("old.key", &["--pages", "3"]).success();
    let old = env.licence_of("old.key");
    rusqlite::Connection::open(env.vendor_dir().join("registry.sqlite"))
        .unwrap()
        .execute(
            "UPDATE keyfiles SET server_url = NULL, online_every_days = NULL,
                    allow_emulated = NULL, issuers = NULL WHERE licence_id = ?1",
            [old.to_hex()],
        )
        .unwrap();
    env.pack(&[
        "renew",
        "--licence",
        &old.to_hex(),
        "-o",
        out.to_str().unwrap(),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("renew it once with --keyfile"));
    env.pack(&[
        "renew",
        "--keyfile",
        env.path("old.key").to_str().unwrap(),
        "-o",
        env.path("old2.key").to_str().unwrap(),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("(version 2)"));
    env.pack(&[
        "renew",
        "--licence",
        &old.to_hex(),
        "-o",
        env.path("old3.key").to_str().unwrap(),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("(version 3)"));
    assert_eq!(
        open_keyfile(&env, "old3.key").issuers(),
        open_keyfile(&env, "old.key").issuers()
    );
}

/// `issue` and `renew` never write over a keyfile already there (one handed out must not be
/// lost to a mistyped name) unless `--force`; the file is left as it was.
#[test]
fn issue_and_renew_refuse_to_replace_a_keyfile_without_force() {
    let env = Env::new();
    env.issue("ada.key", &["--pages", "30"]).success();
    let key = env.path("ada.key");
    let before = std::fs::read(&key).unwrap();
    env.issue("ada.key", &["--pages", "40"])
        .failure()
        .stderr(predicate::str::contains(
            "exists; pass --force to replace it",
        ));
    let renew = |force: bool| {
        let mut args = vec!["renew", "--keyfile", key.to_str().unwrap(), "--pages", "50"];
        args.extend(["-o", key.to_str().unwrap()]);
        if force {
            args.push("--force");
        }
        env.pack(&args).assert()
    };
    renew(false).failure().stderr(predicate::str::contains(
        "exists; pass --force to replace it",
    ));
    assert_eq!(std::fs::read(&key).unwrap(), before, "left as it was");
    renew(true).success();
    assert_ne!(
        std::fs::read(&key).unwrap(),
        before,
        "replaced with --force"
    );
    env.issue("ada.key", &["--pages", "40", "--force"])
        .success();
}

/// A keyfile naming a server address a viewer never sends to (not http(s)) would leave its
/// reader with no server to validate with or to send a return receipt to: refused as the
/// arguments are read (the keyfile's own check would refuse it too, later), nothing written.
#[test]
fn issue_refuses_a_server_address_that_is_not_http() {
    let env = Env::new();
    for bad in [
        "ftp://127.0.0.1/tally",
        "127.0.0.1:8680",
        "file:///tmp/x",
        "",
    ] {
        env.issue("ada.key", &["--pages", "30", "--server", bad])
            .failure()
            .stderr(predicate::str::contains("is not an http(s) URL"));
        assert!(!env.path("ada.key").exists(), "{bad:?}: nothing written");
    }
    env.issue(
        "ada.key",
        &["--pages", "30", "--server", "https://tally.example/v"],
    )
    .success();
}
