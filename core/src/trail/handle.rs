//! The [`Trail`] handle: an open trail file, read and re-read under the lock, with what the
//! handle has verified so far (incremental verification, with the validator fast start).

use super::body::Body;
#[cfg(feature = "test-hooks")]
use super::error::CrashPoint;
use super::error::{TrailError, io};
use super::file::{self, FormatError, Frames, HEADER_LEN, Header};
use super::intent::intent_path;
use super::record::Record;
use super::{validator, verify};
use crate::card::CardIdentity;
use crate::crypto::{PublicKey, SignatureVerifier, default_verifier};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Trail files larger than this are refused (about five million records).
pub const MAX_TRAIL_BYTES: u64 = 1 << 30;

/// An open trail for one card.
pub struct Trail {
    pub(super) path: PathBuf,
    pub(super) intent_path: PathBuf,
    pub(super) header: Header,
    pub(super) identity: CardIdentity,
    pub(super) records: Vec<Record>,
    pub(super) verified: usize,
    pub(super) end: u64,
    pub(super) torn: u64,
    pub(super) card_checked: bool,
    pub(super) threads: usize,
    pub(super) verifier: &'static dyn SignatureVerifier,
    pub(super) last_recovery: Option<u64>,
    #[cfg(feature = "test-hooks")]
    pub(super) crash_at: Option<CrashPoint>,
    // Validator fast start ([0094], `validator`): keys trusted (none by default, which
    // keeps full verification), the validator a fresh verification started from, and how
    // many records' signatures that let it skip.
    pub(super) trusted_validators: Vec<PublicKey>,
    pub(super) vouched: Option<validator::Vouched>,
    pub(super) skipped: u64,
    // The file (device, inode) this handle read, so a trail replaced under it (archived by
    // another process, or swapped) is refused instead of read at the old offsets.
    pub(super) file_id: Option<(u64, u64)>,
    // The mirror copy on another medium ([0062]) and why it last failed, if it did.
    pub(super) mirror: Option<PathBuf>,
    pub(super) mirror_error: Option<String>,
    // A copy held in memory ([`Trail::from_backup`]): `path` only names it, and nothing
    // that reads or writes the file may run.
    pub(super) in_memory: bool,
    // How many times this handle followed its file being replaced by an archive of it
    // (`Trail::generation`).
    pub(super) generation: u64,
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

impl Trail {
    /// A handle on `frames` read from the trail at `path`, nothing verified yet.
    pub(super) fn from_parts(
        path: PathBuf,
        header: Header,
        identity: CardIdentity,
        frames: Frames,
    ) -> Self {
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
            #[cfg(feature = "test-hooks")]
            crash_at: None,
            trusted_validators: Vec::new(),
            vouched: None,
            skipped: 0,
            file_id: None,
            mirror: None,
            mirror_error: None,
            in_memory: false,
            generation: 0,
        }
    }

    /// A read-only handle on a whole trail file held in memory — the backup a validation
    /// server kept of a card's trail (\[0062\]), for a publisher's audit (\[0104\]) — verified
    /// in full against the card `identity` as registered: the header, every frame with no
    /// torn tail, every card signature (also those of the records a validator vouches for),
    /// the counters from the card's origin and the start rule, recovery records and archive
    /// anchors only of `trusted`. The newest validator record of `trusted` then gives the
    /// totals of the records it vouches for ([`Trail::vouched`]), as the reader's viewer
    /// counts them. `label` names the copy in errors; no file is ever read or written
    /// through this handle (a write, a ValidateTrail with the card or a mirror is refused).
    pub fn from_backup(
        label: impl Into<PathBuf>,
        bytes: &[u8],
        identity: &CardIdentity,
        trusted: Vec<PublicKey>,
    ) -> Result<Self, TrailError> {
        if bytes.len() as u64 > MAX_TRAIL_BYTES {
            return Err(TrailError::Io {
                path: label.into(),
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "trail larger than 1 GiB",
                ),
            });
        }
        // Every signature, whatever a validator vouches for.
        let (header, records) = verify::verify_trail_bytes(bytes, identity, &trusted)?;
        let frames = Frames {
            records,
            end: bytes.len() as u64,
            torn_bytes: 0,
        };
        let mut t = Self::from_parts(label.into(), header, identity.clone(), frames);
        t.in_memory = true;
        t.trusted_validators = trusted;
        // The fast start's totals (the records after it are checked once more: cheap next
        // to an audit's other work, and the same code as the reader's).
        t.verify_new()?;
        Ok(t)
    }

    /// Refuses anything that would touch the file of a handle held in memory.
    pub(super) fn on_disk(&self) -> Result<(), TrailError> {
        if self.in_memory {
            return Err(TrailError::Io {
                path: self.path.clone(),
                error: std::io::Error::other(
                    "this trail is a copy held in memory (a backup): it cannot be written or checked with the card",
                ),
            });
        }
        Ok(())
    }

    /// Opens an existing trail expected to belong to `identity`. Reads and checks the
    /// format; signatures are verified by [`Trail::verify`] or [`Trail::verify_offline`].
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
    /// default) means full verification, exactly as without validator records.
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
        // Only the records after `upto` are parsed: a fast start skips the rest.
        self.records[..self.verified]
            .iter()
            .filter(move |r| upto.is_none_or(|u| r.counter > u))
            .filter_map(|r| Body::parse(&r.body).ok().map(|b| (r.counter, b)))
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

    /// The counter the next record takes: one after the last record's (a restored trail
    /// has a hole before its recovery record, so this is not first + length).
    pub(super) fn next_counter(&self) -> u64 {
        self.records
            .last()
            .map_or(self.header.first_counter, |r| r.counter.saturating_add(1))
    }

    /// Reads records other processes appended since we last looked (under the lock).
    pub(super) fn sync(&mut self) -> Result<(), TrailError> {
        use std::os::unix::fs::MetadataExt as _;
        self.on_disk()?;
        let mut f = File::open(&self.path).map_err(io(&self.path))?;
        let meta = f.metadata().map_err(io(&self.path))?;
        let id = (meta.dev(), meta.ino());
        if *self.file_id.get_or_insert(id) != id {
            return self.follow_archive(&mut f, meta.len(), id);
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

    /// How many times this handle followed its trail file being replaced by an archived
    /// version of it (another process's [`Trail::archive`]): its records then start later,
    /// so positions into [`Trail::records`] taken before a change of this number no longer
    /// hold.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The trail file was replaced while this handle held it open. When the new file is
    /// this trail archived — the same card, a later first counter, and every record this
    /// handle had from that counter on, byte for byte, at the start of it — the handle
    /// follows it: it holds the new file's records, nothing verified yet, so the next
    /// verification starts again from the new file's anchor (a fresh open's rules,
    /// including the trusted key the anchor needs). Anything else is [`TrailError::Shrunk`].
    fn follow_archive(&mut self, f: &mut File, len: u64, id: (u64, u64)) -> Result<(), TrailError> {
        if len > MAX_TRAIL_BYTES {
            return Err(TrailError::Shrunk);
        }
        let buf = file::read_from(f, 0, MAX_TRAIL_BYTES).map_err(io(&self.path))?;
        let Ok(header) = Header::decode(&buf) else {
            return Err(TrailError::Shrunk);
        };
        if header.serial != self.header.serial
            || header.key_fingerprint != self.header.key_fingerprint
            || header.first_counter <= self.header.first_counter
        {
            return Err(TrailError::Shrunk);
        }
        let frames = file::parse_frames(
            buf.get(HEADER_LEN..).unwrap_or_default(),
            HEADER_LEN as u64,
            0,
        )?;
        let ours = self
            .records
            .iter()
            .skip_while(|r| r.counter < header.first_counter);
        let kept = ours.clone().count();
        if kept > frames.records.len() || !ours.zip(&frames.records).all(|(a, b)| a == b) {
            return Err(TrailError::Shrunk);
        }
        self.header = header;
        self.records = frames.records;
        self.end = frames.end;
        self.torn = frames.torn_bytes;
        self.file_id = Some(id);
        self.verified = 0;
        self.vouched = None;
        self.generation += 1;
        Ok(())
    }

    /// Verifies records not yet verified (incremental verification).
    pub(super) fn verify_new(&mut self) -> Result<u64, TrailError> {
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
        verify::verify_range(
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

    /// Verifies the whole trail without a card and without writing: signatures, counters,
    /// bodies, the start rule. Truncation and rollback need the card's counter and so are
    /// only caught by [`Trail::verify`]; a verifier without the card (a publisher's audit,
    /// \[0104\]) compares the last record's counter (from [`Trail::records`]) with the card's.
    /// Returns how many records this call verified.
    pub fn verify_offline(&mut self) -> Result<u64, TrailError> {
        if self.torn > 0 {
            return Err(TrailError::TornTail { bytes: self.torn });
        }
        self.verify_new()
    }
}
