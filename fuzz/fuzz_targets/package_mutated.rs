//! Fail closed (T21, T26): a valid package (format 2), edited by the fuzzer, opened with the
//! right content key and its vendor trusted, through every entry point. Changed bytes never
//! decrypt: it may open only if the edits left every byte as it was, and then to the
//! original plaintext. The keyless check `inspect` relies on (header signature, then the
//! body digest it signs) passes only for the unedited file too.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::crypto::sha256;
use tally_core::package::{
    BodyCheck, ContentKey, PackageHeader, open_package, open_package_bytes, open_package_vec,
};
use tally_core::vendor::VendorPublic;

struct Base {
    package: Vec<u8>,
    trust: Vec<VendorPublic>,
    key: ContentKey,
    plain_sha256: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let package = common::vector_bytes("package/ok");
        let vendor = std::fs::read(common::data("package-trust/c")).expect("vendor c");
        let trust = vec![VendorPublic::from_export(&vendor).expect("vendor c parses")];
        let key = ContentKey::from_slice(&common::hex(&common::vector_field("package/ok", "key")))
            .expect("32-byte key");
        let plain_sha256 = common::hex(&common::vector_field("package/ok", "plaintext-sha256"));
        let b = Base {
            package,
            trust,
            key,
            plain_sha256,
        };
        let (_, plain) = open_package_bytes(&b.package, &b.trust, &b.key).expect("base opens");
        assert_eq!(sha256(plain.as_bytes()).to_vec(), b.plain_sha256);
        b
    })
}

fuzz_target!(|ops: &[u8]| {
    let b = base();
    let edited = common::mutate(&b.package, ops);
    let from_bytes = open_package_bytes(&edited, &b.trust, &b.key);
    let from_reader = open_package(&edited[..], &b.trust, &b.key);
    let in_place = open_package_vec(edited.clone(), &b.trust, &b.key);
    assert_eq!(
        from_bytes.is_ok(),
        from_reader.is_ok(),
        "bytes and reader disagree"
    );
    assert_eq!(
        from_bytes.is_ok(),
        in_place.is_ok(),
        "bytes and vec disagree"
    );
    let mut rest = &edited[..];
    if let Ok((h, _)) = PackageHeader::read(&mut rest, &b.trust) {
        if h.check_body(rest).ok() == Some(BodyCheck::Signed) {
            assert!(
                edited == b.package,
                "an edited package verified without the key"
            );
        }
    }
    if let Ok((_, plain)) = from_bytes {
        assert!(edited == b.package, "an edited package decrypted");
        assert_eq!(sha256(plain.as_bytes()).to_vec(), b.plain_sha256);
    }
});
