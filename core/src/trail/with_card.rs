//! ValidateTrail (\[0060\]): verification with the card — a fresh nonce record proves the
//! trail current, and the card's counter must follow its last record — and the same check
//! without spending a counter.

use super::body::{Body, Usage};
use super::error::{TrailError, io};
use super::handle::Trail;
use crate::card::Card;
use crate::fsutil::LockGuard;

/// What a successful ValidateTrail found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records in the trail after the nonce record was written.
    pub records: u64,
    /// The first record's counter.
    pub first_counter: u64,
    /// The last record's counter (the nonce record just written).
    pub last_counter: u64,
    /// Records whose signatures were verified by this call (the rest were verified before).
    pub newly_verified: u64,
}

impl Trail {
    /// ValidateTrail (\[0060\]), incremental: writes a nonce record holding the card's
    /// counter, checks it, then verifies every record not verified before.
    pub fn verify(&mut self, card: &mut Card) -> Result<Verification, TrailError> {
        self.on_disk()?;
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
        Ok(Verification {
            records: self.records.len() as u64,
            first_counter: self.header.first_counter,
            last_counter: rec.counter,
            // (A handle that followed an archive holds fewer records than before.)
            newly_verified: (self.records.len().saturating_sub(before) as u64)
                .saturating_sub(self.skipped - skipped_before),
        })
    }

    /// ValidateTrail's checks against the card without its nonce record: the card present is
    /// the trail's, a torn tail is completed from the card's last signature, every record
    /// not verified before is verified, and the card's counter read now must be the one
    /// after the last record (else a truncated or restored trail, \[0060\] step \[5\]).
    /// Spends no card counter, so a reader may ask for their standing as often as they
    /// like; the freshness proof of a nonce record (\[0060\] steps \[1\]–\[2\]) is left to
    /// [`Trail::verify`], which every opening runs.
    pub fn check_with_card(&mut self, card: &mut Card) -> Result<(), TrailError> {
        self.on_disk()?;
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
}
