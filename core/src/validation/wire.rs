//! The two messages of Figures 3 and 4, byte for byte (integers big-endian).
//!
//! ```text
//! VAL_REQ plaintext (REQUEST_LEN = 170 bytes)
//!   version u8 = 1 · variant u8 (1–8) · UI 16 · ICV 32 · PSI u64 · VSSI u64 ·
//!   DT i64 (the copy's clock, Unix s) · VSI 32 (fingerprint of the server key) ·
//!   IV 32 · viewer ICV 32
//! card proof (PROOF_LEN = 120 bytes, T32)
//!   card serial 16 · record nonce 32 · card counter u64 · card signature 64
//!   — the card-signed trail record whose body is `request_record_body(hash, DT)`:
//!   `tally/1 nonce at=<DT> value=val:<first 30 bytes of the request hash, hex>`
//! VAL_REQ envelope (ENVELOPE_LEN = 380 bytes)
//!   "TALLYVRQ" · version u8 = 2 · ephemeral P-256 key 65 (SEC1) ·
//!   AES-256-GCM(plaintext 170 ‖ card proof 120) + tag 16; associated data: the 74 header bytes
//!   (version 1, 260 bytes, is the same without the card proof: still opened, so that a
//!   viewer from before card-signed requests gets a clear signed refusal)
//! VAL_OK / refusal (VERDICT_LEN = 246 bytes)
//!   "TALLYVOK" · version u8 = 2 · status u8 · licence 16 · UI 16 · PSI u64 · VSSI u64 ·
//!   card counter u64 (of the request's card proof; 0 without one) ·
//!   DT i64 (server time) · VSI 32 · IV 32 (the next IV; zero in a refusal) ·
//!   expires i64 · offline records u32 (card records allowed before the next validation) ·
//!   request 32 (hash of the VAL_REQ plaintext answered) ·
//!   signature 64 (ECDSA P-256 low-S over "tally/val-ok/v2\0" ‖ the 182 bytes before it)
//! ```

use super::ValidationError;
use crate::card::{CardIdentity, Serial};
use crate::crypto::{self, Hash, PublicKey, Signature};
use crate::icv::{IV_LEN, Icv, IcvVariant, Iv, UI_LEN, Ui};
use crate::nonce::Nonce;
use crate::trail::{Body, LicenceId, Record, Usage};
use rand_core::CryptoRngCore;
use std::fmt;

/// Bytes of a VAL_REQ plaintext.
pub const REQUEST_LEN: usize = 2 + UI_LEN + 32 + 8 + 8 + 8 + 32 + IV_LEN + 32;
/// Bytes of the card proof that follows the request in a version 2 envelope.
pub const PROOF_LEN: usize = 16 + 32 + 8 + 64;
const ENVELOPE_MAGIC: &[u8; 8] = b"TALLYVRQ";
const HEADER_LEN: usize = 8 + 1 + 65;
/// Bytes of an encrypted, card-signed VAL_REQ (envelope version 2).
pub const ENVELOPE_LEN: usize = HEADER_LEN + REQUEST_LEN + PROOF_LEN + 16;
/// Bytes of an encrypted VAL_REQ without a card proof (envelope version 1, from viewers
/// before card-signed requests): opened only to be refused.
pub const ENVELOPE_V1_LEN: usize = HEADER_LEN + REQUEST_LEN + 16;
const VERDICT_MAGIC: &[u8; 8] = b"TALLYVOK";
const VERDICT_BODY_LEN: usize = 8 + 1 + 1 + 16 + UI_LEN + 8 + 8 + 8 + 8 + 32 + IV_LEN + 8 + 4 + 32;
/// Bytes of a signed VAL_OK or refusal.
pub const VERDICT_LEN: usize = VERDICT_BODY_LEN + 64;
/// The VAL_REQ plaintext's version.
const VERSION: u8 = 1;
/// The envelope's version: 2 carries the card proof.
const ENVELOPE_VERSION: u8 = 2;
/// The verdict's version: 2 names the licence, the card counter and the offline bound.
const VERDICT_VERSION: u8 = 2;
const ECIES_INFO: &[u8] = b"tally/val-req/ecies/v1";
const SIGN_DOMAIN: &[u8] = b"tally/val-ok/v2\0";
/// The prefix of the nonce value a card signs for a VAL_REQ.
const RECORD_PREFIX: &str = "val:";

/// A decrypted validation request (Figure 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValReq {
    /// The ICV variant the copy used.
    pub variant: IcvVariant,
    /// Unique identifier of the copy (its current, rolled value).
    pub ui: Ui,
    /// ICV of `package ‖ UI`.
    pub icv: Icv,
    /// Program sequence identifier.
    pub psi: u64,
    /// Validation server sequence identifier of the last ticket the copy accepted.
    pub vssi: u64,
    /// Date and time of this validation on the copy's clock (Unix seconds).
    pub dt: i64,
    /// Validation server identifier: the fingerprint of the server key the copy trusts.
    pub vsi: Hash,
    /// The initialisation value used in the ICV.
    pub iv: Iv,
    /// ICV of the viewer executable.
    pub viewer_icv: Icv,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        // Callers check the total length first, so this never runs past the end.
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
}

fn exact(what: &'static str, bytes: &[u8], expected: usize) -> Result<(), ValidationError> {
    if bytes.len() != expected {
        return Err(ValidationError::Length {
            what,
            expected,
            actual: bytes.len(),
        });
    }
    Ok(())
}

impl ValReq {
    /// The plaintext bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut v = Vec::with_capacity(REQUEST_LEN);
        v.push(VERSION);
        v.push(self.variant.number());
        v.extend_from_slice(&self.ui.0);
        v.extend_from_slice(&self.icv.0);
        v.extend_from_slice(&self.psi.to_be_bytes());
        v.extend_from_slice(&self.vssi.to_be_bytes());
        v.extend_from_slice(&self.dt.to_be_bytes());
        v.extend_from_slice(&self.vsi);
        v.extend_from_slice(&self.iv.0);
        v.extend_from_slice(&self.viewer_icv.0);
        let mut out = [0u8; REQUEST_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Parses exactly [`REQUEST_LEN`] plaintext bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        exact("VAL_REQ", bytes, REQUEST_LEN)?;
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8();
        if version != VERSION {
            return Err(ValidationError::UnsupportedVersion {
                what: "VAL_REQ",
                version,
            });
        }
        let variant = IcvVariant::from_number(r.u8())
            .ok_or(ValidationError::BadField("VAL_REQ: ICV variant is not 1–8"))?;
        Ok(Self {
            variant,
            ui: Ui(r.take()),
            icv: Icv(r.take()),
            psi: r.u64(),
            vssi: r.u64(),
            dt: r.i64(),
            vsi: r.take(),
            iv: Iv(r.take()),
            viewer_icv: Icv(r.take()),
        })
    }

    /// Encrypts the request and its card proof to `server` (ECIES, envelope version 2).
    pub fn seal(
        &self,
        proof: &CardProof,
        server: &PublicKey,
        rng: &mut impl CryptoRngCore,
    ) -> Vec<u8> {
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(REQUEST_LEN + PROOF_LEN));
        plain.extend_from_slice(&self.encode());
        plain.extend_from_slice(&proof.encode());
        seal_plain(ENVELOPE_VERSION, &plain, server, rng)
    }

    /// Encrypts the request without a card proof (envelope version 1): what a viewer from
    /// before card-signed requests sends, and what a third party without the card can
    /// send. The server refuses it (`not-card-signed`) and changes nothing (T32).
    pub fn seal_unsigned(&self, server: &PublicKey, rng: &mut impl CryptoRngCore) -> Vec<u8> {
        let plain = zeroize::Zeroizing::new(self.encode());
        seal_plain(1, &plain[..], server, rng)
    }
}

fn seal_plain(
    version: u8,
    plain: &[u8],
    server: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    let (mut header, shared) = super::ecies::start(server, ENVELOPE_MAGIC, version, rng);
    // AES-GCM on a few hundred bytes with a valid key cannot fail.
    let sealed =
        crate::keyfile::aead_seal(&shared.key(ECIES_INFO), &header, plain).unwrap_or_default();
    header.extend_from_slice(&sealed);
    header
}

/// The card's signature of a VAL_REQ (T32): the trail record the reader's card signed
/// through Write (\[0059\]), whose body is [`request_record_body`] of the request's hash
/// and date. Only the fields the server cannot recompute travel; it rebuilds the body,
/// so the card's signature covers exactly this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardProof {
    /// The card's serial.
    pub serial: Serial,
    /// The record's nonce.
    pub nonce: Nonce,
    /// The card counter the record was signed at.
    pub counter: u64,
    /// The card's signature.
    pub signature: Signature,
}

/// The body of the trail record a card signs for a VAL_REQ whose plaintext hashes to
/// `hash`, dated `dt` (the request's DT): a nonce record, so it counts against no licence
/// and every trail reader already knows it; 30 bytes (240 bits) of the hash fit the
/// body's 64-character value.
pub fn request_record_body(hash: &Hash, dt: i64) -> Body {
    Body::at_unix(
        Usage::Nonce {
            value: format!("{RECORD_PREFIX}{}", hex::encode(&hash[..30])),
        },
        dt,
    )
}

impl CardProof {
    /// The proof of `record`, written by card `serial`.
    pub fn of_record(serial: Serial, record: &Record) -> Self {
        Self {
            serial,
            nonce: record.nonce,
            counter: record.counter,
            signature: record.signature,
        }
    }

    /// The trail record this proof stands for, for the request `req` whose plaintext
    /// hashes to `hash`.
    pub fn record(&self, req: &ValReq, hash: &Hash) -> Record {
        Record {
            nonce: self.nonce,
            body: request_record_body(hash, req.dt).encode().into_bytes(),
            counter: self.counter,
            signature: self.signature,
        }
    }

    /// Its bytes.
    pub fn encode(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        out[..16].copy_from_slice(&self.serial.0);
        out[16..48].copy_from_slice(&self.nonce);
        out[48..56].copy_from_slice(&self.counter.to_be_bytes());
        out[56..].copy_from_slice(&self.signature.0);
        out
    }

    /// Parses exactly [`PROOF_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        exact("card proof", bytes, PROOF_LEN)?;
        let mut r = Reader { bytes, at: 0 };
        Ok(Self {
            serial: Serial(r.take()),
            nonce: r.take(),
            counter: r.u64(),
            signature: Signature(r.take()),
        })
    }
}

/// What the server found about a request's card proof (T32): only
/// [`CardCheck::Signed`] lets a request change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardCheck {
    /// Signed by the card registered for the copy's licence, at this card counter.
    Signed {
        /// The card counter of the request's record.
        counter: u64,
    },
    /// The request carries no card proof (envelope version 1).
    Unsigned,
    /// The proof names another card than the licence's.
    WrongCard,
    /// The signature does not verify under the registered card's key.
    BadSignature,
    /// No card is registered for the copy (or the copy is unknown).
    NoCard,
}

impl CardCheck {
    /// Checks `proof` of the request `req` (plaintext hash `hash`) against `card`, the card
    /// registered for the copy's licence: the record the server rebuilds from the request
    /// must carry the registered card's signature at the proof's counter.
    pub fn of(
        req: &ValReq,
        hash: &Hash,
        proof: Option<&CardProof>,
        card: Option<&CardIdentity>,
    ) -> Self {
        let Some(card) = card else {
            return Self::NoCard;
        };
        let Some(proof) = proof else {
            return Self::Unsigned;
        };
        if proof.serial != card.serial {
            return Self::WrongCard;
        }
        if !proof
            .record(req, hash)
            .verify(card, crypto::default_verifier())
        {
            return Self::BadSignature;
        }
        Self::Signed {
            counter: proof.counter,
        }
    }

    /// A short name for the server's log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signed { .. } => "card-signed",
            Self::Unsigned => "unsigned",
            Self::WrongCard => "wrong-card",
            Self::BadSignature => "bad-card-signature",
            Self::NoCard => "no-card-registered",
        }
    }
}

fn ecies_key(shared: &[u8], eph: &PublicKey, server: &PublicKey) -> zeroize::Zeroizing<[u8; 44]> {
    let mut salt = Vec::with_capacity(130);
    salt.extend_from_slice(eph.as_bytes());
    salt.extend_from_slice(server.as_bytes());
    crate::keyfile::derive(shared, &salt, ECIES_INFO)
}

/// Opens an envelope with the server's ECDH secret; returns the request, the hash of
/// its plaintext (what the answer must carry) and its card proof (`None`: a version 1
/// envelope, which has none).
pub(super) fn open_envelope(
    secret: &p256::SecretKey,
    server: &PublicKey,
    bytes: &[u8],
) -> Result<(ValReq, Hash, Option<CardProof>), ValidationError> {
    if bytes.len() != ENVELOPE_LEN && bytes.len() != ENVELOPE_V1_LEN {
        return Err(ValidationError::Length {
            what: "encrypted VAL_REQ",
            expected: ENVELOPE_LEN,
            actual: bytes.len(),
        });
    }
    if &bytes[..8] != ENVELOPE_MAGIC {
        return Err(ValidationError::BadMagic("encrypted VAL_REQ"));
    }
    let version = bytes[8];
    let expected = match version {
        1 => ENVELOPE_V1_LEN,
        ENVELOPE_VERSION => ENVELOPE_LEN,
        _ => {
            return Err(ValidationError::UnsupportedVersion {
                what: "encrypted VAL_REQ",
                version,
            });
        }
    };
    exact("encrypted VAL_REQ", bytes, expected)?;
    let eph = PublicKey::from_sec1(&bytes[9..HEADER_LEN]).map_err(|_| {
        ValidationError::BadField("encrypted VAL_REQ: ephemeral key is not a P-256 point")
    })?;
    let shared = p256::ecdh::diffie_hellman(
        secret.to_nonzero_scalar(),
        p256::PublicKey::from(eph.verifying_key()).as_affine(),
    );
    let m = ecies_key(shared.raw_secret_bytes(), &eph, server);
    let plain = crate::keyfile::aead_open(&m, &bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|_| ValidationError::Decrypt)?;
    let (request, proof) = plain.split_at(REQUEST_LEN.min(plain.len()));
    let req = ValReq::parse(request)?;
    let proof = match version {
        1 => None,
        _ => Some(CardProof::parse(proof)?),
    };
    Ok((req, request_hash(request), proof))
}

/// The hash a ticket carries to name the request it answers.
pub fn request_hash(plain: &[u8]) -> Hash {
    crypto::tagged_hash(b"tally/val-req/hash/v1", &[plain])
}

/// What the server says (the status byte of a verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// VAL_OK: validated.
    Ok,
    /// The copy was revoked by the publisher (T23).
    Revoked,
    /// An old UI was presented again: the copy was cloned; it is now revoked (T15).
    Clone,
    /// The viewer executable is not a registered release build.
    ModifiedViewer,
    /// No copy has this UI.
    UnknownCopy,
    /// The ICV does not match the package and UI: the copy was modified.
    IcvMismatch,
    /// A PSI not above the last one, or a stale VSSI/IV: a replayed request (T17).
    Replay,
    /// A PSI far beyond the last one: refused and not adopted (T19).
    SequenceJump,
    /// The request names another validation server.
    WrongServer,
    /// The server does not accept this ICV variant.
    VariantRefused,
    /// The request is not signed by the card registered for the copy's licence: nothing
    /// was changed (T32).
    NotCardSigned,
}

impl Status {
    const ALL: [Status; 11] = [
        Self::Ok,
        Self::Revoked,
        Self::Clone,
        Self::ModifiedViewer,
        Self::UnknownCopy,
        Self::IcvMismatch,
        Self::Replay,
        Self::SequenceJump,
        Self::WrongServer,
        Self::VariantRefused,
        Self::NotCardSigned,
    ];

    /// Its byte.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Revoked => 1,
            Self::Clone => 2,
            Self::ModifiedViewer => 3,
            Self::UnknownCopy => 4,
            Self::IcvMismatch => 5,
            Self::Replay => 6,
            Self::SequenceJump => 7,
            Self::WrongServer => 8,
            Self::VariantRefused => 9,
            Self::NotCardSigned => 10,
        }
    }

    /// From its byte.
    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }

    /// A short machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Revoked => "revoked",
            Self::Clone => "clone",
            Self::ModifiedViewer => "modified-viewer",
            Self::UnknownCopy => "unknown-copy",
            Self::IcvMismatch => "icv-mismatch",
            Self::Replay => "replay",
            Self::SequenceJump => "sequence-jump",
            Self::WrongServer => "wrong-server",
            Self::VariantRefused => "variant-refused",
            Self::NotCardSigned => "not-card-signed",
        }
    }

    /// Whether the copy must stop until a later VAL_OK (every refusal except those about
    /// one request's sequence numbers or parameters, which a retry may fix).
    pub fn stops_the_copy(self) -> bool {
        matches!(
            self,
            Self::Revoked
                | Self::Clone
                | Self::ModifiedViewer
                | Self::UnknownCopy
                | Self::IcvMismatch
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "validated",
            Self::Revoked => "this copy was revoked by the publisher",
            Self::Clone => {
                "an earlier identifier of this copy was presented again: the copy was cloned and is now revoked"
            }
            // Usually a build the publisher has not registered yet, not a modified one: name
            // the fix. A modified viewer is refused by the same check.
            Self::ModifiedViewer => {
                "this viewer build is not registered with the publisher's validation server (the publisher registers it with `tally-pack viewer register PATH-TO-tally-view`)"
            }
            Self::UnknownCopy => "the validation server does not know this copy",
            Self::IcvMismatch => {
                "the integrity check value does not match the package: the copy was modified"
            }
            Self::Replay => "the request repeats an old sequence number (a replay)",
            Self::SequenceJump => "the request's sequence number jumps too far ahead",
            Self::WrongServer => "the request is addressed to another validation server",
            Self::VariantRefused => "the server does not accept this ICV variant",
            Self::NotCardSigned => {
                "the request is not signed by the card registered for this licence, so it changed nothing (validate with the licence's card, and a viewer that signs its requests with it)"
            }
        })
    }
}

/// A VAL_OK ticket or a signed refusal (Figure 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// OK or why not.
    pub status: Status,
    /// The licence of the copy the request named (all zero when the copy is unknown), so a
    /// ticket cannot be passed off as another licence's (T33).
    pub licence: LicenceId,
    /// The UI the request presented.
    pub ui: Ui,
    /// The request's PSI.
    pub psi: u64,
    /// The server's sequence for this copy (new in a VAL_OK).
    pub vssi: u64,
    /// The card counter of the request's card-signed record (0 when it had none): the
    /// point on the card from which offline use is counted (T34).
    pub card_counter: u64,
    /// The server's date and time (Unix seconds).
    pub dt: i64,
    /// The server key's fingerprint.
    pub vsi: Hash,
    /// The IV for the copy's next validation (zero in a refusal).
    pub iv: Iv,
    /// Until when the ticket stands (Unix seconds; = `dt` in a refusal).
    pub expires: i64,
    /// How many records the card may sign after `card_counter` before the copy must
    /// validate again, whatever the clock says (T34; 0 in a refusal).
    pub offline_records: u32,
    /// The hash of the VAL_REQ plaintext answered.
    pub request: Hash,
}

impl Verdict {
    /// The signed part.
    pub fn body(&self) -> [u8; VERDICT_BODY_LEN] {
        let mut v = Vec::with_capacity(VERDICT_BODY_LEN);
        v.extend_from_slice(VERDICT_MAGIC);
        v.push(VERDICT_VERSION);
        v.push(self.status.code());
        v.extend_from_slice(&self.licence.0);
        v.extend_from_slice(&self.ui.0);
        v.extend_from_slice(&self.psi.to_be_bytes());
        v.extend_from_slice(&self.vssi.to_be_bytes());
        v.extend_from_slice(&self.card_counter.to_be_bytes());
        v.extend_from_slice(&self.dt.to_be_bytes());
        v.extend_from_slice(&self.vsi);
        v.extend_from_slice(&self.iv.0);
        v.extend_from_slice(&self.expires.to_be_bytes());
        v.extend_from_slice(&self.offline_records.to_be_bytes());
        v.extend_from_slice(&self.request);
        let mut out = [0u8; VERDICT_BODY_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// The message the server signs.
    pub(super) fn signed_message(body: &[u8]) -> Vec<u8> {
        let mut m = SIGN_DOMAIN.to_vec();
        m.extend_from_slice(body);
        m
    }

    /// Parses a verdict and verifies its signature under `server`; nothing is believed
    /// before the signature verifies.
    pub fn open(bytes: &[u8], server: &PublicKey) -> Result<Self, ValidationError> {
        exact("VAL_OK", bytes, VERDICT_LEN)?;
        let (body, sig) = bytes.split_at(VERDICT_BODY_LEN);
        if &body[..8] != VERDICT_MAGIC {
            return Err(ValidationError::BadMagic("VAL_OK"));
        }
        let sig = Signature::from_slice(sig).ok_or(ValidationError::BadSignature)?;
        if !crypto::default_verifier().verify(server, &Self::signed_message(body), &sig) {
            return Err(ValidationError::BadSignature);
        }
        let mut r = Reader { bytes: body, at: 8 };
        let version = r.u8();
        if version != VERDICT_VERSION {
            return Err(ValidationError::UnsupportedVersion {
                what: "VAL_OK",
                version,
            });
        }
        let status =
            Status::from_code(r.u8()).ok_or(ValidationError::BadField("VAL_OK: unknown status"))?;
        let v = Self {
            status,
            licence: LicenceId(r.take()),
            ui: Ui(r.take()),
            psi: r.u64(),
            vssi: r.u64(),
            card_counter: r.u64(),
            dt: r.i64(),
            vsi: r.take(),
            iv: Iv(r.take()),
            expires: r.i64(),
            offline_records: r.u32(),
            request: r.take(),
        };
        if v.vsi != server.fingerprint() {
            return Err(ValidationError::WrongServer);
        }
        if v.expires < v.dt {
            return Err(ValidationError::TicketDates);
        }
        Ok(v)
    }
}
