//! `tally-pack` driven as a user would: every command, its refusals and exit codes
//! (0 ok, 1 check failed, 2 usage/I-O).
//!
//! Packing needs the real pdfium: found through `TALLY_PDFIUM_DIR` (set by
//! `scripts/env.sh`), else `<repo>/.deps/pdfium`. Missing pdfium FAILS these tests.

// Helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use assert_cmd::prelude::*;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use tally_core::card::{CardIdentity, Serial};
use tally_core::crypto::PublicKey;
use tally_core::package::{ContentKey, open_package_bytes};
use tally_core::vendor::{VendorPublic, VendorSecret};

const PW: &str = "test vendor password";

fn pdfium_dir() -> PathBuf {
    let dir = std::env::var_os("TALLY_PDFIUM_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/pdfium"),
        PathBuf::from,
    );
    assert!(
        dir.join("libpdfium.so").is_file(),
        "pdfium is missing: no libpdfium.so in {} (run scripts/setup.sh, or set TALLY_PDFIUM_DIR)",
        dir.display()
    );
    dir
}

/// `tally-pack` with a clean environment pointing at `vendor`.
fn tp(vendor: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tally-pack"));
    c.env_remove("TALLY_VENDOR")
        .env_remove("TALLY_VENDOR_PASSWORD")
        .env("TALLY_VENDOR", vendor)
        .env("TALLY_VENDOR_PASSWORD", PW)
        .env("TALLY_PDFIUM_DIR", pdfium_dir());
    c
}

fn init_vendor(dir: &Path, name: &str) -> PathBuf {
    let v = dir.join(name.replace(' ', "-"));
    tp(&v)
        .args(["vendor", "init", "--name", name])
        .assert()
        .success()
        .stdout(predicate::str::contains("fingerprint: "));
    v
}

/// A small valid PDF with `pages` empty pages, xref offsets computed.
fn tiny_pdf(pages: usize) -> Vec<u8> {
    let mut objs = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            (0..pages)
                .map(|i| format!("{} 0 R", i + 3))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ];
    for _ in 0..pages {
        objs.push("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>".into());
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn random_key() -> PublicKey {
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    PublicKey::from_verifying_key(sk.verifying_key())
}

fn card_file(dir: &Path, name: &str, serial: [u8; 16], key: &PublicKey) -> PathBuf {
    let id = CardIdentity {
        serial: Serial(serial),
        public_key: key.clone(),
        origin: 1000,
    };
    let p = dir.join(name);
    let export = tally_core::card::CardExport {
        identity: id,
        agreement_key: Some(random_key()),
        attestation: None,
        label: Some("test card".into()),
    };
    std::fs::write(&p, export.to_text()).unwrap();
    p
}

fn pack(vendor: &Path, dir: &Path, pages: usize) -> (PathBuf, Vec<u8>) {
    let pdf = tiny_pdf(pages);
    let input = dir.join(format!("doc{pages}.pdf"));
    std::fs::write(&input, &pdf).unwrap();
    let out = dir.join(format!("doc{pages}.tly"));
    tp(vendor)
        .arg("pack")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--title", "Test document"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{pages} page")));
    (out, pdf)
}

#[test]
fn pdfium_opens_the_generated_pdf() {
    // The generator itself is checked by the packer's pdfium page count.
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Pdf Press");
    let (out, _) = pack(&v, tmp.path(), 3);
    tp(&v)
        .arg("inspect")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("pages: 3"));
}

#[test]
fn vendor_init_export_and_no_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Example Press");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(v.join("vendor.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    tp(&v)
        .args(["vendor", "init", "--name", "Other"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refusing to overwrite"));
    let out = tmp.path().join("example.pub");
    tp(&v)
        .args(["vendor", "export", "-o"])
        .arg(&out)
        .assert()
        .success();
    let public = VendorPublic::from_export(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(public.name(), "Example Press");
    assert!(!public.is_demo());
    // The secret file opens with the password and matches the export.
    let secret = VendorSecret::open(
        &std::fs::read(v.join("vendor.secret")).unwrap(),
        PW.as_bytes(),
    )
    .unwrap();
    assert_eq!(secret.public(), &public);
    // Demo flag.
    let d = tmp.path().join("demo");
    tp(&d)
        .args(["vendor", "init", "--name", "Demo Press", "--demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(DEMO)"));
    tp(&d)
        .args(["inspect"])
        .arg(d.join("vendor.pub"))
        .assert()
        .success()
        .stdout(predicate::str::contains("demo: true"));
}

#[test]
fn bad_vendor_names_and_short_passwords_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    tp(&tmp.path().join("a"))
        .args(["vendor", "init", "--name", " padded"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("vendor name"));
    tp(&tmp.path().join("b"))
        .env("TALLY_VENDOR_PASSWORD", "short")
        .args(["vendor", "init", "--name", "Ok Press"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("at least 8 bytes"));
    assert!(!tmp.path().join("b/vendor.secret").exists());
}

#[test]
fn wrong_password_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Locked Press");
    tp(&v)
        .env("TALLY_VENDOR_PASSWORD", "not the password")
        .args(["vendor", "export", "-o", "-"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("wrong vendor password"));
    // --password-file wins over the environment; one trailing newline is not part of it.
    let pwf = tmp.path().join("pw");
    std::fs::write(&pwf, format!("{PW}\n")).unwrap();
    tp(&v)
        .env("TALLY_VENDOR_PASSWORD", "not the password")
        .arg("--password-file")
        .arg(&pwf)
        .args(["vendor", "export", "-o", "-"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("tally-vendor/1\n"));
    std::fs::write(&pwf, "wrong\n").unwrap();
    tp(&v)
        .arg("--password-file")
        .arg(&pwf)
        .args(["vendor", "export", "-o", "-"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong vendor password"));
    // No password at all and no terminal: a clear usage error, not a hang.
    tp(&v)
        .env_remove("TALLY_VENDOR_PASSWORD")
        .args(["vendor", "export", "-o", "-"])
        .stdin(std::process::Stdio::null())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("TALLY_VENDOR_PASSWORD"));
}

#[test]
fn weakened_kdf_parameters_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Weak Press");
    let path = v.join("vendor.secret");
    let mut b = std::fs::read(&path).unwrap();
    b[13..17].copy_from_slice(&1u32.to_be_bytes()); // t = 1
    std::fs::write(&path, &b).unwrap();
    tp(&v)
        .args(["vendor", "export", "-o", "-"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("outside the accepted range"));
    tp(&v)
        .arg("inspect")
        .arg(&path)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("t=1"));
}

#[test]
fn vendor_folder_is_required() {
    Command::new(env!("CARGO_BIN_EXE_tally-pack"))
        .env_remove("TALLY_VENDOR")
        .args(["customer", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--vendor DIR"));
    let tmp = tempfile::tempdir().unwrap();
    tp(&tmp.path().join("empty"))
        .args(["customer", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("vendor init"));
    Command::new(env!("CARGO_BIN_EXE_tally-pack"))
        .args(["frobnicate"])
        .assert()
        .code(2);
}

#[test]
fn customers_add_list_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Customer Press");
    tp(&v)
        .args(["customer", "list"])
        .assert()
        .success()
        .stdout("no customers\n");
    let k1 = random_key();
    let alice = card_file(tmp.path(), "alice.card", [1; 16], &k1);
    tp(&v)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            "alice",
            "--card",
        ])
        .arg(&alice)
        .assert()
        .success()
        .stdout(predicate::str::contains("customer `alice` added"));
    // Same name, another card.
    let bob = card_file(tmp.path(), "bob.card", [2; 16], &random_key());
    tp(&v)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            "alice",
            "--card",
        ])
        .arg(&bob)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    // Same card, another name.
    tp(&v)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            "mallory",
            "--card",
        ])
        .arg(&alice)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "serial is already registered to customer `alice`",
        ));
    // Same key, another serial.
    let clone = card_file(tmp.path(), "clone.card", [3; 16], &k1);
    tp(&v)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            "mallory",
            "--card",
        ])
        .arg(&clone)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "public key is already registered to customer `alice`",
        ));
    tp(&v)
        .args([
            "customer",
            "add",
            "--allow-emulated-card",
            "--name",
            "bob",
            "--card",
        ])
        .arg(&bob)
        .assert()
        .success();
    let out = tp(&v)
        .args(["customer", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(list[0]["serial"], hex::encode([1u8; 16]));
    assert_eq!(list[0]["public_key"], hex::encode(k1.as_bytes()));
    assert_eq!(list[0]["origin"], 1000);
    tp(&v)
        .args(["customer", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("alice").and(predicate::str::contains("bob")));
    // The card file says whose it is.
    tp(&v)
        .arg("inspect")
        .arg(&bob)
        .assert()
        .success()
        .stdout(predicate::str::contains("customer: bob"));
}

#[test]
fn malformed_card_files_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Strict Press");
    let good = CardIdentity {
        serial: Serial([9; 16]),
        public_key: random_key(),
        origin: 5,
    }
    .to_export(None);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "magic",
            good.replace("tally-card/1", "tally-card/2"),
            "not a Tally card file",
        ),
        (
            "serial",
            good.replace(&hex::encode([9u8; 16]), "abc"),
            "bad `serial`",
        ),
        (
            "key",
            {
                let mut s = good.clone();
                let i = s.find("public-key: ").unwrap() + 14;
                s.replace_range(i..i + 2, "00");
                s
            },
            "bad `public-key`",
        ),
        (
            "missing",
            good.lines().take(2).collect::<Vec<_>>().join("\n"),
            "missing `public-key`",
        ),
        ("unknown", format!("{good}colour: red\n"), "unknown field"),
        ("twice", format!("{good}origin: 6\n"), "given twice"),
        ("big", "x".repeat(10_000), "too large"),
        ("binary", "\u{0}\u{1}".to_string(), "not a Tally card file"),
    ];
    for (name, text, reason) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        tp(&v)
            .args(["customer", "add", "--name", name, "--card"])
            .arg(&p)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(reason));
    }
    tp(&v)
        .args(["customer", "add", "--name", "ghost", "--card"])
        .arg(tmp.path().join("does-not-exist"))
        .assert()
        .code(2);
    tp(&v)
        .args(["customer", "list", "--json"])
        .assert()
        .success()
        .stdout("[]\n");
}

/// Reads the registry as another program would and decrypts the package with core.
fn registry_content_key(v: &Path, doc: &str) -> ContentKey {
    let secret = VendorSecret::open(
        &std::fs::read(v.join("vendor.secret")).unwrap(),
        PW.as_bytes(),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(v.join("registry.sqlite")).unwrap();
    let wrapped: Vec<u8> = conn
        .query_row(
            "SELECT wrapped_key FROM packages WHERE document_id = ?1",
            [doc],
            |r| r.get(0),
        )
        .unwrap();
    let raw = secret
        .decrypt_at_rest(
            "registry/content-key/v1",
            &hex::decode(doc).unwrap(),
            &wrapped,
        )
        .unwrap();
    assert_ne!(&raw[..], &wrapped[..], "content key stored in the clear");
    ContentKey::from_slice(&raw).unwrap()
}

#[test]
fn pack_round_trips_through_core_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Pack Press");
    let (pkg, pdf) = pack(&v, tmp.path(), 2);
    let out = tp(&v)
        .args(["inspect", "--json"])
        .arg(&pkg)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["kind"], "package");
    assert_eq!(report["verifies"], true);
    assert_eq!(report["title"], "Test document");
    assert_eq!(report["pages"], 2);
    assert_eq!(report["vendor"], "Pack Press");
    assert_eq!(report["plaintext_size"], pdf.len());
    let doc = report["document_id"].as_str().unwrap().to_string();
    let key = registry_content_key(&v, &doc);
    let public = VendorPublic::from_export(&std::fs::read(v.join("vendor.pub")).unwrap()).unwrap();
    let bytes = std::fs::read(&pkg).unwrap();
    let (_, plain) = open_package_bytes(&bytes, &[public], &key).unwrap();
    assert_eq!(plain.as_bytes(), &pdf[..]);
    // The registry's sha256 is the file's.
    let conn = rusqlite::Connection::open(v.join("registry.sqlite")).unwrap();
    let sum: String = conn
        .query_row("SELECT sha256 FROM packages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum, hex::encode(tally_core::crypto::sha256(&bytes)));
    tp(&v)
        .args(["inspect", "--full"])
        .arg(&pkg)
        .assert()
        .success()
        .stdout(predicate::str::contains("body: decrypts"));
    // Two packs of one PDF: different documents, different keys (claim 30 is per document).
    let again = tmp.path().join("again.tly");
    tp(&v)
        .arg("pack")
        .arg(tmp.path().join("doc2.pdf"))
        .arg("-o")
        .arg(&again)
        .assert()
        .success()
        .stdout(predicate::str::contains("`doc2`"));
    assert_ne!(std::fs::read(&again).unwrap()[..64], bytes[..64]);
    // No overwrite.
    tp(&v)
        .arg("pack")
        .arg(tmp.path().join("doc2.pdf"))
        .arg("-o")
        .arg(&again)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refusing to overwrite"));
}

#[test]
fn tampered_packages_fail_inspection() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Tamper Press");
    let (pkg, _) = pack(&v, tmp.path(), 1);
    let bytes = std::fs::read(&pkg).unwrap();
    let hl = u32::from_be_bytes(bytes[9..13].try_into().unwrap()) as usize;
    let write = |name: &str, b: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    // A title byte: the header signature fails.
    let mut t = bytes.clone();
    t[81] ^= 1;
    tp(&v)
        .arg("inspect")
        .arg(write("title.tly", &t))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("signature does not verify"));
    // A body byte: the header verifies, the body does not match the digest it signs
    // (no key, no registry needed).
    let mut t = bytes.clone();
    t[hl + 10] ^= 1;
    let body = write("body.tly", &t);
    tp(&v).arg("inspect").arg(&body).assert().code(1).stdout(
        predicate::str::contains("verifies: NO")
            .and(predicate::str::contains("does not match the digest signed")),
    );
    tp(&v).arg("inspect").arg(&pkg).assert().success().stdout(
        predicate::str::contains("verifies: yes")
            .and(predicate::str::contains("whole file is checked")),
    );
    tp(&v)
        .args(["inspect", "--full"])
        .arg(&body)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("does not match the digest signed"));
    // Truncated and extended.
    for (name, b, how) in [
        ("short.tly", bytes[..bytes.len() - 1].to_vec(), "shorter"),
        ("long.tly", [&bytes[..], b"x"].concat(), "longer"),
    ] {
        tp(&v)
            .args(["inspect", "--full"])
            .arg(write(name, &b))
            .assert()
            .code(1)
            .stdout(predicate::str::contains(format!(
                "body is {how} than its header says"
            )));
    }
    tp(&v)
        .arg("inspect")
        .arg(write("hdr.tly", &bytes[..hl - 3]))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("truncated"));
    // Another vendor does not trust it; trusting the right public file does.
    let w = init_vendor(tmp.path(), "Other Press");
    tp(&w)
        .arg("inspect")
        .arg(&pkg)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("untrusted vendor"));
    // Another vendor's registry knows nothing of this document, and needs not: the
    // header signs the body's digest, so the vendor's public file checks the whole file.
    tp(&w)
        .arg("inspect")
        .arg("--trust")
        .arg(v.join("vendor.pub"))
        .arg(&pkg)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("vendor: Tamper Press")
                .and(predicate::str::contains("verifies: yes")),
        );
    tp(&w)
        .arg("inspect")
        .arg("--trust")
        .arg(v.join("vendor.pub"))
        .arg(&body)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("does not match the digest signed"));
    // Without any trusted vendor nothing can be said to verify.
    Command::new(env!("CARGO_BIN_EXE_tally-pack"))
        .env_remove("TALLY_VENDOR")
        .arg("inspect")
        .arg(&pkg)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("no trusted vendor"));
}

#[test]
fn non_pdf_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Picky Press");
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "text.pdf",
            b"hello, not a pdf\n",
            "does not start with %PDF-",
        ),
        ("empty.pdf", b"", "does not start with %PDF-"),
        (
            "broken.pdf",
            b"%PDF-1.4\nthis is not really a pdf\n",
            "not a readable PDF",
        ),
        (
            "png.pdf",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            "does not start with %PDF-",
        ),
    ];
    for (name, bytes, reason) in cases {
        let input = tmp.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        let out = tmp.path().join(format!("{name}.tly"));
        tp(&v)
            .arg("pack")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(reason));
        assert!(!out.exists());
    }
    tp(&v)
        .arg("pack")
        .arg(tmp.path().join("missing.pdf"))
        .arg("-o")
        .arg(tmp.path().join("missing.tly"))
        .assert()
        .code(2);
    // pdfium missing: a clear I/O error naming the variable.
    let input = tmp.path().join("ok.pdf");
    std::fs::write(&input, tiny_pdf(1)).unwrap();
    tp(&v)
        .env("TALLY_PDFIUM_DIR", tmp.path().join("no-pdfium"))
        .arg("pack")
        .arg(&input)
        .arg("-o")
        .arg(tmp.path().join("ok.tly"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("TALLY_PDFIUM_DIR"));
}

#[test]
fn inspect_knows_every_kind_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Inspect Press");
    tp(&v)
        .arg("inspect")
        .arg(v.join("vendor.pub"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("kind: vendor-public")
                .and(predicate::str::contains("name: Inspect Press")),
        );
    tp(&v)
        .arg("inspect")
        .arg(v.join("vendor.secret"))
        .assert()
        .success()
        .stdout(predicate::str::contains("argon2id m=65536 KiB t=3 p=1"));
    let edited = tmp.path().join("edited.pub");
    std::fs::write(
        &edited,
        std::fs::read_to_string(v.join("vendor.pub"))
            .unwrap()
            .replace("Inspect Press", "Inspect Prest"),
    )
    .unwrap();
    tp(&v)
        .arg("inspect")
        .arg(&edited)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("signature does not verify"));
    let card = card_file(tmp.path(), "c.card", [4; 16], &random_key());
    tp(&v)
        .args(["inspect", "--json"])
        .arg(&card)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"customer\": null"));
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"nothing to see").unwrap();
    tp(&v)
        .arg("inspect")
        .arg(&junk)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a Tally file"));
}

/// A PDF of about `pad` bytes: one page plus an unreferenced stream of zeros.
fn big_pdf(path: &Path, pad: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut at = 0usize;
    let mut offsets = Vec::new();
    let put = |f: &mut std::io::BufWriter<std::fs::File>, b: &[u8], at: &mut usize| {
        f.write_all(b).unwrap();
        *at += b.len();
    };
    put(&mut f, b"%PDF-1.4\n", &mut at);
    for o in [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ] {
        offsets.push(at);
        let i = offsets.len();
        put(
            &mut f,
            format!("{i} 0 obj\n{o}\nendobj\n").as_bytes(),
            &mut at,
        );
    }
    offsets.push(at);
    put(
        &mut f,
        format!("4 0 obj\n<< /Length {pad} >>\nstream\n").as_bytes(),
        &mut at,
    );
    let zeros = vec![0u8; 1 << 20];
    let mut left = pad;
    while left > 0 {
        let n = left.min(zeros.len());
        put(&mut f, &zeros[..n], &mut at);
        left -= n;
    }
    put(&mut f, b"\nendstream\nendobj\n", &mut at);
    let xref = at;
    put(&mut f, b"xref\n0 5\n0000000000 65535 f \n", &mut at);
    for o in offsets {
        put(&mut f, format!("{o:010} 00000 n \n").as_bytes(), &mut at);
    }
    put(
        &mut f,
        format!("trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
        &mut at,
    );
    f.flush().unwrap();
}

/// Peak resident memory (VmHWM, KiB) of a running process, if it is still there.
fn peak_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn packing_a_1_gb_pdf_keeps_memory_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let v = init_vendor(tmp.path(), "Big Press");
    let input = tmp.path().join("big.pdf");
    big_pdf(&input, 1 << 30);
    let size = std::fs::metadata(&input).unwrap().len();
    let out = tmp.path().join("big.tly");
    let mut child = tp(&v)
        .arg("pack")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success());
    // Peak RSS stays far below the input size (argon2 alone takes 64 MiB).
    assert!(
        peak > 0 && peak < 200 * 1024,
        "peak RSS {peak} KiB for a {size}-byte input"
    );
    let chunks = size.div_ceil(64 << 10);
    let mut prefix = [0u8; 13];
    std::io::Read::read_exact(&mut std::fs::File::open(&out).unwrap(), &mut prefix).unwrap();
    let header = u64::from(u32::from_be_bytes(prefix[9..13].try_into().unwrap()));
    eprintln!("peak RSS {peak} KiB packing {size} bytes");
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        header + size + 16 * chunks
    );
}
