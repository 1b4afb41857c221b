//! Any `Retry-After` value at any time of the clock: the parser never panics, never asks for
//! longer than the cap, and the local budget takes the hold and answers without a panic.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use explo_shim::upstream::budget::{Admission, UpstreamBudget, parse_retry_after};
use libfuzzer_sys::fuzz_target;

/// The most `rate_limit.max_upstream_hold` may be.
const LONGEST_HOLD: Duration = explo_shim::config::MAX_UPSTREAM_HOLD_CEILING;

fuzz_target!(|data: &[u8]| {
    // The first eight bytes pick "now" (seconds since the epoch); the rest is the value.
    let Some((clock, value)) = data.split_first_chunk::<8>() else { return };
    let Some(now) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::from_le_bytes(*clock)))
    else {
        return;
    };
    let Some(delay) = parse_retry_after(value, now, LONGEST_HOLD) else { return };
    assert!(delay <= LONGEST_HOLD, "{delay:?} for {value:?}");
    let start = Instant::now();
    let budget = UpstreamBudget::new(180, 30, Duration::from_secs(10), LONGEST_HOLD, start);
    budget.upstream_throttled(start, delay);
    match budget.admit(start) {
        Admission::Refuse { retry_after } => assert!(retry_after <= LONGEST_HOLD),
        Admission::WaitThenGo(wait) => assert!(wait <= Duration::from_secs(10)),
        Admission::Go => assert!(delay.is_zero()),
    }
});
