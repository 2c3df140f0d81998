//! The meter: charges go to the card-signed trail (\[0059\]) after the policy has said how
//! much may be charged ([`crate::policy`]).

use super::Problem;
use crate::card::{CardError, TransportError};
use crate::crypto::{Hash, PublicKey};
use crate::policy::{self, Clock, Decision, Limits, Tally};
use crate::trail::{Archive, Body, LicenceId, Record, Trail, TrailError, Usage};
use crate::validation::{CardProgress, CardProof, RequestSigner};
use crate::{Card, CardIdentity};
use std::path::Path;

/// One charge the session asks the meter to record on the card-signed trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The document was opened (\[0048\]).
    Open,
    /// Prepay a block of page views, starting at page `first` (1-based).
    Pages {
        /// The page about to be shown (1-based).
        first: u32,
    },
    /// Start one time unit.
    Time,
    /// Pages about to be printed.
    Print {
        /// How many.
        pages: u32,
    },
    /// Text about to be copied: checked against the copy right, the rental's dates and
    /// thresholds and its `copies` / `copy-chars` (`policy::copy_allowed`), then recorded
    /// as a `copy` record before the text may go to the clipboard.
    Copy {
        /// Characters in the selection.
        chars: u32,
    },
}

/// What a charge bought, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// The `open` record.
    Open,
    /// `count` page views prepaid.
    Pages {
        /// Page views bought.
        count: u32,
    },
    /// One time unit of `seconds`.
    Time {
        /// Its length.
        seconds: u32,
    },
    /// Printing allowed and recorded.
    Print {
        /// Pages.
        pages: u32,
    },
    /// Copying allowed and recorded.
    Copy {
        /// Characters.
        chars: u32,
    },
}

/// Records usage on the card-signed trail and applies the licence's policy.
///
/// Implementations re-validate the trail (incrementally) before each charge and refuse
/// with a [`Problem`] when the trail, the card or the policy says no. A meter never
/// pretends: a charge that returns `Ok` is a record on the trail.
pub trait Meter: Send {
    /// Records one charge, returns what it bought and the policy's view afterwards.
    fn charge(&mut self, charge: Charge) -> Result<(Charged, Decision), Problem>;
    /// The policy's view now, without charging.
    fn standing(&mut self) -> Result<Decision, Problem>;
    /// Something the reader should know that stops nothing (the mirror copy of the trail
    /// could not be written, say). `None` when all is well.
    fn warning(&self) -> Option<String> {
        None
    }
    /// Where the trail stands for the automatic backup ([`super::AutoBackup`]): how many
    /// records came after the newest validator record of the licence's server, and when
    /// that was written. `None` for a meter that keeps no trail.
    fn backup_state(&self) -> Option<super::BackupState> {
        None
    }
    /// Writes a validation server's answer through Write, the way charges are written
    /// ([`super::VouchWriter::append_vouched`]).
    fn append_vouched(&mut self, _bodies: &[Body], _after: u64) -> Result<Vec<Record>, TrailError> {
        Err(TrailError::NotArchivable("this meter keeps no trail"))
    }
    /// Moves the records the newest validator vouches for out of the working trail when it
    /// holds more than `above` records ([`Trail::archive`]), and goes on with the archived
    /// trail. `None` when there was nothing to do.
    fn archive_vouched(&mut self, _above: u64) -> Result<Option<Archive>, TrailError> {
        Ok(None)
    }
}

/// Translates a trail failure into what the reader is told.
pub fn trail_problem(e: TrailError) -> Problem {
    match e {
        TrailError::WrongCard(s) => Problem::WrongCard(s),
        TrailError::Card(c) => card_problem(c),
        other => Problem::TrailInvalid(other.to_string()),
    }
}

/// Translates a card failure into what the reader is told.
pub fn card_problem(e: CardError) -> Problem {
    match e {
        CardError::Transport(
            t @ (TransportError::NoService
            | TransportError::NoReader(_)
            | TransportError::NoCard
            | TransportError::CardRemoved
            | TransportError::NotFound(_)),
        ) => Problem::NoCard(t.to_string()),
        other => Problem::Other(format!("the card answered unexpectedly: {other}")),
    }
}

/// The totals of `licence` in a verified trail: a fast start's validator totals, if the
/// trail started from one (\[0094\]), plus every verified record after it; lost records
/// accounted for only by the recovery records of `servers` (the licence's own, T30).
///
/// A validator's totals carry neither copies nor the time of the first opening
/// ([`Tally::history_unknown`]). When the validator names use of this licence, the records
/// it vouched for are read for them — they are still in the file, from the genesis record
/// on, authenticated by its chain hash — unless the trail was archived, in which case they
/// stay unknown and a policy that needs them fails closed.
pub fn tally_of(trail: &Trail, licence: LicenceId, servers: &[Hash]) -> Tally {
    let later: Vec<Body> = trail.unvouched_bodies().map(|(_, b)| b).collect();
    let mut t = Tally::resume(licence, servers, trail.vouched(), &later);
    if t.history_unknown()
        && let Some(v) = trail.vouched()
    {
        let prefix: Vec<Body> = trail.records()[..v.prefix.min(trail.records().len())]
            .iter()
            .filter_map(|r| Body::parse(&r.body).ok())
            .collect();
        if prefix.first().is_some_and(|b| b.usage == Usage::Genesis) {
            t.replay_vouched(&prefix);
        }
    }
    t
}

/// The fingerprints of `keys`, as recovery and validator records name their server.
pub(crate) fn fingerprints(keys: &[PublicKey]) -> Vec<Hash> {
    keys.iter().map(PublicKey::fingerprint).collect()
}

/// A [`Meter`] on a card and its trail for one licence.
pub struct CardMeter {
    card: Card,
    trail: Trail,
    licence: LicenceId,
    /// Fingerprints of the licence's validation servers (its keyfile's).
    servers: Vec<Hash>,
    /// Their keys (the trail trusts them for validator records and archive anchors).
    validators: Vec<PublicKey>,
    /// The trail's [`Trail::generation`] when `tallied` was counted.
    generation: u64,
    limits: Limits,
    clock: std::sync::Arc<dyn Clock>,
    tally: Tally,
    tallied: usize,
    /// The card's progress over the records tallied (T34), kept up to date with them.
    progress: CardProgress,
}

impl std::fmt::Debug for CardMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardMeter")
            .field("card", &self.card)
            .field("trail", &self.trail)
            .field("licence", &self.licence.to_hex())
            .finish_non_exhaustive()
    }
}

/// Runs `attempt` on the trail at `path` (an opening's ValidateTrail, a standing check);
/// when it finds the trail archived at a validator this licence's server did not sign
/// (another publisher's automatic backup), puts the archived records back
/// ([`Trail::rejoin`]; no card counter is spent) and runs it once more, so the licence reads
/// its own use from the card-signed records themselves (T30).
pub(super) fn rejoining<T>(
    path: &Path,
    identity: &CardIdentity,
    mut attempt: impl FnMut() -> Result<T, TrailError>,
) -> Result<T, Problem> {
    match attempt() {
        Err(TrailError::Archived { .. }) => {
            Trail::rejoin(path, identity).map_err(trail_problem)?;
            attempt()
        }
        other => other,
    }
    .map_err(trail_problem)
}

impl CardMeter {
    /// Keeps the trail's mirror copy at `path` (\[0062\]), bringing it up to date now; a
    /// failure stops nothing and shows as [`Meter::warning`].
    pub fn mirror_to(&mut self, path: Option<std::path::PathBuf>) {
        self.trail.set_mirror_now(path);
    }

    /// Opens (or creates) the card's trail at `trail_path` and runs ValidateTrail (\[0060\]).
    /// The card must be the one `expected` names (the keyfile's card). A fresh open
    /// starts from the newest validator record signed by one of `validators` (\[0094\]):
    /// the records it vouches for are checked by their chain hash, not one signature
    /// each, and the licence's totals start from the validator's. Empty: full validation.
    pub fn validate(
        mut card: Card,
        expected: &CardIdentity,
        trail_path: &std::path::Path,
        licence: LicenceId,
        limits: Limits,
        clock: std::sync::Arc<dyn Clock>,
        validators: Vec<PublicKey>,
    ) -> Result<Self, Problem> {
        let identity = card.identity().map_err(card_problem)?;
        if identity.serial != expected.serial || identity.public_key != expected.public_key {
            return Err(Problem::WrongCard(format!(
                "this licence is for card {}, the card present is {}",
                expected.serial.to_hex(),
                identity.serial.to_hex()
            )));
        }
        let servers = fingerprints(&validators);
        let open = |card: &mut Card| {
            let mut t = Trail::open_or_create(trail_path, card, &identity)?;
            t.set_trusted_validators(validators.clone());
            t.verify(card).map(|_| t)
        };
        let trail = rejoining(trail_path, &identity, || open(&mut card))?;
        let mut m = Self {
            card,
            generation: trail.generation(),
            trail,
            licence,
            servers,
            validators,
            limits,
            clock,
            tally: Tally::new(licence),
            tallied: 0,
            progress: CardProgress::default(),
        };
        m.catch_up();
        Ok(m)
    }

    /// The card, for the keyfile's content-key unwrap (DECIPHER).
    pub fn card_mut(&mut self) -> &mut Card {
        &mut self.card
    }

    /// The policy's answer for opening now (before the `open` record).
    pub fn evaluate_opening(&self) -> Decision {
        policy::evaluate(&self.limits, &self.tally, self.clock.as_ref())
    }

    /// The totals of this licence.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The trail (for status output and tests).
    pub fn trail(&self) -> &Trail {
        &self.trail
    }

    /// The licence's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the card-signed trail says about the licence's use (T34: offline use is
    /// bounded by the card's progress since the last ticket).
    pub fn progress(&self) -> CardProgress {
        self.progress.clone()
    }

    /// Adds the verified records not yet counted to the tally (incremental, \[0094\]).
    fn catch_up(&mut self) {
        let verified = self.trail.verified_len();
        if self.tallied == 0
            || self.tallied > verified
            || self.generation != self.trail.generation()
        {
            self.generation = self.trail.generation();
            // From the start (first count, or the trail was re-read from scratch).
            self.tally = tally_of(&self.trail, self.licence, &self.servers);
            self.progress = CardProgress::of_trail(&self.trail, self.licence);
            self.tallied = verified;
            return;
        }
        for r in &self.trail.records()[self.tallied..verified] {
            if let Ok(b) = Body::parse(&r.body) {
                self.tally.add(&b);
            }
            self.progress.add(r, self.licence);
        }
        self.tallied = verified;
    }

    /// Writes the licence's `return` record (`tally-view return`, [`super::return_licence`])
    /// through Write and gives the card-signed record back, for the receipt. Refused when
    /// the licence was returned on this card already ([`policy::Reason::Returned`]); any
    /// other state of the rental — used up, expired, superseded — may be returned. The
    /// record's time is never earlier than the trail's newest record.
    pub fn record_return(&mut self) -> Result<crate::trail::Record, Problem> {
        if let Some(on) = self.tally.returned() {
            return Err(Problem::Refused(policy::Reason::Returned { on }));
        }
        let now = self.clock.now();
        let at = self.tally.newest_any.map_or(now, |n| now.max(n));
        let body = Body::at_unix(
            Usage::Return {
                licence: self.licence,
            },
            at.unix_timestamp(),
        );
        let record = self
            .trail
            .write(&mut self.card, &body)
            .map_err(trail_problem)?;
        self.catch_up();
        Ok(record)
    }

    fn write(&mut self, usage: Usage) -> Result<(), Problem> {
        let at = self.clock.now().unix_timestamp();
        let body = Body::at_unix(usage, at);
        self.trail
            .write(&mut self.card, &body)
            .map_err(trail_problem)?;
        self.catch_up();
        Ok(())
    }
}

/// A VAL_REQ is signed as a record of the card's trail, written through Write like every
/// charge: the counter value the card spends is a record, never a gap (T32).
impl RequestSigner for CardMeter {
    fn sign_request(&mut self, body: &Body) -> Result<CardProof, String> {
        let proof = crate::validation::client::sign_through(&mut self.trail, &mut self.card, body)
            .map_err(|e| trail_problem(e).to_string())?;
        self.catch_up();
        Ok(proof)
    }
}

/// The answer of the licence's validation server is written like a charge: through Write,
/// under the trail lock, in the card transaction of this meter (\[0094\]).
impl super::VouchWriter for CardMeter {
    fn append_vouched(&mut self, bodies: &[Body], after: u64) -> Result<Vec<Record>, TrailError> {
        let written = self.trail.write_all(&mut self.card, bodies);
        // Counted whatever happened: a batch cut short still wrote its first records.
        self.catch_up();
        let written = written?;
        Ok(super::backup::records_between(
            self.trail.records(),
            after,
            &written,
        ))
    }
}

impl Meter for CardMeter {
    fn charge(&mut self, charge: Charge) -> Result<(Charged, Decision), Problem> {
        let lic = self.licence;
        let clock = self.clock.as_ref();
        let charged = match charge {
            Charge::Open => {
                match policy::evaluate(&self.limits, &self.tally, clock) {
                    Decision::Allowed { .. } => {}
                    Decision::Limited { reason } | Decision::Denied { reason } => {
                        return Err(Problem::Refused(reason));
                    }
                }
                // A renewed keyfile opened here for the first time: recorded, so that older
                // versions of the licence are refused on this card from now on.
                let version = self.limits.licence_version;
                if version > self.tally.newest_version {
                    self.write(Usage::Renewal {
                        licence: lic,
                        version,
                    })?;
                }
                self.write(Usage::Open { licence: lic })?;
                Charged::Open
            }
            Charge::Pages { first } => {
                let count = policy::page_charge(&self.limits, &self.tally, clock)
                    .map_err(Problem::Refused)?;
                self.write(Usage::Pages {
                    licence: lic,
                    first,
                    count,
                })?;
                Charged::Pages { count }
            }
            Charge::Time => {
                let seconds = policy::time_charge(&self.limits, &self.tally, clock)
                    .map_err(Problem::Refused)?;
                self.write(Usage::Time {
                    licence: lic,
                    seconds,
                })?;
                Charged::Time { seconds }
            }
            Charge::Copy { chars } => {
                policy::copy_allowed(&self.limits, &self.tally, clock, u64::from(chars))
                    .map_err(Problem::Refused)?;
                self.write(Usage::Copy {
                    licence: lic,
                    chars,
                })?;
                Charged::Copy { chars }
            }
            Charge::Print { pages } => {
                policy::print_allowed(&self.limits, &self.tally, clock, pages)
                    .map_err(Problem::Refused)?;
                self.write(Usage::Print {
                    licence: lic,
                    pages,
                })?;
                Charged::Print { pages }
            }
        };
        Ok((charged, self.standing()?))
    }

    fn warning(&self) -> Option<String> {
        self.trail.mirror_error().map(|e| {
            format!(
                "The mirror copy of your usage record could not be updated ({e}). Your reading is still recorded on this computer."
            )
        })
    }

    fn backup_state(&self) -> Option<super::BackupState> {
        Some(super::BackupState::of(self.trail.records(), &self.servers))
    }

    fn append_vouched(&mut self, bodies: &[Body], after: u64) -> Result<Vec<Record>, TrailError> {
        super::VouchWriter::append_vouched(self, bodies, after)
    }

    fn archive_vouched(&mut self, above: u64) -> Result<Option<Archive>, TrailError> {
        if self.trail.records().len() as u64 <= above {
            return Ok(None);
        }
        let path = self.trail.path().to_path_buf();
        let identity = self.trail.identity().clone();
        let archived = Trail::archive(&path, &identity, self.validators.clone())?;
        // This handle read the file the archive replaced: go on with the new one (its
        // records from the validator's anchor on, checked by the fast start), and bring
        // the mirror copy in step with it now.
        let mut t = Trail::open(&path, &identity)?;
        t.set_trusted_validators(self.validators.clone());
        t.verify_offline()?;
        t.set_mirror_now(self.trail.mirror_path().map(Path::to_path_buf));
        self.trail = t;
        self.tallied = 0;
        self.catch_up();
        Ok(Some(archived))
    }

    fn standing(&mut self) -> Result<Decision, Problem> {
        Ok(policy::evaluate_reading(
            &self.limits,
            &self.tally,
            self.clock.as_ref(),
        ))
    }
}
