//! Configuration: built-in defaults, the TOML file, then the environment and flags on top.
//!
//! Every default is a named constant with its unit and appears once, commented, in
//! `config/explo-shim.toml`. Resolution fails with a message that names the key and where the
//! bad value came from; `main` turns that into exit code 64 (EX_USAGE) before anything listens.
//!
//! [`file`] is the file as written; [`sourced`] parses one value and names its source; this
//! module holds the resolved settings and resolves each section; [`render`] writes them back as
//! a file for `--check-config`, and is the list of settings the reference file is tested
//! against.

mod file;
mod overrides;
pub(crate) mod policy;
pub mod read;
pub mod render;
mod sourced;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::legacy::reply::ReplyOptions;
use crate::legacy::retirement::schedule::parse_interval;
use crate::legacy::retirement::{AfterSunset, Retirement};
use crate::message::fingerprint::{ANONYMOUS, is_fingerprint};
use crate::message::headers::deprecation::{DEFAULT_DEPRECATION_DATE, DeprecationHeaders};
use file::FileConfig;
pub use overrides::{Overrides, Setting};
use sourced::{chosen, chosen_or_default, parse_date, positive, small_positive};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
pub const DEFAULT_UPSTREAM: &str = "https://api.explo.co";
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle upstream connections kept for reuse; a burst's extra connections close when it ends,
/// so memory falls back after a load peak.
pub const DEFAULT_UPSTREAM_POOL_MAX_IDLE: u64 = 64;
/// Largest legacy request body read into memory (1 MiB; the documented bodies are < 1 KiB).
pub const DEFAULT_LEGACY_BODY_BYTES: u64 = 1024 * 1024;
/// Largest upstream reply (after decompression) read into memory to build a legacy reply.
pub const DEFAULT_UPSTREAM_REPLY_BYTES: u64 = 8 * 1024 * 1024;
/// A client that has not finished sending its request headers by then is disconnected.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long the shim keeps accepting after SIGTERM, with `/readyz` at 503, before the drain
/// begins: zero by default, since only a load balancer or endpoint list that lags the signal
/// needs it (see docs/operators/deployment.md).
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;
/// The log filter when neither `RUST_LOG` nor `log_level` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// A streamed pass-through body (either direction) silent this long is aborted; a legacy body
/// silent this long is answered 408.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole legacy request body must have arrived within this long of its head (408 past it),
/// so a client that drips a byte at a time cannot hold an in-flight slot for hours.
pub const DEFAULT_LEGACY_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// A reply the client accepts nothing of for this long (measured between two writes that
/// made progress, as nginx's `send_timeout`, not over the whole reply) is cut off: its
/// HTTP/1.1 connection closed, its HTTP/2 stream reset.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line plus headers), in bytes; larger gets 431. hyper's
/// read buffer cannot be smaller than 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// Most header fields in one request; more gets 431.
pub const DEFAULT_MAX_HEADERS: u64 = 100;
/// Requests served at once; past this the shim answers 503 at once instead of queueing.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1024;
/// Open client connections; past this the shim stops accepting (the kernel backlog holds
/// the rest), so memory stays bounded however many clients connect. Chosen with
/// [`DEFAULT_MAX_IN_FLIGHT`] so that both caps reached at once stay under the sidecar
/// example's 128 MiB (115 MB measured by `benches/soak.sh`; docs/design/memory.md's formula).
pub const DEFAULT_MAX_CONNECTIONS: u64 = 2048;
/// Distinct client fingerprints tracked in metrics and `/usage`; the rest count as `other`.
pub const DEFAULT_MAX_TRACKED_CLIENTS: u64 = 1000;
/// Explo's documented limit: 180 requests per minute per source IP.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u64 = 180;
/// Calls that may go at once from a full bucket.
pub const DEFAULT_RATE_LIMIT_BURST: u64 = 30;
/// A call that would wait longer than this for the budget is refused with 429.
pub const DEFAULT_RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(10);
/// The longest an upstream 429's `Retry-After` holds every call (and, in a fleet, every
/// replica): a longer one is cut to this. Past it the shim tries the upstream again, which
/// answers 429 again if it still means it.
pub const DEFAULT_MAX_UPSTREAM_HOLD: Duration = Duration::from_secs(10 * 60);
/// The most `rate_limit.max_upstream_hold` may be set to: a hold of hours would be an outage
/// chosen by the upstream's reply, not a pause.
pub const MAX_UPSTREAM_HOLD_CEILING: Duration = Duration::from_secs(60 * 60);
/// The longest one Redis round trip may take before the replica uses its own budget instead.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(25);

/// The longest any duration setting (timeouts, waits, the grace period) may be: none is
/// meant to last more than a day, and a longer one (up to `u64::MAX` seconds parses) would
/// overflow the clock when armed.
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest client name `[clients]` may give, in characters: a team or service name, not
/// a description; it is shown in tables and log lines.
pub const MAX_CLIENT_NAME_CHARS: usize = 64;

/// The most serving threads `workers` may ask for: more would only cost memory.
pub const MAX_WORKERS: usize = 256;

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
    /// `redis://` or `rediss://`; may hold a password, so it is never printed whole.
    pub redis_url: String,
    /// Replicas with the same key share a budget and a usage view.
    pub key: String,
    /// The most one Redis round trip may take.
    pub timeout: Duration,
}

impl FleetSettings {
    /// The URL with its password replaced by `<redacted>` (the user name, if any, is kept),
    /// for logs and `--check-config`.
    pub fn redacted_url(&self) -> String {
        let Some((scheme, rest)) = self.redis_url.split_once("://") else {
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
            None => self.redis_url.clone(),
        }
    }
}

/// What `--check-config` and the logs show instead of a password.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSettings")
            .field("redis_url", &self.redacted_url())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
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
    /// Resolves the configuration from `overrides` (flags and environment) and the file they
    /// name, if any.
    pub fn resolve(overrides: &Overrides) -> Result<Config, ConfigError> {
        let (file, file_origin) = match &overrides.config {
            Some(path) => (file::read(path)?, format!("config file {}", path.display())),
            None => (FileConfig::default(), String::new()),
        };
        let origin = file_origin.as_str();
        // The file may say `workers = 4` or `workers = "auto"`.
        let file_workers = file.workers.as_ref().map(|value| match value {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        let upstream = resolve_upstream(&file.upstream, overrides, origin)?;
        let fleet = resolve_fleet(&file.rate_limit, overrides, origin, &upstream)?;
        Ok(Config {
            listen: chosen_or_default(
                "listen",
                overrides.listen.as_ref(),
                file.listen.as_deref(),
                origin,
                DEFAULT_LISTEN,
            )
            .socket_addr()?,
            admin: chosen_or_default(
                "admin",
                overrides.admin.as_ref(),
                file.admin.as_deref(),
                origin,
                DEFAULT_ADMIN,
            )
            .socket_addr()?,
            workers: chosen_or_default(
                "workers",
                overrides.workers.as_ref(),
                file_workers.as_deref(),
                origin,
                "auto",
            )
            .workers()?,
            log_format: chosen_or_default(
                "log_format",
                overrides.log_format.as_ref(),
                file.log_format.as_deref(),
                origin,
                "text",
            )
            .log_format()?,
            log_level: chosen_or_default(
                "log_level",
                overrides.log_level.as_ref(),
                file.log_level.as_deref(),
                origin,
                DEFAULT_LOG_LEVEL,
            )
            .log_filter()?,
            access_log: match chosen("access_log", overrides.access_log.as_ref(), None, origin) {
                Some(sourced) => sourced.switch()?,
                None => file.access_log.unwrap_or(false),
            },
            upstream,
            limits: resolve_limits(&file.limits, overrides, origin)?,
            legacy: ReplyOptions {
                team_id: file.legacy.team_id.map(serde_json::Number::from),
                api_environment_tags: file.legacy.api_environment_tag,
                extra_customer_keys: file.legacy.extra_customer_keys,
            },
            legacy_behaviour: LegacyBehaviour {
                refuse_cascading_delete: file.legacy.refuse_cascading_delete.unwrap_or(true),
            },
            rate_limit: resolve_rate_limit(&file.rate_limit, origin)?,
            fleet,
            deprecation: resolve_deprecation(&file.deprecation, overrides, origin)?,
            tls: resolve_tls(&file.tls, origin)?,
            shutdown_grace: duration(
                "shutdown.grace",
                None,
                &file.shutdown.grace,
                origin,
                DEFAULT_SHUTDOWN_GRACE,
            )?,
            // Zero is allowed, and the default: drain at once.
            shutdown_delay: chosen(
                "shutdown.delay",
                overrides.shutdown_delay.as_ref(),
                file.shutdown.delay.as_deref(),
                origin,
            )
            .map(|sourced| sourced.duration_or_zero())
            .unwrap_or(Ok(DEFAULT_SHUTDOWN_DELAY))?,
            clients: resolve_clients(file.clients, origin)?,
            admin_token_file: file
                .admin_token_file
                .as_deref()
                .map(str::trim)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
            admin_allowed_hosts: resolve_admin_allowed_hosts(
                overrides.admin_allowed_hosts.as_ref(),
                file.admin_allowed_hosts.as_deref(),
                origin,
            )?,
        })
    }
}

/// The longest DNS name, in characters (RFC 1035 §2.3.4, without the trailing dot).
const MAX_HOST_NAME_CHARS: usize = 253;
/// The longest label of a DNS name, in characters (RFC 1035 §2.3.4).
const MAX_HOST_LABEL_CHARS: usize = 63;

/// `admin_allowed_hosts`: host names as a browser sends them in `Host` (no port, no scheme,
/// no wildcard), lower-cased. A flag or variable holds a comma-separated list and replaces
/// the file's.
fn resolve_admin_allowed_hosts(
    setting: Option<&Setting>,
    file_list: Option<&[String]>,
    origin: &str,
) -> Result<BTreeSet<String>, ConfigError> {
    let (names, names_origin): (Vec<String>, &str) = match setting {
        Some(setting) => (
            setting
                .value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
            setting.origin,
        ),
        None => (file_list.unwrap_or_default().to_vec(), origin),
    };
    names
        .into_iter()
        .map(|name| {
            let lower = name.trim().trim_end_matches('.').to_ascii_lowercase();
            let is_label = |label: &str| {
                (1..=MAX_HOST_LABEL_CHARS).contains(&label.len())
                    && label
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            };
            if lower.len() > MAX_HOST_NAME_CHARS || !lower.split('.').all(is_label) {
                return Err(ConfigError(format!(
                    "invalid `admin_allowed_hosts` entry {name:?} (from {names_origin}): expected \
                     a host name as the browser sends it in Host, e.g. \"shim.internal\", \
                     without a scheme, port or wildcard"
                )));
            }
            Ok(lower)
        })
        .collect()
}

fn resolve_upstream(
    file: &file::FileUpstream,
    overrides: &Overrides,
    origin: &str,
) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        url: chosen_or_default(
            "upstream.url",
            overrides.upstream.as_ref(),
            file.url.as_deref(),
            origin,
            DEFAULT_UPSTREAM,
        )
        .upstream_url()?,
        connect_timeout: duration(
            "upstream.connect_timeout",
            None,
            &file.connect_timeout,
            origin,
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        )?,
        timeout: duration(
            "upstream.timeout",
            overrides.upstream_timeout.as_ref(),
            &file.timeout,
            origin,
            DEFAULT_UPSTREAM_TIMEOUT,
        )?,
        pool_idle_timeout: duration(
            "upstream.pool_idle_timeout",
            None,
            &file.pool_idle_timeout,
            origin,
            DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT,
        )?,
        // Zero is allowed: no idle connections kept, every call connects afresh.
        pool_max_idle: usize::try_from(
            file.pool_max_idle.unwrap_or(DEFAULT_UPSTREAM_POOL_MAX_IDLE),
        )
        .unwrap_or(usize::MAX),
        ca_file: file
            .ca_file
            .as_deref()
            .filter(|path| !path.trim().is_empty())
            .map(PathBuf::from),
        add_x_forwarded_for: file.add_x_forwarded_for.unwrap_or(false),
    })
}

fn resolve_limits(
    file: &file::FileLimits,
    overrides: &Overrides,
    origin: &str,
) -> Result<Limits, ConfigError> {
    let limits = Limits {
        legacy_body_bytes: positive(
            "limits.legacy_body_bytes",
            file.legacy_body_bytes,
            DEFAULT_LEGACY_BODY_BYTES,
        )?,
        upstream_reply_bytes: positive(
            "limits.upstream_reply_bytes",
            file.upstream_reply_bytes,
            DEFAULT_UPSTREAM_REPLY_BYTES,
        )?,
        header_read_timeout: duration(
            "limits.header_read_timeout",
            None,
            &file.header_read_timeout,
            origin,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        body_idle_timeout: duration(
            "limits.body_idle_timeout",
            None,
            &file.body_idle_timeout,
            origin,
            DEFAULT_BODY_IDLE_TIMEOUT,
        )?,
        legacy_body_timeout: duration(
            "limits.legacy_body_timeout",
            None,
            &file.legacy_body_timeout,
            origin,
            DEFAULT_LEGACY_BODY_TIMEOUT,
        )?,
        send_timeout: duration(
            "limits.send_timeout",
            overrides.send_timeout.as_ref(),
            &file.send_timeout,
            origin,
            DEFAULT_SEND_TIMEOUT,
        )?,
        max_header_bytes: positive(
            "limits.max_header_bytes",
            file.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
        )?,
        max_headers: positive("limits.max_headers", file.max_headers, DEFAULT_MAX_HEADERS)?,
        max_in_flight: positive(
            "limits.max_in_flight",
            file.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
        )?,
        max_connections: positive(
            "limits.max_connections",
            file.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?,
        max_tracked_clients: positive(
            "limits.max_tracked_clients",
            file.max_tracked_clients,
            DEFAULT_MAX_TRACKED_CLIENTS,
        )?,
    };
    if limits.max_header_bytes < MIN_MAX_HEADER_BYTES {
        return Err(ConfigError(format!(
            "invalid `limits.max_header_bytes` = {}: must be at least {MIN_MAX_HEADER_BYTES}",
            limits.max_header_bytes
        )));
    }
    for (key, value) in [
        ("limits.max_headers", limits.max_headers),
        ("limits.max_in_flight", limits.max_in_flight),
        ("limits.max_connections", limits.max_connections),
        ("limits.max_header_bytes", limits.max_header_bytes),
    ] {
        if value > u64::from(u32::MAX) {
            return Err(ConfigError(format!("invalid `{key}` = {value}: too large")));
        }
    }
    Ok(limits)
}

fn resolve_rate_limit(
    file: &file::FileRateLimit,
    origin: &str,
) -> Result<Option<RateLimit>, ConfigError> {
    if !file.enabled.unwrap_or(true) {
        return Ok(None);
    }
    let max_upstream_hold = duration(
        "rate_limit.max_upstream_hold",
        None,
        &file.max_upstream_hold,
        origin,
        DEFAULT_MAX_UPSTREAM_HOLD,
    )?;
    if max_upstream_hold > MAX_UPSTREAM_HOLD_CEILING {
        return Err(ConfigError(format!(
            "invalid `rate_limit.max_upstream_hold` = {:?} (from {origin}): at most {} \
             (a longer hold would let one upstream reply stop every call for hours)",
            file.max_upstream_hold.as_deref().unwrap_or_default(),
            humantime::format_duration(MAX_UPSTREAM_HOLD_CEILING)
        )));
    }
    Ok(Some(RateLimit {
        per_minute: small_positive(
            "rate_limit.per_minute",
            file.per_minute,
            DEFAULT_RATE_LIMIT_PER_MINUTE,
        )?,
        burst: small_positive("rate_limit.burst", file.burst, DEFAULT_RATE_LIMIT_BURST)?,
        // Zero is allowed: never wait, refuse at once.
        max_wait: chosen(
            "rate_limit.max_wait",
            None,
            file.max_wait.as_deref(),
            origin,
        )
        .map(|sourced| sourced.duration_or_zero())
        .unwrap_or(Ok(DEFAULT_RATE_LIMIT_MAX_WAIT))?,
        max_upstream_hold,
    }))
}

fn resolve_fleet(
    file: &file::FileRateLimit,
    overrides: &Overrides,
    origin: &str,
    upstream: &UpstreamConfig,
) -> Result<Option<FleetSettings>, ConfigError> {
    let Some(url) = chosen(
        "rate_limit.redis_url",
        overrides.rate_limit_redis_url.as_ref(),
        file.redis_url.as_deref(),
        origin,
    )
    .filter(|sourced| !sourced.is_blank()) else {
        return Ok(None);
    };
    let redis_url = url.redis_url()?;
    let key = match file.key.as_deref().map(str::trim) {
        None => upstream.url.to_string(),
        Some("") => {
            return Err(ConfigError(format!(
                "invalid `rate_limit.key` (from {origin}): must not be empty"
            )));
        }
        Some(key) => key.to_owned(),
    };
    Ok(Some(FleetSettings {
        redis_url,
        key,
        timeout: duration(
            "rate_limit.redis_timeout",
            None,
            &file.redis_timeout,
            origin,
            DEFAULT_REDIS_TIMEOUT,
        )?,
    }))
}

fn resolve_deprecation(
    file: &file::FileDeprecation,
    overrides: &Overrides,
    origin: &str,
) -> Result<DeprecationDates, ConfigError> {
    let deprecated_at = match &file.date {
        Some(date) => parse_date("deprecation.date", date, origin)?,
        None => SystemTime::UNIX_EPOCH + DEFAULT_DEPRECATION_DATE,
    };
    let sunset_at = match file.sunset.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(date) => Some(parse_date("deprecation.sunset", date, origin)?),
    };
    if DeprecationHeaders::new(deprecated_at, sunset_at).is_err() {
        return Err(ConfigError(format!(
            "invalid `deprecation.sunset` (from {origin}): {} is earlier than the deprecation date {}",
            humantime::format_rfc3339_seconds(sunset_at.unwrap_or(deprecated_at)),
            humantime::format_rfc3339_seconds(deprecated_at)
        )));
    }
    // A flag or variable holds a comma-separated list and replaces the file's.
    let list = |setting: Option<&Setting>, file_list: &Option<Vec<String>>| match setting {
        Some(setting) => (
            setting
                .value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            setting.origin,
        ),
        None => (file_list.clone().unwrap_or_default(), origin),
    };
    let (brownouts, brownouts_origin) = list(overrides.brownouts.as_ref(), &file.brownouts);
    let windows = brownouts
        .iter()
        .map(|text| {
            parse_interval(text).map_err(|reason| {
                ConfigError(format!(
                    "invalid `deprecation.brownouts` entry {text:?} (from {brownouts_origin}): \
                     {reason}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let after_sunset = match chosen(
        "deprecation.after_sunset",
        overrides.after_sunset.as_ref(),
        file.after_sunset.as_deref(),
        origin,
    ) {
        None => AfterSunset::Serve,
        Some(sourced) => sourced.after_sunset()?,
    };
    if after_sunset == AfterSunset::Refuse && sunset_at.is_none() {
        return Err(ConfigError(format!(
            "invalid `deprecation.after_sunset` = \"refuse\" (from {origin}): set \
             `deprecation.sunset` too, or the shim cannot know when to refuse"
        )));
    }
    let (exempt, exempt_origin) = list(overrides.exempt_clients.as_ref(), &file.exempt_clients);
    for fingerprint in &exempt {
        if fingerprint == ANONYMOUS {
            return Err(ConfigError(format!(
                "invalid `deprecation.exempt_clients` entry \"{ANONYMOUS}\" (from \
                 {exempt_origin}): \"{ANONYMOUS}\" is every caller that sends no \
                 Explo-Authorization, so exempting it would let anyone through brownouts and \
                 the sunset by leaving the header out; exempt the fingerprint of the \
                 integration instead"
            )));
        }
        if !is_fingerprint(fingerprint) {
            return Err(ConfigError(format!(
                "invalid `deprecation.exempt_clients` entry {fingerprint:?} (from \
                 {exempt_origin}): expected a client fingerprint, 12 lower-case hex digits as \
                 in the logs, /metrics and /usage"
            )));
        }
    }
    Ok(DeprecationDates {
        deprecated_at,
        sunset_at,
        retirement: Retirement::new(
            windows,
            sunset_at,
            after_sunset,
            exempt.into_iter().collect(),
        ),
    })
}

/// `[clients]`: every key a fingerprint, every name short, printable and unique, so that a
/// name can stand for one client wherever it is shown.
fn resolve_clients(
    clients: BTreeMap<String, String>,
    origin: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut seen = BTreeMap::new();
    for (fingerprint, name) in &clients {
        let invalid = |reason: &str| {
            ConfigError(format!(
                "invalid `clients` entry {fingerprint:?} = {name:?} (from {origin}): {reason}"
            ))
        };
        if !is_fingerprint(fingerprint) {
            return Err(invalid(
                "the key must be a client fingerprint, 12 lower-case hex digits as in the logs, \
                 /metrics and /usage (`explo-shim fingerprint` computes one)",
            ));
        }
        let length = name.chars().count();
        if name.trim().is_empty() || length > MAX_CLIENT_NAME_CHARS {
            return Err(invalid(&format!(
                "a name is 1 to {MAX_CLIENT_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("a name may not hold control characters"));
        }
        if let Some(other) = seen.insert(name.as_str(), fingerprint.as_str()) {
            return Err(invalid(&format!(
                "{other} has the same name; give each client its own"
            )));
        }
    }
    Ok(clients)
}

fn resolve_tls(file: &file::FileTls, origin: &str) -> Result<Option<TlsFiles>, ConfigError> {
    let non_empty = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (non_empty(&file.cert_file), non_empty(&file.key_file)) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
        })),
        _ => Err(ConfigError(format!(
            "invalid `tls` (from {origin}): set both `tls.cert_file` and `tls.key_file`, or neither"
        ))),
    }
}

/// A duration from a flag or variable, else the file, else `default`.
fn duration(
    key: &'static str,
    setting: Option<&Setting>,
    file_value: &Option<String>,
    origin: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    chosen(key, setting, file_value.as_deref(), origin)
        .map(|sourced| sourced.duration())
        .unwrap_or(Ok(default))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(value: &str, origin: &'static str) -> Option<Setting> {
        Some(Setting {
            value: value.to_owned(),
            origin,
        })
    }

    fn write_config(text: &str) -> (tempfile_path::TempPath, Overrides) {
        let path = tempfile_path::TempPath::new(text);
        let overrides = Overrides {
            config: Some(path.0.clone()),
            ..Overrides::default()
        };
        (path, overrides)
    }

    /// A file under the target dir that is removed when dropped.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempPath(pub PathBuf);

        impl TempPath {
            pub fn new(text: &str) -> Self {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "explo-shim-config-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }
        }

        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let config = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.admin.to_string(), DEFAULT_ADMIN);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.upstream.url.to_string(), DEFAULT_UPSTREAM);
        assert_eq!(config.upstream.timeout, DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(config.limits.legacy_body_bytes, DEFAULT_LEGACY_BODY_BYTES);
        assert_eq!(config.legacy, ReplyOptions::default());
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }

    #[test]
    fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/explo-shim.toml");
        let overrides = Overrides {
            config: Some(path.into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(&overrides).unwrap(),
            Config::resolve(&Overrides::default()).unwrap()
        );
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let (_file, mut overrides) = write_config(
            "listen = \"127.0.0.1:1111\"\nadmin = \"127.0.0.1:2222\"\n[upstream]\ntimeout = \"7s\"\n",
        );
        overrides.listen = setting("127.0.0.1:3333", "--listen");
        let config = Config::resolve(&overrides).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3333");
        assert_eq!(config.admin.to_string(), "127.0.0.1:2222");
        assert_eq!(config.upstream.timeout, Duration::from_secs(7));
        overrides.upstream_timeout = setting("500ms", "EXPLO_SHIM_UPSTREAM_TIMEOUT");
        assert_eq!(
            Config::resolve(&overrides).unwrap().upstream.timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn send_timeout_comes_from_the_flag_then_the_file_then_the_default_and_is_bounded() {
        let defaults = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(defaults.limits.send_timeout, DEFAULT_SEND_TIMEOUT);
        let (_file, mut overrides) = write_config("[limits]\nsend_timeout = \"7s\"\n");
        assert_eq!(
            Config::resolve(&overrides).unwrap().limits.send_timeout,
            Duration::from_secs(7)
        );
        overrides.send_timeout = setting("1500ms", "--send-timeout");
        assert_eq!(
            Config::resolve(&overrides).unwrap().limits.send_timeout,
            Duration::from_millis(1500)
        );
        // Zero would cut off every reply that waits at all; past a day is refused like every
        // other duration.
        for bad in ["0s", "25h", "soon"] {
            overrides.send_timeout = setting(bad, "EXPLO_SHIM_SEND_TIMEOUT");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("limits.send_timeout") && error.contains("EXPLO_SHIM_SEND_TIMEOUT"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let (_file, overrides) = write_config("[upstream]\nurll = \"https://x\"\n");
        let error = Config::resolve(&overrides).unwrap_err().to_string();
        assert!(error.contains("urll"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_origin() {
        let overrides = Overrides {
            upstream_timeout: setting("soon", "EXPLO_SHIM_UPSTREAM_TIMEOUT"),
            ..Overrides::default()
        };
        let error = Config::resolve(&overrides).unwrap_err().to_string();
        assert!(
            error.contains("upstream.timeout") && error.contains("EXPLO_SHIM_UPSTREAM_TIMEOUT"),
            "{error}"
        );

        for (bad, key) in [
            ("listen = \"localhost\"", "listen"),
            ("log_format = \"xml\"", "log_format"),
            ("[upstream]\nurl = \"ftp://x\"", "upstream.url"),
            ("[upstream]\nurl = \"https://u:p@x\"", "upstream.url"),
            (
                "[upstream]\nurl = \"http://127.0.0.1:88537\"",
                "upstream.url",
            ),
            (
                "[upstream]\nurl = \"https://api.explo.co:4430000\"",
                "upstream.url",
            ),
            ("[upstream]\ntimeout = \"0s\"", "upstream.timeout"),
            (
                "[limits]\nlegacy_body_bytes = 0",
                "limits.legacy_body_bytes",
            ),
            ("[shutdown]\ngrace = \"forever\"", "shutdown.grace"),
            (
                "[limits]\nmax_header_bytes = 100",
                "limits.max_header_bytes",
            ),
            ("[limits]\nmax_in_flight = 0", "limits.max_in_flight"),
            ("[rate_limit]\nper_minute = 0", "rate_limit.per_minute"),
            ("[deprecation]\ndate = \"yesterday\"", "deprecation.date"),
            ("[tls]\ncert_file = \"/x.pem\"", "tls"),
            (
                "[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2025-01-01\"",
                "deprecation.sunset",
            ),
            ("[rate_limit]\nmax_wait = \"x\"", "rate_limit.max_wait"),
            ("[rate_limit]\nmax_wait = \"25h\"", "rate_limit.max_wait"),
            (
                "[upstream]\ntimeout = \"18446744073709551615s\"",
                "upstream.timeout",
            ),
            (
                "[upstream]\nconnect_timeout = \"18446744073709551616s\"",
                "upstream.connect_timeout",
            ),
            ("[shutdown]\ngrace = \"584942417355y\"", "shutdown.grace"),
            (
                "[limits]\nheader_read_timeout = \"2days\"",
                "limits.header_read_timeout",
            ),
            (
                "[rate_limit]\nredis_url = \"redis://r\"\nredis_timeout = \"99999999h\"",
                "rate_limit.redis_timeout",
            ),
            (
                "[deprecation]\nsunset = \"2026-12-31T23:59:60Z\"",
                "deprecation.sunset",
            ),
            (
                "[deprecation]\ndate = \"2016-12-31T23:59:60Z\"",
                "deprecation.date",
            ),
            (
                "[deprecation]\nexempt_clients = [\"anonymous\"]",
                "deprecation.exempt_clients",
            ),
            (
                "[deprecation]\nbrownouts = [\"2026-12-01T00:00:00Z/P30000000000000W\"]",
                "deprecation.brownouts",
            ),
            (
                "[deprecation]\nbrownouts = [\"2026-12-01T23:59:60Z/PT1H\"]",
                "deprecation.brownouts",
            ),
            (
                "[rate_limit]\nmax_upstream_hold = \"61m\"",
                "rate_limit.max_upstream_hold",
            ),
            (
                "[rate_limit]\nmax_upstream_hold = \"0s\"",
                "rate_limit.max_upstream_hold",
            ),
            (
                "[legacy]\nrefuse_cascading_delete = \"yes\"",
                "refuse_cascading_delete",
            ),
            ("[clients]\nbilling = \"billing-service\"", "clients"),
            ("[clients]\n\"89b20371356a\" = \" \"", "clients"),
            ("[clients]\n\"89b20371356a\" = \"a\\nb\"", "clients"),
            (
                "[clients]\n\"89b20371356a\" = \"billing\"\n\"64cc961af68c\" = \"billing\"",
                "clients",
            ),
            ("log_level = \"info,=[\"", "log_level"),
            ("access_log = \"yes\"", "access_log"),
            ("[shutdown]\ndelay = \"25h\"", "shutdown.delay"),
        ] {
            let (_file, overrides) = write_config(bad);
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn upstream_url_keeps_a_path_prefix_without_trailing_slash() {
        let overrides = Overrides {
            upstream: setting("http://127.0.0.1:9/explo/", "--upstream"),
            ..Overrides::default()
        };
        let url = Config::resolve(&overrides).unwrap().upstream.url;
        assert_eq!(url.scheme, http::uri::Scheme::HTTP);
        assert_eq!(url.authority.as_str(), "127.0.0.1:9");
        assert_eq!(url.path_prefix, "/explo");
    }

    #[test]
    fn legacy_reply_options_are_read() {
        let (_file, overrides) = write_config(
            "[legacy]\nteam_id = 113\nextra_customer_keys = true\n[legacy.api_environment_tag]\nProduction = \"Customer\"\n",
        );
        let legacy = Config::resolve(&overrides).unwrap().legacy;
        assert_eq!(legacy.team_id, Some(113.into()));
        assert!(legacy.extra_customer_keys);
        assert_eq!(legacy.api_environment_tags["Production"], "Customer");
    }

    #[test]
    fn a_fleet_shares_by_the_upstream_url_unless_keyed_and_never_shows_its_password() {
        let (_file, mut overrides) =
            write_config("[rate_limit]\nredis_url = \"redis://:s3cret@redis.internal:6380/2\"\n");
        let fleet = Config::resolve(&overrides).unwrap().fleet.unwrap();
        assert_eq!(fleet.key, "https://api.explo.co");
        assert_eq!(fleet.timeout, DEFAULT_REDIS_TIMEOUT);
        assert_eq!(
            fleet.redacted_url(),
            "redis://:<redacted>@redis.internal:6380/2"
        );
        assert!(!format!("{fleet:?}").contains("s3cret"));
        // The flag wins over the file; an empty value means no fleet.
        overrides.rate_limit_redis_url = setting("", "EXPLO_SHIM_RATE_LIMIT_REDIS_URL");
        assert_eq!(Config::resolve(&overrides).unwrap().fleet, None);
        let (_file, overrides) =
            write_config("[rate_limit]\nredis_url = \"rediss://r:6379\"\nkey = \"egress-a\"\n");
        assert_eq!(
            Config::resolve(&overrides).unwrap().fleet.unwrap().key,
            "egress-a"
        );
    }

    #[test]
    fn the_retirement_schedule_is_read_from_the_file_and_replaced_by_flags() {
        let (_file, mut overrides) = write_config(
            "[deprecation]\nsunset = \"2027-03-01\"\nafter_sunset = \"refuse\"\n\
             brownouts = [\"2026-12-08T15:00:00Z/PT5M\", \"2026-12-15T15:00:00Z/2026-12-15T15:10:00Z\"]\n\
             exempt_clients = [\"64cc961af68c\"]\n",
        );
        let retirement = Config::resolve(&overrides).unwrap().deprecation.retirement;
        assert_eq!(retirement.windows().len(), 2);
        assert!(retirement.is_exempt("64cc961af68c"));
        overrides.brownouts = setting("2026-12-08T15:00:00Z/PT1H", "--brownouts");
        overrides.exempt_clients = setting("aaaaaaaaaaaa, bbbbbbbbbbbb", "--exempt-clients");
        let retirement = Config::resolve(&overrides).unwrap().deprecation.retirement;
        assert_eq!(retirement.windows().len(), 1);
        assert!(retirement.is_exempt("bbbbbbbbbbbb") && !retirement.is_exempt("64cc961af68c"));
    }

    #[test]
    fn admin_allowed_hosts_are_names_read_from_the_file_and_replaced_by_flags() {
        assert!(
            Config::resolve(&Overrides::default())
                .unwrap()
                .admin_allowed_hosts
                .is_empty()
        );
        let (_file, mut overrides) =
            write_config("admin_allowed_hosts = [\"Shim.Internal.\", \"metrics-1\"]\n");
        let hosts = Config::resolve(&overrides).unwrap().admin_allowed_hosts;
        assert_eq!(
            hosts.into_iter().collect::<Vec<_>>(),
            ["metrics-1", "shim.internal"]
        );
        overrides.admin_allowed_hosts = setting("a.example, b.example", "--admin-allowed-hosts");
        let hosts = Config::resolve(&overrides).unwrap().admin_allowed_hosts;
        assert_eq!(
            hosts.into_iter().collect::<Vec<_>>(),
            ["a.example", "b.example"]
        );
        for bad in [
            "shim.internal:9090",
            "*.example",
            "http://shim",
            "a..b",
            "-a.example",
        ] {
            overrides.admin_allowed_hosts = setting(bad, "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("admin_allowed_hosts")
                    && error.contains("EXPLO_SHIM_ADMIN_ALLOWED_HOSTS"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn deprecation_dates_accept_dates_and_date_times() {
        let (_file, overrides) = write_config(
            "[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2026-10-15T12:00:00Z\"\n",
        );
        let dates = Config::resolve(&overrides).unwrap().deprecation;
        assert_eq!(
            dates.deprecated_at,
            SystemTime::UNIX_EPOCH + DEFAULT_DEPRECATION_DATE
        );
        assert_eq!(
            dates.sunset_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_792_065_600))
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let overrides = Overrides {
            config: Some("/nonexistent/explo.toml".into()),
            ..Overrides::default()
        };
        assert!(
            Config::resolve(&overrides)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/explo.toml")
        );
    }

    /// A file that sets every key to something other than its default.
    const RICH_FILE: &str = r#"
listen = "127.0.0.1:1111"
admin = "[::1]:2222"
workers = 3
log_format = "json"
log_level = "warn,explo_shim=debug"
access_log = true
[upstream]
url = "http://127.0.0.1:9/explo/"
connect_timeout = "1500ms"
timeout = "1m 30s"
pool_idle_timeout = "2m"
pool_max_idle = 0
ca_file = "/etc/ssl/extra roots.pem"
add_x_forwarded_for = true
[limits]
legacy_body_bytes = 2048
upstream_reply_bytes = 4096
header_read_timeout = "3s"
body_idle_timeout = "4s"
legacy_body_timeout = "5s"
send_timeout = "6s"
max_header_bytes = 9000
max_headers = 50
max_in_flight = 10
max_connections = 20
max_tracked_clients = 30
[rate_limit]
per_minute = 60
burst = 5
max_wait = "0s"
max_upstream_hold = "1h"
redis_url = "redis://ops:s3cret@redis.internal:6380/2"
key = "egress-a"
redis_timeout = "40ms"
[legacy]
team_id = 113
extra_customer_keys = true
refuse_cascading_delete = false
[legacy.api_environment_tag]
Production = "Customer"
"Data team" = "Testing"
[tls]
cert_file = "/etc/tls/cert.pem"
key_file = "/etc/tls/key.pem"
[deprecation]
date = "2025-11-01"
sunset = "2027-03-01T12:30:00.5Z"
brownouts = ["2026-12-08T15:00:00Z/PT5M", "2026-12-15T15:00:00Z/2026-12-15T16:30:00Z"]
after_sunset = "refuse"
exempt_clients = ["64cc961af68c", "aaaaaaaaaaaa"]
[shutdown]
delay = "5s"
grace = "45s"
"#;

    /// `--check-config`'s output, fed back as the config file, gives the same settings; only
    /// the Redis password is lost to the redaction.
    #[test]
    fn the_rendered_config_resolves_to_the_same_config() {
        let (_file, mut overrides) = write_config(RICH_FILE);
        // A variable on top: its value is written like the file's.
        overrides.upstream_timeout = setting("7s", "EXPLO_SHIM_UPSTREAM_TIMEOUT");
        let rich = Config::resolve(&overrides).unwrap();
        assert_ne!(rich, Config::resolve(&Overrides::default()).unwrap());
        let (_rate_limit_off, off) = write_config("[rate_limit]\nenabled = false\n");
        for (config, overrides) in [
            (rich, overrides),
            (Config::resolve(&off).unwrap(), off),
            (
                Config::resolve(&Overrides::default()).unwrap(),
                Overrides::default(),
            ),
        ] {
            let text = render::effective_config(&config, &overrides).unwrap();
            assert!(!text.contains("s3cret"), "{text}");
            let (_rendered, again) = write_config(&text);
            let mut expected = config.clone();
            if let Some(fleet) = &mut expected.fleet {
                fleet.redis_url = fleet.redacted_url();
            }
            assert_eq!(Config::resolve(&again).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn workers_are_auto_by_default_and_validated() {
        let config = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(config.workers, None);
        assert!(config.worker_threads() >= 1);
        let (_file, mut overrides) = write_config("workers = 3\n");
        assert_eq!(Config::resolve(&overrides).unwrap().worker_threads(), 3);
        overrides.workers = setting("auto", "--workers");
        assert_eq!(Config::resolve(&overrides).unwrap().workers, None);
        for bad in ["0", "-1", "many", "100000"] {
            overrides.workers = setting(bad, "--workers");
            let error = Config::resolve(&overrides).unwrap_err().to_string();
            assert!(
                error.contains("`workers`") && error.contains("--workers"),
                "{error}"
            );
        }
    }
}
