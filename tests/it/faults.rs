//! Fault injection: an upstream that misbehaves on cue. Every fault gets a clear answer, no
//! hang, and the shim keeps serving.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPDATE: &str = "/api/update_user_group/";

fn update_body() -> serde_json::Value {
    json!({"user_group_id": "example_1"})
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Sends a request and returns the status and whether the body arrived complete.
async fn status_and_body_outcome(url: &str) -> (u16, Result<Bytes, String>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(20), client.get(url.parse().unwrap()))
        .await
        .expect("reply head within 20 s")
        .unwrap();
    let status = response.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .expect("body ends within 20 s");
    (
        status,
        body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
    )
}

#[tokio::test]
async fn refusing_connections_is_502_on_both_routes() {
    let closed = ClosedPort::new();
    let shim = Shim::start(&closed.url(), &[]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(502, "upstream_unreachable");
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_unreachable");
}

#[tokio::test]
async fn accepting_and_never_answering_is_504_on_both_routes() {
    let upstream = RawUpstream::start(|mut stream| async move {
        read_request(&mut stream).await;
        // Silent for as long as the test lasts.
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await;
    let shim = Shim::start(&upstream.url(), &["--upstream-timeout", "400ms"]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(504, "upstream_timeout");
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(504, "upstream_timeout");
}

#[tokio::test]
async fn a_reset_mid_body_is_502_on_legacy_routes_and_an_aborted_pass_through_body() {
    let upstream = RawUpstream::start(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"success\": 1, \"cus")
            .await;
        let _ = stream.flush().await;
        // A reset throws away what is still unsent: the head and the first bytes get a moment
        // to reach the shim, which gives no sign of having read them.
        pace(Duration::from_millis(50)).await;
        // SO_LINGER 0: close with a reset.
        let _ = stream.set_zero_linger();
        drop(stream);
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(502, "upstream_failed");

    let (status, body) = status_and_body_outcome(&shim.url("/api/dashboard/")).await;
    assert_eq!(status, 200, "the head had already arrived");
    assert!(
        body.is_err(),
        "a truncated body must not look complete: {body:?}"
    );
}

#[tokio::test]
async fn a_slow_byte_by_byte_reply_is_complete_within_the_timeout_and_504_beyond() {
    let reply = json!({"success": 1, "customer": customer("example_1", "tok")}).to_string();
    let make = move |pause: Duration| {
        let reply = reply.clone();
        move |mut stream: tokio::net::TcpStream| {
            let reply = reply.clone();
            async move {
                read_request(&mut stream).await;
                let message = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                    reply.len()
                );
                for byte in message.as_bytes() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    pace(pause).await;
                }
            }
        }
    };
    let upstream = RawUpstream::start(make(Duration::from_millis(1))).await;
    let shim = Shim::start(&upstream.url(), &["--upstream-timeout", "20s"]);
    let got = post_json(&shim.url(UPDATE), &update_body()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["user_group"]["token"], "tok");

    let slow = RawUpstream::start(make(Duration::from_millis(50))).await;
    let shim = Shim::start(&slow.url(), &["--upstream-timeout", "500ms"]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(504, "upstream_timeout");
}

#[tokio::test]
async fn an_html_5xx_page_keeps_its_status_and_body() {
    let page = "<!DOCTYPE html><html><body><h1>500 Internal Server Error</h1></body></html>";
    let upstream = FakeUpstream::always(Reply::raw(500, "text/html; charset=utf-8", page)).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(&shim.url(UPDATE), &update_body()).await;
    assert_eq!(got.status, 500);
    assert_eq!(&got.body[..], page.as_bytes());
    let passed = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
    assert_eq!(passed.status, 500);
    assert_eq!(&passed.body[..], page.as_bytes());
}

#[tokio::test]
async fn a_429_with_retry_after_holds_every_client_until_then() {
    let upstream = FakeUpstream::always(
        Reply::json(
            429,
            json!({"detail": "Request was throttled. Expected available in 30 seconds."}),
        )
        .header("retry-after", "30"),
    )
    .await;
    let config = TempConfig::new("[rate_limit]\nmax_wait = \"1s\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);

    let first = post_json(&shim.url(UPDATE), &update_body()).await;
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("30"));

    // Another client, another route: the shim answers itself, without calling the upstream.
    let second = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
    second.assert_shim_error(429, "rate_limited");
    let retry_after: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(upstream.requests().len(), 1);

    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains("explo_shim_upstream_throttled_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("explo_shim_rate_limit_refused_total 1"),
        "{metrics}"
    );
}

/// An upstream that answers its first call 429 with `Retry-After: retry_after` and every later
/// one 200.
async fn throttling_once(retry_after: &'static str) -> FakeUpstream {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    FakeUpstream::start(move |_| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::json(429, json!({"detail": "Request was throttled."}))
                .header("retry-after", retry_after)
        } else {
            Reply::json(
                200,
                json!({"success": 1, "customer": customer("example_1", "t")}),
            )
        }
    })
    .await
}

#[tokio::test]
async fn a_retry_after_of_years_or_past_u64_holds_calls_only_up_to_the_cap() {
    for asked in ["18446744073709551615", "10000000000"] {
        let upstream = throttling_once(asked).await;
        let config =
            TempConfig::new("[rate_limit]\nmax_wait = \"1ms\"\nmax_upstream_hold = \"2s\"\n");
        let shim = Shim::start(&upstream.url(), &["--config", config.path()]);

        // The throttled call gets the upstream's 429 whole (a panic would leave it an empty
        // reply).
        let first = post_json(&shim.url(UPDATE), &update_body()).await;
        assert_eq!(first.status, 429, "{asked}");
        assert_eq!(first.header("retry-after"), Some(asked));
        assert_eq!(first.json()["detail"], "Request was throttled.");

        // The hold the shim keeps is the cap, not what the upstream asked for.
        let held = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
        held.assert_shim_error(429, "rate_limited");
        let retry_after: u64 = held.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{asked}: {retry_after}");

        // Once the hold the shim announced is over, calls reach the upstream again: asked
        // until one does, for little more than the hold (a held call reaches nothing).
        let limit = Duration::from_secs(retry_after) + Duration::from_secs(2);
        let after = until_ok_every(limit, Duration::from_millis(200), || async {
            let after = post_json(&shim.url(UPDATE), &update_body()).await;
            match after.status.as_u16() {
                200 => Ok(after),
                429 => Err(format!("{asked}: still held after {retry_after} s")),
                other => panic!("{asked}: {other} {:?}", after.body),
            }
        })
        .await;
        assert_eq!(after.status, 200, "{asked}: {:?}", after.body);
        assert_eq!(upstream.requests().len(), 2, "{asked}");
        assert!(
            !shim.logs().iter().any(|line| line.contains("panicked")),
            "{asked}"
        );
    }
}

#[tokio::test]
async fn the_upstream_budget_paces_and_then_refuses() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    // Two at once, then one per second; waiting up to 1.5 s is allowed.
    let config =
        TempConfig::new("[rate_limit]\nper_minute = 60\nburst = 2\nmax_wait = \"1500ms\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let url = shim.url("/api/dashboard/");
        statuses.push(tokio::spawn(
            async move { send("GET", &url, &[], "").await },
        ));
        // One after the other, as the budget is to see them.
        pace(Duration::from_millis(20)).await;
    }
    let mut codes = Vec::new();
    for task in statuses {
        let got = task.await.unwrap();
        if got.status == 429 {
            got.assert_shim_error(429, "rate_limited");
            assert!(got.header("retry-after").is_some());
        }
        codes.push(got.status.as_u16());
    }
    codes.sort();
    assert_eq!(
        codes,
        [200, 200, 200, 429],
        "two from the burst, one paced, one refused"
    );
    assert_eq!(upstream.requests().len(), 3);
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains("explo_shim_rate_limit_waits_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_gzip_body_that_lies_about_its_length_is_502() {
    let compressed = gzip(
        json!({"success": 1, "customer": customer("example_1", "tok")})
            .to_string()
            .as_bytes(),
    );
    // Claims more than it sends, then closes.
    let longer = compressed.clone();
    let claims_more = RawUpstream::start(move |mut stream| {
        let body = longer.clone();
        async move {
            read_request(&mut stream).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                body.len() + 100
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
        }
    })
    .await;
    let shim = Shim::start(&claims_more.url(), &[]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(502, "upstream_failed");

    // Claims less than the whole gzip stream: the cut stream does not decode.
    let shorter = compressed.clone();
    let claims_less = RawUpstream::start(move |mut stream| {
        let body = shorter.clone();
        async move {
            read_request(&mut stream).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len() / 2
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
        }
    })
    .await;
    let shim = Shim::start(&claims_less.url(), &[]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(502, "upstream_invalid_reply");
}

#[tokio::test]
async fn an_http2_upstream_that_never_ends_the_stream_is_cut_off() {
    let pki = TestPki::new();
    let upstream = FakeUpstream::start_with_tls(
        |_| Reply::json(200, json!({"success": 1, "customer": {}})).stalled(),
        Some(pki.acceptor.clone()),
    )
    .await;
    let ca = TempConfig::new(&pki.ca_pem);
    let config = TempConfig::new(&format!(
        "[upstream]\nca_file = {:?}\ntimeout = \"600ms\"\n[limits]\nbody_idle_timeout = \"600ms\"\n",
        ca.path()
    ));
    let shim = Shim::start(
        &format!("https://127.0.0.1:{}", upstream.addr.port()),
        &["--config", config.path()],
    );
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(504, "upstream_timeout");

    let (status, body) = status_and_body_outcome(&shim.url("/api/dashboard/")).await;
    assert_eq!(status, 200);
    assert!(
        body.is_err(),
        "a stream that never ends must not hang the client: {body:?}"
    );
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2)
    );
}

#[tokio::test]
async fn redirects_are_handed_to_the_client_not_followed() {
    let upstream = FakeUpstream::always(
        Reply::raw(302, "text/plain", "").header("location", "https://elsewhere.example/api/"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
    assert_eq!(got.status, 302);
    assert_eq!(
        got.header("location"),
        Some("https://elsewhere.example/api/")
    );
    let legacy = post_json(&shim.url(UPDATE), &update_body()).await;
    assert_eq!(legacy.status, 302);
    assert_eq!(
        legacy.header("location"),
        Some("https://elsewhere.example/api/")
    );
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_post_is_never_replayed_once_sent() {
    // Reads the request, then closes without answering.
    let upstream = RawUpstream::start(|mut stream| async move {
        read_request(&mut stream).await;
        drop(stream);
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    post_json(&shim.url(UPDATE), &update_body())
        .await
        .assert_shim_error(502, "upstream_failed");
    let passed = send(
        "POST",
        &shim.url("/api/create_group_tag/"),
        &[],
        r#"{"name": "x"}"#,
    )
    .await;
    passed.assert_shim_error(502, "upstream_failed");
    assert_eq!(
        upstream.connections(),
        2,
        "one connection per request: no replay"
    );
}

#[tokio::test]
async fn a_stale_pooled_connection_is_not_an_error_the_client_sees() {
    // Answers one request per connection, keeps it open briefly, then closes it.
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&closed);
    let upstream = RawUpstream::start(move |mut stream| {
        let closed = std::sync::Arc::clone(&counter);
        async move {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                )
                .await;
            // Closed a moment after the reply, while the shim keeps it in its pool.
            pace(Duration::from_millis(100)).await;
            drop(stream);
            closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    for sent in 1..=3 {
        let got = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        // The next request meets a pooled connection the upstream has closed.
        until(
            Duration::from_secs(10),
            "the upstream never closed",
            || async { (closed.load(std::sync::atomic::Ordering::SeqCst) == sent).then_some(()) },
        )
        .await;
    }
    assert_eq!(upstream.connections(), 3);
}

#[tokio::test]
async fn upstream_connections_are_reused_and_closed_once_idle() {
    // Serves every request of a connection, and counts the connections the shim closed.
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&closed);
    let upstream = RawUpstream::start(move |mut stream| {
        let closed = std::sync::Arc::clone(&counter);
        async move {
            loop {
                if read_request(&mut stream).await.is_empty() {
                    closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                let body = r#"{"success": 1, "customer": {"provided_id": "a"}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    // One serving thread, so every request meets the same connection pool.
    let config = TempConfig::new("workers = 1\n[upstream]\npool_idle_timeout = \"1s\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    for _ in 0..3 {
        assert_eq!(
            send("GET", &shim.url("/api/customers/"), &[], "")
                .await
                .status,
            200
        );
        let got = post_json(&shim.url(UPDATE), &json!({"user_group_id": "a"})).await;
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        assert_eq!(got.json()["user_group"]["provided_id"], "a");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one kept-alive upstream connection"
    );
    until(
        Duration::from_secs(10),
        "the idle connection was never closed",
        || async { (closed.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_connection_still_receiving_an_upload_is_never_handed_to_the_next_request() {
    // Answers as soon as the request head is in, without reading any body, then keeps the
    // connection open: a refusal before the upload, as real servers send.
    let upstream = RawUpstream::start(|mut stream| async move {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nearly",
            )
            .await;
        // Keeps the connection open for as long as the test lasts.
        std::future::pending::<()>().await;
    })
    .await;
    let config = TempConfig::new("workers = 1\n[upstream]\ntimeout = \"3s\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    // A pass-through upload that is answered early and keeps uploading.
    let mut uploader = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    uploader
        .write_all(
            b"POST /api/upload/ HTTP/1.1\r\nhost: shim\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("early") {
        let mut chunk = [0u8; 256];
        let read = uploader.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the upload's connection closed: {answer:?}");
        answer.extend_from_slice(&chunk[..read]);
    }
    // The upload goes on; the next request must get a connection of its own.
    let next = send("GET", &shim.url("/api/dashboard/"), &[], "").await;
    assert_eq!(
        next.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&next.body)
    );
    assert_eq!(upstream.connections(), 2);
    drop(uploader);
}

#[tokio::test]
async fn a_clients_broken_pass_through_body_is_400_not_502() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let shim = Shim::start(&upstream.url(), &[]);
    for broken in [
        // A chunk size that overflows.
        "5\r\nhello\r\nFFFFFFFFFFFFFFFFFFFFFF\r\n",
        // A chunk size that is not hex.
        "5\r\nhello\r\nzz\r\n",
    ] {
        let request = format!(
            "POST /api/upload/ HTTP/1.1\r\nhost: shim\r\ntransfer-encoding: chunked\r\n\r\n{broken}"
        );
        let reply = raw_exchange(shim.addr, request.as_bytes(), Duration::from_secs(20)).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{broken:?}: {reply}");
        assert!(reply.contains("broken_request_body"), "{broken:?}: {reply}");
    }
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains(r#"explo_shim_pass_through_requests_total{status_class="4xx"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_clients_broken_or_stalled_body_is_its_own_fault_on_an_http2_upstream_too() {
    let pki = TestPki::new();
    let upstream = FakeUpstream::start_with_tls(
        |_| Reply::raw(200, "text/plain", "ok"),
        Some(pki.acceptor.clone()),
    )
    .await;
    let ca = TempConfig::new(&pki.ca_pem);
    let config = TempConfig::new(&format!(
        "[upstream]\nca_file = {:?}\ntimeout = \"20s\"\n[limits]\nbody_idle_timeout = \"500ms\"\n",
        ca.path()
    ));
    let shim = Shim::start(
        &format!("https://127.0.0.1:{}", upstream.addr.port()),
        &["--config", config.path()],
    );
    assert_eq!(
        send("GET", &shim.url("/warm-up"), &[], "").await.status,
        200
    );
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2)
    );
    let broken = "POST /api/upload/ HTTP/1.1\r\nhost: shim\r\ntransfer-encoding: chunked\r\n\r\n\
                  5\r\nhello\r\nFFFFFFFFFFFFFFFFFFFFFF\r\n";
    let reply = raw_exchange(shim.addr, broken.as_bytes(), Duration::from_secs(20)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("broken_request_body"), "{reply}");
    // Five bytes of ten, then silence: the client's stall, not the upstream's.
    let stalled = "POST /api/upload/ HTTP/1.1\r\nhost: shim\r\ncontent-length: 10\r\n\r\nhello";
    let reply = raw_exchange(shim.addr, stalled.as_bytes(), Duration::from_secs(20)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("body_timeout"), "{reply}");
    assert_eq!(send("GET", &shim.url("/after"), &[], "").await.status, 200);
}
