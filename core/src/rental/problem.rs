//! Why an opening, a check or a charge was refused, sorted by what the reader does about
//! it. Every viewer maps these to its own screens; the rules that produce them are all in
//! this crate.

use crate::policy::Reason;

/// Why a charge or check failed, in the terms the reader's screens use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// No card could be reached.
    NoCard(String),
    /// The card present is not the one the licence was issued to.
    WrongCard(String),
    /// The keyfile is damaged or was changed.
    KeyfileInvalid(String),
    /// The keyfile is signed by a publisher this viewer does not trust.
    UntrustedVendor(String),
    /// The package is damaged (its signature or its encrypted body does not verify).
    PackageInvalid(String),
    /// The package is a sound one, but for another document (or another publisher) than
    /// the licence: the reader picked the wrong file, or swapped the two arguments.
    WrongPackage(String),
    /// ValidateTrail failed: which check, at which record.
    TrailInvalid(String),
    /// The policy refused (used up, expired, not yet valid, clock set back).
    Refused(Reason),
    /// The licence requires an online validation (WO 98/33296) that is missing or too old.
    ValidationNeeded(String),
    /// The publisher's validation service refused this copy (revoked or cloned).
    Revoked(String),
    /// Anything else (I/O, the card answering strangely).
    Other(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NoCard(s) => write!(f, "no card: {s}"),
            Problem::WrongCard(s) => write!(f, "wrong card: {s}"),
            Problem::KeyfileInvalid(s) => write!(f, "keyfile invalid: {s}"),
            Problem::UntrustedVendor(s) => write!(f, "untrusted publisher: {s}"),
            Problem::PackageInvalid(s) => write!(f, "package invalid: {s}"),
            Problem::WrongPackage(s) => write!(f, "wrong document for this licence: {s}"),
            Problem::TrailInvalid(s) => write!(f, "usage record invalid: {s}"),
            Problem::Refused(r) => write!(f, "{r}"),
            Problem::ValidationNeeded(s) => write!(f, "online validation needed: {s}"),
            Problem::Revoked(s) => write!(f, "copy refused by the publisher: {s}"),
            Problem::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Problem {}
