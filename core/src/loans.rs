//! Loan caps: how many licences of one document a publisher lets be out at once ("one copy,
//! one user"; issue 13).
//!
//! A publisher may cap the concurrent loans of a document (`tally-pack pack --loans N`,
//! `tally-pack loans PACKAGE --cap N`); `tally-pack issue` then refuses a new licence while
//! the cap is reached, naming the count ([`CapReached`]). A licence counts as **out** from
//! its issue until the first of:
//!
//! - its return, once the publisher verified the receipt ([`crate::receipt`]; a return the
//!   publisher never saw frees nothing);
//! - its revocation (`tally-pack revoke`, or `issue --supersede`);
//! - its end: the `not-after` date, or for a first-use period with a `start-by` date, the
//!   latest the period can end (`start-by` + the period) — [`loan_ends`]. A licence without
//!   an end date the publisher can know stays out until it is returned or revoked.
//!
//! The publisher judges by its own clock: these are its records, not the reader's.

use crate::policy::Limits;
use crate::trail::LicenceId;
use time::{Duration, OffsetDateTime};

/// One licence of a document, as the publisher's registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    /// The licence.
    pub licence: LicenceId,
    /// The latest moment the licence can be used ([`loan_ends`]), if any.
    pub ends: Option<OffsetDateTime>,
    /// Revoked on the validation server (or superseded by a new licence).
    pub revoked: bool,
    /// Returned, with a receipt the publisher verified.
    pub returned: bool,
}

impl Loan {
    /// The loan of `licence` under `limits`.
    pub fn new(licence: LicenceId, limits: &Limits, revoked: bool, returned: bool) -> Self {
        Self {
            licence,
            ends: loan_ends(limits),
            revoked,
            returned,
        }
    }

    /// True while the loan holds a place at `now` (module docs).
    pub fn is_out(&self, now: OffsetDateTime) -> bool {
        !self.revoked && !self.returned && self.ends.is_none_or(|end| now <= end)
    }
}

/// The latest moment a licence under `limits` can be used, as its publisher can know it:
/// `not-after`, or `start-by` plus a first-use period (the period cannot start later), the
/// earlier of the two when both are set. `None`: no date ends it.
pub fn loan_ends(limits: &Limits) -> Option<OffsetDateTime> {
    let period_end = limits
        .start_by
        .zip(limits.period_after_first_open)
        .map(|(by, p)| by.saturating_add(Duration::seconds(i64::try_from(p).unwrap_or(i64::MAX))));
    match (limits.not_after, period_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A new loan refused: the document's cap is reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{out} of {cap} loans of “{title}” are out: a place frees when a loan is returned (its receipt verified by tally-pack returns or the validation server), ends, or is revoked"
)]
pub struct CapReached {
    /// Loans out now.
    pub out: u64,
    /// The cap.
    pub cap: u64,
    /// The document's title.
    pub title: String,
}

/// How many of `loans` are out at `now`.
pub fn out_now(loans: &[Loan], now: OffsetDateTime) -> u64 {
    loans.iter().filter(|l| l.is_out(now)).count() as u64
}

/// May one more loan of the document titled `title` be issued at `now`? With `cap` `None`
/// (no cap), always. Returns the loans out now.
pub fn check_cap(
    cap: Option<u64>,
    loans: &[Loan],
    title: &str,
    now: OffsetDateTime,
) -> Result<u64, CapReached> {
    let out = out_now(loans, now);
    match cap {
        Some(cap) if out >= cap => Err(CapReached {
            out,
            cap,
            title: title.to_string(),
        }),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn loan(n: u8, ends: Option<i64>, revoked: bool, returned: bool) -> Loan {
        Loan {
            licence: LicenceId([n; 16]),
            ends: ends.map(t),
            revoked,
            returned,
        }
    }

    #[test]
    fn returned_revoked_and_ended_loans_free_their_place() {
        let now = t(1_000);
        let loans = [
            loan(1, None, false, false),
            loan(2, Some(2_000), false, false),
            loan(3, Some(1_000), false, false), // ends this second: still out
            loan(4, Some(999), false, false),   // ended
            loan(5, None, true, false),         // revoked
            loan(6, None, false, true),         // returned
        ];
        assert_eq!(out_now(&loans, now), 3);
        assert_eq!(check_cap(None, &loans, "T", now), Ok(3));
        assert_eq!(check_cap(Some(4), &loans, "T", now), Ok(3));
        let e = check_cap(Some(3), &loans, "Title", now).unwrap_err();
        assert_eq!((e.out, e.cap), (3, 3));
        assert!(
            e.to_string().starts_with("3 of 3 loans of “Title” are out"),
            "{e}"
        );
        assert!(check_cap(Some(0), &[], "T", now).is_err());
    }

    #[test]
    fn a_loan_ends_at_its_date_or_at_the_latest_end_of_its_first_use_period() {
        let mut l = Limits::default();
        assert_eq!(loan_ends(&l), None);
        l.period_after_first_open = Some(3_600);
        assert_eq!(loan_ends(&l), None, "a period alone can start any time");
        l.start_by = Some(t(10_000));
        assert_eq!(loan_ends(&l), Some(t(13_600)));
        l.not_after = Some(t(12_000));
        assert_eq!(loan_ends(&l), Some(t(12_000)));
        l.not_after = Some(t(20_000));
        assert_eq!(loan_ends(&l), Some(t(13_600)));
    }
}
