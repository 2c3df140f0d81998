//! Packages: one encrypted container per document, identical for every customer (claim 30).
//!
//! A package is a vendor-signed [`PackageHeader`] followed by the document encrypted
//! with AES-256-GCM in fixed-size chunks (the STREAM construction of age): chunk `i`
//! uses the nonce `prefix ‖ i ‖ last`, and every chunk authenticates a hash of the
//! header. Truncating, reordering, dropping, duplicating or splicing chunks, or changing
//! any byte, makes decryption fail (T26). Since format version 2 the header also signs a
//! digest of the encrypted body, so anyone with the vendor's public key can check the
//! whole file ([`PackageHeader::check_body`]), and opening checks it before decrypting.
//! The layout is written down in `docs/package-format.md`.
//!
//! The content key ([`ContentKey`]) is random per document and the same for every
//! customer; keyfiles carry it wrapped (\[0064\]). Decrypted documents live only in a
//! zeroizing [`Plaintext`] buffer: nothing decrypted reaches the disk.
//!
//! Header errors are specific (a reader must know that a package comes from an
//! untrusted vendor), and so are the keyless body checks of version 2
//! ([`PackageError::BodyLength`], [`PackageError::BodyDigest`]: anyone can compute them,
//! so naming them leaks nothing). What only the content key can tell fails with one
//! opaque [`PackageError::Decrypt`] (DESIGN threat 9).

mod header;
mod stream;

pub use header::{
    BodyCheck, BodyDigest, CHUNK_SIZE, HEADER_MAX_BYTES, MAGIC, MAX_CHUNK_SIZE, MAX_PLAINTEXT,
    MAX_TITLE_BYTES, MEDIA_TYPE_PDF, MIN_CHUNK_SIZE, PackageHeader, VERSION, VERSION_1,
};
pub use stream::{PackOptions, open_package, open_package_bytes, open_package_vec, seal_package};

use rand_core::CryptoRngCore;
use std::fmt;
use zeroize::{ZeroizeOnDrop, Zeroizing};

crate::id::id16!(
    /// A document's 16-byte random identifier. Keyfiles name the document by it.
    DocumentId
);

impl DocumentId {
    /// A fresh random identifier.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }
}

/// The 32-byte AES-256-GCM key of one document. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl ZeroizeOnDrop for ContentKey {}

impl ContentKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }
    /// From raw bytes (for example after unwrapping it from a keyfile).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// From a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }
    /// The raw key, to be wrapped into a keyfile or stored encrypted. Handle with care.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(<secret>)")
    }
}

/// A decrypted document: memory only, zeroized on drop, never printed.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl ZeroizeOnDrop for Plaintext {}

impl Plaintext {
    /// The document bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True for an empty document.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

/// Why a package could not be written, read or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The file does not start with the package magic.
    #[error("not a Tally package")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported package version {0}")]
    UnsupportedVersion(u8),
    /// The header ends before its declared length.
    #[error("package header is truncated")]
    TruncatedHeader,
    /// The declared header length is outside the accepted range.
    #[error("package header length {0} is outside the accepted range")]
    HeaderLength(u32),
    /// A header field is malformed.
    #[error("package header: bad {field}: {reason}")]
    BadHeader {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The media type is not `application/pdf` (the only one this version pins, T28).
    #[error("package media type `{0}` is not supported")]
    MediaType(String),
    /// The header names a vendor that is not in the trust list.
    #[error("package is signed by an untrusted vendor (fingerprint {0})")]
    UntrustedVendor(String),
    /// The header's vendor signature does not verify: the header was edited.
    #[error("package header signature does not verify (the header was edited)")]
    BadSignature,
    /// The encrypted body is shorter or longer than the header implies (truncated, or
    /// bytes appended). Reported for version 2 packages, whose length checks are keyless;
    /// a version 1 body of the wrong length is [`PackageError::Decrypt`].
    #[error(
        "package body is {} than its header says (expected {expected} bytes): the file is damaged",
        if *longer { "longer" } else { "shorter" }
    )]
    BodyLength {
        /// The body length the header implies.
        expected: u64,
        /// True when bytes follow the body, false when it ends early.
        longer: bool,
    },
    /// The encrypted body does not match the digest the vendor signed in the header: a
    /// byte of the body was changed or the body belongs to another package.
    #[error(
        "package body does not match the digest signed in its header: the file is damaged or was changed"
    )]
    BodyDigest,
    /// The encrypted body is not intact, or the key is wrong. Deliberately opaque.
    #[error("package does not decrypt (damaged, tampered with, or the wrong key)")]
    Decrypt,
    /// While packing, the input did not have the announced length.
    #[error("input changed while packing: expected {expected} bytes, read {got}")]
    InputLength {
        /// Announced length.
        expected: u64,
        /// Bytes actually available.
        got: u64,
    },
    /// The document is too large for memory or for the format.
    #[error("document of {0} bytes is too large")]
    TooLarge(u64),
    /// Packing options are invalid (title, chunk size, page count).
    #[error("invalid package option: {0}")]
    Options(String),
    /// Reading or writing failed.
    #[error("package I/O: {0}")]
    Io(#[from] std::io::Error),
}
