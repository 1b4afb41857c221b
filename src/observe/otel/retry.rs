//! When a failed export is tried again, as the OTLP specification's "Failures" section says:
//! only a transient failure (429, 502, 503, 504, or no connection/reply at all) is retried,
//! after an exponential backoff with jitter, or after the collector's `Retry-After` (capped);
//! and never past [`RETRY_WINDOW_TIMEOUTS`] export timeouts from the first attempt, so that
//! one batch cannot hold the exporter (and the queue behind it) for long.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

/// A batch is retried for at most this many export timeouts from its first attempt
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default: 30 s). Past it the batch is dropped and
/// counted: the queue behind it is bounded, and newer spans are worth more than old ones.
pub const RETRY_WINDOW_TIMEOUTS: u32 = 3;

/// The first backoff; each retry doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest backoff the exporter picks itself.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured; a longer one is read as this (it still ends in the
/// retry window, or the batch is dropped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whether a reply with `status` is worth another attempt.
pub fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// The collector's `Retry-After`, in seconds or as an HTTP date, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait before retry number `retry` (0 for the first): the collector's `Retry-After` if
/// it sent one, else an exponential backoff with "equal jitter" (half fixed, half random), so
/// that a fleet of shims that lost the collector together do not come back together.
pub fn backoff(retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait;
    }
    let full = FIRST_BACKOFF
        .saturating_mul(1 << retry.min(16))
        .min(MAX_BACKOFF);
    let half = full / 2;
    // A UUID v4 is 122 random bits from the OS generator: no other random source is needed.
    let random = (uuid::Uuid::new_v4().as_u128() as u64) % 1024;
    half + half.mul_f64(random as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 500, 501] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_its_cap() {
        for retry in 0..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << retry.min(16))
                .min(MAX_BACKOFF);
            let wait = backoff(retry, None);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert_eq!(
            backoff(3, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }
}
