//! Package headers, parsed unverified (the verify step needs a vendor key).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tally_core::package::PackageHeader::parse_unverified(data);
    let mut r = data;
    let _ = tally_core::package::PackageHeader::read_unverified(&mut r);
});
