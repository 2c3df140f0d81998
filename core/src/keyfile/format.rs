//! The keyfile's byte layout (version 2; `docs/keyfile-format.md`).
//!
//! ```text
//! magic        "TALLYKEY"                                   8
//! version      0x02                                         1
//! vendor       fingerprint of the signing vendor's public file  32
//! salt         random per keyfile                           16
//! cis length   u32 big-endian (512·k + 16)                   4
//! ---------------------------------------------------------- header, 61 bytes
//! sealed id    ephemeral P-256 key 65 ‖ AES-256-GCM(identity 242) 258   323
//! region       60,000 decoy bytes with the encrypted CIS spliced in
//! signature    ECDSA P-256 r‖s over "tally/keyfile/v1\0" ‖ every byte above   64
//! ```
//!
//! - The CIS is encrypted with AES-256-GCM under a key and nonce derived (HKDF-SHA-256)
//!   from the vendor's layout key and the salt, with the header as associated data, and
//!   placed at [`super::decoy::cis_offset`].
//! - The sealed identity is ECIES: ECDH between a fresh ephemeral key and the vendor's
//!   tracing key, HKDF-SHA-256 to an AES-256-GCM key and nonce, header as associated
//!   data. Only the vendor's tracing secret opens it (\[0069\]).
//! - The signature covers every byte before it, so any change is a signature failure
//!   (T24). There are no algorithm identifiers: the version pins every algorithm (T28).

use crate::card::Serial;
use crate::crypto::{PublicKey, Signature};
use crate::trail::LicenceId;
use crate::vendor::{VendorPublic, VendorSecret};
use rand_core::CryptoRngCore;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::cis::{Cis, MAX_CIS_BYTES, MAX_NAME_BYTES, ParsedCis, check_name};
use super::decoy::{self, DECOY_BYTES};
use super::{KeyfileError, aead_open, aead_seal, derive};

/// First bytes of every keyfile.
pub const MAGIC: &[u8; 8] = b"TALLYKEY";
/// The only format version this build reads. Version 2: the content key is wrapped to
/// the card's key-agreement key and the accepted card issuers travel in the CIS.
pub const VERSION: u8 = 2;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8 + 1 + 32 + 16 + 4;
const IDENTITY_LEN: usize = 1 + 16 + 16 + 8 + 1 + MAX_NAME_BYTES;
/// Length of the sealed identity.
pub const SEALED_LEN: usize = 65 + IDENTITY_LEN + 16;
/// Length of the signature.
pub const SIGNATURE_LEN: usize = 64;
/// Keyfiles larger than this are refused unread.
pub const MAX_KEYFILE_BYTES: usize = 128 * 1024;
/// The smallest possible keyfile.
pub const MIN_KEYFILE_BYTES: usize =
    HEADER_LEN + SEALED_LEN + DECOY_BYTES + 512 + 16 + SIGNATURE_LEN;
const SIG_TAG: &[u8] = b"tally/keyfile/v1\0";
const CIS_INFO: &[u8] = b"tally/keyfile-cis/v1";
const TRACE_INFO: &[u8] = b"tally/keyfile-trace/v1";
const IDENTITY_VERSION: u8 = 1;

/// The header fields, read before anything is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyfileHeader {
    /// Fingerprint of the vendor that claims to have signed the keyfile.
    pub vendor_fingerprint: [u8; 32],
    /// The per-keyfile salt.
    pub salt: [u8; 16],
    /// Length of the encrypted CIS.
    pub cis_len: u32,
}

/// A keyfile split into its parts, lengths checked, nothing verified yet.
pub(super) struct Parts<'a> {
    pub header: KeyfileHeader,
    pub header_bytes: &'a [u8],
    pub sealed: &'a [u8],
    pub region: &'a [u8],
    pub signed: &'a [u8],
    pub signature: Signature,
}

/// Splits `bytes` strictly: size caps, magic, version, lengths, no trailing data.
pub(super) fn split(bytes: &[u8]) -> Result<Parts<'_>, KeyfileError> {
    if bytes.len() > MAX_KEYFILE_BYTES {
        return Err(KeyfileError::TooLarge(bytes.len()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(KeyfileError::Truncated {
            expected: MIN_KEYFILE_BYTES,
            actual: bytes.len(),
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(KeyfileError::BadMagic);
    }
    if bytes[8] != VERSION {
        return Err(KeyfileError::UnsupportedVersion(bytes[8]));
    }
    let mut vendor_fingerprint = [0u8; 32];
    vendor_fingerprint.copy_from_slice(&bytes[9..41]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[41..57]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[57..61]);
    let cis_len = u32::from_be_bytes(len);
    let c = cis_len as usize;
    if !(512 + 16..=MAX_CIS_BYTES + 16).contains(&c) || !(c - 16).is_multiple_of(512) {
        return Err(KeyfileError::BadHeader(
            "CIS length is not 512·k + 16 within bounds",
        ));
    }
    let expected = HEADER_LEN + SEALED_LEN + DECOY_BYTES + c + SIGNATURE_LEN;
    if bytes.len() < expected {
        return Err(KeyfileError::Truncated {
            expected,
            actual: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(KeyfileError::TrailingData {
            extra: bytes.len() - expected,
        });
    }
    let sig_at = expected - SIGNATURE_LEN;
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&bytes[sig_at..]);
    Ok(Parts {
        header: KeyfileHeader {
            vendor_fingerprint,
            salt,
            cis_len,
        },
        header_bytes: &bytes[..HEADER_LEN],
        sealed: &bytes[HEADER_LEN..HEADER_LEN + SEALED_LEN],
        region: &bytes[HEADER_LEN + SEALED_LEN..sig_at],
        signed: &bytes[..sig_at],
        signature: Signature(sig),
    })
}

fn signed_message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_TAG.len() + signed.len());
    m.extend_from_slice(SIG_TAG);
    m.extend_from_slice(signed);
    m
}

fn cis_key(layout_key: &[u8; 32], salt: &[u8; 16]) -> Zeroizing<[u8; 44]> {
    derive(layout_key, salt, CIS_INFO)
}

fn trace_key(shared: &[u8; 32], eph: &PublicKey, tracing: &PublicKey) -> Zeroizing<[u8; 44]> {
    let mut salt = Vec::with_capacity(130);
    salt.extend_from_slice(eph.as_bytes());
    salt.extend_from_slice(tracing.as_bytes());
    derive(shared, &salt, TRACE_INFO)
}

/// Builds a signed keyfile.
pub(super) fn issue(
    vendor: &VendorSecret,
    cis: &Cis,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, KeyfileError> {
    let plain = cis.encode(rng)?;
    let cis_len = (plain.len() + 16) as u32;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let public = vendor.public();

    let mut out = Vec::with_capacity(MIN_KEYFILE_BYTES + plain.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&public.fingerprint());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&cis_len.to_be_bytes());
    let header = out.clone();

    // The customer's identity, sealed to the tracing key ([0069]).
    let eph = p256::SecretKey::random(rng);
    let eph_pub = PublicKey::from_verifying_key(&eph.public_key().into());
    let tracing = p256::PublicKey::from(public.tracing_key().verifying_key());
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), tracing.as_affine());
    let mut shared_bytes = Zeroizing::new([0u8; 32]);
    shared_bytes.copy_from_slice(shared.raw_secret_bytes());
    let tk = trace_key(&shared_bytes, &eph_pub, public.tracing_key());
    let mut identity = Zeroizing::new(Vec::with_capacity(IDENTITY_LEN));
    identity.push(IDENTITY_VERSION);
    identity.extend_from_slice(&cis.card.serial.0);
    identity.extend_from_slice(&cis.licence.0);
    identity.extend_from_slice(&cis.issued_at.unix_timestamp().to_be_bytes());
    identity.push(cis.customer_name.len() as u8);
    identity.extend_from_slice(cis.customer_name.as_bytes());
    identity.resize(IDENTITY_LEN, 0);
    out.extend_from_slice(eph_pub.as_bytes());
    out.extend_from_slice(&aead_seal(&tk, &header, &identity)?);

    // The CIS among the decoys ([0068], [0069], [0074]).
    let ck = cis_key(public.layout_key(), &salt);
    let sealed_cis = aead_seal(&ck, &header, &plain)?;
    let offset = decoy::cis_offset(public.layout_key(), &salt, cis_len);
    out.extend_from_slice(&decoy::build_region(&sealed_cis, offset, rng));

    let sig = vendor.sign(&signed_message(&out));
    out.extend_from_slice(&sig.0);
    Ok(out)
}

/// Verifies and decrypts a keyfile.
pub(super) fn open(
    bytes: &[u8],
    trusted: &[VendorPublic],
) -> Result<(VendorPublic, ParsedCis), KeyfileError> {
    let p = split(bytes)?;
    let vendor = trusted
        .iter()
        .find(|v| v.fingerprint() == p.header.vendor_fingerprint)
        .ok_or_else(|| KeyfileError::UnknownVendor {
            fingerprint: hex::encode(p.header.vendor_fingerprint),
        })?;
    if !vendor.verify(&signed_message(p.signed), &p.signature) {
        return Err(KeyfileError::BadSignature);
    }
    let offset = decoy::cis_offset(vendor.layout_key(), &p.header.salt, p.header.cis_len);
    let sealed = decoy::extract(p.region, offset, p.header.cis_len as usize)
        .ok_or(KeyfileError::CisUnreadable)?;
    let ck = cis_key(vendor.layout_key(), &p.header.salt);
    let plain = aead_open(&ck, p.header_bytes, sealed).map_err(|_| KeyfileError::CisUnreadable)?;
    let cis = ParsedCis::parse(&plain)?;
    Ok((vendor.clone(), cis))
}

/// Who a keyfile was issued to, as sealed to the vendor's tracing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The customer's name.
    pub name: String,
    /// The card the keyfile was issued for.
    pub serial: Serial,
    /// The licence.
    pub licence: LicenceId,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// True when the vendor's signature over the whole keyfile verifies: only then is the
    /// identity proof of what the vendor issued (anyone can seal to a public key).
    pub signature_valid: bool,
}

/// Opens the sealed identity with the vendor's tracing key.
pub(super) fn trace(bytes: &[u8], vendor: &VendorSecret) -> Result<Owner, KeyfileError> {
    let p = split(bytes)?;
    let public = vendor.public();
    if p.header.vendor_fingerprint != public.fingerprint() {
        return Err(KeyfileError::UnknownVendor {
            fingerprint: hex::encode(p.header.vendor_fingerprint),
        });
    }
    let signature_valid = public.verify(&signed_message(p.signed), &p.signature);
    let eph = PublicKey::from_sec1(&p.sealed[..65]).map_err(|_| KeyfileError::TraceUnreadable)?;
    let shared = vendor.tracing_agree(&eph);
    let tk = trace_key(&shared, &eph, public.tracing_key());
    let id = aead_open(&tk, p.header_bytes, &p.sealed[65..])
        .map_err(|_| KeyfileError::TraceUnreadable)?;
    if id.len() != IDENTITY_LEN || id[0] != IDENTITY_VERSION {
        return Err(KeyfileError::TraceUnreadable);
    }
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&id[1..17]);
    let mut licence = [0u8; 16];
    licence.copy_from_slice(&id[17..33]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&id[33..41]);
    let n = usize::from(id[41]);
    let name_bytes = id.get(42..42 + n).ok_or(KeyfileError::TraceUnreadable)?;
    let name = std::str::from_utf8(name_bytes)
        .map_err(|_| KeyfileError::TraceUnreadable)?
        .to_string();
    check_name(&name).map_err(|_| KeyfileError::TraceUnreadable)?;
    Ok(Owner {
        name,
        serial: Serial(serial),
        licence: LicenceId(licence),
        issued_at: OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(ts))
            .map_err(|_| KeyfileError::TraceUnreadable)?,
        signature_valid,
    })
}

/// The signed message, for tests that forge re-signed keyfiles.
#[cfg(test)]
pub(super) fn tests_signed_message(signed: &[u8]) -> Vec<u8> {
    signed_message(signed)
}
