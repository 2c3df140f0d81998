//! Restoring a lost trail from the validation server's backup (\[0062\]).
//!
//! The server keeps the newest trail it vouched for ([`super::seal_trail_request`]). A
//! reader whose trail is lost asks for it with a **restore request**: a record signed by
//! its card (through SignAndIncrement, so it spends one counter value like any record)
//! whose body is the nonce `restore:<first 16 bytes of the server key fingerprint, hex>`.
//! Only the card can make one, it names the server, its time must be within
//! [`super::CLOCK_SKEW_SECONDS`] of the server's clock, and its counter must be above the
//! last restore request's: a captured request can't be replayed.
//!
//! The server answers with the backup and a **recovery body**, signed by the server key,
//! that accounts for the counters lost between the backup and the request (the request's
//! own counter included) and charges them by the publisher's policy
//! ([`LostCharge`], default: in full). The reader writes the backup and appends the
//! recovery body through Write ([`crate::trail::Trail::restore`]).
//!
//! ```text
//! request   = "TALLYRST" (8) · version u8 = 1 · ephemeral P-256 key 65 (SEC1) ·
//!             AES-256-GCM(plaintext) + tag 16; associated data: the 74 header bytes
//! plaintext = card serial 16 · record (Record::encode: nonce 32 · counter u64 BE ·
//!             signature 64 · body length u16 BE · body)
//! answer    = "TALLYRSA" (8) · version u8 = 1 · AES-256-GCM(answer plaintext) + tag 16;
//!             associated data: the 9 header bytes
//! answer plaintext = recovery body length u16 BE · recovery body · the backup trail file
//! request key, nonce = HKDF-SHA-256(ECDH(ephemeral, server), salt = ephemeral ‖ server
//!             public keys, info = "tally/restore-req/ecies/v1") → 32 + 12 bytes
//! answer key, nonce  = the same with info = "tally/restore-answer/ecies/v1"
//! ```
//!
//! The answer is encrypted to the requester (only the holder of the ephemeral secret can
//! read the backup), and a nonce is used once per key: each request has a fresh key.

use super::{CLOCK_SKEW_SECONDS, ServerSecret, ValidationError};
use crate::card::{CardIdentity, Serial};
use crate::crypto::{PublicKey, default_verifier};
use crate::trail::body::{Body, LicenceId, LostCharge, MAX_RECOVERY_LICENCES, Recovery, Usage};
use crate::trail::record::{MAX_RECORD, Record};
use crate::trail::{TrailError, validator};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"TALLYRST";
const ANSWER_MAGIC: &[u8; 8] = b"TALLYRSA";
const VERSION: u8 = 1;
const HEADER_LEN: usize = super::ecies::HEADER_LEN;
const ANSWER_HEADER_LEN: usize = 8 + 1;
const INFO: &[u8] = b"tally/restore-req/ecies/v1";
const ANSWER_INFO: &[u8] = b"tally/restore-answer/ecies/v1";
/// Largest restore request: header, serial, one record, tag.
pub const MAX_RESTORE_REQUEST: usize = HEADER_LEN + 16 + MAX_RECORD + 16;
/// Largest answer: header, body length, a body, the largest trail a backup holds, tag.
pub const MAX_RESTORE_ANSWER: usize =
    ANSWER_HEADER_LEN + 2 + crate::trail::body::MAX_BODY + super::MAX_TRAIL_REQUEST_TRAIL + 16;

/// How a recovery record charges the lost counters of a card, given the publisher's policy
/// `charge` (`serve --lost-records`), the licences it issued for the card (`issued`) and
/// those of them whose return it verified (`returned`, T38). The answer is the charge and
/// the licences to name, for [`plan_recovery`] and [`super::plan_accounts`].
///
/// A returned licence must stay returned however the reader restores. Its `return` record
/// may be among the lost counters — the reader returned the loan, the publisher lent the
/// place to someone else, and the reader now restores a backup from before the return — so
/// every returned licence is charged in full: with the `full` policy as every licence is,
/// with `forgive` alone (`charge=full scope=listed` naming only the returned licences, so
/// every other licence is still forgiven). Charging a returned licence loses the reader
/// nothing. With more returned licences than a recovery names
/// ([`MAX_RECOVERY_LICENCES`]), the recovery charges every licence in full (fail closed).
pub fn recovery_terms(
    charge: LostCharge,
    issued: Vec<LicenceId>,
    returned: &[LicenceId],
) -> (LostCharge, Vec<LicenceId>) {
    if returned.is_empty() {
        return (charge, issued);
    }
    let mut licences = match charge {
        LostCharge::Full => issued,
        LostCharge::Forgive => Vec::new(),
    };
    licences.extend_from_slice(returned);
    licences.sort_unstable();
    licences.dedup();
    (LostCharge::Full, licences)
}

/// The nonce value a restore request for `server` carries.
pub fn restore_value(server: &PublicKey) -> String {
    format!("restore:{}", hex::encode(&server.fingerprint()[..16]))
}

/// The body the card signs for a restore request to `server`, stamped `at_unix`.
pub fn restore_request_body(server: &PublicKey, at_unix: i64) -> Body {
    Body::at_unix(
        Usage::Nonce {
            value: restore_value(server),
        },
        at_unix,
    )
}

/// The key the answer to one request is sealed under (zeroized on drop).
pub struct AnswerKey(Zeroizing<[u8; 44]>);

impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnswerKey(..)")
    }
}

/// Encrypts a restore request — the card-signed `record` of card `serial` — to `server`.
/// Returns the envelope and the key its answer will be sealed under.
pub fn seal_restore_request(
    server: &PublicKey,
    serial: &Serial,
    record: &Record,
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, AnswerKey), ValidationError> {
    let (mut out, shared) = super::ecies::start(server, MAGIC, VERSION, rng);
    let (req_key, answer_key) = (shared.key(INFO), AnswerKey(shared.key(ANSWER_INFO)));
    let mut plain = Vec::with_capacity(16 + MAX_RECORD);
    plain.extend_from_slice(&serial.0);
    plain.extend_from_slice(&record.encode());
    let sealed = crate::keyfile::aead_seal(&req_key, &out, &plain)
        .map_err(|_| ValidationError::BadField("restore request: encryption failed"))?;
    out.extend_from_slice(&sealed);
    Ok((out, answer_key))
}

/// A decrypted restore request.
#[derive(Debug)]
pub struct RestoreRequest {
    /// The card the request claims to come from.
    pub serial: Serial,
    /// The card-signed request record (not verified yet: see [`plan_recovery`]).
    pub record: Record,
}

/// Opens a restore request with the server's ECDH secret.
pub(super) fn open_restore_request(
    secret: &p256::SecretKey,
    server: &PublicKey,
    bytes: &[u8],
) -> Result<(RestoreRequest, AnswerKey), ValidationError> {
    const WHAT: &str = "encrypted restore request";
    if bytes.len() < HEADER_LEN + 16 + 106 + 16 || bytes.len() > MAX_RESTORE_REQUEST {
        return Err(ValidationError::BadField(
            "encrypted restore request: length out of range",
        ));
    }
    let shared = super::ecies::open(secret, server, MAGIC, VERSION, WHAT, bytes)?;
    let (req_key, answer_key) = (shared.key(INFO), AnswerKey(shared.key(ANSWER_INFO)));
    let plain = crate::keyfile::aead_open(&req_key, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|_| ValidationError::Decrypt)?;
    let mut serial = [0u8; 16];
    serial.copy_from_slice(plain.get(..16).ok_or(ValidationError::BadField(
        "restore request: shorter than a serial",
    ))?);
    let record = Record::decode(&plain[16..])
        .map_err(|_| ValidationError::BadField("restore request: the record is malformed"))?;
    Ok((
        RestoreRequest {
            serial: Serial(serial),
            record,
        },
        answer_key,
    ))
}

/// Seals the server's answer: the recovery body and the backup trail file.
pub fn seal_restore_answer(
    key: &AnswerKey,
    recovery: &[u8],
    trail: &[u8],
) -> Result<Vec<u8>, ValidationError> {
    let len = u16::try_from(recovery.len())
        .ok()
        .filter(|n| usize::from(*n) <= crate::trail::body::MAX_BODY)
        .ok_or(ValidationError::BadField(
            "restore answer: recovery body too long",
        ))?;
    if trail.len() > super::MAX_TRAIL_REQUEST_TRAIL {
        return Err(ValidationError::BadField(
            "restore answer: the backup is larger than 64 MiB",
        ));
    }
    let mut out = Vec::with_capacity(ANSWER_HEADER_LEN + 2 + recovery.len() + trail.len() + 16);
    out.extend_from_slice(ANSWER_MAGIC);
    out.push(VERSION);
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + recovery.len() + trail.len()));
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(recovery);
    plain.extend_from_slice(trail);
    let sealed = crate::keyfile::aead_seal(&key.0, &out, &plain[..])
        .map_err(|_| ValidationError::BadField("restore answer: encryption failed"))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// A decrypted answer: not yet checked (see [`crate::trail::Trail::restore`]).
pub struct RestoreAnswer {
    /// The recovery body, as the server signed it.
    pub recovery: Vec<u8>,
    /// The backup trail file (zeroized on drop).
    pub trail: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RestoreAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreAnswer")
            .field("recovery_bytes", &self.recovery.len())
            .field("trail_bytes", &self.trail.len())
            .finish()
    }
}

/// Opens the server's answer with the key kept from [`seal_restore_request`].
pub fn open_restore_answer(
    key: &AnswerKey,
    bytes: &[u8],
) -> Result<RestoreAnswer, ValidationError> {
    const WHAT: &str = "restore answer";
    if bytes.len() < ANSWER_HEADER_LEN + 2 + 16 || bytes.len() > MAX_RESTORE_ANSWER {
        return Err(ValidationError::BadField(
            "restore answer: length out of range",
        ));
    }
    if &bytes[..8] != ANSWER_MAGIC {
        return Err(ValidationError::BadMagic(WHAT));
    }
    if bytes[8] != VERSION {
        return Err(ValidationError::UnsupportedVersion {
            what: WHAT,
            version: bytes[8],
        });
    }
    let plain = crate::keyfile::aead_open(
        &key.0,
        &bytes[..ANSWER_HEADER_LEN],
        &bytes[ANSWER_HEADER_LEN..],
    )
    .map_err(|_| ValidationError::Decrypt)?;
    let len = usize::from(u16::from_be_bytes([plain[0], plain[1]]));
    let recovery = plain
        .get(2..2 + len)
        .ok_or(ValidationError::BadField(
            "restore answer: recovery body length out of range",
        ))?
        .to_vec();
    Ok(RestoreAnswer {
        recovery,
        trail: Zeroizing::new(plain[2 + len..].to_vec()),
    })
}

/// Why the server will not restore a trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The request record is not signed by the registered card.
    #[error("the restore request is not signed by the card registered for serial {0}")]
    NotTheCard(Serial),
    /// The request record's body is not a restore request for this server.
    #[error("the signed record is not a restore request for this server")]
    NotARequest,
    /// The request's time is too far from the server's clock.
    #[error(
        "the restore request was made at {at} (Unix), more than {CLOCK_SKEW_SECONDS} s from the server's clock ({now}): check the clock and ask again"
    )]
    Stale {
        /// The request's time.
        at: i64,
        /// The server's time.
        now: i64,
    },
    /// The request's counter is not above the last restore request's: a replay.
    #[error(
        "the restore request's counter {counter} is not above {last}, the last restore request's: a replayed request"
    )]
    Replay {
        /// The request's counter.
        counter: u64,
        /// The last restore request's counter.
        last: u64,
    },
    /// The backup is not a valid trail of this card (it was vouched for, so this means
    /// the server's storage is damaged).
    #[error("the backup is not a valid trail of this card: {0}")]
    Backup(TrailError),
    /// The trail sent for an account of its lost records is not a valid trail of this card.
    #[error("the trail is not a valid trail of this card: {0}")]
    Trail(TrailError),
    /// The request's counter is below the backup's end: the request is not the card's
    /// newest use.
    #[error("the restore request's counter {counter} is below the backup's next counter {next}")]
    BehindBackup {
        /// The request's counter.
        counter: u64,
        /// The counter after the backup's last record.
        next: u64,
    },
}

impl RestoreError {
    /// A short, stable name of the check that failed (HTTP header `x-tally-check`).
    pub fn check(&self) -> &'static str {
        match self {
            Self::NotTheCard(_) => "not-the-card",
            Self::NotARequest => "not-a-request",
            Self::Stale { .. } => "stale",
            Self::Replay { .. } => "replay",
            Self::Backup(_) => "backup",
            Self::Trail(e) => e.check(),
            Self::BehindBackup { .. } => "behind-backup",
        }
    }
}

/// What the server decided for a restore request.
#[derive(Debug)]
pub struct RecoveryPlan {
    /// The recovery body, signed, for the reader to append.
    pub body: Body,
    /// The lost counters.
    pub from: u64,
    /// The last lost counter (the request's).
    pub to: u64,
    /// Records in the backup.
    pub records: u64,
}

/// The cheap half of [`plan_recovery`]'s rules, which a server runs before it loads and
/// decrypts the stored backup (up to 64 MiB): the request record is signed by the
/// registered card `identity`, is a restore request for this server made within
/// [`CLOCK_SKEW_SECONDS`] of `now_unix`, and its counter is above `last_restore`. So an
/// unauthenticated, stale or replayed request costs one signature check (\[0062\]).
pub fn check_restore_request(
    secret: &ServerSecret,
    identity: &CardIdentity,
    request: &RestoreRequest,
    last_restore: Option<u64>,
    now_unix: i64,
) -> Result<(), RestoreError> {
    let rec = &request.record;
    if request.serial != identity.serial || !rec.verify(identity, default_verifier()) {
        return Err(RestoreError::NotTheCard(request.serial));
    }
    let body = Body::parse(&rec.body).map_err(|_| RestoreError::NotARequest)?;
    match &body.usage {
        Usage::Nonce { value } if *value == restore_value(secret.public()) => {}
        _ => return Err(RestoreError::NotARequest),
    }
    let at = body.at.unix_timestamp();
    if at.abs_diff(now_unix) > CLOCK_SKEW_SECONDS.unsigned_abs() {
        return Err(RestoreError::Stale { at, now: now_unix });
    }
    if let Some(last) = last_restore.filter(|l| rec.counter <= *l) {
        return Err(RestoreError::Replay {
            counter: rec.counter,
            last,
        });
    }
    Ok(())
}

/// The server's rules for a restore request (\[0062\]): the request record must be signed by
/// the registered card `identity`, be a restore request for this server made within
/// [`CLOCK_SKEW_SECONDS`] of `now_unix`, and carry a counter above `last_restore` (the last
/// restore request's, if any) and at least the backup's next counter. `backup` is the
/// trail file the server vouched for last. The recovery body accounts for every counter
/// from the backup's next to the request's, charges them as `charge` says to `licences`
/// (the licences issued for this card; more than [`MAX_RECOVERY_LICENCES`] → all) — nothing
/// when the request's own counter is the only one lost —, and is signed by `secret`.
#[expect(
    clippy::too_many_arguments,
    reason = "each input is one fact the rule needs; the server gathers them from its database"
)]
pub fn plan_recovery(
    secret: &ServerSecret,
    identity: &CardIdentity,
    request: &RestoreRequest,
    backup: &[u8],
    last_restore: Option<u64>,
    mut licences: Vec<LicenceId>,
    charge: LostCharge,
    now_unix: i64,
) -> Result<RecoveryPlan, RestoreError> {
    check_restore_request(secret, identity, request, last_restore, now_unix)?;
    let rec = &request.record;
    // The backup in full; the server trusts its own recovery records and archive anchors.
    let own = std::slice::from_ref(secret.public());
    let (header, records) = crate::trail::verify::verify_trail_bytes(backup, identity, own)
        .map_err(RestoreError::Backup)?;
    let first_counter = header.first_counter;
    let next = records
        .last()
        .map_or(first_counter, |r| r.counter.saturating_add(1));
    if rec.counter < next {
        return Err(RestoreError::BehindBackup {
            counter: rec.counter,
            next,
        });
    }
    licences.sort_unstable();
    licences.dedup();
    let licences =
        (!licences.is_empty() && licences.len() <= MAX_RECOVERY_LICENCES).then_some(licences);
    // When the only counter lost is the request's own, nothing of any licence was lost: the
    // server holds that record and has just checked that it is this restore request.
    let charge = if next == rec.counter {
        LostCharge::Forgive
    } else {
        charge
    };
    let mut body = Body::at_unix(
        Usage::Recovery(Box::new(Recovery {
            server_key: secret.public().fingerprint(),
            from: next,
            to: rec.counter,
            chain: validator::prefix_chain(
                &records,
                records.len(),
                identity,
                first_counter,
                own,
                default_verifier(),
            )
            .map_err(RestoreError::Backup)?,
            charge,
            licences,
            signature: crate::crypto::Signature([0; 64]),
        })),
        now_unix,
    );
    secret.sign_body(&identity.serial, &mut body);
    Ok(RecoveryPlan {
        body,
        from: next,
        to: rec.counter,
        records: records.len() as u64,
    })
}
