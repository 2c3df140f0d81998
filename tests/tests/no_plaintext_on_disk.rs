//! No decrypted byte reaches the disk (issue 7, DESIGN "Package": plaintext lives only in
//! memory). The real `tally-view --demo` reads the sample under Xvfb, pages are turned,
//! and meanwhile:
//! - every file the viewer process holds open is read through `/proc/PID/fd` as soon as it
//!   appears (so a temporary file that was unlinked right after creation is seen too);
//! - afterwards every file under its data, temp, cache, config and home folders
//!   (`TALLY_HOME`, `TMPDIR`, `HOME`, `XDG_*`) is read.
//!
//! Each file is searched for distinctive 32-byte pieces of the sample's plaintext
//! (`samples/sample.pdf`). Files created and deleted between two looks of the watcher, and
//! writes outside those folders by files it never sees open, are beyond this test.
//!
//! The display comes from `TALLY_XVFB_DISPLAY`; without it the test starts its own Xvfb.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_core::Card;
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::Usage;
use tally_tests::Reap;

const PIECE: usize = 32;

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool is installed (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Distinctive pieces of the plaintext: spread over the whole file, each with many
/// different byte values (so that padding or common PDF keywords can't match by chance).
fn pieces(plain: &[u8]) -> Vec<Vec<u8>> {
    let step = (plain.len() / 96).max(1);
    (0..plain.len().saturating_sub(PIECE))
        .step_by(step)
        .map(|i| plain[i..i + PIECE].to_vec())
        .filter(|p| p.iter().collect::<BTreeSet<_>>().len() >= 14)
        .collect()
}

/// The pieces found in `bytes`.
fn found(bytes: &[u8], pieces: &[Vec<u8>]) -> usize {
    pieces
        .iter()
        .filter(|p| memchr::memmem::find(bytes, p).is_some())
        .count()
}

fn is_system(path: &str) -> bool {
    [
        "/usr/",
        "/lib",
        "/etc/",
        "/proc/",
        "/sys/",
        "/var/cache/fontconfig/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || (path.starts_with("/dev/") && !path.starts_with("/dev/shm/"))
        || path.ends_with(".so")
        || path.contains(".so.")
}

/// Watches `/proc/PID/fd`: every regular file the process holds open, read once when first
/// seen (through the fd, so unlinked files count). Returns what it found, by path.
fn watch(
    pid: u32,
    pieces: Arc<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    seen: Arc<Mutex<BTreeSet<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
        while !stop.load(Ordering::Relaxed) {
            let Ok(entries) = std::fs::read_dir(&fd_dir) else {
                break;
            };
            for e in entries.flatten() {
                let Ok(target) = std::fs::read_link(e.path()) else {
                    continue;
                };
                let target = target.to_string_lossy().into_owned();
                if !target.starts_with('/') || is_system(&target) {
                    continue;
                }
                if !seen.lock().unwrap().insert(target.clone()) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(e.path()) else {
                    continue;
                };
                if !meta.is_file() || meta.len() > 64 << 20 {
                    continue;
                }
                if let Ok(bytes) = std::fs::read(e.path()) {
                    let n = found(&bytes, &pieces);
                    if n > 0 {
                        hits.lock().unwrap().insert(target, n);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Every file under `dir`, with the pieces found in it.
fn scan_tree(dir: &Path, pieces: &[Vec<u8>], files: &mut usize) -> BTreeMap<String, usize> {
    let mut hits = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                *files += 1;
                if let Ok(bytes) = std::fs::read(e.path()) {
                    let n = found(&bytes, pieces);
                    if n > 0 {
                        hits.insert(e.path().display().to_string(), n);
                    }
                }
            }
        }
    }
    hits
}

#[test]
fn reading_a_document_writes_no_plaintext_to_disk() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let plain = std::fs::read(samples.join("sample.pdf")).unwrap();
    let pieces = Arc::new(pieces(&plain));
    assert!(
        pieces.len() >= 40,
        "only {} distinctive pieces",
        pieces.len()
    );
    // The check can fail: the plaintext itself is caught, the package and keyfile are not.
    assert_eq!(found(&plain, &pieces), pieces.len());
    assert_eq!(
        found(&std::fs::read(samples.join("sample.tly")).unwrap(), &pieces),
        0
    );
    assert_eq!(
        found(
            &std::fs::read(samples.join("sample.tkey")).unwrap(),
            &pieces
        ),
        0
    );

    let (display, _xvfb) = tally_tests::xvfb(120);
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<(&str, PathBuf)> = [
        "TALLY_HOME",
        "TMPDIR",
        "HOME",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
    ]
    .iter()
    .map(|v| (*v, root.path().join(v.to_lowercase())))
    .collect();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("tally-view"));
    cmd.arg("--demo")
        .env("DISPLAY", &display)
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("TALLY_CARD")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (var, dir) in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        cmd.env(var, dir);
    }
    let home = &dirs[0].1;
    let viewer = Reap(cmd.spawn().unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(Mutex::new(BTreeMap::new()));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let watcher = watch(
        viewer.0.id(),
        pieces.clone(),
        stop.clone(),
        hits.clone(),
        seen.clone(),
    );

    let card_path = home.join("demo-card.state");
    wait_for("the demo card", 30, || card_path.exists());
    let identity = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()))
        .identity()
        .unwrap();
    let mut window = String::new();
    wait_for("the window", 60, || {
        window = xdotool(
            &display,
            &["search", "--onlyvisible", "--name", "Tally reader"],
        );
        window = window.lines().next().unwrap_or("").to_string();
        !window.is_empty()
    });
    wait_for("the keyboard focus", 30, || {
        xdotool(&display, &["windowfocus", &window]);
        xdotool(&display, &["getwindowfocus"]) == window
    });
    // The document is decrypted and its first page shown once these records exist.
    wait_for("the open record and the first page block", 60, || {
        let u = tally_tests::usages(home, &identity);
        u.iter().any(|u| matches!(u, Usage::Open { .. }))
            && u.iter().any(|u| matches!(u, Usage::Pages { .. }))
    });
    for key in ["Right", "Right", "Right", "Left"] {
        xdotool(&display, &["key", "--window", &window, key]);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));

    let mut files = 0;
    let mut on_disk = BTreeMap::new();
    for (_, dir) in &dirs {
        on_disk.extend(scan_tree(dir, &pieces, &mut files));
    }
    drop(viewer);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    // And what the viewer left behind when it closed.
    for (_, dir) in &dirs {
        on_disk.extend(scan_tree(dir, &pieces, &mut files));
    }
    let opened = seen.lock().unwrap().clone();
    let hits = hits.lock().unwrap().clone();
    println!(
        "no plaintext on disk: {} pieces of the plaintext searched in {} files the viewer \
         held open and {files} file reads under its folders",
        pieces.len(),
        opened.len()
    );
    println!("files the viewer held open: {opened:?}");
    assert!(
        opened.iter().any(|p| Path::new(p).starts_with(home)),
        "the watcher saw the viewer's files: {opened:?}"
    );
    assert!(
        hits.is_empty(),
        "plaintext in files the viewer held open: {hits:?}"
    );
    assert!(on_disk.is_empty(), "plaintext left on disk: {on_disk:?}");
}
