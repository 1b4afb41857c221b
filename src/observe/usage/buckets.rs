//! Calls over time for `/usage`: per client and endpoint, one counter per UTC hour for the last
//! [`HOURS`] hours and one per UTC day for the last [`DAYS`] days.
//!
//! The counters live in fixed-size rings ([`Ring`]): a record's memory does not grow with the
//! time it covers or the calls it counts, and a period that leaves the window is cleared when
//! the ring moves past it (at write time) and skipped when the ring is read (at read time).
//! Everything here is pure: each function is given the time it works at, never the clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// UTC hours kept: two days, so "the same hour yesterday" is always there.
pub const HOURS: usize = 48;
/// UTC days kept: five weeks, past a monthly report's reach (the fleet's keys live as long).
pub const DAYS: usize = 35;
/// Seconds in one hourly bucket.
pub const HOUR_SECONDS: u64 = 60 * 60;
/// Seconds in one daily bucket (a UTC day; Unix time has no leap seconds).
pub const DAY_SECONDS: u64 = 24 * HOUR_SECONDS;

/// Seconds since the Unix epoch (0 for a time before it).
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The period of `period_seconds` that `unix_seconds` falls in, counted from the epoch.
/// Saturates far past any real date (hours since the epoch fill a `u32` in the year 491,970).
fn period_of(unix_seconds: u64, period_seconds: u64) -> u32 {
    u32::try_from(unix_seconds / period_seconds).unwrap_or(u32::MAX)
}

/// The UTC hour that `unix_seconds` falls in, in hours since the epoch.
pub fn hour_of(unix_seconds: u64) -> u32 {
    period_of(unix_seconds, HOUR_SECONDS)
}

/// The UTC day that `unix_seconds` falls in, in days since the epoch.
pub fn day_of(unix_seconds: u64) -> u32 {
    period_of(unix_seconds, DAY_SECONDS)
}

/// The start (Unix seconds) of the oldest hourly bucket still in the window at `now`.
pub fn oldest_hour_kept(now: u64) -> u64 {
    u64::from(oldest_kept(hour_of(now), HOURS)) * HOUR_SECONDS
}

/// The start (Unix seconds) of the oldest daily bucket still in the window at `now`.
pub fn oldest_day_kept(now: u64) -> u64 {
    u64::from(oldest_kept(day_of(now), DAYS)) * DAY_SECONDS
}

/// The oldest of the `span` periods ending with `newest`.
fn oldest_kept(newest: u32, span: usize) -> u32 {
    newest.saturating_sub(u32::try_from(span - 1).unwrap_or(u32::MAX))
}

/// One call counter per period for the `N` periods ending with the newest it has seen: period
/// `p` is in slot `p % N`, so moving forward only clears the slots of the periods passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring<const N: usize> {
    /// The newest period counted, in periods since the epoch.
    newest: u32,
    counts: [u32; N],
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self {
            newest: 0,
            counts: [0; N],
        }
    }
}

impl<const N: usize> Ring<N> {
    /// Makes `period` the newest, clearing the slots of the periods the ring leaves behind (all
    /// of them after `N` periods or more). A period no newer than the newest changes nothing.
    pub fn roll_to(&mut self, period: u32) {
        if period <= self.newest {
            return;
        }
        if u64::from(period - self.newest) >= N as u64 {
            self.counts = [0; N];
        } else {
            for passed in self.newest + 1..=period {
                self.counts[passed as usize % N] = 0;
            }
        }
        self.newest = period;
    }

    /// Counts `calls` in `period`, moving the ring forward to it first. A period older than the
    /// ring's window is not counted: it is gone already.
    pub fn add(&mut self, period: u32, calls: u32) {
        self.roll_to(period);
        if u64::from(self.newest - period) >= N as u64 {
            return;
        }
        let slot = &mut self.counts[period as usize % N];
        *slot = slot.saturating_add(calls);
    }

    /// The periods with calls among the `N` ending with `now`, oldest first, as
    /// `(period, calls)`. A ring not written to lately has fewer (or none) in the window.
    pub fn counted(&self, now: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let first = oldest_kept(now, N).max(oldest_kept(self.newest, N));
        (first..=self.newest)
            .map(|period| (period, self.counts[period as usize % N]))
            .filter(|&(_, calls)| calls > 0)
    }
}

/// One client's calls to one endpoint over time: [`HOURS`] hourly and [`DAYS`] daily counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    hourly: Ring<HOURS>,
    daily: Ring<DAYS>,
}

impl Buckets {
    /// Counts `calls` made at `at` (Unix seconds) in its hour and its day.
    pub fn record(&mut self, at: u64, calls: u32) {
        self.hourly.add(hour_of(at), calls);
        self.daily.add(day_of(at), calls);
    }

    /// Counts `calls` in the hour starting at `start` (Unix seconds), as read back from Redis.
    pub fn add_hour(&mut self, start: u64, calls: u32) {
        self.hourly.add(hour_of(start), calls);
    }

    /// Counts `calls` in the day starting at `start` (Unix seconds), as read back from Redis.
    pub fn add_day(&mut self, start: u64, calls: u32) {
        self.daily.add(day_of(start), calls);
    }

    /// The hours with calls among the last [`HOURS`] at `now` (Unix seconds), oldest first, as
    /// `(start in Unix seconds, calls)`.
    pub fn hourly(&self, now: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.hourly
            .counted(hour_of(now))
            .map(|(hour, calls)| (u64::from(hour) * HOUR_SECONDS, calls))
    }

    /// The days with calls among the last [`DAYS`] at `now` (Unix seconds), oldest first, as
    /// `(start in Unix seconds, calls)`.
    pub fn daily(&self, now: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.daily
            .counted(day_of(now))
            .map(|(day, calls)| (u64::from(day) * DAY_SECONDS, calls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// 2026-12-04T10:20:00Z.
    const NOW: u64 = 1_796_379_600;

    fn at(text: &str) -> u64 {
        unix_seconds(humantime::parse_rfc3339(text).unwrap())
    }

    /// Buckets as `/usage` lists them: `[{"start": "2026-12-04T10:00:00Z", "calls": 3}, …]`.
    fn listed(buckets: impl Iterator<Item = (u64, u32)>) -> Value {
        serde_json::to_value(super::super::report::listed(buckets)).unwrap()
    }

    #[test]
    fn the_fixed_time_is_what_the_tests_say() {
        assert_eq!(NOW, at("2026-12-04T10:20:00Z"));
        assert_eq!(oldest_hour_kept(NOW), at("2026-12-02T11:00:00Z"));
        assert_eq!(oldest_day_kept(NOW), at("2026-10-31T00:00:00Z"));
    }

    #[test]
    fn calls_in_two_hours_and_two_days_land_in_their_buckets() {
        let mut buckets = Buckets::default();
        buckets.record(at("2026-12-03T23:59:59Z"), 1);
        buckets.record(at("2026-12-04T00:00:00Z"), 1);
        buckets.record(at("2026-12-04T00:30:00Z"), 2);
        buckets.record(at("2026-12-04T10:00:00Z"), 1);
        assert_eq!(
            listed(buckets.hourly(NOW)),
            json!([
                {"start": "2026-12-03T23:00:00Z", "calls": 1},
                {"start": "2026-12-04T00:00:00Z", "calls": 3},
                {"start": "2026-12-04T10:00:00Z", "calls": 1},
            ])
        );
        assert_eq!(
            listed(buckets.daily(NOW)),
            json!([
                {"start": "2026-12-03T00:00:00Z", "calls": 1},
                {"start": "2026-12-04T00:00:00Z", "calls": 4},
            ])
        );
    }

    #[test]
    fn a_call_49_hours_old_is_gone_from_the_hours_but_not_from_the_days() {
        let mut buckets = Buckets::default();
        let old = NOW - 49 * HOUR_SECONDS; // 2026-12-02T09:20:00Z
        buckets.record(old, 1);
        buckets.record(NOW, 1);
        assert_eq!(
            listed(buckets.hourly(NOW)),
            json!([{"start": "2026-12-04T10:00:00Z", "calls": 1}])
        );
        assert_eq!(
            listed(buckets.daily(NOW)),
            json!([
                {"start": "2026-12-02T00:00:00Z", "calls": 1},
                {"start": "2026-12-04T00:00:00Z", "calls": 1},
            ])
        );
        // Recorded after a newer call, it is not counted in the hours either.
        let mut late = Buckets::default();
        late.record(NOW, 1);
        late.record(old, 1);
        assert_eq!(late, buckets);
    }

    #[test]
    fn the_window_edges_are_in_and_just_past_them_is_out() {
        let mut buckets = Buckets::default();
        buckets.record(oldest_hour_kept(NOW) - 1, 1);
        buckets.record(oldest_hour_kept(NOW), 2);
        assert_eq!(
            listed(buckets.hourly(NOW)),
            json!([{"start": "2026-12-02T11:00:00Z", "calls": 2}])
        );
        let mut days = Buckets::default();
        days.record(oldest_day_kept(NOW) - 1, 1);
        days.record(oldest_day_kept(NOW), 2);
        assert_eq!(
            listed(days.daily(NOW)),
            json!([{"start": "2026-10-31T00:00:00Z", "calls": 2}])
        );
    }

    #[test]
    fn rolling_past_the_whole_window_clears_everything() {
        let mut ring = Ring::<HOURS>::default();
        let now = hour_of(NOW);
        for hour in now - 47..=now {
            ring.add(hour, 5);
        }
        assert_eq!(ring.counted(now).count(), HOURS);
        ring.roll_to(now + 48);
        assert_eq!(ring.counted(now + 48).count(), 0);
        assert_eq!(
            ring,
            Ring {
                newest: now + 48,
                counts: [0; HOURS]
            }
        );
        // Partway: the hours passed over are cleared, the rest kept.
        let mut ring = Ring::<HOURS>::default();
        for hour in now - 47..=now {
            ring.add(hour, 1);
        }
        ring.roll_to(now + 10);
        let left: Vec<u32> = ring.counted(now + 10).map(|(hour, _)| hour).collect();
        assert_eq!(left, (now - 37..=now).collect::<Vec<_>>());
    }

    #[test]
    fn a_ring_read_long_after_its_last_write_lists_nothing() {
        let mut buckets = Buckets::default();
        buckets.record(NOW, 3);
        assert_eq!(buckets.hourly(NOW + 48 * HOUR_SECONDS).count(), 0);
        assert_eq!(buckets.hourly(NOW + 47 * HOUR_SECONDS).count(), 1);
        assert_eq!(buckets.daily(NOW + 35 * DAY_SECONDS).count(), 0);
        assert_eq!(buckets.daily(NOW + 34 * DAY_SECONDS).count(), 1);
        // Nor does a fresh one, or one read at the end of time.
        assert_eq!(Buckets::default().hourly(NOW).count(), 0);
        assert_eq!(buckets.hourly(u64::MAX).count(), 0);
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let mut ring = Ring::<DAYS>::default();
        ring.add(10, u32::MAX);
        ring.add(10, 1);
        assert_eq!(ring.counted(10).collect::<Vec<_>>(), [(10, u32::MAX)]);
    }

    #[test]
    fn the_rings_are_fixed_size() {
        // docs/design/memory.md's figure: 48 + 35 counters and the two rings' newest period.
        assert_eq!(std::mem::size_of::<Buckets>(), (HOURS + 1 + DAYS + 1) * 4);
        assert_eq!(std::mem::size_of::<Buckets>(), 340);
    }
}
