//! The publisher's keys (\[0065\]): a signing key, a tracing key and a layout key.
//!
//! - The **signing key** (ECDSA P-256) signs package headers and keyfiles; viewers trust
//!   it through the public file written by [`VendorPublic::to_export`].
//! - The **tracing key** (a separate P-256 key) receives the customer identity sealed
//!   into every keyfile, so a leaked keyfile names its owner (\[0069\]). Only the vendor
//!   can open those seals.
//! - The **layout key** (32 bytes) drives the keyed, vendor-specific rule that places
//!   the customer information string among the decoys (\[0069\], \[0074\]). Viewers need it
//!   to find the string, so it is part of the public file: it hides the string from a
//!   casual reader, not from someone holding a viewer.
//!
//! The secret half is stored encrypted under the vendor password: argon2id with
//! parameters kept in the file and refused below [`KdfParams::FLOOR`] (T27), then
//! AES-256-GCM. A wrong password and a damaged file both give
//! [`VendorError::WrongPassword`]: the decryption failure is deliberately opaque.
//!
//! Secret file layout (all integers big-endian):
//! ```text
//! magic      "TALLYVSK"                         8
//! version    0x01                               1
//! m_kib      argon2id memory in KiB             4
//! t          argon2id passes                    4
//! p          argon2id lanes                     4
//! salt       random                             16
//! nonce      random AES-GCM nonce               12
//! ciphertext AES-256-GCM(plaintext), AAD = every byte above, tag appended
//! plaintext  signing scalar 32 ‖ tracing scalar 32 ‖ layout key 32 ‖ demo 0|1 ‖
//!            name length u16 ‖ name (UTF-8)
//! ```
//! No algorithm identifier is read from the file: argon2id v0x13 and AES-256-GCM are
//! pinned by the version byte (T28).

use crate::crypto::{self, PublicKey, Signature};
use p256::ecdsa::SigningKey;
use rand_core::CryptoRngCore;
use std::fmt;
use zeroize::{ZeroizeOnDrop, Zeroizing};

const SECRET_MAGIC: &[u8; 8] = b"TALLYVSK";
const SECRET_VERSION: u8 = 1;
const SECRET_HEADER_LEN: usize = 8 + 1 + 12 + 16 + 12;
const TAG_LEN: usize = 16;
/// Vendor names longer than this (in bytes) are refused.
pub const MAX_NAME_BYTES: usize = 100;
/// Secret files larger than this are refused unread.
pub const SECRET_MAX_BYTES: usize = 1024;
/// Shortest vendor password accepted when a secret file is written.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// First line of a vendor public file.
pub const PUBLIC_MAGIC: &str = "tally-vendor/1";
/// Vendor public files larger than this are refused unread.
pub const PUBLIC_MAX_BYTES: usize = 2048;

const PUBLIC_SIG_TAG: &[u8] = b"tally/vendor-public/v1";
const FINGERPRINT_TAG: &[u8] = b"tally/vendor-fingerprint/v1";

/// Why a vendor file or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorError {
    /// The password does not open the secret file (or the file's encrypted part is damaged).
    #[error("wrong vendor password (or the vendor secret file is damaged)")]
    WrongPassword,
    /// The file is larger than its format allows.
    #[error("vendor file is too large ({0} bytes)")]
    TooLarge(usize),
    /// The file does not start with the expected magic.
    #[error("not a Tally vendor file")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported vendor file version {0}")]
    UnsupportedVersion(u8),
    /// The file is shorter than its fixed part or has a wrong length.
    #[error("vendor file is truncated or has a wrong length")]
    BadLength,
    /// The stored argon2id parameters are weaker than the floor (T27), or absurdly large.
    #[error("vendor file key-derivation parameters {0} are outside the accepted range")]
    WeakKdf(String),
    /// The password is shorter than [`MIN_PASSWORD_BYTES`].
    #[error("vendor password must be at least {MIN_PASSWORD_BYTES} bytes")]
    PasswordTooShort,
    /// The vendor name is empty, too long or holds control characters.
    #[error("vendor name must be 1–{MAX_NAME_BYTES} bytes of text without control characters")]
    BadName,
    /// The decrypted content is malformed (bad key scalar, bad flag, bad name).
    #[error("vendor secret content is malformed: {0}")]
    BadContent(&'static str),
    /// The public file is not UTF-8 text.
    #[error("vendor public file is not text")]
    NotText,
    /// A line of the public file is not `key: value`, or a field is missing, repeated,
    /// unknown or out of order.
    #[error("vendor public file line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value of the public file is malformed.
    #[error("vendor public file: bad `{field}`: {reason}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The public file's self-signature does not verify: it was edited.
    #[error("vendor public file: signature does not verify (the file was edited)")]
    BadSignature,
    /// Data stored encrypted by this vendor does not decrypt (damaged, or another vendor's).
    #[error("stored vendor data does not decrypt (damaged, or written by another vendor)")]
    AtRest,
    /// The key-derivation function failed (parameters rejected by argon2).
    #[error("key derivation failed")]
    Kdf,
}

/// argon2id parameters: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl KdfParams {
    /// The floor (RFC 9106 §4, second recommended option, with one lane): 64 MiB, 3 passes.
    /// Files with weaker parameters are refused when read (T27).
    pub const FLOOR: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// The ceiling: a hostile file can't make us allocate more than 1 GiB or loop forever.
    pub const CEILING: KdfParams = KdfParams {
        m_kib: 1024 * 1024,
        t: 64,
        p: 16,
    };

    /// Parameters at or above the floor and at or below the ceiling.
    pub fn new(m_kib: u32, t: u32, p: u32) -> Result<Self, VendorError> {
        let k = KdfParams { m_kib, t, p };
        k.check(&Self::FLOOR)?;
        Ok(k)
    }

    /// Below-floor parameters for unit tests only: files written with them are refused
    /// by every production read path.
    #[cfg(test)]
    pub(crate) fn insecure_for_tests() -> Self {
        KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }

    /// Memory in KiB.
    pub fn m_kib(&self) -> u32 {
        self.m_kib
    }
    /// Passes.
    pub fn t(&self) -> u32 {
        self.t
    }
    /// Lanes.
    pub fn p(&self) -> u32 {
        self.p
    }

    fn check(&self, floor: &KdfParams) -> Result<(), VendorError> {
        let c = Self::CEILING;
        if self.m_kib < floor.m_kib
            || self.t < floor.t
            || self.p < floor.p
            || self.m_kib > c.m_kib
            || self.t > c.t
            || self.p > c.p
            // argon2 needs at least 8 KiB per lane.
            || self.m_kib < 8 * self.p
        {
            return Err(VendorError::WeakKdf(self.to_string()));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, VendorError> {
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|_| VendorError::Kdf)?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(password, salt, &mut out[..])
            .map_err(|_| VendorError::Kdf)?;
        Ok(out)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::FLOOR
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argon2id m={} KiB t={} p={}", self.m_kib, self.t, self.p)
    }
}

/// The vendor's secret keys. Zeroized on drop; `Debug` shows only public parts.
pub struct VendorSecret {
    name: String,
    demo: bool,
    signing: SigningKey,
    tracing: p256::SecretKey,
    layout_key: Zeroizing<[u8; 32]>,
    public: VendorPublic,
}

// SigningKey and SecretKey zeroize themselves on drop; the layout key is Zeroizing.
impl ZeroizeOnDrop for VendorSecret {}

impl fmt::Debug for VendorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorSecret")
            .field("name", &self.name)
            .field("demo", &self.demo)
            .field("fingerprint", &hex::encode(&self.public.fingerprint()[..8]))
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<(), VendorError> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(VendorError::BadName);
    }
    Ok(())
}

impl VendorSecret {
    /// Fresh keys for a vendor called `name`. `demo` marks a demonstration vendor
    /// (its public file says so; viewers may show it).
    pub fn generate(
        name: &str,
        demo: bool,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, VendorError> {
        check_name(name)?;
        let signing = SigningKey::random(rng);
        let tracing = p256::SecretKey::random(rng);
        let mut layout = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut layout[..]);
        Ok(Self::from_parts(
            name.to_string(),
            demo,
            signing,
            tracing,
            layout,
        ))
    }

    fn from_parts(
        name: String,
        demo: bool,
        signing: SigningKey,
        tracing: p256::SecretKey,
        layout_key: Zeroizing<[u8; 32]>,
    ) -> Self {
        let public = VendorPublic {
            name: name.clone(),
            demo,
            signing_key: PublicKey::from_verifying_key(signing.verifying_key()),
            tracing_key: PublicKey::from_verifying_key(&tracing.public_key().into()),
            layout_key: *layout_key,
        };
        Self {
            name,
            demo,
            signing,
            tracing,
            layout_key,
            public,
        }
    }

    /// The vendor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for a demonstration vendor.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// The public half.
    pub fn public(&self) -> &VendorPublic {
        &self.public
    }

    /// Signs `message` (ECDSA P-256, SHA-256, low-S).
    pub fn sign(&self, message: &[u8]) -> Signature {
        crypto::sign_low_s(&self.signing, message)
    }

    /// The layout key of the keyed CIS placement rule (\[0074\]).
    pub fn layout_key(&self) -> &[u8; 32] {
        &self.layout_key
    }

    /// The tracing private key, to open identities sealed to [`VendorPublic::tracing_key`].
    pub fn tracing_secret(&self) -> &p256::SecretKey {
        &self.tracing
    }

    /// ECDH on the tracing key: the x-coordinate shared with the holder of `peer`'s
    /// private key (an ephemeral key in a sealed identity). Feed it to a KDF, never use it raw.
    pub fn tracing_agree(&self, peer: &PublicKey) -> Zeroizing<[u8; 32]> {
        let peer = p256::PublicKey::from(peer.verifying_key());
        let shared = p256::ecdh::diffie_hellman(self.tracing.to_nonzero_scalar(), peer.as_affine());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared.raw_secret_bytes());
        out
    }

    /// A 32-byte key for storing vendor data at rest (for example content keys in the
    /// registry), derived from the signing key with HMAC-SHA-256 and bound to `purpose`.
    /// Different purposes give unrelated keys.
    pub fn storage_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let scalar = Zeroizing::new(self.signing.to_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&crypto::hmac_sha256(
            &scalar[..],
            &[b"tally/vendor-storage/v1\0", purpose.as_bytes()],
        ));
        out
    }

    /// Encrypts `plaintext` for storage by this vendor (AES-256-GCM under
    /// [`storage_key`](Self::storage_key)`(purpose)`, a random nonce, `context` as
    /// associated data). Output: nonce ‖ ciphertext ‖ tag. The registry keeps content
    /// keys this way, bound to their document id through `context`.
    pub fn encrypt_at_rest(
        &self,
        purpose: &str,
        context: &[u8],
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Vec<u8> {
        let key = self.storage_key(purpose);
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        // Sealed in place in its final buffer: the plaintext is never copied elsewhere.
        let mut out = Vec::with_capacity(12 + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = aead_key(&key)
            .seal_in_place_separate_tag(nonce, context, &mut out[12..])
            .expect("small buffers always seal");
        out.extend_from_slice(&tag);
        out
    }

    /// Opens what [`encrypt_at_rest`](Self::encrypt_at_rest) wrote with the same
    /// `purpose` and `context`; anything else fails with the opaque [`VendorError::AtRest`].
    pub fn decrypt_at_rest(
        &self,
        purpose: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VendorError> {
        if sealed.len() < 12 + TAG_LEN {
            return Err(VendorError::AtRest);
        }
        let key = self.storage_key(purpose);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&sealed[..12]);
        aead_key(&key)
            .open_to_zeroizing(nonce, context, &sealed[12..])
            .map_err(|_| VendorError::AtRest)
    }

    /// Encrypts the secret keys under `password` with argon2id `params` and AES-256-GCM.
    pub fn seal(
        &self,
        password: &[u8],
        params: KdfParams,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, VendorError> {
        if password.len() < MIN_PASSWORD_BYTES {
            return Err(VendorError::PasswordTooShort);
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(SECRET_MAX_BYTES);
        out.extend_from_slice(SECRET_MAGIC);
        out.push(SECRET_VERSION);
        out.extend_from_slice(&params.m_kib.to_be_bytes());
        out.extend_from_slice(&params.t.to_be_bytes());
        out.extend_from_slice(&params.p.to_be_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        let key = params.derive(password, &salt)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(200));
        plain.extend_from_slice(&self.signing.to_bytes());
        plain.extend_from_slice(&self.tracing.to_bytes());
        plain.extend_from_slice(&self.layout_key[..]);
        plain.push(u8::from(self.demo));
        plain.extend_from_slice(&(self.name.len() as u16).to_be_bytes());
        plain.extend_from_slice(self.name.as_bytes());
        // Sealed in place at the end of `out` (whose capacity covers it): the plaintext
        // is copied only into `plain`, which is zeroized on drop.
        let header_len = out.len();
        out.reserve_exact(plain.len() + TAG_LEN);
        out.extend_from_slice(&plain);
        let (aad, body) = out.split_at_mut(header_len);
        let tag = aead_key(&key)
            .seal_in_place_separate_tag(nonce, aad, body)
            .map_err(|_| VendorError::Kdf)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a secret file written by [`seal`](Self::seal). Refuses parameters below
    /// [`KdfParams::FLOOR`] before deriving anything.
    pub fn open(bytes: &[u8], password: &[u8]) -> Result<Self, VendorError> {
        Self::open_with_floor(bytes, password, &KdfParams::FLOOR)
    }

    /// Reads a secret file from `reader` (at most [`SECRET_MAX_BYTES`]) and opens it.
    pub fn read_from(reader: impl std::io::Read, password: &[u8]) -> Result<Self, VendorError> {
        let bytes = read_capped(reader, SECRET_MAX_BYTES)?;
        Self::open(&bytes, password)
    }

    /// The stored parameters of a secret file, without the password (for `inspect`).
    pub fn peek_params(bytes: &[u8]) -> Result<KdfParams, VendorError> {
        parse_secret_header(bytes).map(|h| h.0)
    }

    fn open_with_floor(
        bytes: &[u8],
        password: &[u8],
        floor: &KdfParams,
    ) -> Result<Self, VendorError> {
        let (params, salt, nonce) = parse_secret_header(bytes)?;
        params.check(floor)?;
        let key = params.derive(password, &salt)?;
        let aead = aead_key(&key);
        let plain = aead
            .open_to_zeroizing(
                nonce,
                &bytes[..SECRET_HEADER_LEN],
                &bytes[SECRET_HEADER_LEN..],
            )
            .map_err(|_| VendorError::WrongPassword)?;
        parse_plaintext(&plain)
    }
}

fn aead_key(key: &[u8; 32]) -> crate::crypto::Aes256Gcm {
    crate::crypto::Aes256Gcm::new(key)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn parse_secret_header(bytes: &[u8]) -> Result<(KdfParams, [u8; 16], [u8; 12]), VendorError> {
    if bytes.len() > SECRET_MAX_BYTES {
        return Err(VendorError::TooLarge(bytes.len()));
    }
    if bytes.len() < 8 || &bytes[..8] != SECRET_MAGIC {
        return Err(VendorError::BadMagic);
    }
    if bytes.len() < 9 {
        return Err(VendorError::BadLength);
    }
    if bytes[8] != SECRET_VERSION {
        return Err(VendorError::UnsupportedVersion(bytes[8]));
    }
    let min = SECRET_HEADER_LEN + 32 * 3 + 1 + 2 + 1 + TAG_LEN;
    let max = SECRET_HEADER_LEN + 32 * 3 + 1 + 2 + MAX_NAME_BYTES + TAG_LEN;
    if bytes.len() < min || bytes.len() > max {
        return Err(VendorError::BadLength);
    }
    let params = KdfParams {
        m_kib: be32(&bytes[9..]),
        t: be32(&bytes[13..]),
        p: be32(&bytes[17..]),
    };
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[21..37]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&bytes[37..49]);
    Ok((params, salt, nonce))
}

fn parse_plaintext(p: &[u8]) -> Result<VendorSecret, VendorError> {
    if p.len() < 99 {
        return Err(VendorError::BadContent("too short"));
    }
    let signing = SigningKey::from_slice(&p[0..32])
        .map_err(|_| VendorError::BadContent("signing key is not a P-256 scalar"))?;
    let tracing = p256::SecretKey::from_slice(&p[32..64])
        .map_err(|_| VendorError::BadContent("tracing key is not a P-256 scalar"))?;
    let mut layout = Zeroizing::new([0u8; 32]);
    layout.copy_from_slice(&p[64..96]);
    let demo = match p[96] {
        0 => false,
        1 => true,
        _ => return Err(VendorError::BadContent("demo flag is not 0 or 1")),
    };
    let len = usize::from(u16::from_be_bytes([p[97], p[98]]));
    if p.len() != 99 + len {
        return Err(VendorError::BadContent("name length does not match"));
    }
    let name =
        std::str::from_utf8(&p[99..]).map_err(|_| VendorError::BadContent("name is not UTF-8"))?;
    check_name(name).map_err(|_| VendorError::BadContent("bad name"))?;
    Ok(VendorSecret::from_parts(
        name.to_string(),
        demo,
        signing,
        tracing,
        layout,
    ))
}

fn read_capped(reader: impl std::io::Read, cap: usize) -> Result<Vec<u8>, VendorError> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|_| VendorError::BadLength)?;
    if buf.len() > cap {
        return Err(VendorError::TooLarge(buf.len()));
    }
    Ok(buf)
}

/// The vendor's public half: what viewers trust. Parsed strictly from the public file.
#[derive(Clone, PartialEq, Eq)]
pub struct VendorPublic {
    name: String,
    demo: bool,
    signing_key: PublicKey,
    tracing_key: PublicKey,
    layout_key: [u8; 32],
}

impl fmt::Debug for VendorPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorPublic")
            .field("name", &self.name)
            .field("demo", &self.demo)
            .field("fingerprint", &self.fingerprint_hex())
            .finish_non_exhaustive()
    }
}

const PUBLIC_FIELDS: [&str; 6] = [
    "name",
    "demo",
    "signing-key",
    "tracing-key",
    "layout-key",
    "signature",
];

impl VendorPublic {
    /// The vendor's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// True for a demonstration vendor.
    pub fn is_demo(&self) -> bool {
        self.demo
    }
    /// The key that signs package headers and keyfiles.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_key
    }
    /// The key customer identities are sealed to (\[0069\]).
    pub fn tracing_key(&self) -> &PublicKey {
        &self.tracing_key
    }
    /// The layout key of the keyed CIS placement rule (\[0074\]).
    pub fn layout_key(&self) -> &[u8; 32] {
        &self.layout_key
    }

    /// A digest over every public field: two public files with the same fingerprint
    /// agree on name, flag and all three keys.
    pub fn fingerprint(&self) -> crypto::Hash {
        crypto::tagged_hash(
            FINGERPRINT_TAG,
            &[
                self.name.as_bytes(),
                &[u8::from(self.demo)],
                self.signing_key.as_bytes(),
                self.tracing_key.as_bytes(),
                &self.layout_key,
            ],
        )
    }

    /// The fingerprint in lower-case hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint())
    }

    /// True only when `sig` is this vendor's valid low-S signature of `message`.
    pub fn verify(&self, message: &[u8], sig: &Signature) -> bool {
        crypto::default_verifier().verify(&self.signing_key, message, sig)
    }

    fn unsigned_text(&self) -> String {
        format!(
            "{PUBLIC_MAGIC}\nname: {}\ndemo: {}\nsigning-key: {}\ntracing-key: {}\nlayout-key: {}\n",
            self.name,
            if self.demo { "yes" } else { "no" },
            hex::encode(self.signing_key.as_bytes()),
            hex::encode(self.tracing_key.as_bytes()),
            hex::encode(self.layout_key),
        )
    }

    fn self_signed_message(text: &str) -> Vec<u8> {
        let mut m = PUBLIC_SIG_TAG.to_vec();
        m.push(0);
        m.extend_from_slice(text.as_bytes());
        m
    }

    /// The public file: text lines in a fixed order, self-signed by the signing key so
    /// an edited line is noticed.
    pub fn to_export(&self, secret: &VendorSecret) -> String {
        let text = self.unsigned_text();
        let sig = secret.sign(&Self::self_signed_message(&text));
        format!("{text}signature: {}\n", hex::encode(sig.0))
    }

    /// Parses a public file strictly: exact field order, no unknown or repeated fields,
    /// canonical encoding, a valid self-signature.
    pub fn from_export(bytes: &[u8]) -> Result<Self, VendorError> {
        if bytes.len() > PUBLIC_MAX_BYTES {
            return Err(VendorError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| VendorError::NotText)?;
        let mut lines = text.split_inclusive('\n');
        if lines.next() != Some("tally-vendor/1\n") {
            return Err(VendorError::BadMagic);
        }
        let mut values: Vec<&str> = Vec::with_capacity(PUBLIC_FIELDS.len());
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            let bad = |reason: String| VendorError::BadLine { line: n, reason };
            let line = line
                .strip_suffix('\n')
                .ok_or_else(|| bad("missing final newline".into()))?;
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| bad("expected `key: value`".into()))?;
            let want = PUBLIC_FIELDS
                .get(i)
                .ok_or_else(|| bad("unexpected line after `signature`".into()))?;
            if k != *want {
                let shown: String = k.chars().take(40).collect();
                return Err(bad(format!("expected `{want}`, found `{shown}`")));
            }
            values.push(v);
        }
        if values.len() < PUBLIC_FIELDS.len() {
            return Err(VendorError::BadLine {
                line: values.len() + 2,
                reason: format!("missing `{}`", PUBLIC_FIELDS[values.len()]),
            });
        }
        let name = values[0];
        check_name(name).map_err(|e| VendorError::BadValue {
            field: "name",
            reason: e.to_string(),
        })?;
        let demo = match values[1] {
            "yes" => true,
            "no" => false,
            _ => {
                return Err(VendorError::BadValue {
                    field: "demo",
                    reason: "expected `yes` or `no`".into(),
                });
            }
        };
        let key = |field: &'static str, v: &str| -> Result<PublicKey, VendorError> {
            let b = decode_lower_hex(v).ok_or_else(|| VendorError::BadValue {
                field,
                reason: "expected lower-case hex".into(),
            })?;
            PublicKey::from_sec1(&b).map_err(|e| VendorError::BadValue {
                field,
                reason: e.to_string(),
            })
        };
        let signing_key = key("signing-key", values[2])?;
        let tracing_key = key("tracing-key", values[3])?;
        let layout = decode_lower_hex(values[4])
            .filter(|b| b.len() == 32)
            .ok_or_else(|| VendorError::BadValue {
                field: "layout-key",
                reason: "expected 64 lower-case hex digits".into(),
            })?;
        let sig = decode_lower_hex(values[5])
            .filter(|b| b.len() == 64)
            .ok_or_else(|| VendorError::BadValue {
                field: "signature",
                reason: "expected 128 lower-case hex digits".into(),
            })?;
        let mut layout_key = [0u8; 32];
        layout_key.copy_from_slice(&layout);
        let mut s = [0u8; 64];
        s.copy_from_slice(&sig);
        if signing_key == tracing_key {
            return Err(VendorError::BadValue {
                field: "tracing-key",
                reason: "must differ from the signing key".into(),
            });
        }
        let public = VendorPublic {
            name: name.to_string(),
            demo,
            signing_key,
            tracing_key,
            layout_key,
        };
        let text = public.unsigned_text();
        if !public.verify(&Self::self_signed_message(&text), &Signature(s)) {
            return Err(VendorError::BadSignature);
        }
        Ok(public)
    }

    /// Reads a public file from `reader` (at most [`PUBLIC_MAX_BYTES`]) and parses it.
    pub fn read_from(reader: impl std::io::Read) -> Result<Self, VendorError> {
        let bytes = read_capped(reader, PUBLIC_MAX_BYTES)?;
        Self::from_export(&bytes)
    }
}

fn decode_lower_hex(s: &str) -> Option<Vec<u8>> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn vendor() -> VendorSecret {
        VendorSecret::generate("Example Press", false, &mut OsRng).unwrap()
    }

    fn open_test(bytes: &[u8], pw: &[u8]) -> Result<VendorSecret, VendorError> {
        VendorSecret::open_with_floor(bytes, pw, &KdfParams::insecure_for_tests())
    }

    #[test]
    fn seal_open_round_trip_with_test_params() {
        let v = vendor();
        let file = v
            .seal(
                b"correct horse",
                KdfParams::insecure_for_tests(),
                &mut OsRng,
            )
            .unwrap();
        let back = open_test(&file, b"correct horse").unwrap();
        assert_eq!(back.public(), v.public());
        assert_eq!(back.layout_key(), v.layout_key());
        assert_eq!(back.storage_key("x")[..], v.storage_key("x")[..]);
        assert_ne!(v.storage_key("x")[..], v.storage_key("y")[..]);
        assert_eq!(
            open_test(&file, b"wrong horse").unwrap_err(),
            VendorError::WrongPassword
        );
    }

    #[test]
    fn production_open_refuses_test_params() {
        let v = vendor();
        let file = v
            .seal(
                b"correct horse",
                KdfParams::insecure_for_tests(),
                &mut OsRng,
            )
            .unwrap();
        assert!(matches!(
            VendorSecret::open(&file, b"correct horse"),
            Err(VendorError::WeakKdf(_))
        ));
        assert!(KdfParams::new(64, 1, 1).is_err());
        assert!(KdfParams::new(65536, 2, 1).is_err());
        assert!(KdfParams::new(65535, 3, 1).is_err());
        assert!(KdfParams::new(65536, 3, 0).is_err());
        assert!(KdfParams::new(65536, 3, 17).is_err());
        assert!(KdfParams::new(2 * 1024 * 1024, 3, 1).is_err());
        assert_eq!(KdfParams::new(65536, 3, 1).unwrap(), KdfParams::FLOOR);
    }

    #[test]
    fn every_flipped_byte_fails() {
        let v = vendor();
        let file = v
            .seal(
                b"correct horse",
                KdfParams::insecure_for_tests(),
                &mut OsRng,
            )
            .unwrap();
        for i in 0..file.len() {
            let mut f = file.clone();
            f[i] ^= 0x01;
            assert!(open_test(&f, b"correct horse").is_err(), "byte {i}");
        }
        for cut in 0..file.len() {
            assert!(open_test(&file[..cut], b"correct horse").is_err());
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(open_test(&longer, b"correct horse").is_err());
    }

    #[test]
    fn short_password_and_bad_names_refused() {
        let v = vendor();
        assert_eq!(
            v.seal(b"short", KdfParams::insecure_for_tests(), &mut OsRng)
                .unwrap_err(),
            VendorError::PasswordTooShort
        );
        for bad in ["", " lead", "trail ", "a\nb", &"x".repeat(101)] {
            assert_eq!(
                VendorSecret::generate(bad, false, &mut OsRng).unwrap_err(),
                VendorError::BadName
            );
        }
    }

    #[test]
    fn at_rest_round_trip_is_bound_to_purpose_and_context() {
        let v = vendor();
        let sealed = v.encrypt_at_rest("p", b"ctx", b"content key", &mut OsRng);
        assert_eq!(
            &v.decrypt_at_rest("p", b"ctx", &sealed).unwrap()[..],
            b"content key"
        );
        assert_eq!(
            v.decrypt_at_rest("q", b"ctx", &sealed).unwrap_err(),
            VendorError::AtRest
        );
        assert_eq!(
            v.decrypt_at_rest("p", b"cty", &sealed).unwrap_err(),
            VendorError::AtRest
        );
        assert_eq!(
            vendor().decrypt_at_rest("p", b"ctx", &sealed).unwrap_err(),
            VendorError::AtRest
        );
        assert_eq!(
            v.decrypt_at_rest("p", b"ctx", &sealed[..27]).unwrap_err(),
            VendorError::AtRest
        );
    }

    proptest::proptest! {
        /// Hostile bytes never panic the parsers (T25); random secret files never open.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = VendorPublic::from_export(&bytes);
            let _ = VendorSecret::peek_params(&bytes);
            proptest::prop_assert!(VendorSecret::open(&bytes, b"password").is_err());
            let mut with_magic = SECRET_MAGIC.to_vec();
            with_magic.push(SECRET_VERSION);
            with_magic.extend_from_slice(&bytes);
            proptest::prop_assert!(open_test(&with_magic, b"password").is_err());
            let text = format!("{PUBLIC_MAGIC}\n{}", String::from_utf8_lossy(&bytes));
            proptest::prop_assert!(VendorPublic::from_export(text.as_bytes()).is_err());
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let v = vendor();
        let d = format!("{v:?}");
        assert!(!d.contains(&hex::encode(v.signing.to_bytes())));
        assert!(!d.contains(&hex::encode(v.layout_key())));
        assert!(d.contains("Example Press"));
    }

    #[test]
    fn sign_verify_and_tracing_agreement() {
        let v = vendor();
        let other = vendor();
        let sig = v.sign(b"msg");
        assert!(v.public().verify(b"msg", &sig));
        assert!(!v.public().verify(b"msh", &sig));
        assert!(!other.public().verify(b"msg", &sig));
        // ECDH with an ephemeral key agrees from both sides.
        let eph = p256::SecretKey::random(&mut OsRng);
        let eph_pub = PublicKey::from_verifying_key(&eph.public_key().into());
        let vendor_side = v.tracing_agree(&eph_pub);
        let tracing_pub = p256::PublicKey::from(v.public().tracing_key().verifying_key());
        let eph_side = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), tracing_pub.as_affine());
        assert_eq!(&vendor_side[..], &eph_side.raw_secret_bytes()[..]);
    }

    #[test]
    fn public_export_round_trips_and_is_strict() {
        let v = vendor();
        let text = v.public().to_export(&v);
        let p = VendorPublic::from_export(text.as_bytes()).unwrap();
        assert_eq!(&p, v.public());
        assert_eq!(p.fingerprint(), v.public().fingerprint());
        // Every single-character change is refused.
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            assert!(VendorPublic::from_export(&b).is_err(), "byte {i}");
        }
        // Upper-case hex is not canonical.
        let upper = text.replace(
            &hex::encode(v.public().layout_key()),
            &hex::encode_upper(v.public().layout_key()),
        );
        assert!(VendorPublic::from_export(upper.as_bytes()).is_err());
        // Another vendor's signature line.
        let w = vendor();
        let wt = w.public().to_export(&w);
        let sig_line = |t: &str| t.lines().last().unwrap().to_string();
        let spliced = text.replace(&sig_line(&text), &sig_line(&wt));
        assert_eq!(
            VendorPublic::from_export(spliced.as_bytes()).unwrap_err(),
            VendorError::BadSignature
        );
        assert!(VendorPublic::from_export(format!("{text}extra: 1\n").as_bytes()).is_err());
        assert!(VendorPublic::from_export(text.trim_end().as_bytes()).is_err());
    }
}
