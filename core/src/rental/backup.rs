//! Vouching and backup through the licence's validation server (\[0094\], \[0062\]): one
//! round of "send the trail, check the answer, write it, have the backup cover it"
//! ([`vouch_and_back_up`]), used by a viewer's `trail vouch` command and by the automatic
//! backup of a reading session ([`super::AutoBackup`]).
//!
//! The server is always the one a licence's vendor-signed keyfile names ([`BackupServer::of`]):
//! never one the reader names (T29) — a validator record of any other key counts for no
//! licence of this publisher, and the reader's own server would only back the trail up to
//! itself.
//!
//! 1. The trail file is read as it is on disk (complete frames only: a record being
//!    appended by another process is left for the next round), encrypted to the server
//!    key with the card's serial ([`crate::validation::seal_trail_request`]) and sent to
//!    `POST /v1/trail/validate`.
//! 2. The answer — `totals` records and a validator record signed by the server — is
//!    checked against exactly the records sent ([`crate::trail::validator::check_answer`])
//!    and written through the caller's [`VouchWriter`]: the same Write path and lock as
//!    metering, in one batch, so the card signs each and nothing comes between them.
//! 3. The records written after the ones sent, up to the validator, go to
//!    `POST /v1/trail/extend` ([`crate::validation::seal_backup_extension`]): the server
//!    extends its backup by them, so a restore right after a vouch loses nothing and
//!    charges nothing ([`crate::validation::extend_backup`]).

use super::online::Transport;
use crate::card::{Card, CardIdentity};
use crate::crypto::PublicKey;
use crate::keyfile::VerifiedKeyfile;
use crate::trail::body::Body;
use crate::trail::file::{HEADER_LEN, Header, parse_frames};
use crate::trail::record::Record;
use crate::trail::validator::{MAX_VOUCH_ANSWER, check_answer};
use crate::trail::{Trail, TrailError};
use crate::validation::{MAX_TRAIL_REQUEST_TRAIL, seal_backup_extension, seal_trail_request};
use std::path::Path;
use std::time::Duration;

/// The validation server that vouches for and backs up a licence's trail: the one its
/// vendor-signed keyfile names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupServer {
    /// Where it answers (the keyfile's URL, or where a reader reaches that same server).
    pub url: String,
    /// Its key, from the keyfile: every answer must be signed with it.
    pub key: PublicKey,
}

impl BackupServer {
    /// The server `keyfile` names, if it names one (T29: never a server the reader names).
    pub fn of(keyfile: &VerifiedKeyfile) -> Option<Self> {
        keyfile.server().map(|s| Self {
            url: s.url.clone(),
            key: s.public_key.clone(),
        })
    }
}

/// Where the server's answer is written: through Write, with the lock and the card
/// transaction every metering record takes (a session's meter, or a trail and card of a
/// command of its own).
pub trait VouchWriter {
    /// Writes `bodies` through Write in one batch (one lock, one card transaction, so
    /// they take consecutive counters), and returns every record of the trail with a
    /// counter above `after`, up to the last one written, in trail order.
    fn append_vouched(&mut self, bodies: &[Body], after: u64) -> Result<Vec<Record>, TrailError>;
}

/// A [`VouchWriter`] on a trail and its card held by the caller.
#[derive(Debug)]
pub struct DirectWriter<'a> {
    /// The trail (opened with the server's key trusted when it is archived).
    pub trail: &'a mut Trail,
    /// The card.
    pub card: &'a mut Card,
}

impl VouchWriter for DirectWriter<'_> {
    fn append_vouched(&mut self, bodies: &[Body], after: u64) -> Result<Vec<Record>, TrailError> {
        let written = self.trail.write_all(self.card, bodies)?;
        Ok(records_between(self.trail.records(), after, &written))
    }
}

/// The records of `records` with a counter above `after`, up to the last of `written`.
pub(crate) fn records_between(records: &[Record], after: u64, written: &[Record]) -> Vec<Record> {
    let Some(last) = written.last().map(|r| r.counter) else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|r| r.counter > after && r.counter <= last)
        .cloned()
        .collect()
}

/// Why a round of vouching did not end with the answer written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VouchFailure {
    /// The address is not http(s), or nothing answered or the answer could not be read:
    /// try again later.
    #[error(transparent)]
    Unreached(#[from] super::Unreached),
    /// The server answered with a refusal (its reason; a 422 names the check that failed).
    #[error("the validation server refused the trail (HTTP {status}): {text}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of its reason.
        text: String,
    },
    /// The answer is not the server's valid vouching for the records sent (another key, a
    /// bad signature, another chain hash, totals records that do not match): nothing was
    /// written.
    #[error("the validation server's answer does not verify: {0}")]
    Answer(TrailError),
    /// The trail file could not be read, or is larger than a request carries.
    #[error("{0}")]
    Local(String),
    /// Writing the answer failed (the trail or the card refused): what the reader's next
    /// action shows too.
    #[error("writing the validator record: {0}")]
    Write(TrailError),
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VouchReport {
    /// The last counter the validator vouches for.
    pub upto: u64,
    /// The validator record's own counter.
    pub validator_counter: u64,
    /// Records written: the `totals` records and the validator.
    pub written: usize,
    /// The server's backup now reaches this counter (the validator's or later), or why it
    /// could not be extended (it then ends at `upto`: a restore would count the records
    /// written after it as lost until the next round).
    pub backup: Result<u64, String>,
}

/// Largest answer of `POST /v1/trail/extend` read (one line of text).
const MAX_EXTEND_ANSWER: u64 = 4096;

/// The trail file at `path` as it is now: its header's first counter, the records, and the
/// bytes to send (complete frames only).
fn read_trail(path: &Path) -> Result<(u64, Vec<Record>, Vec<u8>), VouchFailure> {
    let mut bytes = crate::fsutil::read_bounded(path, MAX_TRAIL_REQUEST_TRAIL as u64)
        .map_err(|e| VouchFailure::Local(format!("reading {}: {e}", path.display())))?;
    let header = Header::decode(&bytes)
        .map_err(|e| VouchFailure::Local(format!("{}: {e}", path.display())))?;
    let frames = parse_frames(
        bytes.get(HEADER_LEN..).unwrap_or_default(),
        HEADER_LEN as u64,
        0,
    )
    .map_err(|e| VouchFailure::Local(format!("{}: {e}", path.display())))?;
    bytes.truncate(usize::try_from(frames.end).unwrap_or(usize::MAX));
    Ok((header.first_counter, frames.records, bytes))
}

/// One round of vouching and backup for the trail at `trail_path` of the card `identity`
/// with `server` (the module's steps 1–3). `timeout` bounds each HTTP exchange. A failure
/// before the answer is written leaves the trail as it was; a backup that could not be
/// extended is reported in [`VouchReport::backup`] and stops nothing.
pub fn vouch_and_back_up(
    trail_path: &Path,
    identity: &CardIdentity,
    server: &BackupServer,
    transport: &dyn Transport,
    timeout: Duration,
    writer: &mut dyn VouchWriter,
) -> Result<VouchReport, VouchFailure> {
    let (first_counter, sent, bytes) = read_trail(trail_path)?;
    let Some(last_sent) = sent.last().map(|r| r.counter) else {
        return Err(VouchFailure::Local("the trail has no records".into()));
    };
    let envelope = seal_trail_request(
        &server.key,
        &identity.serial,
        &bytes,
        &mut crate::crypto::OsRng,
    )
    .map_err(|e| VouchFailure::Local(e.to_string()))?;
    drop(bytes);
    let (status, answer) = super::online::post_to(
        transport,
        &server.url,
        super::TRAIL_ENDPOINT,
        &envelope,
        timeout,
        MAX_VOUCH_ANSWER as u64,
    )?;
    if status != 200 {
        return Err(VouchFailure::Refused {
            status,
            text: super::online::answer_text(&answer),
        });
    }
    let vouching = check_answer(&answer, &server.key, identity, first_counter, &sent)
        .map_err(VouchFailure::Answer)?;
    let bodies: Vec<Body> = vouching.bodies().cloned().collect();
    let after = writer
        .append_vouched(&bodies, last_sent)
        .map_err(VouchFailure::Write)?;
    let validator_counter = after.last().map_or(last_sent, |r| r.counter);
    let backup = extend(server, identity, transport, timeout, &after);
    Ok(VouchReport {
        upto: vouching.upto(),
        validator_counter,
        written: bodies.len(),
        backup,
    })
}

/// Step 3: the records written after the backup, up to the validator, sent so the server's
/// backup covers them. Returns the counter the backup now reaches.
fn extend(
    server: &BackupServer,
    identity: &CardIdentity,
    transport: &dyn Transport,
    timeout: Duration,
    records: &[Record],
) -> Result<u64, String> {
    let upto = records
        .last()
        .map(|r| r.counter)
        .ok_or("nothing was written")?;
    let envelope = seal_backup_extension(&server.key, identity, records, &mut crate::crypto::OsRng)
        .map_err(|e| e.to_string())?;
    let (status, answer) = super::online::post_to(
        transport,
        &server.url,
        "/v1/trail/extend",
        &envelope,
        timeout,
        MAX_EXTEND_ANSWER,
    )
    .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!(
            "the validation server did not extend its backup (HTTP {status}): {}",
            super::online::answer_text(&answer)
        ));
    }
    Ok(upto)
}

/// How often a reading session vouches on its own, and when it archives. These decide
/// speed and how recent the server's backup is, nothing else: no licence's rule depends on
/// them, which is why a reader may turn the automatic backup off (`Home::auto_backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// Vouch once this many records follow the newest validator record of the licence's
    /// server (so a fresh start verifies at most about this many signatures, \[0094\]).
    pub after_records: u64,
    /// Vouch when the newest validator record is older than this and records follow it.
    pub every: Duration,
    /// After a failed round (server unreachable, a refusal), wait this long.
    pub retry_after: Duration,
    /// The first look, this long after reading starts: opening and the first page go first.
    pub first_check: Duration,
    /// Later looks, this often.
    pub poll: Duration,
    /// After a round, archive the vouched-for records when the working trail holds more
    /// records than this.
    pub archive_above: u64,
    /// Each HTTP exchange's timeout.
    pub timeout: Duration,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            after_records: 1000,
            every: Duration::from_secs(24 * 3600),
            retry_after: Duration::from_secs(600),
            first_check: Duration::from_secs(3),
            poll: Duration::from_secs(30),
            archive_above: 20_000,
            timeout: Duration::from_secs(120),
        }
    }
}

impl BackupPolicy {
    /// Whether a round is due for a trail standing at `state`, at `now`.
    pub fn due(&self, state: &BackupState, now: time::OffsetDateTime) -> bool {
        let every = time::Duration::try_from(self.every).unwrap_or(time::Duration::MAX);
        state.since >= self.after_records
            || (state.since > 0 && state.last_at.is_none_or(|t| now - t >= every))
    }
}

/// Where a trail stands for the automatic backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupState {
    /// Records after the newest validator record of the licence's server (all records when
    /// there is none).
    pub since: u64,
    /// When that validator record was written (the server's time), if there is one.
    pub last_at: Option<time::OffsetDateTime>,
    /// Records in the working trail.
    pub records: u64,
}

impl BackupState {
    /// The state of a trail holding `records`, for a licence whose validation servers have
    /// the key fingerprints `servers`. Reads from the end back to that validator only.
    pub fn of(records: &[Record], servers: &[crate::crypto::Hash]) -> Self {
        use crate::trail::{Usage, validator::looks_like_validator};
        let newest = records.iter().enumerate().rev().find_map(|(i, r)| {
            if !looks_like_validator(&r.body) {
                return None;
            }
            match Body::parse(&r.body).ok()? {
                Body {
                    at,
                    usage: Usage::Validator(v),
                } if servers.contains(&v.server_key) => Some((i, at)),
                _ => None,
            }
        });
        Self {
            since: newest.map_or(records.len(), |(i, _)| records.len() - i - 1) as u64,
            last_at: newest.map(|(_, at)| at),
            records: records.len() as u64,
        }
    }
}

/// What the automatic backup of a reading session needs besides the session's meter.
pub struct BackupPlan {
    /// The licence's validation server (its vendor-signed keyfile's, never the reader's).
    pub server: BackupServer,
    /// The trail file.
    pub trail: std::path::PathBuf,
    /// The card.
    pub identity: CardIdentity,
    /// How the server is reached.
    pub transport: std::sync::Arc<dyn Transport>,
    /// For the schedule.
    pub clock: std::sync::Arc<dyn crate::policy::Clock>,
    /// The reader's home: each attempt is noted there for `status`
    /// (`Home::backup_status_path`), and after a round the server's key joins the home's
    /// trusted validation servers, as after `tally-view trail vouch` (the headless trail
    /// commands, which read that list, then start from its records and can read a trail it
    /// archived). `None`: neither.
    pub home: Option<crate::home::Home>,
    /// When to vouch and archive.
    pub policy: BackupPolicy,
}

impl std::fmt::Debug for BackupPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupPlan")
            .field("server", &self.server.url)
            .field("trail", &self.trail)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What one automatic round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    /// Vouched for and backed up.
    Done {
        /// The round's report.
        report: VouchReport,
        /// Records archived after it (`Ok(None)`: none needed), or why archiving failed.
        archived: Result<Option<u64>, String>,
    },
    /// The round failed; it is tried again later.
    Failed(String),
}

/// Where the automatic backup of a session's trail stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStatus {
    /// The validation server's address.
    pub server: String,
    /// A round is running now.
    pub running: bool,
    /// The last round: when it ended and what it did.
    pub last: Option<(time::OffsetDateTime, BackupOutcome)>,
}

const STATUS_MAGIC: &str = "tally-backup-status/1";

impl BackupStatus {
    /// What it says, in the reader's words, one line per fact (the same in a window and in
    /// `tally-view status`).
    pub fn lines(&self) -> Vec<String> {
        let when = |t: &time::OffsetDateTime| {
            let utc = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                utc.year(),
                u8::from(utc.month()),
                utc.day(),
                utc.hour(),
                utc.minute()
            )
        };
        let mut out = Vec::new();
        match &self.last {
            None if self.running => out.push(format!(
                "Backing up your reading record with {} now.",
                self.server
            )),
            None => out.push(format!(
                "Your reading record has not been backed up by {} yet; it is while you read.",
                self.server
            )),
            Some((at, BackupOutcome::Done { report, archived })) => {
                out.push(format!(
                    "Reading record backed up by {} on {}: vouched for up to counter {}.",
                    self.server,
                    when(at),
                    report.upto
                ));
                if let Err(e) = &report.backup {
                    out.push(format!(
                        "The server's copy ends before the latest records ({e}); the next backup brings it up to date."
                    ));
                }
                match archived {
                    Ok(Some(n)) => out.push(format!(
                        "{} moved to the archive beside the trail.",
                        super::plural(*n, "vouched record", "vouched records")
                    )),
                    Ok(None) => {}
                    Err(e) => out.push(format!("Archiving vouched records failed: {e}.")),
                }
            }
            Some((at, BackupOutcome::Failed(why))) => out.push(format!(
                "The last backup of your reading record ({}) did not work: {why}. It is tried again while you read; reading is not affected.",
                when(at)
            )),
        }
        out
    }

    /// The text form saved for `tally-view status` (a few `key value` lines).
    pub fn encode(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let mut s = format!("{STATUS_MAGIC}\nserver {}\n", one_line(&self.server));
        if let Some((at, outcome)) = &self.last {
            s.push_str(&format!("at {}\n", at.unix_timestamp()));
            match outcome {
                BackupOutcome::Done { report, archived } => {
                    s.push_str(&format!(
                        "vouched {} {} {}\n",
                        report.upto, report.validator_counter, report.written
                    ));
                    match &report.backup {
                        Ok(b) => s.push_str(&format!("backup {b}\n")),
                        Err(e) => s.push_str(&format!("backup-error {}\n", one_line(e))),
                    }
                    match archived {
                        Ok(Some(n)) => s.push_str(&format!("archived {n}\n")),
                        Ok(None) => {}
                        Err(e) => s.push_str(&format!("archive-error {}\n", one_line(e))),
                    }
                }
                BackupOutcome::Failed(why) => s.push_str(&format!("failed {}\n", one_line(why))),
            }
        }
        s
    }

    /// Parses [`BackupStatus::encode`]'s text; `None` for anything else (the file is
    /// informational: a damaged one is shown as "no backup yet", never trusted for a rule).
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != STATUS_MAGIC {
            return None;
        }
        let server = lines.next()?.strip_prefix("server ")?.to_string();
        let Some(at) = lines.next() else {
            return Some(Self {
                server,
                running: false,
                last: None,
            });
        };
        let at = time::OffsetDateTime::from_unix_timestamp(at.strip_prefix("at ")?.parse().ok()?)
            .ok()?;
        let first = lines.next()?;
        let outcome = if let Some(why) = first.strip_prefix("failed ") {
            BackupOutcome::Failed(why.to_string())
        } else {
            let mut n = first.strip_prefix("vouched ")?.split(' ');
            let mut num = || n.next()?.parse::<u64>().ok();
            let (upto, validator_counter, written) = (num()?, num()?, num()?);
            let b = lines.next()?;
            let backup = match (b.strip_prefix("backup "), b.strip_prefix("backup-error ")) {
                (Some(c), _) => Ok(c.parse().ok()?),
                (_, Some(e)) => Err(e.to_string()),
                _ => return None,
            };
            let archived = match lines.next() {
                None => Ok(None),
                Some(l) => match (
                    l.strip_prefix("archived "),
                    l.strip_prefix("archive-error "),
                ) {
                    (Some(n), _) => Ok(Some(n.parse().ok()?)),
                    (_, Some(e)) => Err(e.to_string()),
                    _ => return None,
                },
            };
            BackupOutcome::Done {
                report: VouchReport {
                    upto,
                    validator_counter,
                    written: usize::try_from(written).ok()?,
                    backup,
                },
                archived,
            }
        };
        Some(Self {
            server,
            running: false,
            last: Some((at, outcome)),
        })
    }

    /// The status noted at `path` by the last session, if there is a readable one.
    pub fn load(path: &Path) -> Option<Self> {
        let bytes = crate::fsutil::read_bounded(path, 16 * 1024).ok()?;
        Self::parse(std::str::from_utf8(&bytes).ok()?)
    }
}

/// The automatic backup of a reading session (issue 13): on a thread of its own, it looks
/// at the trail now and then ([`BackupPolicy`]) and, when a round is due, runs
/// [`vouch_and_back_up`] with the licence's validation server, writing the answer through
/// the session's meter thread — the same Write path, lock and card transaction as the
/// charges — and then archives the vouched-for records once the working trail passes
/// [`BackupPolicy::archive_above`]. The network exchange runs on this thread, so a page
/// turn or the window never waits for it; a failure is quiet (noted in
/// [`AutoBackup::status`] and the status file, tried again later). Dropping it stops it at
/// its next look without waiting for an exchange in flight.
pub struct AutoBackup {
    status: std::sync::Arc<std::sync::Mutex<BackupStatus>>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl std::fmt::Debug for AutoBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoBackup")
            .field("status", &self.status())
            .finish()
    }
}

impl AutoBackup {
    /// Starts the backup thread for `plan`, writing through `meter`. `None` when the
    /// thread could not be started (reading goes on without it).
    pub(crate) fn start(plan: BackupPlan, meter: super::session::MeterHandle) -> Option<Self> {
        let status = std::sync::Arc::new(std::sync::Mutex::new(BackupStatus {
            server: plan.server.url.clone(),
            running: false,
            last: None,
        }));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let shared = status.clone();
        std::thread::Builder::new()
            .name("tally-backup".into())
            .spawn(move || run(&plan, meter, &shared, &stopped))
            .ok()?;
        Some(Self {
            status,
            _stop: stop,
        })
    }

    /// Where it stands now.
    pub fn status(&self) -> BackupStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The backup thread: look, run a round when one is due, note it, wait.
fn run(
    plan: &BackupPlan,
    mut meter: super::session::MeterHandle,
    status: &std::sync::Mutex<BackupStatus>,
    stopped: &std::sync::mpsc::Receiver<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let set = |f: &dyn Fn(&mut BackupStatus)| {
        let mut s = status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s);
        s.clone()
    };
    let mut wait = plan.policy.first_check;
    let mut not_before: Option<time::OffsetDateTime> = None;
    loop {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            // The session ended (the sender is never used to send).
            _ => return,
        }
        wait = plan.policy.poll;
        let Some(state) = meter.state() else {
            return;
        };
        let now = plan.clock.now();
        if not_before.is_some_and(|t| now < t) || !plan.policy.due(&state, now) {
            continue;
        }
        set(&|s| s.running = true);
        let outcome = match vouch_and_back_up(
            &plan.trail,
            &plan.identity,
            &plan.server,
            plan.transport.as_ref(),
            plan.policy.timeout,
            &mut meter,
        ) {
            Ok(report) => {
                not_before = None;
                if let Some(home) = &plan.home {
                    // Narrows nothing and widens nothing for any licence: openings trust
                    // only their keyfile's server; this list serves the trail commands.
                    let _ = home.add_trusted_validator(&plan.server.key);
                }
                let archived = meter
                    .archive(plan.policy.archive_above)
                    .map(|a| a.map(|a| a.records))
                    .map_err(|e| e.to_string());
                BackupOutcome::Done { report, archived }
            }
            Err(e) => {
                let retry = time::Duration::try_from(plan.policy.retry_after)
                    .unwrap_or(time::Duration::MAX);
                not_before = Some(now.saturating_add(retry));
                BackupOutcome::Failed(e.to_string())
            }
        };
        let ended = plan.clock.now();
        let noted = set(&|s| {
            s.running = false;
            s.last = Some((ended, outcome.clone()));
        });
        if let Some(home) = &plan.home {
            // Informational: a status that can't be saved stops nothing.
            let path = home.backup_status_path(&plan.identity.serial);
            let _ = crate::fsutil::atomic_write(&path, noted.encode().as_bytes());
        }
    }
}

/// What a standing check says about the automatic backup of the trail `keyfile`'s licence
/// is read on, in the reader's words: whether it runs, and what the last session's backup
/// did (`Home::backup_status_path`).
pub fn backup_lines(home: &crate::home::Home, keyfile: &VerifiedKeyfile) -> Vec<String> {
    let Some(server) = BackupServer::of(keyfile) else {
        return vec![
            "This licence names no validation server, so your reading record is not backed up online."
                .into(),
        ];
    };
    match home.auto_backup() {
        Err(e) => vec![format!(
            "Automatic backup is off: its setting can't be read ({e})."
        )],
        Ok(false) => vec![
            "Automatic backup is off (`tally-view backup on` turns it on): opening checks every record not vouched for, and a lost trail comes back only from your last `trail vouch`."
                .into(),
        ],
        Ok(true) => BackupStatus::load(&home.backup_status_path(&keyfile.card().serial))
            .unwrap_or(BackupStatus {
                server: server.url,
                running: false,
                last: None,
            })
            .lines(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_round_is_due_past_the_record_threshold_or_the_schedule() {
        let p = BackupPolicy::default();
        let day = 24 * 3600;
        let state = |since, last: Option<i64>| BackupState {
            since,
            last_at: last.map(at),
            records: since + 10,
        };
        let now = at(10 * day);
        // Never vouched for: at once, as soon as there is anything.
        assert!(p.due(&state(1, None), now));
        assert!(!p.due(&state(0, None), now));
        // Recently vouched: only past the threshold.
        assert!(!p.due(&state(999, Some(10 * day - 60)), now));
        assert!(p.due(&state(1000, Some(10 * day - 60)), now));
        // A day later: due if anything followed.
        assert!(p.due(&state(1, Some(9 * day)), now));
        assert!(!p.due(&state(0, Some(9 * day)), now));
        // A validator dated after "now" (a clock set back) waits for the threshold.
        assert!(!p.due(&state(5, Some(11 * day)), now));
    }

    #[test]
    fn the_noted_status_reads_back_and_anything_else_is_no_status() {
        let done = BackupStatus {
            server: "http://acme.example".into(),
            running: false,
            last: Some((
                at(1_800_000_000),
                BackupOutcome::Done {
                    report: VouchReport {
                        upto: 41,
                        validator_counter: 43,
                        written: 2,
                        backup: Err("HTTP 409: changed\nmeanwhile".into()),
                    },
                    archived: Ok(Some(30)),
                },
            )),
        };
        let failed = BackupStatus {
            last: Some((at(1_800_000_000), BackupOutcome::Failed("no route".into()))),
            ..done.clone()
        };
        let never = BackupStatus {
            last: None,
            ..done.clone()
        };
        for s in [&done, &failed, &never] {
            let back = BackupStatus::parse(&s.encode()).unwrap();
            match (&back.last, &s.last) {
                (
                    Some((_, BackupOutcome::Done { report: a, .. })),
                    Some((_, BackupOutcome::Done { report: b, .. })),
                ) => {
                    assert_eq!((a.upto, a.validator_counter), (b.upto, b.validator_counter));
                    // Kept on one line.
                    assert_eq!(a.backup, Err("HTTP 409: changed meanwhile".into()));
                }
                _ => assert_eq!(&back, s),
            }
        }
        assert!(
            done.lines()
                .iter()
                .any(|l| l.contains("30 vouched records"))
        );
        assert!(failed.lines()[0].contains("no route"));
        for bad in [
            "",
            "tally-backup-status/2\nserver x\n",
            "tally-backup-status/1\n",
            "tally-backup-status/1\nserver x\nat soon\n",
            "tally-backup-status/1\nserver x\nat 5\nvouched 1 2\nbackup 3\n",
            "tally-backup-status/1\nserver x\nat 5\nvouched 1 2 3\nbackup x\n",
            "tally-backup-status/1\nserver x\nat 5\nhappy\n",
        ] {
            assert_eq!(BackupStatus::parse(bad), None, "{bad:?}");
        }
    }
}
