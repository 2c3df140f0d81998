//! Fail closed (T21, T24): a valid keyfile, edited by the fuzzer, opened with its vendor
//! trusted. It may open only if the edits left every byte as it was.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::keyfile::Keyfile;
use tally_core::vendor::VendorPublic;

struct Base {
    keyfile: Vec<u8>,
    trust: Vec<VendorPublic>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let keyfile = common::vector_bytes("keyfile/ok-basic");
        let vendor = std::fs::read(common::data("keyfile-trust/vendor.pub")).expect("vendor.pub");
        let trust = vec![VendorPublic::from_export(&vendor).expect("vendor.pub parses")];
        assert!(
            Keyfile::open(&keyfile, &trust).is_ok(),
            "the base keyfile must open"
        );
        Base { keyfile, trust }
    })
}

fuzz_target!(|ops: &[u8]| {
    let b = base();
    let edited = common::mutate(&b.keyfile, ops);
    let opened = Keyfile::open(&edited, &b.trust);
    assert!(
        opened.is_err() || edited == b.keyfile,
        "an edited keyfile opened"
    );
});
