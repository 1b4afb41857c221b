//! A byte-level guard against request smuggling on client connections.
//!
//! hyper resolves a request carrying both `Transfer-Encoding` and `Content-Length` the way RFC
//! 9112 §6.1 allows (it drops `Content-Length` and reads chunked), and it folds repeated equal
//! `Content-Length`s into one. Both are safe for hyper, but the request still reaches the
//! handler looking ordinary, so it would be forwarded. This guard sits between the socket and
//! hyper, follows HTTP/1 message framing (heads, `Content-Length` bodies, chunked bodies), and
//! renames the conflicting `Content-Length` field of such a head to [`AMBIGUOUS_FRAMING_MARKER`]
//! (same length, so nothing shifts). The handler's framing check then refuses the request with
//! 400 and `Connection: close`, and nothing is forwarded.
//!
//! Heads are held back until complete (at most `max_head_bytes`); body bytes pass straight on.
//! Anything the guard cannot follow (HTTP/2, a malformed or oversized head, a bad chunk size)
//! switches it off for the rest of the connection and leaves the verdict to hyper.
//!
//! Memory: a held head is released once it has been handed over, so an idle keep-alive
//! connection keeps no copy; and a read hands hyper everything ready, sniffed bytes included,
//! because hyper's read buffer grows past its initial 8 KB when a head takes two reads.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

mod follower;

pub use follower::FramingFollower;
use follower::State;

/// The field name a conflicting `Content-Length` is renamed to. Same length as
/// `content-length`, so the head keeps its size.
pub const AMBIGUOUS_FRAMING_MARKER: &str = "x-ambiguous-cl";
/// The guard around a client connection.
pub struct FramingGuard<IO> {
    inner: IO,
    follower: FramingFollower,
    ready: Vec<u8>,
    ready_from: usize,
    head_timeout: Duration,
    /// When the first head must be complete: set when the connection got its slot, so the
    /// TLS handshake and the protocol sniff count against it.
    first_head_deadline: Instant,
    /// Running while a head is incomplete (or before the first byte); created lazily.
    head_deadline: Option<Pin<Box<Sleep>>>,
    head_timer_armed: bool,
    received_any: bool,
    /// A read error met after bytes were already handed over in the same call; reported by
    /// the next call.
    deferred_error: Option<io::Error>,
    /// The end of the stream, met after bytes were already handed over in the same call;
    /// reported by the next call, whatever the inner stream would say if read again.
    deferred_end: bool,
}

impl<IO> FramingGuard<IO> {
    /// Guards `inner`, whose first bytes (`already_read`, read to sniff the protocol) come
    /// first. The first head must be complete by `first_head_deadline`, later ones within
    /// `head_timeout` of their first byte.
    pub fn new(
        inner: IO,
        max_head_bytes: usize,
        head_timeout: Duration,
        first_head_deadline: Instant,
        already_read: &[u8],
    ) -> Self {
        let mut guard = Self {
            inner,
            follower: FramingFollower::new(max_head_bytes),
            ready: Vec::new(),
            ready_from: 0,
            head_timeout,
            first_head_deadline,
            head_deadline: None,
            head_timer_armed: true,
            received_any: false,
            deferred_error: None,
            deferred_end: false,
        };
        if !already_read.is_empty() {
            guard.received_any = true;
            guard.follower.feed(already_read, &mut guard.ready);
            // Armed already, so a head still in progress keeps the accept-time deadline.
            guard.update_head_timer();
        }
        guard
    }

    /// Between messages, with nothing buffered: what an idle keep-alive connection is.
    fn between_messages(&self) -> bool {
        self.follower.state == State::Head && self.follower.held.is_empty()
    }

    /// Arms the timer when a head is in progress (or nothing has arrived yet), disarms it once
    /// the head is complete. Time spent on bodies and replies is never counted.
    fn update_head_timer(&mut self) {
        let waiting_for_head = !self.received_any
            || (self.follower.state == State::Head && !self.follower.held.is_empty());
        if waiting_for_head && !self.head_timer_armed {
            let deadline = tokio::time::Instant::now() + self.head_timeout;
            match self.head_deadline.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.head_deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.head_timer_armed = waiting_for_head;
    }

    /// Whether the head timer has run out (registers for a wake-up otherwise).
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.head_timer_armed {
            return false;
        }
        let first_deadline = self.first_head_deadline;
        let sleep = self
            .head_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(first_deadline)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.deferred_error.take() {
            return Poll::Ready(Err(error));
        }
        if this.deferred_end {
            return Poll::Ready(Ok(()));
        }
        // Whether this call has handed bytes over already: it then returns them rather than
        // wait for more. Reading on while there is room gives hyper a whole head in one read
        // even when its first bytes were sniffed apart from the rest, and hyper keeps its
        // read buffer at the initial 8 KB only when a head arrives in one read.
        let mut handed_over = false;
        loop {
            if this.ready_from < this.ready.len() {
                let take = buf.remaining().min(this.ready.len() - this.ready_from);
                buf.put_slice(&this.ready[this.ready_from..this.ready_from + take]);
                this.ready_from += take;
                if this.ready_from == this.ready.len() {
                    this.ready_from = 0;
                    if this.between_messages() {
                        // Released, not kept: an idle keep-alive connection holds no copy.
                        this.ready = Vec::new();
                    } else {
                        this.ready.clear();
                    }
                }
                handed_over = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.follower.is_off() {
                if handed_over {
                    return Poll::Ready(Ok(()));
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Read straight into hyper's buffer, then take the new bytes back through the
            // follower: no scratch buffer to clear on every read.
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    // End of stream: whatever is held goes to hyper, which reports it.
                    if this.follower.held.is_empty() {
                        this.deferred_end = handed_over;
                        return Poll::Ready(Ok(()));
                    }
                    this.ready.append(&mut this.follower.held);
                    this.follower.state = State::Off;
                }
                Poll::Ready(Ok(())) => {
                    this.received_any = true;
                    this.follower.feed(&buf.filled()[before..], &mut this.ready);
                    buf.set_filled(before);
                    this.update_head_timer();
                    if this.ready.is_empty() && handed_over {
                        // The new bytes are a head still held back: what was handed over
                        // goes now, the rest with a later read.
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(error)) if handed_over => {
                    this.deferred_error = Some(error);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending if handed_over => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    if this.head_timed_out(cx) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within the header read timeout",
                        )));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::follower::MAX_FIELDS;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Feeds `input` in pieces of `step` bytes; returns what hyper would see.
    fn through(input: &[u8], step: usize) -> Vec<u8> {
        let mut follower = FramingFollower::new(16 * 1024);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            follower.feed(piece, &mut out);
        }
        out.extend_from_slice(&follower.held);
        out
    }

    #[test]
    fn ordinary_traffic_passes_unchanged_in_any_split() {
        let traffic: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 2, 3, 7, 64, traffic.len()] {
            assert_eq!(through(traffic, step), traffic, "step {step}");
        }
    }

    #[test]
    fn te_with_cl_is_marked_whichever_comes_first() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
        ] {
            let seen = String::from_utf8(through(head, 5)).unwrap();
            assert!(seen.contains("x-ambiguous-cl: 4"), "{seen}");
            assert!(!seen.to_ascii_lowercase().contains("content-length"), "{seen}");
            assert_eq!(seen.len(), head.len());
        }
    }

    #[test]
    fn a_repeated_content_length_is_marked_after_the_first() {
        let seen = String::from_utf8(through(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            4,
        ))
        .unwrap();
        assert!(
            seen.contains("Content-Length: 5\r\nx-ambiguous-cl: 5"),
            "{seen}"
        );
    }

    #[test]
    fn a_smuggled_second_head_after_a_body_is_inspected_too() {
        let traffic = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nokPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let seen = String::from_utf8(through(traffic, 9)).unwrap();
        assert!(seen.contains("okPOST /b"), "{seen}");
        assert!(seen.contains("x-ambiguous-cl: 1"), "{seen}");
    }

    #[test]
    fn http2_and_garbage_switch_the_guard_off() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00";
        assert_eq!(through(preface, 3), preface);
        let garbage = b"\x16\x03\x01\x02\x00binary";
        assert_eq!(through(garbage, 2), garbage);
    }

    #[test]
    fn no_byte_is_lost_or_doubled_when_a_chunk_line_is_cut_short() {
        // Found by the framing_follower fuzz target: a chunk-size line still open at the end.
        let input = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\xff\xffx\r4;";
        assert_eq!(through(input, 3), input);
    }

    /// A guard whose first bytes were sniffed apart from the rest of the head.
    fn guard_after_sniffing(
        sniffed: &[u8],
    ) -> (
        FramingGuard<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let (client, server) = tokio::io::duplex(4096);
        let timeout = Duration::from_secs(10);
        let guard = FramingGuard::new(
            server,
            16 * 1024,
            timeout,
            Instant::now() + timeout,
            sniffed,
        );
        (guard, client)
    }

    #[tokio::test]
    async fn sniffed_bytes_reach_hyper_in_one_read_with_the_rest_of_the_head() {
        let (mut guard, mut client) = guard_after_sniffing(b"GE");
        client
            .write_all(b"T / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut read = [0u8; 8192];
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // Between messages the guard keeps no copy of what it handed over.
        assert_eq!(guard.ready.capacity(), 0);
        assert_eq!(guard.follower.held.capacity(), 0);
    }

    #[tokio::test]
    async fn a_sniffed_head_still_incomplete_waits_for_the_rest() {
        let (mut guard, mut client) = guard_after_sniffing(b"GET / HT");
        let mut read = [0u8; 8192];
        let pending = tokio::time::timeout(Duration::from_millis(50), guard.read(&mut read)).await;
        assert!(pending.is_err(), "half a head was handed over");
        client.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_comes_after_the_sniffed_bytes() {
        // The HTTP/2 preface switches the follower off, so the sniffed bytes are ready at once.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let (mut guard, client) = guard_after_sniffing(preface);
        drop(client);
        let mut read = [0u8; 64];
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], preface);
        assert_eq!(
            guard.read(&mut read).await.unwrap(),
            0,
            "then the end of the stream"
        );
    }

    /// An inner stream that answers each read from a script.
    struct Scripted(std::collections::VecDeque<Poll<io::Result<&'static [u8]>>>);

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front().unwrap_or(Poll::Ready(Ok(b""))) {
                Poll::Ready(Ok(bytes)) => {
                    buf.put_slice(bytes);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    fn scripted_guard(
        sniffed: &[u8],
        script: Vec<Poll<io::Result<&'static [u8]>>>,
    ) -> FramingGuard<Scripted> {
        let timeout = Duration::from_secs(10);
        FramingGuard::new(
            Scripted(script.into()),
            16 * 1024,
            timeout,
            Instant::now() + timeout,
            sniffed,
        )
    }

    #[tokio::test]
    async fn an_error_after_bytes_were_handed_over_comes_with_the_next_read() {
        let error = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let mut guard = scripted_guard(
            b"GET / HTTP/1.1\r\n\r\n",
            vec![Poll::Ready(Err(error)), Poll::Ready(Ok(b"never read"))],
        );
        let mut read = [0u8; 64];
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n\r\n");
        let next = guard.read(&mut read).await.unwrap_err();
        assert_eq!(next.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn an_end_after_bytes_were_handed_over_is_remembered() {
        // The inner stream would have more to say if read again; the end it reported stands.
        let mut guard = scripted_guard(
            b"GET / HTTP/1.1\r\n\r\n",
            vec![
                Poll::Ready(Ok(b"")),
                Poll::Ready(Ok(b"GET /late HTTP/1.1\r\n\r\n")),
            ],
        );
        let mut read = [0u8; 64];
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(guard.read(&mut read).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sniffed_bytes_and_a_pending_stream_hand_over_what_is_ready() {
        let mut guard = scripted_guard(
            b"GET / HTTP/1.1\r\n\r\nGET /b",
            vec![Poll::Pending, Poll::Ready(Ok(b" HTTP/1.1\r\n\r\n"))],
        );
        let mut read = [0u8; 64];
        // The first head is handed over at once; the second is held until complete.
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET / HTTP/1.1\r\n\r\n");
        let n = guard.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"GET /b HTTP/1.1\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_head_sniffed_at_accept_is_cut_off_at_the_accept_time_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let accepted = Instant::now();
        let timeout = Duration::from_secs(10);
        // Most of the allowance went on the sniff already.
        tokio::time::advance(Duration::from_secs(8)).await;
        let mut guard =
            FramingGuard::new(server, 16 * 1024, timeout, accepted + timeout, b"GET / HT");
        let mut read = [0u8; 64];
        let error = guard.read(&mut read).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let waited = Instant::now() - accepted;
        assert!(
            waited >= timeout && waited < timeout + Duration::from_secs(1),
            "cut off after {waited:?}, not at the accept-time deadline"
        );
    }

    #[test]
    fn te_with_cl_is_marked_behind_more_fields_than_the_stack_holds() {
        // hyper accepts such a head when limits.max_headers is raised past 128.
        let mut head = String::from("POST / HTTP/1.1\r\nHost: x\r\n");
        for n in 0..(MAX_FIELDS + 20) {
            head.push_str(&format!("x-filler-{n}: 1\r\n"));
        }
        head.push_str("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let seen = String::from_utf8(through(head.as_bytes(), 100)).unwrap();
        assert!(
            seen.contains("x-ambiguous-cl: 4"),
            "the conflict was waved through"
        );
        assert_eq!(seen.len(), head.len());
    }

    #[test]
    fn an_oversized_head_is_released_to_hyper() {
        let mut follower = FramingFollower::new(64);
        let mut out = Vec::new();
        let head = format!("GET / HTTP/1.1\r\nx-big: {}\r\n", "a".repeat(100));
        follower.feed(head.as_bytes(), &mut out);
        assert_eq!(out, head.as_bytes());
        assert!(follower.is_off());
    }
}
