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

impl Trail {
    /// Puts archived records back in front of the working trail (the reverse of
    /// [`Trail::archive`]), for a reader whose licence does not trust the validator that
    /// anchors the archived trail: a licence of another publisher, whose own server never
    /// vouched for those records (T30), must see them to count its own use and to know
    /// nothing before the anchor was dropped. The archives `<trail>.archive-<first>-<upto>`
    /// beside it are chained back to the card's origin; the joined trail must verify in
    /// full — every card signature, the counters from the origin — before it replaces the
    /// working trail (atomically). Returns how many records were put back (`None`: the
    /// trail was not archived). Refused with [`TrailError::Archived`] when an archive is
    /// missing: then only a licence trusting the anchor can read the trail.
    ///
    /// Needs no card. Another process holding the trail open sees it replaced and stops
    /// with [`TrailError::Shrunk`].
    pub fn rejoin(
        path: impl Into<PathBuf>,
        identity: &CardIdentity,
    ) -> Result<Option<u64>, TrailError> {
        let path = path.into();
        let _lock = LockGuard::acquire(&path).map_err(io(&path))?;
        let t = Self::open(&path, identity)?;
        let start = t.header.first_counter;
        if start == identity.origin {
            return Ok(None);
        }
        let missing = || TrailError::Archived { first: start };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(missing)?;
        let dir = crate::fsutil::parent_dir(&path).to_path_buf();
        let mut first = start;
        let mut front: Vec<Record> = Vec::new();
        while first > identity.origin {
            let upto = first - 1;
            let found = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok())
                .find_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let range = n.strip_prefix(&format!("{name}.archive-"))?.to_string();
                    let (a, b) = range.split_once('-')?;
                    (b.parse::<u64>().ok()? == upto).then(|| (a.parse::<u64>().ok(), e.path()))
                });
            let Some((Some(a), file)) = found else {
                return Err(missing());
            };
            let archived = Self::open(&file, identity)?;
            let recs = archived.records;
            if archived.header.first_counter != a
                || recs.first().map(|r| r.counter) != Some(a)
                || recs.last().map(|r| r.counter) != Some(upto)
                || archived.torn > 0
            {
                return Err(missing());
            }
            front.splice(0..0, recs);
            first = a;
        }
        let put_back = front.len() as u64;
        let mut joined = Header::for_card(identity, identity.origin)
            .encode()
            .to_vec();
        for r in front.iter().chain(&t.records) {
            joined.extend(file::encode_frame(r));
        }
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".rejoining");
        let tmp = PathBuf::from(tmp);
        crate::fsutil::atomic_write(&tmp, &joined).map_err(io(&tmp))?;
        // In full, trusting no server: the card's signatures alone.
        if let Err(e) = Self::open(&tmp, identity).and_then(|mut n| n.verify_offline()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        crate::fsutil::sync_dir(crate::fsutil::parent_dir(&path)).map_err(io(&path))?;
        Ok(Some(put_back))
    }
}
