//! Time-of-day weights (\[0103\]): how many units one time record costs, by the hour band
//! it is charged in.

use super::MINUTES_PER_DAY;
use time::{OffsetDateTime, UtcOffset};

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
    pub(super) fn contains(&self, minute: u16) -> bool {
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
