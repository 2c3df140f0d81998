//! The validation server's request body (T17, T21, T25): `tally-pack serve` checks the
//! body length, then calls `ServerSecret::open_request`. Arbitrary bytes never panic;
//! a valid sealed VAL_REQ edited by the fuzzer never opens unless unchanged (the AEAD
//! covers the header and the ephemeral key). The plaintext parser is fuzzed directly too.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::validation::{
    ENVELOPE_LEN, Icv, IcvVariant, Iv, REQUEST_LEN, ServerSecret, Ui, ValReq,
};

use common::Fixed;

struct Base {
    server: ServerSecret,
    request: ValReq,
    envelope: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x11; 32]).expect("scalar");
        let request = ValReq {
            variant: IcvVariant::from_number(7).expect("V7"),
            ui: Ui([0x21; 16]),
            icv: Icv([0x32; 32]),
            psi: 5,
            vssi: 4,
            dt: 1_764_000_000,
            vsi: server.vsi(),
            iv: Iv([0x43; 32]),
            viewer_icv: Icv([0x54; 32]),
        };
        let envelope = request.seal(server.public(), &mut Fixed(9));
        assert_eq!(envelope.len(), ENVELOPE_LEN);
        assert_eq!(
            server.open_request(&envelope).expect("base opens").0,
            request
        );
        Base {
            server,
            request,
            envelope,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Arbitrary bytes as a body and as a plaintext.
        0 => {
            let _ = b.server.open_request(rest);
            if let Ok(r) = ValReq::parse(rest) {
                assert_eq!(rest.len(), REQUEST_LEN);
                assert_eq!(&r.encode()[..], rest, "parse/encode not a round trip");
            }
        }
        // A valid envelope, edited.
        1 => {
            let edited = common::mutate(&b.envelope, rest);
            if let Ok((r, _)) = b.server.open_request(&edited) {
                assert!(edited == b.envelope, "an edited VAL_REQ opened");
                assert_eq!(r, b.request);
            }
        }
        // A valid plaintext, edited: parses only to what it encodes.
        _ => {
            let edited = common::mutate(&b.request.encode(), rest);
            if let Ok(r) = ValReq::parse(&edited) {
                assert_eq!(&r.encode()[..], &edited[..]);
            }
        }
    }
});
