//! One audit record ⟨nonce, body, counter, signature⟩ (\[0056\]).

use crate::card::{CardIdentity, signed_message};
use crate::crypto::{Hash, Signature, SignatureVerifier, tagged_hash};
use crate::nonce::Nonce;

/// Domain tag of `h1 = hash(nonce, body)` (\[0059\] step \[2\]).
pub const RECORD_TAG: &[u8] = b"tally/record/v1";

/// Longest encoded record payload accepted from a file.
pub const MAX_RECORD: usize = 32 + 8 + 64 + 2 + super::body::MAX_BODY;

/// An audit record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    /// The record's nonce (\[0059\] step \[1\]).
    pub nonce: Nonce,
    /// The body text (see [`super::body`]).
    pub body: Vec<u8>,
    /// The card counter the signature covers.
    pub counter: u64,
    /// The card's signature of `hash(h1, serial, counter)`.
    pub signature: Signature,
}

/// Why a record's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than the fixed fields.
    #[error("record is too short")]
    Short,
    /// The body length disagrees with the record length.
    #[error("record body length does not match")]
    Length,
    /// Longer than [`MAX_RECORD`].
    #[error("record is too long")]
    TooLong,
}

impl Record {
    /// `h1 = hash(nonce, body)`, with a domain tag and length prefixes (T9).
    pub fn h1(&self) -> Hash {
        h1(&self.nonce, &self.body)
    }

    /// The message the card signed for this record.
    pub fn signed_message(&self, identity: &CardIdentity) -> [u8; 73] {
        signed_message(&self.h1(), &identity.serial, self.counter)
    }

    /// \[0060\] step [6.2] with the serial of \[0102\]: the signature is recomputed from the
    /// record alone and checked against the expected card's key.
    pub fn verify(&self, identity: &CardIdentity, verifier: &dyn SignatureVerifier) -> bool {
        verifier.verify(
            &identity.public_key,
            &self.signed_message(identity),
            &self.signature,
        )
    }

    /// Encodes: nonce ‖ counter (u64 BE) ‖ signature ‖ body length (u16 BE) ‖ body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(106 + self.body.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.signature.0);
        out.extend_from_slice(&(self.body.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes [`Record::encode`]'s form strictly.
    pub fn decode(b: &[u8]) -> Result<Self, RecordError> {
        if b.len() > MAX_RECORD {
            return Err(RecordError::TooLong);
        }
        if b.len() < 106 {
            return Err(RecordError::Short);
        }
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&b[..32]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[32..40]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&b[40..104]);
        let len = u16::from_be_bytes([b[104], b[105]]) as usize;
        if b.len() != 106 + len {
            return Err(RecordError::Length);
        }
        Ok(Self {
            nonce,
            body: b[106..].to_vec(),
            counter: u64::from_be_bytes(c),
            signature: Signature(sig),
        })
    }
}

/// `h1 = hash(nonce, body)`.
pub fn h1(nonce: &Nonce, body: &[u8]) -> Hash {
    tagged_hash(RECORD_TAG, &[nonce, body])
}
