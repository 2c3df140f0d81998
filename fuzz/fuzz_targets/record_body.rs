//! Record bodies: parse, and anything that parses re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = tally_core::trail::Body::parse(data) {
        assert_eq!(
            b.encode().as_bytes(),
            data,
            "only the canonical form parses"
        );
    }
});
