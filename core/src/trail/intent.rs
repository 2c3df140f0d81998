//! The intent file (`<trail>.intent`) beside a trail: the nonce and body of the most
//! recent Write, saved before the card signs, so that a crash between signing and
//! appending loses nothing (\[0059\]; the record is rebuilt from GET_LAST_SIGNATURE when
//! the trail is next reconciled with the card).
//!
//! ```text
//! intent file = state:u8 ('P' pending, 'C' committed) intent zero-padding   (fixed size)
//! intent      = "TALLYINT" counter:u64 nonce:32 body-length:u16 body crc32:u32
//! ```

use super::error::{TrailError, io};
use crate::nonce::Nonce;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The intent file beside a trail.
pub fn intent_path(trail: &Path) -> PathBuf {
    let mut s = trail.as_os_str().to_os_string();
    s.push(".intent");
    PathBuf::from(s)
}

const INTENT_SIZE: usize = 1 + 8 + 8 + 32 + 2 + super::body::MAX_BODY + 4;
const PENDING: u8 = b'P';
pub(super) const COMMITTED: u8 = b'C';

/// The intent: what the most recent Write was about to have signed (\[0059\] steps \[1\]–\[2\]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The counter the card was expected to sign at.
    pub counter: u64,
    /// The nonce.
    pub nonce: Nonce,
    /// The body.
    pub body: Vec<u8>,
}

const INTENT_MAGIC: &[u8; 8] = b"TALLYINT";

impl Intent {
    /// Encodes with a trailing checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(60 + self.body.len());
        b.extend_from_slice(INTENT_MAGIC);
        b.extend_from_slice(&self.counter.to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&(self.body.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.body);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes; `None` when the bytes are not a complete, intact intent.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 8 + 8 + 32 + 2 + 4 || b.len() > 8 + 8 + 32 + 2 + 4 + super::body::MAX_BODY {
            return None;
        }
        let (data, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(data).to_be_bytes() != crc || &data[..8] != INTENT_MAGIC {
            return None;
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&data[8..16]);
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&data[16..48]);
        let len = u16::from_be_bytes([data[48], data[49]]) as usize;
        if data.len() != 50 + len {
            return None;
        }
        Some(Self {
            counter: u64::from_be_bytes(c),
            nonce,
            body: data[50..].to_vec(),
        })
    }
}

/// Saves `intent` as pending, durably, before the card signs (\[0059\] steps \[1\]–\[2\]).
pub(super) fn write_intent(path: &Path, intent: &Intent) -> Result<(), TrailError> {
    let mut buf = vec![0u8; INTENT_SIZE];
    buf[0] = PENDING;
    let enc = intent.encode();
    buf[1..1 + enc.len()].copy_from_slice(&enc);
    let existed = path.exists();
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))?;
    f.write_all_at(&buf, 0).map_err(io(path))?;
    if existed { f.sync_data() } else { f.sync_all() }.map_err(io(path))?;
    if !existed {
        crate::fsutil::sync_dir(crate::fsutil::parent_dir(path)).map_err(io(path))?;
    }
    Ok(())
}

/// Marks the intent committed once its record is appended and synced.
pub(super) fn mark_committed(path: &Path) -> Result<(), TrailError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all_at(&[COMMITTED], 0).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

/// The intent file's state byte and intent, `None` when missing or damaged.
pub(super) fn read_intent(path: &Path) -> Option<(u8, Intent)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_round_trip() {
        let i = Intent {
            counter: 5,
            nonce: [1; 32],
            body: b"abc".to_vec(),
        };
        assert_eq!(Intent::decode(&i.encode()), Some(i.clone()));
        let e = i.encode();
        assert_eq!(Intent::decode(&e[..e.len() - 1]), None);
    }
}
