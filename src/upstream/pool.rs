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

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::ShimError;
use crate::message::body::{BodyIdleTimeout, BoxError, ProxyBody};
use crate::observe::metrics::{Metrics, UpstreamFailure};

/// Pooled connections tried before a fresh one: each may have been closed by the upstream
/// while idle, and each such failure hands the request back unsent.
const MAX_STALE_RETRIES: usize = 3;

/// How often an upstream HTTP/2 connection is pinged, and how long its answer may take before
/// the connection is closed.
const UPSTREAM_H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const UPSTREAM_H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect: built once, shared by every thread's pool.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `Some` for `https://` upstreams.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The `Host` header every HTTP/1.1 request carries.
    host_header: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Where failed exchanges are counted, by [`UpstreamFailure`].
    metrics: Arc<Metrics>,
}

impl Endpoint {
    pub fn new(
        url: &crate::config::UpstreamUrl,
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let https = url.scheme == http::uri::Scheme::HTTPS;
        let host = url
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|error| format!("invalid upstream host {host:?}: {error}"))?;
            Some((TlsConnector::from(tls), name))
        } else {
            None
        };
        let host_header = HeaderValue::from_str(url.authority.as_str())
            .map_err(|error| format!("invalid upstream authority: {error}"))?;
        Ok(Self {
            host,
            port,
            tls,
            host_header,
            connect_timeout,
            idle_timeout,
            max_idle,
            metrics,
        })
    }
}

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
    fn release(&self, sender: http1::SendRequest<ProxyBody>) {
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

/// Why an exchange with the upstream broke, from hyper's error and its sources: a reply hyper
/// could not parse is `invalid_reply`, a TLS error anywhere in the chain `tls`, hyper's own
/// timer `timeout`, and everything else (a reset, a broken pipe, a connection closed before
/// the reply was complete, an HTTP/2 stream or connection torn down) `reset`.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(hyper_error) = error.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse() {
                return UpstreamFailure::InvalidReply;
            }
            if hyper_error.is_timeout() {
                return UpstreamFailure::Timeout;
            }
        }
        if error.is::<rustls::Error>() {
            return UpstreamFailure::Tls;
        }
        // An `io::Error` hides the error it wraps from `source()`: look inside.
        if let Some(io_error) = error.downcast_ref::<io::Error>()
            && io_error
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return UpstreamFailure::Tls;
        }
        cause = error.source();
    }
    UpstreamFailure::Reset
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

/// A reply body that gives its HTTP/1.1 connection back to the pool once it has been read to
/// the end. A body dropped early takes the connection with it: hyper closes it, since the rest
/// of the reply would otherwise be read as the next one.
pub struct PooledBody {
    inner: Incoming,
    release: Option<Release>,
    /// Where a broken reply body is counted: the one place that sees it, for pass-through
    /// and translated replies alike.
    metrics: Arc<Metrics>,
}

struct Release {
    pool: Weak<PoolInner>,
    sender: http1::SendRequest<ProxyBody>,
    /// Set once the request body has been handed to the connection in full. An upstream may
    /// answer before it has read the body (a refusal, say); its connection is still busy
    /// with the client's upload then, and must not be handed to the next request. `None`
    /// for a request without a body, which is sent with its head.
    request_body: Option<Arc<RequestBodyOutcome>>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("returns_connection", &self.release.is_some())
            .finish()
    }
}

impl PooledBody {
    fn new(inner: Incoming, release: Option<Release>, metrics: &Arc<Metrics>) -> Self {
        let mut body = Self {
            inner,
            release,
            metrics: Arc::clone(metrics),
        };
        if body.inner.is_end_stream() {
            body.release_connection();
        }
        body
    }

    fn release_connection(&mut self) {
        if let Some(Release {
            pool,
            sender,
            request_body,
        }) = self.release.take()
            && request_body.is_none_or(|body| body.sent_in_full())
            && let Some(pool) = pool.upgrade()
        {
            pool.release(sender);
        }
        // Otherwise the sender is dropped: hyper closes the connection once the upload ends.
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.release_connection(),
            Some(Ok(_)) if self.inner.is_end_stream() => self.release_connection(),
            // A broken reply leaves the connection unusable.
            Some(Err(error)) => {
                self.metrics.upstream_error(classify(error));
                self.release = None;
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `request` with a body that records how its sending went; a request without a body (most
/// GETs) is left as it is, at no cost.
fn track_request_body(
    request: Request<ProxyBody>,
) -> (Request<ProxyBody>, Option<Arc<RequestBodyOutcome>>) {
    if request.body().is_end_stream() {
        return (request, None);
    }
    let outcome = Arc::new(RequestBodyOutcome::default());
    let request = request.map(|inner| {
        BodyExt::boxed_unsync(TrackedBody {
            inner,
            outcome: Arc::clone(&outcome),
        })
    });
    (request, Some(outcome))
}

/// How the sending of one request body went, shared between the body (polled by the
/// connection) and the request that waits for the reply.
#[derive(Default)]
struct RequestBodyOutcome {
    /// Its last frame has been taken.
    sent: AtomicBool,
    /// It failed: the client's error for the exchange. Set at most once, rarely.
    failure: Mutex<Option<ShimError>>,
}

impl RequestBodyOutcome {
    fn sent_in_full(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    fn failure(&self) -> Option<ShimError> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The body failed with `error`: a stall (408) or a malformed body (400).
    fn record_failure(&self, error: &BoxError) {
        let failure = match error.downcast_ref::<BodyIdleTimeout>() {
            Some(stalled) => ShimError::from(stalled),
            None => ShimError::BrokenClientBody {
                detail: crate::error::error_chain(error.as_ref()),
            },
        };
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(failure);
    }
}

/// A request body that reports to its [`RequestBodyOutcome`].
struct TrackedBody {
    inner: ProxyBody,
    outcome: Arc<RequestBodyOutcome>,
}

impl TrackedBody {
    fn note_end(&self) {
        if self.inner.is_end_stream() {
            self.outcome.sent.store(true, Ordering::Release);
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            None => self.outcome.sent.store(true, Ordering::Release),
            Some(Ok(_)) => self.note_end(),
            Some(Err(error)) => self.outcome.record_failure(error),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.note_end();
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    fn negotiated_h2(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(stream) => stream.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_error_anywhere_in_the_chain_is_tls() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, alert.clone());
        assert_eq!(classify(&wrapped), UpstreamFailure::Tls);
        assert_eq!(classify(&alert), UpstreamFailure::Tls);
    }

    #[test]
    fn a_broken_connection_is_reset() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(classify(&io::Error::from(kind)), UpstreamFailure::Reset);
        }
    }
}
