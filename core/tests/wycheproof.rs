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

/// T26: Wycheproof's AES-GCM vectors through `crypto::Aes256Gcm` (RustCrypto `aes-gcm`),
/// the one AEAD every Tally format uses, through each of its methods: the package
/// reader's detached in-place open, the keyfile's and vendor files' open into a
/// zeroizing buffer, the in-place open with the tag appended, and the three ways of
/// sealing. Only 256-bit keys, 96-bit nonces and 128-bit tags are Tally's parameters; the
/// wrapper's types admit nothing else, so other groups are out of scope.
#[test]
fn aes_gcm_vectors_through_every_aead_method() {
    use tally_core::crypto::{AEAD_TAG_LEN, Aes256Gcm};
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
            let tag: [u8; AEAD_TAG_LEN] = t.tag[..].try_into().unwrap();
            // Every way of opening, each on its own copy of the input.
            let appended = aead
                .open_in_place(nonce, &t.aad, &mut sealed.clone())
                .map(|p| p.to_vec());
            let mut ct = t.ct.to_vec();
            let detached = aead
                .open_in_place_detached(nonce, &t.aad, &mut ct, &tag)
                .map(|()| ct);
            let zeroizing = aead
                .open_to_zeroizing(nonce, &t.aad, &sealed)
                .map(|p| p.to_vec());
            let opened = [
                ("open_in_place", appended),
                ("open_in_place_detached", detached),
                ("open_to_zeroizing", zeroizing),
            ];
            match t.result {
                TestResult::Valid => {
                    for (how, got) in &opened {
                        assert_eq!(
                            got.as_deref(),
                            Ok(&t.pt[..]),
                            "tc {} ({}) via {how}",
                            t.tc_id,
                            t.comment
                        );
                    }
                    let mut buf = t.pt.to_vec();
                    aead.seal_in_place_append_tag(nonce, &t.aad, &mut buf)
                        .unwrap();
                    assert_eq!(buf, sealed, "tc {} seal_in_place_append_tag", t.tc_id);
                    let mut buf = t.pt.to_vec();
                    let sep = aead
                        .seal_in_place_separate_tag(nonce, &t.aad, &mut buf)
                        .unwrap();
                    assert_eq!(
                        (&buf[..], &sep[..]),
                        (&t.ct[..], &t.tag[..]),
                        "tc {} seal_in_place_separate_tag",
                        t.tc_id
                    );
                    let v = aead.seal_to_vec(nonce, &t.aad, &t.pt).unwrap();
                    assert_eq!(v, sealed, "tc {} seal_to_vec", t.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    for (how, got) in &opened {
                        assert!(
                            got.is_err(),
                            "tc {} ({}) opened via {how}",
                            t.tc_id,
                            t.comment
                        );
                    }
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    println!("AES-256-GCM: {valid} valid vectors round-tripped, {invalid} invalid refused");
    assert!(valid > 20 && invalid > 10);
}
