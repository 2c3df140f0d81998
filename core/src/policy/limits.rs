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

use std::fmt::{self, Write as _};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// First line of every policy text.
pub const POLICY_MAGIC: &str = "tally-policy/1";
/// Policy texts longer than this are refused unread.
pub const MAX_POLICY_BYTES: usize = 16 * 1024;
/// Largest threshold accepted (pages, minutes, openings, units, prints).
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
/// Seconds without input after which reading pauses, unless the policy says otherwise
/// (`idle-pause`).
pub const DEFAULT_IDLE_PAUSE: u32 = 300;
/// The shortest idle pause a publisher may set: shorter would pause a reader mid-page.
pub const MIN_IDLE_PAUSE: u32 = 30;
/// The longest idle pause a publisher may set: one hour.
pub const MAX_IDLE_PAUSE: u32 = 3_600;
const MAX_LINE: usize = 512;
const MINUTES_PER_DAY: u16 = 1440;

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

/// A band of the day, in minutes after local midnight: `start` inclusive, `end`
/// exclusive; a band with `end <= start` wraps past midnight (e.g. 20:00–06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// First minute of the band (0..1440).
    pub start: u16,
    /// First minute after the band (0..1440).
    pub end: u16,
    /// Units one time record costs when charged inside the band.
    pub weight: u32,
}

impl Band {
    fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// Units per time record by time of day (\[0103\]), e.g. night hours cost 1 unit and day
/// hours 2. Bands are read in a fixed UTC offset named by the vendor, never the reader's
/// machine settings (which the reader controls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWeights {
    /// Offset of the vendor's "local time" from UTC, in minutes (−840..=840).
    pub utc_offset_minutes: i16,
    /// Weight of minutes that no band covers.
    pub default: u32,
    /// Non-overlapping bands.
    pub bands: Vec<Band>,
}

impl Default for TimeWeights {
    fn default() -> Self {
        Self {
            utc_offset_minutes: 0,
            default: 1,
            bands: Vec::new(),
        }
    }
}

impl TimeWeights {
    /// True when every time record costs exactly one unit.
    pub fn is_flat(&self) -> bool {
        *self == Self::default()
    }

    /// Weight of a time record charged at `utc_minute` minutes after UTC midnight.
    pub fn weight_at_utc_minute(&self, utc_minute: u16) -> u32 {
        let local = (i32::from(utc_minute) + i32::from(self.utc_offset_minutes))
            .rem_euclid(i32::from(MINUTES_PER_DAY)) as u16;
        self.bands
            .iter()
            .find(|b| b.contains(local))
            .map_or(self.default, |b| b.weight)
    }

    /// Weight of a time record charged at `at`.
    pub fn weight_at(&self, at: OffsetDateTime) -> u32 {
        let at = at.to_offset(UtcOffset::UTC);
        self.weight_at_utc_minute(u16::from(at.hour()) * 60 + u16::from(at.minute()))
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
    /// Not usable before this instant (UTC, whole seconds).
    pub not_before: Option<OffsetDateTime>,
    /// Not usable after this instant (UTC, whole seconds; the instant itself is allowed).
    pub not_after: Option<OffsetDateTime>,
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
            not_before: None,
            not_after: None,
            rights: Rights::default(),
            page_block: DEFAULT_PAGE_BLOCK,
            time_unit: DEFAULT_TIME_UNIT,
            idle_pause: DEFAULT_IDLE_PAUSE,
            weights: TimeWeights::default(),
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

fn parse_threshold(v: &str) -> Result<u64, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || (v.len() > 1 && v.starts_with('0'))
    {
        return Err(format!("`{}` is not a plain decimal number", clip(v)));
    }
    let n: u64 = v
        .parse()
        .map_err(|_| format!("`{}` is too large", clip(v)))?;
    if n > MAX_THRESHOLD {
        return Err(format!("{n} is more than {MAX_THRESHOLD}"));
    }
    Ok(n)
}

fn parse_ranged(v: &str, lo: u32, hi: u32) -> Result<u32, String> {
    let n = parse_threshold(v)?;
    if n < u64::from(lo) || n > u64::from(hi) {
        return Err(format!("{n} is outside {lo}..={hi}"));
    }
    Ok(n as u32)
}

/// Parses a date limit: `YYYY-MM-DD` (the start of the day for `not-before`, its last
/// second for `not-after`) or an RFC 3339 UTC time with whole seconds ending in `Z`.
pub fn parse_date_limit(v: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if v.len() == 10 {
        let d = Date::parse(v, format_description!("[year]-[month]-[day]"))
            .map_err(|_| format!("`{}` is not a date YYYY-MM-DD", clip(v)))?;
        let t = if end_of_day {
            Time::from_hms(23, 59, 59).map_err(|e| e.to_string())?
        } else {
            Time::MIDNIGHT
        };
        return Ok(PrimitiveDateTime::new(d, t).assume_utc());
    }
    let t = OffsetDateTime::parse(v, &Rfc3339)
        .map_err(|_| format!("`{}` is neither YYYY-MM-DD nor an RFC 3339 time", clip(v)))?;
    if !v.ends_with('Z') || t.nanosecond() != 0 {
        return Err("times must be UTC (ending in Z) with whole seconds".into());
    }
    Ok(t)
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "invalid-time".to_string())
}

fn parse_hhmm(v: &str) -> Result<u16, String> {
    let bad = || format!("`{}` is not HH:MM", clip(v));
    let (h, m) = v.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn fmt_hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn parse_offset(v: &str) -> Result<i16, String> {
    let bad = || format!("`{}` is not an offset like +01:00", clip(v));
    let (sign, rest) = match v.as_bytes().first() {
        Some(b'+') => (1i16, &v[1..]),
        Some(b'-') => (-1i16, &v[1..]),
        _ => return Err(bad()),
    };
    let m = parse_hhmm(rest).map_err(|_| bad())?;
    if m > 14 * 60 {
        return Err("offset beyond ±14:00".into());
    }
    Ok(sign * m as i16)
}

fn fmt_offset(m: i16) -> String {
    let sign = if m < 0 { '-' } else { '+' };
    format!("{sign}{}", fmt_hhmm(m.unsigned_abs()))
}

/// Recursive-descent parser for `rule` expressions.
struct RuleParser<'a> {
    s: &'a str,
    pos: usize,
    nodes: usize,
}

impl RuleParser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }
    fn skip_spaces(&mut self) {
        while self.rest().starts_with(' ') {
            self.pos += 1;
        }
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }
    fn expr(&mut self, depth: usize) -> Result<Rule, String> {
        self.nodes += 1;
        if self.nodes > MAX_RULE_NODES {
            return Err(format!("more than {MAX_RULE_NODES} nodes"));
        }
        let all = self.eat("all(");
        if all || self.eat("any(") {
            if depth >= MAX_RULE_DEPTH {
                return Err(format!("nested deeper than {MAX_RULE_DEPTH}"));
            }
            let mut children = Vec::new();
            loop {
                self.skip_spaces();
                children.push(self.expr(depth + 1)?);
                self.skip_spaces();
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(format!("expected `,` or `)` at column {}", self.pos + 1));
                }
            }
            return Ok(if all {
                Rule::All(children)
            } else {
                Rule::Any(children)
            });
        }
        let end = self
            .rest()
            .find(' ')
            .ok_or_else(|| format!("expected a threshold at column {}", self.pos + 1))?;
        let word = &self.rest()[..end];
        let measure = Measure::from_keyword(word).ok_or_else(|| {
            format!(
                "unknown measure `{}` (expected pages, minutes, opens, units, all(…), any(…))",
                clip(word)
            )
        })?;
        self.pos += end + 1;
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        let max = parse_threshold(&self.rest()[..digits])?;
        self.pos += digits;
        Ok(Rule::Limit { measure, max })
    }
}

/// Parses a rule expression such as `any(pages 100, all(minutes 60, opens 3))`.
pub fn parse_rule(s: &str) -> Result<Rule, String> {
    let mut p = RuleParser {
        s,
        pos: 0,
        nodes: 0,
    };
    let r = p.expr(0)?;
    if p.pos != s.len() {
        return Err(format!("unexpected text at column {}", p.pos + 1));
    }
    Ok(r)
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
        if self.prints.is_some() && !self.rights.print {
            return bad("prints is set but printing is not allowed (add `allow print`)");
        }
        if !(1..=MAX_PAGE_BLOCK).contains(&self.page_block) {
            return bad("page-block out of range");
        }
        if !(1..=MAX_TIME_UNIT).contains(&self.time_unit) {
            return bad("time-unit out of range");
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
        ]
        .into_iter()
        .flatten()
        {
            if t > MAX_THRESHOLD {
                return bad("threshold too large");
            }
        }
        for t in [self.not_before, self.not_after].into_iter().flatten() {
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

    /// The canonical text form (what a keyfile embeds).
    pub fn to_text(&self) -> String {
        let mut s = String::from(POLICY_MAGIC);
        s.push('\n');
        let mut line = |k: &str, v: String| {
            let _ = writeln!(s, "{k} {v}");
        };
        for (m, v) in [
            (Measure::Pages, self.pages),
            (Measure::Minutes, self.minutes),
            (Measure::Opens, self.opens),
            (Measure::Units, self.units),
        ] {
            if let Some(v) = v {
                line(m.keyword(), v.to_string());
            }
        }
        if let Some(v) = self.prints {
            line("prints", v.to_string());
        }
        if let Some(t) = self.not_before {
            line("not-before", format_time(t));
        }
        if let Some(t) = self.not_after {
            line("not-after", format_time(t));
        }
        if self.rights != Rights::default() {
            line("allow", self.rights.to_string());
        }
        line("page-block", self.page_block.to_string());
        line("time-unit", self.time_unit.to_string());
        // Only when set: keyfiles issued before `idle-pause` existed stay canonical.
        if self.idle_pause != DEFAULT_IDLE_PAUSE {
            line("idle-pause", self.idle_pause.to_string());
        }
        if !self.weights.is_flat() {
            line(
                "weights",
                format!(
                    "offset={} default={}",
                    fmt_offset(self.weights.utc_offset_minutes),
                    self.weights.default
                ),
            );
            for b in &self.weights.bands {
                line(
                    "band",
                    format!("{}-{} {}", fmt_hhmm(b.start), fmt_hhmm(b.end), b.weight),
                );
            }
        }
        if let Some(r) = &self.rule {
            line("rule", r.to_string());
        }
        s
    }

    /// Parses a policy text strictly: known directives only, each once (`band` may
    /// repeat, after `weights`), values in range, cross-field rules checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::NotText)?;
        let mut lines = text.split('\n').enumerate();
        match lines.next() {
            Some((_, l)) if l.trim_end_matches('\r') == POLICY_MAGIC => {}
            _ => return Err(PolicyError::BadMagic),
        }
        let mut lim = Limits::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut have_weights = false;
        for (i, raw) in lines {
            let line = i + 1;
            if raw.len() > MAX_LINE {
                return Err(PolicyError::LongLine { line });
            }
            let l = raw.trim_end_matches('\r').trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (word, value) = l.split_once(' ').unwrap_or((l, ""));
            let value = value.trim();
            let key: &'static str = match word {
                "pages" => "pages",
                "minutes" => "minutes",
                "opens" => "opens",
                "units" => "units",
                "prints" => "prints",
                "not-before" => "not-before",
                "not-after" => "not-after",
                "allow" => "allow",
                "page-block" => "page-block",
                "time-unit" => "time-unit",
                "idle-pause" => "idle-pause",
                "weights" => "weights",
                "band" => "band",
                "rule" => "rule",
                other => {
                    return Err(PolicyError::Unknown {
                        line,
                        word: clip(other),
                    });
                }
            };
            if key != "band" {
                if seen.contains(&key) {
                    return Err(PolicyError::Duplicate { line, word: key });
                }
                seen.push(key);
            }
            let val = |reason: String| PolicyError::Value {
                line,
                word: key,
                reason,
            };
            match key {
                "pages" => lim.pages = Some(parse_threshold(value).map_err(val)?),
                "minutes" => lim.minutes = Some(parse_threshold(value).map_err(val)?),
                "opens" => lim.opens = Some(parse_threshold(value).map_err(val)?),
                "units" => lim.units = Some(parse_threshold(value).map_err(val)?),
                "prints" => lim.prints = Some(parse_threshold(value).map_err(val)?),
                "not-before" => lim.not_before = Some(parse_date_limit(value, false).map_err(val)?),
                "not-after" => lim.not_after = Some(parse_date_limit(value, true).map_err(val)?),
                "allow" => lim.rights = Rights::parse_list(value).map_err(val)?,
                "page-block" => {
                    lim.page_block = parse_ranged(value, 1, MAX_PAGE_BLOCK).map_err(val)?
                }
                "time-unit" => {
                    lim.time_unit = parse_ranged(value, 1, MAX_TIME_UNIT).map_err(val)?
                }
                "idle-pause" => {
                    lim.idle_pause =
                        parse_ranged(value, MIN_IDLE_PAUSE, MAX_IDLE_PAUSE).map_err(val)?
                }
                "weights" => {
                    have_weights = true;
                    let mut parts = value.split(' ');
                    let off = parts
                        .next()
                        .and_then(|p| p.strip_prefix("offset="))
                        .ok_or_else(|| val("expected `offset=±HH:MM default=N`".into()))?;
                    lim.weights.utc_offset_minutes = parse_offset(off).map_err(val)?;
                    let def = parts
                        .next()
                        .and_then(|p| p.strip_prefix("default="))
                        .ok_or_else(|| val("expected `offset=±HH:MM default=N`".into()))?;
                    lim.weights.default = parse_ranged(def, 0, MAX_WEIGHT).map_err(val)?;
                    if parts.next().is_some() {
                        return Err(val("unexpected text after default=".into()));
                    }
                }
                "band" => {
                    if !have_weights {
                        return Err(val("`band` must follow a `weights` line".into()));
                    }
                    if lim.weights.bands.len() >= MAX_BANDS {
                        return Err(val(format!("more than {MAX_BANDS} bands")));
                    }
                    let (range, w) = value
                        .split_once(' ')
                        .ok_or_else(|| val("expected `HH:MM-HH:MM WEIGHT`".into()))?;
                    let (a, b) = range
                        .split_once('-')
                        .ok_or_else(|| val("expected `HH:MM-HH:MM WEIGHT`".into()))?;
                    let band = Band {
                        start: parse_hhmm(a).map_err(val)?,
                        end: parse_hhmm(b).map_err(val)?,
                        weight: parse_ranged(w, 0, MAX_WEIGHT).map_err(val)?,
                    };
                    if band.start == band.end {
                        return Err(val("a band must not be empty".into()));
                    }
                    lim.weights.bands.push(band);
                }
                "rule" => lim.rule = Some(parse_rule(value).map_err(val)?),
                _ => unreachable!("every key is matched above"),
            }
        }
        lim.check()?;
        Ok(lim)
    }

    /// Parses and additionally requires the canonical form (inside keyfiles, where one
    /// meaning must have exactly one spelling).
    pub fn parse_canonical(bytes: &[u8]) -> Result<Self, PolicyError> {
        let lim = Self::parse(bytes)?;
        if lim.to_text().as_bytes() != bytes {
            return Err(PolicyError::NotCanonical);
        }
        Ok(lim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn parse(s: &str) -> Result<Limits, PolicyError> {
        Limits::parse(s.as_bytes())
    }

    #[test]
    fn full_policy_round_trips_canonically() {
        let text = "tally-policy/1\n# a comment\n\nrule any(pages 100, all(minutes 60, opens 3))\n\
                    pages 300\nminutes 600\nopens 20\nunits 1000\nprints 10\nallow print,copy\n\
                    not-before 2026-12-01\nnot-after 2026-12-31\npage-block 5\ntime-unit 900\n\
                    idle-pause 120\nweights offset=+01:00 default=2\nband 20:00-06:00 1\n";
        let l = parse(text).unwrap();
        assert_eq!(l.pages, Some(300));
        assert_eq!(l.not_before, Some(datetime!(2026-12-01 00:00:00 UTC)));
        assert_eq!(l.not_after, Some(datetime!(2026-12-31 23:59:59 UTC)));
        assert!(l.rights.print && l.rights.copy);
        assert_eq!(l.weights.utc_offset_minutes, 60);
        assert_eq!(l.idle_pause, 120);
        assert_eq!(
            l.rule,
            Some(Rule::Any(vec![
                Rule::Limit {
                    measure: Measure::Pages,
                    max: 100
                },
                Rule::All(vec![
                    Rule::Limit {
                        measure: Measure::Minutes,
                        max: 60
                    },
                    Rule::Limit {
                        measure: Measure::Opens,
                        max: 3
                    },
                ]),
            ]))
        );
        let canon = l.to_text();
        assert_eq!(Limits::parse_canonical(canon.as_bytes()).unwrap(), l);
        assert_eq!(
            Limits::parse_canonical(text.as_bytes()),
            Err(PolicyError::NotCanonical)
        );
    }

    #[test]
    fn default_is_unlimited_and_canonical() {
        let l = Limits::default();
        assert!(l.is_unlimited());
        let t = l.to_text();
        assert_eq!(t, "tally-policy/1\npage-block 10\ntime-unit 60\n");
        assert_eq!(Limits::parse_canonical(t.as_bytes()).unwrap(), l);
    }

    #[test]
    fn malformed_policies_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("tally-policy/2\npages 1\n", "first line"),
            (
                "tally-policy/1\npagez 1\n",
                "line 2: unknown directive `pagez`",
            ),
            (
                "tally-policy/1\npages 1\npages 2\n",
                "line 3: `pages` given twice",
            ),
            ("tally-policy/1\npages -1\n", "not a plain decimal"),
            ("tally-policy/1\nidle-pause 29\n", "line 2: `idle-pause`"),
            ("tally-policy/1\nidle-pause 3601\n", "line 2: `idle-pause`"),
            (
                "tally-policy/1\nidle-pause 60\nidle-pause 90\n",
                "line 3: `idle-pause` given twice",
            ),
            ("tally-policy/1\npages 007\n", "not a plain decimal"),
            ("tally-policy/1\npages 1000000001\n", "more than"),
            (
                "tally-policy/1\npages 99999999999999999999999\n",
                "too large",
            ),
            ("tally-policy/1\nnot-after 2026-13-01\n", "not a date"),
            (
                "tally-policy/1\nnot-after 2026-12-01T00:00:00+01:00\n",
                "UTC",
            ),
            (
                "tally-policy/1\nnot-after 2026-12-01T00:00:00.5Z\n",
                "whole seconds",
            ),
            (
                "tally-policy/1\nnot-before 2026-12-02\nnot-after 2026-12-01\n",
                "not-before is after",
            ),
            ("tally-policy/1\nallow print,scan\n", "unknown right `scan`"),
            ("tally-policy/1\nallow print,print\n", "given twice"),
            ("tally-policy/1\nprints 3\n", "printing is not allowed"),
            ("tally-policy/1\npage-block 0\n", "outside 1..=10000"),
            ("tally-policy/1\ntime-unit 86401\n", "outside"),
            (
                "tally-policy/1\nband 20:00-06:00 1\n",
                "must follow a `weights`",
            ),
            (
                "tally-policy/1\nweights offset=+15:00 default=1\n",
                "beyond",
            ),
            ("tally-policy/1\nweights default=1\n", "offset="),
            (
                "tally-policy/1\nweights offset=+00:00 default=1\nband 24:00-06:00 1\n",
                "not HH:MM",
            ),
            (
                "tally-policy/1\nweights offset=+00:00 default=1\nband 06:00-06:00 1\n",
                "empty",
            ),
            (
                "tally-policy/1\nweights offset=+00:00 default=1\nband 20:00-06:00 1\nband 05:00-07:00 2\n",
                "bands overlap at 05:00",
            ),
            (
                "tally-policy/1\nrule any(pages 1 minutes 2)\n",
                "expected `,` or `)`",
            ),
            (
                "tally-policy/1\nrule any(bytes 1)\n",
                "unknown measure `bytes`",
            ),
            ("tally-policy/1\nrule pages 1)\n", "unexpected text"),
            (
                "tally-policy/1\nrule all(all(all(all(all(pages 1)))))\n",
                "nested deeper",
            ),
            ("tally-policy/1\nrule all(\n", "expected a threshold"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: got `{err}`, want `{want}`");
        }
        assert!(matches!(
            Limits::parse(&vec![b'#'; MAX_POLICY_BYTES + 1]),
            Err(PolicyError::TooLarge(_))
        ));
        assert_eq!(Limits::parse(&[0xff]), Err(PolicyError::NotText));
        let long = format!("tally-policy/1\n# {}\n", "x".repeat(600));
        assert_eq!(parse(&long), Err(PolicyError::LongLine { line: 2 }));
        let many = format!(
            "tally-policy/1\nrule all({})\n",
            vec!["pages 1"; 40].join(", ")
        );
        assert!(parse(&many).unwrap_err().to_string().contains("nodes"));
    }

    #[test]
    fn weights_at_band_edges() {
        let l = parse(
            "tally-policy/1\nweights offset=+00:00 default=2\nband 20:00-06:00 1\nband 12:00-12:30 5\n",
        )
        .unwrap();
        let w = &l.weights;
        assert_eq!(w.weight_at(datetime!(2026-01-01 19:59:59 UTC)), 2);
        assert_eq!(w.weight_at(datetime!(2026-01-01 20:00:00 UTC)), 1);
        assert_eq!(w.weight_at(datetime!(2026-01-01 23:59:59 UTC)), 1);
        assert_eq!(w.weight_at(datetime!(2026-01-02 00:00:00 UTC)), 1);
        assert_eq!(w.weight_at(datetime!(2026-01-02 05:59:59 UTC)), 1);
        assert_eq!(w.weight_at(datetime!(2026-01-02 06:00:00 UTC)), 2);
        assert_eq!(w.weight_at(datetime!(2026-01-02 11:59:00 UTC)), 2);
        assert_eq!(w.weight_at(datetime!(2026-01-02 12:00:00 UTC)), 5);
        assert_eq!(w.weight_at(datetime!(2026-01-02 12:29:59 UTC)), 5);
        assert_eq!(w.weight_at(datetime!(2026-01-02 12:30:00 UTC)), 2);
    }

    #[test]
    fn weights_use_the_vendor_offset_not_the_machine() {
        let l =
            parse("tally-policy/1\nweights offset=-05:00 default=2\nband 20:00-06:00 1\n").unwrap();
        // 01:00 UTC is 20:00 at −05:00: night.
        assert_eq!(l.weights.weight_at(datetime!(2026-01-01 01:00:00 UTC)), 1);
        assert_eq!(l.weights.weight_at(datetime!(2026-01-01 00:59:59 UTC)), 2);
        // The same instant expressed in another offset weighs the same.
        assert_eq!(
            l.weights
                .weight_at(datetime!(2026-01-01 01:00:00 UTC).to_offset(time::macros::offset!(+9))),
            1
        );
        // 10:59 UTC is 05:59 at −05:00 (night); 11:00 UTC is 06:00 (day).
        assert_eq!(l.weights.weight_at(datetime!(2026-01-01 10:59:00 UTC)), 1);
        assert_eq!(l.weights.weight_at(datetime!(2026-01-01 11:00:00 UTC)), 2);
    }

    #[test]
    fn far_future_dates_parse() {
        let l = parse("tally-policy/1\nnot-after 9999-12-31\n").unwrap();
        assert_eq!(l.not_after, Some(datetime!(9999-12-31 23:59:59 UTC)));
        assert_eq!(parse(&l.to_text()).unwrap(), l);
    }

    #[test]
    fn combined_rule_ands_everything() {
        let l = parse("tally-policy/1\npages 5\nopens 2\nrule any(minutes 1, units 3)\n").unwrap();
        assert_eq!(
            l.combined_rule().to_string(),
            "all(pages 5, opens 2, any(minutes 1, units 3))"
        );
    }

    proptest::proptest! {
        /// Hostile policy text: a clear error or a policy, never a panic; what parses
        /// round-trips through the canonical form.
        #[test]
        fn arbitrary_policies_never_panic(body in "(?s)(pages|minutes|opens|units|prints|allow|rule|band|weights|not-after|page-block|time-unit|[ a-z0-9:(),+=#\\n-]){0,40}") {
            let text = format!("tally-policy/1\n{body}");
            if let Ok(l) = Limits::parse(text.as_bytes()) {
                let canon = l.to_text();
                proptest::prop_assert_eq!(Limits::parse_canonical(canon.as_bytes()), Ok(l));
            }
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Limits::parse(&bytes);
            let mut b = b"tally-policy/1\n".to_vec();
            b.extend_from_slice(&bytes);
            let _ = Limits::parse(&b);
        }

        /// Rule text from random trees parses back to the same tree.
        #[test]
        fn rules_round_trip(maxes in proptest::collection::vec(0u64..1000, 1..6), any in proptest::bool::ANY) {
            let leaves: Vec<Rule> = maxes.iter().enumerate().map(|(i, &max)| Rule::Limit {
                measure: [Measure::Pages, Measure::Minutes, Measure::Opens, Measure::Units][i % 4],
                max,
            }).collect();
            let r = if any { Rule::Any(leaves) } else { Rule::All(vec![Rule::Any(leaves.clone()), leaves[0].clone()]) };
            proptest::prop_assert_eq!(parse_rule(&r.to_string()), Ok(r));
        }
    }
}
