//! Shared helpers for Tally's end-to-end tests (the tests live in `tests/tests/`): the
//! publisher's and the reader's commands with their environment, and a real
//! `tally-pack serve` on loopback that stops when dropped.

use assert_cmd::Command;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// The vendor password every end-to-end test uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// `tally-pack` with the vendor folder `<dir>/vendor` and [`PASSWORD`].
///
/// # Panics
/// When the binary is not built (a test set-up failure).
pub fn pack(dir: &Path) -> Command {
    #[expect(clippy::unwrap_used, reason = "a missing binary fails the test set-up")]
    let mut c = Command::cargo_bin("tally-pack").unwrap();
    c.env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD);
    c
}

/// `tally-view` with `TALLY_HOME = home` and no `TALLY_CARD` from the caller's environment.
///
/// # Panics
/// When the binary is not built (a test set-up failure).
pub fn view_at(home: &Path) -> Command {
    #[expect(clippy::unwrap_used, reason = "a missing binary fails the test set-up")]
    let mut c = Command::cargo_bin("tally-view").unwrap();
    c.env("TALLY_HOME", home).env_remove("TALLY_CARD");
    c
}

/// The usual cast: a vendor "Test Press" in `<dir>/vendor`, a reader with an emulated card in
/// `home` who trusts it, that card registered as customer "Ada" (as an emulated card, so
/// keyfiles for it need `--allow-emulated-card`; its export at
/// `<dir>/reader.card`), and the sample PDF packed to `<dir>/packages/doc.tly`, whose path
/// is returned.
///
/// # Panics
/// When a step fails (a test set-up failure).
pub fn publisher_and_reader(dir: &Path, home: &Path) -> PathBuf {
    pack(dir)
        .args(["vendor", "init", "--name", "Test Press"])
        .assert()
        .success();
    view_at(home).args(["card", "init"]).assert().success();
    let card = dir.join("reader.card");
    view_at(home)
        .args(["card", "export", "-o"])
        .arg(&card)
        .assert()
        .success();
    pack(dir)
        .args([
            "customer",
            "add",
            "--name",
            "Ada",
            "--allow-emulated-card",
            "--card",
        ])
        .arg(&card)
        .assert()
        .success();
    view_at(home)
        .args(["trust", "add"])
        .arg(dir.join("vendor/vendor.pub"))
        .assert()
        .success();
    let package = dir.join("packages/doc.tly");
    #[expect(
        clippy::unwrap_used,
        reason = "a set-up step that fails fails the test"
    )]
    std::fs::create_dir_all(dir.join("packages")).unwrap();
    let pdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf");
    pack(dir)
        .arg("pack")
        .arg(&pdf)
        .arg("-o")
        .arg(&package)
        .assert()
        .success();
    package
}

/// `tally-pack pack samples/sample.pdf -o PACKAGE` for the vendor of `dir`.
pub fn pack_sample(dir: &Path, package: &Path) {
    pack(dir)
        .arg("pack")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pdf"))
        .arg("-o")
        .arg(package)
        .assert()
        .success();
}

/// `tally-pack issue --customer CUSTOMER --allow-emulated-card --package PACKAGE -o KEYFILE
/// EXTRA…` for the vendor of `dir` (EXTRA: limits, `--server URL`…).
pub fn issue(dir: &Path, customer: &str, package: &Path, keyfile: &Path, extra: &[&str]) {
    pack(dir)
        .args([
            "issue",
            "--customer",
            customer,
            "--allow-emulated-card",
            "--package",
        ])
        .arg(package)
        .arg("-o")
        .arg(keyfile)
        .args(extra)
        .assert()
        .success();
}

/// Issues the keyfile `<dir>/<name>` for customer "Ada" (an emulated card; several copies
/// of one document allowed) naming the validation server `url` and requiring an online check
/// every `days` days; returns it with its licence id (hex, from `issue`'s output).
///
/// # Panics
/// When `issue` fails (a test set-up failure).
#[expect(
    clippy::unwrap_used,
    reason = "a set-up step that fails fails the test"
)]
pub fn issue_online(
    dir: &Path,
    package: &Path,
    name: &str,
    url: &str,
    days: u16,
) -> (PathBuf, String) {
    let keyfile = dir.join(name);
    let out = pack(dir)
        .args(["issue", "--customer", "Ada", "--allow-emulated-card"])
        // Several copies of one document for Ada, each validated on its own.
        .args(["--keep-both", "--package"])
        .arg(package)
        .arg("-o")
        .arg(&keyfile)
        .args(["--server", url, "--require-online-every", &days.to_string()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let licence = String::from_utf8(out)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("licence: "))
        .unwrap()
        .trim()
        .to_string();
    (keyfile, licence)
}

/// A running `tally-pack serve`, killed (and waited for) when dropped.
#[derive(Debug)]
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tally-pack serve --listen LISTEN --packages <dir>/packages EXTRA…` for the vendor
/// of `dir`; returns it with the URL it printed (`listening on URL`).
///
/// # Panics
/// When the server does not start or prints something else first.
#[expect(
    clippy::unwrap_used,
    reason = "a server that does not start fails the test set-up"
)]
pub fn serve(dir: &Path, listen: &str, extra: &[&str]) -> (Server, String) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tally-pack"))
        .env("TALLY_VENDOR", dir.join("vendor"))
        .env("TALLY_VENDOR_PASSWORD", PASSWORD)
        .args(["serve", "--listen", listen, "--packages"])
        .arg(dir.join("packages"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .to_string();
    (server, url)
}

/// One raw HTTP/1.1 request to `url` (`http://HOST:PORT`); returns the status code and
/// the body as text. `body` `None` sends a GET.
///
/// # Panics
/// When the server can't be reached or answers something that is not HTTP.
#[expect(clippy::unwrap_used, reason = "an unreachable server fails the test")]
pub fn http(url: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = match body {
        Some(b) => format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            b.len()
        ),
        None => format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    };
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A child process stopped (SIGTERM, then SIGKILL after 3 s) and waited for when dropped,
/// also when a test fails.
#[derive(Debug)]
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An X display for a real-window test: scripts/test.sh's (`TALLY_XVFB_DISPLAY`), or else an
/// Xvfb of the test's own on the first free display from `:first` (each test file starts
/// from its own number, so files run in parallel do not race for one), stopped when the
/// returned [`Reap`] is dropped.
///
/// # Panics
/// When Xvfb is missing or does not start within 10 s (a test set-up failure).
pub fn xvfb(first: u32) -> (String, Option<Reap>) {
    if let Ok(d) = std::env::var("TALLY_XVFB_DISPLAY") {
        return (d, None);
    }
    for n in first..first + 30 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let display = format!(":{n}");
        let child = std::process::Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is installed (scripts/setup.sh installs it)");
        let reap = Reap(child);
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(10) {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                return (display, Some(reap));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("Xvfb {display} did not start");
    }
    panic!("no free X display number from :{first}");
}

/// The usages on the trail of the card `identity` in the reader's `home`, verified offline;
/// empty while the trail is missing or does not verify (a test polls until what it waits
/// for appears).
pub fn usages(home: &Path, identity: &tally_core::CardIdentity) -> Vec<tally_core::trail::Usage> {
    let path = tally_core::home::Home::new(home).trail_path(&identity.serial);
    let Ok(mut t) = tally_core::trail::Trail::open(&path, identity) else {
        return Vec::new();
    };
    if t.verify_offline().is_err() {
        return Vec::new();
    }
    t.verified_bodies().map(|(_, b)| b.usage).collect()
}
