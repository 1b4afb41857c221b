//! The usage tracker's time buckets, as `/usage` reports them.

use std::time::Duration;

use serde_json::{Value, json};

/// The start of the UTC period of `seconds` that `at` falls in, as `/usage` writes it.
pub fn period_start(at: std::time::SystemTime, seconds: u64) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(since / seconds * seconds),
    )
    .to_string()
}

/// `/usage`'s buckets of one kind for the first client's `endpoint`, checked against the calls
/// made between `before` and `after`: every one of them in the period they were made in. Made
/// within one period (the usual case), they are all in one bucket; across a boundary they are
/// split between its two sides, and only their sum can be known.
pub fn assert_buckets(
    usage: &Value,
    endpoint: &str,
    kind: &str,
    seconds: u64,
    (before, after): (std::time::SystemTime, std::time::SystemTime),
    calls: u64,
) {
    let found = usage["clients"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no {endpoint}: {usage}"));
    let (first, last) = (period_start(before, seconds), period_start(after, seconds));
    if first == last {
        assert_eq!(
            found[kind],
            json!([{"start": first, "calls": calls}]),
            "{usage}"
        );
    } else {
        let buckets = found[kind].as_array().unwrap();
        assert!(
            buckets
                .iter()
                .all(|bucket| bucket["start"] == first || bucket["start"] == last),
            "{usage}"
        );
        let sum: u64 = buckets.iter().map(|b| b["calls"].as_u64().unwrap()).sum();
        assert_eq!(sum, calls, "{usage}");
    }
}
