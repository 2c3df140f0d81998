//! Package headers (format 1 and 2): arbitrary bytes parsed unverified (the verify step
//! needs a vendor key), and a valid format 2 header edited by the fuzzer, verified against
//! its vendor: an edited header never verifies, so the body digest it signs is the vendor's.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::package::PackageHeader;
use tally_core::vendor::VendorPublic;

fn base() -> &'static (Vec<u8>, Vec<VendorPublic>) {
    static B: OnceLock<(Vec<u8>, Vec<VendorPublic>)> = OnceLock::new();
    B.get_or_init(|| {
        let package = common::vector_bytes("package/ok");
        let header = PackageHeader::read_unverified(&mut &package[..])
            .expect("base header parses")
            .as_bytes()
            .to_vec();
        let vendor = std::fs::read(common::data("package-trust/c")).expect("vendor c");
        let trust = vec![VendorPublic::from_export(&vendor).expect("vendor c parses")];
        (header, trust)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = PackageHeader::parse_unverified(data);
    let mut r = data;
    let _ = PackageHeader::read_unverified(&mut r);
    let (header, trust) = base();
    let edited = common::mutate(header, data);
    let parsed = PackageHeader::parse_unverified(&edited);
    let read = PackageHeader::read(&mut &edited[..], trust);
    if let Ok((h, _)) = read {
        // `read` takes exactly the declared length; what follows is the body's business.
        assert!(h.as_bytes() == &header[..], "an edited header verified");
        assert_eq!(h.version(), 2);
        assert!(h.body_digest().is_some());
    }
    if let Ok(h) = parsed {
        // A parsed header's body check is bounded by its own declared sizes and never
        // panics, whatever follows it.
        let _ = h.check_body(&data[..data.len().min(4096)]);
    }
});
