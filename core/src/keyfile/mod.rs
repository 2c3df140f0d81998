//! Keyfiles: the vendor-signed, decoy-padded licence of EP 0 895 148 (\[0037\]–\[0040\],
//! \[0064\]–\[0074\]).
//!
//! A keyfile binds one customer's card (serial, public key, origin) to one document,
//! with limits and rights (\[0072\]), the document's content key wrapped for Tally viewers,
//! and optionally a validation server. The customer information string (CIS) hides among
//! 480,000 decoy bits at a place only the vendor's keyed rule finds (\[0068\], \[0069\],
//! \[0074\]); the customer's identity is sealed to the vendor's tracing key so a leaked
//! keyfile names its owner (\[0069\]); the vendor's signature covers every byte (T24), and
//! a keyfile from a vendor the viewer does not trust is refused (T22).
//!
//! The content key is wrapped to the card's key-agreement key (ECIES), so a keyfile
//! without its card opens nothing (T37); the opening checks the live card against the
//! keyfile and its issuer's attestation (T16, T36). What this protects, and what it
//! cannot (a debugger attached to a viewer while the card deciphers for it), is written
//! down in `docs/keyfile-format.md`.

pub(crate) mod cis;
mod decoy;
mod format;

pub use cis::{
    Cis, MAX_CIS_BYTES, MAX_NAME_BYTES, MAX_URL_BYTES, ServerInfo, WRAPPED_KEY_LEN, check_name,
};
pub use decoy::{DECOY_BYTES, cis_offset};
pub use format::{
    HEADER_LEN, KeyfileHeader, MAGIC, MAX_KEYFILE_BYTES, MIN_KEYFILE_BYTES, Owner, SEALED_LEN,
    SIGNATURE_LEN, VERSION,
};

use crate::card::attestation::{Attestation, AttestationError, IssuerPublic};
use crate::card::{Card, CardIdentity};
use crate::crypto::{self, Hash};
use crate::package::{ContentKey, DocumentId};
use crate::policy::{Limits, PolicyError, Rights};
use crate::trail::LicenceId;
use crate::vendor::{VendorPublic, VendorSecret};
use rand_core::CryptoRngCore;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Why a keyfile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyfileError {
    /// Larger than [`MAX_KEYFILE_BYTES`]: refused unread.
    #[error("keyfile is too large ({0} bytes; at most {MAX_KEYFILE_BYTES})")]
    TooLarge(usize),
    /// Shorter than its header says it is.
    #[error("keyfile is truncated ({actual} bytes; expected {expected})")]
    Truncated {
        /// The length the header implies (or the minimum).
        expected: usize,
        /// The actual length.
        actual: usize,
    },
    /// Bytes after the signature.
    #[error("keyfile has {extra} bytes of trailing data after the signature")]
    TrailingData {
        /// How many.
        extra: usize,
    },
    /// Does not start with `TALLYKEY`.
    #[error("not a Tally keyfile")]
    BadMagic,
    /// A format version this build does not read (algorithms are pinned per version, T28).
    #[error("unsupported keyfile format version {0}")]
    UnsupportedVersion(u8),
    /// A header field is out of range.
    #[error("keyfile header: {0}")]
    BadHeader(&'static str),
    /// Signed by a vendor that is not among the trusted ones (T22).
    #[error(
        "keyfile was signed by a vendor this viewer does not trust (fingerprint {fingerprint})"
    )]
    UnknownVendor {
        /// The fingerprint the keyfile names, hex.
        fingerprint: String,
    },
    /// The vendor's signature does not verify: some byte was changed (T24).
    #[error("keyfile signature does not verify: the keyfile was changed")]
    BadSignature,
    /// Signed, but the CIS does not decrypt under the vendor's layout key (opaque).
    #[error("keyfile's customer information cannot be read")]
    CisUnreadable,
    /// The decrypted CIS is malformed, or a CIS to issue is invalid.
    #[error("customer information: {0}")]
    BadCis(&'static str),
    /// The embedded policy is invalid.
    #[error("keyfile policy: {0}")]
    Policy(PolicyError),
    /// The card presented is not the one the keyfile was issued for.
    #[error("this keyfile belongs to card {expected}, not to card {actual}")]
    WrongCard {
        /// The serial in the keyfile, hex.
        expected: String,
        /// The serial presented, hex.
        actual: String,
    },
    /// The card has this keyfile's serial but another signing key, key-agreement key or
    /// origin: a card claiming to be the keyfile's card.
    #[error(
        "the card presents this keyfile's serial but another {0}: it is not the card this keyfile was issued for"
    )]
    CardKeyMismatch(&'static str),
    /// The keyfile does not accept emulated cards and no issuer it accepts vouches for the
    /// card (no attestation, or one that fails: the reason says which check).
    #[error(
        "this keyfile needs a card its issuer vouches for; emulated cards are not accepted: {0}"
    )]
    NotAttested(AttestationError),
    /// The card could not be read or refused a command during the check or the unwrap.
    #[error("the card: {0}")]
    Card(String),
    /// The content key does not unwrap (opaque).
    #[error("the document key cannot be unwrapped")]
    ContentKeyUnwrap,
    /// The sealed identity does not open with this vendor's tracing key (opaque).
    #[error("the sealed customer identity cannot be opened with this vendor's tracing key")]
    TraceUnreadable,
    /// An encryption primitive failed (never expected).
    #[error("encryption failed")]
    Crypto,
    /// Reading the keyfile failed.
    #[error("reading keyfile: {0}")]
    Io(String),
}

/// HKDF-SHA-256 → 32-byte AES key ‖ 12-byte nonce.
pub(crate) fn derive(ikm: &[u8], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 44]> {
    let mut out = Zeroizing::new([0u8; 44]);
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm);
    // 44 bytes is far below HKDF's 255·32 limit, so expand cannot fail.
    let _ = hk.expand(info, &mut out[..]);
    out
}

fn aead_key(m: &[u8; 44]) -> Result<(crate::crypto::Aes256Gcm, [u8; 12]), KeyfileError> {
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&m[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&m[32..]);
    Ok((crate::crypto::Aes256Gcm::new(&key), nonce))
}

/// AES-256-GCM with a key and nonce used for exactly one message (derived per keyfile).
pub(crate) fn aead_seal(m: &[u8; 44], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyfileError> {
    let (key, nonce) = aead_key(m)?;
    key.seal_to_vec(nonce, aad, plain)
        .map_err(|_| KeyfileError::Crypto)
}

/// Opens [`aead_seal`]'s output; the plaintext is zeroized on drop.
pub(crate) fn aead_open(
    m: &[u8; 44],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
    let (key, nonce) = aead_key(m)?;
    key.open_to_zeroizing(nonce, aad, sealed)
        .map_err(|_| KeyfileError::Crypto)
}

/// Entry points for keyfiles.
#[derive(Debug)]
pub struct Keyfile;

impl Keyfile {
    /// Builds a keyfile for `cis`, signed by `vendor` (\[0064\]–\[0069\]). Randomness (salt,
    /// decoys, ephemeral tracing key) comes from `rng`, so tests can be byte-exact.
    pub fn issue(
        vendor: &VendorSecret,
        cis: &Cis,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, KeyfileError> {
        format::issue(vendor, cis, rng)
    }

    /// Verifies a keyfile against the trusted vendors and decrypts its CIS (\[0070\],
    /// \[0073\], \[0074\]). Structural errors come first, then the vendor, then the signature.
    pub fn open(bytes: &[u8], trusted: &[VendorPublic]) -> Result<VerifiedKeyfile, KeyfileError> {
        let (vendor, cis) = format::open(bytes, trusted)?;
        Ok(VerifiedKeyfile {
            vendor,
            cis,
            hash: crypto::sha256(bytes),
        })
    }

    /// Reads at most [`MAX_KEYFILE_BYTES`] from `reader`, then [`open`](Self::open)s it.
    pub fn read_from(
        reader: impl std::io::Read,
        trusted: &[VendorPublic],
    ) -> Result<VerifiedKeyfile, KeyfileError> {
        use std::io::Read as _;
        let mut buf = Vec::new();
        reader
            .take(MAX_KEYFILE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| KeyfileError::Io(e.kind().to_string()))?;
        Self::open(&buf, trusted)
    }

    /// The header of a keyfile, checked for shape but not verified (for `inspect`).
    pub fn peek(bytes: &[u8]) -> Result<KeyfileHeader, KeyfileError> {
        format::split(bytes).map(|p| p.header)
    }

    /// Names the owner of a keyfile issued by `vendor` (\[0069\]). The owner is only proof
    /// of what the vendor issued when [`Owner::signature_valid`] is true.
    pub fn trace(bytes: &[u8], vendor: &VendorSecret) -> Result<Owner, KeyfileError> {
        format::trace(bytes, vendor)
    }
}

/// Why the card was accepted at an opening.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardStanding {
    /// An issuer the keyfile accepts vouches for the card.
    Attested {
        /// The issuer.
        issuer: IssuerPublic,
    },
    /// No accepted issuer vouches for the card (the reason says why); the keyfile allows
    /// emulated cards, so it opens anyway.
    Emulated {
        /// Why the card counts as emulated.
        why: AttestationError,
    },
}

/// The outcome of [`VerifiedKeyfile::check_card`]: the keyfile's card is present and
/// acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCheck {
    /// The card's identity (the keyfile's).
    pub identity: CardIdentity,
    /// Attested, or emulated and allowed.
    pub standing: CardStanding,
}

/// A keyfile whose signature verified under a trusted vendor and whose CIS parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeyfile {
    vendor: VendorPublic,
    cis: cis::ParsedCis,
    hash: Hash,
}

impl VerifiedKeyfile {
    /// The vendor that signed it.
    pub fn vendor(&self) -> &VendorPublic {
        &self.vendor
    }
    /// The licence id (trail records carry it, \[0049\]).
    pub fn licence(&self) -> LicenceId {
        self.cis.licence
    }
    /// The document it opens.
    pub fn document(&self) -> DocumentId {
        self.cis.document
    }
    /// The card it was issued for.
    pub fn card(&self) -> &CardIdentity {
        &self.cis.card
    }
    /// The customer's name (for the watermark).
    pub fn customer_name(&self) -> &str {
        &self.cis.customer_name
    }
    /// Thresholds, dates and rights.
    pub fn limits(&self) -> &Limits {
        &self.cis.limits
    }
    /// Print / copy rights.
    pub fn rights(&self) -> Rights {
        self.cis.limits.rights
    }
    /// Whether an emulated card is accepted.
    pub fn allows_emulated_card(&self) -> bool {
        self.cis.allow_emulated_card
    }
    /// The validation server, if any.
    pub fn server(&self) -> Option<&ServerInfo> {
        self.cis.server.as_ref()
    }
    /// When it was issued.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.cis.issued_at
    }
    /// SHA-256 of the keyfile bytes.
    pub fn file_hash(&self) -> &Hash {
        &self.hash
    }

    /// The card issuers whose attestation this keyfile accepts.
    pub fn issuers(&self) -> &[IssuerPublic] {
        &self.cis.issuers
    }
    /// The card's key-agreement key the content key is wrapped to.
    pub fn card_agreement_key(&self) -> &crate::crypto::PublicKey {
        &self.cis.agreement_key
    }
    /// The wrapped content key as the keyfile carries it (public: only the card unwraps it).
    pub fn wrapped_content_key(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.cis.wrapped_key
    }

    /// The opening's card check, all in one place (T16, T36): `card` must be the card
    /// this keyfile was issued for (serial, signing key, key-agreement key and origin),
    /// and — unless the keyfile allows emulated cards — an issuer the keyfile accepts must
    /// vouch for it by an attestation valid at `now`. The live card's attestation is read
    /// and checked at every opening, whatever transport serves the card: an emulated card
    /// has none, so serving one through vpcd and pcscd changes nothing.
    ///
    /// Presenting the keyfile's public keys proves nothing by itself: the trail's
    /// signatures (ValidateTrail) prove the signing key, and [`unwrap_content_key`]
    /// (DECIPHER) the key-agreement key.
    ///
    /// [`unwrap_content_key`]: Self::unwrap_content_key
    pub fn check_card(
        &self,
        card: &mut Card,
        now: OffsetDateTime,
    ) -> Result<CardCheck, KeyfileError> {
        let presented = card
            .presented()
            .map_err(|e| KeyfileError::Card(e.to_string()))?;
        let id = &presented.identity;
        let want = &self.cis.card;
        if id.serial != want.serial {
            return Err(KeyfileError::WrongCard {
                expected: want.serial.to_hex(),
                actual: id.serial.to_hex(),
            });
        }
        if id.public_key != want.public_key {
            return Err(KeyfileError::CardKeyMismatch("signing key"));
        }
        if presented.agreement_key != self.cis.agreement_key {
            return Err(KeyfileError::CardKeyMismatch("key-agreement key"));
        }
        if id.origin != want.origin {
            return Err(KeyfileError::CardKeyMismatch("counter origin"));
        }
        let verdict = match &presented.attestation {
            None => Err(AttestationError::Missing),
            Some(bytes) => Attestation::parse(bytes).and_then(|a| {
                a.verify(&self.cis.issuers, &presented.attested_card(), now)
                    .cloned()
            }),
        };
        let standing = match verdict {
            Ok(issuer) => CardStanding::Attested { issuer },
            Err(why) if self.cis.allow_emulated_card => CardStanding::Emulated { why },
            Err(why) => return Err(KeyfileError::NotAttested(why)),
        };
        Ok(CardCheck {
            identity: presented.identity,
            standing,
        })
    }

    /// Unwraps the content key with the card's help (DECIPHER: ECDH of the wrap's
    /// ephemeral key with the card's key-agreement key). The card's serial and
    /// key-agreement key are compared with the keyfile's first, in the same session, so
    /// another card is refused with the reason before it is asked to decipher anything.
    /// Any failure after that is one opaque error. See `docs/keyfile-format.md` for what
    /// this cannot stop (the card's owner can always ask their own card).
    pub fn unwrap_content_key(&self, card: &mut Card) -> Result<ContentKey, KeyfileError> {
        let eph = cis::wrap_ephemeral(&self.cis.wrapped_key)?;
        let mut session = card
            .session()
            .map_err(|e| KeyfileError::Card(e.to_string()))?;
        let (serial, _) = session
            .get_serial()
            .map_err(|e| KeyfileError::Card(e.to_string()))?;
        if serial != self.cis.card.serial {
            return Err(KeyfileError::WrongCard {
                expected: self.cis.card.serial.to_hex(),
                actual: serial.to_hex(),
            });
        }
        let agreement = session
            .get_agreement_key()
            .map_err(|e| KeyfileError::Card(e.to_string()))?;
        if agreement != self.cis.agreement_key {
            return Err(KeyfileError::CardKeyMismatch("key-agreement key"));
        }
        let shared = session
            .decipher(&eph)
            .map_err(|_| KeyfileError::ContentKeyUnwrap)?;
        cis::unwrap_content_key(&self.cis.wrapped_key, &shared, &self.cis)
    }
}

#[cfg(test)]
mod tests;
