//! Running a subcommand from the command line: each prints its result and maps failure to a
//! sysexits-style exit code.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::cli::Command;
use crate::config::Config;
use crate::config::policy::AdminToken;
use crate::config::{Overrides, Setting, render};
use crate::emulator::{self, EXPLO_RATE_LIMIT_PER_MINUTE, Emulator};

use super::{
    admin_url_for, admin_url_from_flag, brownout_plan, completions, fingerprint, healthcheck, man,
    translate, usage,
};

/// EX_USAGE: the command line or configuration is wrong.
pub const EXIT_USAGE: u8 = 64;
/// EX_DATAERR: the input data is wrong.
pub const EXIT_DATA: u8 = 65;
const EXIT_FAILURE: u8 = 1;

/// Runs `command`; returns the process exit code.
pub fn run(command: Command, overrides: &Overrides) -> u8 {
    match command {
        Command::Translate {
            endpoint,
            json,
            base_url,
        } => run_translate(endpoint.as_deref(), json, &base_url),
        Command::Usage {
            admin,
            json,
            sort,
            since,
        } => run_usage(admin.as_deref(), json, sort, since, overrides),
        Command::Fingerprint => run_fingerprint(),
        Command::Completions { shell } => print_bytes("completions", &completions::script(shell)),
        Command::Man => match man::page() {
            Ok(page) => print_bytes("man", &page),
            Err(error) => fail("man", &error.to_string()),
        },
        Command::BrownoutPlan { sunset, at, admin } => {
            run_brownout_plan(sunset.as_deref(), &at, admin.as_deref(), overrides)
        }
        Command::Healthcheck { admin } => match admin_url(admin.as_deref(), overrides) {
            Err(code) => code,
            Ok(admin) => match block_on(healthcheck::run(&admin)) {
                Ok(()) => 0,
                Err(error) => fail("healthcheck", &error),
            },
        },
        Command::Emulate {
            listen,
            rate_limit,
            fault,
            hierarchy_levels,
        } => run_emulator(
            &listen,
            rate_limit,
            fault.into_iter().collect(),
            hierarchy_levels.unwrap_or_default(),
        ),
    }
}

fn run_usage(
    admin: Option<&str>,
    json: bool,
    sort: Option<crate::cli::UsageSort>,
    since: Option<String>,
    overrides: &Overrides,
) -> u8 {
    // Checked before the shim is asked: a bad flag is the caller's mistake whether or not a
    // shim is running.
    let since = match since {
        Some(text) => match usage::parse_since(&text) {
            Ok(window) => Some((text, window)),
            Err(error) => {
                eprintln!("explo-shim usage: {error}");
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let view = usage::UsageView { json, sort, since };
    let bearer = match admin_bearer(overrides) {
        Ok(bearer) => bearer,
        Err(code) => return code,
    };
    match admin_url(admin, overrides) {
        Err(code) => code,
        Ok(admin) => match block_on(usage::run(
            &admin,
            bearer.as_ref(),
            &view,
            std::time::SystemTime::now(),
        )) {
            Ok(text) => print_bytes("usage", text.as_bytes()),
            Err(error) => fail("usage", &error),
        },
    }
}

fn run_fingerprint() -> u8 {
    let mut input = Vec::new();
    let limit = fingerprint::MAX_CREDENTIAL_BYTES;
    if let Err(error) = std::io::stdin().take(limit + 1).read_to_end(&mut input) {
        eprintln!("explo-shim fingerprint: cannot read stdin: {error}");
        return EXIT_DATA;
    }
    if input.len() as u64 > limit {
        eprintln!(
            "explo-shim fingerprint: stdin holds more than {limit} bytes; give the \
             Explo-Authorization value alone, e.g. `Token abc`"
        );
        return EXIT_DATA;
    }
    if let Some(warning) = fingerprint::surrounding_whitespace_warning(&input) {
        eprintln!("explo-shim fingerprint: warning: {warning}");
    }
    match fingerprint::fingerprint_of(&input) {
        Ok(fingerprint) => print_bytes("fingerprint", format!("{fingerprint}\n").as_bytes()),
        Err(error) => {
            eprintln!("explo-shim fingerprint: {error}");
            EXIT_DATA
        }
    }
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is a failure, not a panic.
fn print_bytes(command: &str, bytes: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(error) => fail(command, &format!("cannot write to stdout: {error}")),
    }
}

fn run_brownout_plan(
    sunset: Option<&str>,
    at: &str,
    admin: Option<&str>,
    overrides: &Overrides,
) -> u8 {
    let usage_error = |error: String| {
        eprintln!("explo-shim brownout-plan: {error}");
        EXIT_USAGE
    };
    let config = match Config::resolve(overrides) {
        Ok(config) => config,
        Err(error) => return usage_error(error.to_string()),
    };
    let sunset = match sunset {
        Some(text) => match parse_plan_date(text) {
            Ok(at) => at,
            Err(error) => return usage_error(error),
        },
        None => match config.deprecation.sunset_at {
            Some(at) => at,
            None => {
                return usage_error(
                    "no sunset to plan towards: pass --sunset DATE or set deprecation.sunset"
                        .to_owned(),
                );
            }
        },
    };
    let time_of_day = match brownout_plan::parse_time_of_day(at) {
        Ok(time) => time,
        Err(error) => return usage_error(error),
    };
    let admin = admin.map_or_else(|| admin_url_for(config.admin), admin_url_from_flag);
    let input = brownout_plan::PlanInput {
        now: std::time::SystemTime::now(),
        sunset,
        time_of_day,
        exempt: config.deprecation.retirement.exempt_clients().clone(),
    };
    let bearer = match config.admin_token_file.as_deref().map(AdminToken::read) {
        Some(Ok(token)) => token.bearer(),
        Some(Err(error)) => return usage_error(error.to_string()),
        None => None,
    };
    let usage = block_on(brownout_plan::fetch_usage(&admin, bearer.as_ref()));
    match brownout_plan::render(&input, usage) {
        Ok(plan) => {
            print!("{plan}");
            0
        }
        Err(error) => usage_error(error),
    }
}

/// `2027-03-01` or `2027-03-01T00:00:00Z`.
fn parse_plan_date(text: &str) -> Result<std::time::SystemTime, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|error| format!("--sunset {text:?}: {error}; expected e.g. 2027-03-01"))
}

fn fail(command: &str, error: &str) -> u8 {
    eprintln!("explo-shim {command}: {error}");
    EXIT_FAILURE
}

/// Runs a subcommand's future on a small runtime of its own.
fn block_on<T>(future: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?
        .block_on(future)
}

/// `--check-config`: the resolved `config` as a config file on stdout (the sources among
/// `overrides` and its file) followed by `tracing`'s comment lines, `warnings` and the verdict
/// on stderr. Returns the exit code.
pub fn check_config(
    config: &Config,
    mut overrides: Overrides,
    demo: bool,
    warnings: &[String],
    tracing: &str,
) -> u8 {
    if demo {
        overrides.upstream = Some(Setting {
            value: config.upstream.url.to_string(),
            origin: "--demo",
        });
    }
    let text = match render::effective_config(config, &overrides) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("explo-shim: {error}");
            return EXIT_USAGE;
        }
    };
    for warning in warnings {
        eprintln!("explo-shim: warning: {warning}");
    }
    // stdout is the configuration alone (the fixed limits and the OTel settings, which come
    // from `OTEL_*` variables, are comments), so it can be saved as a config file.
    let text = text + &fixed_limits() + tracing;
    let code = print_bytes("check-config", text.as_bytes());
    if code == 0 {
        eprintln!("explo-shim: configuration is valid");
    }
    code
}

/// `Authorization: Bearer <token>` when the configuration names an `admin_token_file` (the
/// running shim then asks for it); `None` when it names none or cannot be resolved (the shim
/// is then asked without, and says so if it wanted the token).
fn admin_bearer(overrides: &Overrides) -> Result<Option<http::HeaderValue>, u8> {
    let Some(path) = Config::resolve(overrides)
        .ok()
        .and_then(|config| config.admin_token_file)
    else {
        return Ok(None);
    };
    match AdminToken::read(&path) {
        Ok(token) => Ok(token.bearer()),
        Err(error) => {
            eprintln!("explo-shim: {error}");
            Err(EXIT_USAGE)
        }
    }
}

/// The admin URL from `--admin URL`, else from the configuration.
fn admin_url(explicit: Option<&str>, overrides: &Overrides) -> Result<String, u8> {
    match explicit {
        Some(url) => Ok(admin_url_from_flag(url)),
        None => Config::resolve(overrides)
            .map(|config| admin_url_for(config.admin))
            .map_err(|error| {
                eprintln!("explo-shim: {error}");
                EXIT_USAGE
            }),
    }
}

fn run_translate(endpoint: Option<&str>, json: bool, base_url: &str) -> u8 {
    let route = match endpoint.map(|name| (name, translate::parse_endpoint(name))) {
        Some((name, None)) => {
            eprintln!(
                "explo-shim translate: unknown --endpoint {name:?}; use create_user_group, \
                 update_user_group, delete_user_group or refresh_user_group_token"
            );
            return EXIT_USAGE;
        }
        Some((_, route)) => route,
        None => None,
    };
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("explo-shim translate: cannot read stdin: {error}");
        return EXIT_DATA;
    }
    let migration = translate::parse_input(&input, route).and_then(|legacy| {
        translate::plan(&legacy).map(|migration| (migration, legacy.authorization))
    });
    match migration {
        Ok((migration, authorization)) => {
            if json {
                println!(
                    "{}",
                    translate::render_json(&migration, base_url, authorization.as_deref())
                );
            } else {
                print!(
                    "{}",
                    translate::render_curl(&migration, base_url, authorization.as_deref())
                );
            }
            0
        }
        Err(error) => {
            eprintln!("explo-shim translate: {error}");
            EXIT_DATA
        }
    }
}

fn run_emulator(
    listen: &str,
    rate_limit: bool,
    faults: emulator::Faults,
    levels: emulator::HierarchyLevels,
) -> u8 {
    let Ok(addr) = listen.parse::<std::net::SocketAddr>() else {
        eprintln!("explo-shim emulate: invalid --listen {listen:?}; expected IP:PORT");
        return EXIT_USAGE;
    };
    let served = block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        let bound = listener.local_addr().map_err(|error| error.to_string())?;
        println!(
            "explo-shim emulate: in-memory Customer API on http://{bound}{}; hierarchy levels {}",
            if rate_limit {
                format!(" ({EXPLO_RATE_LIMIT_PER_MINUTE} requests/minute)")
            } else {
                String::new()
            },
            levels.names().join(" > ")
        );
        let emulator = Arc::new(
            Emulator::with_faults(rate_limit.then_some(EXPLO_RATE_LIMIT_PER_MINUTE), faults)
                .with_hierarchy_levels(levels),
        );
        emulator::serve(listener, emulator, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(())
    });
    match served {
        Ok(()) => 0,
        Err(error) => fail("emulate", &error),
    }
}

/// The limits that are not settings, as comments after `--check-config`'s file: an operator
/// sizing a sidecar or reading an alert finds them next to the settings they sit beside.
fn fixed_limits() -> String {
    use crate::admin::throttle::{BLOCK_DURATION, FAILURE_WINDOW, FAILURES_BEFORE_BLOCK};
    use crate::config::policy::{ADMIN_SESSION_LIFETIME, ADMIN_TOKEN_MIN_CHARS};
    use crate::config::read::{FILE_READ_TIMEOUT, MAX_FILE_BYTES};
    let duration = |duration| humantime::format_duration(duration).to_string();
    let kib = |bytes: usize| bytes / 1024;
    format!(
        "\n# Fixed limits (not settings):\n\
         # - the log queue holds at most {log_queue} KiB of lines; past it, lines are dropped and \
         counted in explo_shim_log_lines_dropped_total\n\
         # - an access line keeps the first {access_text} KiB of a path and of a query\n\
         # - the shim's own repeated log lines: the first, then one summary per {summary}\n\
         # - the admin listener: {admin_connections} connections; heads up to {admin_head} KiB \
         (431 past it); reports not yet read by their clients share {reports} KiB (503 past \
         it); after {failures} failed credentials within {failure_window} an address gets 429 \
         for {block}, unchecked ({addresses} addresses tracked); sessions last {session}; a \
         token under {token_chars} characters is warned about\n\
         # - trace export: a queue of {spans} spans and {trace_queue} KiB; {span_text} KiB of \
         a path or an error in a span; {reply} KiB of a collector's reply read\n\
         # - the fleet's usage queue to Redis: {usage_events} events and {usage_queue} KiB\n\
         # - configured files are read within {file_clock} and up to {file_bytes} KiB\n",
        log_queue = kib(crate::observe::telemetry::LOG_QUEUE_BYTES),
        access_text = kib(crate::observe::access_log::ACCESS_LINE_TEXT_BYTES),
        summary = duration(crate::observe::log_summary::SUMMARY_WINDOW),
        admin_connections = crate::server::ADMIN_MAX_CONNECTIONS,
        admin_head = kib(crate::server::ADMIN_MAX_HEAD_BYTES),
        reports = kib(crate::admin::REPORT_BYTES_IN_FLIGHT),
        addresses = crate::admin::throttle::MAX_TRACKED_ADDRESSES,
        span_text = kib(crate::observe::otel::SPAN_TEXT_BYTES),
        usage_events = crate::fleet::usage::QUEUE_LENGTH,
        usage_queue = kib(crate::fleet::usage::QUEUE_BYTES),
        failures = FAILURES_BEFORE_BLOCK,
        failure_window = duration(FAILURE_WINDOW),
        block = duration(BLOCK_DURATION),
        session = duration(ADMIN_SESSION_LIFETIME),
        token_chars = ADMIN_TOKEN_MIN_CHARS,
        spans = crate::observe::otel::export::QUEUE_SPANS,
        trace_queue = kib(crate::observe::otel::export::QUEUE_BYTES),
        reply = kib(crate::observe::otel::export::EXPORT_REPLY_BYTES),
        file_clock = duration(FILE_READ_TIMEOUT),
        file_bytes = MAX_FILE_BYTES / 1024,
    )
}
