//! The `explo-shim` binary: parse the command line, resolve the config, set up logging, serve
//! until SIGTERM or SIGINT, exit. Configuration errors exit with 64 (EX_USAGE) before anything
//! listens. Subcommands (`translate`, `usage`, `brownout-plan`, `healthcheck`, `emulate`,
//! `fingerprint`, `completions`, `man`) run instead of the server.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use explo_shim::cli::commands::run::{EXIT_USAGE, check_config, run as run_command};
use explo_shim::config::Config;
use explo_shim::{
    Hangups, ReloadFrom, StopSignals, cli, cli::demo, observe::otel, observe::telemetry,
};

/// jemalloc, with the settings `.cargo/config.toml` compiles in: freed memory goes back to the
/// kernel after a second, so a burst does not leave the process at its peak.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        return ExitCode::from(run_command(command, &overrides));
    }
    // This thread coordinates (signals, admin, the demo emulator); the serving threads run
    // runtimes of their own (see `server`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("explo-shim: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The signals are taken over first, before the config is even read: a SIGHUP or SIGTERM
    // sent as soon as the process exists never meets its default action (exit 129 or 143).
    let (hangups, stops) = {
        let _in_runtime = runtime.enter();
        (Hangups::register(), StopSignals::register())
    };
    // The digests of the bytes the running config is built from, for the file watch.
    explo_shim::config::read::record_reads();
    let mut config = match Config::resolve(&overrides) {
        Ok(config) => config,
        Err(error) => return usage_error(&error),
    };
    // OpenTelemetry's own variables, read the standard way; a bad one stops start-up too.
    let traces = match otel::from_env(|name| std::env::var(name).ok()) {
        Ok(traces) => traces,
        Err(error) => return usage_error(&error),
    };
    let resolved = config.clone();
    let emulator = if cli.demo {
        match demo::start_emulator(&mut config) {
            Ok(addr) => Some(addr),
            Err(error) => {
                eprintln!("explo-shim: cannot start the demo emulator: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Built before anything binds, so a bad CA file or certificate stops start-up.
    let prepared = match explo_shim::prepare_traced(&config, traces.settings.as_ref()) {
        Ok(prepared) => prepared,
        Err(error) => return usage_error(&error),
    };
    // Read now, logged once logging is set up: a typo in a variable name silently leaves its
    // setting at the file's value or the default.
    let mut unknown_variables = cli::unknown_variable_warnings(
        std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()),
    );
    unknown_variables.extend(traces.warnings.iter().cloned());
    if cli.check_config {
        return ExitCode::from(check_config(
            &config,
            overrides,
            cli.demo,
            &unknown_variables,
            &otel::describe::describe(&traces),
        ));
    }
    let (_log_writer, log_filter) = telemetry::init(config.log_format, &config.log_level);
    for warning in &unknown_variables {
        tracing::warn!("{warning}");
    }
    match &traces.settings {
        // Header names only: their values are secrets.
        Some(settings) => tracing::info!(
            endpoint = %settings.shown_endpoint(),
            protocol = settings.protocol.name(),
            compression = settings.compression.name(),
            service = %settings.service_name,
            sampler = %settings.sampler,
            headers = ?settings.headers.headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
            "exporting traces over OTLP/HTTP"
        ),
        None => tracing::info!(
            reason = traces.off_because.unwrap_or_default(),
            "traces are not exported"
        ),
    }
    let reload_from = ReloadFrom {
        overrides,
        resolved,
        log_filter,
        read_at_start: explo_shim::config::read::recorded_reads(),
    };
    let on_listening = |listen, admin| {
        if let Some(emulator) = emulator {
            println!("{}", demo::banner(listen, admin, emulator));
        }
    };
    let served = runtime.block_on(explo_shim::run(
        config,
        prepared,
        hangups,
        stops,
        reload_from,
        on_listening,
    ));
    // Dropping the runtime would wait for its blocking tasks, and the one a reload runs may be
    // waiting on a file that never answers (within its clock, but a stop must not wait even
    // that long). Nothing else runs there once `run` has returned.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "explo-shim stopped");
            eprintln!("explo-shim: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("explo-shim: {error}");
    ExitCode::from(EXIT_USAGE)
}
