//! What one row of the settings table ([`super::table`]) says, and the macro that turns the
//! table into the types and lists the rest of the crate reads: a typed [`Spec`] per setting
//! (for resolution), [`SETTINGS`](super::table::SETTINGS) (for the command line, the
//! environment, the file and `--check-config`) and [`Overrides`](super::Overrides) (one field
//! per flag).

use super::sourced::Sourced;
use super::{Config, ConfigError};

/// The untyped part of a row: everything but the parser and the default.
#[derive(Debug)]
pub struct About {
    /// The dotted key in the config file, e.g. `upstream.timeout`.
    pub key: &'static str,
    /// What the file holds under the key.
    pub file: FileKind,
    /// The documentation; a flag's `--help` line is its first paragraph.
    pub doc: &'static str,
    /// The flag and variable that override the file, if any.
    pub flag: Option<Flag>,
    /// The resolved value in the file's language, for `--check-config`; `Err(why)` when it
    /// has none (unset, or unused as configured), written as a comment saying why.
    pub show: fn(&Config) -> Shown,
    /// Said after `default` in `--check-config` when the default is derived from another
    /// setting (and the setting is in use).
    pub default_note: Option<&'static str>,
}

/// A value as `--check-config` writes it, or why there is none.
pub type Shown = Result<toml::Value, &'static str>;

/// What a key of the file holds, as TOML types it. The file is read with serde into these
/// types, so a wrong type is named as before: "invalid type: string, expected a boolean".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Text,
    /// A non-negative integer.
    Count,
    Integer,
    Switch,
    /// Text or an integer (`workers = 4`, `workers = "auto"`), read as text.
    TextOrNumber,
    /// An array of strings.
    List,
    /// A table of names to strings; written as a table of its own (`[clients]`).
    Map,
}

/// A setting's command-line flag and environment variable.
#[derive(Debug)]
pub struct Flag {
    /// The argument's id, also the [`Overrides`](super::Overrides) field: `upstream_timeout`.
    pub id: &'static str,
    /// `--upstream-timeout`.
    pub long: &'static str,
    /// `EXPLO_SHIM_UPSTREAM_TIMEOUT`.
    pub env: &'static str,
    pub value_name: &'static str,
    /// Its place among the flags in `--help`, the man page and the completion scripts (the
    /// order they were added in, not the file's).
    pub at: usize,
    /// What the flag alone, without a value, means (`--access-log` is `--access-log true`).
    pub bare: Option<&'static str>,
    /// Whether `--help` must not show the variable's value (it may hold a password).
    pub secret: bool,
}

/// One setting: its row, how its value is read and what it is when nothing gives one.
pub struct Spec<T: 'static> {
    pub about: About,
    pub parse: fn(&Sourced<'_>) -> Result<T, ConfigError>,
    pub default: Fallback<T>,
}

/// A setting's built-in default.
pub enum Fallback<T: 'static> {
    /// Text read by the setting's own parser, as if given (`listen`'s `127.0.0.1:8080`).
    Text(&'static str),
    /// The value itself.
    Value(fn() -> T),
}

/// `Some(x)` for one argument, `None` for none: a row's optional parts.
macro_rules! optional {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

/// The settings table: one row per setting, in the order of `config/explo-shim.toml`.
///
/// ```text
/// /// Documentation (a flag's --help line).
/// NAME: Type = "dotted.key", FileKind {
///     parse: parser, default: Fallback::..., show: |config| ...,
///     [note: "...",]
///     [flag field "--flag" "EXPLO_SHIM_FLAG" "VALUE" at N [bare "x"] [secret true],]
/// }
/// ```
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $type:ty = $key:literal, $kind:ident {
            parse: $parse:expr,
            default: $default:expr,
            show: $show:expr,
            $(note: $note:literal,)?
            $(flag $field:ident $long:literal $env:literal $value_name:literal at $at:literal
                $(bare $bare:literal)? $(secret $secret:literal)?,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            pub static $name: Spec<$type> = Spec {
                about: About {
                    key: $key,
                    file: FileKind::$kind,
                    doc: concat!($($doc, "\n"),*),
                    flag: optional!($(Flag {
                        id: stringify!($field),
                        long: $long,
                        env: $env,
                        value_name: $value_name,
                        at: $at,
                        bare: optional!($($bare)?),
                        secret: matches!(optional!($($secret)?), Some(true)),
                    })?),
                    show: $show,
                    default_note: optional!($($note)?),
                },
                // A closure, so that the parser is one for every lifetime of its input.
                parse: |value| $parse(value),
                default: $default,
            };
        )*

        /// Every setting, in the order of `config/explo-shim.toml`.
        pub static SETTINGS: &[&About] = &[$(&$name.about),*];

        /// The settings given as flags or `EXPLO_SHIM_*` variables, each with where it came
        /// from; they override the config file. The command line fills it ([`crate::cli`]);
        /// the config owns it, so the config reads nothing of the command line's.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Overrides {
            /// The config file (`--config`, `EXPLO_SHIM_CONFIG`).
            pub config: Option<std::path::PathBuf>,
            $($(
                #[doc = concat!("`", $long, "`, `", $env, "`: `", $key, "`.")]
                pub $field: Option<Setting>,
            )?)*
        }

        impl Overrides {
            /// The flag or variable given for the dotted `key`, if any.
            pub fn given(&self, key: &str) -> Option<&Setting> {
                match key {
                    $($($key => self.$field.as_ref(),)?)*
                    _ => None,
                }
            }

            /// Sets the setting whose flag has the id `id` (its field's name); false when no
            /// flag has it.
            pub fn set(&mut self, id: &str, setting: Setting) -> bool {
                match id {
                    $($(stringify!($field) => self.$field = Some(setting),)?)*
                    _ => return false,
                }
                true
            }
        }
    };
}

pub(super) use {optional, settings};
