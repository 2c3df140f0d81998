//! The copy's side: its sequence numbers, rolling UI and last ticket, persisted
//! atomically in `<TALLY_HOME>/validation/<licence>.state`.
//!
//! ```text
//! state file (STATE_LEN = 418 bytes)
//!   "TALLYVST" · version u8 = 2 · licence 16 · UI 16 · IV 32 · PSI u64 · VSSI u64 ·
//!   pending u8 (0/1) · pending PSI u64 · pending request hash 32 ·
//!   pending card counter u64 (the counter the card signed the request at) ·
//!   ticket u8 (0/1) · ticket VERDICT_LEN · last refusal u8 (0xff none, else a status) ·
//!   SHA-256 of everything before it
//! ```
//! Version 1 (382 bytes, before card-signed requests) is still read: its UI, IV, sequence
//! numbers and refusal are kept (so the server still knows the copy), its ticket and
//! pending request are dropped (a version 1 ticket names no licence), and the next opening
//! validates online.
//!
//! The checksum only catches corruption: the reader controls this file, which is why
//! the ticket in it is re-verified under the server key every time it is used, and must
//! name this licence and this copy's UI (T33); the card counter offline use is measured
//! from is the one the server signed into the ticket, not one the file says (T34).

use super::wire::{
    CardProof, Status, VERDICT_LEN, ValReq, Verdict, request_hash, request_record_body,
};
use super::{CLOCK_SKEW_SECONDS, MAX_SEQUENCE_STEP, ValidationError};
use crate::crypto::{self, Hash, PublicKey};
use crate::home::Home;
use crate::icv::{self, Icv, IcvVariant, Iv, Ui};
use crate::policy::Clock;
use crate::trail::{Body, LicenceId, Record, Usage};
use rand_core::CryptoRngCore;
use std::path::PathBuf;
use time::OffsetDateTime;

const MAGIC: &[u8; 8] = b"TALLYVST";
const VERSION: u8 = 2;
/// Bytes of a state file.
pub const STATE_LEN: usize =
    8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 8 + 1 + VERDICT_LEN + 1 + 32;
/// Bytes of a version 1 state file (a version 1 ticket was 218 bytes).
const STATE_V1_LEN: usize = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 1 + 218 + 1 + 32;
const NO_REFUSAL: u8 = 0xff;

/// Signs a VAL_REQ with the reader's card (T32): writes `body` (a
/// [`request_record_body`]) as a record of the card's trail through Write (\[0059\]), so
/// the counter value the card spends is a trail record, never a gap, and returns the proof
/// the server checks. The rental's meter implements it.
pub trait RequestSigner {
    /// Writes `body` through the card and returns the record's proof.
    fn sign_request(&mut self, body: &Body) -> Result<CardProof, String>;
}

/// A card and its trail as a [`RequestSigner`], for a caller without a rental meter (tools
/// and tests): each request is a record written through Write.
pub struct TrailSigner {
    card: crate::Card,
    trail: crate::trail::Trail,
}

impl std::fmt::Debug for TrailSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailSigner")
            .field("trail", &self.trail)
            .finish_non_exhaustive()
    }
}

impl TrailSigner {
    /// `card` and its trail at `path` (created for a card that never signed).
    pub fn open(
        mut card: crate::Card,
        path: &std::path::Path,
    ) -> Result<Self, crate::trail::TrailError> {
        let identity = card.identity()?;
        let trail = crate::trail::Trail::open_or_create(path, &mut card, &identity)?;
        Ok(Self { card, trail })
    }

    /// The trail.
    pub fn trail(&self) -> &crate::trail::Trail {
        &self.trail
    }
}

impl RequestSigner for TrailSigner {
    fn sign_request(&mut self, body: &Body) -> Result<CardProof, String> {
        sign_through(&mut self.trail, &mut self.card, body).map_err(|e| e.to_string())
    }
}

/// Writes `body` through `card` onto `trail` and returns the record's proof.
pub(crate) fn sign_through(
    trail: &mut crate::trail::Trail,
    card: &mut crate::Card,
    body: &Body,
) -> Result<CardProof, crate::trail::TrailError> {
    let record = trail.write(card, body)?;
    Ok(CardProof::of_record(trail.identity().serial, &record))
}

/// What the card-signed trail says about the use since a ticket (T34): the reader's
/// clock may be frozen, the card's counter and the reading time it charged are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardProgress {
    /// The counter of the trail's newest record (`None`: no trail read).
    pub last_counter: Option<u64>,
    /// Every record's counter and date (Unix seconds), in counter order.
    pub dated: Vec<(u64, i64)>,
    /// This licence's `time` records: (counter, seconds charged), in counter order.
    pub time_records: Vec<(u64, u32)>,
    /// The records the trail no longer holds: it was archived (\[0094\]), and starts after
    /// them. `None` for a trail that starts at the card's origin.
    pub archived: Option<Archived>,
}

/// What an archived trail says about the records moved out of it, for the T34 bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Archived {
    /// The trail's first counter: the records before it are in the archive.
    pub first_counter: u64,
    /// The seconds the archived records charged the licence: the totals of the validator
    /// record the trail was verified from (a server signed them, up to its `upto`), less
    /// the `time` records up to that `upto` the trail still holds.
    pub seconds: u64,
}

impl CardProgress {
    /// The progress a verified trail shows for `licence`: its verified records, and — when
    /// it was archived — the reading time the archived records charged the licence, as the
    /// validator record it was verified from says (an archived trail verifies only from one).
    /// Without that, time charged after a ticket would stop counting toward the offline
    /// bound once the records charging it were archived (T34).
    pub fn of_trail(trail: &crate::trail::Trail, licence: LicenceId) -> Self {
        let mut p = Self::of(&trail.records()[..trail.verified_len()], licence);
        let first_counter = trail.header().first_counter;
        if first_counter > trail.identity().origin {
            // No validator to say what the archive charged: every second there is (fail
            // closed; a trail cut without a trusted anchor does not verify anyway).
            let seconds = trail.vouched().map_or(u64::MAX, |v| {
                let vouched = v
                    .totals
                    .iter()
                    .find(|t| t.licence == licence)
                    .map_or(0, |t| u64::from(t.seconds));
                let held: u64 = p
                    .time_records
                    .iter()
                    .filter(|(k, _)| *k <= v.upto)
                    .map(|(_, s)| u64::from(*s))
                    .sum();
                vouched.saturating_sub(held)
            });
            p.archived = Some(Archived {
                first_counter,
                seconds,
            });
        }
        p
    }

    /// The progress the verified `records` of a trail starting at the card's origin show
    /// for `licence` (an archived trail: [`CardProgress::of_trail`]).
    pub fn of(records: &[Record], licence: LicenceId) -> Self {
        let mut p = Self::default();
        for r in records {
            p.add(r, licence);
        }
        p
    }

    /// Adds one more verified record (after those already added, in counter order). Only
    /// its time is read from the body — the third word, `at=` — and only a `time` record is
    /// parsed in full, so a long trail costs little (a fresh open reads every record).
    pub fn add(&mut self, r: &Record, licence: LicenceId) {
        self.last_counter = Some(self.last_counter.map_or(r.counter, |c| c.max(r.counter)));
        if r.body.starts_with(b"tally/1 time ") {
            if let Ok(b) = Body::parse(&r.body) {
                self.dated.push((r.counter, b.at.unix_timestamp()));
                if let Usage::Time {
                    licence: l,
                    seconds,
                } = b.usage
                    && l == licence
                {
                    self.time_records.push((r.counter, seconds));
                }
            }
            return;
        }
        if let Some(at) = body_time(&r.body) {
            self.dated.push((r.counter, at));
        }
    }
}

/// The time (Unix seconds) of a record body: its `at=` word, the third — what
/// [`Body::parse`] would read, without the rest of the body (verified bodies are canonical).
fn body_time(body: &[u8]) -> Option<i64> {
    let rest = body.strip_prefix(b"tally/1 ")?;
    let kind_end = rest.iter().position(|b| *b == b' ')?;
    let at = rest[kind_end + 1..].strip_prefix(b"at=")?;
    let end = at.iter().position(|b| *b == b' ').unwrap_or(at.len());
    let text = std::str::from_utf8(&at[..end]).ok()?;
    let t = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

impl CardProgress {
    /// Records the card signed after counter `c`.
    pub fn records_after(&self, c: u64) -> u64 {
        self.last_counter.map_or(0, |l| l.saturating_sub(c))
    }

    /// The newest date of a record the card signed after counter `c`: written after the
    /// ticket's request, so "now" is at least that (a date before the ticket was already
    /// superseded by the server's time on it).
    pub fn newest_after(&self, c: u64) -> Option<i64> {
        self.dated
            .iter()
            .filter(|(k, _)| *k > c)
            .map(|(_, at)| *at)
            .max()
    }

    /// Seconds of reading charged to the licence after counter `c`: time that really
    /// passed after the record at `c`, whatever the clock says. When records after `c` were
    /// archived, all the archived records' time counts (which of it came after `c` the
    /// trail no longer tells): more, never less, than was read since.
    pub fn seconds_after(&self, c: u64) -> i64 {
        let held: u64 = self
            .time_records
            .iter()
            .filter(|(k, _)| *k > c)
            .map(|(_, s)| u64::from(*s))
            .sum();
        let archived = self
            .archived
            .filter(|a| c.saturating_add(1) < a.first_counter)
            .map_or(0, |a| a.seconds);
        i64::try_from(held.saturating_add(archived)).unwrap_or(i64::MAX)
    }
}

/// Where the state of `licence` lives.
pub fn state_path(home: &Home, licence: &LicenceId) -> PathBuf {
    home.root()
        .join("validation")
        .join(format!("{}.state", licence.to_hex()))
}

/// A copy's validation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientState {
    licence: LicenceId,
    ui: Ui,
    iv: Iv,
    psi: u64,
    vssi: u64,
    /// PSI, request hash and card counter of the request waiting for an answer.
    pending: Option<(u64, Hash, u64)>,
    ticket: Option<Vec<u8>>,
    refusal: Option<Status>,
}

/// A copy's standing after [`ClientState::check_offline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineStatus {
    /// When the server last validated the copy (server time).
    pub last_validated: OffsetDateTime,
    /// Until when the copy may be used without validating again.
    pub valid_until: OffsetDateTime,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl ClientState {
    /// A copy never validated: UI₀ = the licence id, its first IV.
    pub fn new(licence: LicenceId) -> Self {
        let ui = Ui::initial(&licence);
        Self {
            licence,
            ui,
            iv: Iv::first(&ui),
            psi: 0,
            vssi: 0,
            pending: None,
            ticket: None,
            refusal: None,
        }
    }

    /// The licence.
    pub fn licence(&self) -> LicenceId {
        self.licence
    }
    /// The copy's current UI.
    pub fn ui(&self) -> Ui {
        self.ui
    }
    /// The IV for the next request.
    pub fn iv(&self) -> Iv {
        self.iv
    }
    /// The last PSI used.
    pub fn psi(&self) -> u64 {
        self.psi
    }
    /// The VSSI of the last ticket accepted.
    pub fn vssi(&self) -> u64 {
        self.vssi
    }
    /// Sets the PSI (tests of T19).
    #[cfg(test)]
    pub(crate) fn force_psi(&mut self, psi: u64) {
        self.psi = psi;
    }
    /// The last signed refusal, until a later VAL_OK.
    pub fn refusal(&self) -> Option<Status> {
        self.refusal
    }
    /// The last ticket's bytes.
    pub fn ticket_bytes(&self) -> Option<&[u8]> {
        self.ticket.as_deref()
    }

    /// Builds the next VAL_REQ, has the reader's card sign it as a trail record (T32) and
    /// encrypts both: PSI moves on, the request is remembered as pending. Save the state
    /// *before* sending, so a crash never reuses a PSI. Nothing changes when the card
    /// cannot sign.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &mut self,
        variant: IcvVariant,
        package: &[u8],
        server: &PublicKey,
        viewer_icv: Icv,
        clock: &dyn Clock,
        signer: &mut dyn RequestSigner,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, ValidationError> {
        let psi = self.psi.saturating_add(1);
        let req = ValReq {
            variant,
            ui: self.ui,
            icv: icv::compute(variant, package, &self.ui, &self.iv),
            psi,
            vssi: self.vssi,
            dt: clock.now().unix_timestamp(),
            vsi: server.fingerprint(),
            iv: self.iv,
            viewer_icv,
        };
        let hash = request_hash(&req.encode());
        let proof = signer
            .sign_request(&request_record_body(&hash, req.dt))
            .map_err(ValidationError::CardSigning)?;
        self.psi = psi;
        self.pending = Some((psi, hash, proof.counter));
        Ok(req.seal(&proof, server, rng))
    }

    /// Accepts the server's answer to the pending request. A VAL_OK rolls the UI
    /// forward and becomes the ticket; a signed refusal is remembered and returned as
    /// [`ValidationError::Refused`]. Anything else (a replay, another copy's ticket, a
    /// sequence jump, a bad signature) is an error and changes nothing (T17, T19).
    pub fn accept(&mut self, bytes: &[u8], server: &PublicKey) -> Result<Verdict, ValidationError> {
        let v = Verdict::open(bytes, server)?;
        // A refusal from a server that does not know the copy names no licence (all zero);
        // it still answers only this request (its hash, below).
        let unknown = v.status != Status::Ok && v.licence == LicenceId([0; 16]);
        if v.licence != self.licence && !unknown {
            return Err(ValidationError::OtherLicence {
                ticket: v.licence.to_hex(),
                licence: self.licence.to_hex(),
            });
        }
        if v.ui != self.ui {
            return Err(ValidationError::OtherCopy);
        }
        if v.status == Status::Ok {
            if v.vssi <= self.vssi {
                return Err(ValidationError::OldTicket {
                    got: v.vssi,
                    newest: self.vssi,
                });
            }
            if v.vssi - self.vssi > MAX_SEQUENCE_STEP {
                return Err(ValidationError::SequenceJump {
                    got: v.vssi,
                    newest: self.vssi,
                });
            }
            if v.expires <= v.dt {
                return Err(ValidationError::TicketDates);
            }
        }
        let Some((psi, hash, counter)) = self.pending else {
            return Err(ValidationError::NothingPending);
        };
        if v.request != hash || v.psi != psi {
            return Err(ValidationError::NotOurRequest);
        }
        if v.status == Status::Ok && v.card_counter != counter {
            return Err(ValidationError::NotOurRequest);
        }
        self.pending = None;
        if v.status != Status::Ok {
            if v.status.stops_the_copy() {
                self.refusal = Some(v.status);
            }
            return Err(ValidationError::Refused(v.status));
        }
        self.ui = self.ui.roll(&v.iv);
        self.iv = v.iv;
        self.vssi = v.vssi;
        self.ticket = Some(bytes.to_vec());
        self.refusal = None;
        Ok(v)
    }

    /// The standing of a copy whose state is `state` (`None`: never validated, or its state
    /// file lost): [`ClientState::check_offline`], or [`ValidationError::NeverValidated`].
    /// An error means an online round is due before the copy is opened.
    pub fn standing(
        state: Option<&Self>,
        server: &PublicKey,
        require_online_every_days: Option<u16>,
        clock: &dyn Clock,
        progress: &CardProgress,
    ) -> Result<OnlineStatus, ValidationError> {
        match state {
            Some(s) => s.check_offline(server, require_online_every_days, clock, progress),
            None => Err(ValidationError::NeverValidated),
        }
    }

    /// The last ticket, verified under `server` and checked to be this copy's: it names
    /// this licence, and this copy's UI is the one it rolled to (T33). `None`: no ticket.
    pub fn verified_ticket(&self, server: &PublicKey) -> Result<Option<Verdict>, ValidationError> {
        let Some(bytes) = &self.ticket else {
            return Ok(None);
        };
        let t = Verdict::open(bytes, server)?;
        if t.licence != self.licence {
            return Err(ValidationError::OtherLicence {
                ticket: t.licence.to_hex(),
                licence: self.licence.to_hex(),
            });
        }
        if t.status != Status::Ok {
            return Err(ValidationError::Refused(t.status));
        }
        if t.ui.roll(&t.iv) != self.ui || t.iv != self.iv || t.vssi != self.vssi {
            return Err(ValidationError::NotThisCopysTicket);
        }
        Ok(Some(t))
    }

    /// Whether the copy may be used now without going online (T18, T33, T34): the last
    /// ticket must verify, be this copy's ([`ClientState::verified_ticket`]), not be
    /// expired, be no older than the keyfile's `require_online_every_days`, not be dated
    /// after the local clock (a clock set back), and the card must not have signed more
    /// records since the ticket's request than the ticket allows. "Now" is never earlier
    /// than the ticket's server time, the newest record written since, or the ticket's time plus
    /// the reading time charged to the licence since (`progress`), so a frozen clock buys
    /// nothing. A copy the server refused stays refused until a later VAL_OK (T23).
    pub fn check_offline(
        &self,
        server: &PublicKey,
        require_online_every_days: Option<u16>,
        clock: &dyn Clock,
        progress: &CardProgress,
    ) -> Result<OnlineStatus, ValidationError> {
        if let Some(s) = self.refusal {
            return Err(ValidationError::Refused(s));
        }
        let Some(t) = self.verified_ticket(server)? else {
            return Err(ValidationError::NeverValidated);
        };
        let clock_now = clock.now().unix_timestamp();
        if clock_now < t.dt.saturating_sub(CLOCK_SKEW_SECONDS) {
            return Err(ValidationError::ClockBehind {
                now: rfc3339(at(clock_now)),
                last: rfc3339(at(t.dt)),
            });
        }
        let records = progress.records_after(t.card_counter);
        if records > u64::from(t.offline_records) {
            return Err(ValidationError::OfflineRecords {
                records,
                limit: t.offline_records,
            });
        }
        let now = clock_now
            .max(t.dt)
            .max(progress.newest_after(t.card_counter).unwrap_or(i64::MIN))
            .max(t.dt.saturating_add(progress.seconds_after(t.card_counter)));
        let mut until = t.expires;
        if let Some(days) = require_online_every_days {
            let grace = t.dt.saturating_add(i64::from(days) * 86_400);
            if now >= grace {
                return Err(ValidationError::OfflineTooLong {
                    last: rfc3339(at(t.dt)),
                    days,
                });
            }
            until = until.min(grace);
        }
        if now >= t.expires {
            return Err(ValidationError::TicketExpired {
                expired: rfc3339(at(t.expires)),
            });
        }
        Ok(OnlineStatus {
            last_validated: at(t.dt),
            valid_until: at(until),
        })
    }

    /// The state file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STATE_LEN);
        v.extend_from_slice(MAGIC);
        v.push(VERSION);
        v.extend_from_slice(&self.licence.0);
        v.extend_from_slice(&self.ui.0);
        v.extend_from_slice(&self.iv.0);
        v.extend_from_slice(&self.psi.to_be_bytes());
        v.extend_from_slice(&self.vssi.to_be_bytes());
        let (flag, psi, hash, counter) = match self.pending {
            Some((p, h, c)) => (1u8, p, h, c),
            None => (0, 0, [0; 32], 0),
        };
        v.push(flag);
        v.extend_from_slice(&psi.to_be_bytes());
        v.extend_from_slice(&hash);
        v.extend_from_slice(&counter.to_be_bytes());
        match &self.ticket {
            Some(t) if t.len() == VERDICT_LEN => {
                v.push(1);
                v.extend_from_slice(t);
            }
            _ => {
                v.push(0);
                v.extend_from_slice(&[0; VERDICT_LEN]);
            }
        }
        v.push(self.refusal.map_or(NO_REFUSAL, Status::code));
        let sum = crypto::sha256(&v);
        v.extend_from_slice(&sum);
        v
    }

    /// Parses a state file of exactly [`STATE_LEN`] bytes (or a version 1 file, see the
    /// module docs).
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        if bytes.len() != STATE_LEN && bytes.len() != STATE_V1_LEN {
            return Err(ValidationError::Length {
                what: "validation state",
                expected: STATE_LEN,
                actual: bytes.len(),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if crypto::sha256(body)[..] != *sum {
            return Err(ValidationError::CorruptState);
        }
        if &body[..8] != MAGIC {
            return Err(ValidationError::BadMagic("validation state"));
        }
        let v1 = match body[8] {
            VERSION if bytes.len() == STATE_LEN => false,
            1 if bytes.len() == STATE_V1_LEN => true,
            version => {
                return Err(ValidationError::UnsupportedVersion {
                    what: "validation state",
                    version,
                });
            }
        };
        let mut at = 9;
        let mut take = |n: usize| {
            let s = &body[at..at + n];
            at += n;
            s
        };
        let arr16 = |s: &[u8]| -> [u8; 16] { s.try_into().unwrap_or([0; 16]) };
        let arr32 = |s: &[u8]| -> [u8; 32] { s.try_into().unwrap_or([0; 32]) };
        let u64_ = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
        let licence = LicenceId(arr16(take(16)));
        let ui = Ui(arr16(take(16)));
        let iv = Iv(arr32(take(32)));
        let psi = u64_(take(8));
        let vssi = u64_(take(8));
        let pflag = take(1)[0];
        let ppsi = u64_(take(8));
        let phash = arr32(take(32));
        let pcounter = if v1 { 0 } else { u64_(take(8)) };
        let tflag = take(1)[0];
        let ticket = take(if v1 { 218 } else { VERDICT_LEN }).to_vec();
        let refusal = take(1)[0];
        let pending = match pflag {
            0 => None,
            1 => Some((ppsi, phash, pcounter)),
            _ => return Err(ValidationError::BadField("validation state: pending flag")),
        };
        let ticket = match tflag {
            0 => None,
            1 => Some(ticket),
            _ => return Err(ValidationError::BadField("validation state: ticket flag")),
        };
        // A version 1 ticket and request are of the old formats: dropped (module docs).
        let (pending, ticket) = if v1 { (None, None) } else { (pending, ticket) };
        let refusal = match refusal {
            NO_REFUSAL => None,
            c => Some(
                Status::from_code(c)
                    .ok_or(ValidationError::BadField("validation state: refusal"))?,
            ),
        };
        Ok(Self {
            licence,
            ui,
            iv,
            psi,
            vssi,
            pending,
            ticket,
            refusal,
        })
    }

    /// Loads the state of `licence` from `home` (`None`: never validated).
    pub fn load(home: &Home, licence: &LicenceId) -> Result<Option<Self>, ValidationError> {
        use std::io::Read as _;
        let path = state_path(home, licence);
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = Vec::new();
        f.take(STATE_LEN.max(STATE_V1_LEN) as u64 + 1)
            .read_to_end(&mut buf)?;
        let s = Self::parse(&buf)?;
        if s.licence != *licence {
            return Err(ValidationError::WrongLicence);
        }
        Ok(Some(s))
    }

    /// Saves atomically (a crash leaves the old or the new state).
    pub fn save(&self, home: &Home) -> Result<(), ValidationError> {
        let path = state_path(home, &self.licence);
        let dir = crate::fsutil::parent_dir(&path);
        std::fs::create_dir_all(dir)?;
        crate::fsutil::atomic_write(&path, &self.encode())?;
        Ok(())
    }
}

/// What opening a copy may do when an online round was due (its standing was `due`) and
/// the round did not bring a valid ticket — the server unreachable, or an answer that does
/// not verify (WO 98/33296; T18, T23). A signed refusal that stops the copy (revoked,
/// clone, modified viewer) is [`WhenDue::Revoked`] whatever the keyfile says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDue {
    /// The keyfile does not require online validation: the copy opens.
    Open,
    /// The server refused this copy (remembered from an earlier round): it stays refused.
    Revoked,
    /// The keyfile requires a validation the copy does not have: refused until it validates.
    Refuse,
}

/// The rule of [`WhenDue`] for a due standing `due` and the keyfile's
/// `require_online_every_days`.
pub fn when_round_failed(due: &ValidationError, require_online_every_days: Option<u16>) -> WhenDue {
    match due {
        ValidationError::Refused(_) => WhenDue::Revoked,
        _ if require_online_every_days.is_some() => WhenDue::Refuse,
        _ => WhenDue::Open,
    }
}
