//! The publisher's nonce challenge (\[0104\], issue 13): the viewer calls `open_challenge` on
//! whatever the licence's server (or anyone between) hands it before the card signs an
//! answer record. Arbitrary bytes never panic; a challenge that opens was signed by the
//! server for this card and is open now; and a genuine signed challenge, edited by the
//! fuzzer, never opens unless the edits left it unchanged (T21, T25, T29).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::Serial;
use tally_core::crypto::default_verifier;
use tally_core::validation::{Challenge, ServerSecret, open_challenge};

#[path = "../common/mod.rs"]
mod common;

use common::Fixed;

const NOW: i64 = 1_764_000_000;
const CARD: Serial = Serial([0x5a; 16]);

struct Base {
    server: ServerSecret,
    signed: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x33; 32]).expect("scalar");
        let challenge = Challenge::new(CARD, NOW - 60, 86_400, &mut Fixed(4)).expect("challenge");
        let signed = server.sign_challenge(&challenge);
        Base { server, signed }
    })
}

fn opens(b: &Base, bytes: &[u8]) -> bool {
    match open_challenge(bytes, b.server.public(), &CARD, NOW, default_verifier()) {
        Ok(c) => {
            assert!(c.is_open(NOW), "an expired challenge opened");
            true
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Arbitrary bytes: only the genuine challenge (with or without its newline) opens.
        if opens(b, rest) {
            assert!(
                rest == &b.signed[..] || rest.strip_suffix(b"\n") == Some(&b.signed[..]),
                "a challenge the server did not sign opened"
            );
        }
    } else {
        let edited = common::mutate(&b.signed, rest);
        if opens(b, &edited) {
            assert!(
                edited == b.signed || edited.strip_suffix(b"\n") == Some(&b.signed[..]),
                "an edited challenge opened"
            );
        }
    }
});
