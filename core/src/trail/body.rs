//! Record bodies: the versioned text format of what each audit record says.
//!
//! Grammar (also in `docs/trail-format.md`):
//!
//! ```text
//! body    = "tally/1" SP kind SP "at=" time *(SP field)
//! kind    = "genesis" | "open" | "pages" | "time" | "print" | "nonce"
//! time    = RFC 3339 UTC with whole seconds, e.g. 2026-11-25T13:04:26Z
//! field   = key "=" value            ; keys in the fixed order of each kind
//! value   = 1*64( ALPHA / DIGIT / "." / "_" / ":" / "+" / "-" )
//! ```
//!
//! | kind    | fields after `at=`                         | meaning |
//! |---------|--------------------------------------------|---------|
//! | genesis | —                                          | first record of a card's trail |
//! | open    | `lic=`                                     | the licence's document was opened |
//! | pages   | `lic= first= count=`                       | `count` page views prepaid, starting at page `first` (1-based) |
//! | time    | `lic= seconds=`                            | one time unit of `seconds` charged at its start |
//! | print   | `lic= pages=`                              | `pages` pages printed |
//! | nonce   | `value=`                                   | a nonce written by ValidateTrail ([0060] step [2]) or a vendor ([0104]) |
//!
//! Each licence reads only records carrying its own `lic=` ([0049]). Bodies are at most
//! [`MAX_BODY`] bytes; anything else is refused with the reason.

use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest body accepted.
pub const MAX_BODY: usize = 1024;
const PREFIX: &str = "tally/1";

/// A licence identifier (16 bytes, written as 32 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LicenceId(pub [u8; 16]);

impl LicenceId {
    /// 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// From 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for LicenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for LicenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenceId({})", self.to_hex())
    }
}

/// The kind of use a record accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// The first record of a trail.
    Genesis,
    /// A document opened.
    Open {
        /// The licence.
        licence: LicenceId,
    },
    /// A prepaid block of page views.
    Pages {
        /// The licence.
        licence: LicenceId,
        /// The page shown when the block was charged (1-based).
        first: u32,
        /// Page views prepaid by this record.
        count: u32,
    },
    /// One unit of reading time, charged at its start.
    Time {
        /// The licence.
        licence: LicenceId,
        /// The unit's length in seconds.
        seconds: u32,
    },
    /// Pages printed.
    Print {
        /// The licence.
        licence: LicenceId,
        /// Number of pages.
        pages: u32,
    },
    /// A nonce (ValidateTrail's own record, or a vendor's challenge).
    Nonce {
        /// The nonce text.
        value: String,
    },
}

impl Usage {
    /// The licence this record belongs to, if any.
    pub fn licence(&self) -> Option<LicenceId> {
        match self {
            Usage::Open { licence }
            | Usage::Pages { licence, .. }
            | Usage::Time { licence, .. }
            | Usage::Print { licence, .. } => Some(*licence),
            Usage::Genesis | Usage::Nonce { .. } => None,
        }
    }
}

/// A parsed record body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Wall-clock time the record was written (UTC, whole seconds). Informational: the
    /// order of records comes from the card's counter, never from the clock (T20).
    pub at: OffsetDateTime,
    /// What was used.
    pub usage: Usage,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Longer than [`MAX_BODY`].
    #[error("body is {0} bytes, more than {MAX_BODY}")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("body is not UTF-8 text")]
    NotText,
    /// Does not start with `tally/1`.
    #[error("body does not start with `{PREFIX}` (unknown format version)")]
    Version,
    /// Unknown kind word.
    #[error("unknown record kind `{0}`")]
    UnknownKind(String),
    /// Fields missing, extra, out of order, or malformed.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field expected.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
}

impl Body {
    /// A body stamped with the current time (whole seconds, UTC).
    pub fn now(usage: Usage) -> Self {
        Self::at_unix(usage, OffsetDateTime::now_utc().unix_timestamp())
    }

    /// A body at a given Unix time.
    pub fn at_unix(usage: Usage, unix: i64) -> Self {
        let at = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self { at, usage }
    }

    /// The text form. Panics never; a nonce value outside the charset is replaced by its hex.
    pub fn encode(&self) -> String {
        let at = self
            .at
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        let mut s = String::with_capacity(96);
        let kind = match &self.usage {
            Usage::Genesis => "genesis",
            Usage::Open { .. } => "open",
            Usage::Pages { .. } => "pages",
            Usage::Time { .. } => "time",
            Usage::Print { .. } => "print",
            Usage::Nonce { .. } => "nonce",
        };
        s.push_str(&format!("{PREFIX} {kind} at={at}"));
        match &self.usage {
            Usage::Genesis => {}
            Usage::Open { licence } => s.push_str(&format!(" lic={licence}")),
            Usage::Pages {
                licence,
                first,
                count,
            } => s.push_str(&format!(" lic={licence} first={first} count={count}")),
            Usage::Time { licence, seconds } => {
                s.push_str(&format!(" lic={licence} seconds={seconds}"))
            }
            Usage::Print { licence, pages } => s.push_str(&format!(" lic={licence} pages={pages}")),
            Usage::Nonce { value } => {
                let v = if valid_value(value) {
                    value.clone()
                } else {
                    hex::encode(value.as_bytes()).chars().take(64).collect()
                };
                s.push_str(&format!(" value={v}"));
            }
        }
        s
    }

    /// Parses the text form strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, BodyError> {
        if bytes.len() > MAX_BODY {
            return Err(BodyError::TooLong(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotText)?;
        let mut words = text.split(' ');
        if words.next() != Some(PREFIX) {
            return Err(BodyError::Version);
        }
        let kind = words.next().unwrap_or("");
        let mut field = |name: &'static str| -> Result<&str, BodyError> {
            let w = words.next().ok_or(BodyError::Field {
                field: name,
                reason: "missing",
            })?;
            let v = w
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .ok_or(BodyError::Field {
                    field: name,
                    reason: "missing or out of order",
                })?;
            if !valid_value(v) {
                return Err(BodyError::Field {
                    field: name,
                    reason: "bad characters or length",
                });
            }
            Ok(v)
        };
        let at = OffsetDateTime::parse(field("at")?, &Rfc3339).map_err(|_| BodyError::Field {
            field: "at",
            reason: "not an RFC 3339 time",
        })?;
        if at.offset() != time::UtcOffset::UTC || at.nanosecond() != 0 {
            return Err(BodyError::Field {
                field: "at",
                reason: "must be UTC with whole seconds",
            });
        }
        let lic = |v: &str| {
            LicenceId::from_hex(v).ok_or(BodyError::Field {
                field: "lic",
                reason: "expected 32 hex digits",
            })
        };
        let num = |name: &'static str, v: &str| {
            if v.len() > 1 && v.starts_with('0') {
                return Err(BodyError::Field {
                    field: name,
                    reason: "leading zero",
                });
            }
            v.parse::<u32>().map_err(|_| BodyError::Field {
                field: name,
                reason: "expected a number",
            })
        };
        let usage = match kind {
            "genesis" => Usage::Genesis,
            "open" => Usage::Open {
                licence: lic(field("lic")?)?,
            },
            "pages" => Usage::Pages {
                licence: lic(field("lic")?)?,
                first: num("first", field("first")?)?,
                count: num("count", field("count")?)?,
            },
            "time" => Usage::Time {
                licence: lic(field("lic")?)?,
                seconds: num("seconds", field("seconds")?)?,
            },
            "print" => Usage::Print {
                licence: lic(field("lic")?)?,
                pages: num("pages", field("pages")?)?,
            },
            "nonce" => Usage::Nonce {
                value: field("value")?.to_string(),
            },
            other => return Err(BodyError::UnknownKind(other.chars().take(20).collect())),
        };
        if words.next().is_some() {
            return Err(BodyError::Field {
                field: "end",
                reason: "unexpected extra fields",
            });
        }
        let body = Body { at, usage };
        // Canonical form only: one text per meaning, so a record can't be re-spelled.
        if body.encode().as_bytes() != bytes {
            return Err(BodyError::Field {
                field: "body",
                reason: "not in canonical form",
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lic() -> LicenceId {
        LicenceId([0xab; 16])
    }

    #[test]
    fn every_kind_round_trips() {
        for usage in [
            Usage::Genesis,
            Usage::Open { licence: lic() },
            Usage::Pages {
                licence: lic(),
                first: 3,
                count: 10,
            },
            Usage::Time {
                licence: lic(),
                seconds: 60,
            },
            Usage::Print {
                licence: lic(),
                pages: 2,
            },
            Usage::Nonce {
                value: "1234".into(),
            },
        ] {
            let b = Body::at_unix(usage, 1_764_000_000);
            let text = b.encode();
            assert_eq!(Body::parse(text.as_bytes()).unwrap(), b, "{text}");
        }
    }

    #[test]
    fn malformed_bodies_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "tally/2 open at=2026-01-01T00:00:00Z lic=abababababababababababababababab",
                "version",
            ),
            (
                "tally/1 burn at=2026-01-01T00:00:00Z",
                "unknown record kind",
            ),
            ("tally/1 open at=2026-01-01T00:00:00Z", "`lic`: missing"),
            (
                "tally/1 open at=2026-01-01T00:00:00+01:00 lic=abababababababababababababababab",
                "`at`",
            ),
            (
                "tally/1 pages at=2026-01-01T00:00:00Z lic=abababababababababababababababab count=1 first=2",
                "out of order",
            ),
            (
                "tally/1 pages at=2026-01-01T00:00:00Z lic=abababababababababababababababab first=01 count=1",
                "leading zero",
            ),
            (
                "tally/1 open at=2026-01-01T00:00:00Z lic=abababababababababababababababab x=1",
                "extra",
            ),
            (
                "tally/1 open at=2026-01-01T00:00:00Z lic=ABABABABABABABABABABABABABABABAB",
                "canonical",
            ),
            ("tally/1 genesis at=2026-01-01T00:00:00Z ", "extra"),
        ];
        for (text, want) in cases {
            let err = Body::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(matches!(
            Body::parse(&[b'a'; 2000]),
            Err(BodyError::TooLong(2000))
        ));
        assert!(matches!(
            Body::parse(&[0xff, 0xfe]),
            Err(BodyError::NotText)
        ));
    }
}
