use super::*;
use crate::card::Serial;
use crate::crypto::PublicKey;
use crate::policy::Limits;
use rand_core::OsRng;
use time::macros::datetime;

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
    let key = k.unwrap_content_key(&c.card).unwrap();
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
            8 => err == KeyfileError::UnsupportedVersion(0),
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
fn the_content_key_unwraps_only_for_the_keyfile_card() {
    let v = vendor("Card Press");
    let c = cis("");
    let k = Keyfile::open(
        &Keyfile::issue(&v, &c, &mut OsRng).unwrap(),
        &[v.public().clone()],
    )
    .unwrap();
    let other = card(8);
    assert_eq!(
        k.unwrap_content_key(&other).unwrap_err(),
        KeyfileError::WrongCard {
            expected: c.card.serial.to_hex(),
            actual: other.serial.to_hex()
        }
    );
    // Same serial, other key: refused too.
    let mut swapped = c.card.clone();
    swapped.public_key = other.public_key.clone();
    assert!(matches!(
        k.unwrap_content_key(&swapped),
        Err(KeyfileError::WrongCard { .. })
    ));
    // The wrap itself is bound to the card: unwrapping with another card's identity
    // fails even when the identity check is bypassed.
    assert_eq!(
        cis::unwrap_content_key(&k.cis.wrapped_key, &k.cis.licence, &k.cis.document, &other)
            .unwrap_err(),
        KeyfileError::ContentKeyUnwrap
    );
    let mut w = k.cis.wrapped_key;
    w[0] ^= 1;
    assert_eq!(
        cis::unwrap_content_key(&w, &k.cis.licence, &k.cis.document, &c.card).unwrap_err(),
        KeyfileError::ContentKeyUnwrap
    );
    assert_eq!(k.check_card(&c.card, false), Ok(()));
    assert_eq!(
        k.check_card(&c.card, true),
        Err(KeyfileError::EmulatedCardRefused)
    );
    assert!(matches!(
        k.check_card(&other, false),
        Err(KeyfileError::WrongCard { .. })
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
    let good = c.encode().unwrap();
    assert_eq!(good.len() % 512, 0);
    let parsed = cis::ParsedCis::parse(&good).unwrap();
    assert_eq!(parsed.customer_name, "Ada Lovelace");
    // Version.
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(
        cis::ParsedCis::parse(&b),
        Err(KeyfileError::UnsupportedVersion(2))
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
    b[1 + 16 + 16 + 16 + 65 + 8 + 8] = 2;
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
