//! The parsers of the settings that hold lists and maps (brownouts, exempt clients, the admin
//! listener's host names, the clients' names): each entry is checked, and a bad one is named
//! with the key and the source of the list.

use std::collections::{BTreeMap, BTreeSet};

use super::ConfigError;
use super::defaults::MAX_CLIENT_NAME_CHARS;
use super::resolved::redact_url;
use super::sourced::Sourced;
use crate::legacy::retirement::schedule::{Window, parse_interval};
use crate::message::fingerprint::{ANONYMOUS, is_fingerprint};

/// The longest DNS name, in characters (RFC 1035 §2.3.4, without the trailing dot).
const MAX_HOST_NAME_CHARS: usize = 253;
/// The longest label of a DNS name, in characters (RFC 1035 §2.3.4).
const MAX_HOST_LABEL_CHARS: usize = 63;

/// `deprecation.brownouts`: ISO 8601 intervals, `START/END` or `START/DURATION`.
pub(super) fn brownouts(list: &Sourced<'_>) -> Result<Vec<Window>, ConfigError> {
    list.list()
        .iter()
        .map(|text| {
            parse_interval(text).map_err(|reason| {
                ConfigError(format!(
                    "invalid `{}` entry {text:?} (from {}): {reason}",
                    list.key, list.origin
                ))
            })
        })
        .collect()
}

/// `deprecation.exempt_clients`: client fingerprints, never `anonymous`.
pub(super) fn exempt_clients(list: &Sourced<'_>) -> Result<Vec<String>, ConfigError> {
    let exempt = list.list();
    let (key, origin) = (list.key, list.origin);
    for fingerprint in &exempt {
        if fingerprint == ANONYMOUS {
            return Err(ConfigError(format!(
                "invalid `{key}` entry \"{ANONYMOUS}\" (from {origin}): \"{ANONYMOUS}\" is every \
                 caller that sends no Explo-Authorization, so exempting it would let anyone \
                 through brownouts and the sunset by leaving the header out; exempt the \
                 fingerprint of the integration instead"
            )));
        }
        if !is_fingerprint(fingerprint) {
            return Err(ConfigError(format!(
                "invalid `{key}` entry {fingerprint:?} (from {origin}): expected a client \
                 fingerprint, 12 lower-case hex digits as in the logs, /metrics and /usage"
            )));
        }
    }
    Ok(exempt)
}

/// `admin_allowed_hosts`: host names as a browser sends them in `Host` (no port, no scheme,
/// no wildcard), lower-cased.
pub(super) fn host_names(list: &Sourced<'_>) -> Result<BTreeSet<String>, ConfigError> {
    list.list()
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
                    "invalid `{}` entry {name:?} (from {}): expected a host name as the browser \
                     sends it in Host, e.g. \"shim.internal\", without a scheme, port or wildcard",
                    list.key, list.origin
                )));
            }
            Ok(lower)
        })
        .collect()
}

/// `[clients]`: every key a fingerprint, every name short, printable and unique, so that a
/// name can stand for one client wherever it is shown.
pub(super) fn client_names(map: &Sourced<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let clients = map.map()?;
    let mut seen = BTreeMap::new();
    for (fingerprint, name) in &clients {
        let invalid = |reason: &str| {
            ConfigError(format!(
                "invalid `{}` entry {fingerprint:?} = {name:?} (from {}): {reason}",
                map.key, map.origin
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

/// `rate_limit.redis_sentinels`: at least one sentinel, each `HOST:PORT`, or a
/// `redis://[[USER]:PASSWORD@]HOST:PORT` (`rediss://` for TLS) URL for a sentinel that wants a
/// password or TLS. Kept as given ([`super::SentinelSettings::urls`] makes URLs of them).
pub(super) fn redis_sentinels(list: &Sourced<'_>) -> Result<Option<Vec<String>>, ConfigError> {
    let entries = list.list();
    if entries.is_empty() {
        return Err(ConfigError(format!(
            "invalid `{}` (from {}): name at least one sentinel as HOST:PORT, or leave the \
             setting out",
            list.key, list.origin
        )));
    }
    entries
        .iter()
        .map(|entry| {
            let invalid = |reason: &str| {
                ConfigError(format!(
                    "invalid `{}` entry {:?} (from {}): {reason}; expected HOST:PORT, or \
                     redis://[:PASSWORD@]HOST:PORT or rediss://... for a sentinel that wants a \
                     password or TLS",
                    list.key,
                    redact_url(entry),
                    list.origin
                ))
            };
            let url = if entry.starts_with("redis://") || entry.starts_with("rediss://") {
                entry.clone()
            } else if entry.contains("://") {
                return Err(invalid("the scheme must be redis:// or rediss://"));
            } else {
                let port = entry.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
                if !matches!(port, Some(Ok(port)) if port != 0) {
                    return Err(invalid("a port is required"));
                }
                format!("redis://{entry}")
            };
            let url = url.as_str();
            let info = redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|error| invalid(&error.to_string()))?;
            match info.addr() {
                redis::ConnectionAddr::Tcp(host, _)
                | redis::ConnectionAddr::TcpTls { host, .. }
                    if !host.is_empty() => {}
                _ => return Err(invalid("a host is required")),
            }
            if info.redis_settings().db() != 0 {
                return Err(invalid("a sentinel has no database; leave the path out"));
            }
            Ok(entry.clone())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
