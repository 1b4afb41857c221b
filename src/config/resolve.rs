//! Resolution: each setting from its flag or variable, else the file, else its default (the
//! settings table says which, and how each is parsed), put together into a [`Config`], with
//! the checks no single setting can make. The settings are read in a fixed order, so that of
//! two bad values the same one is always reported.

use std::time::SystemTime;

use super::defaults::MIN_MAX_HEADER_BYTES;
use super::file::{self, FileValues};
use super::sourced::{Raw, Sourced};
use super::spec::{Fallback, Spec};
use super::table::*;
use super::{
    Config, ConfigError, DeprecationDates, FleetSettings, LegacyBehaviour, Limits, Overrides,
    RateLimit, SentinelSettings, TlsFiles, UpstreamConfig,
};
use crate::legacy::reply::ReplyOptions;
use crate::legacy::retirement::{AfterSunset, Retirement};
use crate::message::headers::deprecation::DeprecationHeaders;

/// Where each setting's value may come from: the flags and variables, and the file.
struct Inputs<'a> {
    overrides: &'a Overrides,
    file: FileValues,
    /// `config file PATH`, or empty without a file.
    file_origin: String,
}

impl Inputs<'_> {
    /// The setting's value, parsed: from a flag or variable, else the file, else its default.
    fn get<T>(&self, spec: &Spec<T>) -> Result<T, ConfigError> {
        let key = spec.about.key;
        let given = match (self.overrides.given(key), self.file.get(key)) {
            (Some(setting), _) => Some(Sourced {
                key,
                value: Raw::Text(&setting.value),
                origin: setting.origin,
            }),
            (None, Some(value)) => Some(Sourced {
                key,
                value,
                origin: &self.file_origin,
            }),
            (None, None) => None,
        };
        match (given, &spec.default) {
            (Some(given), _) => (spec.parse)(&given),
            (None, Fallback::Text(text)) => (spec.parse)(&Sourced {
                key,
                value: Raw::Text(text),
                origin: "built-in default",
            }),
            (None, Fallback::Value(default)) => Ok(default()),
        }
    }
}

impl Config {
    /// Resolves the configuration from `overrides` (flags and environment) and the file they
    /// name, if any.
    pub fn resolve(overrides: &Overrides) -> Result<Config, ConfigError> {
        let (file, file_origin) = match &overrides.config {
            Some(path) => (file::read(path)?, format!("config file {}", path.display())),
            None => (FileValues::default(), String::new()),
        };
        let inputs = Inputs {
            overrides,
            file,
            file_origin,
        };
        let upstream = resolve_upstream(&inputs)?;
        let fleet = resolve_fleet(&inputs, &upstream)?;
        Ok(Config {
            listen: inputs.get(&LISTEN)?,
            admin: inputs.get(&ADMIN)?,
            workers: inputs.get(&WORKERS)?,
            log_format: inputs.get(&LOG_FORMAT)?,
            log_level: inputs.get(&LOG_LEVEL)?,
            access_log: inputs.get(&ACCESS_LOG)?,
            upstream,
            limits: resolve_limits(&inputs)?,
            legacy: ReplyOptions {
                team_id: inputs.get(&TEAM_ID)?,
                api_environment_tags: inputs.get(&API_ENVIRONMENT_TAG)?,
                extra_customer_keys: inputs.get(&EXTRA_CUSTOMER_KEYS)?,
            },
            legacy_behaviour: LegacyBehaviour {
                refuse_cascading_delete: inputs.get(&REFUSE_CASCADING_DELETE)?,
            },
            rate_limit: resolve_rate_limit(&inputs)?,
            fleet,
            deprecation: resolve_deprecation(&inputs)?,
            tls: resolve_tls(&inputs)?,
            shutdown_grace: inputs.get(&SHUTDOWN_GRACE)?,
            shutdown_delay: inputs.get(&SHUTDOWN_DELAY)?,
            clients: inputs.get(&CLIENTS)?,
            admin_token_file: inputs.get(&ADMIN_TOKEN_FILE)?,
            admin_allowed_hosts: inputs.get(&ADMIN_ALLOWED_HOSTS)?,
            watch_files: inputs.get(&WATCH_FILES)?,
        })
    }
}

fn resolve_upstream(inputs: &Inputs<'_>) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        url: inputs.get(&UPSTREAM_URL)?,
        connect_timeout: inputs.get(&UPSTREAM_CONNECT_TIMEOUT)?,
        timeout: inputs.get(&UPSTREAM_TIMEOUT)?,
        pool_idle_timeout: inputs.get(&UPSTREAM_POOL_IDLE_TIMEOUT)?,
        pool_max_idle: inputs.get(&UPSTREAM_POOL_MAX_IDLE)?,
        ca_file: inputs.get(&UPSTREAM_CA_FILE)?,
        add_x_forwarded_for: inputs.get(&UPSTREAM_ADD_X_FORWARDED_FOR)?,
    })
}

fn resolve_limits(inputs: &Inputs<'_>) -> Result<Limits, ConfigError> {
    let limits = Limits {
        legacy_body_bytes: inputs.get(&LEGACY_BODY_BYTES)?,
        upstream_reply_bytes: inputs.get(&UPSTREAM_REPLY_BYTES)?,
        header_read_timeout: inputs.get(&HEADER_READ_TIMEOUT)?,
        body_idle_timeout: inputs.get(&BODY_IDLE_TIMEOUT)?,
        legacy_body_timeout: inputs.get(&LEGACY_BODY_TIMEOUT)?,
        send_timeout: inputs.get(&SEND_TIMEOUT)?,
        max_header_bytes: inputs.get(&MAX_HEADER_BYTES)?,
        max_headers: inputs.get(&MAX_HEADERS)?,
        max_in_flight: inputs.get(&MAX_IN_FLIGHT)?,
        max_connections: inputs.get(&MAX_CONNECTIONS)?,
        max_tracked_clients: inputs.get(&MAX_TRACKED_CLIENTS)?,
    };
    if limits.max_header_bytes < MIN_MAX_HEADER_BYTES {
        return Err(ConfigError(format!(
            "invalid `limits.max_header_bytes` = {}: must be at least {MIN_MAX_HEADER_BYTES}",
            limits.max_header_bytes
        )));
    }
    // The server counts these in 32 bits.
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

/// The budget, unless `rate_limit.enabled` is off (its other settings are then not read).
fn resolve_rate_limit(inputs: &Inputs<'_>) -> Result<Option<RateLimit>, ConfigError> {
    if !inputs.get(&RATE_LIMIT_ENABLED)? {
        return Ok(None);
    }
    let max_upstream_hold = inputs.get(&RATE_LIMIT_MAX_UPSTREAM_HOLD)?;
    Ok(Some(RateLimit {
        per_minute: inputs.get(&RATE_LIMIT_PER_MINUTE)?,
        burst: inputs.get(&RATE_LIMIT_BURST)?,
        max_wait: inputs.get(&RATE_LIMIT_MAX_WAIT)?,
        max_upstream_hold,
    }))
}

/// The fleet, when `rate_limit.redis_url` or `rate_limit.redis_sentinels` is set (its other
/// settings are otherwise not read); replicas share by the upstream URL unless
/// `rate_limit.key` says otherwise.
fn resolve_fleet(
    inputs: &Inputs<'_>,
    upstream: &UpstreamConfig,
) -> Result<Option<FleetSettings>, ConfigError> {
    let redis_url = inputs.get(&REDIS_URL)?;
    let sentinels = resolve_sentinels(inputs, redis_url.as_deref())?;
    if redis_url.is_none() && sentinels.is_none() {
        return Ok(None);
    }
    let key = inputs
        .get(&FLEET_KEY)?
        .unwrap_or_else(|| upstream.url.to_string());
    Ok(Some(FleetSettings {
        redis_url,
        sentinels,
        key,
        timeout: inputs.get(&REDIS_TIMEOUT)?,
    }))
}

/// The sentinels and the master name: both or neither. With them, `redis_url` gives only the
/// database, user, password and TLS; a URL whose host is one of the sentinels (or whose port
/// is Sentinel's) would have the fleet write to a sentinel, so it is refused.
fn resolve_sentinels(
    inputs: &Inputs<'_>,
    redis_url: Option<&str>,
) -> Result<Option<SentinelSettings>, ConfigError> {
    // The file, when there is one: the keys may also come from flags and variables.
    let from = match inputs.file_origin.as_str() {
        "" => String::new(),
        origin => format!(" (from {origin})"),
    };
    let (nodes, master_name) = match (
        inputs.get(&REDIS_SENTINELS)?,
        inputs.get(&REDIS_MASTER_NAME)?,
    ) {
        (None, None) => return Ok(None),
        (Some(nodes), Some(master_name)) => (nodes, master_name),
        (Some(_), None) => {
            return Err(ConfigError(format!(
                "missing `rate_limit.redis_master_name`{from}: with \
                 `rate_limit.redis_sentinels`, name the primary the sentinels monitor \
                 (`sentinel monitor NAME ...` in their config)"
            )));
        }
        (None, Some(_)) => {
            return Err(ConfigError(format!(
                "missing `rate_limit.redis_sentinels`{from}: \
                 `rate_limit.redis_master_name` is only read with the sentinels to ask"
            )));
        }
    };
    let sentinels = SentinelSettings { nodes, master_name };
    if let Some(url) = redis_url
        && let Ok(info) = redis::IntoConnectionInfo::into_connection_info(url)
        && let redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } = info.addr()
    {
        let names_a_sentinel = *port == SENTINEL_PORT
            || sentinels.urls().iter().any(|node| {
                redis::IntoConnectionInfo::into_connection_info(node.as_str()).is_ok_and(|node| {
                    match node.addr() {
                        redis::ConnectionAddr::Tcp(h, p)
                        | redis::ConnectionAddr::TcpTls {
                            host: h, port: p, ..
                        } => h.eq_ignore_ascii_case(host) && p == port,
                        _ => false,
                    }
                })
            });
        if names_a_sentinel {
            return Err(ConfigError(format!(
                "invalid `rate_limit.redis_url`{from}: its host {host}:{port} is a \
                 sentinel, but with `rate_limit.redis_sentinels` the sentinels name the \
                 primary and the URL's host is ignored; give the URL only the database, user, \
                 password and scheme (e.g. rediss://:PASSWORD@primary/0), or leave it out"
            )));
        }
    }
    Ok(Some(sentinels))
}

/// The port Redis Sentinel listens on by default.
const SENTINEL_PORT: u16 = 26379;

fn resolve_deprecation(inputs: &Inputs<'_>) -> Result<DeprecationDates, ConfigError> {
    let origin = &inputs.file_origin;
    let deprecated_at = inputs.get(&DEPRECATION_DATE)?;
    let sunset_at: Option<SystemTime> = inputs.get(&SUNSET)?;
    if DeprecationHeaders::new(deprecated_at, sunset_at).is_err() {
        return Err(ConfigError(format!(
            "invalid `deprecation.sunset` (from {origin}): {} is earlier than the deprecation date {}",
            humantime::format_rfc3339_seconds(sunset_at.unwrap_or(deprecated_at)),
            humantime::format_rfc3339_seconds(deprecated_at)
        )));
    }
    let windows = inputs.get(&BROWNOUTS)?;
    let after_sunset = inputs.get(&AFTER_SUNSET)?;
    if after_sunset == AfterSunset::Refuse && sunset_at.is_none() {
        return Err(ConfigError(format!(
            "invalid `deprecation.after_sunset` = \"refuse\" (from {origin}): set \
             `deprecation.sunset` too, or the shim cannot know when to refuse"
        )));
    }
    let exempt = inputs.get(&EXEMPT_CLIENTS)?;
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

/// Both of the main listener's TLS files, or neither.
fn resolve_tls(inputs: &Inputs<'_>) -> Result<Option<TlsFiles>, ConfigError> {
    match (inputs.get(&TLS_CERT_FILE)?, inputs.get(&TLS_KEY_FILE)?) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
        })),
        _ => Err(ConfigError(format!(
            "invalid `tls` (from {}): set both `tls.cert_file` and `tls.key_file`, or neither",
            inputs.file_origin
        ))),
    }
}
