//! The customer information string (CIS, \[0072\]): who may read what, under which limits.
//!
//! Binary layout (version 2, integers big-endian), then zero padding to a multiple of
//! 512 bytes so the CIS length says little about its content. The whole string is
//! encrypted (see `format.rs`) before it goes among the decoys.
//!
//! ```text
//! version          u8 = 2
//! licence id       16      random per keyfile; trail records name it ([0049])
//! document id      16      the package's
//! card serial      16
//! card public key  65      uncompressed SEC1 P-256
//! card origin      u64     first counter value of the card ([0095])
//! agreement key    65      the card's key-agreement key (uncompressed SEC1 P-256)
//! issued at        i64     Unix seconds, UTC
//! emulated card    u8      1 = an emulated (software) card is accepted
//! name             u16 length ‖ UTF-8 (1–200 bytes): the watermark name
//! wrapped key      113     the content key wrapped to the card's key-agreement key:
//!                          ephemeral P-256 key 65 ‖ AES-256-GCM(content key) 48
//! policy           u16 length ‖ canonical `tally-policy/1` text (docs/policy-format.md)
//! server           u8 0 = none, 1 = present, then:
//!   url            u16 length ‖ http(s) URL (1–512 bytes, printable ASCII)
//!   server key     65      the validation server's P-256 key
//!   online every   u16     days between required online checks, 0 = not required
//! issuers          u8 count (0–8), each: u16 length ‖ name (1–64 bytes) ‖ key 65
//! padding          zeros to a multiple of 512
//! ```

use crate::card::attestation::{IssuerPublic, MAX_ISSUER_NAME, MAX_ISSUERS};
use crate::card::{CardIdentity, Serial};
use crate::crypto::PublicKey;
use crate::package::{ContentKey, DocumentId};
use crate::policy::{Limits, MAX_POLICY_BYTES};
use crate::trail::LicenceId;
use rand_core::CryptoRngCore;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{KeyfileError, aead_open, aead_seal, derive};

/// Longest customer name (bytes).
pub const MAX_NAME_BYTES: usize = 200;
/// Longest validation-server URL (bytes).
pub const MAX_URL_BYTES: usize = 512;
/// Largest encoded CIS before encryption.
pub const MAX_CIS_BYTES: usize = 24 * 1024;
const CIS_VERSION: u8 = 2;
const PAD: usize = 512;
/// A wrapped content key: an ephemeral P-256 key (65), then 32 bytes of key and a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 65 + 48;

/// HKDF info prefix of the content-key wrap. Nothing secret is built in: the key comes
/// from ECDH with the card's key-agreement key, which only the card holds.
const WRAP_INFO: &[u8] = b"tally/content-key-wrap/v2";

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
    /// That card's key-agreement key: the content key is wrapped to it.
    pub card_agreement_key: PublicKey,
    /// The card issuers whose attestation the opening accepts (the vendor's list).
    pub issuers: Vec<IssuerPublic>,
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
    pub agreement_key: PublicKey,
    pub issuers: Vec<IssuerPublic>,
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

/// Whether `url` is `http://` or `https://`: the only servers anything is sent to (a
/// keyfile's, checked here; one a reader gives a command, by [`crate::rental::http_url`]).
pub(crate) fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn check_url(url: &str) -> Result<(), KeyfileError> {
    if url.is_empty()
        || url.len() > MAX_URL_BYTES
        || !url.bytes().all(|b| b.is_ascii_graphic())
        || !is_http(url)
    {
        return Err(KeyfileError::BadCis(
            "server URL must be http(s), printable ASCII, at most 512 bytes",
        ));
    }
    Ok(())
}

/// HKDF-SHA-256(Z, salt = ephemeral ‖ card agreement key, info = tag ‖ licence ‖
/// document ‖ serial) → AES-256-GCM key and nonce (the ephemeral key is fresh per wrap,
/// so each key–nonce pair seals one message).
fn wrap_key_material(
    shared: &[u8; 32],
    eph: &PublicKey,
    agreement_key: &PublicKey,
    licence: &LicenceId,
    document: &DocumentId,
    serial: &Serial,
) -> Zeroizing<[u8; 44]> {
    let mut salt = Vec::with_capacity(130);
    salt.extend_from_slice(eph.as_bytes());
    salt.extend_from_slice(agreement_key.as_bytes());
    let mut info = Vec::with_capacity(WRAP_INFO.len() + 48);
    info.extend_from_slice(WRAP_INFO);
    info.extend_from_slice(&licence.0);
    info.extend_from_slice(&document.0);
    info.extend_from_slice(&serial.0);
    derive(shared, &salt, &info)
}

fn wrap_aad(licence: &LicenceId, document: &DocumentId) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..16].copy_from_slice(&licence.0);
    aad[16..].copy_from_slice(&document.0);
    aad
}

/// Wraps `key` to the card's key-agreement key (ECIES: ephemeral P-256, HKDF-SHA-256,
/// AES-256-GCM). Only the card can compute the shared secret again.
pub(super) fn wrap_content_key(
    key: &ContentKey,
    cis: &Cis,
    rng: &mut impl CryptoRngCore,
) -> Result<[u8; WRAPPED_KEY_LEN], KeyfileError> {
    let eph = p256::SecretKey::random(rng);
    let eph_pub = PublicKey::from_verifying_key(&eph.public_key().into());
    let card = p256::PublicKey::from(cis.card_agreement_key.verifying_key());
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), card.as_affine());
    let mut z = Zeroizing::new([0u8; 32]);
    z.copy_from_slice(shared.raw_secret_bytes());
    let m = wrap_key_material(
        &z,
        &eph_pub,
        &cis.card_agreement_key,
        &cis.licence,
        &cis.document,
        &cis.card.serial,
    );
    let sealed = aead_seal(&m, &wrap_aad(&cis.licence, &cis.document), key.as_bytes())?;
    let mut out = [0u8; WRAPPED_KEY_LEN];
    if sealed.len() != 48 {
        return Err(KeyfileError::BadCis("wrapped key has the wrong length"));
    }
    out[..65].copy_from_slice(eph_pub.as_bytes());
    out[65..].copy_from_slice(&sealed);
    Ok(out)
}

/// The ephemeral key of a wrapped content key (the point the card is asked to DECIPHER).
pub(super) fn wrap_ephemeral(wrapped: &[u8; WRAPPED_KEY_LEN]) -> Result<PublicKey, KeyfileError> {
    PublicKey::from_sec1(&wrapped[..65]).map_err(|_| KeyfileError::ContentKeyUnwrap)
}

/// Finishes the unwrap with the card's answer `shared`; any mismatch (another card's
/// answer, edited bytes) is one opaque error.
pub(super) fn unwrap_content_key(
    wrapped: &[u8; WRAPPED_KEY_LEN],
    shared: &[u8; 32],
    parsed: &ParsedCis,
) -> Result<ContentKey, KeyfileError> {
    let eph = wrap_ephemeral(wrapped)?;
    let m = wrap_key_material(
        shared,
        &eph,
        &parsed.agreement_key,
        &parsed.licence,
        &parsed.document,
        &parsed.card.serial,
    );
    let plain = aead_open(
        &m,
        &wrap_aad(&parsed.licence, &parsed.document),
        &wrapped[65..],
    )
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
        if self.issuers.len() > MAX_ISSUERS {
            return Err(KeyfileError::BadCis(
                "at most 8 card issuers fit in a keyfile",
            ));
        }
        if !self.allow_emulated_card && self.issuers.is_empty() {
            return Err(KeyfileError::BadCis(
                "a keyfile that refuses emulated cards must name at least one card issuer",
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
    pub(super) fn encode(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Zeroizing<Vec<u8>>, KeyfileError> {
        self.check()?;
        let wrapped = wrap_content_key(&self.content_key, self, rng)?;
        let policy = self.limits.to_text();
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        out.push(CIS_VERSION);
        out.extend_from_slice(&self.licence.0);
        out.extend_from_slice(&self.document.0);
        out.extend_from_slice(&self.card.serial.0);
        out.extend_from_slice(self.card.public_key.as_bytes());
        out.extend_from_slice(&self.card.origin.to_be_bytes());
        out.extend_from_slice(self.card_agreement_key.as_bytes());
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
        out.push(self.issuers.len() as u8);
        for i in &self.issuers {
            out.extend_from_slice(&(i.name().len() as u16).to_be_bytes());
            out.extend_from_slice(i.name().as_bytes());
            out.extend_from_slice(i.key().as_bytes());
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
        let agreement_key = PublicKey::from_sec1(c.take(65, "card agreement key")?)
            .map_err(|_| KeyfileError::BadCis("card agreement key is not a P-256 point"))?;
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
        let count = usize::from(c.u8("issuer count")?);
        if count > MAX_ISSUERS {
            return Err(KeyfileError::BadCis("more than 8 card issuers"));
        }
        let mut issuers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = c.text(MAX_ISSUER_NAME, "issuer name")?;
            let key = PublicKey::from_sec1(c.take(65, "issuer key")?)
                .map_err(|_| KeyfileError::BadCis("issuer key is not a P-256 point"))?;
            issuers.push(
                IssuerPublic::new(name, key)
                    .map_err(|_| KeyfileError::BadCis("issuer name is malformed"))?,
            );
        }
        if !allow_emulated_card && issuers.is_empty() {
            return Err(KeyfileError::BadCis(
                "refuses emulated cards but names no card issuer",
            ));
        }
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
            agreement_key,
            issuers,
            customer_name,
            wrapped_key,
            limits,
            allow_emulated_card,
            server,
            issued_at,
        })
    }
}
