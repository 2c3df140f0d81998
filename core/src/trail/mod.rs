//! The audit trail of EP 0 895 148 (\[0056\]–\[0061\], \[0095\], \[0098\]–\[0102\]).
//!
//! A trail belongs to one card. Each record is signed by the card over
//! `hash(hash(nonce, body), serial, counter)` and the card's counter only goes up, so
//! the records of a trail must carry consecutive counters from the card's origin up to
//! the card's counter − 1. Anything else — a changed byte, a hole, a swap, a truncated
//! tail, an old copy put back, records from another card — breaks that chain
//! (\[0050\], \[0061\]).
//!
//! [`Trail::write`] is the Write routine of \[0059\]; [`Trail::validate`] is ValidateTrail
//! of \[0060\]. Both run under a lock on the trail file and inside one card transaction:
//! that is the synchronisation role of the rental server (\[0058\]). A [`Trail`] kept open
//! remembers how far it has verified, so re-validation only checks new records.

pub mod body;
pub mod file;
pub mod record;
pub mod validate;
pub mod validator;

pub use body::{Body, BodyError, LicenceId, Usage};
pub use record::Record;

use crate::card::{Card, CardError, CardIdentity, CardSession};
use crate::crypto::{PublicKey, SignatureVerifier, default_verifier};
use crate::fsutil::LockGuard;
use file::{FormatError, Frames, HEADER_LEN, Header, Intent};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Trail files larger than this are refused (about five million records).
pub const MAX_TRAIL_BYTES: u64 = 1 << 30;

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
    /// A crash simulated by a test at a [`CrashPoint`].
    #[error("simulated crash at {0:?}")]
    InjectedCrash(CrashPoint),
    /// `Trail::archive` found nothing it may move out of the working trail.
    #[error("nothing archived: {0}")]
    NotArchivable(&'static str),
    /// The trail's records before `first` were archived, and no validator record from a
    /// trusted validation server vouches for them ([`validator::chain_origin`]).
    #[error(
        "the trail's records before counter {first} were archived out of it, and no trusted validation server vouches for them here — validate it with the key of the server whose validator it was archived at (a trail missing its beginning is never taken for an archived one)"
    )]
    Archived {
        /// The trail's first counter.
        first: u64,
    },
    /// A recovery record does not account for the hole before it: wrong counters, an
    /// untrusted or forged server signature, or records before it that are not the
    /// server's backup (\[0062\]; see [`validator::check_recovery`]).
    #[error("record {index} is a recovery record that can't be trusted: {reason}")]
    BadRecovery {
        /// Position of the recovery record.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A validator record naming a trusted server key is forged, or the records it
    /// vouches for were changed (\[0094\]; see [`validator`]).
    #[error("record {index} is a validator record that can't be trusted: {reason}")]
    BadValidator {
        /// Position of the validator record.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Steps of Write at which tests simulate a crash (T11, T15 of DESIGN): the process
/// stops there, and whatever was durable at that point is all a new process finds.
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
        !matches!(
            self,
            Self::Io { .. }
                | Self::Card(CardError::Transport(_))
                | Self::Exists(_)
                | Self::InjectedCrash(_)
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrailError + '_ {
    move |error| TrailError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What a successful ValidateTrail found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Records in the trail after the nonce record was written.
    pub records: u64,
    /// The first record's counter.
    pub first_counter: u64,
    /// The last record's counter (the nonce record just written).
    pub last_counter: u64,
    /// Records whose signatures were verified by this call (the rest were verified before).
    pub newly_verified: u64,
}

/// What reconciling the trail with the card did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Trail and card agreed.
    InStep,
    /// A record signed before a crash was rebuilt from the card and appended.
    Recovered {
        /// Its counter.
        counter: u64,
    },
}

/// What [`Trail::archive`] moved out of the working trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The archive file: a trail file (the old header) holding the records moved.
    pub path: PathBuf,
    /// Records moved.
    pub records: u64,
    /// Their counters: `first..=upto`.
    pub first: u64,
    /// The last counter moved: the `upto` of the validator record that vouches for them.
    pub upto: u64,
    /// Records left in the working trail.
    pub kept: u64,
}

/// An open trail for one card.
pub struct Trail {
    path: PathBuf,
    intent_path: PathBuf,
    header: Header,
    identity: CardIdentity,
    records: Vec<Record>,
    verified: usize,
    end: u64,
    torn: u64,
    card_checked: bool,
    threads: usize,
    verifier: &'static dyn SignatureVerifier,
    last_recovery: Option<u64>,
    crash_at: Option<CrashPoint>,
    // Validator fast start ([0094], `validator`): keys trusted (none by default, which
    // keeps full validation), the validator a fresh verification started from, and how
    // many records' signatures that let it skip.
    trusted_validators: Vec<PublicKey>,
    vouched: Option<validator::Vouched>,
    skipped: u64,
    // The file (device, inode) this handle read, so a trail replaced under it (archived by
    // another process, or swapped) is refused instead of read at the old offsets.
    file_id: Option<(u64, u64)>,
    // The mirror copy on another medium ([0062]) and why it last failed, if it did.
    mirror: Option<PathBuf>,
    mirror_error: Option<String>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("path", &self.path)
            .field("records", &self.records.len())
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// The intent file beside a trail.
pub fn intent_path(trail: &Path) -> PathBuf {
    let mut s = trail.as_os_str().to_os_string();
    s.push(".intent");
    PathBuf::from(s)
}

const INTENT_SIZE: usize = 1 + 8 + 8 + 32 + 2 + body::MAX_BODY + 4;
const PENDING: u8 = b'P';
const COMMITTED: u8 = b'C';

impl Trail {
    /// Creates a new trail for a card that has never signed, and writes its genesis record.
    pub fn create(
        path: impl Into<PathBuf>,
        card: &mut Card,
        identity: &CardIdentity,
    ) -> Result<Self, TrailError> {
        let path = path.into();
        let lock = lock_absent(&path)?;
        {
            let mut s = card.session()?;
            check_identity(&mut s, identity)?;
            let c = s.get_counter()?;
            if c != identity.origin {
                return Err(TrailError::CardAlreadyUsed {
                    origin: identity.origin,
                    used: c.saturating_sub(identity.origin),
                });
            }
        }
        let header = Header::for_card(identity, identity.origin);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(&header.encode()).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        crate::fsutil::sync_dir(crate::fsutil::parent_dir(&path)).map_err(io(&path))?;
        let mut t = Self::from_parts(
            path,
            header,
            identity.clone(),
            Frames {
                records: vec![],
                end: HEADER_LEN as u64,
                torn_bytes: 0,
            },
        );
        let mut s = card.session()?;
        t.card_checked = true;
        let next = t.next_counter();
        t.write_locked(&mut s, &Body::now(Usage::Genesis), next)?;
        drop(lock);
        Ok(t)
    }

    fn from_parts(path: PathBuf, header: Header, identity: CardIdentity, frames: Frames) -> Self {
        Self {
            intent_path: intent_path(&path),
            path,
            header,
            identity,
            records: frames.records,
            verified: 0,
            end: frames.end,
            torn: frames.torn_bytes,
            card_checked: false,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            verifier: default_verifier(),
            last_recovery: None,
            crash_at: None,
            trusted_validators: Vec::new(),
            vouched: None,
            skipped: 0,
            file_id: None,
            mirror: None,
            mirror_error: None,
        }
    }

    /// Opens an existing trail expected to belong to `identity`. Reads and checks the
    /// format; signatures are verified by [`Trail::validate`] or [`Trail::verify_offline`].
    pub fn open(path: impl Into<PathBuf>, identity: &CardIdentity) -> Result<Self, TrailError> {
        let path = path.into();
        let mut f = File::open(&path).map_err(io(&path))?;
        let meta = f.metadata().map_err(io(&path))?;
        let len = meta.len();
        let file_id = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino())
        };
        if len > MAX_TRAIL_BYTES {
            return Err(TrailError::Io {
                path,
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "trail file larger than 1 GiB",
                ),
            });
        }
        let mut head = [0u8; HEADER_LEN];
        f.read_exact(&mut head)
            .map_err(|_| TrailError::Format(FormatError::ShortHeader))?;
        let header = Header::decode(&head)?;
        if header.serial != identity.serial {
            return Err(TrailError::WrongCard(format!(
                "this trail belongs to card {}, not card {}",
                header.serial, identity.serial
            )));
        }
        if header.key_fingerprint != identity.public_key.fingerprint() {
            return Err(TrailError::WrongCard(
                "the trail was made with a different card key".into(),
            ));
        }
        // A later first counter is an archived trail: validation needs its anchor validator.
        if header.first_counter < identity.origin {
            return Err(TrailError::NotAtOrigin {
                first: header.first_counter,
                origin: identity.origin,
            });
        }
        let buf = file::read_from(&mut f, HEADER_LEN as u64, MAX_TRAIL_BYTES).map_err(io(&path))?;
        let frames = file::parse_frames(&buf, HEADER_LEN as u64, 0)?;
        let mut t = Self::from_parts(path, header, identity.clone(), frames);
        t.file_id = Some(file_id);
        Ok(t)
    }

    /// Opens the trail at `path`, creating it (with its genesis record) when missing.
    pub fn open_or_create(
        path: impl Into<PathBuf>,
        card: &mut Card,
        identity: &CardIdentity,
    ) -> Result<Self, TrailError> {
        let path = path.into();
        if path.exists() {
            Self::open(path, identity)
        } else {
            Self::create(path, card, identity)
        }
    }

    /// Sets how many threads verify signatures (default: all cores).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Uses another signature verifier (default: the fastest available).
    pub fn set_verifier(&mut self, verifier: &'static dyn SignatureVerifier) {
        self.verifier = verifier;
    }

    /// Trusts validator records signed by these validation-server keys (\[0094\]): the next
    /// verification of a trail not verified yet starts from the newest such record, checking
    /// the records it vouches for by the chain hash only (see [`validator`]). Empty (the
    /// default) means full validation, exactly as without validator records.
    pub fn set_trusted_validators(&mut self, keys: Vec<PublicKey>) {
        self.trusted_validators = keys;
    }

    /// The validator record the verification of this trail started from, if it fast-started.
    pub fn vouched(&self) -> Option<&validator::Vouched> {
        self.vouched.as_ref()
    }

    /// The verified records whose use is *not* in the fast start's validator totals, with
    /// their bodies: all verified records without a fast start, else those after its `upto`.
    /// Totals = the validator's totals + these ([`crate::policy::Tally::resume`]).
    pub fn unvouched_bodies(&self) -> impl Iterator<Item = (u64, Body)> + '_ {
        let upto = self.vouched.as_ref().map(|v| v.upto);
        self.verified_bodies()
            .filter(move |(c, _)| upto.is_none_or(|u| *c > u))
    }

    /// The records read so far, in trail order. Only the first [`Trail::verified_len`] are verified.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// How many leading records are verified.
    pub fn verified_len(&self) -> usize {
        self.verified
    }

    /// The verified records with their parsed bodies (bodies of verified records always parse).
    pub fn verified_bodies(&self) -> impl Iterator<Item = (u64, Body)> + '_ {
        self.records[..self.verified]
            .iter()
            .filter_map(|r| Body::parse(&r.body).ok().map(|b| (r.counter, b)))
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The card this trail belongs to.
    pub fn identity(&self) -> &CardIdentity {
        &self.identity
    }

    /// The path of the trail file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counter of the last record recovered from the card by this handle, if any.
    pub fn last_recovery(&self) -> Option<u64> {
        self.last_recovery
    }

    /// Makes the next Write stop at `point` as if the process had died there (tests only).
    pub fn crash_at(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    fn crash(&self, point: CrashPoint) -> Result<(), TrailError> {
        if self.crash_at == Some(point) {
            Err(TrailError::InjectedCrash(point))
        } else {
            Ok(())
        }
    }

    /// The counter the next record takes: one after the last record's (a restored trail
    /// has a hole before its recovery record, so this is not first + length).
    fn next_counter(&self) -> u64 {
        self.records
            .last()
            .map_or(self.header.first_counter, |r| r.counter.saturating_add(1))
    }

    /// Reads records other processes appended since we last looked (under the lock).
    fn sync(&mut self) -> Result<(), TrailError> {
        use std::os::unix::fs::MetadataExt as _;
        let mut f = File::open(&self.path).map_err(io(&self.path))?;
        let meta = f.metadata().map_err(io(&self.path))?;
        let id = (meta.dev(), meta.ino());
        if *self.file_id.get_or_insert(id) != id {
            return Err(TrailError::Shrunk);
        }
        let len = meta.len();
        if len < self.end {
            return Err(TrailError::Shrunk);
        }
        if len > MAX_TRAIL_BYTES {
            return Err(TrailError::Io {
                path: self.path.clone(),
                error: std::io::Error::other("trail file larger than 1 GiB"),
            });
        }
        if len == self.end && self.torn == 0 {
            return Ok(());
        }
        let buf = file::read_from(&mut f, self.end, MAX_TRAIL_BYTES).map_err(io(&self.path))?;
        let frames = file::parse_frames(&buf, self.end, self.records.len() as u64)?;
        self.records.extend(frames.records);
        self.end = frames.end;
        self.torn = frames.torn_bytes;
        Ok(())
    }

    /// Verifies records not yet verified (incremental validation).
    fn verify_new(&mut self) -> Result<u64, TrailError> {
        let mut from = self.verified;
        if from == 0 && !self.trusted_validators.is_empty() {
            // Fast start ([0094]): the records a trusted validator vouches for are checked
            // by the chain hash (in `fast_start`), not by signature.
            if let Some(v) = validator::fast_start(
                &self.records,
                &self.identity,
                self.header.first_counter,
                &self.trusted_validators,
                self.verifier,
            )? {
                from = v.prefix;
                self.skipped = self.skipped.saturating_add(v.prefix as u64);
                self.vouched = Some(v);
            }
        }
        validate::verify_range(
            &self.records,
            from,
            &self.identity,
            self.header.first_counter,
            &self.trusted_validators,
            self.verifier,
            self.threads,
        )?;
        self.verified = self.records.len();
        Ok((self.records.len() - from) as u64)
    }

    /// Brings the trail in step with the card: detects rollback and truncation, and
    /// completes a record the card signed just before a crash (from GET_LAST_SIGNATURE).
    fn reconcile(&mut self, s: &mut CardSession<'_>) -> Result<Reconciled, TrailError> {
        let next = self.next_counter();
        let card = s.get_counter()?;
        if card < next {
            return Err(TrailError::Ahead {
                last: next.saturating_sub(1),
                card_counter: card,
            });
        }
        if card == next {
            return if self.torn > 0 {
                Err(TrailError::TornTail { bytes: self.torn })
            } else {
                Ok(Reconciled::InStep)
            };
        }
        if card > next.saturating_add(1) {
            return Err(TrailError::Behind {
                trail_next: next,
                card_counter: card,
            });
        }
        // The card is exactly one ahead: it signed record `next`, which the trail lacks.
        let intent = read_intent(&self.intent_path);
        let Some((state, intent)) = intent else {
            return Err(if self.torn > 0 {
                TrailError::LostPending { counter: next }
            } else {
                TrailError::Behind {
                    trail_next: next,
                    card_counter: card,
                }
            });
        };
        if intent.counter != next {
            return Err(TrailError::Behind {
                trail_next: next,
                card_counter: card,
            });
        }
        // A committed record missing without a torn tail was removed on purpose: rollback.
        if state == COMMITTED && self.torn == 0 {
            return Err(TrailError::Behind {
                trail_next: next,
                card_counter: card,
            });
        }
        let Some(last) = s.get_last_signature()? else {
            return Err(TrailError::LostPending { counter: next });
        };
        let h1 = record::h1(&intent.nonce, &intent.body);
        if last.counter != next || last.h != h1 {
            return Err(TrailError::LostPending { counter: next });
        }
        let rec = Record {
            nonce: intent.nonce,
            body: intent.body,
            counter: next,
            signature: last.signature,
        };
        if !rec.verify(&self.identity, self.verifier) {
            return Err(TrailError::CardSignatureInvalid { counter: next });
        }
        self.append(&rec, true)?;
        self.mark_committed()?;
        self.last_recovery = Some(next);
        Ok(Reconciled::Recovered { counter: next })
    }

    /// Appends a frame after the last complete record (dropping torn bytes when `repair`), fsynced.
    fn append(&mut self, rec: &Record, repair: bool) -> Result<(), TrailError> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        if self.torn > 0 {
            if !repair {
                return Err(TrailError::TornTail { bytes: self.torn });
            }
            f.set_len(self.end).map_err(io(&self.path))?;
        }
        let frame = file::encode_frame(rec);
        f.write_all_at(&frame, self.end).map_err(io(&self.path))?;
        if self.torn > 0 {
            f.sync_all()
        } else {
            f.sync_data()
        }
        .map_err(io(&self.path))?;
        self.torn = 0;
        let prev_end = self.end;
        self.end += frame.len() as u64;
        self.records.push(rec.clone());
        self.update_mirror(prev_end, &frame);
        Ok(())
    }

    /// Keeps a mirror copy of the trail at `path` (\[0062\]: "at least one backup audit trail on
    /// a separate medium"): after every record is saved and synced here, the same frame is
    /// appended to the mirror and synced; a mirror that is missing or not a prefix of this
    /// trail is rewritten whole (atomically). `None` stops mirroring. A failing mirror never
    /// stops a Write — the record is safe in the trail and signed by the card — but is
    /// reported by [`Trail::mirror_error`] until a later write succeeds.
    pub fn set_mirror(&mut self, path: Option<PathBuf>) {
        self.mirror = path;
        self.mirror_error = None;
    }

    /// [`Trail::set_mirror`], then the mirror brought up to date at once ([`Trail::sync_mirror`])
    /// for a caller that goes on whatever happens (opening a document, after a restore or
    /// an archive): a failure shows as [`Trail::mirror_error`], never as an error.
    pub fn set_mirror_now(&mut self, path: Option<PathBuf>) {
        self.set_mirror(path);
        if let Err(e) = self.sync_mirror() {
            self.mirror_error = Some(e.to_string());
        }
    }

    /// Why the mirror could not be brought up to date at the last write, if it could not.
    pub fn mirror_error(&self) -> Option<&str> {
        self.mirror_error.as_deref()
    }

    /// Brings the mirror in step with the trail now: nothing to do when it has this
    /// trail's length and header, else a whole copy.
    pub fn sync_mirror(&mut self) -> Result<(), TrailError> {
        let Some(m) = self.mirror.clone() else {
            return Ok(());
        };
        let in_step = File::open(&m).is_ok_and(|f| self.mirror_at(&f, self.end).unwrap_or(false));
        if !in_step {
            self.copy_to_mirror(&m)?;
        }
        self.mirror_error = None;
        Ok(())
    }

    /// Whether the open mirror file `f` is this trail up to `len` bytes, as far as its
    /// length and header tell (a mismatch means a whole copy, never an append).
    fn mirror_at(&self, f: &File, len: u64) -> std::io::Result<bool> {
        if f.metadata()?.len() != len {
            return Ok(false);
        }
        let mut head = [0u8; HEADER_LEN];
        f.read_exact_at(&mut head, 0)?;
        Ok(head == self.header.encode())
    }

    fn copy_to_mirror(&self, m: &Path) -> Result<(), TrailError> {
        let bytes =
            crate::fsutil::read_bounded(&self.path, MAX_TRAIL_BYTES).map_err(io(&self.path))?;
        let upto = usize::try_from(self.end)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        if let Some(dir) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        crate::fsutil::atomic_write(m, &bytes[..upto]).map_err(io(m))
    }

    fn update_mirror(&mut self, prev_end: u64, frame: &[u8]) {
        let Some(m) = self.mirror.clone() else {
            return;
        };
        let appended = (|| -> std::io::Result<bool> {
            let f = match OpenOptions::new().read(true).write(true).open(&m) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            if !self.mirror_at(&f, prev_end)? {
                return Ok(false);
            }
            f.write_all_at(frame, prev_end)?;
            f.sync_data()?;
            Ok(true)
        })();
        let result = match appended {
            Ok(true) => Ok(()),
            Ok(false) => self.copy_to_mirror(&m).map_err(|e| e.to_string()),
            Err(e) => Err(format!("mirror {}: {e}", m.display())),
        };
        self.mirror_error = result.err();
    }

    fn write_intent(&self, intent: &Intent) -> Result<(), TrailError> {
        let mut buf = vec![0u8; INTENT_SIZE];
        buf[0] = PENDING;
        let enc = intent.encode();
        buf[1..1 + enc.len()].copy_from_slice(&enc);
        let existed = self.intent_path.exists();
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.intent_path)
            .map_err(io(&self.intent_path))?;
        f.write_all_at(&buf, 0).map_err(io(&self.intent_path))?;
        if existed { f.sync_data() } else { f.sync_all() }.map_err(io(&self.intent_path))?;
        if !existed {
            crate::fsutil::sync_dir(crate::fsutil::parent_dir(&self.intent_path))
                .map_err(io(&self.intent_path))?;
        }
        Ok(())
    }

    fn mark_committed(&self) -> Result<(), TrailError> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.intent_path)
            .map_err(io(&self.intent_path))?;
        f.write_all_at(&[COMMITTED], 0)
            .map_err(io(&self.intent_path))?;
        f.sync_data().map_err(io(&self.intent_path))
    }

    /// Write (\[0059\]) inside an open card session; the caller holds the trail lock and
    /// has reconciled the trail with the card.
    ///
    /// `next` is the counter the record must take: the one after the last record's
    /// (`next_counter`), except in `restore`, where the recovery record follows a hole.
    fn write_locked(
        &mut self,
        s: &mut CardSession<'_>,
        body: &Body,
        next: u64,
    ) -> Result<Record, TrailError> {
        // [1] a fresh nonce; [2] h1 = hash(n, str).
        let nonce = crate::nonce::generate();
        let text = body.encode().into_bytes();
        let h1 = record::h1(&nonce, &text);
        // Persist the intent before the card signs, so a crash after signing loses nothing.
        self.write_intent(&Intent {
            counter: next,
            nonce,
            body: text.clone(),
        })?;
        self.crash(CrashPoint::AfterIntent)?;
        // [3] s = SignAndIncrement(h1).
        let signature = s.sign_and_increment(&h1)?;
        self.crash(CrashPoint::AfterSign)?;
        // [4]–[7]: the counter signed, and the signature checked before anything is saved.
        let rec = signed_record(
            s,
            &self.identity,
            self.verifier,
            nonce,
            text,
            signature,
            next,
        )?;
        let c = rec.counter;
        if c != next {
            return Err(TrailError::CounterMismatch {
                card: c,
                record: next,
            });
        }
        // [8] r = <n, str, c, s>; [9] append r.
        let all_verified = self.verified == self.records.len();
        if self.crash_at == Some(CrashPoint::MidAppend) {
            let frame = file::encode_frame(&rec);
            let f = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(io(&self.path))?;
            f.write_all_at(&frame[..frame.len() / 2], self.end)
                .map_err(io(&self.path))?;
            return Err(TrailError::InjectedCrash(CrashPoint::MidAppend));
        }
        self.append(&rec, false)?;
        self.crash(CrashPoint::AfterAppend)?;
        self.mark_committed()?;
        if all_verified {
            self.verified = self.records.len();
        }
        Ok(rec)
    }

    /// Write (\[0059\]): appends a record with `body`, signed by the card. The trail is first
    /// brought up to date and verified incrementally, so nothing is ever written after an
    /// invalid record.
    pub fn write(&mut self, card: &mut Card, body: &Body) -> Result<Record, TrailError> {
        let _lock = LockGuard::acquire(&self.path).map_err(io(&self.path))?;
        let mut s = self.in_step(card)?;
        let next = self.next_counter();
        self.write_locked(&mut s, body, next)
    }

    /// Under the trail lock: reads what other processes appended and verifies it, opens a
    /// card session, checks it is the expected card, and brings trail and card in step.
    ///
    /// Step \[6\] of \[0060\] runs on the records already in the file before anything is
    /// written, so a damaged trail is named precisely (a hole as a gap, not as a missing
    /// tail) and no counter value is spent on a trail that is already invalid.
    fn in_step<'c>(&mut self, card: &'c mut Card) -> Result<CardSession<'c>, TrailError> {
        self.sync()?;
        self.verify_new()?;
        let mut s = card.session()?;
        if !self.card_checked {
            check_identity(&mut s, &self.identity)?;
            self.card_checked = true;
        }
        self.reconcile(&mut s)?;
        self.verify_new()?;
        Ok(s)
    }

    /// ValidateTrail (\[0060\]), incremental: writes a nonce record holding the card's
    /// counter, checks it, then verifies every record not verified before.
    pub fn validate(&mut self, card: &mut Card) -> Result<Validation, TrailError> {
        let _lock = LockGuard::acquire(&self.path).map_err(io(&self.path))?;
        let before = self.verified;
        let skipped_before = self.skipped;
        // Step [6] first over the records already there (see `in_step`); the nonce record after.
        let mut s = self.in_step(card)?;
        // [1] c = GetCounter(); [2] Write(c).
        let c = s.get_counter()?;
        let next = self.next_counter();
        let rec = self.write_locked(
            &mut s,
            &Body::now(Usage::Nonce {
                value: c.to_string(),
            }),
            next,
        )?;
        drop(s);
        // [3] r = last record; [4] its signature; [5] c equals its counter.
        if !rec.verify(&self.identity, self.verifier) {
            return Err(TrailError::BadSignature {
                index: self.records.len() as u64 - 1,
                counter: rec.counter,
            });
        }
        if rec.counter != c {
            return Err(TrailError::CounterMismatch {
                card: c,
                record: rec.counter,
            });
        }
        // [6] every record: signature and counter (offset of [0095]); only records not
        // verified before are checked (write_locked marks the nonce record verified only
        // when everything before it already was).
        self.verify_new()?;
        Ok(Validation {
            records: self.records.len() as u64,
            first_counter: self.header.first_counter,
            last_counter: rec.counter,
            newly_verified: ((self.records.len() - before) as u64)
                .saturating_sub(self.skipped - skipped_before),
        })
    }

    /// ValidateTrail's checks against the card without its nonce record: the card present is
    /// the trail's, a torn tail is completed from the card's last signature, every record
    /// not verified before is verified, and the card's counter read now must be the one
    /// after the last record (else a truncated or restored trail, \[0060\] step \[5\]).
    /// Spends no card counter, so a reader may ask for their standing as often as they
    /// like; the freshness proof of a nonce record (\[0060\] steps \[1\]–\[2\]) is left to
    /// [`Trail::validate`], which every opening runs.
    pub fn check_with_card(&mut self, card: &mut Card) -> Result<(), TrailError> {
        let _lock = LockGuard::acquire(&self.path).map_err(io(&self.path))?;
        let mut s = self.in_step(card)?;
        let c = s.get_counter()?;
        let next = self.next_counter();
        if c != next {
            return Err(TrailError::CounterMismatch {
                card: c,
                record: next.saturating_sub(1),
            });
        }
        Ok(())
    }

    /// Verifies the whole trail without a card and without writing: signatures, counters,
    /// bodies, the start rule. Truncation and rollback need the card's counter and so are
    /// only caught by [`Trail::validate`]; a verifier without the card (a publisher's audit,
    /// \[0104\]) compares the last record's counter (from [`Trail::records`]) with the card's.
    /// Returns how many records this call verified.
    pub fn verify_offline(&mut self) -> Result<u64, TrailError> {
        if self.torn > 0 {
            return Err(TrailError::TornTail { bytes: self.torn });
        }
        self.verify_new()
    }

    /// Moves the records a trusted validator record vouches for out of the working trail
    /// (\[0094\]: "the vouched-for prefix may be archived"), so the working trail — and every
    /// fresh ValidateTrail — stays small however long the rental history grows.
    ///
    /// The cut is at the `upto` of the newest validator record signed by one of `trusted`
    /// (the one a fast start begins from). The records up to it go, byte for byte, to
    /// `<trail>.archive-<first>-<upto>` (itself a trail file, verifiable with the keys that
    /// verified it here); the working trail is rewritten atomically with `first counter =
    /// upto + 1` and the records after the cut, the validator record among them. That
    /// validator is the new trail's *anchor* ([`validator::chain_origin`]): later
    /// validations need a trusted key for it, and a trail with its beginning cut anywhere
    /// else is refused. Refused too: a trail that does not verify, no trusted validator
    /// after the last cut, and a cut past a recovery record charging every licence (its
    /// charge could not be carried by the validator's per-licence totals).
    ///
    /// Needs no card. Other processes that hold the trail open see it replaced and stop
    /// with [`TrailError::Shrunk`]: archive while no viewer is reading.
    pub fn archive(
        path: impl Into<PathBuf>,
        identity: &CardIdentity,
        trusted: Vec<PublicKey>,
    ) -> Result<Archive, TrailError> {
        let path = path.into();
        let _lock = LockGuard::acquire(&path).map_err(io(&path))?;
        let mut t = Self::open(&path, identity)?;
        if trusted.is_empty() {
            return Err(TrailError::NotArchivable(
                "no validation server is trusted, so no validator record can vouch for the records to archive",
            ));
        }
        t.set_trusted_validators(trusted.clone());
        t.verify_offline()?;
        let Some(v) = t.vouched.clone() else {
            return Err(TrailError::NotArchivable(
                "no validator record from a trusted server is in the trail (run `tally-view trail vouch` first)",
            ));
        };
        let Some(k) = v.prefix.checked_sub(1) else {
            return Err(TrailError::NotArchivable(
                "the newest validator vouches only for records already archived (vouch again first)",
            ));
        };
        let every_licence = t.records[..=k].iter().any(|r| {
            validator::looks_like_recovery(&r.body)
                && Body::parse(&r.body).is_ok_and(|b| {
                    matches!(&b.usage, Usage::Recovery(rec)
                        if rec.licences.is_none() && rec.charge == body::LostCharge::Full)
                })
        });
        if every_licence {
            return Err(TrailError::NotArchivable(
                "a recovery record charging every licence is among the records to archive",
            ));
        }
        let first = t.header.first_counter;
        let mut name = path.as_os_str().to_os_string();
        name.push(format!(".archive-{first}-{}", v.upto));
        let archive_path = PathBuf::from(name);
        let frames = |recs: &[Record], header: &Header| {
            let mut out = header.encode().to_vec();
            for r in recs {
                out.extend(file::encode_frame(r));
            }
            out
        };
        let archived = frames(&t.records[..=k], &t.header);
        let kept_header = Header::for_card(identity, v.upto.saturating_add(1));
        let kept = frames(&t.records[k + 1..], &kept_header);
        // The archive first, durably; then the working trail replaced in one rename. A
        // crash in between leaves the old trail whole (and an archive that is rewritten).
        crate::fsutil::atomic_write(&archive_path, &archived).map_err(io(&archive_path))?;
        // The new working trail must verify, anchored, before it replaces the old one.
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".archiving");
        let tmp = PathBuf::from(tmp);
        crate::fsutil::atomic_write(&tmp, &kept).map_err(io(&tmp))?;
        let check = Self::open(&tmp, identity).and_then(|mut n| {
            n.set_trusted_validators(trusted);
            n.verify_offline()
        });
        if let Err(e) = check {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        crate::fsutil::sync_dir(crate::fsutil::parent_dir(&path)).map_err(io(&path))?;
        Ok(Archive {
            path: archive_path,
            records: k as u64 + 1,
            first,
            upto: v.upto,
            kept: (t.records.len() - k - 1) as u64,
        })
    }

    /// Has the card sign `body` outside any trail, for a card whose trail is missing at
    /// `path`: the restore request of [`crate::validation::seal_restore_request`]. Its
    /// counter is then lost to the trail on purpose, and the server's recovery record
    /// accounts for it (\[0062\]). Refused when a trail exists at `path` (its own Write must
    /// be used then, or it must be moved aside first).
    pub fn sign_detached(
        path: &Path,
        card: &mut Card,
        identity: &CardIdentity,
        body: &Body,
    ) -> Result<Record, TrailError> {
        let _lock = lock_absent(path)?;
        let mut s = card.session()?;
        check_identity(&mut s, identity)?;
        let nonce = crate::nonce::generate();
        let text = body.encode().into_bytes();
        let signature = s.sign_and_increment(&record::h1(&nonce, &text))?;
        signed_record(
            &mut s,
            identity,
            default_verifier(),
            nonce,
            text,
            signature,
            0,
        )
    }

    /// Restores a lost trail at `path` from a validation server's answer (\[0062\]): writes
    /// `backup` (the trail file the server kept) and appends `recovery` (the server's
    /// recovery body) through Write, so the card signs it at the next counter.
    ///
    /// Everything is checked before anything is written: the backup is this card's trail
    /// and valid; the recovery body is signed by `server` for this card, accounts for the
    /// counters from the backup's next one up to the card's counter − 1 exactly, and
    /// carries the backup's chain hash. The restored trail trusts `server` for its
    /// recovery record (and validator records). A crash before the recovery record is
    /// saved leaves a trail that ValidateTrail refuses as rolled back: move it aside and
    /// restore again (a new request accounts for the counters spent since).
    pub fn restore(
        path: impl Into<PathBuf>,
        card: &mut Card,
        identity: &CardIdentity,
        backup: &[u8],
        recovery: &[u8],
        server: &PublicKey,
    ) -> Result<Self, TrailError> {
        let path = path.into();
        let lock = lock_absent(&path)?;
        if backup.len() as u64 > MAX_TRAIL_BYTES {
            return Err(TrailError::Io {
                path,
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the backup is larger than 1 GiB",
                ),
            });
        }
        let trusted = vec![server.clone()];
        let (header, mut records) = validate::verify_trail_bytes(backup, identity, &trusted)?;
        let index = records.len();
        let body = Body::parse(recovery).map_err(|error| TrailError::BadBody {
            index: index as u64,
            error,
        })?;
        let Usage::Recovery(r) = &body.usage else {
            return Err(TrailError::BadRecovery {
                index: index as u64,
                reason: "the server's answer is not a recovery record",
            });
        };
        // The server asked, and no other, must have signed it (any server's recovery is
        // acceptable in a trail, but counts only for the licences that name that server).
        if !validator::verify_server_signed(&body, &identity.serial, server, default_verifier()) {
            return Err(TrailError::BadRecovery {
                index: index as u64,
                reason: "it is not signed by the validation server that was asked",
            });
        }
        let mut s = card.session()?;
        check_identity(&mut s, identity)?;
        let card_counter = s.get_counter()?;
        if r.to.checked_add(1) != Some(card_counter) {
            return Err(TrailError::Behind {
                trail_next: r.to.saturating_add(1),
                card_counter,
            });
        }
        // The recovery record as it will stand once the card signs it at `card_counter`,
        // through the check every later ValidateTrail makes: it names exactly the counters
        // after the backup, is signed by `server` and carries the backup's chain hash.
        let expected = records
            .last()
            .map_or(header.first_counter, |r| r.counter.saturating_add(1));
        records.push(Record {
            nonce: [0; 32],
            body: recovery.to_vec(),
            counter: card_counter,
            signature: crate::crypto::Signature([0; 64]),
        });
        validator::check_recovery(
            &records,
            index,
            &body,
            expected,
            identity,
            header.first_counter,
            &trusted,
            default_verifier(),
        )?;
        records.pop();
        // All checked: write the backup, durably, then append the recovery record.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(backup).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        drop(f);
        crate::fsutil::sync_dir(crate::fsutil::parent_dir(&path)).map_err(io(&path))?;
        let end = backup.len() as u64;
        let frames = Frames {
            records,
            end,
            torn_bytes: 0,
        };
        let mut t = Self::from_parts(path, header, identity.clone(), frames);
        t.trusted_validators = trusted;
        t.verified = t.records.len();
        t.card_checked = true;
        // Write step [7] checks the card's signature; the rest was checked above.
        t.write_locked(&mut s, &body, card_counter)?;
        drop(s);
        drop(lock);
        Ok(t)
    }
}

/// Write steps \[4\]–\[7\] of \[0059\] after SignAndIncrement returned `signature` for `nonce` and
/// `body`: c = GetCounter() − 1, the record ⟨nonce, body, c, signature⟩, and its signature
/// verified against the expected card before anything is saved. `next` is only named in
/// the error of a card whose counter is 0 after signing (it can't have signed).
fn signed_record(
    s: &mut CardSession<'_>,
    identity: &CardIdentity,
    verifier: &dyn SignatureVerifier,
    nonce: crate::nonce::Nonce,
    body: Vec<u8>,
    signature: crate::crypto::Signature,
    next: u64,
) -> Result<Record, TrailError> {
    let counter = s
        .get_counter()?
        .checked_sub(1)
        .ok_or(TrailError::CounterMismatch {
            card: 0,
            record: next,
        })?;
    let rec = Record {
        nonce,
        body,
        counter,
        signature,
    };
    if !rec.verify(identity, verifier) {
        return Err(TrailError::CardSignatureInvalid { counter });
    }
    Ok(rec)
}

/// Takes the lock of a trail that must not exist yet (creating its folder): refused with
/// [`TrailError::Exists`] when it does, so nothing ever overwrites a trail.
fn lock_absent(path: &Path) -> Result<LockGuard, TrailError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lock = LockGuard::acquire(path).map_err(io(path))?;
    if path.exists() {
        return Err(TrailError::Exists(path.to_path_buf()));
    }
    Ok(lock)
}

fn read_intent(path: &Path) -> Option<(u8, Intent)> {
    let mut f = File::open(path).ok()?;
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.take(INTENT_SIZE as u64).read_to_end(&mut buf).ok()?;
    let state = *buf.first()?;
    if state != PENDING && state != COMMITTED {
        return None;
    }
    // The intent is followed by zero padding; its own length field says where it ends.
    let rest = &buf[1..];
    if rest.len() < 50 + 4 {
        return None;
    }
    let body_len = u16::from_be_bytes([rest[48], rest[49]]) as usize;
    let end = 50 + body_len + 4;
    Intent::decode(rest.get(..end)?).map(|i| (state, i))
}

/// Checks that the card in the reader is the one the trail (or keyfile) expects.
fn check_identity(s: &mut CardSession<'_>, expected: &CardIdentity) -> Result<(), TrailError> {
    let (serial, origin) = s.get_serial()?;
    if serial != expected.serial {
        return Err(TrailError::WrongCard(format!(
            "expected card {}, found card {serial}",
            expected.serial
        )));
    }
    let key = s.get_public_key()?;
    if key != expected.public_key || origin != expected.origin {
        return Err(TrailError::WrongCard(format!(
            "card {serial} does not have the expected key"
        )));
    }
    Ok(())
}
