//! Keyfiles against the test vectors in `tests/data/keyfile/` (T22, T24, T28).
//!
//! Every vector runs through every entry point: `Keyfile::open` (bytes),
//! `Keyfile::read_from` (a reader), `Keyfile::peek` (header only), `Keyfile::trace`
//! (the vendor's side) and, when it opens, `check_card` and `unwrap_content_key` on an
//! emulated card holding the vector card's keys, attested by the test issuer
//! (`tests/data/issuer/`). Trust anchors and the
//! tracing vendor are in `tests/data/keyfile-trust/` (the secret file's password is
//! `keyfile-vectors`, a test-only vendor).
//!
//! The generator re-implements the documented layout (`docs/keyfile-format.md`: HKDF
//! and AES-GCM of the CIS, the signed message) independently of the library, so the
//! "limits edited" and "re-signed" cases also check the document.
//!
//! Regenerate with `TALLY_REGEN_VECTORS=1 cargo test -p tally-core --test keyfile_vectors -- --ignored`.

// Generators and helpers outside #[test] fns unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/vector.rs"]
mod vector;

use rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};
use tally_core::card::applet::CardState;
use tally_core::card::attestation::{IssuerPublic, IssuerSecret};
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity, Serial};
use tally_core::crypto::PublicKey;
use tally_core::keyfile::{
    Cis, DECOY_BYTES, HEADER_LEN, Keyfile, KeyfileError, SEALED_LEN, SIGNATURE_LEN, ServerInfo,
    cis_offset,
};
use tally_core::package::{ContentKey, DocumentId};
use tally_core::policy::Limits;
use tally_core::trail::LicenceId;
use tally_core::vendor::{KdfParams, VendorPublic, VendorSecret};

const KEYS: &[&str] = &["expect", "comment", "trust", "trace", "content-key"];
const PASSWORD: &[u8] = b"keyfile-vectors";

fn code(e: &KeyfileError) -> &'static str {
    match e {
        KeyfileError::TooLarge(_) => "too-large",
        KeyfileError::Truncated { .. } => "truncated",
        KeyfileError::TrailingData { .. } => "trailing-data",
        KeyfileError::BadMagic => "bad-magic",
        KeyfileError::UnsupportedVersion(_) => "unsupported-version",
        KeyfileError::BadHeader(_) => "bad-header",
        KeyfileError::UnknownVendor { .. } => "unknown-vendor",
        KeyfileError::BadSignature => "bad-signature",
        KeyfileError::CisUnreadable => "cis-unreadable",
        KeyfileError::BadCis(_) => "bad-cis",
        KeyfileError::Policy(_) => "policy",
        KeyfileError::TraceUnreadable => "trace-unreadable",
        other => panic!("unexpected error {other:?}"),
    }
}

fn trust_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keyfile-trust")
}

fn trust(names: &str) -> Vec<VendorPublic> {
    names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| VendorPublic::from_export(&std::fs::read(trust_dir().join(n)).unwrap()).unwrap())
        .collect()
}

fn tracing_vendor() -> VendorSecret {
    VendorSecret::open(
        &std::fs::read(trust_dir().join("vendor.secret")).unwrap(),
        PASSWORD,
    )
    .unwrap()
}

#[test]
fn keyfile_vectors() {
    let vectors = vector::load("keyfile", KEYS);
    let vendor = tracing_vendor();
    let (mut ok, mut bad) = (0, 0);
    for v in &vectors {
        let name = v.name();
        let expect = v.get("expect");
        let trusted = trust(v.get("trust"));
        let results = [
            Keyfile::open(&v.bytes, &trusted),
            Keyfile::read_from(&v.bytes[..], &trusted),
        ];
        for r in results {
            match r {
                Ok(k) => {
                    assert_eq!(expect, "ok", "{name}: accepted");
                    let dir = tempfile::tempdir().unwrap();
                    let mut card = live_card(&dir, 3);
                    k.check_card(&mut card, time::macros::datetime!(2026-12-01 00:00 UTC))
                        .unwrap();
                    let key = k.unwrap_content_key(&mut card).unwrap();
                    assert_eq!(hex::encode(key.as_bytes()), v.get("content-key"), "{name}");
                }
                Err(e) => assert_eq!(code(&e), expect, "{name}: {e}"),
            }
        }
        // The header-only entry point agrees on every structural error.
        match Keyfile::peek(&v.bytes) {
            Ok(_) => assert!(
                ![
                    "too-large",
                    "truncated",
                    "trailing-data",
                    "bad-magic",
                    "unsupported-version",
                    "bad-header"
                ]
                .contains(&expect),
                "{name}: peek accepted"
            ),
            Err(e) => assert_eq!(code(&e), expect, "{name}: peek: {e}"),
        }
        // The vendor's side.
        let trace = match Keyfile::trace(&v.bytes, &vendor) {
            Ok(o) => format!(
                "{} ({})",
                o.name,
                if o.signature_valid {
                    "signature valid"
                } else {
                    "signature invalid"
                }
            ),
            Err(e) => code(&e).to_string(),
        };
        assert_eq!(trace, v.get("trace"), "{name}: trace");
        if expect == "ok" {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    assert!(
        ok >= 2 && bad > 3 * ok,
        "{ok} positive, {bad} negative vectors"
    );
}

// ---------------------------------------------------------------- generator

struct Gen {
    vendor: VendorSecret,
    mallory: VendorSecret,
}

fn derive(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 44] {
    struct L;
    impl ring::hkdf::KeyType for L {
        fn len(&self) -> usize {
            44
        }
    }
    let mut out = [0u8; 44];
    let info = [info];
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&info, L)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

fn gcm(m: &[u8; 44], aad: &[u8], data: &[u8], seal: bool) -> Option<Vec<u8>> {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &m[..32]).unwrap(),
    );
    let nonce = || ring::aead::Nonce::try_assume_unique_for_key(&m[32..]).unwrap();
    let mut buf = data.to_vec();
    if seal {
        key.seal_in_place_append_tag(nonce(), ring::aead::Aad::from(aad), &mut buf)
            .unwrap();
        Some(buf)
    } else {
        let n = key
            .open_in_place(nonce(), ring::aead::Aad::from(aad), &mut buf)
            .ok()?
            .len();
        buf.truncate(n);
        Some(buf)
    }
}

/// The parts of a keyfile, per the documented layout.
struct Layout {
    salt: [u8; 16],
    cis_len: usize,
    offset: usize,
}

fn layout(bytes: &[u8], layout_key: &[u8; 32]) -> Layout {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[41..57]);
    let cis_len = u32::from_be_bytes(bytes[57..61].try_into().unwrap());
    Layout {
        salt,
        cis_len: cis_len as usize,
        offset: cis_offset(layout_key, &salt, cis_len),
    }
}

fn region_start() -> usize {
    HEADER_LEN + SEALED_LEN
}

fn resign(bytes: &mut [u8], signer: &VendorSecret) {
    let n = bytes.len() - SIGNATURE_LEN;
    let mut m = b"tally/keyfile/v1\0".to_vec();
    m.extend_from_slice(&bytes[..n]);
    let sig = signer.sign(&m);
    bytes[n..].copy_from_slice(&sig.0);
}

/// Decrypts the CIS, lets `edit` change the plaintext, re-encrypts it in place.
fn edit_cis(bytes: &mut [u8], layout_key: &[u8; 32], edit: impl FnOnce(&mut Vec<u8>)) {
    let l = layout(bytes, layout_key);
    let at = region_start() + l.offset;
    let m = derive(layout_key, &l.salt, b"tally/keyfile-cis/v1");
    let header = bytes[..HEADER_LEN].to_vec();
    let mut plain = gcm(&m, &header, &bytes[at..at + l.cis_len], false).unwrap();
    edit(&mut plain);
    let sealed = gcm(&m, &header, &plain, true).unwrap();
    assert_eq!(sealed.len(), l.cis_len);
    bytes[at..at + l.cis_len].copy_from_slice(&sealed);
}

fn replace(hay: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let i = hay.windows(from.len()).position(|w| w == from).unwrap();
    hay[i..i + to.len()].copy_from_slice(to);
}

fn issuer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/issuer")
}

/// The test issuer (TEST ISSUER — NOT FOR PRODUCTION; its secret is a fixture).
fn test_issuer() -> IssuerSecret {
    IssuerSecret::from_export(&std::fs::read(issuer_dir().join("test-issuer.secret")).unwrap())
        .unwrap()
}

fn test_issuer_public() -> IssuerPublic {
    IssuerPublic::from_export(&std::fs::read(issuer_dir().join("test-issuer.pub")).unwrap())
        .unwrap()
}

/// The key-agreement secret of the vector card `seed`.
fn agreement_secret(seed: u8) -> p256::SecretKey {
    p256::SecretKey::from_slice(&[seed ^ 0x80; 32]).unwrap()
}

fn agreement(seed: u8) -> PublicKey {
    PublicKey::from_verifying_key(&agreement_secret(seed).public_key().into())
}

/// An emulated card holding the keys of vector card `seed`, attested by the test issuer
/// until 2100.
fn live_card(dir: &tempfile::TempDir, seed: u8) -> Card {
    let id = card(seed);
    let mut s = CardState::generate(&mut OsRng, id.origin, "vector card");
    s.serial = id.serial;
    s.key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    s.agreement = agreement_secret(seed);
    s.attestation = Some(test_issuer().attest(&s.attested_card(), 0, 4_102_444_800));
    Card::new(Box::new(
        EmulatedCard::create(dir.path().join(format!("{seed}.state")), &s).unwrap(),
    ))
}

fn card(seed: u8) -> CardIdentity {
    let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    CardIdentity {
        serial: Serial([seed; 16]),
        public_key: PublicKey::from_verifying_key(sk.verifying_key()),
        origin: 7,
    }
}

fn cis(policy: &str, content_key: &ContentKey) -> Cis {
    let mut lic = [0u8; 16];
    OsRng.fill_bytes(&mut lic);
    Cis {
        licence: LicenceId(lic),
        document: DocumentId([0xd0; 16]),
        card: card(3),
        card_agreement_key: agreement(3),
        issuers: vec![test_issuer_public()],
        customer_name: "Ada Lovelace".into(),
        content_key: content_key.clone(),
        limits: Limits::parse(format!("tally-policy/1\n{policy}").as_bytes()).unwrap(),
        allow_emulated_card: false,
        server: None,
        issued_at: time::macros::datetime!(2026-11-25 13:00:00 UTC),
    }
}

fn write(
    name: &str,
    expect: &str,
    comment: &str,
    trust: &str,
    trace: &str,
    key: &ContentKey,
    bytes: &[u8],
) {
    vector::write(
        "keyfile",
        name,
        &[
            ("expect", expect),
            ("comment", comment),
            ("trust", trust),
            ("trace", trace),
            ("content-key", &hex::encode(key.as_bytes())),
        ],
        bytes,
    );
}

#[test]
#[ignore = "writes tests/data/keyfile; run with TALLY_REGEN_VECTORS=1"]
fn regenerate_keyfile_vectors() {
    if std::env::var_os("TALLY_REGEN_VECTORS").is_none() {
        return;
    }
    let dir = trust_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let g = Gen {
        vendor: VendorSecret::generate("Vector Press", true, &mut OsRng).unwrap(),
        mallory: VendorSecret::generate("Mallory Press", true, &mut OsRng).unwrap(),
    };
    std::fs::write(
        dir.join("vendor.secret"),
        g.vendor
            .seal(PASSWORD, KdfParams::FLOOR, &mut OsRng)
            .unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("vendor.pub"),
        g.vendor.public().to_export(&g.vendor),
    )
    .unwrap();
    std::fs::write(
        dir.join("mallory.pub"),
        g.mallory.public().to_export(&g.mallory),
    )
    .unwrap();
    let _ =
        std::fs::remove_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keyfile"));

    let key = ContentKey::generate(&mut OsRng);
    let lk = *g.vendor.public().layout_key();
    let valid = "Ada Lovelace (signature valid)";
    let invalid = "Ada Lovelace (signature invalid)";
    let base = Keyfile::issue(
        &g.vendor,
        &cis("pages 300\nnot-after 2026-12-31\nallow print\n", &key),
        &mut OsRng,
    )
    .unwrap();
    write(
        "ok-basic",
        "ok",
        "pages, a date and the print right",
        "vendor.pub",
        valid,
        &key,
        &base,
    );

    let mut c = cis(
        "opens 5\nallow copy\nweights offset=+01:00 default=2\nband 20:00-06:00 1\nrule any(pages 100, units 50)\n",
        &key,
    );
    c.allow_emulated_card = true;
    c.server = Some(ServerInfo {
        url: "https://validate.example.com/tally".into(),
        public_key: card(9).public_key,
        require_online_every_days: Some(30),
    });
    let rich = Keyfile::issue(&g.vendor, &c, &mut OsRng).unwrap();
    write(
        "ok-server-weights-rule",
        "ok",
        "server, weights, an and/or rule, emulated card allowed",
        "mallory.pub,vendor.pub",
        valid,
        &key,
        &rich,
    );

    let l = layout(&base, &lk);
    let rs = region_start();
    let n = base.len();
    let mut cases: Vec<(&str, &str, &str, &str, Vec<u8>)> = Vec::new();
    let mut add =
        |name, expect, comment, trace, bytes| cases.push((name, expect, comment, trace, bytes));

    add("empty", "truncated", "no bytes at all", "truncated", vec![]);
    add(
        "truncated-last-byte",
        "truncated",
        "the signature's last byte cut off",
        "truncated",
        base[..n - 1].to_vec(),
    );
    add(
        "truncated-after-header",
        "truncated",
        "only the 61-byte header",
        "truncated",
        base[..HEADER_LEN].to_vec(),
    );
    let mut b = base.clone();
    b.extend_from_slice(b"garbage");
    add(
        "trailing-garbage",
        "trailing-data",
        "seven bytes after the signature",
        "trailing-data",
        b,
    );
    let mut b = base.clone();
    b.extend_from_slice(&base[n - SIGNATURE_LEN..]);
    add(
        "trailing-second-signature",
        "trailing-data",
        "the signature appended twice",
        "trailing-data",
        b,
    );
    let mut b = base.clone();
    b[..8].copy_from_slice(b"%PDF-1.7");
    add(
        "pdf-magic",
        "bad-magic",
        "a PDF's first bytes instead of TALLYKEY",
        "bad-magic",
        b,
    );
    let mut b = base.clone();
    b[8] = 1;
    add(
        "version-1",
        "unsupported-version",
        "format version 1 (content key under a built-in secret; algorithms are pinned per version, T28, T37)",
        "unsupported-version",
        b,
    );
    let mut b = base.clone();
    b[8] = 3;
    add(
        "version-3",
        "unsupported-version",
        "format version 3 (from the future)",
        "unsupported-version",
        b,
    );
    let mut b = base.clone();
    b[9] ^= 1;
    add(
        "flip-vendor-fingerprint",
        "unknown-vendor",
        "first byte of the vendor fingerprint flipped",
        "unknown-vendor",
        b,
    );
    let mut b = base.clone();
    b[41] ^= 1;
    add(
        "flip-salt",
        "bad-signature",
        "first salt byte flipped (the CIS would move)",
        "trace-unreadable",
        b,
    );
    let mut b = base.clone();
    b[57..61].copy_from_slice(&((l.cis_len + 512) as u32).to_be_bytes());
    add(
        "cis-length-plus-512",
        "truncated",
        "CIS length grown by one block",
        "truncated",
        b,
    );
    let mut b = base.clone();
    b[57..61].copy_from_slice(&((l.cis_len + 1) as u32).to_be_bytes());
    add(
        "cis-length-odd",
        "bad-header",
        "CIS length not 512k + 16",
        "bad-header",
        b,
    );
    let mut b = base.clone();
    b[HEADER_LEN + 70] ^= 1;
    add(
        "flip-sealed-identity",
        "bad-signature",
        "a byte of the sealed identity flipped",
        "trace-unreadable",
        b,
    );
    let mut b = base.clone();
    b[rs] ^= 0x80;
    add(
        "flip-first-region-byte",
        "bad-signature",
        "first byte of the decoy region flipped",
        invalid,
        b,
    );
    let mut b = base.clone();
    b[n - SIGNATURE_LEN - 1] ^= 0x80;
    add(
        "flip-last-region-byte",
        "bad-signature",
        "last byte before the signature flipped",
        invalid,
        b,
    );
    let mut b = base.clone();
    b[rs + l.offset + 10] ^= 1;
    add(
        "flip-cis-byte",
        "bad-signature",
        "a byte inside the encrypted CIS flipped",
        invalid,
        b,
    );
    let mut b = base.clone();
    b[n - 1] ^= 1;
    add(
        "flip-signature",
        "bad-signature",
        "last signature byte flipped",
        invalid,
        b,
    );
    // High-S twin of the valid signature: mathematically valid, refused as malleated.
    let mut b = base.clone();
    let sig = p256::ecdsa::Signature::from_slice(&b[n - 64..]).unwrap();
    let (r, s) = sig.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    b[n - 64..].copy_from_slice(&high.to_bytes());
    add(
        "high-s-signature",
        "bad-signature",
        "the signature's s replaced by n - s (T8)",
        invalid,
        b,
    );
    // Decoys moved: two 500-byte decoy blocks away from the CIS swapped.
    let mut b = base.clone();
    let (x, y) = if l.offset > 2_000 {
        (0, 1_000)
    } else {
        (l.offset + l.cis_len + 100, l.offset + l.cis_len + 1_100)
    };
    let (bx, by) = (
        b[rs + x..rs + x + 500].to_vec(),
        b[rs + y..rs + y + 500].to_vec(),
    );
    b[rs + x..rs + x + 500].copy_from_slice(&by);
    b[rs + y..rs + y + 500].copy_from_slice(&bx);
    add(
        "decoys-moved",
        "bad-signature",
        "two 500-byte decoy blocks swapped",
        invalid,
        b,
    );
    // CIS moved: cut out and re-inserted 1,000 bytes away.
    let mut b = base.clone();
    let region = b[rs..n - SIGNATURE_LEN].to_vec();
    let cis_bytes = region[l.offset..l.offset + l.cis_len].to_vec();
    let mut decoys = region[..l.offset].to_vec();
    decoys.extend_from_slice(&region[l.offset + l.cis_len..]);
    let to = (l.offset + 1_000) % (DECOY_BYTES + 1);
    let mut moved = decoys[..to].to_vec();
    moved.extend_from_slice(&cis_bytes);
    moved.extend_from_slice(&decoys[to..]);
    b[rs..n - SIGNATURE_LEN].copy_from_slice(&moved);
    add(
        "cis-moved",
        "bad-signature",
        "the encrypted CIS moved 1,000 bytes along the decoys",
        invalid,
        b,
    );
    // Limits edited, re-encrypted properly, signature kept (T24).
    let mut b = base.clone();
    edit_cis(&mut b, &lk, |p| replace(p, b"pages 300\n", b"pages 900\n"));
    add(
        "limits-edited",
        "bad-signature",
        "pages 300 -> 900 inside a correctly re-encrypted CIS",
        invalid,
        b,
    );
    let mut b = base.clone();
    edit_cis(&mut b, &lk, |p| {
        replace(p, b"not-after 2026-12-31", b"not-after 2099-12-31")
    });
    add(
        "date-edited",
        "bad-signature",
        "not-after moved to 2099 inside a re-encrypted CIS",
        invalid,
        b,
    );
    let mut b = base.clone();
    let other = card(4);
    edit_cis(&mut b, &lk, |p| {
        replace(
            p,
            card(3).public_key.as_bytes(),
            other.public_key.as_bytes(),
        )
    });
    add(
        "card-key-swapped",
        "bad-signature",
        "the card public key replaced by another card's",
        invalid,
        b,
    );
    // Re-signed by other keys (T22).
    let m = Keyfile::issue(&g.mallory, &cis("", &key), &mut OsRng).unwrap();
    add(
        "signed-by-unknown-vendor",
        "unknown-vendor",
        "a well-formed keyfile of a vendor not trusted",
        "unknown-vendor",
        m.clone(),
    );
    let mut b = m.clone();
    b[9..41].copy_from_slice(&g.vendor.public().fingerprint());
    resign(&mut b, &g.mallory);
    add(
        "relabelled-and-resigned",
        "bad-signature",
        "another vendor's keyfile relabelled with the trusted fingerprint and re-signed with its own key",
        "trace-unreadable",
        b,
    );
    let mut b = base.clone();
    edit_cis(&mut b, &lk, |p| replace(p, b"pages 300\n", b"pages 900\n"));
    resign(&mut b, &g.mallory);
    add(
        "limits-edited-resigned-by-other-key",
        "bad-signature",
        "limits edited and the whole file re-signed by a key that is not the vendor's",
        invalid,
        b,
    );
    // Signed by the real vendor but inside malformed: the paths after the signature.
    let mut b = base.clone();
    let at = rs + l.offset;
    OsRng.fill_bytes(&mut b[at..at + l.cis_len]);
    resign(&mut b, &g.vendor);
    add(
        "signed-cis-garbage",
        "cis-unreadable",
        "vendor-signed, but the CIS is random bytes",
        valid,
        b,
    );
    let mut b = base.clone();
    edit_cis(&mut b, &lk, |p| {
        replace(p, b"page-block 10\n", b"page-block 0x\n")
    });
    resign(&mut b, &g.vendor);
    add(
        "signed-bad-policy",
        "policy",
        "vendor-signed, but the policy text is malformed",
        valid,
        b,
    );
    // Vendor-signed, refuses emulated cards, but the issuer list emptied: nothing could
    // ever open it, so the parser refuses it.
    let mut b = base.clone();
    let issuer_key = test_issuer_public().key().as_bytes().to_vec();
    let name_len = test_issuer_public().name().len();
    edit_cis(&mut b, &lk, |p| {
        let at = p
            .windows(issuer_key.len())
            .position(|w| w == &issuer_key[..])
            .unwrap();
        let start = at - name_len - 2 - 1;
        assert_eq!(p[start], 1, "issuer count");
        for x in &mut p[start..] {
            *x = 0;
        }
    });
    resign(&mut b, &g.vendor);
    add(
        "signed-no-issuer",
        "bad-cis",
        "vendor-signed, refuses emulated cards, but names no card issuer",
        valid,
        b,
    );
    for (name, expect, comment, trace, bytes) in cases {
        write(name, expect, comment, "vendor.pub", trace, &key, &bytes);
    }
}
