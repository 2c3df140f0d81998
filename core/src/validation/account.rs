//! A second server's account of lost records (T30, \[0062\]).
//!
//! When a trail is lost, the reader restores it from one publisher's server: the backup
//! comes back with that server's recovery record, which accounts for the counters lost
//! since the backup and charges them by that publisher's policy — for that publisher's
//! licences only ([`crate::policy::Tally::trusting`]). For every other publisher's licence
//! the hole is unaccounted, so its use counts in full (fail closed). To get such a licence
//! back, the reader asks its own server for an **account** of the same hole:
//! `tally-view trail restore --keyfile KEYFILE` on the restored trail sends the trail
//! (sealed like a trail validation request, [`super::seal_trail_request`]) to
//! `POST /v1/trail/account`; the server checks the whole trail against the card registered
//! for its serial and answers one recovery body per hole it has not accounted for, signed
//! with its key and charged by its own publisher's policy. The reader checks each
//! ([`check_accounts`]) and appends it through Write, where ValidateTrail accepts it as a
//! later account of that earlier hole.
//!
//! The server charges exactly the hole's counters: the records before and after it are in
//! the trail it checked, card-signed. An account is a pure function of the trail and the
//! policy, so asking twice gives the same answer: no replay can gain anything.
//!
//! ```text
//! answer = count u8 · count × (body length u16 BE · recovery body)
//! ```

use super::ServerSecret;
use super::restore::RestoreError;
use crate::card::CardIdentity;
use crate::crypto::{Hash, PublicKey, default_verifier};
use crate::trail::body::{Body, LicenceId, LostCharge, MAX_BODY, MAX_RECOVERY_LICENCES, Recovery, Usage};
use crate::trail::record::Record;
use crate::trail::{TrailError, validator};

/// The most holes one answer accounts for (a trail restored more often than this keeps the
/// older holes unaccounted: their licences stay charged in full).
pub const MAX_ACCOUNTS: usize = 16;

/// Largest answer: the count and [`MAX_ACCOUNTS`] bodies.
pub const MAX_ACCOUNT_ANSWER: usize = 1 + MAX_ACCOUNTS * (2 + MAX_BODY);

/// A hole in a trail's counters that some recovery record accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// First lost counter.
    pub from: u64,
    /// Last lost counter.
    pub to: u64,
    /// Chain hash of every record before the hole (checked by ValidateTrail).
    pub chain: Hash,
}

/// The holes of a verified trail (`records`) that some recovery record accounts for but
/// none of `server`'s does, in trail order.
pub fn unaccounted_holes(records: &[Record], server: &Hash) -> Vec<Hole> {
    let recoveries: Vec<Recovery> = records
        .iter()
        .filter(|r| validator::looks_like_recovery(&r.body))
        .filter_map(|r| match Body::parse(&r.body).ok()?.usage {
            Usage::Recovery(rec) => Some(*rec),
            _ => None,
        })
        .collect();
    let mut holes: Vec<Hole> = Vec::new();
    for r in &recoveries {
        let covered = recoveries
            .iter()
            .any(|o| o.server_key == *server && (o.from, o.to) == (r.from, r.to));
        if !covered && !holes.iter().any(|h| (h.from, h.to) == (r.from, r.to)) {
            holes.push(Hole {
                from: r.from,
                to: r.to,
                chain: r.chain,
            });
        }
    }
    holes
}

/// The server's side: checks `trail` (a trail file) against the registered card
/// `identity` — every record's card signature, the counters, the chain hashes, this
/// server's own recovery and validator records — and signs a recovery body for each hole
/// the trail's recovery records account for and this server's do not (at most
/// [`MAX_ACCOUNTS`], oldest first), charging its counters as `charge` says to `licences`
/// (this publisher's licences of the card; more than [`MAX_RECOVERY_LICENCES`] → all).
pub fn plan_accounts(
    secret: &ServerSecret,
    identity: &CardIdentity,
    trail: &[u8],
    mut licences: Vec<LicenceId>,
    charge: LostCharge,
    now_unix: i64,
) -> Result<Vec<Body>, RestoreError> {
    let own = std::slice::from_ref(secret.public());
    let (_, records) = crate::trail::verify::verify_trail_bytes(trail, identity, own)
        .map_err(RestoreError::Trail)?;
    licences.sort_unstable();
    licences.dedup();
    let licences =
        (!licences.is_empty() && licences.len() <= MAX_RECOVERY_LICENCES).then_some(licences);
    Ok(unaccounted_holes(&records, &secret.public().fingerprint())
        .into_iter()
        .take(MAX_ACCOUNTS)
        .map(|h| {
            let mut body = Body::at_unix(
                Usage::Recovery(Box::new(Recovery {
                    server_key: secret.public().fingerprint(),
                    from: h.from,
                    to: h.to,
                    chain: h.chain,
                    charge,
                    licences: licences.clone(),
                    signature: crate::crypto::Signature([0; 64]),
                })),
                now_unix,
            );
            secret.sign_body(&identity.serial, &mut body);
            body
        })
        .collect())
}

/// Encodes an answer (at most [`MAX_ACCOUNTS`] bodies; more are left out).
pub fn encode_accounts(bodies: &[Body]) -> Vec<u8> {
    let bodies = &bodies[..bodies.len().min(MAX_ACCOUNTS)];
    let mut out = vec![bodies.len() as u8];
    for b in bodies {
        let text = b.encode();
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// The reader's side: parses the server's `answer` and checks every body before anything
/// is written — a recovery record signed by `server` for this card, naming exactly one of
/// the holes of `records` (the verified trail) that `server` has not accounted for yet,
/// with that hole's chain hash. Any body that fails refuses the whole answer.
pub fn check_accounts(
    answer: &[u8],
    server: &PublicKey,
    identity: &CardIdentity,
    records: &[Record],
) -> Result<Vec<Body>, TrailError> {
    let bad = |reason| TrailError::BadRecovery {
        index: records.len() as u64,
        reason,
    };
    if answer.len() > MAX_ACCOUNT_ANSWER {
        return Err(bad("the server's answer is larger than any account"));
    }
    let (&count, mut rest) = answer
        .split_first()
        .ok_or(bad("the server's answer is empty"))?;
    if usize::from(count) > MAX_ACCOUNTS {
        return Err(bad("the server's answer holds more accounts than allowed"));
    }
    let open = unaccounted_holes(records, &server.fingerprint());
    let mut bodies: Vec<Body> = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or(bad("the server's answer is cut short"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len > MAX_BODY || tail.len() < len {
            return Err(bad("the server's answer is cut short"));
        }
        let (text, tail) = tail.split_at(len);
        rest = tail;
        let body = Body::parse(text).map_err(|error| TrailError::BadBody {
            index: records.len() as u64,
            error,
        })?;
        let Usage::Recovery(r) = &body.usage else {
            return Err(bad("the server's answer is not a recovery record"));
        };
        if !validator::verify_server_signed(&body, &identity.serial, server, default_verifier()) {
            return Err(bad("it is not signed by the validation server that was asked"));
        }
        if !open
            .iter()
            .any(|h| (h.from, h.to, h.chain) == (r.from, r.to, r.chain))
        {
            return Err(bad(
                "it accounts for counters that are not a hole this server has still to account for",
            ));
        }
        if bodies.iter().any(|b| match &b.usage {
            Usage::Recovery(o) => (o.from, o.to) == (r.from, r.to),
            _ => false,
        }) {
            return Err(bad("it accounts for the same hole twice"));
        }
        bodies.push(body);
    }
    if !rest.is_empty() {
        return Err(bad("the server's answer has bytes after its last account"));
    }
    Ok(bodies)
}
