//! Card benchmark: prints one table (run with `cargo bench -p tally-core --bench card`).
//!
//! The same emulated card state, called directly (`EmulatedCard`) and through the real
//! pcscd (`PcscCard` → pcscd → vsmartcard's vpcd → our `VirtualCard` over TCP):
//!
//! - one APDU round trip (GET_COUNTER inside an open session), p50 and p99;
//! - one short session (PC/SC transaction + SELECT + GET_COUNTER), p50 and p99;
//! - Write/s: \[0059\]'s Write on a trail (each Write fsyncs the intent, the card state and
//!   the trail).
//!
//! pcscd: a running one is used; otherwise, as root, the bench starts `pcscd -f` and stops
//! it at the end; otherwise it prints why the PC/SC rows are missing.

#[path = "../tests/support/pcscd.rs"]
#[allow(dead_code)] // shared with the tests, which use more of it
mod pcscd;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tally_core::card::Card;
use tally_core::card::applet::CardState;
use tally_core::card::emulated::EmulatedCard;
use tally_core::card::pcsc::PcscCard;
use tally_core::card::virtual_card::{DEFAULT_VPCD, VirtualCard};
use tally_core::trail::{Body, LicenceId, Trail, Usage};

const ROUND_TRIPS: usize = 5_000;
const SESSIONS: usize = 2_000;
const WRITE_FOR: Duration = Duration::from_secs(3);

struct Row {
    what: &'static str,
    backend: &'static str,
    n: usize,
    p50: Duration,
    p99: Duration,
    per_s: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(what: &'static str, backend: &'static str, mut times: Vec<Duration>) -> Row {
    times.sort_unstable();
    let total: Duration = times.iter().sum();
    Row {
        what,
        backend,
        n: times.len(),
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
        per_s: times.len() as f64 / total.as_secs_f64().max(1e-9),
    }
}

/// Runs the three measurements on `open()`'s card, whose trail goes to `trail`.
fn measure(
    backend: &'static str,
    open: &dyn Fn() -> Card,
    trail: &std::path::Path,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut card = open();

    // APDU round trip inside one session.
    {
        let mut s = card.session().map_err(|e| e.to_string())?;
        for _ in 0..100 {
            s.get_counter().map_err(|e| e.to_string())?;
        }
        let mut t = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let t0 = Instant::now();
            std::hint::black_box(s.get_counter().map_err(|e| e.to_string())?);
            t.push(t0.elapsed());
        }
        rows.push(row("APDU round trip (GET_COUNTER)", backend, t));
    }

    // A whole short session: transaction, SELECT, GET_COUNTER.
    let mut t = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let t0 = Instant::now();
        let c = card
            .session()
            .and_then(|mut s| s.get_counter())
            .map_err(|e| e.to_string())?;
        std::hint::black_box(c);
        t.push(t0.elapsed());
    }
    rows.push(row("session (tx + SELECT + GET_COUNTER)", backend, t));

    // Write/s.
    let id = card.identity().map_err(|e| e.to_string())?;
    let mut tr = Trail::create(trail, &mut card, &id).map_err(|e| e.to_string())?;
    let mut t = Vec::new();
    let end = Instant::now() + WRITE_FOR;
    let mut page = 0;
    while Instant::now() < end {
        page += 1;
        let body = Body::now(Usage::Pages {
            licence: LicenceId([3; 16]),
            first: page,
            count: 1,
        });
        let t0 = Instant::now();
        tr.write(&mut card, &body).map_err(|e| e.to_string())?;
        t.push(t0.elapsed());
    }
    rows.push(row("Write (trail record, fsynced)", backend, t));
    Ok(rows)
}

fn new_card(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let state = CardState::generate(&mut rand_core::OsRng, 0, "bench card");
    if let Err(e) = EmulatedCard::create(&path, &state) {
        eprintln!("creating {}: {e}", path.display());
        std::process::exit(2);
    }
    path
}

/// The PC/SC rows, or why there are none.
fn through_pcscd(dir: &std::path::Path) -> Result<Vec<Row>, String> {
    let _port = pcscd::vpcd_port_lock().map_err(|e| format!("locking vpcd's port: {e}"))?;
    let (_pcscd, ctx) = pcscd::ensure_pcscd()?;
    pcscd::wait_reader(&ctx, pcscd::READER, false, Duration::from_secs(10))
        .map_err(|e| format!("{e} (is another virtual card connected to vpcd?)"))?;
    let path = new_card(dir, "pcsc.card");
    let server = VirtualCard::new(&path, DEFAULT_VPCD).map_err(|e| e.to_string())?;
    let stop = server.stop_flag();
    let thread = std::thread::spawn(move || server.run(&mut |_| {}));
    let result =
        pcscd::wait_reader(&ctx, pcscd::READER, true, Duration::from_secs(10)).and_then(|()| {
            measure(
                "pcscd + vpcd + virtual card",
                &|| match PcscCard::connect(Some(pcscd::READER)) {
                    Ok(c) => Card::new(Box::new(c)),
                    Err(e) => {
                        eprintln!("PcscCard::connect: {e}");
                        std::process::exit(2);
                    }
                },
                &dir.join("pcsc.trail"),
            )
        });
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    let _ = pcscd::wait_reader(&ctx, pcscd::READER, false, Duration::from_secs(10));
    result
}

fn main() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("temp dir: {e}");
            std::process::exit(2);
        }
    };
    let emu = new_card(dir.path(), "emulated.card");
    let direct = measure(
        "emulated, called directly",
        &|| match EmulatedCard::open(&emu) {
            Ok(c) => Card::new(Box::new(c)),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        &dir.path().join("emulated.trail"),
    );
    let mut rows = match direct {
        Ok(r) => r,
        Err(e) => {
            eprintln!("emulated card: {e}");
            std::process::exit(2);
        }
    };
    let pcsc = through_pcscd(dir.path());
    let why_not = match pcsc {
        Ok(r) => {
            rows.extend(r);
            None
        }
        Err(e) => Some(e),
    };
    // Group each operation's backends together.
    rows.sort_by_key(|r| r.what);

    println!();
    println!(
        "| {:<36} | {:<28} | {:>6} | {:>10} | {:>10} | {:>10} |",
        "operation", "card", "n", "p50", "p99", "per second"
    );
    println!(
        "|{:-<38}|{:-<30}|{:->8}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<36} | {:<28} | {:>6} | {:>10} | {:>10} | {:>10.0} |",
            r.what,
            r.backend,
            r.n,
            format!("{:.1?}", r.p50),
            format!("{:.1?}", r.p99),
            r.per_s
        );
    }
    if let Some(why) = why_not {
        println!("\nno PC/SC rows: {why}");
    }
}
