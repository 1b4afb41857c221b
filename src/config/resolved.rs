//! The resolved settings, as the rest of the crate reads them: typed, checked, grouped the way
//! they are used (the upstream, the limits, the budget, the fleet, the deprecation).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::defaults::MAX_WORKERS;
use crate::legacy::reply::ReplyOptions;
use crate::legacy::retirement::Retirement;

/// A configuration problem, worded for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The upstream base URL, split once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix without a trailing slash ("" for none), put before every forwarded path.
    pub path_prefix: String,
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme, self.authority, self.path_prefix
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub url: UpstreamUrl,
    pub connect_timeout: Duration,
    /// The whole upstream exchange: until the reply headers on pass-through, until the full
    /// reply body on translated calls.
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    /// Extra PEM roots, trusted beside the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    pub add_x_forwarded_for: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub legacy_body_bytes: u64,
    pub upstream_reply_bytes: u64,
    /// Also bounds how long an idle keep-alive connection stays open: hyper starts this
    /// timer whenever it waits for the next request head.
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// The whole legacy body, from its head to its last byte.
    pub legacy_body_timeout: Duration,
    /// The longest a reply may make no progress towards the client (between two writes).
    pub send_timeout: Duration,
    pub max_header_bytes: u64,
    pub max_headers: u64,
    pub max_in_flight: u64,
    pub max_connections: u64,
    pub max_tracked_clients: u64,
}

/// The client-side budget for upstream calls; `None` in [`Config`] when disabled.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
    pub max_wait: Duration,
    /// The longest an upstream 429 holds every call, whatever its `Retry-After` says.
    pub max_upstream_hold: Duration,
}

/// The Redis a fleet of shims shares ([`crate::fleet`]): one upstream budget and one usage view.
#[derive(Clone, PartialEq)]
pub struct FleetSettings {
    /// `redis://` or `rediss://`; may hold a password, so it is never printed whole. With
    /// [`FleetSettings::sentinels`] it gives only the database, user, password and TLS, and
    /// may be left out.
    pub redis_url: Option<String>,
    /// The sentinels that name the primary, when the fleet finds its Redis through Sentinel.
    pub sentinels: Option<SentinelSettings>,
    /// Replicas with the same key share a budget and a usage view.
    pub key: String,
    /// The most one Redis round trip may take.
    pub timeout: Duration,
}

/// Where the fleet asks for its primary (`rate_limit.redis_sentinels`,
/// `rate_limit.redis_master_name`).
#[derive(Clone, PartialEq)]
pub struct SentinelSettings {
    /// `HOST:PORT`, or `redis://...` or `rediss://...` possibly with a password, as given.
    pub nodes: Vec<String>,
    /// The name the sentinels monitor the primary under.
    pub master_name: String,
}

impl FleetSettings {
    /// The URL with its password replaced by `<redacted>` (the user name, if any, is kept),
    /// for logs and `--check-config`; `None` without a URL.
    pub fn redacted_url(&self) -> Option<String> {
        self.redis_url.as_deref().map(redact_url)
    }

    /// Where the fleet's Redis is, for logs: the URL, or the sentinels and the master name,
    /// with every password redacted.
    pub fn describe(&self) -> String {
        match &self.sentinels {
            None => self.redacted_url().unwrap_or_default(),
            Some(sentinels) => format!(
                "the primary \"{}\" named by the sentinels {}",
                sentinels.master_name,
                sentinels.redacted_nodes().join(", ")
            ),
        }
    }
}

impl SentinelSettings {
    /// The sentinels as URLs the Redis client reads.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| {
                if node.contains("://") {
                    node.clone()
                } else {
                    format!("redis://{node}")
                }
            })
            .collect()
    }

    /// The sentinels as given, their passwords redacted.
    pub fn redacted_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| match node.contains("://") {
                true => redact_url(node),
                // `HOST:PORT` holds no password.
                false => node.clone(),
            })
            .collect()
    }
}

/// `url` with its password replaced by `<redacted>` (the user name, if any, is kept).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redis url>".to_owned();
    };
    // As URL parsers read it: the authority ends at the first `/`, `?` or `#`, and its
    // last `@` ends the user information.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = match user_info.split_once(':') {
                Some((user, password)) if !password.is_empty() => {
                    format!("{user}:{REDACTED}")
                }
                _ => user_info.to_owned(),
            };
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// What `--check-config` and the logs show instead of a password.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSettings")
            .field("redis", &self.describe())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSettings")
            .field("nodes", &self.redacted_nodes())
            .field("master_name", &self.master_name)
            .finish()
    }
}

/// Legacy behaviour switches beyond the reply shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyBehaviour {
    /// Refuse (409) a legacy delete whose customer has children.
    pub refuse_cascading_delete: bool,
}

/// The fully resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Serving threads; `None` is one per CPU this process may use ([`Config::worker_threads`]).
    pub workers: Option<usize>,
    pub log_format: LogFormat,
    /// The log filter, in `RUST_LOG` syntax (validated); `RUST_LOG` wins where set.
    pub log_level: String,
    /// One line per request (target `access`), pass-through included.
    pub access_log: bool,
    pub upstream: UpstreamConfig,
    pub limits: Limits,
    pub legacy: ReplyOptions,
    pub legacy_behaviour: LegacyBehaviour,
    pub rate_limit: Option<RateLimit>,
    /// Set when `rate_limit.redis_url` is: the budget and usage are shared through Redis.
    pub fleet: Option<FleetSettings>,
    pub deprecation: DeprecationDates,
    /// TLS on the main listener: certificate chain and private key (PEM).
    pub tls: Option<TlsFiles>,
    pub shutdown_grace: Duration,
    /// After SIGTERM: keep serving this long with `/readyz` at 503, then drain.
    pub shutdown_delay: Duration,
    /// Names for client fingerprints (`[clients]`), shown in `/usage`, the `usage` table and
    /// the deprecated-usage line; metrics keep the fingerprints.
    pub clients: BTreeMap<String, String>,
    /// A file holding the bearer token `/`, `/usage` and `/metrics` ask for; none: open.
    pub admin_token_file: Option<PathBuf>,
    /// Without a token: the `Host` names, besides IP literals and `localhost`, that `/`,
    /// `/usage` and `/metrics` answer to (lower case, validated).
    pub admin_allowed_hosts: BTreeSet<String>,
    /// Reload when the config file, `admin_token_file` or the TLS files change
    /// ([`crate::server::file_watch`]); SIGHUP reloads either way.
    pub watch_files: bool,
}

/// Where the main listener's certificate and key live.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// When the legacy API was deprecated, when it goes away, and how it is retired.
#[derive(Debug, Clone, PartialEq)]
pub struct DeprecationDates {
    pub deprecated_at: SystemTime,
    pub sunset_at: Option<SystemTime>,
    /// Brownouts, the sunset's enforcement and the exempt clients.
    pub retirement: Retirement,
}

impl Config {
    /// How many serving threads to run: the configured count, or one per CPU this process may
    /// use (the standard library reads the affinity mask and the cgroup CPU quota).
    pub fn worker_threads(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_WORKERS)
        })
    }
}
