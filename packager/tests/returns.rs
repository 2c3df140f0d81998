//! Early returns and loan caps at the publisher (issue 13, T38), on the SQLite registry and
//! on a fresh PostgreSQL database (`support/pg.rs`): every return-receipt test vector
//! (`core/tests/data/receipt/`) through `tally-pack returns` and through `POST /v1/return`
//! of a real `tally-pack serve` — the good one recorded once and answered the same when
//! replayed, every other one refused with its check named; and `pack --loans` / `loans` /
//! `issue` refusing beyond a document's cap with the count, a revoked or superseded loan
//! freeing its place. (Returns made by a real reader's card, freeing a place, are in
//! tests/tests/early_return.rs.)

#![allow(clippy::unwrap_used)]

use predicates::prelude::*;
use std::path::{Path, PathBuf};

#[allow(
    dead_code,
    reason = "each test file is its own crate and uses only part of the shared set-up"
)]
mod support;
use support::{Backend, Env, on_both_databases, post_to, sample_pdf};

/// The licences of the receipt vectors (core/tests/receipt_vectors.rs).
const LICENCE: &str = "abababababababababababababababab";
const OTHER_LICENCE: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

impl Env {
    /// Packs the sample PDF as `packages/<name>.tly` with `extra` flags; returns its path
    /// and document id.
    fn pack(&self, name: &str, extra: &[&str]) -> (PathBuf, String) {
        let out = self.path(&format!("packages/{name}.tly"));
        let o = self
            .pack_sample(&out)
            .args(["--title", name])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let text = String::from_utf8(o.stdout).unwrap();
        let doc = text
            .split("(document ")
            .nth(1)
            .and_then(|s| s.get(..32))
            .unwrap()
            .to_string();
        (out, doc)
    }

    /// Registers a customer with a fresh emulated card.
    fn customer(&self, name: &str) {
        self.customer_card(name, name, 100, None);
    }

    /// Runs SQL on the registry (test set-up only: what `issue` would have recorded).
    fn sql(&self, statement: &str) {
        // The registry exists and is migrated once any tally-pack command ran.
        match &self.pg {
            Some(pg) => {
                let mut c = ::postgres::Client::connect(&pg.url, ::postgres::NoTls).unwrap();
                c.batch_execute(statement).unwrap();
            }
            None => {
                let c = rusqlite::Connection::open(self.path("vendor/registry.sqlite")).unwrap();
                c.execute_batch(statement).unwrap();
            }
        }
    }
}

/// The return-receipt vectors: (name, expected check or `ok`, bytes).
fn vectors() -> Vec<(String, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/receipt");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let (head, hex_part) = text.split_once("\n\n").unwrap();
            let expect = head
                .lines()
                .find_map(|l| l.strip_prefix("expect: "))
                .unwrap()
                .to_string();
            let clean: String = hex_part.split_whitespace().collect();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                expect,
                hex::decode(clean).unwrap(),
            )
        })
        .collect()
}

/// The vector card registered as customer "Vera" with the vector licences issued to it
/// (`licences`), for a document packed here.
fn vector_customer(env: &Env, licences: &[&str]) {
    let (_, doc) = env.pack("vectors", &[]);
    let card = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/receipt-card.pub");
    env.add_customer("Vera", &card);
    let policy = tally_core::policy::Limits::default().to_text();
    for lic in licences {
        env.sql(&format!(
            "INSERT INTO keyfiles (licence_id, customer, serial, document_id, title, policy, sha256, issued_at)
             VALUES ('{lic}', 'Vera', '5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e', '{doc}', 'Vector Book', '{policy}', '00', '2026-01-01T00:00:00Z')"
        ));
    }
}

fn receipt_vectors_through_tally_pack_returns(db: Backend) {
    let Some(env) = Env::new(db, "receipt_vectors_through_tally_pack_returns") else {
        return;
    };
    vector_customer(&env, &[LICENCE, OTHER_LICENCE]);
    let vectors = vectors();
    assert!(vectors.len() >= 20);
    for (name, expect, bytes) in &vectors {
        let file = env.path(&format!("{name}.treceipt"));
        std::fs::write(&file, bytes).unwrap();
        let out = env.cmd(&["returns", "--json"]).arg(&file).output().unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {out:?}"));
        let f = &v["files"][0];
        if expect == "ok" {
            assert!(out.status.success(), "{name}: {out:?}");
            assert_eq!(f["recorded"], true, "{name}: {v}");
            assert_eq!(f["return"]["licence"], LICENCE);
            assert_eq!(f["return"]["customer"], "Vera");
            assert_eq!(f["return"]["via"], "file");
        } else {
            assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
            assert_eq!(f["recorded"], false, "{name}: {v}");
            assert_eq!(f["check"], expect.as_str(), "{name}: {v}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&format!("{name}.treceipt: ")), "{name}: {err}");
        }
    }
    // Recorded once, however often it is handed over; the list names it.
    let good = env.path("good.treceipt");
    for _ in 0..2 {
        env.cmd(&["returns"])
            .arg(&good)
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "return of licence {LICENCE} of “Vector Book” (customer Vera) recorded: returned 2025-11-24T16:00:00Z, card counter 142"
            )));
    }
    env.cmd(&["returns"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1 verified return:"))
        .stdout(predicate::str::contains(format!(
            "Vera licence {LICENCE} of “Vector Book”: returned 2025-11-24T16:00:00Z"
        )))
        .stdout(predicate::str::contains("(as a file)"));
    // An unreadable file is a usage error (2), a file that is not a receipt a refusal (1).
    env.cmd(&["returns"])
        .arg(env.path("missing.treceipt"))
        .assert()
        .code(2);
    env.cmd(&["returns"])
        .arg(sample_pdf())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a valid return receipt"));
}

fn receipt_vectors_through_the_return_endpoint(db: Backend) {
    let Some(env) = Env::new(db, "receipt_vectors_through_the_return_endpoint") else {
        return;
    };
    // Only the vectors' main licence is this publisher's here: a receipt for the other one
    // names a licence it never issued.
    vector_customer(&env, &[LICENCE]);
    let server = env.serve(&[]);
    let mut first_answer = None;
    for (name, expect, bytes) in &vectors() {
        let (status, check, text) = post_to(&server.url, "/v1/return", bytes);
        match expect.as_str() {
            "ok" => {
                assert_eq!(status, 200, "{name}: {text}");
                assert!(
                    text.contains(&format!("return of licence {LICENCE}")),
                    "{text}"
                );
                first_answer = Some(text);
            }
            _ if name == "licence-replayed" => {
                assert_eq!(status, 404, "{name}: {text}");
                assert!(text.contains("was not issued by this publisher"), "{text}");
            }
            "format" | "version" | "record" | "body" | "not-return" | "licence" => {
                assert_eq!(status, 400, "{name}: {text}");
                assert!(
                    text.contains("not a valid return receipt"),
                    "{name}: {text}"
                );
            }
            _ => {
                assert_eq!(status, 422, "{name}: {text}");
                assert_eq!(check.as_deref(), Some(expect.as_str()), "{name}: {text}");
                assert!(text.starts_with("receipt refused: "), "{name}: {text}");
            }
        }
    }
    // A replay of the good receipt: the same answer, nothing recorded twice.
    let good = &vectors().into_iter().find(|v| v.0 == "good").unwrap().2;
    let (status, _, text) = post_to(&server.url, "/v1/return", good);
    assert_eq!(status, 200);
    assert_eq!(Some(text), first_answer);
    let out = env.cmd(&["returns", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["returns"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["returns"][0]["via"], "server");
    // Too large a body is refused before it is read in full.
    let (status, _, text) = post_to(&server.url, "/v1/return", &vec![0u8; 2000]);
    assert_eq!(status, 413, "{text}");
}

fn loan_of(v: &serde_json::Value, i: usize) -> &str {
    v["loans"][i]["state"].as_str().unwrap()
}

fn issue_refuses_beyond_the_cap_and_a_revoked_loan_frees_a_place(db: Backend) {
    let Some(env) = Env::new(
        db,
        "issue_refuses_beyond_the_cap_and_a_revoked_loan_frees_a_place",
    ) else {
        return;
    };
    env.customer("Ada");
    env.customer("Bob");
    env.customer("Cy");
    let (book, doc) = env.pack("Capped Book", &["--loans", "2"]);
    env.issue_cmd("Ada", &book, "ada.key", &[])
        .assert()
        .success();
    env.issue_cmd("Bob", &book, "bob.key", &[])
        .assert()
        .success();
    // The third loan: refused with the count, and no keyfile left behind.
    env.issue_cmd("Cy", &book, "cy.key", &[])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "2 of 2 loans of “Capped Book” are out",
        ));
    assert!(!env.path("cy.key").exists());
    let out = env.cmd(&["loans", "--json"]).arg(&book).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["cap"].as_u64(), v["out"].as_u64()), (Some(2), Some(2)));
    assert_eq!((loan_of(&v, 0), loan_of(&v, 1)), ("out", "out"));
    // A superseding licence takes the place of the one it replaces.
    env.issue_cmd("Bob", &book, "bob2.key", &["--supersede"])
        .assert()
        .success();
    // Revoking a loan frees its place.
    let ada = {
        let v: serde_json::Value =
            serde_json::from_slice(&env.cmd(&["loans", "--json", &doc]).output().unwrap().stdout)
                .unwrap();
        v["loans"][0]["licence"].as_str().unwrap().to_string()
    };
    env.cmd(&["revoke", "--copy", &ada]).assert().success();
    env.issue_cmd("Cy", &book, "cy.key", &[]).assert().success();
    env.cmd(&["loans", &doc])
        .assert()
        .success()
        .stdout(predicate::str::contains("“Capped Book” (document "))
        .stdout(predicate::str::contains("2 of 2 loans out"))
        .stdout(predicate::str::contains("  revoked: licence"));
    // A loan that has ended frees its place too.
    env.cmd(&["loans", &doc, "--cap", "3"]).assert().success();
    env.issue_cmd(
        "Ada",
        &book,
        "ada-old.key",
        &["--keep-both", "--not-after", "2020-01-01"],
    )
    .assert()
    .success();
    env.issue_cmd("Ada", &book, "ada-new.key", &["--keep-both"])
        .assert()
        .success();
    env.issue_cmd("Ada", &book, "ada-more.key", &["--keep-both"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "3 of 3 loans of “Capped Book” are out",
        ));
    // No cap: any number.
    env.cmd(&["loans", &doc, "--no-cap"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no cap"));
    env.issue_cmd("Ada", &book, "ada-more.key", &["--keep-both"])
        .assert()
        .success();
    // A document this vendor did not pack.
    env.cmd(&["loans", "00000000000000000000000000000000"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not in this vendor's registry"));
}

on_both_databases!(
    receipt_vectors_through_tally_pack_returns,
    receipt_vectors_through_the_return_endpoint,
    issue_refuses_beyond_the_cap_and_a_revoked_loan_frees_a_place,
);
