//! The fleet's migration tracker: every replica's legacy calls in one place, kept across
//! restarts, so `/usage` on any replica answers "who still calls the legacy API" for all.
//!
//! A legacy call only puts an event on a bounded queue (never waiting: a full queue drops the
//! event and counts it; full is [`QUEUE_LENGTH`] events or [`QUEUE_BYTES`] of them). A writer task on the main thread folds events per client and endpoint
//! and writes the folded records once a second, one atomic script per record:
//!
//! - `…usage:clients` (set): the fingerprints counted, capped at `limits.max_tracked_clients`
//!   for the whole fleet; past the cap a new client is counted as `other`, unless the upstream
//!   accepted it and a client it never accepted can make room (the rule of
//!   [`crate::observe::metrics`], so refused tokens cannot push real teams out of the fleet's view);
//! - `…usage:unverified` (set): the counted clients the upstream has not accepted yet;
//! - `…usage:records` (set) of `<client> <endpoint>`;
//! - `…usage:record:<client>:<endpoint>` (hash): `count`, `refused`, `first_seen` and
//!   `last_seen` (Unix seconds), `last_user_group_id`, and the calls over time:
//!   `h:<start of a UTC hour>` and `d:<start of a UTC day>` (Unix seconds) hold the calls in
//!   that hour or day, for the last [`buckets::HOURS`] hours and [`buckets::DAYS`] days;
//!   each write deletes the ones that left the window.
//!
//! Every key written expires [`RECORD_TTL`] after its last write, so a fleet that stopped
//! calling (or a `rate_limit.key` no longer used) leaves nothing in Redis for good.
//! While Redis is away the folded records wait (bounded) and are written when it returns.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{Fleet, FleetLink};
use crate::legacy::route::LegacyRoute;
use crate::observe::metrics::OTHER_CLIENTS;
use crate::observe::usage::buckets::{self, Buckets, unix_seconds};
use crate::observe::usage::{UsageEntry, UsageRecords, recorded_user_group_id};

/// Events waiting for the writer; beyond this, events are dropped and counted.
pub const QUEUE_LENGTH: usize = 65_536;
/// Bytes of events waiting for the writer, counted by [`UsageEvent::bytes`]; beyond this,
/// events are dropped and counted. The queue fills only while the writer waits on a slow
/// Redis, and each event may carry a client's `user_group_id` (up to 256 bytes and a marker):
/// 65,536 of those would be over 20 MB.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// What an event costs besides its `user_group_id`, in bytes: itself, its queue slot and the
/// allocator's rounding.
const EVENT_OVERHEAD_BYTES: usize = 128;
/// How often folded records are written.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// Folded records kept while Redis is away (every client on every endpoint, with room).
const MAX_PENDING: usize = 16_384;
/// How long usage keys live in Redis after their last write: past a monthly report's reach,
/// then gone. Refreshed on every write.
pub const RECORD_TTL: Duration = Duration::from_secs(35 * 24 * 60 * 60);

/// One legacy call, for the fleet's records.
#[derive(Debug)]
pub struct UsageEvent {
    client: Arc<String>,
    route: LegacyRoute,
    user_group_id: Option<String>,
    at: SystemTime,
    refused: bool,
    /// The upstream answered with anything but 401 or 403.
    accepted: bool,
}

impl UsageEvent {
    /// What the event holds, for [`QUEUE_BYTES`].
    fn bytes(&self) -> usize {
        EVENT_OVERHEAD_BYTES + self.user_group_id.as_ref().map_or(0, String::len)
    }
}

/// Calls folded per client and endpoint, not yet written.
#[derive(Debug, Clone)]
struct Folded {
    count: u64,
    refused: u64,
    first_seen: u64,
    last_seen: u64,
    last_user_group_id: Option<String>,
    /// Any of the calls was accepted by the upstream.
    accepted: bool,
    /// The calls per hour and day: a ring, so a record kept through a long outage stays the
    /// same size.
    buckets: Buckets,
}

/// KEYS: clients set, records set, unverified set. ARGV: key prefix, client, endpoint, count,
/// first seen, last seen, last user_group_id ("" for none), the client cap, the label past the
/// cap, refused, accepted (1 or 0), the keys' TTL (seconds), the start of the oldest hourly and
/// of the oldest daily bucket kept (Unix seconds), how many legacy endpoints follow, every
/// legacy endpoint (to drop a displaced client's records), then bucket fields (`h:<start>`,
/// `d:<start>`) each followed by its calls.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local client = ARGV[2]
local accepted = tonumber(ARGV[11]) > 0
local ttl = tonumber(ARGV[12])
local oldest = {h = tonumber(ARGV[13]), d = tonumber(ARGV[14])}
local endpoints_end = 15 + tonumber(ARGV[15])
if redis.call('SISMEMBER', KEYS[1], client) == 1 then
  if accepted then
    redis.call('SREM', KEYS[3], client)
  end
else
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[8]) then
    -- Full: an accepted client takes the place of one never accepted, else it is `other`.
    -- SMEMBERS comes sorted inside a script, so every replica picks the same one.
    local victim = accepted and redis.call('SMEMBERS', KEYS[3])[1]
    if victim then
      redis.call('SREM', KEYS[3], victim)
      redis.call('SREM', KEYS[1], victim)
      for i = 16, endpoints_end do
        redis.call('SREM', KEYS[2], victim .. ' ' .. ARGV[i])
        redis.call('DEL', ARGV[1] .. 'usage:record:' .. victim .. ':' .. ARGV[i])
      end
    else
      client = ARGV[9]
    end
  end
  redis.call('SADD', KEYS[1], client)
  if not accepted and client ~= ARGV[9] then
    redis.call('SADD', KEYS[3], client)
  end
end
redis.call('SADD', KEYS[2], client .. ' ' .. ARGV[3])
local record = ARGV[1] .. 'usage:record:' .. client .. ':' .. ARGV[3]
redis.call('HINCRBY', record, 'count', ARGV[4])
if tonumber(ARGV[10]) > 0 then
  redis.call('HINCRBY', record, 'refused', ARGV[10])
end
local first = tonumber(redis.call('HGET', record, 'first_seen') or '0')
if first == 0 or tonumber(ARGV[5]) < first then
  redis.call('HSET', record, 'first_seen', ARGV[5])
end
local last = tonumber(redis.call('HGET', record, 'last_seen') or '0')
if tonumber(ARGV[6]) >= last then
  redis.call('HSET', record, 'last_seen', ARGV[6])
  if ARGV[7] ~= '' then
    redis.call('HSET', record, 'last_user_group_id', ARGV[7])
  end
end
for i = endpoints_end + 1, #ARGV, 2 do
  redis.call('HINCRBY', record, ARGV[i], ARGV[i + 1])
end
-- Buckets that left the window go (a record not written for a while keeps them until the next
-- write; readers skip them).
for _, field in ipairs(redis.call('HKEYS', record)) do
  local kind, start = string.match(field, '^([hd]):(%d+)$')
  if kind and tonumber(start) < oldest[kind] then
    redis.call('HDEL', record, field)
  end
end
for _, key in ipairs({record, KEYS[1], KEYS[2], KEYS[3]}) do
  redis.call('EXPIRE', key, ttl)
end
return 1
",
    )
});

impl Fleet {
    /// Queues one legacy call for the fleet's records; never waits.
    pub fn record_usage(
        &self,
        client: &Arc<String>,
        route: LegacyRoute,
        user_group_id: Option<&str>,
        at: SystemTime,
        refused: bool,
        accepted: bool,
    ) {
        let event = UsageEvent {
            client: Arc::clone(client),
            route,
            user_group_id: user_group_id.map(str::to_owned),
            at,
            refused,
            accepted,
        };
        let bytes = event.bytes();
        let before = self.usage_queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let queued = before.saturating_add(bytes) <= QUEUE_BYTES
            && self.usage_events.try_send(event).is_ok();
        if !queued {
            self.usage_queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.metrics.fleet_usage_dropped();
        }
    }

    /// Writes queued usage to Redis until `shutdown`, then once more. Run once, on the main
    /// thread's runtime.
    pub async fn run_usage_writer(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let receiver = self
            .usage_receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(mut receiver) = receiver else {
            return;
        };
        let link = self.link();
        let mut pending: HashMap<(Arc<String>, LegacyRoute), Folded> = HashMap::new();
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                event = receiver.recv() => match event {
                    Some(event) => self.fold(&mut pending, event),
                    None => break,
                },
                _ = tick.tick() => write(&link, &mut pending, SystemTime::now()).await,
                () = &mut shutdown => break,
            }
        }
        while let Ok(event) = receiver.try_recv() {
            self.fold(&mut pending, event);
        }
        write(&link, &mut pending, SystemTime::now()).await;
    }

    fn fold(&self, pending: &mut HashMap<(Arc<String>, LegacyRoute), Folded>, event: UsageEvent) {
        // Out of the queue: its room is free again, whatever becomes of it.
        self.usage_queued_bytes
            .fetch_sub(event.bytes(), Ordering::AcqRel);
        let at = unix_seconds(event.at);
        let key = (event.client, event.route);
        if !pending.contains_key(&key) && pending.len() >= MAX_PENDING {
            self.metrics.fleet_usage_dropped();
            return;
        }
        let folded = pending.entry(key).or_insert(Folded {
            count: 0,
            refused: 0,
            first_seen: at,
            last_seen: at,
            last_user_group_id: None,
            accepted: false,
            buckets: Buckets::default(),
        });
        folded.count += 1;
        folded.buckets.record(at, 1);
        folded.refused += u64::from(event.refused);
        folded.accepted |= event.accepted;
        folded.first_seen = folded.first_seen.min(at);
        if at >= folded.last_seen {
            folded.last_seen = at;
            if event.user_group_id.is_some() {
                folded.last_user_group_id = event.user_group_id;
            }
        }
    }
}

/// The bucket fields of `folded` still in the window at `now` (Unix seconds), each followed by
/// its calls: `h:<hour start>`, then `d:<day start>`, oldest first.
fn bucket_fields(buckets: &Buckets, now: u64) -> Vec<(String, u32)> {
    let hours = buckets
        .hourly(now)
        .map(|(start, calls)| (format!("h:{start}"), calls));
    let days = buckets
        .daily(now)
        .map(|(start, calls)| (format!("d:{start}"), calls));
    hours.chain(days).collect()
}

/// Writes the folded records as of `now`; what Redis does not take stays for the next round.
async fn write(
    link: &FleetLink,
    pending: &mut HashMap<(Arc<String>, LegacyRoute), Folded>,
    now: SystemTime,
) {
    let now = unix_seconds(now);
    let fleet = link.fleet();
    let keys: Vec<(Arc<String>, LegacyRoute)> = pending.keys().cloned().collect();
    for key in keys {
        let Some(folded) = pending.get(&key) else {
            continue;
        };
        let (clients, records) = (fleet.key("usage:clients"), fleet.key("usage:records"));
        let unverified = fleet.key("usage:unverified");
        let prefix = fleet.prefix.clone();
        let client = key.0.to_string();
        let endpoint = key.1.legacy_endpoint();
        let fields = bucket_fields(&folded.buckets, now);
        let folded = folded.clone();
        let cap = fleet.max_clients;
        let written: Option<i64> = link
            .call(|mut connection| async move {
                let mut invocation = RECORD.key(clients);
                invocation
                    .key(records)
                    .key(unverified)
                    .arg(prefix)
                    .arg(client)
                    .arg(endpoint)
                    .arg(folded.count)
                    .arg(folded.first_seen)
                    .arg(folded.last_seen)
                    .arg(folded.last_user_group_id.unwrap_or_default())
                    .arg(cap)
                    .arg(OTHER_CLIENTS)
                    .arg(folded.refused)
                    .arg(u8::from(folded.accepted))
                    .arg(RECORD_TTL.as_secs())
                    .arg(buckets::oldest_hour_kept(now))
                    .arg(buckets::oldest_day_kept(now))
                    .arg(LegacyRoute::ALL.len());
                for route in LegacyRoute::ALL {
                    invocation.arg(route.legacy_endpoint());
                }
                for (field, calls) in fields {
                    invocation.arg(field).arg(calls);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await;
        if written.is_none() {
            // Redis is away: keep the rest for the next round.
            return;
        }
        pending.remove(&key);
    }
}

impl FleetLink {
    /// The fleet's records, or `None` when Redis cannot answer in time.
    pub async fn usage_records(&self) -> Option<UsageRecords> {
        let fleet = &self.fleet;
        let records_key = fleet.key("usage:records");
        let members: Vec<String> = self
            .call(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(records_key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut pipeline = redis::pipe();
        let mut named = Vec::with_capacity(members.len());
        for member in &members {
            let Some((client, endpoint)) = member.rsplit_once(' ') else {
                continue;
            };
            let Some(route) = LegacyRoute::ALL
                .into_iter()
                .find(|route| route.legacy_endpoint() == endpoint)
            else {
                continue;
            };
            pipeline
                .cmd("HGETALL")
                .arg(fleet.key(&format!("usage:record:{client}:{endpoint}")));
            named.push((client.to_owned(), route));
        }
        let hashes: Vec<HashMap<String, String>> = if named.is_empty() {
            Vec::new()
        } else {
            self.call(|mut connection| async move { pipeline.query_async(&mut connection).await })
                .await?
        };
        let mut records: UsageRecords = BTreeMap::new();
        let now = unix_seconds(SystemTime::now());
        let mut repairs = Repairs::default();
        for ((client, route), hash) in named.into_iter().zip(hashes) {
            // The record expired, or its client was displaced, after the set was read.
            if hash.is_empty() {
                continue;
            }
            if let Some(entry) = parse_record(&hash, now, &mut repairs) {
                records
                    .entry(client)
                    .or_default()
                    .insert(route.legacy_endpoint(), entry);
            }
        }
        // One line per read, not per record: the console reads every few seconds.
        if repairs != Repairs::default() {
            tracing::warn!(
                records_skipped = repairs.records_skipped,
                times_clamped = repairs.times_clamped,
                buckets_skipped = repairs.buckets_skipped,
                "the fleet's usage records in Redis hold values no shim writes (unreadable or \
                 future times); shown without them"
            );
        }
        Some(records)
    }
}

/// How far ahead of this shim's clock a replica's clock may be before its times are taken for
/// corrupt rather than skewed. Small: a bucket ahead of now moves its ring forward, and the
/// history it passes over is cleared.
const MAX_CLOCK_SKEW_SECONDS: u64 = 60 * 60;

/// What [`parse_record`] had to leave out or correct: Redis is shared, and what it holds is
/// data to check, not a promise that a shim wrote it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Repairs {
    /// Records whose `first_seen` or `last_seen` is not a time (negative, not a number).
    records_skipped: u32,
    /// Times past this shim's clock (and any skew), shown as now.
    times_clamped: u32,
    /// Hourly or daily counters for periods that have not begun.
    buckets_skipped: u32,
}

/// One record as read back from its hash at `now` (Unix seconds), or `None` when its times are
/// not times. Counts that are not numbers read as 0; a time in the future reads as `now`.
fn parse_record(
    hash: &HashMap<String, String>,
    now: u64,
    repairs: &mut Repairs,
) -> Option<UsageEntry> {
    let number = |field: &str| {
        hash.get(field)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut time = |field: &str| -> Option<SystemTime> {
        let seconds = hash.get(field)?.parse::<u64>().ok()?;
        let seconds = if seconds > now.saturating_add(MAX_CLOCK_SKEW_SECONDS) {
            repairs.times_clamped += 1;
            now
        } else {
            seconds
        };
        Some(UNIX_EPOCH + Duration::from_secs(seconds))
    };
    let (Some(first_seen), Some(last_seen)) = (time("first_seen"), time("last_seen")) else {
        repairs.records_skipped += 1;
        return None;
    };
    let buckets = Box::new(parse_buckets(hash, now, repairs));
    Some(UsageEntry {
        count: number("count"),
        first_seen,
        last_seen,
        // Cut again on the way out: a replica before the cap may have written it.
        last_user_group_id: hash
            .get("last_user_group_id")
            .filter(|id| !id.is_empty())
            .map(|id| recorded_user_group_id(id.clone())),
        refused: number("refused"),
        buckets,
    })
}

/// The buckets in a record's hash: its `h:<hour start>` and `d:<day start>` fields. Fields
/// that are not numbers are skipped, and so are periods that have not begun at `now` (counted
/// in `repairs`); counts past `u32` saturate.
fn parse_buckets(hash: &HashMap<String, String>, now: u64, repairs: &mut Repairs) -> Buckets {
    let mut buckets = Buckets::default();
    for (field, value) in hash {
        let Some((kind, start)) = field.split_once(':') else {
            continue;
        };
        let (Ok(start), Ok(calls)) = (start.parse::<u64>(), value.parse::<u64>()) else {
            continue;
        };
        if start > now.saturating_add(MAX_CLOCK_SKEW_SECONDS) {
            repairs.buckets_skipped += 1;
            continue;
        }
        let calls = u32::try_from(calls).unwrap_or(u32::MAX);
        match kind {
            "h" => buckets.add_hour(start, calls),
            "d" => buckets.add_day(start, calls),
            _ => {}
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T10:20:00Z.
    const NOW: u64 = 1_796_379_600;

    #[test]
    fn events_past_the_queues_bytes_are_dropped_and_counted() {
        let metrics = Arc::new(crate::observe::metrics::Metrics::new(10));
        // Never connected: no writer runs, as when it waits on a slow Redis.
        let settings = crate::config::FleetSettings {
            redis_url: "redis://127.0.0.1:1".to_owned(),
            key: "test".to_owned(),
            timeout: Duration::from_millis(25),
        };
        let fleet = Fleet::new(&settings, 10, Arc::clone(&metrics)).unwrap();
        let client = Arc::new("64cc961af68c".to_owned());
        let long_id = recorded_user_group_id("g".repeat(10_000));
        let per_event = EVENT_OVERHEAD_BYTES + long_id.len();
        let fit = QUEUE_BYTES / per_event;
        for _ in 0..fit + 100 {
            fleet.record_usage(
                &client,
                LegacyRoute::UpdateUserGroup,
                Some(&long_id),
                SystemTime::now(),
                false,
                true,
            );
        }
        assert_eq!(
            fleet.usage_queued_bytes.load(Ordering::Acquire),
            fit * per_event
        );
        assert!(fit < QUEUE_LENGTH, "the bytes are the bound here");
        let dropped = "explo_shim_fleet_usage_dropped_total 100";
        assert!(
            metrics.encode().lines().any(|line| line == dropped),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn folded_buckets_become_fields_and_fields_become_buckets() {
        let mut buckets = Buckets::default();
        buckets.record(NOW - 3600, 2); // 09:20
        buckets.record(NOW, 1);
        let fields = bucket_fields(&buckets, NOW);
        assert_eq!(
            fields,
            [
                ("h:1796374800".to_owned(), 2),
                ("h:1796378400".to_owned(), 1),
                ("d:1796342400".to_owned(), 3),
            ]
        );
        let mut hash: HashMap<String, String> = fields
            .into_iter()
            .map(|(field, calls)| (field, calls.to_string()))
            .collect();
        hash.insert("count".to_owned(), "3".to_owned());
        hash.insert("h:junk".to_owned(), "1".to_owned());
        hash.insert("d:1796342400x".to_owned(), "1".to_owned());
        let mut repairs = Repairs::default();
        assert_eq!(parse_buckets(&hash, NOW, &mut repairs), buckets);
        assert_eq!(repairs, Repairs::default());
    }

    fn hash(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_record_with_times_that_are_not_times_is_skipped() {
        for bad in ["-5", "soon", "", "1e9", "99999999999999999999999"] {
            let mut repairs = Repairs::default();
            let record = hash(&[
                ("count", "1"),
                ("first_seen", bad),
                ("last_seen", "1796379600"),
            ]);
            assert!(
                parse_record(&record, NOW, &mut repairs).is_none(),
                "{bad:?}"
            );
            assert_eq!(repairs.records_skipped, 1);
        }
        let mut repairs = Repairs::default();
        assert!(parse_record(&hash(&[("count", "1")]), NOW, &mut repairs).is_none());
    }

    #[test]
    fn times_and_buckets_past_the_clock_are_clamped_or_skipped_and_the_report_renders() {
        let mut repairs = Repairs::default();
        let record = hash(&[
            ("count", "2"),
            ("first_seen", "1796379000"),
            // Past the year 9999, and past what `SystemTime` can add.
            ("last_seen", "253402300800"),
            ("refused", "x"),
            ("h:18446744073709551615", "1"),
            ("d:1796342400", "2"),
        ]);
        let entry = parse_record(&record, NOW, &mut repairs).unwrap();
        assert_eq!(entry.last_seen, UNIX_EPOCH + Duration::from_secs(NOW));
        assert_eq!(entry.refused, 0);
        assert_eq!(
            repairs,
            Repairs {
                records_skipped: 0,
                times_clamped: 1,
                buckets_skipped: 1,
            }
        );
        let mut huge = record.clone();
        huge.insert("first_seen".to_owned(), u64::MAX.to_string());
        let entry = parse_record(&huge, NOW, &mut repairs).unwrap();
        assert_eq!(entry.first_seen, UNIX_EPOCH + Duration::from_secs(NOW));
        // What /usage does with it: formats the times, which panics past the year 9999.
        let _ = humantime::format_rfc3339_seconds(entry.first_seen).to_string();
        let _ = humantime::format_rfc3339_seconds(entry.last_seen).to_string();
    }

    #[test]
    fn the_fields_written_leave_out_what_left_the_window() {
        let mut buckets = Buckets::default();
        buckets.record(NOW - 49 * 3600, 1);
        let fields = bucket_fields(&buckets, NOW);
        // Its day (2026-12-02) is still in the window; its hour is not.
        assert_eq!(fields, [("d:1796169600".to_owned(), 1)]);
    }
}
