//! The `explo-shim` binary: parse the command line, resolve the config, set up logging, serve
//! until SIGTERM or SIGINT, exit. Configuration errors exit with 64 (EX_USAGE) before anything
//! listens.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use std::io::Read;

use explo_shim::cli::{Command, Overrides};
use explo_shim::commands::{self, translate};
use explo_shim::config::Config;
use explo_shim::{cli, telemetry};

/// EX_USAGE from sysexits.h: the command line or configuration is wrong.
const EXIT_USAGE: u8 = 64;
/// EX_DATAERR from sysexits.h: the input data is wrong.
const EXIT_DATA: u8 = 65;

fn main() -> ExitCode {
    let (cli, overrides) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(command) = cli.command {
        return run_command(command, &overrides);
    }
    let config = match Config::resolve(&overrides) {
        Ok(config) => config,
        Err(error) => return usage_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("explo-shim: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The client is built inside the runtime (its timers need one) but before anything binds.
    let prepared = match runtime.block_on(async { explo_shim::prepare(&config) }) {
        Ok(prepared) => prepared,
        Err(error) => return usage_error(&error),
    };
    if cli.check_config {
        println!("explo-shim: configuration is valid\n{config:#?}");
        return ExitCode::SUCCESS;
    }
    telemetry::init(config.log_format);
    match runtime.block_on(explo_shim::run(config, prepared, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "explo-shim stopped");
            eprintln!("explo-shim: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The subcommands: each prints its result and maps failure to an exit code.
fn run_command(command: Command, overrides: &Overrides) -> ExitCode {
    match command {
        Command::Translate {
            endpoint,
            json,
            base_url,
        } => run_translate(endpoint.as_deref(), json, &base_url),
        Command::Usage { admin } => {
            let admin = match admin_url(admin.as_deref(), overrides) {
                Ok(admin) => admin,
                Err(code) => return code,
            };
            match block_on(commands::usage::run(&admin)) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("explo-shim usage: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck { admin } => {
            let admin = match admin_url(admin.as_deref(), overrides) {
                Ok(admin) => admin,
                Err(code) => return code,
            };
            match block_on(commands::healthcheck::run(&admin)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("explo-shim healthcheck: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a subcommand's future on a small runtime of its own.
fn block_on<T>(future: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?
        .block_on(future)
}

/// The admin URL from `--admin URL`, else from the configuration.
fn admin_url(explicit: Option<&str>, overrides: &Overrides) -> Result<String, ExitCode> {
    match explicit {
        Some(url) => Ok(commands::admin_url_from_flag(url)),
        None => Config::resolve(overrides)
            .map(|config| commands::admin_url_for(config.admin))
            .map_err(|error| usage_error(&error)),
    }
}

fn run_translate(endpoint: Option<&str>, json: bool, base_url: &str) -> ExitCode {
    let route = match endpoint.map(|name| (name, translate::parse_endpoint(name))) {
        Some((name, None)) => return usage_error(&format!("unknown --endpoint {name:?}")),
        Some((_, route)) => route,
        None => None,
    };
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("explo-shim translate: cannot read stdin: {error}");
        return ExitCode::from(EXIT_DATA);
    }
    let migration = translate::parse_input(&input, route).and_then(|legacy| {
        translate::plan(&legacy).map(|migration| (migration, legacy.authorization))
    });
    match migration {
        Ok((migration, authorization)) => {
            if json {
                let rendered =
                    translate::render_json(&migration, base_url, authorization.as_deref());
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rendered).unwrap_or_default()
                );
            } else {
                print!(
                    "{}",
                    translate::render_curl(&migration, base_url, authorization.as_deref())
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("explo-shim translate: {error}");
            ExitCode::from(EXIT_DATA)
        }
    }
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("explo-shim: {error}");
    ExitCode::from(EXIT_USAGE)
}

/// Completes on SIGTERM (orchestrators) or SIGINT (a terminal).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the shim");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
