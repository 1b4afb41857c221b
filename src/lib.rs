//! explo-shim: a migration proxy that keeps legacy integrations of Explo's deprecated End User
//! Group API working against its replacement, the Customer API.
//!
//! # Layout
//!
//! - [`cli`]: the command line (flags and their `EXPLO_SHIM_*` variables).
//! - [`config`]: defaults as named constants, the TOML file, validation with messages that
//!   name the key.
//! - [`server`]: the accept loop, HTTP/1.1 and h2c, the graceful drain.
//! - [`admin`]: `/healthz` and `/readyz` on the admin listener.
//! - [`proxy`]: one request: a legacy route is translated, anything else passes through.
//! - [`legacy`]: the deprecated surface: the route table and the pure translation functions
//!   ([`legacy::request`], [`legacy::reply`]) over `serde_json::Value`.
//! - [`commands`]: the `translate`, `usage` and `healthcheck` subcommands.
//! - [`upstream`]: the one pooled HTTPS client to the configured upstream.
//! - [`headers`]: one module per header concern (hop-by-hop, content encoding, forwarding).
//! - [`error`]: the one error type, mapped to a status and the legacy JSON envelope in one place.
//! - [`body`]: the body type shared by streamed and built messages.
//! - [`telemetry`]: log set-up, client fingerprints, the deprecated-usage event.
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod headers;
pub mod legacy;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod telemetry;
pub mod upstream;
pub mod usage;

use std::future::Future;

use config::Config;
use proxy::Proxy;

/// Binds the listeners and serves until `shutdown` completes and the drain is over.
///
/// `proxy` is built by the caller so that configuration problems (an unreadable CA file) are
/// reported before anything listens.
pub async fn run(
    config: Config,
    proxy: Proxy,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (listener, admin) = server::bind(&config).await?;
    let (listen_addr, admin_addr) = server::local_addrs(&listener, &admin);
    tracing::info!(
        listen = %display_addr(listen_addr),
        admin = %display_addr(admin_addr),
        upstream = %config.upstream.url,
        "explo-shim listening"
    );
    server::serve(&config, proxy, listener, admin, shutdown).await;
    Ok(())
}

fn display_addr(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
}
