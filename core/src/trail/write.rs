//! Write (\[0059\]) and bringing the trail in step with the card: creating a trail with its
//! genesis record, the intent saved before the card signs, the record checked before it
//! is appended, and a record the card signed just before a crash completed from the card.

use super::body::{Body, Usage};
#[cfg(feature = "test-hooks")]
use super::error::CrashPoint;
use super::error::{TrailError, io};
use super::file::{self, Frames, HEADER_LEN, Header};
use super::handle::Trail;
use super::intent::{COMMITTED, Intent, mark_committed, read_intent, write_intent};
use super::record::{self, Record};
use crate::card::{Card, CardIdentity, CardSession};
use crate::crypto::SignatureVerifier;
use crate::fsutil::LockGuard;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

    /// Makes the next Write stop at `point` as if the process had died there (the
    /// `test-hooks` feature: no release build can be told to crash).
    #[cfg(feature = "test-hooks")]
    pub fn crash_at(&mut self, point: Option<CrashPoint>) {
        self.crash_at = point;
    }

    #[cfg(feature = "test-hooks")]
    fn crash(&self, point: CrashPoint) -> Result<(), TrailError> {
        if self.crash_at == Some(point) {
            Err(TrailError::InjectedCrash(point))
        } else {
            Ok(())
        }
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
        mark_committed(&self.intent_path)?;
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

    /// Write (\[0059\]) inside an open card session; the caller holds the trail lock and
    /// has reconciled the trail with the card.
    ///
    /// `next` is the counter the record must take: the one after the last record's
    /// (`next_counter`), except in `restore`, where the recovery record follows a hole.
    pub(super) fn write_locked(
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
        write_intent(
            &self.intent_path,
            &Intent {
                counter: next,
                nonce,
                body: text.clone(),
            },
        )?;
        #[cfg(feature = "test-hooks")]
        self.crash(CrashPoint::AfterIntent)?;
        // [3] s = SignAndIncrement(h1).
        let signature = s.sign_and_increment(&h1)?;
        #[cfg(feature = "test-hooks")]
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
        #[cfg(feature = "test-hooks")]
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
        #[cfg(feature = "test-hooks")]
        self.crash(CrashPoint::AfterAppend)?;
        mark_committed(&self.intent_path)?;
        if all_verified {
            self.verified = self.records.len();
        }
        Ok(rec)
    }

    /// Write (\[0059\]): appends a record with `body`, signed by the card. The trail is first
    /// brought up to date and verified incrementally, so nothing is ever written after an
    /// invalid record.
    pub fn write(&mut self, card: &mut Card, body: &Body) -> Result<Record, TrailError> {
        self.on_disk()?;
        let _lock = LockGuard::acquire(&self.path).map_err(io(&self.path))?;
        let mut s = self.in_step(card)?;
        let next = self.next_counter();
        self.write_locked(&mut s, body, next)
    }

    /// Write of several records in one go (a validator and its `totals` records, \[0094\]):
    /// under one lock and one card transaction, so no other writer's record comes between
    /// them and they take consecutive counters. A crash part way leaves the records
    /// written so far, each complete and card-signed like any record.
    pub fn write_all(
        &mut self,
        card: &mut Card,
        bodies: &[Body],
    ) -> Result<Vec<Record>, TrailError> {
        let _lock = LockGuard::acquire(&self.path).map_err(io(&self.path))?;
        let mut s = self.in_step(card)?;
        let mut out = Vec::with_capacity(bodies.len());
        for body in bodies {
            let next = self.next_counter();
            out.push(self.write_locked(&mut s, body, next)?);
        }
        Ok(out)
    }

    /// Under the trail lock: reads what other processes appended and verifies it, opens a
    /// card session, checks it is the expected card, and brings trail and card in step.
    ///
    /// Step \[6\] of \[0060\] runs on the records already in the file before anything is
    /// written, so a damaged trail is named precisely (a hole as a gap, not as a missing
    /// tail) and no counter value is spent on a trail that is already invalid.
    pub(super) fn in_step<'c>(
        &mut self,
        card: &'c mut Card,
    ) -> Result<CardSession<'c>, TrailError> {
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
}

/// Write steps \[4\]–\[7\] of \[0059\] after SignAndIncrement returned `signature` for `nonce` and
/// `body`: c = GetCounter() − 1, the record ⟨nonce, body, c, signature⟩, and its signature
/// verified against the expected card before anything is saved. `next` is only named in
/// the error of a card whose counter is 0 after signing (it can't have signed).
pub(super) fn signed_record(
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
pub(super) fn lock_absent(path: &Path) -> Result<LockGuard, TrailError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lock = LockGuard::acquire(path).map_err(io(path))?;
    if path.exists() {
        return Err(TrailError::Exists(path.to_path_buf()));
    }
    Ok(lock)
}

/// Checks that the card in the reader is the one the trail (or keyfile) expects.
pub(super) fn check_identity(
    s: &mut CardSession<'_>,
    expected: &CardIdentity,
) -> Result<(), TrailError> {
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
