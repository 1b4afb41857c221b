//! The configuration file as written (`config/explo-shim.toml`), read by the settings table:
//! each key the table has, as the TOML type its row says, and nothing else. Unknown keys are
//! errors: a typo must not silently fall back to a default. Nothing here decides a value;
//! [`super::resolve`] resolves these against flags and defaults.
//!
//! The file is read with serde, one table at a time, so that toml names a bad key or a value
//! of the wrong type with its line, as it does for a derived struct ("unknown field `urll`,
//! expected one of ...", "invalid type: string \"yes\", expected a boolean").

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::ConfigError;
use super::sourced::Raw;
use super::spec::{About, FileKind};
use super::table::SETTINGS;

/// The values the file sets, by dotted key.
#[derive(Debug, Default)]
pub(super) struct FileValues(BTreeMap<&'static str, FileValue>);

/// One value of the file, as its row's [`FileKind`] reads it.
#[derive(Debug)]
enum FileValue {
    Text(String),
    Count(u64),
    Integer(i64),
    Switch(bool),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl FileValues {
    /// The value the file gives `key`, if it sets it.
    pub(super) fn get(&self, key: &str) -> Option<Raw<'_>> {
        Some(match self.0.get(key)? {
            FileValue::Text(text) => Raw::Text(text),
            FileValue::Count(count) => Raw::Count(*count),
            FileValue::Integer(number) => Raw::Integer(*number),
            FileValue::Switch(on) => Raw::Switch(*on),
            FileValue::List(items) => Raw::List(items),
            FileValue::Map(map) => Raw::Map(map),
        })
    }

    /// Reads the file's text.
    pub(super) fn parse(text: &str) -> Result<FileValues, toml::de::Error> {
        let mut values = FileValues::default();
        toml::Deserializer::parse(text)?.deserialize_map(Table {
            name: "",
            values: &mut values,
        })?;
        Ok(values)
    }
}

/// Reads and parses the file; any problem names the file.
pub(super) fn read(path: &Path) -> Result<FileValues, ConfigError> {
    let text = super::read::read_bounded_text(path).map_err(|error| {
        ConfigError(format!(
            "cannot read config file {}: {error}",
            path.display()
        ))
    })?;
    FileValues::parse(&text).map_err(|error| {
        ConfigError(format!(
            "invalid config file {}: {}",
            path.display(),
            without_source(&text, &error)
        ))
    })
}

/// A TOML error as its place and message, without the quoted source line that toml's own
/// text shows: that line may hold a secret (a Redis URL's password, say), and the error is
/// logged, on every refused reload too.
fn without_source(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}: {message}")
}

/// What a table of the file may hold, directly: its settings, and the tables under it.
enum Entry {
    Setting(&'static About),
    /// The dotted name of a table under it.
    Table(&'static str),
}

/// The keys of the table `name` (`""`: the top of the file), in the settings table's order.
fn entries(name: &str) -> Vec<(&'static str, Entry)> {
    let mut entries: Vec<(&'static str, Entry)> = Vec::new();
    for about in SETTINGS {
        let inside = match name {
            "" => Some(about.key),
            _ => about
                .key
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.')),
        };
        let Some(inside) = inside else {
            continue;
        };
        match inside.split_once('.') {
            None => entries.push((inside, Entry::Setting(about))),
            // The first setting of a table under this one names it.
            Some((child, _)) if !entries.iter().any(|(key, _)| *key == child) => {
                let dotted = &about.key[..about.key.len() - inside.len() + child.len()];
                entries.push((child, Entry::Table(dotted)));
            }
            Some(_) => {}
        }
    }
    entries
}

/// Reads one table of the file into `values`.
struct Table<'v> {
    name: &'static str,
    values: &'v mut FileValues,
}

impl<'de> DeserializeSeed<'de> for Table<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Table<'_> {
    type Value = ();

    /// As serde's derive says it, so that a table written as a value reads as before
    /// ("invalid type: integer `5`, expected struct FileUpstream").
    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("struct File")?;
        for word in self.name.split('_') {
            let mut letters = word.chars();
            if let Some(first) = letters.next() {
                write!(
                    formatter,
                    "{}{}",
                    first.to_ascii_uppercase(),
                    letters.as_str()
                )?;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let entries = entries(self.name);
        let names: Vec<&'static str> = entries.iter().map(|(key, _)| *key).collect();
        while let Some(index) = map.next_key_seed(KeyOf(&names, self.name))? {
            match &entries[index].1 {
                Entry::Table(name) => map.next_value_seed(Table {
                    name,
                    values: &mut *self.values,
                })?,
                Entry::Setting(about) => {
                    let value = match about.file {
                        FileKind::Text => FileValue::Text(map.next_value()?),
                        FileKind::Count => FileValue::Count(map.next_value()?),
                        FileKind::Integer => FileValue::Integer(map.next_value()?),
                        FileKind::Switch => FileValue::Switch(map.next_value()?),
                        FileKind::List => FileValue::List(map.next_value()?),
                        FileKind::Map => FileValue::Map(map.next_value()?),
                        // `workers = 4` or `workers = "auto"`.
                        FileKind::TextOrNumber => {
                            FileValue::Text(match map.next_value::<toml::Value>()? {
                                toml::Value::String(text) => text,
                                other => other.to_string(),
                            })
                        }
                    };
                    self.values.0.insert(about.key, value);
                }
            }
        }
        Ok(())
    }
}

/// The order a table's keys were listed in by "unknown field" errors before the settings
/// table (serde's derived structs listed their fields), where it differs from the table's: the
/// errors still list them so. Keys not named here follow, in the table's order.
const HINT_ORDER: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "listen",
            "admin",
            "workers",
            "log_format",
            "log_level",
            "access_log",
            "upstream",
            "limits",
            "legacy",
            "rate_limit",
            "deprecation",
            "tls",
            "shutdown",
            "clients",
        ],
    ),
    (
        "legacy",
        &["team_id", "extra_customer_keys", "api_environment_tag"],
    ),
    ("shutdown", &["grace"]),
];

/// A key of the table named second: its index among `names`, or serde's "unknown field"
/// error listing them.
struct KeyOf<'n>(&'n [&'static str], &'n str);

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeyOf<'_> {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("field identifier")
    }

    /// serde's own "unknown field" wording, which wants the names as a `'static` list.
    fn visit_str<E: de::Error>(self, key: &str) -> Result<usize, E> {
        if let Some(index) = self.0.iter().position(|name| *name == key) {
            return Ok(index);
        }
        let mut listed = self.0.to_vec();
        let earlier = HINT_ORDER
            .iter()
            .find(|(table, _)| *table == self.1)
            .map_or(&[][..], |(_, keys)| keys);
        // A stable sort: the keys named there first, in that order; the rest as they were.
        listed.sort_by_key(|key| {
            earlier
                .iter()
                .position(|earlier| earlier == key)
                .unwrap_or(usize::MAX)
        });
        let quoted: Vec<String> = listed.iter().map(|name| format!("`{name}`")).collect();
        Err(E::custom(match quoted.as_slice() {
            [] => format!("unknown field `{key}`, there are no fields"),
            [one] => format!("unknown field `{key}`, expected {one}"),
            [one, two] => format!("unknown field `{key}`, expected {one} or {two}"),
            all => format!("unknown field `{key}`, expected one of {}", all.join(", ")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        FileValues::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn an_error_names_its_place_but_never_quotes_the_line() {
        let text = "workers = 2\n[rate_limit]\nredis_url = \"redis://:Secret@redis:6379/0\" x\n";
        let error = FileValues::parse(text).unwrap_err();
        let described = without_source(text, &error);
        assert!(described.starts_with("line 3, column "), "{described}");
        assert!(!described.contains("Secret"), "{described}");
        // A half-written file, cut inside the secret.
        let cut = "[rate_limit]\nredis_url = \"redis://:Sec";
        let described = without_source(cut, &FileValues::parse(cut).unwrap_err());
        assert!(described.starts_with("line 2, column "), "{described}");
        assert!(!described.contains("Sec"), "{described}");
    }

    #[test]
    fn the_file_is_read_by_the_kind_each_setting_has() {
        let values = FileValues::parse(
            "workers = 4\naccess_log = true\n[upstream]\nurl = \"http://x\"\n\
             [limits]\nmax_headers = 50\n[deprecation]\nbrownouts = [\"a\"]\n\
             [legacy.api_environment_tag]\nProduction = \"Customer\"\n",
        )
        .unwrap();
        assert!(matches!(values.get("workers"), Some(Raw::Text("4"))));
        assert!(matches!(values.get("access_log"), Some(Raw::Switch(true))));
        assert!(matches!(
            values.get("upstream.url"),
            Some(Raw::Text("http://x"))
        ));
        assert!(matches!(
            values.get("limits.max_headers"),
            Some(Raw::Count(50))
        ));
        assert!(matches!(
            values.get("deprecation.brownouts"),
            Some(Raw::List([_]))
        ));
        assert!(matches!(
            values.get("legacy.api_environment_tag"),
            Some(Raw::Map(map)) if map["Production"] == "Customer"
        ));
        assert!(values.get("listen").is_none());
    }

    /// serde's wording, and the order the keys were always listed in.
    #[test]
    fn an_unknown_key_is_named_with_the_keys_its_table_has() {
        assert!(error_of("urll = 1").contains(
            "unknown field `urll`, expected one of `listen`, `admin`, `workers`, `log_format`, \
             `log_level`, `access_log`, `upstream`, `limits`, `legacy`, `rate_limit`, \
             `deprecation`, `tls`, `shutdown`, `clients`, `admin_token_file`, \
             `admin_allowed_hosts`"
        ));
        assert!(error_of("[shutdown]\nnope = 1").contains("expected `grace` or `delay`"));
        assert!(error_of("[tls]\nnope = 1").contains("expected `cert_file` or `key_file`"));
        assert!(error_of("[legacy]\nnope = 1").contains(
            "expected one of `team_id`, `extra_customer_keys`, `api_environment_tag`, \
             `refuse_cascading_delete`"
        ));
        assert!(error_of("[upstream]\nurll = 1").contains(
            "expected one of `url`, `connect_timeout`, `timeout`, `pool_idle_timeout`, \
             `pool_max_idle`, `ca_file`, `add_x_forwarded_for`"
        ));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_as_serde_names_it() {
        assert!(error_of("access_log = \"yes\"").contains("expected a boolean"));
        assert!(error_of("upstream = 5").contains("expected struct FileUpstream"));
        assert!(error_of("[rate_limit]\nburst = -1").contains("expected u64"));
        assert!(error_of("clients = 3").contains("expected a map"));
    }
}
