//! Verifying records: the checks of ValidateTrail (\[0060\] steps \[6\]–[6.3], with the
//! offset of \[0095\]) over records in memory, and over a whole trail file held in memory
//! ([`verify_trail_bytes`]: a backup, a trail sent for vouching).
//!
//! Signatures are verified in parallel (they are independent and dominate the cost);
//! the counter sequence is then checked in order. Whatever fails first *in trail order*
//! is reported, so the error names the earliest bad record.

use super::body::{Body, Usage};
use super::chain::{chain_origin, check_recovery};
use super::error::TrailError;
use super::file::{HEADER_LEN, Header, parse_frames};
use super::record::Record;
use crate::card::CardIdentity;
use crate::crypto::{PublicKey, SignatureVerifier};

/// Verifies `records[from..]`, which sit at positions `from..` of a trail whose first
/// record carries counter `first_counter`. `records[..from]` are already verified. A hole
/// in the counters is accepted only right before a recovery record signed by one of
/// `trusted` that accounts for exactly the missing counters (\[0062\]).
pub fn verify_range(
    records: &[Record],
    from: usize,
    identity: &CardIdentity,
    first_counter: u64,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
    threads: usize,
) -> Result<(), TrailError> {
    let todo = &records[from.min(records.len())..];
    if todo.is_empty() {
        return Ok(());
    }
    let bad_sig = first_bad_signature(todo, identity, verifier, threads).map(|i| i + from);
    let bad_seq = check_sequence(records, from, first_counter, identity, trusted, verifier).err();
    // An inauthentic record is reported as such, even where its counter is also off.
    match (bad_seq, bad_sig) {
        (Some((i, _)), Some(j)) if j <= i => Err(TrailError::BadSignature {
            index: j as u64,
            counter: records[j].counter,
        }),
        (Some((_, e)), _) => Err(e),
        (None, Some(j)) => Err(TrailError::BadSignature {
            index: j as u64,
            counter: records[j].counter,
        }),
        (None, None) => Ok(()),
    }
}

/// Checks a whole trail file held in memory (a backup, a trail sent for vouching): the
/// header names the card `identity` and starts no earlier than its origin, the frames are
/// intact with no torn tail, and every record verifies ([`verify_range`], trusting `trusted`
/// for recovery records and archive anchors). Returns the header and the records.
pub fn verify_trail_bytes(
    bytes: &[u8],
    identity: &CardIdentity,
    trusted: &[PublicKey],
) -> Result<(Header, Vec<Record>), TrailError> {
    let (header, records) = parse_trail_bytes(bytes, identity)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // The start rule (the origin, or an archived trail's anchor) is `check_sequence`'s.
    verify_range(
        &records,
        0,
        identity,
        header.first_counter,
        trusted,
        crate::crypto::default_verifier(),
        threads,
    )?;
    Ok((header, records))
}

/// The format half of [`verify_trail_bytes`]: the header names the card `identity`, the
/// frames are intact, no torn tail. Nothing is verified yet.
pub fn parse_trail_bytes(
    bytes: &[u8],
    identity: &CardIdentity,
) -> Result<(Header, Vec<Record>), TrailError> {
    let header = Header::decode(bytes)?;
    if header.serial != identity.serial
        || header.key_fingerprint != identity.public_key.fingerprint()
    {
        return Err(TrailError::WrongCard(format!(
            "the trail belongs to card {}, not to card {}",
            header.serial, identity.serial
        )));
    }
    let frames = parse_frames(
        bytes.get(HEADER_LEN..).unwrap_or_default(),
        HEADER_LEN as u64,
        0,
    )?;
    if frames.torn_bytes > 0 {
        return Err(TrailError::TornTail {
            bytes: frames.torn_bytes,
        });
    }
    if header.first_counter < identity.origin {
        return Err(TrailError::NotAtOrigin {
            first: header.first_counter,
            origin: identity.origin,
        });
    }
    Ok((header, frames.records))
}

/// Index (within `records`) of the first record whose signature fails, if any.
pub fn first_bad_signature(
    records: &[Record],
    identity: &CardIdentity,
    verifier: &dyn SignatureVerifier,
    threads: usize,
) -> Option<usize> {
    let threads = threads.clamp(1, 64);
    if threads == 1 || records.len() < 64 {
        return records.iter().position(|r| !r.verify(identity, verifier));
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .enumerate()
            .map(|(k, part)| {
                s.spawn(move || {
                    part.iter()
                        .position(|r| !r.verify(identity, verifier))
                        .map(|i| k * chunk + i)
                })
            })
            .collect();
        // A panicking worker can only mean a bug; treat it as a failure at its chunk start (fail closed, T21).
        handles
            .into_iter()
            .enumerate()
            .filter_map(|(k, h)| h.join().unwrap_or(Some(k * chunk)))
            .min()
    })
}

/// Checks counters, bodies and the start rule for positions `from..`.
fn check_sequence(
    records: &[Record],
    from: usize,
    first_counter: u64,
    identity: &CardIdentity,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
) -> Result<(), (usize, TrailError)> {
    for (i, r) in records.iter().enumerate().skip(from) {
        let idx = i as u64;
        let body =
            Body::parse(&r.body).map_err(|error| (i, TrailError::BadBody { index: idx, error }))?;
        if i == 0 && first_counter != identity.origin {
            // An archived trail: it starts after its anchor's `upto`, never with a genesis.
            chain_origin(records, identity, first_counter, trusted, verifier)
                .map_err(|e| (i, e))?;
            if body.usage == Usage::Genesis {
                return Err((i, TrailError::UnexpectedGenesis { index: idx }));
            }
        } else if i == 0 && body.usage != Usage::Genesis {
            // A trail restored with no backup at all begins with its recovery record ([0062]).
            if !matches!(body.usage, Usage::Recovery(_)) {
                return Err((i, TrailError::FirstNotGenesis));
            }
        }
        if i > 0 && body.usage == Usage::Genesis {
            return Err((i, TrailError::UnexpectedGenesis { index: idx }));
        }
        // [0060] step [6.3] with the offset of [0095]: each counter follows the one before.
        let expected = match i.checked_sub(1) {
            None => Some(first_counter),
            Some(p) => records[p].counter.checked_add(1),
        }
        .ok_or((
            i,
            TrailError::Gap {
                index: idx,
                expected: u64::MAX,
                found: r.counter,
            },
        ))?;
        // A recovery record must account for exactly the hole before it ([0062]).
        if let Usage::Recovery(_) = &body.usage {
            check_recovery(
                records,
                i,
                &body,
                expected,
                identity,
                first_counter,
                trusted,
                verifier,
            )
            .map_err(|e| (i, e))?;
            continue;
        }
        if r.counter != expected {
            let e = if i > 0 && r.counter == records[i - 1].counter {
                TrailError::Duplicate {
                    index: idx,
                    counter: r.counter,
                }
            } else if records
                .iter()
                .skip(i + 1)
                .any(|later| later.counter == expected)
                || r.counter < expected
            {
                TrailError::Reordered {
                    index: idx,
                    expected,
                    found: r.counter,
                }
            } else {
                TrailError::Gap {
                    index: idx,
                    expected,
                    found: r.counter,
                }
            };
            return Err((i, e));
        }
    }
    Ok(())
}
