//! A card's public identity: what a publisher registers and a keyfile binds.

use crate::crypto::PublicKey;

crate::id::id16!(
    /// A card's 16-byte serial number: no two cards share one (\[0098\]).
    Serial
);

/// Serial, public key and origin (the counter value the card was personalised with,
/// the *offset* of \[0095\]). Everything a verifier needs to know about a card.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CardIdentity {
    /// The serial number.
    pub serial: Serial,
    /// The card's signing key.
    pub public_key: PublicKey,
    /// The first counter value this card ever signed with; a trail must start there
    /// (or at a validator record), so that deleting a whole trail and starting afresh is seen.
    pub origin: u64,
}

/// First line of an exported card file.
pub const EXPORT_MAGIC: &str = "tally-card/1";
/// Exported card files larger than this are refused unread.
pub const EXPORT_MAX_BYTES: usize = 4096;

/// Why an exported card file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file is larger than `EXPORT_MAX_BYTES` (4 KiB).
    #[error("card file is too large ({0} bytes; at most {EXPORT_MAX_BYTES})")]
    TooLarge(usize),
    /// The file is not UTF-8 text.
    #[error("card file is not text")]
    NotText,
    /// The first line is not `tally-card/1`.
    #[error("not a Tally card file (first line must be `{EXPORT_MAGIC}`)")]
    BadMagic,
    /// A line is not `key: value`.
    #[error("card file line {line}: expected `key: value`")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A key appears twice.
    #[error("card file: `{0}` given twice")]
    Duplicate(String),
    /// An unknown key.
    #[error("card file: unknown field `{0}`")]
    UnknownField(String),
    /// A required key is missing.
    #[error("card file: missing `{0}`")]
    Missing(&'static str),
    /// A value is malformed.
    #[error("card file: bad `{field}`: {reason}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// An exported card file: what `tally-view card export` writes and `tally-pack customer
/// add` reads. Older files have no key-agreement key; a publisher cannot wrap a content
/// key to such a card and says so.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CardExport {
    /// Serial, signing key, origin.
    pub identity: CardIdentity,
    /// The key-agreement key (`agreement-key:`), if the file has one.
    pub agreement_key: Option<PublicKey>,
    /// The issuer's attestation certificate (`attestation:`, hex), if the card has one.
    /// Not interpreted here: the publisher verifies it against its accepted issuers.
    pub attestation: Option<Vec<u8>>,
    /// A free comment such as "DEMO card".
    pub label: Option<String>,
}

impl CardExport {
    /// The exported text form.
    pub fn to_text(&self) -> String {
        let mut s = self.identity.to_export(None);
        if let Some(k) = &self.agreement_key {
            s.push_str(&format!("agreement-key: {}\n", hex::encode(k.as_bytes())));
        }
        if let Some(a) = &self.attestation {
            s.push_str(&format!("attestation: {}\n", hex::encode(a)));
        }
        if let Some(l) = &self.label {
            push_label(&mut s, l);
        }
        s
    }

    /// Parses the exported text form strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdentityError> {
        parse_export(bytes)
    }
}

fn push_label(s: &mut String, l: &str) {
    let clean: String = l.chars().filter(|c| !c.is_control()).take(200).collect();
    s.push_str(&format!("label: {clean}\n"));
}

impl CardIdentity {
    /// The exported text form. `label` is a free comment such as "DEMO card".
    pub fn to_export(&self, label: Option<&str>) -> String {
        let mut s = format!(
            "{EXPORT_MAGIC}\nserial: {}\npublic-key: {}\norigin: {}\n",
            self.serial,
            hex::encode(self.public_key.as_bytes()),
            self.origin
        );
        if let Some(l) = label {
            push_label(&mut s, l);
        }
        s
    }

    /// Parses the exported text form strictly; returns the identity and the label.
    pub fn from_export(bytes: &[u8]) -> Result<(Self, Option<String>), IdentityError> {
        let e = parse_export(bytes)?;
        Ok((e.identity, e.label))
    }
}

fn parse_export(bytes: &[u8]) -> Result<CardExport, IdentityError> {
    {
        if bytes.len() > EXPORT_MAX_BYTES {
            return Err(IdentityError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::NotText)?;
        let mut lines = text.lines();
        if lines.next() != Some(EXPORT_MAGIC) {
            return Err(IdentityError::BadMagic);
        }
        let (mut serial, mut key, mut origin, mut label) = (None, None, None, None);
        let (mut agreement, mut attestation) = (None, None);
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once(": ")
                .ok_or(IdentityError::BadLine { line: i + 2 })?;
            let slot: &mut Option<String> = match k {
                "serial" => &mut serial,
                "public-key" => &mut key,
                "origin" => &mut origin,
                "label" => &mut label,
                "agreement-key" => &mut agreement,
                "attestation" => &mut attestation,
                other => {
                    return Err(IdentityError::UnknownField(
                        other.chars().take(40).collect(),
                    ));
                }
            };
            if slot.is_some() {
                return Err(IdentityError::Duplicate(k.to_string()));
            }
            *slot = Some(v.to_string());
        }
        let serial = serial.ok_or(IdentityError::Missing("serial"))?;
        let serial = Serial::from_hex(&serial).ok_or_else(|| IdentityError::BadValue {
            field: "serial",
            reason: "expected 32 hex digits".into(),
        })?;
        let key = key.ok_or(IdentityError::Missing("public-key"))?;
        let key_bytes = hex::decode(&key).map_err(|_| IdentityError::BadValue {
            field: "public-key",
            reason: "not hex".into(),
        })?;
        let public_key = PublicKey::from_sec1(&key_bytes).map_err(|e| IdentityError::BadValue {
            field: "public-key",
            reason: e.to_string(),
        })?;
        let origin = origin.ok_or(IdentityError::Missing("origin"))?;
        let origin = origin.parse::<u64>().map_err(|_| IdentityError::BadValue {
            field: "origin",
            reason: "expected a decimal u64".into(),
        })?;
        let agreement_key = match agreement {
            None => None,
            Some(k) => Some(
                hex::decode(&k)
                    .ok()
                    .and_then(|b| PublicKey::from_sec1(&b).ok())
                    .ok_or_else(|| IdentityError::BadValue {
                        field: "agreement-key",
                        reason: "expected a hex uncompressed P-256 point".into(),
                    })?,
            ),
        };
        let attestation = match attestation {
            None => None,
            Some(a) => Some(hex::decode(&a).map_err(|_| IdentityError::BadValue {
                field: "attestation",
                reason: "not hex".into(),
            })?),
        };
        Ok(CardExport {
            identity: CardIdentity {
                serial,
                public_key,
                origin,
            },
            agreement_key,
            attestation,
            label,
        })
    }
}
