//! The settings table: every setting once, with its key in the config file, its flag and
//! environment variable (where it has them), its parser, its default, its documentation (a
//! flag's `--help` line) and how `--check-config` writes it back. The command line, the
//! environment, the file, `--check-config` and the unknown-variable warning are all read from
//! here; [`super::resolve`] puts the parsed values together into a [`Config`](super::Config)
//! and checks what no single setting can (the budget's switch, the fleet's key, both TLS
//! files, the sunset's order).
//!
//! The rows follow `config/explo-shim.toml`, and so does `--check-config`; the reference file
//! documents each setting at length. A new setting is a row here, a field of the resolved
//! types ([`super::resolved`]) and a line in [`super::resolve`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use toml::Value;

use super::defaults::*;
use super::render::{
    budget, duration, fleet, interval, number, path, sentinels, string_table, strings, text, time,
};
use super::sourced::Sourced;
use super::spec::{About, Fallback, FileKind, Flag, Spec, optional, settings};
use super::{LogFormat, Setting, UpstreamUrl, lists};
use crate::legacy::retirement::AfterSunset;
use crate::legacy::retirement::schedule::Window;
use crate::message::headers::deprecation::DEFAULT_DEPRECATION_DATE;

settings! {
    /// Address for legacy clients, e.g. 127.0.0.1:8080.
    LISTEN: SocketAddr = "listen", Text {
        parse: Sourced::socket_addr,
        default: Fallback::Text(DEFAULT_LISTEN),
        show: |config| Ok(text(config.listen)),
        flag listen "--listen" "EXPLO_SHIM_LISTEN" "ADDR" at 1,
    }
    /// Address of the admin listener (the console at /, /healthz, /readyz, /metrics, /usage).
    ADMIN: SocketAddr = "admin", Text {
        parse: Sourced::socket_addr,
        default: Fallback::Text(DEFAULT_ADMIN),
        show: |config| Ok(text(config.admin)),
        flag admin "--admin" "EXPLO_SHIM_ADMIN" "ADDR" at 3,
    }
    /// Serving threads, each with its own listener, runtime and upstream connections:
    /// "auto" (the CPUs this process may use) or a number.
    WORKERS: Option<usize> = "workers", TextOrNumber {
        parse: Sourced::workers,
        default: Fallback::Text("auto"),
        show: |config| Ok(match config.workers {
            None => Value::from("auto"),
            Some(count) => number(count as u64),
        }),
        flag workers "--workers" "EXPLO_SHIM_WORKERS" "auto|N" at 8,
    }
    /// Log line format.
    LOG_FORMAT: LogFormat = "log_format", Text {
        parse: Sourced::log_format,
        default: Fallback::Text("text"),
        show: |config| Ok(Value::from(match config.log_format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })),
        flag log_format "--log-format" "EXPLO_SHIM_LOG_FORMAT" "json|text" at 5,
    }
    /// Log filter in RUST_LOG syntax, e.g. warn or info,explo_shim=debug (RUST_LOG, where
    /// set, wins). The deprecated-usage line is kept unless its target `deprecated` is named.
    LOG_LEVEL: String = "log_level", Text {
        parse: Sourced::log_filter,
        default: Fallback::Text(DEFAULT_LOG_LEVEL),
        show: |config| Ok(Value::from(config.log_level.as_str())),
        flag log_level "--log-level" "EXPLO_SHIM_LOG_LEVEL" "FILTER" at 6,
    }
    /// One log line per request (target `access`), pass-through included: on or off.
    ACCESS_LOG: bool = "access_log", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| false),
        show: |config| Ok(Value::from(config.access_log)),
        flag access_log "--access-log" "EXPLO_SHIM_ACCESS_LOG" "true|false" at 7 bare "true",
    }
    /// A file holding the bearer token `/`, `/usage` and `/metrics` ask for; empty: open.
    ADMIN_TOKEN_FILE: Option<PathBuf> = "admin_token_file", Text {
        parse: Sourced::optional_path,
        default: Fallback::Value(|| None),
        show: |config| Ok(path(config.admin_token_file.as_deref())),
    }
    /// Without `admin_token_file`: host names, comma-separated, that the admin listener's
    /// `/`, `/usage` and `/metrics` answer to besides IP literals and localhost (replaces
    /// `admin_allowed_hosts`).
    ADMIN_ALLOWED_HOSTS: BTreeSet<String> = "admin_allowed_hosts", List {
        parse: lists::host_names,
        default: Fallback::Value(BTreeSet::new),
        show: |config| Ok(strings(&config.admin_allowed_hosts)),
        flag admin_allowed_hosts "--admin-allowed-hosts" "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS"
            "NAMES" at 13,
    }
    /// Reload when the config file, `admin_token_file` or the TLS files change (inotify on
    /// their directories, so a ConfigMap or Secret update is seen), as SIGHUP does.
    WATCH_FILES: bool = "watch_files", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| true),
        show: |config| Ok(Value::from(config.watch_files)),
        flag watch_files "--watch-files" "EXPLO_SHIM_WATCH_FILES" "true|false" at 18 bare "true",
    }

    /// The real Explo API base URL, http:// or https://, with an optional path prefix.
    UPSTREAM_URL: UpstreamUrl = "upstream.url", Text {
        parse: Sourced::upstream_url,
        default: Fallback::Text(DEFAULT_UPSTREAM),
        show: |config| Ok(text(&config.upstream.url)),
        flag upstream "--upstream" "EXPLO_SHIM_UPSTREAM" "URL" at 2,
    }
    /// Limit for opening an upstream connection (TCP and TLS).
    UPSTREAM_CONNECT_TIMEOUT: Duration = "upstream.connect_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_UPSTREAM_CONNECT_TIMEOUT),
        show: |config| Ok(duration(config.upstream.connect_timeout)),
    }
    /// Limit for a whole upstream request, e.g. 30s or 500ms.
    UPSTREAM_TIMEOUT: Duration = "upstream.timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_UPSTREAM_TIMEOUT),
        show: |config| Ok(duration(config.upstream.timeout)),
        flag upstream_timeout "--upstream-timeout" "EXPLO_SHIM_UPSTREAM_TIMEOUT" "DURATION" at 4,
    }
    /// How long an idle upstream connection is kept for reuse.
    UPSTREAM_POOL_IDLE_TIMEOUT: Duration = "upstream.pool_idle_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT),
        show: |config| Ok(duration(config.upstream.pool_idle_timeout)),
    }
    /// Idle upstream connections kept; zero: every call connects afresh.
    UPSTREAM_POOL_MAX_IDLE: usize = "upstream.pool_max_idle", Count {
        parse: Sourced::size,
        default: Fallback::Value(|| {
            usize::try_from(DEFAULT_UPSTREAM_POOL_MAX_IDLE).unwrap_or(usize::MAX)
        }),
        show: |config| Ok(number(config.upstream.pool_max_idle as u64)),
    }
    /// Extra PEM roots, trusted beside the built-in ones.
    UPSTREAM_CA_FILE: Option<PathBuf> = "upstream.ca_file", Text {
        parse: Sourced::optional_path_as_written,
        default: Fallback::Value(|| None),
        show: |config| Ok(path(config.upstream.ca_file.as_deref())),
    }
    /// Whether forwarded calls carry the client's address in `X-Forwarded-For`.
    UPSTREAM_ADD_X_FORWARDED_FOR: bool = "upstream.add_x_forwarded_for", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| false),
        show: |config| Ok(Value::from(config.upstream.add_x_forwarded_for)),
    }

    /// Largest legacy request body read into memory, in bytes.
    LEGACY_BODY_BYTES: u64 = "limits.legacy_body_bytes", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_LEGACY_BODY_BYTES),
        show: |config| Ok(number(config.limits.legacy_body_bytes)),
    }
    /// Largest upstream reply read into memory to build a legacy reply, in bytes.
    UPSTREAM_REPLY_BYTES: u64 = "limits.upstream_reply_bytes", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_UPSTREAM_REPLY_BYTES),
        show: |config| Ok(number(config.limits.upstream_reply_bytes)),
    }
    /// How long a client may take to send its request head.
    HEADER_READ_TIMEOUT: Duration = "limits.header_read_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_HEADER_READ_TIMEOUT),
        show: |config| Ok(duration(config.limits.header_read_timeout)),
    }
    /// How long a body may stay silent.
    BODY_IDLE_TIMEOUT: Duration = "limits.body_idle_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_BODY_IDLE_TIMEOUT),
        show: |config| Ok(duration(config.limits.body_idle_timeout)),
    }
    /// How long a whole legacy body may take to arrive.
    LEGACY_BODY_TIMEOUT: Duration = "limits.legacy_body_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_LEGACY_BODY_TIMEOUT),
        show: |config| Ok(duration(config.limits.legacy_body_timeout)),
    }
    /// Cut off a reply the client accepts nothing of for this long, counted between two
    /// writes that made progress (not over the whole reply), e.g. 30s.
    SEND_TIMEOUT: Duration = "limits.send_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_SEND_TIMEOUT),
        show: |config| Ok(duration(config.limits.send_timeout)),
        flag send_timeout "--send-timeout" "EXPLO_SHIM_SEND_TIMEOUT" "DURATION" at 15,
    }
    /// Largest request head, in bytes.
    MAX_HEADER_BYTES: u64 = "limits.max_header_bytes", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_MAX_HEADER_BYTES),
        show: |config| Ok(number(config.limits.max_header_bytes)),
    }
    /// Most header fields in one request.
    MAX_HEADERS: u64 = "limits.max_headers", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_MAX_HEADERS),
        show: |config| Ok(number(config.limits.max_headers)),
    }
    /// Requests served at once.
    MAX_IN_FLIGHT: u64 = "limits.max_in_flight", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_MAX_IN_FLIGHT),
        show: |config| Ok(number(config.limits.max_in_flight)),
    }
    /// Open client connections.
    MAX_CONNECTIONS: u64 = "limits.max_connections", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_MAX_CONNECTIONS),
        show: |config| Ok(number(config.limits.max_connections)),
    }
    /// Distinct client fingerprints tracked in metrics and `/usage`.
    MAX_TRACKED_CLIENTS: u64 = "limits.max_tracked_clients", Count {
        parse: Sourced::positive,
        default: Fallback::Value(|| DEFAULT_MAX_TRACKED_CLIENTS),
        show: |config| Ok(number(config.limits.max_tracked_clients)),
    }

    /// Whether upstream calls draw on a budget.
    RATE_LIMIT_ENABLED: bool = "rate_limit.enabled", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| true),
        show: |config| Ok(Value::from(config.rate_limit.is_some())),
    }
    /// The budget's refill, in calls per minute.
    RATE_LIMIT_PER_MINUTE: u32 = "rate_limit.per_minute", Count {
        parse: Sourced::small_positive,
        default: Fallback::Value(|| DEFAULT_RATE_LIMIT_PER_MINUTE as u32),
        show: |config| budget(config, |budget| number(u64::from(budget.per_minute))),
    }
    /// Calls that may go at once after a quiet spell.
    RATE_LIMIT_BURST: u32 = "rate_limit.burst", Count {
        parse: Sourced::small_positive,
        default: Fallback::Value(|| DEFAULT_RATE_LIMIT_BURST as u32),
        show: |config| budget(config, |budget| number(u64::from(budget.burst))),
    }
    /// The longest a call waits for the budget; zero: refuse at once.
    RATE_LIMIT_MAX_WAIT: Duration = "rate_limit.max_wait", Text {
        parse: Sourced::duration_or_zero,
        default: Fallback::Value(|| DEFAULT_RATE_LIMIT_MAX_WAIT),
        show: |config| budget(config, |budget| duration(budget.max_wait)),
    }
    /// The longest an upstream 429 holds every call.
    RATE_LIMIT_MAX_UPSTREAM_HOLD: Duration = "rate_limit.max_upstream_hold", Text {
        parse: Sourced::upstream_hold,
        default: Fallback::Value(|| DEFAULT_MAX_UPSTREAM_HOLD),
        show: |config| budget(config, |budget| duration(budget.max_upstream_hold)),
    }
    /// Redis shared by a fleet of shims for one upstream budget and one usage view:
    /// redis://HOST:PORT/DB or rediss://..., with a password as redis://:PASSWORD@HOST
    REDIS_URL: Option<String> = "rate_limit.redis_url", Text {
        parse: Sourced::redis_url,
        default: Fallback::Value(|| None),
        show: |config| {
            let fleet = config.fleet.as_ref();
            match fleet.map(|fleet| fleet.redacted_url()) {
                Some(Some(url)) => Ok(Value::from(url)),
                Some(None) => Err("unset, the primary found through the sentinels"),
                None => Err("unset, every replica has its own budget and usage"),
            }
        },
        flag rate_limit_redis_url "--rate-limit-redis-url" "EXPLO_SHIM_RATE_LIMIT_REDIS_URL"
            "URL" at 9
            secret true,
    }
    /// Redis Sentinels that name the fleet's primary, comma-separated HOST:PORT (or
    /// redis://[:PASSWORD@]HOST:PORT, rediss://..., for sentinels that want a password or
    /// TLS); `redis_url` then gives only the database, user, password and TLS.
    REDIS_SENTINELS: Option<Vec<String>> = "rate_limit.redis_sentinels", List {
        parse: lists::redis_sentinels,
        default: Fallback::Value(|| None),
        show: |config| sentinels(config, |sentinels| strings(&sentinels.redacted_nodes())),
        flag rate_limit_redis_sentinels "--rate-limit-redis-sentinels"
            "EXPLO_SHIM_RATE_LIMIT_REDIS_SENTINELS" "ADDRS" at 16
            secret true,
    }
    /// The name the sentinels monitor the fleet's primary under.
    REDIS_MASTER_NAME: Option<String> = "rate_limit.redis_master_name", Text {
        parse: Sourced::non_blank,
        default: Fallback::Value(|| None),
        show: |config| sentinels(config, |sentinels| Value::from(sentinels.master_name.as_str())),
        flag rate_limit_redis_master_name "--rate-limit-redis-master-name"
            "EXPLO_SHIM_RATE_LIMIT_REDIS_MASTER_NAME" "NAME" at 17,
    }
    /// What replicas sharing a budget and a usage view have in common.
    FLEET_KEY: Option<String> = "rate_limit.key", Text {
        parse: Sourced::non_blank,
        default: Fallback::Value(|| None),
        show: |config| fleet(config, |fleet| Value::from(fleet.key.as_str())),
        note: "the upstream URL",
    }
    /// The longest one Redis round trip may take.
    REDIS_TIMEOUT: Duration = "rate_limit.redis_timeout", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_REDIS_TIMEOUT),
        show: |config| fleet(config, |fleet| duration(fleet.timeout)),
    }

    /// The team id legacy replies carry.
    TEAM_ID: Option<serde_json::Number> = "legacy.team_id", Integer {
        parse: Sourced::optional_integer,
        default: Fallback::Value(|| None),
        show: |config| {
            let team_id = config.legacy.team_id.as_ref();
            // The file holds an integer, so the number is one.
            team_id
                .map(|team_id| team_id.as_i64().map_or_else(|| text(team_id), Value::from))
                .ok_or("unset, legacy replies carry \"team_id\": null")
        },
    }
    /// Whether legacy customer objects carry the Customer API's extra keys.
    EXTRA_CUSTOMER_KEYS: bool = "legacy.extra_customer_keys", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| false),
        show: |config| Ok(Value::from(config.legacy.extra_customer_keys)),
    }
    /// Refuse (409) a legacy delete whose customer has children.
    REFUSE_CASCADING_DELETE: bool = "legacy.refuse_cascading_delete", Switch {
        parse: Sourced::switch,
        default: Fallback::Value(|| true),
        show: |config| Ok(Value::from(config.legacy_behaviour.refuse_cascading_delete)),
    }
    /// Access group -> the `api_environment_tag` legacy replies carry for it.
    API_ENVIRONMENT_TAG: BTreeMap<String, String> = "legacy.api_environment_tag", Map {
        parse: Sourced::map,
        default: Fallback::Value(BTreeMap::new),
        show: |config| Ok(string_table(&config.legacy.api_environment_tags)),
    }

    /// The main listener's certificate chain (PEM).
    TLS_CERT_FILE: Option<PathBuf> = "tls.cert_file", Text {
        parse: Sourced::optional_path,
        default: Fallback::Value(|| None),
        show: |config| Ok(path(config.tls.as_ref().map(|tls| tls.cert_file.as_path()))),
    }
    /// The main listener's private key (PEM).
    TLS_KEY_FILE: Option<PathBuf> = "tls.key_file", Text {
        parse: Sourced::optional_path,
        default: Fallback::Value(|| None),
        show: |config| Ok(path(config.tls.as_ref().map(|tls| tls.key_file.as_path()))),
    }

    /// When the legacy API was deprecated.
    DEPRECATION_DATE: SystemTime = "deprecation.date", Text {
        parse: Sourced::date,
        default: Fallback::Value(|| SystemTime::UNIX_EPOCH + DEFAULT_DEPRECATION_DATE),
        show: |config| Ok(time(config.deprecation.deprecated_at)),
    }
    /// When the legacy API goes, or may go, away; empty: not announced.
    SUNSET: Option<SystemTime> = "deprecation.sunset", Text {
        parse: Sourced::optional_date,
        default: Fallback::Value(|| None),
        show: |config| Ok(config.deprecation.sunset_at.map_or_else(|| Value::from(""), time)),
    }
    /// Brownout windows, comma-separated ISO 8601 intervals: START/END or START/DURATION,
    /// e.g. 2026-12-01T10:00:00Z/PT1H (replaces `deprecation.brownouts`).
    BROWNOUTS: Vec<Window> = "deprecation.brownouts", List {
        parse: lists::brownouts,
        default: Fallback::Value(Vec::new),
        show: |config| {
            let windows = config.deprecation.retirement.windows();
            Ok(Value::Array(windows.iter().map(|window| Value::from(interval(window))).collect()))
        },
        flag brownouts "--brownouts" "EXPLO_SHIM_BROWNOUTS" "INTERVALS" at 10,
    }
    /// What legacy calls get once the sunset has passed: serve (translate as before) or
    /// refuse (410).
    AFTER_SUNSET: AfterSunset = "deprecation.after_sunset", Text {
        parse: Sourced::after_sunset,
        default: Fallback::Value(|| AfterSunset::Serve),
        show: |config| Ok(Value::from(match config.deprecation.retirement.after_sunset() {
            AfterSunset::Serve => "serve",
            AfterSunset::Refuse => "refuse",
        })),
        flag after_sunset "--after-sunset" "EXPLO_SHIM_AFTER_SUNSET" "serve|refuse" at 11,
    }
    /// Client fingerprints served through brownouts and after the sunset, comma-separated
    /// (replaces `deprecation.exempt_clients`).
    EXEMPT_CLIENTS: Vec<String> = "deprecation.exempt_clients", List {
        parse: lists::exempt_clients,
        default: Fallback::Value(Vec::new),
        show: |config| Ok(strings(config.deprecation.retirement.exempt_clients())),
        flag exempt_clients "--exempt-clients" "EXPLO_SHIM_EXEMPT_CLIENTS" "FINGERPRINTS" at 12,
    }

    /// After SIGTERM, keep serving this long with /readyz at 503 (so load balancers and
    /// endpoint lists catch up) before draining, e.g. 5s. A second signal skips it.
    SHUTDOWN_DELAY: Duration = "shutdown.delay", Text {
        parse: Sourced::duration_or_zero,
        default: Fallback::Value(|| DEFAULT_SHUTDOWN_DELAY),
        show: |config| Ok(duration(config.shutdown_delay)),
        flag shutdown_delay "--shutdown-delay" "EXPLO_SHIM_SHUTDOWN_DELAY" "DURATION" at 14,
    }
    /// How long in-flight requests may take to finish once draining.
    SHUTDOWN_GRACE: Duration = "shutdown.grace", Text {
        parse: Sourced::duration,
        default: Fallback::Value(|| DEFAULT_SHUTDOWN_GRACE),
        show: |config| Ok(duration(config.shutdown_grace)),
    }

    /// Names for client fingerprints, shown in `/usage`, the `usage` table and the
    /// deprecated-usage line.
    CLIENTS: BTreeMap<String, String> = "clients", Map {
        parse: lists::client_names,
        default: Fallback::Value(BTreeMap::new),
        show: |config| Ok(string_table(&config.clients)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn each_flag_is_named_after_its_field_and_its_variable_after_its_flag() {
        for about in SETTINGS {
            let Some(flag) = &about.flag else { continue };
            assert_eq!(flag.long, format!("--{}", flag.id.replace('_', "-")));
            assert_eq!(
                flag.env,
                format!("EXPLO_SHIM_{}", flag.id.to_ascii_uppercase())
            );
            assert!(
                !about.doc.trim().is_empty(),
                "{} has no documentation",
                about.key
            );
        }
    }

    #[test]
    fn keys_flags_and_places_in_help_are_unique() {
        let keys: BTreeSet<_> = SETTINGS.iter().map(|about| about.key).collect();
        assert_eq!(keys.len(), SETTINGS.len());
        let flags: Vec<_> = SETTINGS
            .iter()
            .filter_map(|about| about.flag.as_ref())
            .collect();
        let mut places: Vec<usize> = flags.iter().map(|flag| flag.at).collect();
        places.sort_unstable();
        assert_eq!(places, (1..=flags.len()).collect::<Vec<_>>());
        let ids: BTreeSet<_> = flags.iter().map(|flag| flag.id).collect();
        assert_eq!(ids.len(), flags.len());
    }

    #[test]
    fn every_flag_overrides_its_own_setting() {
        let mut overrides = Overrides::default();
        assert!(!overrides.set(
            "bogus",
            Setting {
                value: "x".into(),
                origin: "--bogus",
            }
        ));
        for about in SETTINGS {
            match &about.flag {
                Some(flag) => {
                    assert!(overrides.set(flag.id, setting(about.key).unwrap()));
                    assert_eq!(overrides.given(about.key), setting(about.key).as_ref());
                }
                None => assert_eq!(overrides.given(about.key), None, "{}", about.key),
            }
        }
    }

    fn setting(value: &str) -> Option<Setting> {
        Some(Setting {
            value: value.to_owned(),
            origin: "--test",
        })
    }
}
