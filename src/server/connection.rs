//! One serving thread and its client connections: the accept loop, the protocol chosen by the
//! first bytes, the framing guard and the send clock around each connection, and the drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::proxy::Proxy;
use crate::server::coarse_timer::CoarseTimer;
use crate::server::framing_guard::FramingGuard;
use crate::server::net::accept;
use crate::server::protocol_sniff::Protocol;
use crate::server::send_clock::{SendClock, StreamExecutor};
use crate::server::tls::InboundTls;
use crate::server::{protocol_sniff, send_clock};

/// The target of this file's events: the module they were logged from before it was split
/// into files, which log filters and queries name.
const LOG_TARGET: &str = "explo_shim::server";

/// Concurrent streams per HTTP/2 client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Ping idle HTTP/2 clients so dead peers are noticed and their connections freed.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// hyper's header-count limit when none is set (`hyper::proto::h1::role::DEFAULT_MAX_HEADERS`).
const HYPER_DEFAULT_MAX_HEADERS: u64 = 100;

/// What every serving thread needs besides its listener and its proxy.
pub(super) struct ThreadSettings {
    pub(super) connection: Arc<ConnectionSettings>,
    pub(super) connections: Arc<Semaphore>,
    pub(super) tls: Option<Arc<InboundTls>>,
    pub(super) grace: Duration,
}

/// The HTTP settings every client connection is served with: one builder per protocol, the
/// framing guard's limits and the send clock's. Shared by every connection of the process.
pub(super) struct ConnectionSettings {
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
    pub(super) fn new(
        config: &Config,
        send_timeouts: prometheus_client::metrics::counter::Counter,
    ) -> Self {
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
pub(super) fn serve_thread(
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
            tracing::error!(target: LOG_TARGET, %error, "cannot start a serving thread's runtime");
            return false;
        }
    };
    runtime.block_on(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => {
                accept_until_stopped(listener, Arc::new(proxy), settings, stopped).await
            }
            Err(error) => {
                tracing::error!(target: LOG_TARGET, %error, "cannot serve a listener");
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
                    Ok(Err(error)) => {
                        tracing::debug!(target: LOG_TARGET, %client, %error, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::debug!(target: LOG_TARGET, %client, "TLS handshake timed out")
                    }
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
                tracing::debug!(target: LOG_TARGET, %client, %error, "client connection failed before a request");
                return;
            }
            Err(_) => {
                tracing::debug!(target: LOG_TARGET, %client, "no request head within the header read timeout");
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
            tracing::debug!(target: LOG_TARGET, %client, error = %crate::error::error_chain(&error), "client connection ended with an error");
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
