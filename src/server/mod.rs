//! Listening, serving connections, and the graceful drain.
//!
//! Thread per core: `workers` serving threads, each with a single-threaded tokio runtime, its
//! own duplicate of the one listening socket, and its own upstream connections. Whichever
//! thread is free accepts the next connection, and a request is served from accept to
//! reply on the thread that accepted it: no work-stealing, no hand-off between threads. The
//! caps (open connections, requests in flight) are semaphores shared by every thread, so they
//! hold for the whole process. The admin listener, the signals, the file watch and the reload
//! run on the coordinating thread that called [`serve`].
//!
//! Each accepted connection speaks HTTP/1.1 or HTTP/2 with prior knowledge (h2c), told apart
//! by [`crate::server::protocol_sniff`]; only the chosen protocol's hyper connection is built, boxed,
//! and watched by its thread's `GracefulShutdown`. An idle keep-alive connection then holds
//! hyper's two 8 KB buffers and little else (see the formula in docs/design/memory.md). On shutdown
//! every thread stops accepting, `/readyz` turns 503, idle keep-alive connections and those
//! that have not finished a TLS handshake or sent a first byte close at once, and in-flight
//! requests get `shutdown.grace` to finish.

mod admin_listener;
pub(crate) mod coarse_timer;
mod connection;
pub(crate) mod file_watch;
pub mod framing_guard;
pub(crate) mod net;
pub(crate) mod protocol_sniff;
pub(crate) mod reload;
pub(crate) mod reloading;
pub(crate) mod send_clock;
mod signals;
pub(crate) mod tls;

pub use signals::{Hangups, StopSignals};

use admin_listener::serve_admin;
use connection::{ConnectionSettings, ThreadSettings, serve_thread};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::Prepared;
use crate::admin::{self, AdminState, Readiness};
use crate::config::Config;
use crate::fleet::Fleet;
use crate::server::reload::Reloader;

/// Open connections the admin listener serves at once: enough that a few hundred slow
/// clients do not keep the probes waiting, few enough to bound its memory (a few MB).
pub(crate) const ADMIN_MAX_CONNECTIONS: usize = 256;

/// The most of a request head the admin listener reads, in bytes: its requests are short
/// (a path, a token or a cookie); past it hyper answers 431. This is hyper's smallest buffer,
/// and must never go below it: `http1::Builder::max_buf_size` asserts, and so panics, for
/// anything under 8192 (`proto::h1::MINIMUM_MAX_BUFFER_SIZE`); the assertion below stops such
/// a change at compile time instead.
pub(crate) const ADMIN_MAX_HEAD_BYTES: usize = 8 * 1024;
const _: () = assert!(
    ADMIN_MAX_HEAD_BYTES >= 8192,
    "hyper panics on a max_buf_size under 8192"
);

/// Pending connections each listener's kernel queue holds (tokio's own default).
const LISTEN_BACKLOG: i32 = 1024;

/// The bound sockets, before any runtime serves them: one main listener per serving thread,
/// all duplicates of one socket, and the admin listener.
pub(crate) struct Listeners {
    main: Vec<std::net::TcpListener>,
    admin: std::net::TcpListener,
}

impl Listeners {
    /// The address legacy clients reach (it differs from the config when that asked for port 0).
    pub fn main_addr(&self) -> std::io::Result<SocketAddr> {
        self.main[0].local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// How many serving threads will run.
    pub fn workers(&self) -> usize {
        self.main.len()
    }
}

/// Binds the admin listener and one main listener per serving thread. Separate from [`serve`]
/// so the caller can report the bound ports.
pub(crate) fn bind(config: &Config) -> std::io::Result<Listeners> {
    let workers = config.worker_threads();
    let named = |what: &'static str, addr: SocketAddr| {
        move |error: std::io::Error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot listen on {addr}{what}: {error}"),
            )
        }
    };
    let first = exclusive_listener(config.listen).map_err(named("", config.listen))?;
    let mut main = Vec::with_capacity(workers);
    for _ in 1..workers {
        main.push(first.try_clone()?);
    }
    main.push(first);
    let admin =
        std::net::TcpListener::bind(config.admin).map_err(named(" (admin)", config.admin))?;
    admin.set_nonblocking(true)?;
    Ok(Listeners { main, admin })
}

/// The main listening socket, bound once. Not `SO_REUSEPORT`: with it, a second shim started
/// on the same address (a stale one, a duplicate) would bind too and silently take half of the
/// connections. Bound plainly, the second one fails with "address in use" and exits.
/// `SO_REUSEADDR` only lets a restart bind while the last run's connections are in TIME_WAIT.
/// Each serving thread accepts on its own duplicate of this socket (the same kernel queue):
/// a thread that is busy accepts later, an idle one sooner.
fn exclusive_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Windows `SO_REUSEADDR` would let another process bind the port too.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Serves legacy clients on the main listeners (one thread each) and the admin endpoints on
/// this thread until `shutdown` completes, then drains every thread.
pub(crate) async fn serve(
    config: &Config,
    prepared: Prepared,
    listeners: Listeners,
    hangups: Hangups,
    mut stops: StopSignals,
    mut reloader: Reloader,
) -> std::io::Result<()> {
    let Prepared { proxy, tls } = prepared;
    let tls = tls.map(Arc::new);
    reloader.tls = tls.clone();
    reloader.budget = proxy.budget();
    let reloader = Arc::new(Mutex::new(reloader));
    proxy
        .metrics()
        .set_connection_limit(config.limits.max_connections);
    let admin_state = AdminState {
        readiness: Readiness::default(),
        metrics: Arc::clone(proxy.metrics()),
        usage: Arc::clone(proxy.usage()),
        fleet: proxy.fleet().map(Fleet::admin_link),
        policy: proxy.policy().clone(),
        failures: Arc::default(),
        reports: admin::ReportBudget::default(),
    };
    // The fleet's usage writer runs here, off the serving threads, until the drain is over.
    let (usage_writer_stop, usage_writer_stopped) = tokio::sync::oneshot::channel::<()>();
    let usage_writer = proxy.fleet().map(|fleet| {
        tokio::spawn(Arc::clone(fleet).run_usage_writer(async move {
            let _ = usage_writer_stopped.await;
        }))
    });
    // With sentinels, the primary is asked for and followed here, until the writer is done.
    let sentinel_watch = proxy
        .fleet()
        .map(|fleet| tokio::spawn(Arc::clone(fleet).watch_sentinels()));
    let admin_task = tokio::spawn(serve_admin(
        TcpListener::from_std(listeners.admin)?,
        admin_state.clone(),
        config.limits.header_read_timeout,
        config.limits.send_timeout,
    ));
    let reloads = Arc::new(reloading::Reloads::new(Arc::clone(&reloader)));
    let reload_task = tokio::spawn(hangups.handle(Arc::clone(&reloads)));
    let watch_task = tokio::spawn(file_watch::run(reloads));

    let settings = Arc::new(ThreadSettings {
        connection: Arc::new(ConnectionSettings::new(
            config,
            proxy.metrics().send_timeouts(),
        )),
        connections: Arc::new(Semaphore::new(
            usize::try_from(config.limits.max_connections).unwrap_or(usize::MAX),
        )),
        tls,
        grace: config.shutdown_grace,
    });
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::with_capacity(listeners.main.len());
    for (index, listener) in listeners.main.into_iter().enumerate() {
        let proxy = proxy.for_this_thread();
        let settings = Arc::clone(&settings);
        let stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("explo-shim-{index}"))
            .spawn(move || serve_thread(listener, proxy, &settings, stopped));
        match thread {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                // Stop the threads already serving before reporting.
                let _ = stop.send(true);
                join_all(threads).await;
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("cannot start serving thread {index}: {error}"),
                ));
            }
        }
    }
    drop(proxy);
    admin_state.readiness.set_ready(true);
    stops.next().await;

    admin_state.readiness.set_ready(false);
    let delay = reloader
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .running()
        .shutdown_delay;
    if !delay.is_zero() {
        // Endpoint lists and load balancers learn of the shutdown late; until they have, new
        // connections keep coming and are served.
        tracing::info!(
            delay = %humantime::format_duration(delay),
            "shutting down: /readyz answers 503; still serving for shutdown.delay (a second \
             signal skips it)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stops.next() => tracing::info!("second signal: skipping the rest of shutdown.delay"),
        }
    }
    tracing::info!(grace = %humantime::format_duration(config.shutdown_grace), "shutting down: draining in-flight requests (another signal stops at once)");
    let _ = stop.send(true);
    tokio::select! {
        drained = join_all(threads) => if drained {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("grace period over; closing the remaining connections");
        },
        // A second Ctrl-C means now, as with most servers; the orchestrator's one SIGTERM
        // still gets the whole drain.
        () = stops.next() => {
            tracing::warn!("another signal during the drain: exiting now; requests still in flight are cut off");
            return Ok(());
        }
    }
    admin_task.abort();
    reload_task.abort();
    watch_task.abort();
    let _ = usage_writer_stop.send(());
    if let Some(writer) = usage_writer {
        // The last records go to Redis, within the Redis timeout per record.
        let _ = writer.await;
    }
    if let Some(watch) = sentinel_watch {
        watch.abort();
    }
    Ok(())
}

/// Waits for the serving threads; true when every one drained within the grace period.
async fn join_all(threads: Vec<std::thread::JoinHandle<bool>>) -> bool {
    tokio::task::spawn_blocking(move || {
        // Every thread is joined, whatever the others did.
        let drained: Vec<bool> = threads
            .into_iter()
            .map(|thread| thread.join().unwrap_or(false))
            .collect();
        drained.into_iter().all(|drained| drained)
    })
    .await
    .unwrap_or(false)
}
