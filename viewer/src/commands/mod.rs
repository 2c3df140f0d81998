//! One file per subcommand; each returns the process exit code.

pub mod answer;
pub mod archive;
pub mod backup;
pub mod card;
pub mod mirror;
pub mod open;
pub mod restore;
pub mod returning;
pub mod status;
pub mod trail;
pub mod trust;
pub mod validate;
pub mod vouch;

use std::path::PathBuf;
use tally_core::home::Home;

/// What went wrong, sorted by exit code.
#[derive(Debug)]
pub enum Failure {
    /// A check failed (exit 1).
    Check(anyhow::Error),
    /// Usage or I/O (exit 2).
    Usage(anyhow::Error),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Check(_) => 1,
            Failure::Usage(_) => 2,
        }
    }

    /// The error.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Check(e) | Failure::Usage(e) => e,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Usage(e.into())
    }
}

/// Result of a command.
pub type Outcome = Result<(), Failure>;

/// Sorts a trail error: invalid trail → exit 1, I/O or card link → exit 2.
pub fn trail_failure(e: tally_core::trail::TrailError) -> Failure {
    if e.is_invalid() {
        Failure::Check(e.into())
    } else {
        Failure::Usage(e.into())
    }
}

/// Sorts a failed exchange with the validation server: a check that failed (the trail, the
/// card, an answer or a refusal) → exit 1; the server or a file out of reach → exit 2.
pub fn contact_failure(e: tally_core::rental::ContactError) -> Failure {
    if e.is_check() {
        Failure::Check(e.into())
    } else {
        Failure::Usage(e.into())
    }
}

/// A validation server's public key given as `--server-key HEX` (130 hex digits, SEC1
/// uncompressed); anything else is a usage failure naming the flag.
pub fn parse_server_key(hex_key: &str) -> Result<tally_core::crypto::PublicKey, Failure> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| tally_core::crypto::PublicKey::from_sec1(&b).ok())
        .ok_or_else(|| {
            Failure::Usage(anyhow::anyhow!(
                "--server-key must be 130 hex digits of a P-256 public key"
            ))
        })
}

/// Keeps `trail`'s mirror copy where the home's mirror setting says (\[0062\],
/// `tally-view trail mirror`). A malformed setting is a usage failure, never "no mirror".
pub fn mirror_trail(
    trail: &mut tally_core::trail::Trail,
    home: &Home,
    serial: &tally_core::card::Serial,
) -> Result<(), Failure> {
    let path = home
        .mirror_path(serial)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    trail.set_mirror(path);
    Ok(())
}

/// After a command wrote to `trail`: says on stderr when its mirror could not be updated
/// (the record itself is safe in the trail).
pub fn warn_mirror(trail: &tally_core::trail::Trail) {
    if let Some(e) = trail.mirror_error() {
        eprintln!("warning: the mirror copy of the trail was not updated: {e}");
    }
}

/// A validation server's answer other than 200: its one-line reason, as a check failure
/// (exit 1) when it refused the request (404, 422), else as a usage failure (exit 2).
pub fn http_refusal(status: u16, body: &[u8]) -> Failure {
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    let e = anyhow::anyhow!(
        "the validation server answered HTTP {status}: {}",
        text.trim()
    );
    if matches!(status, 404 | 422) {
        Failure::Check(e)
    } else {
        Failure::Usage(e)
    }
}

/// The home folder: `--home`/`TALLY_HOME`, else the platform data folder.
pub fn home(flag: &Option<PathBuf>) -> Result<Home, Failure> {
    if let Some(p) = flag {
        return Ok(Home::new(p));
    }
    directories::ProjectDirs::from("org", "tally", "tally")
        .map(|d| Home::new(d.data_dir()))
        .ok_or_else(|| Failure::Usage(anyhow::anyhow!("no home folder: set TALLY_HOME or --home")))
}

/// `n` and the right one of `one` / `many`: "1 record", "7 records".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `n` records with their counters, in words: "7 records (counters 3251375168 to
/// 3251375174)", "1 record (counter 12)", "no records".
pub fn records_with_counters(n: u64, first: u64, last: u64) -> String {
    match n {
        0 => "no records".to_string(),
        1 => format!("1 record (counter {last})"),
        _ => format!("{n} records (counters {first} to {last})"),
    }
}
