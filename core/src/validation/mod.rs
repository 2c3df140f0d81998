//! Online validation of an installed copy (WO 98/33296, the second seed; Figures 2–4).
//!
//! The copy sends a **VAL_REQ** `{UI, ICV, PSI, VSSI, DT, VSI, IV}` plus the ICV of the
//! viewer executable, encrypted to the validation server's public key ("the UI and ICV
//! values are encrypted by Public Key methods, to prevent other parties correlating the
//! two values", Figure 2's description). The server answers with a **VAL_OK** — a
//! "ticket of authenticity" with the same fields, digitally signed by the server key
//! (Figure 4) — or a signed refusal of the same shape that says why.
//!
//! * The server key pair is derived from the vendor's secret ([`ServerSecret::derive`]);
//!   its public half goes into every keyfile issued with a server, so the viewer knows
//!   whom to ask and whom to trust (the distribution and validation servers of Figures 1
//!   and 2 are one process). One P-256 key both signs (ECDSA) and decrypts (ECIES): the
//!   keyfile has room for one key, and ECDSA and ECIES on one key are jointly secure in
//!   the generic group model (Degabriele, Lehmann, Paterson, Smart, Strefler, CT-RSA
//!   2012); the encryption is domain-separated by its HKDF info and never signs.
//! * ECIES: an ephemeral P-256 key, ECDH, HKDF-SHA-256 (salt: both public keys) →
//!   AES-256-GCM key and nonce; the header is the associated data.
//! * PSI (program sequence identifier) counts the copy's requests; VSSI (validation
//!   server sequence identifier) counts the server's tickets for the copy. A request
//!   must carry a PSI above the last one the server saw and the VSSI of the ticket it
//!   answers; a ticket must answer the copy's one pending request (it carries the hash
//!   of that request). So every replay fails (T17): an old VAL_OK, one for another copy,
//!   one older than the newest the copy has seen.
//! * Both sequences move by bounded steps ([`MAX_SEQUENCE_STEP`]): a huge jump is refused
//!   and not adopted, so it cannot brick either side (T19).
//! * Tickets expire, and the keyfile bounds the offline grace (T18): see
//!   [`ClientState::check_offline`].
//! * After each VAL_OK the UI rolls forward ([`Ui::roll`]) on both sides: an old UI
//!   presented again is a clone, and the server flags and revokes the copy (T15).
//!
//! Every parse is strict and fixed-size; every error is "invalid" (T21, T25).

mod account;
mod backup;
pub mod challenge;
pub(crate) mod client;
mod ecies;
mod restore;
mod server;
mod trail_req;
mod wire;

pub use account::{
    Hole, MAX_ACCOUNT_ANSWER, MAX_ACCOUNTS, check_accounts, encode_accounts, plan_accounts,
    unaccounted_holes,
};
pub use backup::{
    ExtendError, Extended, MAX_EXTENSION_ENVELOPE, MAX_EXTENSION_TRAIL, extend_backup,
    extension_fragment, seal_backup_extension,
};
pub use challenge::{
    Answer, CHALLENGE_ENDPOINT, Challenge, ChallengeError, ChallengeStatus, answer_in,
    open_challenge,
};
pub use client::{
    CardProgress, ClientState, OnlineStatus, RequestSigner, STATE_LEN, TrailSigner, WhenDue,
    state_path, when_round_failed,
};
pub use restore::{
    AnswerKey, MAX_RESTORE_ANSWER, MAX_RESTORE_REQUEST, RecoveryPlan, RestoreAnswer, RestoreError,
    RestoreRequest, check_restore_request, open_restore_answer, plan_recovery, recovery_terms,
    restore_request_body, restore_value, seal_restore_answer, seal_restore_request,
};
pub use server::{
    CopyState, DEFAULT_OFFLINE_RECORDS, Decision, Lookup, Presented, ServerSecret, Terms, decide,
};
pub use trail_req::{
    MAX_TRAIL_ENVELOPE, MAX_TRAIL_REQUEST_TRAIL, TrailRequest, seal_trail_request,
};
pub use wire::{
    CardCheck, CardProof, ENVELOPE_LEN, ENVELOPE_V1_LEN, PROOF_LEN, REQUEST_LEN, Status,
    VERDICT_LEN, ValReq, Verdict, request_hash, request_record_body,
};

pub use crate::icv::{Icv, IcvVariant, Iv, Ui};

/// The largest step either sequence identifier may take at once (T19). A legitimate
/// copy moves PSI by one per attempt and sees VSSI move by one per ticket (a few more
/// when answers were lost); anything beyond this is refused without being adopted.
pub const MAX_SEQUENCE_STEP: u64 = 1 << 16;

/// How far a client's clock may be behind the server's date of its last ticket before
/// the copy counts the clock as set back (T20's rule applied to tickets).
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// Why a validation message or state was refused. Every error means "not validated".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A message has the wrong length (they are all fixed-size).
    #[error("{what} has {actual} bytes; expected exactly {expected}")]
    Length {
        /// Which message.
        what: &'static str,
        /// Its required length.
        expected: usize,
        /// Its actual length.
        actual: usize,
    },
    /// A message does not start with its magic bytes.
    #[error("{0} has the wrong magic bytes")]
    BadMagic(&'static str),
    /// A message or state of a version this build does not read.
    #[error("{what} version {version} is not supported")]
    UnsupportedVersion {
        /// Which message.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A field holds a value outside its range.
    #[error("{0}")]
    BadField(&'static str),
    /// The request does not decrypt under this server's key (opaque).
    #[error("the request does not decrypt under this server's key")]
    Decrypt,
    /// The ticket's signature does not verify under the keyfile's server key.
    #[error("the ticket's signature does not verify under the server key in the keyfile")]
    BadSignature,
    /// The ticket names another validation server than the keyfile's.
    #[error("the ticket comes from another validation server")]
    WrongServer,
    /// The copy has no request waiting for an answer.
    #[error("no validation request is waiting for an answer")]
    NothingPending,
    /// The ticket answers another request: a replayed or foreign VAL_OK (T17).
    #[error("the ticket answers another request (a replayed or foreign VAL_OK)")]
    NotOurRequest,
    /// The ticket is for another copy (its UI is not this copy's) (T17).
    #[error("the ticket is for another copy")]
    OtherCopy,
    /// The ticket names another licence than this copy's (T33): a ticket taken from
    /// another copy.
    #[error(
        "the validation ticket is for licence {ticket}, not for this licence {licence}: a ticket from another copy does not count"
    )]
    OtherLicence {
        /// The licence the ticket names (hex).
        ticket: String,
        /// This copy's licence (hex).
        licence: String,
    },
    /// The saved ticket is this licence's, but not the one that gave this copy its
    /// current identifier (T33): put there from another state file.
    #[error(
        "the saved validation ticket was not issued to this copy as it is now (its identifier and sequence do not follow from it): validate online"
    )]
    NotThisCopysTicket,
    /// The card signed more records since the last validation than the ticket allows
    /// (T34: offline use is bounded by the card's progress, not only by the clock).
    #[error(
        "the card has signed {records} records since the last online validation, and the ticket allows {limit}: connect to the validation server"
    )]
    OfflineRecords {
        /// Records since the ticket's request.
        records: u64,
        /// The ticket's bound.
        limit: u32,
    },
    /// The reader's card could not sign the request (T32): nothing was sent.
    #[error("the card could not sign the validation request: {0}")]
    CardSigning(String),
    /// The ticket's VSSI is not newer than the newest this copy has seen (T17).
    #[error("the ticket's server sequence {got} is not newer than {newest}, the newest seen")]
    OldTicket {
        /// The ticket's VSSI.
        got: u64,
        /// The newest VSSI this copy accepted.
        newest: u64,
    },
    /// The ticket's VSSI jumps too far ahead; refused and not adopted (T19).
    #[error(
        "the ticket's server sequence jumps from {newest} to {got}; refused (see docs/validation.md, recovery)"
    )]
    SequenceJump {
        /// The ticket's VSSI.
        got: u64,
        /// The newest VSSI this copy accepted.
        newest: u64,
    },
    /// The ticket expired before it was received, or its dates are inconsistent.
    #[error("the ticket is expired or its dates are inconsistent")]
    TicketDates,
    /// The server refused the validation; the status says why.
    #[error("the validation server refused this copy: {0}")]
    Refused(Status),
    /// The copy has never been validated online, and its keyfile requires it.
    #[error("this copy has not been validated online yet; connect to the validation server")]
    NeverValidated,
    /// The last ticket has expired (T18).
    #[error("the last validation ticket expired at {expired}; connect to the validation server")]
    TicketExpired {
        /// When it expired (RFC 3339).
        expired: String,
    },
    /// Offline longer than the keyfile allows (T18).
    #[error("last validated {last}; this licence requires an online check every {days} days")]
    OfflineTooLong {
        /// The last validation (RFC 3339).
        last: String,
        /// The keyfile's interval.
        days: u16,
    },
    /// The clock is earlier than the server's date on the last ticket.
    #[error("the clock ({now}) is earlier than the last validation ({last}): was it set back?")]
    ClockBehind {
        /// The local time (RFC 3339).
        now: String,
        /// The last ticket's date (RFC 3339).
        last: String,
    },
    /// The copy's state file is for another licence.
    #[error("the validation state belongs to another licence")]
    WrongLicence,
    /// The state file's checksum does not match.
    #[error("the validation state file is corrupt")]
    CorruptState,
    /// The server key cannot be derived (never expected).
    #[error("the validation server key cannot be derived")]
    KeyDerivation,
    /// Reading or writing the state failed.
    #[error("validation state I/O: {0}")]
    Io(String),
}

impl From<std::io::Error> for ValidationError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests;
