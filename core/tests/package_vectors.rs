//! Packages against the test vectors in `tests/data/package/` (T26, T28).
//!
//! Every vector runs through `open_package_bytes`, `open_package` (a reader) and the
//! header-only `PackageHeader::read`. Trust anchors are the vendor public files in
//! `tests/data/package-trust/`.
//!
//! Regenerate with `TALLY_REGEN_VECTORS=1 cargo test -p tally-core --test package_vectors -- --ignored`.

// Generators and helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/vector.rs"]
mod vector;

use rand_core::OsRng;
use std::path::Path;
use tally_core::crypto::sha256;
use tally_core::package::{
    ContentKey, PackOptions, PackageError, PackageHeader, open_package, open_package_bytes,
    seal_package,
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

#[test]
fn package_vectors() {
    let vectors = vector::load("package", KEYS);
    let (mut ok, mut bad) = (0, 0);
    for v in &vectors {
        let expect = v.get("expect");
        let trust = trust(v.get("trust"));
        let key = ContentKey::from_slice(&hex::decode(v.get("key")).unwrap()).unwrap();
        let header = PackageHeader::read(&mut &v.bytes[..], &trust);
        let header_expect = if expect == "ok" || expect == "decrypt" {
            "ok"
        } else {
            expect
        };
        match &header {
            Ok(_) => assert_eq!(header_expect, "ok", "{}: header accepted", v.name()),
            Err(e) => assert_eq!(code(e), header_expect, "{}: header: {e}", v.name()),
        }
        for r in [
            open_package_bytes(&v.bytes, &trust, &key),
            open_package(&v.bytes[..], &trust, &key),
        ] {
            match r {
                Ok((h, p)) => {
                    assert_eq!(expect, "ok", "{}: accepted", v.name());
                    assert_eq!(hex::encode(sha256(p.as_bytes())), v.get("plaintext-sha256"));
                    assert_eq!(h.plaintext_size(), p.len() as u64);
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
    assert!(
        ok >= 3 && bad > 3 * ok,
        "{ok} positive, {bad} negative vectors"
    );
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
    let a = VendorSecret::generate("Vendor A", false, &mut OsRng).unwrap();
    let b = VendorSecret::generate("Vendor B", false, &mut OsRng).unwrap();
    std::fs::create_dir_all(trust_dir()).unwrap();
    std::fs::write(trust_dir().join("a"), a.public().to_export(&a)).unwrap();
    std::fs::write(trust_dir().join("b"), b.public().to_export(&b)).unwrap();
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
            &mut out,
            &mut OsRng,
            &mut |_| {},
        )
        .unwrap();
        (out, h, k)
    };
    let (pkg, h, key) = pack(&a, &data);
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
        write(name, expect, comment, "a", &khex, bytes)
    };
    write(
        "ok",
        "ok",
        "3 chunks of 1 KiB (the last one short)",
        "a",
        &khex,
        &pkg,
    );
    write(
        "ok-two-vendors-trusted",
        "ok",
        "trust list of two",
        "b,a",
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
                ("trust", "a"),
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
        "another content key",
        "a",
        &other_key,
        &pkg,
    );
    write(
        "untrusted-vendor",
        "untrusted-vendor",
        "only vendor B trusted",
        "b",
        &khex,
        &pkg,
    );
    neg(
        "truncated-last-chunk",
        "decrypt",
        "final chunk removed (cut at a chunk boundary)",
        &pkg[..hl + 2080],
    );
    neg(
        "truncated-mid-chunk",
        "decrypt",
        "cut inside the second chunk",
        &pkg[..hl + 1500],
    );
    neg(
        "truncated-tag",
        "decrypt",
        "last byte of the last tag removed",
        &pkg[..pkg.len() - 1],
    );
    neg("truncated-body-empty", "decrypt", "header only", &pkg[..hl]);
    neg(
        "truncated-header",
        "truncated-header",
        "cut inside the header",
        &pkg[..hl - 10],
    );
    neg(
        "truncated-prefix",
        "truncated-header",
        "magic and version only",
        &pkg[..9],
    );
    let mut t = pkg.clone();
    t.extend_from_slice(b"garbage");
    neg("trailing-garbage", "decrypt", "7 bytes appended", &t);
    let mut t = pkg.clone();
    t.extend_from_slice(chunk(2));
    neg(
        "last-chunk-repeated",
        "decrypt",
        "final chunk appended again",
        &t,
    );
    let swap = [&pkg[..hl], chunk(1), chunk(0), chunk(2)].concat();
    neg("chunks-swapped", "decrypt", "chunks 0 and 1 swapped", &swap);
    let dup = [&pkg[..hl], chunk(0), chunk(0), chunk(2)].concat();
    neg(
        "chunk-duplicated",
        "decrypt",
        "chunk 0 in place of chunk 1",
        &dup,
    );
    let drop_mid = [&pkg[..hl], chunk(0), chunk(2)].concat();
    neg("chunk-dropped", "decrypt", "chunk 1 removed", &drop_mid);
    let (pkg2, h2, _) = pack(&a, &data);
    let other_chunk = &pkg2[h2.as_bytes().len() + 1040..h2.as_bytes().len() + 2080];
    let splice = [&pkg[..hl], chunk(0), other_chunk, chunk(2)].concat();
    neg(
        "chunk-from-other-package",
        "decrypt",
        "chunk 1 from another package of the same document",
        &splice,
    );
    let splice = [h2.as_bytes(), &pkg[hl..]].concat();
    neg(
        "header-from-other-package",
        "decrypt",
        "another package's valid header on this body",
        &splice,
    );

    // Headers re-signed: build the unsigned part, then sign with the chosen key.
    let resign = |signer: &VendorSecret, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut u = h.as_bytes()[..hl - 64].to_vec();
        edit(&mut u);
        let mut m = b"tally/package-header/v1\0".to_vec();
        m.extend_from_slice(&u);
        u.extend_from_slice(&signer.sign(&m).0);
        [&u[..], &pkg[hl..]].concat()
    };
    let b_fp = b.public().fingerprint();
    let by_b = resign(&b, &|u| {
        u[at::VENDOR..at::VENDOR + 32].copy_from_slice(&b_fp)
    });
    neg(
        "resigned-by-other-vendor",
        "untrusted-vendor",
        "header re-signed by vendor B, only A trusted",
        &by_b,
    );
    write(
        "resigned-by-other-vendor-both-trusted",
        "decrypt",
        "header re-signed by B, both trusted: the header hash changes, so every chunk fails",
        "a,b",
        &khex,
        &by_b,
    );
    let fp_only = resign(&a, &|u| {
        u[at::VENDOR..at::VENDOR + 32].copy_from_slice(&b_fp)
    });
    write(
        "vendor-field-names-other",
        "bad-signature",
        "vendor field says B, signature by A",
        "a,b",
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
        "signed by A but names B",
        "a,b",
        &khex,
        &fp_only,
    );
    let size_at = hl - 64 - 7 - 4 - 8;
    let shrunk = resign(&a, &|u| {
        u[size_at..size_at + 8].copy_from_slice(&2048u64.to_be_bytes())
    });
    neg(
        "size-shrunk-resigned",
        "decrypt",
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

    let flip = |i: usize| {
        let mut p = pkg.clone();
        p[i] ^= 0x01;
        p
    };
    neg("flip-magic", "bad-magic", "magic byte 0 flipped", &flip(0));
    neg(
        "flip-version",
        "unsupported-version",
        "version byte flipped",
        &flip(at::VERSION),
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
        "decrypt",
        "first body byte flipped",
        &flip(hl),
    );
    neg(
        "flip-first-tag",
        "decrypt",
        "last byte of chunk 0's tag flipped",
        &flip(hl + 1039),
    );
    neg(
        "flip-middle-chunk",
        "decrypt",
        "a byte of chunk 1 flipped",
        &flip(hl + 1500),
    );
    neg(
        "flip-last-byte",
        "decrypt",
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
