//! The customer information string (CIS, [0072]): who may read what, under which limits.
//!
//! Binary layout (version 1, integers big-endian), then zero padding to a multiple of
//! 512 bytes so the CIS length says little about its content. The whole string is
//! encrypted (see `format.rs`) before it goes among the decoys.
//!
//! ```text
//! version          u8 = 1
//! licence id       16      random per keyfile; trail records name it ([0049])
//! document id      16      the package's
//! card serial      16
//! card public key  65      uncompressed SEC1 P-256
//! card origin      u64     first counter value of the card ([0095])
//! issued at        i64     Unix seconds, UTC
//! emulated card    u8      1 = an emulated (software) card is accepted
//! name             u16 length ‖ UTF-8 (1–200 bytes): the watermark name
//! wrapped key      48      the content key, AES-256-GCM under the viewer wrap key
//! policy           u16 length ‖ canonical `tally-policy/1` text (docs/policy-format.md)
//! server           u8 0 = none, 1 = present, then:
//!   url            u16 length ‖ http(s) URL (1–512 bytes, printable ASCII)
//!   server key     65      the validation server's P-256 key
//!   online every   u16     days between required online checks, 0 = not required
//! padding          zeros to a multiple of 512
//! ```

use crate::card::{CardIdentity, Serial};
use crate::crypto::PublicKey;
use crate::package::{ContentKey, DocumentId};
use crate::policy::{Limits, MAX_POLICY_BYTES};
use crate::trail::LicenceId;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{KeyfileError, aead_open, aead_seal, derive};

/// Longest customer name (bytes).
pub const MAX_NAME_BYTES: usize = 200;
/// Longest validation-server URL (bytes).
pub const MAX_URL_BYTES: usize = 512;
/// Largest encoded CIS before encryption.
pub const MAX_CIS_BYTES: usize = 24 * 1024;
const CIS_VERSION: u8 = 1;
const PAD: usize = 512;
/// A wrapped content key: 32 bytes of key and a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 48;

/// The secret compiled into every Tally viewer that wraps content keys ("only a Tally
/// viewer can unwrap it"). It is in the source code and in every binary: it stops a
/// keyfile being opened by tools that are not Tally, and (with the card binding below)
/// a keyfile being used with another card; it does not stop anyone who reads this
/// constant or runs a viewer under a debugger. See `docs/keyfile-format.md`.
const VIEWER_WRAP_SECRET: [u8; 32] = [
    0x92, 0x34, 0xf8, 0x56, 0x0d, 0xce, 0x7c, 0x85, 0x0b, 0x98, 0xb9, 0x2d, 0xe2, 0x29, 0x83, 0x09,
    0xb4, 0xd1, 0x1b, 0x75, 0xea, 0xb9, 0xe5, 0x02, 0xb5, 0x0d, 0x3d, 0x4d, 0x20, 0xf5, 0xa1, 0x7e,
];
const WRAP_INFO: &[u8] = b"tally/content-key-wrap/v1";

/// The validation server a licence reports to (WO 98/33296). Filled in by the
/// validation-server issue; keyfiles without one work offline only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Where the server listens (`http://` or `https://`).
    pub url: String,
    /// The server's P-256 public key.
    pub public_key: PublicKey,
    /// Days between required online validations; `None`: never required.
    pub require_online_every_days: Option<u16>,
}

/// What the vendor puts into a keyfile. The content key is in the clear here and is
/// wrapped by [`super::Keyfile::issue`].
#[derive(Debug, Clone)]
pub struct Cis {
    /// This licence's identifier: a fresh random value per keyfile.
    pub licence: LicenceId,
    /// The package the licence opens.
    pub document: DocumentId,
    /// The only card the licence works with.
    pub card: CardIdentity,
    /// The customer's name, watermarked on every page.
    pub customer_name: String,
    /// The package's content key.
    pub content_key: ContentKey,
    /// Thresholds, dates and rights.
    pub limits: Limits,
    /// Whether an emulated (software) card is accepted.
    pub allow_emulated_card: bool,
    /// The validation server, if the licence uses one.
    pub server: Option<ServerInfo>,
    /// When the keyfile was issued (UTC, whole seconds).
    pub issued_at: OffsetDateTime,
}

/// A CIS as read from a verified keyfile: the content key still wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParsedCis {
    pub licence: LicenceId,
    pub document: DocumentId,
    pub card: CardIdentity,
    pub customer_name: String,
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
    pub limits: Limits,
    pub allow_emulated_card: bool,
    pub server: Option<ServerInfo>,
    pub issued_at: OffsetDateTime,
}

/// Checks a customer name: 1–200 bytes, no control characters, no outer spaces.
pub fn check_name(name: &str) -> Result<(), KeyfileError> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(KeyfileError::BadCis(
            "customer name must be 1–200 bytes without control characters or outer spaces",
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), KeyfileError> {
    if url.is_empty()
        || url.len() > MAX_URL_BYTES
        || !url.bytes().all(|b| b.is_ascii_graphic())
        || !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(KeyfileError::BadCis(
            "server URL must be http(s), printable ASCII, at most 512 bytes",
        ));
    }
    Ok(())
}

fn wrap_key_material(
    licence: &LicenceId,
    document: &DocumentId,
    serial: &Serial,
    card_key: &PublicKey,
) -> Zeroizing<[u8; 44]> {
    let mut info = Vec::with_capacity(WRAP_INFO.len() + 16 + 65 + 16);
    info.extend_from_slice(WRAP_INFO);
    info.extend_from_slice(&serial.0);
    info.extend_from_slice(card_key.as_bytes());
    info.extend_from_slice(&document.0);
    derive(&VIEWER_WRAP_SECRET, &licence.0, &info)
}

fn wrap_aad(licence: &LicenceId, document: &DocumentId) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..16].copy_from_slice(&licence.0);
    aad[16..].copy_from_slice(&document.0);
    aad
}

/// Wraps `key` for one licence, document and card.
pub(super) fn wrap_content_key(
    key: &ContentKey,
    licence: &LicenceId,
    document: &DocumentId,
    card: &CardIdentity,
) -> Result<[u8; WRAPPED_KEY_LEN], KeyfileError> {
    let m = wrap_key_material(licence, document, &card.serial, &card.public_key);
    let out = aead_seal(&m, &wrap_aad(licence, document), key.as_bytes())?;
    out.try_into()
        .map_err(|_| KeyfileError::BadCis("wrapped key has the wrong length"))
}

/// Unwraps a content key; any mismatch (other card, edited bytes) is one opaque error.
pub(super) fn unwrap_content_key(
    wrapped: &[u8; WRAPPED_KEY_LEN],
    licence: &LicenceId,
    document: &DocumentId,
    card: &CardIdentity,
) -> Result<ContentKey, KeyfileError> {
    let m = wrap_key_material(licence, document, &card.serial, &card.public_key);
    let plain = aead_open(&m, &wrap_aad(licence, document), wrapped)
        .map_err(|_| KeyfileError::ContentKeyUnwrap)?;
    ContentKey::from_slice(&plain).ok_or(KeyfileError::ContentKeyUnwrap)
}

impl Cis {
    /// Checks every field a keyfile will carry.
    pub fn check(&self) -> Result<(), KeyfileError> {
        check_name(&self.customer_name)?;
        self.limits.check().map_err(KeyfileError::Policy)?;
        if self.issued_at.offset() != time::UtcOffset::UTC || self.issued_at.nanosecond() != 0 {
            return Err(KeyfileError::BadCis(
                "issued-at must be UTC with whole seconds",
            ));
        }
        if let Some(s) = &self.server {
            check_url(&s.url)?;
            if s.require_online_every_days == Some(0) {
                return Err(KeyfileError::BadCis(
                    "require-online-every-days must be at least 1 (or absent)",
                ));
            }
        }
        Ok(())
    }

    /// The binary form with the content key wrapped, padded to a multiple of 512 bytes.
    pub(super) fn encode(&self) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
        self.check()?;
        let wrapped =
            wrap_content_key(&self.content_key, &self.licence, &self.document, &self.card)?;
        let policy = self.limits.to_text();
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        out.push(CIS_VERSION);
        out.extend_from_slice(&self.licence.0);
        out.extend_from_slice(&self.document.0);
        out.extend_from_slice(&self.card.serial.0);
        out.extend_from_slice(self.card.public_key.as_bytes());
        out.extend_from_slice(&self.card.origin.to_be_bytes());
        out.extend_from_slice(&self.issued_at.unix_timestamp().to_be_bytes());
        out.push(u8::from(self.allow_emulated_card));
        out.extend_from_slice(&(self.customer_name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.customer_name.as_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&(policy.len() as u16).to_be_bytes());
        out.extend_from_slice(policy.as_bytes());
        match &self.server {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&(s.url.len() as u16).to_be_bytes());
                out.extend_from_slice(s.url.as_bytes());
                out.extend_from_slice(s.public_key.as_bytes());
                out.extend_from_slice(&s.require_online_every_days.unwrap_or(0).to_be_bytes());
            }
        }
        let padded = out.len().div_ceil(PAD) * PAD;
        out.resize(padded, 0);
        if out.len() > MAX_CIS_BYTES {
            return Err(KeyfileError::BadCis("customer information string too long"));
        }
        Ok(out)
    }
}

/// A bounds-checked cursor.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KeyfileError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(KeyfileError::BadCis(what))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], KeyfileError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, KeyfileError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, KeyfileError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, KeyfileError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(KeyfileError::BadCis(what)),
        }
    }
    fn text(&mut self, max: usize, what: &'static str) -> Result<&'a str, KeyfileError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(KeyfileError::BadCis(what));
        }
        std::str::from_utf8(self.take(n, what)?).map_err(|_| KeyfileError::BadCis(what))
    }
}

impl ParsedCis {
    /// Parses the decrypted binary form strictly (padding included).
    pub(super) fn parse(b: &[u8]) -> Result<Self, KeyfileError> {
        if b.is_empty() || !b.len().is_multiple_of(PAD) || b.len() > MAX_CIS_BYTES {
            return Err(KeyfileError::BadCis(
                "length is not a multiple of 512 within bounds",
            ));
        }
        let mut c = Cursor { b, pos: 0 };
        let v = c.u8("version")?;
        if v != CIS_VERSION {
            return Err(KeyfileError::UnsupportedVersion(v));
        }
        let licence = LicenceId(c.array("licence id")?);
        let document = DocumentId(c.array("document id")?);
        let serial = Serial(c.array("card serial")?);
        let public_key = PublicKey::from_sec1(c.take(65, "card public key")?)
            .map_err(|_| KeyfileError::BadCis("card public key is not a P-256 point"))?;
        let origin = u64::from_be_bytes(c.array("card origin")?);
        let issued = i64::from_be_bytes(c.array("issued at")?);
        let issued_at = OffsetDateTime::from_unix_timestamp(issued)
            .map_err(|_| KeyfileError::BadCis("issued at is out of range"))?;
        let allow_emulated_card = c.flag("emulated-card flag must be 0 or 1")?;
        let customer_name = c.text(MAX_NAME_BYTES, "customer name")?.to_string();
        check_name(&customer_name)?;
        let wrapped_key = c.array("wrapped content key")?;
        let policy = c.text(MAX_POLICY_BYTES, "policy")?;
        let limits = Limits::parse_canonical(policy.as_bytes()).map_err(KeyfileError::Policy)?;
        let server = if c.flag("server flag must be 0 or 1")? {
            let url = c.text(MAX_URL_BYTES, "server URL")?.to_string();
            check_url(&url)?;
            let public_key = PublicKey::from_sec1(c.take(65, "server public key")?)
                .map_err(|_| KeyfileError::BadCis("server public key is not a P-256 point"))?;
            let days = c.u16("online interval")?;
            Some(ServerInfo {
                url,
                public_key,
                require_online_every_days: (days != 0).then_some(days),
            })
        } else {
            None
        };
        let rest = &b[c.pos..];
        if rest.len() >= PAD || rest.iter().any(|&x| x != 0) {
            return Err(KeyfileError::BadCis(
                "padding is not zeros up to the next 512 bytes",
            ));
        }
        Ok(Self {
            licence,
            document,
            card: CardIdentity {
                serial,
                public_key,
                origin,
            },
            customer_name,
            wrapped_key,
            limits,
            allow_emulated_card,
            server,
            issued_at,
        })
    }
}
