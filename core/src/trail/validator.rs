//! Validator records: a trusted audit-trail validation service (\[0094\]).
//!
//! A validation server checks a trail in full (every card signature, the counter
//! sequence, the start rule) and answers with a validator body: "every record up to
//! counter `upto`, whose chain hash is `chain`, is valid, and these are each licence's
//! totals", signed with the server's key. The viewer writes that body through the normal
//! Write, so the card signs it and it takes the next counter like any record.
//!
//! A fresh ValidateTrail that trusts the server's key ([`super::Trail::set_trusted_validators`])
//! then starts from the newest such record: the records up to `upto` are checked only by
//! recomputing the chain hash (SHA-256, cheap) and their counters; only the records after
//! `upto` have their card signatures verified. Totals for a licence start from the
//! validator's and add the later records ([`crate::policy::Tally::resume`]).
//!
//! ## Chain hash (exact definition)
//!
//! ```text
//! chain_0 = tagged_hash("tally/chain/v1", [serial (16), key-fingerprint (32), first-counter:u64 BE])
//! chain_i = tagged_hash("tally/chain/v1", [chain_{i-1} (32), record_i])
//! record_i = nonce (32) ‖ counter:u64 BE ‖ signature (64) ‖ body-length:u16 BE ‖ body
//! ```
//!
//! where `tagged_hash(tag, parts) = SHA-256(u32(len tag) ‖ tag ‖ Σ u32(len part) ‖ part)`
//! ([`crate::crypto::tagged_hash`]) and `record_i` is the record as stored in its frame
//! ([`Record::encode`]; the frame's length and CRC are not included). A validator with
//! `upto = u` carries `chain_k` for the record `k` whose counter is `u`.
//!
//! ## What the server signs
//!
//! ```text
//! m = "TALLY-VALIDATOR-SIG/v1" (22) ‖ card serial (16) ‖ the body text before " sig="
//! sig = ECDSA-P256-SHA256(server key, m), low-S, written as 128 hex digits
//! ```
//!
//! ## Recovery records (\[0062\])
//!
//! The same server keeps the latest trail it vouched for as the reader's backup. When the
//! reader's trail is lost, `tally-view trail restore` asks for it with a card-signed
//! request; the server answers the backup and a recovery body, signed with its key
//! (message `"TALLY-RECOVERY-SIG/v1" ‖ serial (16) ‖ text before " sig="`), that accounts
//! for the card counters lost between the backup and the request. The reader writes the
//! backup and appends the recovery body through Write. ValidateTrail accepts a hole in the
//! counters only right before a recovery record that names exactly the missing counters and
//! carries the chain hash of every record before it — signed by its server when the reader
//! trusts that key — or, later in the trail, another server's account of the same hole
//! ([`check_recovery`], T30); the lost use is charged as the record says, for the licences
//! whose own server signed it ([`crate::policy::Tally::trusting`]).
//!
//! ## Archived trails
//!
//! [`super::Trail::archive`] moves the records a trusted validator vouches for out of the
//! working trail, whose header then says `first counter = upto + 1`. That validator is the
//! trail's anchor: the chain hash of the records left starts from its `chain`
//! ([`chain_origin`]), and a trail not starting at the card's origin without such an anchor
//! is refused.

// Defined one layer down, in `chain`, so that verification can use them without using this
// module (whose `vouch` verifies a whole trail); this is their public place.
pub use super::chain::{
    CHAIN_TAG, RECOVERY_SIG_DOMAIN, SIG_DOMAIN, chain_from, chain_hash, chain_origin, chain_start,
    chain_step, check_recovery, looks_like_recovery, looks_like_validator, prefix_chain,
    server_message, verify_server_signed,
};

use super::body::{
    Body, History, LicenceId, LicenceTotals, MAX_PART_LICENCES, Parts, Recovery, TotalsPart, Usage,
    Validator, totals_digest,
};
use super::error::TrailError;
use super::record::Record;
use crate::card::CardIdentity;
use crate::crypto::{Hash, PublicKey, SignatureVerifier};

/// Where a fast start begins: the validator record chosen and what it vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// Position of the validator record in the trail.
    pub index: u64,
    /// Its counter.
    pub counter: u64,
    /// The last counter it vouches for.
    pub upto: u64,
    /// How many leading records of the trail it vouches for: those up to the one carrying
    /// `upto` (0 for an archived trail's anchor, whose records are in the archive).
    pub prefix: usize,
    /// Fingerprint of the server that signed it.
    pub server_key: Hash,
    /// Each licence's totals up to `upto`, in ascending licence order: the validator's
    /// inline totals (first form) or those of its `totals` records.
    pub totals: Vec<LicenceTotals>,
    /// The recovery records among the records vouched for (\[0062\]): a licence they charge
    /// in full stays charged in full after a fast start ([`crate::policy::Tally::resume`]).
    pub recoveries: Vec<Recovery>,
}

/// Finds the newest validator record in `records` whose `key=` is one of `trusted`, checks
/// the server's signature and the chain hash of the records it vouches for, and their
/// counters. Returns `None` when no record names a trusted key (full verification then
/// applies). A validator naming a trusted key whose signature fails, or whose chain hash
/// does not match the records before it, is an error: the trail was forged or tampered with.
pub fn fast_start(
    records: &[Record],
    identity: &CardIdentity,
    first_counter: u64,
    trusted: &[PublicKey],
    verifier: &dyn SignatureVerifier,
) -> Result<Option<Vouched>, TrailError> {
    if trusted.is_empty() {
        return Ok(None);
    }
    let found = records.iter().enumerate().rev().find_map(|(i, r)| {
        if !looks_like_validator(&r.body) {
            return None;
        }
        let body = Body::parse(&r.body).ok()?;
        let Usage::Validator(v) = &body.usage else {
            return None;
        };
        let key = trusted
            .iter()
            .find(|k| k.fingerprint() == v.server_key)?
            .clone();
        Some((i, body.clone(), key))
    });
    let Some((index, body, key)) = found else {
        return Ok(None);
    };
    let idx = index as u64;
    let Usage::Validator(v) = &body.usage else {
        return Ok(None);
    };
    let v: &Validator = v;
    if !verify_server_signed(&body, &identity.serial, &key, verifier) {
        return Err(TrailError::BadValidator {
            index: idx,
            reason: "the server's signature does not verify",
        });
    }
    // Counters only (cheap): the server checked them, the chain hash binds them; this
    // names a hole precisely instead of as a chain mismatch. A hole is allowed only where a
    // recovery record accounts for exactly its counters (the server checked its signature).
    let mut expected = first_counter;
    for (i, r) in records[..index].iter().enumerate() {
        if r.counter != expected {
            let accounted = looks_like_recovery(&r.body)
                && Body::parse(&r.body).is_ok_and(|b| {
                    matches!(&b.usage, Usage::Recovery(rec)
                        if rec.from == expected && rec.to.checked_add(1) == Some(r.counter))
                });
            if !accounted {
                return Err(TrailError::Gap {
                    index: i as u64,
                    expected,
                    found: r.counter,
                });
            }
        } else if looks_like_recovery(&r.body) {
            // Where no counter is missing, a recovery record can only be a later account of
            // a hole earlier in the trail (T30).
            let earlier = Body::parse(&r.body).is_ok_and(|b| {
                matches!(&b.usage, Usage::Recovery(rec)
                    if super::chain::hole_before(records, i, first_counter, rec.from, rec.to).is_some())
            });
            if !earlier {
                return Err(TrailError::BadRecovery {
                    index: i as u64,
                    reason: "the counters it accounts for are not exactly the ones missing before it",
                });
            }
        }
        expected = r.counter.saturating_add(1);
    }
    // The vouched-for records are records[..len]: up to the one carrying counter `upto`
    // (none when the validator is an archived trail's anchor, vouching for the archive).
    let len = if v.upto.checked_add(1) == Some(first_counter) && first_counter != identity.origin {
        0
    } else {
        records[..index]
            .iter()
            .position(|r| r.counter == v.upto)
            .ok_or(TrailError::BadValidator {
                index: idx,
                reason: "it vouches for counters outside the records before it",
            })?
            + 1
    };
    let recoveries: Vec<Recovery> = records[..len]
        .iter()
        .filter(|r| looks_like_recovery(&r.body))
        .filter_map(|r| match Body::parse(&r.body).ok()?.usage {
            Usage::Recovery(rec) => Some(*rec),
            _ => None,
        })
        .collect();
    if prefix_chain(records, len, identity, first_counter, trusted, verifier)? != v.chain {
        return Err(TrailError::BadValidator {
            index: idx,
            reason: "the chain hash of the records it vouches for does not match — a record before it was changed",
        });
    }
    let totals = match &v.parts {
        None => v.totals.clone(),
        Some(p) => parts_before(records, index, len, v.upto, body.at, p).ok_or(TrailError::BadValidator {
            index: idx,
            reason: "its totals records are not the ones right before it, or their totals do not match its digest",
        })?,
    };
    Ok(Some(Vouched {
        index: idx,
        counter: records[index].counter,
        upto: v.upto,
        prefix: len,
        server_key: v.server_key,
        totals,
        recoveries,
    }))
}

/// The totals of the validator `records[index]` whose totals are in `parts`: the
/// `parts.count` records right before it, after the `len` records it vouches for, must be
/// its `totals` records 1..=count for `upto`, stamped with the validator's time `at`, their
/// licences in strictly ascending order, with the signed digest. `None` when they are not.
fn parts_before(
    records: &[Record],
    index: usize,
    len: usize,
    upto: u64,
    at: time::OffsetDateTime,
    parts: &Parts,
) -> Option<Vec<LicenceTotals>> {
    let start = index.checked_sub(usize::try_from(parts.count).ok()?)?;
    if start < len {
        return None;
    }
    let bodies = records[start..index]
        .iter()
        .map(|r| Body::parse(&r.body).ok())
        .collect::<Option<Vec<Body>>>()?;
    let totals = gathered_totals(&bodies, upto, at).ok()?;
    (totals_digest(upto, &totals) == parts.digest).then_some(totals)
}

/// The totals that `parts`, a validator's `totals` records in order, carry — when each is
/// a `totals` record stamped with the validator's time `at`, they are its parts 1..=n for
/// `upto`, and their licences are in strictly ascending order across them all; else why
/// not. The one reading of the rules for a trail's records ([`parts_before`]) and a
/// server's answer ([`check_answer`]).
fn gathered_totals(
    parts: &[Body],
    upto: u64,
    at: time::OffsetDateTime,
) -> Result<Vec<LicenceTotals>, &'static str> {
    let mut totals: Vec<LicenceTotals> = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let Usage::Totals(p) = &part.usage else {
            return Err("a record among the validator's totals is not a totals record");
        };
        // The digest binds the totals, not the time: a part is stamped with its
        // validator's time, so no byte of it is left for anyone to re-spell.
        if part.at != at {
            return Err("a totals record is not stamped with its validator's time");
        }
        if p.upto != upto || usize::try_from(p.part).ok() != Some(k + 1) {
            return Err("a totals record is for another validator or out of order");
        }
        for t in &p.totals {
            if totals.last().is_some_and(|l| l.licence >= t.licence) {
                return Err("the totals are not in ascending licence order");
            }
            totals.push(*t);
        }
    }
    Ok(totals)
}

/// The `totals` bodies carrying `totals` (in ascending licence order) for a validator
/// vouching up to `upto`, at most [`MAX_PART_LICENCES`] licences each, stamped `at_unix`,
/// and the [`Parts`] the validator signs for them.
pub fn totals_parts(upto: u64, totals: &[LicenceTotals], at_unix: i64) -> (Vec<Body>, Parts) {
    let bodies: Vec<Body> = totals
        .chunks(MAX_PART_LICENCES)
        .enumerate()
        .map(|(k, chunk)| {
            Body::at_unix(
                Usage::Totals(Box::new(TotalsPart {
                    upto,
                    part: u32::try_from(k + 1).unwrap_or(u32::MAX),
                    totals: chunk.to_vec(),
                })),
                at_unix,
            )
        })
        .collect();
    let parts = Parts {
        count: u32::try_from(bodies.len()).unwrap_or(u32::MAX),
        digest: totals_digest(upto, totals),
    };
    (bodies, parts)
}

/// Why a validation server would not vouch for a trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VouchError {
    /// The trail is invalid (or is another card's).
    #[error("the trail is invalid: {0}")]
    Trail(#[from] TrailError),
    /// The trail has no records.
    #[error("the trail has no records")]
    Empty,
    /// A licence's total does not fit the validator's 32-bit fields.
    #[error("licence {0}: a total is larger than a validator record can carry")]
    TotalTooLarge(super::body::LicenceId),
}

/// What a validation server answers for a trail (\[0094\]): the bodies the reader
/// appends, in this order — the `totals` records, then the validator record that signs
/// their digest. On the wire ([`Vouching::encode`]) they are lines of text, the validator
/// last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouching {
    /// The `totals` records (none for a trail that names no licence).
    pub parts: Vec<Body>,
    /// The validator record.
    pub validator: Body,
}

impl Vouching {
    /// Every body, in the order they are written.
    pub fn bodies(&self) -> impl Iterator<Item = &Body> {
        self.parts.iter().chain(std::iter::once(&self.validator))
    }

    /// The last counter vouched for.
    pub fn upto(&self) -> u64 {
        match &self.validator.usage {
            Usage::Validator(v) => v.upto,
            _ => 0,
        }
    }

    /// The wire form: each body's text, one per line (`\n`), the validator last.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in self.bodies() {
            if !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(b.encode().as_bytes());
        }
        out
    }
}

/// One licence's totals while a server sums a trail: the counts of the first validator
/// form, and what the policy also needs once records are archived.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    counts: [u64; 5],
    copies: u64,
    chars: u64,
    version: u32,
    opened: Option<time::OffsetDateTime>,
    /// The copies, version and first opening are not known (a first-form anchor).
    unknown: bool,
}

impl Sum {
    fn from_totals(t: &LicenceTotals) -> Self {
        let counts = [t.opens, t.pages, t.seconds, t.prints, t.times].map(u64::from);
        match &t.history {
            Some(h) => Self {
                counts,
                copies: u64::from(h.copies),
                chars: u64::from(h.chars),
                version: h.version,
                opened: h.opened,
                unknown: false,
            },
            // A first-form total says nothing of copies, renewals or the first opening; one
            // that counts no use at all implies there were none (copies and renewals come
            // with openings).
            None => Self {
                counts,
                unknown: counts != [0; 5],
                ..Self::default()
            },
        }
    }

    fn add(&mut self, body: &Body) {
        let s = &mut self.counts;
        match &body.usage {
            Usage::Open { .. } => {
                s[0] += 1;
                self.opened.get_or_insert(body.at);
            }
            Usage::Pages { count, .. } => s[1] += u64::from(*count),
            Usage::Time { seconds, .. } => {
                s[2] += u64::from(*seconds);
                s[4] += 1;
            }
            Usage::Print { pages, .. } => s[3] += u64::from(*pages),
            Usage::Copy { chars, .. } => {
                self.copies += 1;
                self.chars += u64::from(*chars);
            }
            Usage::Renewal { version, .. } => self.version = self.version.max(*version),
            _ => {}
        }
    }

    fn write_off(&mut self) {
        let max = u64::from(u32::MAX);
        self.counts = [max; 5];
        self.copies = max;
        self.chars = max;
    }

    fn totals(&self, licence: LicenceId) -> Result<LicenceTotals, VouchError> {
        let f = |x: u64| u32::try_from(x).map_err(|_| VouchError::TotalTooLarge(licence));
        let [opens, pages, seconds, prints, times] = self.counts;
        Ok(LicenceTotals {
            licence,
            opens: f(opens)?,
            pages: f(pages)?,
            seconds: f(seconds)?,
            prints: f(prints)?,
            times: f(times)?,
            history: if self.unknown {
                None
            } else {
                Some(History {
                    copies: f(self.copies)?,
                    chars: f(self.chars)?,
                    version: self.version.max(1),
                    opened: self.opened,
                })
            },
        })
    }
}

/// The server's side of \[0094\]: checks a whole trail file (`bytes`, as stored on disk)
/// against the card `identity` — format, every card signature, the counter sequence from the
/// card's origin, the start rule, no torn tail — and returns the bodies vouching for all
/// its records, time-stamped `at_unix`: one `totals` record per [`MAX_PART_LICENCES`]
/// licences and a validator record, signed by `secret`, binding their digest. The caller
/// appends them with the card (Write, in one batch), so they become card-signed records
/// too. Records this server vouched for before are checked by its validator's chain hash
/// (the fast start), not one signature each.
pub fn vouch(
    secret: &crate::validation::ServerSecret,
    identity: &CardIdentity,
    bytes: &[u8],
    at_unix: i64,
) -> Result<Vouching, VouchError> {
    // The server trusts its own recovery records ([0062]), archive anchors and validator
    // records, no other server's.
    let own = std::slice::from_ref(secret.public());
    let verifier = crate::crypto::default_verifier();
    let (header, records) = super::verify::parse_trail_bytes(bytes, identity)?;
    let verify_from = |from: usize| {
        super::verify::verify_range(
            &records,
            from,
            identity,
            header.first_counter,
            own,
            verifier,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )
    };
    let fast = match fast_start(&records, identity, header.first_counter, own, verifier) {
        Ok(f) => f,
        // Its own validator does not match the records: verify them all, so the refusal
        // names the record that was changed when one was.
        Err(e) => {
            verify_from(0)?;
            return Err(e.into());
        }
    };
    verify_from(fast.as_ref().map_or(0, |v| v.prefix))?;
    let last = records.last().ok_or(VouchError::Empty)?.counter;
    // Totals per licence, exactly as `policy::Tally` counts them from the same bodies. An
    // archived trail no longer holds its first records: its totals start from the newest
    // validator of this server in it (as `Tally::resume` does), and only later records add.
    let mut sums: std::collections::BTreeMap<LicenceId, Sum> = Default::default();
    let mut recoveries: Vec<Recovery> = Vec::new();
    let mut written_off = std::collections::BTreeSet::new();
    let mut from = 0;
    if header.first_counter != identity.origin
        && let Some(v) = fast
    {
        for t in &v.totals {
            if t.is_written_off() {
                written_off.insert(t.licence);
            }
            sums.insert(t.licence, Sum::from_totals(t));
        }
        recoveries.extend(v.recoveries);
        from = v.prefix;
    }
    for r in &records[from..] {
        // Bodies of verified records always parse (checked by `verify_range`, or by this
        // server before it vouched for them).
        let Ok(body) = Body::parse(&r.body) else {
            continue;
        };
        if let Usage::Recovery(rec) = &body.usage {
            recoveries.push((**rec).clone());
        }
        if let Some(lic) = body.usage.licence() {
            // A returned licence never opens again ([`Usage::Return`]): its totals are
            // written as fully used, so the return outlives the archiving of its record.
            if matches!(body.usage, Usage::Return { .. }) {
                written_off.insert(lic);
            }
            sums.entry(lic).or_default().add(&body);
        }
    }
    // Lost records charged in full ([0062]): the licences charged carry totals of
    // `u32::MAX` — "fully used", which `Tally::resume` reads back as written off — so the
    // charge outlives the recovery record if the records before it are archived.
    // Only this server's own recovery records charge; a hole only another server accounted
    // for leaves every licence's use unknown here, so all of them count in full (T30; a
    // licence with no record in the trail is charged by `Tally::resume` from `recoveries`).
    let own_key = secret.public().fingerprint();
    let accounted: Vec<(u64, u64)> = recoveries
        .iter()
        .filter(|r| r.server_key == own_key)
        .map(|r| (r.from, r.to))
        .collect();
    if recoveries
        .iter()
        .any(|r| r.server_key != own_key && !accounted.contains(&(r.from, r.to)))
    {
        written_off.extend(sums.keys().copied());
    }
    for r in recoveries
        .iter()
        .filter(|r| r.charge == super::body::LostCharge::Full && r.server_key == own_key)
    {
        match &r.licences {
            Some(l) => written_off.extend(l.iter().copied()),
            None => written_off.extend(sums.keys().copied()),
        }
    }
    for lic in written_off {
        sums.entry(lic).or_default().write_off();
    }
    let totals = sums
        .iter()
        .map(|(licence, s)| s.totals(*licence))
        .collect::<Result<Vec<_>, VouchError>>()?;
    let (parts, digest) = totals_parts(last, &totals, at_unix);
    let mut validator = Body::at_unix(
        Usage::Validator(Box::new(Validator {
            server_key: secret.public().fingerprint(),
            upto: last,
            chain: prefix_chain(
                &records,
                records.len(),
                identity,
                header.first_counter,
                own,
                verifier,
            )?,
            totals: Vec::new(),
            parts: Some(digest),
            signature: crate::crypto::Signature([0; 64]),
        })),
        at_unix,
    );
    secret.sign_body(&identity.serial, &mut validator);
    Ok(Vouching { parts, validator })
}

/// Largest answer a reader accepts from a server vouching for its trail: the validator
/// and the `totals` records of 50 000 licences.
pub const MAX_VOUCH_ANSWER: usize = 16 << 20;

/// The reader's check of a server's answer before appending it: `answer` must be the
/// bodies of a [`Vouching`] (one per line, the validator last; an older server's answer is
/// the validator alone): a canonical validator body signed by `server` for this card,
/// vouching for a prefix of `records` (the reader's trail, whose header says
/// `first_counter`: an archived trail's chain starts at its anchor, [`chain_origin`]) with
/// the right chain hash, and, when its totals are in `totals` records, exactly those
/// records, parts `1..=n` for its `upto`, whose totals have the digest it signs. The
/// bodies are returned, ready for Write (in one batch, so that the `totals` records are
/// right before their validator). Errors are [`TrailError::BadValidator`] (with the
/// position the record would have taken) or [`TrailError::BadBody`].
pub fn check_answer(
    answer: &[u8],
    server: &PublicKey,
    identity: &CardIdentity,
    first_counter: u64,
    records: &[Record],
) -> Result<Vouching, TrailError> {
    let index = records.len() as u64;
    let refuse = |reason| TrailError::BadValidator { index, reason };
    if answer.len() > MAX_VOUCH_ANSWER {
        return Err(refuse("the server's answer is too long"));
    }
    let mut lines: Vec<&[u8]> = answer.split(|b| *b == b'\n').collect();
    let last = lines.pop().unwrap_or_default();
    let body = Body::parse(last).map_err(|error| TrailError::BadBody { index, error })?;
    let Usage::Validator(v) = &body.usage else {
        return Err(refuse(
            "the server's answer does not end with a validator record",
        ));
    };
    if v.server_key != server.fingerprint() {
        return Err(refuse("the answer names another server key"));
    }
    if !verify_server_signed(
        &body,
        &identity.serial,
        server,
        crate::crypto::default_verifier(),
    ) {
        return Err(refuse("the server's signature does not verify"));
    }
    let parts = lines
        .iter()
        .enumerate()
        .map(|(k, line)| {
            Body::parse(line).map_err(|error| TrailError::BadBody {
                index: index + k as u64,
                error,
            })
        })
        .collect::<Result<Vec<Body>, _>>()?;
    let totals = gathered_totals(&parts, v.upto, body.at).map_err(refuse)?;
    let parts_match = match &v.parts {
        Some(p) => {
            usize::try_from(p.count).ok() == Some(parts.len())
                && totals_digest(v.upto, &totals) == p.digest
        }
        None => parts.is_empty(),
    };
    if !parts_match {
        return Err(refuse(
            "the answer's totals records are not the ones its validator signs the digest of",
        ));
    }
    let k = records
        .iter()
        .position(|r| r.counter == v.upto)
        .ok_or(refuse("it vouches for records this trail does not have"))?;
    let chain = prefix_chain(
        records,
        k + 1,
        identity,
        first_counter,
        std::slice::from_ref(server),
        crate::crypto::default_verifier(),
    )?;
    if chain != v.chain {
        return Err(refuse(
            "its chain hash does not match this trail — the server saw other records",
        ));
    }
    Ok(Vouching {
        parts,
        validator: body,
    })
}
