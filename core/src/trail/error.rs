//! Why a trail is refused or an operation on it failed: [`TrailError`], one variant per
//! check, and the [`CrashPoint`]s at which tests stop a Write.

use super::body::BodyError;
use super::file::FormatError;
use crate::card::CardError;
use std::path::{Path, PathBuf};

/// Why a trail is invalid or an operation on it failed. Every variant means "invalid":
/// there is no error path that lets a trail through (T21).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    /// Reading or writing the trail failed.
    #[error("trail {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file is malformed.
    #[error("trail file: {0}")]
    Format(FormatError),
    /// The trail, or the card presented, belongs to another card.
    #[error("wrong card: {0}")]
    WrongCard(String),
    /// A record's signature does not verify against the expected card (\[0060\] step [6.2]).
    #[error(
        "record {index} (counter {counter}): signature does not verify — the record was modified or comes from another card"
    )]
    BadSignature {
        /// Position in the trail (0-based).
        index: u64,
        /// The counter the record claims.
        counter: u64,
    },
    /// A counter is missing (\[0060\] step [6.3]): records were deleted.
    #[error(
        "gap at record {index}: expected counter {expected}, found {found} — records were deleted"
    )]
    Gap {
        /// Position of the first record after the hole.
        index: u64,
        /// The counter that should be there.
        expected: u64,
        /// The counter found.
        found: u64,
    },
    /// Records are out of order.
    #[error(
        "record {index} is out of order: expected counter {expected}, found {found} — records were reordered"
    )]
    Reordered {
        /// Position of the first misplaced record.
        index: u64,
        /// The counter that should be there.
        expected: u64,
        /// The counter found.
        found: u64,
    },
    /// Two records carry the same counter (a duplicated record or a forked card, T6).
    #[error(
        "record {index} repeats counter {counter} — a record was duplicated, or the card was cloned"
    )]
    Duplicate {
        /// Position of the second record.
        index: u64,
        /// The repeated counter.
        counter: u64,
    },
    /// A signed record's body is not in the body format.
    #[error("record {index}: body is malformed: {error}")]
    BadBody {
        /// Position of the record.
        index: u64,
        /// The parse error.
        error: BodyError,
    },
    /// The first record is not the trail's genesis record.
    #[error("the trail does not begin with its genesis record — its beginning was removed")]
    FirstNotGenesis,
    /// A genesis record somewhere other than first.
    #[error("record {index} is a second genesis record — trails were spliced")]
    UnexpectedGenesis {
        /// Position of the record.
        index: u64,
    },
    /// The trail does not start at the card's origin.
    #[error(
        "the trail starts at counter {first} but the card's first counter is {origin} — the start of the trail is missing"
    )]
    NotAtOrigin {
        /// The trail's first counter.
        first: u64,
        /// The card's origin.
        origin: u64,
    },
    /// The card has signed more records than the trail holds: truncation or backup-and-restore (T3, T4).
    #[error(
        "the trail ends at counter {trail_next} but the card has signed up to counter {card_counter}: {missing} record(s) are missing from the end — the trail was truncated or rolled back to an older copy (backup-and-restore)",
        trail_next = .trail_next.wrapping_sub(1), card_counter = .card_counter.wrapping_sub(1), missing = .card_counter.wrapping_sub(*.trail_next)
    )]
    Behind {
        /// The counter the next record of the trail would carry.
        trail_next: u64,
        /// The card's counter.
        card_counter: u64,
    },
    /// The trail holds records the card never signed at its current counter: the card was
    /// rolled back (only possible with an emulated card) or the trail is another card's.
    #[error(
        "the trail holds records up to counter {last} but the card's counter is only {card_counter} — the card state was restored from a copy, or this trail is not this card's"
    )]
    Ahead {
        /// The last counter in the trail.
        last: u64,
        /// The card's counter.
        card_counter: u64,
    },
    /// The last record is damaged and can't be rebuilt from the card.
    #[error(
        "the last record of the trail is damaged ({bytes} bytes torn) and can't be rebuilt from the card"
    )]
    TornTail {
        /// Bytes after the last complete record.
        bytes: u64,
    },
    /// The card signed a record the trail lacks, and the saved intent does not match it.
    #[error(
        "the card signed record {counter} but the trail has no intact copy of what it signed — the record is lost"
    )]
    LostPending {
        /// The counter of the lost record.
        counter: u64,
    },
    /// Write step \[7\] failed: the card's fresh signature does not verify (\[0059\]).
    #[error("the card's signature for counter {counter} does not verify against the expected key")]
    CardSignatureInvalid {
        /// The counter signed.
        counter: u64,
    },
    /// \[0060\] step \[5\]: the card's counter and the last record disagree.
    #[error("the card counter {card} does not match the last record's counter {record}")]
    CounterMismatch {
        /// From GetCounter.
        card: u64,
        /// From the record.
        record: u64,
    },
    /// The trail file shrank or was replaced while in use.
    #[error("the trail file was truncated or replaced while in use")]
    Shrunk,
    /// A trail already exists where one was to be created.
    #[error("a trail already exists at {0}")]
    Exists(PathBuf),
    /// The card already signed records but this trail is new: the real trail is missing.
    #[error(
        "this card has already signed {used} record(s) since counter {origin}; its trail is missing (restore it rather than starting a new one)"
    )]
    CardAlreadyUsed {
        /// The card's origin.
        origin: u64,
        /// Records signed.
        used: u64,
    },
    /// The card failed.
    #[error(transparent)]
    Card(#[from] CardError),
    /// A crash simulated by a test at a [`CrashPoint`] (the `test-hooks` feature).
    #[cfg(feature = "test-hooks")]
    #[error("simulated crash at {0:?}")]
    InjectedCrash(CrashPoint),
    /// `Trail::archive` found nothing it may move out of the working trail.
    #[error("nothing archived: {0}")]
    NotArchivable(&'static str),
    /// The trail's records before `first` were archived, and no validator record from a
    /// trusted validation server vouches for them ([`validator::chain_origin`](super::validator::chain_origin)).
    #[error(
        "the trail's records before counter {first} were archived out of it, and no trusted validation server vouches for them here — verify it with the key of the server whose validator it was archived at (a trail missing its beginning is never taken for an archived one)"
    )]
    Archived {
        /// The trail's first counter.
        first: u64,
    },
    /// A recovery record does not account for the hole before it: wrong counters, an
    /// untrusted or forged server signature, or records before it that are not the
    /// server's backup (\[0062\]; see [`validator::check_recovery`](super::validator::check_recovery)).
    #[error("record {index} is a recovery record that can't be trusted: {reason}")]
    BadRecovery {
        /// Position of the recovery record.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A validator record naming a trusted server key is forged, or the records it
    /// vouches for were changed (\[0094\]; see [`validator`](super::validator)).
    #[error("record {index} is a validator record that can't be trusted: {reason}")]
    BadValidator {
        /// Position of the validator record.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Steps of Write at which tests simulate a crash (T11, T15 of DESIGN): the process
/// stops there, and whatever was durable at that point is all a new process finds. Only
/// with the `test-hooks` feature, which the crate's own tests turn on.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the intent was saved, before the card signed.
    AfterIntent,
    /// After the card signed and incremented, before anything was appended.
    AfterSign,
    /// Half the record's frame written.
    MidAppend,
    /// The record appended and synced, the intent not yet marked committed.
    AfterAppend,
}

impl From<FormatError> for TrailError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl TrailError {
    /// A short, stable name of the check that failed, for scripts and UI screens.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Format(_) => "format",
            Self::WrongCard(_) => "wrong-card",
            Self::BadSignature { .. } => "signature",
            Self::Gap { .. } => "gap",
            Self::Reordered { .. } => "order",
            Self::Duplicate { .. } => "duplicate",
            Self::BadBody { .. } => "body",
            Self::FirstNotGenesis | Self::UnexpectedGenesis { .. } | Self::NotAtOrigin { .. } => {
                "start"
            }
            Self::Behind { .. } => "rollback",
            Self::Ahead { .. } => "card-rollback",
            Self::TornTail { .. } | Self::LostPending { .. } => "torn-tail",
            Self::CardSignatureInvalid { .. } | Self::CounterMismatch { .. } => "card",
            Self::Shrunk => "replaced",
            Self::Exists(_) | Self::CardAlreadyUsed { .. } => "setup",
            Self::Card(_) => "card-io",
            #[cfg(feature = "test-hooks")]
            Self::InjectedCrash(_) => "crash",
            Self::BadValidator { .. } => "validator",
            Self::BadRecovery { .. } => "recovery",
            // A trail that does not begin where it should, like `NotAtOrigin`.
            Self::Archived { .. } => "start",
            Self::NotArchivable(_) => "archive",
        }
    }

    /// The position of the record at fault, where one is.
    pub fn record(&self) -> Option<u64> {
        match self {
            Self::BadSignature { index, .. }
            | Self::Gap { index, .. }
            | Self::Reordered { index, .. }
            | Self::Duplicate { index, .. }
            | Self::BadBody { index, .. }
            | Self::UnexpectedGenesis { index }
            | Self::BadValidator { index, .. }
            | Self::BadRecovery { index, .. } => Some(*index),
            Self::Format(
                FormatError::Checksum { index }
                | FormatError::FrameLength { index, .. }
                | FormatError::Record { index, .. },
            ) => Some(*index),
            Self::FirstNotGenesis => Some(0),
            _ => None,
        }
    }

    /// True when the trail (or card) is not valid, as opposed to an I/O or card-link failure.
    pub fn is_invalid(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if matches!(self, Self::InjectedCrash(_)) {
            return false;
        }
        !matches!(
            self,
            Self::Io { .. } | Self::Card(CardError::Transport(_)) | Self::Exists(_)
        )
    }
}

/// Maps an I/O error on `path` to [`TrailError::Io`].
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrailError + '_ {
    move |error| TrailError::Io {
        path: path.to_path_buf(),
        error,
    }
}
