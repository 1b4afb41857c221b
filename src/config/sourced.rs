//! One setting's value together with where it came from (a flag, a variable, the file or the
//! built-in default), and the parsers that turn it into a typed value or an error that names
//! the key and the source.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::Uri;

use super::{ConfigError, LogFormat, MAX_DURATION_SETTING, MAX_WORKERS, Setting, UpstreamUrl};
use crate::legacy::retirement::AfterSunset;
use crate::legacy::retirement::schedule::{leap_second_refusal, names_second_60};

/// One chosen value with the place it came from, so errors can name the key and the source.
pub(super) struct Sourced<'a> {
    key: &'static str,
    value: &'a str,
    origin: &'a str,
}

impl Sourced<'_> {
    fn invalid(&self, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!(
            "invalid `{}` = {:?} (from {}): {reason}",
            self.key, self.value, self.origin
        ))
    }

    pub(super) fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("expected IP:PORT, e.g. 127.0.0.1:8080"))
    }

    /// A duration from zero (exclusive) to [`MAX_DURATION_SETTING`].
    pub(super) fn duration(&self) -> Result<Duration, ConfigError> {
        let duration = self.duration_or_zero()?;
        if duration.is_zero() {
            return Err(self.invalid("must be greater than zero"));
        }
        Ok(duration)
    }

    /// A duration up to [`MAX_DURATION_SETTING`], zero included. Longer ones are refused: no
    /// timeout or wait of the shim is meant to last days, and `now + duration` must not
    /// overflow the clock wherever it is armed.
    pub(super) fn duration_or_zero(&self) -> Result<Duration, ConfigError> {
        let duration = humantime::parse_duration(self.value)
            .map_err(|error| self.invalid(format!("{error}; expected e.g. 30s or 500ms")))?;
        if duration > MAX_DURATION_SETTING {
            return Err(self.invalid(format!(
                "at most {}",
                humantime::format_duration(MAX_DURATION_SETTING)
            )));
        }
        Ok(duration)
    }

    /// `auto` (`None`) or a thread count from 1 to [`MAX_WORKERS`].
    pub(super) fn workers(&self) -> Result<Option<usize>, ConfigError> {
        if self.value == "auto" {
            return Ok(None);
        }
        match self.value.parse::<usize>() {
            Ok(count) if (1..=MAX_WORKERS).contains(&count) => Ok(Some(count)),
            _ => Err(self.invalid(format!(
                "expected \"auto\" or a number from 1 to {MAX_WORKERS}"
            ))),
        }
    }

    pub(super) fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.value {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(self.invalid("expected json or text")),
        }
    }

    /// A log filter in `RUST_LOG` syntax (`info`, `warn,explo_shim=debug`), checked the way the
    /// subscriber will read it, so a typo stops start-up instead of silently logging at
    /// another level.
    pub(super) fn log_filter(&self) -> Result<String, ConfigError> {
        let value = self.value.trim();
        if value.is_empty() {
            return Err(self.invalid("expected a level (error, warn, info, debug, trace, off) or RUST_LOG-style directives"));
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(value)
            .map_err(|error| {
                self.invalid(format!(
                    "{error}; expected a level (error, warn, info, debug, trace, off) or \
                     RUST_LOG-style directives such as warn,explo_shim=debug"
                ))
            })?;
        Ok(value.to_owned())
    }

    /// On or off: `true`/`false`, `on`/`off`, `1`/`0`, `yes`/`no`.
    pub(super) fn switch(&self) -> Result<bool, ConfigError> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "1" | "yes" => Ok(true),
            "false" | "off" | "0" | "no" => Ok(false),
            _ => Err(self.invalid("expected true or false")),
        }
    }

    pub(super) fn after_sunset(&self) -> Result<AfterSunset, ConfigError> {
        match self.value.trim() {
            "serve" => Ok(AfterSunset::Serve),
            "refuse" => Ok(AfterSunset::Refuse),
            _ => Err(self.invalid("expected \"serve\" or \"refuse\"")),
        }
    }

    /// Whether the value is empty or blank (an unset variable written as `VAR=`).
    pub(super) fn is_blank(&self) -> bool {
        self.value.trim().is_empty()
    }

    /// A `redis://` or `rediss://` URL the Redis client accepts. The value is never echoed:
    /// it may hold a password.
    pub(super) fn redis_url(&self) -> Result<String, ConfigError> {
        let invalid = |reason: &str| {
            ConfigError(format!(
                "invalid `{}` (from {}): {reason}; expected redis://[:password@]host[:port][/db] \
                 or rediss://...",
                self.key, self.origin
            ))
        };
        let value = self.value.trim();
        if !(value.starts_with("redis://") || value.starts_with("rediss://")) {
            return Err(invalid("the scheme must be redis:// or rediss://"));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(value)
            .map_err(|error| invalid(&error.to_string()))?;
        match info.addr() {
            redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. }
                if !host.is_empty() => {}
            _ => return Err(invalid("a host is required")),
        }
        Ok(value.to_owned())
    }

    pub(super) fn upstream_url(&self) -> Result<UpstreamUrl, ConfigError> {
        let uri: Uri = self
            .value
            .parse()
            .map_err(|error| self.invalid(format!("{error}")))?;
        let scheme = match uri.scheme_str() {
            Some("http") | Some("https") => uri.scheme().cloned(),
            _ => None,
        }
        .ok_or_else(|| self.invalid("the scheme must be http:// or https://"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| self.invalid("a host is required"))?;
        if authority.as_str().contains('@') {
            return Err(self.invalid("credentials in the URL are not supported"));
        }
        // `http` accepts any digits as a port and then reads no port at all, which would
        // silently mean the scheme's default one: a typo must not send traffic elsewhere.
        let written_port = (!authority.as_str().ends_with(']'))
            .then(|| authority.as_str().rsplit_once(':'))
            .flatten()
            .map(|(_, port)| port);
        if written_port.is_some_and(|port| port.parse::<u16>().is_err()) {
            return Err(self.invalid("the port must be a number from 0 to 65535"));
        }
        if uri.query().is_some() {
            return Err(self.invalid("a query string is not allowed"));
        }
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamUrl {
            scheme,
            authority,
            path_prefix,
        })
    }
}

/// The flag or environment value if given, else the file's, else `None` (the default applies).
pub(super) fn chosen<'a>(
    key: &'static str,
    setting: Option<&'a Setting>,
    file_value: Option<&'a str>,
    file_origin: &'a str,
) -> Option<Sourced<'a>> {
    match (setting, file_value) {
        (Some(setting), _) => Some(Sourced {
            key,
            value: &setting.value,
            origin: setting.origin,
        }),
        (None, Some(value)) => Some(Sourced {
            key,
            value,
            origin: file_origin,
        }),
        (None, None) => None,
    }
}

/// As [`chosen`], with the built-in `default` when neither gives a value.
pub(super) fn chosen_or_default<'a>(
    key: &'static str,
    setting: Option<&'a Setting>,
    file_value: Option<&'a str>,
    file_origin: &'a str,
    default: &'static str,
) -> Sourced<'a> {
    chosen(key, setting, file_value, file_origin).unwrap_or(Sourced {
        key,
        value: default,
        origin: "built-in default",
    })
}

pub(super) fn positive(
    key: &'static str,
    value: Option<u64>,
    default: u64,
) -> Result<u64, ConfigError> {
    match value {
        Some(0) => Err(ConfigError(format!(
            "invalid `{key}` = 0: must be greater than zero"
        ))),
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

/// An RFC 3339 date (`2025-10-15`) or date-time (`2025-10-15T12:00:00Z`).
pub(super) fn parse_date(
    key: &'static str,
    value: &str,
    origin: &str,
) -> Result<SystemTime, ConfigError> {
    let full = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_owned()
    };
    if names_second_60(&full) {
        return Err(ConfigError(format!(
            "invalid `{key}` (from {origin}): {}",
            leap_second_refusal(value)
        )));
    }
    humantime::parse_rfc3339_weak(&full).map_err(|error| {
        ConfigError(format!(
            "invalid `{key}` = {value:?} (from {origin}): {error}; expected e.g. 2025-10-15 or 2025-10-15T00:00:00Z"
        ))
    })
}

pub(super) fn small_positive(
    key: &'static str,
    value: Option<u64>,
    default: u64,
) -> Result<u32, ConfigError> {
    let value = positive(key, value, default)?;
    u32::try_from(value).map_err(|_| ConfigError(format!("invalid `{key}` = {value}: too large")))
}
