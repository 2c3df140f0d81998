//! The README's "A rental, end to end" runs as written: its ```sh block is taken from
//! README.md and run line by line in one `bash`, with the built `tally-pack` and
//! `tally-view` on `PATH`, a real `tally-pack serve` on loopback (started by the block's
//! own `&` line) and the reading step (`tally-view book.tly ada.tkey`) in a real window
//! under Xvfb, which this test reads in (a page turned, the time charged) and closes with
//! Ctrl+Q through xdotool, as a reader would.
//!
//! Two things differ from a reader's shell, and only these: the server's port
//! (`127.0.0.1:8680` in the README) is replaced by a free one, so parallel runs on one
//! machine don't collide; and `TMPDIR` and `HOME` point into this test's temporary folder,
//! so the block's `mktemp -d` scratch folder is removed afterwards. The display comes from
//! `TALLY_XVFB_DISPLAY` (scripts/test.sh); without it the test starts its own `Xvfb`.

// Setup helpers outside #[test] fns: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tally_core::Card;
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::Usage;

const README_PORT: &str = "127.0.0.1:8680";

/// The commands of the README's rental block: comments and blank lines dropped,
/// continuation lines (`\` at the end) joined. Each keeps its README line number.
fn readme_commands(readme: &str) -> Vec<(usize, String)> {
    let section = readme
        .find("## A rental, end to end")
        .expect("README has the section \"A rental, end to end\"");
    let rest = &readme[section..];
    let open = rest.find("```sh\n").expect("the section has a ```sh block") + "```sh\n".len();
    let close = rest[open..].find("\n```").expect("the block is closed") + open;
    let first_line = readme[..section + open].lines().count() + 1;
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in rest[open..close].lines().enumerate() {
        let n = first_line + i;
        let (start, mut text) = pending.take().unwrap_or((n, String::new()));
        let trimmed = line.trim();
        if text.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            text.push_str(head);
            pending = Some((start, text));
            continue;
        }
        text.push_str(line);
        out.push((start, text));
    }
    assert!(pending.is_none(), "the block ends with a continuation line");
    out
}

/// Kills a child process (and, for bash, its process group) when dropped.
struct Reap {
    child: Child,
    group: bool,
}

impl Drop for Reap {
    fn drop(&mut self) {
        let id = self.child.id().to_string();
        let target = if self.group { format!("-{id}") } else { id };
        // SIGTERM first, so Xvfb removes its lock file and the server its socket.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &target])
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &target])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool is installed (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The reader's home the block made: `<scratch>/ada`, the scratch folder being the one
/// `mktemp -d` made in `tmp`.
fn reader_home(tmp: &Path) -> Option<PathBuf> {
    std::fs::read_dir(tmp)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("ada"))
        .find(|h| h.join("card.state").exists())
}

/// Waits up to `secs` for `f`, or until `stop` is set; false on timeout or stop.
fn wait_for(secs: u64, stop: &AtomicBool, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The reader in the window: waits for it, gives it the keyboard focus (time is charged
/// only while it has it), waits for the opening, the first page block and the first time
/// unit in the trail, turns a page, and closes the window with Ctrl+Q. Returns what it saw
/// (for the failure message).
fn read_in_the_window(display: &str, tmp: &Path, stop: &AtomicBool) -> Result<(), String> {
    let mut window = String::new();
    if !wait_for(300, stop, || {
        window = xdotool(
            display,
            &["search", "--onlyvisible", "--name", "Tally reader"],
        )
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
        !window.is_empty()
    }) {
        return Err("the reading window never appeared".into());
    }
    let home = reader_home(tmp).ok_or("no reader home with a card in the scratch folder")?;
    let mut card = Card::new(Box::new(
        EmulatedCard::open(home.join("card.state")).map_err(|e| e.to_string())?,
    ));
    let identity = card.identity().map_err(|e| e.to_string())?;
    drop(card);
    // No window manager: give the window the keyboard focus ourselves.
    if !wait_for(30, stop, || {
        xdotool(display, &["windowfocus", &window]);
        xdotool(display, &["getwindowfocus"]) == window
    }) {
        return Err("the window never took the keyboard focus".into());
    }
    let read = |u: &[Usage]| {
        u.iter().any(|u| matches!(u, Usage::Open { .. }))
            && u.iter().any(|u| matches!(u, Usage::Pages { .. }))
            && u.iter().any(|u| matches!(u, Usage::Time { .. }))
    };
    if !wait_for(120, stop, || read(&tally_tests::usages(&home, &identity))) {
        return Err(format!(
            "no opening, page block and time unit in the trail: {:?}",
            tally_tests::usages(&home, &identity)
        ));
    }
    xdotool(display, &["key", "--window", &window, "Right"]);
    std::thread::sleep(Duration::from_millis(300));
    // Ctrl+Q closes the window as its close button does (the trail is already safe).
    if !wait_for(30, stop, || {
        xdotool(display, &["key", "--window", &window, "ctrl+q"]);
        std::thread::sleep(Duration::from_millis(500));
        xdotool(
            display,
            &["search", "--onlyvisible", "--name", "Tally reader"],
        )
        .is_empty()
    }) {
        return Err("Ctrl+Q did not close the window".into());
    }
    Ok(())
}

#[test]
fn the_readme_rental_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(
        commands.iter().any(|(_, c)| c.contains(README_PORT)),
        "the block's server listens on {README_PORT}"
    );
    let reading = commands
        .iter()
        .position(|(_, c)| c.starts_with("tally-view book.tly ada.tkey"))
        .expect("the block opens the reading window");

    let (display, _xvfb) = tally_tests::xvfb(140);
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let port = free_port();

    // One script: a marker before each command names its README line, so a failure says
    // which line failed; `set -e` stops at the first.
    let mut script = String::from("set -euo pipefail\n");
    for (line, command) in &commands {
        script.push_str(&format!("echo '@@ README line {line}' >&2\n"));
        script.push_str(&command.replace(README_PORT, &format!("127.0.0.1:{port}")));
        script.push('\n');
    }
    script.push_str("echo '@@ done' >&2\n");
    let script_path = tmp.path().join("rental.sh");
    std::fs::File::create(&script_path)
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();

    let bins = assert_cmd::cargo::cargo_bin("tally-pack");
    let bins = bins.parent().unwrap();
    assert!(
        bins.join("tally-view").exists(),
        "build the binaries first (cargo build --bins)"
    );
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // As scripts/test.sh does: a private runtime folder, so Mesa does not complain.
    let runtime = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let d = tmp.path().join("runtime");
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            d
        }
    };
    let out_path = tmp.path().join("stdout");
    let err_path = tmp.path().join("stderr");
    let child = Command::new("bash")
        .arg(&script_path)
        .current_dir(&root)
        .env("PATH", path)
        .env("TMPDIR", &scratch)
        .env("HOME", tmp.path())
        .env("DISPLAY", &display)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("TALLY_HOME")
        .env_remove("TALLY_CARD")
        .env_remove("TALLY_VENDOR")
        .env_remove("TALLY_VENDOR_PASSWORD")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut bash = Reap { child, group: true };

    let stop = AtomicBool::new(false);
    let (window, status) = std::thread::scope(|s| {
        let reader = s.spawn(|| read_in_the_window(&display, &scratch, &stop));
        let start = Instant::now();
        let status = loop {
            if let Some(st) = bash.child.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() > Duration::from_secs(900) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        stop.store(true, Ordering::SeqCst);
        (reader.join().unwrap(), status)
    });
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let failed_at = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("@@ "))
        .unwrap_or("")
        .to_string();
    let report = format!(
        "status {status:?}, last marker {failed_at:?}, window: {window:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // Shown with --nocapture: what a reader following the README sees.
    eprintln!("{report}");
    assert!(
        status.is_some_and(|s| s.success()) && failed_at == "@@ done",
        "the README block failed: {report}"
    );
    assert_eq!(window, Ok(()), "the reading step: {report}");
    assert!(
        reading < commands.len(),
        "the reading step is part of the block"
    );

    // What the block printed is in the reader's and the publisher's words.
    assert!(
        stdout.contains("licence ") && stdout.contains("(Sonnets): 1 opening,"),
        "the audit counts one opening: {report}"
    );
    for sentinel in ["4294967295", "71582788"] {
        assert!(
            !stdout.contains(sentinel),
            "no placeholder totals: {report}"
        );
    }
}
