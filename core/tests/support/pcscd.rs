//! Shared by the PC/SC tests and the card bench: a pcscd to talk to, the lock on vpcd's
//! port, and waiting for pcscd to see a card come or go.

use std::ffi::CString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcsc::{Context, ReaderState, Scope, State};
use tally_core::card::pcsc::PcscCard;

/// vpcd's first reader (port 35963), where the virtual card goes.
pub const READER: &str = "Virtual PCD 00 00";

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A pcscd this fixture started (stopped on drop), or none if one was already running.
pub struct Pcscd(Option<Child>);

impl Drop for Pcscd {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";

/// Checks pcscd answers and has vpcd's reader.
fn pcscd_ready() -> Result<Context, String> {
    let ctx = Context::establish(Scope::User).map_err(fail("connecting to pcscd"))?;
    let readers = PcscCard::list_readers().map_err(fail("listing readers"))?;
    if !readers.iter().any(|r| r == READER) {
        return Err(format!(
            "pcscd is running but has no reader {READER:?} (readers: {readers:?}); install \
             vsmartcard-vpcd (scripts/setup.sh does) and restart pcscd"
        ));
    }
    Ok(ctx)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
            .unwrap_or(false)
    })
}

pub fn ensure_pcscd() -> Result<(Pcscd, Context), String> {
    let required = std::env::var("TALLY_PCSCD").is_ok_and(|v| v == "1");
    match pcscd_ready() {
        Ok(ctx) => return Ok((Pcscd(None), ctx)),
        Err(e) if required => {
            return Err(format!(
                "TALLY_PCSCD=1 says a pcscd is up for this run, but: {e}"
            ));
        }
        Err(e) if Path::new(PCSCD_SOCKET).exists() => {
            return Err(format!(
                "{PCSCD_SOCKET} exists but pcscd does not answer ({e}); stop the stale pcscd \
                 or remove the socket"
            ));
        }
        Err(_) => {}
    }
    if !is_root() {
        return Err(
            "pcscd is not running and only root can start it: run `scripts/test.sh` (starts \
             its own and sets TALLY_PCSCD=1), or start `pcscd -f` first"
                .into(),
        );
    }
    let child = Command::new("pcscd")
        .arg("-f")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(fail("starting pcscd -f (is the pcscd package installed?)"))?;
    let guard = Pcscd(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Path::new(PCSCD_SOCKET).exists() {
            // bind() comes just before listen(): a client this early gets NoService.
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(ctx) = pcscd_ready() {
                return Ok((guard, ctx));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "started pcscd -f but it did not answer within 10 s: {}",
                pcscd_ready().err().unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Blocks until the reader is empty (`present == false`) or holds a responsive card.
///
/// Pitfall 3 of SETUP-NOTES: pcscd reports a departed card as present until its next
/// poll (~400 ms), so starting the next card must wait for EMPTY first.
pub fn wait_reader(
    ctx: &Context,
    reader: &str,
    present: bool,
    timeout: Duration,
) -> Result<(), String> {
    let name = CString::new(reader).map_err(fail("reader name"))?;
    let mut rs = [ReaderState::new(name, State::UNAWARE)];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ctx.get_status_change(left, &mut rs) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout) => {
                return Err(format!(
                    "reader {reader:?} not {} after {timeout:?} (state {:?})",
                    if present { "holding a card" } else { "empty" },
                    rs[0].event_state()
                ));
            }
            Err(e) => return Err(format!("waiting for {reader:?}: {e}")),
        }
        let st = rs[0].event_state();
        if st.intersects(State::UNKNOWN | State::UNAVAILABLE) {
            return Err(format!("reader {reader:?} unknown to pcscd ({st:?})"));
        }
        if present && st.contains(State::PRESENT) {
            if st.contains(State::MUTE) {
                return Err(format!("pcscd finds the card mute (bad ATR?): {st:?}"));
            }
            return Ok(());
        }
        if !present && st.contains(State::EMPTY) {
            return Ok(());
        }
        rs[0].sync_current_state();
    }
}

/// An exclusive advisory lock on a file, held until dropped.
#[derive(Debug)]
pub struct PortLock(std::fs::File);

impl Drop for PortLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The lock that gives one process at a time vpcd's port (tests and the card bench).
pub fn vpcd_port_lock() -> std::io::Result<PortLock> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(std::env::temp_dir().join("tally-vpcd-35963.lock"))?;
    file.lock()?;
    Ok(PortLock(file))
}
