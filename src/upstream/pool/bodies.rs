//! The bodies that keep the pool's accounts: a reply body that gives its HTTP/1.1 connection
//! back once read to the end, and a request body whose outcome (sent in full, cut, refused)
//! the exchange learns.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;

use crate::error::ShimError;
use crate::message::body::{BodyIdleTimeout, BoxError, ProxyBody};
use crate::observe::metrics::Metrics;
use crate::upstream::connect::classify;
use crate::upstream::pool::PoolInner;

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

pub(super) struct Release {
    pub(super) pool: Weak<PoolInner>,
    pub(super) sender: http1::SendRequest<ProxyBody>,
    /// Set once the request body has been handed to the connection in full. An upstream may
    /// answer before it has read the body (a refusal, say); its connection is still busy
    /// with the client's upload then, and must not be handed to the next request. `None`
    /// for a request without a body, which is sent with its head.
    pub(super) request_body: Option<Arc<RequestBodyOutcome>>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("returns_connection", &self.release.is_some())
            .finish()
    }
}

impl PooledBody {
    pub(super) fn new(inner: Incoming, release: Option<Release>, metrics: &Arc<Metrics>) -> Self {
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
pub(super) fn track_request_body(
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
pub(super) struct RequestBodyOutcome {
    /// Its last frame has been taken.
    sent: AtomicBool,
    /// It failed: the client's error for the exchange. Set at most once, rarely.
    failure: Mutex<Option<ShimError>>,
}

impl RequestBodyOutcome {
    fn sent_in_full(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    pub(super) fn failure(&self) -> Option<ShimError> {
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
