//! Exported card files and emulated card state files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tally_core::card::CardIdentity::from_export(data);
    let _ = tally_core::card::CardExport::parse(data);
    let _ = tally_core::card::emulated::decode_state(data);
});
