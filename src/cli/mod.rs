//! The command line. Every flag also reads an `EXPLO_SHIM_*` variable; precedence is
//! flag > environment > config file > built-in default (the last two are resolved in
//! [`crate::config`]). Values are kept as text here so that a bad one is reported by the config
//! resolver with the name of the flag or variable it came from.

pub mod commands;
pub mod demo;

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{DEFAULT_UPSTREAM, Overrides, Setting};

/// The commit the binary was built from, when the build said (`EXPLO_SHIM_COMMIT`, set by
/// `.ci/run`, `.ci/static-build` and the image build from `git rev-parse --short HEAD`); an
/// empty value counts as unknown.
const COMMIT: Option<&str> = match option_env!("EXPLO_SHIM_COMMIT") {
    Some(commit) if !commit.is_empty() => Some(commit),
    _ => None,
};

/// What `--version` prints after the name: `0.1.0 (commit 3e71587)`, or `0.1.0` when the
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

/// Keeps legacy Explo End User Group integrations working against the Customer API.
#[derive(Parser, Debug, Default)]
#[command(name = "explo-shim", version = VERSION, about)]
pub struct Cli {
    /// TOML config file (see config/explo-shim.toml).
    #[arg(long, env = "EXPLO_SHIM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for legacy clients, e.g. 127.0.0.1:8080.
    #[arg(long, env = "EXPLO_SHIM_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The real Explo API base URL, http:// or https://, with an optional path prefix.
    #[arg(long, env = "EXPLO_SHIM_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Address of the admin listener (the console at /, /healthz, /readyz, /metrics, /usage).
    #[arg(long, env = "EXPLO_SHIM_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,
    /// Limit for a whole upstream request, e.g. 30s or 500ms.
    #[arg(long, env = "EXPLO_SHIM_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    pub upstream_timeout: Option<String>,
    /// Log line format.
    #[arg(long, env = "EXPLO_SHIM_LOG_FORMAT", value_name = "json|text")]
    pub log_format: Option<String>,
    /// Log filter in RUST_LOG syntax, e.g. warn or info,explo_shim=debug (RUST_LOG, where
    /// set, wins). The deprecated-usage line is kept unless its target `deprecated` is named.
    #[arg(long, env = "EXPLO_SHIM_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// One log line per request (target `access`), pass-through included: on or off.
    #[arg(
        long,
        env = "EXPLO_SHIM_ACCESS_LOG",
        value_name = "true|false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub access_log: Option<String>,
    /// Serving threads, each with its own listener, runtime and upstream connections:
    /// "auto" (the CPUs this process may use) or a number.
    #[arg(long, env = "EXPLO_SHIM_WORKERS", value_name = "auto|N")]
    pub workers: Option<String>,
    /// Redis shared by a fleet of shims for one upstream budget and one usage view:
    /// redis://HOST:PORT/DB or rediss://..., with a password as redis://:PASSWORD@HOST
    #[arg(
        long,
        env = "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub rate_limit_redis_url: Option<String>,
    /// Brownout windows, comma-separated ISO 8601 intervals: START/END or START/DURATION,
    /// e.g. 2026-12-01T10:00:00Z/PT1H (replaces `deprecation.brownouts`).
    #[arg(long, env = "EXPLO_SHIM_BROWNOUTS", value_name = "INTERVALS")]
    pub brownouts: Option<String>,
    /// What legacy calls get once the sunset has passed: serve (translate as before) or
    /// refuse (410).
    #[arg(long, env = "EXPLO_SHIM_AFTER_SUNSET", value_name = "serve|refuse")]
    pub after_sunset: Option<String>,
    /// Client fingerprints served through brownouts and after the sunset, comma-separated
    /// (replaces `deprecation.exempt_clients`).
    #[arg(long, env = "EXPLO_SHIM_EXEMPT_CLIENTS", value_name = "FINGERPRINTS")]
    pub exempt_clients: Option<String>,
    /// Without `admin_token_file`: host names, comma-separated, that the admin listener's
    /// `/`, `/usage` and `/metrics` answer to besides IP literals and localhost (replaces
    /// `admin_allowed_hosts`).
    #[arg(long, env = "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS", value_name = "NAMES")]
    pub admin_allowed_hosts: Option<String>,
    /// After SIGTERM, keep serving this long with /readyz at 503 (so load balancers and
    /// endpoint lists catch up) before draining, e.g. 5s. A second signal skips it.
    #[arg(long, env = "EXPLO_SHIM_SHUTDOWN_DELAY", value_name = "DURATION")]
    pub shutdown_delay: Option<String>,
    /// Cut off a reply the client accepts nothing of for this long, counted between two
    /// writes that made progress (not over the whole reply), e.g. 30s.
    #[arg(long, env = "EXPLO_SHIM_SEND_TIMEOUT", value_name = "DURATION")]
    pub send_timeout: Option<String>,
    /// Validate the configuration, print it and exit (0 when valid, 64 when not).
    #[arg(long)]
    pub check_config: bool,
    /// Run offline: start the in-memory Customer API emulator as the upstream, and print
    /// ready-to-paste legacy calls.
    #[arg(long, conflicts_with = "upstream")]
    pub demo: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
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
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let setting = |id: &str, flag: &'static str, env: &'static str, value: &Option<String>| {
        value.clone().map(|value| Setting {
            value,
            origin: match matches.value_source(id) {
                Some(ValueSource::EnvVariable) => env,
                _ => flag,
            },
        })
    };
    let overrides = Overrides {
        config: cli.config.clone(),
        listen: setting("listen", "--listen", "EXPLO_SHIM_LISTEN", &cli.listen),
        upstream: setting(
            "upstream",
            "--upstream",
            "EXPLO_SHIM_UPSTREAM",
            &cli.upstream,
        ),
        admin: setting("admin", "--admin", "EXPLO_SHIM_ADMIN", &cli.admin),
        upstream_timeout: setting(
            "upstream_timeout",
            "--upstream-timeout",
            "EXPLO_SHIM_UPSTREAM_TIMEOUT",
            &cli.upstream_timeout,
        ),
        log_format: setting(
            "log_format",
            "--log-format",
            "EXPLO_SHIM_LOG_FORMAT",
            &cli.log_format,
        ),
        // RUST_LOG, the ecosystem's own knob, wins over every other source where it is set.
        log_level: std::env::var("RUST_LOG")
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| Setting {
                value,
                origin: "RUST_LOG",
            })
            .or_else(|| {
                setting(
                    "log_level",
                    "--log-level",
                    "EXPLO_SHIM_LOG_LEVEL",
                    &cli.log_level,
                )
            }),
        access_log: setting(
            "access_log",
            "--access-log",
            "EXPLO_SHIM_ACCESS_LOG",
            &cli.access_log,
        ),
        shutdown_delay: setting(
            "shutdown_delay",
            "--shutdown-delay",
            "EXPLO_SHIM_SHUTDOWN_DELAY",
            &cli.shutdown_delay,
        ),
        send_timeout: setting(
            "send_timeout",
            "--send-timeout",
            "EXPLO_SHIM_SEND_TIMEOUT",
            &cli.send_timeout,
        ),
        workers: setting("workers", "--workers", "EXPLO_SHIM_WORKERS", &cli.workers),
        rate_limit_redis_url: setting(
            "rate_limit_redis_url",
            "--rate-limit-redis-url",
            "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
            &cli.rate_limit_redis_url,
        ),
        brownouts: setting(
            "brownouts",
            "--brownouts",
            "EXPLO_SHIM_BROWNOUTS",
            &cli.brownouts,
        ),
        after_sunset: setting(
            "after_sunset",
            "--after-sunset",
            "EXPLO_SHIM_AFTER_SUNSET",
            &cli.after_sunset,
        ),
        exempt_clients: setting(
            "exempt_clients",
            "--exempt-clients",
            "EXPLO_SHIM_EXEMPT_CLIENTS",
            &cli.exempt_clients,
        ),
        admin_allowed_hosts: setting(
            "admin_allowed_hosts",
            "--admin-allowed-hosts",
            "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS",
            &cli.admin_allowed_hosts,
        ),
    };
    Ok((cli, overrides))
}

/// Every variable the binary reads starts with this.
pub const VARIABLE_PREFIX: &str = "EXPLO_SHIM_";

/// `EXPLO_SHIM_*` variables read besides the flags' own. `EXPLO_SHIM_REQUIRE_REDIS` and
/// `EXPLO_SHIM_REQUIRE_CHROMIUM` are read by the test suite (`tests/common`, `tests/console.rs`),
/// not the binary, and `EXPLO_SHIM_COMMIT` by the build (`--version`); `.ci/run` exports them
/// all, so every shim a CI run starts has them in its environment.
pub const OTHER_VARIABLES: &[&str] = &[
    "EXPLO_SHIM_REQUIRE_REDIS",
    "EXPLO_SHIM_REQUIRE_CHROMIUM",
    "EXPLO_SHIM_COMMIT",
];

/// Every `EXPLO_SHIM_*` variable that names something: the flags' own, from clap's argument
/// definitions (subcommands included), and [`OTHER_VARIABLES`].
pub fn known_variables() -> Vec<String> {
    let command = Cli::command();
    let arguments = command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments()),
    );
    arguments
        .filter_map(|argument| argument.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .chain(OTHER_VARIABLES.iter().map(|name| (*name).to_owned()))
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
/// it was probably meant to be. `main` logs them once logging is set up, and `--check-config`
/// prints them.
pub fn unknown_variable_warnings<I, S>(env_names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let known = known_variables();
    unknown_variables(env_names, &known)
        .into_iter()
        .map(|name| {
            let hint = closest(&name, &known)
                .map(|near| format!(" (did you mean {near}?)"))
                .unwrap_or_default();
            format!("environment variable {name} names no setting and is ignored{hint}")
        })
        .collect()
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
