//! Rental policy: does a licence still allow reading, and what may be charged next?
//!
//! [`evaluate`] matches a keyfile's [`Limits`] against the [`Tally`] of that licence's
//! validated records (\[0048\]–\[0049\]) and answers [`Decision::Allowed`] (with what
//! remains), [`Decision::Limited`] (the rental is used up or out of its dates: the viewer
//! shows the cover page only, claim 6) or [`Decision::Denied`] (the wall clock was set
//! back, so date limits can't be trusted, T20).
//!
//! Metering is charged in advance ([`page_charge`], [`time_charge`]): a page record
//! prepays a block of page views and a time record one time unit, each capped at what
//! is left, so a killed viewer can never under-report and the card's counter moves far
//! less than once per page.
//!
//! ## Thresholds and the and/or tree (\[0104\])
//! A threshold *holds* while some of it is left. The flat thresholds and the optional
//! `rule` are all required ([`Limits::combined_rule`]); inside `rule`, `all(…)` holds
//! while every child holds and `any(…)` while at least one does. What may still be
//! charged of a measure (its *headroom*) follows the same tree: a threshold on that
//! measure gives what is left of it, a threshold on another measure gives "unlimited"
//! while it holds and zero once exhausted; `all` takes the minimum, `any` the maximum.
//!
//! ## The clock (T20)
//! The reader controls the wall clock. Records are ordered by the card's counter, so the
//! newest record's time is a lower bound on the true time. When the licence depends on
//! the clock (date limits or time-of-day weights), a clock more than
//! [`CLOCK_TOLERANCE_SECONDS`] behind that bound is refused, and date limits are checked
//! against the later of the clock and the newest record, so setting the clock back
//! never gains anything. The tolerance absorbs NTP steps and whole-second rounding.

mod clock;
mod limits;
mod tally;

pub use clock::{Clock, FloorClock, SystemClock, TestClock};
pub use limits::{
    Band, DEFAULT_IDLE_PAUSE, DEFAULT_PAGE_BLOCK, DEFAULT_TIME_UNIT, Limits, MAX_LICENCE_VERSION,
    MAX_PERIOD, MAX_POLICY_BYTES, MAX_THRESHOLD, MIN_PERIOD, Measure, POLICY_MAGIC, PolicyError,
    Rights, Rule, TimeWeights, format_period, parse_date_limit, parse_period, parse_rule,
};
pub use tally::{Tally, WRITTEN_OFF};

use std::fmt;
use time::{Duration, OffsetDateTime, UtcOffset};

/// How far (seconds) the wall clock may lag the newest record before it counts as set back.
pub const CLOCK_TOLERANCE_SECONDS: i64 = 120;

/// Why reading (or printing, or copying) is not allowed. `Display` is a sentence for the
/// reader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Every prepaid page view of the `pages` threshold is used.
    PagesUsedUp {
        /// The threshold.
        limit: u64,
    },
    /// The reading time is used.
    TimeUsedUp {
        /// The threshold in minutes.
        limit_minutes: u64,
    },
    /// The document was opened as often as allowed.
    OpensUsedUp {
        /// The threshold.
        limit: u64,
    },
    /// Not enough weighted time units left for one more time unit in this hour band (\[0103\]).
    UnitsUsedUp {
        /// The threshold.
        limit: u64,
        /// Units still left.
        left: u64,
        /// Units one time record costs now.
        needed: u32,
    },
    /// Past the `not-after` date.
    Expired {
        /// The last allowed instant.
        not_after: OffsetDateTime,
    },
    /// Before the `not-before` date.
    NotYetValid {
        /// The first allowed instant.
        not_before: OffsetDateTime,
    },
    /// The wall clock is earlier than the newest trail record (T20).
    ClockSetBack {
        /// Time of the newest record.
        newest_record: OffsetDateTime,
        /// What the clock said.
        now: OffsetDateTime,
    },
    /// The licence does not include the print right.
    PrintNotAllowed,
    /// Fewer printable pages left than asked for.
    PrintsUsedUp {
        /// The threshold.
        limit: u64,
        /// Pages still printable.
        left: u64,
    },
    /// The licence does not include the copy right.
    CopyNotAllowed,
    /// Every copy operation of the `copies` threshold is used.
    CopiesUsedUp {
        /// The threshold.
        limit: u64,
    },
    /// Fewer characters left under `copy-chars` than the selection holds.
    CopyCharsUsedUp {
        /// The threshold.
        limit: u64,
        /// Characters still copyable.
        left: u64,
        /// Characters asked for.
        asked: u64,
    },
    /// The licence bounds copying, but the copies made before the trail's archived part are
    /// not known (a validator's totals do not carry them): copying fails closed.
    CopyHistoryUnknown,
    /// A newer version of this licence (`tally-pack renew`) has been opened on this card:
    /// the older keyfile is refused there.
    Superseded {
        /// The newest version used on this card.
        newest: u32,
        /// This keyfile's version.
        this: u32,
    },
    /// The first-use period is over (`period-after-first-open`).
    PeriodEnded {
        /// The period's length in seconds.
        period: u64,
        /// When it began: the time of the licence's first `open` record.
        started: OffsetDateTime,
        /// When it ended.
        ended: OffsetDateTime,
    },
    /// The licence was not opened by its `start-by` date.
    NotStartedInTime {
        /// The latest first opening.
        start_by: OffsetDateTime,
    },
    /// The licence has a first-use period and has been opened, but the time of its first
    /// opening is in the archived part of the trail, which a validator's totals do not
    /// carry: the period counts as over (fail closed).
    PeriodStartUnknown,
    /// The reader returned the licence on this card (`tally-view return`): a card-signed
    /// `return` record is in the trail, and nothing after it brings the licence back.
    Returned {
        /// The time the `return` record carries.
        on: OffsetDateTime,
    },
    /// The trail was restored from a backup and the records lost since were charged to
    /// this licence in full by the validation server's recovery record (\[0062\]).
    WrittenOff,
    /// Records were lost from the trail (counters `from..=to`) and only another
    /// publisher's validation server accounted for them: this licence's own server has not,
    /// so the lost use counts in full for it until it does (T30).
    LostUnaccounted {
        /// First lost counter.
        from: u64,
        /// Last lost counter.
        to: u64,
    },
}

fn human(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::PagesUsedUp { limit } => {
                write!(f, "All {limit} page views of this rental have been used.")
            }
            Reason::LostUnaccounted { from, to } => write!(
                f,
                "This rental counts as used up for now: card counters {from} to {to} were lost from the reading trail, and only another publisher's server accounted for them. Ask this licence's own server to account for them: tally-view trail restore --keyfile KEYFILE."
            ),
            Reason::Returned { on } => write!(
                f,
                "This licence was returned on {}; a returned licence never opens again on this card.",
                human(*on)
            ),
            Reason::WrittenOff => f.write_str(
                "This rental counts as used up: the reading trail was restored from the publisher's backup, and the use recorded after that backup was lost and charged in full.",
            ),
            Reason::TimeUsedUp { limit_minutes } => write!(
                f,
                "All {limit_minutes} minutes of reading time of this rental have been used."
            ),
            Reason::OpensUsedUp { limit } => write!(
                f,
                "This document has been opened {limit} times, as many as this rental allows."
            ),
            Reason::UnitsUsedUp {
                limit,
                left,
                needed,
            } => write!(
                f,
                "Only {left} of {limit} time units are left; reading at this time of day costs {needed}."
            ),
            Reason::Expired { not_after } => {
                write!(f, "This rental ended at {}.", human(*not_after))
            }
            Reason::NotYetValid { not_before } => {
                write!(f, "This rental starts at {}.", human(*not_before))
            }
            Reason::ClockSetBack { newest_record, now } => write!(
                f,
                "This computer's clock says {}, earlier than the last recorded use at {}. \
                 Set the clock right to continue.",
                human(*now),
                human(*newest_record)
            ),
            Reason::PrintNotAllowed => f.write_str("This rental does not allow printing."),
            Reason::PrintsUsedUp { limit, left } => write!(
                f,
                "Only {left} of the {limit} printable pages of this rental are left."
            ),
            Reason::CopyNotAllowed => f.write_str("This rental does not allow copying text."),
            Reason::CopiesUsedUp { limit: 1 } => {
                f.write_str("The one copy this rental allows has been used.")
            }
            Reason::CopiesUsedUp { limit } => {
                write!(f, "All {limit} copies of this rental have been used.")
            }
            Reason::CopyCharsUsedUp { limit, left, asked } => write!(
                f,
                "Only {left} of the {limit} characters this rental lets you copy are left; the selection has {asked}."
            ),
            Reason::CopyHistoryUnknown => f.write_str(
                "Copying is not available: this rental limits copying, and the copies made before your reading record was archived cannot be counted here.",
            ),
            Reason::PeriodEnded {
                period, ended, ..
            } => write!(
                f,
                "The {} period that began at your first opening ended at {}.",
                period_words(*period),
                human(*ended)
            ),
            Reason::Superseded { newest, this } => write!(
                f,
                "A newer version of this licence (version {newest}) has been used on this card; this keyfile is version {this}. Open the document with the newer keyfile."
            ),
            Reason::NotStartedInTime { start_by } => write!(
                f,
                "This rental had to be opened for the first time by {}.",
                human(*start_by)
            ),
            Reason::PeriodStartUnknown => f.write_str(
                "This rental's reading period counts as over: the time of your first opening is in the archived part of your reading record, which cannot be read here.",
            ),
        }
    }
}

/// A period's length and unit in words: (48, "hour"), (7, "day"), (90, "minute").
fn period_unit(seconds: u64) -> (u64, &'static str) {
    if seconds.is_multiple_of(86_400) && seconds >= 3 * 86_400 {
        (seconds / 86_400, "day")
    } else if seconds.is_multiple_of(3_600) {
        (seconds / 3_600, "hour")
    } else if seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    }
}

/// A period in words, as an adjective: "48-hour", "7-day", "90-minute".
fn period_words(seconds: u64) -> String {
    let (n, unit) = period_unit(seconds);
    format!("{n}-{unit}")
}

/// A period in words, as a noun phrase for a reader: "48 hours", "7 days", "1 minute".
pub fn describe_period(seconds: u64) -> String {
    let (n, unit) = period_unit(seconds);
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl Reason {
    /// True for reasons that suggest tampering rather than a rental running its course.
    pub fn is_suspicious(&self) -> bool {
        matches!(self, Reason::ClockSetBack { .. })
    }
}

/// What is left of each measure; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Remaining {
    /// Page views that may still be prepaid.
    pub pages: Option<u64>,
    /// Seconds of reading time.
    pub seconds: Option<u64>,
    /// Openings (at evaluation before opening: including the one about to happen).
    pub opens: Option<u64>,
    /// Weighted time units.
    pub units: Option<u64>,
    /// Printable pages (`Some(0)` when printing is not allowed).
    pub prints: Option<u64>,
    /// The last allowed instant.
    pub until: Option<OffsetDateTime>,
    /// Copy operations left under `copies` (`None` without that threshold, or without the
    /// copy right, which [`Limits::rights`] says).
    pub copies: Option<u64>,
    /// Characters left to copy under `copy-chars` (`None` likewise).
    pub copy_chars: Option<u64>,
    /// When the first-use period ends (`period-after-first-open`), once it has begun.
    pub period_ends: Option<OffsetDateTime>,
    /// The first-use period's length in seconds, while it has not begun.
    pub period_unstarted: Option<u64>,
}

impl fmt::Display for Remaining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.pages {
            parts.push(format!("{p} pages"));
        }
        if let Some(s) = self.seconds {
            parts.push(format!("{} min", s / 60));
        }
        if let Some(o) = self.opens {
            parts.push(format!("{o} openings"));
        }
        if let Some(u) = self.units {
            parts.push(format!("{u} units"));
        }
        if let Some(t) = self.until {
            parts.push(format!("until {}", human(t)));
        }
        if let Some(t) = self.period_ends {
            parts.push(format!("period until {}", human(t)));
        }
        if parts.is_empty() {
            f.write_str("unlimited")
        } else {
            f.write_str(&parts.join(" · "))
        }
    }
}

/// The answer of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Reading is allowed.
    Allowed {
        /// What is left.
        remaining: Remaining,
    },
    /// The rental is used up or outside its dates: show the cover page only (claim 6).
    Limited {
        /// Why.
        reason: Reason,
    },
    /// Refused: something suggests tampering (the clock set back).
    Denied {
        /// Why.
        reason: Reason,
    },
}

impl Decision {
    /// True for [`Decision::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The reason, unless allowed.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Decision::Allowed { .. } => None,
            Decision::Limited { reason } | Decision::Denied { reason } => Some(reason),
        }
    }
}

impl From<Reason> for Decision {
    fn from(reason: Reason) -> Self {
        if reason.is_suspicious() {
            Decision::Denied { reason }
        } else {
            Decision::Limited { reason }
        }
    }
}

/// Whether a session is about to start (its `open` record not yet written) or running
/// (its `open` record already counted in the tally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Reading,
}

struct Ctx<'a> {
    limits: &'a Limits,
    tally: &'a Tally,
    phase: Phase,
    units_used: u64,
    /// Page views are charged in advance ([`page_charge`]): a pages threshold that is
    /// exactly used up may still have prepaid views the reader is entitled to. A time
    /// charge must not refuse because of it — the next page charge refuses instead.
    pages_prepaid: bool,
}

impl Ctx<'_> {
    fn new<'a>(limits: &'a Limits, tally: &'a Tally, phase: Phase) -> Ctx<'a> {
        Ctx {
            limits,
            tally,
            phase,
            units_used: tally.units(&limits.weights),
            pages_prepaid: false,
        }
    }

    /// Treat a used-up pages threshold as holding (see `pages_prepaid`).
    fn with_prepaid_pages(mut self) -> Self {
        self.pages_prepaid = true;
        self
    }

    /// True when threshold `max` on `m` still holds.
    fn open_threshold(&self, m: Measure, max: u64) -> bool {
        self.left(m, max) > 0 || (self.pages_prepaid && m == Measure::Pages)
    }

    /// How much of a threshold `max` on `m` is left, in the measure's charging unit
    /// (seconds for minutes).
    fn left(&self, m: Measure, max: u64) -> u64 {
        let (cap, used) = match m {
            Measure::Pages => (max, self.tally.page_views),
            Measure::Minutes => (max.saturating_mul(60), self.tally.seconds),
            Measure::Opens => {
                // A running session's own opening is already in the tally.
                let used = match self.phase {
                    Phase::Opening => self.tally.opens,
                    Phase::Reading => self.tally.opens.saturating_sub(1),
                };
                (max, used)
            }
            Measure::Units => (max, self.units_used),
        };
        cap.saturating_sub(used)
    }

    fn used_up(&self, m: Measure, max: u64) -> Reason {
        match m {
            Measure::Pages => Reason::PagesUsedUp { limit: max },
            Measure::Minutes => Reason::TimeUsedUp { limit_minutes: max },
            Measure::Opens => Reason::OpensUsedUp { limit: max },
            Measure::Units => Reason::UnitsUsedUp {
                limit: max,
                left: self.left(m, max),
                needed: 1,
            },
        }
    }

    /// Ok while the rule holds; otherwise the first exhausted threshold.
    fn holds(&self, rule: &Rule) -> Result<(), Reason> {
        match rule {
            Rule::Limit { measure, max } => {
                if self.open_threshold(*measure, *max) {
                    Ok(())
                } else {
                    Err(self.used_up(*measure, *max))
                }
            }
            Rule::All(c) => c.iter().try_for_each(|r| self.holds(r)),
            Rule::Any(c) => {
                let mut first = None;
                for r in c {
                    match self.holds(r) {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            first.get_or_insert(e);
                        }
                    }
                }
                first.map_or(Ok(()), Err)
            }
        }
    }

    /// What may still be charged of `target` under `rule` (`None`: unlimited).
    fn headroom(&self, rule: &Rule, target: Measure) -> Option<u64> {
        match rule {
            Rule::Limit { measure, max } => {
                let left = self.left(*measure, *max);
                if *measure == target {
                    Some(left)
                } else if self.open_threshold(*measure, *max) {
                    None
                } else {
                    Some(0)
                }
            }
            Rule::All(c) => c
                .iter()
                .map(|r| self.headroom(r, target))
                .fold(None, |acc, h| match (acc, h) {
                    (None, h) => h,
                    (a, None) => a,
                    (Some(a), Some(b)) => Some(a.min(b)),
                }),
            Rule::Any(c) => {
                let mut best = Some(0);
                for h in c.iter().map(|r| self.headroom(r, target)) {
                    best = match (best, h) {
                        (None, _) | (_, None) => None,
                        (Some(a), Some(b)) => Some(a.max(b)),
                    };
                }
                best
            }
        }
    }

    fn remaining(&self, rule: &Rule) -> Remaining {
        let prints = if self.limits.rights.print {
            self.limits
                .prints
                .map(|p| p.saturating_sub(self.tally.printed))
        } else {
            Some(0)
        };
        let l = self.limits;
        let (copies, copy_chars) = if l.rights.copy {
            (
                l.copies.map(|c| c.saturating_sub(self.tally.copies)),
                l.copy_chars
                    .map(|c| c.saturating_sub(self.tally.copied_chars)),
            )
        } else {
            (None, None)
        };
        let period_ends = l
            .period_after_first_open
            .zip(self.tally.first_open())
            .map(|(p, start)| period_end(start, p));
        Remaining {
            pages: self.headroom(rule, Measure::Pages),
            seconds: self.headroom(rule, Measure::Minutes),
            opens: self.headroom(rule, Measure::Opens),
            units: self.headroom(rule, Measure::Units),
            prints,
            until: l.not_after,
            copies,
            copy_chars,
            period_ends,
            period_unstarted: l.period_after_first_open.filter(|_| self.tally.opens == 0),
        }
    }
}

/// True when the licence's answers depend on the wall clock.
fn depends_on_clock(limits: &Limits) -> bool {
    limits.not_before.is_some()
        || limits.not_after.is_some()
        || limits.period_after_first_open.is_some()
        || !limits.weights.is_flat()
}

/// The end of a first-use period of `seconds` that began at `start`.
fn period_end(start: OffsetDateTime, seconds: u64) -> OffsetDateTime {
    start.saturating_add(Duration::seconds(
        i64::try_from(seconds).unwrap_or(i64::MAX),
    ))
}

/// The first-use period (`period-after-first-open`, `start-by`) at the trusted `now`: it
/// begins at the licence's first `open` record — the first in the card's order, at the time
/// that record carries — and ends `period` later. `now` is never earlier than the newest
/// record ([`trusted_now`]), so setting the clock back cannot bring the period back (T20).
fn check_period(limits: &Limits, tally: &Tally, now: OffsetDateTime) -> Result<(), Reason> {
    let Some(period) = limits.period_after_first_open else {
        return Ok(());
    };
    if tally.history_unknown() {
        // Opened, but when is not known (the first opening is in an archived part of the
        // trail): the start must never move later than it was, so the period counts as over.
        return Err(Reason::PeriodStartUnknown);
    }
    match tally.first_open() {
        Some(started) => {
            let ended = period_end(started, period);
            if now > ended {
                return Err(Reason::PeriodEnded {
                    period,
                    started,
                    ended,
                });
            }
        }
        None => {
            if let Some(start_by) = limits.start_by
                && now > start_by
            {
                return Err(Reason::NotStartedInTime { start_by });
            }
        }
    }
    Ok(())
}

/// The time the policy trusts: the clock, refused when it lags the newest record by more
/// than the tolerance, and never earlier than that record (T20).
pub fn trusted_now(
    limits: &Limits,
    tally: &Tally,
    clock: &dyn Clock,
) -> Result<OffsetDateTime, Reason> {
    let now = clock.now().to_offset(UtcOffset::UTC);
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let Some(newest) = tally.newest_any else {
        return Ok(now);
    };
    if depends_on_clock(limits) && now + Duration::seconds(CLOCK_TOLERANCE_SECONDS) < newest {
        return Err(Reason::ClockSetBack {
            newest_record: newest,
            now,
        });
    }
    Ok(now.max(newest))
}

fn check_dates(
    limits: &Limits,
    tally: &Tally,
    clock: &dyn Clock,
) -> Result<OffsetDateTime, Reason> {
    // Returning is final: checked before anything else, whatever the clock, the keyfile's
    // version or any later record says.
    if let Some(on) = tally.returned() {
        return Err(Reason::Returned { on });
    }
    let now = trusted_now(limits, tally, clock)?;
    if tally.written_off {
        return Err(match tally.unaccounted().first() {
            Some(&(from, to)) if !tally.charged_in_full() => Reason::LostUnaccounted { from, to },
            _ => Reason::WrittenOff,
        });
    }
    if tally.newest_version > limits.licence_version {
        return Err(Reason::Superseded {
            newest: tally.newest_version,
            this: limits.licence_version,
        });
    }
    if let Some(nb) = limits.not_before
        && now < nb
    {
        return Err(Reason::NotYetValid { not_before: nb });
    }
    if let Some(na) = limits.not_after
        && now > na
    {
        return Err(Reason::Expired { not_after: na });
    }
    check_period(limits, tally, now)?;
    Ok(now)
}

fn decide(limits: &Limits, tally: &Tally, clock: &dyn Clock, phase: Phase) -> Decision {
    if let Err(r) = check_dates(limits, tally, clock) {
        return r.into();
    }
    let ctx = Ctx::new(limits, tally, phase);
    let rule = limits.combined_rule();
    match ctx.holds(&rule) {
        Ok(()) => Decision::Allowed {
            remaining: ctx.remaining(&rule),
        },
        Err(r) => r.into(),
    }
}

/// May the document be opened now? (Before the session's `open` record is written.)
pub fn evaluate(limits: &Limits, tally: &Tally, clock: &dyn Clock) -> Decision {
    decide(limits, tally, clock, Phase::Opening)
}

/// May a running session go on? (Its own `open` record is already in `tally`, so an
/// `opens` threshold reached by this very opening does not stop it.)
pub fn evaluate_reading(limits: &Limits, tally: &Tally, clock: &dyn Clock) -> Decision {
    decide(limits, tally, clock, Phase::Reading)
}

/// The `count` of the next page record: how many page views to prepay when the current
/// block is used up — `page_block`, or less when fewer are left. Err when none may be
/// charged (the viewer then falls back to the cover page).
pub fn page_charge(limits: &Limits, tally: &Tally, clock: &dyn Clock) -> Result<u32, Reason> {
    check_dates(limits, tally, clock)?;
    let ctx = Ctx::new(limits, tally, Phase::Reading);
    let rule = limits.combined_rule();
    ctx.holds(&rule)?;
    let block = u64::from(limits.page_block);
    let n = ctx
        .headroom(&rule, Measure::Pages)
        .map_or(block, |h| h.min(block));
    // The rule holds, so every headroom is positive (see the module docs).
    Ok(n.max(1) as u32)
}

/// The `seconds` of the next time record, charged at the start of a time unit:
/// `time_unit`, or less when less reading time is left. Err when no time may be charged,
/// including when the weighted units left (\[0103\]) are fewer than this hour band costs.
pub fn time_charge(limits: &Limits, tally: &Tally, clock: &dyn Clock) -> Result<u32, Reason> {
    let now = check_dates(limits, tally, clock)?;
    let ctx = Ctx::new(limits, tally, Phase::Reading).with_prepaid_pages();
    let rule = limits.combined_rule();
    ctx.holds(&rule)?;
    let needed = limits.weights.weight_at(now);
    if let Some(left) = ctx.headroom(&rule, Measure::Units)
        && left < u64::from(needed)
    {
        return Err(Reason::UnitsUsedUp {
            limit: limits.units.unwrap_or(left),
            left,
            needed,
        });
    }
    let unit = u64::from(limits.time_unit);
    let s = ctx
        .headroom(&rule, Measure::Minutes)
        .map_or(unit, |h| h.min(unit));
    Ok(s.max(1) as u32)
}

/// May `pages` pages be printed now? Needs the print right, pages left under `prints`,
/// and a rental that still allows reading.
pub fn print_allowed(
    limits: &Limits,
    tally: &Tally,
    clock: &dyn Clock,
    pages: u32,
) -> Result<(), Reason> {
    if !limits.rights.print {
        return Err(Reason::PrintNotAllowed);
    }
    check_dates(limits, tally, clock)?;
    Ctx::new(limits, tally, Phase::Reading).holds(&limits.combined_rule())?;
    if let Some(max) = limits.prints {
        let left = max.saturating_sub(tally.printed);
        if u64::from(pages) > left {
            return Err(Reason::PrintsUsedUp { limit: max, left });
        }
    }
    Ok(())
}

/// May a selection of `chars` characters be copied now? Needs the copy right, a rental
/// that still allows reading, a copy left under `copies` and `chars` characters left under
/// `copy-chars`. When the licence bounds copying but the copies in an archived part of the
/// trail are unknown, copying is refused (fail closed).
pub fn copy_allowed(
    limits: &Limits,
    tally: &Tally,
    clock: &dyn Clock,
    chars: u64,
) -> Result<(), Reason> {
    if !limits.rights.copy {
        return Err(Reason::CopyNotAllowed);
    }
    check_dates(limits, tally, clock)?;
    Ctx::new(limits, tally, Phase::Reading).holds(&limits.combined_rule())?;
    if (limits.copies.is_some() || limits.copy_chars.is_some()) && tally.history_unknown() {
        return Err(Reason::CopyHistoryUnknown);
    }
    if let Some(max) = limits.copies
        && tally.copies >= max
    {
        return Err(Reason::CopiesUsedUp { limit: max });
    }
    if let Some(max) = limits.copy_chars {
        let left = max.saturating_sub(tally.copied_chars);
        if chars > left {
            return Err(Reason::CopyCharsUsedUp {
                limit: max,
                left,
                asked: chars,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
