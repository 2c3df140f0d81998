//! A reading session end to end, for any viewer: open ([`open_rental`]: every check of
//! \[0070\]–\[0074\] and \[0060\], in order, with typed refusals), meter ([`Session`]: page
//! blocks, time units, prints, copies, each through the policy and onto the card-signed
//! trail), evaluate, return a licence early ([`return_licence`]: its card-signed `return`
//! record and the publisher's receipt), and the online rounds of WO 98/33296 through a
//! [`Transport`] the caller implements. The caller only shows pages, forwards the reader's actions and the
//! clock ticks it sees, and maps a [`Problem`] to its own screens: every rule is decided
//! here, so a second viewer that links this crate gets the same guarantees.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tally_core::home::{CardSpec, Home};
//! use tally_core::policy::SystemClock;
//! use tally_core::rental::{NoNetwork, OpenInputs, open_rental};
//!
//! let home = Home::new("/home/ada/.local/share/tally");
//! let inputs = OpenInputs {
//!     package: "book.tly".into(),
//!     keyfile: "ada.tkey".into(),
//!     card: CardSpec::Emulated(None),
//!     trusted: vec![/* the publishers the reader trusts */],
//!     clock: Arc::new(SystemClock),
//!     transport: Arc::new(NoNetwork),
//!     home,
//! };
//! let opened = open_rental(&inputs)?;
//! let (mut session, document) = opened.start(Box::new(|| {}))?;
//! // Hand `document` (the decrypted PDF, memory only) to a renderer, then forward the
//! // reader's actions: show page `session.current()` once `session.page_shown()`.
//! session.next();
//! # Ok::<(), tally_core::rental::Problem>(())
//! ```

mod backup;
mod contact;
mod meter;
mod online;
mod open;
mod problem;
mod returning;
mod session;

pub use backup::{
    AutoBackup, BackupOutcome, BackupPlan, BackupPolicy, BackupServer, BackupState, BackupStatus,
    DirectWriter, VouchFailure, VouchReport, VouchWriter, backup_lines, vouch_and_back_up,
};
pub use contact::{
    AnsweredChallenge, CHALLENGE_TIMEOUT, ChallengeOutcome, ContactError, ContactResult,
    ServerContact, TRAIL_ENDPOINT, VOUCH_TIMEOUT, Vouched, answer_challenge, fetch_challenge,
    vouch_trail, write_answer,
};
pub use meter::{CardMeter, Charge, Charged, Meter, card_problem, tally_of, trail_problem};
pub use online::{
    NoNetwork, OPEN_TIMEOUT, Round, RoundError, Transport, Unreached, http_url, post_to,
    standing_after_round, validate_online,
};
pub use open::{
    Checked, MAX_PACKAGE_BYTES, OpenInputs, Opened, Standing, Validated, check_rental,
    check_standing, check_validation, open_rental, validate_now,
};
pub use problem::Problem;
pub use returning::{
    Delivery, PendingSent, RETURN_TIMEOUT, Returned, deliver_receipt, return_licence, send_pending,
};
pub use session::{MeterEvent, MeterWorker, Mode, RentalInfo, Session};

use crate::policy::Remaining;
use time::OffsetDateTime;

/// `n` with the right form of the noun: "1 page", "2 pages".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What is left of a rental, one line per measure, in the reader's words; the same lines
/// in a window's status bar and in a headless standing check, so the two always agree.
/// `can_print`: the licence has the print right (prints left are not shown otherwise).
pub fn left_lines(rem: &Remaining, can_print: bool, now: OffsetDateTime) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(p) = rem.pages {
        parts.push(format!("Pages left: {p}"));
    }
    if let Some(s) = rem.seconds {
        let m = s / 60;
        parts.push(if m >= 120 {
            format!("Time left: {} h {} min", m / 60, m % 60)
        } else {
            format!("Time left: {m} min")
        });
    }
    if let Some(u) = rem.units {
        parts.push(format!("Time units left: {u}"));
    }
    if let Some(o) = rem.opens {
        parts.push(format!("Openings left: {o}"));
    }
    if let Some(until) = rem.until {
        let days = (until - now).whole_days();
        let utc = until.to_offset(time::UtcOffset::UTC);
        parts.push(if days >= 1 {
            format!("Days left: {days}")
        } else {
            format!("Ends today at {:02}:{:02} UTC", utc.hour(), utc.minute())
        });
    }
    if let Some(end) = rem.period_ends {
        let m = (end - now).whole_minutes().max(0);
        parts.push(if m >= 48 * 60 {
            format!("Reading period left: {} days {} h", m / 1440, m % 1440 / 60)
        } else if m >= 120 {
            format!("Reading period left: {} h {} min", m / 60, m % 60)
        } else {
            format!("Reading period left: {m} min")
        });
    }
    if let Some(p) = rem.period_unstarted {
        parts.push(format!(
            "Reading period: {} from the first opening",
            crate::policy::describe_period(p)
        ));
    }
    if let Some(p) = rem.prints.filter(|_| can_print) {
        parts.push(format!("Prints left: {p}"));
    }
    if let Some(c) = rem.copies {
        parts.push(format!("Copies left: {c}"));
    }
    if let Some(c) = rem.copy_chars {
        parts.push(format!("Characters left to copy: {c}"));
    }
    if parts.is_empty() {
        parts.push("No limits".into());
    }
    parts
}
