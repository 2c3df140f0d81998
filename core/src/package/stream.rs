//! Chunked AES-256-GCM (the STREAM construction, as in age).
//!
//! Chunk `i` of `n` is `AES-256-GCM(key, nonce = prefix ‖ u32 i ‖ last, aad = header hash)`
//! where `last` is 1 for the final chunk and 0 otherwise. Binding the index stops
//! reordering; the last-chunk flag stops truncation at a chunk boundary; the header
//! hash (which covers the document id and the random nonce prefix) stops splicing
//! chunks from another package or another header (T26).

use super::header::{
    BodyDigest, HeaderFields, PackageHeader, TAG_LEN, UnsignedHeader, check_chunk_size,
};
use super::{CHUNK_SIZE, ContentKey, DocumentId, PackageError, Plaintext, VERSION_1};
use crate::crypto::{AEAD_TAG_LEN, Aes256Gcm, Hash};
use crate::vendor::{VendorPublic, VendorSecret};
use rand_core::CryptoRngCore;
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
    let mut digest = BodyDigest::new();
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
                digest.chunk(&buf[off..end]);
                done += len as u64;
            }
            // Only the package's last chunk may be short, so the slots are contiguous.
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
    let header = unsigned.sign(vendor, &digest.finish())?;
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
/// Header problems are reported specifically. The body is read whole into a zeroizing
/// buffer and decrypted there in place ([`open_package_vec`]). For a version 2 package
/// a body of the wrong length or one that does not match the digest the header signs is
/// [`PackageError::BodyLength`] or [`PackageError::BodyDigest`], whatever the key. What
/// only the key can tell — the wrong key, or (version 1) any change to the body — is the
/// opaque [`PackageError::Decrypt`].
pub fn open_package<R: Read>(
    mut input: R,
    trust: &[VendorPublic],
    key: &ContentKey,
) -> Result<(PackageHeader, Plaintext), PackageError> {
    let (header, _) = PackageHeader::read(&mut input, trust)?;
    let want = header.body_len();
    let mut buf = body_buffer(&header)?;
    let got = input
        .by_ref()
        .take(want)
        .read_to_end(&mut buf)
        .map_err(PackageError::Io)?;
    if (got as u64) < want {
        return Err(length_error(&header, false));
    }
    if !at_end(&mut input)? {
        return Err(length_error(&header, true));
    }
    let plain = decrypt_in_place(&header, buf, 0, key)?;
    Ok((header, plain))
}

/// [`open_package`] over bytes already in memory: the header is verified and the length
/// checked before anything is allocated; the body is then copied once into a zeroizing
/// buffer and decrypted there. A caller that owns the bytes saves the copy with
/// [`open_package_vec`].
pub fn open_package_bytes(
    bytes: &[u8],
    trust: &[VendorPublic],
    key: &ContentKey,
) -> Result<(PackageHeader, Plaintext), PackageError> {
    let mut rest = bytes;
    let (header, _) = PackageHeader::read(&mut rest, trust)?;
    check_len(&header, rest.len())?;
    let mut buf = body_buffer(&header)?;
    buf.extend_from_slice(rest);
    let plain = decrypt_in_place(&header, buf, 0, key)?;
    Ok((header, plain))
}

/// [`open_package`] over a package the caller has read into memory (the viewer does):
/// the buffer is taken over, wrapped so that it is zeroized when dropped, and decrypted
/// in place, so the plaintext takes no new memory and no copy of the body is made.
pub fn open_package_vec(
    bytes: Vec<u8>,
    trust: &[VendorPublic],
    key: &ContentKey,
) -> Result<(PackageHeader, Plaintext), PackageError> {
    let buf = Zeroizing::new(bytes);
    let (header, _) = PackageHeader::read(&mut &buf[..], trust)?;
    let off = header.as_bytes().len();
    check_len(&header, buf.len() - off)?;
    let plain = decrypt_in_place(&header, buf, off, key)?;
    Ok((header, plain))
}

/// A body of `len` bytes has the length the header implies.
fn check_len(header: &PackageHeader, len: usize) -> Result<(), PackageError> {
    let want = header.body_len();
    if len as u64 == want {
        Ok(())
    } else {
        Err(length_error(header, len as u64 > want))
    }
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

/// A zeroizing buffer with room for exactly the body: reserved once, because growing
/// it would leave unzeroized copies of what it holds behind.
fn body_buffer(header: &PackageHeader) -> Result<Zeroizing<Vec<u8>>, PackageError> {
    let len = header.body_len();
    let cap = usize::try_from(len).map_err(|_| PackageError::TooLarge(len))?;
    let mut out: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    out.try_reserve_exact(cap)
        .map_err(|_| PackageError::TooLarge(header.plaintext_size()))?;
    Ok(out)
}

/// Bodies at least this large are split between two threads (below it, starting a
/// thread costs more than it saves).
const PARALLEL_FROM: usize = 1 << 20;

/// Decrypts the body held in `buf[off..]` (its length already checked) in place and
/// returns the plaintext in the same buffer, moved to its start.
///
/// Each chunk is hashed (version 2) and then decrypted while it is in cache; a large
/// body is split at a chunk boundary between this thread and a second one. The
/// plaintext is returned only when the body digest matches and every chunk's tag
/// verified; a digest mismatch is reported before any decryption failure, as if the
/// whole body had been checked first. On any failure `buf`, which may hold some
/// plaintext, is zeroized as it drops.
fn decrypt_in_place(
    header: &PackageHeader,
    mut buf: Zeroizing<Vec<u8>>,
    off: usize,
    key: &ContentKey,
) -> Result<Plaintext, PackageError> {
    let n = header.chunk_count();
    let cs = header.chunk_size() as usize;
    let slot = cs + AEAD_TAG_LEN;
    let aad = header.chunk_aad();
    let k = aead(key);
    let digest = header.body_digest().is_some();
    let body = &mut buf[off..];
    let half = if body.len() >= PARALLEL_FROM {
        n.div_ceil(2) as usize
    } else {
        n as usize
    };
    let (first, second) = body.split_at_mut((half * slot).min(body.len()));
    let work = |part: &mut [u8], from: u64| {
        open_chunks(part, from, n, slot, &k, header.nonce_prefix(), &aad, digest)
    };
    let (a, b) = std::thread::scope(|scope| {
        let other = (!second.is_empty()).then(|| scope.spawn(|| work(second, half as u64)));
        let a = work(first, 0);
        // A panicking worker counts as a failed chunk (fail closed).
        let b = other.map(|h| h.join().unwrap_or((Vec::new(), false)));
        (a, b)
    });
    let (mut digests, mut intact) = a;
    if let Some((d, ok)) = b {
        digests.extend(d);
        intact &= ok;
    }
    if digest {
        if digests.len() as u64 != n {
            return Err(PackageError::Decrypt);
        }
        let mut d = BodyDigest::new();
        digests.iter().for_each(|c| d.push(c));
        header.check_digest(&d.finish())?;
    }
    if !intact {
        return Err(PackageError::Decrypt);
    }
    // Move each chunk's plaintext down over the header and the tags before it.
    for i in 0..n as usize {
        let len = if i + 1 == n as usize {
            header.plaintext_size() as usize - i * cs
        } else {
            cs
        };
        let src = off + i * slot;
        buf.copy_within(src..src + len, i * cs);
    }
    buf.truncate(header.plaintext_size() as usize);
    Ok(Plaintext(buf))
}

/// Hashes (when `digest`) and opens in place the whole chunks in `part`, the first being
/// chunk `from` of `n`. Returns the chunk digests and whether every tag verified; after
/// a failed tag it only hashes, since the digest decides which error is reported.
#[allow(clippy::too_many_arguments)]
fn open_chunks(
    part: &mut [u8],
    from: u64,
    n: u64,
    slot: usize,
    k: &Aes256Gcm,
    prefix: &[u8; 7],
    aad: &Hash,
    digest: bool,
) -> (Vec<Hash>, bool) {
    let mut digests = Vec::with_capacity(if digest { part.len().div_ceil(slot) } else { 0 });
    let mut intact = true;
    for (j, chunk) in part.chunks_mut(slot).enumerate() {
        let i = from + j as u64;
        if digest {
            digests.push(BodyDigest::chunk_digest(chunk));
        }
        if !intact {
            if digest {
                continue;
            }
            break;
        }
        let Some(split) = chunk.len().checked_sub(AEAD_TAG_LEN) else {
            intact = false;
            continue;
        };
        let (ct, tag) = chunk.split_at_mut(split);
        let tag: [u8; AEAD_TAG_LEN] = match (&*tag).try_into() {
            Ok(t) => t,
            Err(_) => {
                intact = false;
                continue;
            }
        };
        intact = k
            .open_in_place_detached(nonce(prefix, i, i + 1 == n), aad, ct, &tag)
            .is_ok();
    }
    (digests, intact)
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
            let (_, p3) = open_package_vec(pkg.clone(), &trust, &key).unwrap();
            assert_eq!(p3.as_bytes(), &d[..]);
            assert_eq!(
                h.check_body(&pkg[h.as_bytes().len()..]).unwrap(),
                super::super::BodyCheck::Signed
            );
        }
    }

    /// Bodies from `PARALLEL_FROM` on are split between two threads: a change in either
    /// half, or the wrong key, fails exactly as in a small body.
    #[test]
    fn split_bodies_fail_like_small_ones() {
        let v = vendor("V");
        let trust = [v.public().clone()];
        let d = data(3 << 20);
        let (pkg, key) = pack(&v, &d, 4096);
        let hl = pkg.len() - (d.len() + (d.len() / 4096) * 16);
        assert!(pkg.len() - hl >= PARALLEL_FROM);
        for at in [hl, hl + 5000, pkg.len() / 2, pkg.len() - 1] {
            let mut p = pkg.clone();
            p[at] ^= 4;
            for r in [
                open_package_bytes(&p, &trust, &key),
                open_package(&p[..], &trust, &key),
                open_package_vec(p.clone(), &trust, &key),
            ] {
                assert!(matches!(r, Err(PackageError::BodyDigest)), "byte {at}");
            }
        }
        let other = ContentKey::generate(&mut OsRng);
        assert!(matches!(
            open_package_vec(pkg.clone(), &trust, &other),
            Err(PackageError::Decrypt)
        ));
        assert!(matches!(
            open_package_vec(pkg[..pkg.len() - 1].to_vec(), &trust, &key),
            Err(PackageError::BodyLength { longer: false, .. })
        ));
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
            assert!(open_package_vec(p, &trust, &key).is_err(), "byte {i}");
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
