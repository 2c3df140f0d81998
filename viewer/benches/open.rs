//! Viewer benchmark: prints one table (`cargo bench -p tally-viewer --bench open`).
//!
//! 1. Open-to-first-page for a 300-page PDF on an emulated card whose trail already holds
//!    10³, 10⁴ and 10⁵ records: keyfile check, card, cold ValidateTrail (parse + every
//!    signature + the nonce record), policy, decryption, the `open` record, the first page
//!    block charged through the meter worker, and page 1 rendered by pdfium — everything
//!    before the reader sees the page, except drawing. Goal: ≤ 500 ms at 10⁴.
//!    Then the same 10⁵-record trail as automatic vouching keeps it (issue 13): the
//!    licence names its validation server, whose validator record (with its `totals`
//!    record) vouches for all but the last 2,000 records, so the fresh ValidateTrail
//!    starts from it; the row prints the share of records the fast start skipped. The
//!    server is not reachable (the opening's online round and the background backup fail
//!    at once), so the row includes that round: reading this viewer's executable for its
//!    ICV and the card-signed request record. Goal: ≤ 300 ms.
//! 2. The UI thread's cost of a page turn including metering (Session::next + tick, the
//!    render request, and, when the worker's reply arrives, handing its ready-made
//!    `egui::ColorImage` to `load_texture`; the bitmap is converted on the render worker),
//!    and the latency from the key press until the page's pixels are ready.
//!    Goal: ≤ 4 ms p99. Not measured: the GPU upload egui's painter does at the next frame.
//! 3. Package decryption beside the raw rate of the AEAD it uses (RustCrypto `aes-gcm`,
//!    opening 64 KiB chunks in place, measured in the same run): the body digest check
//!    (format 2, keyless SHA-256), `open_package_bytes` as the viewer calls it, and the
//!    ratios. Goal: decryption ≥ 80 % of the raw AEAD rate.

// A benchmark's setup failing should stop it loudly.
#![allow(clippy::unwrap_used)]

use rand_core::OsRng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::card::LastSignature;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::crypto::sign_low_s;
use tally_core::home::{CardSpec, Home};
use tally_core::keyfile::{Cis, Keyfile};
use tally_core::package::{PackOptions, seal_package};
use tally_core::policy::{Limits, Rights, SystemClock};
use tally_core::rental::{OpenInputs, open_rental};
use tally_core::trail::file::{Header, encode_frame};
use tally_core::trail::{Body, LicenceId, Record, Usage};
use tally_core::vendor::VendorSecret;
use tally_core::{CardIdentity, PublicKey};
use tally_viewer::render::{Renderer, Reply, Request};

const PAGES: usize = 300;
const WIDTH: u32 = 1024;
const LICENCE: LicenceId = LicenceId([9; 16]);

/// A PDF of `n` pages of text, written directly (objects, xref, trailer).
fn pdf(n: usize) -> Vec<u8> {
    let mut objs: Vec<Vec<u8>> = Vec::new();
    objs.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objs.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
    objs.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman >>".to_vec());
    for i in 0..n {
        objs.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let mut content = format!("BT /F1 20 Tf 72 720 Td (Page {}) Tj ET\n", i + 1);
        for l in 0..40 {
            content.push_str(&format!(
                "BT /F1 11 Tf 72 {} Td (Line {l} of page {}: the quick brown fox jumps over the lazy dog.) Tj ET\n",
                690 - 15 * l,
                i + 1
            ));
        }
        objs.push(
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .into_bytes(),
        );
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend(o);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A card in `home` whose trail already holds `n` records (genesis, then this licence's
/// page blocks), signed with the card's key as the card would, without n card round trips.
fn card_with_trail(home: &Home, n: u64) -> (CardIdentity, PublicKey) {
    let mut state = CardState::generate(&mut OsRng, 1_000, "bench card");
    let identity = CardIdentity {
        serial: state.serial,
        public_key: PublicKey::from_verifying_key(state.key.verifying_key()),
        origin: state.origin,
    };
    let key = state.key.clone();
    let threads = 2u64;
    let per = n.div_ceil(threads);
    let records: Vec<Record> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (key, identity) = (key.clone(), identity.clone());
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let usage = if i == 0 {
                                Usage::Genesis
                            } else {
                                Usage::Pages {
                                    licence: LICENCE,
                                    first: 1,
                                    count: 10,
                                }
                            };
                            let body = Body::at_unix(usage, 1_764_000_000 + i as i64);
                            let mut r = Record {
                                nonce: tally_core::nonce::generate(),
                                body: body.encode().into_bytes(),
                                counter: identity.origin + i,
                                signature: tally_core::crypto::Signature([0; 64]),
                            };
                            r.signature = sign_low_s(&key, &r.signed_message(&identity));
                            r
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let last = records.last().unwrap();
    state.counter = identity.origin + n;
    state.last = Some(LastSignature {
        h: last.h1(),
        counter: last.counter,
        signature: last.signature,
    });
    EmulatedCard::create(home.card_path(), &state).unwrap();
    let path = home.trail_path(&identity.serial);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = Header::for_card(&identity, identity.origin)
        .encode()
        .to_vec();
    for r in &records {
        bytes.extend(encode_frame(r));
    }
    std::fs::write(&path, bytes).unwrap();
    (identity, state.agreement_key())
}

/// A card in `home` whose trail holds `n` records of which the last `after` follow a
/// validator record of `server` (and its `totals` record) vouching for the rest, as the
/// automatic backup leaves a trail: genesis, this licence's opening, page blocks, the
/// server's answer, page blocks.
fn card_with_vouched_trail(
    home: &Home,
    n: u64,
    after: u64,
    server: &tally_core::validation::ServerSecret,
) -> (CardIdentity, PublicKey) {
    use tally_core::trail::body::{History, LicenceTotals};
    use tally_core::trail::validator::{chain_hash, totals_parts};
    let mut state = CardState::generate(&mut OsRng, 1_000, "bench card");
    let identity = CardIdentity {
        serial: state.serial,
        public_key: PublicKey::from_verifying_key(state.key.verifying_key()),
        origin: state.origin,
    };
    let key = state.key.clone();
    // One record with `body` at `counter`, signed as the card would.
    let signed = |counter: u64, body: &Body| {
        let mut r = Record {
            nonce: tally_core::nonce::generate(),
            body: body.encode().into_bytes(),
            counter,
            signature: tally_core::crypto::Signature([0; 64]),
        };
        r.signature = sign_low_s(&key, &r.signed_message(&identity));
        r
    };
    let body = |i: u64| {
        let usage = match i {
            0 => Usage::Genesis,
            1 => Usage::Open { licence: LICENCE },
            _ => Usage::Pages {
                licence: LICENCE,
                first: 1,
                count: 10,
            },
        };
        Body::at_unix(usage, 1_764_000_000 + i as i64)
    };
    // Records 0..k, signed on two threads.
    let sign_range = |from: u64, to: u64| -> Vec<Record> {
        let per = (to - from).div_ceil(2);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2u64)
                .map(|t| {
                    let (signed, body, origin) = (&signed, &body, identity.origin);
                    s.spawn(move || {
                        (from + t * per..(from + (t + 1) * per).min(to))
                            .map(|i| signed(origin + i, &body(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    };
    let k = n - after - 2;
    let mut records = sign_range(0, k);
    let upto = records.last().unwrap().counter;
    let totals = [LicenceTotals {
        licence: LICENCE,
        opens: 1,
        pages: 10 * (k as u32 - 2),
        seconds: 0,
        prints: 0,
        times: 0,
        history: Some(History {
            copies: 0,
            chars: 0,
            version: 1,
            opened: Some(body(1).at),
        }),
    }];
    let at = 1_764_000_000 + k as i64;
    let (parts, digest) = totals_parts(upto, &totals, at);
    let mut validator = Body::at_unix(
        Usage::Validator(Box::new(tally_core::trail::body::Validator {
            server_key: server.public().fingerprint(),
            upto,
            chain: chain_hash(&identity, identity.origin, &records),
            totals: Vec::new(),
            parts: Some(digest),
            signature: tally_core::crypto::Signature([0; 64]),
        })),
        at,
    );
    assert!(server.sign_body(&identity.serial, &mut validator));
    for b in parts.iter().chain(std::iter::once(&validator)) {
        let c = identity.origin + records.len() as u64;
        records.push(signed(c, b));
    }
    // The page blocks after the answer (their counters follow it).
    records.extend(sign_range(k + 2, n));
    let last = records.last().unwrap();
    state.counter = identity.origin + n;
    state.last = Some(LastSignature {
        h: last.h1(),
        counter: last.counter,
        signature: last.signature,
    });
    EmulatedCard::create(home.card_path(), &state).unwrap();
    let path = home.trail_path(&identity.serial);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = Header::for_card(&identity, identity.origin)
        .encode()
        .to_vec();
    for r in &records {
        bytes.extend(encode_frame(r));
    }
    std::fs::write(&path, bytes).unwrap();
    (identity, state.agreement_key())
}

fn wait_page(r: &Renderer, index: usize) -> tally_viewer::render::PageImage {
    loop {
        match r
            .recv_timeout(Duration::from_secs(30))
            .expect("renderer answers")
        {
            Reply::Page {
                index: i, image, ..
            } if i == index => return image,
            Reply::OpenFailed(e) => panic!("{e}"),
            _ => {}
        }
    }
}

/// Best of `runs` timings of `f`, in seconds.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Table 3: decryption against the raw AEAD, on the bench document and on a larger one.
fn decryption_table(vendor: &VendorSecret, doc: &[u8]) {
    use tally_core::crypto::{AEAD_TAG_LEN, Aes256Gcm};
    use tally_core::package::{CHUNK_SIZE, Plaintext, open_package_bytes, open_package_vec};
    let trust = [vendor.public().clone()];
    let big: Vec<u8> = (0..64usize << 20)
        .map(|i| (i * 131 + i / 4093) as u8)
        .collect();
    println!();
    println!("| decryption (best of 7) | document | GB/s | vs raw AEAD |\n|---|---:|---:|---:|");
    for (label, data) in [("bench PDF", doc), ("64 MiB", &big[..])] {
        let mut pkg = Vec::new();
        let (header, key) = seal_package(
            vendor,
            &PackOptions::new("Bench", 1),
            data.len() as u64,
            data,
            std::io::Cursor::new(&mut pkg),
            &mut OsRng,
            &mut |_| {},
        )
        .unwrap();
        let n = data.len() as f64;
        let gbps = |secs: f64| n / secs / 1e9;
        // The raw AEAD: the same chunks opened in place, nothing else.
        let aead = Aes256Gcm::new(key.as_bytes());
        let cs = CHUNK_SIZE as usize;
        let chunks: Vec<(Vec<u8>, [u8; AEAD_TAG_LEN])> = data
            .chunks(cs)
            .enumerate()
            .map(|(i, c)| {
                let mut b = c.to_vec();
                let tag = aead
                    .seal_in_place_separate_tag(nonce(i), b"aad", &mut b)
                    .unwrap();
                (b, tag)
            })
            .collect();
        // Each run opens a fresh copy of the sealed chunks (copied outside the timing).
        let raw = (0..7)
            .map(|_| {
                let mut work = chunks.clone();
                let t = Instant::now();
                for (i, (b, tag)) in work.iter_mut().enumerate() {
                    aead.open_in_place_detached(nonce(i), b"aad", b, tag)
                        .unwrap();
                }
                let d = t.elapsed().as_secs_f64();
                std::hint::black_box(work);
                d
            })
            .fold(f64::INFINITY, f64::min);
        let body = &pkg[header.as_bytes().len()..];
        let digest = best(7, || {
            std::hint::black_box(header.check_body(body).unwrap());
        });
        // The plaintext is zeroized when dropped, outside the timing: that is the
        // reader's cost of closing the document, not of decrypting it.
        let time_open = |open: &dyn Fn() -> Plaintext| {
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    let p = open();
                    let d = t.elapsed().as_secs_f64();
                    assert_eq!(p.len(), data.len());
                    d
                })
                .fold(f64::INFINITY, f64::min)
        };
        let open = time_open(&|| open_package_bytes(&pkg, &trust, &key).unwrap().1);
        // The viewer's path: the package as read from disk, decrypted in place. The copy
        // stands for the read (outside the timing).
        let in_place = (0..7)
            .map(|_| {
                let bytes = pkg.clone();
                let t = Instant::now();
                let (_, p) = open_package_vec(bytes, &trust, &key).unwrap();
                let d = t.elapsed().as_secs_f64();
                assert_eq!(p.len(), data.len());
                d
            })
            .fold(f64::INFINITY, f64::min);
        let kib = data.len() / 1024;
        println!(
            "| raw AES-256-GCM open (aes-gcm, 64 KiB chunks, in place) | {label}, {kib} KiB | {:.2} | 100 % |",
            gbps(raw)
        );
        println!(
            "| body digest check alone (`check_body`: format 2, SHA-256 per chunk, no key) | {label} | {:.2} | {:.0} % |",
            gbps(digest),
            100.0 * raw / digest
        );
        println!(
            "| `open_package_bytes` (signature, digest, copy into a zeroizing buffer, decryption) | {label} | {:.2} | {:.0} % |",
            gbps(open),
            100.0 * raw / open
        );
        println!(
            "| **`open_package_vec`**, the viewer's path (signature, digest, decryption in place) | {label} | {:.2} | **{:.0} %** |",
            gbps(in_place),
            100.0 * raw / in_place
        );
    }
}

fn nonce(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let doc = pdf(PAGES);
    let vendor = VendorSecret::generate("Bench Publisher", false, &mut OsRng).unwrap();
    // `TALLY_BENCH_TABLE=decrypt` prints only table 3 (quick to iterate on).
    if std::env::var("TALLY_BENCH_TABLE").as_deref() == Ok("decrypt") {
        decryption_table(&vendor, &doc);
        return;
    }
    let mut pkg = Vec::new();
    let (header, key) = seal_package(
        &vendor,
        &PackOptions::new("Bench", PAGES as u32),
        doc.len() as u64,
        &doc[..],
        std::io::Cursor::new(&mut pkg),
        &mut OsRng,
        &mut |_| {},
    )
    .unwrap();
    let package = dir.path().join("bench.tly");
    std::fs::write(&package, pkg).unwrap();
    let limits = Limits {
        rights: Rights {
            print: false,
            copy: true,
        },
        ..Limits::default()
    };
    let ctx = egui::Context::default();
    // Warm-up: binds pdfium once (as the first window would) so rows compare like with like.
    tally_viewer::render::pdfium().unwrap();
    // `TALLY_BENCH_TABLE=auto` prints only the automatic-vouching row.
    if std::env::var("TALLY_BENCH_TABLE").as_deref() == Ok("auto") {
        auto_vouched_table(&dir, &package, &header, &key, &limits, &vendor, &ctx);
        return;
    }

    println!(
        "tally-view open benchmark ({PAGES}-page PDF, {} KiB; page 1 at {WIDTH} px)",
        doc.len() / 1024
    );
    println!();
    println!(
        "| trail records | checks+ValidateTrail+decrypt+open | first page block charged | page 1 rendered | open → first page |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut last_session = None;
    for n in [1_000u64, 10_000, 100_000] {
        let home = Home::new(dir.path().join(format!("home-{n}")));
        let (identity, agreement) = card_with_trail(&home, n);
        let cis = Cis {
            licence: LICENCE,
            document: header.document_id(),
            card: identity,
            card_agreement_key: agreement,
            issuers: Vec::new(),
            customer_name: "Bench Reader".into(),
            content_key: key.clone(),
            limits: limits.clone(),
            allow_emulated_card: true,
            server: None,
            issued_at: time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap(),
        };
        let keyfile = dir.path().join(format!("bench-{n}.tkey"));
        std::fs::write(&keyfile, Keyfile::issue(&vendor, &cis, &mut OsRng).unwrap()).unwrap();
        let inputs = OpenInputs {
            package: package.clone(),
            keyfile,
            home: home.clone(),
            card: CardSpec::Emulated(None),
            trusted: vec![vendor.public().clone()],
            clock: Arc::new(SystemClock),
            transport: Arc::new(tally_core::rental::NoNetwork),
        };

        let t0 = Instant::now();
        let opened = open_rental(&inputs).expect("opens");
        let t_open = t0.elapsed();
        let (mut session, document) = opened.start(Box::new(|| {})).unwrap();
        let renderer =
            Renderer::start(document, "Licensed to Bench Reader".into(), Box::new(|| {}));
        renderer.send(Request::Page {
            index: 0,
            width: WIDTH,
        });
        while !session.page_shown() {
            session.tick(Instant::now(), false);
            std::thread::sleep(Duration::from_micros(200));
        }
        let t_block = t0.elapsed();
        let img = wait_page(&renderer, 0);
        let t_page = t0.elapsed();
        let _ = ctx.load_texture("p0", img.into_color_image(), egui::TextureOptions::LINEAR);
        let t_first = t0.elapsed();
        println!(
            "| {n} | {:.1} ms | {:.1} ms | {:.1} ms | **{:.1} ms** |",
            t_open.as_secs_f64() * 1e3,
            t_block.as_secs_f64() * 1e3,
            t_page.as_secs_f64() * 1e3,
            t_first.as_secs_f64() * 1e3
        );
        last_session = Some((session, renderer));
    }

    auto_vouched_table(&dir, &package, &header, &key, &limits, &vendor, &ctx);

    // Page turns on the 10⁵-record session: the UI thread's work, and key-to-pixels.
    let (mut session, renderer) = last_session.unwrap();
    let mut ui_cost = Vec::new();
    let mut latency = Vec::new();
    let mut charged = 0;
    for _ in 0..(PAGES - 1).min(120) {
        let pressed = Instant::now();
        // UI thread, frame of the key press: turn, tick, ask for the page.
        session.next();
        session.tick(Instant::now(), false);
        let target = session.pending_page().unwrap_or(session.current());
        renderer.send(Request::Page {
            index: target,
            width: WIDTH,
        });
        let mut ui = pressed.elapsed();
        if session.pending_page().is_some() {
            charged += 1;
            while !session.page_shown() || session.pending_page().is_some() {
                let t = Instant::now();
                session.tick(Instant::now(), false);
                ui += t.elapsed();
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let img = wait_page(&renderer, target);
        // UI thread, frame the pixels arrive: convert and register the texture.
        let t = Instant::now();
        let _ = ctx.load_texture("p", img.into_color_image(), egui::TextureOptions::LINEAR);
        ui += t.elapsed();
        latency.push(pressed.elapsed().as_secs_f64() * 1e3);
        ui_cost.push(ui.as_secs_f64() * 1e3);
    }
    println!();
    println!(
        "| page turns (10⁵-record trail, {} turns) | p50 | p99 | max | p99 vs goal |\n|---|---:|---:|---:|---:|",
        ui_cost.len()
    );
    let (mut a, mut b) = (ui_cost.clone(), ui_cost);
    let p99 = pct(&mut b, 0.99);
    println!(
        "| **UI-thread cost incl. metering** (goal ≤ {UI_GOAL_MS} ms p99) | {:.3} ms | {p99:.3} ms | {:.3} ms | **{:.0} %** |",
        pct(&mut a, 0.5),
        a.iter().cloned().fold(0.0, f64::max),
        100.0 * p99 / UI_GOAL_MS
    );
    let (mut c, mut d) = (latency.clone(), latency);
    println!(
        "| key → pixels ready (worker render{}) | {:.2} ms | {:.2} ms | {:.2} ms | — |",
        format_args!(", {charged} turns charged a page block"),
        pct(&mut c, 0.5),
        pct(&mut d, 0.99),
        c.iter().cloned().fold(0.0, f64::max)
    );
    decryption_table(&vendor, &doc);
}

/// Records after the newest validator record in the automatic-vouching row: at most what
/// the automatic backup lets accumulate (it vouches at 1,000, so 2,000 is the bound the
/// issue sets).
const AFTER_VALIDATOR: u64 = 2_000;

/// Table 1, second part: open → first page on a 10⁵-record trail kept by automatic
/// vouching (best of 3 runs, each on a fresh copy of the same home).
fn auto_vouched_table(
    dir: &tempfile::TempDir,
    package: &std::path::Path,
    header: &tally_core::package::PackageHeader,
    key: &tally_core::package::ContentKey,
    limits: &Limits,
    vendor: &VendorSecret,
    ctx: &egui::Context,
) {
    let n = 100_000u64;
    let server = tally_core::validation::ServerSecret::random(&mut OsRng);
    let src = Home::new(dir.path().join("home-auto-src"));
    let (identity, agreement) = card_with_vouched_trail(&src, n, AFTER_VALIDATOR, &server);
    let cis = Cis {
        licence: LICENCE,
        document: header.document_id(),
        card: identity.clone(),
        card_agreement_key: agreement,
        issuers: Vec::new(),
        customer_name: "Bench Reader".into(),
        content_key: key.clone(),
        limits: limits.clone(),
        allow_emulated_card: true,
        // Nothing listens there: the opening's round and the backup fail at once.
        server: Some(tally_core::keyfile::ServerInfo {
            url: "http://127.0.0.1:9".into(),
            public_key: server.public().clone(),
            require_online_every_days: None,
        }),
        issued_at: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap(),
    };
    let keyfile = dir.path().join("bench-auto.tkey");
    std::fs::write(&keyfile, Keyfile::issue(vendor, &cis, &mut OsRng).unwrap()).unwrap();
    println!();
    println!(
        "| automatic vouching on (best of 3) | records checked by signature | skipped by the fast start | checks+ValidateTrail+decrypt+open | first page block charged | page 1 rendered | open → first page (goal ≤ 300 ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut best: Option<(f64, String)> = None;
    for run in 0..3 {
        let home = Home::new(dir.path().join(format!("home-auto-{run}")));
        let trail = home.trail_path(&identity.serial);
        std::fs::create_dir_all(trail.parent().unwrap()).unwrap();
        std::fs::copy(src.card_path(), home.card_path()).unwrap();
        std::fs::copy(src.trail_path(&identity.serial), &trail).unwrap();
        let inputs = OpenInputs {
            package: package.to_path_buf(),
            keyfile: keyfile.clone(),
            home: home.clone(),
            card: CardSpec::Emulated(None),
            trusted: vec![vendor.public().clone()],
            clock: Arc::new(SystemClock),
            transport: Arc::new(tally_core::rental::NoNetwork),
        };
        let t0 = Instant::now();
        let opened = open_rental(&inputs).expect("opens");
        let t_open = t0.elapsed();
        assert!(opened.backup.is_some(), "automatic vouching is on");
        let t = opened.meter.trail();
        let prefix = t
            .vouched()
            .expect("the fast start began at the validator")
            .prefix;
        let records = t.records().len();
        let share = 100.0 * prefix as f64 / records as f64;
        let newer = records - prefix;
        let (mut session, document) = opened.start(Box::new(|| {})).unwrap();
        let renderer =
            Renderer::start(document, "Licensed to Bench Reader".into(), Box::new(|| {}));
        renderer.send(Request::Page {
            index: 0,
            width: WIDTH,
        });
        while !session.page_shown() {
            session.tick(Instant::now(), false);
            std::thread::sleep(Duration::from_micros(200));
        }
        let t_block = t0.elapsed();
        let img = wait_page(&renderer, 0);
        let t_page = t0.elapsed();
        let _ = ctx.load_texture("a0", img.into_color_image(), egui::TextureOptions::LINEAR);
        let t_first = t0.elapsed().as_secs_f64();
        let row = format!(
            "| {records} | {newer} | {share:.1} % ({prefix} records) | {:.1} ms | {:.1} ms | {:.1} ms | **{:.1} ms** |",
            t_open.as_secs_f64() * 1e3,
            t_block.as_secs_f64() * 1e3,
            t_page.as_secs_f64() * 1e3,
            t_first * 1e3
        );
        if best.as_ref().is_none_or(|(b, _)| t_first < *b) {
            best = Some((t_first, row));
        }
        drop(session);
    }
    println!("{}", best.unwrap().1);
}

/// The page-turn goal for the UI thread, p99.
const UI_GOAL_MS: f64 = 4.0;
