//! The card proves what it is, and a keyfile is useless without its card (issue 12):
//!
//! - T37: the keyfile, the package and every public constant, without the card, do not
//!   decrypt the document; with the card they do.
//! - A keyfile for card A used with card B is refused before any decryption is attempted
//!   (no DECIPHER reaches the card), with the reason named.
//! - T16/T36: bad attestation data — wrong issuer, wrong serial, swapped key, expired, not
//!   yet valid, malformed, huge, a changed byte — each a clear, specific refusal at the
//!   opening's card check; an emulated card is refused unless the keyfile allows it.

// Fixtures unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/faulty_card.rs"]
mod faulty_card;

use faulty_card::FaultyCard;
use rand_core::OsRng;
use std::path::Path;
use tally_core::card::apdu::Ins;
use tally_core::card::applet::CardState;
use tally_core::card::attestation::{
    AttestationError, IssuerPublic, IssuerSecret, MAX_ATTESTATION_BYTES,
};
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity};
use tally_core::keyfile::{
    CardStanding, Cis, Keyfile, KeyfileError, VerifiedKeyfile, WRAPPED_KEY_LEN,
};
use tally_core::package::{ContentKey, PackOptions, open_package_bytes, seal_package};
use tally_core::policy::Limits;
use tally_core::trail::LicenceId;
use tally_core::vendor::VendorSecret;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);
const DOCUMENT: &[u8] = b"%PDF-1.7 the rented document, which only the card may open\n";

fn test_issuer() -> IssuerSecret {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/issuer/test-issuer.secret");
    IssuerSecret::from_export(&std::fs::read(p).unwrap()).unwrap()
}

fn attest(issuer: &IssuerSecret, s: &CardState, not_before: i64, not_after: i64) -> Vec<u8> {
    issuer.attest(&s.attested_card(), not_before, not_after)
}

/// A card attested by the test issuer for 2026–2027.
fn attested_card(origin: u64) -> CardState {
    let mut s = CardState::generate(&mut OsRng, origin, "virtual card");
    s.attestation = Some(attest(
        &test_issuer(),
        &s,
        datetime!(2026-01-01 00:00 UTC).unix_timestamp(),
        datetime!(2027-12-31 00:00 UTC).unix_timestamp(),
    ));
    s
}

fn live(dir: &tempfile::TempDir, name: &str, state: &CardState) -> Card {
    Card::new(Box::new(
        EmulatedCard::create(dir.path().join(name), state).unwrap(),
    ))
}

struct Rental {
    vendor: VendorSecret,
    keyfile_bytes: Vec<u8>,
    keyfile: VerifiedKeyfile,
    package: Vec<u8>,
    key: ContentKey,
}

/// A vendor, a package of [`DOCUMENT`] and a keyfile for `card` accepting `issuers`.
fn rental(card: &CardState, issuers: Vec<IssuerPublic>, allow_emulated: bool) -> Rental {
    let vendor = VendorSecret::generate("Binding Press", false, &mut OsRng).unwrap();
    let mut package = Vec::new();
    let (header, key) = seal_package(
        &vendor,
        &PackOptions::new("Bound", 1),
        DOCUMENT.len() as u64,
        DOCUMENT,
        std::io::Cursor::new(&mut package),
        &mut OsRng,
        &mut |_| {},
    )
    .unwrap();
    let cis = Cis {
        licence: LicenceId([0x11; 16]),
        document: header.document_id(),
        card: CardIdentity {
            serial: card.serial,
            public_key: card.public_key(),
            origin: card.origin,
        },
        card_agreement_key: card.agreement_key(),
        issuers,
        customer_name: "Ada Reader".into(),
        content_key: key.clone(),
        limits: Limits::default(),
        allow_emulated_card: allow_emulated,
        server: None,
        issued_at: datetime!(2026-11-01 00:00:00 UTC),
    };
    let keyfile_bytes = Keyfile::issue(&vendor, &cis, &mut OsRng).unwrap();
    let keyfile = Keyfile::open(&keyfile_bytes, &[vendor.public().clone()]).unwrap();
    Rental {
        vendor,
        keyfile_bytes,
        keyfile,
        package,
        key,
    }
}

fn hkdf44(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 44] {
    struct L;
    impl ring::hkdf::KeyType for L {
        fn len(&self) -> usize {
            44
        }
    }
    let mut out = [0u8; 44];
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], L)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

fn gcm_open(m: &[u8; 44], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &m[..32]).unwrap(),
    );
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(&m[32..]).unwrap();
    let mut buf = sealed.to_vec();
    let n = key
        .open_in_place(nonce, ring::aead::Aad::from(aad), &mut buf)
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

/// The secret every viewer carried before issue 12 (`VIEWER_WRAP_SECRET`): public since
/// it was in the source. It must open nothing now.
const OLD_VIEWER_SECRET: [u8; 32] = [
    0x92, 0x34, 0xf8, 0x56, 0x0d, 0xce, 0x7c, 0x85, 0x0b, 0x98, 0xb9, 0x2d, 0xe2, 0x29, 0x83, 0x09,
    0xb4, 0xd1, 0x1b, 0x75, 0xea, 0xb9, 0xe5, 0x02, 0xb5, 0x0d, 0x3d, 0x4d, 0x20, 0xf5, 0xa1, 0x7e,
];

#[test]
fn t37_keyfile_package_and_public_constants_without_the_card_decrypt_nothing() {
    let card = attested_card(5);
    let r = rental(&card, vec![test_issuer().public().clone()], false);
    let k = &r.keyfile;
    let wrapped: &[u8; WRAPPED_KEY_LEN] = k.wrapped_content_key();
    let eph = &wrapped[..65];
    let agreement = k.card_agreement_key().as_bytes();
    let vendor = r.vendor.public();

    // Every public value a reader holds without the card: the keyfile's fields, the
    // vendor's public file (layout key, keys, fingerprint), the package bytes' header,
    // the old built-in secret, and the wrap's documented constants.
    let mut publics: Vec<Vec<u8>> = vec![
        OLD_VIEWER_SECRET.to_vec(),
        vendor.layout_key().to_vec(),
        vendor.fingerprint().to_vec(),
        vendor.signing_key().as_bytes().to_vec(),
        vendor.tracing_key().as_bytes().to_vec(),
        agreement.to_vec(),
        agreement[1..33].to_vec(),
        eph.to_vec(),
        eph[1..33].to_vec(),
        k.card().public_key.as_bytes().to_vec(),
        k.card().serial.0.to_vec(),
        k.licence().0.to_vec(),
        k.document().0.to_vec(),
        b"tally/content-key-wrap/v2".to_vec(),
        b"tally/content-key-wrap/v1".to_vec(),
        vec![0; 32],
    ];
    publics.extend(r.keyfile_bytes.chunks(32).take(64).map(<[u8]>::to_vec));
    publics.extend(r.package.chunks(32).take(16).map(<[u8]>::to_vec));

    // The content key is nowhere in those bytes.
    for hay in [&r.keyfile_bytes, &r.package] {
        assert!(
            !hay.windows(32).any(|w| w == r.key.as_bytes()),
            "the content key is in the clear"
        );
    }
    // Used as the shared secret in the documented unwrap, or as the content key itself,
    // none opens the wrapped key or the package.
    let mut salt = eph.to_vec();
    salt.extend_from_slice(agreement);
    let mut info = b"tally/content-key-wrap/v2".to_vec();
    info.extend_from_slice(&k.licence().0);
    info.extend_from_slice(&k.document().0);
    info.extend_from_slice(&k.card().serial.0);
    let mut aad = k.licence().0.to_vec();
    aad.extend_from_slice(&k.document().0);
    let trusted = [vendor.clone()];
    for guess in &publics {
        for (s, i) in [(&salt[..], &info[..]), (&k.licence().0[..], &info[..])] {
            let m = hkdf44(guess, s, i);
            assert!(gcm_open(&m, &aad, &wrapped[65..]).is_none());
        }
        if guess.len() >= 32 {
            let as_key = ContentKey::from_slice(&guess[..32]).unwrap();
            assert!(open_package_bytes(&r.package, &trusted, &as_key).is_err());
        }
    }
    // A card that presents the keyfile card's public data but holds another
    // key-agreement secret (a copy of the public file, served as a card) opens nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut pretender = card.clone();
    pretender.agreement = p256::SecretKey::random(&mut OsRng);
    let mut fake = live(&dir, "pretender", &pretender);
    assert_eq!(
        k.unwrap_content_key(&mut fake).unwrap_err(),
        KeyfileError::CardKeyMismatch("key-agreement key")
    );

    // With the card: the key unwraps and the document decrypts.
    let mut real = live(&dir, "real", &card);
    let checked = k.check_card(&mut real, NOW).unwrap();
    assert!(matches!(checked.standing, CardStanding::Attested { .. }));
    let key = k.unwrap_content_key(&mut real).unwrap();
    assert_eq!(key.as_bytes(), r.key.as_bytes());
    let (_, plain) = open_package_bytes(&r.package, &trusted, &key).unwrap();
    assert_eq!(plain.as_bytes(), DOCUMENT);
}

#[test]
fn a_keyfile_for_card_a_is_refused_on_card_b_before_any_decryption() {
    let a = attested_card(5);
    let b = attested_card(5);
    let r = rental(&a, vec![test_issuer().public().clone()], false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b");
    EmulatedCard::create(&path, &b).unwrap();
    let (faulty, plan) = FaultyCard::new(EmulatedCard::open(&path).unwrap(), None);
    let mut card_b = Card::new(Box::new(faulty));
    let want = KeyfileError::WrongCard {
        expected: a.serial.to_hex(),
        actual: b.serial.to_hex(),
    };
    assert_eq!(r.keyfile.check_card(&mut card_b, NOW).unwrap_err(), want);
    assert_eq!(r.keyfile.unwrap_content_key(&mut card_b).unwrap_err(), want);
    assert!(want.to_string().contains(&a.serial.to_hex()));
    let decipher = Ins::Decipher.bytes().1;
    let log = plan.lock().unwrap().log.clone();
    assert!(!log.is_empty());
    assert!(
        !log.contains(&decipher),
        "DECIPHER was sent to the wrong card: {log:02x?}"
    );
}

/// What a case expects of the refusal.
type Expect = fn(&AttestationError) -> bool;

/// Each bad attestation is refused with its own reason; the same card with a good one opens.
#[test]
fn t16_t36_bad_attestations_each_refused_with_the_reason() {
    let issuer = test_issuer();
    let rogue = IssuerSecret::generate("Rogue Card Works", &mut OsRng).unwrap();
    let base = attested_card(9);
    let r = rental(&base, vec![issuer.public().clone()], false);
    let dir = tempfile::tempdir().unwrap();
    let (y2026, y2027) = (
        datetime!(2026-01-01 00:00 UTC).unix_timestamp(),
        datetime!(2027-12-31 00:00 UTC).unix_timestamp(),
    );
    let other = CardState::generate(&mut OsRng, 9, "other");
    let mut swapped_subject = base.clone();
    swapped_subject.agreement = other.agreement.clone();
    let mut good = attest(&issuer, &base, y2026, y2027);
    let mut flipped = good.clone();
    flipped[60] ^= 1; // the origin: still well-formed, so the signature catches it
    let mut huge = good.clone();
    huge.resize(MAX_ATTESTATION_BYTES + 500, 0);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let cases: Vec<(&str, Option<Vec<u8>>, Expect)> = vec![
        ("none (emulated)", None, |e| *e == AttestationError::Missing),
        (
            "wrong issuer",
            Some(attest(&rogue, &base, y2026, y2027)),
            |e| matches!(e, AttestationError::UnknownIssuer(_)),
        ),
        (
            "wrong serial",
            Some(attest(&issuer, &other, y2026, y2027)),
            |e| matches!(e, AttestationError::WrongSerial { .. }),
        ),
        (
            "swapped key-agreement key",
            Some(attest(&issuer, &swapped_subject, y2026, y2027)),
            |e| *e == AttestationError::WrongAgreementKey,
        ),
        ("expired", Some(attest(&issuer, &base, 0, y2026)), |e| {
            matches!(e, AttestationError::Expired(_))
        }),
        (
            "not yet valid",
            Some(attest(&issuer, &base, y2027, y2027 + 1)),
            |e| matches!(e, AttestationError::NotYetValid(_)),
        ),
        ("a changed byte", Some(flipped), |e| {
            *e == AttestationError::BadSignature
        }),
        ("malformed: random bytes", Some(vec![0x5a; 275]), |e| {
            matches!(e, AttestationError::Malformed(_))
        }),
        ("malformed: bad magic", Some(bad_magic), |e| {
            matches!(e, AttestationError::Malformed(_))
        }),
        ("malformed: truncated", Some(good[..200].to_vec()), |e| {
            matches!(e, AttestationError::Malformed(_))
        }),
        ("malformed: empty", Some(Vec::new()), |e| {
            matches!(e, AttestationError::Malformed(_))
        }),
        ("huge", Some(huge), |e| *e == AttestationError::TooLarge),
    ];
    for (i, (what, attestation, expected)) in cases.into_iter().enumerate() {
        let mut s = base.clone();
        s.attestation = attestation;
        let mut card = live(&dir, &format!("case{i}"), &s);
        match r.keyfile.check_card(&mut card, NOW) {
            Err(KeyfileError::NotAttested(e)) => {
                assert!(expected(&e), "{what}: wrong reason {e:?}");
                let msg = KeyfileError::NotAttested(e).to_string();
                assert!(msg.contains("emulated cards are not accepted"), "{msg}");
            }
            other => panic!("{what}: {other:?}"),
        }
        // An attestation the host refused is never a reason to decrypt: the opening stops
        // at the check, and a keyfile allowing emulated cards still opens, as emulated.
    }
    // A swapped *signing* key on the card itself is refused by identity first.
    let mut s = base.clone();
    s.key = other.key.clone();
    assert_eq!(
        r.keyfile
            .check_card(&mut live(&dir, "swapped-signing", &s), NOW)
            .unwrap_err(),
        KeyfileError::CardKeyMismatch("signing key")
    );
    // The good one.
    let mut s = base.clone();
    s.attestation = Some(std::mem::take(&mut good));
    let ok = r
        .keyfile
        .check_card(&mut live(&dir, "good", &s), NOW)
        .unwrap();
    match ok.standing {
        CardStanding::Attested { issuer: i } => {
            assert_eq!(i.name(), "TEST ISSUER — NOT FOR PRODUCTION")
        }
        other => panic!("{other:?}"),
    }
    // A keyfile that allows emulated cards opens an unattested card and says why.
    let allowing = rental(&base, Vec::new(), true);
    let mut s = base.clone();
    s.attestation = None;
    let e = allowing
        .keyfile
        .check_card(&mut live(&dir, "emulated-allowed", &s), NOW)
        .unwrap();
    assert_eq!(
        e.standing,
        CardStanding::Emulated {
            why: AttestationError::Missing
        }
    );
}
