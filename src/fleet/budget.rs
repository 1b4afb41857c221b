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
//! `max_wait`, and is refused with the wait as `Retry-After` otherwise. The local budget
//! ([`crate::upstream::budget`]) takes the same steps in nanoseconds where this script counts
//! milliseconds and rounds a wait up; both run the same table of cases
//! ([`crate::upstream::budget::cases`], on a real Redis by `tests/it/shared_rules.rs`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::FleetLink;
use crate::config::RateLimit;
use crate::upstream::budget::Admission;

/// The start of every script: `now`, Redis's clock in milliseconds (the only clock the fleet
/// uses, so replicas' clocks need not agree).
const CLOCK_OF_REDIS: &str = "\
-- Redis before 5 needs this to write after reading the clock; later versions ignore it.
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
";

/// The start of the scripts under test: `now` is their last argument, so a table of cases
/// can say when each call comes ([`testing`]).
const CLOCK_OF_LAST_ARGUMENT: &str = "local now = tonumber(ARGV[#ARGV])\n";

/// KEYS: the TAT key and the hold key. ARGV: the emission interval (ms per call), the burst,
/// `max_wait` and `max_upstream_hold` (ms). Returns `{admitted, wait_ms}`; a refusal reserves
/// nothing. A hold is read no further ahead than `max_upstream_hold` from now, so no wait is
/// longer than the cap in force, whoever wrote the hold. The local budget takes the same steps
/// ([`crate::upstream::budget::UpstreamBudget::admit`]).
const TAKE: &str = r"
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
";

/// KEYS: the hold key. ARGV: the delay (ms, already capped: a Lua number past 2^53 loses
/// precision and `PX` refuses a non-integer). Moves the hold later, never earlier.
const HOLD: &str = r"
local delay = tonumber(ARGV[1])
local until_ms = now + delay
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', delay + 1000)
end
return 1
";

static TAKE_NOW: LazyLock<Script> = LazyLock::new(|| Script::new(&[CLOCK_OF_REDIS, TAKE].concat()));
static HOLD_NOW: LazyLock<Script> = LazyLock::new(|| Script::new(&[CLOCK_OF_REDIS, HOLD].concat()));

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A turn from [`TAKE`] with `limit`'s figures, as an [`Admission`]; `now_ms` is appended
/// for the script under test only.
async fn take(
    script: &Script,
    connection: &mut impl redis::aio::ConnectionLike,
    (tat, hold): (String, String),
    limit: &RateLimit,
    now_ms: Option<u64>,
) -> redis::RedisResult<Admission> {
    let mut invocation = script.key(tat);
    invocation
        .key(hold)
        .arg(60_000.0 / f64::from(limit.per_minute))
        .arg(limit.burst)
        .arg(millis(limit.max_wait))
        .arg(millis(limit.max_upstream_hold));
    if let Some(now_ms) = now_ms {
        invocation.arg(now_ms);
    }
    let (admitted, wait_ms): (i64, i64) = invocation.invoke_async(connection).await?;
    let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
    Ok(match (admitted, wait.is_zero()) {
        (0, _) => Admission::Refuse { retry_after: wait },
        (_, true) => Admission::Go,
        (_, false) => Admission::WaitThenGo(wait),
    })
}

/// Holds every call for `delay`, at most `longest`, through [`HOLD`].
async fn hold(
    script: &Script,
    connection: &mut impl redis::aio::ConnectionLike,
    key: String,
    (delay, longest): (Duration, Duration),
    now_ms: Option<u64>,
) -> redis::RedisResult<i64> {
    let mut invocation = script.key(key);
    invocation.arg(millis(delay.min(longest)));
    if let Some(now_ms) = now_ms {
        invocation.arg(now_ms);
    }
    invocation.invoke_async(connection).await
}

impl FleetLink {
    /// Takes a turn from the fleet's budget; `None` when Redis cannot answer in time (the
    /// caller then uses this replica's own budget).
    pub async fn admit(&self, limit: &RateLimit) -> Option<Admission> {
        let keys = (self.fleet.key("budget:tat"), self.fleet.key("budget:hold"));
        self.call(|mut connection| async move {
            take(&TAKE_NOW, &mut connection, keys, limit, None).await
        })
        .await
    }

    /// The upstream answered 429 with `Retry-After`: the whole fleet waits that long, at most
    /// `longest` (`rate_limit.max_upstream_hold`).
    pub async fn hold_for(&self, delay: Duration, longest: Duration) {
        let key = self.fleet.key("budget:hold");
        let _: Option<i64> = self
            .call(|mut connection| async move {
                hold(&HOLD_NOW, &mut connection, key, (delay, longest), None).await
            })
            .await;
    }
}

/// The same scripts with the clock as their last argument, run by `tests/it/shared_rules.rs`
/// on a real Redis against the local budget's cases ([`crate::upstream::budget::cases`]).
/// Not an API.
pub mod testing {
    use super::*;

    static TAKE_AT: LazyLock<Script> =
        LazyLock::new(|| Script::new(&[CLOCK_OF_LAST_ARGUMENT, TAKE].concat()));
    static HOLD_AT: LazyLock<Script> =
        LazyLock::new(|| Script::new(&[CLOCK_OF_LAST_ARGUMENT, HOLD].concat()));

    /// A turn at `now_ms` from the budget under `prefix`, with `limit`'s figures.
    pub async fn admit_at(
        connection: &mut impl redis::aio::ConnectionLike,
        prefix: &str,
        limit: &RateLimit,
        now_ms: u64,
    ) -> redis::RedisResult<Admission> {
        let keys = (
            format!("{prefix}budget:tat"),
            format!("{prefix}budget:hold"),
        );
        take(&TAKE_AT, connection, keys, limit, Some(now_ms)).await
    }

    /// An upstream 429 asking for `delay` at `now_ms`, at most `longest`.
    pub async fn hold_at(
        connection: &mut impl redis::aio::ConnectionLike,
        prefix: &str,
        (delay, longest): (Duration, Duration),
        now_ms: u64,
    ) -> redis::RedisResult<()> {
        let key = format!("{prefix}budget:hold");
        hold(&HOLD_AT, connection, key, (delay, longest), Some(now_ms))
            .await
            .map(drop)
    }
}
