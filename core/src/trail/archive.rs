//! Archiving: moving the records a trusted validator record vouches for out of the working
//! trail (\[0094\]), so the working trail stays small however long the rental history grows.

use super::body::{self, Body, Usage};
use super::error::{TrailError, io};
use super::file::{self, Header};
use super::handle::Trail;
use super::record::Record;
use super::validator;
use crate::card::CardIdentity;
use crate::crypto::PublicKey;
use crate::fsutil::LockGuard;
use std::path::PathBuf;

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

impl Trail {
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
    /// verifications need a trusted key for it, and a trail with its beginning cut anywhere
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
}
