//! The vendor-signed package header.
//!
//! ```text
//! magic          "TALLYPKG"                                   8
//! version        0x02 (0x01 still read)                       1
//! header length  u32, every header byte including the signature 4
//! document id    random                                       16
//! vendor         VendorPublic::fingerprint of the signer      32
//! media type     u8 length ‖ "application/pdf"                1 + 15
//! title          u16 length ‖ UTF-8, 1..=512 bytes            2 + n
//! page count     u32, ≥ 1                                     4
//! plaintext size u64                                          8
//! chunk size     u32, a power of two in 1 KiB..=1 MiB         4
//! nonce prefix   random                                       7
//! body digest    (version 2 only) SHA-256 of the encrypted body 32
//! signature      ECDSA P-256 r‖s over
//!                "tally/package-header/vN\0" ‖ every byte above 64
//! ```
//! Integers are big-endian. Version 2 signs a digest of the encrypted body
//! ([`BodyDigest`]), so the whole file can be checked with the vendor's public key
//! alone, no content key ([`PackageHeader::check_body`]). The chunks' associated data
//! is, in version 2, a hash of the header *before* the body digest (the digest depends
//! on the chunks, so the chunks cannot depend on it); in version 1 it is the hash of
//! the whole header.

use super::{DocumentId, PackageError};
use crate::crypto::{self, Hash, Signature};
use crate::vendor::{VendorPublic, VendorSecret};
use sha2::Digest as _;
use std::io::Read;

/// First bytes of every package.
pub const MAGIC: &[u8; 8] = b"TALLYPKG";
/// The format version this build writes: the header signs a digest of the body.
pub const VERSION: u8 = 2;
/// The first format version, still read: its signature covers the header only, so
/// only the content key (or a digest recorded elsewhere) vouches for its body.
pub const VERSION_1: u8 = 1;
/// Headers longer than this are refused unread.
pub const HEADER_MAX_BYTES: u32 = 1024;
/// The only media type of version 1.
pub const MEDIA_TYPE_PDF: &str = "application/pdf";
/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;
/// The default chunk size: 64 KiB.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Smallest accepted chunk size.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest accepted chunk size.
pub const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// Largest accepted document: 16 GiB.
pub const MAX_PLAINTEXT: u64 = 16 << 30;

const SIG_TAG_V1: &[u8] = b"tally/package-header/v1\0";
const SIG_TAG_V2: &[u8] = b"tally/package-header/v2\0";
/// Domain tag of the version 2 body digest.
const BODY_TAG: &[u8] = b"tally/package-body/v2\0";
/// Domain tag of the version 2 chunks' associated data.
const AAD_TAG: &[u8] = b"tally/package-chunk-aad/v2";
const FIXED_PREFIX: usize = 8 + 1 + 4;
const SIG_LEN: usize = 64;
const DIGEST_LEN: usize = 32;
/// Bytes per chunk added by the GCM tag.
pub(crate) const TAG_LEN: u64 = 16;

/// A parsed package header. Obtained unverified from [`PackageHeader::read_unverified`]
/// (for inspection) or verified against a trust list by [`PackageHeader::read`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PackageHeader {
    version: u8,
    document_id: DocumentId,
    vendor: Hash,
    title: String,
    page_count: u32,
    plaintext_size: u64,
    chunk_size: u32,
    nonce_prefix: [u8; 7],
    body_digest: Option<Hash>,
    signature: Signature,
    encoded: Vec<u8>,
}

pub(crate) struct HeaderFields<'a> {
    pub document_id: DocumentId,
    pub title: &'a str,
    pub page_count: u32,
    pub plaintext_size: u64,
    pub chunk_size: u32,
    pub nonce_prefix: [u8; 7],
}

fn check_title(title: &str) -> Result<(), String> {
    if title.is_empty() || title.len() > MAX_TITLE_BYTES {
        return Err(format!("must be 1–{MAX_TITLE_BYTES} bytes"));
    }
    if title.chars().any(char::is_control) {
        return Err("must not hold control characters".into());
    }
    Ok(())
}

pub(crate) fn check_chunk_size(cs: u32) -> Result<(), String> {
    if !cs.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&cs) {
        return Err(format!(
            "{cs} is not a power of two in {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
        ));
    }
    Ok(())
}

fn signed_message(version: u8, unsigned: &[u8]) -> Vec<u8> {
    let tag = if version == VERSION_1 {
        SIG_TAG_V1
    } else {
        SIG_TAG_V2
    };
    let mut m = Vec::with_capacity(tag.len() + unsigned.len());
    m.extend_from_slice(tag);
    m.extend_from_slice(unsigned);
    m
}

/// The digest of a version 2 body, built chunk by chunk:
/// `SHA-256(tag ‖ SHA-256(chunk_0) ‖ … ‖ SHA-256(chunk_{n−1}))`, each chunk being its
/// ciphertext and tag as stored. Hashing each chunk on its own lets a reader hash and
/// decrypt a chunk while it is in cache, and several threads share a body. One type for
/// `pack`, opening and `inspect`, so the three always agree.
#[derive(Clone)]
pub struct BodyDigest {
    outer: sha2::Sha256,
}

impl Default for BodyDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyDigest {
    /// An empty digest.
    pub fn new() -> Self {
        let mut outer = sha2::Sha256::new();
        outer.update(BODY_TAG);
        Self { outer }
    }
    /// The digest of one stored chunk (ciphertext ‖ tag).
    pub fn chunk_digest(chunk: &[u8]) -> Hash {
        sha2::Sha256::digest(chunk).into()
    }
    /// Adds the next chunk's [`chunk_digest`](Self::chunk_digest).
    pub fn push(&mut self, chunk_digest: &Hash) {
        self.outer.update(chunk_digest);
    }
    /// Adds the next stored chunk.
    pub fn chunk(&mut self, chunk: &[u8]) {
        self.push(&Self::chunk_digest(chunk));
    }
    /// The body digest.
    pub fn finish(self) -> Hash {
        self.outer.finalize().into()
    }
}

/// The associated data of a version 2 package's chunks, from the header bytes that
/// precede the body digest.
fn aad_v2(binding: &[u8]) -> Hash {
    crypto::tagged_hash(AAD_TAG, &[binding])
}

/// A version 2 header before its body digest and signature: what the chunks are
/// bound to while they are sealed.
pub(crate) struct UnsignedHeader {
    binding: Vec<u8>,
}

impl UnsignedHeader {
    /// Checks the fields and lays out the header bytes up to the body digest.
    pub(crate) fn new(vendor: &VendorSecret, f: &HeaderFields<'_>) -> Result<Self, PackageError> {
        check_title(f.title).map_err(|r| PackageError::Options(format!("title {r}")))?;
        check_chunk_size(f.chunk_size)
            .map_err(|r| PackageError::Options(format!("chunk size {r}")))?;
        if f.page_count == 0 {
            return Err(PackageError::Options(
                "page count must be at least 1".into(),
            ));
        }
        if f.plaintext_size > MAX_PLAINTEXT {
            return Err(PackageError::TooLarge(f.plaintext_size));
        }
        let fp = vendor.public().fingerprint();
        let len = FIXED_PREFIX
            + 16
            + 32
            + 1
            + MEDIA_TYPE_PDF.len()
            + 2
            + f.title.len()
            + 4
            + 8
            + 4
            + 7
            + DIGEST_LEN
            + SIG_LEN;
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&(len as u32).to_be_bytes());
        b.extend_from_slice(&f.document_id.0);
        b.extend_from_slice(&fp);
        b.push(MEDIA_TYPE_PDF.len() as u8);
        b.extend_from_slice(MEDIA_TYPE_PDF.as_bytes());
        b.extend_from_slice(&(f.title.len() as u16).to_be_bytes());
        b.extend_from_slice(f.title.as_bytes());
        b.extend_from_slice(&f.page_count.to_be_bytes());
        b.extend_from_slice(&f.plaintext_size.to_be_bytes());
        b.extend_from_slice(&f.chunk_size.to_be_bytes());
        b.extend_from_slice(&f.nonce_prefix);
        debug_assert_eq!(b.len() + DIGEST_LEN + SIG_LEN, len);
        Ok(Self { binding: b })
    }

    /// The complete header's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.binding.len() + DIGEST_LEN + SIG_LEN
    }

    /// The chunks' associated data.
    pub(crate) fn aad(&self) -> Hash {
        aad_v2(&self.binding)
    }

    /// Appends the body digest and signs everything.
    pub(crate) fn sign(
        mut self,
        vendor: &VendorSecret,
        body_digest: &Hash,
    ) -> Result<PackageHeader, PackageError> {
        self.binding.extend_from_slice(body_digest);
        let sig = vendor.sign(&signed_message(VERSION, &self.binding));
        self.binding.extend_from_slice(&sig.0);
        PackageHeader::parse_unverified(&self.binding)
    }
}

/// What [`PackageHeader::check_body`] could establish about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyCheck {
    /// Version 2: the body has the length the header implies and the digest the
    /// header signs. Together with [`PackageHeader::verify`] the whole file is vouched
    /// for by the vendor.
    Signed,
    /// Version 1: the body has the right length, but the format signs the header only;
    /// only the content key (or a digest recorded elsewhere) can vouch for the body.
    NotSigned,
}

impl PackageHeader {
    /// Parses a complete header (exactly its bytes) without checking the signature.
    pub fn parse_unverified(bytes: &[u8]) -> Result<Self, PackageError> {
        if bytes.len() < FIXED_PREFIX {
            if !MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
                return Err(PackageError::BadMagic);
            }
            return Err(PackageError::TruncatedHeader);
        }
        let (version, declared) = check_prefix(&bytes[..FIXED_PREFIX])?;
        if bytes.len() < declared as usize {
            return Err(PackageError::TruncatedHeader);
        }
        if bytes.len() > declared as usize {
            return Err(PackageError::BadHeader {
                field: "length",
                reason: "header bytes follow the signature".into(),
            });
        }
        let mut c = Cursor {
            b: bytes,
            at: FIXED_PREFIX,
        };
        let mut document_id = [0u8; 16];
        document_id.copy_from_slice(c.take(16, "document id")?);
        let mut vendor = [0u8; 32];
        vendor.copy_from_slice(c.take(32, "vendor")?);
        let mlen = c.take(1, "media type")?[0] as usize;
        let media = c.take(mlen, "media type")?;
        if media != MEDIA_TYPE_PDF.as_bytes() {
            return Err(PackageError::MediaType(
                String::from_utf8_lossy(media).chars().take(60).collect(),
            ));
        }
        let tlen = u16::from_be_bytes(c.array::<2>("title")?) as usize;
        let title =
            std::str::from_utf8(c.take(tlen, "title")?).map_err(|_| PackageError::BadHeader {
                field: "title",
                reason: "not UTF-8".into(),
            })?;
        check_title(title).map_err(|reason| PackageError::BadHeader {
            field: "title",
            reason,
        })?;
        let page_count = u32::from_be_bytes(c.array::<4>("page count")?);
        if page_count == 0 {
            return Err(PackageError::BadHeader {
                field: "page count",
                reason: "zero".into(),
            });
        }
        let plaintext_size = u64::from_be_bytes(c.array::<8>("plaintext size")?);
        if plaintext_size > MAX_PLAINTEXT {
            return Err(PackageError::BadHeader {
                field: "plaintext size",
                reason: format!("{plaintext_size} exceeds {MAX_PLAINTEXT}"),
            });
        }
        let chunk_size = u32::from_be_bytes(c.array::<4>("chunk size")?);
        check_chunk_size(chunk_size).map_err(|reason| PackageError::BadHeader {
            field: "chunk size",
            reason,
        })?;
        let nonce_prefix = c.array::<7>("nonce prefix")?;
        let body_digest = if version == VERSION_1 {
            None
        } else {
            Some(c.array::<DIGEST_LEN>("body digest")?)
        };
        let signature = Signature(c.array::<64>("signature")?);
        if c.at != bytes.len() {
            return Err(PackageError::BadHeader {
                field: "length",
                reason: format!("declared {declared}, fields end at {}", c.at),
            });
        }
        Ok(Self {
            version,
            document_id: DocumentId(document_id),
            vendor,
            title: title.to_string(),
            page_count,
            plaintext_size,
            chunk_size,
            nonce_prefix,
            body_digest,
            signature,
            encoded: bytes.to_vec(),
        })
    }

    /// Reads exactly one header from `reader` without checking the signature
    /// (for `inspect`). The reader is left at the first chunk.
    pub fn read_unverified(reader: &mut impl Read) -> Result<Self, PackageError> {
        let mut prefix = [0u8; FIXED_PREFIX];
        read_header_bytes(reader, &mut prefix)?;
        let (_, declared) = check_prefix(&prefix)?;
        let mut all = vec![0u8; declared as usize];
        all[..FIXED_PREFIX].copy_from_slice(&prefix);
        read_header_bytes(reader, &mut all[FIXED_PREFIX..])?;
        Self::parse_unverified(&all)
    }

    /// Reads a header and verifies it against `trust`; returns it with the signer.
    /// For a single vendor pass `std::slice::from_ref(&vendor)`.
    pub fn read<'t>(
        reader: &mut impl Read,
        trust: &'t [VendorPublic],
    ) -> Result<(Self, &'t VendorPublic), PackageError> {
        let h = Self::read_unverified(reader)?;
        let v = h.verify(trust)?;
        Ok((h, v))
    }

    /// Finds the signer in `trust` by fingerprint and checks the signature.
    pub fn verify<'t>(&self, trust: &'t [VendorPublic]) -> Result<&'t VendorPublic, PackageError> {
        let vendor = trust
            .iter()
            .find(|v| v.fingerprint() == self.vendor)
            .ok_or_else(|| PackageError::UntrustedVendor(hex::encode(self.vendor)))?;
        let unsigned = &self.encoded[..self.encoded.len() - SIG_LEN];
        if !vendor.verify(&signed_message(self.version, unsigned), &self.signature) {
            return Err(PackageError::BadSignature);
        }
        Ok(vendor)
    }

    /// Checks the encrypted body that follows this header in `body` (the reader just past
    /// the header) without any key: its length, and for version 2 the digest the header
    /// signs. Reads at most the expected length plus one byte, one buffer at a time.
    /// Check the signature with [`verify`](Self::verify) as well: only then is the
    /// digest the vendor's.
    ///
    /// Fails with [`PackageError::BodyLength`] or [`PackageError::BodyDigest`].
    pub fn check_body(&self, body: impl Read) -> Result<BodyCheck, PackageError> {
        let want = self.body_len();
        let mut body = body.take(want.saturating_add(1));
        let n = self.chunk_count();
        let slot = self.chunk_size as usize + TAG_LEN as usize;
        let mut digest = BodyDigest::new();
        let mut buf = vec![0u8; slot];
        let mut got = 0u64;
        for i in 0..n {
            let len = if i + 1 == n {
                (want - got) as usize
            } else {
                slot
            };
            let read = read_full(&mut body, &mut buf[..len])?;
            got += read as u64;
            if read < len {
                return Err(PackageError::BodyLength {
                    expected: want,
                    longer: false,
                });
            }
            digest.chunk(&buf[..len]);
        }
        if read_full(&mut body, &mut buf[..1])? != 0 {
            return Err(PackageError::BodyLength {
                expected: want,
                longer: true,
            });
        }
        self.check_digest(&digest.finish())
    }

    /// Compares a body digest with the signed one (version 2).
    pub(crate) fn check_digest(&self, got: &Hash) -> Result<BodyCheck, PackageError> {
        match &self.body_digest {
            None => Ok(BodyCheck::NotSigned),
            // Both digests are public: no need for a constant-time comparison.
            Some(want) if want == got => Ok(BodyCheck::Signed),
            Some(_) => Err(PackageError::BodyDigest),
        }
    }

    /// The format version: [`VERSION`] or [`VERSION_1`].
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The digest of the encrypted body the header signs (version 2), `None` for
    /// version 1.
    pub fn body_digest(&self) -> Option<&Hash> {
        self.body_digest.as_ref()
    }
    /// Length of the encrypted body: every chunk's ciphertext and tag.
    pub fn body_len(&self) -> u64 {
        self.plaintext_size + self.chunk_count() * TAG_LEN
    }
    /// The document identifier.
    pub fn document_id(&self) -> DocumentId {
        self.document_id
    }
    /// Fingerprint of the vendor that signed the header ([`VendorPublic::fingerprint`]).
    pub fn vendor_fingerprint(&self) -> &Hash {
        &self.vendor
    }
    /// The media type (always `application/pdf` in versions 1 and 2).
    pub fn media_type(&self) -> &'static str {
        MEDIA_TYPE_PDF
    }
    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// Number of pages.
    pub fn page_count(&self) -> u32 {
        self.page_count
    }
    /// Size of the decrypted document in bytes.
    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    /// Number of chunks: at least one (an empty document has one empty final chunk).
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_size
            .div_ceil(u64::from(self.chunk_size))
            .max(1)
    }
    /// The encoded header bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
    /// SHA-256 of the encoded header (signature included).
    pub fn hash(&self) -> Hash {
        crypto::sha256(&self.encoded)
    }
    /// The associated data of every chunk: for version 2 a tagged hash of the header
    /// bytes before the body digest, for version 1 [`hash`](Self::hash).
    pub(crate) fn chunk_aad(&self) -> Hash {
        match self.body_digest {
            None => self.hash(),
            Some(_) => aad_v2(&self.encoded[..self.encoded.len() - SIG_LEN - DIGEST_LEN]),
        }
    }
    /// The exact length of a package with this header.
    pub fn package_len(&self) -> u64 {
        self.encoded.len() as u64 + self.body_len()
    }
    pub(crate) fn nonce_prefix(&self) -> &[u8; 7] {
        &self.nonce_prefix
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, PackageError> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PackageError::Io(e)),
        }
    }
    Ok(at)
}

fn read_header_bytes(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), PackageError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => PackageError::TruncatedHeader,
        _ => PackageError::Io(e),
    })
}

/// Checks magic, version and the declared length; returns the version and the length.
fn check_prefix(p: &[u8]) -> Result<(u8, u32), PackageError> {
    if &p[..8] != MAGIC {
        return Err(PackageError::BadMagic);
    }
    let version = p[8];
    let digest = match version {
        VERSION_1 => 0,
        VERSION => DIGEST_LEN,
        other => return Err(PackageError::UnsupportedVersion(other)),
    };
    let declared = u32::from_be_bytes([p[9], p[10], p[11], p[12]]);
    let min = (FIXED_PREFIX + 16 + 32 + 1 + 2 + 1 + 4 + 8 + 4 + 7 + digest + SIG_LEN) as u32;
    if !(min..=HEADER_MAX_BYTES).contains(&declared) {
        return Err(PackageError::HeaderLength(declared));
    }
    Ok((version, declared))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PackageError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(PackageError::BadHeader {
                field,
                reason: "runs past the declared header length".into(),
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PackageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
}
