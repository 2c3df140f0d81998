//! Pack throughput against raw AES-256-GCM (ring) on the same 256 MB, in the same run.
//!
//! `cargo bench -p tally-packager --bench pack` (set `TALLY_BENCH_MB` for another size).
//! Goal: packing (chunked STREAM encryption, header signing, reading from a `Read`,
//! writing to a `Write`) at ≥ 80 % of the raw AES-256-GCM rate. Storage speed is left
//! out (input in memory, output to a sink or a preallocated buffer); the "CLI path" row
//! adds the SHA-256 of the output that `tally-pack pack` records in the registry.

use rand_core::OsRng;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::{Duration, Instant};
use tally_core::package::{ContentKey, PackOptions, open_package_bytes, seal_package};
use tally_core::vendor::VendorSecret;

const RUNS: usize = 5;

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| f()).min().unwrap_or_default()
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `seal_package` seeks back to fill in the header; the bench only counts the bytes' cost.
impl std::io::Seek for HashSink {
    fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

/// `std::io::sink()` with the `Seek` that `seal_package` needs.
struct Discard;

impl Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for Discard {
    fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

fn main() {
    let mb: usize = std::env::var("TALLY_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let n = mb << 20;
    // Incompressible-looking input (xorshift), generated once.
    let mut data = vec![0u8; n];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let vendor = VendorSecret::generate("Bench Press", false, &mut OsRng).expect("vendor");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let mut buf = data.clone();

    let raw_one = best(|| {
        let t = Instant::now();
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from([0u8; 32]),
                &mut buf,
            )
            .expect("seal");
        let _ = std::hint::black_box(tag);
        t.elapsed()
    });
    let raw_chunked = best(|| {
        let t = Instant::now();
        for (i, c) in buf.chunks_mut(64 << 10).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[4..12].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([0u8; 32]),
                    c,
                )
                .expect("seal");
            let _ = std::hint::black_box(tag);
        }
        t.elapsed()
    });
    // What the pipeline saves: copying each chunk out of the input, then sealing it,
    // on one thread (the shape of a single-threaded streaming packer).
    let mut chunk = vec![0u8; (64 << 10) + 16];
    let copy_then_seal = best(|| {
        let t = Instant::now();
        for (i, c) in data.chunks(64 << 10).enumerate() {
            chunk[..c.len()].copy_from_slice(c);
            let mut nonce = [0u8; 12];
            nonce[4..12].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([0u8; 32]),
                    &mut chunk[..c.len()],
                )
                .expect("seal");
            let _ = std::hint::black_box(tag);
        }
        t.elapsed()
    });
    let opts = PackOptions::new("Bench", 1);
    let pack_sink = best(|| {
        let t = Instant::now();
        let r = seal_package(
            &vendor,
            &opts,
            n as u64,
            &data[..],
            Discard,
            &mut OsRng,
            &mut |_| {},
        )
        .expect("pack");
        std::hint::black_box(r);
        t.elapsed()
    });
    let mut out = Vec::with_capacity(n + n / 1000 + 4096);
    let mut last_key = None;
    let pack_vec = best(|| {
        out.clear();
        let t = Instant::now();
        let (_, k) = seal_package(
            &vendor,
            &opts,
            n as u64,
            &data[..],
            std::io::Cursor::new(&mut out),
            &mut OsRng,
            &mut |_| {},
        )
        .expect("pack");
        let d = t.elapsed();
        last_key = Some(k);
        d
    });
    let pack_hash = best(|| {
        let t = Instant::now();
        let mut w = HashSink(Sha256::new());
        let r = seal_package(
            &vendor,
            &opts,
            n as u64,
            &data[..],
            &mut w,
            &mut OsRng,
            &mut |_| {},
        )
        .expect("pack");
        std::hint::black_box((r, w.0.finalize()));
        t.elapsed()
    });
    let key: ContentKey = last_key.expect("packed at least once");
    let trust = [vendor.public().clone()];
    let open = best(|| {
        let t = Instant::now();
        let (_, p) = open_package_bytes(&out, &trust, &key).expect("open");
        let d = t.elapsed();
        assert_eq!(p.len(), n);
        d
    });

    let sha2_alone = best(|| {
        let t = Instant::now();
        std::hint::black_box(Sha256::digest(&data));
        t.elapsed()
    });
    let ring_sha_alone = best(|| {
        let t = Instant::now();
        std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &data));
        t.elapsed()
    });
    // The faster of the two raw runs is the reference (the stricter comparison).
    let reference = gbps(n, raw_one.min(raw_chunked));
    println!("pack throughput, {mb} MiB, best of {RUNS} (GB/s = 10^9 bytes/s)");
    println!("{:<52} {:>8} {:>10}", "operation", "GB/s", "vs raw");
    let row = |name: &str, d: Duration| {
        let r = gbps(n, d);
        println!("{name:<52} {r:>8.2} {:>9.0}%", 100.0 * r / reference);
    };
    row("raw ring AES-256-GCM, one call over the buffer", raw_one);
    row("raw ring AES-256-GCM, 64 KiB chunks in place", raw_chunked);
    row(
        "one thread: copy each chunk out, then seal it",
        copy_then_seal,
    );
    row("pack: seal_package, slice -> sink", pack_sink);
    row("pack: seal_package, slice -> preallocated Vec", pack_vec);
    row("pack + SHA-256 of the output (the CLI path)", pack_hash);
    row("open_package_bytes (decrypt into a zeroizing buffer)", open);
    row("SHA-256 alone (sha2), for the CLI path", sha2_alone);
    row("SHA-256 alone (ring)", ring_sha_alone);
    let ratio = gbps(n, pack_sink) / reference;
    println!(
        "goal: pack >= 80% of raw -> {:.0}% {}",
        100.0 * ratio,
        if ratio >= 0.8 { "(met)" } else { "(NOT met)" }
    );
}
