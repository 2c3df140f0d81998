//! The real meter: charges go to the card-signed trail of core ([0059]) after core's
//! policy has said how much may be charged ([`tally_core::policy`]).

use crate::online::{OPEN_TIMEOUT, Round, RoundError, validate_online};
use crate::session::{Charge, Charged, Meter, Problem};
use tally_core::card::{CardError, TransportError};
use tally_core::crypto::PublicKey;
use tally_core::icv::IcvVariant;
use tally_core::keyfile::{Keyfile, KeyfileError, VerifiedKeyfile};
use tally_core::package::{Plaintext, open_package_bytes};
use tally_core::policy::{self, Clock, Decision, Limits, Tally};
use tally_core::trail::{Body, LicenceId, Trail, TrailError, Usage};
use tally_core::validation::{ClientState, OnlineStatus, ValidationError, WhenDue};
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
    /// Keeps the trail's mirror copy at `path` ([0062]), bringing it up to date now; a
    /// failure stops nothing and shows as [`Meter::warning`].
    pub fn mirror_to(&mut self, path: Option<std::path::PathBuf>) {
        self.trail.set_mirror_now(path);
    }

    /// Opens (or creates) the card's trail at `trail_path` and runs ValidateTrail ([0060]).
    /// The card must be the one `expected` names (the keyfile's card). A fresh open
    /// starts from the newest validator record signed by one of `validators` ([0094]):
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
        let mut trail =
            Trail::open_or_create(trail_path, &mut card, &identity).map_err(trail_problem)?;
        trail.set_trusted_validators(validators);
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

    /// Adds the verified records not yet counted to the tally (incremental, [0094]).
    fn catch_up(&mut self) {
        let verified = self.trail.verified_len();
        if self.tallied == 0 || self.tallied > verified {
            // From the start (first count, or the trail was re-read from scratch): the fast
            // start's validator totals, if the trail started from one, plus every verified
            // record after it (all of them without a validator).
            let later: Vec<Body> = self.trail.unvouched_bodies().map(|(_, b)| b).collect();
            self.tally = Tally::resume(self.licence, self.trail.vouched(), &later);
            self.tallied = verified;
            return;
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

    fn warning(&self) -> Option<String> {
        self.trail.mirror_error().map(|e| {
            format!(
                "The mirror copy of your usage record could not be updated ({e}). Your reading is still recorded on this computer."
            )
        })
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

/// What [`check_rental`] found: everything an opening (or `tally-view status`) needs.
pub struct Checked {
    /// The keyfile, its signature verified.
    pub keyfile: VerifiedKeyfile,
    /// The card present (the keyfile's).
    pub identity: CardIdentity,
    /// The meter, its trail validated.
    pub meter: CardMeter,
    /// The policy's answer for opening now.
    pub decision: Decision,
    /// The copy's online standing, when the keyfile names a validation server and the
    /// copy has a valid ticket (for the status bar's "last validated").
    pub online: Option<OnlineStatus>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("identity", &self.identity)
            .field("decision", &self.decision)
            .field("online", &self.online)
            .finish_non_exhaustive()
    }
}

/// The checks of an opening, in order ([0070]–[0074], [0060]): (1) the keyfile's
/// signature against the trusted publishers, (2) the card present and the keyfile's,
/// (3) ValidateTrail (starting from the newest validator record of a trusted validation
/// server, [0094]), (4) the policy, (5) the online validation the keyfile requires
/// ([`check_validation`], which goes online when it is due). Used by opening and by
/// `tally-view status`, so `status` validates online exactly when opening would.
pub fn check_rental(inputs: &OpenInputs) -> Result<Checked, Problem> {
    let bytes = read_bounded(
        &inputs.keyfile,
        tally_core::keyfile::MAX_KEYFILE_BYTES as u64,
        "keyfile",
    )?;
    let keyfile = Keyfile::open(&bytes, &inputs.trusted).map_err(|e| match e {
        KeyfileError::UnknownVendor { .. } => Problem::UntrustedVendor(e.to_string()),
        other => Problem::KeyfileInvalid(other.to_string()),
    })?;
    // The reader's trusted validation servers plus this licence's own: the keyfile's key
    // is the vendor's (signed into the keyfile), so its validator records are as
    // trustworthy as the licence itself. A malformed list is an error, not an empty list.
    let mut validators = inputs.home.trusted_validators().map_err(|e| {
        Problem::Other(format!(
            "the list of trusted validation servers is unreadable: {e}"
        ))
    })?;
    if let Some(s) = keyfile.server()
        && !validators.contains(&s.public_key)
    {
        validators.push(s.public_key.clone());
    }
    let mut card = inputs
        .card
        .open(&inputs.home)
        .map_err(|e| card_problem(CardError::Transport(e)))?;
    let identity = card.identity().map_err(card_problem)?;
    keyfile
        .check_card(&mut card, inputs.clock.now())
        .map_err(|e| Problem::WrongCard(e.to_string()))?;
    let trail_path = inputs.home.trail_path(&identity.serial);
    let mirror = inputs
        .home
        .mirror_path(&identity.serial)
        .map_err(|e| Problem::Other(format!("the mirror setting is unreadable: {e}")))?;
    let mut meter = CardMeter::validate(
        card,
        keyfile.card(),
        &trail_path,
        keyfile.licence(),
        keyfile.limits().clone(),
        inputs.clock.clone(),
        validators,
    )?;
    meter.mirror_to(mirror);
    let decision = meter.evaluate_opening();
    if let Decision::Denied { reason } = &decision {
        return Err(Problem::Refused(reason.clone()));
    }
    let online = check_validation(inputs, &keyfile)?;
    Ok(Checked {
        keyfile,
        identity,
        meter,
        decision,
        online,
    })
}

/// The validation rule of WO 98/33296 as the keyfile sets it, going online when due.
///
/// Offline first: with a valid ticket no older than `require_online_every_days`
/// (`ClientState::check_offline`, T18) the copy opens without the network. Otherwise —
/// never validated (the first open is the installation), the ticket too old or expired,
/// or a refusal remembered (only a later VAL_OK lifts it) — one online round
/// ([`crate::online`], [`crate::online::OPEN_TIMEOUT`]): a VAL_OK opens; a signed refusal
/// that stops the copy (revoked, clone, modified viewer, T23) is refused; anything else —
/// the server unreachable, an answer that does not verify — falls back to the offline
/// rule, whose refusal then says what the round met. Without a requirement in the
/// keyfile, a copy that could not be validated still opens.
pub fn check_validation(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
) -> Result<Option<OnlineStatus>, Problem> {
    let Some(server) = keyfile.server() else {
        return Ok(None);
    };
    let days = server.require_online_every_days;
    let clock = inputs.clock.as_ref();
    let state = ClientState::load(&inputs.home, &keyfile.licence()).map_err(|e| {
        Problem::ValidationNeeded(format!("the validation record is unreadable: {e}"))
    })?;
    let due = match ClientState::standing(state.as_ref(), &server.public_key, days, clock) {
        Ok(s) => return Ok(Some(s)),
        Err(e) => e,
    };
    let tried = match online_round(inputs, keyfile) {
        Ok(state) => {
            return match state.check_offline(&server.public_key, days, clock) {
                Ok(s) => Ok(Some(s)),
                Err(e) => offline_rule(e, days, None),
            };
        }
        Err(RoundError::Answer(e @ ValidationError::Refused(status)))
            if status.stops_the_copy() =>
        {
            return Err(Problem::Revoked(e.to_string()));
        }
        Err(e) => e.to_string(),
    };
    offline_rule(due, days, Some(&tried))
}

/// The refusal for a copy whose offline check failed with `e` (`tried`: why the online
/// round just made did not help).
fn offline_rule(
    e: ValidationError,
    days: Option<u16>,
    tried: Option<&str>,
) -> Result<Option<OnlineStatus>, Problem> {
    let why = match tried {
        Some(t) => format!("{e} (tried just now: {t})"),
        None => e.to_string(),
    };
    match tally_core::validation::when_round_failed(&e, days) {
        WhenDue::Revoked => Err(Problem::Revoked(why)),
        WhenDue::Refuse => Err(Problem::ValidationNeeded(why)),
        WhenDue::Open => Ok(None),
    }
}

/// One online round for opening: the package and this viewer's executable are read for
/// their ICVs (only here, when a round is due).
fn online_round(inputs: &OpenInputs, keyfile: &VerifiedKeyfile) -> Result<ClientState, RoundError> {
    let server = keyfile.server().ok_or(RoundError::NoServer)?;
    let package = read_bounded(&inputs.package, MAX_PACKAGE_BYTES, "package")
        .map_err(|p| RoundError::Local(p.to_string()))?;
    let viewer_icv = tally_core::icv::current_executable_icv().map_err(|e| {
        RoundError::Local(format!(
            "cannot read this viewer's executable for its ICV: {e}"
        ))
    })?;
    let round = Round {
        url: &server.url,
        package: &package,
        variant: IcvVariant::V7,
        viewer_icv,
        clock: inputs.clock.as_ref(),
        timeout: OPEN_TIMEOUT,
    };
    validate_online(&inputs.home, keyfile, &round).map(|(state, _)| state)
}

/// Opens a rental: [`check_rental`], then decrypts the package into memory and, when
/// reading is allowed, writes the `open` record. A used-up rental opens in limited
/// mode (the cover page only, claim 6) without a record.
pub fn open_rental(inputs: &OpenInputs) -> Result<Opened, Problem> {
    let Checked {
        keyfile,
        identity: _,
        mut meter,
        decision,
        online,
    } = check_rental(inputs)?;
    let validated = online.map(|s| s.last_validated);
    let bytes = read_bounded(&inputs.package, MAX_PACKAGE_BYTES, "package")?;
    let key = keyfile
        .unwrap_content_key(meter.card_mut())
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
