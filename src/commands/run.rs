//! Running a subcommand from the command line: each prints its result and maps failure to a
//! sysexits-style exit code.

use std::io::Read;
use std::sync::Arc;

use crate::cli::{Command, Overrides};
use crate::config::Config;
use crate::emulator::{self, EXPLO_RATE_LIMIT_PER_MINUTE, Emulator};

use super::{admin_url_for, admin_url_from_flag, healthcheck, translate, usage};

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
        Command::Usage { admin } => match admin_url(admin.as_deref(), overrides) {
            Err(code) => code,
            Ok(admin) => match block_on(usage::run(&admin)) {
                Ok(table) => {
                    print!("{table}");
                    0
                }
                Err(error) => fail("usage", &error),
            },
        },
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
        } => run_emulator(&listen, rate_limit, fault.into_iter().collect()),
    }
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

fn run_emulator(listen: &str, rate_limit: bool, faults: emulator::Faults) -> u8 {
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
            "explo-shim emulate: in-memory Customer API on http://{bound}{}",
            if rate_limit {
                format!(" ({EXPLO_RATE_LIMIT_PER_MINUTE} requests/minute)")
            } else {
                String::new()
            }
        );
        let emulator = Arc::new(Emulator::with_faults(
            rate_limit.then_some(EXPLO_RATE_LIMIT_PER_MINUTE),
            faults,
        ));
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
