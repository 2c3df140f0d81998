//! Where a reader's Tally state lives (`TALLY_HOME`) and which card to use (`--card`).
//!
//! Every viewer linking core finds the same files: the emulated card at
//! `<home>/card.state`, and exactly one trail per card at `<home>/trails/<serial>.trail`.

use crate::card::emulated::EmulatedCard;
#[cfg(feature = "pcsc")]
use crate::card::pcsc::PcscCard;
use crate::card::{Card, Serial, TransportError};
use crate::crypto::PublicKey;
use std::path::{Path, PathBuf};

/// A reader's Tally folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// At `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The default emulated card.
    pub fn card_path(&self) -> PathBuf {
        self.root.join("card.state")
    }

    /// The trail of the card with this serial (one trail per card).
    pub fn trail_path(&self, serial: &Serial) -> PathBuf {
        self.root.join("trails").join(format!("{serial}.trail"))
    }

    /// Where `tally-view return` keeps the receipt of a returned licence, whatever became of
    /// it (sent to the publisher's server or not): `<home>/returns/<licence>.treceipt`.
    pub fn receipt_path(&self, licence: &crate::trail::LicenceId) -> PathBuf {
        self.returns_dir()
            .join(format!("{licence}.{}", crate::receipt::RECEIPT_EXTENSION))
    }

    /// The folder of the receipts of returned licences: `<home>/returns`.
    pub fn returns_dir(&self) -> PathBuf {
        self.root.join("returns")
    }

    /// The folder of the publishers this reader trusts: their public files,
    /// `<home>/vendors/<fingerprint>.pub` (`tally-view trust add`).
    pub fn vendors_dir(&self) -> PathBuf {
        self.root.join("vendors")
    }

    /// The trusted publishers, and a warning for each file skipped: a DEMO publisher
    /// (trusted only by a demo run that names it) or a damaged file. Every viewer reads
    /// the same list the same way.
    pub fn trusted_vendors(&self) -> (Vec<crate::vendor::VendorPublic>, Vec<String>) {
        use crate::vendor::VendorPublic;
        let (mut out, mut warnings) = (Vec::new(), Vec::new());
        let Ok(rd) = std::fs::read_dir(self.vendors_dir()) else {
            return (out, warnings);
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        {
            let read = std::fs::File::open(&p)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    use std::io::Read as _;
                    let mut b = Vec::new();
                    f.take(crate::vendor::PUBLIC_MAX_BYTES as u64 + 1)
                        .read_to_end(&mut b)
                        .map_err(|e| e.to_string())?;
                    VendorPublic::from_export(&b).map_err(|e| e.to_string())
                });
            match read {
                Ok(v) if !v.is_demo() => out.push(v),
                Ok(_) => warnings.push(format!("{} is a DEMO publisher; ignored", p.display())),
                Err(e) => warnings.push(format!("{} ignored: {e}", p.display())),
            }
        }
        (out, warnings)
    }

    /// The list of validation-server keys this reader trusts for validator and recovery
    /// records (\[0094\]): one key per line, 130 hex digits (uncompressed SEC1).
    pub fn validators_path(&self) -> PathBuf {
        self.root.join("validators")
    }

    /// The validation-server keys this reader trusts. A missing file is an empty list; a
    /// malformed one is an error naming the line, never a silently shorter list.
    pub fn trusted_validators(&self) -> Result<Vec<PublicKey>, SettingsError> {
        let path = self.validators_path();
        let Some(bytes) = read_setting(&path, MAX_VALIDATORS_FILE)? else {
            return Ok(vec![]);
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| SettingsError::Line(path.clone(), 0))?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = hex::decode(line)
                .ok()
                .and_then(|b| PublicKey::from_sec1(&b).ok())
                .ok_or_else(|| SettingsError::Line(path.clone(), i + 1))?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// Adds `key` to the trusted validation-server keys (atomically; a key already there
    /// is not added twice). Returns true when it was new.
    pub fn add_trusted_validator(&self, key: &PublicKey) -> Result<bool, SettingsError> {
        let mut keys = self.trusted_validators()?;
        if keys.contains(key) {
            return Ok(false);
        }
        keys.push(key.clone());
        let mut text = String::from(
            "# validation-server keys trusted for validator and recovery records (tally-view)\n",
        );
        for k in &keys {
            text.push_str(&hex::encode(k.as_bytes()));
            text.push('\n');
        }
        self.write_setting(&self.validators_path(), &text)?;
        Ok(true)
    }

    /// Replaces the setting file `path` (inside the home folder) with `text`, atomically.
    fn write_setting(&self, path: &Path, text: &str) -> Result<(), SettingsError> {
        let io = |e| SettingsError::Io(path.to_path_buf(), e);
        std::fs::create_dir_all(&self.root).map_err(io)?;
        crate::fsutil::atomic_write(path, text.as_bytes()).map_err(io)
    }

    /// The file naming the folder, on another medium, that holds a mirror copy of each
    /// trail (\[0062\]).
    pub fn mirror_setting_path(&self) -> PathBuf {
        self.root.join("mirror")
    }

    /// The mirror folder, if one is set. A malformed setting is an error, never "no mirror".
    pub fn mirror_dir(&self) -> Result<Option<PathBuf>, SettingsError> {
        let path = self.mirror_setting_path();
        let Some(bytes) = read_setting(&path, 4096)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| SettingsError::Mirror(path.clone()))?
            .trim_end_matches('\n');
        let dir = PathBuf::from(text);
        if !dir.is_absolute() || text.contains('\n') {
            return Err(SettingsError::Mirror(path));
        }
        Ok(Some(dir))
    }

    /// Sets (or, with `None`, clears) the mirror folder.
    pub fn set_mirror_dir(&self, dir: Option<&Path>) -> Result<(), SettingsError> {
        let path = self.mirror_setting_path();
        match dir {
            None => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(SettingsError::Io(path, e)),
            },
            Some(d) => {
                let text = d.to_str().filter(|t| d.is_absolute() && !t.contains('\n'));
                let Some(text) = text else {
                    return Err(SettingsError::Mirror(path));
                };
                self.write_setting(&path, &format!("{text}\n"))
            }
        }
    }

    /// The setting file of the automatic backup: absent or `on` — a reading session has its
    /// trail vouched for and backed up by the licence's validation server on its own —, or
    /// `off` (`tally-view backup off`).
    pub fn backup_setting_path(&self) -> PathBuf {
        self.root.join("backup")
    }

    /// Whether reading sessions back the trail up on their own (on unless the reader turned
    /// it off). Turning it off costs only speed and backup safety — the opening then
    /// checks every record not vouched for, and a lost trail comes back from an older
    /// backup — and loosens no rule. A malformed setting is an error, never a guess.
    pub fn auto_backup(&self) -> Result<bool, SettingsError> {
        let path = self.backup_setting_path();
        let Some(bytes) = read_setting(&path, 64)? else {
            return Ok(true);
        };
        match std::str::from_utf8(&bytes).map(str::trim) {
            Ok("on") => Ok(true),
            Ok("off") => Ok(false),
            _ => Err(SettingsError::Backup(path)),
        }
    }

    /// Turns the automatic backup on or off.
    pub fn set_auto_backup(&self, on: bool) -> Result<(), SettingsError> {
        let text = if on { "on\n" } else { "off\n" };
        self.write_setting(&self.backup_setting_path(), text)
    }

    /// Where the automatic backup of card `serial`'s trail notes its last attempt (read by
    /// `tally-view status`; informational only).
    pub fn backup_status_path(&self, serial: &Serial) -> PathBuf {
        self.root.join("trails").join(format!("{serial}.backup"))
    }

    /// The mirror copy of the trail of card `serial`, when a mirror folder is set.
    pub fn mirror_path(&self, serial: &Serial) -> Result<Option<PathBuf>, SettingsError> {
        Ok(self
            .mirror_dir()?
            .map(|d| d.join(format!("{serial}.trail"))))
    }
}

/// A setting file of at most `max` bytes; `None` when there is none.
fn read_setting(path: &Path, max: u64) -> Result<Option<Vec<u8>>, SettingsError> {
    match crate::fsutil::read_bounded(path, max) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SettingsError::Io(path.to_path_buf(), e)),
    }
}

/// Largest trusted-validators file read (about 7,000 keys).
const MAX_VALIDATORS_FILE: u64 = 1 << 20;

/// Why a setting of the home folder (the trusted validation servers, the mirror folder)
/// can't be read or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Reading or writing the file failed (or it is larger than 1 MiB).
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A line is not a P-256 public key in 130 hex digits (line 0: not UTF-8).
    #[error("{0}, line {1}: not a validation-server key (130 hex digits)")]
    Line(PathBuf, usize),
    /// The mirror setting is not one absolute folder path.
    #[error("{0}: not one absolute folder path (set it with `tally-view trail mirror DIR`)")]
    Mirror(PathBuf),
    /// The automatic backup setting is neither `on` nor `off`.
    #[error("{0}: expected `on` or `off` (set it with `tally-view backup on|off`)")]
    Backup(PathBuf),
}

/// Which card to talk to: `emulated`, `emulated:PATH`, `pcsc` or `pcsc:READER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardSpec {
    /// An emulated card's state file (`None`: the one in the home folder).
    Emulated(Option<PathBuf>),
    /// A card behind PC/SC (`None`: the first reader holding a Tally card).
    Pcsc(Option<String>),
}

/// Why a card spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad card `{0}`: expected emulated, emulated:PATH, pcsc or pcsc:READER")]
pub struct CardSpecError(pub String);

impl std::str::FromStr for CardSpec {
    type Err = CardSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("emulated", None) => Ok(Self::Emulated(None)),
            ("emulated", Some(p)) if !p.is_empty() => Ok(Self::Emulated(Some(PathBuf::from(p)))),
            ("pcsc", None) => Ok(Self::Pcsc(None)),
            ("pcsc", Some(r)) if !r.is_empty() => Ok(Self::Pcsc(Some(r.to_string()))),
            _ => Err(CardSpecError(s.chars().take(100).collect())),
        }
    }
}

impl Default for CardSpec {
    fn default() -> Self {
        Self::Emulated(None)
    }
}

impl CardSpec {
    /// The emulated card's state file, if this is an emulated card.
    pub fn emulated_path(&self, home: &Home) -> Option<PathBuf> {
        match self {
            Self::Emulated(p) => Some(p.clone().unwrap_or_else(|| home.card_path())),
            Self::Pcsc(_) => None,
        }
    }

    /// Connects to the card.
    pub fn open(&self, home: &Home) -> Result<Card, TransportError> {
        match self {
            Self::Emulated(_) => {
                let path = self.emulated_path(home).unwrap_or_else(|| home.card_path());
                Ok(Card::new(Box::new(EmulatedCard::open(path)?)))
            }
            #[cfg(feature = "pcsc")]
            Self::Pcsc(reader) => Ok(Card::new(Box::new(PcscCard::connect(reader.as_deref())?))),
            #[cfg(not(feature = "pcsc"))]
            Self::Pcsc(_) => Err(TransportError::NoPcscSupport),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_strictly() {
        assert_eq!("emulated".parse(), Ok(CardSpec::Emulated(None)));
        assert_eq!(
            "emulated:/x/y".parse(),
            Ok(CardSpec::Emulated(Some("/x/y".into())))
        );
        assert_eq!("pcsc".parse(), Ok(CardSpec::Pcsc(None)));
        assert_eq!(
            "pcsc:Virtual PCD 00 00".parse(),
            Ok(CardSpec::Pcsc(Some("Virtual PCD 00 00".into())))
        );
        for bad in ["", "emulated:", "pcsc:", "usb", "Emulated"] {
            assert!(bad.parse::<CardSpec>().is_err(), "{bad}");
        }
    }
}
