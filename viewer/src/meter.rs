//! The real meter: charges go to the card-signed trail of core ([0059]) after core's
//! policy has said how much may be charged ([`tally_core::policy`]).

use crate::session::{Charge, Charged, Meter, Problem};
use tally_core::card::{CardError, TransportError};
use tally_core::policy::{self, Clock, Decision, Limits, Tally};
use tally_core::trail::{Body, LicenceId, Trail, TrailError, Usage};
use tally_core::{Card, CardIdentity};

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

/// A [`Meter`] on a card and its trail for one licence.
pub struct CardMeter {
    card: Card,
    trail: Trail,
    licence: LicenceId,
    limits: Limits,
    clock: Box<dyn Clock>,
    tally: Tally,
    tallied: usize,
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

impl CardMeter {
    /// Opens (or creates) the card's trail at `trail_path` and runs ValidateTrail ([0060]).
    /// The card must be the one `expected` names (the keyfile's card).
    pub fn validate(
        mut card: Card,
        expected: &CardIdentity,
        trail_path: &std::path::Path,
        licence: LicenceId,
        limits: Limits,
        clock: Box<dyn Clock>,
    ) -> Result<Self, Problem> {
        let identity = card.identity().map_err(card_problem)?;
        if identity.serial != expected.serial || identity.public_key != expected.public_key {
            return Err(Problem::WrongCard(format!(
                "this licence is for card {}, the card present is {}",
                expected.serial.to_hex(),
                identity.serial.to_hex()
            )));
        }
        let mut trail =
            Trail::open_or_create(trail_path, &mut card, &identity).map_err(trail_problem)?;
        trail.validate(&mut card).map_err(trail_problem)?;
        let mut m = Self {
            card,
            trail,
            licence,
            limits,
            clock,
            tally: Tally::new(licence),
            tallied: 0,
        };
        m.catch_up();
        Ok(m)
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

    /// Adds the verified records not yet counted to the tally (incremental, [0094]).
    fn catch_up(&mut self) {
        let verified = self.trail.verified_len();
        if self.tallied > verified {
            // The trail was re-read from scratch: count again.
            self.tally = Tally::new(self.licence);
            self.tallied = 0;
        }
        for r in &self.trail.records()[self.tallied..verified] {
            if let Ok(b) = Body::parse(&r.body) {
                self.tally.add(&b);
            }
        }
        self.tallied = verified;
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

    fn standing(&mut self) -> Result<Decision, Problem> {
        Ok(policy::evaluate_reading(
            &self.limits,
            &self.tally,
            self.clock.as_ref(),
        ))
    }
}
