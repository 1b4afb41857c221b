//! Listening, serving connections, and the graceful drain.
//!
//! Each accepted connection is served by hyper's auto builder (HTTP/1.1, or HTTP/2 with prior
//! knowledge, h2c) and watched by a `GracefulShutdown`. On shutdown the shim stops accepting,
//! `/readyz` turns 503, idle keep-alive connections close at once, and in-flight requests get
//! `shutdown.grace` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::Prepared;
use crate::admin::{self, Readiness};
use crate::config::Config;
use crate::framing_guard::FramingGuard;
use crate::proxy::Proxy;
use crate::tls::InboundTls;

/// Concurrent streams per HTTP/2 client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Ping idle HTTP/2 clients so dead peers are noticed and their connections freed.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serves legacy clients on `listener` and the admin endpoints on `admin_listener` until
/// `shutdown` completes, then drains.
pub async fn serve(
    config: &Config,
    prepared: Prepared,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let readiness = Readiness::default();
    let Prepared { proxy, tls } = prepared;
    let proxy = Arc::new(proxy);
    let tls = tls.map(Arc::new);
    let reload_task = tls.clone().map(|tls| tokio::spawn(reload_on_sighup(tls)));
    let header_read_timeout = config.limits.header_read_timeout;
    let max_head_bytes = usize::try_from(config.limits.max_header_bytes).unwrap_or(usize::MAX);
    let admin_task = tokio::spawn(serve_admin(
        admin_listener,
        readiness.clone(),
        Arc::clone(&proxy),
    ));

    let limits = &config.limits;
    let header_bytes = usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when the head does not fit or has too many fields.
        .max_buf_size(header_bytes)
        .max_headers(usize::try_from(limits.max_headers).unwrap_or(usize::MAX));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL);
    let connections = Arc::new(Semaphore::new(
        usize::try_from(limits.max_connections).unwrap_or(usize::MAX),
    ));

    let graceful = GracefulShutdown::new();
    readiness.set_ready(true);
    tokio::pin!(shutdown);
    loop {
        // Past max_connections, stop accepting: the kernel backlog holds the rest.
        let connection_slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    let proxy = Arc::clone(&proxy);
                    let service = service_fn(move |request| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
                    });
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                    tokio::spawn(async move {
                        let _slot = connection_slot;
                        let Some(acceptor) = acceptor else {
                            let guarded = FramingGuard::new(stream, max_head_bytes, header_read_timeout);
                            return serve_io(builder, watcher, TokioIo::new(guarded), service, client).await;
                        };
                        // A client that never finishes its handshake is cut off like a slow head.
                        match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let guarded = FramingGuard::new(stream, max_head_bytes, header_read_timeout);
                                serve_io(builder, watcher, TokioIo::new(guarded), service, client).await
                            }
                            Ok(Err(error)) => tracing::debug!(%client, %error, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }

    readiness.set_ready(false);
    drop(listener);
    tracing::info!(grace = %humantime::format_duration(config.shutdown_grace), "shutting down: draining in-flight requests");
    match tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("grace period over; closing the remaining connections"),
    }
    admin_task.abort();
    if let Some(task) = reload_task {
        task.abort();
    }
}

/// Serves one client connection until it ends or the drain closes it.
async fn serve_io<I, S>(
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: TokioIo<I>,
    service: S,
    client: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::body::ProxyBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(io, service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%client, error = %crate::upstream::error_chain(error.as_ref()), "client connection ended with an error");
    }
}

/// Reloads the listener's certificate on every SIGHUP.
async fn reload_on_sighup(tls: Arc<InboundTls>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot watch SIGHUP; certificate reload is off");
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(%error, "TLS certificate reload failed; keeping the current one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

async fn serve_admin(listener: TcpListener, readiness: Readiness, proxy: Arc<Proxy>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let readiness = readiness.clone();
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |request| {
            let response = admin::handle(&request, &readiness, &proxy);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds both listeners. Separate from [`serve`] so the caller can report the bound ports.
pub async fn bind(config: &Config) -> std::io::Result<(TcpListener, TcpListener)> {
    let listener = TcpListener::bind(config.listen).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {}: {error}", config.listen),
        )
    })?;
    let admin = TcpListener::bind(config.admin).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {} (admin): {error}", config.admin),
        )
    })?;
    Ok((listener, admin))
}

/// The addresses actually bound (they differ from the config when it asked for port 0).
pub fn local_addrs(
    listener: &TcpListener,
    admin: &TcpListener,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    (listener.local_addr().ok(), admin.local_addr().ok())
}
