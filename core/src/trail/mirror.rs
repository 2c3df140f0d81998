//! The mirror copy of a trail on another medium (\[0062\]: "at least one backup audit trail
//! on a separate medium"), kept in step by every Write.

use super::error::{TrailError, io};
use super::file::HEADER_LEN;
use super::handle::MAX_TRAIL_BYTES;
use super::handle::Trail;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

impl Trail {
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

    /// Where the mirror copy is kept, if one is ([`Trail::set_mirror`]).
    pub fn mirror_path(&self) -> Option<&Path> {
        self.mirror.as_deref()
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
        self.on_disk()?;
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

    /// Called by Write once `frame` is appended at `prev_end` and synced: the same frame
    /// appended to the mirror (or the mirror copied whole); a failure is kept for
    /// [`Trail::mirror_error`], never returned.
    pub(super) fn update_mirror(&mut self, prev_end: u64, frame: &[u8]) {
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
}
