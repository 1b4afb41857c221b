//! Clients that ask and never read, or read slowly: `limits.send_timeout` cuts off a reply the
//! client accepts nothing of for that long (between two writes that made progress, not over
//! the whole reply), and frees what it held: the connection's slot, the in-flight slot, the
//! upstream connection.

use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far more than the kernel buffers between the shim and a client that does not read (the
/// client's receive buffer is kept small, see [`connect_small`]) hold.
const BIG_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// The receive buffer of the test's raw clients: small, so a client that stops reading stops
/// the shim's writes after little data.
const CLIENT_RECEIVE_BUFFER_BYTES: u32 = 64 * 1024;
/// Generous for a debug build on a busy machine; the shim is expected well within it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A reply body whose bytes say where they are, so a truncated or shuffled copy shows.
fn big_body() -> Bytes {
    (0..BIG_REPLY_BYTES)
        .map(|at| (at % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn big_upstream() -> FakeUpstream {
    FakeUpstream::always(Reply::raw(200, "application/octet-stream", big_body())).await
}

/// A TCP connection with a small receive buffer.
async fn connect_small(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .set_recv_buffer_size(CLIENT_RECEIVE_BUFFER_BYTES)
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// The value of the sample `name` (no labels) on `/metrics`.
async fn metric(shim: &Shim, name: &str) -> f64 {
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until `/metrics` says `name` is `wanted`, for up to [`PATIENCE`].
async fn wait_for(shim: &Shim, name: &str, wanted: f64) {
    until_ok_every(PATIENCE, Duration::from_millis(50), || async {
        let value = metric(shim, name).await;
        match value == wanted {
            true => Ok(()),
            false => Err(format!("{name} is {value}, not {wanted}")),
        }
    })
    .await
}

/// Reads until the shim closes the connection, for up to [`PATIENCE`]; how many bytes came.
/// A reset counts as closed: the shim may close with requests still unread.
async fn read_until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> usize {
    let mut total = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => total += read,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the shim kept the connection open");
    total
}

/// Access-log lines for `path`, once there are `count` of them.
fn access_lines(shim: &Shim, path: &str, count: usize) -> Vec<serde_json::Value> {
    let of_path = |lines: Vec<serde_json::Value>| -> Vec<_> {
        lines
            .into_iter()
            .filter(|line| line["url.path"] == path)
            .collect()
    };
    blocking_poll(PATIENCE, || {
        let lines = of_path(shim.events_so_far("access"));
        (lines.len() >= count).then_some(lines)
    })
    .unwrap_or_else(|| of_path(shim.events("access")))
}

#[tokio::test]
async fn an_http1_client_that_never_reads_is_cut_off_and_its_connection_slot_freed() {
    let upstream = big_upstream().await;
    let config = TempConfig::new("[limits]\nmax_connections = 1\n");
    let shim = Shim::start(
        &upstream.url(),
        &[
            "--config",
            config.path(),
            "--send-timeout",
            "1s",
            "--access-log",
        ],
    );
    // Pipelined requests, and not one byte read.
    let mut stalled = connect_small(shim.addr).await;
    stalled
        .write_all(&b"GET /big HTTP/1.1\r\nhost: shim\r\n\r\n".repeat(3))
        .await
        .unwrap();
    // Parked: the reply is being sent, so the request is still in flight.
    wait_for(&shim, "explo_shim_requests_in_flight", 1.0).await;
    // The only connection slot is the stalled client's until the shim cuts it off; then the
    // next client is served.
    let next = send("GET", &shim.url("/big"), &[], "").await;
    assert_eq!(next.status, 200);
    assert_eq!(
        next.body,
        big_body(),
        "the next client gets the whole reply"
    );
    let received = read_until_closed(&mut stalled).await;
    assert!(
        received < BIG_REPLY_BYTES,
        "{received} bytes: the first reply was sent in full"
    );
    wait_for(&shim, "explo_shim_send_timeouts_total", 1.0).await;
    wait_for(&shim, "explo_shim_requests_in_flight", 0.0).await;
    wait_for(&shim, "explo_shim_connections_open", 0.0).await;
    let lines = access_lines(&shim, "/big", 2);
    let outcomes: Vec<_> = lines.iter().map(|line| line["outcome"].clone()).collect();
    // The stalled client's first request, cut off; its pipelined ones were never started.
    assert_eq!(outcomes, ["send_timeout", "complete"], "{lines:?}");
    assert_eq!(lines[0]["http.response.status_code"], 200);
    assert!(lines[0]["http.response.body.size"].as_u64().unwrap() < BIG_REPLY_BYTES as u64);
    // Both are timed, the cut-off one under the status it was sent, at the moment it was cut
    // off: it alone lasted the send timeout.
    let series = r#"{endpoint="pass_through",status_class="2xx"}"#;
    wait_for(
        &shim,
        &format!("explo_shim_request_duration_seconds_count{series}"),
        2.0,
    )
    .await;
    let sum = metric(
        &shim,
        &format!("explo_shim_request_duration_seconds_sum{series}"),
    )
    .await;
    assert!(sum >= 1.0, "{sum}");
}

#[tokio::test]
async fn a_slow_but_steady_reader_gets_the_whole_reply() {
    let upstream = big_upstream().await;
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "2s", "--access-log"]);
    let mut reader = connect_small(shim.addr).await;
    reader
        .write_all(b"GET /big HTTP/1.1\r\nhost: shim\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // A megabyte at a time, then a pause well under the send timeout: each pause leaves the
    // shim's writes waiting, and all of them together last longer than the send timeout.
    loop {
        let before = received.len();
        let mut ended = false;
        while received.len() - before < 1024 * 1024 {
            let read = reader.read(&mut chunk).await.unwrap();
            if read == 0 {
                ended = true;
                break;
            }
            received.extend_from_slice(&chunk[..read]);
        }
        if ended {
            break;
        }
        // A slow reader is the stimulus: a megabyte, then a rest.
        pace(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    let head_end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap()
        + 4;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        &received[head_end..],
        &big_body()[..],
        "the reply came whole"
    );
    assert!(
        took > Duration::from_secs(2),
        "read in {took:?}: not slower than the send timeout, so this proves nothing"
    );
    assert_eq!(metric(&shim, "explo_shim_send_timeouts_total").await, 0.0);
    let lines = access_lines(&shim, "/big", 1);
    assert_eq!(lines[0]["outcome"], "complete", "{lines:?}");
}

#[tokio::test]
async fn an_h2c_client_with_a_zero_window_has_its_streams_reset() {
    const STREAMS: usize = 50;
    let upstream = big_upstream().await;
    // Long enough that the replies are surely still parked when the in-flight gauge is read
    // below, on a busy machine too.
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "3s", "--access-log"]);
    let client = zero_window_client();
    // One request first, so that the others share its connection rather than race to open
    // their own.
    let first = client
        .request(
            http::Request::head(shim.url("/big"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let requests: Vec<_> = (0..STREAMS)
        .map(|_| tokio::spawn(client.get(shim.url("/big").parse().unwrap())))
        .collect();
    let mut bodies = Vec::new();
    for request in requests {
        let reply = tokio::time::timeout(PATIENCE, request)
            .await
            .expect("every reply's head comes")
            .unwrap()
            .unwrap();
        assert_eq!(reply.version(), http::Version::HTTP_2);
        assert_eq!(reply.status(), 200);
        bodies.push(reply.into_body());
    }
    // Parked in the shim, waiting for window: still in flight (all of them, unless the first
    // were already cut off).
    let in_flight = metric(&shim, "explo_shim_requests_in_flight").await;
    assert!(in_flight > 0.0, "parked replies are not counted in flight");
    for mut body in bodies {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("the stream is reset");
        let error = match frame {
            Some(Err(error)) => error,
            other => panic!("not a reset: {other:?}"),
        };
        let chain = format!("{error:?}");
        assert!(chain.contains("CANCEL"), "{chain}");
    }
    wait_for(&shim, "explo_shim_send_timeouts_total", STREAMS as f64).await;
    wait_for(&shim, "explo_shim_requests_in_flight", 0.0).await;
    let lines: Vec<_> = access_lines(&shim, "/big", STREAMS + 1)
        .into_iter()
        .filter(|line| line["http.request.method"] == "GET")
        .collect();
    assert_eq!(lines.len(), STREAMS);
    for line in &lines {
        assert_eq!(line["outcome"], "send_timeout", "{line}");
        // hyper may have taken a first chunk before it knew the window.
        assert!(
            line["http.response.body.size"].as_u64().unwrap() < BIG_REPLY_BYTES as u64,
            "{line}"
        );
    }
    // A stream was reset, not the connection: the same connection serves a reply that needs
    // no window.
    let head = client
        .request(
            http::Request::head(shim.url("/big"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        metric(&shim, "explo_shim_connections_open").await,
        1.0,
        "one connection served every stream"
    );
}

/// An h2c client whose windows are 0: it takes the replies' heads and no body byte.
fn zero_window_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(0)
        .build_http()
}

#[tokio::test]
async fn an_h2c_client_with_a_zero_window_has_its_small_replies_reset_too() {
    // Replies of one frame: a small pass-through reply, and the shim's own error envelope.
    let upstream =
        FakeUpstream::always(Reply::raw(200, "text/plain", "a small reply, in one frame")).await;
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "1s", "--access-log"]);
    let client = zero_window_client();
    for (path, status) in [("/small", 200), ("/x%zz", 400)] {
        let started = Instant::now();
        let reply = tokio::time::timeout(PATIENCE, client.get(shim.url(path).parse().unwrap()))
            .await
            .expect("the reply's head comes")
            .unwrap();
        assert_eq!(reply.version(), http::Version::HTTP_2);
        assert_eq!(reply.status(), status, "{path}");
        // hyper has the whole reply from the body and waits for window, with the clock on.
        let frame = tokio::time::timeout(Duration::from_secs(10), reply.into_body().frame())
            .await
            .unwrap_or_else(|_| panic!("{path}: the stream was not reset"));
        let error = match frame {
            Some(Err(error)) => error,
            other => panic!("{path}: not a reset: {other:?}"),
        };
        assert!(format!("{error:?}").contains("CANCEL"), "{path}: {error:?}");
        assert!(started.elapsed() >= Duration::from_secs(1), "{path}");
    }
    wait_for(&shim, "explo_shim_send_timeouts_total", 2.0).await;
    wait_for(&shim, "explo_shim_requests_in_flight", 0.0).await;
    for path in ["/small", "/x%zz"] {
        let lines = access_lines(&shim, path, 1);
        assert_eq!(lines.len(), 1, "{path}: {lines:?}");
        assert_eq!(lines[0]["outcome"], "send_timeout", "{path}: {lines:?}");
    }
}

#[tokio::test]
async fn a_slow_but_steady_h2c_reader_gets_the_whole_reply() {
    const STEADY_REPLY_BYTES: usize = 1024 * 1024;
    let body: Bytes = big_body().slice(..STEADY_REPLY_BYTES);
    let upstream =
        FakeUpstream::always(Reply::raw(200, "application/octet-stream", body.clone())).await;
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "1s", "--access-log"]);
    // A small stream window, given back as the reply is read (hyper's client releases what
    // the body hands on), a frame at a time with a pause well under the send timeout: about
    // 16 KiB every 50 ms, so the reply takes several send timeouts, and any large part of it
    // would take longer than one to drain.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(16 * 1024)
        .http2_adaptive_window(false)
        .build_http();
    let started = Instant::now();
    let reply = client
        .get(shim.url("/steady").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(reply.version(), http::Version::HTTP_2);
    assert_eq!(reply.status(), 200);
    let mut reply = reply.into_body();
    let mut received = Vec::new();
    while let Some(frame) = reply.frame().await {
        let frame = frame.unwrap_or_else(|error| {
            panic!("after {} bytes: {error:?}", received.len());
        });
        if let Some(data) = frame.data_ref() {
            received.extend_from_slice(data);
        }
        // A slow reader is the stimulus.
        pace(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert!(received == body, "{} bytes, not the reply", received.len());
    assert!(
        took > Duration::from_secs(2),
        "read in {took:?}: not slower than the send timeout, so this proves nothing"
    );
    assert_eq!(metric(&shim, "explo_shim_send_timeouts_total").await, 0.0);
    let lines = access_lines(&shim, "/steady", 1);
    assert_eq!(lines[0]["outcome"], "complete", "{lines:?}");
}

/// Writes `request` over and over until the connection fails, never reading.
fn pipeline_forever(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    request: &'static [u8],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let batch = request.repeat(64);
        while writer.write_all(&batch).await.is_ok() {}
    })
}

#[tokio::test]
async fn the_admin_listener_cuts_off_a_scraper_that_never_reads() {
    let upstream = big_upstream().await;
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "1s"]);
    let (mut reader, writer) = connect_small(shim.admin).await.into_split();
    let writing = pipeline_forever(writer, b"GET /metrics HTTP/1.1\r\nhost: admin\r\n\r\n");
    wait_for(&shim, "explo_shim_send_timeouts_total", 1.0).await;
    // The connection is closed: the writer fails, and a read finds the end.
    tokio::time::timeout(PATIENCE, writing)
        .await
        .expect("the scraper's writes fail once it is cut off")
        .unwrap();
    read_until_closed(&mut reader).await;
    // Other scrapers are still served.
    let probe = send("GET", &shim.admin_url("/healthz"), &[], "").await;
    assert_eq!(probe.status, 200);
}

#[tokio::test]
async fn a_client_that_never_reads_the_shims_own_error_replies_is_cut_off() {
    let upstream = big_upstream().await;
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--send-timeout", "1s"],
        // A line per refused request at trace level would slow the shim down for nothing.
        &[("RUST_LOG", "info,explo_shim::error=off")],
    );
    let (mut reader, writer) = connect_small(shim.addr).await.into_split();
    // A malformed percent-escape: the shim answers 400 itself, at once, and keeps the
    // connection open for the next request.
    let writing = pipeline_forever(writer, b"GET /x%zz HTTP/1.1\r\nhost: shim\r\n\r\n");
    let mut head = Vec::new();
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(reader.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // From here on, nothing more is read.
    wait_for(&shim, "explo_shim_send_timeouts_total", 1.0).await;
    tokio::time::timeout(PATIENCE, writing)
        .await
        .expect("the client's writes fail once it is cut off")
        .unwrap();
    read_until_closed(&mut reader).await;
    wait_for(&shim, "explo_shim_connections_open", 0.0).await;
    assert_eq!(upstream.requests().len(), 0);
}

/// A client connection that reads nothing at all once it is set up: its socket fills.
struct NeverReads(TcpStream);

impl tokio::io::AsyncRead for NeverReads {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncWrite for NeverReads {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn an_h2c_client_that_stops_reading_its_socket_has_its_connection_ended() {
    const STREAMS: usize = 20;
    let upstream = big_upstream().await;
    let shim = Shim::start(&upstream.url(), &["--send-timeout", "1s", "--access-log"]);
    // A small receive buffer, and windows that hold every reply whole: what stops the shim's
    // writes is the socket, never flow control, whatever the host's socket buffer sizes. The
    // client never reads a byte, not even the shim's settings.
    let socket = connect_small(shim.addr).await;
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(BIG_REPLY_BYTES as u32)
        .initial_connection_window_size((STREAMS * BIG_REPLY_BYTES) as u32)
        .adaptive_window(false)
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(NeverReads(socket)))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut asked = Vec::new();
    for _ in 0..STREAMS {
        sender.ready().await.unwrap();
        let request = http::Request::get(shim.url("/big"))
            .body(Empty::new())
            .unwrap();
        asked.push(sender.send_request(request));
    }
    // Nothing can come back; the requests are sent as they are polled.
    let asking = tokio::spawn(async move {
        for reply in asked {
            let _ = reply.await;
        }
    });
    // The connection's own clock ended it (some streams' clocks, which ran out in the same
    // tick, may have reset their streams first).
    wait_for(&shim, "explo_shim_connections_open", 0.0).await;
    wait_for(&shim, "explo_shim_requests_in_flight", 0.0).await;
    assert!(metric(&shim, "explo_shim_send_timeouts_total").await >= 1.0);
    let ended = shim.events("explo_shim::server");
    assert!(
        ended.iter().any(|event| event["error"]
            .as_str()
            .is_some_and(|error| error.contains("limits.send_timeout"))),
        "{ended:?}"
    );
    // Its streams' replies were abandoned, none complete.
    let lines = access_lines(&shim, "/big", STREAMS);
    assert_eq!(lines.len(), STREAMS, "{lines:?}");
    for line in &lines {
        assert_ne!(line["outcome"], "complete", "{line}");
    }
    asking.abort();
}
