//! The one body type that flows through the shim, in both directions.
//!
//! Pass-through bodies stream (`hyper::body::Incoming`); bodies the shim builds are `Full`.
//! Boxing both into one type keeps every handler's signature the same. A streamed body that
//! goes silent for longer than its idle timeout ends with an error instead of hanging: the
//! peer on the other side then sees an aborted message, never a silently truncated one.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Errors a streamed body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body of any origin.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full; its exact length becomes the `Content-Length`.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A streamed body passed on as it arrives, ended with an error after `idle_timeout` without
/// a frame.
pub fn streamed_body<B>(incoming: B, idle_timeout: Duration) -> ProxyBody
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    IdleTimeout::new(incoming, idle_timeout).boxed_unsync()
}

/// `incoming` as it arrives, ended with a [`BodyIdleTimeout`] error after `idle_timeout`
/// without a frame; unboxed, for a body the shim reads itself.
pub fn idle_limited<B>(
    incoming: B,
    idle_timeout: Duration,
) -> impl Body<Data = Bytes, Error = BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    IdleTimeout::new(incoming, idle_timeout)
}

/// A body whose first bytes were already read: `read` first, then the rest of `rest` as it
/// arrives. Used to pass on a reply that turned out too large to translate, with nothing lost.
pub fn prefixed_body<B>(read: Bytes, rest: B, idle_timeout: Duration) -> ProxyBody
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    streamed_body(
        Prefixed {
            read: (!read.is_empty()).then_some(read),
            rest,
        },
        idle_timeout,
    )
}

struct Prefixed<B> {
    read: Option<Bytes>,
    rest: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(read) = self.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.rest.is_end_stream()
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
pub struct BodyIdleTimeout(pub Duration);

impl std::fmt::Display for BodyIdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no body data for {}", humantime::format_duration(self.0))
    }
}

impl std::error::Error for BodyIdleTimeout {}

/// Wraps a body; every frame re-arms the timer. The timer is only created the first time the
/// body has to wait: most bodies arrive whole and never need one.
struct IdleTimeout<B> {
    inner: B,
    idle_timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, idle_timeout: Duration) -> Self {
        Self {
            inner,
            idle_timeout,
            deadline: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(deadline) = this.deadline.as_mut() {
                    deadline.as_mut().reset(Instant::now() + this.idle_timeout);
                }
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle_timeout = this.idle_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle_timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyIdleTimeout(idle_timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What watches a body go by unchanged: each data frame, then its end or its failure. `ended`
/// may be called more than once (on the last frame, and again when the body reports no more).
pub trait FrameObserver {
    fn data(&mut self, data: &Bytes);
    fn ended(&mut self);
    fn failed(&mut self);
}

/// `inner`, passed on frame by frame, with `observer` told what passes.
pub struct Observed<B, O> {
    inner: B,
    observer: O,
}

impl<B, O> Observed<B, O> {
    pub fn new(inner: B, observer: O) -> Self {
        Self { inner, observer }
    }
}

impl<B, O> Body for Observed<B, O>
where
    B: Body<Data = Bytes> + Unpin,
    O: FrameObserver + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.observer.data(data);
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.observer.ended();
                }
            }
            Poll::Ready(None) => this.observer.ended(),
            Poll::Ready(Some(Err(_))) => this.observer.failed(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one frame, then nothing, forever.
    struct StallsAfterOneFrame(bool);

    impl Body for StallsAfterOneFrame {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_errors_after_the_idle_timeout() {
        let mut body = IdleTimeout::new(StallsAfterOneFrame(false), Duration::from_secs(5));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"partial"));
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<BodyIdleTimeout>());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_body_passes_unchanged() {
        let body = IdleTimeout::new(
            Full::new(Bytes::from_static(b"whole")),
            Duration::from_secs(1),
        );
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            Bytes::from_static(b"whole")
        );
    }
}
