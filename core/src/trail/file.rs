//! The trail file: a header, then length-prefixed, checksummed records.
//!
//! ```text
//! header = "TALLYTRL" version:u16 serial:16 key-fingerprint:32 origin:u64 crc32:u32      (70 bytes)
//! frame  = length:u32 record:length crc32(length ‖ record):u32
//! ```
//! All integers big-endian. Frames are appended and fsynced one at a time. The
//! checksums catch accidental damage and torn writes; tampering is caught by the card
//! signatures, which the checksums do not replace. The intent file beside the trail
//! (`<trail>.intent`, [`super::intent_path`]) has a format of its own.

use super::record::{MAX_RECORD, Record, RecordError};
use crate::card::{CardIdentity, Serial};
use crate::crypto::Hash;
use std::io::{Read, Seek, SeekFrom};

/// Magic bytes at the start of every trail file.
pub const MAGIC: &[u8; 8] = b"TALLYTRL";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 8 + 2 + 16 + 32 + 8 + 4;

/// The trail header: which card this trail belongs to and where its counter starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The card's serial number.
    pub serial: Serial,
    /// Fingerprint of the card's public key.
    pub key_fingerprint: Hash,
    /// Counter of the first record (the offset of \[0095\]).
    pub first_counter: u64,
}

/// Where and how the file is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file is shorter than a header.
    #[error("trail file is shorter than its header")]
    ShortHeader,
    /// The magic bytes are wrong.
    #[error("not a Tally trail file")]
    Magic,
    /// A version this build does not read.
    #[error("trail format version {0} is not supported (this build reads version {VERSION})")]
    Version(u16),
    /// The header checksum fails.
    #[error("trail header checksum mismatch (the header is damaged)")]
    HeaderChecksum,
    /// A record's frame checksum fails before the last record.
    #[error("record {index}: checksum mismatch (damaged or edited)")]
    Checksum {
        /// Position of the record in the file (0-based).
        index: u64,
    },
    /// A frame's length is impossible.
    #[error("record {index}: length {len} is out of range")]
    FrameLength {
        /// Position of the record.
        index: u64,
        /// The length read.
        len: u32,
    },
    /// A record inside a valid frame does not decode.
    #[error("record {index}: {error}")]
    Record {
        /// Position of the record.
        index: u64,
        /// What is wrong.
        error: RecordError,
    },
}

impl Header {
    /// For a card.
    pub fn for_card(identity: &CardIdentity, first_counter: u64) -> Self {
        Self {
            serial: identity.serial,
            key_fingerprint: identity.public_key.fingerprint(),
            first_counter,
        }
    }

    /// Encodes the 70-byte header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_be_bytes());
        b[10..26].copy_from_slice(&self.serial.0);
        b[26..58].copy_from_slice(&self.key_fingerprint);
        b[58..66].copy_from_slice(&self.first_counter.to_be_bytes());
        let crc = crc32fast::hash(&b[..66]);
        b[66..70].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes a header.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::ShortHeader);
        }
        if &b[..8] != MAGIC {
            return Err(FormatError::Magic);
        }
        let version = u16::from_be_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        if crc32fast::hash(&b[..66]).to_be_bytes() != b[66..70] {
            return Err(FormatError::HeaderChecksum);
        }
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&b[10..26]);
        let mut key_fingerprint = [0u8; 32];
        key_fingerprint.copy_from_slice(&b[26..58]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[58..66]);
        Ok(Self {
            serial: Serial(serial),
            key_fingerprint,
            first_counter: u64::from_be_bytes(c),
        })
    }
}

/// Encodes one record as a frame.
pub fn encode_frame(record: &Record) -> Vec<u8> {
    let payload = record.encode();
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// What reading frames found.
#[derive(Debug, Default)]
pub struct Frames {
    /// The complete, checksummed records, in file order.
    pub records: Vec<Record>,
    /// Byte offset just after the last complete frame.
    pub end: u64,
    /// Bytes after `end` that do not form a complete, valid frame (a torn tail).
    pub torn_bytes: u64,
}

/// Parses frames from `buf` (which starts at file offset `start`, frame index `first_index`).
///
/// A damaged or incomplete *last* frame is reported as a torn tail, for the caller to
/// repair from the card or refuse; damage anywhere before it is an error naming the record.
pub fn parse_frames(buf: &[u8], start: u64, first_index: u64) -> Result<Frames, FormatError> {
    let mut out = Frames {
        records: Vec::new(),
        end: start,
        torn_bytes: 0,
    };
    let mut pos = 0usize;
    let mut index = first_index;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let torn = |out: &mut Frames| {
            out.torn_bytes = rest.len() as u64;
        };
        if rest.len() < 4 {
            torn(&mut out);
            break;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len as usize > MAX_RECORD || (len as usize) < 106 {
            // An impossible length in the last bytes of the file is a torn write of the
            // length itself only if nothing follows that could be a frame; be strict:
            // it can only be torn when it is the final fragment.
            if rest.len() < 4 + 106 + 4 {
                torn(&mut out);
                break;
            }
            return Err(FormatError::FrameLength { index, len });
        }
        let total = 4 + len as usize + 4;
        if rest.len() < total {
            torn(&mut out);
            break;
        }
        let frame = &rest[..total];
        let crc = crc32fast::hash(&frame[..4 + len as usize]);
        if crc.to_be_bytes() != frame[4 + len as usize..] {
            if rest.len() == total {
                torn(&mut out);
                break;
            }
            return Err(FormatError::Checksum { index });
        }
        let record = Record::decode(&frame[4..4 + len as usize])
            .map_err(|error| FormatError::Record { index, error })?;
        out.records.push(record);
        pos += total;
        index += 1;
        out.end = start + pos as u64;
    }
    Ok(out)
}

/// Reads all bytes of `file` from `offset` on, at most `limit` bytes.
pub fn read_from(file: &mut std::fs::File, offset: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Signature;

    fn rec(c: u64) -> Record {
        Record {
            nonce: [c as u8; 32],
            body: b"tally/1 genesis at=2026-01-01T00:00:00Z".to_vec(),
            counter: c,
            signature: Signature([9; 64]),
        }
    }

    #[test]
    fn torn_tail_at_every_byte_is_reported_not_accepted() {
        let mut buf = Vec::new();
        for c in 0..3 {
            buf.extend(encode_frame(&rec(c)));
        }
        let last_start = buf.len() - encode_frame(&rec(2)).len();
        for cut in last_start..buf.len() {
            let f = parse_frames(&buf[..cut], 0, 0).unwrap();
            assert_eq!(f.records.len(), 2, "cut at {cut}");
            assert_eq!(f.end as usize, last_start);
            assert_eq!(f.torn_bytes as usize, cut - last_start);
        }
        assert_eq!(parse_frames(&buf, 0, 0).unwrap().records.len(), 3);
    }

    #[test]
    fn damage_before_the_tail_names_the_record() {
        let mut buf = Vec::new();
        for c in 0..3 {
            buf.extend(encode_frame(&rec(c)));
        }
        let flen = encode_frame(&rec(0)).len();
        buf[flen + 50] ^= 1;
        assert_eq!(
            parse_frames(&buf, 0, 0).unwrap_err(),
            FormatError::Checksum { index: 1 }
        );
    }

    #[test]
    fn header_round_trip_and_flips() {
        let h = Header {
            serial: Serial([3; 16]),
            key_fingerprint: [4; 32],
            first_counter: 77,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b).unwrap(), h);
        for i in 0..b.len() {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(Header::decode(&bad).is_err(), "flip at {i}");
        }
    }
}
