//! Listening, serving connections, and the graceful drain.
//!
//! Thread per core: `workers` serving threads, each with a single-threaded tokio runtime, its
//! own duplicate of the one listening socket, and its own upstream connections. Whichever
//! thread is free accepts the next connection, and a request is served from accept to
//! reply on the thread that accepted it: no work-stealing, no hand-off between threads. The
//! caps (open connections, requests in flight) are semaphores shared by every thread, so they
//! hold for the whole process. The admin listener, the signals and the certificate reload run
//! on the coordinating thread that called [`serve`].
//!
//! Each accepted connection speaks HTTP/1.1 or HTTP/2 with prior knowledge (h2c), told apart
//! by [`crate::server::protocol_sniff`]; only the chosen protocol's hyper connection is built, boxed,
//! and watched by its thread's `GracefulShutdown`. An idle keep-alive connection then holds
//! hyper's two 8 KB buffers and little else (see the formula in docs/design/memory.md). On shutdown
//! every thread stops accepting, `/readyz` turns 503, idle keep-alive connections and those
//! that have not finished a TLS handshake or sent a first byte close at once, and in-flight
//! requests get `shutdown.grace` to finish.

pub(crate) mod coarse_timer;
pub mod framing_guard;
pub(crate) mod net;
pub(crate) mod protocol_sniff;
pub(crate) mod reload;
pub(crate) mod send_clock;
pub(crate) mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::Prepared;
use crate::admin::{self, AdminState, Readiness};
use crate::config::Config;
use crate::fleet::Fleet;
use crate::proxy::Proxy;
use crate::server::coarse_timer::CoarseTimer;
use crate::server::framing_guard::FramingGuard;
use crate::server::net::accept;
use crate::server::protocol_sniff::Protocol;
use crate::server::reload::Reloader;
use crate::server::send_clock::{SendClock, StreamExecutor};
use crate::server::tls::InboundTls;

/// Concurrent streams per HTTP/2 client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Ping idle HTTP/2 clients so dead peers are noticed and their connections freed.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

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

/// hyper's header-count limit when none is set (`hyper::proto::h1::role::DEFAULT_MAX_HEADERS`).
const HYPER_DEFAULT_MAX_HEADERS: u64 = 100;

/// Pending connections each listener's kernel queue holds (tokio's own default).
const LISTEN_BACKLOG: i32 = 1024;

/// The bound sockets, before any runtime serves them: one main listener per serving thread,
/// all duplicates of one socket, and the admin listener.
pub struct Listeners {
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
pub fn bind(config: &Config) -> std::io::Result<Listeners> {
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

/// What every serving thread needs besides its listener and its proxy.
struct ThreadSettings {
    connection: Arc<ConnectionSettings>,
    connections: Arc<Semaphore>,
    tls: Option<Arc<InboundTls>>,
    grace: Duration,
}

/// Serves legacy clients on the main listeners (one thread each) and the admin endpoints on
/// this thread until `shutdown` completes, then drains every thread.
pub async fn serve(
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
    let admin_task = tokio::spawn(serve_admin(
        TcpListener::from_std(listeners.admin)?,
        admin_state.clone(),
        config.limits.header_read_timeout,
        config.limits.send_timeout,
    ));
    let reload_task = tokio::spawn(hangups.handle(Arc::clone(&reloader)));

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
    let _ = usage_writer_stop.send(());
    if let Some(writer) = usage_writer {
        // The last records go to Redis, within the Redis timeout per record.
        let _ = writer.await;
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

/// The HTTP settings every client connection is served with: one builder per protocol, the
/// framing guard's limits and the send clock's. Shared by every connection of the process.
struct ConnectionSettings {
    http1: http1::Builder,
    /// Its executor runs each HTTP/2 stream under the send clock ([`StreamExecutor`]).
    http2: http2::Builder<StreamExecutor>,
    header_read_timeout: Duration,
    max_head_bytes: usize,
    send_timeout: Duration,
    /// `explo_shim_send_timeouts_total`.
    send_timeouts: prometheus_client::metrics::counter::Counter,
}

impl ConnectionSettings {
    fn new(config: &Config, send_timeouts: prometheus_client::metrics::counter::Counter) -> Self {
        let limits = &config.limits;
        let header_bytes = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
        let mut http1 = http1::Builder::new();
        http1
            // Armed and dropped on every request of a keep-alive connection; see `coarse_timer`.
            .timer(CoarseTimer)
            .header_read_timeout(limits.header_read_timeout)
            // hyper answers 431 when the head does not fit or has too many fields.
            .max_buf_size(header_bytes);
        // hyper's own limit is the default's 100 fields, parsed into a stack array; any other
        // limit makes hyper fill a heap array of that size for every request head.
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(usize::try_from(limits.max_headers).unwrap_or(usize::MAX));
        }
        let mut http2 = http2::Builder::new(StreamExecutor::new(
            limits.send_timeout,
            send_timeouts.clone(),
        ));
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL);
        Self {
            http1,
            http2,
            header_read_timeout: limits.header_read_timeout,
            max_head_bytes: header_bytes,
            send_timeout: limits.send_timeout,
            send_timeouts,
        }
    }
}

/// One serving thread: its own runtime, listener and proxy, until `stopped` turns true.
/// Returns whether its connections drained within the grace period.
fn serve_thread(
    listener: std::net::TcpListener,
    proxy: Proxy,
    settings: &ThreadSettings,
    stopped: watch::Receiver<bool>,
) -> bool {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start a serving thread's runtime");
            return false;
        }
    };
    runtime.block_on(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                accept_until_stopped(listener, Arc::new(proxy), settings, stopped).await
            }
            Err(error) => {
                tracing::error!(%error, "cannot serve a listener");
                false
            }
        }
    })
}

async fn accept_until_stopped(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    settings: &ThreadSettings,
    stopped: watch::Receiver<bool>,
) -> bool {
    let graceful = GracefulShutdown::new();
    let mut stop_signal = stopped.clone();
    let stop = until_stopped(&mut stop_signal);
    tokio::pin!(stop);
    loop {
        let (stream, client) = tokio::select! {
            accepted = accept(&listener, "main") => accepted,
            () = &mut stop => break,
        };
        // Past max_connections, the accepted connection waits for a slot and this thread
        // accepts nothing more: the kernel backlog holds the rest. The slot is taken after
        // the accept, not before, so an idle thread never sits on a slot that a busy one needs.
        let connection_slot = tokio::select! {
            slot = Arc::clone(&settings.connections).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let open = proxy.metrics().open_connection();
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            // Boxed: hyper keeps a slot the size of this future for the connection's whole
            // life (about 9.5 KB unboxed); boxed, the slot is a pointer and the memory is
            // held only while a request is in flight.
            // On HTTP/2 the reply's body tells its stream's send clock whether hyper waits for
            // the client (`send_clock::watch_reply`, applied inside `Proxy::handle`); on
            // HTTP/1.1 the connection's IO keeps time.
            Box::pin(async move { Ok::<_, Infallible>(proxy.handle(request, client).await) })
        });
        let mut connection = ClientConnection {
            first_head_deadline: tokio::time::Instant::now()
                + settings.connection.header_read_timeout,
            settings: Arc::clone(&settings.connection),
            watcher: graceful.watcher(),
            stopped: stopped.clone(),
            client,
        };
        let acceptor = settings.tls.as_ref().map(|tls| tls.acceptor());
        let task = async move {
            // Held for the connection's life: its place under max_connections, and its count
            // on /metrics.
            let _held = (connection_slot, open);
            let Some(acceptor) = acceptor else {
                return connection.serve(stream, service).await;
            };
            // Boxed: the TLS session's state would otherwise make every plain connection's
            // task as large as a TLS one's.
            Box::pin(async move {
                // A client that never finishes its handshake is cut off like a slow head, and
                // does not hold up the drain.
                let deadline = connection.first_head_deadline;
                let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
                let handshake = tokio::select! {
                    handshake = handshake => handshake,
                    () = until_stopped(&mut connection.stopped) => return,
                };
                match handshake {
                    Ok(Ok(stream)) => connection.serve(stream, service).await,
                    Ok(Err(error)) => tracing::debug!(%client, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                }
            })
            .await;
        };
        tokio::spawn(task);
    }
    drop(listener);
    tokio::time::timeout(settings.grace, graceful.shutdown())
        .await
        .is_ok()
}

/// Resolves when the thread is told to stop, or its coordinator is gone.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// One accepted client connection, before its protocol is known.
struct ClientConnection {
    settings: Arc<ConnectionSettings>,
    watcher: Watcher,
    /// The thread's stop signal: a connection that has sent nothing yet closes at the drain.
    stopped: watch::Receiver<bool>,
    client: SocketAddr,
    /// The first head, TLS handshake included, must be complete by then.
    first_head_deadline: tokio::time::Instant,
}

impl ClientConnection {
    /// Serves the connection until it ends or the drain closes it.
    async fn serve<I, S>(mut self, mut io: I, service: S)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<
                hyper::body::Incoming,
                ResBody = crate::message::body::ProxyBody,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let client = self.client;
        let sniffing =
            tokio::time::timeout_at(self.first_head_deadline, protocol_sniff::sniff(&mut io));
        let sniffed = tokio::select! {
            sniffed = sniffing => sniffed,
            () = until_stopped(&mut self.stopped) => return,
        };
        let sniffed = match sniffed {
            Ok(Ok(sniffed)) => sniffed,
            Ok(Err(error)) => {
                tracing::debug!(%client, %error, "client connection failed before a request");
                return;
            }
            Err(_) => {
                tracing::debug!(%client, "no request head within the header read timeout");
                return;
            }
        };
        // Every write to the client runs under the send clock; reads under the framing guard's.
        let clocked = SendClock::new(
            io,
            self.settings.send_timeout,
            self.settings.send_timeouts.clone(),
        );
        let guarded = TokioIo::new(FramingGuard::new(
            clocked,
            self.settings.max_head_bytes,
            self.settings.header_read_timeout,
            self.first_head_deadline,
            sniffed.bytes(),
        ));
        let result = match sniffed.protocol {
            Protocol::Http1 => {
                let connection = self.settings.http1.serve_connection(guarded, service);
                until_ended(self.watcher.watch(connection)).await
            }
            Protocol::Http2 => {
                let connection = self.settings.http2.serve_connection(guarded, service);
                until_ended(self.watcher.watch(connection)).await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%client, error = %crate::error::error_chain(&error), "client connection ended with an error");
        }
    }
}

/// Serves `connection` to its end. Boxed, so the task holds a pointer while the connection
/// lives rather than room for both protocols' state. A connection cut off by the send timeout
/// is dropped inside [`send_clock::cutting_off`], with the reply it abandons (the access log
/// says `send_timeout`).
async fn until_ended<C, E>(connection: C) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let mut connection = Box::pin(connection);
    let result = connection.as_mut().await;
    if let Err(error) = &result
        && send_clock::is_send_timeout(error)
    {
        send_clock::cutting_off(move || drop(connection));
    }
    result
}

/// SIGHUP, taken over as the process starts ([`Hangups::register`], called by `main` before
/// it reads the config). Its default action ends the process (exit 129), and log rotators,
/// supervisors and shells without `nohup` send it, so it must never reach a shim unwatched.
/// Each one reloads the config file ([`crate::server::reload`]).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Takes over SIGHUP's disposition; must be called inside the runtime.
    pub fn register() -> Self {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|error| tracing::warn!(%error, "cannot watch SIGHUP"))
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Answers every SIGHUP until aborted.
    async fn handle(self, reloader: Arc<Mutex<Reloader>>) {
        #[cfg(unix)]
        {
            let Some(mut hangups) = self.signal else {
                return;
            };
            let lock = || {
                reloader
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // The files are read on a blocking thread, with no lock held: this thread
                // also answers the probes and the stop signals, and a FIFO or a hung mount
                // must not take them with it. Each read has its own clock, so this ends.
                let inputs = lock().reload_inputs();
                let prepared = tokio::task::spawn_blocking(move || inputs.prepare())
                    .await
                    .unwrap_or_else(|error| {
                        Err(crate::config::ConfigError(format!(
                            "the reload stopped: {error}"
                        )))
                    });
                lock().finish(prepared);
            }
        }
        #[cfg(not(unix))]
        let _ = (self, reloader);
    }
}

/// SIGTERM (orchestrators) and SIGINT (a terminal), taken over at once, before anything
/// listens, so that a signal sent as soon as the shim says it listens drains it instead of
/// killing it. The first one starts the shutdown; a second one skips what is left of
/// `shutdown.delay`.
pub struct StopSignals {
    received: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl StopSignals {
    /// Must be called inside the runtime.
    pub fn register() -> Self {
        let (sender, received) = tokio::sync::mpsc::unbounded_channel();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                _ = terminate.recv() => {}
                                _ = interrupt.recv() => {}
                            }
                            if sender.send(()).is_err() {
                                return;
                            }
                        }
                    });
                }
                (Err(error), _) | (_, Err(error)) => {
                    // Stopping at once would be worse than not stopping on a signal: the
                    // orchestrator's SIGKILL still ends the process. The sender is kept, so
                    // the channel never reports a signal.
                    tracing::error!(%error, "cannot watch SIGTERM and SIGINT; the shim stops only when killed");
                    std::mem::forget(sender);
                }
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if sender.send(()).is_err() {
                    return;
                }
            }
        });
        Self { received }
    }

    /// The next signal.
    async fn next(&mut self) {
        if self.received.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

/// The admin endpoints, on the coordinating thread; stopped by aborting the task. Probes and
/// scrapers are few, so the listener has a small cap of its own ([`ADMIN_MAX_CONNECTIONS`];
/// past it, connections wait in the kernel backlog) and the main listener's head timeout,
/// which hyper also runs while a connection sends nothing at all and between keep-alive
/// requests: a client that stays silent or half-sends a head cannot hold a slot, or the
/// probes' way in, for longer than that. Heads are capped at [`ADMIN_MAX_HEAD_BYTES`]. Writes
/// run under the send clock ([`SendClock`]): a client that asks again and again and never
/// reads is cut off after `send_timeout`. HTTP/1.1 only: probes and scrapers speak it, and
/// nothing there needs HTTP/2. Each request is answered knowing its client's address, which
/// the failed-credential throttle counts by.
async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    header_read_timeout: Duration,
    send_timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(ADMIN_MAX_HEAD_BYTES);
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, client) = accept(&listener, "admin").await;
        let stream = SendClock::new(stream, send_timeout, state.metrics.send_timeouts());
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(admin::handle(request, &state, client.ip()).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = connection.await;
        });
    }
}
