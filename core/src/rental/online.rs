//! One online validation round of an installed copy (WO 98/33296, Figure 2): VAL_REQ out,
//! VAL_OK (or a signed refusal) back, the copy's state saved. Used by a viewer's own
//! "validate now" command and by the opening ([`super::check_validation`]), so there is
//! one copy of the exchange.
//!
//! The rules — the ICV, the sequence numbers, the rolling UI, the ticket checks — are
//! [`ClientState`]'s; this module reads the state, sends the request through the caller's
//! [`Transport`] (sans-I/O: core never opens a socket) and sorts what went wrong by what
//! the caller does about it: an unreachable server lets the opening fall back to the
//! offline rule (T18), a signed answer does not.

use crate::home::Home;
use crate::icv::{Icv, IcvVariant};
use crate::keyfile::VerifiedKeyfile;
use crate::policy::Clock;
use crate::validation::{
    CardProgress, ClientState, RequestSigner, VERDICT_LEN, ValidationError, Verdict,
};
use std::time::Duration;

/// How a session reaches the publisher's validation server. The caller implements it (the
/// egui viewer with an HTTP client); everything sent is built, encrypted and signed here,
/// and everything received is checked here, so a transport decides nothing.
pub trait Transport: Send + Sync {
    /// POSTs `body` (`application/octet-stream`) to `endpoint` and returns the HTTP status
    /// and at most `limit` bytes of the answer, or why nothing usable came back
    /// (connection refused, timeout, an answer that could not be read). Every status is
    /// returned: the caller of the transport decides what a 4xx means.
    fn post(
        &self,
        endpoint: &str,
        body: &[u8],
        timeout: Duration,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), String>;
}

/// Why an exchange with a validation server brought back no answer to read: the one
/// vocabulary of every exchange (a round, a challenge, a vouching and backup, a return), so
/// each caller's error says it the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreached {
    /// The address is not `http://` or `https://`: nothing was sent.
    #[error("the validation server's address {0} is not an http(s) URL")]
    BadUrl(String),
    /// Nothing answered, or the answer could not be read (connection refused, timeout,
    /// DNS, TLS).
    #[error("cannot reach the validation server {endpoint}: {reason}")]
    Unreachable {
        /// The URL asked.
        endpoint: String,
        /// What the transport said.
        reason: String,
    },
}

/// POSTs `body` to `path` on the validation server at `url` through `transport`: the HTTP
/// status and at most `limit` bytes of the answer, whatever the status, or why there is
/// none. `url` is a vendor-signed keyfile's, or one the reader gave a command's `--server`
/// (`validate`, `vouch`, `restore`, backups): either way what comes back is checked against
/// the server key in the keyfile (T29), so the address decides nothing.
pub fn post_to(
    transport: &dyn Transport,
    url: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
    limit: u64,
) -> Result<(u16, Vec<u8>), Unreached> {
    http_url(url)?;
    let endpoint = format!("{}{path}", url.trim_end_matches('/'));
    transport
        .post(&endpoint, body, timeout, limit)
        .map_err(|reason| Unreached::Unreachable { endpoint, reason })
}

/// `url` when it is `http://` or `https://` (nothing else is ever sent to): checked before
/// every exchange here, and by the tools for an address the reader gives them (`--server`).
/// A keyfile's own address was checked when it was parsed (with the same rule).
pub fn http_url(url: &str) -> Result<&str, Unreached> {
    if crate::keyfile::cis::is_http(url) {
        Ok(url)
    } else {
        Err(Unreached::BadUrl(url.to_string()))
    }
}

/// The start of a server's answer (at most 300 characters) as one line of text, for a
/// message: what a refusal says, or what came instead of a verdict.
pub(crate) fn answer_text(answer: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(answer).chars().take(300).collect();
    text.trim().replace('\n', " ")
}

/// A transport with no network: every round finds the server unreachable, so the offline
/// rule decides. For readers that never go online, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetwork;

impl Transport for NoNetwork {
    fn post(
        &self,
        endpoint: &str,
        _: &[u8],
        _: Duration,
        _: u64,
    ) -> Result<(u16, Vec<u8>), String> {
        Err(format!(
            "this reader has no network connection (to {endpoint})"
        ))
    }
}

/// Timeout of a round started by opening a document: short, because the reader is
/// waiting and an unreachable server only means falling back to the offline rule.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read (a verdict is [`VERDICT_LEN`] bytes; a 4xx reason is one line).
const MAX_ANSWER: u64 = 64 * 1024;

/// What one round needs besides the keyfile.
#[derive(Clone, Copy)]
pub struct Round<'a> {
    /// The server's base URL (the keyfile's, or an override); `/v1/validate` is appended.
    pub url: &'a str,
    /// The package bytes: the installed copy `C = package ‖ UI` the ICV is computed over.
    pub package: &'a [u8],
    /// The ICV variant to compute (the server accepts V7 and V8 unless told otherwise;
    /// viewers send V8, whose server cost does not grow with the document).
    pub variant: IcvVariant,
    /// The ICV of the running viewer (`icv::current_executable_icv`), checked by the
    /// server against the registered release builds.
    pub viewer_icv: Icv,
    /// The clock for the request's date DT.
    pub clock: &'a dyn Clock,
    /// The whole exchange's timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Round<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round")
            .field("url", &self.url)
            .field("package_len", &self.package.len())
            .field("variant", &self.variant)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a round did not end in a VAL_OK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The keyfile names no validation server.
    #[error("this keyfile names no validation server: the licence works offline only")]
    NoServer,
    /// The address is not http(s) (nothing was sent, nothing used), or nothing answered or
    /// the answer could not be read: the copy's state is unchanged apart from the one
    /// sequence number the request that went used.
    #[error(transparent)]
    Unreached(#[from] Unreached),
    /// The server answered something that is not a verdict (a 4xx with a reason, a proxy's
    /// error page).
    #[error("the validation server answered HTTP {status}: {text}")]
    NotAVerdict {
        /// The HTTP status.
        status: u16,
        /// The start of the body, as text.
        text: String,
    },
    /// A verdict arrived and `ClientState::accept` refused it: a signed refusal
    /// ([`ValidationError::Refused`]: revoked, clone, modified viewer, …) or an answer that
    /// does not verify (bad signature, another copy's ticket, a replay).
    #[error(transparent)]
    Answer(ValidationError),
    /// Something the round needs could not be read here (the package, this viewer's
    /// executable): no request was sent.
    #[error("{0}")]
    Local(String),
    /// The copy's validation state could not be read.
    #[error("the validation record is unreadable: {0}")]
    StateUnreadable(ValidationError),
    /// The copy's validation state could not be saved.
    #[error("saving the validation record: {0}")]
    StateUnsaved(ValidationError),
    /// A check of the opening that comes before a round failed (keyfile, package, card,
    /// trail): nothing was sent.
    #[error("{0}")]
    Opening(super::Problem),
}

/// Runs one round for the copy `keyfile` licenses and saves the state (before sending, so
/// a crash never reuses a sequence number, and after the answer). The request is signed
/// by the reader's card through `signer`, as a record of its trail (T32). Returns the state
/// with the new ticket and the VAL_OK; [`standing_after_round`] gives the copy's standing
/// from it.
pub fn validate_online(
    home: &Home,
    keyfile: &VerifiedKeyfile,
    round: &Round<'_>,
    signer: &mut dyn RequestSigner,
    transport: &dyn Transport,
) -> Result<(ClientState, Verdict), RoundError> {
    let server = keyfile.server().ok_or(RoundError::NoServer)?;
    // Refused before a sequence number is used.
    http_url(round.url)?;
    let mut state = match ClientState::load(home, &keyfile.licence()) {
        Ok(Some(s)) => s,
        Ok(None) => ClientState::new(keyfile.licence()),
        Err(e) => return Err(RoundError::StateUnreadable(e)),
    };
    let envelope = state
        .prepare(
            round.variant,
            round.package,
            &server.public_key,
            round.viewer_icv,
            round.clock,
            signer,
            &mut crate::crypto::OsRng,
        )
        .map_err(|e| RoundError::Local(e.to_string()))?;
    state.save(home).map_err(RoundError::StateUnsaved)?;
    let (status, body) = post_to(
        transport,
        round.url,
        "/v1/validate",
        &envelope,
        round.timeout,
        MAX_ANSWER,
    )?;
    if body.len() != VERDICT_LEN {
        return Err(RoundError::NotAVerdict {
            status,
            text: answer_text(&body),
        });
    }
    let result = state.accept(&body, &server.public_key);
    // Saved whatever the answer: a signed refusal that stops the copy is remembered (T23).
    state.save(home).map_err(RoundError::StateUnsaved)?;
    match result {
        Ok(ticket) => Ok((state, ticket)),
        Err(e) => Err(RoundError::Answer(e)),
    }
}

/// The standing of the copy `keyfile` licenses right after a round left `state`: its new
/// ticket checked as an opening would check it offline (dated by the server, so a clock
/// set back still shows), under the keyfile's server key and online requirement, with the
/// card's `progress` (the round's own record is the newest).
pub fn standing_after_round(
    state: &ClientState,
    keyfile: &VerifiedKeyfile,
    clock: &dyn Clock,
    progress: &CardProgress,
) -> Result<crate::validation::OnlineStatus, RoundError> {
    let server = keyfile.server().ok_or(RoundError::NoServer)?;
    state
        .check_offline(
            &server.public_key,
            server.require_online_every_days,
            clock,
            progress,
        )
        .map_err(RoundError::Answer)
}
