//! The ECIES framing shared by the reader's encrypted messages to the validation server
//! (the trail validation request, the restore request): an ephemeral P-256 key, ECDH
//! with the server key, HKDF-SHA-256 with both public keys as salt and a per-message info
//! (domain separation), AES-256-GCM with the header as associated data.
//!
//! ```text
//! header = magic (8) · version u8 · ephemeral P-256 key 65 (SEC1)
//! key, nonce = HKDF-SHA-256(ECDH(ephemeral, server), salt = ephemeral ‖ server, info) → 32 + 12
//! ```

use super::ValidationError;
use crate::crypto::PublicKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// Bytes of the header.
pub(super) const HEADER_LEN: usize = 8 + 1 + 65;

/// The ECDH result of one message, from which each of its keys is derived.
pub(super) struct Shared {
    secret: Zeroizing<Vec<u8>>,
    salt: Vec<u8>,
}

impl Shared {
    fn new(secret: &[u8], eph: &PublicKey, server: &PublicKey) -> Self {
        let mut salt = Vec::with_capacity(130);
        salt.extend_from_slice(eph.as_bytes());
        salt.extend_from_slice(server.as_bytes());
        Self {
            secret: Zeroizing::new(secret.to_vec()),
            salt,
        }
    }

    /// An AES-256-GCM key and nonce for `info`.
    pub(super) fn key(&self, info: &[u8]) -> Zeroizing<[u8; 44]> {
        crate::keyfile::derive(&self.secret, &self.salt, info)
    }
}

/// A fresh ephemeral key for a message to `server`: its header and the shared secret.
pub(super) fn start(
    server: &PublicKey,
    magic: &[u8; 8],
    version: u8,
    rng: &mut impl CryptoRngCore,
) -> (Vec<u8>, Shared) {
    let eph = p256::ecdh::EphemeralSecret::random(rng);
    let eph_pub = PublicKey::from_verifying_key(&p256::ecdsa::VerifyingKey::from(eph.public_key()));
    let shared = eph.diffie_hellman(&p256::PublicKey::from(server.verifying_key()));
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(magic);
    header.push(version);
    header.extend_from_slice(eph_pub.as_bytes());
    (
        header,
        Shared::new(shared.raw_secret_bytes(), &eph_pub, server),
    )
}

/// The server's side: checks the header of `bytes` (at least [`HEADER_LEN`] long; the
/// caller checks the length range) and computes the shared secret.
pub(super) fn open(
    secret: &p256::SecretKey,
    server: &PublicKey,
    magic: &[u8; 8],
    version: u8,
    what: &'static str,
    bytes: &[u8],
) -> Result<Shared, ValidationError> {
    if bytes.len() < HEADER_LEN {
        return Err(ValidationError::BadField("message shorter than its header"));
    }
    if &bytes[..8] != magic {
        return Err(ValidationError::BadMagic(what));
    }
    if bytes[8] != version {
        return Err(ValidationError::UnsupportedVersion {
            what,
            version: bytes[8],
        });
    }
    let eph = PublicKey::from_sec1(&bytes[9..HEADER_LEN]).map_err(|_| {
        ValidationError::BadField("the ephemeral key of the message is not a P-256 point")
    })?;
    let shared = p256::ecdh::diffie_hellman(
        secret.to_nonzero_scalar(),
        p256::PublicKey::from(eph.verifying_key()).as_affine(),
    );
    Ok(Shared::new(shared.raw_secret_bytes(), &eph, server))
}
