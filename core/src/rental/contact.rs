//! The reader's side of the validation service beyond VAL_REQ, through the caller's
//! [`Transport`]: having the trail vouched for and backed up (\[0094\], \[0062\]), and
//! answering the publisher's nonce challenge (\[0104\], [`crate::validation::challenge`]).
//!
//! Every message is built, encrypted and checked here; a transport only moves bytes, and
//! the server is always the one the licence's vendor-signed keyfile names (its key from the
//! keyfile; only the address it is reached at may differ). A viewer answers a pending
//! challenge on its own: [`super::Opened::start`] runs [`answer_challenge`] in the
//! background when the licence names a server, so the reader does nothing special and is
//! never kept waiting.

use super::Transport;
use crate::card::{Card, Serial};
use crate::crypto::PublicKey;
use crate::home::CardSpec;
use crate::home::Home;
use crate::keyfile::VerifiedKeyfile;
use crate::policy::Clock;
use crate::trail::{Trail, TrailError};
use crate::validation::challenge::{CHALLENGE_ENDPOINT, Challenge, ChallengeError, open_challenge};
use std::sync::Arc;
use std::time::Duration;

/// The trail validation endpoint (\[0094\]; the server keeps the trail as the backup, \[0062\]).
pub const TRAIL_ENDPOINT: &str = "/v1/trail/validate";

/// Timeout of the small request asking for a pending challenge.
pub const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of sending a whole trail for vouching (up to 64 MiB, checked in full).
pub const VOUCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest answer read: a validator body or a signed challenge is at most 1 KiB; a refusal
/// is one line.
const MAX_ANSWER: u64 = 64 * 1024;

/// The licence's validation server, as one exchange reaches it.
#[derive(Clone, Copy)]
pub struct ServerContact<'a> {
    /// Its base URL (the keyfile's, or the address it is reached at); the endpoint is appended.
    pub url: &'a str,
    /// Its key, from the licence's vendor-signed keyfile: every answer must verify under it.
    pub key: &'a PublicKey,
    /// How bytes reach it.
    pub transport: &'a dyn Transport,
}

impl std::fmt::Debug for ServerContact<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContact")
            .field("url", &self.url)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why an exchange with the validation server did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// The licence names no validation server.
    #[error("this licence names no validation server")]
    NoServer,
    /// The address is not http(s), or nothing answered or the answer could not be read.
    #[error(transparent)]
    Unreached(#[from] super::Unreached),
    /// The server answered with an HTTP error (a refused trail, an unknown card, …).
    #[error("the validation server answered HTTP {status}: {text}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its one-line reason.
        text: String,
    },
    /// The challenge handed out does not verify (another server's, another card's, expired,
    /// malformed): nothing was written.
    #[error("the challenge handed out was refused: {0}")]
    Challenge(#[from] ChallengeError),
    /// The card present is not the licence's.
    #[error("{0}")]
    WrongCard(String),
    /// The card could not be reached.
    #[error("cannot reach the card: {0}")]
    NoCard(String),
    /// The trail here is invalid, or the server's validator answer does not verify for it.
    #[error(transparent)]
    Trail(#[from] TrailError),
    /// The background thread making the contact ended without an answer (a bug), or could
    /// not be started.
    #[error("the contact with the validation server stopped unexpectedly")]
    Stopped,
    /// The trail is larger than a validation request carries.
    #[error("the trail is larger than the 64 MiB a validation request carries")]
    TooLarge,
    /// The trail file could not be read for sending.
    #[error("{0}")]
    Local(String),
}

impl ContactError {
    /// True when a check failed (the trail, the card, an answer or a refusal of the server),
    /// false when the server could not be reached or a file read: what exit code 1 and 2
    /// tell apart.
    pub fn is_check(&self) -> bool {
        match self {
            Self::Refused { status, .. } => matches!(status, 404 | 422),
            Self::Challenge(_) | Self::WrongCard(_) => true,
            Self::Trail(e) => e.is_invalid(),
            Self::NoServer
            | Self::Unreached(_)
            | Self::NoCard(_)
            | Self::Stopped
            | Self::TooLarge
            | Self::Local(_) => false,
        }
    }
}

impl ServerContact<'_> {
    fn post(
        &self,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ContactError> {
        Ok(super::online::post_to(
            self.transport,
            self.url,
            path,
            body,
            timeout,
            MAX_ANSWER,
        )?)
    }
}

fn refused(status: u16, body: &[u8]) -> ContactError {
    ContactError::Refused {
        status,
        text: super::online::answer_text(body),
    }
}

/// Asks the server for the challenge pending for card `serial` (\[0104\]): `None` when there
/// is none (or the server has no challenge endpoint); a challenge only once it verifies under the licence's server key, for this card,
/// unexpired at `now_unix` ([`open_challenge`]).
pub fn fetch_challenge(
    server: &ServerContact<'_>,
    serial: &Serial,
    now_unix: i64,
) -> Result<Option<Challenge>, ContactError> {
    let (status, answer) = server.post(CHALLENGE_ENDPOINT, &serial.0, CHALLENGE_TIMEOUT)?;
    match status {
        // 404: a server from before challenges (its fallback route) has none to hand out.
        204 | 404 => Ok(None),
        200 => Ok(Some(open_challenge(
            &answer,
            server.key,
            serial,
            now_unix,
            crate::crypto::default_verifier(),
        )?)),
        s => Err(refused(s, &answer)),
    }
}

/// Writes the answer to `challenge` of the server `key` on the card-signed trail (\[0104\]'s
/// Write(nonce)), unless the trail already holds it: the trail is first checked against the
/// card (ValidateTrail without a nonce record, [`Trail::check_with_card`]). Returns the
/// answer record's counter and whether it was written now.
pub fn write_answer(
    trail: &mut Trail,
    card: &mut Card,
    challenge: &Challenge,
    key: &PublicKey,
    now_unix: i64,
) -> Result<(u64, bool), TrailError> {
    trail.check_with_card(card)?;
    let fp = key.fingerprint();
    if let Some(a) =
        crate::validation::challenge::answer_in(trail.verified_bodies(), &fp, &challenge.nonce)
    {
        return Ok((a.counter, false));
    }
    let rec = trail.write(card, &challenge.answer_body(key, now_unix))?;
    Ok((rec.counter, true))
}

/// What [`vouch_trail`] brought back.
#[derive(Debug, Clone)]
pub struct Vouched {
    /// The last counter the server vouched for (the trail as sent).
    pub upto: u64,
    /// The validator record's counter (card-signed, after the `totals` records).
    pub validator_counter: u64,
    /// How far the server's backup now reaches, or why it could not be extended.
    pub backup: Result<u64, String>,
}

/// The trusted trail validation service of \[0094\] with the backup of \[0062\], for a trail
/// and card the caller holds: ValidateTrail with the card first (never send, or vouch on top
/// of, a trail that is not valid here), then one round of [`super::vouch_and_back_up`] — the
/// one implementation of the exchange, shared with the automatic backup. Trust in the
/// server's records for later verifications is the caller's to set
/// ([`Trail::set_trusted_validators`]).
pub fn vouch_trail(
    trail: &mut Trail,
    card: &mut Card,
    server: &ServerContact<'_>,
) -> Result<Vouched, ContactError> {
    trail.verify(card)?;
    let path = trail.path().to_path_buf();
    let identity = trail.identity().clone();
    let report = super::vouch_and_back_up(
        &path,
        &identity,
        &super::BackupServer {
            url: server.url.to_string(),
            key: server.key.clone(),
        },
        server.transport,
        VOUCH_TIMEOUT,
        &mut super::DirectWriter { trail, card },
    )
    .map_err(|e| match e {
        super::VouchFailure::Unreached(u) => ContactError::Unreached(u),
        super::VouchFailure::Refused { status, text } => ContactError::Refused { status, text },
        super::VouchFailure::Answer(t) | super::VouchFailure::Write(t) => ContactError::Trail(t),
        super::VouchFailure::Local(why) => ContactError::Local(why),
    })?;
    Ok(Vouched {
        upto: report.upto,
        validator_counter: report.validator_counter,
        backup: report.backup,
    })
}

/// What [`answer_challenge`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChallengeOutcome {
    /// The server has no challenge pending for this card.
    NonePending,
    /// The challenge was answered and the trail holding the answer sent for vouching: the
    /// server now keeps a backup that contains it.
    Answered(Box<AnsweredChallenge>),
}

/// A challenge answered and sent ([`ChallengeOutcome::Answered`]).
#[derive(Debug, Clone)]
pub struct AnsweredChallenge {
    /// The challenge.
    pub challenge: Challenge,
    /// The answer record's counter.
    pub counter: u64,
    /// False when the trail already held the answer (an earlier contact wrote it but could
    /// not send the trail).
    pub newly_written: bool,
    /// The vouching that sent it.
    pub vouched: Vouched,
}

/// Answers the challenge the licence's server has pending for the card present, if any
/// (\[0104\]): asks for it ([`fetch_challenge`]), writes the answer on the trail of the
/// licence's card ([`write_answer`]) and sends the trail for vouching ([`vouch_trail`]), so
/// the server holds a backup with the answer in it. `url` replaces the keyfile's address
/// (the key is always the keyfile's). The card must be the licence's (checked as an opening
/// checks it); the trail trusts only the licence's own server's records (T29, T30).
pub fn answer_challenge(
    home: &Home,
    card: &mut Card,
    keyfile: &VerifiedKeyfile,
    url: Option<&str>,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Result<ChallengeOutcome, ContactError> {
    let info = keyfile.server().ok_or(ContactError::NoServer)?;
    let now = clock.now();
    keyfile
        .check_card(card, now)
        .map_err(|e| ContactError::WrongCard(e.to_string()))?;
    let identity = keyfile.card().clone();
    let server = ServerContact {
        url: url.unwrap_or(&info.url),
        key: &info.public_key,
        transport,
    };
    let Some(challenge) = fetch_challenge(&server, &identity.serial, now.unix_timestamp())? else {
        return Ok(ChallengeOutcome::NonePending);
    };
    let mut trail = Trail::open_or_create(home.trail_path(&identity.serial), card, &identity)?;
    trail.set_trusted_validators(vec![info.public_key.clone()]);
    // A malformed mirror setting keeps the mirror off for this exchange; the opening that
    // started it reported the setting already.
    trail.set_mirror(home.mirror_path(&identity.serial).ok().flatten());
    let (counter, newly_written) = write_answer(
        &mut trail,
        card,
        &challenge,
        &info.public_key,
        now.unix_timestamp(),
    )?;
    let vouched = vouch_trail(&mut trail, card, &server)?;
    Ok(ChallengeOutcome::Answered(Box::new(AnsweredChallenge {
        challenge,
        counter,
        newly_written,
        vouched,
    })))
}

/// What an exchange run in the background brings back.
pub type ContactResult = Result<ChallengeOutcome, ContactError>;

/// The contact a started session makes with its licence's server, in the background
/// ([`super::Opened::start`]): [`answer_challenge`] with a card connection and trail handle
/// of its own (the trail's lock and the card's transactions keep it in step with the
/// session's meter), and beside it, on a thread of their own, the pending receipts of
/// returned licences, each to its own licence's server ([`super::send_pending`]), so that
/// neither a slow or unreachable server nor the other's waits hold up reading or each other.
pub(crate) struct Job {
    pub(crate) home: Home,
    pub(crate) card: CardSpec,
    pub(crate) keyfile: VerifiedKeyfile,
    /// The publishers the opening trusted: the keyfiles of pending receipts are verified
    /// against them.
    pub(crate) trusted: Vec<crate::vendor::VendorPublic>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Job {
    /// Starts the exchange on a thread of its own.
    pub(crate) fn spawn(self) -> std::io::Result<std::thread::JoinHandle<ContactResult>> {
        std::thread::Builder::new()
            .name("tally-server-contact".into())
            .spawn(move || {
                let mut card = self
                    .card
                    .open(&self.home)
                    .map_err(|e| ContactError::NoCard(e.to_string()))?;
                answer_challenge(
                    &self.home,
                    &mut card,
                    &self.keyfile,
                    None,
                    self.transport.as_ref(),
                    self.clock.as_ref(),
                )
            })
    }

    /// Starts sending the receipts of returned licences their servers could not take before
    /// ([`super::send_pending`]; they need no card) on a thread of its own: a dead server of
    /// another licence's waits its timeout there, not before this session's challenge.
    pub(crate) fn spawn_returns(
        &self,
    ) -> std::io::Result<std::thread::JoinHandle<Vec<super::PendingSent>>> {
        let (home, trusted, keyfile, transport) = (
            self.home.clone(),
            self.trusted.clone(),
            self.keyfile.clone(),
            self.transport.clone(),
        );
        std::thread::Builder::new()
            .name("tally-pending-returns".into())
            .spawn(move || {
                super::returning::send_pending(&home, &trusted, Some(&keyfile), transport.as_ref())
            })
    }
}
