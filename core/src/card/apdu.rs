//! Short APDUs (ISO 7816-4) as our protocol uses them, and typed status words.
//!
//! Both sides live here: the host builds [`Command`]s, the card ([`super::applet`])
//! parses them with [`Command::parse`], which never panics on hostile bytes (T25).

use std::fmt;

/// Our class byte for proprietary commands.
pub const CLA_PROPRIETARY: u8 = 0x80;

/// Instruction bytes of our protocol (see `docs/card-protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ins {
    /// ISO SELECT (CLA 00).
    Select,
    /// Sign `h` with the counter, then increment.
    SignAndIncrement,
    /// Read the counter.
    GetCounter,
    /// Read the serial number and origin counter.
    GetSerial,
    /// Read the public key.
    GetPublicKey,
    /// Read the last signature made.
    GetLastSignature,
    /// Read the key-agreement public key.
    GetAgreementKey,
    /// Read one block of the issuer's attestation certificate.
    GetAttestation,
    /// ECDH with the key-agreement key (after OpenPGP's PSO:DECIPHER).
    Decipher,
}

impl Ins {
    /// The (CLA, INS) bytes.
    pub fn bytes(self) -> (u8, u8) {
        match self {
            Ins::Select => (0x00, 0xA4),
            Ins::SignAndIncrement => (CLA_PROPRIETARY, 0x10),
            Ins::GetCounter => (CLA_PROPRIETARY, 0x12),
            Ins::GetSerial => (CLA_PROPRIETARY, 0x14),
            Ins::GetPublicKey => (CLA_PROPRIETARY, 0x16),
            Ins::GetLastSignature => (CLA_PROPRIETARY, 0x18),
            Ins::GetAgreementKey => (CLA_PROPRIETARY, 0x1A),
            Ins::GetAttestation => (CLA_PROPRIETARY, 0x1C),
            Ins::Decipher => (CLA_PROPRIETARY, 0x2A),
        }
    }
}

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (Lc bytes).
    pub data: &'a [u8],
    /// Expected response length, if any (`Some(256)` is encoded as 00).
    pub le: Option<u16>,
}

impl<'a> Command<'a> {
    /// One of our proprietary commands (P1 = P2 = 0).
    pub fn new(ins: Ins, data: &'a [u8], le: Option<u16>) -> Self {
        let (cla, ins) = ins.bytes();
        Self {
            cla,
            ins,
            p1: 0,
            p2: 0,
            data,
            le,
        }
    }

    /// SELECT by AID (P1 = 04, first or only occurrence).
    pub fn select(aid: &'a [u8]) -> Self {
        Self {
            cla: 0x00,
            ins: 0xA4,
            p1: 0x04,
            p2: 0x00,
            data: aid,
            le: None,
        }
    }

    /// Encodes as a short APDU. Data longer than 255 bytes is a programming error and truncated to none.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        if !self.data.is_empty() && self.data.len() <= 255 {
            out.push(self.data.len() as u8);
            out.extend_from_slice(self.data);
        }
        if let Some(le) = self.le {
            out.push(if le >= 256 { 0 } else { le as u8 });
        }
        out
    }

    /// Parses a short APDU (cases 1–4). Extended lengths are refused.
    pub fn parse(raw: &'a [u8]) -> Result<Self, StatusWord> {
        if raw.len() < 4 {
            return Err(StatusWord::WRONG_LENGTH);
        }
        let (cla, ins, p1, p2) = (raw[0], raw[1], raw[2], raw[3]);
        let body = &raw[4..];
        let (data, le): (&[u8], Option<u16>) = match body.len() {
            0 => (&[], None),
            1 => (&[], Some(if body[0] == 0 { 256 } else { body[0] as u16 })),
            _ => {
                let lc = body[0] as usize;
                if lc == 0 {
                    // Extended-length APDU: not part of our protocol.
                    return Err(StatusWord::WRONG_LENGTH);
                }
                let rest = &body[1..];
                if rest.len() == lc {
                    (rest, None)
                } else if rest.len() == lc + 1 {
                    let le = rest[lc];
                    (&rest[..lc], Some(if le == 0 { 256 } else { le as u16 }))
                } else {
                    return Err(StatusWord::WRONG_LENGTH);
                }
            }
        };
        Ok(Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }
}

/// A status word (SW1 SW2) returned by the card.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// 9000: success.
    pub const OK: Self = Self(0x9000);
    /// 6700: Lc or Le wrong for this command.
    pub const WRONG_LENGTH: Self = Self(0x6700);
    /// 6985: conditions not satisfied — the counter is at its maximum and will never wrap (\[0057\]).
    pub const COUNTER_EXHAUSTED: Self = Self(0x6985);
    /// 6986: command not allowed — no applet selected.
    pub const NOT_SELECTED: Self = Self(0x6986);
    /// 6A82: SELECT named an application this card does not have.
    pub const APPLET_NOT_FOUND: Self = Self(0x6A82);
    /// 6A80: the command data is wrong — DECIPHER got a point that is not on P-256.
    pub const WRONG_DATA: Self = Self(0x6A80);
    /// 6A86: P1/P2 wrong.
    pub const WRONG_P1P2: Self = Self(0x6A86);
    /// 6A88: referenced data not found — nothing signed yet.
    pub const NOT_FOUND: Self = Self(0x6A88);
    /// 6D00: instruction not supported.
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    /// 6E00: class not supported.
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    /// 6581: memory failure — the card could not persist its state; nothing changed.
    pub const MEMORY_FAILURE: Self = Self(0x6581);
    /// 6F00: no precise diagnosis.
    pub const UNKNOWN: Self = Self(0x6F00);

    /// From SW1, SW2.
    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        Self(u16::from_be_bytes([sw1, sw2]))
    }

    /// SW1, SW2.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    fn meaning(self) -> &'static str {
        match self {
            Self::OK => "success",
            Self::WRONG_LENGTH => "wrong length",
            Self::COUNTER_EXHAUSTED => "the card's counter is at its maximum: the card is used up",
            Self::NOT_SELECTED => "no application selected",
            Self::APPLET_NOT_FOUND => "the card has no Tally application",
            Self::WRONG_P1P2 => "wrong parameters",
            Self::WRONG_DATA => "wrong data",
            Self::NOT_FOUND => "no such data",
            Self::INS_NOT_SUPPORTED => "instruction not supported",
            Self::CLA_NOT_SUPPORTED => "class not supported",
            Self::MEMORY_FAILURE => "the card could not save its state",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusWord({:04X})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_case() {
        for cmd in [
            Command::new(Ins::GetCounter, &[], None),
            Command::new(Ins::GetCounter, &[], Some(8)),
            Command::new(Ins::SignAndIncrement, &[1; 32], None),
            Command::new(Ins::SignAndIncrement, &[1; 32], Some(64)),
            Command::new(Ins::GetLastSignature, &[], Some(256)),
        ] {
            let bytes = cmd.to_bytes();
            assert_eq!(Command::parse(&bytes).unwrap(), cmd);
        }
    }

    #[test]
    fn malformed_lengths_refused() {
        for raw in [
            &[][..],
            &[0x80],
            &[0x80, 0x10, 0, 0, 5, 1, 2],
            &[0x80, 0x10, 0, 0, 0, 0, 1],
            &[0x80, 0x10, 0, 0, 2, 1, 2, 3, 4],
        ] {
            assert_eq!(
                Command::parse(raw),
                Err(StatusWord::WRONG_LENGTH),
                "{raw:02x?}"
            );
        }
    }
}
