//! What a licence allows: thresholds, dates, rights and metering granularity, and the
//! strict text format they are written in (`docs/policy-format.md`).
//!
//! Thresholds follow \[0048\]–\[0049\] (pages, reading time, openings), \[0103\] (time units
//! weighted by the hour of day) and \[0104\] (boolean combinations). A licence with no
//! threshold at all rents without limit (\[0041\]): the vendor bills from the audited trail.
//!
//! The same text is embedded verbatim in a keyfile's CIS, so there is exactly one format
//! to document, review and fuzz. [`Limits::to_text`] writes the canonical form;
//! [`Limits::parse`] accepts comments and any directive order but nothing unknown.

//!
//! The module is split along its concerns: this file holds the model ([`Limits`],
//! [`Rights`], [`Measure`], [`Rule`]) and its cross-field checks; `parse` holds the one
//! directive table that both the parser and the canonical writer walk; `weights` holds
//! the time-of-day weights of \[0103\].

mod parse;
mod weights;

use parse::fmt_hhmm;
pub use parse::{format_period, parse_date_limit, parse_period, parse_rule};
pub use weights::{Band, TimeWeights};

use std::fmt;
use time::{OffsetDateTime, UtcOffset};

/// First line of every policy text.
pub const POLICY_MAGIC: &str = "tally-policy/1";
/// Policy texts longer than this are refused unread.
pub const MAX_POLICY_BYTES: usize = 16 * 1024;
/// Largest threshold accepted (pages, minutes, openings, units, prints, copies, copied
/// characters).
pub const MAX_THRESHOLD: u64 = 1_000_000_000;
/// Largest page block: one page record may prepay at most this many page views.
pub const MAX_PAGE_BLOCK: u32 = 10_000;
/// Longest time unit in seconds (one day).
pub const MAX_TIME_UNIT: u32 = 86_400;
/// Largest weight of one time record (\[0103\]).
pub const MAX_WEIGHT: u32 = 1_000;
/// Most hour bands in a weight table.
pub const MAX_BANDS: usize = 48;
/// Deepest nesting of `all(…)` / `any(…)`.
pub const MAX_RULE_DEPTH: usize = 4;
/// Most nodes (operators and thresholds) in one rule.
pub const MAX_RULE_NODES: usize = 32;
/// Default page views prepaid by one page record.
pub const DEFAULT_PAGE_BLOCK: u32 = 10;
/// Default seconds charged by one time record.
pub const DEFAULT_TIME_UNIT: u32 = 60;
/// Highest licence version (`licence-version`).
pub const MAX_LICENCE_VERSION: u32 = 1_000_000;
/// Shortest first-use period: one minute.
pub const MIN_PERIOD: u64 = 60;
/// Longest first-use period: ten years of 365 days.
pub const MAX_PERIOD: u64 = 10 * 365 * 86_400;
/// Seconds without input after which reading pauses, unless the policy says otherwise
/// (`idle-pause`).
pub const DEFAULT_IDLE_PAUSE: u32 = 300;
/// The shortest idle pause a publisher may set: shorter would pause a reader mid-page.
pub const MIN_IDLE_PAUSE: u32 = 30;
/// The longest idle pause a publisher may set: one hour.
pub const MAX_IDLE_PAUSE: u32 = 3_600;
const MAX_LINE: usize = 512;
pub(super) const MINUTES_PER_DAY: u16 = 1440;

/// A quantity the audit trail measures and a threshold can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Page views (prepaid in blocks by `pages` records).
    Pages,
    /// Reading time in minutes (charged per time unit by `time` records).
    Minutes,
    /// Openings of the document (`open` records).
    Opens,
    /// Weighted time units: each `time` record costs the weight of its hour band (\[0103\]).
    Units,
}

impl Measure {
    /// The word used in the policy text.
    pub fn keyword(self) -> &'static str {
        match self {
            Measure::Pages => "pages",
            Measure::Minutes => "minutes",
            Measure::Opens => "opens",
            Measure::Units => "units",
        }
    }

    fn from_keyword(s: &str) -> Option<Self> {
        Some(match s {
            "pages" => Measure::Pages,
            "minutes" => Measure::Minutes,
            "opens" => Measure::Opens,
            "units" => Measure::Units,
            _ => return None,
        })
    }
}

/// A boolean combination of thresholds (\[0104\]): `all` holds while every child holds,
/// `any` while at least one does; a threshold holds while some of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// At most `max` of `measure`.
    Limit {
        /// What is counted.
        measure: Measure,
        /// The threshold.
        max: u64,
    },
    /// Every child must hold.
    All(Vec<Rule>),
    /// At least one child must hold.
    Any(Vec<Rule>),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Limit { measure, max } => write!(f, "{} {max}", measure.keyword()),
            Rule::All(c) | Rule::Any(c) => {
                f.write_str(if matches!(self, Rule::All(_)) {
                    "all("
                } else {
                    "any("
                })?;
                for (i, r) in c.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{r}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Access rights (\[0072\]): which functions besides viewing the licence enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights {
    /// Printing is allowed (still bounded by `prints`).
    pub print: bool,
    /// Copying text to the clipboard is allowed.
    pub copy: bool,
}

impl Rights {
    /// Parses `print`, `copy`, `print,copy` (or `none`).
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let mut r = Rights::default();
        if s == "none" {
            return Ok(r);
        }
        for word in s.split(',') {
            let slot = match word.trim() {
                "print" => &mut r.print,
                "copy" => &mut r.copy,
                other => {
                    return Err(format!(
                        "unknown right `{}` (expected print, copy)",
                        clip(other)
                    ));
                }
            };
            if *slot {
                return Err(format!("right `{}` given twice", word.trim()));
            }
            *slot = true;
        }
        Ok(r)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.print, self.copy) {
            (false, false) => f.write_str("none"),
            (true, false) => f.write_str("print"),
            (false, true) => f.write_str("copy"),
            (true, true) => f.write_str("print,copy"),
        }
    }
}

/// Everything a licence allows. All thresholds are optional and combine with `and`;
/// `rule` adds an `and`/`or` tree on top (\[0104\]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// At most this many page views.
    pub pages: Option<u64>,
    /// At most this many minutes of reading.
    pub minutes: Option<u64>,
    /// At most this many openings.
    pub opens: Option<u64>,
    /// At most this many weighted time units (\[0103\]).
    pub units: Option<u64>,
    /// At most this many printed pages (requires `rights.print`). Not a viewing
    /// threshold: running out of prints never stops reading.
    pub prints: Option<u64>,
    /// At most this many copy operations (requires `rights.copy`; each copy of text writes
    /// a `copy` record). Not a viewing threshold: running out never stops reading.
    pub copies: Option<u64>,
    /// At most this many characters copied over the licence's life (requires
    /// `rights.copy`). Not a viewing threshold either.
    pub copy_chars: Option<u64>,
    /// Not usable before this instant (UTC, whole seconds).
    pub not_before: Option<OffsetDateTime>,
    /// Not usable after this instant (UTC, whole seconds; the instant itself is allowed).
    pub not_after: Option<OffsetDateTime>,
    /// Reading ends this many seconds after the licence's first `open` record (the trail's
    /// time of it; the card's counter says which is first).
    pub period_after_first_open: Option<u64>,
    /// The first opening must come no later than this instant (needs
    /// `period_after_first_open`): a licence never opened by then can no longer start.
    pub start_by: Option<OffsetDateTime>,
    /// Print / copy rights.
    pub rights: Rights,
    /// Page views prepaid by one page record: the card's counter moves once per block.
    pub page_block: u32,
    /// Seconds charged by one time record.
    pub time_unit: u32,
    /// Seconds without input after which the session pauses: the page is hidden and no
    /// reading time is charged until the reader does something (T35).
    pub idle_pause: u32,
    /// Units per time record by time of day.
    pub weights: TimeWeights,
    /// The version of this licence (`tally-pack renew` issues the same licence id with a
    /// higher one). Once a version has been opened on a card, older ones are refused there.
    pub licence_version: u32,
    /// An extra boolean combination of thresholds.
    pub rule: Option<Rule>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pages: None,
            minutes: None,
            opens: None,
            units: None,
            prints: None,
            copies: None,
            copy_chars: None,
            not_before: None,
            not_after: None,
            period_after_first_open: None,
            start_by: None,
            rights: Rights::default(),
            page_block: DEFAULT_PAGE_BLOCK,
            time_unit: DEFAULT_TIME_UNIT,
            idle_pause: DEFAULT_IDLE_PAUSE,
            weights: TimeWeights::default(),
            licence_version: 1,
            rule: None,
        }
    }
}

/// Why a policy text was refused. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is longer than [`MAX_POLICY_BYTES`].
    #[error("policy is {0} bytes, more than {MAX_POLICY_BYTES}")]
    TooLarge(usize),
    /// The text is not UTF-8.
    #[error("policy is not UTF-8 text")]
    NotText,
    /// The first line is not [`POLICY_MAGIC`].
    #[error("not a Tally policy (first line must be `{POLICY_MAGIC}`)")]
    BadMagic,
    /// A line is longer than 512 bytes.
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    LongLine {
        /// Line number.
        line: usize,
    },
    /// An unknown directive.
    #[error("line {line}: unknown directive `{word}`")]
    Unknown {
        /// Line number.
        line: usize,
        /// The directive, clipped.
        word: String,
    },
    /// A directive given twice (only `band` may repeat).
    #[error("line {line}: `{word}` given twice")]
    Duplicate {
        /// Line number.
        line: usize,
        /// The directive.
        word: &'static str,
    },
    /// A directive's value is malformed or out of range.
    #[error("line {line}: `{word}`: {reason}")]
    Value {
        /// Line number.
        line: usize,
        /// The directive.
        word: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The directives contradict each other.
    #[error("inconsistent policy: {0}")]
    Inconsistent(String),
    /// The text parses but is not in canonical form (required inside keyfiles).
    #[error("policy is not in canonical form")]
    NotCanonical,
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Limits {
    /// True when nothing bounds reading: no threshold, no date (\[0041\]).
    pub fn is_unlimited(&self) -> bool {
        self.pages.is_none()
            && self.minutes.is_none()
            && self.opens.is_none()
            && self.units.is_none()
            && self.not_before.is_none()
            && self.not_after.is_none()
            && self.period_after_first_open.is_none()
            && self.start_by.is_none()
            && self.rule.is_none()
    }

    /// The whole threshold tree: every flat threshold and `rule`, all required.
    pub fn combined_rule(&self) -> Rule {
        let mut all: Vec<Rule> = [
            (Measure::Pages, self.pages),
            (Measure::Minutes, self.minutes),
            (Measure::Opens, self.opens),
            (Measure::Units, self.units),
        ]
        .into_iter()
        .filter_map(|(measure, max)| max.map(|max| Rule::Limit { measure, max }))
        .collect();
        if let Some(r) = &self.rule {
            all.push(r.clone());
        }
        Rule::All(all)
    }

    /// Checks the cross-field rules that [`Limits::parse`] enforces.
    pub fn check(&self) -> Result<(), PolicyError> {
        let bad = |s: &str| Err(PolicyError::Inconsistent(s.to_string()));
        if let (Some(a), Some(b)) = (self.not_before, self.not_after)
            && a > b
        {
            return bad("not-before is after not-after");
        }
        if (self.copies.is_some() || self.copy_chars.is_some()) && !self.rights.copy {
            return bad(
                "copies or copy-chars is set but copying is not allowed (add `allow copy`)",
            );
        }
        if self.start_by.is_some() && self.period_after_first_open.is_none() {
            return bad("start-by needs period-after-first-open");
        }
        if let Some(p) = self.period_after_first_open
            && !(MIN_PERIOD..=MAX_PERIOD).contains(&p)
        {
            return bad("period-after-first-open out of range");
        }
        if self.prints.is_some() && !self.rights.print {
            return bad("prints is set but printing is not allowed (add `allow print`)");
        }
        if !(1..=MAX_PAGE_BLOCK).contains(&self.page_block) {
            return bad("page-block out of range");
        }
        if !(1..=MAX_TIME_UNIT).contains(&self.time_unit) {
            return bad("time-unit out of range");
        }
        if !(1..=MAX_LICENCE_VERSION).contains(&self.licence_version) {
            return bad("licence-version out of range");
        }
        if !(MIN_IDLE_PAUSE..=MAX_IDLE_PAUSE).contains(&self.idle_pause) {
            return bad("idle-pause out of range");
        }
        for t in [
            self.pages,
            self.minutes,
            self.opens,
            self.units,
            self.prints,
            self.copies,
            self.copy_chars,
        ]
        .into_iter()
        .flatten()
        {
            if t > MAX_THRESHOLD {
                return bad("threshold too large");
            }
        }
        for t in [self.not_before, self.not_after, self.start_by]
            .into_iter()
            .flatten()
        {
            if t.offset() != UtcOffset::UTC || t.nanosecond() != 0 {
                return bad("dates must be UTC with whole seconds");
            }
        }
        let w = &self.weights;
        if w.utc_offset_minutes.unsigned_abs() > 14 * 60 || w.default > MAX_WEIGHT {
            return bad("weights out of range");
        }
        if w.bands.len() > MAX_BANDS {
            return bad("too many bands");
        }
        let mut covered = vec![false; usize::from(MINUTES_PER_DAY)];
        for b in &w.bands {
            if b.start >= MINUTES_PER_DAY
                || b.end >= MINUTES_PER_DAY
                || b.start == b.end
                || b.weight > MAX_WEIGHT
            {
                return bad("band out of range or empty");
            }
            for m in 0..MINUTES_PER_DAY {
                if b.contains(m) {
                    if covered[usize::from(m)] {
                        return Err(PolicyError::Inconsistent(format!(
                            "bands overlap at {}",
                            fmt_hhmm(m)
                        )));
                    }
                    covered[usize::from(m)] = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
