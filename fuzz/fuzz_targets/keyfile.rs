//! Keyfiles: the header peek and the full open against no trusted vendor never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tally_core::keyfile::Keyfile::peek(data);
    assert!(
        tally_core::keyfile::Keyfile::open(data, &[]).is_err(),
        "no keyfile opens without a trusted vendor"
    );
});
