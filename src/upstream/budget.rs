//! The client-side budget for the upstream, shared by every request: GCRA (the generic cell
//! rate algorithm, a token bucket written as one timestamp), the same rule as the fleet's
//! budget in Redis ([`crate::fleet::budget`]), so that a replica that falls back to its own
//! budget refuses the same calls with the same `Retry-After`.
//!
//! Explo allows 180 requests per minute per source IP (docs: security/rate-limits), and every
//! client behind one shim shares that IP. The budget paces upstream calls so the fleet does not
//! run into 429s: a call that can go within `max_wait` waits its turn; one that would wait
//! longer is refused at once with a `Retry-After`. When the upstream itself answers 429 with
//! `Retry-After`, nobody is sent upstream until then, for at most `rate_limit.max_upstream_hold`:
//! a `Retry-After` of years (or one past `u64`) must not stop the shim until a restart, nor
//! overflow the clock arithmetic.
//!
//! The state is the "theoretical arrival time" (TAT): when the calls admitted so far would all
//! have gone at the average rate. A call may start once it is no more than `burst - 1`
//! intervals ahead of the TAT, and no earlier than a hold; it then moves the TAT one interval
//! past its own start. Times are whole nanoseconds since the budget was made, so nothing drifts
//! as a sum of fractions would. The settings are applied at each turn, so a reload changes the
//! rate and the burst from the next call on and keeps what is owed as time.
//!
//! The budget is per shim instance. The decision logic takes `now` as an argument, so it is
//! tested without sleeping, against the same table of cases as the fleet's script
//! ([`cases`]).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

#[doc(hidden)]
pub mod cases;

/// What one request may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go now.
    Go,
    /// A turn is reserved; go after this delay.
    WaitThenGo(Duration),
    /// The wait would exceed the limit; nothing was reserved.
    Refuse { retry_after: Duration },
}

/// The budget's state, in nanoseconds since `origin`.
#[derive(Debug)]
struct Cells {
    origin: Instant,
    /// The theoretical arrival time: when the next call would go at the average rate.
    tat: u64,
    /// The upstream asked everyone to wait until then (0: never asked).
    hold_until: u64,
    figures: Figures,
}

/// The budget's settings; kept with the state so that a reload changes them between two
/// turns, never during one.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Nanoseconds between two calls at the average rate.
    interval: u64,
    /// How far ahead of the TAT a call may start: `burst - 1` intervals.
    burst_allowance: u64,
    max_wait: u64,
    /// The longest an upstream 429 holds every call (`rate_limit.max_upstream_hold`).
    longest_hold: u64,
}

impl Figures {
    fn new(per_minute: u32, burst: u32, max_wait: Duration, longest_hold: Duration) -> Self {
        const MINUTE: u64 = 60_000_000_000;
        let interval = MINUTE / u64::from(per_minute.max(1));
        Self {
            interval,
            burst_allowance: interval.saturating_mul(u64::from(burst.saturating_sub(1))),
            max_wait: nanos(max_wait),
            longest_hold: nanos(longest_hold),
        }
    }
}

/// A duration in whole nanoseconds; past `u64` (584 years) as good as forever.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The shared budget.
#[derive(Debug)]
pub struct UpstreamBudget {
    cells: Mutex<Cells>,
}

impl UpstreamBudget {
    /// `per_minute` requests per minute on average, up to `burst` at once; an upstream 429
    /// holds every call for at most `longest_hold`.
    pub fn new(
        per_minute: u32,
        burst: u32,
        max_wait: Duration,
        longest_hold: Duration,
        now: Instant,
    ) -> Self {
        Self {
            cells: Mutex::new(Cells {
                origin: now,
                tat: 0,
                hold_until: 0,
                figures: Figures::new(per_minute, burst, max_wait, longest_hold),
            }),
        }
    }

    /// New settings (a reload), in force from the next turn. What is owed stays as time: the
    /// calls saved up are as many as fit in the new burst; a hold the upstream asked for stays,
    /// up to the new `longest_hold` from each turn.
    pub fn set_figures(
        &self,
        per_minute: u32,
        burst: u32,
        max_wait: Duration,
        longest_hold: Duration,
    ) {
        self.lock().figures = Figures::new(per_minute, burst, max_wait, longest_hold);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cells> {
        self.cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a turn for one upstream call at `now`. The steps are those of the fleet's script,
    /// line for line.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut cells = self.lock();
        let figures = cells.figures;
        let now = nanos(now.saturating_duration_since(cells.origin));
        // A hold is read no further ahead than the cap in force now, as the fleet reads it.
        let hold = cells
            .hold_until
            .min(now.saturating_add(figures.longest_hold));
        let base = cells.tat.max(now);
        let start = now
            .max(base.saturating_sub(figures.burst_allowance))
            .max(hold);
        let wait = start - now;
        if wait > figures.max_wait {
            return Admission::Refuse {
                retry_after: Duration::from_nanos(wait),
            };
        }
        cells.tat = base.max(start).saturating_add(figures.interval);
        if wait == 0 {
            Admission::Go
        } else {
            Admission::WaitThenGo(Duration::from_nanos(wait))
        }
    }

    /// The upstream answered 429 with a `Retry-After`: hold every call for `delay` from `now`,
    /// at most `longest_hold`, so no reply can stop the shim until a restart. A hold only ever
    /// moves later.
    pub fn upstream_throttled(&self, now: Instant, delay: Duration) {
        let mut cells = self.lock();
        let now = nanos(now.saturating_duration_since(cells.origin));
        let until = now.saturating_add(nanos(delay).min(cells.figures.longest_hold));
        cells.hold_until = cells.hold_until.max(until);
    }
}

/// The delay a `Retry-After` header asks for (delta-seconds or an HTTP date, RFC 9110 §10.2.3),
/// at most `longest`.
pub fn retry_after_delay(
    headers: &HeaderMap,
    now: SystemTime,
    longest: Duration,
) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.as_bytes(), now, longest)
}

/// A `Retry-After` value as a delay from `now`, at most `longest`; `None` when it is neither
/// delta-seconds nor an HTTP date. Never panics, whatever the bytes (fuzzed:
/// `fuzz/fuzz_targets/retry_after.rs`).
pub fn parse_retry_after(value: &[u8], now: SystemTime, longest: Duration) -> Option<Duration> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // delta-seconds has no upper bound in the grammar; a number past u64 asks for longer
        // than the cap as surely as a large one does.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(longest));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(longest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECOND: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_paces() {
        let start = Instant::now();
        let budget = UpstreamBudget::new(60, 3, Duration::from_secs(5), HOUR, start);
        for _ in 0..3 {
            assert_eq!(budget.admit(start), Admission::Go);
        }
        // One token a second: the next callers queue one second apart.
        assert_eq!(budget.admit(start), Admission::WaitThenGo(SECOND));
        assert_eq!(budget.admit(start), Admission::WaitThenGo(2 * SECOND));
        assert_eq!(budget.admit(start + 3 * SECOND), Admission::Go);
    }

    #[test]
    fn a_wait_beyond_the_limit_is_refused_without_reserving() {
        let start = Instant::now();
        let budget = UpstreamBudget::new(60, 1, Duration::from_millis(1500), HOUR, start);
        assert_eq!(budget.admit(start), Admission::Go);
        assert_eq!(budget.admit(start), Admission::WaitThenGo(SECOND));
        assert_eq!(
            budget.admit(start),
            Admission::Refuse {
                retry_after: 2 * SECOND
            }
        );
        // The refusal took nothing: after two seconds there is a token again.
        assert_eq!(budget.admit(start + 2 * SECOND), Admission::Go);
    }

    #[test]
    fn an_upstream_429_holds_everyone() {
        let start = Instant::now();
        let budget = UpstreamBudget::new(180, 180, Duration::from_secs(2), HOUR, start);
        budget.upstream_throttled(start, Duration::from_secs(10));
        assert_eq!(
            budget.admit(start),
            Admission::Refuse {
                retry_after: Duration::from_secs(10)
            }
        );
        assert_eq!(
            budget.admit(start + 9 * SECOND),
            Admission::WaitThenGo(SECOND)
        );
        assert_eq!(budget.admit(start + 10 * SECOND), Admission::Go);
        // A shorter, later Retry-After does not shorten the hold.
        budget.upstream_throttled(start, 11 * SECOND);
        budget.upstream_throttled(start + SECOND, 9 * SECOND);
        assert_eq!(
            budget.admit(start + 10 * SECOND),
            Admission::WaitThenGo(SECOND)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_delay(&headers, SystemTime::now(), HOUR), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("12"));
        assert_eq!(
            retry_after_delay(&headers, SystemTime::now(), HOUR),
            Some(Duration::from_secs(12))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT"),
        );
        assert_eq!(
            retry_after_delay(&headers, now, HOUR),
            Some(Duration::from_secs(30))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_delay(&headers, now, HOUR), None);
    }

    #[test]
    fn retry_after_is_capped_whatever_it_asks() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let cap = Duration::from_secs(600);
        for asked in [
            "601",
            "10000000000",
            "18446744073709551615",
            // Past u64: still a number of seconds, and still longer than the cap.
            "99999999999999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_retry_after(asked.as_bytes(), now, cap),
                Some(cap),
                "{asked}"
            );
        }
        assert_eq!(
            parse_retry_after(b"Thu, 01 Jan 1970 00:00:00 GMT", now, cap),
            Some(Duration::ZERO)
        );
        for unreadable in [&b""[..], b"-1", b"1.5", b"\xff\xfe"] {
            assert_eq!(parse_retry_after(unreadable, now, cap), None);
        }
    }

    #[test]
    fn a_hold_longer_than_the_cap_ends_at_the_cap() {
        let start = Instant::now();
        let budget = UpstreamBudget::new(180, 180, Duration::ZERO, 10 * SECOND, start);
        // The largest Retry-After there is: no overflow, no panic, and a hold of the cap.
        budget.upstream_throttled(start, Duration::MAX);
        assert_eq!(
            budget.admit(start),
            Admission::Refuse {
                retry_after: 10 * SECOND
            }
        );
        assert_eq!(budget.admit(start + 10 * SECOND), Admission::Go);
    }
}
