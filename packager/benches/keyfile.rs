//! Keyfile speed: issue (decoys, sealing, signing), open (verify the signature over
//! ~61 KB, decrypt and parse the CIS), unwrap the content key, and trace.
//!
//! `cargo bench -p tally-packager --bench keyfile` prints a table; nothing is asserted.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};
use tally_core::card::applet::CardState;
use tally_core::card::attestation::IssuerSecret;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::{ContentKey, DocumentId};
use tally_core::policy::Limits;
use tally_core::trail::LicenceId;
use tally_core::vendor::VendorSecret;

fn measure(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..runs / 10 + 1 {
        f();
    }
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t
}

fn row(name: &str, t: &[Duration]) {
    let med = t[t.len() / 2];
    let p90 = t[t.len() * 9 / 10];
    println!(
        "{name:<24} {:>6} {:>12.1} {:>12.1} {:>12.0}",
        t.len(),
        med.as_secs_f64() * 1e6,
        p90.as_secs_f64() * 1e6,
        1.0 / med.as_secs_f64()
    );
}

fn main() {
    let rng = &mut rand_core::OsRng;
    let vendor = VendorSecret::generate("Bench Press", false, rng).unwrap();
    let trusted = [vendor.public().clone()];
    let state = CardState::generate(rng, 0, "bench card");
    let card = CardIdentity {
        serial: state.serial,
        public_key: state.public_key(),
        origin: 0,
    };
    let issuer = IssuerSecret::generate("Bench Issuer", rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut live = Card::new(Box::new(
        EmulatedCard::create(dir.path().join("card.state"), &state).unwrap(),
    ));
    let cis = Cis {
        licence: LicenceId([1; 16]),
        document: DocumentId([2; 16]),
        card: card.clone(),
        card_agreement_key: state.agreement_key(),
        issuers: vec![issuer.public().clone()],
        customer_name: "Ada Lovelace".into(),
        content_key: ContentKey::generate(rng),
        limits: Limits::parse(
            b"tally-policy/1\npages 300\nminutes 600\nnot-after 2030-12-31\nallow print\nprints 20\n\
              weights offset=+01:00 default=2\nband 20:00-06:00 1\nrule any(pages 100, units 50)\n",
        )
        .unwrap(),
        allow_emulated_card: false,
        server: None,
        issued_at: time::OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
    };
    let bytes = Keyfile::issue(&vendor, &cis, rng).unwrap();
    let k = Keyfile::open(&bytes, &trusted).unwrap();
    println!(
        "keyfile: {} bytes ({} decoy bits)",
        bytes.len(),
        tally_core::keyfile::DECOY_BYTES * 8
    );
    println!(
        "{:<24} {:>6} {:>12} {:>12} {:>12}",
        "operation", "runs", "median µs", "p90 µs", "per second"
    );
    row(
        "issue",
        &measure(300, || {
            std::hint::black_box(Keyfile::issue(&vendor, &cis, &mut rand_core::OsRng).unwrap());
        }),
    );
    row(
        "open (verify + decrypt)",
        &measure(1000, || {
            std::hint::black_box(Keyfile::open(&bytes, &trusted).unwrap());
        }),
    );
    row(
        "read_from (reader)",
        &measure(1000, || {
            std::hint::black_box(Keyfile::read_from(&bytes[..], &trusted).unwrap());
        }),
    );
    row(
        "unwrap content key (card)",
        &measure(300, || {
            std::hint::black_box(k.unwrap_content_key(&mut live).unwrap());
        }),
    );
    row(
        "trace",
        &measure(300, || {
            std::hint::black_box(Keyfile::trace(&bytes, &vendor).unwrap());
        }),
    );
}
