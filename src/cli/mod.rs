//! The command line. Every setting that has a flag also reads an `EXPLO_SHIM_*` variable;
//! precedence is flag > environment > config file > built-in default (the last two are
//! resolved in [`crate::config`]). The settings' flags are made from the settings table
//! ([`crate::config::SETTINGS`]); the subcommands are derived from [`Command`]. Values are kept
//! as text here so that a bad one is reported by the config resolver with the name of the flag
//! or variable it came from.

pub mod commands;
pub mod demo;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgGroup, CommandFactory, FromArgMatches, Subcommand};

use crate::config::{About, DEFAULT_UPSTREAM, Flag, Overrides, SETTINGS, Setting};
use crate::observe::BUILD_COMMIT as COMMIT;

/// What `--version` prints after the name: `0.2.0 (commit 3e71587)`, or `0.2.0` when the
/// commit is unknown.
pub const VERSION: &str = match std::str::from_utf8(&VERSION_BYTES) {
    Ok(version) => version,
    Err(_) => panic!("the version is made of UTF-8 strings"),
};

const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
const COMMIT_OPEN: &str = " (commit ";
const COMMIT_CLOSE: &str = ")";
const VERSION_LEN: usize = match COMMIT {
    Some(commit) => PACKAGE_VERSION.len() + COMMIT_OPEN.len() + commit.len() + COMMIT_CLOSE.len(),
    None => PACKAGE_VERSION.len(),
};
/// `concat!` takes only literals, and `option_env!` is not one: the pieces are copied into an
/// array at compile time instead.
const VERSION_BYTES: [u8; VERSION_LEN] = {
    let mut out = [0u8; VERSION_LEN];
    let at = append(&mut out, 0, PACKAGE_VERSION);
    if let Some(commit) = COMMIT {
        let at = append(&mut out, at, COMMIT_OPEN);
        let at = append(&mut out, at, commit);
        append(&mut out, at, COMMIT_CLOSE);
    }
    out
};

/// Copies `piece` into `out` from `at`; returns where it ended.
const fn append(out: &mut [u8], at: usize, piece: &str) -> usize {
    let bytes = piece.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        out[at + index] = bytes[index];
        index += 1;
    }
    at + bytes.len()
}

/// The command line: the flags that are not settings, and the subcommand. The settings' own
/// flags go to [`Overrides`], which [`parse`] returns beside this.
#[derive(Debug, Default)]
pub struct Cli {
    /// `--config FILE` (or `EXPLO_SHIM_CONFIG`).
    pub config: Option<PathBuf>,
    /// `--check-config`.
    pub check_config: bool,
    /// `--demo`.
    pub demo: bool,
    pub command: Option<Command>,
}

/// What `--help` and the man page say the binary is for.
const ABOUT: &str =
    "Keeps legacy Explo End User Group integrations working against the Customer API";

/// The config file's variable; the settings' own variables are in the settings table.
const CONFIG_VARIABLE: &str = "EXPLO_SHIM_CONFIG";

impl CommandFactory for Cli {
    /// The flags, in `--help`'s order: the config file, every setting that has a flag (each at
    /// its place, [`Flag::at`]), `--check-config` and `--demo`; then the subcommands. The group
    /// of every flag and the value names of the two switches are what clap's derive gave them
    /// when this was a derived parser: the command is the same one, and so are `--help`, the man
    /// page and the completion scripts made from it.
    fn command() -> clap::Command {
        let flags = setting_flags();
        let ids: Vec<&str> = std::iter::once("config")
            .chain(flags.iter().map(|(_, flag)| flag.id))
            .chain(["check_config", "demo"])
            .collect();
        let command = clap::Command::new("explo-shim")
            .group(ArgGroup::new("Cli").multiple(true).args(ids))
            .arg(
                Arg::new("config")
                    .long("config")
                    .env(CONFIG_VARIABLE)
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML config file (see config/explo-shim.toml)"),
            )
            .args(
                flags
                    .into_iter()
                    .map(|(about, flag)| setting_arg(about, flag)),
            )
            .arg(
                Arg::new("check_config")
                    .long("check-config")
                    .value_name("CHECK_CONFIG")
                    .action(ArgAction::SetTrue)
                    .help(
                        "Validate the configuration, print it and exit (0 when valid, 64 when not)",
                    ),
            )
            .arg(
                Arg::new("demo")
                    .long("demo")
                    .value_name("DEMO")
                    .action(ArgAction::SetTrue)
                    .conflicts_with("upstream")
                    .help(
                        "Run offline: start the in-memory Customer API emulator as the upstream, \
                         and print ready-to-paste legacy calls",
                    ),
            );
        // Deriving the subcommands also sets the `about` of the command they join (to the
        // enum's own documentation): the command's own comes after.
        Command::augment_subcommands(command)
            .version(VERSION)
            .about(ABOUT)
            .long_about(None)
    }

    fn command_for_update() -> clap::Command {
        Self::command()
    }
}

/// The settings that have a flag, each with it, in `--help`'s order.
fn setting_flags() -> Vec<(&'static About, &'static Flag)> {
    let mut flags: Vec<_> = SETTINGS
        .iter()
        .filter_map(|about| Some((*about, about.flag.as_ref()?)))
        .collect();
    flags.sort_by_key(|(_, flag)| flag.at);
    flags
}

/// A setting's flag, as the settings table describes it. Its value stays text: the config
/// resolver parses it, and names the flag or variable in its error.
fn setting_arg(about: &About, flag: &Flag) -> Arg {
    let arg = Arg::new(flag.id)
        .long(flag.long.trim_start_matches('-'))
        .env(flag.env)
        .value_name(flag.value_name)
        .value_parser(clap::value_parser!(String))
        .hide_env_values(flag.secret)
        .help(flag_help(about.doc));
    match flag.bare {
        Some(bare) => arg.num_args(0..=1).default_missing_value(bare),
        None => arg,
    }
}

/// A flag's `--help` line: the first paragraph of the setting's documentation, on one line,
/// without its closing full stop.
fn flag_help(doc: &str) -> String {
    let paragraph = doc.split("\n\n").next().unwrap_or_default();
    let line = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    line.strip_suffix('.').unwrap_or(&line).to_owned()
}

/// Tools beside the server.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read a legacy request on stdin (JSON body or a curl command) and print the equivalent
    /// Customer API call, with the semantic differences that apply.
    Translate {
        /// The legacy endpoint, when stdin holds only a JSON body: create_user_group,
        /// update_user_group, delete_user_group or refresh_user_group_token.
        #[arg(long)]
        endpoint: Option<String>,
        /// Print the call(s) as JSON instead of curl commands.
        #[arg(long)]
        json: bool,
        /// Customer API base URL used in the printed calls.
        #[arg(long, value_name = "URL", default_value = DEFAULT_UPSTREAM)]
        base_url: String,
    },
    /// Print the migration tracker of a running shim: who still calls what, since when.
    Usage {
        /// Admin listener URL (default: the configured admin address).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
        /// Print the /usage report as JSON (pretty-printed, the same members as /usage)
        /// instead of a table; --sort and --since apply to it too.
        #[arg(long)]
        json: bool,
        /// Order clients, and each client's endpoints, by calls or by last seen, most first
        /// (default: by client fingerprint, then endpoint name, as /usage lists them).
        #[arg(long, value_enum, value_name = "calls|last_seen")]
        sort: Option<UsageSort>,
        /// Only endpoints last seen within this long, e.g. 7d, 12h or 30m (clients with none
        /// left are left out).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Read a credential (the whole Explo-Authorization value, e.g. `Token abc`) on stdin and
    /// print its client fingerprint as the logs, /metrics and /usage show it.
    ///
    /// The credential is read from stdin only, never from the command line, where it would
    /// land in the shell's history and in other users' process lists. One trailing newline is
    /// dropped; a blank credential has no fingerprint (it counts as `anonymous`) and exits 65.
    Fingerprint,
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    /// Serve an in-memory Customer API (create/update/get/delete/refresh, v1 and v2 lists)
    /// for offline tests.
    Emulate {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
        listen: String,
        /// Answer 429 with Retry-After past 180 requests per minute, like the real API.
        #[arg(long)]
        rate_limit: bool,
        /// Misbehave, to see what clients get when the real API does (repeatable).
        #[arg(long, value_enum, value_name = "FAULT")]
        fault: Vec<crate::emulator::Fault>,
        /// The team's hierarchy levels, highest first, comma-separated: 1 to 3 distinct names,
        /// e.g. Region,Customer,User (default: Customer,User). New customers go at the first.
        #[arg(long, value_name = "NAMES", value_parser = crate::emulator::HierarchyLevels::parse)]
        hierarchy_levels: Option<crate::emulator::HierarchyLevels>,
    },
    /// Print a suggested brownout schedule before the sunset (windows growing from 5 minutes
    /// to 4 hours, one a week) and who would be affected, from a running shim's /usage.
    BrownoutPlan {
        /// The sunset to plan towards (default: the configured `deprecation.sunset`), e.g.
        /// 2027-03-01 or 2027-03-01T00:00:00Z.
        #[arg(long, value_name = "DATE")]
        sunset: Option<String>,
        /// Time of day the windows start, HH:MM in UTC.
        #[arg(long, value_name = "HH:MM", default_value = "15:00")]
        at: String,
        /// Admin listener URL of a running shim (default: the configured admin address).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
    },
    /// Exit 0 when the admin /readyz answers 200 (for container health checks).
    Healthcheck {
        /// Admin listener URL (default: the configured admin address).
        #[arg(long, value_name = "URL")]
        admin: Option<String>,
    },
}

/// The orders `explo-shim usage --sort` knows.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSort {
    /// Most calls first.
    Calls,
    /// Most recently seen first.
    #[value(name = "last_seen")]
    LastSeen,
}

/// The shells `explo-shim completions` writes scripts for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Parses `args` (including the program name). Help and version come back as `Err` too;
/// `clap::Error::exit_code` tells them apart.
pub fn parse<I, T>(args: I) -> Result<(Cli, Overrides), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut matches = Cli::command().try_get_matches_from(args)?;
    let mut overrides = Overrides {
        config: matches.get_one::<PathBuf>("config").cloned(),
        ..Overrides::default()
    };
    for flag in SETTINGS.iter().filter_map(|about| about.flag.as_ref()) {
        if let Some(value) = matches.get_one::<String>(flag.id) {
            let origin = match matches.value_source(flag.id) {
                Some(ValueSource::EnvVariable) => flag.env,
                _ => flag.long,
            };
            let value = value.clone();
            overrides.set(flag.id, Setting { value, origin });
        }
    }
    // RUST_LOG, the ecosystem's own knob, wins over every other source where it is set.
    if let Some(value) = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
    {
        overrides.log_level = Some(Setting {
            value,
            origin: "RUST_LOG",
        });
    }
    let command = match matches.subcommand_name() {
        Some(name) if Command::has_subcommand(name) => {
            Some(Command::from_arg_matches_mut(&mut matches)?)
        }
        _ => None,
    };
    let cli = Cli {
        config: overrides.config.clone(),
        check_config: matches.get_flag("check_config"),
        demo: matches.get_flag("demo"),
        command,
    };
    Ok((cli, overrides))
}

/// Every variable the binary reads starts with this.
pub const VARIABLE_PREFIX: &str = "EXPLO_SHIM_";

/// `EXPLO_SHIM_*` variables read besides the flags' own. `EXPLO_SHIM_REQUIRE_REDIS` and
/// `EXPLO_SHIM_REQUIRE_CHROMIUM` are read by the test suite (`tests/it/support`, `tests/it/console.rs`),
/// not the binary, and `EXPLO_SHIM_COMMIT` by the build (`--version`); `.ci/run` exports them
/// all, so every shim a CI run starts has them in its environment.
pub const OTHER_VARIABLES: &[&str] = &[
    "EXPLO_SHIM_REQUIRE_REDIS",
    "EXPLO_SHIM_REQUIRE_CHROMIUM",
    "EXPLO_SHIM_COMMIT",
];

/// Every `EXPLO_SHIM_*` variable that names something: the config file's, the settings' own
/// (from the settings table, in `--help`'s order: of two names equally near a typo, the first
/// is suggested), and [`OTHER_VARIABLES`].
pub fn known_variables() -> Vec<String> {
    let settings = setting_flags().into_iter().map(|(_, flag)| flag.env);
    std::iter::once(CONFIG_VARIABLE)
        .chain(settings)
        .chain(OTHER_VARIABLES.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// The `EXPLO_SHIM_*` names among `env_names` that are not `known`, sorted: a typo in one
/// would otherwise silently leave its setting at the file's value or the default.
pub fn unknown_variables<I, S>(env_names: I, known: &[String]) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut unknown: Vec<String> = env_names
        .into_iter()
        .map(|name| name.as_ref().to_owned())
        .filter(|name| name.starts_with(VARIABLE_PREFIX) && !known.contains(name))
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// The known name `name` is most likely a typo of: the nearest by edit distance, if it is near.
pub fn closest<'k>(name: &str, known: &'k [String]) -> Option<&'k str> {
    let suffix = name.strip_prefix(VARIABLE_PREFIX).unwrap_or(name);
    let limit = 2.max(suffix.len() / 4);
    known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// One warning per unknown `EXPLO_SHIM_*` variable in `env_names`, naming it and the variable
/// it was probably meant to be, then one per `OTEL_*` variable the shim does not read. `main`
/// logs them once logging is set up, and `--check-config` prints them. Never a value.
pub fn unknown_variable_warnings<I, S>(env_names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let names: Vec<String> = env_names
        .into_iter()
        .map(|name| name.as_ref().to_owned())
        .collect();
    let known = known_variables();
    let mut warnings: Vec<String> = unknown_variables(&names, &known)
        .into_iter()
        .map(|name| {
            let hint = closest(&name, &known)
                .map(|near| format!(" (did you mean {near}?)"))
                .unwrap_or_default();
            format!("environment variable {name} names no setting and is ignored{hint}")
        })
        .collect();
    let honoured = crate::observe::otel::settings::HONOURED_VARIABLES;
    let mut otel: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with("OTEL_") && !honoured.contains(&name.as_str()))
        .collect();
    otel.sort();
    otel.dedup();
    warnings.extend(otel.into_iter().map(|name| {
        // A typo's hint only: OTEL_LOGS_EXPORTER is not a misspelt OTEL_TRACES_EXPORTER.
        let hint = honoured
            .iter()
            .map(|near| (edit_distance(name, near), near))
            .filter(|(distance, _)| *distance <= 2)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, near)| format!(" (did you mean {near}?)"))
            .unwrap_or_default();
        format!(
            "environment variable {name} is not an OpenTelemetry variable explo-shim reads \
             (it exports traces only) and is ignored{hint}"
        )
    }));
    warnings
}

/// Levenshtein distance, by bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &a_byte) in a.as_bytes().iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &b_byte) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_byte != b_byte);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_with_their_origin() {
        let (cli, overrides) =
            parse(["explo-shim", "--listen", "127.0.0.1:0", "--check-config"]).unwrap();
        assert!(cli.check_config);
        assert_eq!(
            overrides.listen,
            Some(Setting {
                value: "127.0.0.1:0".into(),
                origin: "--listen"
            })
        );
        assert_eq!(overrides.upstream, None);
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(parse(["explo-shim", "--bogus"]).is_err());
    }

    #[test]
    fn known_variables_are_the_flags_own_and_the_test_suites() {
        let known = known_variables();
        for name in [
            "EXPLO_SHIM_CONFIG",
            "EXPLO_SHIM_LISTEN",
            "EXPLO_SHIM_UPSTREAM_TIMEOUT",
            "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
            "EXPLO_SHIM_SHUTDOWN_DELAY",
            "EXPLO_SHIM_SEND_TIMEOUT",
            "EXPLO_SHIM_REQUIRE_REDIS",
            "EXPLO_SHIM_REQUIRE_CHROMIUM",
        ] {
            assert!(known.iter().any(|known| known == name), "{name}: {known:?}");
        }
        assert!(known.iter().all(|name| name.starts_with(VARIABLE_PREFIX)));
    }

    #[test]
    fn unknown_variables_are_the_explo_shim_ones_that_name_nothing() {
        let known = known_variables();
        let env = [
            "PATH",
            "EXPLO_SHIM_LISTEN",
            "EXPLO_SHIM_LISTN",
            "RUST_LOG",
            "EXPLO_SHIM_REQUIRE_REDIS",
            "EXPLO_SHIM_",
            "explo_shim_listen",
            "EXPLO_SHIM_LISTN",
        ];
        assert_eq!(
            unknown_variables(env, &known),
            ["EXPLO_SHIM_", "EXPLO_SHIM_LISTN"]
        );
        assert!(unknown_variables(["HOME", "EXPLO_SHIM_ADMIN"], &known).is_empty());
    }

    #[test]
    fn a_near_miss_suggests_the_variable_it_was_meant_to_be() {
        let known = known_variables();
        assert_eq!(
            closest("EXPLO_SHIM_LISTN", &known),
            Some("EXPLO_SHIM_LISTEN")
        );
        assert_eq!(
            closest("EXPLO_SHIM_UPSTREAM_TIMOUT", &known),
            Some("EXPLO_SHIM_UPSTREAM_TIMEOUT")
        );
        assert_eq!(closest("EXPLO_SHIM_COLOUR", &known), None);
        assert_eq!(
            unknown_variable_warnings(["EXPLO_SHIM_LISTN", "EXPLO_SHIM_COLOUR"]),
            [
                "environment variable EXPLO_SHIM_COLOUR names no setting and is ignored",
                "environment variable EXPLO_SHIM_LISTN names no setting and is ignored (did \
                 you mean EXPLO_SHIM_LISTEN?)",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
