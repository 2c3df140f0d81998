//! Extending the validation server's backup of a trail by the records written after it
//! (\[0062\], \[0094\]).
//!
//! The server keeps, as the reader's backup, the trail it last vouched for
//! ([`super::seal_trail_request`]). The reader writes the server's answer — the `totals`
//! records and the validator record — *after* that backup was taken, so without more the
//! backup ends just before them: a restore right after a vouch would find those records
//! lost, and a publisher whose policy charges lost records in full (`--lost-records full`)
//! would write every licence off for records that are in fact the server's own answer.
//!
//! So once the answer is written, the reader sends the records after the backup, up to and
//! including the validator record — card-signed like every record — and the server extends
//! its backup by them ([`extend_backup`]) after checking them: they are this card's, they
//! continue the backup's counters with no hole, every card signature verifies, and among
//! them is the validator record this server signed for exactly this backup (its `upto` is
//! the backup's last counter and its `chain` the backup's chain hash). A restore then
//! accounts only for what was written after the validator.
//!
//! ```text
//! request   = "TALLYBKX" (8) · version u8 = 1 · ephemeral P-256 key 65 (SEC1) ·
//!             AES-256-GCM(plaintext) + tag 16; associated data: the 74 header bytes
//! plaintext = card serial 16 · a trail file holding only the new records (its header's
//!             first counter is the first new record's counter)
//! key, nonce = HKDF-SHA-256(ECDH(ephemeral, server), salt = ephemeral ‖ server public keys,
//!              info = "tally/backup-extension/ecies/v1") → 32 + 12 bytes
//! ```

use super::{ServerSecret, TrailRequest, ValidationError};
use crate::card::{CardIdentity, Serial};
use crate::crypto::{PublicKey, default_verifier};
use crate::trail::body::{Body, Usage};
use crate::trail::file::{Header, encode_frame};
use crate::trail::record::Record;
use crate::trail::{TrailError, validator};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"TALLYBKX";
const VERSION: u8 = 1;
const HEADER_LEN: usize = super::ecies::HEADER_LEN;
const INFO: &[u8] = b"tally/backup-extension/ecies/v1";
/// Largest trail fragment an extension carries (about 8 000 records: the answer of a
/// vouch and what was metered while it travelled).
pub const MAX_EXTENSION_TRAIL: usize = 1 << 20;
/// Largest extension envelope: header, serial, fragment, tag.
pub const MAX_EXTENSION_ENVELOPE: usize = HEADER_LEN + 16 + MAX_EXTENSION_TRAIL + 16;

/// The trail file fragment holding `records` (consecutive records of the card `identity`,
/// the first of which carries the header's first counter).
pub fn extension_fragment(identity: &CardIdentity, records: &[Record]) -> Vec<u8> {
    let first = records.first().map_or(identity.origin, |r| r.counter);
    let mut out = Header::for_card(identity, first).encode().to_vec();
    for r in records {
        out.extend(encode_frame(r));
    }
    out
}

/// Encrypts a backup extension — `records`, written after the backup — to `server`.
pub fn seal_backup_extension(
    server: &PublicKey,
    identity: &CardIdentity,
    records: &[Record],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, ValidationError> {
    let fragment = Zeroizing::new(extension_fragment(identity, records));
    if fragment.len() > MAX_EXTENSION_TRAIL {
        return Err(ValidationError::BadField(
            "backup extension: more records than one extension carries",
        ));
    }
    let (mut out, shared) = super::ecies::start(server, MAGIC, VERSION, rng);
    let m = shared.key(INFO);
    let mut plain = Zeroizing::new(Vec::with_capacity(16 + fragment.len()));
    plain.extend_from_slice(&identity.serial.0);
    plain.extend_from_slice(&fragment);
    let sealed = crate::keyfile::aead_seal(&m, &out, &plain[..])
        .map_err(|_| ValidationError::BadField("backup extension: encryption failed"))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a backup extension with the server's ECDH secret.
pub(super) fn open_backup_extension(
    secret: &p256::SecretKey,
    server: &PublicKey,
    bytes: &[u8],
) -> Result<TrailRequest, ValidationError> {
    const WHAT: &str = "encrypted backup extension";
    if bytes.len() < HEADER_LEN + 16 + 16 || bytes.len() > MAX_EXTENSION_ENVELOPE {
        return Err(ValidationError::BadField(
            "encrypted backup extension: length out of range",
        ));
    }
    let m = super::ecies::open(secret, server, MAGIC, VERSION, WHAT, bytes)?.key(INFO);
    let plain = crate::keyfile::aead_open(&m, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|_| ValidationError::Decrypt)?;
    let mut serial = [0u8; 16];
    serial.copy_from_slice(plain.get(..16).ok_or(ValidationError::BadField(
        "backup extension: shorter than a serial",
    ))?);
    Ok(TrailRequest {
        serial: Serial(serial),
        trail: Zeroizing::new(plain[16..].to_vec()),
    })
}

/// Why a server would not extend its backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtendError {
    /// The stored backup does not parse as a trail of this card (the server's storage is
    /// damaged).
    #[error("the backup is not a trail of this card: {0}")]
    Backup(TrailError),
    /// The records sent are not valid records of this card continuing the backup (a bad
    /// signature, a hole, another card's records, a malformed fragment).
    #[error("the records sent do not continue the backup: {0}")]
    Records(TrailError),
    /// The records sent do not start right after the backup's last record (another
    /// vouch replaced the backup meanwhile, or the records are not the ones after it).
    #[error("the records sent start at counter {first}, the backup's next counter is {next}")]
    NotNext {
        /// The first counter sent.
        first: u64,
        /// The counter after the backup's last record.
        next: u64,
    },
    /// None of the records sent is this server's validator record vouching for exactly
    /// the backup: only the answer to a vouch extends a backup.
    #[error("the records sent hold no validator record of this server vouching for the backup")]
    NoValidator,
    /// The extended backup would be larger than a trail request carries.
    #[error("the extended backup would be larger than a backup holds")]
    TooLarge,
}

impl ExtendError {
    /// A short, stable name of the check that failed (HTTP header `x-tally-check`).
    pub fn check(&self) -> &'static str {
        match self {
            Self::Backup(_) => "backup",
            Self::Records(e) => e.check(),
            Self::NotNext { .. } => "not-next",
            Self::NoValidator => "no-validator",
            Self::TooLarge => "too-large",
        }
    }
}

/// What [`extend_backup`] made.
#[derive(Debug)]
pub struct Extended {
    /// The extended backup: the backup's trail file with the new records appended.
    pub trail: Zeroizing<Vec<u8>>,
    /// Its last record's counter.
    pub upto: u64,
    /// Records in it.
    pub records: u64,
}

/// The server's side: `backup` is the trail file this server vouched for last (as
/// stored), `fragment` the trail fragment the reader sent ([`extension_fragment`]). The
/// new records must belong to the registered card `identity`, start at the backup's next
/// counter, verify as a continuation of the backup (card signatures, counters, bodies), and
/// hold a validator record signed by `secret` whose `upto` is the backup's last counter and
/// whose `chain` is the backup's chain hash. Returns the backup extended by them.
pub fn extend_backup(
    secret: &ServerSecret,
    identity: &CardIdentity,
    backup: &[u8],
    fragment: &[u8],
) -> Result<Extended, ExtendError> {
    use crate::trail::verify::{parse_trail_bytes, verify_range};
    let own = std::slice::from_ref(secret.public());
    let verifier = default_verifier();
    // The backup was verified when it was vouched for, and is stored encrypted under this
    // server's key: only its format is read again.
    let (header, mut records) = parse_trail_bytes(backup, identity).map_err(ExtendError::Backup)?;
    let (sent_header, sent) =
        parse_trail_bytes(fragment, identity).map_err(ExtendError::Records)?;
    let last = records
        .last()
        .ok_or(ExtendError::Backup(TrailError::Format(
            crate::trail::file::FormatError::ShortHeader,
        )))?;
    let next = last.counter.saturating_add(1);
    let first = sent
        .first()
        .map_or(sent_header.first_counter, |r| r.counter);
    if sent_header.first_counter != next || first != next {
        return Err(ExtendError::NotNext { first, next });
    }
    let backup_upto = last.counter;
    let chain = validator::prefix_chain(
        &records,
        records.len(),
        identity,
        header.first_counter,
        own,
        verifier,
    )
    .map_err(ExtendError::Backup)?;
    let vouches_for_backup = sent.iter().any(|r| {
        r.body.starts_with(b"tally/1 validator ")
            && Body::parse(&r.body).is_ok_and(|b| {
                matches!(&b.usage, Usage::Validator(v) if v.upto == backup_upto && v.chain == chain)
                    && validator::verify_server_signed(
                        &b,
                        &identity.serial,
                        secret.public(),
                        verifier,
                    )
            })
    });
    if !vouches_for_backup {
        return Err(ExtendError::NoValidator);
    }
    let from = records.len();
    records.extend(sent);
    verify_range(
        &records,
        from,
        identity,
        header.first_counter,
        own,
        verifier,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
    .map_err(ExtendError::Records)?;
    let mut trail = Zeroizing::new(backup.to_vec());
    for r in &records[from..] {
        trail.extend(encode_frame(r));
    }
    if trail.len() > super::MAX_TRAIL_REQUEST_TRAIL {
        return Err(ExtendError::TooLarge);
    }
    Ok(Extended {
        trail,
        upto: records.last().map_or(backup_upto, |r| r.counter),
        records: records.len() as u64,
    })
}
