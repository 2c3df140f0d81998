//! Card attestation, as FIDO authenticators and PIV cards do it: the card's issuer signs,
//! at personalisation, a certificate binding the card's serial, origin, signing key and
//! key-agreement key, with validity dates. The card hands it out (GET_ATTESTATION); a
//! publisher accepts only cards whose certificate one of its accepted issuers signed, and
//! the keyfile carries those issuers (vendor-signed) so every opening re-checks the live
//! card (T16, T36).
//!
//! Why: the reader controls the machine, so anything a program can make — an emulated
//! card's state file served through vpcd and pcscd included — must not pass as a card.
//! Only a key the issuer certified to live in a card can.
//!
//! The certificate is a fixed 275-byte binary structure (`docs/card-protocol.md` §8):
//!
//! ```text
//! magic           "TALLYATT"                                  8
//! version         01                                          1
//! issuer          fingerprint of the issuer's P-256 key       32
//! serial                                                      16
//! origin          u64                                          8
//! signing key     SEC1 uncompressed P-256                     65
//! agreement key   SEC1 uncompressed P-256                     65
//! not before      i64 Unix seconds                             8
//! not after       i64 Unix seconds                             8
//! signature       ECDSA P-256/SHA-256 r‖s, low-S, over
//!                 "tally/card-attestation/v1\0" ‖ the 211 bytes above   64
//! ```

use super::Serial;
use crate::crypto::{self, Hash, PublicKey, Signature};
use p256::ecdsa::SigningKey;
use std::fmt;
use time::OffsetDateTime;

/// First bytes of every attestation certificate.
pub const ATTESTATION_MAGIC: &[u8; 8] = b"TALLYATT";
/// The only certificate version this build reads.
pub const ATTESTATION_VERSION: u8 = 1;
/// Length of a version-1 certificate.
pub const ATTESTATION_LEN: usize = 8 + 1 + 32 + 16 + 8 + 65 + 65 + 8 + 8 + 64;
/// The host reads at most this many bytes of attestation from a card; more is refused
/// (a hostile card must not make the host allocate without bound, T25).
pub const MAX_ATTESTATION_BYTES: usize = 1024;
/// At most this many accepted issuers travel in one keyfile.
pub const MAX_ISSUERS: usize = 8;
/// Longest issuer name, in bytes.
pub const MAX_ISSUER_NAME: usize = 64;
const SIG_TAG: &[u8] = b"tally/card-attestation/v1\0";
const FINGERPRINT_TAG: &[u8] = b"tally/card-issuer/v1";
/// First line of an issuer's public file.
pub const ISSUER_PUBLIC_MAGIC: &str = "tally-card-issuer/1";
/// First line of an issuer's secret file.
pub const ISSUER_SECRET_MAGIC: &str = "tally-card-issuer-secret/1";
/// Issuer files larger than this are refused unread.
pub const ISSUER_FILE_MAX_BYTES: usize = 2048;

/// Why an attestation (or an issuer file) was refused. Each names what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The card holds no attestation at all: an emulated card, or a card nobody vouched for.
    #[error("the card has no issuer attestation (an emulated card, or one no issuer vouched for)")]
    Missing,
    /// The card's attestation is larger than [`MAX_ATTESTATION_BYTES`].
    #[error("the card's attestation is too large (more than {MAX_ATTESTATION_BYTES} bytes)")]
    TooLarge,
    /// The certificate is not a well-formed version-1 certificate.
    #[error("the card's attestation is malformed: {0}")]
    Malformed(&'static str),
    /// Signed by an issuer that is not among the accepted ones.
    #[error("the card's attestation is from an issuer that is not accepted (issuer {0})")]
    UnknownIssuer(String),
    /// The issuer's signature over the certificate does not verify.
    #[error("the card's attestation signature does not verify: the certificate was changed")]
    BadSignature,
    /// The certificate is for another serial than the card's.
    #[error("the card's attestation is for card {attested}, not for this card {card}")]
    WrongSerial {
        /// The serial in the certificate, hex.
        attested: String,
        /// The card's serial, hex.
        card: String,
    },
    /// The certificate binds another origin than the card's.
    #[error("the card's attestation names another counter origin than the card's")]
    WrongOrigin,
    /// The certificate binds another signing key than the card's.
    #[error("the card's attestation binds another signing key than the card's")]
    WrongSigningKey,
    /// The certificate binds another key-agreement key than the card's.
    #[error("the card's attestation binds another key-agreement key than the card's")]
    WrongAgreementKey,
    /// Now is before the certificate's first valid day.
    #[error("the card's attestation is not valid before {0}")]
    NotYetValid(String),
    /// Now is after the certificate's last valid day.
    #[error("the card's attestation expired on {0}")]
    Expired(String),
    /// An issuer file is malformed.
    #[error("card issuer file: {0}")]
    BadIssuerFile(String),
}

/// A card issuer as a publisher accepts it: a name for people and a P-256 key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IssuerPublic {
    name: String,
    key: PublicKey,
}

fn check_issuer_name(name: &str) -> Result<(), AttestationError> {
    if name.is_empty()
        || name.len() > MAX_ISSUER_NAME
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(AttestationError::BadIssuerFile(format!(
            "issuer name must be 1–{MAX_ISSUER_NAME} bytes without control characters or outer spaces"
        )));
    }
    Ok(())
}

/// Parses `magic\nkey: value\n…` with exactly the given keys, each once.
fn parse_fields<'a, const N: usize>(
    bytes: &'a [u8],
    magic: &str,
    keys: [&'static str; N],
) -> Result<[&'a str; N], AttestationError> {
    let bad = |m: String| AttestationError::BadIssuerFile(m);
    if bytes.len() > ISSUER_FILE_MAX_BYTES {
        return Err(bad(format!(
            "larger than {ISSUER_FILE_MAX_BYTES} bytes ({})",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let mut lines = text.lines();
    if lines.next() != Some(magic) {
        return Err(bad(format!("first line must be `{magic}`")));
    }
    let mut out: [Option<&str>; N] = [None; N];
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(": ")
            .ok_or_else(|| bad(format!("line {}: expected `key: value`", i + 2)))?;
        let slot = keys.iter().position(|want| *want == k).ok_or_else(|| {
            bad(format!(
                "unknown field `{}`",
                k.chars().take(40).collect::<String>()
            ))
        })?;
        if out[slot].replace(v).is_some() {
            return Err(bad(format!("`{k}` given twice")));
        }
    }
    let mut res = [""; N];
    for (i, k) in keys.iter().enumerate() {
        res[i] = out[i].ok_or_else(|| bad(format!("missing `{k}`")))?;
    }
    Ok(res)
}

impl IssuerPublic {
    /// An issuer from its name and key; the name is checked.
    pub fn new(name: &str, key: PublicKey) -> Result<Self, AttestationError> {
        check_issuer_name(name)?;
        Ok(Self {
            name: name.to_string(),
            key,
        })
    }

    /// The issuer's name, e.g. "TEST ISSUER — NOT FOR PRODUCTION".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer's P-256 key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The fingerprint certificates name their issuer by.
    pub fn fingerprint(&self) -> Hash {
        issuer_fingerprint(&self.key)
    }

    /// True for issuers whose name says they are for tests (tools warn about them).
    pub fn is_test_issuer(&self) -> bool {
        self.name.to_ascii_uppercase().contains("TEST")
    }

    /// The public file (`tally-card-issuer/1`).
    pub fn to_export(&self) -> String {
        format!(
            "{ISSUER_PUBLIC_MAGIC}\nname: {}\npublic-key: {}\n",
            self.name,
            hex::encode(self.key.as_bytes())
        )
    }

    /// Parses a public file strictly.
    pub fn from_export(bytes: &[u8]) -> Result<Self, AttestationError> {
        let [name, key] = parse_fields(bytes, ISSUER_PUBLIC_MAGIC, ["name", "public-key"])?;
        let key = hex::decode(key)
            .ok()
            .and_then(|k| PublicKey::from_sec1(&k).ok())
            .ok_or_else(|| {
                AttestationError::BadIssuerFile("public-key is not a hex P-256 point".into())
            })?;
        Self::new(name, key)
    }
}

fn issuer_fingerprint(key: &PublicKey) -> Hash {
    crypto::tagged_hash(FINGERPRINT_TAG, &[key.as_bytes()])
}

/// A card issuer's signing key: it attests cards at personalisation. The test issuer's
/// secret lives in the test fixtures; a real issuer keeps its own in its factory.
pub struct IssuerSecret {
    public: IssuerPublic,
    key: SigningKey,
}

// The only secret is p256's `SigningKey`, which zeroizes itself on drop.
impl zeroize::ZeroizeOnDrop for IssuerSecret {}

impl fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSecret")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl IssuerSecret {
    /// A new issuer with a random key.
    pub fn generate(
        name: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Self, AttestationError> {
        let key = SigningKey::random(rng);
        Self::from_key(name, key)
    }

    fn from_key(name: &str, key: SigningKey) -> Result<Self, AttestationError> {
        let public = IssuerPublic::new(name, PublicKey::from_verifying_key(key.verifying_key()))?;
        Ok(Self { public, key })
    }

    /// The public half.
    pub fn public(&self) -> &IssuerPublic {
        &self.public
    }

    /// The secret file (`tally-card-issuer-secret/1`); it holds the key in the clear.
    pub fn to_export(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!(
            "{ISSUER_SECRET_MAGIC}\nname: {}\nsecret-key: {}\n",
            self.public.name,
            hex::encode(self.key.to_bytes())
        ))
    }

    /// Parses a secret file strictly.
    pub fn from_export(bytes: &[u8]) -> Result<Self, AttestationError> {
        let [name, key] = parse_fields(bytes, ISSUER_SECRET_MAGIC, ["name", "secret-key"])?;
        let raw = zeroize::Zeroizing::new(
            hex::decode(key)
                .map_err(|_| AttestationError::BadIssuerFile("secret-key is not hex".into()))?,
        );
        let key = SigningKey::from_slice(&raw).map_err(|_| {
            AttestationError::BadIssuerFile("secret-key is not a P-256 scalar".into())
        })?;
        Self::from_key(name, key)
    }

    /// Signs a certificate for a card (the issuer's step at personalisation).
    pub fn attest(&self, subject: &AttestedCard, not_before: i64, not_after: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(ATTESTATION_LEN);
        out.extend_from_slice(ATTESTATION_MAGIC);
        out.push(ATTESTATION_VERSION);
        out.extend_from_slice(&self.public.fingerprint());
        out.extend_from_slice(&subject.serial.0);
        out.extend_from_slice(&subject.origin.to_be_bytes());
        out.extend_from_slice(subject.signing_key.as_bytes());
        out.extend_from_slice(subject.agreement_key.as_bytes());
        out.extend_from_slice(&not_before.to_be_bytes());
        out.extend_from_slice(&not_after.to_be_bytes());
        let sig = crypto::sign_low_s(&self.key, &signed_message(&out));
        out.extend_from_slice(&sig.0);
        out
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_TAG.len() + body.len());
    m.extend_from_slice(SIG_TAG);
    m.extend_from_slice(body);
    m
}

/// What a certificate says about a card (and what a card presents about itself).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttestedCard {
    /// Serial number.
    pub serial: Serial,
    /// Counter origin.
    pub origin: u64,
    /// The signing key (records, \[0053\]).
    pub signing_key: PublicKey,
    /// The key-agreement key (content keys are wrapped to it).
    pub agreement_key: PublicKey,
}

/// A parsed certificate; nothing in it is believed until [`Attestation::verify`] passes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attestation {
    issuer: Hash,
    subject: AttestedCard,
    not_before: i64,
    not_after: i64,
    signature: Signature,
    body: Vec<u8>,
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}

impl Attestation {
    /// Parses a certificate strictly (exact length, magic, version, points on the curve,
    /// dates in order). Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_ATTESTATION_BYTES {
            return Err(AttestationError::TooLarge);
        }
        if bytes.len() < 9 {
            return Err(AttestationError::Malformed("shorter than its header"));
        }
        if &bytes[..8] != ATTESTATION_MAGIC {
            return Err(AttestationError::Malformed("not a Tally card attestation"));
        }
        if bytes[8] != ATTESTATION_VERSION {
            return Err(AttestationError::Malformed(
                "unsupported certificate version",
            ));
        }
        if bytes.len() != ATTESTATION_LEN {
            return Err(AttestationError::Malformed(
                "a version-1 certificate is exactly 275 bytes",
            ));
        }
        let arr = |i: usize| -> [u8; 8] {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[i..i + 8]);
            a
        };
        let mut issuer = [0u8; 32];
        issuer.copy_from_slice(&bytes[9..41]);
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&bytes[41..57]);
        let origin = u64::from_be_bytes(arr(57));
        let signing_key = PublicKey::from_sec1(&bytes[65..130])
            .map_err(|_| AttestationError::Malformed("the signing key is not a P-256 point"))?;
        let agreement_key = PublicKey::from_sec1(&bytes[130..195]).map_err(|_| {
            AttestationError::Malformed("the key-agreement key is not a P-256 point")
        })?;
        let not_before = i64::from_be_bytes(arr(195));
        let not_after = i64::from_be_bytes(arr(203));
        if not_before > not_after {
            return Err(AttestationError::Malformed(
                "the validity ends before it begins",
            ));
        }
        let signature = Signature::from_slice(&bytes[211..])
            .ok_or(AttestationError::Malformed("signature is not 64 bytes"))?;
        Ok(Self {
            issuer,
            subject: AttestedCard {
                serial: Serial(serial),
                origin,
                signing_key,
                agreement_key,
            },
            not_before,
            not_after,
            signature,
            body: bytes[..211].to_vec(),
        })
    }

    /// The fingerprint of the issuer the certificate names.
    pub fn issuer_fingerprint(&self) -> &Hash {
        &self.issuer
    }

    /// What the certificate claims about the card (unverified until [`verify`](Self::verify)).
    pub fn subject(&self) -> &AttestedCard {
        &self.subject
    }

    /// First and last valid instants, Unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        (self.not_before, self.not_after)
    }

    /// Checks, in this order: an accepted issuer signed it; it names `card`'s serial,
    /// signing key, key-agreement key and origin; `now` is within its dates. Returns the
    /// issuer that vouches for the card.
    pub fn verify<'i>(
        &self,
        accepted: &'i [IssuerPublic],
        card: &AttestedCard,
        now: OffsetDateTime,
    ) -> Result<&'i IssuerPublic, AttestationError> {
        let issuer = accepted
            .iter()
            .find(|i| i.fingerprint() == self.issuer)
            .ok_or_else(|| AttestationError::UnknownIssuer(hex::encode(&self.issuer[..8])))?;
        if !crypto::default_verifier().verify(
            issuer.key(),
            &signed_message(&self.body),
            &self.signature,
        ) {
            return Err(AttestationError::BadSignature);
        }
        let s = &self.subject;
        if s.serial != card.serial {
            return Err(AttestationError::WrongSerial {
                attested: s.serial.to_hex(),
                card: card.serial.to_hex(),
            });
        }
        if s.signing_key != card.signing_key {
            return Err(AttestationError::WrongSigningKey);
        }
        if s.agreement_key != card.agreement_key {
            return Err(AttestationError::WrongAgreementKey);
        }
        if s.origin != card.origin {
            return Err(AttestationError::WrongOrigin);
        }
        let now = now.unix_timestamp();
        if now < self.not_before {
            return Err(AttestationError::NotYetValid(date(self.not_before)));
        }
        if now > self.not_after {
            return Err(AttestationError::Expired(date(self.not_after)));
        }
        Ok(issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(seed: u8) -> (AttestedCard, SigningKey) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let ak = SigningKey::from_slice(&[seed + 1; 32]).unwrap();
        (
            AttestedCard {
                serial: Serial([seed; 16]),
                origin: 5,
                signing_key: PublicKey::from_verifying_key(sk.verifying_key()),
                agreement_key: PublicKey::from_verifying_key(ak.verifying_key()),
            },
            sk,
        )
    }

    #[test]
    fn round_trip_and_each_check_named() {
        let issuer = IssuerSecret::generate("TEST ISSUER", &mut rand_core::OsRng).unwrap();
        let (card, _) = subject(3);
        let cert = issuer.attest(&card, 0, 2_000_000_000);
        assert_eq!(cert.len(), ATTESTATION_LEN);
        let a = Attestation::parse(&cert).unwrap();
        let ok = [issuer.public().clone()];
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(a.verify(&ok, &card, now).unwrap().name(), "TEST ISSUER");
        assert!(matches!(
            a.verify(&[], &card, now),
            Err(AttestationError::UnknownIssuer(_))
        ));
        let (other, _) = subject(9);
        assert!(matches!(
            a.verify(&ok, &other, now),
            Err(AttestationError::WrongSerial { .. })
        ));
        let late = OffsetDateTime::from_unix_timestamp(2_000_000_001).unwrap();
        assert!(matches!(
            a.verify(&ok, &card, late),
            Err(AttestationError::Expired(_))
        ));
        // Every flipped bit is refused (parse or verify).
        for i in 0..cert.len() {
            for bit in 0..8 {
                let mut bad = cert.clone();
                bad[i] ^= 1 << bit;
                let r = Attestation::parse(&bad).and_then(|a| a.verify(&ok, &card, now).cloned());
                assert!(r.is_err(), "flip at {i}.{bit} accepted");
            }
        }
        for n in 0..cert.len() {
            assert!(Attestation::parse(&cert[..n]).is_err());
        }
    }

    #[test]
    fn issuer_files_round_trip_and_refuse_garbage() {
        let issuer = IssuerSecret::generate("Card Works", &mut rand_core::OsRng).unwrap();
        let back = IssuerSecret::from_export(issuer.to_export().as_bytes()).unwrap();
        assert_eq!(back.public(), issuer.public());
        let public = IssuerPublic::from_export(issuer.public().to_export().as_bytes()).unwrap();
        assert_eq!(&public, issuer.public());
        assert!(!format!("{issuer:?}").contains(&hex::encode(issuer.key.to_bytes())));
        for bad in [
            &b""[..],
            b"tally-card-issuer/1\nname: x\n",
            b"tally-card-issuer/1\nname: x\npublic-key: 00\n",
            b"tally-card-issuer/2\nname: x\npublic-key: 00\n",
        ] {
            assert!(IssuerPublic::from_export(bad).is_err());
        }
    }
}
