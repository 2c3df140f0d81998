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

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
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
    /// Nothing answered, or the answer could not be read: try again later.
    #[error("cannot reach the validation server {endpoint}: {reason}")]
    Unreachable {
        /// The URL asked.
        endpoint: String,
        /// What the transport said.
        reason: String,
    },
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
    let endpoint = server.endpoint("/v1/trail/validate");
    let (status, answer) = transport
        .post(&endpoint, &envelope, timeout, MAX_VOUCH_ANSWER as u64)
        .map_err(|reason| VouchFailure::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        })?;
    if status != 200 {
        return Err(VouchFailure::Refused {
            status,
            text: answer_text(&answer),
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
    let endpoint = server.endpoint("/v1/trail/extend");
    let (status, answer) = transport
        .post(&endpoint, &envelope, timeout, MAX_EXTEND_ANSWER)
        .map_err(|reason| format!("cannot reach the validation server {endpoint}: {reason}"))?;
    if status != 200 {
        return Err(format!(
            "the validation server did not extend its backup (HTTP {status}): {}",
            answer_text(&answer)
        ));
    }
    Ok(upto)
}

/// The start of a server's answer, as one line of text.
fn answer_text(answer: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(answer).chars().take(300).collect();
    text.trim().replace('\n', " ")
}
