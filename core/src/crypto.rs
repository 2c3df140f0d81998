//! Small cryptographic building blocks shared by the card, the trail and the keyfile.
//!
//! Everything here is pinned: ECDSA over P-256 with SHA-256, fixed 64-byte `r‖s`
//! signatures, 65-byte uncompressed SEC1 public keys, AES-256-GCM. No algorithm
//! identifier is ever read from a file, so there is nothing to confuse (T28).
//!
//! Which library does what (the design card names RustCrypto's `aes-gcm` and `rand`):
//! - AEAD: [`Aes256Gcm`], on `aes-gcm`. The only AEAD in Tally.
//! - Randomness: [`OsRng`], `rand`'s handle on the operating system's CSPRNG. Functions
//!   that need randomness take `&mut impl CryptoRngCore` so tests can inject their own.
//! - ECDSA verification: behind [`SignatureVerifier`] (the rustls pattern of small
//!   provider traits). [`default_verifier`] is [`RingVerifier`] because ring verifies
//!   about five times faster than `p256` here (`cargo bench -p tally-core --bench trail`
//!   prints both rates); [`P256Verifier`] is its RustCrypto twin, and both run every
//!   Wycheproof ECDSA P-256 vector (`core/tests/wycheproof.rs`).
//! - Signing, key agreement, SHA-256, HMAC, HKDF: `p256`, `sha2`, `hmac`, `hkdf`.

pub use rand::rngs::OsRng;

use p256::ecdsa::{Signature as P256Signature, VerifyingKey, signature::Verifier as _};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 over `parts`, each prefixed by its length as u32 big-endian, after a domain tag.
///
/// Length prefixes and the tag keep inputs of different shapes from ever colliding
/// (T9, after RFC 6962's domain separation).
pub fn tagged_hash(tag: &[u8], parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update((tag.len() as u32).to_be_bytes());
    h.update(tag);
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA-256 of the concatenated `parts` under `key` (RustCrypto `hmac`).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hash {
    use hmac::Mac as _;
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Plain SHA-256.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// A P-256 public key in uncompressed SEC1 form, known to be a valid point.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    sec1: [u8; 65],
}

impl PublicKey {
    /// Parses 65 bytes of uncompressed SEC1 (`04‖x‖y`); refuses anything off the curve.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 65 || bytes[0] != 0x04 {
            return Err(KeyError::Encoding);
        }
        VerifyingKey::from_sec1_bytes(bytes).map_err(|_| KeyError::NotOnCurve)?;
        let mut sec1 = [0u8; 65];
        sec1.copy_from_slice(bytes);
        Ok(Self { sec1 })
    }

    /// From a p256 verifying key.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let mut sec1 = [0u8; 65];
        sec1.copy_from_slice(point.as_bytes());
        Self { sec1 }
    }

    /// The 65 SEC1 bytes.
    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.sec1
    }

    /// SHA-256 of the SEC1 bytes: the fingerprint stored in trail headers and shown to people.
    pub fn fingerprint(&self) -> Hash {
        tagged_hash(b"tally/key-fingerprint/v1", &[&self.sec1])
    }

    /// The p256 form of the key.
    pub fn verifying_key(&self) -> VerifyingKey {
        // Checked in every constructor.
        VerifyingKey::from_sec1_bytes(&self.sec1).expect("PublicKey holds a valid point")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.fingerprint()[..8]))
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not 65 bytes of uncompressed SEC1.
    #[error("public key is not a 65-byte uncompressed P-256 point")]
    Encoding,
    /// The coordinates are not a point of P-256.
    #[error("public key is not a point on P-256")]
    NotOnCurve,
}

/// An ECDSA P-256 signature as fixed-width `r‖s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

/// Half the order of P-256, big-endian: signatures with a larger `s` are refused.
const HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0xc5, 0xe2, 0x5e, 0x11, 0xe8,
];

impl Signature {
    /// From exactly 64 bytes `r‖s`; anything else is refused.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// True when `s ≤ n/2`. Tally's cards always emit low-S signatures, so a high-S one
    /// is a re-encoded (malleated) signature and is refused.
    pub fn is_low_s(&self) -> bool {
        self.0[32..] <= HALF_N[..]
    }
}

/// Verifies ECDSA P-256/SHA-256 signatures. Behind a trait so the fast implementation
/// (ring) and the portable one (p256) are interchangeable and testable against the same vectors.
pub trait SignatureVerifier: Send + Sync {
    /// True only when `sig` is a valid low-S signature of `SHA-256(message)` under `key`.
    fn verify(&self, key: &PublicKey, message: &[u8], sig: &Signature) -> bool;
    /// A short name for reports.
    fn name(&self) -> &'static str;
}

/// ring's constant-time P-256 verifier: about five times faster than `p256` here.
#[derive(Debug, Default, Clone, Copy)]
pub struct RingVerifier;

impl SignatureVerifier for RingVerifier {
    fn verify(&self, key: &PublicKey, message: &[u8], sig: &Signature) -> bool {
        if !sig.is_low_s() {
            return false;
        }
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.as_bytes(),
        );
        key.verify(message, &sig.0).is_ok()
    }
    fn name(&self) -> &'static str {
        "ring"
    }
}

/// The RustCrypto `p256` verifier.
#[derive(Debug, Default, Clone, Copy)]
pub struct P256Verifier;

impl SignatureVerifier for P256Verifier {
    fn verify(&self, key: &PublicKey, message: &[u8], sig: &Signature) -> bool {
        if !sig.is_low_s() {
            return false;
        }
        let Ok(s) = P256Signature::from_slice(&sig.0) else {
            return false;
        };
        key.verifying_key().verify(message, &s).is_ok()
    }
    fn name(&self) -> &'static str {
        "p256"
    }
}

/// The fastest verifier available in this build.
pub fn default_verifier() -> &'static dyn SignatureVerifier {
    &RingVerifier
}

/// Signs with a p256 key and normalises to low-S, as every Tally signer must.
pub fn sign_low_s(key: &p256::ecdsa::SigningKey, message: &[u8]) -> Signature {
    use p256::ecdsa::signature::Signer as _;
    let sig: P256Signature = key.sign(message);
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut out = [0u8; 64];
    out.copy_from_slice(&sig.to_bytes());
    Signature(out)
}

/// AES-256-GCM with 96-bit nonces and 128-bit tags: the one AEAD Tally uses (pinned, T28),
/// implemented by RustCrypto's `aes-gcm` (the design card's choice; AES-NI and CLMUL are
/// detected at run time). Every user (packages, keyfiles, vendor secrets, validation
/// messages) goes through this type, and the Wycheproof vectors run through each of its
/// methods (`core/tests/wycheproof.rs`), so they test the code that protects real data
/// (T26). Failures are deliberately opaque ([`AeadError`]). The expanded key is zeroized on
/// drop (`aes-gcm`'s `zeroize` feature).
///
/// The methods work in place so that plaintext is never copied into a buffer that is
/// freed unzeroized: [`open_to_zeroizing`](Self::open_to_zeroizing) decrypts straight
/// into a [`Zeroizing`] buffer, and [`seal_to_vec`](Self::seal_to_vec) sizes its output
/// once so appending the tag never reallocates (a reallocation would leave the plaintext
/// behind in the freed block).
pub struct Aes256Gcm(aes_gcm::Aes256Gcm);

/// An AEAD operation failed. Deliberately carries no detail: a wrong key, a changed byte
/// and a truncated tag look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed")]
pub struct AeadError;

/// Length of an AES-GCM tag.
pub const AEAD_TAG_LEN: usize = 16;

impl Aes256Gcm {
    /// A key for AES-256-GCM.
    pub fn new(key: &[u8; 32]) -> Self {
        use aes_gcm::KeyInit as _;
        Self(aes_gcm::Aes256Gcm::new(key.into()))
    }

    /// Encrypts `buf` in place and returns the tag separately. The nonce must never repeat
    /// under one key.
    pub fn seal_in_place_separate_tag(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; AEAD_TAG_LEN], AeadError> {
        use aes_gcm::AeadInPlace as _;
        let tag = self
            .0
            .encrypt_in_place_detached(&nonce.into(), aad, buf)
            .map_err(|_| AeadError)?;
        Ok(tag.into())
    }

    /// Encrypts `buf` in place and appends the tag. Reserve [`AEAD_TAG_LEN`] spare bytes
    /// first if `buf` holds a secret: growing the vector would free the old block unzeroized.
    pub fn seal_in_place_append_tag(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AeadError> {
        let tag = self.seal_in_place_separate_tag(nonce, aad, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// `plain` encrypted, tag appended, in one allocation of the final size (no plaintext
    /// is left in a freed block).
    pub fn seal_to_vec(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, AeadError> {
        let mut buf = Vec::with_capacity(plain.len() + AEAD_TAG_LEN);
        buf.extend_from_slice(plain);
        match self.seal_in_place_append_tag(nonce, aad, &mut buf) {
            Ok(()) => Ok(buf),
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut buf);
                Err(e)
            }
        }
    }

    /// Decrypts `ciphertext` in place, checking it against the detached `tag`. On failure
    /// the buffer may hold unauthenticated plaintext (`aes-gcm` decrypts, then compares
    /// tags): keep it in a zeroizing buffer and drop it.
    pub fn open_in_place_detached(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        ciphertext: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> Result<(), AeadError> {
        use aes_gcm::AeadInPlace as _;
        self.0
            .decrypt_in_place_detached(&nonce.into(), aad, ciphertext, tag.into())
            .map_err(|_| AeadError)
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place; returns the plaintext part.
    pub fn open_in_place<'b>(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], AeadError> {
        let split = buf.len().checked_sub(AEAD_TAG_LEN).ok_or(AeadError)?;
        let (ct, tag) = buf.split_at_mut(split);
        let tag: [u8; AEAD_TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError)?;
        self.open_in_place_detached(nonce, aad, ct, &tag)?;
        Ok(ct)
    }

    /// Decrypts `sealed` (ciphertext ‖ tag) straight into a zeroizing buffer of exactly the
    /// plaintext's size: the only copy of the plaintext is the one returned.
    pub fn open_to_zeroizing(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let split = sealed.len().checked_sub(AEAD_TAG_LEN).ok_or(AeadError)?;
        let (ct, tag) = sealed.split_at(split);
        let tag: [u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| AeadError)?;
        let mut out = Zeroizing::new(Vec::with_capacity(ct.len()));
        out.extend_from_slice(ct);
        self.open_in_place_detached(nonce, aad, &mut out, &tag)?;
        Ok(out)
    }
}

impl fmt::Debug for Aes256Gcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aes256Gcm(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_verifiers_agree_and_refuse_high_s() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::from_verifying_key(sk.verifying_key());
        let sig = sign_low_s(&sk, b"hello");
        assert!(RingVerifier.verify(&pk, b"hello", &sig));
        assert!(P256Verifier.verify(&pk, b"hello", &sig));
        assert!(!RingVerifier.verify(&pk, b"hellp", &sig));
        // s' = n - s verifies mathematically but is refused as malleated.
        let parsed = P256Signature::from_slice(&sig.0).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = P256Signature::from_scalars(r, -*s).unwrap();
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&high.to_bytes());
        let high = Signature(bytes);
        assert!(!high.is_low_s());
        assert!(!RingVerifier.verify(&pk, b"hello", &high));
        assert!(!P256Verifier.verify(&pk, b"hello", &high));
    }

    #[test]
    fn tagged_hash_boundaries_do_not_collide() {
        let a = tagged_hash(b"t", &[b"ab", b"c"]);
        let b = tagged_hash(b"t", &[b"a", b"bc"]);
        let c = tagged_hash(b"tab", &[b"c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn off_curve_key_refused() {
        let mut bytes = [0u8; 65];
        bytes[0] = 4;
        bytes[1] = 1;
        assert_eq!(PublicKey::from_sec1(&bytes), Err(KeyError::NotOnCurve));
        assert_eq!(PublicKey::from_sec1(&bytes[..64]), Err(KeyError::Encoding));
    }
}
