//! A fleet of shims as one: replicas that share a Redis (`rate_limit.redis_url`) draw from one
//! upstream budget ([`budget`]) and keep one usage view ([`usage`]).
//!
//! Serving never depends on Redis. Every Redis call has a short timeout
//! (`rate_limit.redis_timeout`, 25 ms by default); when one fails, this replica falls back to
//! its own budget and its own usage records, logs one warning for the outage (not one per
//! request), shows `explo_shim_rate_limit_backend{backend="local"} 1`, and tries Redis again at
//! most once a second until it answers. Each serving thread has its own connection
//! ([`FleetLink`]), as it has its own upstream connections; the connection manager reconnects
//! by itself.
//!
//! Keys live under `explo-shim:{<rate_limit.key>}:` (the braces keep them in one Cluster slot,
//! though a standalone Redis or a primary is what is supported). Nothing secret is stored:
//! usage records name clients by fingerprint, never by token.

pub mod budget;
pub mod usage;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::config::{ConfigError, FleetSettings};
use crate::observe::metrics::Metrics;

/// How often a replica whose Redis failed tries it again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long an admin read of the fleet's records (`/usage`) may take; a scrape can wait,
/// a request cannot.
const ADMIN_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every replica thread shares about the fleet's Redis.
pub struct Fleet {
    settings: FleetSettings,
    client: redis::Client,
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
        if settings.redis_url.starts_with("rediss://") {
            // The Redis client's rustls has no provider of its own; the shim's is ring. An
            // error means one is installed already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|error| ConfigError(format!("invalid `rate_limit.redis_url`: {error}")))?;
        let (usage_events, usage_receiver) = mpsc::channel(usage::QUEUE_LENGTH);
        metrics.rate_limit_backend(true);
        Ok(Arc::new(Self {
            prefix: format!("explo-shim:{{{}}}:", settings.key),
            settings: settings.clone(),
            client,
            health: Health::new(),
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
            connection: Arc::new(OnceLock::new()),
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
            tracing::info!(
                redis = %self.settings.redacted_url(),
                "Redis answers again: the fleet budget and usage are shared again"
            );
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
                redis = %self.settings.redacted_url(),
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
    next_probe_ms: AtomicU64,
    started: Instant,
}

impl Health {
    fn new() -> Self {
        Self {
            up: AtomicBool::new(true),
            next_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
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
    connection: Arc<OnceLock<ConnectionManager>>,
    /// The admin listener's link ([`Fleet::admin_link`]).
    admin: bool,
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
    /// reconnection there).
    fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Some(connection.clone());
        }
        let timeout = self.timeout();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1).max(timeout)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_EVERY);
        match ConnectionManager::new_lazy_with_config(self.fleet.client.clone(), config) {
            Ok(connection) => Some(self.connection.get_or_init(|| connection).clone()),
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
                    None
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.timeout(), "reading the fleet's usage from Redis timed out");
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
                None
            }
            Err(_) => {
                self.fleet
                    .failed("no answer within rate_limit.redis_timeout");
                None
            }
        }
    }
}
