//! The chain hash and the server's signatures on validator and recovery records, with the
//! checks verification makes of them: a recovery record standing in for a hole
//! ([`check_recovery`]) and an archived trail's anchor ([`chain_origin`]). The formats are
//! defined in [`super::validator`]'s docs, which re-exports these items; this lower layer
//! exists so that [`super::verify`] can use them without depending on the validator side
//! (fast start, vouching), which itself uses verification.

use super::body::{Body, Usage};
use super::error::TrailError;
use super::record::Record;
use crate::card::{CardIdentity, Serial};
use crate::crypto::{Hash, PublicKey, SignatureVerifier, tagged_hash};

/// Domain tag of the chain hash.
pub const CHAIN_TAG: &[u8] = b"tally/chain/v1";
/// Domain prefix of the message a validation server signs.
pub const SIG_DOMAIN: &[u8; 22] = b"TALLY-VALIDATOR-SIG/v1";
/// Domain prefix of the message a validation server signs for a recovery record (\[0062\]).
pub const RECOVERY_SIG_DOMAIN: &[u8; 21] = b"TALLY-RECOVERY-SIG/v1";

/// Checks the recovery record `records[index]` (body `body`); `expected` is the previous
/// record's counter + 1, the record's own counter is `records[index].counter`.
///
/// A recovery record either follows the hole it accounts for — the lost counters are then
/// exactly `expected..found` — or is a later account of a hole earlier in the trail, by
/// another validation server (T30): it then follows the record before it with no hole of
/// its own, and names exactly that earlier hole. Either way its chain hash must be that of
/// every record before the hole (the server's backup, \[0062\]).
///
/// Which server's account counts is decided licence by licence
/// ([`crate::policy::Tally::trusting`]): a recovery naming one of `trusted` must carry that
/// server's valid signature (a forged one fails the trail); one naming any other server is
/// card-signed like every record, but what it says for its server cannot be checked here,
/// so it accounts for no licence that does not trust that server — for those the hole's use
/// counts in full.
#[expect(
    clippy::too_many_arguments,
    reason = "the position, the record and the trail's identity, start and trusted keys are all needed; a struct would only rename them"
)]
pub fn check_recovery(
    records: &[Record],
    index: usize,
    body: &Body,
    expected: u64,
    identity: &CardIdentity,
    first_counter: u64,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
) -> Result<(), TrailError> {
    let Usage::Recovery(r) = &body.usage else {
        return Err(TrailError::BadRecovery {
            index: index as u64,
            reason: "not a recovery record",
        });
    };
    let refuse = |reason| TrailError::BadRecovery {
        index: index as u64,
        reason,
    };
    let found = records.get(index).map_or(0, |r| r.counter);
    let follows_its_hole = r.from == expected && r.to.checked_add(1) == Some(found);
    // Where the hole is: the number of records before it.
    let before_hole = if follows_its_hole {
        index
    } else if found == expected {
        hole_before(records, index, first_counter, r.from, r.to).ok_or_else(|| {
            refuse(
                "the counters it accounts for are not exactly the ones missing before it, nor a hole earlier in the trail",
            )
        })?
    } else {
        return Err(refuse(
            "the counters it accounts for are not exactly the ones missing before it",
        ));
    };
    if let Some(key) = trusted.iter().find(|k| k.fingerprint() == r.server_key)
        && !verify_server_signed(body, &identity.serial, key, verifier)
    {
        return Err(refuse("the server's signature does not verify"));
    }
    if prefix_chain(
        records,
        before_hole,
        identity,
        first_counter,
        trusted,
        verifier,
    )? != r.chain
    {
        return Err(refuse(
            "its chain hash does not match the records before it — they are not the server's backup",
        ));
    }
    Ok(())
}

/// The position of the hole of lost counters `from..=to` among `records[..before]`: the
/// number of records before it, when a record carrying `to + 1` directly follows one
/// carrying `from − 1` (or starts the trail at `first_counter == from`).
pub(crate) fn hole_before(
    records: &[Record],
    before: usize,
    first_counter: u64,
    from: u64,
    to: u64,
) -> Option<usize> {
    let after = to.checked_add(1)?;
    let j = records[..before.min(records.len())]
        .iter()
        .position(|r| r.counter == after)?;
    let ok = match j.checked_sub(1) {
        None => from == first_counter,
        Some(p) => records[p].counter.checked_add(1) == Some(from),
    };
    (ok && from <= to).then_some(j)
}

/// `chain_0` of a trail.
pub fn chain_start(serial: &Serial, key_fingerprint: &Hash, first_counter: u64) -> Hash {
    tagged_hash(
        CHAIN_TAG,
        &[&serial.0, key_fingerprint, &first_counter.to_be_bytes()],
    )
}

/// `chain_i` from `chain_{i-1}` and record `i`: `tagged_hash(CHAIN_TAG, [prev,
/// record.encode()])`, hashed from the record's fields without encoding it into a buffer
/// first (a fast start hashes every record it skips).
pub fn chain_step(prev: &Hash, record: &Record) -> Hash {
    use sha2::Digest as _;
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut h = sha2::Sha256::new();
    h.update(len(CHAIN_TAG.len()));
    h.update(CHAIN_TAG);
    h.update(len(prev.len()));
    h.update(prev);
    h.update(len(106 + record.body.len()));
    h.update(record.nonce);
    h.update(record.counter.to_be_bytes());
    h.update(record.signature.0);
    h.update(
        u16::try_from(record.body.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    h.update(&record.body);
    h.finalize().into()
}

/// The chain hash after every record of `records` (the first of which carries `first_counter`).
pub fn chain_hash(identity: &CardIdentity, first_counter: u64, records: &[Record]) -> Hash {
    chain_from(
        chain_start(
            &identity.serial,
            &identity.public_key.fingerprint(),
            first_counter,
        ),
        records,
    )
}

/// The chain hash after every record of `records`, continuing from `start` (the chain hash
/// before the first of them: [`chain_start`], or an archived trail's [`chain_origin`]).
pub fn chain_from(start: Hash, records: &[Record]) -> Hash {
    records.iter().fold(start, |c, r| chain_step(&c, r))
}

/// The chain hash after the first `len` records of a trail (`records`, whose header says
/// `first_counter`), from its [`chain_origin`] — what a validator's or recovery's `chain=`
/// must equal.
pub fn prefix_chain(
    records: &[Record],
    len: usize,
    identity: &CardIdentity,
    first_counter: u64,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
) -> Result<Hash, TrailError> {
    let origin = chain_origin(records, identity, first_counter, trusted, verifier)?;
    Ok(chain_from(origin, &records[..len.min(records.len())]))
}

/// The chain hash before the first record of a trail whose header says `first_counter`.
///
/// A trail that starts at the card's origin starts from [`chain_start`]. A trail whose
/// records before `first_counter` were archived ([`super::Trail::archive`]) starts from
/// the chain hash of its *anchor*: the validator record, signed by one of `trusted`, that
/// vouches for every record up to `first_counter − 1` — the server saw those records, so
/// nothing before the anchor can have been dropped unnoticed (\[0094\]). With no such
/// validator the trail is refused ([`TrailError::Archived`]): a trail missing its
/// beginning is never taken for an archived one.
pub fn chain_origin(
    records: &[Record],
    identity: &CardIdentity,
    first_counter: u64,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
) -> Result<Hash, TrailError> {
    if first_counter == identity.origin {
        return Ok(chain_start(
            &identity.serial,
            &identity.public_key.fingerprint(),
            first_counter,
        ));
    }
    if first_counter < identity.origin {
        return Err(TrailError::NotAtOrigin {
            first: first_counter,
            origin: identity.origin,
        });
    }
    let upto = first_counter - 1;
    for (i, r) in records.iter().enumerate() {
        if !looks_like_validator(&r.body) {
            continue;
        }
        let Ok(body) = Body::parse(&r.body) else {
            continue;
        };
        let Usage::Validator(v) = &body.usage else {
            continue;
        };
        if v.upto != upto {
            continue;
        }
        let Some(key) = trusted.iter().find(|k| k.fingerprint() == v.server_key) else {
            continue;
        };
        if !verify_server_signed(&body, &identity.serial, key, verifier) {
            return Err(TrailError::BadValidator {
                index: i as u64,
                reason: "the server's signature does not verify",
            });
        }
        return Ok(v.chain);
    }
    Err(TrailError::Archived {
        first: first_counter,
    })
}

/// The message a validation server signs for a validator or recovery `body` of card
/// `serial`: the kind's domain ([`SIG_DOMAIN`], [`RECOVERY_SIG_DOMAIN`]) ‖ serial (16) ‖ the
/// body text before ` sig=`. `None` for the other kinds, which no server signs.
pub fn server_message(body: &Body, serial: &Serial) -> Option<Vec<u8>> {
    let domain: &[u8] = match body.usage {
        Usage::Validator(_) => SIG_DOMAIN,
        Usage::Recovery(_) => RECOVERY_SIG_DOMAIN,
        _ => return None,
    };
    let unsigned = body.server_signed_text()?;
    let mut m = Vec::with_capacity(domain.len() + 16 + unsigned.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(&serial.0);
    m.extend_from_slice(unsigned.as_bytes());
    Some(m)
}

/// True when `body` is a validator or recovery record whose `key=` names `server` and whose
/// signature verifies under it for the card `serial` ([`server_message`]).
pub fn verify_server_signed(
    body: &Body,
    serial: &Serial,
    server: &PublicKey,
    verifier: &dyn SignatureVerifier,
) -> bool {
    let (key, signature) = match &body.usage {
        Usage::Validator(v) => (&v.server_key, &v.signature),
        Usage::Recovery(r) => (&r.server_key, &r.signature),
        _ => return false,
    };
    *key == server.fingerprint()
        && server_message(body, serial).is_some_and(|m| verifier.verify(server, &m, signature))
}

/// Cheap test for a validator body, before any parsing.
pub fn looks_like_validator(body: &[u8]) -> bool {
    body.starts_with(b"tally/1 validator ")
}

/// Cheap test for a recovery body, before any parsing.
pub fn looks_like_recovery(body: &[u8]) -> bool {
    body.starts_with(b"tally/1 recovery ")
}
