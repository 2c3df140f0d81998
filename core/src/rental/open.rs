//! Opening a rental: every check of \[0070\]–\[0074\] and \[0060\], in order, with typed
//! refusals ([`Problem`]), then the online rule of WO 98/33296 through the caller's
//! [`Transport`], then the document decrypted into memory. [`check_standing`] is the same
//! checks without writing anything or going online, for a reader who asks what is left.

use super::Problem;
use super::meter::{CardMeter, card_problem, trail_problem};
use super::meter::{Charge, Meter};
use super::online::{OPEN_TIMEOUT, Round, RoundError, Transport, validate_online};
use super::session::RentalInfo;
use crate::CardIdentity;
use crate::card::CardError;
use crate::home::{CardSpec, Home};
use crate::icv::IcvVariant;
use crate::keyfile::{Keyfile, KeyfileError, VerifiedKeyfile};
use crate::package::{PackageHeader, Plaintext, open_package_vec};
use crate::policy::{self, Clock, Decision, FloorClock, Tally};
use crate::trail::Trail;
use crate::validation::{CardProgress, ClientState, OnlineStatus, ValidationError, WhenDue};
use crate::vendor::VendorPublic;
use std::sync::Arc;

/// Everything needed to open a rental.
pub struct OpenInputs {
    /// The package file.
    pub package: std::path::PathBuf,
    /// The keyfile.
    pub keyfile: std::path::PathBuf,
    /// The reader's home folder (card state, trails).
    pub home: Home,
    /// Which card.
    pub card: CardSpec,
    /// Publishers trusted for this opening.
    pub trusted: Vec<VendorPublic>,
    /// The clock (injected so tests can set it back).
    pub clock: Arc<dyn Clock>,
    /// How the online rounds reach the validation server (the caller's HTTP client, or
    /// [`super::NoNetwork`]).
    pub transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for OpenInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenInputs")
            .field("package", &self.package)
            .field("keyfile", &self.keyfile)
            .finish_non_exhaustive()
    }
}

/// A rental that passed every check, with its document decrypted in memory. Start reading
/// with [`Opened::start`].
pub struct Opened {
    /// What the UI shows about the rental.
    pub info: RentalInfo,
    /// Pages, as the package header says.
    pub page_count: usize,
    /// The policy's answer (after the `open` record when reading is allowed).
    pub decision: Decision,
    /// The meter for the session.
    pub meter: CardMeter,
    /// The decrypted PDF (memory only, zeroized on drop).
    pub document: Plaintext,
    /// The background contact with the licence's validation server that [`Opened::start`]
    /// makes (`None`: the licence names no server).
    contact: Option<super::contact::Job>,
    /// The automatic backup [`Opened::start`] starts: when the licence names a validation
    /// server and the reader left the automatic backup on (`Home::auto_backup`).
    pub backup: Option<super::BackupPlan>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("title", &self.info.title)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// Starts reading: the meter moves to its own thread (`wake` is called after each of
    /// its answers, so a UI can repaint), the session asks for page 1, whose view is
    /// charged before it is shown, and the automatic backup starts on a thread of its own
    /// (when [`Opened::backup`] is set). Returns the session and the document for the
    /// caller's renderer.
    ///
    /// When the licence names a validation server, a background thread asks it whether the
    /// publisher has a challenge pending for the card and answers it (\[0104\],
    /// [`super::answer_challenge`]): the reader does nothing and waits for nothing; the
    /// outcome is [`super::Session::server_contact`]. Beside it, another sends the receipts
    /// of returned licences still pending ([`super::send_pending`],
    /// [`super::Session::pending_returns_sent`]).
    pub fn start(self, wake: Box<dyn Fn() + Send>) -> Result<(super::Session, Plaintext), Problem> {
        let worker = super::MeterWorker::spawn(Box::new(self.meter), wake)
            .map_err(|e| Problem::Other(format!("cannot start the meter: {e}")))?;
        let mut session = super::Session::new(self.info, self.page_count, self.decision, worker);
        if let Some(job) = self.contact {
            // A thread that cannot start only means no contact this time (said as such).
            session.attach_returns(job.spawn_returns());
            session.attach_contact(job.spawn());
        }
        session.go_to(0);
        if let Some(plan) = self.backup {
            session.start_backup(plan);
        }
        Ok((session, self.document))
    }
}

/// Largest package read into memory.
pub const MAX_PACKAGE_BYTES: u64 = 1 << 31;

pub(super) fn read_bounded(
    path: &std::path::Path,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, Problem> {
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

/// What [`check_rental`] found: everything an opening needs.
pub struct Checked {
    /// The keyfile, its signature verified.
    pub keyfile: VerifiedKeyfile,
    /// The package's header, signed by the keyfile's vendor, for the keyfile's document.
    pub header: PackageHeader,
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

/// The keyfile, verified against the trusted publishers; a package given in its place
/// (the two arguments swapped) is named as such.
pub(super) fn read_keyfile(inputs: &OpenInputs) -> Result<VerifiedKeyfile, Problem> {
    let swapped = || {
        Problem::WrongPackage(
            "the two files are the wrong way round: give the document package (.tly) first \
             and its licence keyfile (.tkey) second"
                .into(),
        )
    };
    let is_package = || {
        std::fs::File::open(&inputs.keyfile)
            .is_ok_and(|mut f| PackageHeader::read_unverified(&mut f).is_ok())
    };
    let bytes = read_bounded(
        &inputs.keyfile,
        crate::keyfile::MAX_KEYFILE_BYTES as u64,
        "keyfile",
    )
    .map_err(|p| if is_package() { swapped() } else { p })?;
    Keyfile::open(&bytes, &inputs.trusted).map_err(|e| match e {
        KeyfileError::UnknownVendor { .. } => Problem::UntrustedVendor(e.to_string()),
        _ if is_package() => swapped(),
        other => Problem::KeyfileInvalid(other.to_string()),
    })
}

/// The package's signed header, checked against the licence before anything else is
/// read or decrypted: signed by the very vendor key that signed the keyfile (a keyfile of
/// one publisher never opens another publisher's package, T31), and for the licence's
/// document.
pub(super) fn read_package_header(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
) -> Result<PackageHeader, Problem> {
    let path = &inputs.package;
    let mut f = std::fs::File::open(path)
        .map_err(|e| Problem::Other(format!("cannot read the package {}: {e}", path.display())))?;
    let header = PackageHeader::read_unverified(&mut f).map_err(|e| {
        Problem::PackageInvalid(format!(
            "{} is not a readable document package: {e}",
            path.display()
        ))
    })?;
    if header.vendor_fingerprint() != &keyfile.vendor().fingerprint() {
        return Err(Problem::WrongPackage(format!(
            "the licence is from {}, but “{}” ({}) was packed by another publisher",
            keyfile.vendor().name(),
            header.title(),
            path.display()
        )));
    }
    header
        .verify(std::slice::from_ref(keyfile.vendor()))
        .map_err(|e| Problem::PackageInvalid(e.to_string()))?;
    if header.document_id() != keyfile.document() {
        return Err(Problem::WrongPackage(format!(
            "the licence is for another document than “{}” ({})",
            header.title(),
            path.display()
        )));
    }
    Ok(header)
}

/// The card the options name, opened, and checked to be the licence's (and a real card
/// where the licence requires one).
pub(super) fn licence_card(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
) -> Result<(crate::Card, CardIdentity), Problem> {
    let mut card = inputs
        .card
        .open(&inputs.home)
        .map_err(|e| card_problem(CardError::Transport(e)))?;
    let identity = card.identity().map_err(card_problem)?;
    // The live card's identity and its issuer's attestation (or the licence's consent to
    // an emulated card), however the card is reached: the reader's --card option decides
    // nothing (T36).
    keyfile
        .check_card(&mut card, inputs.clock.now())
        .map_err(|e| Problem::WrongCard(e.to_string()))?;
    Ok((card, identity))
}

/// The validation servers whose validator and recovery records count for this licence
/// (\[0094\], \[0062\]): the one its vendor-signed keyfile names, and no other. Every trust
/// anchor of a licence's accounting comes from its publisher: a key in the reader's home
/// (`<home>/validators`, which the reader can write, and which a restore through the
/// reader's own server would fill) never widens it (T29), and one publisher's server never
/// vouches for or forgives another publisher's licences (T30). Records vouched for by any
/// other key are verified one signature at a time like any record; a gap that only
/// another key's recovery record covers fails the trail for this licence.
pub(super) fn validators_for(keyfile: &VerifiedKeyfile) -> Vec<crate::crypto::PublicKey> {
    keyfile
        .server()
        .map(|s| vec![s.public_key.clone()])
        .unwrap_or_default()
}

/// The checks of an opening, in order (\[0070\]–\[0074\], \[0060\]): (1) the keyfile's
/// signature against the trusted publishers, (2) the package header: same publisher,
/// same document, (3) the card present and the keyfile's, (4) ValidateTrail (starting
/// from the newest validator record of a trusted validation server, \[0094\]), (5) the
/// policy, (6) the online validation the keyfile requires ([`check_validation`], which
/// goes online when it is due).
pub fn check_rental(inputs: &OpenInputs) -> Result<Checked, Problem> {
    let LicenceReady {
        keyfile,
        header,
        identity,
        mut meter,
        clock,
    } = validate_licence(inputs)?;
    raise_to_ticket(&clock, inputs, &keyfile, &meter.progress());
    let decision = meter.evaluate_opening();
    if let Decision::Denied { reason } = &decision {
        return Err(Problem::Refused(reason.clone()));
    }
    let online = check_validation(inputs, &keyfile, &mut meter)?;
    // A round just made brought the server's time: the policy decides again by it.
    raise_to_ticket(&clock, inputs, &keyfile, &meter.progress());
    let decision = meter.evaluate_opening();
    if let Decision::Denied { reason } = &decision {
        return Err(Problem::Refused(reason.clone()));
    }
    Ok(Checked {
        keyfile,
        header,
        identity,
        meter,
        decision,
        online,
    })
}

/// What every step on a licence starts from ([`validate_licence`]).
pub(super) struct LicenceReady {
    pub(super) keyfile: VerifiedKeyfile,
    pub(super) header: PackageHeader,
    pub(super) identity: CardIdentity,
    /// The licence's meter, its trail validated and mirrored where the reader asked.
    pub(super) meter: CardMeter,
    /// The clock the meter's date rules read.
    pub(super) clock: Arc<FloorClock>,
}

/// The checks every step on a licence starts with, an opening as a return: the keyfile
/// against the trusted publishers, the package for that licence from the same publisher,
/// the licence's card, and ValidateTrail (\[0060\]) on the card's trail, which is then
/// mirrored where the reader's setting says.
pub(super) fn validate_licence(inputs: &OpenInputs) -> Result<LicenceReady, Problem> {
    let keyfile = read_keyfile(inputs)?;
    let header = read_package_header(inputs, &keyfile)?;
    let validators = validators_for(&keyfile);
    let (card, identity) = licence_card(inputs, &keyfile)?;
    let trail_path = inputs.home.trail_path(&identity.serial);
    let mirror = inputs
        .home
        .mirror_path(&identity.serial)
        .map_err(|e| Problem::Other(format!("the mirror setting is unreadable: {e}")))?;
    // Every date rule of this rental reads the reader's clock raised to the newest time
    // the rental can trust more (T34): see `FloorClock`.
    let clock = Arc::new(FloorClock::new(inputs.clock.clone()));
    let mut meter = CardMeter::validate(
        card,
        keyfile.card(),
        &trail_path,
        keyfile.licence(),
        keyfile.limits().clone(),
        clock.clone(),
        validators,
    )?;
    meter.mirror_to(mirror);
    Ok(LicenceReady {
        keyfile,
        header,
        identity,
        meter,
        clock,
    })
}

/// Raises `clock` to the newest time this licence's last ticket proves (T34): the server's
/// time on it plus the reading time the card charged to the licence since its request.
/// A ticket that is missing, or is not this copy's, proves nothing (its own check says
/// why, in [`check_validation`]).
fn raise_to_ticket(
    clock: &FloorClock,
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
    progress: &CardProgress,
) {
    let Some(server) = keyfile.server() else {
        return;
    };
    if let Ok(Some(state)) = ClientState::load(&inputs.home, &keyfile.licence())
        && let Ok(Some(t)) = state.verified_ticket(&server.public_key)
    {
        clock.raise(t.dt.saturating_add(progress.seconds_after(t.card_counter)));
    }
}

/// The validation rule of WO 98/33296 as the keyfile sets it, going online when due.
///
/// Offline first: with a valid ticket no older than `require_online_every_days`
/// (`ClientState::check_offline`, T18) the copy opens without the network. Otherwise —
/// never validated (the first open is the installation), the ticket too old or expired,
/// or a refusal remembered (only a later VAL_OK lifts it) — one online round
/// ([`super::validate_online`], [`super::OPEN_TIMEOUT`]): a VAL_OK opens; a signed refusal
/// that stops the copy (revoked, clone, modified viewer, T23) is refused; anything else —
/// the server unreachable, an answer that does not verify — falls back to the offline
/// rule, whose refusal then says what the round met. Without a requirement in the
/// keyfile, a copy that could not be validated still opens.
///
/// The offline rule counts the card's progress since the ticket (T34) from `meter`'s
/// trail, and the round's request is signed by the card as a record of that trail (T32).
pub fn check_validation(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
    meter: &mut CardMeter,
) -> Result<Option<OnlineStatus>, Problem> {
    let Some(server) = keyfile.server() else {
        return Ok(None);
    };
    let days = server.require_online_every_days;
    let clock = inputs.clock.as_ref();
    let state = ClientState::load(&inputs.home, &keyfile.licence()).map_err(|e| {
        Problem::ValidationNeeded(format!("the validation record is unreadable: {e}"))
    })?;
    let progress = meter.progress();
    let due =
        match ClientState::standing(state.as_ref(), &server.public_key, days, clock, &progress) {
            Ok(s) => return Ok(Some(s)),
            Err(e) => e,
        };
    let tried = match online_round(inputs, keyfile, meter) {
        Ok(state) => {
            return match state.check_offline(&server.public_key, days, clock, &meter.progress()) {
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
    match crate::validation::when_round_failed(&e, days) {
        WhenDue::Revoked => Err(Problem::Revoked(why)),
        WhenDue::Refuse => Err(Problem::ValidationNeeded(why)),
        WhenDue::Open => Ok(None),
    }
}

/// One online round for opening: the package and this viewer's executable are read for
/// their ICVs (only here, when a round is due); the request is signed through `meter`.
fn online_round(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
    meter: &mut CardMeter,
) -> Result<ClientState, RoundError> {
    let server = keyfile.server().ok_or(RoundError::NoServer)?;
    round_with(
        inputs,
        keyfile,
        &server.url,
        IcvVariant::V8,
        OPEN_TIMEOUT,
        meter,
    )
    .map(|(state, _)| state)
}

/// One round to `url`: reads the package and this viewer's executable for their ICVs
/// and runs [`validate_online`] with the request signed through `meter`.
fn round_with(
    inputs: &OpenInputs,
    keyfile: &VerifiedKeyfile,
    url: &str,
    variant: IcvVariant,
    timeout: std::time::Duration,
    meter: &mut CardMeter,
) -> Result<(ClientState, crate::validation::Verdict), RoundError> {
    let package = read_bounded(&inputs.package, MAX_PACKAGE_BYTES, "package")
        .map_err(|p| RoundError::Local(p.to_string()))?;
    let viewer_icv = crate::icv::current_executable_icv().map_err(|e| {
        RoundError::Local(format!(
            "cannot read this viewer's executable for its ICV: {e}"
        ))
    })?;
    let round = Round {
        url,
        package: &package,
        variant,
        viewer_icv,
        clock: inputs.clock.as_ref(),
        timeout,
    };
    validate_online(
        &inputs.home,
        keyfile,
        &round,
        meter,
        inputs.transport.as_ref(),
    )
}

/// What [`validate_now`] brings back.
#[derive(Debug)]
pub struct Validated {
    /// The keyfile, its signature verified.
    pub keyfile: VerifiedKeyfile,
    /// The VAL_OK.
    pub ticket: crate::validation::Verdict,
    /// The copy's standing with the new ticket (as an opening would check it offline).
    pub standing: OnlineStatus,
}

/// One online validation now, whatever the copy's standing (a reader's "validate now",
/// `tally-view validate`): the opening's checks up to ValidateTrail — keyfile, package
/// header, the licence's card, the trail — then one round to `url` (the keyfile's server
/// when `None`), its request signed by the card as a trail record (T32). A failed check
/// before the round is [`RoundError::Opening`]; nothing is sent then.
pub fn validate_now(
    inputs: &OpenInputs,
    url: Option<&str>,
    variant: IcvVariant,
    timeout: std::time::Duration,
) -> Result<Validated, RoundError> {
    let keyfile = read_keyfile(inputs).map_err(RoundError::Opening)?;
    let server = keyfile.server().ok_or(RoundError::NoServer)?.clone();
    read_package_header(inputs, &keyfile).map_err(RoundError::Opening)?;
    let (card, identity) = licence_card(inputs, &keyfile).map_err(RoundError::Opening)?;
    let mut meter = CardMeter::validate(
        card,
        keyfile.card(),
        &inputs.home.trail_path(&identity.serial),
        keyfile.licence(),
        keyfile.limits().clone(),
        inputs.clock.clone(),
        validators_for(&keyfile),
    )
    .map_err(RoundError::Opening)?;
    meter.mirror_to(
        inputs
            .home
            .mirror_path(&identity.serial)
            .map_err(|e| RoundError::Local(format!("the mirror setting is unreadable: {e}")))?,
    );
    let url = url.unwrap_or(&server.url);
    let (state, ticket) = round_with(inputs, &keyfile, url, variant, timeout, &mut meter)?;
    let standing = super::online::standing_after_round(
        &state,
        &keyfile,
        inputs.clock.as_ref(),
        &meter.progress(),
    )?;
    Ok(Validated {
        keyfile,
        ticket,
        standing,
    })
}

/// Opens a rental: [`check_rental`], then decrypts the package into memory and, when
/// reading is allowed, writes the `open` record. A used-up rental opens in limited
/// mode (the cover page only, claim 6) without a record.
pub fn open_rental(inputs: &OpenInputs) -> Result<Opened, Problem> {
    let Checked {
        keyfile,
        header: _,
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
    // Decrypted in place in the buffer just read: no copy, no second allocation.
    let (header, document) = open_package_vec(bytes, std::slice::from_ref(keyfile.vendor()), &key)
        .map_err(|e| Problem::PackageInvalid(e.to_string()))?;
    if header.document_id() != keyfile.document() {
        // The header checked before was for this document; the file changed since.
        return Err(Problem::PackageInvalid(
            "the package changed while it was being opened".into(),
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
    let backup = backup_plan(inputs, &keyfile);
    Ok(Opened {
        backup,
        info: RentalInfo {
            title: header.title().to_string(),
            customer: keyfile.customer_name().to_string(),
            rights: keyfile.rights(),
            renew_hint,
            validated,
            idle_pause: std::time::Duration::from_secs(u64::from(keyfile.limits().idle_pause)),
        },
        page_count: header.page_count() as usize,
        decision,
        meter,
        document,
        contact: keyfile.server().is_some().then(|| super::contact::Job {
            home: inputs.home.clone(),
            card: inputs.card.clone(),
            keyfile: keyfile.clone(),
            trusted: inputs.trusted.clone(),
            transport: inputs.transport.clone(),
            clock: inputs.clock.clone(),
        }),
    })
}

/// The automatic backup of an opening's trail: with the validation server the licence's
/// vendor-signed keyfile names — never one the reader names (T29) — unless the reader
/// turned it off in the home (`Home::auto_backup`; an unreadable setting leaves it off,
/// and `tally-view status` says why).
fn backup_plan(inputs: &OpenInputs, keyfile: &VerifiedKeyfile) -> Option<super::BackupPlan> {
    let server = super::BackupServer::of(keyfile)?;
    if !inputs.home.auto_backup().unwrap_or(false) {
        return None;
    }
    let serial = keyfile.card().serial;
    Some(super::BackupPlan {
        server,
        trail: inputs.home.trail_path(&serial),
        identity: keyfile.card().clone(),
        transport: inputs.transport.clone(),
        clock: inputs.clock.clone(),
        home: Some(inputs.home.clone()),
        policy: super::BackupPolicy::default(),
    })
}

/// What [`check_standing`] found: where a rental stands, read from the trail and the card
/// as they are.
#[derive(Debug)]
pub struct Standing {
    /// The keyfile, its signature verified.
    pub keyfile: VerifiedKeyfile,
    /// The package's header (the licence's document, signed by its vendor).
    pub header: PackageHeader,
    /// The licence's totals so far.
    pub tally: Tally,
    /// The policy's answer for an opening now.
    pub decision: Decision,
    /// The copy's online standing, when the licence names a validation server and the
    /// last ticket is still good.
    pub online: Option<OnlineStatus>,
    /// Why an online round is due, when one is: the next opening makes it.
    pub online_due: Option<String>,
}

/// The checks of an opening without writing anything and without going online: the
/// keyfile, the package header, the card, the trail verified against the card's counter
/// ([`Trail::check_with_card`], no nonce record), the policy and the last ticket. Spends
/// no card counter and changes no state, so a reader can ask as often as they like; what
/// it reports is what the next opening starts from (which then also proves the trail
/// fresh with a nonce record and makes the online round when one is due).
pub fn check_standing(inputs: &OpenInputs) -> Result<Standing, Problem> {
    let keyfile = read_keyfile(inputs)?;
    let header = read_package_header(inputs, &keyfile)?;
    let validators = validators_for(&keyfile);
    let (mut card, identity) = licence_card(inputs, &keyfile)?;
    let trail_path = inputs.home.trail_path(&identity.serial);
    let (tally, progress) = if trail_path.exists() {
        let servers = super::meter::fingerprints(&validators);
        let check = |card: &mut crate::Card| {
            let mut t = Trail::open(&trail_path, &identity)?;
            t.set_trusted_validators(validators.clone());
            t.check_with_card(card).map(|()| t)
        };
        let trail = super::meter::rejoining(&trail_path, &identity, || check(&mut card))?;
        (
            super::meter::tally_of(&trail, keyfile.licence(), &servers),
            CardProgress::of_trail(&trail, keyfile.licence()),
        )
    } else {
        // No trail: nothing used if the card never signed (the first opening creates the
        // trail); otherwise the trail was lost, and only a restore brings its use back.
        let c = card
            .session()
            .and_then(|mut s| s.get_counter())
            .map_err(card_problem)?;
        if c != identity.origin {
            return Err(trail_problem(crate::trail::TrailError::CardAlreadyUsed {
                origin: identity.origin,
                used: c.saturating_sub(identity.origin),
            }));
        }
        (Tally::new(keyfile.licence()), CardProgress::default())
    };
    let clock = FloorClock::new(inputs.clock.clone());
    raise_to_ticket(&clock, inputs, &keyfile, &progress);
    let decision = policy::evaluate(keyfile.limits(), &tally, &clock);
    let (online, online_due) = match keyfile.server() {
        None => (None, None),
        Some(server) => {
            let state = ClientState::load(&inputs.home, &keyfile.licence()).map_err(|e| {
                Problem::ValidationNeeded(format!("the validation record is unreadable: {e}"))
            })?;
            match ClientState::standing(
                state.as_ref(),
                &server.public_key,
                server.require_online_every_days,
                inputs.clock.as_ref(),
                &progress,
            ) {
                Ok(s) => (Some(s), None),
                Err(e) => {
                    match crate::validation::when_round_failed(&e, server.require_online_every_days)
                    {
                        WhenDue::Revoked => return Err(Problem::Revoked(e.to_string())),
                        // What an opening does if its online round fails is what the
                        // reader can count on now: refused, or allowed with a round due.
                        WhenDue::Refuse => {
                            return Err(Problem::ValidationNeeded(format!(
                                "{e} (opening the document checks online)"
                            )));
                        }
                        WhenDue::Open => (None, Some(e.to_string())),
                    }
                }
            }
        }
    };
    Ok(Standing {
        keyfile,
        header,
        tally,
        decision,
        online,
        online_due,
    })
}
