//! Everything that is not a legacy route passes through untouched (linkerd2-proxy's
//! transparency suite, in spirit).

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

#[tokio::test]
async fn get_with_query_reaches_the_upstream_byte_for_byte() {
    let upstream = FakeUpstream::always(
        Reply::json(200, json!({"success": 1, "customers": []})).header("x-upstream", "yes"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "GET",
        &shim.url("/v2/api/customers/?page_size=2&page=1&parent_provided_id=a%20b"),
        &[
            (TOKEN_HEADER, TEAM_TOKEN),
            ("x-custom", "kept"),
            ("host", "evil.example"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), json!({"success": 1, "customers": []}));
    assert_eq!(got.header("x-upstream"), Some("yes"));
    let seen = &upstream.requests()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/v2/api/customers/?page_size=2&page=1&parent_provided_id=a%20b"
    );
    assert_eq!(seen.headers["host"], upstream.addr.to_string());
    assert_eq!(seen.headers[TOKEN_HEADER], TEAM_TOKEN);
    assert_eq!(seen.headers["x-custom"], "kept");
    assert!(seen.headers.get("x-forwarded-for").is_none());
}

#[tokio::test]
async fn delete_with_a_body_and_paths_without_slash_pass_unchanged() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let body = r#"{"provided_id": "u1", "customer_id": 7}"#;
    let got = send(
        "DELETE",
        &shim.url("/api/delete_end_user/"),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(got.status, 200);
    let got_jwt = send(
        "POST",
        &shim.url("/api/generate_jwt"),
        &[],
        r#"{"provided_id":"x"}"#,
    )
    .await;
    assert_eq!(got_jwt.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(seen[0].target, "/api/delete_end_user/");
    assert_eq!(&seen[0].body[..], body.as_bytes());
    assert_eq!(seen[0].headers["content-length"], body.len().to_string());
    assert_eq!(seen[1].target, "/api/generate_jwt");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_in_both_directions() {
    let upstream = FakeUpstream::always(
        Reply::json(200, json!({}))
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "GET",
        &shim.url("/api/group_tags/"),
        &[
            ("connection", "x-client-hop"),
            ("x-client-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-end-to-end", "kept"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
    assert_eq!(got.header("x-upstream-hop"), None);
    assert_eq!(got.header("keep-alive"), None);
    let seen = &upstream.requests()[0];
    for name in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");
}

#[tokio::test]
async fn content_length_zero_chunked_head_204_and_304_are_transparent() {
    let upstream = FakeUpstream::start(|request| match request.path() {
        "/no-content" => Reply::raw(204, "text/plain", ""),
        "/not-modified" => Reply::raw(304, "text/plain", "").header("etag", "\"v1\""),
        _ => Reply::raw(
            200,
            "text/plain",
            format!("{}:{}", request.method, request.body.len()),
        ),
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);

    let empty = raw_exchange(
        shim.addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(empty.starts_with("HTTP/1.1 200"), "{empty}");
    assert!(empty.ends_with("POST:0"), "{empty}");

    let chunked = raw_exchange(
        shim.addr,
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(5),
    ).await;
    assert!(chunked.ends_with("POST:11"), "{chunked}");

    let head = send("HEAD", &shim.url("/echo"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let no_content = send("GET", &shim.url("/no-content"), &[], "").await;
    assert_eq!(no_content.status, 204);
    let not_modified = send("GET", &shim.url("/not-modified"), &[], "").await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some("\"v1\""));

    let seen = upstream.requests();
    assert_eq!(seen[0].headers["content-length"], "0");
    assert_eq!(&seen[1].body[..], b"hello world");
}

#[tokio::test]
async fn http_1_0_with_and_without_host_and_absolute_form_go_to_the_configured_upstream() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let shim = Shim::start(&upstream.url(), &[]);
    for request in [
        &b"GET /api/dashboard/ HTTP/1.0\r\n\r\n"[..],
        b"GET /api/dashboard/ HTTP/1.0\r\nhost: whatever\r\n\r\n",
        b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nhost: 169.254.169.254\r\nconnection: close\r\n\r\n",
    ] {
        let reply = raw_exchange(shim.addr, request, Duration::from_secs(5)).await;
        assert!(reply.starts_with("HTTP/1."), "{reply}");
        assert!(reply.contains(" 200 "), "{reply}");
        assert!(reply.ends_with("ok"), "{reply}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].target, "/latest/meta-data");
    for request in seen {
        assert_eq!(request.headers["host"], upstream.addr.to_string());
    }
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::post(shim.url("/api/update_user_group/"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"user_group_id": "a"}"#)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({"success": 1})
    );
    assert_eq!(upstream.requests()[0].target, "/api/update_customer/");
}

#[tokio::test]
async fn forwarded_for_is_added_only_when_configured() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let config = TempConfig::new("[upstream]\nadd_x_forwarded_for = true\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    send("GET", &shim.url("/x"), &[], "").await;
    assert_eq!(
        upstream.requests()[0].headers["x-forwarded-for"],
        "127.0.0.1"
    );
}

#[tokio::test]
async fn https_upstream_with_an_extra_ca_negotiates_http2_by_alpn() {
    let pki = TestPki::new();
    let upstream = FakeUpstream::start_with_tls(
        |_| Reply::json(200, json!({"success": 1, "customer": customer("a", "t")})),
        Some(pki.acceptor.clone()),
    )
    .await;
    let ca = TempConfig::new(&pki.ca_pem);
    let config = TempConfig::new(&format!("[upstream]\nca_file = {:?}\n", ca.path()));
    let shim = Shim::start(
        &format!("https://127.0.0.1:{}", upstream.addr.port()),
        &["--config", config.path()],
    );

    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", shim.logs());
    assert_eq!(got.json()["user_group"]["provided_id"], "a");
    let passed = send("GET", &shim.url("/api/customers/?x=1"), &[], "").await;
    assert_eq!(passed.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.version, http::Version::HTTP_2);
    }
    assert_eq!(seen[1].target, "/api/customers/?x=1");
}

#[tokio::test]
async fn https_upstream_with_an_untrusted_certificate_is_unreachable() {
    let pki = TestPki::new();
    let upstream =
        FakeUpstream::start_with_tls(|_| Reply::json(200, json!({})), Some(pki.acceptor.clone()))
            .await;
    let shim = Shim::start(&format!("https://127.0.0.1:{}", upstream.addr.port()), &[]);
    send("GET", &shim.url("/api/customers/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_unreachable");
    assert!(upstream.requests().is_empty());
}
