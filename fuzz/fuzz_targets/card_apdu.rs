//! The card side: any sequence of APDUs against the applet never panics, never lowers the
//! counter, and never changes the state without the answer 9000.
//!
//! Speed: the base state is decoded once (decoding derives the public key, a scalar
//! multiplication) and cloned per run. The counter starts two below its maximum, so a run
//! makes at most two real signatures (the second at the last signable value) before the
//! card must refuse (T14): SIGN stays exercised, and most inputs stay cheap.
#![no_main]
#[path = "../common/mod.rs"]
mod common;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::applet::{Applet, CardState};
use tally_core::card::emulated::decode_state;

fn base() -> &'static CardState {
    static S: OnceLock<CardState> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = CardState::generate(&mut common::Fixed(7), 5, "fuzz");
        s.counter = u64::MAX - 2;
        // An attestation spanning three GET_ATTESTATION blocks (the card never parses it).
        s.attestation = Some(vec![0xA5; 300]);
        // Through the file format once, as the emulated card loads it.
        decode_state(&tally_core::card::emulated::encode_state(&s)).expect("base state")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut state: CardState = base().clone();
    let mut applet = Applet::new();
    // Split the input into APDUs: each starts with a length byte.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (apdu, next) = tail.split_at(n);
        rest = next;
        let before = state.counter;
        let fail_persist = apdu.first() == Some(&0xEE);
        let resp = applet.process(&mut state, apdu, &mut |_| {
            if fail_persist {
                Err(std::io::Error::other("injected"))
            } else {
                Ok(())
            }
        });
        assert!(resp.len() >= 2);
        let ok = resp[resp.len() - 2..] == [0x90, 0x00];
        assert!(state.counter >= before, "counter went down");
        if state.counter != before {
            assert!(
                ok && state.counter == before + 1,
                "counter moved without success"
            );
            assert_eq!(
                state.last.map(|l| l.counter),
                Some(before),
                "last signature not recorded"
            );
        }
    }
});
