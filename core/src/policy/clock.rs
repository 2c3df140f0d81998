//! The wall clock, injected so that date limits are testable (STYLE.md) and so that no
//! rule reads the reader's clock behind the caller's back.
//!
//! The reader controls this clock: it is never trusted alone. The policy compares it
//! with the newest record of the card-ordered trail and refuses a clock set back (T20).

use std::sync::Mutex;
use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time (any offset; the policy converts to UTC).
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that shows a set time until moved: for tests and demos.
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<OffsetDateTime>,
}

impl TestClock {
    /// A clock stopped at `now`.
    pub fn at(now: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// A clock stopped at a Unix time (seconds).
    pub fn at_unix(unix: i64) -> Self {
        Self::at(OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// Sets the time.
    pub fn set(&self, now: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Moves the time by `by` (negative to set it back).
    pub fn advance(&self, by: Duration) {
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.saturating_add(by);
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_both_ways() {
        let c = TestClock::at_unix(1_000);
        c.advance(Duration::seconds(5));
        assert_eq!(c.now().unix_timestamp(), 1_005);
        c.advance(Duration::seconds(-10));
        assert_eq!(c.now().unix_timestamp(), 995);
        let s = SystemClock.now();
        assert!(
            s.unix_timestamp() > 1_700_000_000,
            "system clock is in the past: {s}"
        );
    }
}
