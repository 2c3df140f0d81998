//! The client side of validation (T17, T21, T25, T33): VAL_OK / refusal parsing and its
//! signature check, and the client's saved validation state with the ticket in it.
//! Arbitrary bytes never panic; a valid signed ticket edited by the fuzzer never opens
//! unless unchanged; a state file whose ticket was replaced (checksum recomputed) never
//! passes the offline check unless the ticket is its own.
#![no_main]
#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::policy::TestClock;
use tally_core::trail::LicenceId;
use tally_core::validation::{
    CardProgress, ClientState, Iv, STATE_LEN, ServerSecret, Status, Ui, VERDICT_LEN, Verdict,
};

struct Base {
    server: ServerSecret,
    verdict: Verdict,
    signed: Vec<u8>,
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let server = ServerSecret::from_scalar(&[0x11; 32]).expect("scalar");
        let licence = LicenceId([0x21; 16]);
        let verdict = Verdict {
            status: Status::Ok,
            licence,
            ui: Ui::initial(&licence),
            psi: 5,
            vssi: 6,
            card_counter: 40,
            dt: 1_764_000_000,
            vsi: server.vsi(),
            iv: Iv([0x43; 32]),
            expires: 1_764_086_400,
            offline_records: 1000,
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

/// The state of the copy of `licence` never validated, with `ticket` pasted in (the way a
/// reader edits the file: checksum recomputed).
fn pasted(licence: LicenceId, ticket: &[u8]) -> Option<ClientState> {
    let mut st = ClientState::new(licence).encode();
    let at = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 8;
    st[at] = 1;
    st[at + 1..at + 1 + VERDICT_LEN].copy_from_slice(ticket);
    let n = st.len() - 32;
    let sum = tally_core::crypto::sha256(&st[..n]);
    st[n..].copy_from_slice(&sum);
    ClientState::parse(&st).ok()
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = Verdict::open(rest, b.server.public());
            if let Ok(s) = ClientState::parse(rest)
                && rest.len() == STATE_LEN
            {
                assert_eq!(
                    s.encode(),
                    rest,
                    "client state parse/encode not a round trip"
                );
            }
        }
        1 => {
            let edited = common::mutate(&b.signed, rest);
            if let Ok(v) = Verdict::open(&edited, b.server.public()) {
                assert!(edited == b.signed, "an edited VAL_OK opened");
                assert_eq!(v, b.verdict);
            }
        }
        // The valid ticket pasted into the state of another licence (the fuzzer picks it),
        // or an edited ticket into its own: refused offline unless it is the copy's own.
        _ => {
            let (licence, ticket) = match rest.split_first() {
                Some((&0, edit)) => (b.verdict.licence, common::mutate(&b.signed, edit)),
                _ => {
                    let mut l = [0u8; 16];
                    for (d, s) in l.iter_mut().zip(rest) {
                        *d = *s;
                    }
                    (LicenceId(l), b.signed.clone())
                }
            };
            if ticket.len() != VERDICT_LEN {
                return;
            }
            let Some(state) = pasted(licence, &ticket) else {
                return;
            };
            let clock = TestClock::at_unix(b.verdict.dt);
            let ok = state
                .check_offline(b.server.public(), None, &clock, &CardProgress::default())
                .is_ok();
            // Never validated: its UI is the licence's first, which no ticket rolled to.
            assert!(!ok, "a pasted ticket passed the offline check");
        }
    }
});
