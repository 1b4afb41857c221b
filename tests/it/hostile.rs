//! Hostile input: each gets a clear error, the upstream sees nothing it should not, and the
//! shim keeps serving the next request.

use std::time::Duration;

use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPDATE: &str = "/api/update_user_group/";

async fn ok_upstream() -> FakeUpstream {
    FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("a", "t")}),
    ))
    .await
}

async fn still_serving(shim: &Shim) {
    let got = post_json(&shim.url(UPDATE), &json!({"user_group_id": "a"})).await;
    assert_eq!(got.status, 200, "the shim must keep serving");
}

#[tokio::test]
async fn duplicate_keys_are_refused_and_never_forwarded() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "POST",
        &shim.url(UPDATE),
        &[("content-type", "application/json")],
        r#"{"user_group_id": "a", "user_group_id": "b"}"#,
    )
    .await;
    got.assert_shim_error(400, "invalid_json");
    assert!(
        got.json()["error"]
            .as_str()
            .unwrap()
            .contains("duplicate key")
    );
    assert!(upstream.requests().is_empty());
    still_serving(&shim).await;
}

#[tokio::test]
async fn truncated_json_is_refused() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    for body in [
        r#"{"user_group_id": "a", "name": "#,
        r#"{"user_group_id""#,
        "{",
        r#"{"a": 1}}"#,
    ] {
        send(
            "POST",
            &shim.url(UPDATE),
            &[("content-type", "application/json")],
            body,
        )
        .await
        .assert_shim_error(400, "invalid_json");
    }
    assert!(upstream.requests().is_empty());
    still_serving(&shim).await;
}

#[tokio::test]
async fn huge_numbers_are_forwarded_exactly() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let body = r#"{"user_group_id": 98765432109876543210987654321, "properties": {"limit": 1e999, "price": 0.10000000000000000000001}}"#;
    let got = send(
        "POST",
        &shim.url(UPDATE),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(got.status, 200);
    let forwarded = String::from_utf8(upstream.requests()[0].body.to_vec()).unwrap();
    assert!(
        forwarded.contains(r#""provided_id":"98765432109876543210987654321""#),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("0.10000000000000000000001"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("1e+999") || forwarded.contains("1e999"),
        "{forwarded}"
    );
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let huge = format!(
        "POST {UPDATE} HTTP/1.1\r\nhost: x\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(40_000)
    );
    let reply = raw_exchange(shim.addr, huge.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.200}");

    let mut many = String::from("GET /api/dashboard/ HTTP/1.1\r\nhost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let reply = raw_exchange(shim.addr, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.200}");
    assert!(upstream.requests().is_empty());
    still_serving(&shim).await;
}

#[tokio::test]
async fn a_configured_header_count_limit_is_enforced() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nmax_headers = 10\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let head = |count: usize| {
        let mut head = String::from("GET /api/dashboard/ HTTP/1.1\r\nhost: x\r\n");
        for i in 0..count {
            head.push_str(&format!("x-h{i}: v\r\nconnection: close\r\n"));
        }
        head + "\r\n"
    };
    let reply = raw_exchange(shim.addr, head(12).as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:.200}");
    let reply = raw_exchange(shim.addr, head(3).as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.200}");
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_read_timeout() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"700ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    stream
        .write_all(b"POST /api/update_user_group/ HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Keep dribbling header bytes, never finishing the head.
    let dribble = async {
        for _ in 0..100 {
            if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                return true;
            }
            pace(Duration::from_millis(100)).await;
            let mut probe = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => return true,
                Err(_) => {}
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(8), dribble)
            .await
            .unwrap(),
        "the connection stayed open"
    );
    assert!(upstream.requests().is_empty());
    still_serving(&shim).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    stream
        .write_all(b"GET /api/dashboard/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn request_smuggling_shapes_are_refused_and_never_forwarded() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let shapes: [&[u8]; 5] = [
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\nhello!",
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length : 5\r\n\r\nhello",
    ];
    for shape in shapes {
        let reply = raw_exchange(shim.addr, shape, Duration::from_secs(5)).await;
        assert!(
            reply.starts_with("HTTP/1.1 400"),
            "{}\n=> {reply}",
            String::from_utf8_lossy(shape)
        );
    }
    assert!(
        upstream.requests().is_empty(),
        "forwarded: {:?}",
        upstream.requests()
    );
    still_serving(&shim).await;
}

/// hyper alone would read TE + CL as chunked and drop the length (RFC 9112 §6.1); the
/// connection guard makes the shim refuse it instead, whichever header comes first and however
/// the bytes are split, and also on a later request of a keep-alive connection.
#[tokio::test]
async fn te_with_cl_and_repeated_cl_are_refused_with_400_and_never_forwarded() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let shapes: [&[u8]; 4] = [
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /api/update_user_group/ HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
        b"POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        b"GET /api/dashboard/ HTTP/1.1\r\nhost: x\r\n\r\nPOST /api/dashboard/ HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for (index, shape) in shapes.iter().enumerate() {
        let reply = raw_exchange(shim.addr, shape, Duration::from_secs(5)).await;
        let last = reply
            .rfind("HTTP/1.1 ")
            .map(|at| &reply[at..])
            .unwrap_or("");
        assert!(
            last.starts_with("HTTP/1.1 400"),
            "{}\n=> {reply}",
            String::from_utf8_lossy(shape)
        );
        assert!(last.contains("ambiguous_framing"), "{reply}");
        assert!(
            last.to_ascii_lowercase().contains("connection: close"),
            "{reply}"
        );
        let expected_forwarded = if index == 3 { 1 } else { 0 };
        assert_eq!(upstream.requests().len(), expected_forwarded, "{reply}");
    }
    assert!(upstream.requests().iter().all(|r| r.target != "/smuggled"));
    still_serving(&shim).await;
}

#[tokio::test]
async fn te_with_cl_behind_more_than_128_fields_is_refused_when_max_headers_allows_them() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nmax_headers = 300\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut shape = String::from("POST /api/dashboard/ HTTP/1.1\r\nhost: x\r\n");
    for n in 0..150 {
        shape.push_str(&format!("x-filler-{n}: 1\r\n"));
    }
    shape.push_str("content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n");
    shape.push_str("GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n");
    let reply = raw_exchange(shim.addr, shape.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("ambiguous_framing"), "{reply}");
    assert!(upstream.requests().is_empty(), "forwarded: {reply}");
    still_serving(&shim).await;
}

#[tokio::test]
async fn past_max_in_flight_the_shim_sheds_with_503() {
    let upstream = FakeUpstream::always(
        Reply::json(200, json!({"success": 1})).delayed(Duration::from_millis(800)),
    )
    .await;
    let config = TempConfig::new("[limits]\nmax_in_flight = 1\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let url = shim.url("/api/dashboard/");
    let slow = tokio::spawn(async move { send("GET", &url, &[], "").await });
    // The first request holds the only slot once it has reached the (slow) upstream.
    until(
        Duration::from_secs(10),
        "the first request never arrived",
        || async { (upstream.requests().len() == 1).then_some(()) },
    )
    .await;
    let shed = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
    shed.assert_shim_error(503, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(slow.await.unwrap().status, 200);
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains("explo_shim_shed_requests_total 1"),
        "{metrics}"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn past_max_connections_new_clients_wait_for_a_free_slot() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nmax_connections = 1\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    // The holder is served once and kept alive, so it observably holds the only slot:
    // whichever serving thread accepts first no longer decides the test.
    let mut holder = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    holder
        .write_all(b"GET /api/dashboard/ HTTP/1.1\r\nhost: shim\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let mut chunk = [0u8; 512];
        let read = holder.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the holder was not served");
        answer.extend_from_slice(&chunk[..read]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    let url = shim.url("/api/dashboard/");
    let waiting = tokio::spawn(async move { send("GET", &url, &[], "").await });
    // A negative check: however long it is given, the second client is not served while
    // the holder is open. The pause only gives a wrong implementation the chance to show.
    quiet_for(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served past max_connections = 1"
    );
    // The operator sees the cap reached before anyone complains.
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains("explo_shim_connections_open 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("explo_shim_connection_limit 1\n"),
        "{metrics}"
    );
    drop(holder);
    assert_eq!(waiting.await.unwrap().status, 200);
    // The waiting client's connection is counted once it is served, and uncounted when it
    // closes.
    shim.wait_for_metric(
        "explo_shim_connections_open 0",
        "closed connections still counted as open",
    )
    .await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut silent = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "a silent connection was kept open");
    assert!(received.is_empty());
    still_serving(&shim).await;
}

#[tokio::test]
async fn a_half_sent_http2_preface_is_cut_off_at_the_header_read_timeout() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut stalled = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    // Still a prefix of the preface: the protocol is not known yet.
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut received)).await;
    assert!(
        closed.is_ok(),
        "a half-sent preface kept its connection open"
    );
    still_serving(&shim).await;
}

#[tokio::test]
async fn a_request_dripped_a_byte_at_a_time_from_its_first_byte_is_served() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let mut stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /api/dashboard/ HTTP/1.1\r\nhost: x\r\n\r\n" {
        stream.write_all(&[*byte]).await.unwrap();
        pace(Duration::from_millis(5)).await;
    }
    let mut reply = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("no reply")
        .unwrap();
    assert!(
        reply[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply[..n])
    );
    assert_eq!(upstream.requests().len(), 1);
}

/// A legacy head with `Content-Length: 10` and one byte of body, then silence.
const STALLED_UPDATE: &[u8] = b"POST /api/update_user_group/ HTTP/1.1\r\nhost: shim\r\n\
content-type: application/json\r\ncontent-length: 10\r\n\r\n{";

#[tokio::test]
async fn stalled_legacy_bodies_get_408_and_free_their_in_flight_slots() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new(
        "[limits]\nmax_in_flight = 2\nbody_idle_timeout = \"1s\"\nlegacy_body_timeout = \"30s\"\n",
    );
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    // Both slots held by stalled bodies; each is answered once its body has been silent for
    // the idle timeout, and the connection closed (read to its end here).
    let stalled = [
        tokio::spawn(raw_exchange(
            shim.addr,
            STALLED_UPDATE,
            Duration::from_secs(20),
        )),
        tokio::spawn(raw_exchange(
            shim.addr,
            STALLED_UPDATE,
            Duration::from_secs(20),
        )),
    ];
    // While both stall, they hold both slots: everything else is shed, as before the fix.
    shim.wait_for_metric(
        "explo_shim_requests_in_flight 2",
        "the stalled calls never held both slots",
    )
    .await;
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(503, "overloaded");
    // Each is answered once its body has been silent for the idle timeout, and its
    // connection closed (read to its end here).
    for reply in stalled {
        let reply = reply.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains(r#""code":"body_timeout""#), "{reply}");
        assert!(reply.contains(r#""success":0"#), "{reply}");
        assert!(
            reply.to_ascii_lowercase().contains("connection: close"),
            "{reply}"
        );
    }
    // The slots are free again: pass-through and legacy calls are served, and nothing of the
    // stalled calls reached the upstream.
    assert_eq!(
        send("GET", &shim.url("/api/dashboard/"), &[], "")
            .await
            .status,
        200
    );
    still_serving(&shim).await;
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_legacy_body_dripped_a_byte_at_a_time_is_cut_off_at_the_whole_body_deadline() {
    let upstream = ok_upstream().await;
    let config =
        TempConfig::new("[limits]\nbody_idle_timeout = \"20s\"\nlegacy_body_timeout = \"1s\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /api/update_user_group/ HTTP/1.1\r\nhost: shim\r\n\
              content-type: application/json\r\ncontent-length: 60\r\n\r\n",
        )
        .await
        .unwrap();
    // One byte every 200 ms: never silent for the idle timeout, but 60 bytes take 12 s.
    let drip = tokio::spawn(async move {
        for byte in br#"{"user_group_id": "a", "name": "dripping ................"}"#.iter() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            pace(Duration::from_millis(200)).await;
        }
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("did not arrive whole within 1s"), "{reply}");
    drip.abort();
    assert!(
        upstream.requests().is_empty(),
        "nothing reaches the upstream"
    );
    still_serving(&shim).await;
}

/// A request body fed by a channel: it ends only when the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(hyper::body::Frame::data(chunk))))
    }
}

#[tokio::test]
async fn a_stalled_h2c_stream_gets_408_while_its_connection_keeps_serving() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, combinators::BoxBody};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nbody_idle_timeout = \"1s\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let client: Client<_, BoxBody<Bytes, std::convert::Infallible>> =
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
    // One byte, then nothing: the sender stays alive until the end of the test.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(Bytes::from_static(b"{")).await.unwrap();
    let stalled = client.request(
        http::Request::post(shim.url(UPDATE))
            .header("content-type", "application/json")
            .body(ChannelBody(receiver).boxed())
            .unwrap(),
    );
    let whole = client.request(
        http::Request::post(shim.url(UPDATE))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"user_group_id": "a"}"#)).boxed())
            .unwrap(),
    );
    let (stalled, whole) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(stalled, whole)
    })
    .await
    .expect("the stalled stream is answered");
    let stalled = stalled.unwrap();
    assert_eq!(stalled.version(), http::Version::HTTP_2);
    assert_eq!(stalled.status(), 408);
    let body = stalled.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("body_timeout"),
        "{body:?}"
    );
    assert_eq!(whole.unwrap().status(), 200, "the other stream is served");
    // The 408 ended one stream, not the connection: the client's pooled h2 connection serves
    // the next request.
    let after = client
        .request(
            http::Request::post(shim.url(UPDATE))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(br#"{"user_group_id": "a"}"#)).boxed())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(after.version(), http::Version::HTTP_2);
    assert_eq!(after.status(), 200);
    drop(sender);
}

#[tokio::test]
async fn the_admin_listener_cuts_off_a_half_sent_request_head() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut half = tokio::net::TcpStream::connect(shim.admin).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), half.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "a half-sent head held the admin connection");
    let probe = send("GET", &shim.admin_url("/healthz"), &[], "").await;
    assert_eq!(probe.status, 200);
}

#[tokio::test]
async fn silent_connections_past_the_admin_cap_do_not_keep_probes_out() {
    let upstream = ok_upstream().await;
    let config = TempConfig::new("[limits]\nheader_read_timeout = \"500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    // More silent connections than the admin listener serves at once (256).
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(shim.admin).await.unwrap());
    }
    // Each is closed by the head timeout, so the probe behind them is answered.
    let probe = send("GET", &shim.admin_url("/healthz"), &[], "").await;
    assert_eq!(probe.status, 200);
    let mut first = silent.swap_remove(0);
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "a silent admin connection was kept open");
}
