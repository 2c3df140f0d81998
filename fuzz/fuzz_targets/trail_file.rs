//! The trail file parser: header, frames, records, bodies and the sequence checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tally_core::trail::file::{HEADER_LEN, Header, parse_frames};

fuzz_target!(|data: &[u8]| {
    let _ = Header::decode(data);
    let start = data.len().min(HEADER_LEN);
    if let Ok(frames) = parse_frames(&data[start..], start as u64, 0) {
        for r in &frames.records {
            let _ = tally_core::trail::Body::parse(&r.body);
        }
    }
});
