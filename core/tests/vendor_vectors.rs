//! Vendor key files against the test vectors in `tests/data/vendor/` (T27, T28).
//!
//! Regenerate with `TALLY_REGEN_VECTORS=1 cargo test -p tally-core --test vendor_vectors -- --ignored`.

// Generators and helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/vector.rs"]
mod vector;

use rand_core::OsRng;
use tally_core::vendor::{KdfParams, VendorError, VendorPublic, VendorSecret};

const KEYS: &[&str] = &["kind", "expect", "comment", "password", "fingerprint"];

fn code(e: &VendorError) -> &'static str {
    match e {
        VendorError::WrongPassword => "wrong-password",
        VendorError::TooLarge(_) => "too-large",
        VendorError::BadMagic => "bad-magic",
        VendorError::UnsupportedVersion(_) => "unsupported-version",
        VendorError::BadLength => "bad-length",
        VendorError::WeakKdf(_) => "weak-kdf",
        VendorError::BadContent(_) => "bad-content",
        VendorError::NotText => "not-text",
        VendorError::BadLine { .. } => "bad-line",
        VendorError::BadValue { .. } => "bad-value",
        VendorError::BadSignature => "bad-signature",
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn vendor_vectors() {
    let vectors = vector::load("vendor", KEYS);
    let (mut ok, mut bad) = (0, 0);
    for v in &vectors {
        let expect = v.get("expect");
        let results: Vec<Result<String, VendorError>> = match v.get("kind") {
            "secret" => {
                let pw = v.get("password").as_bytes();
                vec![
                    VendorSecret::open(&v.bytes, pw).map(|s| s.public().fingerprint_hex()),
                    VendorSecret::read_from(&v.bytes[..], pw).map(|s| s.public().fingerprint_hex()),
                ]
            }
            "public" => vec![
                VendorPublic::from_export(&v.bytes).map(|p| p.fingerprint_hex()),
                VendorPublic::read_from(&v.bytes[..]).map(|p| p.fingerprint_hex()),
            ],
            k => panic!("{}: unknown kind {k}", v.name()),
        };
        for r in results {
            match r {
                Ok(fp) => {
                    assert_eq!(expect, "ok", "{}: accepted", v.name());
                    assert_eq!(fp, v.get("fingerprint"), "{}", v.name());
                }
                Err(e) => assert_eq!(code(&e), expect, "{}: {e}", v.name()),
            }
        }
        if expect == "ok" {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    assert!(ok >= 2 && bad > ok, "{ok} positive, {bad} negative vectors");
}

#[test]
#[ignore = "writes tests/data/vendor; run with TALLY_REGEN_VECTORS=1"]
fn regenerate_vendor_vectors() {
    if std::env::var_os("TALLY_REGEN_VECTORS").is_none() {
        return;
    }
    let pw = "vector password";
    let v = VendorSecret::generate("Vector Press", false, &mut OsRng).unwrap();
    let fp = v.public().fingerprint_hex();
    let file = v.seal(pw.as_bytes(), KdfParams::FLOOR, &mut OsRng).unwrap();
    let secret = |name: &str, expect: &str, comment: &str, pw: &str, bytes: &[u8]| {
        let mut f = vec![("kind", "secret"), ("expect", expect), ("comment", comment)];
        f.push(("password", pw));
        if expect == "ok" {
            f.push(("fingerprint", &fp));
        }
        vector::write("vendor", name, &f, bytes);
    };
    secret(
        "secret-ok",
        "ok",
        "a valid secret file at the floor parameters",
        pw,
        &file,
    );
    secret(
        "secret-wrong-password",
        "wrong-password",
        "valid file, wrong password",
        "vector passworD",
        &file,
    );
    let patch = |at: usize, val: u32| {
        let mut f = file.clone();
        f[at..at + 4].copy_from_slice(&val.to_be_bytes());
        f
    };
    secret(
        "secret-weak-memory",
        "weak-kdf",
        "m lowered to 64 MiB - 1 KiB",
        pw,
        &patch(9, 65535),
    );
    secret(
        "secret-weak-passes",
        "weak-kdf",
        "t lowered to 2",
        pw,
        &patch(13, 2),
    );
    secret("secret-zero-lanes", "weak-kdf", "p = 0", pw, &patch(17, 0));
    secret(
        "secret-huge-memory",
        "weak-kdf",
        "m raised to 4 TiB: a hostile file must not make us allocate it",
        pw,
        &patch(9, u32::MAX),
    );
    let mut f = file.clone();
    f[0] = b'X';
    secret(
        "secret-bad-magic",
        "bad-magic",
        "first magic byte changed",
        pw,
        &f,
    );
    let mut f = file.clone();
    f[8] = 2;
    secret(
        "secret-version-2",
        "unsupported-version",
        "version byte 2",
        pw,
        &f,
    );
    secret(
        "secret-truncated-header",
        "bad-length",
        "cut inside the header",
        pw,
        &file[..30],
    );
    secret(
        "secret-truncated-tag",
        "wrong-password",
        "last byte of the tag removed",
        pw,
        &file[..file.len() - 1],
    );
    let mut f = file.clone();
    f.push(0);
    secret(
        "secret-trailing-byte",
        "wrong-password",
        "one byte appended",
        pw,
        &f,
    );
    let mut f = file.clone();
    f[25] ^= 1;
    secret(
        "secret-flipped-salt",
        "wrong-password",
        "a salt bit flipped",
        pw,
        &f,
    );
    let mut f = file.clone();
    f[60] ^= 1;
    secret(
        "secret-flipped-ciphertext",
        "wrong-password",
        "a ciphertext bit flipped",
        pw,
        &f,
    );
    let mut f = file.clone();
    f.resize(2000, 0);
    secret("secret-too-large", "too-large", "2000 bytes", pw, &f);

    let text = v.public().to_export(&v);
    let public = |name: &str, expect: &str, comment: &str, bytes: &[u8]| {
        let mut f = vec![("kind", "public"), ("expect", expect), ("comment", comment)];
        if expect == "ok" {
            f.push(("fingerprint", &fp));
        }
        vector::write("vendor", name, &f, bytes);
    };
    public("public-ok", "ok", "a valid public file", text.as_bytes());
    let demo = VendorSecret::generate("Demo Press", true, &mut OsRng).unwrap();
    let demo_text = demo.public().to_export(&demo);
    vector::write(
        "vendor",
        "public-ok-demo",
        &[
            ("kind", "public"),
            ("expect", "ok"),
            ("comment", "a valid demo vendor"),
            ("fingerprint", &demo.public().fingerprint_hex()),
        ],
        demo_text.as_bytes(),
    );
    public(
        "public-renamed",
        "bad-signature",
        "name edited",
        text.replace("Vector Press", "Vector Prest").as_bytes(),
    );
    public(
        "public-demo-flipped",
        "bad-signature",
        "demo flag edited",
        text.replace("demo: no", "demo: yes").as_bytes(),
    );
    let line = |t: &str, k: &str| t.lines().find(|l| l.starts_with(k)).unwrap().to_string();
    public(
        "public-resigned-by-other",
        "bad-signature",
        "signature line of another vendor",
        text.replace(&line(&text, "signature"), &line(&demo_text, "signature"))
            .as_bytes(),
    );
    public(
        "public-tracing-key-swapped",
        "bad-signature",
        "tracing key of another vendor",
        text.replace(
            &line(&text, "tracing-key"),
            &line(&demo_text, "tracing-key"),
        )
        .as_bytes(),
    );
    public(
        "public-layout-key-swapped",
        "bad-signature",
        "layout key of another vendor",
        text.replace(&line(&text, "layout-key"), &line(&demo_text, "layout-key"))
            .as_bytes(),
    );
    public(
        "public-unknown-field",
        "bad-line",
        "an extra line",
        format!("{text}x: 1\n").as_bytes(),
    );
    public(
        "public-truncated",
        "bad-line",
        "signature line missing",
        &text.as_bytes()[..text.find("signature").unwrap()],
    );
    public(
        "public-no-final-newline",
        "bad-line",
        "final newline removed",
        text.trim_end().as_bytes(),
    );
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    public(
        "public-reordered",
        "bad-line",
        "name and demo swapped",
        format!("{}\n", lines.join("\n")).as_bytes(),
    );
    public(
        "public-uppercase-hex",
        "bad-value",
        "layout key in upper case (not canonical)",
        text.replace(
            &line(&text, "layout-key"),
            &line(&text, "layout-key")
                .to_uppercase()
                .replace("LAYOUT-KEY", "layout-key"),
        )
        .as_bytes(),
    );
    public(
        "public-bad-magic",
        "bad-magic",
        "card file magic",
        text.replace("tally-vendor/1", "tally-card/1").as_bytes(),
    );
    public(
        "public-crlf",
        "bad-magic",
        "CRLF line ends",
        text.replace('\n', "\r\n").as_bytes(),
    );
    public(
        "public-not-text",
        "not-text",
        "invalid UTF-8",
        &[0xff, 0xfe, 0x00],
    );
    public(
        "public-too-large",
        "too-large",
        "3000 bytes",
        &vec![b'a'; 3000],
    );
    let same = text.replace(
        &line(&text, "tracing-key"),
        &line(&text, "signing-key").replace("signing-key", "tracing-key"),
    );
    public(
        "public-same-keys",
        "bad-value",
        "tracing key equal to the signing key",
        same.as_bytes(),
    );
}
