//! Connections to the one upstream, kept by the thread that made them.
//!
//! Each serving thread has its own [`ConnectionPool`]: HTTP/1.1 connections are kept idle in a
//! small stack (the most recently used first, so the rest can age out), and an HTTP/2
//! connection, when ALPN picks h2, is shared by every request of the thread. A connection's
//! driver task runs on the same single-threaded runtime as the requests that use it, so a
//! request never crosses threads and there is no pool checkout machinery beyond a short
//! uncontended lock.
//!
//! A request is only ever retried when hyper hands it back unsent (a pooled connection that
//! the upstream closed while it sat idle): a request that may have reached the upstream is
//! never replayed.

pub(crate) mod bodies;

use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ShimError;
use crate::message::body::ProxyBody;
use crate::observe::metrics::UpstreamFailure;
use crate::upstream::connect::{Endpoint, Transport, classify};
use crate::upstream::pool::bodies::{PooledBody, Release, RequestBodyOutcome, track_request_body};

/// Pooled connections tried before a fresh one: each may have been closed by the upstream
/// while idle, and each such failure hands the request back unsent.
const MAX_STALE_RETRIES: usize = 3;

/// How often an upstream HTTP/2 connection is pinged, and how long its answer may take before
/// the connection is closed.
const UPSTREAM_H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const UPSTREAM_H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One thread's connections to the upstream.
pub struct ConnectionPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    endpoint: Endpoint,
    idle: Mutex<Idle>,
    /// Whether the idle sweeper runs: it starts with the first connection, on the runtime of
    /// the thread that uses the pool.
    sweeping: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Idle {
    /// Idle HTTP/1.1 connections, the most recently used last.
    http1: Vec<IdleHttp1>,
    /// The thread's HTTP/2 connection and when it last started a request.
    http2: Option<(http2::SendRequest<ProxyBody>, Instant)>,
}

struct IdleHttp1 {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

impl IdleHttp1 {
    /// Still open, and idle for no longer than the idle timeout.
    fn reusable(&self, now: Instant, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && now - self.since <= idle_timeout
    }
}

/// A connection checked out for one request.
enum Checkout {
    Http1(http1::SendRequest<ProxyBody>),
    Http2(http2::SendRequest<ProxyBody>),
}

/// Why one attempt failed.
enum Attempt {
    /// hyper gave the request back: nothing reached the upstream, so it may be retried.
    NotSent(Box<Request<ProxyBody>>, hyper::Error),
    /// The request may have reached the upstream.
    Failed(hyper::Error),
}

impl ConnectionPool {
    /// An empty pool; it connects on first use, on the thread that uses it.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                endpoint,
                idle: Mutex::new(Idle::default()),
                sweeping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Sends `request` (its URI in absolute form, as built by [`super::Upstream`]) and waits
    /// for the reply head. The reply body returns the connection to the pool when it ends.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, ShimError> {
        // Wrapped once: an unsent request handed back for a retry keeps its wrapper.
        let (mut request, body) = track_request_body(request);
        let failed = |error: hyper::Error| self.failed(&error, body.as_deref());
        for _ in 0..MAX_STALE_RETRIES {
            let Some(connection) = self.checkout_idle() else {
                break;
            };
            match self.attempt(connection, request, body.as_ref()).await {
                Ok(response) => return Ok(response),
                Err(Attempt::NotSent(unsent, error)) => {
                    tracing::debug!(%error, "pooled upstream connection was closed; retrying");
                    request = *unsent;
                }
                Err(Attempt::Failed(error)) => return Err(failed(error)),
            }
        }
        let connection = self.connect().await?;
        match self.attempt(connection, request, body.as_ref()).await {
            Ok(response) => Ok(response),
            Err(Attempt::NotSent(_, error)) | Err(Attempt::Failed(error)) => Err(failed(error)),
        }
    }

    /// The error for an exchange that broke after the request may have been sent. When the
    /// request body itself failed first (the client's malformed chunk, or its silence), that
    /// is the client's doing whatever hyper reports for it: on HTTP/1.1 a user error, on
    /// HTTP/2 a reset stream. The body's own record decides, not the error's kind. Only the
    /// upstream's failures are counted.
    fn failed(&self, error: &hyper::Error, body: Option<&RequestBodyOutcome>) -> ShimError {
        if let Some(client_error) = body.and_then(RequestBodyOutcome::failure) {
            return client_error;
        }
        self.inner.endpoint.metrics.upstream_error(classify(error));
        ShimError::UpstreamFailed {
            detail: crate::error::error_chain(error),
        }
    }

    /// Stops handing out the thread's HTTP/2 connection; requests on it finish, new ones
    /// connect afresh.
    pub fn forget_http2(&self) {
        self.inner.lock().http2 = None;
    }

    /// A pooled connection ready for a request, if one is alive and fresh.
    fn checkout_idle(&self) -> Option<Checkout> {
        let idle_timeout = self.inner.endpoint.idle_timeout;
        let now = Instant::now();
        {
            let mut idle = self.inner.lock();
            if let Some((sender, last_used)) = &mut idle.http2 {
                if !sender.is_closed() {
                    *last_used = now;
                    return Some(Checkout::Http2(sender.clone()));
                }
                idle.http2 = None;
            }
        }
        loop {
            let mut idle = self.inner.lock();
            let candidate = idle.http1.pop()?;
            // Only connections whose exchange ended both ways are pooled, and hyper marks
            // such a connection ready before the reply's last frame reaches us. One that is
            // not ready is busy or broken: dropping it closes it, and the next is tried; a
            // checkout never waits behind another request's upload.
            if candidate.reusable(now, idle_timeout) && candidate.sender.is_ready() {
                return Some(Checkout::Http1(candidate.sender));
            }
        }
    }

    async fn attempt(
        &self,
        connection: Checkout,
        mut request: Request<ProxyBody>,
        body: Option<&Arc<RequestBodyOutcome>>,
    ) -> Result<Response<PooledBody>, Attempt> {
        match connection {
            Checkout::Http1(mut sender) => {
                origin_form(&mut request);
                request
                    .headers_mut()
                    .insert(http::header::HOST, self.inner.endpoint.host_header.clone());
                *request.version_mut() = Version::HTTP_11;
                let response = sender
                    .try_send_request(request)
                    .await
                    .map_err(not_sent_or_failed)?;
                let release = Release {
                    pool: Arc::downgrade(&self.inner),
                    sender,
                    request_body: body.cloned(),
                };
                let metrics = &self.inner.endpoint.metrics;
                Ok(response.map(|body| PooledBody::new(body, Some(release), metrics)))
            }
            Checkout::Http2(mut sender) => {
                // `:authority` comes from the absolute URI; a `Host` header would repeat it.
                request.headers_mut().remove(http::header::HOST);
                *request.version_mut() = Version::HTTP_2;
                if let Err(error) = sender.ready().await {
                    return Err(Attempt::NotSent(Box::new(request), error));
                }
                let response = sender
                    .try_send_request(request)
                    .await
                    .map_err(not_sent_or_failed)?;
                let metrics = &self.inner.endpoint.metrics;
                Ok(response.map(|body| PooledBody::new(body, None, metrics)))
            }
        }
    }

    /// A new connection: TCP, then TLS with ALPN when the upstream is `https://`, then the
    /// protocol ALPN chose. Any failure here means nothing reached the upstream.
    async fn connect(&self) -> Result<Checkout, ShimError> {
        if !self
            .inner
            .sweeping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(sweep_idle(Arc::downgrade(&self.inner)));
        }
        let endpoint = &self.inner.endpoint;
        let connect_failed = |error: io::Error| (UpstreamFailure::Connect, error);
        let connecting = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(connect_failed)?;
            tcp.set_nodelay(true).map_err(connect_failed)?;
            match &endpoint.tls {
                None => Ok(Transport::Plain(tcp)),
                // However the handshake fails (an alert, a reset, a peer that is not TLS), it
                // is the TLS set-up that failed.
                Some((connector, name)) => Ok(Transport::Tls(Box::new(
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|error| (UpstreamFailure::Tls, error))?,
                ))),
            }
        };
        // A connection not made within `upstream.connect_timeout` counts as `connect`: no
        // connection, whatever the reason; `timeout` is the exchange's own clock.
        let transport = match tokio::time::timeout(endpoint.connect_timeout, connecting).await {
            Ok(Ok(transport)) => transport,
            Ok(Err((failure, error))) => {
                endpoint.metrics.upstream_error(failure);
                return Err(ShimError::UpstreamUnreachable {
                    detail: error.to_string(),
                });
            }
            Err(_) => {
                endpoint.metrics.upstream_error(UpstreamFailure::Connect);
                return Err(ShimError::UpstreamUnreachable {
                    detail: format!(
                        "connect timed out after {}",
                        humantime::format_duration(endpoint.connect_timeout)
                    ),
                });
            }
        };
        let unreachable = |error: hyper::Error| {
            endpoint.metrics.upstream_error(classify(&error));
            ShimError::UpstreamUnreachable {
                detail: crate::error::error_chain(&error),
            }
        };
        if transport.negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // One h2 connection carries every request of the thread: a silently dead one
                // (a NAT that forgot it, a peer that vanished) must be noticed by a ping, not
                // by the requests that time out on it.
                .keep_alive_interval(UPSTREAM_H2_PING_INTERVAL)
                .keep_alive_timeout(UPSTREAM_H2_PING_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(transport))
                .await
                .map_err(unreachable)?;
            tokio::spawn(drive(connection));
            self.inner.lock().http2 = Some((sender.clone(), Instant::now()));
            Ok(Checkout::Http2(sender))
        } else {
            let (sender, connection) = http1::Builder::new()
                .handshake(TokioIo::new(transport))
                .await
                .map_err(unreachable)?;
            tokio::spawn(drive(connection));
            Ok(Checkout::Http1(sender))
        }
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // The lock guards plain data; a panic while holding it leaves nothing half-done.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a connection whose reply has ended, unless the pool is full.
    pub(super) fn release(&self, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.http1.len() < self.endpoint.max_idle {
            idle.http1.push(IdleHttp1 {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// Drops idle connections past the idle timeout, so a quiet shim holds no sockets open; ends
/// with the pool.
async fn sweep_idle(pool: Weak<PoolInner>) {
    let period = match pool.upgrade() {
        Some(pool) => pool.endpoint.idle_timeout.max(Duration::from_secs(1)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let idle_timeout = pool.endpoint.idle_timeout;
        let mut idle = pool.lock();
        idle.http1
            .retain(|connection| connection.reusable(now, idle_timeout));
        if idle.http2.as_ref().is_some_and(|(sender, last_used)| {
            sender.is_closed() || now - *last_used > idle_timeout
        }) {
            idle.http2 = None;
        }
    }
}

/// Runs a connection until it closes; its errors reach the request that was using it.
async fn drive<C, E>(connection: C)
where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(error) = connection.await {
        tracing::debug!(%error, "upstream connection ended with an error");
    }
}

fn not_sent_or_failed(mut error: TrySendError<Request<ProxyBody>>) -> Attempt {
    match error.take_message() {
        Some(request) => Attempt::NotSent(Box::new(request), error.into_error()),
        None => Attempt::Failed(error.into_error()),
    }
}

/// HTTP/1.1 requests carry the path only; the connection already names the upstream.
fn origin_form(request: &mut Request<ProxyBody>) {
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = http::Uri::from(path);
}
