//! Where the fleet's Redis primary is, and moving to a new one after a failover.
//!
//! With `rate_limit.redis_url` alone the primary is that URL (a standalone Redis, or a managed
//! endpoint that fails over behind one name). With `rate_limit.redis_sentinels` and
//! `rate_limit.redis_master_name` the sentinels name it: a task on the main thread
//! ([`Fleet::watch_sentinels`]) asks them (the Redis client's own Sentinel support, which also
//! checks that the node named answers `ROLE` as a primary), then listens for their
//! `+switch-master` announcement, and asks again when one comes or when a call to the primary
//! fails (no answer, a broken connection, `READONLY`).
//!
//! Every thread's connection is made from [`Primary::client`] and stamped with
//! [`Primary::generation`]; a move bumps the generation, and each link makes a new connection
//! on its next call. Checking the stamp is one atomic load per call: discovery and the new
//! connection happen only on a move, never on the request path while Redis is healthy.
//! Meanwhile the calls that fail go to this replica's own budget, as in any outage.
//!
//! A managed endpoint (one URL whose node changes) needs no sentinel: when the node behind the
//! URL answers `READONLY` (it was demoted, and the endpoint now leads elsewhere), every link
//! drops its connection and connects again, so the endpoint's new node is reached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsMode};
use tokio::sync::Notify;

use super::{Fleet, PROBE_EVERY};
use crate::config::{ConfigError, FleetSettings, SentinelSettings};

/// The longest one discovery may take: the sentinels asked, the primary they name checked.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How soon the sentinels are asked again when they named no primary that answers as one
/// (during a failover: the old one is down and no replica is promoted yet).
const DISCOVERY_RETRY: Duration = Duration::from_millis(250);
/// How often the sentinels are asked again while all seems well: an announcement missed (on a
/// subscription that hung without breaking) is noticed within this long.
const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// The channel on which sentinels announce a new primary:
/// `<master name> <old ip> <old port> <new ip> <new port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// Where new connections to the fleet's Redis go.
pub(super) struct Primary {
    /// Bumped whenever every link must connect again: the primary moved, or (with a plain
    /// URL) it answered `READONLY`.
    generation: AtomicU64,
    /// The primary new connections are made to; `None` until the sentinels name one.
    current: Mutex<Option<Current>>,
    /// A plain URL answered `READONLY` and the links connect again: the first success after
    /// it is a move to the endpoint's new primary.
    readonly_seen: AtomicBool,
    sentinels: Option<Sentinels>,
}

struct Current {
    client: redis::Client,
    /// `host:port`, to tell a move from the same primary named again.
    address: String,
}

/// What the watcher needs to ask the sentinels.
struct Sentinels {
    master_name: String,
    /// The database, user, password and TLS for the primary (from `redis_url`).
    node_info: SentinelNodeConnectionInfo,
    /// The sentinels, for the announcements.
    nodes: Vec<redis::ConnectionInfo>,
    /// The sentinels' own client, taken by the watcher.
    sentinel: Mutex<Option<Sentinel>>,
    /// A call failed: ask the sentinels again.
    wake: Notify,
    /// The sentinels as given, passwords redacted, for logs.
    described: String,
}

impl Primary {
    pub(super) fn new(settings: &FleetSettings) -> Result<Self, ConfigError> {
        let uses_tls = |url: &str| url.starts_with("rediss://");
        let sentinel_tls = settings
            .sentinels
            .as_ref()
            .is_some_and(|sentinels| sentinels.nodes.iter().any(|node| uses_tls(node)));
        if settings.redis_url.as_deref().is_some_and(uses_tls) || sentinel_tls {
            // The Redis client's rustls has no provider of its own; the shim's is ring. An
            // error means one is installed already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let invalid_url = |error: redis::RedisError| {
            ConfigError(format!("invalid `rate_limit.redis_url`: {error}"))
        };
        let (current, sentinels) = match &settings.sentinels {
            None => {
                let url = settings.redis_url.as_deref().unwrap_or_default();
                let client = redis::Client::open(url).map_err(invalid_url)?;
                let address = client.get_connection_info().addr().to_string();
                (Some(Current { client, address }), None)
            }
            Some(sentinels) => {
                let node_info = match settings.redis_url.as_deref() {
                    Some(url) => node_info(url).map_err(invalid_url)?,
                    None => SentinelNodeConnectionInfo::default(),
                };
                (None, Some(Sentinels::new(sentinels, node_info)?))
            }
        };
        Ok(Self {
            generation: AtomicU64::new(0),
            current: Mutex::new(current),
            readonly_seen: AtomicBool::new(false),
            sentinels,
        })
    }

    /// Whether the sentinels name the primary.
    pub(super) fn through_sentinels(&self) -> bool {
        self.sentinels.is_some()
    }

    /// The generation of the primary new connections go to; a connection of an older one is
    /// made again.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A client for the primary, if one is known. Only on connecting, never per call.
    pub(super) fn client(&self) -> Option<redis::Client> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|current| current.client.clone())
    }

    /// A call to the primary failed (`readonly`: it answered `READONLY`): with sentinels,
    /// they are asked again; with a plain URL that answered `READONLY`, every link connects
    /// again, so a managed endpoint's new primary is reached.
    pub(super) fn lost(&self, readonly: bool) {
        match &self.sentinels {
            Some(sentinels) => sentinels.wake.notify_one(),
            None if readonly => {
                self.readonly_seen.store(true, Ordering::Relaxed);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            None => {}
        }
    }

    /// Asks the sentinels again, if there are any (no primary is known yet).
    pub(super) fn wake(&self) {
        if let Some(sentinels) = &self.sentinels {
            sentinels.wake.notify_one();
        }
    }

    /// Whether the primary answered after a `READONLY` made every link connect again (a
    /// managed endpoint's failover); true once per such move.
    pub(super) fn moved_after_readonly(&self) -> bool {
        self.readonly_seen.swap(false, Ordering::AcqRel)
    }
}

impl Sentinels {
    fn new(
        settings: &SentinelSettings,
        node_info: SentinelNodeConnectionInfo,
    ) -> Result<Self, ConfigError> {
        let invalid = |error: redis::RedisError| {
            ConfigError(format!("invalid `rate_limit.redis_sentinels`: {error}"))
        };
        let urls = settings.urls();
        let nodes = urls
            .iter()
            .map(|node| node.as_str().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let sentinel = Sentinel::build(urls).map_err(invalid)?;
        Ok(Self {
            master_name: settings.master_name.clone(),
            node_info,
            nodes,
            sentinel: Mutex::new(Some(sentinel)),
            wake: Notify::new(),
            described: settings.redacted_nodes().join(", "),
        })
    }
}

/// What `redis_url` gives a primary the sentinels name: its database, user, password and TLS
/// (its host is ignored).
fn node_info(url: &str) -> redis::RedisResult<SentinelNodeConnectionInfo> {
    let info = url.into_connection_info()?;
    let node_info = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(info.redis_settings().clone());
    Ok(match info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => node_info.set_tls_mode(if *insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        }),
        _ => node_info,
    })
}

impl Fleet {
    /// With sentinels: asks them for the primary, then again whenever they announce a new one
    /// or a call to it fails, and moves the fleet's connections to the primary they name. Runs
    /// on the main thread's runtime until it is aborted; returns at once without sentinels.
    pub async fn watch_sentinels(self: Arc<Self>) {
        let Some(sentinels) = &self.primary.sentinels else {
            return;
        };
        let taken = sentinels
            .sentinel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut sentinel) = taken else {
            return;
        };
        let mut listening_to = 0usize;
        loop {
            self.discover(&mut sentinel, sentinels).await;
            let node = &sentinels.nodes[listening_to % sentinels.nodes.len()];
            tokio::select! {
                () = sentinels.wake.notified() => {}
                () = tokio::time::sleep(RECHECK_EVERY) => {}
                announced = switch_announced(node, &sentinels.master_name) => {
                    if let Err(error) = announced {
                        tracing::debug!(
                            sentinel = %node.addr(),
                            %error,
                            "not listening to this sentinel's announcements; trying the next"
                        );
                        listening_to += 1;
                        // The failed calls still wake the watcher meanwhile.
                        tokio::select! {
                            () = sentinels.wake.notified() => {}
                            () = tokio::time::sleep(PROBE_EVERY) => {}
                        }
                    }
                }
            }
        }
    }

    /// Asks the sentinels until they name a primary that answers as one.
    async fn discover(&self, sentinel: &mut Sentinel, sentinels: &Sentinels) {
        let mut warned = false;
        loop {
            let asked =
                sentinel.async_master_for(&sentinels.master_name, Some(&sentinels.node_info));
            let error = match tokio::time::timeout(DISCOVERY_TIMEOUT, asked).await {
                Ok(Ok(client)) => {
                    self.primary_named(client);
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {DISCOVERY_TIMEOUT:?}"),
            };
            if !warned {
                warned = true;
                tracing::warn!(
                    sentinels = %sentinels.described,
                    master_name = %sentinels.master_name,
                    cause = %error,
                    "the sentinels name no primary that answers as one (a failover under \
                     way?): asking again until they do"
                );
            }
            tokio::time::sleep(DISCOVERY_RETRY).await;
        }
    }

    /// The sentinels named `client`'s node: a move when it is not the primary in use.
    fn primary_named(&self, client: redis::Client) {
        let address = client.get_connection_info().addr().to_string();
        let mut current = self
            .primary
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let previous = match current.as_ref() {
            Some(current) if current.address == address => return,
            Some(current) => Some(current.address.clone()),
            None => None,
        };
        *current = Some(Current {
            client,
            address: address.clone(),
        });
        drop(current);
        self.primary.generation.fetch_add(1, Ordering::AcqRel);
        // Whoever comes next tries the new primary at once.
        self.health.try_now();
        match previous {
            None => tracing::info!(primary = %address, "the sentinels name the fleet's primary"),
            Some(previous) => {
                self.metrics.fleet_failover();
                tracing::info!(
                    from = %previous,
                    to = %address,
                    "the sentinels name a new primary: the fleet moves to it"
                );
            }
        }
    }
}

/// Listens on `node` (a sentinel) until it announces a new primary for `master_name`; an
/// error when the sentinel cannot be reached or the subscription ends.
async fn switch_announced(
    node: &redis::ConnectionInfo,
    master_name: &str,
) -> redis::RedisResult<()> {
    let timed_out = |_| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the sentinel did not answer",
        ))
    };
    let client = redis::Client::open(node.clone())?;
    let mut pubsub = tokio::time::timeout(DISCOVERY_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(timed_out)??;
    tokio::time::timeout(DISCOVERY_TIMEOUT, pubsub.subscribe(SWITCH_MASTER))
        .await
        .map_err(timed_out)??;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload()?;
        if payload.split(' ').next() == Some(master_name) {
            return Ok(());
        }
    }
    Err(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the sentinel ended the subscription",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Metrics;

    fn settings(sentinels: Option<SentinelSettings>, url: Option<&str>) -> FleetSettings {
        FleetSettings {
            redis_url: url.map(str::to_owned),
            sentinels,
            key: "test".to_owned(),
            timeout: Duration::from_millis(25),
        }
    }

    fn failovers(metrics: &Metrics) -> String {
        let text = metrics.encode();
        text.lines()
            .find(|line| line.starts_with("explo_shim_fleet_failovers_total "))
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_plain_url_connects_again_after_readonly_only() {
        let primary = Primary::new(&settings(None, Some("redis://127.0.0.1:1/"))).unwrap();
        assert!(primary.client().is_some());
        assert!(!primary.through_sentinels());
        primary.lost(false);
        assert_eq!(
            primary.generation(),
            0,
            "a broken connection reconnects by itself"
        );
        assert!(!primary.moved_after_readonly());
        primary.lost(true);
        assert_eq!(
            primary.generation(),
            1,
            "READONLY: every link connects again"
        );
        assert!(primary.moved_after_readonly());
        assert!(!primary.moved_after_readonly(), "one move counted once");
    }

    #[test]
    fn the_primary_the_sentinels_name_moves_the_links_and_is_counted_once_per_move() {
        let sentinels = SentinelSettings {
            nodes: vec!["127.0.0.1:1".to_owned()],
            master_name: "explo".to_owned(),
        };
        let metrics = Arc::new(Metrics::new(10));
        let fleet = Fleet::new(
            &settings(Some(sentinels), Some("redis://:pw@ignored/2")),
            10,
            Arc::clone(&metrics),
        )
        .unwrap();
        // Nothing known yet: no connection, and the budget is this replica's own.
        assert!(fleet.primary.client().is_none());
        assert!(!fleet.is_reachable());
        let client = |url: &str| redis::Client::open(url).unwrap();
        fleet.primary_named(client("redis://10.0.0.5:6379"));
        assert_eq!(fleet.primary.generation(), 1);
        assert_eq!(failovers(&metrics), "explo_shim_fleet_failovers_total 0");
        fleet.primary_named(client("redis://10.0.0.5:6379"));
        assert_eq!(
            fleet.primary.generation(),
            1,
            "the same primary named again"
        );
        fleet.primary_named(client("redis://10.0.0.6:6379"));
        assert_eq!(fleet.primary.generation(), 2);
        assert_eq!(failovers(&metrics), "explo_shim_fleet_failovers_total 1");
        let named = fleet.primary.client().unwrap();
        assert_eq!(
            named.get_connection_info().addr().to_string(),
            "10.0.0.6:6379"
        );
        // The URL's database and password go to the primary the sentinels name.
        let with_url = node_info("rediss://:pw@ignored/2").unwrap();
        assert!(format!("{with_url:?}").contains("db: 2"), "{with_url:?}");
    }
}
