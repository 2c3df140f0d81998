//! The wall clock, injected so that date limits are testable (STYLE.md) and so that no
//! rule reads the reader's clock behind the caller's back.
//!
//! The reader controls this clock: it is never trusted alone. The policy compares it
//! with the newest record of the card-ordered trail and refuses a clock set back (T20).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
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

/// The reader's clock, never earlier than a floor the rental raises as it learns times it
/// can trust more than the clock (T34): the newest validation server time seen for the
/// licence, plus the reading time the card charged since. A frozen or set-back clock then
/// reads as the floor, so date limits and expiry still arrive.
pub struct FloorClock {
    inner: Arc<dyn Clock>,
    floor: AtomicI64,
}

impl std::fmt::Debug for FloorClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorClock")
            .field("floor", &self.floor.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FloorClock {
    /// `inner` with no floor yet.
    pub fn new(inner: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            floor: AtomicI64::new(i64::MIN),
        }
    }

    /// Never reads earlier than `unix` (seconds) from now on; a lower value changes nothing.
    pub fn raise(&self, unix: i64) {
        self.floor.fetch_max(unix, Ordering::Relaxed);
    }

    /// The floor (Unix seconds), if one was set.
    pub fn floor(&self) -> Option<i64> {
        Some(self.floor.load(Ordering::Relaxed)).filter(|f| *f != i64::MIN)
    }
}

impl Clock for FloorClock {
    fn now(&self) -> OffsetDateTime {
        let now = self.inner.now();
        match self
            .floor()
            .and_then(|f| OffsetDateTime::from_unix_timestamp(f).ok())
        {
            Some(f) if f > now => f,
            _ => now,
        }
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

    #[test]
    fn a_floor_clock_never_reads_earlier_than_its_floor() {
        let inner = Arc::new(TestClock::at_unix(1_000));
        let c = FloorClock::new(inner.clone());
        assert_eq!(c.now().unix_timestamp(), 1_000);
        c.raise(5_000);
        c.raise(2_000);
        assert_eq!(c.floor(), Some(5_000));
        assert_eq!(
            c.now().unix_timestamp(),
            5_000,
            "a frozen clock reads as the floor"
        );
        inner.set(OffsetDateTime::from_unix_timestamp(9_000).unwrap());
        assert_eq!(
            c.now().unix_timestamp(),
            9_000,
            "a later clock reads as itself"
        );
    }
}
