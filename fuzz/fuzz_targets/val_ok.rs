//! The client side of validation (T17, T21, T25): VAL_OK / refusal parsing and its
//! signature check, and the client's saved validation state. Arbitrary bytes never
//! panic; a valid signed ticket edited by the fuzzer never opens unless unchanged.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::validation::{ClientState, Iv, ServerSecret, Status, Ui, Verdict};

struct Base {
    server: ServerSecret,
    verdict: Verdict,
    signed: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x11; 32]).expect("scalar");
        let verdict = Verdict {
            status: Status::Ok,
            ui: Ui([0x21; 16]),
            psi: 5,
            vssi: 6,
            dt: 1_764_000_000,
            vsi: server.vsi(),
            iv: Iv([0x43; 32]),
            expires: 1_764_086_400,
            request: [0x65; 32],
        };
        let signed = server.sign(&verdict);
        assert_eq!(
            Verdict::open(&signed, server.public()).expect("base opens"),
            verdict
        );
        Base {
            server,
            verdict,
            signed,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = Verdict::open(rest, b.server.public());
        if let Ok(s) = ClientState::parse(rest) {
            assert_eq!(
                s.encode(),
                rest,
                "client state parse/encode not a round trip"
            );
        }
    } else {
        let edited = common::mutate(&b.signed, rest);
        if let Ok(v) = Verdict::open(&edited, b.server.public()) {
            assert!(edited == b.signed, "an edited VAL_OK opened");
            assert_eq!(v, b.verdict);
        }
    }
});
