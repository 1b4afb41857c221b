//! A fleet of shims as one: replicas that share a Redis (`rate_limit.redis_url`) draw from one
//! upstream budget ([`budget`]) and keep one usage view ([`usage`]).
//!
//! Serving never depends on Redis. Every Redis call has a short timeout
//! (`rate_limit.redis_timeout`, 25 ms by default); when one fails, this replica falls back to
//! its own budget and its own usage records, logs one warning for the outage (not one per
//! request), shows `explo_shim_rate_limit_backend{backend="local"} 1`, and tries Redis again at
//! most once a second until it answers. Each serving thread has its own connection
//! ([`FleetLink`]), as it has its own upstream connections; the connection manager reconnects
//! by itself. The primary may also be found through Redis Sentinel, and moves after a failover
//! ([`primary`]); `explo_shim_fleet_failovers_total` counts the moves.
//!
//! Keys live under `explo-shim:{<rate_limit.key>}:` (the braces keep them in one Cluster slot,
//! though a standalone Redis or a primary is what is supported). Nothing secret is stored:
//! usage records name clients by fingerprint, never by token.

pub mod budget;
mod primary;
pub mod usage;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::config::{ConfigError, FleetSettings};
use crate::observe::metrics::Metrics;
use primary::Primary;

/// How often a replica whose Redis failed tries it again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long an admin read of the fleet's records (`/usage`) may take; a scrape can wait,
/// a request cannot.
const ADMIN_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every replica thread shares about the fleet's Redis.
pub struct Fleet {
    settings: FleetSettings,
    /// Where connections go, and when they must be made again.
    primary: Primary,
    prefix: String,
    health: Health,
    metrics: Arc<Metrics>,
    max_clients: u64,
    usage_events: mpsc::Sender<usage::UsageEvent>,
    /// The bytes of the events in `usage_events` ([`usage::QUEUE_BYTES`]).
    usage_queued_bytes: AtomicUsize,
    /// Taken once by the usage writer ([`Fleet::run_usage_writer`]).
    usage_receiver: Mutex<Option<mpsc::Receiver<usage::UsageEvent>>>,
}

impl Fleet {
    pub fn new(
        settings: &FleetSettings,
        max_clients: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ConfigError> {
        let primary = Primary::new(settings)?;
        let (usage_events, usage_receiver) = mpsc::channel(usage::QUEUE_LENGTH);
        // With sentinels, the budget is this replica's own until they name the primary.
        let up = !primary.through_sentinels();
        metrics.rate_limit_backend(up);
        Ok(Arc::new(Self {
            prefix: format!("explo-shim:{{{}}}:", settings.key),
            settings: settings.clone(),
            primary,
            health: Health::new(up),
            metrics,
            max_clients,
            usage_events,
            usage_queued_bytes: AtomicUsize::new(0),
            usage_receiver: Mutex::new(Some(usage_receiver)),
        }))
    }

    /// A connection for the calling thread, made on first use.
    pub fn link(self: &Arc<Self>) -> FleetLink {
        FleetLink {
            fleet: Arc::clone(self),
            connection: Arc::new(ArcSwapOption::empty()),
            admin: false,
        }
    }

    /// A connection for the admin listener's reads (`/usage`): they may read many records, so
    /// they get [`ADMIN_REDIS_TIMEOUT`] instead of the request path's budget, and a slow or
    /// failed read never marks Redis down for the serving threads (which would send every
    /// replica's budget local).
    pub fn admin_link(self: &Arc<Self>) -> FleetLink {
        FleetLink {
            admin: true,
            ..self.link()
        }
    }

    /// A key under this fleet's prefix.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether Redis answered the last call.
    pub fn is_reachable(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        if !self.health.up.swap(true, Ordering::AcqRel) {
            if self.primary.moved_after_readonly() {
                self.metrics.fleet_failover();
            }
            if self.health.shared_before.swap(true, Ordering::AcqRel) {
                tracing::info!(
                    redis = %self.settings.describe(),
                    "Redis answers again: the fleet budget and usage are shared again"
                );
            } else {
                // Only with sentinels: the replica starts on its own budget until they name
                // the primary, and this is its first connection, not a return.
                tracing::info!(
                    redis = %self.settings.describe(),
                    "Redis answers: the fleet budget and usage are shared"
                );
            }
            self.metrics.rate_limit_backend(true);
        }
    }

    fn failed(&self, cause: &str) {
        self.health.next_probe_ms.store(
            self.health.now_ms() + PROBE_EVERY.as_millis() as u64,
            Ordering::Relaxed,
        );
        if self.health.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                redis = %self.settings.describe(),
                cause,
                "Redis is unreachable: this replica uses its own budget and usage records until \
                 it answers again"
            );
            self.metrics.rate_limit_backend(false);
        }
    }
}

/// Whether Redis is believed up, and when to try it again when it is not.
struct Health {
    up: AtomicBool,
    /// Whether Redis has been shared since start-up: its next answer is a return.
    shared_before: AtomicBool,
    next_probe_ms: AtomicU64,
    started: Instant,
}

impl Health {
    fn new(up: bool) -> Self {
        Self {
            up: AtomicBool::new(up),
            shared_before: AtomicBool::new(up),
            next_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Lets the next caller try Redis at once (a new primary was named).
    fn try_now(&self) {
        self.next_probe_ms.store(0, Ordering::Relaxed);
    }

    /// Up: always. Down: one caller per [`PROBE_EVERY`] gets to try; the others go local at
    /// once instead of each waiting for a timeout.
    fn may_try(&self) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.now_ms();
        let next = self.next_probe_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_probe_ms
                .compare_exchange(
                    next,
                    now + PROBE_EVERY.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// One thread's connection to the fleet's Redis; clones share it.
#[derive(Clone)]
pub struct FleetLink {
    fleet: Arc<Fleet>,
    connection: Arc<ArcSwapOption<Connected>>,
    /// The admin listener's link ([`Fleet::admin_link`]).
    admin: bool,
}

/// A link's connection, and the generation of the primary it was made to
/// ([`Primary::generation`]).
struct Connected {
    generation: u64,
    manager: ConnectionManager,
}

impl FleetLink {
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The same fleet with a connection of its own, for another thread.
    pub fn for_this_thread(&self) -> Self {
        FleetLink {
            admin: self.admin,
            ..self.fleet.link()
        }
    }

    /// How long one Redis call may take on this link.
    fn timeout(&self) -> Duration {
        if self.admin {
            ADMIN_REDIS_TIMEOUT.max(self.fleet.settings.timeout)
        } else {
            self.fleet.settings.timeout
        }
    }

    /// The connection, made lazily inside the calling thread's runtime (the manager spawns its
    /// reconnection there), and made again when the primary moved. `None` while no primary is
    /// known (the sentinels have not named one yet).
    fn connection(&self) -> Option<ConnectionManager> {
        let generation = self.fleet.primary.generation();
        {
            let current = self.connection.load();
            if let Some(current) = &*current
                && current.generation == generation
            {
                return Some(current.manager.clone());
            }
        }
        self.connect(generation)
    }

    /// A new connection to the primary of `generation`: on first use and after a move only.
    #[cold]
    fn connect(&self, generation: u64) -> Option<ConnectionManager> {
        let Some(client) = self.fleet.primary.client() else {
            self.fleet.primary.wake();
            return None;
        };
        let timeout = self.timeout();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1).max(timeout)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_EVERY);
        match ConnectionManager::new_lazy_with_config(client, config) {
            Ok(manager) => {
                self.connection.store(Some(Arc::new(Connected {
                    generation,
                    manager: manager.clone(),
                })));
                Some(manager)
            }
            Err(error) => {
                self.fleet.failed(&error.to_string());
                None
            }
        }
    }

    /// Runs one Redis call within the timeout; `None` when Redis is down or slow (the caller
    /// then does without), and the outage is noted.
    async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if self.admin {
            // Only the serving threads' calls judge Redis's health.
            let connection = self.connection()?;
            return match tokio::time::timeout(self.timeout(), call(connection)).await {
                Ok(Ok(value)) => Some(value),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "reading the fleet's usage from Redis failed");
                    self.fleet.primary.lost(is_readonly(&error));
                    None
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.timeout(), "reading the fleet's usage from Redis timed out");
                    self.fleet.primary.lost(false);
                    None
                }
            };
        }
        if !self.fleet.health.may_try() {
            return None;
        }
        let connection = self.connection()?;
        match tokio::time::timeout(self.fleet.settings.timeout, call(connection)).await {
            Ok(Ok(value)) => {
                self.fleet.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                self.fleet.failed(&error.to_string());
                self.fleet.primary.lost(is_readonly(&error));
                None
            }
            Err(_) => {
                self.fleet
                    .failed("no answer within rate_limit.redis_timeout");
                self.fleet.primary.lost(false);
                None
            }
        }
    }
}

/// Whether `error` is a primary's `READONLY`: the node was demoted to a replica.
fn is_readonly(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || error.code() == Some("READONLY")
        // A script's write refused on a replica, as some versions word it.
        || error.to_string().contains("READONLY")
}
