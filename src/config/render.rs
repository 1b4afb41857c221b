//! The resolved configuration written back as a config file (`--check-config`): the tables and
//! keys of `config/explo-shim.toml`, every setting with its value in the file's own language
//! (durations as "30s", dates as RFC 3339, brownouts as ISO 8601 intervals), and a comment on
//! each saying where the value came from. Fed back with `--config`, it resolves to the same
//! settings; only a Redis password is shown as [`super::REDACTED`].
//!
//! [`sections`] walks the settings table ([`super::table`]), which says how each setting is
//! written; the test against the reference file walks it too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use toml::Value;

use super::spec::Shown;
use super::{
    Config, ConfigError, FileKind, FleetSettings, Overrides, RateLimit, SETTINGS, SentinelSettings,
};
use crate::legacy::retirement::schedule::{Window, parse_interval};

/// Above the settings: what the file is and how to read its comments.
const PREAMBLE: &str = "\
# explo-shim: the resolved configuration (explo-shim --check-config).
# The comment on each value names where it came from: the built-in default, the config file, an
# environment variable or a flag. Fed back with --config, this file gives the same settings,
# except a Redis password, shown as <redacted>.

";

/// Source comments start in this column when the setting is shorter; past it, two spaces after.
const COMMENT_COLUMN: usize = 40;

/// Where one setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Default,
    File(&'a Path),
    /// An `EXPLO_SHIM_*` variable or `RUST_LOG`.
    Env(&'a str),
    Flag(&'a str),
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// What each setting's source was: the flags and variables given, and the keys the file sets.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Dotted key and the flag or variable that gave it.
    given: Vec<(&'static str, &'static str)>,
    /// The config file, read as a plain table to tell which keys it sets.
    file: Option<(PathBuf, toml::Table)>,
}

impl Sources {
    /// From the flags and variables in `overrides` and the text of the file it names, if any.
    pub fn new(overrides: &Overrides, file_text: Option<&str>) -> Result<Sources, ConfigError> {
        let given = SETTINGS
            .iter()
            .filter_map(|about| Some((about.key, overrides.given(about.key)?.origin)))
            .collect();
        let file = match (&overrides.config, file_text) {
            (Some(path), Some(text)) => {
                let table = text.parse::<toml::Table>().map_err(|error| {
                    ConfigError(format!("invalid config file {}: {error}", path.display()))
                })?;
                Some((path.clone(), table))
            }
            _ => None,
        };
        Ok(Sources { given, file })
    }

    /// As [`Sources::new`], reading the file `overrides` names.
    pub fn read(overrides: &Overrides) -> Result<Sources, ConfigError> {
        let text = match &overrides.config {
            Some(path) => Some(super::read::read_bounded_text(path).map_err(|error| {
                ConfigError(format!(
                    "cannot read config file {}: {error}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Sources::new(overrides, text.as_deref())
    }

    /// Where the value of `key` (dotted, as in the file: `upstream.timeout`) came from, in
    /// the order of precedence.
    pub fn of(&self, key: &str) -> Source<'_> {
        if let Some((_, origin)) = self.given.iter().find(|(given, _)| *given == key) {
            return if origin.starts_with("--") {
                Source::Flag(origin)
            } else {
                Source::Env(origin)
            };
        }
        match &self.file {
            Some((path, table)) if sets(table, key) => Source::File(path),
            _ => Source::Default,
        }
    }
}

/// Whether `table` holds the dotted `key`.
fn sets(table: &toml::Table, key: &str) -> bool {
    let mut table = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match (table.get(part), parts.peek()) {
            (Some(_), None) => return true,
            (Some(Value::Table(inner)), Some(_)) => table = inner,
            _ => return false,
        }
    }
    false
}

/// One table of the file (`""`: the keys before the first table).
#[derive(Debug)]
pub struct Section<'s> {
    pub name: &'static str,
    /// A table that is itself one setting (`legacy.api_environment_tag`): its entries are data,
    /// and its header carries the source.
    pub map: Option<Source<'s>>,
    pub lines: Vec<Line<'s>>,
}

/// One setting, or one entry of a map setting.
#[derive(Debug)]
pub struct Line<'s> {
    pub key: String,
    /// `Err(why)`: unset, or unused as configured; written as a comment saying why.
    pub value: Result<Value, &'static str>,
    pub source: Source<'s>,
    /// Said after the source, e.g. what a default was derived from.
    pub note: Option<&'static str>,
}

/// The config file's tables in the settings table's order, every setting in each. A map
/// setting (`[clients]`) is a table of its own, its entries one line each.
pub fn sections<'s>(config: &Config, sources: &'s Sources) -> Vec<Section<'s>> {
    let mut sections: Vec<Section<'s>> = Vec::new();
    for about in SETTINGS {
        let source = sources.of(about.key);
        let (table, key) = match about.file {
            FileKind::Map => (about.key, ""),
            _ => about.key.rsplit_once('.').unwrap_or(("", about.key)),
        };
        if sections.last().is_none_or(|section| section.name != table) {
            sections.push(Section {
                name: table,
                map: (about.file == FileKind::Map).then_some(source),
                lines: Vec::new(),
            });
        }
        // Just pushed, or the one before was the same table.
        let Some(section) = sections.last_mut() else {
            continue;
        };
        let value = (about.show)(config);
        if let (FileKind::Map, Ok(Value::Table(entries))) = (about.file, &value) {
            for (name, value) in entries {
                section.lines.push(Line {
                    key: name.clone(),
                    value: Ok(value.clone()),
                    source,
                    note: None,
                });
            }
            continue;
        }
        // A derived default is worth saying only where the setting is in use.
        let note = about
            .default_note
            .filter(|_| source == Source::Default && value.is_ok());
        section.lines.push(Line {
            key: key.to_owned(),
            value,
            source,
            note,
        });
    }
    sections
}

/// Writes `config` as a config file, each value's source in a comment beside it.
pub fn render(config: &Config, sources: &Sources) -> String {
    let mut out = String::from(PREAMBLE);
    let commented = |out: &mut String, body: String, comment: String| {
        let padding = COMMENT_COLUMN.saturating_sub(body.len()).max(2);
        out.push_str(&format!("{body}{:padding$}# {comment}\n", ""));
    };
    for section in sections(config, sources) {
        if !section.name.is_empty() {
            out.push('\n');
            let header = format!("[{}]", section.name);
            match section.map {
                Some(source) => commented(&mut out, header, source.to_string()),
                None => out.push_str(&format!("{header}\n")),
            }
        }
        for line in section.lines {
            let body = match &line.value {
                Ok(value) => format!("{} = {value}", key(&line.key)),
                Err(why) => format!("# {}: {why}", line.key),
            };
            let comment = match line.note {
                Some(note) => format!("{} ({note})", line.source),
                None => line.source.to_string(),
            };
            commented(&mut out, body, comment);
        }
    }
    out
}

/// `--check-config`'s output: the resolved `config` as a config file, naming each value's
/// source among `overrides` and the file they name.
pub fn effective_config(config: &Config, overrides: &Overrides) -> Result<String, ConfigError> {
    Ok(render(config, &Sources::read(overrides)?))
}

/// Why `--check-config` shows no budget settings.
const BUDGET_OFF: &str = "unused, the budget is off (enabled = false)";
/// Why `--check-config` shows no fleet settings.
const NO_FLEET: &str = "unused without redis_url or redis_sentinels";

/// A budget setting: unused when the budget is off.
pub(super) fn budget(config: &Config, show: impl Fn(&RateLimit) -> Value) -> Shown {
    config.rate_limit.as_ref().map(show).ok_or(BUDGET_OFF)
}

/// A Sentinel setting: unused without sentinels.
pub(super) fn sentinels(config: &Config, show: impl Fn(&SentinelSettings) -> Value) -> Shown {
    let fleet = config.fleet.as_ref().ok_or(NO_FLEET)?;
    let sentinels = fleet.sentinels.as_ref();
    sentinels
        .map(show)
        .ok_or("unset, the fleet's Redis is the one redis_url names")
}

/// A fleet setting: unused without a Redis.
pub(super) fn fleet(config: &Config, show: impl Fn(&FleetSettings) -> Value) -> Shown {
    config.fleet.as_ref().map(show).ok_or(NO_FLEET)
}

pub(super) fn strings<'s>(items: impl IntoIterator<Item = &'s String>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|item| Value::from(item.as_str()))
            .collect(),
    )
}

/// A map setting, names to text.
pub(super) fn string_table(map: &BTreeMap<String, String>) -> Value {
    Value::Table(
        map.iter()
            .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
            .collect(),
    )
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        Value::from(name).to_string()
    }
}

pub(super) fn text(value: impl fmt::Display) -> Value {
    Value::String(value.to_string())
}

/// TOML integers are signed 64-bit; every count the config reads came from one.
pub(super) fn number(value: u64) -> Value {
    Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

/// As the settings read it: "30s", "500ms", "1m 30s".
pub(super) fn duration(value: Duration) -> Value {
    text(humantime::format_duration(value))
}

/// RFC 3339 in UTC, with a fraction of a second only when there is one.
pub(super) fn time(at: SystemTime) -> Value {
    text(humantime::format_rfc3339(at))
}

/// `""` for none, as the reference file writes an unset path.
pub(super) fn path(value: Option<&Path>) -> Value {
    text(value.map_or_else(String::new, |path| path.display().to_string()))
}

/// `START/DURATION` as the brownout plan prints it, or `START/END` when that form would lose a
/// fraction of a second.
pub(super) fn interval(window: &Window) -> String {
    let short = window.to_iso8601();
    if parse_interval(&short).as_ref() == Ok(window) {
        short
    } else {
        format!(
            "{}/{}",
            humantime::format_rfc3339(window.start),
            humantime::format_rfc3339(window.end)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Setting;

    fn setting(value: &str, origin: &'static str) -> Option<Setting> {
        Some(Setting {
            value: value.to_owned(),
            origin,
        })
    }

    /// The line that sets `key` in `text`, with its comment.
    fn line_of<'t>(text: &'t str, key: &str) -> &'t str {
        let prefix = format!("{key} = ");
        text.lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{key}` in:\n{text}"))
    }

    /// What `key`'s line says, without the comment; and the comment.
    fn value_and_source<'t>(text: &'t str, key: &str) -> (&'t str, &'t str) {
        let (value, comment) = line_of(text, key).rsplit_once("# ").unwrap();
        (value.trim_end(), comment)
    }

    #[test]
    fn defaults_are_written_in_the_files_own_language() {
        let config = Config::resolve(&Overrides::default()).unwrap();
        let text = render(&config, &Sources::default());
        assert!(text.starts_with(PREAMBLE));
        for (key, written) in [
            ("listen", "listen = \"127.0.0.1:8080\""),
            ("workers", "workers = \"auto\""),
            ("log_format", "log_format = \"text\""),
            ("access_log", "access_log = false"),
            ("url", "url = \"https://api.explo.co\""),
            ("connect_timeout", "connect_timeout = \"5s\""),
            ("ca_file", "ca_file = \"\""),
            ("legacy_body_bytes", "legacy_body_bytes = 1048576"),
            ("max_upstream_hold", "max_upstream_hold = \"10m\""),
            ("date", "date = \"2025-10-15T00:00:00Z\""),
            ("sunset", "sunset = \"\""),
            ("brownouts", "brownouts = []"),
            ("after_sunset", "after_sunset = \"serve\""),
            ("exempt_clients", "exempt_clients = []"),
            ("admin_allowed_hosts", "admin_allowed_hosts = []"),
            ("delay", "delay = \"0s\""),
            ("grace", "grace = \"30s\""),
        ] {
            assert_eq!(value_and_source(&text, key), (written, "default"), "{text}");
        }
        for unset in [
            "# redis_url: unset, every replica has its own budget and usage",
            "# team_id: unset, legacy replies carry \"team_id\": null",
        ] {
            assert!(text.contains(unset), "{text}");
        }
        let map_header = format!(
            "{:<COMMENT_COLUMN$}# default\n\n[tls]",
            "[legacy.api_environment_tag]"
        );
        assert!(text.contains(&map_header), "{text}");
        // The whole text is TOML.
        text.parse::<toml::Table>().unwrap();
    }

    #[test]
    fn each_value_names_its_source_flag_variable_file_or_default() {
        let overrides = Overrides {
            config: Some("/etc/explo-shim/x.toml".into()),
            listen: setting("127.0.0.1:1111", "--listen"),
            upstream_timeout: setting("7s", "EXPLO_SHIM_UPSTREAM_TIMEOUT"),
            log_level: setting("warn", "RUST_LOG"),
            ..Overrides::default()
        };
        // The file also sets `listen`, which the flag beats.
        let file = "listen = \"127.0.0.1:2222\"\n[limits]\nmax_headers = 50\n\
                    [legacy.api_environment_tag]\nProduction = \"Customer\"\n";
        let sources = Sources::new(&overrides, Some(file)).unwrap();
        assert_eq!(sources.of("listen"), Source::Flag("--listen"));
        assert_eq!(
            sources.of("upstream.timeout"),
            Source::Env("EXPLO_SHIM_UPSTREAM_TIMEOUT")
        );
        assert_eq!(sources.of("log_level"), Source::Env("RUST_LOG"));
        let path = Path::new("/etc/explo-shim/x.toml");
        assert_eq!(sources.of("limits.max_headers"), Source::File(path));
        assert_eq!(sources.of("legacy.api_environment_tag"), Source::File(path));
        assert_eq!(sources.of("limits.max_in_flight"), Source::Default);
        assert_eq!(sources.of("upstream.url"), Source::Default);

        let config = Config::resolve(&Overrides {
            config: None,
            ..overrides.clone()
        })
        .unwrap();
        let text = render(&config, &sources);
        assert_eq!(
            value_and_source(&text, "listen"),
            ("listen = \"127.0.0.1:1111\"", "flag --listen")
        );
        assert_eq!(
            value_and_source(&text, "timeout"),
            ("timeout = \"7s\"", "env EXPLO_SHIM_UPSTREAM_TIMEOUT")
        );
        assert_eq!(
            value_and_source(&text, "log_level"),
            ("log_level = \"warn\"", "env RUST_LOG")
        );
        assert_eq!(
            value_and_source(&text, "max_headers").1,
            "file /etc/explo-shim/x.toml"
        );
        let map_header = format!(
            "{:<COMMENT_COLUMN$}# file /etc/explo-shim/x.toml\n",
            "[legacy.api_environment_tag]"
        );
        assert!(text.contains(&map_header), "{text}");
    }

    #[test]
    fn optional_and_unused_settings_say_why_they_have_no_value() {
        let overrides = Overrides {
            rate_limit_redis_url: setting(
                "redis://ops:s3cret@redis.internal:6380/2",
                "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
            ),
            ..Overrides::default()
        };
        let config = Config::resolve(&overrides).unwrap();
        let sources = Sources::new(&overrides, None).unwrap();
        let text = render(&config, &sources);
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(
            value_and_source(&text, "redis_url"),
            (
                "redis_url = \"redis://ops:<redacted>@redis.internal:6380/2\"",
                "env EXPLO_SHIM_RATE_LIMIT_REDIS_URL"
            )
        );
        assert_eq!(
            value_and_source(&text, "key"),
            (
                "key = \"https://api.explo.co\"",
                "default (the upstream URL)"
            )
        );
        assert_eq!(
            value_and_source(&text, "redis_timeout").0,
            "redis_timeout = \"25ms\""
        );

        let mut config = config;
        config.rate_limit = None;
        let text = render(&config, &sources);
        assert!(text.contains("enabled = false"), "{text}");
        assert!(
            text.contains("# per_minute: unused, the budget is off (enabled = false)"),
            "{text}"
        );
    }

    #[test]
    fn brownouts_keep_their_exact_times() {
        let whole = parse_interval("2026-12-08T15:00:00Z/PT5M").unwrap();
        assert_eq!(interval(&whole), "2026-12-08T15:00:00Z/PT5M");
        let fraction = parse_interval("2026-12-08T15:00:00.25Z/2026-12-08T15:05:00Z").unwrap();
        assert_eq!(
            parse_interval(&interval(&fraction)).unwrap(),
            fraction,
            "{}",
            interval(&fraction)
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        assert_eq!(key("Production"), "Production");
        assert_eq!(key("Data team"), "\"Data team\"");
        assert_eq!(key(""), "\"\"");
    }

    /// Every setting the binary has, as dotted keys: the renderer is the list. `rich` adds the
    /// settings a default config leaves unset.
    fn settings_of(config: &Config) -> Vec<String> {
        let sources = Sources::default();
        let mut keys = Vec::new();
        for section in sections(config, &sources) {
            if section.map.is_some() {
                keys.push(section.name.to_owned());
                continue;
            }
            for line in section.lines {
                keys.push(match section.name {
                    "" => line.key,
                    table => format!("{table}.{}", line.key),
                });
            }
        }
        keys
    }

    /// The keys `config/explo-shim.toml` documents: the ones it sets, and the ones it shows
    /// commented out (`# team_id = 113`) because they have no default.
    fn documented_keys(reference: &str) -> Vec<String> {
        let mut keys = Vec::new();
        fn walk(prefix: &str, table: &toml::Table, keys: &mut Vec<String>) {
            for (key, value) in table {
                let dotted = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    // The map settings: their entries are data, not settings.
                    Value::Table(inner) if !MAP_SETTINGS.contains(&dotted.as_str()) => {
                        walk(&dotted, inner, keys)
                    }
                    _ => keys.push(dotted),
                }
            }
        }
        walk("", &reference.parse::<toml::Table>().unwrap(), &mut keys);
        let mut table = String::new();
        for line in reference.lines() {
            if let Some(name) = line.strip_prefix('[') {
                table = name.split(']').next().unwrap().to_owned();
            } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = "))
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && !MAP_SETTINGS.contains(&table.as_str())
            {
                keys.push(format!("{table}.{key}"));
            }
        }
        keys
    }

    /// The tables that are each one setting, a map of names to values.
    const MAP_SETTINGS: [&str; 2] = ["legacy.api_environment_tag", "clients"];

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/explo-shim.toml"
    ));

    /// A config with every optional setting set, so that the renderer writes all of them.
    fn rich() -> Config {
        let mut config = Config::resolve(&Overrides {
            rate_limit_redis_url: setting("redis://r:6379", "--rate-limit-redis-url"),
            ..Overrides::default()
        })
        .unwrap();
        config.legacy.team_id = Some(113.into());
        config
    }

    #[test]
    fn the_reference_file_and_the_binary_know_the_same_settings() {
        let documented = documented_keys(REFERENCE);
        let mut known = settings_of(&Config::resolve(&Overrides::default()).unwrap());
        known.extend(settings_of(&rich()));
        // Every key the reference file sets or shows is one the binary reads...
        for key in &documented {
            assert!(
                known.contains(key),
                "config/explo-shim.toml has `{key}`, which is no setting"
            );
        }
        // ...the file parses as the binary reads it (unknown keys are errors)...
        super::super::file::FileValues::parse(REFERENCE).unwrap();
        // ...and every setting the binary has appears in it.
        for key in &known {
            assert!(
                documented.contains(key),
                "`{key}` is missing from config/explo-shim.toml"
            );
        }
        // The renderer's list is what it writes: the rendered default is TOML whose keys are
        // all in the list.
        let rendered = render(&rich(), &Sources::default());
        for key in documented_keys(&rendered) {
            assert!(known.contains(&key), "rendered `{key}` is not in the list");
        }
    }
}
