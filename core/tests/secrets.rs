//! Secrets (T27, STYLE "Secrets"): every key and plaintext type zeroizes on drop (checked
//! at compile time), and its `Debug` output holds no secret byte — not as hex (either
//! case), not as Rust's decimal byte list, not raw. The argon2 floor on reading a vendor
//! secret is covered by `vendor.rs`'s unit tests and the `secret-weak-*` vectors of
//! `vendor_vectors.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use rand_core::OsRng;
use std::path::Path;
use tally_core::card::CardIdentity;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::encode_state;
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::{ContentKey, DocumentId, Plaintext, open_package_bytes};
use tally_core::policy::Limits;
use tally_core::trail::LicenceId;
use tally_core::validation::ServerSecret;
use tally_core::vendor::{VendorPublic, VendorSecret};
use zeroize::ZeroizeOnDrop;

/// Compile-time: `T` wipes its secret when dropped.
fn assert_zod<T: ZeroizeOnDrop>() {}
/// The same, for a value whose type is only inferred (e.g. a returned `Zeroizing`).
fn assert_zod_val<T: ZeroizeOnDrop>(_: &T) {}

#[test]
fn key_and_plaintext_types_zeroize_on_drop() {
    assert_zod::<ContentKey>();
    assert_zod::<Plaintext>();
    assert_zod::<VendorSecret>();
    assert_zod::<CardState>();
    assert_zod::<ServerSecret>();
    assert_zod::<tally_core::card::attestation::IssuerSecret>();
    // The primitives the types above hold their keys in.
    assert_zod::<p256::ecdsa::SigningKey>();
    assert_zod::<p256::SecretKey>();
    // Derived secrets and encoded secret state are returned in zeroizing buffers.
    let vendor = VendorSecret::generate("Zeroize Test", true, &mut OsRng).unwrap();
    assert_zod_val(&vendor.storage_key("test"));
    assert_zod_val(&vendor.tracing_agree(vendor.public().tracing_key()));
    let card = CardState::generate(&mut OsRng, 0, "zeroize");
    assert_zod_val(&encode_state(&card));
}

/// Panics if `debug` shows any 8-byte window of `secret` as lowercase or uppercase hex,
/// as a decimal byte list, or any 8 raw bytes of it (for printable secrets).
fn assert_hidden(what: &str, debug: &str, secret: &[u8]) {
    assert!(secret.len() >= 8, "{what}: secret too short to check");
    for w in secret.windows(8) {
        let lower = hex::encode(w);
        let upper = lower.to_uppercase();
        let list = format!("{:?}", w);
        let list = list.trim_start_matches('[').trim_end_matches(']');
        assert!(
            !debug.contains(&lower),
            "{what}: Debug shows the secret as hex: {debug}"
        );
        assert!(
            !debug.contains(&upper),
            "{what}: Debug shows the secret as HEX: {debug}"
        );
        assert!(
            !debug.contains(list),
            "{what}: Debug shows the secret as bytes: {debug}"
        );
        if let Ok(raw) = std::str::from_utf8(w)
            && raw.chars().any(|c| !c.is_whitespace())
        {
            assert!(!debug.contains(raw), "{what}: Debug shows the secret raw");
        }
    }
}

fn both(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}\n{v:#?}")
}

#[test]
fn card_state_debug_shows_no_private_key() {
    let s = CardState::generate(&mut OsRng, 5, "debug test");
    let d = both(&s);
    assert!(d.contains("debug test"), "the public part is shown: {d}");
    assert_hidden("CardState", &d, &s.key.to_bytes());
    assert_hidden("CardState (agreement key)", &d, &s.agreement.to_bytes());
    // The encoded state holds the keys; its buffer type must not print them either.
    assert_hidden(
        "encoded CardState",
        &both(&encode_state(&s)),
        &s.key.to_bytes(),
    );
    assert_hidden(
        "encoded CardState (agreement key)",
        &both(&encode_state(&s)),
        &s.agreement.to_bytes(),
    );
}

#[test]
fn issuer_secret_debug_shows_no_key() {
    let i =
        tally_core::card::attestation::IssuerSecret::generate("Debug Issuer", &mut OsRng).unwrap();
    let text = i.to_export();
    let hex_key = text
        .lines()
        .find_map(|l| l.strip_prefix("secret-key: "))
        .unwrap()
        .to_string();
    let d = both(&i);
    assert!(d.contains("Debug Issuer"), "{d}");
    assert_hidden("IssuerSecret", &d, &hex::decode(hex_key).unwrap());
}

#[test]
fn vendor_secret_debug_shows_no_key() {
    let v = VendorSecret::generate("Debug Vendor", true, &mut OsRng).unwrap();
    let d = both(&v);
    assert!(d.contains("Debug Vendor"));
    assert_hidden("VendorSecret layout key", &d, v.layout_key());
    assert_hidden(
        "VendorSecret tracing key",
        &d,
        &v.tracing_secret().to_bytes(),
    );
    // The signing key is reachable only through keys derived from it.
    assert_hidden("VendorSecret storage key", &d, &v.storage_key("debug")[..]);
}

#[test]
fn server_secret_debug_shows_no_scalar() {
    let scalar = [0x5a; 32];
    let s = ServerSecret::from_scalar(&scalar).unwrap();
    assert_hidden("ServerSecret", &both(&s), &scalar);
    let d = both(
        &ServerSecret::derive(&VendorSecret::generate("S", true, &mut OsRng).unwrap()).unwrap(),
    );
    assert!(d.contains("ServerSecret"));
}

#[test]
fn content_key_and_cis_debug_show_no_key() {
    let k = ContentKey::generate(&mut OsRng);
    assert_hidden("ContentKey", &both(&k), k.as_bytes());
    let card = CardState::generate(&mut OsRng, 0, "cis");
    let cis = Cis {
        licence: LicenceId([1; 16]),
        document: DocumentId([2; 16]),
        card: CardIdentity {
            serial: card.serial,
            public_key: card.public_key(),
            origin: 0,
        },
        card_agreement_key: card.agreement_key(),
        issuers: Vec::new(),
        customer_name: "Ada Lovelace".into(),
        content_key: k.clone(),
        limits: Limits::default(),
        allow_emulated_card: true,
        server: None,
        issued_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    let d = both(&cis);
    assert!(d.contains("Ada Lovelace"));
    assert_hidden("Cis", &d, k.as_bytes());
}

fn vector(rel: &str) -> (String, Vec<u8>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(rel),
    )
    .unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    let hex: String = body.split_whitespace().collect();
    (head.to_string(), hex::decode(hex).unwrap())
}

fn field<'a>(head: &'a str, key: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap()
}

fn trust(rel: &str) -> VendorPublic {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    VendorPublic::from_export(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn plaintext_and_package_debug_show_no_document_byte() {
    let (head, bytes) = vector("package/ok");
    let key = ContentKey::from_slice(&hex::decode(field(&head, "key")).unwrap()).unwrap();
    let (header, plain) = open_package_bytes(&bytes, &[trust("package-trust/c")], &key).unwrap();
    assert!(plain.len() > 1000);
    let d = both(&(&header, &plain));
    assert!(d.contains(&format!("{} bytes", plain.len())), "{d}");
    assert_hidden("Plaintext", &d, plain.as_bytes());
    assert_hidden("Plaintext (key)", &d, key.as_bytes());
}

#[test]
fn verified_keyfile_debug_shows_no_content_key() {
    let (head, bytes) = vector("keyfile/ok-basic");
    let content_key = hex::decode(field(&head, "content-key")).unwrap();
    let k = Keyfile::open(&bytes, &[trust("keyfile-trust/vendor.pub")]).unwrap();
    let d = both(&k);
    assert!(d.contains("Ada Lovelace"), "{d}");
    assert_hidden("VerifiedKeyfile", &d, &content_key);
}

/// The checker itself catches each way of printing a secret.
#[test]
fn the_checker_sees_hex_upper_hex_decimal_and_raw_leaks() {
    let secret: Vec<u8> = (0x41..0x41 + 32).collect();
    for leak in [
        format!("key: {}", hex::encode(&secret[3..11])),
        format!("key: {}", hex::encode_upper(&secret[10..18])),
        format!("key: {:?}", &secret[..]),
        format!("key: {}", std::str::from_utf8(&secret[20..30]).unwrap()),
    ] {
        let caught = std::panic::catch_unwind(|| assert_hidden("self-test", &leak, &secret));
        assert!(caught.is_err(), "missed a leak: {leak}");
    }
    assert_hidden("self-test", "key: <secret>", &secret);
}
