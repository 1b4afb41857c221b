//! explo-shim: a migration proxy that keeps legacy integrations of Explo's deprecated End User
//! Group API working against its replacement, the Customer API.
//!
//! # Layout
//!
//! Each folder of `src/` is one concern; the layers below say which way imports run. A module
//! may use its own layer and those under it, never one above; `tests/it/layering.rs` holds the
//! same table and fails on an import that runs up, or on any circle. Read from the top for
//! the request's path, from the bottom for the vocabulary.
//!
//! | folder | what it holds |
//! |---|---|
//! | [`cli`] | the command line and the subcommands (`translate`, `usage`, `brownout-plan`, `healthcheck`, `fingerprint`, `completions`, `man`); [`cli::demo`] is `--demo` |
//! | [`server`] | listening, threads, connections, the protocol sniff, the framing guard, timers, TLS, the clock on writes, signals, reload and the file watch |
//! | [`admin`] | the admin listener: console, `/healthz`, `/readyz`, `/metrics`, `/usage`, its credentials and throttle |
//! | [`proxy`] | one request: the dispatch and pass-through; [`proxy::legacy_call`] is one legacy call end to end |
//! | [`upstream`] | the client to the configured upstream, each thread's pool, the budget ([`upstream::budget`]) |
//! | [`fleet`] | replicas as one through Redis: the shared budget and usage records |
//! | [`observe`] | logs, the access log, metrics, the migration tracker ([`observe::usage`]), traces |
//! | [`config`] | one table of settings ([`config::SETTINGS`]: each setting's key, flag, variable, parser, default and documentation, read by the command line, the environment, the file and `--check-config`), validation, the policy that reload swaps |
//! | [`legacy`] | the pure translation, the route table ([`legacy::route`]), retirement decisions |
//! | [`message`] | the body type, one module per header concern, a client's fingerprint |
//! | [`error`] | the one error type, mapped to a status and the legacy JSON envelope in one place |
//! | [`emulator`] | the in-memory Customer API for offline tests and `--demo` |
//!
//! The layers, top first:
//!
//! 1. **Entry points**: [`cli`], its subcommands [`cli::commands`] and `--demo`
//!    ([`cli::demo`]).
//! 2. **Serving**: [`server`] (its top: bind, threads, connections, the admin listener's
//!    loop).
//! 3. **One request, the admin listener, reload**: [`proxy`], [`proxy::legacy_call`],
//!    [`admin`], [`server::reload`].
//! 4. **The fleet and the upstream**: [`upstream`], [`upstream::pool`], [`fleet`].
//! 5. **Records and TLS**: [`observe`], [`observe::telemetry`] (log set-up and the deprecated-usage
//!    event), [`observe::access_log`], [`observe::metrics`], [`observe::otel`] (a server span
//!    per request, a client span per upstream exchange, exported over OTLP/HTTP from a thread
//!    of its own), [`server::tls`].
//! 6. **Settings**: [`config`] and [`config::policy`].
//! 7. **Vocabulary**: [`error`]; the translation functions [`legacy::request`],
//!    [`legacy::reply`], [`legacy::lists`] over borrowed JSON members ([`legacy::json`]);
//!    [`message`] and [`message::headers`]; the migration tracker's table [`observe::usage`]; [`emulator`].
//! 8. **Plain data and mechanisms**: [`legacy::route`], [`legacy::retirement`],
//!    [`message::body`], [`message::fingerprint`], [`observe::bounded_text`] (client text cut
//!    to a byte limit before it waits in a queue), [`observe::log_queue`] (the background log
//!    writer, bounded in bytes), [`observe::log_summary`] (a line anyone can make the shim
//!    repeat, as one line and then one summary a second), [`observe::log_text`],
//!    [`server::coarse_timer`] (hyper's header timer at a tenth of a second),
//!    [`server::framing_guard`] (the byte-level smuggling guard in front of hyper),
//!    [`server::net`] (accepting), [`server::protocol_sniff`] (HTTP/1.1 or h2c by the first
//!    bytes), [`server::send_clock`] (the clock on every write to a client) and
//!    [`upstream::budget`] (the upstream budget as GCRA).
//!
//! Modules that tests, fuzz targets and `main` do not use are `pub(crate)`, so the compiler
//! reports dead code in them.
#![forbid(unsafe_code)]
// The module map above names the crate-private modules too; it is for this crate's readers.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod admin;
pub mod cli;
pub mod config;
pub mod emulator;
pub(crate) mod error;
pub(crate) mod fleet;
pub mod legacy;
pub mod message;
pub mod observe;
pub(crate) mod proxy;
pub mod server;
pub mod upstream;

use config::{Config, ConfigError};
use proxy::Proxy;
use server::tls::InboundTls;
pub use server::{Hangups, StopSignals};

/// The rules this replica's code and the fleet's Redis scripts both follow, each with the one
/// table of cases both are tested against (`tests/it/shared_rules.rs` runs the scripts on a real
/// Redis). For that test, not an API.
#[doc(hidden)]
pub mod shared_rules {
    pub use crate::fleet::budget::testing as fleet_budget;
    pub use crate::fleet::usage::record::testing as fleet_usage;
    pub use crate::observe::metrics::eviction::cases as eviction_cases;
    pub use crate::upstream::budget::cases as budget_cases;
}

/// Everything built from the configuration before anything listens, so that a bad CA file or
/// certificate stops start-up (exit 64) instead of the first request.
pub struct Prepared {
    pub proxy: Proxy,
    pub tls: Option<InboundTls>,
}

/// Builds the upstream client, the request handler and the listener's TLS. Needs no runtime:
/// connections are made later, by the serving threads.
pub fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    prepare_traced(config, None)
}

/// [`prepare`], with traces exported as `tracing` says ([`observe::otel::from_env`]); `None`
/// leaves tracing off.
pub fn prepare_traced(
    config: &Config,
    tracing: Option<&observe::otel::Settings>,
) -> Result<Prepared, ConfigError> {
    let tls = match &config.tls {
        Some(files) => Some(InboundTls::load(&files.cert_file, &files.key_file)?),
        None => None,
    };
    Ok(Prepared {
        proxy: Proxy::new(config, tracing)?,
        tls,
    })
}

/// What a SIGHUP reload starts from: the flags and environment, the config as they and the
/// file resolved at start-up (before `--demo` pointed it at the emulator), and the log filter
/// to change.
pub struct ReloadFrom {
    pub overrides: config::Overrides,
    pub resolved: Config,
    pub log_filter: observe::telemetry::LogFilter,
    /// The files start-up read and their digests ([`config::read::recorded_reads`]), so that
    /// the file watch compares later reads with exactly what the running config came from.
    pub read_at_start: Vec<(std::path::PathBuf, config::read::Digest)>,
}

/// Binds the listeners and serves until the first of `stops` and the drain are over.
/// `on_listening` gets the bound main and admin addresses once both listen.
/// `hangups` is SIGHUP, taken over by the caller as early as it can ([`Hangups::register`]);
/// each one reloads the config from `reload_from`.
pub async fn run(
    config: Config,
    prepared: Prepared,
    hangups: Hangups,
    stops: StopSignals,
    reload_from: ReloadFrom,
    on_listening: impl FnOnce(std::net::SocketAddr, std::net::SocketAddr),
) -> std::io::Result<()> {
    let listeners = server::bind(&config)?;
    let (listen, admin) = (listeners.main_addr()?, listeners.admin_addr()?);
    on_listening(listen, admin);
    tracing::info!(
        %listen,
        %admin,
        upstream = %config.upstream.url,
        tls = prepared.tls.is_some(),
        workers = listeners.workers(),
        "explo-shim listening"
    );
    if let Some(fleet) = &config.fleet {
        tracing::info!(
            redis = %fleet.describe(),
            key = %fleet.key,
            budget_shared = config.rate_limit.is_some(),
            "sharing the upstream budget and usage records with every replica on this Redis"
        );
    }
    if config.legacy.team_id.is_none() {
        // The Customer API has no team id, so legacy replies can only carry the configured one.
        tracing::warn!(
            "`legacy.team_id` is unset: every legacy `user_group` will carry \"team_id\": null; \
             set it to your Explo team id if legacy clients read it"
        );
    }
    warn_of_past_brownouts(&config.deprecation.retirement, std::time::SystemTime::now());
    if let Some(token) = &prepared.proxy.policy().peek().admin_token {
        token.warn_if_short();
    }
    let mut reloader = server::reload::Reloader::new(
        reload_from.overrides,
        reload_from.resolved,
        prepared.proxy.policy().clone(),
        std::sync::Arc::clone(prepared.proxy.metrics()),
    );
    reloader.log_filter = reload_from.log_filter;
    reloader.read_at_start = reload_from.read_at_start;
    server::serve(&config, prepared, listeners, hangups, stops, reloader).await
}

/// Windows that ended before the shim started will never refuse a call. Not an error (a
/// schedule kept in the config for the record is fine), but worth a line: a date in the wrong
/// year looks just like it.
fn warn_of_past_brownouts(retirement: &legacy::retirement::Retirement, now: std::time::SystemTime) {
    let past: Vec<String> = retirement
        .windows()
        .iter()
        .filter(|window| window.end <= now)
        .map(legacy::retirement::schedule::Window::to_iso8601)
        .collect();
    if !past.is_empty() {
        tracing::warn!(
            windows = ?past,
            "`deprecation.brownouts` has windows wholly in the past; they will never refuse a \
             call (check their year)"
        );
    }
}
