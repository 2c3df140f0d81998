//! Return receipts (issue 13, T38): `tally-pack returns` and `POST /v1/return` call
//! `Receipt::parse` then `Receipt::verify` against the licence's registered card. Arbitrary
//! bytes never panic; a receipt that parses re-encodes to the same bytes (one spelling per
//! receipt); and the valid test vector (`core/tests/data/receipt/good`), edited by the
//! fuzzer, never verifies against its card unless the edits left it unchanged (T21, T25).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::CardIdentity;
use tally_core::receipt::Receipt;

#[path = "../common/mod.rs"]
mod common;

struct Base {
    good: Vec<u8>,
    card: CardIdentity,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let card = std::fs::read(common::data("receipt-card.pub")).expect("receipt-card.pub");
        Base {
            good: common::vector_bytes("receipt/good"),
            card: CardIdentity::from_export(&card).expect("the vector card").0,
        }
    })
}

fn check(bytes: &[u8]) -> bool {
    let b = base();
    match Receipt::parse(bytes) {
        Ok(r) => {
            assert_eq!(r.encode(), bytes, "only the canonical form parses");
            r.verify(&b.card, &r.licence).is_ok()
        }
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(rest);
    } else {
        let b = base();
        let edited = common::mutate(&b.good, rest);
        if check(&edited) {
            assert_eq!(edited, b.good, "an edited receipt verified");
        }
    }
});
