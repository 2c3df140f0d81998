//! The real binary in a real window: `tally-view --demo` under Xvfb, pages turned with
//! synthetic key presses (xdotool), and the trail checked to have grown by the records
//! a reader's page turns cost.
//!
//! The display comes from `TALLY_XVFB_DISPLAY`; without it the test starts its own
//! `Xvfb` on a free display number. Needs `Xvfb` and `xdotool` (scripts/setup.sh).

// Setup helpers outside #[test] fns: a failed setup should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::{Trail, Usage};
use tally_core::{Card, CardIdentity};

/// Kills a child process of this test when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        // SIGTERM first, so Xvfb removes its lock file and socket.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_xvfb() -> (String, Option<Reap>) {
    if let Ok(d) = std::env::var("TALLY_XVFB_DISPLAY") {
        return (d, None);
    }
    for n in 90..120 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (scripts/setup.sh installs it)");
        let reap = Reap(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                return (display, Some(reap));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Xvfb {display} did not start");
    }
    panic!("no free X display number");
}

fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool is installed (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn usages(home: &Path, identity: &CardIdentity) -> Vec<Usage> {
    let path = home
        .join("trails")
        .join(format!("{}.trail", identity.serial));
    let Ok(mut t) = Trail::open(&path, identity) else {
        return Vec::new();
    };
    t.verify_offline().expect("the trail verifies");
    t.verified_bodies().map(|(_, b)| b.usage).collect()
}

fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    wait_for_with(what, secs, String::new, f)
}

fn wait_for_with(what: &str, secs: u64, state: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what} {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_window_turns_pages_and_the_trail_grows() {
    let (display, _xvfb) = start_xvfb();
    let home = tempfile::tempdir().unwrap();
    let viewer = Command::new(env!("CARGO_BIN_EXE_tally-view"))
        .arg("--demo")
        .env("DISPLAY", &display)
        .env("TALLY_HOME", home.path())
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _viewer = Reap(viewer);

    // The demo card was copied into the home; its identity names the trail.
    let card_path = home.path().join("demo-card.state");
    wait_for("the demo card", 30, || card_path.exists());
    let mut card = Card::new(Box::new(EmulatedCard::open(&card_path).unwrap()));
    let identity = card.identity().unwrap();
    drop(card);

    let mut window = String::new();
    wait_for("the window", 60, || {
        window = xdotool(
            &display,
            &["search", "--onlyvisible", "--name", "Tally reader"],
        );
        window = window.lines().next().unwrap_or("").to_string();
        !window.is_empty()
    });
    // No window manager: give the window the keyboard focus ourselves (time is only
    // charged while the window is focused, so the time record below proves it).
    wait_for("the keyboard focus", 30, || {
        xdotool(&display, &["windowfocus", &window]);
        xdotool(&display, &["getwindowfocus"]) == window
    });
    wait_for(
        "the open record, the first page block and a time unit",
        60,
        || {
            let u = usages(home.path(), &identity);
            u.iter().any(|u| matches!(u, Usage::Open { .. }))
                && u.iter().any(|u| matches!(u, Usage::Pages { .. }))
                && u.iter().any(|u| matches!(u, Usage::Time { .. }))
        },
    );
    let before = usages(home.path(), &identity).len();

    // Twelve page views: six forward, six back. The first block prepaid ten (the
    // sample has seven pages), so a second block must be charged.
    // Each key is sent once the window's title shows the page the last one turned to, and
    // sent again only if the window never saw it: a synthetic key press can be lost when the
    // machine is loaded, and a lost one would leave one page view too few.
    let title = || xdotool(&display, &["getwindowname", &window]);
    let mut page = 1u32;
    wait_for_with("the title to show page 1", 30, title, || {
        title().contains("page 1 of 7")
    });
    for key in std::iter::repeat_n("Right", 6).chain(std::iter::repeat_n("Left", 6)) {
        page = if key == "Right" {
            (page + 1).min(7)
        } else {
            (page - 1).max(1)
        };
        let want = format!("page {page} of 7");
        let mut shown = false;
        for _attempt in 0..3 {
            xdotool(&display, &["key", "--window", &window, key]);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if title().contains(&want) {
                    shown = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if shown {
                break;
            }
        }
        assert!(
            shown,
            "{key} never showed {want}: the title is {:?}",
            title()
        );
    }
    let shown = || format!("{:?}", usages(home.path(), &identity));
    wait_for_with("a second page block", 30, shown, || {
        usages(home.path(), &identity)
            .iter()
            .filter(|u| matches!(u, Usage::Pages { .. }))
            .count()
            == 2
    });
    let after = usages(home.path(), &identity);
    assert!(after.len() > before, "the trail grew");
    let blocks: Vec<(u32, u32)> = after
        .iter()
        .filter_map(|u| match u {
            Usage::Pages { first, count, .. } => Some((*first, *count)),
            _ => None,
        })
        .collect();
    // The first block started at page 1 (view 1); views 2–7 are pages 2–7, views 8–10
    // pages 6–4, so view 11, page 3, started the second block.
    assert_eq!(blocks, vec![(1, 10), (3, 10)]);
}
