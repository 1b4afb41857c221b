//! The `explo-shim` binary: parse the command line, resolve the config, set up logging, serve
//! until SIGTERM or SIGINT, exit. Configuration errors exit with 64 (EX_USAGE) before anything
//! listens.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use explo_shim::config::Config;
use explo_shim::proxy::Proxy;
use explo_shim::{cli, telemetry};

/// EX_USAGE from sysexits.h: the command line or configuration is wrong.
const EXIT_USAGE: u8 = 64;

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
    let proxy = match runtime.block_on(async { Proxy::new(&config) }) {
        Ok(proxy) => proxy,
        Err(error) => return usage_error(&error),
    };
    if cli.check_config {
        println!("explo-shim: configuration is valid\n{config:#?}");
        return ExitCode::SUCCESS;
    }
    telemetry::init(config.log_format);
    match runtime.block_on(explo_shim::run(config, proxy, shutdown_signal())) {
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
