//! The smart card of EP 0 895 148 (\[0052\]–\[0057\], \[0098\]–\[0099\]) and how we talk to it.
//!
//! Layering follows openpgp-card: a [`CardBackend`] opens a short exclusive
//! [`CardTransaction`] whose one required method is `transmit` (raw APDU bytes in,
//! raw response out). Our commands (SELECT, SIGN_AND_INCREMENT, GET_COUNTER, …) are
//! built on top in [`CardSession`], so the emulated card, the PC/SC card and the
//! virtual card behind pcscd all run the same protocol code. The protocol is written
//! down in `docs/card-protocol.md`.

pub mod apdu;
pub mod applet;
pub mod attestation;
pub mod emulated;
mod identity;
#[cfg(feature = "pcsc")]
pub mod pcsc;
pub mod virtual_card;

pub use apdu::StatusWord;
pub use identity::{CardExport, CardIdentity, IdentityError, Serial};

use crate::crypto::{Hash, KeyError, PublicKey, Signature};
use apdu::{Command, Ins};

/// The application identifier our applet answers SELECT to: `F0` (proprietary) + "TALLY" + version 1.
pub const AID: [u8; 7] = [0xF0, 0x54, 0x41, 0x4C, 0x4C, 0x59, 0x01];

/// Domain tag of the card's signed message: `h' = SHA-256(tag ‖ h ‖ serial ‖ counter)`.
pub const SIGN_TAG: &[u8; 17] = b"TALLY-CARD-SIG/v1";

/// The exact bytes the card signs (ECDSA P-256 with SHA-256 hashes them into `h'`).
///
/// \[0053\] step \[1\] with the serial of the universal-key variant \[0098\]: binding the
/// serial means one card's signatures can't be replayed as another's (T7). Every part
/// has a fixed width, so boundaries can't shift (T9).
pub fn signed_message(h: &Hash, serial: &Serial, counter: u64) -> [u8; 73] {
    let mut m = [0u8; 73];
    m[..17].copy_from_slice(SIGN_TAG);
    m[17..49].copy_from_slice(h);
    m[49..65].copy_from_slice(&serial.0);
    m[65..73].copy_from_slice(&counter.to_be_bytes());
    m
}

/// Failures of the link to a card, apart from anything the card itself answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No card service (pcscd) is running.
    #[error("no smart-card service is running (is pcscd started?)")]
    NoService,
    /// A PC/SC card was asked for, but this build has no PC/SC (the `pcsc` feature is off).
    #[error(
        "this build of Tally reads no smart-card readers (built without the `pcsc` feature): use the emulated card"
    )]
    NoPcscSupport,
    /// No reader is attached, or none with the requested name.
    #[error("no card reader found{0}")]
    NoReader(String),
    /// The reader holds no card.
    #[error("no card in the reader")]
    NoCard,
    /// Cards were found, but none answered SELECT of our applet (this many cards tried).
    #[error("{0} card(s) found, none holding the Tally applet")]
    NoApplet(usize),
    /// The card was removed or reset while it was in use.
    #[error("the card was removed or reset during the operation")]
    CardRemoved,
    /// The emulated card's state file does not exist.
    #[error("no card at {0} (run `tally-view card init`)")]
    NotFound(std::path::PathBuf),
    /// The emulated card's state file is unreadable or damaged.
    #[error("card state {path}: {reason}")]
    BadState {
        /// The state file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("card I/O: {0}")]
    Io(std::io::Error),
    /// Any other transport failure.
    #[error("card transport: {0}")]
    Other(String),
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Errors of the card protocol layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The link to the card failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The card refused a command with this status word.
    #[error("card refused {command}: {status}")]
    Status {
        /// The command the card refused.
        command: &'static str,
        /// Its status word.
        status: StatusWord,
    },
    /// The card answered with data of the wrong shape.
    #[error("card gave a malformed answer to {command}: {reason}")]
    BadResponse {
        /// The command.
        command: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The card's public key is not a valid P-256 key.
    #[error("card public key: {0}")]
    Key(KeyError),
}

impl From<KeyError> for CardError {
    fn from(e: KeyError) -> Self {
        Self::Key(e)
    }
}

/// A connection to a card; open a short transaction for each operation.
pub trait CardBackend: Send {
    /// Opens an exclusive session: no other process talks to the card until it is dropped.
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, TransportError>;
    /// Where this card is, for messages ("emulated:/path", "pcsc:Reader 0").
    fn describe(&self) -> String;
}

/// An exclusive session with a card. Only `transmit` is required.
pub trait CardTransaction {
    /// Sends one command APDU, returns the response APDU (data ‖ SW1 SW2).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
}

/// The card's answer to GET_LAST_SIGNATURE: what it signed last, so a crash between
/// SIGN_AND_INCREMENT and saving the record loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSignature {
    /// The digest `h` that was passed to SIGN_AND_INCREMENT.
    pub h: Hash,
    /// The counter value the signature covers (the counter before the increment).
    pub counter: u64,
    /// The signature.
    pub signature: Signature,
}

/// The protocol layer: the only card type the rest of core uses.
pub struct Card {
    backend: Box<dyn CardBackend>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Card({})", self.backend.describe())
    }
}

impl Card {
    /// Wraps a backend.
    pub fn new(backend: Box<dyn CardBackend>) -> Self {
        Self { backend }
    }

    /// Where the card is.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Opens a session and selects our applet.
    pub fn session(&mut self) -> Result<CardSession<'_>, CardError> {
        let tx = self.backend.transaction()?;
        let mut s = CardSession { tx };
        s.select()?;
        Ok(s)
    }

    /// Reads serial, origin and public key in one session.
    pub fn identity(&mut self) -> Result<CardIdentity, CardError> {
        self.session()?.identity()
    }

    /// Reads everything the card presents about itself in one session: its identity, its
    /// key-agreement key and its issuer's attestation (unverified: see
    /// [`attestation::Attestation::verify`]).
    pub fn presented(&mut self) -> Result<PresentedCard, CardError> {
        let mut s = self.session()?;
        Ok(PresentedCard {
            identity: s.identity()?,
            agreement_key: s.get_agreement_key()?,
            attestation: s.get_attestation()?,
        })
    }
}

/// What a card says about itself; nothing here is trusted until checked against a
/// keyfile and an accepted issuer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PresentedCard {
    /// Serial, signing key and origin.
    pub identity: CardIdentity,
    /// The key-agreement key DECIPHER uses.
    pub agreement_key: PublicKey,
    /// The issuer's certificate as the card returned it (possibly longer than
    /// [`attestation::MAX_ATTESTATION_BYTES`], which parsing refuses); `None`: the card
    /// has none.
    pub attestation: Option<Vec<u8>>,
}

impl PresentedCard {
    /// The card's claims in the form a certificate must match.
    pub fn attested_card(&self) -> attestation::AttestedCard {
        attestation::AttestedCard {
            serial: self.identity.serial,
            origin: self.identity.origin,
            signing_key: self.identity.public_key.clone(),
            agreement_key: self.agreement_key.clone(),
        }
    }
}

/// An open, selected session with the card. Each method is one APDU.
pub struct CardSession<'a> {
    tx: Box<dyn CardTransaction + 'a>,
}

impl CardSession<'_> {
    fn run(&mut self, name: &'static str, cmd: Command<'_>) -> Result<Vec<u8>, CardError> {
        let raw = self.tx.transmit(&cmd.to_bytes())?;
        if raw.len() < 2 {
            return Err(CardError::BadResponse {
                command: name,
                reason: "response shorter than a status word",
            });
        }
        let (data, sw) = raw.split_at(raw.len() - 2);
        let status = StatusWord::from_bytes(sw[0], sw[1]);
        if status != StatusWord::OK {
            return Err(CardError::Status {
                command: name,
                status,
            });
        }
        Ok(data.to_vec())
    }

    /// SELECT by AID.
    pub fn select(&mut self) -> Result<(), CardError> {
        self.run("SELECT", Command::select(&AID))?;
        Ok(())
    }

    /// SIGN_AND_INCREMENT (\[0053\]): the card signs `SHA-256(tag ‖ h ‖ serial ‖ counter)`
    /// and increments its counter, atomically. Returns the signature.
    pub fn sign_and_increment(&mut self, h: &Hash) -> Result<Signature, CardError> {
        let data = self.run(
            "SIGN_AND_INCREMENT",
            Command::new(Ins::SignAndIncrement, h, Some(64)),
        )?;
        let sig: [u8; 64] = data
            .as_slice()
            .try_into()
            .map_err(|_| CardError::BadResponse {
                command: "SIGN_AND_INCREMENT",
                reason: "signature is not 64 bytes",
            })?;
        Ok(Signature(sig))
    }

    /// GET_COUNTER (\[0053\]): the value the next signature will cover.
    pub fn get_counter(&mut self) -> Result<u64, CardError> {
        let data = self.run("GET_COUNTER", Command::new(Ins::GetCounter, &[], Some(8)))?;
        let b: [u8; 8] = data
            .as_slice()
            .try_into()
            .map_err(|_| CardError::BadResponse {
                command: "GET_COUNTER",
                reason: "counter is not 8 bytes",
            })?;
        Ok(u64::from_be_bytes(b))
    }

    /// GET_SERIAL (\[0099\]): the serial number and the counter value the card was
    /// personalised with (its origin, the offset of \[0095\]).
    pub fn get_serial(&mut self) -> Result<(Serial, u64), CardError> {
        let data = self.run("GET_SERIAL", Command::new(Ins::GetSerial, &[], Some(24)))?;
        if data.len() != 24 {
            return Err(CardError::BadResponse {
                command: "GET_SERIAL",
                reason: "answer is not 24 bytes",
            });
        }
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&data[..16]);
        let mut origin = [0u8; 8];
        origin.copy_from_slice(&data[16..]);
        Ok((Serial(serial), u64::from_be_bytes(origin)))
    }

    /// GET_PUBLIC_KEY: the card's P-256 public key.
    pub fn get_public_key(&mut self) -> Result<PublicKey, CardError> {
        let data = self.run(
            "GET_PUBLIC_KEY",
            Command::new(Ins::GetPublicKey, &[], Some(65)),
        )?;
        Ok(PublicKey::from_sec1(&data)?)
    }

    /// GET_LAST_SIGNATURE: the last (h, counter, signature), or `None` if the card never signed.
    pub fn get_last_signature(&mut self) -> Result<Option<LastSignature>, CardError> {
        match self.run(
            "GET_LAST_SIGNATURE",
            Command::new(Ins::GetLastSignature, &[], Some(104)),
        ) {
            Err(CardError::Status { status, .. }) if status == StatusWord::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
            Ok(data) => {
                if data.len() != 104 {
                    return Err(CardError::BadResponse {
                        command: "GET_LAST_SIGNATURE",
                        reason: "answer is not 104 bytes",
                    });
                }
                let mut h = [0u8; 32];
                h.copy_from_slice(&data[..32]);
                let mut c = [0u8; 8];
                c.copy_from_slice(&data[32..40]);
                let mut sig = [0u8; 64];
                sig.copy_from_slice(&data[40..]);
                Ok(Some(LastSignature {
                    h,
                    counter: u64::from_be_bytes(c),
                    signature: Signature(sig),
                }))
            }
        }
    }

    /// GET_AGREEMENT_KEY: the card's P-256 key-agreement public key.
    pub fn get_agreement_key(&mut self) -> Result<PublicKey, CardError> {
        let data = self.run(
            "GET_AGREEMENT_KEY",
            Command::new(Ins::GetAgreementKey, &[], Some(65)),
        )?;
        Ok(PublicKey::from_sec1(&data)?)
    }

    /// GET_ATTESTATION, block by block: the issuer's certificate, or `None` when the card
    /// has none. Reading stops one block past [`attestation::MAX_ATTESTATION_BYTES`], so
    /// a card cannot make the host read without bound; the parser refuses what is too long.
    pub fn get_attestation(&mut self) -> Result<Option<Vec<u8>>, CardError> {
        let block = applet::ATTESTATION_BLOCK;
        let max_blocks = attestation::MAX_ATTESTATION_BYTES / block + 1;
        let mut out = Vec::new();
        for p1 in 0..max_blocks {
            let cmd = Command {
                p1: p1 as u8,
                ..Command::new(Ins::GetAttestation, &[], Some(block as u16))
            };
            let data = match self.run("GET_ATTESTATION", cmd) {
                Err(CardError::Status { status, .. })
                    if p1 == 0 && status == StatusWord::NOT_FOUND =>
                {
                    return Ok(None);
                }
                other => other?,
            };
            if data.len() > block {
                return Err(CardError::BadResponse {
                    command: "GET_ATTESTATION",
                    reason: "a block is longer than 128 bytes",
                });
            }
            let last = data.len() < block;
            out.extend_from_slice(&data);
            if last {
                return Ok(Some(out));
            }
        }
        Ok(Some(out))
    }

    /// DECIPHER (after OpenPGP's PSO:DECIPHER for ECDH): the x-coordinate of the card's
    /// key-agreement key times `point`. Zeroized when dropped.
    pub fn decipher(
        &mut self,
        point: &PublicKey,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, CardError> {
        let cmd = Command {
            p1: 0x80,
            p2: 0x86,
            ..Command::new(Ins::Decipher, point.as_bytes(), Some(32))
        };
        let data = zeroize::Zeroizing::new(self.run("DECIPHER", cmd)?);
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        if data.len() != 32 {
            return Err(CardError::BadResponse {
                command: "DECIPHER",
                reason: "shared secret is not 32 bytes",
            });
        }
        out.copy_from_slice(&data);
        Ok(out)
    }

    /// Serial, origin and public key.
    pub fn identity(&mut self) -> Result<CardIdentity, CardError> {
        let (serial, origin) = self.get_serial()?;
        let public_key = self.get_public_key()?;
        Ok(CardIdentity {
            serial,
            public_key,
            origin,
        })
    }
}
