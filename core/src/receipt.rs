//! Return receipts: the reader's proof, for the publisher, that a licence was returned early
//! (issue 13; T38).
//!
//! `tally-view return` writes a card-signed `return` record on the reader's trail through the
//! normal Write (\[0059\]) — from then on the licence is refused on that card
//! ([`crate::policy::Reason::Returned`]) — and hands that very record to the publisher as a
//! [`Receipt`]: sent to the validation server the licence's keyfile names
//! (`POST /v1/return`), or handed over as a file for `tally-pack returns`. The publisher
//! checks it against the card it registered for the licence ([`Receipt::verify`]) and frees
//! the loan's place.
//!
//! Why the publisher may believe it: the record is signed by the licence's card over
//! `hash(hash(nonce, body), serial, counter)` (\[0053\], \[0098\]), and the card's one
//! counter only goes up. A card-signed record that is missing from the reader's trail leaves
//! a hole there, which ValidateTrail refuses (\[0060\]) and which only the publisher's own
//! server can account for in a restore — and that server knows of every return it verified
//! (`validation::recovery_terms`). So a receipt the publisher verified is a return the
//! reader's trail can never lose.
//!
//! ## File format (version 1)
//!
//! ```text
//! receipt = "TALLYRCT" (8) ‖ version:u16 = 1 ‖ licence (16) ‖ serial (16) ‖ key-fingerprint (32)
//!           ‖ record-length:u16 ‖ record
//! record  = nonce (32) ‖ counter:u64 ‖ signature (64) ‖ body-length:u16 ‖ body   ; as in the trail
//! body    = "tally/1 return at=" time " lic=" licence                        ; docs/trail-format.md
//! ```
//!
//! Integers are big-endian. Nothing may follow the record; a receipt is at most
//! [`MAX_RECEIPT`] bytes. `licence` must be the licence the body returns; `serial` and
//! `key-fingerprint` name the card that signed it (the fingerprint as the trail header's).
//! The publisher never takes the card from the receipt: it checks the receipt against the
//! card registered for `licence`.

use crate::card::{CardIdentity, Serial};
use crate::crypto::{Hash, default_verifier};
use crate::trail::body::{Body, BodyError, LicenceId, Usage};
use crate::trail::record::{MAX_RECORD, Record, RecordError};
use time::OffsetDateTime;

/// The first bytes of a receipt file.
pub const RECEIPT_MAGIC: &[u8; 8] = b"TALLYRCT";
/// The format version written and read.
pub const RECEIPT_VERSION: u16 = 1;
/// Bytes before the record: magic, version, licence, serial, key fingerprint, record length.
pub const RECEIPT_HEADER_LEN: usize = 8 + 2 + 16 + 16 + 32 + 2;
/// The largest receipt: the header and the largest record.
pub const MAX_RECEIPT: usize = RECEIPT_HEADER_LEN + MAX_RECORD;
/// The usual file name ending of a receipt.
pub const RECEIPT_EXTENSION: &str = "treceipt";

/// A return receipt: the card-signed `return` record and the card that signed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Receipt {
    /// The licence returned.
    pub licence: LicenceId,
    /// The serial of the card that signed the record.
    pub serial: Serial,
    /// The fingerprint of that card's public key.
    pub card_key: Hash,
    /// The card-signed `return` record, exactly as on the reader's trail.
    pub record: Record,
    /// When the record says the licence was returned (its body's `at=`).
    pub returned_at: OffsetDateTime,
}

/// What a verified receipt proves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VerifiedReturn {
    /// The licence returned.
    pub licence: LicenceId,
    /// The card that returned it.
    pub serial: Serial,
    /// The card counter of the `return` record.
    pub counter: u64,
    /// The time the record carries (the reader's clock, never earlier than the trail's
    /// newest record).
    pub returned_at: OffsetDateTime,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Shorter than the fixed header.
    #[error("the receipt is too short ({0} bytes) to be a return receipt")]
    Short(usize),
    /// Does not start with `TALLYRCT`.
    #[error("not a return receipt (wrong magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("return receipt version {0} is not supported (this build reads version 1)")]
    Version(u16),
    /// The record length disagrees with the file's length (cut short, or bytes after it).
    #[error(
        "the receipt's length is wrong: its header announces a {declared}-byte record, {actual} bytes follow"
    )]
    Length {
        /// The record length the header gives.
        declared: usize,
        /// The bytes after the header.
        actual: usize,
    },
    /// The record's own fields are malformed.
    #[error("the receipt's record is malformed: {0}")]
    Record(#[from] RecordError),
    /// The record's body does not parse.
    #[error("the receipt's record body is malformed: {0}")]
    Body(#[from] BodyError),
    /// The record is a card-signed record of another kind than `return`.
    #[error("the receipt's record is not a return (it is a `{0}` record)")]
    NotAReturn(String),
    /// The header names another licence than the record returns.
    #[error("the receipt names licence {header}, but its record returns licence {record}")]
    LicenceMismatch {
        /// The licence in the header.
        header: LicenceId,
        /// The licence in the signed body.
        record: LicenceId,
    },
    /// The receipt returns another licence than the one it is checked for.
    #[error("the receipt returns licence {found}, not licence {expected}")]
    OtherLicence {
        /// The licence it was checked for.
        expected: LicenceId,
        /// The licence it returns.
        found: LicenceId,
    },
    /// Signed by another card than the licence's registered card (by serial).
    #[error("the receipt comes from card {found}, but the licence was issued to card {expected}")]
    OtherCard {
        /// The registered card's serial.
        expected: Serial,
        /// The serial in the receipt.
        found: Serial,
    },
    /// The serial is the registered card's but the key named is not its key.
    #[error("the receipt names another card key than the one registered for card {0}")]
    OtherCardKey(Serial),
    /// The record's counter is below the card's origin: no card signature of this card can
    /// carry it.
    #[error("the receipt's counter {counter} is below card {serial}'s first counter {origin}")]
    BeforeOrigin {
        /// The card.
        serial: Serial,
        /// Its first counter.
        origin: u64,
        /// The record's counter.
        counter: u64,
    },
    /// The card's signature does not verify against the registered card's key: some byte of
    /// the record, or the serial, was changed.
    #[error(
        "the card's signature on the receipt does not verify (a byte was changed, or another card signed it)"
    )]
    BadSignature,
}

impl ReceiptError {
    /// A short name of the check that failed (for an HTTP header, a test vector's
    /// `expect:` line): `format`, `version`, `record`, `body`, `not-return`, `licence`,
    /// `card`, `origin`, `signature`.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Short(_) | Self::BadMagic | Self::Length { .. } => "format",
            Self::Version(_) => "version",
            Self::Record(_) => "record",
            Self::Body(_) => "body",
            Self::NotAReturn(_) => "not-return",
            Self::LicenceMismatch { .. } | Self::OtherLicence { .. } => "licence",
            Self::OtherCard { .. } | Self::OtherCardKey(_) => "card",
            Self::BeforeOrigin { .. } => "origin",
            Self::BadSignature => "signature",
        }
    }
}

impl Receipt {
    /// The receipt of `record`, a `return` record written on the trail of the card
    /// `identity`. Refused unless the record's body is a return of a licence.
    pub fn new(identity: &CardIdentity, record: Record) -> Result<Self, ReceiptError> {
        let (licence, returned_at) = return_body(&record.body)?;
        Ok(Self {
            licence,
            serial: identity.serial,
            card_key: identity.public_key.fingerprint(),
            record,
            returned_at,
        })
    }

    /// The file form (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let record = self.record.encode();
        let mut out = Vec::with_capacity(RECEIPT_HEADER_LEN + record.len());
        out.extend_from_slice(RECEIPT_MAGIC);
        out.extend_from_slice(&RECEIPT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.licence.0);
        out.extend_from_slice(&self.serial.0);
        out.extend_from_slice(&self.card_key);
        out.extend_from_slice(&(record.len() as u16).to_be_bytes());
        out.extend_from_slice(&record);
        out
    }

    /// Parses the file form strictly: the magic, version 1, a record of exactly the length
    /// announced and nothing after it, a canonical `return` body of the licence the header
    /// names. No signature is checked here: that needs the registered card
    /// ([`Receipt::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() < RECEIPT_HEADER_LEN {
            return Err(ReceiptError::Short(bytes.len()));
        }
        if &bytes[..8] != RECEIPT_MAGIC {
            return Err(ReceiptError::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::Version(version));
        }
        let mut licence = [0u8; 16];
        licence.copy_from_slice(&bytes[10..26]);
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&bytes[26..42]);
        let mut card_key = [0u8; 32];
        card_key.copy_from_slice(&bytes[42..74]);
        let declared = usize::from(u16::from_be_bytes([bytes[74], bytes[75]]));
        let rest = &bytes[RECEIPT_HEADER_LEN..];
        if rest.len() != declared {
            return Err(ReceiptError::Length {
                declared,
                actual: rest.len(),
            });
        }
        let record = Record::decode(rest)?;
        let (returned, returned_at) = return_body(&record.body)?;
        let licence = LicenceId(licence);
        if returned != licence {
            return Err(ReceiptError::LicenceMismatch {
                header: licence,
                record: returned,
            });
        }
        Ok(Self {
            licence,
            serial: Serial(serial),
            card_key,
            record,
            returned_at,
        })
    }

    /// The publisher's check: this receipt returns `licence` and was signed by `card`, the
    /// card the publisher registered for that licence — same serial, same key, a counter the
    /// card can have signed, and the card's ECDSA signature over the record (\[0053\],
    /// \[0098\]: the serial and counter are in the signed message, so a record of another
    /// card, or moved to another counter, fails).
    pub fn verify(
        &self,
        card: &CardIdentity,
        licence: &LicenceId,
    ) -> Result<VerifiedReturn, ReceiptError> {
        if self.licence != *licence {
            return Err(ReceiptError::OtherLicence {
                expected: *licence,
                found: self.licence,
            });
        }
        if self.serial != card.serial {
            return Err(ReceiptError::OtherCard {
                expected: card.serial,
                found: self.serial,
            });
        }
        if self.card_key != card.public_key.fingerprint() {
            return Err(ReceiptError::OtherCardKey(card.serial));
        }
        if self.record.counter < card.origin {
            return Err(ReceiptError::BeforeOrigin {
                serial: card.serial,
                origin: card.origin,
                counter: self.record.counter,
            });
        }
        if !self.record.verify(card, default_verifier()) {
            return Err(ReceiptError::BadSignature);
        }
        Ok(VerifiedReturn {
            licence: self.licence,
            serial: self.serial,
            counter: self.record.counter,
            returned_at: self.returned_at,
        })
    }
}

/// The licence and time of a `return` body.
fn return_body(body: &[u8]) -> Result<(LicenceId, OffsetDateTime), ReceiptError> {
    let body = Body::parse(body)?;
    match body.usage {
        Usage::Return { licence } => Ok((licence, body.at)),
        other => Err(ReceiptError::NotAReturn(other.kind().into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{PublicKey, sign_low_s};

    fn card(seed: u8, serial: u8) -> (p256::ecdsa::SigningKey, CardIdentity) {
        let key = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
        let public_key = PublicKey::from_verifying_key(key.verifying_key());
        (
            key,
            CardIdentity {
                serial: Serial([serial; 16]),
                public_key,
                origin: 100,
            },
        )
    }

    fn signed(key: &p256::ecdsa::SigningKey, id: &CardIdentity, usage: Usage) -> Record {
        let body = Body::at_unix(usage, 1_764_000_000).encode().into_bytes();
        let mut r = Record {
            nonce: [7; 32],
            body,
            counter: 142,
            signature: crate::crypto::Signature([0; 64]),
        };
        r.signature = sign_low_s(key, &r.signed_message(id));
        r
    }

    const L: LicenceId = LicenceId([0xab; 16]);

    #[test]
    fn a_receipt_round_trips_and_verifies_against_its_card_only() {
        let (key, id) = card(0x42, 0x5e);
        let r = Receipt::new(&id, signed(&key, &id, Usage::Return { licence: L })).unwrap();
        let bytes = r.encode();
        assert!(bytes.len() <= MAX_RECEIPT);
        let back = Receipt::parse(&bytes).unwrap();
        assert_eq!(back, r);
        let v = back.verify(&id, &L).unwrap();
        assert_eq!((v.licence, v.counter), (L, 142));
        let (_, other) = card(0x43, 0x77);
        assert_eq!(back.verify(&other, &L).unwrap_err().check(), "card");
        let same_serial = CardIdentity {
            serial: id.serial,
            ..other.clone()
        };
        assert!(matches!(
            back.verify(&same_serial, &L),
            Err(ReceiptError::OtherCardKey(_))
        ));
        assert!(matches!(
            back.verify(&id, &LicenceId([1; 16])),
            Err(ReceiptError::OtherLicence { .. })
        ));
        let late = CardIdentity {
            origin: 143,
            ..id.clone()
        };
        assert_eq!(back.verify(&late, &L).unwrap_err().check(), "origin");
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (key, id) = card(0x42, 0x5e);
        let bytes = Receipt::new(&id, signed(&key, &id, Usage::Return { licence: L }))
            .unwrap()
            .encode();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let verdict = Receipt::parse(&b).and_then(|r| r.verify(&id, &L));
                assert!(verdict.is_err(), "byte {i} bit {bit:#x} accepted");
            }
        }
    }

    #[test]
    fn only_return_records_make_receipts() {
        let (key, id) = card(0x42, 0x5e);
        let open = signed(&key, &id, Usage::Open { licence: L });
        assert!(matches!(
            Receipt::new(&id, open),
            Err(ReceiptError::NotAReturn(k)) if k == "open"
        ));
        assert!(matches!(
            Receipt::parse(b"TALLYRCT"),
            Err(ReceiptError::Short(8))
        ));
    }
}
