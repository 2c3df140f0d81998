//! Early return in core (issue 13, T38): a card-signed `return` record refuses its licence
//! on that card from then on — read record by record, through a validator's fast start, and
//! after the vouched-for records were archived; a second return and a renewed keyfile of the
//! returned licence are refused too; and a restore from a backup made before the return keeps
//! the licence refused when the server knows the return (`validation::recovery_terms`), while
//! the other licences are charged by the publisher's policy. Real card emulation, real
//! ECDSA, real files.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::sync::Arc;
use tally_core::policy::{Decision, Limits, Reason, SystemClock, evaluate};
use tally_core::receipt::Receipt;
use tally_core::rental::{CardMeter, Problem, tally_of};
use tally_core::trail::body::LostCharge;
use tally_core::trail::{LicenceId, Trail, Usage};
use tally_core::validation::recovery_terms;

#[path = "support/restore.rs"]
mod restore_support;
use restore_support::Fx;

const A: LicenceId = LicenceId([0xaa; 16]);
const B: LicenceId = LicenceId([0xbb; 16]);

/// The policy's answer for `lic` (no limits) on the trail as a reader trusting the server
/// counts it.
fn decision(f: &Fx, lic: LicenceId) -> Decision {
    let mut t = Trail::open(&f.trail, &f.id).unwrap();
    t.set_trusted_validators(f.keys());
    t.verify_offline().unwrap();
    let servers: Vec<_> = f.keys().iter().map(|k| k.fingerprint()).collect();
    evaluate(
        &Limits::default(),
        &tally_of(&t, lic, &servers),
        &SystemClock,
    )
}

fn returned(d: &Decision) -> bool {
    matches!(d.reason(), Some(Reason::Returned { .. }))
}

#[test]
fn a_return_is_read_from_its_record_through_a_fast_start_and_after_an_archive() {
    let f = Fx::new(50);
    f.write(Usage::Open { licence: A });
    f.write(Usage::Open { licence: B });
    f.write(Usage::Return { licence: A });
    let d = decision(&f, A);
    assert!(returned(&d), "{d:?}");
    let words = d.reason().unwrap().to_string();
    assert!(
        words.starts_with("This licence was returned on "),
        "{words}"
    );
    assert!(words.contains("never opens again on this card"), "{words}");
    assert!(decision(&f, B).is_allowed());
    // Vouched for: the validator writes the returned licence as fully used, and a fast start
    // reads the return itself from the vouched-for records.
    f.vouch();
    f.write(Usage::Open { licence: B });
    assert!(returned(&decision(&f, A)));
    assert!(f.tally(A).written_off, "the validator's totals carry it");
    assert!(decision(&f, B).is_allowed());
    // Archived: the return's record is gone from the working trail, its charge is not.
    Trail::archive(&f.trail, &f.id, f.keys()).unwrap();
    let d = decision(&f, A);
    assert!(!d.is_allowed(), "{d:?}");
    assert_eq!(d.reason(), Some(&Reason::WrittenOff));
    assert!(decision(&f, B).is_allowed());
}

#[test]
fn a_licence_is_returned_once_and_a_renewal_does_not_bring_it_back() {
    let f = Fx::new(7);
    let meter = |limits: Limits| {
        CardMeter::validate(
            f.card(),
            &f.id,
            &f.trail,
            A,
            limits,
            Arc::new(SystemClock),
            vec![],
        )
        .unwrap()
    };
    let mut m = meter(Limits::default());
    let record = m.record_return().unwrap();
    let receipt = Receipt::new(&f.id, record.clone()).unwrap();
    assert_eq!(receipt.verify(&f.id, &A).unwrap().counter, record.counter);
    assert_eq!(Receipt::parse(&receipt.encode()).unwrap(), receipt);
    assert!(matches!(
        m.record_return(),
        Err(Problem::Refused(Reason::Returned { .. }))
    ));
    // A renewed keyfile of the licence (version 2): refused on this card all the same.
    let m = meter(Limits {
        licence_version: 2,
        ..Limits::default()
    });
    assert!(returned(&m.evaluate_opening()));
    // A fresh meter reads the return back from the trail.
    assert!(matches!(
        meter(Limits::default()).record_return(),
        Err(Problem::Refused(Reason::Returned { .. }))
    ));
}

#[test]
fn a_restore_from_before_the_return_keeps_the_licence_refused_when_the_server_knows_it() {
    // A card with two licences, backed up, then licence A returned; the trail is lost.
    let lose_after_return = || {
        let f = Fx::new(1000);
        f.write(Usage::Open { licence: A });
        f.write(Usage::Open { licence: B });
        let backup = f.backup();
        f.write(Usage::Return { licence: A });
        (f, backup)
    };
    // A forgiving publisher that never saw the return forgives the lost records, the return
    // among them: the reader keeps a loan nobody else holds (docs/security.md).
    let (f, backup) = lose_after_return();
    f.lose_and_restore(&backup, vec![A, B], LostCharge::Forgive)
        .unwrap();
    assert!(decision(&f, A).is_allowed());
    // One that verified the return charges that licence in full, and only that one.
    let (f, backup) = lose_after_return();
    let (charge, listed) = recovery_terms(LostCharge::Forgive, vec![A, B], &[A]);
    assert_eq!((charge, listed.clone()), (LostCharge::Full, vec![A]));
    f.lose_and_restore(&backup, listed, charge).unwrap();
    let d = decision(&f, A);
    assert_eq!(d.reason(), Some(&Reason::WrittenOff), "{d:?}");
    assert!(decision(&f, B).is_allowed());
}

#[test]
fn recovery_terms_charge_returned_licences_in_full_under_any_policy() {
    let (a, b, c) = (LicenceId([1; 16]), LicenceId([2; 16]), LicenceId([3; 16]));
    assert_eq!(
        recovery_terms(LostCharge::Forgive, vec![a, b], &[]),
        (LostCharge::Forgive, vec![a, b])
    );
    assert_eq!(
        recovery_terms(LostCharge::Full, vec![b, a], &[c]),
        (LostCharge::Full, vec![a, b, c])
    );
    assert_eq!(
        recovery_terms(LostCharge::Forgive, vec![a, b, c], &[c, c]),
        (LostCharge::Full, vec![c])
    );
}

/// A transport that answers every POST with one fixed outcome, and keeps what it was sent.
struct Canned(
    Result<(u16, Vec<u8>), String>,
    std::sync::Mutex<Vec<(String, Vec<u8>)>>,
);

impl tally_core::rental::Transport for Canned {
    fn post(
        &self,
        endpoint: &str,
        body: &[u8],
        _: std::time::Duration,
        _: u64,
    ) -> Result<(u16, Vec<u8>), String> {
        self.1
            .lock()
            .unwrap()
            .push((endpoint.to_string(), body.to_vec()));
        self.0.clone()
    }
}

#[test]
fn a_receipt_goes_to_the_servers_return_endpoint_and_its_answer_is_sorted() {
    use tally_core::rental::{Delivery, RETURN_TIMEOUT, deliver_receipt};
    let f = Fx::new(3);
    let mut m = CardMeter::validate(
        f.card(),
        &f.id,
        &f.trail,
        A,
        Limits::default(),
        Arc::new(SystemClock),
        vec![],
    )
    .unwrap();
    let receipt = Receipt::new(&f.id, m.record_return().unwrap()).unwrap();
    let send = |answer: Result<(u16, Vec<u8>), String>, url: &str| {
        let t = Canned(answer, Default::default());
        let d = deliver_receipt(&receipt, url, &t, RETURN_TIMEOUT);
        (d, t.1.into_inner().unwrap())
    };
    let (d, sent) = send(
        Ok((200, b"return recorded\n".to_vec())),
        "http://pub.example/",
    );
    assert_eq!(
        d,
        Delivery::Accepted {
            endpoint: "http://pub.example/v1/return".into(),
            answer: "return recorded".into()
        }
    );
    assert_eq!(
        sent,
        vec![("http://pub.example/v1/return".into(), receipt.encode())]
    );
    let (d, _) = send(
        Ok((422, b"receipt refused: x".to_vec())),
        "http://pub.example",
    );
    assert!(
        matches!(&d, Delivery::Refused { status: 422, reason, .. } if reason == "receipt refused: x"),
        "{d:?}"
    );
    for answer in [
        Err("connection refused".to_string()),
        Ok((503, b"busy".to_vec())),
        Ok((429, b"too many".to_vec())),
    ] {
        let (d, _) = send(answer, "http://pub.example");
        assert!(matches!(d, Delivery::Unreachable { .. }), "{d:?}");
    }
    // Nothing is sent to an address that is not http(s).
    let (d, sent) = send(Ok((200, Vec::new())), "file:///etc/passwd");
    assert!(matches!(d, Delivery::Unreachable { .. }), "{d:?}");
    assert!(sent.is_empty());
}
