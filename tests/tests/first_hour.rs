//! The first hour of a publisher and a reader: what the two CLIs say, sentence by
//! sentence. Help without patent citations or protocol jargon, with the exit codes; the
//! audit's report (plurals, counter ranges, no advice to compare with a counter the
//! publisher cannot see) and its error for a missing trail file; re-issuing a licence
//! (the publisher chooses what happens to the old one); the window's error without a
//! display. Restore's report is in `trail_restore_cli.rs`, the unregistered viewer build's
//! refusal in `validate_cli.rs`, a written-off licence in the audit in
//! `trail_restore_cli.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use tally_core::card::emulated::EmulatedCard;
use tally_core::trail::{Body, LicenceId, Trail, Usage};
use tally_core::{Card, CardIdentity};
use tally_tests::{pack, publisher_and_reader, view_at};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The help of `bin` and of every subcommand below it, with the command line of each.
fn every_help(bin: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let o = assert_cmd::Command::cargo_bin(bin)
            .unwrap()
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(o.status.success(), "{bin} {path:?} --help: {o:?}");
        let help = text(&o.stdout);
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.push((format!("{bin} {}", path.join(" ")), help));
    }
    out
}

#[test]
fn help_is_plain_and_names_the_exit_codes() {
    for bin in ["tally-pack", "tally-view"] {
        let helps = every_help(bin);
        assert!(helps.len() > 10, "{bin}: {} help texts", helps.len());
        for (cmd, help) in &helps {
            for word in [
                "[00",
                "claim",
                "WO 98",
                "EP 0",
                "VAL_REQ",
                "VAL_OK",
                "ICV",
                "ValidateTrail",
                "cover page only",
                "seed",
            ] {
                assert!(
                    !help.contains(word),
                    "`{cmd} --help` says {word:?}:\n{help}"
                );
            }
        }
    }
    let top = |bin: &str| {
        text(
            &assert_cmd::Command::cargo_bin(bin)
                .unwrap()
                .arg("--help")
                .output()
                .unwrap()
                .stdout,
        )
    };
    assert!(top("tally-pack").ends_with(
        "Exit codes:
  0  done
  1  a check failed: a file does not verify, a wrong password, an input refused
  2  a usage error, or a file or the network could not be read or written\n"
    ));
    let view = top("tally-view");
    assert!(view.contains(
        "Your card and trail live in TALLY_HOME (default ~/.local/share/tally):
card.state (an emulated card) and trails/<card serial>.trail (the trail a publisher audits).
"
    ));
    assert!(view.ends_with(
        "Exit codes:
  0  done (status: reading is allowed)
  1  a check failed (status: reading is not allowed); the message says which and why
  2  a usage error, or a file, the card or the network could not be read or written\n"
    ));
}

/// Issues `<dir>/<name>` to Ada for `package` with `extra` flags; returns the output.
fn issue(dir: &Path, package: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card"])
        .args(["--pages", "30", "--opens", "5", "--package"])
        .arg(package)
        .arg("-o")
        .arg(dir.join(name))
        .args(extra)
        .output()
        .unwrap()
}

fn licence_of(out: &std::process::Output) -> String {
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("licence: "))
        .unwrap()
        .to_string()
}

#[test]
fn the_audit_speaks_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    let package = publisher_and_reader(dir, &home);
    let out = issue(dir, &package, "ada.key", &[]);
    assert!(out.status.success(), "{out:?}");
    let licence = licence_of(&out);

    // The file the README once named does not exist: the error says where the trail is.
    let (identity, _) =
        CardIdentity::from_export(&std::fs::read(dir.join("reader.card")).unwrap()).unwrap();
    let out = pack(dir)
        .args(["audit", "trail-copy.trail", "--customer", "Ada"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        format!(
            "tally-pack: there is no file trail-copy.trail: Ada's trail is the file trails/{}.trail in their Tally folder (TALLY_HOME, by default ~/.local/share/tally); ask them to send it, or audit the validation server's backup of it (`tally-pack audit --customer Ada`)\n",
            identity.serial
        )
    );

    // One opening, one page block, one time unit, signed by the reader's card.
    let mut card = Card::new(Box::new(
        EmulatedCard::open(home.join("card.state")).unwrap(),
    ));
    let id = card.identity().unwrap();
    let path: PathBuf = home.join("trails").join(format!("{}.trail", id.serial));
    let mut trail = Trail::open_or_create(&path, &mut card, &id).unwrap();
    let lic = LicenceId::from_hex(&licence).unwrap();
    for usage in [
        Usage::Open { licence: lic },
        Usage::Pages {
            licence: lic,
            first: 1,
            count: 10,
        },
        Usage::Time {
            licence: lic,
            seconds: 60,
        },
    ] {
        trail.write(&mut card, &Body::now(usage)).unwrap();
    }
    let first = trail.records().first().unwrap().counter;
    let last = trail.records().last().unwrap().counter;
    let n = trail.records().len();
    drop(trail);

    let out = pack(dir)
        .arg("audit")
        .arg(&path)
        .args(["--customer", "Ada"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = text(&out.stdout);
    assert_eq!(
        report,
        format!(
            "trail: {}
customer: Ada (card {})
verified: {n} records (counters {first} to {last}); every signature checked
note: the validation server holds no backup of this card's trail, so a copy cut short cannot be told from a complete one here (the reader's `tally-view trail vouch` sends one)
licence {licence} (sample): 1 opening, 10 page views prepaid in 1 block, 1 min 0 s in 1 time unit, 0 pages printed (active: 20 pages · 4 openings left)
",
            path.display(),
            id.serial
        )
    );
    assert!(!report.contains("card's counter"), "{report}");
}

#[test]
fn re_issuing_makes_the_publisher_choose() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let package = publisher_and_reader(dir, &dir.join("home"));
    let first = issue(dir, &package, "one.key", &[]);
    assert!(first.status.success(), "{first:?}");
    let one = licence_of(&first);

    // Again, even with --force: refused, naming both choices.
    let again = issue(dir, &package, "one.key", &["--force"]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    // Exact but for the issue time, which the registry recorded.
    let err = text(&again.stderr);
    let (head, tail) = err.split_once(" (issued ").unwrap();
    assert_eq!(
        head,
        format!("tally-pack: Ada already holds licence {one} for \"sample\"")
    );
    assert!(
        tail.ends_with(
            "). Give --supersede to revoke the old licence on the validation server (it is refused at its next online check), or --keep-both to leave it valid beside the new one\n"
        ),
        "{err}"
    );
    assert!(!dir.join("two.key").exists());

    // Both kept.
    let kept = issue(dir, &package, "two.key", &["--keep-both"]);
    assert!(kept.status.success(), "{kept:?}");
    let two = licence_of(&kept);
    assert!(
        text(&kept.stdout).contains(&format!(
            "kept: licence {one} stays valid beside this one\n"
        )),
        "{kept:?}"
    );

    // Superseded: both earlier licences are revoked on the server.
    let sup = issue(dir, &package, "three.key", &["--supersede"]);
    assert!(sup.status.success(), "{sup:?}");
    let three = licence_of(&sup);
    let stdout = text(&sup.stdout);
    for old in [&one, &two] {
        assert!(
            stdout.contains(&format!(
                "superseded: licence {old} is revoked on the validation server (it is refused at its next online check)\n"
            )),
            "{stdout}"
        );
    }
    let copies = pack(dir).arg("copies").output().unwrap();
    let copies = text(&copies.stdout);
    for (lic, status) in [(&one, "revoked"), (&two, "revoked"), (&three, "active")] {
        assert!(
            copies
                .lines()
                .any(|l| l.contains(lic.as_str()) && l.contains(status)),
            "{lic} {status}: {copies}"
        );
    }
    // Only the newest one is held now: a further re-issue names only it.
    let again = issue(dir, &package, "four.key", &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains(&format!("Ada already holds licence {three} for")),
        "{again:?}"
    );
}

#[test]
fn without_a_display_the_window_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = view_at(tmp.path())
        .args(["book.tly", "ada.tkey"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        "tally-view: cannot open a window: no display is set (DISPLAY and WAYLAND_DISPLAY are empty): run it in a desktop session or under an X server such as Xvfb\n"
    );
}
