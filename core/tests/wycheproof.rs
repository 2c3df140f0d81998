//! T8: Wycheproof's ECDSA P-256/SHA-256 vectors through our verify wrapper, with both
//! verifiers. Our policy is Wycheproof's plus one rule: high-S signatures are refused
//! (Tally cards only emit low-S), so a "valid" vector is accepted exactly when its S is low.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use tally_core::crypto::{P256Verifier, PublicKey, RingVerifier, Signature, SignatureVerifier};
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

fn run(name: TestName, der: bool) -> (usize, usize, usize) {
    let set = TestSet::load(name).expect("vectors load");
    let (mut accepted, mut rejected, mut high_s) = (0, 0, 0);
    for group in &set.test_groups {
        let key = PublicKey::from_sec1(&group.key.key);
        for t in &group.tests {
            let sig = if der {
                p256::ecdsa::Signature::from_der(&t.sig).ok().map(|s| {
                    let mut b = [0u8; 64];
                    b.copy_from_slice(&s.to_bytes());
                    Signature(b)
                })
            } else {
                Signature::from_slice(&t.sig)
            };
            for v in [&RingVerifier as &dyn SignatureVerifier, &P256Verifier] {
                let ok = match (&key, &sig) {
                    (Ok(k), Some(s)) => v.verify(k, &t.msg, s),
                    _ => false,
                };
                let low = sig.as_ref().is_some_and(|s| s.is_low_s());
                match t.result {
                    TestResult::Valid => {
                        assert_eq!(
                            ok,
                            low,
                            "tc {} ({}) via {}: valid vector, low-S={low}",
                            t.tc_id,
                            t.comment,
                            v.name()
                        );
                        if !low {
                            high_s += 1;
                        }
                    }
                    TestResult::Invalid => assert!(
                        !ok,
                        "tc {} ({}) accepted by {}",
                        t.tc_id,
                        t.comment,
                        v.name()
                    ),
                    TestResult::Acceptable => {}
                }
                if ok { accepted += 1 } else { rejected += 1 }
            }
        }
    }
    (accepted, rejected, high_s)
}

#[test]
fn p1363_vectors() {
    let (a, r, h) = run(TestName::EcdsaSecp256r1Sha256P1363, false);
    println!("P1363: {a} accepted, {r} rejected ({h} valid-but-high-S refused by policy)");
    // Counts over both verifiers: the vectors were all run, and both outcomes occurred.
    assert!(a > 100 && r > 200 && h > 0);
}

#[test]
fn der_vectors_through_strict_der_parsing() {
    let (a, r, h) = run(TestName::EcdsaSecp256r1Sha256, true);
    println!("DER: {a} accepted, {r} rejected ({h} valid-but-high-S refused by policy)");
    assert!(a > 100 && r > 300);
}

/// T26: Wycheproof's AES-GCM vectors through `crypto::Aes256Gcm`, the one AEAD wrapper every
/// Tally format uses. Only 256-bit keys, 96-bit nonces and 128-bit tags are Tally's
/// parameters; the wrapper's types admit nothing else, so other groups are out of scope.
#[test]
fn aes_gcm_vectors_through_our_aead() {
    use tally_core::crypto::Aes256Gcm;
    use wycheproof::aead::{TestName as AeadName, TestSet as AeadSet};
    let set = AeadSet::load(AeadName::AesGcm).expect("vectors load");
    let (mut valid, mut invalid) = (0, 0);
    for g in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for t in &g.tests {
            let key: [u8; 32] = t.key[..].try_into().unwrap();
            let nonce: [u8; 12] = t.nonce[..].try_into().unwrap();
            let aead = Aes256Gcm::new(&key);
            let mut sealed = t.ct.to_vec();
            sealed.extend_from_slice(&t.tag);
            let opened = aead
                .open_in_place(nonce, &t.aad, &mut sealed)
                .map(|p| p.to_vec());
            match t.result {
                TestResult::Valid => {
                    assert_eq!(
                        opened.as_deref(),
                        Ok(&t.pt[..]),
                        "tc {} ({})",
                        t.tc_id,
                        t.comment
                    );
                    let mut buf = t.pt.to_vec();
                    aead.seal_in_place_append_tag(nonce, &t.aad, &mut buf)
                        .unwrap();
                    assert_eq!(&buf[..t.ct.len()], &t.ct[..], "tc {} seal", t.tc_id);
                    assert_eq!(&buf[t.ct.len()..], &t.tag[..], "tc {} tag", t.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(opened.is_err(), "tc {} ({}) opened", t.tc_id, t.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    println!("AES-256-GCM: {valid} valid vectors round-tripped, {invalid} invalid refused");
    assert!(valid > 20 && invalid > 10);
}
