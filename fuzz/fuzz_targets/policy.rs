//! Policy files (`--policy FILE`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tally_core::policy::Limits::parse(data);
});
