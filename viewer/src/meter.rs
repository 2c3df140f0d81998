//! The real meter: charges go to the card-signed trail of core ([0059]) after core's
//! policy has said how much may be charged ([`tally_core::policy`]).

use crate::session::{Charge, Charged, Meter, Problem};
use tally_core::card::{CardError, TransportError};
use tally_core::keyfile::{Keyfile, KeyfileError, VerifiedKeyfile};
use tally_core::package::{Plaintext, open_package_bytes};
use tally_core::policy::{self, Clock, Decision, Limits, Tally};
use tally_core::trail::{Body, LicenceId, Trail, TrailError, Usage};
use tally_core::vendor::VendorPublic;
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
    clock: std::sync::Arc<dyn Clock>,
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
        clock: std::sync::Arc<dyn Clock>,
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

/// Everything needed to open a rental.
pub struct OpenInputs {
    /// The package file.
    pub package: std::path::PathBuf,
    /// The keyfile.
    pub keyfile: std::path::PathBuf,
    /// The reader's home folder (card state, trails).
    pub home: tally_core::home::Home,
    /// Which card.
    pub card: tally_core::home::CardSpec,
    /// Publishers trusted for this opening.
    pub trusted: Vec<VendorPublic>,
    /// The clock (injected so tests can set it back).
    pub clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for OpenInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenInputs")
            .field("package", &self.package)
            .field("keyfile", &self.keyfile)
            .finish_non_exhaustive()
    }
}

/// A rental that passed every check, with its document decrypted in memory.
pub struct Opened {
    /// What the UI shows about the rental.
    pub info: crate::session::RentalInfo,
    /// Pages, as the package header says.
    pub page_count: usize,
    /// The policy's answer (after the `open` record when reading is allowed).
    pub decision: Decision,
    /// The meter for the session.
    pub meter: CardMeter,
    /// The decrypted PDF (memory only, zeroized on drop).
    pub document: Plaintext,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("title", &self.info.title)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

/// Largest package read into memory.
pub const MAX_PACKAGE_BYTES: u64 = 1 << 31;

fn read_bounded(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>, Problem> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)
        .map_err(|e| Problem::Other(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Problem::Other(format!("cannot read the {what} {}: {e}", path.display())))?;
    if buf.len() as u64 > max {
        return Err(Problem::Other(format!(
            "the {what} {} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// The checks of an opening, in order ([0070]–[0074], [0060]): (1) the keyfile's
/// signature against the trusted publishers, (2) the card present and the keyfile's,
/// (3) ValidateTrail, (4) the policy, (5) the online validation the keyfile requires.
/// Returns the verified keyfile, the card's identity
/// and the meter. Used by opening and by `tally-view status`.
pub fn check_rental(
    inputs: &OpenInputs,
) -> Result<(VerifiedKeyfile, CardIdentity, CardMeter, Decision), Problem> {
    let bytes = read_bounded(
        &inputs.keyfile,
        tally_core::keyfile::MAX_KEYFILE_BYTES as u64,
        "keyfile",
    )?;
    let keyfile = Keyfile::open(&bytes, &inputs.trusted).map_err(|e| match e {
        KeyfileError::UnknownVendor { .. } => Problem::UntrustedVendor(e.to_string()),
        other => Problem::KeyfileInvalid(other.to_string()),
    })?;
    let mut card = inputs
        .card
        .open(&inputs.home)
        .map_err(|e| card_problem(CardError::Transport(e)))?;
    let identity = card.identity().map_err(card_problem)?;
    let emulated = matches!(inputs.card, tally_core::home::CardSpec::Emulated(_));
    keyfile
        .check_card(&identity, emulated)
        .map_err(|e| Problem::WrongCard(e.to_string()))?;
    let trail_path = inputs.home.trail_path(&identity.serial);
    let meter = CardMeter::validate(
        card,
        keyfile.card(),
        &trail_path,
        keyfile.licence(),
        keyfile.limits().clone(),
        inputs.clock.clone(),
    )?;
    let decision = meter.evaluate_opening();
    if let Decision::Denied { reason } = &decision {
        return Err(Problem::Refused(reason.clone()));
    }
    check_validation(inputs, &keyfile)?;
    Ok((keyfile, identity, meter, decision))
}

/// The validation rule of WO 98/33296 as the keyfile sets it: with a validation server
/// and `require_online_every_days`, the last ticket must be valid and recent enough
/// (`ClientState::check_offline`, T18); a copy the server refused stays refused (T23).
/// Validating online is `tally-view validate`.
pub fn check_validation(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
) -> Result<Option<tally_core::validation::OnlineStatus>, Problem> {
    use tally_core::validation::{ClientState, ValidationError};
    let Some(server) = keyfile.server() else {
        return Ok(None);
    };
    let days = server.require_online_every_days;
    let state = ClientState::load(&inputs.home, &keyfile.licence()).map_err(|e| {
        Problem::ValidationNeeded(format!("the validation record is unreadable: {e}"))
    })?;
    let Some(state) = state else {
        return match days {
            Some(_) => Err(Problem::ValidationNeeded(
                "this copy has never been validated".into(),
            )),
            None => Ok(None),
        };
    };
    match state.check_offline(&server.public_key, days, inputs.clock.as_ref()) {
        Ok(s) => Ok(Some(s)),
        Err(e @ ValidationError::Refused(_)) => Err(Problem::Revoked(e.to_string())),
        Err(e) if days.is_some() => Err(Problem::ValidationNeeded(e.to_string())),
        Err(_) => Ok(None),
    }
}

/// Opens a rental: [`check_rental`], then decrypts the package into memory and, when
/// reading is allowed, writes the `open` record. A used-up rental opens in limited
/// mode (the cover page only, claim 6) without a record.
pub fn open_rental(inputs: &OpenInputs) -> Result<Opened, Problem> {
    let (keyfile, identity, mut meter, decision) = check_rental(inputs)?;
    let validated = check_validation(inputs, &keyfile)?.map(|s| s.last_validated);
    let bytes = read_bounded(&inputs.package, MAX_PACKAGE_BYTES, "package")?;
    let key = keyfile
        .unwrap_content_key(&identity)
        .map_err(|e| Problem::KeyfileInvalid(e.to_string()))?;
    let (header, document) = open_package_bytes(&bytes, &inputs.trusted, &key)
        .map_err(|e| Problem::PackageInvalid(e.to_string()))?;
    if header.document_id() != keyfile.document() {
        return Err(Problem::PackageInvalid(
            "this licence is for a different document".into(),
        ));
    }
    let decision = match decision {
        Decision::Allowed { .. } => meter.charge(Charge::Open)?.1,
        other => other,
    };
    let renew_hint = match keyfile.server() {
        Some(s) => format!(
            "To read on, ask {} for a new licence (their service: {}).",
            keyfile.vendor().name(),
            s.url
        ),
        None => format!(
            "To read on, ask {} for a new licence and open the document with it.",
            keyfile.vendor().name()
        ),
    };
    Ok(Opened {
        info: crate::session::RentalInfo {
            title: header.title().to_string(),
            customer: keyfile.customer_name().to_string(),
            rights: keyfile.rights(),
            renew_hint,
            validated,
        },
        page_count: header.page_count() as usize,
        decision,
        meter,
        document,
    })
}
