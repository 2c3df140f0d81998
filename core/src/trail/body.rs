//! Record bodies: the versioned text format of what each audit record says.
//!
//! Grammar (also in `docs/trail-format.md`):
//!
//! ```text
//! body    = "tally/1" SP kind SP "at=" time *(SP field)
//! kind    = "genesis" | "open" | "pages" | "time" | "print" | "copy" | "renewal" | "return" | "nonce" | "challenge" | "totals" | "validator" | "recovery"
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
//! | totals  | `upto= part=` totals…                      | part of a validator's per-licence totals, written just before it (\[0094\]) |
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
    /// Part of the per-licence totals of the validator record that follows (\[0094\]).
    Totals(Box<TotalsPart>),
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

/// Most licences a validator record of the first form carries totals for inline (with
/// every total at `u32::MAX` such a body is at most [`MAX_BODY`] bytes). Such records still
/// parse and verify; a server now puts the totals of any number of licences in `totals`
/// records before the validator ([`Usage::Totals`], [`Parts`]).
pub const MAX_VALIDATOR_LICENCES: usize = 5;

/// Most licences one `totals` record carries: with every number at its largest, a totals
/// body is then still at most [`MAX_BODY`] bytes (see the test `largest_totals_part_fits`).
pub const MAX_PART_LICENCES: usize = 4;

/// Domain tag of the digest a validator signs over its totals records' totals.
pub const TOTALS_TAG: &[u8] = b"tally/totals/v1";

/// What a licence's totals say beyond the counts of the first validator form: the policy
/// needs them after the records they come from are archived (\[0094\]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// `copy` records.
    pub copies: u32,
    /// Characters copied (the sum of `copy` records' `chars`).
    pub chars: u32,
    /// The newest licence version opened on the card (`renewal` records; 1 without any).
    pub version: u32,
    /// The time of the licence's first `open` record in card order, if it has one.
    pub opened: Option<OffsetDateTime>,
}

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
    /// Copies, the newest licence version and the first opening: `None` in a validator of
    /// the first form (which did not carry them), or when the server itself no longer knew
    /// them (`history=unknown`: its own first-form validator anchored the trail it vouched).
    pub history: Option<History>,
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
    /// Totals per licence carried inline, in ascending licence order, at most
    /// [`MAX_VALIDATOR_LICENCES`] (the first form; empty when `parts` is set).
    pub totals: Vec<LicenceTotals>,
    /// The totals are in the `parts.count` `totals` records written just before this one,
    /// and `parts.digest` binds them ([`totals_digest`]).
    pub parts: Option<Parts>,
    /// The server's signature.
    pub signature: Signature,
}

/// Where a validator's totals are: in `count` `totals` records right before it (parts
/// `1..=count`, in card order), whose totals, in ascending licence order, have the digest
/// `digest` ([`totals_digest`]). The server signs the digest with the rest of the
/// validator, so every body stays at most [`MAX_BODY`] bytes however many licences a card
/// holds (\[0023\]: one counter for any number of rented documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// How many `totals` records.
    pub count: u32,
    /// The digest of the totals they carry.
    pub digest: Hash,
}

/// One `totals` record: part `part` (1-based) of the totals of the validator that vouches
/// up to `upto` (\[0094\]). Its numbers are authenticated by that validator's signed
/// [`Parts::digest`], and the record itself by the card like any record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsPart {
    /// The validator's `upto`.
    pub upto: u64,
    /// Which part (1-based).
    pub part: u32,
    /// 1 to [`MAX_PART_LICENCES`] licences' totals, in ascending licence order.
    pub totals: Vec<LicenceTotals>,
}

/// The digest a validator signs over its totals (\[0094\]): `tagged_hash("tally/totals/v1",
/// [upto:u64 BE, group_1, group_2, …])`, each group the canonical text of one licence's
/// totals as a `totals` record writes it (`lic=… opened=…`), in ascending licence order.
pub fn totals_digest(upto: u64, totals: &[LicenceTotals]) -> Hash {
    let upto = upto.to_be_bytes();
    let groups: Vec<String> = totals.iter().map(|t| group_text(t, true)).collect();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(totals.len() + 1);
    parts.push(&upto);
    parts.extend(groups.iter().map(String::as_bytes));
    crate::crypto::tagged_hash(TOTALS_TAG, &parts)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// One licence's totals as text (no leading space): the counts, and with `history` (a
/// `totals` record) what the first form did not carry.
fn group_text(t: &LicenceTotals, history: bool) -> String {
    let mut s = format!(
        "lic={} opens={} pages={} seconds={} prints={} times={}",
        t.licence, t.opens, t.pages, t.seconds, t.prints, t.times
    );
    if history {
        match &t.history {
            None => s.push_str(" history=unknown"),
            Some(h) => s.push_str(&format!(
                " copies={} chars={} version={} opened={}",
                h.copies,
                h.chars,
                h.version,
                h.opened.map_or_else(|| "never".to_string(), rfc3339)
            )),
        }
    }
    s
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
            | Usage::Totals(_)
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
            Usage::Totals(_) => "totals",
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
                if let Some(p) = &v.parts {
                    s.push_str(&format!(
                        " parts={} totals={}",
                        p.count,
                        hex::encode(p.digest)
                    ));
                }
                for t in &v.totals {
                    s.push(' ');
                    s.push_str(&group_text(t, false));
                }
                s.push_str(&format!(" sig={}", hex::encode(v.signature.0)));
            }
            Usage::Totals(p) => {
                s.push_str(&format!(" upto={} part={}", p.upto, p.part));
                for t in &p.totals {
                    s.push(' ');
                    s.push_str(&group_text(t, true));
                }
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
            "totals" => Usage::Totals(Box::new(parse_totals(&mut words)?)),
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
    let mut parts = None;
    loop {
        let w = words.next().ok_or(bad("sig", "missing"))?;
        if let Some(v) = w.strip_prefix("sig=") {
            return Ok(Validator {
                server_key,
                upto,
                chain,
                totals,
                parts,
                signature: parse_sig(v)?,
            });
        }
        if let Some(v) = w.strip_prefix("parts=") {
            if parts.is_some() || !totals.is_empty() {
                return Err(bad("parts", "only once, and never with inline totals"));
            }
            if v.is_empty() || v.len() > 10 || !valid_value_chars(v) {
                return Err(bad("parts", "bad characters or length"));
            }
            parts = Some(Parts {
                count: num32("parts", v)?,
                digest: hex_exact::<32>("totals", take(words, "totals", 64)?)?,
            });
            continue;
        }
        let v = w
            .strip_prefix("lic=")
            .ok_or(bad("lic", "expected `lic=`, `parts=` or `sig=`"))?;
        if parts.is_some() {
            return Err(bad("lic", "inline totals after `parts=`"));
        }
        if totals.len() >= MAX_VALIDATOR_LICENCES {
            return Err(bad("lic", "too many licences"));
        }
        let t = parse_counts(words, v)?;
        if totals.last().is_some_and(|p| p.licence >= t.licence) {
            return Err(bad("lic", "licences not in strictly ascending order"));
        }
        totals.push(t);
    }
}

/// The counts of one licence after its `lic=` value `lic`.
fn parse_counts(
    words: &mut std::str::Split<'_, char>,
    lic: &str,
) -> Result<LicenceTotals, BodyError> {
    Ok(LicenceTotals {
        licence: LicenceId(hex_exact::<16>("lic", lic)?),
        opens: num32("opens", take(words, "opens", 10)?)?,
        pages: num32("pages", take(words, "pages", 10)?)?,
        seconds: num32("seconds", take(words, "seconds", 10)?)?,
        prints: num32("prints", take(words, "prints", 10)?)?,
        times: num32("times", take(words, "times", 10)?)?,
        history: None,
    })
}

/// An RFC 3339 time in UTC with whole seconds, as `at=` is written.
fn parse_time(name: &'static str, v: &str) -> Result<OffsetDateTime, BodyError> {
    let at = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| bad(name, "not an RFC 3339 time"))?;
    if at.offset() != time::UtcOffset::UTC || at.nanosecond() != 0 {
        return Err(bad(name, "must be UTC with whole seconds"));
    }
    Ok(at)
}

/// The fields of a totals body after `at=` (strict; canonical form is checked by the caller).
fn parse_totals(words: &mut std::str::Split<'_, char>) -> Result<TotalsPart, BodyError> {
    let upto = num64("upto", take(words, "upto", 20)?)?;
    let part = num32("part", take(words, "part", 10)?)?;
    if part == 0 {
        return Err(bad("part", "parts count from 1"));
    }
    let mut totals: Vec<LicenceTotals> = Vec::new();
    while let Some(w) = words.next() {
        let v = w
            .strip_prefix("lic=")
            .ok_or(bad("lic", "expected `lic=`"))?;
        if totals.len() >= MAX_PART_LICENCES {
            return Err(bad("lic", "too many licences"));
        }
        let mut t = parse_counts(words, v)?;
        let w = words.next().ok_or(bad("copies", "missing"))?;
        if w != "history=unknown" {
            let copies = w
                .strip_prefix("copies=")
                .ok_or(bad("copies", "expected `copies=` or `history=unknown`"))?;
            if copies.is_empty() || copies.len() > 10 || !valid_value_chars(copies) {
                return Err(bad("copies", "bad characters or length"));
            }
            let copies = num32("copies", copies)?;
            let chars = num32("chars", take(words, "chars", 10)?)?;
            let version = num32("version", take(words, "version", 10)?)?;
            if version == 0 {
                return Err(bad("version", "licence versions count from 1"));
            }
            let opened = match take(words, "opened", 25)? {
                "never" => None,
                v => Some(parse_time("opened", v)?),
            };
            t.history = Some(History {
                copies,
                chars,
                version,
                opened,
            });
        }
        if totals.last().is_some_and(|p| p.licence >= t.licence) {
            return Err(bad("lic", "licences not in strictly ascending order"));
        }
        totals.push(t);
    }
    if totals.is_empty() {
        return Err(bad("lic", "a totals record carries at least one licence"));
    }
    Ok(TotalsPart { upto, part, totals })
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
            Usage::Totals(Box::new(TotalsPart {
                upto: 9,
                part: 1,
                totals: vec![group(1, false, Some(history(false)))],
            })),
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
                history: None,
            })
            .collect();
        Body::at_unix(
            Usage::Validator(Box::new(Validator {
                server_key: [0xab; 32],
                upto: if big { u64::MAX } else { 41 },
                chain: [0x22; 32],
                totals,
                parts: None,
                signature: Signature([0x33; 64]),
            })),
            1_764_000_000,
        )
    }

    fn group(i: u8, big: bool, history: Option<History>) -> LicenceTotals {
        let v = if big { u32::MAX } else { 7 };
        LicenceTotals {
            licence: LicenceId([i; 16]),
            opens: v,
            pages: v,
            seconds: v,
            prints: v,
            times: v,
            history,
        }
    }

    fn history(big: bool) -> History {
        let v = if big { u32::MAX } else { 3 };
        History {
            copies: v,
            chars: v,
            version: v,
            opened: OffsetDateTime::from_unix_timestamp(if big {
                253_402_300_799 // 9999-12-31T23:59:59Z, the longest time written
            } else {
                1_764_000_000
            })
            .ok(),
        }
    }

    fn part(n: usize, big: bool) -> Body {
        Body::at_unix(
            Usage::Totals(Box::new(TotalsPart {
                upto: if big { u64::MAX } else { 41 },
                part: if big { u32::MAX } else { 2 },
                totals: (0..n)
                    .map(|i| {
                        let h = match i % 3 {
                            0 => Some(history(big)),
                            1 => None,
                            _ => Some(History {
                                opened: None,
                                ..history(big)
                            }),
                        };
                        group(i as u8, big, if big { Some(history(true)) } else { h })
                    })
                    .collect(),
            })),
            if big { 253_402_300_799 } else { 1_764_000_000 },
        )
    }

    #[test]
    fn totals_parts_round_trip_and_the_largest_fits() {
        for n in 1..=MAX_PART_LICENCES {
            let b = part(n, false);
            let text = b.encode();
            assert_eq!(Body::parse(text.as_bytes()).unwrap(), b, "{text}");
            assert_eq!(b.usage.licence(), None);
        }
        let text = part(MAX_PART_LICENCES, true).encode();
        assert!(text.len() <= MAX_BODY, "{} bytes", text.len());
        assert_eq!(
            Body::parse(text.as_bytes()).unwrap(),
            part(MAX_PART_LICENCES, true)
        );
    }

    #[test]
    fn validator_with_parts_round_trips_and_signs_the_digest() {
        let totals: Vec<LicenceTotals> = (0..9)
            .map(|i| group(i, false, Some(history(false))))
            .collect();
        let digest = totals_digest(41, &totals);
        let b = Body::at_unix(
            Usage::Validator(Box::new(Validator {
                server_key: [0xab; 32],
                upto: 41,
                chain: [0x22; 32],
                totals: vec![],
                parts: Some(Parts { count: 3, digest }),
                signature: Signature([0x33; 64]),
            })),
            1_764_000_000,
        );
        let text = b.encode();
        assert!(text.contains(&format!(" parts=3 totals={} sig=", hex::encode(digest))));
        assert_eq!(Body::parse(text.as_bytes()).unwrap(), b);
        assert!(b.validator_signed_text().unwrap().contains("totals="));
        // Every number and every licence is bound: change one and the digest changes.
        let mut other = totals.clone();
        other[4].history = Some(History {
            version: 4,
            ..history(false)
        });
        assert_ne!(totals_digest(41, &other), digest);
        let mut other = totals.clone();
        other[8].history = None;
        assert_ne!(totals_digest(41, &other), digest);
        assert_ne!(totals_digest(42, &totals), digest);
        assert_ne!(totals_digest(41, &totals[..8]), digest);
    }

    #[test]
    fn malformed_totals_are_named() {
        let good = part(3, false).encode();
        let g = |i: u8| group_text(&group(i, false, Some(history(false))), true);
        let cases: Vec<(String, &str)> = vec![
            (good.replace("part=2", "part=0"), "`part`"),
            (good.replace("part=2", "part=02"), "leading zero"),
            (good.replace(" upto=41", ""), "`upto`"),
            (good.replace(" history=unknown", ""), "`copies`"),
            (good.replace("history=unknown", "history=known"), "`copies`"),
            (good.replace("version=3", "version=0"), "`version`"),
            (good.replace("opened=never", "opened=yesterday"), "`opened`"),
            (
                good.replace(
                    "opened=2025-11-24T16:00:00Z",
                    "opened=2025-11-24T16:00:00+00:00",
                ),
                "canonical",
            ),
            (format!("{good} x=1"), "`lic`"),
            (
                "tally/1 totals at=2026-01-01T00:00:00Z upto=41 part=1".to_string(),
                "at least one licence",
            ),
            (
                format!(
                    "tally/1 totals at=2025-11-24T16:00:00Z upto=41 part=1 {} {}",
                    g(2),
                    g(1)
                ),
                "ascending",
            ),
            (
                format!(
                    "tally/1 totals at=2025-11-24T16:00:00Z upto=41 part=1 {} {} {} {} {}",
                    g(1),
                    g(2),
                    g(3),
                    g(4),
                    g(5)
                ),
                "too many licences",
            ),
        ];
        for (text, want) in &cases {
            let err = Body::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        // A validator: `parts=` once, with its digest, and never beside inline totals.
        let v = validator(1, false).encode();
        let sig = format!(" sig={}", "33".repeat(64));
        let parts = format!(" parts=2 totals={}", "44".repeat(32));
        for (text, want) in [
            (
                v.replace(&sig, &format!("{parts}{sig}")),
                "never with inline",
            ),
            (
                validator(0, false)
                    .encode()
                    .replace(&sig, &format!("{parts}{parts}{sig}")),
                "only once",
            ),
            (
                validator(0, false)
                    .encode()
                    .replace(&sig, &format!(" parts=2{sig}")),
                "`totals`",
            ),
            (
                validator(0, false)
                    .encode()
                    .replace(&sig, &format!(" parts=02 totals={}{sig}", "44".repeat(32))),
                "leading zero",
            ),
        ] {
            let err = Body::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
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
