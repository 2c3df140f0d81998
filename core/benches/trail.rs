//! Trail benchmark: prints one table (run with `cargo bench -p tally-core --bench trail`).
//!
//! - Write/s on the emulated card (each Write fsyncs the intent, the card state and the trail);
//! - the raw verifier rates (ring on 1 and 2 threads, p256 on 1) — the ceiling;
//! - ValidateTrail records/s on trails of 10⁴ and 10⁵ records, 1 and 2 threads, from a cold
//!   open (parse + every signature + the nonce record write), and its ratio to the ceiling;
//! - fresh-start ValidateTrail on a 10⁵-record trail with a validator record (\[0094\]) 1000
//!   records from the end: not trusted (every signature) vs trusted (chain hash up to the
//!   validator, signatures after it).

use std::time::Instant;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::{Card, CardIdentity, LastSignature};
use tally_core::crypto::{P256Verifier, RingVerifier, SignatureVerifier, sign_low_s};
use tally_core::trail::body::{LicenceTotals, Validator};
use tally_core::trail::file::{Header, encode_frame};
use tally_core::trail::validator::chain_hash;
use tally_core::trail::{Body, LicenceId, Record, Trail, Usage};
use tally_core::validation::ServerSecret;

fn page(i: u32) -> Body {
    Body::at_unix(
        Usage::Pages {
            licence: LicenceId([1; 16]),
            first: i,
            count: 10,
        },
        1_764_000_000 + i as i64,
    )
}

/// Builds a trail of `n` records signed with the card's key (as the card would), and a card
/// state whose counter is in step with it, without n fsynced card round trips.
fn synth(dir: &std::path::Path, n: u64) -> (Card, CardIdentity, std::path::PathBuf) {
    synth_with(dir, n, None)
}

/// As [`synth`]; with `validator = Some((k, server))` record `k` is a validator record by
/// `server` vouching for records `0..k` (as `tally_core::trail::validator::vouch` would).
fn synth_with(
    dir: &std::path::Path,
    n: u64,
    validator: Option<(usize, &ServerSecret)>,
) -> (Card, CardIdentity, std::path::PathBuf) {
    let mut state = CardState::generate(&mut rand_core::OsRng, 1_000, "bench card");
    let identity = CardIdentity {
        serial: state.serial,
        public_key: state.public_key(),
        origin: state.origin,
    };
    let key = state.key.clone();
    let threads = 2u64;
    let per = n.div_ceil(threads);
    let mut records: Vec<Record> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let key = key.clone();
                let identity = identity.clone();
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let body = if i == 0 {
                                Body::at_unix(Usage::Genesis, 1_764_000_000)
                            } else {
                                page(i as u32)
                            };
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
        hs.into_iter()
            .flat_map(|h| h.join().expect("signer thread"))
            .collect()
    });
    if let Some((k, server)) = validator {
        let upto = records[k - 1].counter;
        let mut body = Body::at_unix(
            Usage::Validator(Box::new(Validator {
                server_key: server.public().fingerprint(),
                upto,
                chain: chain_hash(&identity, identity.origin, &records[..k]),
                totals: vec![LicenceTotals {
                    licence: LicenceId([1; 16]),
                    opens: 0,
                    pages: 10 * (k as u32 - 1),
                    seconds: 0,
                    prints: 0,
                    times: 0,
                    history: None,
                }],
                parts: None,
                signature: tally_core::crypto::Signature([0; 64]),
            })),
            1_764_000_000 + k as i64,
        );
        assert!(
            server.sign_body(&identity.serial, &mut body),
            "a validator body"
        );
        let r = &mut records[k];
        r.body = body.encode().into_bytes();
        r.signature = sign_low_s(&key, &r.signed_message(&identity));
    }
    let last = records.last().expect("at least one record");
    state.counter = identity.origin + n;
    state.last = Some(LastSignature {
        h: last.h1(),
        counter: last.counter,
        signature: last.signature,
    });
    let card_path = dir.join("card.state");
    let _ = std::fs::remove_file(&card_path);
    EmulatedCard::create(&card_path, &state).expect("card");
    let trail_path = dir.join(format!("{n}.trail"));
    let mut bytes = Header::for_card(&identity, identity.origin)
        .encode()
        .to_vec();
    for r in &records {
        bytes.extend(encode_frame(r));
    }
    std::fs::write(&trail_path, bytes).expect("trail");
    (
        Card::new(Box::new(EmulatedCard::open(&card_path).expect("card"))),
        identity,
        trail_path,
    )
}

fn raw_rate(
    v: &'static dyn SignatureVerifier,
    msgs: &[(Vec<u8>, tally_core::crypto::Signature)],
    key: &tally_core::PublicKey,
    threads: usize,
) -> f64 {
    let t0 = Instant::now();
    let chunk = msgs.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in msgs.chunks(chunk) {
            s.spawn(move || {
                for (m, sig) in part {
                    assert!(v.verify(key, m, sig));
                }
            });
        }
    });
    msgs.len() as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "Tally trail benchmark ({} cores available)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("{:<52} {:>14} {:>10}", "measure", "rate", "vs ceiling");

    // Write/s on the emulated card.
    let wdir = dir.path().join("w");
    std::fs::create_dir_all(&wdir).expect("dir");
    let state = CardState::generate(&mut rand_core::OsRng, 0, "bench");
    EmulatedCard::create(wdir.join("card"), &state).expect("card");
    let mut card = Card::new(Box::new(
        EmulatedCard::open(wdir.join("card")).expect("card"),
    ));
    let id = card.identity().expect("identity");
    let mut trail = Trail::create(wdir.join("trail"), &mut card, &id).expect("trail");
    let n = 300;
    let t0 = Instant::now();
    for i in 0..n {
        trail.write(&mut card, &page(i)).expect("write");
    }
    println!(
        "{:<52} {:>10.0} /s {:>10}",
        "Write on the emulated card (fsynced)",
        n as f64 / t0.elapsed().as_secs_f64(),
        ""
    );

    // The ceiling: raw verification of the same kind of messages.
    let (_, ident, path) = synth(dir.path(), 4_000);
    let t = Trail::open(&path, &ident).expect("open");
    let msgs: Vec<_> = t
        .records()
        .iter()
        .map(|r| (r.signed_message(&ident).to_vec(), r.signature))
        .collect();
    let ring1 = raw_rate(&RingVerifier, &msgs, &ident.public_key, 1);
    let ring2 = raw_rate(&RingVerifier, &msgs, &ident.public_key, 2);
    let p1 = raw_rate(&P256Verifier, &msgs[..1000], &ident.public_key, 1);
    println!(
        "{:<52} {:>10.0} /s {:>10}",
        "raw verify, ring, 1 thread (ceiling, 1 thread)", ring1, ""
    );
    println!(
        "{:<52} {:>10.0} /s {:>10}",
        "raw verify, ring, 2 threads (ceiling, 2 threads)", ring2, ""
    );
    println!(
        "{:<52} {:>10.0} /s {:>9.0}%",
        "raw verify, p256, 1 thread",
        p1,
        100.0 * p1 / ring1
    );

    for n in [10_000u64, 100_000] {
        let (mut card, ident, path) = synth(dir.path(), n);
        for threads in [1usize, 2] {
            let t0 = Instant::now();
            let mut t = Trail::open(&path, &ident).expect("open");
            t.set_threads(threads);
            let v = t.verify(&mut card).expect("validate");
            let rate = v.newly_verified as f64 / t0.elapsed().as_secs_f64();
            let ceiling = if threads == 1 { ring1 } else { ring2 };
            println!(
                "{:<52} {:>10.0} /s {:>9.0}%",
                format!("ValidateTrail, {n} records, {threads} thread(s), cold open"),
                rate,
                100.0 * rate / ceiling
            );
        }
    }
    // Fast start from a validator record ([0094]), 10⁵ records, validator 1000 from the end.
    let n = 100_000u64;
    let server = ServerSecret::random(&mut rand_core::OsRng);
    let (_, ident, path) = synth_with(dir.path(), n, Some((n as usize - 1_000, &server)));
    let mut full_ms = 0.0;
    for trusted in [false, true] {
        // A copy per run: each verify() appends its nonce record.
        let run = dir.path().join(format!("fast-{trusted}.trail"));
        std::fs::copy(&path, &run).expect("copy");
        let _ = std::fs::copy(
            tally_core::trail::intent_path(&path),
            tally_core::trail::intent_path(&run),
        );
        let card_copy = dir.path().join(format!("card-{trusted}.state"));
        std::fs::copy(dir.path().join("card.state"), &card_copy).expect("card copy");
        let mut card = Card::new(Box::new(EmulatedCard::open(&card_copy).expect("card")));
        let t0 = Instant::now();
        let mut t = Trail::open(&run, &ident).expect("open");
        t.set_threads(2);
        if trusted {
            t.set_trusted_validators(vec![server.public().clone()]);
        }
        let v = t.verify(&mut card).expect("validate");
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(t.vouched().is_some(), trusted);
        let label = if trusted { "fast" } else { "full" };
        let vs = if trusted {
            format!("{:>9.1}%", 100.0 * ms / full_ms)
        } else {
            full_ms = ms;
            String::new()
        };
        println!(
            "{:<52} {:>10.1} ms {:>10}",
            format!(
                "ValidateTrail 10⁵, validator −1000, {label} ({} sig)",
                v.newly_verified
            ),
            ms,
            vs
        );
    }
    // The same trail with the vouched-for prefix archived out of it ([0094]): a fresh
    // ValidateTrail then reads and hashes only the records after the validator's upto.
    let run = dir.path().join("archived.trail");
    std::fs::copy(&path, &run).expect("copy");
    let _ = std::fs::copy(
        tally_core::trail::intent_path(&path),
        tally_core::trail::intent_path(&run),
    );
    let card_copy = dir.path().join("card-archived.state");
    std::fs::copy(dir.path().join("card.state"), &card_copy).expect("card copy");
    let t0 = Instant::now();
    let a = Trail::archive(&run, &ident, vec![server.public().clone()]).expect("archive");
    let archive_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut card = Card::new(Box::new(EmulatedCard::open(&card_copy).expect("card")));
    let t0 = Instant::now();
    let mut t = Trail::open(&run, &ident).expect("open");
    t.set_threads(2);
    t.set_trusted_validators(vec![server.public().clone()]);
    let v = t.verify(&mut card).expect("validate");
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "{:<52} {:>10.1} ms {:>9.1}%",
        format!(
            "ValidateTrail 10⁵ archived to {} kept ({} sig)",
            a.kept, v.newly_verified
        ),
        ms,
        100.0 * ms / full_ms
    );
    println!(
        "{:<52} {:>10.1} ms {:>10}",
        format!("Trail::archive of {} records (once)", a.records),
        archive_ms,
        ""
    );
    println!("\ngoal: ValidateTrail ≥ 90% of the raw verifier rate on the same number of threads");
}
