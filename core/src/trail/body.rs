//! Record bodies: the versioned text format of what each audit record says.
//!
//! Grammar (also in `docs/trail-format.md`):
//!
//! ```text
//! body    = "tally/1" SP kind SP "at=" time *(SP field)
//! kind    = "genesis" | "open" | "pages" | "time" | "print" | "copy" | "renewal" | "return" | "nonce" | "challenge" | "validator" | "recovery"
//! time    = RFC 3339 UTC with whole seconds, e.g. 2026-11-25T13:04:26Z
//! field   = key "=" value            ; keys in the fixed order of each kind
//! value   = 1*64( ALPHA / DIGIT / "." / "_" / ":" / "+" / "-" )
//! ; challenge only ([0104]; see `crate::validation::challenge`):
//! fields  = "key=" hex64 SP "nonce=" hex64
//! ; validator only ([0094]; see `super::validator`):
//! fields  = "key=" hex64 SP "upto=" num SP "chain=" hex64 0*5(SP totals) SP "sig=" hex128
//! totals  = "lic=" hex32 SP "opens=" n32 SP "pages=" n32 SP "seconds=" n32 SP "prints=" n32 SP "times=" n32
//! ; recovery only ([0062]; see `super::validator`):
//! fields  = "key=" hex64 SP "from=" num SP "to=" num SP "chain=" hex64 SP "charge=" ("full" / "forgive")
//!           SP "scope=" ("all" / "listed") 0*12(SP "lic=" hex32) SP "sig=" hex128
//! ```
//!
//! `sig=` is the one value longer than 64 characters: exactly 128 lower-case hex digits.
//!
//! | kind    | fields after `at=`                         | meaning |
//! |---------|--------------------------------------------|---------|
//! | genesis | —                                          | first record of a card's trail |
//! | open    | `lic=`                                     | the licence's document was opened |
//! | pages   | `lic= first= count=`                       | `count` page views prepaid, starting at page `first` (1-based) |
//! | time    | `lic= seconds=`                            | one time unit of `seconds` charged at its start |
//! | print   | `lic= pages=`                              | `pages` pages printed |
//! | copy    | `lic= chars=`                              | text of `chars` characters copied (one copy operation) |
//! | renewal | `lic= version=`                            | version `version` of the licence (`tally-pack renew`) was opened here for the first time |
//! | return  | `lic=`                                     | the reader returned the licence (`tally-view return`): it never opens again on this card |
//! | nonce   | `value=`                                   | a nonce written by ValidateTrail (\[0060\] step \[2\]), a validation or restore request |
//! | challenge | `key= nonce=`                            | the answer to a publisher's nonce challenge (\[0104\]): `nonce` (64 hex digits) was handed out by the validation server with key fingerprint `key` (64 hex digits); see `crate::validation::challenge` |
//! | validator | `key= upto= chain=` totals… `sig=`         | a validation server vouches for every record up to counter `upto` (\[0094\]) |
//! | recovery | `key= from= to= chain= charge= scope=` lic… `sig=` | a validation server restored this trail from its backup (\[0062\]); the card counters `from..=to` were lost, and are charged as `charge` says to the licences of `scope` |
//!
//! Each licence reads only records carrying its own `lic=` (\[0049\]). Bodies are at most
//! [`MAX_BODY`] bytes; anything else is refused with the reason.

use crate::crypto::{Hash, Signature};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest body accepted.
pub const MAX_BODY: usize = 1024;
const PREFIX: &str = "tally/1";

crate::id::id16!(
    /// A licence identifier (16 bytes, written as 32 hex digits).
    LicenceId
);

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
    /// Text copied to the clipboard: one copy operation, charged like a print (a
    /// licence's `copies` and `copy-chars` thresholds count these).
    Copy {
        /// The licence.
        licence: LicenceId,
        /// Characters copied.
        chars: u32,
    },
    /// A renewed keyfile of the licence opened on this card for the first time: from then
    /// on, keyfiles of the licence with a lower version are refused on this card.
    Renewal {
        /// The licence.
        licence: LicenceId,
        /// The keyfile's licence version (2 or more).
        version: u32,
    },
    /// The reader returned the licence early (`tally-view return`). Final: from this record
    /// on the licence is refused on this card, whatever keyfile version or record follows;
    /// the record itself, handed to the publisher as a receipt
    /// ([`crate::receipt::Receipt`]), proves the return.
    Return {
        /// The licence.
        licence: LicenceId,
    },
    /// A nonce (ValidateTrail's own record, a validation or restore request).
    Nonce {
        /// The nonce text.
        value: String,
    },
    /// The answer to a publisher's nonce challenge (\[0104\]): the card wrote the random
    /// `nonce` its validation server handed out, so this record (and every record before
    /// it) was signed after the challenge was issued. A kind of its own, so it is never
    /// confused with the nonce records of ValidateTrail or of a validation request
    /// (`crate::validation::challenge`).
    Challenge {
        /// Fingerprint of the validation server key that signed the challenge.
        server_key: Hash,
        /// The challenge's random nonce.
        nonce: [u8; 32],
    },
    /// A validation server vouches for the records before it (\[0094\]).
    Validator(Box<Validator>),
    /// A validation server restored the trail from its backup and accounts for the card
    /// counters lost between the backup and the restore (\[0062\]).
    Recovery(Box<Recovery>),
}

/// Most licences one recovery record names (a card with more is charged with `scope=all`).
pub const MAX_RECOVERY_LICENCES: usize = 12;

/// How a recovery record charges the records it stands in for. The publisher's policy,
/// chosen at the validation server (`tally-pack serve --lost-records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostCharge {
    /// Every licence in scope is charged as fully used: every threshold it has is reached.
    /// The default: lost records are never silently forgiven.
    Full,
    /// The publisher forgives the lost records on the record (nothing is added to the
    /// totals; the recovery record itself still shows the loss to any audit).
    Forgive,
}

impl LostCharge {
    /// The word in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Forgive => "forgive",
        }
    }
}

/// The content of a recovery record: the server with key fingerprint `server_key` restored
/// this trail from the backup it kept (\[0062\]); the backup's records end with the chain
/// hash `chain` (`super::validator::chain_hash`), and the card counters `from..=to` — the
/// records written after the backup, and the card-signed restore request — are lost. They
/// are charged as `charge` says to `licences` (`None`: every licence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Fingerprint of the validation server's public key.
    pub server_key: Hash,
    /// The first lost counter (the counter after the backup's last record).
    pub from: u64,
    /// The last lost counter (the restore request's).
    pub to: u64,
    /// The chain hash after the backup's last record.
    pub chain: Hash,
    /// How the lost records are charged.
    pub charge: LostCharge,
    /// The licences charged, in strictly ascending order, at most
    /// [`MAX_RECOVERY_LICENCES`]; `None` charges every licence.
    pub licences: Option<Vec<LicenceId>>,
    /// The server's signature.
    pub signature: Signature,
}

impl Recovery {
    /// True when the lost records count against `licence`.
    pub fn covers(&self, licence: &LicenceId) -> bool {
        self.licences.as_ref().is_none_or(|l| l.contains(licence))
    }
}

/// Most licences one validator record carries totals for: with every total at `u32::MAX`
/// a validator body is then still at most [`MAX_BODY`] bytes (see the test
/// `largest_validator_fits`). A card with more licences is not vouched for.
pub const MAX_VALIDATOR_LICENCES: usize = 5;

/// One licence's totals over the records a validator vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenceTotals {
    /// The licence.
    pub licence: LicenceId,
    /// `open` records.
    pub opens: u32,
    /// Page views prepaid (the sum of `pages` records' `count`).
    pub pages: u32,
    /// Seconds charged by `time` records.
    pub seconds: u32,
    /// Pages printed.
    pub prints: u32,
    /// `time` records (so weighted time units can be bounded, \[0103\]).
    pub times: u32,
}

impl LicenceTotals {
    /// Every total at its maximum: how a validator says the licence was charged in full
    /// for lost records (\[0062\]; `Tally::resume` reads it back as written off).
    pub fn is_written_off(&self) -> bool {
        [
            self.opens,
            self.pages,
            self.seconds,
            self.prints,
            self.times,
        ] == [u32::MAX; 5]
    }
}

/// The content of a validator record (\[0094\]): the server with key fingerprint `server_key`
/// checked every record with a counter up to `upto`, whose running chain hash is `chain`
/// (`super::validator::chain_hash`), and found these totals; `signature` is its ECDSA
/// P-256 signature over the body text before ` sig=` (`super::validator::server_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Fingerprint of the validation server's public key.
    pub server_key: Hash,
    /// The last counter vouched for.
    pub upto: u64,
    /// The chain hash after the record with counter `upto`.
    pub chain: Hash,
    /// Totals per licence, in ascending licence order, at most [`MAX_VALIDATOR_LICENCES`].
    pub totals: Vec<LicenceTotals>,
    /// The server's signature.
    pub signature: Signature,
}

impl Usage {
    /// The licence this record belongs to, if any.
    pub fn licence(&self) -> Option<LicenceId> {
        match self {
            Usage::Open { licence }
            | Usage::Pages { licence, .. }
            | Usage::Time { licence, .. }
            | Usage::Print { licence, .. }
            | Usage::Copy { licence, .. }
            | Usage::Renewal { licence, .. }
            | Usage::Return { licence } => Some(*licence),
            Usage::Genesis
            | Usage::Nonce { .. }
            | Usage::Challenge { .. }
            | Usage::Validator(_)
            | Usage::Recovery(_) => None,
        }
    }

    /// The kind word of this usage, as its body spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Usage::Genesis => "genesis",
            Usage::Open { .. } => "open",
            Usage::Pages { .. } => "pages",
            Usage::Time { .. } => "time",
            Usage::Print { .. } => "print",
            Usage::Copy { .. } => "copy",
            Usage::Renewal { .. } => "renewal",
            Usage::Return { .. } => "return",
            Usage::Nonce { .. } => "nonce",
            Usage::Challenge { .. } => "challenge",
            Usage::Validator(_) => "validator",
            Usage::Recovery(_) => "recovery",
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
        let kind = self.usage.kind();
        s.push_str(&format!("{PREFIX} {kind} at={at}"));
        match &self.usage {
            Usage::Genesis => {}
            Usage::Open { licence } | Usage::Return { licence } => {
                s.push_str(&format!(" lic={licence}"))
            }
            Usage::Pages {
                licence,
                first,
                count,
            } => s.push_str(&format!(" lic={licence} first={first} count={count}")),
            Usage::Time { licence, seconds } => {
                s.push_str(&format!(" lic={licence} seconds={seconds}"))
            }
            Usage::Print { licence, pages } => s.push_str(&format!(" lic={licence} pages={pages}")),
            Usage::Copy { licence, chars } => s.push_str(&format!(" lic={licence} chars={chars}")),
            Usage::Renewal { licence, version } => {
                s.push_str(&format!(" lic={licence} version={version}"))
            }
            Usage::Nonce { value } => {
                let v = if valid_value(value) {
                    value.clone()
                } else {
                    hex::encode(value.as_bytes()).chars().take(64).collect()
                };
                s.push_str(&format!(" value={v}"));
            }
            Usage::Challenge { server_key, nonce } => s.push_str(&format!(
                " key={} nonce={}",
                hex::encode(server_key),
                hex::encode(nonce)
            )),
            Usage::Validator(v) => {
                s.push_str(&format!(
                    " key={} upto={} chain={}",
                    hex::encode(v.server_key),
                    v.upto,
                    hex::encode(v.chain)
                ));
                for t in &v.totals {
                    s.push_str(&format!(
                        " lic={} opens={} pages={} seconds={} prints={} times={}",
                        t.licence, t.opens, t.pages, t.seconds, t.prints, t.times
                    ));
                }
                s.push_str(&format!(" sig={}", hex::encode(v.signature.0)));
            }
            Usage::Recovery(r) => {
                s.push_str(&format!(
                    " key={} from={} to={} chain={} charge={}",
                    hex::encode(r.server_key),
                    r.from,
                    r.to,
                    hex::encode(r.chain),
                    r.charge.as_str()
                ));
                match &r.licences {
                    None => s.push_str(" scope=all"),
                    Some(l) => {
                        s.push_str(" scope=listed");
                        for lic in l {
                            s.push_str(&format!(" lic={lic}"));
                        }
                    }
                }
                s.push_str(&format!(" sig={}", hex::encode(r.signature.0)));
            }
        }
        s
    }

    /// For a validator body: the text the server signs, i.e. the body up to (not
    /// including) ` sig=`. `None` for other kinds.
    pub fn validator_signed_text(&self) -> Option<String> {
        if !matches!(self.usage, Usage::Validator(_)) {
            return None;
        }
        self.server_signed_text()
    }

    /// For a validator or recovery body (the two kinds a server signs): the body up to
    /// (not including) ` sig=`. `None` for other kinds.
    pub fn server_signed_text(&self) -> Option<String> {
        if !matches!(self.usage, Usage::Validator(_) | Usage::Recovery(_)) {
            return None;
        }
        let mut s = self.encode();
        let cut = s.rfind(" sig=")?;
        s.truncate(cut);
        Some(s)
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
                reason: "expected 32 lower-case hex digits",
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
            "copy" => Usage::Copy {
                licence: lic(field("lic")?)?,
                chars: num("chars", field("chars")?)?,
            },
            "renewal" => Usage::Renewal {
                licence: lic(field("lic")?)?,
                version: num("version", field("version")?)?,
            },
            "return" => Usage::Return {
                licence: lic(field("lic")?)?,
            },
            "nonce" => Usage::Nonce {
                value: field("value")?.to_string(),
            },
            "challenge" => Usage::Challenge {
                server_key: hex_exact::<32>("key", field("key")?)?,
                nonce: hex_exact::<32>("nonce", field("nonce")?)?,
            },
            // `field` is not used on this path: the validator reads its own words, because
            // `sig=` is longer than 64 characters.
            "validator" => Usage::Validator(Box::new(parse_validator(&mut words)?)),
            "recovery" => Usage::Recovery(Box::new(parse_recovery(&mut words)?)),
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

fn bad(field: &'static str, reason: &'static str) -> BodyError {
    BodyError::Field { field, reason }
}

/// The next word as `name=value`, the value 1..=`max` characters of `allowed`.
fn take<'a>(
    words: &mut std::str::Split<'a, char>,
    name: &'static str,
    max: usize,
) -> Result<&'a str, BodyError> {
    let w = words.next().ok_or(bad(name, "missing"))?;
    let v = w
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .ok_or(bad(name, "missing or out of order"))?;
    if v.is_empty() || v.len() > max || !valid_value_chars(v) {
        return Err(bad(name, "bad characters or length"));
    }
    Ok(v)
}

fn valid_value_chars(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
}

fn hex_exact<const N: usize>(name: &'static str, v: &str) -> Result<[u8; N], BodyError> {
    let mut out = [0u8; N];
    if v.len() != 2 * N || hex::decode_to_slice(v, &mut out).is_err() {
        return Err(bad(name, "expected fixed-length hex"));
    }
    Ok(out)
}

fn num64(name: &'static str, v: &str) -> Result<u64, BodyError> {
    if v.len() > 1 && v.starts_with('0') {
        return Err(bad(name, "leading zero"));
    }
    v.parse::<u64>().map_err(|_| bad(name, "expected a number"))
}

fn num32(name: &'static str, v: &str) -> Result<u32, BodyError> {
    u32::try_from(num64(name, v)?).map_err(|_| bad(name, "number too large"))
}

/// The `sig=` word: exactly 128 lower-case hex digits.
fn parse_sig(v: &str) -> Result<Signature, BodyError> {
    if v.len() != 128 || !valid_value_chars(v) {
        return Err(bad("sig", "expected 128 hex digits"));
    }
    Ok(Signature(hex_exact::<64>("sig", v)?))
}

/// The fields of a recovery body after `at=` (strict; canonical form is checked by the caller).
fn parse_recovery(words: &mut std::str::Split<'_, char>) -> Result<Recovery, BodyError> {
    let server_key = hex_exact::<32>("key", take(words, "key", 64)?)?;
    let from = num64("from", take(words, "from", 20)?)?;
    let to = num64("to", take(words, "to", 20)?)?;
    if to < from {
        return Err(bad("to", "smaller than `from`"));
    }
    let chain = hex_exact::<32>("chain", take(words, "chain", 64)?)?;
    let charge = match take(words, "charge", 10)? {
        "full" => LostCharge::Full,
        "forgive" => LostCharge::Forgive,
        _ => return Err(bad("charge", "expected `full` or `forgive`")),
    };
    let listed = match take(words, "scope", 10)? {
        "all" => false,
        "listed" => true,
        _ => return Err(bad("scope", "expected `all` or `listed`")),
    };
    let mut licences: Vec<LicenceId> = Vec::new();
    loop {
        let w = words.next().ok_or(bad("sig", "missing"))?;
        if let Some(v) = w.strip_prefix("sig=") {
            if listed && licences.is_empty() {
                return Err(bad("lic", "`scope=listed` names no licence"));
            }
            return Ok(Recovery {
                server_key,
                from,
                to,
                chain,
                charge,
                licences: listed.then_some(licences),
                signature: parse_sig(v)?,
            });
        }
        let v = w
            .strip_prefix("lic=")
            .ok_or(bad("lic", "expected `lic=` or `sig=`"))?;
        if !listed {
            return Err(bad("lic", "`scope=all` takes no licences"));
        }
        if licences.len() >= MAX_RECOVERY_LICENCES {
            return Err(bad("lic", "too many licences"));
        }
        let licence = LicenceId(hex_exact::<16>("lic", v)?);
        if licences.last().is_some_and(|l| *l >= licence) {
            return Err(bad("lic", "licences not in strictly ascending order"));
        }
        licences.push(licence);
    }
}

/// The fields of a validator body after `at=` (strict; canonical form is checked by the caller).
fn parse_validator(words: &mut std::str::Split<'_, char>) -> Result<Validator, BodyError> {
    let server_key = hex_exact::<32>("key", take(words, "key", 64)?)?;
    let upto = num64("upto", take(words, "upto", 20)?)?;
    let chain = hex_exact::<32>("chain", take(words, "chain", 64)?)?;
    let mut totals: Vec<LicenceTotals> = Vec::new();
    loop {
        let w = words.next().ok_or(bad("sig", "missing"))?;
        if let Some(v) = w.strip_prefix("sig=") {
            if v.len() != 128 || !valid_value_chars(v) {
                return Err(bad("sig", "expected 128 hex digits"));
            }
            let signature = Signature(hex_exact::<64>("sig", v)?);
            return Ok(Validator {
                server_key,
                upto,
                chain,
                totals,
                signature,
            });
        }
        let v = w
            .strip_prefix("lic=")
            .ok_or(bad("lic", "expected `lic=` or `sig=`"))?;
        if totals.len() >= MAX_VALIDATOR_LICENCES {
            return Err(bad("lic", "too many licences"));
        }
        let licence = LicenceId(hex_exact::<16>("lic", v)?);
        if totals.last().is_some_and(|t| t.licence >= licence) {
            return Err(bad("lic", "licences not in strictly ascending order"));
        }
        totals.push(LicenceTotals {
            licence,
            opens: num32("opens", take(words, "opens", 10)?)?,
            pages: num32("pages", take(words, "pages", 10)?)?,
            seconds: num32("seconds", take(words, "seconds", 10)?)?,
            prints: num32("prints", take(words, "prints", 10)?)?,
            times: num32("times", take(words, "times", 10)?)?,
        });
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
            Usage::Copy {
                licence: lic(),
                chars: 120,
            },
            Usage::Renewal {
                licence: lic(),
                version: 2,
            },
            Usage::Return { licence: lic() },
            Usage::Nonce {
                value: "1234".into(),
            },
            Usage::Challenge {
                server_key: [0xcd; 32],
                nonce: [0x01; 32],
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
            ("tally/1 return at=2026-01-01T00:00:00Z", "`lic`: missing"),
            (
                "tally/1 return at=2026-01-01T00:00:00Z lic=abababababababababababababababab version=2",
                "extra",
            ),
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
                "lower-case hex",
            ),
            ("tally/1 genesis at=2026-01-01T00:00:00Z ", "extra"),
            (
                "tally/1 challenge at=2026-01-01T00:00:00Z key=abab nonce=0101010101010101010101010101010101010101010101010101010101010101",
                "`key`: expected fixed-length hex",
            ),
            (
                "tally/1 challenge at=2026-01-01T00:00:00Z nonce=0101010101010101010101010101010101010101010101010101010101010101 key=abababababababababababababababababababababababababababababababab",
                "`key`: missing or out of order",
            ),
            (
                "tally/1 challenge at=2026-01-01T00:00:00Z key=abababababababababababababababababababababababababababababababab",
                "`nonce`: missing",
            ),
            (
                "tally/1 challenge at=2026-01-01T00:00:00Z key=abababababababababababababababababababababababababababababababab nonce=0101010101010101010101010101010101010101010101010101010101010101 x=1",
                "extra",
            ),
            (
                "tally/1 challenge at=2026-01-01T00:00:00Z key=ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB nonce=0101010101010101010101010101010101010101010101010101010101010101",
                "canonical",
            ),
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

    fn validator(n: usize, big: bool) -> Body {
        let v = if big { u32::MAX } else { 7 };
        let totals = (0..n)
            .map(|i| LicenceTotals {
                licence: LicenceId([i as u8; 16]),
                opens: v,
                pages: v,
                seconds: v,
                prints: v,
                times: v,
            })
            .collect();
        Body::at_unix(
            Usage::Validator(Box::new(Validator {
                server_key: [0xab; 32],
                upto: if big { u64::MAX } else { 41 },
                chain: [0x22; 32],
                totals,
                signature: Signature([0x33; 64]),
            })),
            1_764_000_000,
        )
    }

    #[test]
    fn validator_round_trips_and_its_signed_text_stops_before_sig() {
        for n in 0..=MAX_VALIDATOR_LICENCES {
            let b = validator(n, false);
            let text = b.encode();
            assert_eq!(Body::parse(text.as_bytes()).unwrap(), b, "{text}");
            let signed = b.validator_signed_text().unwrap();
            assert_eq!(format!("{signed} sig={}", "33".repeat(64)), text);
        }
        assert_eq!(Body::now(Usage::Genesis).validator_signed_text(), None);
    }

    #[test]
    fn largest_validator_fits() {
        let text = validator(MAX_VALIDATOR_LICENCES, true).encode();
        assert!(text.len() <= MAX_BODY, "{} bytes", text.len());
        assert!(Body::parse(text.as_bytes()).is_ok());
    }

    #[test]
    fn malformed_validators_are_named() {
        let good = validator(2, false).encode();
        let sig = format!(" sig={}", "33".repeat(64));
        let too_many = {
            let six = validator(MAX_VALIDATOR_LICENCES, false).encode();
            let extra =
                " lic=ffffffffffffffffffffffffffffffff opens=1 pages=1 seconds=1 prints=1 times=1";
            six.replace(&sig, &format!("{extra}{sig}"))
        };
        let swapped = {
            let a =
                " lic=00000000000000000000000000000000 opens=7 pages=7 seconds=7 prints=7 times=7";
            let b =
                " lic=01010101010101010101010101010101 opens=7 pages=7 seconds=7 prints=7 times=7";
            good.replace(&format!("{a}{b}"), &format!("{b}{a}"))
        };
        let cases: Vec<(String, &str)> = vec![
            (good.replace(&sig, &sig[..sig.len() - 2]), "`sig`"),
            (good.replace(&sig, &format!("{sig}00")), "`sig`"),
            (good.replace("key=abab", "key=ABAB"), "canonical"),
            (good.replace(&sig, ""), "`sig`: missing"),
            (good.replace("upto=41", "upto=041"), "leading zero"),
            (
                good.replace("upto=41", "upto=18446744073709551616"),
                "`upto`",
            ),
            (good.replace("opens=7", "opens=4294967296"), "too large"),
            (good.replace(" times=7", ""), "`times`"),
            (good.replace("key=ab", "key=a"), "`key`"),
            (format!("{good} x=1"), "extra"),
            (too_many, "too many licences"),
            (swapped, "ascending"),
        ];
        for (text, want) in &cases {
            let err = Body::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
