//! `x-request-id`: the client's own when it sent a sane one, otherwise a new one. The same ID
//! goes upstream, comes back on the reply, and is on every log line of the request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied ID kept; longer ones are replaced.
const MAX_CLIENT_ID_LEN: usize = 128;

/// The request's ID. A client ID is kept only if it is short and made of characters that
/// cannot forge or break a log line.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|value| is_sane(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id)
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_LEN
        && id.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// A random 64-bit prefix drawn once per process and a counter: unique across replicas and
/// restarts for all practical purposes, and no random-number syscall per request.
fn new_request_id() -> HeaderValue {
    static PROCESS_PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PROCESS_PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let id = uuid::Uuid::from_u64_pair(prefix, COUNTER.fetch_add(1, Ordering::Relaxed));
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn a_sane_client_id_is_kept() {
        assert_eq!(request_id(&with_id("req-123_abc.9")), "req-123_abc.9");
    }

    #[test]
    fn a_missing_or_unsafe_id_is_replaced_by_a_uuid() {
        for headers in [
            HeaderMap::new(),
            with_id("has space"),
            with_id("quote\"d"),
            with_id(""),
        ] {
            let id = request_id(&headers);
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 36, "{text}");
            assert!(uuid::Uuid::parse_str(text).is_ok());
        }
        let long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
        assert_eq!(request_id(&with_id(long)).len(), 36);
    }

    #[test]
    fn new_ids_differ() {
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
