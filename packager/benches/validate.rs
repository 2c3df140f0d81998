//! Validation server speed: VAL_REQ/s and latency (p50, p99) through real HTTP on
//! loopback against `tally-pack serve` (release build, SQLite WAL + synchronous=FULL),
//! with 1, 8 and 32 concurrent clients, each its own issued copy validating in a loop
//! (ICV V7 over the sample package, ECIES, verify the signed VAL_OK, roll the UI).
//!
//! `cargo bench -p tally-packager --bench validate` prints a table; nothing is asserted.
//! Bounded: at most `MAX_REQUESTS` requests and `MAX_SECONDS` per row. The clients run on
//! the same machine as the server, so the numbers include the clients' own work.

#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tally_core::card::Serial;
use tally_core::crypto::PublicKey;
use tally_core::icv::{IcvVariant, executable_icv};
use tally_core::keyfile::Keyfile;
use tally_core::policy::SystemClock;
use tally_core::validation::ClientState;
use tally_core::vendor::VendorPublic;

#[path = "support/soft_card.rs"]
#[allow(
    dead_code,
    reason = "shared with the scale benchmark, which uses all of it"
)]
mod soft_card;
use soft_card::SoftCard;

const PASSWORD: &str = "correct horse battery staple";
const MAX_REQUESTS: usize = 3000;
const MAX_SECONDS: u64 = 8;
const VIEWER: &[u8] = b"benchmark viewer build";

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pack(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally-pack"))
        .env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tally-pack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Copy {
    state: ClientState,
    card: SoftCard,
    key: PublicKey,
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let setup = Instant::now();
    pack(dir, &["vendor", "init", "--name", "Bench Press"]);
    std::fs::create_dir_all(dir.join("packages")).unwrap();
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf");
    pack(
        dir,
        &["pack", pdf.to_str().unwrap(), "-o", &d("packages/doc.tly")],
    );
    std::fs::write(dir.join("viewer"), VIEWER).unwrap();
    pack(dir, &["viewer", "register", &d("viewer")]);
    let vendor =
        VendorPublic::from_export(&std::fs::read(dir.join("vendor/vendor.pub")).unwrap()).unwrap();
    // 32 customers, one copy each.
    let mut copies = Vec::new();
    for i in 0..32u8 {
        let soft = SoftCard::new(Serial([i; 16]));
        let export = dir.join(format!("c{i}.card"));
        std::fs::write(&export, soft.export()).unwrap();
        let name = format!("Reader {i}");
        pack(
            dir,
            &[
                "customer",
                "add",
                "--allow-emulated-card",
                "--name",
                &name,
                "--card",
                export.to_str().unwrap(),
            ],
        );
        let kf = dir.join(format!("c{i}.key"));
        pack(
            dir,
            &[
                "issue",
                "--customer",
                &name,
                "--allow-emulated-card",
                "--package",
                &d("packages/doc.tly"),
                "-o",
                kf.to_str().unwrap(),
                "--server",
                "http://127.0.0.1:1/",
            ],
        );
        let v = Keyfile::open(&std::fs::read(&kf).unwrap(), std::slice::from_ref(&vendor)).unwrap();
        copies.push(Copy {
            state: ClientState::new(v.licence()),
            card: soft,
            key: v.server().unwrap().public_key.clone(),
        });
    }
    let package = Arc::new(std::fs::read(dir.join("packages/doc.tly")).unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally-pack"))
        .env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--packages",
            &d("packages"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(child);
    let url = format!(
        "{}/v1/validate",
        line.trim().strip_prefix("listening on ").unwrap()
    );
    println!(
        "setup {:.1} s; package {} bytes; ICV V7; at most {MAX_REQUESTS} requests or {MAX_SECONDS} s per row",
        setup.elapsed().as_secs_f64(),
        package.len()
    );
    println!(
        "{:>8} {:>9} {:>8} {:>11} {:>10} {:>10}",
        "clients", "requests", "seconds", "VAL_REQ/s", "p50 ms", "p99 ms"
    );
    let viewer_icv = executable_icv(VIEWER).unwrap();
    for clients in [1usize, 8, 32] {
        let count = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(clients));
        let deadline = Duration::from_secs(MAX_SECONDS);
        let mut handles = Vec::new();
        let mut mine: Vec<Copy> = copies.drain(..clients).collect();
        let start = Instant::now();
        for _ in 0..clients {
            let mut copy = mine.pop().unwrap();
            let (count, barrier, package, url) =
                (count.clone(), barrier.clone(), package.clone(), url.clone());
            handles.push(std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut lat = Vec::new();
                barrier.wait();
                let t0 = Instant::now();
                while t0.elapsed() < deadline
                    && count.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                {
                    let s = Instant::now();
                    let env = copy
                        .state
                        .prepare(
                            IcvVariant::V7,
                            &package,
                            &copy.key,
                            viewer_icv,
                            &SystemClock,
                            &mut copy.card,
                            &mut rand_core::OsRng,
                        )
                        .unwrap();
                    let mut r = agent
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .send(&env[..])
                        .unwrap();
                    let body = r.body_mut().read_to_vec().unwrap();
                    copy.state.accept(&body, &copy.key).unwrap();
                    lat.push(s.elapsed());
                }
                (copy, lat)
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            let (copy, l) = h.join().unwrap();
            lat.extend(l);
            copies.push(copy);
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort();
        let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1e3;
        println!(
            "{clients:>8} {:>9} {secs:>8.2} {:>11.0} {:>10.2} {:>10.2}",
            lat.len(),
            lat.len() as f64 / secs,
            pct(50),
            pct(99)
        );
    }
}
