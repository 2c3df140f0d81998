//! Card attestation certificates and issuer files (T16, T36): arbitrary bytes never panic
//! the parsers, and an edited valid certificate never verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tally_core::card::applet::CardState;
use tally_core::card::attestation::{Attestation, AttestedCard, IssuerPublic, IssuerSecret};

struct Base {
    issuer: IssuerPublic,
    card: AttestedCard,
    cert: Vec<u8>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let issuer = IssuerSecret::from_export(include_bytes!(
            "../../core/tests/data/issuer/test-issuer.secret"
        ))
        .expect("test issuer");
        let card = CardState::generate(&mut rand_core::OsRng, 3, "fuzz").attested_card();
        let cert = issuer.attest(&card, 0, i64::MAX);
        Base {
            issuer: issuer.public().clone(),
            card,
            cert,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = IssuerPublic::from_export(data);
    let _ = IssuerSecret::from_export(data);
    let b = base();
    let now = time::OffsetDateTime::UNIX_EPOCH;
    if let Ok(a) = Attestation::parse(data) {
        let _ = a.verify(std::slice::from_ref(&b.issuer), &b.card, now);
    }
    // Edits of the valid certificate: XOR the input over it (and truncate or extend by
    // its first byte). It verifies only when nothing changed.
    let mut cert = b.cert.clone();
    for (i, x) in data.iter().enumerate().skip(1) {
        let at = i % cert.len();
        cert[at] ^= x;
    }
    if let Some(&n) = data.first() {
        match n % 3 {
            1 => cert.truncate(cert.len() - usize::from(n) % cert.len()),
            2 => cert.extend(std::iter::repeat_n(n, usize::from(n))),
            _ => {}
        }
    }
    let ok = Attestation::parse(&cert)
        .and_then(|a| {
            a.verify(std::slice::from_ref(&b.issuer), &b.card, now)
                .cloned()
        })
        .is_ok();
    assert_eq!(ok, cert == b.cert, "an edited certificate verified");
});
