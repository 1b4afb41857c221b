//! The client-side budget for the upstream: a token bucket shared by every request.
//!
//! Explo allows 180 requests per minute per source IP (docs: security/rate-limits), and every
//! client behind one shim shares that IP. The bucket paces upstream calls so the fleet does not
//! run into 429s: a call that can go within `max_wait` waits its turn; one that would wait
//! longer is refused at once with a `Retry-After`. When the upstream itself answers 429 with
//! `Retry-After`, nobody is sent upstream until then, for at most `rate_limit.max_upstream_hold`:
//! a `Retry-After` of years (or one past `u64`) must not stop the shim until a restart, nor
//! overflow the clock arithmetic.
//!
//! The budget is per shim instance. The decision logic takes `now` as an argument, so it is
//! tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

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

#[derive(Debug)]
struct Bucket {
    /// Tokens available; negative when turns are reserved ahead.
    tokens: f64,
    refilled_at: Instant,
    /// The upstream asked everyone to wait until then.
    upstream_blocked_until: Option<Instant>,
    figures: Figures,
}

/// The budget's settings; kept with the bucket so that a reload changes them between two
/// turns, never during one.
#[derive(Debug, Clone, Copy)]
struct Figures {
    per_second: f64,
    burst: f64,
    max_wait: Duration,
    /// The longest an upstream 429 holds every call (`rate_limit.max_upstream_hold`).
    longest_hold: Duration,
}

impl Figures {
    fn new(per_minute: u32, burst: u32, max_wait: Duration, longest_hold: Duration) -> Self {
        Self {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            max_wait,
            longest_hold,
        }
    }
}

/// The shared token bucket.
#[derive(Debug)]
pub struct UpstreamBudget {
    bucket: Mutex<Bucket>,
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
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                refilled_at: now,
                upstream_blocked_until: None,
                figures: Figures::new(per_minute, burst, max_wait, longest_hold),
            }),
        }
    }

    /// New settings (a reload). The tokens saved up stay, up to the new burst; a hold the
    /// upstream asked for stays too.
    pub fn set_figures(
        &self,
        per_minute: u32,
        burst: u32,
        max_wait: Duration,
        longest_hold: Duration,
    ) {
        let mut bucket = self.lock();
        bucket.figures = Figures::new(per_minute, burst, max_wait, longest_hold);
        bucket.tokens = bucket.tokens.min(bucket.figures.burst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a turn for one upstream call at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut bucket = self.lock();
        let figures = bucket.figures;
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * figures.per_second).min(figures.burst);
        bucket.refilled_at = now;

        let blocked_for = bucket
            .upstream_blocked_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let deficit = (1.0 - bucket.tokens).max(0.0);
        let token_wait = Duration::from_secs_f64(deficit / figures.per_second);
        let wait = blocked_for.max(token_wait);
        if wait > figures.max_wait {
            return Admission::Refuse { retry_after: wait };
        }
        bucket.tokens -= 1.0;
        if wait.is_zero() {
            Admission::Go
        } else {
            Admission::WaitThenGo(wait)
        }
    }

    /// The upstream answered 429 with a `Retry-After`: hold every call for `delay` from `now`,
    /// at most `longest_hold`, so no reply can stop the shim until a restart.
    pub fn upstream_throttled(&self, now: Instant, delay: Duration) {
        // Within an hour of now, the sum cannot overflow; checked all the same, as a panic
        // here would cost a serving thread.
        let mut bucket = self.lock();
        let Some(until) = now.checked_add(delay.min(bucket.figures.longest_hold)) else {
            return;
        };
        if bucket
            .upstream_blocked_until
            .is_none_or(|current| current < until)
        {
            bucket.upstream_blocked_until = Some(until);
        }
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
