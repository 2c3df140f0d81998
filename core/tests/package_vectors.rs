//! Packages against the test vectors in `tests/data/package/` (format 2, written by
//! today's `seal_package`) and `tests/data/package-v1/` (format 1, frozen as the first
//! packer wrote them: readers' existing libraries must keep opening) (T26, T28).
//!
//! Every vector runs through `open_package_bytes`, `open_package` (a reader),
//! `open_package_vec` (in place), the header-only `PackageHeader::read` and the keyless `PackageHeader::check_body`; the
//! packager's tests run them through `tally-pack inspect` too. Trust anchors are the
//! vendor public files in `tests/data/package-trust/`.
//!
//! Regenerate the format 2 vectors with
//! `TALLY_REGEN_VECTORS=1 cargo test -p tally-core --test package_vectors -- --ignored`.

// Generators and helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/vector.rs"]
mod vector;

use rand_core::OsRng;
use std::path::Path;
use tally_core::crypto::sha256;
use tally_core::package::{
    BodyCheck, ContentKey, PackOptions, PackageError, PackageHeader, open_package,
    open_package_bytes, open_package_vec, seal_package,
};
use tally_core::vendor::{VendorPublic, VendorSecret};

const KEYS: &[&str] = &["expect", "comment", "trust", "key", "plaintext-sha256"];

fn code(e: &PackageError) -> &'static str {
    match e {
        PackageError::BadMagic => "bad-magic",
        PackageError::UnsupportedVersion(_) => "unsupported-version",
        PackageError::TruncatedHeader => "truncated-header",
        PackageError::HeaderLength(_) => "header-length",
        PackageError::BadHeader { .. } => "bad-header",
        PackageError::MediaType(_) => "media-type",
        PackageError::UntrustedVendor(_) => "untrusted-vendor",
        PackageError::BadSignature => "bad-signature",
        PackageError::BodyLength { .. } => "body-length",
        PackageError::BodyDigest => "body-digest",
        PackageError::Decrypt => "decrypt",
        other => panic!("unexpected error {other:?}"),
    }
}

fn trust_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/package-trust")
}

fn trust(names: &str) -> Vec<VendorPublic> {
    names
        .split(',')
        .map(|n| {
            let bytes = std::fs::read(trust_dir().join(n)).unwrap();
            VendorPublic::from_export(&bytes).unwrap()
        })
        .collect()
}

/// Runs every vector of `area` through every core entry point; returns (positive, negative).
fn check(area: &str, version: u8) -> (usize, usize) {
    let vectors = vector::load(area, KEYS);
    let (mut ok, mut bad) = (0, 0);
    for v in &vectors {
        let expect = v.get("expect");
        let trust = trust(v.get("trust"));
        let key = ContentKey::from_slice(&hex::decode(v.get("key")).unwrap()).unwrap();
        let mut rest = &v.bytes[..];
        let header = PackageHeader::read(&mut rest, &trust);
        // What the header alone says: body and key problems are not its business.
        let header_expect = match expect {
            "ok" | "decrypt" | "body-length" | "body-digest" => "ok",
            other => other,
        };
        match &header {
            Ok((h, _)) => {
                assert_eq!(header_expect, "ok", "{}: header accepted", v.name());
                assert_eq!(h.version(), version, "{}: format version", v.name());
                // The keyless body check: what `inspect` does.
                let body = h.check_body(rest);
                let want = match (expect, version) {
                    ("body-length" | "body-digest", _) => expect,
                    // Format 1 has no digest: only a wrong length shows without the key.
                    (_, 1) if rest.len() as u64 != h.body_len() => "body-length",
                    _ => "ok",
                };
                match body {
                    Ok(b) => {
                        assert_eq!(want, "ok", "{}: body check passed", v.name());
                        let signed = if version == 1 {
                            BodyCheck::NotSigned
                        } else {
                            BodyCheck::Signed
                        };
                        assert_eq!(b, signed, "{}", v.name());
                    }
                    Err(e) => assert_eq!(code(&e), want, "{}: body check: {e}", v.name()),
                }
            }
            Err(e) => assert_eq!(code(e), header_expect, "{}: header: {e}", v.name()),
        }
        for (via, r) in [
            ("bytes", open_package_bytes(&v.bytes, &trust, &key)),
            ("reader", open_package(&v.bytes[..], &trust, &key)),
            ("vec", open_package_vec(v.bytes.clone(), &trust, &key)),
        ] {
            match r {
                Ok((h, p)) => {
                    assert_eq!(expect, "ok", "{} via {via}: accepted", v.name());
                    assert_eq!(hex::encode(sha256(p.as_bytes())), v.get("plaintext-sha256"));
                    assert_eq!(h.plaintext_size(), p.len() as u64);
                }
                Err(e) => assert_eq!(code(&e), expect, "{} via {via}: {e}", v.name()),
            }
        }
        if expect == "ok" {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    assert!(
        ok >= 3 && bad > 3 * ok,
        "{area}: {ok} positive, {bad} negative vectors"
    );
    (ok, bad)
}

#[test]
fn package_vectors() {
    let (_, bad) = check("package", 2);
    // The cases format 2 adds: digest checks that need no key.
    let names: Vec<String> = vector::load("package", KEYS)
        .iter()
        .filter(|v| matches!(v.get("expect"), "body-digest" | "body-length"))
        .map(|v| v.name())
        .collect();
    assert!(names.len() >= 10 && bad > names.len(), "{names:?}");
}

#[test]
fn format_1_vectors_still_open() {
    check("package-v1", 1);
}

/// Offsets of the header fields (see `core/src/package/header.rs`).
mod at {
    pub const VERSION: usize = 8;
    pub const LEN: usize = 9;
    pub const DOC: usize = 13;
    pub const VENDOR: usize = 29;
    pub const MEDIA: usize = 62;
    pub const TITLE: usize = 79;
}

#[test]
#[ignore = "writes tests/data/package; run with TALLY_REGEN_VECTORS=1"]
fn regenerate_package_vectors() {
    if std::env::var_os("TALLY_REGEN_VECTORS").is_none() {
        return;
    }
    // Vendors A and B (trust files `a`, `b`) signed the frozen format 1 vectors; their
    // secret keys were not kept, so format 2 has its own pair, `c` and `d`.
    let a = VendorSecret::generate("Vendor C", false, &mut OsRng).unwrap();
    let b = VendorSecret::generate("Vendor D", false, &mut OsRng).unwrap();
    std::fs::create_dir_all(trust_dir()).unwrap();
    std::fs::write(trust_dir().join("c"), a.public().to_export(&a)).unwrap();
    std::fs::write(trust_dir().join("d"), b.public().to_export(&b)).unwrap();
    let _ =
        std::fs::remove_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/package"));
    let data: Vec<u8> = (0..2600u32).map(|i| (i * 31 % 253) as u8).collect();
    let pack = |v: &VendorSecret, d: &[u8]| {
        let mut out = Vec::new();
        let opts = PackOptions {
            title: "Vector document".into(),
            page_count: 2,
            chunk_size: 1024,
        };
        let (h, k) = seal_package(
            v,
            &opts,
            d.len() as u64,
            d,
            std::io::Cursor::new(&mut out),
            &mut OsRng,
            &mut |_| {},
        )
        .unwrap();
        (out, h, k)
    };
    let (pkg, h, key) = pack(&a, &data);
    assert_eq!(h.version(), 2);
    let hl = h.as_bytes().len();
    let chunk = |i: usize| {
        let s = hl + i * 1040;
        &pkg[s..(s + 1040).min(pkg.len())]
    };
    let khex = hex::encode(key.as_bytes());
    let sum = hex::encode(sha256(&data));
    let write = |name: &str, expect: &str, comment: &str, trust: &str, key: &str, bytes: &[u8]| {
        let mut f = vec![
            ("expect", expect),
            ("comment", comment),
            ("trust", trust),
            ("key", key),
        ];
        if expect == "ok" {
            f.push(("plaintext-sha256", &sum));
        }
        vector::write("package", name, &f, bytes);
    };
    let neg = |name: &str, expect: &str, comment: &str, bytes: &[u8]| {
        write(name, expect, comment, "c", &khex, bytes)
    };
    write(
        "ok",
        "ok",
        "3 chunks of 1 KiB (the last one short)",
        "c",
        &khex,
        &pkg,
    );
    write(
        "ok-two-vendors-trusted",
        "ok",
        "trust list of two",
        "d,c",
        &khex,
        &pkg,
    );
    for (name, n) in [("ok-empty", 0usize), ("ok-exact-chunks", 2048)] {
        let (p, _, k) = pack(&a, &data[..n]);
        let s = hex::encode(sha256(&data[..n]));
        vector::write(
            "package",
            name,
            &[
                ("expect", "ok"),
                ("comment", &format!("{n} bytes")),
                ("trust", "c"),
                ("key", &hex::encode(k.as_bytes())),
                ("plaintext-sha256", &s),
            ],
            &p,
        );
    }
    let other_key = hex::encode(ContentKey::generate(&mut OsRng).as_bytes());
    write(
        "wrong-key",
        "decrypt",
        "another content key (the body itself is intact)",
        "c",
        &other_key,
        &pkg,
    );
    write(
        "untrusted-vendor",
        "untrusted-vendor",
        "only vendor D trusted",
        "d",
        &khex,
        &pkg,
    );
    neg(
        "truncated-last-chunk",
        "body-length",
        "final chunk removed (cut at a chunk boundary)",
        &pkg[..hl + 2080],
    );
    neg(
        "truncated-mid-chunk",
        "body-length",
        "cut inside the second chunk",
        &pkg[..hl + 1500],
    );
    neg(
        "truncated-tag",
        "body-length",
        "last byte of the last tag removed",
        &pkg[..pkg.len() - 1],
    );
    neg(
        "truncated-body-empty",
        "body-length",
        "header only",
        &pkg[..hl],
    );
    neg(
        "truncated-header",
        "truncated-header",
        "cut inside the header",
        &pkg[..hl - 10],
    );
    neg(
        "truncated-in-digest",
        "truncated-header",
        "cut inside the body digest",
        &pkg[..hl - 64 - 10],
    );
    neg(
        "truncated-prefix",
        "truncated-header",
        "magic and version only",
        &pkg[..9],
    );
    let mut t = pkg.clone();
    t.extend_from_slice(b"garbage");
    neg("trailing-garbage", "body-length", "7 bytes appended", &t);
    let mut t = pkg.clone();
    t.extend_from_slice(chunk(2));
    neg(
        "last-chunk-repeated",
        "body-length",
        "final chunk appended again",
        &t,
    );
    let swap = [&pkg[..hl], chunk(1), chunk(0), chunk(2)].concat();
    neg(
        "chunks-swapped",
        "body-digest",
        "chunks 0 and 1 swapped",
        &swap,
    );
    let dup = [&pkg[..hl], chunk(0), chunk(0), chunk(2)].concat();
    neg(
        "chunk-duplicated",
        "body-digest",
        "chunk 0 in place of chunk 1",
        &dup,
    );
    let drop_mid = [&pkg[..hl], chunk(0), chunk(2)].concat();
    neg("chunk-dropped", "body-length", "chunk 1 removed", &drop_mid);
    let (pkg2, h2, _) = pack(&a, &data);
    let other_chunk = &pkg2[h2.as_bytes().len() + 1040..h2.as_bytes().len() + 2080];
    let splice = [&pkg[..hl], chunk(0), other_chunk, chunk(2)].concat();
    neg(
        "chunk-from-other-package",
        "body-digest",
        "chunk 1 from another package of the same document",
        &splice,
    );
    let splice = [h2.as_bytes(), &pkg[hl..]].concat();
    neg(
        "header-from-other-package",
        "body-digest",
        "another package's valid header on this body",
        &splice,
    );

    // Headers re-signed: edit the bytes before the signature (the body digest is the
    // last 32 of them), then sign with the chosen key.
    let resign_body = |signer: &VendorSecret, edit: &dyn Fn(&mut Vec<u8>), body: &[u8]| {
        let mut u = h.as_bytes()[..hl - 64].to_vec();
        edit(&mut u);
        let mut m = b"tally/package-header/v2\0".to_vec();
        m.extend_from_slice(&u);
        u.extend_from_slice(&signer.sign(&m).0);
        [&u[..], body].concat()
    };
    let resign =
        |signer: &VendorSecret, edit: &dyn Fn(&mut Vec<u8>)| resign_body(signer, edit, &pkg[hl..]);
    let b_fp = b.public().fingerprint();
    let by_b = resign(&b, &|u| {
        u[at::VENDOR..at::VENDOR + 32].copy_from_slice(&b_fp)
    });
    neg(
        "resigned-by-other-vendor",
        "untrusted-vendor",
        "header re-signed by vendor D, only C trusted",
        &by_b,
    );
    write(
        "resigned-by-other-vendor-both-trusted",
        "decrypt",
        "header re-signed by D, both trusted: the body digest still matches, but the chunks are bound to the header's vendor field, so every chunk fails",
        "c,d",
        &khex,
        &by_b,
    );
    let fp_only = resign(&a, &|u| {
        u[at::VENDOR..at::VENDOR + 32].copy_from_slice(&b_fp)
    });
    write(
        "vendor-field-names-other",
        "bad-signature",
        "vendor field says D, signature by C",
        "c,d",
        &khex,
        &{
            let mut p = pkg.clone();
            p[at::VENDOR..at::VENDOR + 32].copy_from_slice(&b_fp);
            p
        },
    );
    write(
        "resigned-names-other",
        "bad-signature",
        "signed by C but names D",
        "c,d",
        &khex,
        &fp_only,
    );
    let digest_at = hl - 64 - 32;
    let size_at = digest_at - 7 - 4 - 8;
    let shrunk = resign(&a, &|u| {
        u[size_at..size_at + 8].copy_from_slice(&2048u64.to_be_bytes())
    });
    neg(
        "size-shrunk-resigned",
        "body-length",
        "plaintext size lowered to 2048 by the vendor key: body is longer than declared",
        &shrunk,
    );
    let xml = resign(&a, &|u| {
        u[at::MEDIA + 12..at::MEDIA + 15].copy_from_slice(b"xml")
    });
    neg(
        "media-type-resigned",
        "media-type",
        "a validly signed header for application/xml (pinned, T28)",
        &xml,
    );
    let zero_pages = resign(&a, &|u| {
        u[size_at - 4..size_at].copy_from_slice(&0u32.to_be_bytes())
    });
    neg(
        "zero-pages-resigned",
        "bad-header",
        "page count 0",
        &zero_pages,
    );
    let chunk_odd = resign(&a, &|u| {
        u[size_at + 8..size_at + 12].copy_from_slice(&1000u32.to_be_bytes())
    });
    neg(
        "chunk-size-not-power-of-two",
        "bad-header",
        "chunk size 1000",
        &chunk_odd,
    );
    let chunk_big = resign(&a, &|u| {
        u[size_at + 8..size_at + 12].copy_from_slice(&(4u32 << 20).to_be_bytes())
    });
    neg(
        "chunk-size-too-large",
        "bad-header",
        "chunk size 4 MiB",
        &chunk_big,
    );
    let huge = resign(&a, &|u| {
        u[size_at..size_at + 8].copy_from_slice(&u64::MAX.to_be_bytes())
    });
    neg(
        "size-huge-resigned",
        "bad-header",
        "plaintext size 2^64-1",
        &huge,
    );
    // The body digest field.
    let zero_digest = resign(&a, &|u| u[digest_at..digest_at + 32].fill(0));
    neg(
        "digest-zeroed-resigned",
        "body-digest",
        "body digest field set to zeros and re-signed by the vendor",
        &zero_digest,
    );
    // A body byte flipped and the header re-signed over the new body's digest: only the
    // key can tell (the chunk's tag fails).
    let mut flipped_body = pkg[hl..].to_vec();
    flipped_body[1500] ^= 1;
    let mut hasher = tally_core::package::BodyDigest::new();
    flipped_body.chunks(1040).for_each(|c| hasher.chunk(c));
    let new_digest = hasher.finish();
    let body_resigned = resign_body(
        &a,
        &|u| u[digest_at..digest_at + 32].copy_from_slice(&new_digest),
        &flipped_body,
    );
    neg(
        "body-flipped-digest-resigned",
        "decrypt",
        "a byte of chunk 1 flipped and the header re-signed over the changed body's digest",
        &body_resigned,
    );

    let flip = |i: usize| {
        let mut p = pkg.clone();
        p[i] ^= 0x01;
        p
    };
    neg("flip-magic", "bad-magic", "magic byte 0 flipped", &flip(0));
    neg(
        "flip-version",
        "unsupported-version",
        "version byte 2 flipped to 3",
        &flip(at::VERSION),
    );
    neg(
        "version-1-claimed",
        "bad-header",
        "version byte set to 1: the fields no longer line up with the declared length",
        &{
            let mut p = pkg.clone();
            p[at::VERSION] = 1;
            p
        },
    );
    neg(
        "flip-header-length-high",
        "header-length",
        "declared header length raised past the cap",
        &{
            let mut p = pkg.clone();
            p[at::LEN + 2] ^= 0x10;
            p
        },
    );
    neg(
        "flip-header-length-low",
        "bad-header",
        "declared header length off by one",
        &flip(at::LEN + 3),
    );
    neg(
        "flip-document-id",
        "bad-signature",
        "document id bit flipped",
        &flip(at::DOC),
    );
    neg(
        "flip-vendor",
        "untrusted-vendor",
        "vendor fingerprint bit flipped",
        &flip(at::VENDOR + 5),
    );
    neg(
        "flip-media-length",
        "media-type",
        "media type length changed",
        &flip(at::MEDIA - 1),
    );
    neg(
        "flip-media-type",
        "media-type",
        "media type letter changed",
        &flip(at::MEDIA + 1),
    );
    neg(
        "flip-title",
        "bad-signature",
        "title letter changed",
        &flip(at::TITLE + 2),
    );
    neg(
        "flip-page-count",
        "bad-signature",
        "page count changed",
        &flip(size_at - 1),
    );
    neg(
        "flip-size",
        "bad-signature",
        "plaintext size changed",
        &flip(size_at + 7),
    );
    neg(
        "flip-chunk-size",
        "bad-header",
        "chunk size changed",
        &flip(size_at + 10),
    );
    neg(
        "flip-nonce-prefix",
        "bad-signature",
        "nonce prefix changed",
        &flip(size_at + 12),
    );
    neg(
        "flip-body-digest",
        "bad-signature",
        "a bit of the body digest field flipped (not re-signed)",
        &flip(digest_at + 3),
    );
    neg(
        "flip-signature-r",
        "bad-signature",
        "signature r changed",
        &flip(hl - 64),
    );
    neg(
        "flip-signature-s",
        "bad-signature",
        "signature s changed",
        &flip(hl - 1),
    );
    neg(
        "flip-first-ciphertext",
        "body-digest",
        "first body byte flipped",
        &flip(hl),
    );
    neg(
        "flip-first-tag",
        "body-digest",
        "last byte of chunk 0's tag flipped",
        &flip(hl + 1039),
    );
    neg(
        "flip-middle-chunk",
        "body-digest",
        "a byte of chunk 1 flipped",
        &flip(hl + 1500),
    );
    neg(
        "flip-last-byte",
        "body-digest",
        "the file's last byte flipped",
        &flip(pkg.len() - 1),
    );
    neg(
        "not-a-package",
        "bad-magic",
        "a PDF",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    );
    neg("empty-file", "truncated-header", "zero bytes", b"");
}
