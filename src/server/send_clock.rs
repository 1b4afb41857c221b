//! The clock on every write: a reply the client accepts nothing of for `limits.send_timeout`
//! is cut off. As nginx's `send_timeout`, the clock runs between two writes that made
//! progress, not over the whole reply: a slow but steady reader gets all of it.
//!
//! Two mechanisms, because the two protocols park a stalled reply in different places:
//!
//! - [`SendClock`] wraps a connection's IO (both listeners, both protocols). A write, flush or
//!   shutdown still `Pending` `send_timeout` after the first one that could not go through
//!   fails with `TimedOut`, and hyper ends the connection: an HTTP/1.1 connection is closed; an
//!   HTTP/2 connection whose socket takes nothing is ended whole, since no stream of it can
//!   make progress either. The clock is a [`CoarseSleep`], made only while a write waits (an
//!   idle or flowing connection holds none), and the sleep wakes the task when it runs out:
//!   nothing else would, since the socket stays unwritable.
//! - HTTP/2 flow control stalls a stream without blocking the socket. A client that keeps its
//!   window at 0 gets its reply's headers, and hyper then waits for window before it polls the
//!   body again, so no body wrapper is ever called. hyper gives no handle on a stream, but it
//!   runs each stream as a task through the executor it is given: [`StreamExecutor`] runs each
//!   one inside a [`WatchedStream`], which the reply's body ([`watch_reply`]) tells whether
//!   hyper holds everything it was given and has not asked for more. Once that has lasted
//!   `send_timeout`, the stream's task is dropped, and h2 resets a stream dropped before its
//!   end with `CANCEL`: the stream ends, the connection's other streams go on. A body that
//!   hyper polls and that has nothing yet (a slow upstream) is not this clock's business but
//!   `limits.body_idle_timeout`'s. hyper takes a frame from the body before it waits for
//!   window, so the clock runs from every frame handed over, the last one included, and the
//!   body hands its data over in pieces of at most [`REPLY_PIECE_BYTES`]: a reader that keeps
//!   taking a little restarts the clock piece by piece, and the body's last byte goes alone,
//!   so that the stream's task ends only once h2 has window for all of the reply.
//!
//! What a clock cuts off itself is dropped inside [`cutting_off`], so the access-log line,
//! written as the reply's body is dropped, says `outcome="send_timeout"`: an HTTP/1.1
//! connection's reply, or an HTTP/2 stream's. An HTTP/2 connection ended whole is dropped
//! there too, but its streams' tasks, and their replies, end apart from it, once they find
//! the connection gone: their lines say `outcome="aborted"`.
//!
//! [`watch_reply`] is applied inside the in-flight slot's and the access line's observers
//! (in `Proxy::handle`), so they see a reply's end only when hyper takes its last piece.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::message::body::{BoxError, ProxyBody};
use crate::server::coarse_timer::{CoarseSleep, now};

/// The error a write fails with when the client has accepted nothing for `send_timeout`; hyper
/// receives it inside an `io::Error` of kind `TimedOut`.
#[derive(Debug)]
pub struct SendTimedOut(pub Duration);

impl std::fmt::Display for SendTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the client accepted nothing for {} (limits.send_timeout)",
            humantime::format_duration(self.0)
        )
    }
}

impl std::error::Error for SendTimedOut {}

/// Whether `error`, or anything in its chain, is a [`SendTimedOut`].
pub fn is_send_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<SendTimedOut>() {
            return true;
        }
        // An `io::Error`'s `source` skips the error it wraps; `get_ref` is that error.
        let wrapped = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref);
        if wrapped.is_some_and(|inner| inner.is::<SendTimedOut>()) {
            return true;
        }
        next = error.source();
    }
    false
}

thread_local! {
    /// The HTTP/2 stream whose task this thread is polling, if any: how a reply built inside
    /// the stream's task finds its [`WatchedStream`].
    static CURRENT_STREAM: RefCell<Option<Arc<ReplyProgress>>> = const { RefCell::new(None) };
    /// True while a connection or stream cut off by the send timeout is being dropped.
    static CUTTING_OFF: Cell<bool> = const { Cell::new(false) };
}

/// Runs `drop_it` (which drops what the send timeout cut off) with [`is_cutting_off`] true.
pub fn cutting_off<T>(drop_it: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CUTTING_OFF.with(|cutting| cutting.set(self.0));
        }
    }
    let _restore = Restore(CUTTING_OFF.with(|cutting| cutting.replace(true)));
    drop_it()
}

/// Whether what is being dropped now was cut off by the send timeout.
pub fn is_cutting_off() -> bool {
    CUTTING_OFF.with(Cell::get)
}

/// A connection's IO with the clock on its writes (see the module's documentation).
pub struct SendClock<IO> {
    inner: IO,
    send_timeout: Duration,
    /// Running from the first write that could not go through until one does.
    stalled: Option<CoarseSleep>,
    timed_out: bool,
    send_timeouts: Counter,
}

impl<IO> SendClock<IO> {
    /// `inner` with writes that fail once none has gone through for `send_timeout`; each
    /// connection cut off adds one to `send_timeouts`.
    pub fn new(inner: IO, send_timeout: Duration, send_timeouts: Counter) -> Self {
        Self {
            inner,
            send_timeout,
            stalled: None,
            timed_out: false,
            send_timeouts,
        }
    }

    fn timed_out_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, SendTimedOut(self.send_timeout))
    }

    /// The outcome of one write, flush or shutdown of `inner`, under the clock: anything ready
    /// stops it, a wait starts it (or lets it run on), and a wait past the deadline fails.
    fn clocked<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        if self.timed_out {
            return Poll::Ready(Err(self.timed_out_error()));
        }
        let send_timeout = self.send_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| CoarseSleep::until(now() + send_timeout));
        if Pin::new(stalled).poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        self.timed_out = true;
        self.send_timeouts.inc();
        Poll::Ready(Err(self.timed_out_error()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendClock<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendClock<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        this.clocked(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        this.clocked(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.clocked(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.clocked(cx, polled)
    }
}

/// hyper's executor for HTTP/2 client connections: each stream's task runs inside a
/// [`WatchedStream`] on the serving thread's runtime, as `TokioExecutor` would run it.
#[derive(Clone)]
pub struct StreamExecutor {
    send_timeout: Duration,
    send_timeouts: Counter,
}

impl StreamExecutor {
    pub fn new(send_timeout: Duration, send_timeouts: Counter) -> Self {
        Self {
            send_timeout,
            send_timeouts,
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(WatchedStream {
            // Boxed so that it can be dropped before the task ends, inside `cutting_off`.
            stream: Some(Box::pin(stream)),
            progress: Arc::default(),
            send_timeout: self.send_timeout,
            send_timeouts: self.send_timeouts.clone(),
            clock: None,
        });
    }
}

/// Where a stream's reply stands, as its body last told.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// No reply yet (the request is still being served), or its body has ended.
    #[default]
    NotSending,
    /// hyper holds everything it was given, and has not asked for more since then.
    WaitingOnClient(Instant),
    /// hyper asked for more, and the upstream has not sent it yet.
    WaitingOnUpstream,
}

/// Shared by a stream's task and its reply's body; only ever used on one thread (both are
/// polled inside the same task), so the lock is never contended.
#[derive(Debug, Default)]
struct ReplyProgress(Mutex<Reply>);

impl ReplyProgress {
    fn set(&self, reply: Reply) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = reply;
    }

    fn get(&self) -> Reply {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One HTTP/2 stream's task, cut off when its reply waits on the client for `send_timeout`.
struct WatchedStream<F> {
    stream: Option<Pin<Box<F>>>,
    progress: Arc<ReplyProgress>,
    send_timeout: Duration,
    send_timeouts: Counter,
    /// Running while the reply waits on the client; its deadline follows the reply's.
    clock: Option<CoarseSleep>,
}

impl<F: Future<Output = ()>> Future for WatchedStream<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(());
        };
        if within_stream(&this.progress, || stream.as_mut().poll(cx)).is_ready() {
            return Poll::Ready(());
        }
        let Reply::WaitingOnClient(since) = this.progress.get() else {
            this.clock = None;
            return Poll::Pending;
        };
        let deadline = since + this.send_timeout;
        let clock = match &mut this.clock {
            Some(clock) if clock.deadline() == deadline => clock,
            clock => clock.insert(CoarseSleep::until(deadline)),
        };
        if Pin::new(clock).poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.clock = None;
        this.send_timeouts.inc();
        tracing::debug!(
            send_timeout = %humantime::format_duration(this.send_timeout),
            "HTTP/2 stream reset: the client accepted nothing of its reply for limits.send_timeout"
        );
        // Dropped before its end, the stream is reset by h2 (RST_STREAM with CANCEL), and the
        // reply's body with it: its in-flight slot and its upstream connection are freed.
        let stream = this.stream.take();
        cutting_off(move || drop(stream));
        Poll::Ready(())
    }
}

/// Runs `poll` with `progress` as this thread's current stream.
fn within_stream<T>(progress: &Arc<ReplyProgress>, poll: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<ReplyProgress>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT_STREAM.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT_STREAM.with(|current| current.replace(Some(Arc::clone(progress))));
    let _restore = Restore(previous);
    poll()
}

/// `body`, watched by its HTTP/2 stream's send clock when it is the reply of one; on HTTP/1.1
/// (no stream task) it is returned as it is, and the connection's [`SendClock`] keeps time.
pub fn watch_reply(body: ProxyBody) -> ProxyBody {
    let Some(progress) = CURRENT_STREAM.with(|current| current.borrow().clone()) else {
        return body;
    };
    // Handed to hyper: from now on, until hyper polls it, the reply waits on the client.
    progress.set(Reply::WaitingOnClient(now()));
    WatchedReply {
        body,
        progress,
        rest: Bytes::new(),
    }
    .boxed_unsync()
}

/// The most of a reply's data handed to hyper at once on HTTP/2: larger frames are split.
/// hyper takes the next piece only once h2 has window for more than it buffers, so each piece
/// taken restarts the stream's clock (a slow but steady reader, or many streams sharing the
/// connection's window, shows progress piece by piece), and no more than one piece waits in
/// h2's buffer at a time. 16 KiB is HTTP/2's default largest frame.
pub const REPLY_PIECE_BYTES: usize = 16 * 1024;

/// A reply's body that tells its stream's task whether hyper is waiting for it, and hands its
/// data on in pieces of at most [`REPLY_PIECE_BYTES`].
struct WatchedReply {
    body: ProxyBody,
    progress: Arc<ReplyProgress>,
    /// What is left of the body's last data frame, not yet handed to hyper.
    rest: Bytes,
}

impl WatchedReply {
    /// The next piece of `rest`. The body's very last byte goes alone: hyper sends a piece
    /// only once h2 has window beyond what it buffers, so when it takes that byte everything
    /// before it has window, and a stream whose task ends has nothing left parked in h2.
    fn next_piece(&mut self) -> Bytes {
        let ends_here = self.body.is_end_stream();
        let mut take = self.rest.len().min(REPLY_PIECE_BYTES);
        if ends_here && take == self.rest.len() && take > 1 {
            take -= 1;
        }
        self.rest.split_to(take)
    }
}

impl Body for WatchedReply {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.rest = data;
                        Poll::Ready(Some(Ok(Frame::data(this.next_piece()))))
                    }
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                other => other,
            }
        } else {
            Poll::Ready(Some(Ok(Frame::data(this.next_piece()))))
        };
        let reply = match &polled {
            Poll::Pending => Reply::WaitingOnUpstream,
            // The last frame too: hyper may hold it while it waits for window.
            Poll::Ready(Some(Ok(_))) => Reply::WaitingOnClient(now()),
            Poll::Ready(_) => Reply::NotSending,
        };
        this.progress.set(reply);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

impl Drop for WatchedReply {
    fn drop(&mut self) {
        self.progress.set(Reply::NotSending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn clocked(
        io: tokio::io::DuplexStream,
        send_timeout: Duration,
    ) -> (SendClock<tokio::io::DuplexStream>, Counter) {
        let counter = Counter::default();
        (SendClock::new(io, send_timeout, counter.clone()), counter)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_send_timeout() {
        let (_peer, ours) = tokio::io::duplex(16);
        let (mut clocked, counter) = clocked(ours, Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        let error = clocked.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(is_send_timeout(&error), "{error}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2)
                && waited <= Duration::from_secs(2) + crate::server::coarse_timer::TICK,
            "{waited:?}"
        );
        assert_eq!(counter.get(), 1);
        // Once timed out, always: a later wait fails at once, and is not counted again.
        let again = clocked.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::TimedOut);
        assert_eq!(counter.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_peer_is_never_cut_off() {
        let (mut peer, ours) = tokio::io::duplex(16);
        let (mut clocked, counter) = clocked(ours, Duration::from_secs(2));
        let reader = tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut chunk = [0u8; 16];
            // Each read comes well within the send timeout; all of them take far longer.
            loop {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                match peer.read(&mut chunk).await.unwrap() {
                    0 => return taken,
                    read => taken.extend_from_slice(&chunk[..read]),
                }
            }
        });
        let sent: Vec<u8> = (0..160u8).collect();
        clocked.write_all(&sent).await.unwrap();
        clocked.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), sent);
        assert_eq!(counter.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_holds_no_clock() {
        let (mut peer, ours) = tokio::io::duplex(16);
        let (mut clocked, counter) = clocked(ours, Duration::from_secs(1));
        clocked.write_all(b"hello").await.unwrap();
        assert!(clocked.stalled.is_none());
        // Idle for much longer than the send timeout: nothing was waiting, nothing fails.
        tokio::time::sleep(Duration::from_secs(10)).await;
        clocked.write_all(b" again").await.unwrap();
        let mut got = [0u8; 11];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello again");
        assert_eq!(counter.get(), 0);
    }

    #[test]
    fn the_clock_adds_a_few_words_to_a_connection_and_allocates_nothing_until_a_write_waits() {
        // An idle keep-alive connection costs about 12 KB (docs/design/memory.md); the clock is its
        // settings, a counter handle and room for a sleep that takes a registry slot only
        // while a write waits (72 bytes on x86_64).
        let added = std::mem::size_of::<SendClock<()>>();
        assert!(added <= 80, "{added} bytes");
        let clock = SendClock::new((), Duration::from_secs(1), Counter::default());
        assert!(clock.stalled.is_none());
    }

    #[test]
    fn a_send_timeout_is_found_inside_hyper_like_chains() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error writing a body")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(io::Error::new(
            io::ErrorKind::TimedOut,
            SendTimedOut(Duration::from_secs(1)),
        ));
        assert!(is_send_timeout(&timed_out));
        let other = Outer(io::Error::new(io::ErrorKind::TimedOut, "head timeout"));
        assert!(!is_send_timeout(&other));
    }

    #[tokio::test]
    async fn an_h2_reply_goes_in_pieces_with_the_clock_on_for_each_and_its_last_byte_alone() {
        let progress = Arc::new(ReplyProgress::default());
        let data = Bytes::from(vec![7u8; 2 * REPLY_PIECE_BYTES + 100]);
        let whole: ProxyBody = http_body_util::Full::new(data.clone())
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut reply = within_stream(&progress, || watch_reply(whole));
        let mut pieces = Vec::new();
        let mut ends = Vec::new();
        while let Some(frame) = reply.frame().await {
            pieces.push(frame.unwrap().into_data().unwrap());
            ends.push(reply.is_end_stream());
            // Every piece, the last one too: hyper may hold it while it waits for window.
            assert!(matches!(progress.get(), Reply::WaitingOnClient(_)));
        }
        let sizes: Vec<_> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [REPLY_PIECE_BYTES, REPLY_PIECE_BYTES, 99, 1]);
        assert_eq!(ends, [false, false, false, true]);
        assert_eq!(pieces.concat(), data);
        assert_eq!(progress.get(), Reply::NotSending);
    }

    #[test]
    fn cutting_off_is_seen_only_inside() {
        assert!(!is_cutting_off());
        assert!(cutting_off(is_cutting_off));
        assert!(!is_cutting_off());
    }
}
