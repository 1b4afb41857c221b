//! One setting's value together with where it came from (a flag, a variable, the file or the
//! built-in default), and the parsers that turn it into a typed value or an error that names
//! the key and the source. The settings table ([`super::table`]) names one parser per setting.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use http::Uri;

use super::defaults::{MAX_DURATION_SETTING, MAX_UPSTREAM_HOLD_CEILING, MAX_WORKERS};
use super::{ConfigError, LogFormat, UpstreamUrl};
use crate::legacy::retirement::AfterSunset;
use crate::legacy::retirement::schedule::{leap_second_refusal, names_second_60};

/// One value as it was given: flags, variables and built-in defaults give text; the file gives
/// what its key holds in TOML (the table says which kind, [`super::spec::FileKind`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    Text(&'a str),
    Count(u64),
    Integer(i64),
    Switch(bool),
    List(&'a [String]),
    Map(&'a BTreeMap<String, String>),
}

/// One chosen value with the place it came from, so errors can name the key and the source.
pub(crate) struct Sourced<'a> {
    pub(super) key: &'static str,
    pub(super) value: Raw<'a>,
    /// `--flag`, `EXPLO_SHIM_VAR`, `config file PATH` or `built-in default`.
    pub(super) origin: &'a str,
}

impl Sourced<'_> {
    /// The value as text: what flags and variables give, and what text settings hold.
    fn text(&self) -> Cow<'_, str> {
        match self.value {
            Raw::Text(text) => Cow::Borrowed(text),
            Raw::Count(count) => Cow::Owned(count.to_string()),
            Raw::Integer(number) => Cow::Owned(number.to_string()),
            Raw::Switch(on) => Cow::Owned(on.to_string()),
            Raw::List(items) => Cow::Owned(items.join(",")),
            Raw::Map(_) => Cow::Borrowed(""),
        }
    }

    pub(super) fn invalid(&self, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!(
            "invalid `{}` = {:?} (from {}): {reason}",
            self.key,
            self.text(),
            self.origin
        ))
    }

    pub(super) fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.text()
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
        let duration = humantime::parse_duration(&self.text())
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
        let value = self.text();
        if value == "auto" {
            return Ok(None);
        }
        match value.parse::<usize>() {
            Ok(count) if (1..=MAX_WORKERS).contains(&count) => Ok(Some(count)),
            _ => Err(self.invalid(format!(
                "expected \"auto\" or a number from 1 to {MAX_WORKERS}"
            ))),
        }
    }

    pub(super) fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.text().as_ref() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(self.invalid("expected json or text")),
        }
    }

    /// A log filter in `RUST_LOG` syntax (`info`, `warn,explo_shim=debug`), checked the way the
    /// subscriber will read it, so a typo stops start-up instead of silently logging at
    /// another level.
    pub(super) fn log_filter(&self) -> Result<String, ConfigError> {
        let text = self.text();
        let value = text.trim();
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

    /// On or off: a TOML boolean in the file; `true`/`false`, `on`/`off`, `1`/`0`,
    /// `yes`/`no` in a flag or variable.
    pub(super) fn switch(&self) -> Result<bool, ConfigError> {
        if let Raw::Switch(on) = self.value {
            return Ok(on);
        }
        match self.text().trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "1" | "yes" => Ok(true),
            "false" | "off" | "0" | "no" => Ok(false),
            _ => Err(self.invalid("expected true or false")),
        }
    }

    pub(super) fn after_sunset(&self) -> Result<AfterSunset, ConfigError> {
        match self.text().trim() {
            "serve" => Ok(AfterSunset::Serve),
            "refuse" => Ok(AfterSunset::Refuse),
            _ => Err(self.invalid("expected \"serve\" or \"refuse\"")),
        }
    }

    /// A `redis://` or `rediss://` URL the Redis client accepts; none when empty or blank (an
    /// unset variable written as `VAR=`). The value is never echoed: it may hold a password.
    pub(super) fn redis_url(&self) -> Result<Option<String>, ConfigError> {
        let invalid = |reason: &str| {
            ConfigError(format!(
                "invalid `{}` (from {}): {reason}; expected redis://[:password@]host[:port][/db] \
                 or rediss://...",
                self.key, self.origin
            ))
        };
        let text = self.text();
        let value = text.trim();
        if value.is_empty() {
            return Ok(None);
        }
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
        Ok(Some(value.to_owned()))
    }

    pub(super) fn upstream_url(&self) -> Result<UpstreamUrl, ConfigError> {
        let uri: Uri = self
            .text()
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

    /// A count from the file, as TOML gives it (a flag would give text).
    fn count(&self) -> Result<u64, ConfigError> {
        match self.value {
            Raw::Count(count) => Ok(count),
            _ => self
                .text()
                .trim()
                .parse()
                .map_err(|_| self.invalid("expected a whole number")),
        }
    }

    /// A count greater than zero.
    pub(super) fn positive(&self) -> Result<u64, ConfigError> {
        match self.count()? {
            0 => Err(ConfigError(format!(
                "invalid `{}` = 0: must be greater than zero",
                self.key
            ))),
            count => Ok(count),
        }
    }

    /// A count greater than zero that fits 32 bits.
    pub(super) fn small_positive(&self) -> Result<u32, ConfigError> {
        let value = self.positive()?;
        u32::try_from(value)
            .map_err(|_| ConfigError(format!("invalid `{}` = {value}: too large", self.key)))
    }

    /// Any count, zero included; a count past the platform's is the largest it has.
    pub(super) fn size(&self) -> Result<usize, ConfigError> {
        Ok(usize::try_from(self.count()?).unwrap_or(usize::MAX))
    }

    /// A TOML integer, as `legacy.team_id` is one.
    pub(super) fn integer(&self) -> Result<serde_json::Number, ConfigError> {
        match self.value {
            Raw::Integer(number) => Ok(number.into()),
            _ => self
                .text()
                .trim()
                .parse::<i64>()
                .map(Into::into)
                .map_err(|_| self.invalid("expected a whole number")),
        }
    }

    /// Text with surrounding whitespace removed; none when that leaves nothing.
    pub(super) fn trimmed(&self) -> Option<String> {
        let text = self.text();
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    /// A path; none when empty or blank (the reference file writes an unset path as `""`).
    pub(super) fn optional_path(&self) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.trimmed().map(PathBuf::from))
    }

    /// As [`Sourced::optional_path`], but a path that is not blank is kept exactly as written,
    /// spaces included: `upstream.ca_file` has always been read so.
    pub(super) fn optional_path_as_written(&self) -> Result<Option<PathBuf>, ConfigError> {
        let text = self.text();
        Ok((!text.trim().is_empty()).then(|| PathBuf::from(text.into_owned())))
    }

    /// An RFC 3339 date (`2025-10-15`) or date-time (`2025-10-15T12:00:00Z`).
    pub(super) fn date(&self) -> Result<SystemTime, ConfigError> {
        parse_date(self.key, &self.text(), self.origin)
    }

    /// As [`Sourced::date`]; none when empty or blank.
    pub(super) fn optional_date(&self) -> Result<Option<SystemTime>, ConfigError> {
        self.trimmed()
            .map(|date| parse_date(self.key, &date, self.origin))
            .transpose()
    }

    /// A list: an array in the file, comma-separated text in a flag or variable (which
    /// replaces the file's whole list). Empty items of the text are dropped.
    pub(super) fn list(&self) -> Vec<String> {
        match self.value {
            Raw::List(items) => items.to_vec(),
            _ => self
                .text()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// A map of names to values, as a TOML table holds it.
    pub(super) fn map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        match self.value {
            Raw::Map(map) => Ok(map.clone()),
            _ => Err(self.invalid("expected a table of names to text")),
        }
    }

    /// As [`Sourced::duration`], and at most [`MAX_UPSTREAM_HOLD_CEILING`]: a hold of hours
    /// would be an outage chosen by the upstream's reply, not a pause.
    pub(super) fn upstream_hold(&self) -> Result<Duration, ConfigError> {
        let hold = self.duration()?;
        if hold > MAX_UPSTREAM_HOLD_CEILING {
            return Err(self.invalid(format!(
                "at most {} (a longer hold would let one upstream reply stop every call for hours)",
                humantime::format_duration(MAX_UPSTREAM_HOLD_CEILING)
            )));
        }
        Ok(hold)
    }

    /// Text with surrounding whitespace removed, which must leave something.
    pub(super) fn non_blank(&self) -> Result<Option<String>, ConfigError> {
        match self.trimmed() {
            Some(text) => Ok(Some(text)),
            None => Err(ConfigError(format!(
                "invalid `{}` (from {}): must not be empty",
                self.key, self.origin
            ))),
        }
    }

    /// As [`Sourced::integer`], for a setting that has no default.
    pub(super) fn optional_integer(&self) -> Result<Option<serde_json::Number>, ConfigError> {
        self.integer().map(Some)
    }
}

/// An RFC 3339 date (`2025-10-15`) or date-time (`2025-10-15T12:00:00Z`).
fn parse_date(key: &'static str, value: &str, origin: &str) -> Result<SystemTime, ConfigError> {
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
