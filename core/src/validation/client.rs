//! The copy's side: its sequence numbers, rolling UI and last ticket, persisted
//! atomically in `<TALLY_HOME>/validation/<licence>.state`.
//!
//! ```text
//! state file (STATE_LEN = 382 bytes)
//!   "TALLYVST" · version u8 = 1 · licence 16 · UI 16 · IV 32 · PSI u64 · VSSI u64 ·
//!   pending u8 (0/1) · pending PSI u64 · pending request hash 32 ·
//!   ticket u8 (0/1) · ticket VERDICT_LEN · last refusal u8 (0xff none, else a status) ·
//!   SHA-256 of everything before it
//! ```
//! The checksum only catches corruption: the reader controls this file, which is why
//! the ticket in it is re-verified under the server key every time it is used.

use super::wire::{Status, VERDICT_LEN, ValReq, Verdict, request_hash};
use super::{CLOCK_SKEW_SECONDS, MAX_SEQUENCE_STEP, ValidationError};
use crate::crypto::{self, Hash, PublicKey};
use crate::home::Home;
use crate::icv::{self, Icv, IcvVariant, Iv, Ui};
use crate::policy::Clock;
use crate::trail::LicenceId;
use rand_core::CryptoRngCore;
use std::path::PathBuf;
use time::OffsetDateTime;

const MAGIC: &[u8; 8] = b"TALLYVST";
const VERSION: u8 = 1;
/// Bytes of a state file.
pub const STATE_LEN: usize = 8 + 1 + 16 + 16 + 32 + 8 + 8 + 1 + 8 + 32 + 1 + VERDICT_LEN + 1 + 32;
const NO_REFUSAL: u8 = 0xff;

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
    pending: Option<(u64, Hash)>,
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

    /// Builds and encrypts the next VAL_REQ: PSI moves on, the request is remembered as
    /// pending. Save the state *before* sending, so a crash never reuses a PSI.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &mut self,
        variant: IcvVariant,
        package: &[u8],
        server: &PublicKey,
        viewer_icv: Icv,
        clock: &dyn Clock,
        rng: &mut impl CryptoRngCore,
    ) -> Vec<u8> {
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
        self.psi = psi;
        self.pending = Some((psi, request_hash(&req.encode())));
        req.seal(server, rng)
    }

    /// Accepts the server's answer to the pending request. A VAL_OK rolls the UI
    /// forward and becomes the ticket; a signed refusal is remembered and returned as
    /// [`ValidationError::Refused`]. Anything else (a replay, another copy's ticket, a
    /// sequence jump, a bad signature) is an error and changes nothing (T17, T19).
    pub fn accept(&mut self, bytes: &[u8], server: &PublicKey) -> Result<Verdict, ValidationError> {
        let v = Verdict::open(bytes, server)?;
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
        let Some((psi, hash)) = self.pending else {
            return Err(ValidationError::NothingPending);
        };
        if v.request != hash || v.psi != psi {
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
    ) -> Result<OnlineStatus, ValidationError> {
        match state {
            Some(s) => s.check_offline(server, require_online_every_days, clock),
            None => Err(ValidationError::NeverValidated),
        }
    }

    /// Whether the copy may be used now without going online (T18): the last ticket
    /// must verify, not be expired, be no older than the keyfile's
    /// `require_online_every_days`, and not be dated after the local clock (a clock set
    /// back). A copy the server refused stays refused until a later VAL_OK (T23).
    pub fn check_offline(
        &self,
        server: &PublicKey,
        require_online_every_days: Option<u16>,
        clock: &dyn Clock,
    ) -> Result<OnlineStatus, ValidationError> {
        if let Some(s) = self.refusal {
            return Err(ValidationError::Refused(s));
        }
        let Some(bytes) = &self.ticket else {
            return Err(ValidationError::NeverValidated);
        };
        let t = Verdict::open(bytes, server)?;
        if t.status != Status::Ok {
            return Err(ValidationError::Refused(t.status));
        }
        let now = clock.now().unix_timestamp();
        if now < t.dt.saturating_sub(CLOCK_SKEW_SECONDS) {
            return Err(ValidationError::ClockBehind {
                now: rfc3339(at(now)),
                last: rfc3339(at(t.dt)),
            });
        }
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
        let (flag, psi, hash) = match self.pending {
            Some((p, h)) => (1u8, p, h),
            None => (0, 0, [0; 32]),
        };
        v.push(flag);
        v.extend_from_slice(&psi.to_be_bytes());
        v.extend_from_slice(&hash);
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

    /// Parses a state file of exactly [`STATE_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        if bytes.len() != STATE_LEN {
            return Err(ValidationError::Length {
                what: "validation state",
                expected: STATE_LEN,
                actual: bytes.len(),
            });
        }
        let (body, sum) = bytes.split_at(STATE_LEN - 32);
        if crypto::sha256(body)[..] != *sum {
            return Err(ValidationError::CorruptState);
        }
        if &body[..8] != MAGIC {
            return Err(ValidationError::BadMagic("validation state"));
        }
        if body[8] != VERSION {
            return Err(ValidationError::UnsupportedVersion {
                what: "validation state",
                version: body[8],
            });
        }
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
        let tflag = take(1)[0];
        let ticket = take(VERDICT_LEN).to_vec();
        let refusal = take(1)[0];
        let pending = match pflag {
            0 => None,
            1 => Some((ppsi, phash)),
            _ => return Err(ValidationError::BadField("validation state: pending flag")),
        };
        let ticket = match tflag {
            0 => None,
            1 => Some(ticket),
            _ => return Err(ValidationError::BadField("validation state: ticket flag")),
        };
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
        f.take(STATE_LEN as u64 + 1).read_to_end(&mut buf)?;
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
