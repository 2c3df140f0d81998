//! Totals of one licence's use, computed from validated trail records.
//!
//! Each licence reads only the records carrying its own licence id (\[0049\]); records of
//! other licences, genesis and nonce records add nothing to the totals. The time of
//! *every* record is kept, though, as a lower bound on the true current time: the card's
//! counter orders the trail, so a wall clock earlier than the newest record was set back
//! (T20). That reads when a record was written, never what another licence used.
//!
//! Feed a [`Tally`] only bodies of records that ValidateTrail accepted (\[0060\]): the
//! totals are only as trustworthy as the records.
//!
//! Lost records (\[0062\]) are accounted for licence by licence (T30): a recovery record
//! counts for a licence only when it comes from one of that licence's own validation
//! servers ([`Tally::trusting`], the one its vendor-signed keyfile names). A gap in the
//! counters that only another server's recovery accounts for leaves the licence's use
//! unknown, so it counts in full ([`Tally::unaccounted`]) until the licence's own server
//! accounts for the same counters — fail closed, never forgiven by someone else.

use crate::crypto::Hash;
use crate::trail::{Body, LicenceId, Usage};
use time::OffsetDateTime;

use super::limits::TimeWeights;

const MINUTES_PER_DAY: usize = 1440;

/// What "fully used" sets each total to: more than any threshold a keyfile can carry, and
/// still what a validator record's 32-bit totals can say (\[0094\]).
pub const WRITTEN_OFF: u64 = u32::MAX as u64;

/// What one licence has used so far.
#[derive(Clone, PartialEq, Eq)]
pub struct Tally {
    licence: LicenceId,
    /// `open` records.
    pub opens: u64,
    /// Page views prepaid by `pages` records (the sum of their `count`).
    pub page_views: u64,
    /// `pages` records.
    pub page_records: u64,
    /// Seconds charged by `time` records.
    pub seconds: u64,
    /// `time` records.
    pub time_records: u64,
    /// Pages printed.
    pub printed: u64,
    /// Copy operations (`copy` records).
    pub copies: u64,
    /// Characters copied (the sum of `copy` records' `chars`).
    pub copied_chars: u64,
    /// The newest licence version opened on this card (`renewal` records; 1 without any):
    /// an older keyfile of the licence is refused.
    pub newest_version: u32,
    /// Time of the licence's first `open` record in card order (see [`Tally::first_open`]).
    first_open: Option<OffsetDateTime>,
    /// Time of the licence's first `return` record in card order (see [`Tally::returned`]).
    returned: Option<OffsetDateTime>,
    /// A fast start's validator of the first form (inline totals, \[0094\]) names use of
    /// this licence in records not read one by one: its totals carry neither copies, the
    /// newest licence version nor the first opening's time, so those stay unknown until
    /// [`Tally::replay_vouched`] reads the vouched-for records.
    history_unknown: bool,
    /// Time records by the UTC minute of day they were charged in: enough to weigh them
    /// with any [`TimeWeights`] (\[0103\]) without keeping every record.
    time_by_minute: Box<[u64; MINUTES_PER_DAY]>,
    /// Time records vouched for by a validator record (\[0094\], [`Tally::resume`]): their
    /// minute of day is not known, so each is charged at the heaviest weight.
    vouched_time_records: u64,
    /// Lost records count in full for this licence (\[0062\]): a recovery record of its
    /// own server charged them, or no recovery of its own server accounts for them. Every
    /// total is then at least [`WRITTEN_OFF`], so every threshold reads as reached.
    pub written_off: bool,
    /// One of this licence's servers charged lost records in full.
    charged_in_full: bool,
    /// Fingerprints of the validation servers whose recovery records count for this licence.
    servers: Vec<Hash>,
    /// Lost counter ranges `(from, to)` accounted for by one of `servers`.
    accounted: Vec<(u64, u64)>,
    /// Lost counter ranges only other servers accounted for (so far).
    unaccounted: Vec<(u64, u64)>,
    /// Time of this licence's newest record.
    pub newest_own: Option<OffsetDateTime>,
    /// Time of the newest record of any kind in the trail.
    pub newest_any: Option<OffsetDateTime>,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("licence", &self.licence)
            .field("opens", &self.opens)
            .field("page_views", &self.page_views)
            .field("seconds", &self.seconds)
            .field("time_records", &self.time_records)
            .field("printed", &self.printed)
            .field("copies", &self.copies)
            .field("copied_chars", &self.copied_chars)
            .field("first_open", &self.first_open)
            .field("returned", &self.returned)
            .field("newest_any", &self.newest_any)
            .finish_non_exhaustive()
    }
}

impl Tally {
    /// Nothing used yet.
    pub fn new(licence: LicenceId) -> Self {
        Self {
            licence,
            opens: 0,
            page_views: 0,
            page_records: 0,
            seconds: 0,
            time_records: 0,
            printed: 0,
            copies: 0,
            copied_chars: 0,
            first_open: None,
            returned: None,
            newest_version: 1,
            history_unknown: false,
            time_by_minute: Box::new([0; MINUTES_PER_DAY]),
            vouched_time_records: 0,
            written_off: false,
            charged_in_full: false,
            servers: Vec::new(),
            accounted: Vec::new(),
            unaccounted: Vec::new(),
            newest_own: None,
            newest_any: None,
        }
    }

    /// The same, with the validation servers whose recovery records count for this
    /// licence: the fingerprints of the keys its vendor-signed keyfile names, never a key
    /// the reader supplied (T29, T30). Without any, every lost record counts in full.
    #[must_use]
    pub fn trusting(mut self, servers: &[Hash]) -> Self {
        self.servers = servers.to_vec();
        self
    }

    /// Totals of `licence` over `bodies` (in trail order), recovery records of `servers`
    /// only counting as accounts of lost records ([`Tally::trusting`]).
    pub fn from_bodies<'a>(
        licence: LicenceId,
        servers: &[Hash],
        bodies: impl IntoIterator<Item = &'a Body>,
    ) -> Self {
        let mut t = Self::new(licence).trusting(servers);
        for b in bodies {
            t.add(b);
        }
        t.settle();
        t
    }

    /// One recovery record's account of lost records: charged as it says when it comes from
    /// one of this licence's servers, otherwise only noted as a hole still to be accounted
    /// for.
    fn account(&mut self, r: &crate::trail::body::Recovery) {
        let lost = (r.from, r.to);
        if self.servers.contains(&r.server_key) {
            self.unaccounted.retain(|g| *g != lost);
            if !self.accounted.contains(&lost) {
                self.accounted.push(lost);
            }
            if r.charge == crate::trail::body::LostCharge::Full && r.covers(&self.licence) {
                self.write_off();
            }
        } else if !self.accounted.contains(&lost) && !self.unaccounted.contains(&lost) {
            self.unaccounted.push(lost);
        }
    }

    /// Lost counter ranges `(from, to)` that only other servers accounted for: this
    /// licence counts them in full until one of its own servers accounts for them.
    pub fn unaccounted(&self) -> &[(u64, u64)] {
        &self.unaccounted
    }

    /// True when one of this licence's own servers charged lost records to it in full.
    pub fn charged_in_full(&self) -> bool {
        self.charged_in_full
    }

    /// Writes the licence off when lost records remain that none of its servers accounted
    /// for. Call it once all recovery records are in — they may come after the gap they
    /// account for: a second publisher's account is appended later (T30).
    /// [`Tally::from_bodies`] and [`Tally::resume`] call it; a caller that goes on with
    /// [`Tally::add`] calls it after the last.
    pub fn settle(&mut self) {
        if !self.unaccounted.is_empty() {
            self.max_out();
        }
    }

    /// Totals of `licence` after a fast start (\[0094\]): the validator's totals for the
    /// licence (none when it names no totals for it, or when `vouched` is `None`), plus
    /// `later`, the bodies of the verified records after its `upto` (in trail order; see
    /// `Trail::unvouched_bodies`). Vouched-for time records count at the heaviest weight of
    /// any [`TimeWeights`] (never less than they cost; exact for flat weights), and the
    /// times of vouched-for records are not known (the validator record's own time, which
    /// is among `later`, stands in for them in `newest_any`). A validator does not carry
    /// `page_records` or `newest_own`: they count only the records in `later`. Copies, the
    /// newest licence version and the first opening come from the validator's totals when it
    /// carries them (its `totals` records); a validator of the first form leaves them
    /// unknown ([`Tally::history_unknown`]).
    pub fn resume<'a>(
        licence: LicenceId,
        servers: &[Hash],
        vouched: Option<&crate::trail::validator::Vouched>,
        later: impl IntoIterator<Item = &'a Body>,
    ) -> Self {
        let mut t = Self::new(licence).trusting(servers);
        if let Some(v) = vouched.and_then(|v| v.totals.iter().find(|t| t.licence == licence)) {
            t.opens = u64::from(v.opens);
            t.page_views = u64::from(v.pages);
            t.seconds = u64::from(v.seconds);
            t.printed = u64::from(v.prints);
            t.time_records = u64::from(v.times);
            t.vouched_time_records = u64::from(v.times);
            match &v.history {
                // Copies, the newest version and the first opening, carried since the
                // validator's totals are in `totals` records: archiving forgets nothing.
                Some(h) => {
                    t.copies = u64::from(h.copies);
                    t.copied_chars = u64::from(h.chars);
                    t.newest_version = h.version.max(1);
                    t.first_open = h.opened;
                }
                // A validator of the first form carries none of them: unknown unless the
                // licence had no use at all (copies and renewals come with openings).
                None => {
                    t.history_unknown = [v.opens, v.pages, v.seconds, v.prints, v.times] != [0; 5];
                }
            }
            if v.is_written_off() {
                t.write_off();
                // Totals written off do not say why: a return (T38) is read from the
                // vouched-for records while they are here ([`Tally::replay_vouched`], which
                // counts copies again from them); once archived, "written off" is all there is.
                if v.history.is_some() {
                    t.copies = 0;
                    t.copied_chars = 0;
                    t.history_unknown = true;
                }
            }
        }
        // Lost records the validator's prefix charged in full stay charged in full ([0062]),
        // and holes there that only another server accounted for stay unaccounted (T30).
        for r in vouched.map(|v| v.recoveries.as_slice()).unwrap_or_default() {
            t.account(r);
        }
        for b in later {
            t.add(b);
        }
        t.settle();
        t
    }

    /// Reads what a validator's totals do not carry — copies and the time of the first
    /// opening — from the records it vouched for (`prefix`: the bodies of the trail's
    /// vouched-for records from its genesis record on, in trail order; they are
    /// authenticated by the validator's chain hash). Call it after [`Tally::resume`], and
    /// only with a prefix that starts at the trail's genesis: after an archive, the copies
    /// and the first opening stay unknown ([`Tally::history_unknown`]).
    pub fn replay_vouched<'a>(&mut self, prefix: impl IntoIterator<Item = &'a Body>) {
        if !self.history_unknown {
            return;
        }
        let mut first_open = None;
        let mut returned = None;
        for b in prefix {
            if b.usage.licence() != Some(self.licence) {
                continue;
            }
            match &b.usage {
                Usage::Open { .. } if first_open.is_none() => first_open = Some(b.at),
                Usage::Return { .. } if returned.is_none() => returned = Some(b.at),
                Usage::Copy { chars, .. } => self.count_copy(*chars),
                Usage::Renewal { version, .. } => {
                    self.newest_version = self.newest_version.max(*version)
                }
                _ => {}
            }
        }
        // The first opening in card order: one in the prefix comes before any later one.
        if first_open.is_some() {
            self.first_open = first_open;
        }
        if returned.is_some() {
            self.returned = returned;
        }
        self.history_unknown = false;
    }

    /// True when a fast start's validator names use of this licence that was not read
    /// record by record ([`Tally::replay_vouched`] not called, or the records archived):
    /// the copies and the time of the first opening are then unknown, and a policy that
    /// needs them fails closed.
    pub fn history_unknown(&self) -> bool {
        self.history_unknown
    }

    /// The time of this licence's first `open` record — the first in the card's order, at
    /// the time it carries — or `None` when it never opened or that time is unknown
    /// ([`Tally::history_unknown`]). A first-use period starts here.
    pub fn first_open(&self) -> Option<OffsetDateTime> {
        self.first_open.filter(|_| !self.history_unknown)
    }

    /// When the licence was returned on this card (`tally-view return`): the time of its
    /// first `return` record in card order, or `None`. Known whenever the return record is
    /// in the trail; a fast start reads it from the vouched-for records, because the
    /// validation server writes a returned licence's validator totals as fully used
    /// ([`crate::trail::validator::vouch`]), and after those records were archived that
    /// charge in full still refuses the licence ([`Tally::written_off`], without the date).
    pub fn returned(&self) -> Option<OffsetDateTime> {
        self.returned
    }

    fn count_copy(&mut self, chars: u32) {
        self.copies = self.copies.saturating_add(1);
        self.copied_chars = self.copied_chars.saturating_add(u64::from(chars));
    }

    /// The licence these totals belong to.
    pub fn licence(&self) -> LicenceId {
        self.licence
    }

    /// Accounts for one more validated record (incremental validation adds only the new ones).
    pub fn add(&mut self, body: &Body) {
        let at = body.at;
        if self.newest_any.is_none_or(|n| at > n) {
            self.newest_any = Some(at);
        }
        // A recovery record names no single licence: it says which licences it charges,
        // and counts only when it comes from one of this licence's servers.
        if let Usage::Recovery(r) = &body.usage {
            self.account(r);
            return;
        }
        if body.usage.licence() != Some(self.licence) {
            return;
        }
        if self.newest_own.is_none_or(|n| at > n) {
            self.newest_own = Some(at);
        }
        match &body.usage {
            Usage::Open { .. } => {
                self.opens = self.opens.saturating_add(1);
                self.first_open.get_or_insert(at);
            }
            Usage::Copy { chars, .. } => self.count_copy(*chars),
            Usage::Renewal { version, .. } => {
                self.newest_version = self.newest_version.max(*version)
            }
            Usage::Return { .. } => {
                self.returned.get_or_insert(at);
            }
            Usage::Pages { count, .. } => {
                self.page_records = self.page_records.saturating_add(1);
                self.page_views = self.page_views.saturating_add(u64::from(*count));
            }
            Usage::Time { seconds, .. } => {
                self.time_records = self.time_records.saturating_add(1);
                self.seconds = self.seconds.saturating_add(u64::from(*seconds));
                let utc = at.to_offset(time::UtcOffset::UTC);
                let m = usize::from(utc.hour()) * 60 + usize::from(utc.minute());
                self.time_by_minute[m] = self.time_by_minute[m].saturating_add(1);
            }
            Usage::Print { pages, .. } => {
                self.printed = self.printed.saturating_add(u64::from(*pages))
            }
            // A validator's totals are used only by `resume`; read in full, it adds nothing.
            Usage::Genesis
            | Usage::Nonce { .. }
            | Usage::Challenge { .. }
            | Usage::Totals(_)
            | Usage::Validator(_) => {}
            // Only reached for a recovery naming no licence of its own (`licence()` is None):
            // handled above the licence filter.
            Usage::Recovery(_) => {}
        }
    }

    /// Charges lost records in full (\[0062\], `LostCharge::Full`): every total becomes at
    /// least [`WRITTEN_OFF`]. Vouched-for time records count at the heaviest weight, so the
    /// weighted time units are at least as large too.
    pub fn write_off(&mut self) {
        self.charged_in_full = true;
        self.max_out();
    }

    /// Every total at least [`WRITTEN_OFF`].
    fn max_out(&mut self) {
        self.written_off = true;
        let w = WRITTEN_OFF;
        self.opens = self.opens.max(w);
        self.page_views = self.page_views.max(w);
        self.seconds = self.seconds.max(w);
        self.printed = self.printed.max(w);
        self.copies = self.copies.max(w);
        self.copied_chars = self.copied_chars.max(w);
        self.time_records = self.time_records.max(w);
        self.vouched_time_records = self.vouched_time_records.max(w);
    }

    /// Weighted time units used (\[0103\]): each time record costs the weight of the band
    /// it was charged in.
    pub fn units(&self, weights: &TimeWeights) -> u64 {
        let heaviest = weights
            .bands
            .iter()
            .map(|b| b.weight)
            .fold(weights.default, u32::max);
        let vouched = self
            .vouched_time_records
            .saturating_mul(u64::from(heaviest));
        self.time_by_minute
            .iter()
            .enumerate()
            .fold(vouched, |acc, (m, &n)| {
                let w = u64::from(weights.weight_at_utc_minute(m as u16));
                acc.saturating_add(n.saturating_mul(w))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limits::Limits;

    const A: LicenceId = LicenceId([0xaa; 16]);
    const B: LicenceId = LicenceId([0xbb; 16]);

    fn at(usage: Usage, unix: i64) -> Body {
        Body::at_unix(usage, unix)
    }

    #[test]
    fn counts_only_its_own_licence() {
        let bodies = vec![
            at(Usage::Genesis, 100),
            at(Usage::Open { licence: A }, 200),
            at(
                Usage::Pages {
                    licence: A,
                    first: 1,
                    count: 10,
                },
                201,
            ),
            at(
                Usage::Pages {
                    licence: B,
                    first: 1,
                    count: 99,
                },
                202,
            ),
            at(
                Usage::Time {
                    licence: A,
                    seconds: 60,
                },
                203,
            ),
            at(
                Usage::Time {
                    licence: A,
                    seconds: 30,
                },
                263,
            ),
            at(
                Usage::Time {
                    licence: B,
                    seconds: 600,
                },
                264,
            ),
            at(
                Usage::Print {
                    licence: A,
                    pages: 3,
                },
                300,
            ),
            at(Usage::Open { licence: B }, 400),
            at(Usage::Nonce { value: "n1".into() }, 500),
        ];
        let t = Tally::from_bodies(A, &[], &bodies);
        assert_eq!(t.licence(), A);
        assert_eq!((t.opens, t.page_views, t.page_records), (1, 10, 1));
        assert_eq!((t.seconds, t.time_records, t.printed), (90, 2, 3));
        assert_eq!(t.newest_own.map(|t| t.unix_timestamp()), Some(300));
        assert_eq!(t.newest_any.map(|t| t.unix_timestamp()), Some(500));
        let tb = Tally::from_bodies(B, &[], &bodies);
        assert_eq!(
            (tb.opens, tb.page_views, tb.seconds, tb.printed),
            (1, 99, 600, 0)
        );
    }

    #[test]
    fn newest_is_the_latest_time_not_the_last_record() {
        // Trail order comes from the card; a record written after a clock change can be older.
        let bodies = [
            at(Usage::Open { licence: A }, 1_000),
            at(Usage::Open { licence: A }, 500),
        ];
        let t = Tally::from_bodies(A, &[], &bodies);
        assert_eq!(t.newest_own.map(|t| t.unix_timestamp()), Some(1_000));
    }

    #[test]
    fn units_weigh_each_time_record_by_its_band() {
        let l =
            Limits::parse(b"tally-policy/1\nweights offset=+00:00 default=2\nband 20:00-06:00 1\n")
                .unwrap();
        let day = 1_767_225_600; // 2026-01-01T00:00:00Z
        let bodies = [
            at(
                Usage::Time {
                    licence: A,
                    seconds: 3600,
                },
                day + 19 * 3600 + 3599,
            ), // 19:59:59 → 2
            at(
                Usage::Time {
                    licence: A,
                    seconds: 3600,
                },
                day + 20 * 3600,
            ), // 20:00 → 1
            at(
                Usage::Time {
                    licence: A,
                    seconds: 3600,
                },
                day + 5 * 3600 + 3599,
            ), // 05:59:59 → 1
            at(
                Usage::Time {
                    licence: A,
                    seconds: 3600,
                },
                day + 6 * 3600,
            ), // 06:00 → 2
        ];
        let t = Tally::from_bodies(A, &[], &bodies);
        assert_eq!(t.units(&l.weights), 6);
        assert_eq!(t.units(&TimeWeights::default()), 4);
    }
}
