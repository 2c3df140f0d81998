//! The card side of the protocol: what a Tally card does with each APDU.
//!
//! The emulated card and the virtual card served to pcscd both run this code, so tests
//! exercise the production protocol. A Java Card applet would implement the same
//! behaviour from `docs/card-protocol.md`.

use super::apdu::{Command, Ins, StatusWord};
use super::{AID, LastSignature, Serial, signed_message};
use crate::crypto::{PublicKey, sign_low_s};
use p256::ecdsa::SigningKey;
use std::fmt;

/// Everything a card stores. The private key is zeroized when dropped.
#[derive(Clone)]
pub struct CardState {
    /// Serial number.
    pub serial: Serial,
    /// Counter value the card was personalised with.
    pub origin: u64,
    /// The counter: the value the next signature covers. Only ever goes up (\[0057\]).
    pub counter: u64,
    /// The private key (p256's `SigningKey` zeroizes on drop).
    pub key: SigningKey,
    /// The private key-agreement key: DECIPHER does ECDH with it, so content keys wrapped
    /// to its public half open only on this card (p256's `SecretKey` zeroizes on drop).
    pub agreement: p256::SecretKey,
    /// The issuer's attestation certificate, as the issuer wrote it at personalisation
    /// (`None`: an emulated card nobody vouched for). The card never interprets it.
    pub attestation: Option<Vec<u8>>,
    /// The last signature made, for crash recovery.
    pub last: Option<LastSignature>,
    /// A label, e.g. "DEMO card — not for real rentals".
    pub label: String,
}

// The only secrets, the private keys, are p256's `SigningKey` and `SecretKey`, which
// zeroize themselves on drop.
impl zeroize::ZeroizeOnDrop for CardState {}

impl fmt::Debug for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardState")
            .field("serial", &self.serial)
            .field("origin", &self.origin)
            .field("counter", &self.counter)
            .field("public_key", &self.public_key())
            .field("agreement_key", &self.agreement_key())
            .field("attested", &self.attestation.is_some())
            .field("last", &self.last)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl CardState {
    /// A new card with a random key and serial; the counter starts at `origin` (T10:
    /// cards need not start at zero, \[0095\]).
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, origin: u64, label: &str) -> Self {
        let key = SigningKey::random(rng);
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        let agreement = p256::SecretKey::random(rng);
        Self {
            serial: Serial(serial),
            origin,
            counter: origin,
            key,
            agreement,
            attestation: None,
            last: None,
            label: label.to_string(),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(self.key.verifying_key())
    }

    /// The public key-agreement key.
    pub fn agreement_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(&p256::ecdsa::VerifyingKey::from(
            self.agreement.public_key(),
        ))
    }

    /// What an issuer's certificate for this card must say.
    pub fn attested_card(&self) -> super::attestation::AttestedCard {
        super::attestation::AttestedCard {
            serial: self.serial,
            origin: self.origin,
            signing_key: self.public_key(),
            agreement_key: self.agreement_key(),
        }
    }
}

/// GET_ATTESTATION answers the certificate in blocks of this many bytes (P1 = block
/// number); a block shorter than this is the last, so short APDUs carry any length.
pub const ATTESTATION_BLOCK: usize = 128;

/// One card session's volatile state (the selected application), over persistent state.
#[derive(Debug, Default)]
pub struct Applet {
    selected: bool,
}

impl Applet {
    /// A freshly powered card: nothing selected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Power off or reset: the selection is forgotten; persistent state is untouched.
    pub fn reset(&mut self) {
        self.selected = false;
    }

    /// Processes one command APDU. `persist` must durably and atomically store the new
    /// state before the answer leaves the card; if it fails nothing changes and the card
    /// answers 6581. Never panics, whatever the bytes.
    pub fn process(
        &mut self,
        state: &mut CardState,
        raw: &[u8],
        persist: &mut dyn FnMut(&CardState) -> std::io::Result<()>,
    ) -> Vec<u8> {
        match self.dispatch(state, raw, persist) {
            Ok(mut data) => {
                data.extend_from_slice(&StatusWord::OK.to_bytes());
                data
            }
            Err(sw) => sw.to_bytes().to_vec(),
        }
    }

    fn dispatch(
        &mut self,
        state: &mut CardState,
        raw: &[u8],
        persist: &mut dyn FnMut(&CardState) -> std::io::Result<()>,
    ) -> Result<Vec<u8>, StatusWord> {
        let cmd = Command::parse(raw)?;
        if (cmd.cla, cmd.ins) == Ins::Select.bytes() {
            if cmd.p1 != 0x04 || cmd.p2 != 0x00 {
                return Err(StatusWord::WRONG_P1P2);
            }
            if cmd.data != AID {
                self.selected = false;
                return Err(StatusWord::APPLET_NOT_FOUND);
            }
            self.selected = true;
            return Ok(Vec::new());
        }
        if cmd.cla != super::apdu::CLA_PROPRIETARY {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        let ins = [
            Ins::SignAndIncrement,
            Ins::GetCounter,
            Ins::GetSerial,
            Ins::GetPublicKey,
            Ins::GetLastSignature,
            Ins::GetAgreementKey,
            Ins::GetAttestation,
            Ins::Decipher,
        ]
        .into_iter()
        .find(|i| i.bytes().1 == cmd.ins)
        .ok_or(StatusWord::INS_NOT_SUPPORTED)?;
        if !self.selected {
            return Err(StatusWord::NOT_SELECTED);
        }
        // DECIPHER keeps PSO:DECIPHER's P1-P2 (80 86: plain value out, enciphered in);
        // GET_ATTESTATION's P1 is the block number; everything else takes 00 00.
        let p1p2_ok = match ins {
            Ins::Decipher => (cmd.p1, cmd.p2) == (0x80, 0x86),
            Ins::GetAttestation => cmd.p2 == 0,
            _ => (cmd.p1, cmd.p2) == (0, 0),
        };
        if !p1p2_ok {
            return Err(StatusWord::WRONG_P1P2);
        }
        let no_data = |cmd: &Command<'_>| {
            if cmd.data.is_empty() {
                Ok(())
            } else {
                Err(StatusWord::WRONG_LENGTH)
            }
        };
        match ins {
            Ins::SignAndIncrement => {
                let h: [u8; 32] = cmd.data.try_into().map_err(|_| StatusWord::WRONG_LENGTH)?;
                // [0057]: the counter never wraps. The last value is never signed, so
                // that "counter" always means "the value the next signature covers".
                if state.counter == u64::MAX {
                    return Err(StatusWord::COUNTER_EXHAUSTED);
                }
                // [0053]/[0098] steps [1]–[3], made atomic: the signature and the
                // incremented counter are persisted together before anything is returned.
                let signature = sign_low_s(
                    &state.key,
                    &signed_message(&h, &state.serial, state.counter),
                );
                let mut next = state.clone();
                next.last = Some(LastSignature {
                    h,
                    counter: state.counter,
                    signature,
                });
                next.counter = state.counter + 1;
                persist(&next).map_err(|_| StatusWord::MEMORY_FAILURE)?;
                *state = next;
                Ok(signature.0.to_vec())
            }
            Ins::GetCounter => {
                no_data(&cmd)?;
                Ok(state.counter.to_be_bytes().to_vec())
            }
            Ins::GetSerial => {
                no_data(&cmd)?;
                let mut out = state.serial.0.to_vec();
                out.extend_from_slice(&state.origin.to_be_bytes());
                Ok(out)
            }
            Ins::GetPublicKey => {
                no_data(&cmd)?;
                Ok(state.public_key().as_bytes().to_vec())
            }
            Ins::GetLastSignature => {
                no_data(&cmd)?;
                let last = state.last.ok_or(StatusWord::NOT_FOUND)?;
                let mut out = last.h.to_vec();
                out.extend_from_slice(&last.counter.to_be_bytes());
                out.extend_from_slice(&last.signature.0);
                Ok(out)
            }
            Ins::GetAgreementKey => {
                no_data(&cmd)?;
                Ok(state.agreement_key().as_bytes().to_vec())
            }
            Ins::GetAttestation => {
                no_data(&cmd)?;
                let cert = state.attestation.as_deref().ok_or(StatusWord::NOT_FOUND)?;
                let start = usize::from(cmd.p1) * ATTESTATION_BLOCK;
                if start > cert.len() {
                    return Err(StatusWord::WRONG_P1P2);
                }
                let end = (start + ATTESTATION_BLOCK).min(cert.len());
                Ok(cert[start..end].to_vec())
            }
            Ins::Decipher => {
                // PSO:DECIPHER for ECDH (as OpenPGP cards do it): the data is the other
                // party's uncompressed P-256 point; the answer is the shared x-coordinate.
                // The point is validated (on the curve, not the identity) so invalid-curve
                // points cannot probe the key.
                if cmd.data.len() != 65 || cmd.data[0] != 0x04 {
                    return Err(StatusWord::WRONG_LENGTH);
                }
                let point = p256::PublicKey::from_sec1_bytes(cmd.data)
                    .map_err(|_| StatusWord::WRONG_DATA)?;
                let shared = p256::ecdh::diffie_hellman(
                    state.agreement.to_nonzero_scalar(),
                    point.as_affine(),
                );
                Ok(shared.raw_secret_bytes().to_vec())
            }
            Ins::Select => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }
}
