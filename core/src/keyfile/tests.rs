use super::*;
use crate::card::Serial;
use crate::card::applet::CardState;
use crate::card::attestation::IssuerSecret;
use crate::card::emulated::EmulatedCard;
use crate::crypto::PublicKey;
use crate::policy::Limits;
use rand_core::OsRng;
use time::macros::datetime;

/// A card whose keys follow from `seed` (signing key [seed; 32], key-agreement key
/// [seed ^ 0x80; 32]), so keyfiles can be issued for it without the card.
fn state(seed: u8) -> CardState {
    let mut s = CardState::generate(&mut OsRng, 1000 + u64::from(seed), "test");
    s.serial = Serial([seed; 16]);
    s.key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    s.agreement = p256::SecretKey::from_slice(&[seed ^ 0x80; 32]).unwrap();
    s
}

fn agreement(seed: u8) -> PublicKey {
    state(seed).agreement_key()
}

fn issuer() -> IssuerSecret {
    let text = format!(
        "tally-card-issuer-secret/1\nname: TEST ISSUER\nsecret-key: {}\n",
        hex::encode([0x11u8; 32])
    );
    IssuerSecret::from_export(text.as_bytes()).unwrap()
}

/// A live emulated card for `state` in `dir`.
fn live(dir: &tempfile::TempDir, name: &str, state: &CardState) -> Card {
    let path = dir.path().join(name);
    Card::new(Box::new(EmulatedCard::create(path, state).unwrap()))
}

fn attested(seed: u8, not_after: i64) -> CardState {
    let mut s = state(seed);
    s.attestation = Some(issuer().attest(&s.attested_card(), 0, not_after));
    s
}

const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);

fn vendor(name: &str) -> VendorSecret {
    VendorSecret::generate(name, true, &mut OsRng).unwrap()
}

fn card(seed: u8) -> CardIdentity {
    let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    CardIdentity {
        serial: Serial([seed; 16]),
        public_key: PublicKey::from_verifying_key(sk.verifying_key()),
        origin: 1000 + u64::from(seed),
    }
}

fn cis(limits: &str) -> Cis {
    Cis {
        licence: LicenceId([0x4c; 16]),
        document: DocumentId([0xd0; 16]),
        card: card(7),
        card_agreement_key: agreement(7),
        issuers: vec![issuer().public().clone()],
        customer_name: "Ada Lovelace".into(),
        content_key: ContentKey::from_bytes([0x5a; 32]),
        limits: Limits::parse(format!("tally-policy/1\n{limits}").as_bytes()).unwrap(),
        allow_emulated_card: false,
        server: None,
        issued_at: datetime!(2026-11-25 13:00:00 UTC),
    }
}

#[test]
fn issue_then_open_round_trips_every_field() {
    let v = vendor("Round Trip Press");
    let mut c = cis("pages 300\nnot-after 2026-12-31\nallow print\nprints 5\n");
    c.server = Some(ServerInfo {
        url: "https://validate.example.com/v1".into(),
        public_key: card(9).public_key,
        require_online_every_days: Some(30),
    });
    c.allow_emulated_card = true;
    let bytes = Keyfile::issue(&v, &c, &mut OsRng).unwrap();
    assert!(bytes.len() >= MIN_KEYFILE_BYTES && bytes.len() <= MAX_KEYFILE_BYTES);
    // About 480,000 decoy bits ([0068]).
    assert!(bytes.len() * 8 > 480_000);
    let k = Keyfile::open(&bytes, &[v.public().clone()]).unwrap();
    assert_eq!(k.vendor(), v.public());
    assert_eq!(k.licence(), c.licence);
    assert_eq!(k.document(), c.document);
    assert_eq!(k.card(), &c.card);
    assert_eq!(k.customer_name(), "Ada Lovelace");
    assert_eq!(k.limits(), &c.limits);
    assert!(k.rights().print && !k.rights().copy);
    assert!(k.allows_emulated_card());
    assert_eq!(k.server(), c.server.as_ref());
    assert_eq!(k.issued_at(), c.issued_at);
    assert_eq!(k.file_hash(), &crypto::sha256(&bytes));
    assert_eq!(k.issuers(), &c.issuers[..]);
    assert_eq!(k.card_agreement_key(), &c.card_agreement_key);
    let dir = tempfile::tempdir().unwrap();
    let key = k
        .unwrap_content_key(&mut live(&dir, "7", &state(7)))
        .unwrap();
    assert_eq!(key.as_bytes(), &[0x5a; 32]);
    // The same bytes through a reader.
    let k2 = Keyfile::read_from(&bytes[..], &[v.public().clone()]).unwrap();
    assert_eq!(k2, k);
}

#[test]
fn the_cis_is_nowhere_in_the_clear_and_moves_between_keyfiles() {
    let v = vendor("Hidden Press");
    let c = cis("pages 3\n");
    let a = Keyfile::issue(&v, &c, &mut OsRng).unwrap();
    let b = Keyfile::issue(&v, &c, &mut OsRng).unwrap();
    for needle in [
        &b"Ada Lovelace"[..],
        &c.card.serial.0[..],
        &c.card.public_key.as_bytes()[..],
        &c.licence.0[..],
        b"tally-policy/1",
        &[0x5a; 32][..],
    ] {
        assert!(
            !a.windows(needle.len()).any(|w| w == needle),
            "{needle:?} in clear"
        );
    }
    let ha = Keyfile::peek(&a).unwrap();
    let hb = Keyfile::peek(&b).unwrap();
    assert_ne!(ha.salt, hb.salt);
    let oa = decoy::cis_offset(v.layout_key(), &ha.salt, ha.cis_len);
    let ob = decoy::cis_offset(v.layout_key(), &hb.salt, hb.cis_len);
    assert_ne!(oa, ob, "two keyfiles put the CIS at the same place");
    assert_eq!(ha.vendor_fingerprint, v.public().fingerprint());
}

#[test]
fn every_changed_byte_is_refused() {
    let v = vendor("Tamper Press");
    let trusted = [v.public().clone()];
    let bytes = Keyfile::issue(&v, &cis("pages 3\n"), &mut OsRng).unwrap();
    // Every byte of the header, the sealed identity and the signature, and a stride
    // through the decoy region (flipping all 60,000 region bytes takes ~4 s in debug).
    let region_start = HEADER_LEN + SEALED_LEN;
    let sig_start = bytes.len() - SIGNATURE_LEN;
    let positions = (0..region_start)
        .chain((region_start..sig_start).step_by(97))
        .chain(sig_start..bytes.len());
    for i in positions {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let err = Keyfile::open(&b, &trusted).unwrap_err();
        let ok = match i {
            0..8 => err == KeyfileError::BadMagic,
            8 => err == KeyfileError::UnsupportedVersion(VERSION ^ 1),
            9..41 => matches!(err, KeyfileError::UnknownVendor { .. }),
            57..61 => matches!(
                err,
                KeyfileError::BadHeader(_)
                    | KeyfileError::Truncated { .. }
                    | KeyfileError::TrailingData { .. }
            ),
            _ => err == KeyfileError::BadSignature,
        };
        assert!(ok, "byte {i}: {err:?}");
    }
}

#[test]
fn structure_errors_are_named() {
    let v = vendor("Shape Press");
    let trusted = [v.public().clone()];
    let bytes = Keyfile::issue(&v, &cis(""), &mut OsRng).unwrap();
    let n = bytes.len();
    assert_eq!(
        Keyfile::open(&bytes[..n - 1], &trusted),
        Err(KeyfileError::Truncated {
            expected: n,
            actual: n - 1
        })
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Keyfile::open(&long, &trusted),
        Err(KeyfileError::TrailingData { extra: 1 })
    );
    assert!(matches!(
        Keyfile::open(&[], &trusted),
        Err(KeyfileError::Truncated { actual: 0, .. })
    ));
    assert_eq!(
        Keyfile::open(&vec![0u8; MAX_KEYFILE_BYTES + 1], &trusted),
        Err(KeyfileError::TooLarge(MAX_KEYFILE_BYTES + 1))
    );
    // A reader that never ends is cut at the cap.
    let endless = std::io::repeat(0x41);
    assert_eq!(
        Keyfile::read_from(endless, &trusted),
        Err(KeyfileError::TooLarge(MAX_KEYFILE_BYTES + 1))
    );
    assert_eq!(
        Keyfile::open(b"%PDF-1.7\n", &trusted),
        Err(KeyfileError::Truncated {
            expected: MIN_KEYFILE_BYTES,
            actual: 9
        })
    );
    let mut pdf = bytes.clone();
    pdf[..8].copy_from_slice(b"%PDF-1.7");
    assert_eq!(Keyfile::open(&pdf, &trusted), Err(KeyfileError::BadMagic));
}

#[test]
fn untrusted_and_resigned_keyfiles_are_refused() {
    let v = vendor("Real Press");
    let mallory = vendor("Mallory Press");
    let bytes = Keyfile::issue(&mallory, &cis(""), &mut OsRng).unwrap();
    assert!(matches!(
        Keyfile::open(&bytes, &[v.public().clone()]),
        Err(KeyfileError::UnknownVendor { .. })
    ));
    assert!(matches!(
        Keyfile::open(&bytes, &[]),
        Err(KeyfileError::UnknownVendor { .. })
    ));
    // Mallory's keyfile relabelled with the real vendor's fingerprint and re-signed
    // with Mallory's key (T22).
    let mut forged = bytes.clone();
    forged[9..41].copy_from_slice(&v.public().fingerprint());
    let n = forged.len() - SIGNATURE_LEN;
    let sig = mallory.sign(&format::tests_signed_message(&forged[..n]));
    forged[n..].copy_from_slice(&sig.0);
    assert_eq!(
        Keyfile::open(&forged, &[v.public().clone(), mallory.public().clone()]),
        Err(KeyfileError::BadSignature)
    );
    // Several trusted vendors: the right one is picked.
    let k = Keyfile::open(&bytes, &[v.public().clone(), mallory.public().clone()]).unwrap();
    assert_eq!(k.vendor().name(), "Mallory Press");
}

#[test]
fn the_content_key_unwraps_only_on_the_keyfile_card() {
    let v = vendor("Card Press");
    let c = cis("");
    let k = Keyfile::open(
        &Keyfile::issue(&v, &c, &mut OsRng).unwrap(),
        &[v.public().clone()],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Another card: refused by serial before DECIPHER is sent.
    let mut other = live(&dir, "8", &state(8));
    assert_eq!(
        k.unwrap_content_key(&mut other).unwrap_err(),
        KeyfileError::WrongCard {
            expected: c.card.serial.to_hex(),
            actual: Serial([8; 16]).to_hex()
        }
    );
    // A card claiming the keyfile's serial with its own key-agreement key: named.
    let mut impostor = state(8);
    impostor.serial = c.card.serial;
    assert_eq!(
        k.unwrap_content_key(&mut live(&dir, "impostor", &impostor))
            .unwrap_err(),
        KeyfileError::CardKeyMismatch("key-agreement key")
    );
    // The wrap itself is bound to the card's key: another card's ECDH answer opens nothing.
    let eph = cis::wrap_ephemeral(&k.cis.wrapped_key).unwrap();
    let wrong = live(&dir, "9", &state(9))
        .session()
        .unwrap()
        .decipher(&eph)
        .unwrap();
    assert_eq!(
        cis::unwrap_content_key(&k.cis.wrapped_key, &wrong, &k.cis).unwrap_err(),
        KeyfileError::ContentKeyUnwrap
    );
    let mut right = live(&dir, "7", &state(7));
    let z = right.session().unwrap().decipher(&eph).unwrap();
    let mut w = k.cis.wrapped_key;
    w[70] ^= 1;
    assert_eq!(
        cis::unwrap_content_key(&w, &z, &k.cis).unwrap_err(),
        KeyfileError::ContentKeyUnwrap
    );
    assert_eq!(
        k.unwrap_content_key(&mut right).unwrap().as_bytes(),
        &[0x5a; 32]
    );
}

#[test]
fn check_card_applies_identity_attestation_and_the_emulated_rule() {
    let v = vendor("Check Press");
    let c = cis("");
    let k = Keyfile::open(
        &Keyfile::issue(&v, &c, &mut OsRng).unwrap(),
        &[v.public().clone()],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = k
        .check_card(&mut live(&dir, "ok", &attested(7, 2_000_000_000)), NOW)
        .unwrap();
    assert_eq!(good.identity, c.card);
    assert!(matches!(good.standing, CardStanding::Attested { .. }));
    // The keyfile's card, unattested (an emulated card), on a keyfile that refuses them.
    assert_eq!(
        k.check_card(&mut live(&dir, "emu", &state(7)), NOW),
        Err(KeyfileError::NotAttested(AttestationError::Missing))
    );
    // Expired.
    assert!(matches!(
        k.check_card(&mut live(&dir, "old", &attested(7, 1_700_000_000)), NOW),
        Err(KeyfileError::NotAttested(AttestationError::Expired(_)))
    ));
    // Another card, attested: refused by identity first.
    assert!(matches!(
        k.check_card(&mut live(&dir, "other", &attested(8, 2_000_000_000)), NOW),
        Err(KeyfileError::WrongCard { .. })
    ));
    // Same serial, another signing key.
    let mut s = attested(7, 2_000_000_000);
    s.key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    assert_eq!(
        k.check_card(&mut live(&dir, "swapped", &s), NOW),
        Err(KeyfileError::CardKeyMismatch("signing key"))
    );
    // A keyfile that allows emulated cards opens on the unattested card, and says why.
    let mut ce = cis("");
    ce.allow_emulated_card = true;
    ce.issuers.clear();
    let ke = Keyfile::open(
        &Keyfile::issue(&v, &ce, &mut OsRng).unwrap(),
        &[v.public().clone()],
    )
    .unwrap();
    let emu = ke
        .check_card(&mut live(&dir, "emu2", &state(7)), NOW)
        .unwrap();
    assert_eq!(
        emu.standing,
        CardStanding::Emulated {
            why: AttestationError::Missing
        }
    );
    // Refusing emulated cards without any issuer is a keyfile nothing could open.
    let mut none = cis("");
    none.issuers.clear();
    assert!(matches!(
        Keyfile::issue(&v, &none, &mut OsRng),
        Err(KeyfileError::BadCis(_))
    ));
}

#[test]
fn trace_names_the_owner() {
    let v = vendor("Trace Press");
    let c = cis("pages 1\n");
    let bytes = Keyfile::issue(&v, &c, &mut OsRng).unwrap();
    let o = Keyfile::trace(&bytes, &v).unwrap();
    assert_eq!(o.name, "Ada Lovelace");
    assert_eq!(o.serial, c.card.serial);
    assert_eq!(o.licence, c.licence);
    assert_eq!(o.issued_at, c.issued_at);
    assert!(o.signature_valid);
    // A damaged leak still names its owner, flagged as unproven.
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 100] ^= 1;
    let o = Keyfile::trace(&b, &v).unwrap();
    assert_eq!(o.name, "Ada Lovelace");
    assert!(!o.signature_valid);
    // The sealed identity itself changed: opaque.
    let mut b = bytes.clone();
    b[HEADER_LEN + 100] ^= 1;
    assert_eq!(Keyfile::trace(&b, &v), Err(KeyfileError::TraceUnreadable));
    // Another vendor cannot trace it.
    assert!(matches!(
        Keyfile::trace(&bytes, &vendor("Other Press")),
        Err(KeyfileError::UnknownVendor { .. })
    ));
}

#[test]
fn invalid_cis_is_refused_at_issue() {
    let v = vendor("Strict Press");
    let mut c = cis("");
    c.customer_name = " Ada".into();
    assert!(matches!(
        Keyfile::issue(&v, &c, &mut OsRng),
        Err(KeyfileError::BadCis(_))
    ));
    c.customer_name = "x".repeat(201);
    assert!(Keyfile::issue(&v, &c, &mut OsRng).is_err());
    c.customer_name = "Ada\nEvil".into();
    assert!(Keyfile::issue(&v, &c, &mut OsRng).is_err());
    let mut c = cis("");
    c.server = Some(ServerInfo {
        url: "ftp://x".into(),
        public_key: card(1).public_key,
        require_online_every_days: None,
    });
    assert!(Keyfile::issue(&v, &c, &mut OsRng).is_err());
    let mut c = cis("");
    c.issued_at = datetime!(2026-11-25 13:00:00.5 UTC);
    assert!(Keyfile::issue(&v, &c, &mut OsRng).is_err());
    let mut c = cis("");
    c.limits.prints = Some(3);
    assert!(matches!(
        Keyfile::issue(&v, &c, &mut OsRng),
        Err(KeyfileError::Policy(_))
    ));
}

#[test]
fn cis_parser_refuses_malformed_strings() {
    let c = cis("pages 3\n");
    let good = c.encode(&mut OsRng).unwrap();
    assert_eq!(good.len() % 512, 0);
    let parsed = cis::ParsedCis::parse(&good).unwrap();
    assert_eq!(parsed.customer_name, "Ada Lovelace");
    // Version.
    let mut b = good.clone();
    b[0] = 1;
    assert_eq!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::UnsupportedVersion(1))
    );
    // Non-zero padding.
    let mut b = good.clone();
    let n = b.len();
    b[n - 1] = 1;
    assert!(matches!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::BadCis(_))
    ));
    // Extra padding block.
    let mut b = good.to_vec();
    b.extend_from_slice(&[0; 512]);
    assert!(matches!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::BadCis(_))
    ));
    // Emulated flag 2.
    let mut b = good.clone();
    b[1 + 16 + 16 + 16 + 65 + 8 + 65 + 8] = 2;
    assert!(matches!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::BadCis(_))
    ));
    // Card key off the curve.
    let mut b = good.clone();
    b[1 + 16 + 16 + 16 + 10] ^= 1;
    assert!(matches!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::BadCis(_))
    ));
    // Every truncation is refused without a panic.
    for cut in 0..good.len() {
        assert!(cis::ParsedCis::parse(&good[..cut]).is_err());
    }
    // Random bytes never panic the parser.
    use rand_core::RngCore as _;
    for _ in 0..200 {
        let mut r = vec![0u8; 512];
        OsRng.fill_bytes(&mut r);
        let _ = cis::ParsedCis::parse(&r);
    }
}
