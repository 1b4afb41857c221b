//! The fleet's upstream budget: GCRA (the generic cell rate algorithm, the token bucket written
//! as one timestamp) run inside Redis, so a take is one atomic step whichever replica makes it.
//!
//! The state is the bucket's "theoretical arrival time" (TAT) under one key and the time until
//! which the upstream asked everyone to wait (an upstream 429's `Retry-After`) under another.
//! Redis's own clock (`TIME`) is the only clock, so replicas' clocks need not agree. The script
//! is sent once and then run by its SHA (`EVALSHA`; the client reloads it after a Redis
//! restart).
//!
//! `per_minute` and `burst` apply to the whole fleet: a call is admitted at once while fewer
//! than `burst` calls are ahead of the average rate, waits its turn when the wait is within
//! `max_wait`, and is refused with the wait as `Retry-After` otherwise, exactly as the local
//! budget does ([`crate::upstream::budget`]).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::FleetLink;
use crate::config::RateLimit;
use crate::upstream::budget::Admission;

/// A script that starts with `now`, Redis's clock in milliseconds (the only clock the fleet
/// uses, so replicas' clocks need not agree).
macro_rules! clocked_script {
    ($body:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                "-- Redis before 5 needs this to write after reading the clock; later versions \
                 ignore it.\n",
                "if redis.replicate_commands then redis.replicate_commands() end\n",
                "local time = redis.call('TIME')\n",
                "local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)\n",
                $body
            ))
        })
    };
}

/// KEYS: the TAT key and the hold key. ARGV: the emission interval (ms per call), the burst,
/// `max_wait` and `max_upstream_hold` (ms). Returns `{admitted, wait_ms}`; a refusal reserves
/// nothing. A hold is read no further ahead than `max_upstream_hold`, so one written by a
/// replica without the cap (an older version, during a rolling upgrade) ends in time too.
static TAKE: LazyLock<Script> = clocked_script!(
    r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local longest_hold = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local hold = math.min(tonumber(redis.call('GET', KEYS[2]) or '0') or 0, now + longest_hold)
local base = math.max(tat, now)
local start = math.max(now, base - (burst - 1) * interval, hold)
local wait = math.ceil(start - now)
if wait > max_wait then
  return {0, wait}
end
local new_tat = math.max(base, start) + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, wait}
"
);

/// KEYS: the hold key. ARGV: the delay (ms, already capped: a Lua number past 2^53 loses
/// precision and `PX` refuses a non-integer). Moves the hold later, never earlier.
static HOLD: LazyLock<Script> = clocked_script!(
    r"
local delay = tonumber(ARGV[1])
local until_ms = now + delay
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', delay + 1000)
end
return 1
"
);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl FleetLink {
    /// Takes a turn from the fleet's budget; `None` when Redis cannot answer in time (the
    /// caller then uses this replica's own budget).
    pub async fn admit(&self, limit: &RateLimit) -> Option<Admission> {
        let fleet = &self.fleet;
        let (tat, hold) = (fleet.key("budget:tat"), fleet.key("budget:hold"));
        let interval_ms = 60_000.0 / f64::from(limit.per_minute);
        let max_wait_ms = millis(limit.max_wait);
        let longest_hold_ms = millis(limit.max_upstream_hold);
        let (admitted, wait_ms): (i64, i64) = self
            .call(|mut connection| async move {
                TAKE.key(tat)
                    .key(hold)
                    .arg(interval_ms)
                    .arg(limit.burst)
                    .arg(max_wait_ms)
                    .arg(longest_hold_ms)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        Some(match (admitted, wait.is_zero()) {
            (0, _) => Admission::Refuse { retry_after: wait },
            (_, true) => Admission::Go,
            (_, false) => Admission::WaitThenGo(wait),
        })
    }

    /// The upstream answered 429 with `Retry-After`: the whole fleet waits that long, at most
    /// `longest` (`rate_limit.max_upstream_hold`).
    pub async fn hold_for(&self, delay: Duration, longest: Duration) {
        let hold = self.fleet.key("budget:hold");
        let delay_ms = millis(delay.min(longest));
        let _: Option<i64> = self
            .call(|mut connection| async move {
                HOLD.key(hold)
                    .arg(delay_ms)
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
    }
}
