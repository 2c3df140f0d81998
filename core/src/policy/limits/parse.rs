//! The policy text: one table of directives ([`DIRECTIVES`]) that both [`Limits::parse`]
//! and the canonical writer [`Limits::to_text`] walk, so a directive's keyword, whether it
//! may repeat, how its value is read and how it is written live in one place. The table's
//! order is the canonical order (`docs/policy-format.md`).

use super::{
    Band, DEFAULT_IDLE_PAUSE, Limits, MAX_BANDS, MAX_IDLE_PAUSE, MAX_LICENCE_VERSION, MAX_LINE,
    MAX_PAGE_BLOCK, MAX_PERIOD, MAX_POLICY_BYTES, MAX_RULE_DEPTH, MAX_RULE_NODES, MAX_THRESHOLD,
    MAX_TIME_UNIT, MAX_WEIGHT, MIN_IDLE_PAUSE, MIN_PERIOD, Measure, POLICY_MAGIC, PolicyError,
    Rights, Rule, clip,
};
use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// A policy being read: the limits so far and what later directives depend on.
struct Reading {
    lim: Limits,
    /// A `weights` line was seen (`band` must follow one).
    have_weights: bool,
}

/// One directive of the policy text.
struct Directive {
    /// The word that starts its line.
    keyword: &'static str,
    /// May appear more than once (only `band`).
    repeats: bool,
    /// Reads the value (the rest of the line) into the policy being read.
    read: fn(&mut Reading, &str) -> Result<(), String>,
    /// The values the canonical form writes for it, one line each (none: left out).
    write: fn(&Limits) -> Vec<String>,
}

/// A threshold: a plain number up to [`MAX_THRESHOLD`], written when set.
macro_rules! threshold {
    ($keyword:literal, $field:ident) => {
        Directive {
            keyword: $keyword,
            repeats: false,
            read: |r, v| {
                r.lim.$field = Some(parse_threshold(v)?);
                Ok(())
            },
            write: |l| l.$field.iter().map(u64::to_string).collect(),
        }
    };
}

/// A metering granularity in `lo..=hi`, always written.
macro_rules! ranged {
    ($keyword:literal, $field:ident, $lo:expr, $hi:expr) => {
        Directive {
            keyword: $keyword,
            repeats: false,
            read: |r, v| {
                r.lim.$field = parse_ranged(v, $lo, $hi)?;
                Ok(())
            },
            write: |l| vec![l.$field.to_string()],
        }
    };
}

/// A date: `YYYY-MM-DD` (its first second, or its last when `end_of_day`) or an RFC 3339
/// UTC time, written as the full time when set.
macro_rules! date {
    ($keyword:literal, $field:ident, $end_of_day:expr) => {
        Directive {
            keyword: $keyword,
            repeats: false,
            read: |r, v| {
                r.lim.$field = Some(parse_date_limit(v, $end_of_day)?);
                Ok(())
            },
            write: |l| l.$field.map(format_time).into_iter().collect(),
        }
    };
}

/// Every directive, in canonical order.
const DIRECTIVES: &[Directive] = &[
    threshold!("pages", pages),
    threshold!("minutes", minutes),
    threshold!("opens", opens),
    threshold!("units", units),
    threshold!("prints", prints),
    threshold!("copies", copies),
    threshold!("copy-chars", copy_chars),
    date!("not-before", not_before, false),
    date!("not-after", not_after, true),
    Directive {
        keyword: "period-after-first-open",
        repeats: false,
        read: |r, v| {
            r.lim.period_after_first_open = Some(parse_period(v)?);
            Ok(())
        },
        write: |l| {
            l.period_after_first_open
                .map(format_period)
                .into_iter()
                .collect()
        },
    },
    date!("start-by", start_by, true),
    Directive {
        keyword: "allow",
        repeats: false,
        read: |r, v| {
            r.lim.rights = Rights::parse_list(v)?;
            Ok(())
        },
        write: |l| {
            (l.rights != Rights::default())
                .then(|| l.rights.to_string())
                .into_iter()
                .collect()
        },
    },
    ranged!("page-block", page_block, 1, MAX_PAGE_BLOCK),
    ranged!("time-unit", time_unit, 1, MAX_TIME_UNIT),
    Directive {
        keyword: "idle-pause",
        repeats: false,
        read: |r, v| {
            r.lim.idle_pause = parse_ranged(v, MIN_IDLE_PAUSE, MAX_IDLE_PAUSE)?;
            Ok(())
        },
        // Only when set: keyfiles issued before `idle-pause` existed stay canonical.
        write: |l| {
            (l.idle_pause != DEFAULT_IDLE_PAUSE)
                .then(|| l.idle_pause.to_string())
                .into_iter()
                .collect()
        },
    },
    Directive {
        keyword: "weights",
        repeats: false,
        read: read_weights,
        write: |l| {
            let w = &l.weights;
            (!w.is_flat())
                .then(|| {
                    format!(
                        "offset={} default={}",
                        fmt_offset(w.utc_offset_minutes),
                        w.default
                    )
                })
                .into_iter()
                .collect()
        },
    },
    Directive {
        keyword: "band",
        repeats: true,
        read: read_band,
        write: |l| {
            if l.weights.is_flat() {
                return Vec::new();
            }
            l.weights
                .bands
                .iter()
                .map(|b| format!("{}-{} {}", fmt_hhmm(b.start), fmt_hhmm(b.end), b.weight))
                .collect()
        },
    },
    Directive {
        keyword: "licence-version",
        repeats: false,
        read: |r, v| {
            r.lim.licence_version = parse_ranged(v, 1, MAX_LICENCE_VERSION)?;
            Ok(())
        },
        // Only a renewed licence has one: keyfiles issued before renewals stay canonical.
        write: |l| {
            (l.licence_version != 1)
                .then(|| l.licence_version.to_string())
                .into_iter()
                .collect()
        },
    },
    Directive {
        keyword: "rule",
        repeats: false,
        read: |r, v| {
            r.lim.rule = Some(parse_rule(v)?);
            Ok(())
        },
        write: |l| l.rule.iter().map(Rule::to_string).collect(),
    },
];

fn read_weights(r: &mut Reading, value: &str) -> Result<(), String> {
    r.have_weights = true;
    let expected = || "expected `offset=±HH:MM default=N`".to_string();
    let mut parts = value.split(' ');
    let off = parts
        .next()
        .and_then(|p| p.strip_prefix("offset="))
        .ok_or_else(expected)?;
    r.lim.weights.utc_offset_minutes = parse_offset(off)?;
    let def = parts
        .next()
        .and_then(|p| p.strip_prefix("default="))
        .ok_or_else(expected)?;
    r.lim.weights.default = parse_ranged(def, 0, MAX_WEIGHT)?;
    if parts.next().is_some() {
        return Err("unexpected text after default=".into());
    }
    Ok(())
}

fn read_band(r: &mut Reading, value: &str) -> Result<(), String> {
    if !r.have_weights {
        return Err("`band` must follow a `weights` line".into());
    }
    if r.lim.weights.bands.len() >= MAX_BANDS {
        return Err(format!("more than {MAX_BANDS} bands"));
    }
    let expected = || "expected `HH:MM-HH:MM WEIGHT`".to_string();
    let (range, w) = value.split_once(' ').ok_or_else(expected)?;
    let (a, b) = range.split_once('-').ok_or_else(expected)?;
    let band = Band {
        start: parse_hhmm(a)?,
        end: parse_hhmm(b)?,
        weight: parse_ranged(w, 0, MAX_WEIGHT)?,
    };
    if band.start == band.end {
        return Err("a band must not be empty".into());
    }
    r.lim.weights.bands.push(band);
    Ok(())
}

impl Limits {
    /// The canonical text form (what a keyfile embeds): the directives in the order of the
    /// table, each as its writer says.
    pub fn to_text(&self) -> String {
        let mut s = String::from(POLICY_MAGIC);
        s.push('\n');
        for d in DIRECTIVES {
            for v in (d.write)(self) {
                let _ = writeln!(s, "{} {v}", d.keyword);
            }
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
        let mut r = Reading {
            lim: Limits::default(),
            have_weights: false,
        };
        let mut seen: Vec<&'static str> = Vec::new();
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
            let Some(d) = DIRECTIVES.iter().find(|d| d.keyword == word) else {
                return Err(PolicyError::Unknown {
                    line,
                    word: clip(word),
                });
            };
            if !d.repeats {
                if seen.contains(&d.keyword) {
                    return Err(PolicyError::Duplicate {
                        line,
                        word: d.keyword,
                    });
                }
                seen.push(d.keyword);
            }
            (d.read)(&mut r, value.trim()).map_err(|reason| PolicyError::Value {
                line,
                word: d.keyword,
                reason,
            })?;
        }
        r.lim.check()?;
        Ok(r.lim)
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

/// The units a period may be written in, largest first, with their length in seconds.
const PERIOD_UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses a period such as `48h`, `7d`, `90m` or `3600s`: a plain number and one unit
/// (`d`ays of 24 hours, `h`ours, `m`inutes, `s`econds), from [`MIN_PERIOD`] to
/// [`MAX_PERIOD`] seconds.
pub fn parse_period(v: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{}` is not a period like 48h (a number and one of d, h, m, s)",
            clip(v)
        )
    };
    let unit = v.chars().last().ok_or_else(bad)?;
    let &(_, secs) = PERIOD_UNITS
        .iter()
        .find(|(c, _)| *c == unit)
        .ok_or_else(bad)?;
    let n = parse_threshold(&v[..v.len() - 1]).map_err(|_| bad())?;
    let total = n.saturating_mul(secs);
    if !(MIN_PERIOD..=MAX_PERIOD).contains(&total) {
        return Err(format!(
            "{total} seconds is outside one minute to ten years"
        ));
    }
    Ok(total)
}

/// The canonical spelling of a period: in the largest unit that divides it exactly
/// (`172800` seconds is `2d`, `48h` too; `90m` stays `90m`).
pub fn format_period(seconds: u64) -> String {
    let (unit, len) = PERIOD_UNITS
        .iter()
        .find(|(_, len)| seconds.is_multiple_of(*len))
        .copied()
        .unwrap_or(('s', 1));
    format!("{}{unit}", seconds / len)
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

pub(super) fn fmt_hhmm(m: u16) -> String {
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
