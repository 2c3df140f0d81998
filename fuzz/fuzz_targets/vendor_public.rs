//! Vendor public files (what viewers trust).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tally_core::vendor::VendorPublic::from_export(data);
});
