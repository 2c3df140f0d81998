//! Black-box reliability (issue 7, DESIGN threats 15 and 16):
//! - a metering process SIGKILLed at random moments, 200 times: afterwards `tally-view trail
//!   verify` exits 0 every time, and the counters are contiguous;
//! - 8 processes metering one trail on one emulated card at once: valid, contiguous, nothing
//!   lost or used twice.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use assert_cmd::cargo::CommandCargoExt;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn view(home: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("tally-view").unwrap();
    c.env("TALLY_HOME", home).env_remove("TALLY_CARD");
    c
}

fn counters(home: &Path) -> Vec<u64> {
    let out = view(home)
        .args(["trail", "show", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["counter"].as_u64().unwrap())
        .collect()
}

fn assert_contiguous(c: &[u64]) {
    for w in c.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "counters not contiguous: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// A small deterministic PRNG for kill delays (xorshift), so failures can be replayed by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_or_bricks() {
    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "init", "--origin", "0"])
        .assert()
        .success();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    let seed = std::env::var("TALLY_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut kills, mut recovered_runs) = (0u32, 0u32);
    let mut written_before_kill = 0usize;
    for _ in 0..200 {
        let mut child = Command::cargo_bin("tally-meter-loop")
            .unwrap()
            .arg(home.path())
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2_000 + rng.next() % 25_000));
        // SIGKILL: no destructor, no flush — the process just stops wherever it is.
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        written_before_kill += String::from_utf8_lossy(&out.stdout).lines().count();
        kills += 1;
        let out = view(home.path())
            .args(["trail", "verify", "--json"])
            .assert()
            .success()
            .get_output()
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if !v["recovered"].is_null() {
            recovered_runs += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "bounded in time"
        );
    }
    let c = counters(home.path());
    assert_contiguous(&c);
    assert!(
        c.len() >= written_before_kill,
        "records reported written must all be in the trail"
    );
    println!(
        "SIGKILL test: {kills} kills in {:.1} s, {} records in the trail ({written_before_kill} acknowledged before kills), {recovered_runs} interrupted Writes completed from the card",
        started.elapsed().as_secs_f64(),
        c.len()
    );
}

#[test]
fn eight_processes_meter_one_card_at_once() {
    let home = tempfile::tempdir().unwrap();
    view(home.path())
        .args(["card", "init", "--origin", "500"])
        .assert()
        .success();
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    let before = counters(home.path()).len();
    let per = 25;
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::cargo_bin("tally-meter-loop")
                .unwrap()
                .arg(home.path())
                .arg(per.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut written = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a metering process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            assert!(
                written.insert(line.parse::<u64>().unwrap()),
                "counter {line} used twice"
            );
        }
    }
    assert_eq!(written.len(), 8 * per);
    view(home.path())
        .args(["trail", "verify"])
        .assert()
        .success();
    let c = counters(home.path());
    assert_contiguous(&c);
    // genesis + first nonce + 200 pages + the last nonce
    assert_eq!(c.len(), before + 8 * per + 1);
    for w in &written {
        assert!(c.contains(w));
    }
}
