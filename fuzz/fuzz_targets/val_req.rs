//! The validation server's request body (T17, T21, T25, T32): `tally-pack serve` checks the
//! body length, calls `ServerSecret::open_request`, then checks the card proof against the
//! licence's registered card (`CardCheck::of`). Arbitrary bytes never panic; a valid
//! sealed, card-signed VAL_REQ edited by the fuzzer never opens unless unchanged (the AEAD
//! covers the header and the ephemeral key); an edited request or card proof is never
//! taken as signed by the card unless both are unchanged. The plaintext and proof parsers
//! are fuzzed directly too.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::CardIdentity;
use tally_core::validation::{
    CardCheck, CardProof, ENVELOPE_LEN, ENVELOPE_V1_LEN, Icv, IcvVariant, Iv, PROOF_LEN,
    REQUEST_LEN, RequestSigner, ServerSecret, TrailSigner, Ui, ValReq, request_hash,
    request_record_body,
};

use common::Fixed;

struct Base {
    server: ServerSecret,
    card: CardIdentity,
    request: ValReq,
    proof: CardProof,
    envelope: Vec<u8>,
    unsigned: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x11; 32]).expect("scalar");
        let request = ValReq {
            variant: IcvVariant::from_number(8).expect("V8"),
            ui: Ui([0x21; 16]),
            icv: Icv([0x32; 32]),
            psi: 5,
            vssi: 4,
            dt: 1_764_000_000,
            vsi: server.vsi(),
            iv: Iv([0x43; 32]),
            viewer_icv: Icv([0x54; 32]),
        };
        // The reader's card signs the request as a record of its trail.
        let (dir, card, identity) = common::fuzz_card("valreq", 5);
        let mut signer = TrailSigner::open(card, &dir.join("t.trail")).expect("trail");
        let hash = request_hash(&request.encode());
        let proof = signer
            .sign_request(&request_record_body(&hash, request.dt))
            .expect("signed");
        drop(signer);
        let _ = std::fs::remove_dir_all(&dir);
        let envelope = request.seal(&proof, server.public(), &mut Fixed(9));
        assert_eq!(envelope.len(), ENVELOPE_LEN);
        let (r, h, p) = server.open_request(&envelope).expect("base opens");
        assert_eq!((&r, h, p.as_ref()), (&request, hash, Some(&proof)));
        assert_eq!(
            CardCheck::of(&r, &h, p.as_ref(), Some(&identity)),
            CardCheck::Signed {
                counter: proof.counter
            }
        );
        let unsigned = request.seal_unsigned(server.public(), &mut Fixed(10));
        assert_eq!(unsigned.len(), ENVELOPE_V1_LEN);
        Base {
            server,
            card: identity,
            request,
            proof,
            envelope,
            unsigned,
        }
    })
}

fn signed(b: &Base, r: &ValReq, proof: Option<&CardProof>) -> bool {
    let hash = request_hash(&r.encode());
    matches!(
        CardCheck::of(r, &hash, proof, Some(&b.card)),
        CardCheck::Signed { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        // Arbitrary bytes as a body, as a plaintext and as a card proof.
        0 => {
            if let Ok((r, _, p)) = b.server.open_request(rest) {
                assert!(
                    !signed(b, &r, p.as_ref()),
                    "arbitrary bytes signed by the card"
                );
            }
            if let Ok(r) = ValReq::parse(rest) {
                assert_eq!(rest.len(), REQUEST_LEN);
                assert_eq!(&r.encode()[..], rest, "parse/encode not a round trip");
            }
            if let Ok(p) = CardProof::parse(rest) {
                assert_eq!(rest.len(), PROOF_LEN);
                assert_eq!(&p.encode()[..], rest, "proof parse/encode not a round trip");
            }
        }
        // A valid envelope (card-signed or not), edited.
        1 | 2 => {
            let original = if mode % 5 == 1 {
                &b.envelope
            } else {
                &b.unsigned
            };
            let edited = common::mutate(original, rest);
            if let Ok((r, _, p)) = b.server.open_request(&edited) {
                assert!(&edited == original, "an edited VAL_REQ opened");
                assert_eq!(r, b.request);
                assert_eq!(signed(b, &r, p.as_ref()), mode % 5 == 1);
            }
        }
        // A valid plaintext, edited: parses only to what it encodes, and the card's proof
        // of the original does not cover it.
        3 => {
            let edited = common::mutate(&b.request.encode(), rest);
            if let Ok(r) = ValReq::parse(&edited) {
                assert_eq!(&r.encode()[..], &edited[..]);
                if signed(b, &r, Some(&b.proof)) {
                    assert_eq!(r, b.request, "the card's proof covered an edited request");
                }
            }
        }
        // The card proof, edited: taken as the card's only unchanged.
        _ => {
            let edited = common::mutate(&b.proof.encode(), rest);
            if let Ok(p) = CardProof::parse(&edited)
                && signed(b, &b.request, Some(&p))
            {
                assert_eq!(p, b.proof, "an edited card proof verified");
            }
        }
    }
});
