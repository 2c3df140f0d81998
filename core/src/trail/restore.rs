//! Restoring a lost trail from the validation server's backup (\[0062\]): the card signs a
//! restore request outside any trail, and the server's recovery record is appended to the
//! backup through Write.

use super::body::{Body, Usage};
use super::error::{TrailError, io};
use super::file::Frames;
use super::handle::{MAX_TRAIL_BYTES, Trail};
use super::record::{self, Record};
use super::write::{check_identity, lock_absent, signed_record};
use super::{validator, verify};
use crate::card::{Card, CardIdentity};
use crate::crypto::{PublicKey, default_verifier};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

impl Trail {
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
        let (header, mut records) = verify::verify_trail_bytes(backup, identity, &trusted)?;
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
