//! The trail validation request of the validation service (\[0094\], \[0062\]): a reader sends
//! its whole trail file, encrypted to the validation server's key (the same ECIES as a
//! VAL_REQ, domain-separated by its own HKDF info), with its card's serial. The server
//! checks the trail against the card registered for that serial, answers with a signed
//! validator body (`trail::validator::vouch`), and keeps the envelope, still encrypted,
//! as the reader's backup (\[0062\]: "encrypt the audit trail before transmission").
//!
//! ```text
//! envelope  = "TALLYTRQ" (8) · version u8 = 1 · ephemeral P-256 key 65 (SEC1) ·
//!             AES-256-GCM(plaintext) + tag 16; associated data: the 74 header bytes
//! plaintext = card serial 16 · the trail file, byte for byte (header and frames)
//! key, nonce = HKDF-SHA-256(ECDH(ephemeral, server), salt = ephemeral ‖ server public keys,
//!              info = "tally/trail-req/ecies/v1") → 32 + 12 bytes
//! ```

use super::ValidationError;
use crate::card::Serial;
use crate::crypto::PublicKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"TALLYTRQ";
const VERSION: u8 = 1;
const HEADER_LEN: usize = super::ecies::HEADER_LEN;
const INFO: &[u8] = b"tally/trail-req/ecies/v1";
/// Largest trail file a request carries (about 500 000 records).
pub const MAX_TRAIL_REQUEST_TRAIL: usize = 64 << 20;
/// Largest envelope: header, serial, trail, tag.
pub const MAX_TRAIL_ENVELOPE: usize = HEADER_LEN + 16 + MAX_TRAIL_REQUEST_TRAIL + 16;

/// A decrypted trail validation request.
pub struct TrailRequest {
    /// The card the trail claims to belong to.
    pub serial: Serial,
    /// The trail file (zeroized on drop).
    pub trail: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TrailRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailRequest")
            .field("serial", &self.serial)
            .field("trail_bytes", &self.trail.len())
            .finish()
    }
}

/// Encrypts `trail` (a trail file) and the card's `serial` to `server`.
pub fn seal_trail_request(
    server: &PublicKey,
    serial: &Serial,
    trail: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, ValidationError> {
    if trail.len() > MAX_TRAIL_REQUEST_TRAIL {
        return Err(ValidationError::BadField(
            "trail validation request: the trail is larger than 64 MiB",
        ));
    }
    let (mut out, shared) = super::ecies::start(server, MAGIC, VERSION, rng);
    out.reserve(16 + trail.len() + 16);
    let m = shared.key(INFO);
    let mut plain = Zeroizing::new(Vec::with_capacity(16 + trail.len()));
    plain.extend_from_slice(&serial.0);
    plain.extend_from_slice(trail);
    let sealed = crate::keyfile::aead_seal(&m, &out, &plain[..])
        .map_err(|_| ValidationError::BadField("trail validation request: encryption failed"))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a trail validation request with the server's ECDH secret.
pub(super) fn open_trail_request(
    secret: &p256::SecretKey,
    server: &PublicKey,
    bytes: &[u8],
) -> Result<TrailRequest, ValidationError> {
    const WHAT: &str = "encrypted trail validation request";
    if bytes.len() < HEADER_LEN + 16 + 16 || bytes.len() > MAX_TRAIL_ENVELOPE {
        return Err(ValidationError::BadField(
            "encrypted trail validation request: length out of range",
        ));
    }
    let m = super::ecies::open(secret, server, MAGIC, VERSION, WHAT, bytes)?.key(INFO);
    let plain = crate::keyfile::aead_open(&m, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|_| ValidationError::Decrypt)?;
    let mut serial = [0u8; 16];
    serial.copy_from_slice(plain.get(..16).ok_or(ValidationError::BadField(
        "trail validation request: shorter than a serial",
    ))?);
    Ok(TrailRequest {
        serial: Serial(serial),
        trail: Zeroizing::new(plain[16..].to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::ServerSecret;

    #[test]
    fn round_trip_and_refusals() {
        let s = ServerSecret::random(&mut rand_core::OsRng);
        let other = ServerSecret::random(&mut rand_core::OsRng);
        let env = seal_trail_request(
            s.public(),
            &Serial([9; 16]),
            b"trail bytes",
            &mut rand_core::OsRng,
        )
        .unwrap();
        let req = s.open_trail_request(&env).unwrap();
        assert_eq!(req.serial, Serial([9; 16]));
        assert_eq!(&req.trail[..], b"trail bytes");
        assert_eq!(
            other.open_trail_request(&env).unwrap_err(),
            ValidationError::Decrypt
        );
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            s.open_trail_request(&bad).unwrap_err(),
            ValidationError::Decrypt
        );
        let mut bad = env.clone();
        bad[0] = b'X';
        assert!(matches!(
            s.open_trail_request(&bad),
            Err(ValidationError::BadMagic(_))
        ));
        assert!(matches!(
            s.open_trail_request(&env[..50]),
            Err(ValidationError::BadField(_))
        ));
    }
}
