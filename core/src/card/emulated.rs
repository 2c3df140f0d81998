//! An emulated card: the applet of [`super::applet`] over a state file.
//!
//! **For demos and tests only.** The state (private key, serial, counter, last
//! signature) lives in one file updated atomically (temporary file, fsync, rename,
//! fsync of the folder). Deleting the file is losing the card. Restoring an old copy of
//! this file *together with* an old copy of the trail defeats the rental: only a real
//! card, whose counter nobody can roll back, closes that hole. Keyfiles may refuse
//! emulated cards for that reason.

use super::applet::{Applet, CardState};
use super::{CardBackend, CardTransaction, LastSignature, Serial, TransportError};
use crate::crypto::Signature;
use crate::fsutil::{LockGuard, atomic_write_private};
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"TALLYCRD";
const VERSION: u8 = 2;
const MAX_LABEL: usize = 256;
/// Largest attestation a state file stores. Larger than the host reads
/// ([`super::attestation::MAX_ATTESTATION_BYTES`]), so tests can present a card whose
/// attestation is too large.
pub const MAX_STATE_ATTESTATION: usize = 2048;
/// Fixed part: magic, version, serial, origin, counter, key, agreement key, has_last, h,
/// counter, sig, label length.
const FIXED: usize = 8 + 1 + 16 + 8 + 8 + 32 + 32 + 1 + 32 + 8 + 64 + 2;

/// Encodes a card state (the private keys included: the buffer zeroizes on drop).
pub fn encode_state(s: &CardState) -> Zeroizing<Vec<u8>> {
    let label = s.label.as_bytes();
    let label = &label[..label.len().min(MAX_LABEL)];
    let att = s.attestation.as_deref().unwrap_or(&[]);
    let att = &att[..att.len().min(MAX_STATE_ATTESTATION)];
    let mut out = Zeroizing::new(Vec::with_capacity(FIXED + label.len() + 3 + att.len() + 32));
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&s.serial.0);
    out.extend_from_slice(&s.origin.to_be_bytes());
    out.extend_from_slice(&s.counter.to_be_bytes());
    out.extend_from_slice(&s.key.to_bytes());
    out.extend_from_slice(&s.agreement.to_bytes());
    match &s.last {
        Some(l) => {
            out.push(1);
            out.extend_from_slice(&l.h);
            out.extend_from_slice(&l.counter.to_be_bytes());
            out.extend_from_slice(&l.signature.0);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0u8; 32 + 8 + 64]);
        }
    }
    out.extend_from_slice(&(label.len() as u16).to_be_bytes());
    out.extend_from_slice(label);
    out.push(u8::from(s.attestation.is_some()));
    out.extend_from_slice(&(att.len() as u16).to_be_bytes());
    out.extend_from_slice(att);
    let sum = Sha256::digest(&out[..]);
    out.extend_from_slice(&sum);
    out
}

/// Decodes a card state, refusing anything malformed with the reason.
pub fn decode_state(b: &[u8]) -> Result<CardState, String> {
    if b.len() < 9 + 32 {
        return Err(format!("{} bytes is not a valid card state size", b.len()));
    }
    if b.len() > FIXED + MAX_LABEL + 3 + MAX_STATE_ATTESTATION + 32 {
        return Err(format!("{} bytes is not a valid card state size", b.len()));
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if Sha256::digest(body)[..] != sum[..] {
        return Err("checksum mismatch (the file is damaged)".into());
    }
    if &body[..8] != MAGIC {
        return Err("not a Tally card state file".into());
    }
    if body[8] == 1 {
        return Err(
            "card state version 1 predates the key-agreement key and attestation: create a new card"
                .into(),
        );
    }
    if body[8] != VERSION {
        return Err(format!("unsupported card state version {}", body[8]));
    }
    if body.len() < FIXED + 3 {
        return Err(format!("{} bytes is not a valid card state size", b.len()));
    }
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&body[i..i + 8]);
        u64::from_be_bytes(a)
    };
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&body[9..25]);
    let origin = u64_at(25);
    let counter = u64_at(33);
    let key = SigningKey::from_slice(&body[41..73])
        .map_err(|_| "private key is not a valid P-256 scalar".to_string())?;
    let agreement = p256::SecretKey::from_slice(&body[73..105])
        .map_err(|_| "key-agreement key is not a valid P-256 scalar".to_string())?;
    let last = match body[105] {
        0 => None,
        1 => {
            let mut h = [0u8; 32];
            h.copy_from_slice(&body[106..138]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&body[146..210]);
            Some(LastSignature {
                h,
                counter: u64_at(138),
                signature: Signature(sig),
            })
        }
        _ => return Err("bad last-signature flag".into()),
    };
    let label_len = u16::from_be_bytes([body[210], body[211]]) as usize;
    if label_len > MAX_LABEL || body.len() < FIXED + label_len + 3 {
        return Err("label length does not match the file size".into());
    }
    let label = String::from_utf8(body[FIXED..FIXED + label_len].to_vec())
        .map_err(|_| "label is not UTF-8".to_string())?;
    let rest = &body[FIXED + label_len..];
    let att_len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
    if att_len > MAX_STATE_ATTESTATION || rest.len() != 3 + att_len {
        return Err("attestation length does not match the file size".into());
    }
    let attestation = match rest[0] {
        0 if att_len == 0 => None,
        1 => Some(rest[3..].to_vec()),
        _ => return Err("bad attestation flag".into()),
    };
    if counter < origin {
        return Err("counter is below the card's origin".into());
    }
    Ok(CardState {
        serial: Serial(serial),
        origin,
        counter,
        key,
        agreement,
        attestation,
        last,
        label,
    })
}

/// An emulated card whose state lives in one file.
#[derive(Debug, Clone)]
pub struct EmulatedCard {
    path: PathBuf,
}

impl EmulatedCard {
    /// Opens an existing card file (checked at each transaction).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TransportError> {
        let path = path.into();
        if !path.exists() {
            return Err(TransportError::NotFound(path));
        }
        Ok(Self { path })
    }

    /// Creates a new card file; refuses to overwrite an existing one.
    pub fn create(path: impl Into<PathBuf>, state: &CardState) -> Result<Self, TransportError> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let _lock = LockGuard::acquire(&path)?;
        if path.exists() {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "a card already exists at {} (delete it to lose that card)",
                    path.display()
                ),
            )));
        }
        atomic_write_private(&path, &encode_state(state))?;
        Ok(Self { path })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state (for tools and tests; the card's key stays inside `CardState`).
    pub fn load(&self) -> Result<CardState, TransportError> {
        load(&self.path)
    }
}

/// Runs one APDU against the card state at `path` under the card's lock: load, process,
/// persist atomically before answering. The virtual card served to pcscd
/// ([`super::virtual_card`]) runs every APDU through this, so it keeps the same
/// atomicity as [`EmulatedCard`] and can share a state file with it.
pub(crate) fn process_locked(
    path: &Path,
    applet: &mut Applet,
    command: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let _lock = LockGuard::acquire(path)?;
    let mut state = load(path)?;
    Ok(applet.process(&mut state, command, &mut |s| persist(path, s)))
}

/// Stores a state atomically (temporary file, fsync, rename, fsync of the folder).
fn persist(path: &Path, state: &CardState) -> std::io::Result<()> {
    atomic_write_private(path, &encode_state(state))
}

/// Refuses a state file other users may read (it holds the card's private keys): the
/// owner is told how to fix it rather than the file being silently re-permissioned.
fn check_private(path: &Path) -> Result<(), TransportError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TransportError::NotFound(path.to_path_buf()));
            }
            Err(e) => return Err(e.into()),
        };
        if mode & 0o077 != 0 {
            return Err(TransportError::BadState {
                path: path.to_path_buf(),
                reason: format!(
                    "the file holds the card's private keys but its mode is {mode:03o} \
                     (other users may read it); run `chmod 600 {}`",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

pub(crate) fn load(path: &Path) -> Result<CardState, TransportError> {
    check_private(path)?;
    let bytes = match std::fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TransportError::NotFound(path.to_path_buf()));
        }
        Err(e) => return Err(e.into()),
    };
    decode_state(&bytes).map_err(|reason| TransportError::BadState {
        path: path.to_path_buf(),
        reason,
    })
}

impl CardBackend for EmulatedCard {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>, TransportError> {
        let lock = LockGuard::acquire(&self.path)?;
        let state = load(&self.path)?;
        Ok(Box::new(EmulatedTransaction {
            path: &self.path,
            state,
            applet: Applet::new(),
            _lock: lock,
        }))
    }

    fn describe(&self) -> String {
        format!("emulated:{}", self.path.display())
    }
}

struct EmulatedTransaction<'a> {
    path: &'a Path,
    state: CardState,
    applet: Applet,
    _lock: LockGuard,
}

impl CardTransaction for EmulatedTransaction<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let path = self.path;
        Ok(self
            .applet
            .process(&mut self.state, command, &mut |s| persist(path, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_damage_is_named() {
        let s = CardState::generate(&mut rand_core::OsRng, 42, "DEMO");
        let enc = encode_state(&s);
        let back = decode_state(&enc).unwrap();
        assert_eq!(back.serial, s.serial);
        assert_eq!(back.counter, 42);
        assert_eq!(back.public_key(), s.public_key());
        assert_eq!(back.agreement_key(), s.agreement_key());
        assert_eq!(back.attestation, None);
        let mut attested = s.clone();
        attested.attestation = Some(vec![7; 300]);
        let back = decode_state(&encode_state(&attested)).unwrap();
        assert_eq!(back.attestation, Some(vec![7; 300]));
        for i in 0..enc.len() {
            let mut bad = enc.to_vec();
            bad[i] ^= 1;
            assert!(decode_state(&bad).is_err(), "flip at {i} accepted");
        }
        for n in 0..enc.len() {
            assert!(decode_state(&enc[..n]).is_err());
        }
    }

    #[test]
    fn state_files_are_private_and_shared_ones_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.state");
        let s = CardState::generate(&mut rand_core::OsRng, 0, "test");
        let card = EmulatedCard::create(&path, &s).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Every state written afterwards stays private.
        persist(&path, &s).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for bad in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = card.load().unwrap_err().to_string();
            assert!(
                e.contains("other users may read it") && e.contains("chmod 600"),
                "{e}"
            );
        }
    }
}
