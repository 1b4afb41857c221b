//! The fleet's migration tracker: every replica's legacy calls in one place, kept across
//! restarts, so `/usage` on any replica answers "who still calls the legacy API" for all.
//!
//! A legacy call only puts an event on a bounded queue (never waiting: a full queue drops the
//! event and counts it; full is [`QUEUE_LENGTH`] events or [`QUEUE_BYTES`] of them). A writer
//! task on the main thread folds events per client and endpoint and writes the folded records
//! once a second, one atomic script per record ([`record`]); `/usage` reads them back
//! ([`read`]):
//!
//! - `…usage:clients` (set): the fingerprints counted, capped at `limits.max_tracked_clients`
//!   for the whole fleet; past the cap a new client is counted as `other`, unless the upstream
//!   accepted it and a client it never accepted can make room (the rule of
//!   [`crate::observe::metrics::eviction`], the local table's own, so refused tokens cannot
//!   push real teams out of the fleet's view);
//! - `…usage:unverified` (set): the counted clients the upstream has not accepted yet;
//! - `…usage:unverified_order` (sorted set): the same clients, scored in the order they were
//!   placed, so the one placed first gives way first;
//! - `…usage:records` (set) of `<client> <endpoint>`;
//! - `…usage:record:<client>:<endpoint>` (hash): `count`, `refused`, `first_seen` and
//!   `last_seen` (Unix seconds), `last_user_group_id`, and the calls over time:
//!   `h:<start of a UTC hour>` and `d:<start of a UTC day>` (Unix seconds) hold the calls in
//!   that hour or day, for the last [`HOURS`](crate::observe::usage::buckets::HOURS) hours
//!   and [`DAYS`](crate::observe::usage::buckets::DAYS) days; each write deletes the ones that
//!   left the window.
//!
//! Every key written expires [`RECORD_TTL`] after its last write, so a fleet that stopped
//! calling (or a `rate_limit.key` no longer used) leaves nothing in Redis for good.
//! While Redis is away the folded records wait (bounded) and are written when it returns.

mod read;
pub mod record;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::{Fleet, FleetLink};
use crate::legacy::route::LegacyRoute;
use crate::observe::usage::buckets::{Buckets, unix_seconds};

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
        let (client, endpoint) = (key.0.as_str(), key.1.legacy_endpoint());
        let prefix_and_cap = (fleet.prefix.as_str(), fleet.max_clients);
        let written = link
            .call(|mut connection| async move {
                record::write_record(
                    &mut connection,
                    prefix_and_cap,
                    (client, endpoint),
                    folded,
                    now,
                )
                .await
            })
            .await;
        if written.is_none() {
            // Redis is away: keep the rest for the next round.
            return;
        }
        pending.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::usage::recorded_user_group_id;

    #[test]
    fn events_past_the_queues_bytes_are_dropped_and_counted() {
        let metrics = Arc::new(crate::observe::metrics::Metrics::new(10));
        // Never connected: no writer runs, as when it waits on a slow Redis.
        let settings = crate::config::FleetSettings {
            redis_url: Some("redis://127.0.0.1:1".to_owned()),
            sentinels: None,
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
}
