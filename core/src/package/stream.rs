//! Chunked AES-256-GCM (the STREAM construction, as in age).
//!
//! Chunk `i` of `n` is `AES-256-GCM(key, nonce = prefix ‖ u32 i ‖ last, aad = header hash)`
//! where `last` is 1 for the final chunk and 0 otherwise. Binding the index stops
//! reordering; the last-chunk flag stops truncation at a chunk boundary; the header
//! hash (which covers the document id and the random nonce prefix) stops splicing
//! chunks from another package or another header (T26).

use super::header::{
    HeaderFields, PackageHeader, TAG_LEN, UnsignedHeader, body_hasher, check_chunk_size,
};
use super::{CHUNK_SIZE, ContentKey, DocumentId, PackageError, Plaintext, VERSION_1};
use crate::crypto::{AEAD_TAG_LEN, Aes256Gcm};
use crate::vendor::{VendorPublic, VendorSecret};
use rand_core::CryptoRngCore;
use sha2::Digest as _;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::sync::mpsc;
use zeroize::Zeroizing;

/// What the packer states about a document.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Title shown to readers (1–512 bytes, no control characters).
    pub title: String,
    /// Number of pages (≥ 1), counted by the packer with pdfium.
    pub page_count: u32,
    /// Plaintext bytes per chunk; [`CHUNK_SIZE`] unless a test wants many small chunks.
    pub chunk_size: u32,
}

impl PackOptions {
    /// Options with the default chunk size.
    pub fn new(title: impl Into<String>, page_count: u32) -> Self {
        Self {
            title: title.into(),
            page_count,
            chunk_size: CHUNK_SIZE,
        }
    }
}

fn aead(key: &ContentKey) -> Aes256Gcm {
    Aes256Gcm::new(key.as_bytes())
}

fn nonce(prefix: &[u8; 7], index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    // Chunk counts are bounded by MAX_PLAINTEXT / MIN_CHUNK_SIZE = 2^24, so this never truncates.
    n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts `plaintext_len` bytes from `input` into a package (format version 2)
/// written to `output` from its current position, in constant memory (a few chunk
/// buffers). `progress` is called after each batch of chunks with the plaintext bytes
/// done so far. Returns the signed header and the fresh content key, which the caller
/// wraps into keyfiles and must store only encrypted.
///
/// The header signs a digest of the encrypted body, known only at the end, so the
/// header's place is written with zeros first and filled in by seeking back (hence
/// `Seek`; wrap a `Vec` in [`std::io::Cursor`]).
///
/// Reading runs on a second thread so that copying the input overlaps with encryption
/// (see `packager/benches/pack.rs`); encryption, hashing and writing stay on the
/// caller's thread.
///
/// Fails with [`PackageError::InputLength`] if `input` holds more or fewer bytes than
/// announced; the output is then incomplete and must be discarded.
pub fn seal_package<R: Read + Send, W: Write + Seek>(
    vendor: &VendorSecret,
    options: &PackOptions,
    plaintext_len: u64,
    input: R,
    mut output: W,
    rng: &mut impl CryptoRngCore,
    progress: &mut dyn FnMut(u64),
) -> Result<(PackageHeader, ContentKey), PackageError> {
    check_chunk_size(options.chunk_size)
        .map_err(|r| PackageError::Options(format!("chunk size {r}")))?;
    let key = ContentKey::generate(rng);
    let mut prefix = [0u8; 7];
    rng.fill_bytes(&mut prefix);
    let unsigned = UnsignedHeader::new(
        vendor,
        &HeaderFields {
            document_id: DocumentId::generate(rng),
            title: &options.title,
            page_count: options.page_count,
            plaintext_size: plaintext_len,
            chunk_size: options.chunk_size,
            nonce_prefix: prefix,
        },
    )?;
    let start = output.stream_position()?;
    // The header's place; written once the body digest is known.
    output.write_all(&vec![0u8; unsigned.len()])?;
    let aad = unsigned.aad();
    let mut digest = body_hasher();
    let k = aead(&key);
    let geo = Geometry {
        size: plaintext_len,
        cs: options.chunk_size as usize,
        n: plaintext_len.div_ceil(u64::from(options.chunk_size)).max(1),
        per_batch: (BATCH_BYTES / options.chunk_size as usize).max(1),
    };
    let slot = geo.cs + TAG_LEN as usize;
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch, PackageError>>(PIPELINE);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Zeroizing<Vec<u8>>>(PIPELINE + 1);
    for _ in 0..=PIPELINE {
        empty_tx
            .send(Zeroizing::new(vec![0u8; slot * geo.per_batch]))
            .expect("the receiver is alive");
    }
    std::thread::scope(|scope| -> Result<(), PackageError> {
        // Owned by this closure: on any early return they drop before the scope joins
        // the reader, which then stops instead of waiting forever.
        let (full_rx, empty_tx) = (full_rx, empty_tx);
        scope.spawn(move || read_batches(input, geo, &empty_rx, &full_tx));
        let mut done = 0u64;
        let mut next = 0u64;
        while next < geo.n {
            // A closed channel means the reader stopped after sending its error.
            let Ok(batch) = full_rx.recv() else {
                return Err(PackageError::Options("input reader stopped".into()));
            };
            let Batch {
                mut buf,
                first,
                count,
            } = batch?;
            debug_assert_eq!(first, next);
            let mut end = 0;
            for j in 0..count {
                let i = first + j as u64;
                let len = geo.len(i);
                let off = j * slot;
                let tag = k
                    .seal_in_place_separate_tag(
                        nonce(&prefix, i, i + 1 == geo.n),
                        &aad,
                        &mut buf[off..off + len],
                    )
                    .map_err(|_| PackageError::Options("chunk too large for AES-GCM".into()))?;
                buf[off + len..off + len + TAG_LEN as usize].copy_from_slice(tag.as_ref());
                end = off + len + TAG_LEN as usize;
                done += len as u64;
            }
            // Only the package's last chunk may be short, so the slots are contiguous.
            digest.update(&buf[..end]);
            output.write_all(&buf[..end])?;
            progress(done);
            next = first + count as u64;
            // The reader may already have finished; then the buffer is simply dropped.
            let _ = empty_tx.send(buf);
        }
        // The reader's last word: whether the input ended where announced.
        match full_rx.recv() {
            Ok(Err(e)) => Err(e),
            _ => Ok(()),
        }
    })?;
    let header = unsigned.sign(vendor, &digest.finalize().into())?;
    let end = output.stream_position()?;
    output.seek(SeekFrom::Start(start))?;
    output.write_all(header.as_bytes())?;
    output.seek(SeekFrom::Start(end))?;
    output.flush()?;
    Ok((header, key))
}

/// Buffers in flight between the reader thread and the encrypting thread.
const PIPELINE: usize = 2;
/// Plaintext handed over per message: big enough that thread wake-ups cost nothing
/// next to the encryption, small enough to keep memory flat.
const BATCH_BYTES: usize = 1 << 20;

#[derive(Clone, Copy)]
struct Geometry {
    size: u64,
    cs: usize,
    n: u64,
    per_batch: usize,
}

impl Geometry {
    /// Plaintext length of chunk `i`: full, except the last one.
    fn len(&self, i: u64) -> usize {
        if i + 1 == self.n {
            (self.size - (self.n - 1) * self.cs as u64) as usize
        } else {
            self.cs
        }
    }
}

/// Up to `per_batch` consecutive chunks, each in a slot of `cs + 16` bytes.
struct Batch {
    buf: Zeroizing<Vec<u8>>,
    first: u64,
    count: usize,
}

/// The reader thread: fills empty buffers with the next chunks' plaintext, then checks
/// that the input ends exactly at the announced size (sending an error if not).
fn read_batches<R: Read>(
    mut input: R,
    geo: Geometry,
    empty: &mpsc::Receiver<Zeroizing<Vec<u8>>>,
    full: &mpsc::SyncSender<Result<Batch, PackageError>>,
) {
    let slot = geo.cs + TAG_LEN as usize;
    let mut done = 0u64;
    let mut first = 0u64;
    while first < geo.n {
        let Ok(mut buf) = empty.recv() else { return };
        let count = (geo.n - first).min(geo.per_batch as u64) as usize;
        for j in 0..count {
            let len = geo.len(first + j as u64);
            if let Err(e) = input.read_exact(&mut buf[j * slot..j * slot + len]) {
                let _ = full.send(Err(match e.kind() {
                    ErrorKind::UnexpectedEof => PackageError::InputLength {
                        expected: geo.size,
                        got: done,
                    },
                    _ => PackageError::Io(e),
                }));
                return;
            }
            done += len as u64;
        }
        if full.send(Ok(Batch { buf, first, count })).is_err() {
            return;
        }
        first += count as u64;
    }
    let mut extra = [0u8; 1];
    loop {
        match input.read(&mut extra) {
            Ok(0) => return,
            Ok(_) => {
                let _ = full.send(Err(PackageError::InputLength {
                    expected: geo.size,
                    got: geo.size + 1,
                }));
                return;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = full.send(Err(PackageError::Io(e)));
                return;
            }
        }
    }
}

/// Verifies the header against `trust` and decrypts the whole package from `input`
/// into memory. For a single vendor pass `std::slice::from_ref(&vendor)`.
///
/// Header problems are reported specifically. For a version 2 package the body is then
/// read whole and checked against the digest the header signs before anything is
/// decrypted ([`PackageError::BodyLength`], [`PackageError::BodyDigest`]). What only the
/// key can tell — the wrong key, or (version 1) any change to the body — is the opaque
/// [`PackageError::Decrypt`].
pub fn open_package<R: Read>(
    mut input: R,
    trust: &[VendorPublic],
    key: &ContentKey,
) -> Result<(PackageHeader, Plaintext), PackageError> {
    let (header, _) = PackageHeader::read(&mut input, trust)?;
    let plain = read_and_decrypt(&header, &mut input, key)?;
    Ok((header, plain))
}

/// [`open_package`] over bytes already in memory; the length and (version 2) the body
/// digest are checked before any allocation.
pub fn open_package_bytes(
    bytes: &[u8],
    trust: &[VendorPublic],
    key: &ContentKey,
) -> Result<(PackageHeader, Plaintext), PackageError> {
    let mut body = bytes;
    let (header, _) = PackageHeader::read(&mut body, trust)?;
    let want = header.body_len();
    if body.len() as u64 != want {
        return Err(length_error(&header, body.len() as u64 > want));
    }
    if header.body_digest().is_some() {
        let mut h = body_hasher();
        h.update(body);
        header.check_digest(h)?;
    }
    let plain = decrypt_slice(&header, body, key)?;
    Ok((header, plain))
}

/// A body of the wrong length: named for version 2, opaque for version 1 (whose
/// documented behaviour is one error after the header).
fn length_error(header: &PackageHeader, longer: bool) -> PackageError {
    if header.version() == VERSION_1 {
        PackageError::Decrypt
    } else {
        PackageError::BodyLength {
            expected: header.body_len(),
            longer,
        }
    }
}

/// A zeroizing buffer with room for exactly the plaintext: reserved once, because
/// growing it would leave unzeroized copies behind.
fn plaintext_buffer(header: &PackageHeader) -> Result<Zeroizing<Vec<u8>>, PackageError> {
    let size = header.plaintext_size();
    let cap = usize::try_from(size).map_err(|_| PackageError::TooLarge(size))?;
    let mut out: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    out.try_reserve_exact(cap)
        .map_err(|_| PackageError::TooLarge(size))?;
    Ok(out)
}

/// Plaintext length of chunk `i` of `n`.
fn chunk_len(header: &PackageHeader, i: u64, n: u64) -> usize {
    let cs = u64::from(header.chunk_size());
    if i + 1 == n {
        (header.plaintext_size() - (n - 1) * cs) as usize
    } else {
        cs as usize
    }
}

/// Decrypts a body of the right length (checked by the caller): each chunk's ciphertext
/// is copied once, into the zeroizing output, and decrypted there in place.
fn decrypt_slice(
    header: &PackageHeader,
    body: &[u8],
    key: &ContentKey,
) -> Result<Plaintext, PackageError> {
    let mut out = plaintext_buffer(header)?;
    let aad = header.chunk_aad();
    let k = aead(key);
    let n = header.chunk_count();
    let mut at = 0usize;
    for i in 0..n {
        let len = chunk_len(header, i, n);
        let sealed = body
            .get(at..at + len + AEAD_TAG_LEN)
            .ok_or(PackageError::Decrypt)?;
        let (ct, tag) = sealed.split_at(len);
        let tag: &[u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| PackageError::Decrypt)?;
        let start = out.len();
        out.extend_from_slice(ct);
        k.open_in_place_detached(
            nonce(header.nonce_prefix(), i, i + 1 == n),
            &aad,
            &mut out[start..],
            tag,
        )
        .map_err(|_| PackageError::Decrypt)?;
        at += len + AEAD_TAG_LEN;
    }
    Ok(Plaintext(out))
}

/// Reads the body from `input`: each chunk's ciphertext straight into the zeroizing
/// output (no zero-filling first), its tag aside; then checks the length, the digest
/// (version 2), and only then decrypts every chunk in place.
fn read_and_decrypt(
    header: &PackageHeader,
    input: &mut impl Read,
    key: &ContentKey,
) -> Result<Plaintext, PackageError> {
    let mut out = plaintext_buffer(header)?;
    let n = header.chunk_count();
    let mut tags: Vec<[u8; AEAD_TAG_LEN]> = Vec::new();
    // n ≤ MAX_PLAINTEXT / MIN_CHUNK_SIZE + 1, so this is bounded by the header's checks.
    tags.try_reserve_exact(n as usize)
        .map_err(|_| PackageError::TooLarge(header.plaintext_size()))?;
    let mut digest = header.body_digest().map(|_| body_hasher());
    let short = || length_error(header, false);
    for i in 0..n {
        let len = chunk_len(header, i, n);
        let start = out.len();
        let got = input
            .by_ref()
            .take(len as u64)
            .read_to_end(&mut out)
            .map_err(PackageError::Io)?;
        if got != len {
            return Err(short());
        }
        let mut tag = [0u8; AEAD_TAG_LEN];
        input.read_exact(&mut tag).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => short(),
            _ => PackageError::Io(e),
        })?;
        if let Some(h) = digest.as_mut() {
            h.update(&out[start..]);
            h.update(tag);
        }
        tags.push(tag);
    }
    if !at_end(input)? {
        return Err(length_error(header, true));
    }
    if let Some(h) = digest {
        header.check_digest(h)?;
    }
    let aad = header.chunk_aad();
    let k = aead(key);
    let mut at = 0usize;
    for (i, tag) in tags.iter().enumerate() {
        let i = i as u64;
        let len = chunk_len(header, i, n);
        k.open_in_place_detached(
            nonce(header.nonce_prefix(), i, i + 1 == n),
            &aad,
            &mut out[at..at + len],
            tag,
        )
        .map_err(|_| PackageError::Decrypt)?;
        at += len;
    }
    Ok(Plaintext(out))
}

/// True when `input` has nothing more.
fn at_end(input: &mut impl Read) -> Result<bool, PackageError> {
    let mut extra = [0u8; 1];
    loop {
        match input.read(&mut extra) {
            Ok(0) => return Ok(true),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(PackageError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn vendor(name: &str) -> VendorSecret {
        VendorSecret::generate(name, false, &mut OsRng).unwrap()
    }

    fn pack(v: &VendorSecret, data: &[u8], cs: u32) -> (Vec<u8>, ContentKey) {
        let mut out = Vec::new();
        let opts = PackOptions {
            title: "A title".into(),
            page_count: 3,
            chunk_size: cs,
        };
        let mut calls = Vec::new();
        let (h, key) = seal_package(
            v,
            &opts,
            data.len() as u64,
            data,
            std::io::Cursor::new(&mut out),
            &mut OsRng,
            &mut |d| calls.push(d),
        )
        .unwrap();
        assert_eq!(out.len() as u64, h.package_len());
        assert_eq!(calls.last().copied(), Some(data.len() as u64));
        assert!(calls.windows(2).all(|w| w[0] < w[1]) || data.is_empty());
        let batches = h
            .chunk_count()
            .div_ceil((BATCH_BYTES as u64 / u64::from(cs)).max(1));
        assert_eq!(calls.len() as u64, batches);
        (out, key)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_every_boundary() {
        let v = vendor("V");
        let trust = [v.public().clone()];
        // The last two span several reader batches (1 MiB each).
        for n in [0, 1, 1023, 1024, 1025, 2048, 5000, 1 << 20, (3 << 20) + 5] {
            let d = data(n);
            let (pkg, key) = pack(&v, &d, 1024);
            let (h, p) = open_package_bytes(&pkg, &trust, &key).unwrap();
            assert_eq!(p.as_bytes(), &d[..], "n={n}");
            assert_eq!(h.title(), "A title");
            assert_eq!(h.page_count(), 3);
            let (_, p2) = open_package(&pkg[..], &trust, &key).unwrap();
            assert_eq!(p2.as_bytes(), &d[..]);
        }
    }

    #[test]
    fn wrong_key_and_untrusted_vendor() {
        let v = vendor("V");
        let (pkg, _) = pack(&v, &data(3000), 1024);
        let other = ContentKey::generate(&mut OsRng);
        assert!(matches!(
            open_package_bytes(&pkg, &[v.public().clone()], &other),
            Err(PackageError::Decrypt)
        ));
        let w = vendor("W");
        assert!(matches!(
            open_package_bytes(&pkg, &[w.public().clone()], &other),
            Err(PackageError::UntrustedVendor(_))
        ));
    }

    #[test]
    fn every_changed_byte_fails() {
        let v = vendor("V");
        let trust = [v.public().clone()];
        let (pkg, key) = pack(&v, &data(2100), 1024);
        for i in 0..pkg.len() {
            let mut p = pkg.clone();
            p[i] ^= 0x80;
            assert!(open_package_bytes(&p, &trust, &key).is_err(), "byte {i}");
            assert!(open_package(&p[..], &trust, &key).is_err(), "byte {i}");
        }
        for cut in 0..pkg.len() {
            assert!(
                open_package(&pkg[..cut], &trust, &key).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn input_length_mismatch_is_refused() {
        let v = vendor("V");
        let d = data(3000);
        let opts = PackOptions::new("T", 1);
        for announced in [2999u64, 3001] {
            let r = seal_package(
                &v,
                &opts,
                announced,
                &d[..],
                std::io::Cursor::new(Vec::new()),
                &mut OsRng,
                &mut |_| {},
            );
            assert!(
                matches!(r, Err(PackageError::InputLength { .. })),
                "{announced}"
            );
        }
    }

    /// A writer that fails after `left` bytes.
    struct Failing {
        left: usize,
    }
    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if b.len() > self.left {
                return Err(std::io::Error::other("disk full"));
            }
            self.left -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Failing {
        fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
            Ok(0)
        }
    }

    #[test]
    fn a_failing_writer_stops_the_reader_thread() {
        let v = vendor("V");
        let d = data(64 * 1024);
        let opts = PackOptions {
            title: "T".into(),
            page_count: 1,
            chunk_size: 1024,
        };
        for left in [0, 500, 5000, 40_000] {
            let r = seal_package(
                &v,
                &opts,
                d.len() as u64,
                &d[..],
                Failing { left },
                &mut OsRng,
                &mut |_| {},
            );
            assert!(matches!(r, Err(PackageError::Io(_))), "{left}");
        }
    }

    proptest::proptest! {
        /// Hostile bytes never panic the header parser or the decryptor (T25).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let v = VendorSecret::generate("V", false, &mut OsRng).unwrap();
            let trust = [v.public().clone()];
            let key = ContentKey::from_bytes([1; 32]);
            let _ = PackageHeader::parse_unverified(&bytes);
            let _ = PackageHeader::read_unverified(&mut &bytes[..]);
            let mut with_magic = super::super::MAGIC.to_vec();
            with_magic.push(1);
            with_magic.extend_from_slice(&bytes);
            let _ = PackageHeader::read_unverified(&mut &with_magic[..]);
            proptest::prop_assert!(open_package_bytes(&with_magic, &trust, &key).is_err());
            proptest::prop_assert!(open_package(&with_magic[..], &trust, &key).is_err());
        }
    }

    #[test]
    fn debug_hides_key_and_plaintext() {
        let k = ContentKey::from_bytes([0xab; 32]);
        assert!(!format!("{k:?}").contains("ab"));
        let p = Plaintext(Zeroizing::new(b"secret".to_vec()));
        assert_eq!(format!("{p:?}"), "Plaintext(6 bytes)");
    }
}
