//! Bad input and upstream faults on legacy routes: each gets the legacy error envelope with a
//! fitting status, the upstream sees nothing it should not, and the shim keeps serving.

use std::time::Duration;

use crate::support::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use std::io::Write;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn upstream_ok() -> FakeUpstream {
    FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await
}

/// Name, request headers, body, expected status and error code.
type BadBodyCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_bodies_get_400_or_415_and_never_reach_the_upstream() {
    let upstream = upstream_ok().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let url = shim.url("/api/update_user_group/");
    let json_type = ("content-type", "application/json");
    let cases: Vec<BadBodyCase> = vec![
        (
            "malformed JSON labelled JSON",
            vec![json_type],
            b"{\"user_group_id\": ".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "form data",
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"user_group_id=1".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type, not JSON",
            vec![],
            b"hello".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "invalid UTF-8",
            vec![json_type],
            b"{\"user_group_id\": \"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "array body",
            vec![json_type],
            b"[1,2]".to_vec(),
            400,
            "body_not_object",
        ),
        (
            "missing user_group_id",
            vec![json_type],
            br#"{"name": "x"}"#.to_vec(),
            400,
            "missing_field",
        ),
        (
            "boolean user_group_id",
            vec![json_type],
            br#"{"user_group_id": true}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "fractional user_group_id",
            vec![json_type],
            br#"{"user_group_id": 1.5}"#.to_vec(),
            400,
            "invalid_field",
        ),
        (
            "conflicting provided_id",
            vec![json_type],
            br#"{"user_group_id": "a", "provided_id": "b"}"#.to_vec(),
            400,
            "conflicting_ids",
        ),
        (
            "data_source_id",
            vec![json_type],
            br#"{"user_group_id": "a", "data_source_id": 5}"#.to_vec(),
            400,
            "unsupported_field",
        ),
        (
            "data_source_provided_id",
            vec![json_type],
            br#"{"user_group_id": "a", "data_source_provided_id": "x"}"#.to_vec(),
            400,
            "unsupported_field",
        ),
        (
            "deeply nested JSON",
            vec![json_type],
            format!(
                "{{\"user_group_id\": \"a\", \"p\": {}{}}}",
                "[".repeat(10_000),
                "]".repeat(10_000)
            )
            .into_bytes(),
            400,
            "invalid_json",
        ),
        (
            "gzip-encoded request body",
            vec![json_type, ("content-encoding", "gzip")],
            gzip(br#"{"user_group_id": "a"}"#),
            415,
            "encoded_request_body",
        ),
    ];
    for (name, headers, body, status, code) in cases {
        let got = send("POST", &url, &headers, body).await;
        println!("{name}: {:?}", got.json());
        got.assert_shim_error(status, code);
    }
    let data_source = send(
        "POST",
        &url,
        &[json_type],
        br#"{"user_group_id": "a", "data_source_id": 5}"#.to_vec(),
    )
    .await;
    assert!(
        data_source.json()["error"]
            .as_str()
            .unwrap()
            .contains("mapping")
    );
    assert!(
        upstream.requests().is_empty(),
        "the upstream saw {:?}",
        upstream.requests()
    );

    // ... and the shim still serves the next request.
    let got = post_json(&url, &json!({"user_group_id": "example_1"})).await;
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn json_labelled_as_form_data_is_accepted() {
    let upstream = upstream_ok().await;
    let shim = Shim::start(&upstream.url(), &[]);
    // What `curl -d '{...}'` sends.
    let got = send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[("content-type", "application/x-www-form-urlencoded")],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.requests()[0].headers["content-type"],
        "application/json"
    );
}

#[tokio::test]
async fn delete_and_refresh_without_a_token_are_refused() {
    let upstream = upstream_ok().await;
    let shim = Shim::start(&upstream.url(), &[]);
    send("DELETE", &shim.url("/api/delete_user_group/"), &[], "{}")
        .await
        .assert_shim_error(400, "missing_field");
    send(
        "POST",
        &shim.url("/api/refresh_user_group_token/"),
        &[],
        "{}",
    )
    .await
    .assert_shim_error(400, "missing_field");
    send(
        "POST",
        &shim.url("/api/refresh_user_group_token/"),
        &[],
        r#"{"current_token": 7}"#,
    )
    .await
    .assert_shim_error(400, "invalid_field");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_with_connection_close_by_length_and_when_chunked() {
    let upstream = upstream_ok().await;
    let config = TempConfig::new("[limits]\nlegacy_body_bytes = 64\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let big = format!(r#"{{"user_group_id": "a", "name": "{}"}}"#, "x".repeat(200));

    // Declared length over the limit: refused before the body is read.
    let reply = raw_exchange(
        shim.addr,
        format!(
            "POST /api/update_user_group/ HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
        Duration::from_secs(5),
    ).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(reply.contains("\"code\":\"body_too_large\""), "{reply}");

    // Chunked, no length: refused once the limit is crossed.
    let chunked = format!(
        "POST /api/update_user_group/ HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let reply = raw_exchange(shim.addr, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(upstream.requests().is_empty());

    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn upstream_error_replies_keep_status_body_and_headers() {
    let upstream = FakeUpstream::always(
        Reply::json(
            429,
            json!({"detail": "Request was throttled. Expected available in 12 seconds."}),
        )
        .header("retry-after", "12")
        .header("x-ratelimit-remaining", "0"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 429);
    assert_eq!(
        got.json(),
        json!({"detail": "Request was throttled. Expected available in 12 seconds."})
    );
    assert_eq!(got.header("retry-after"), Some("12"));
    assert_eq!(got.header("x-ratelimit-remaining"), Some("0"));
}

#[tokio::test]
async fn upstream_error_with_a_customer_key_only_renames_it() {
    let upstream = FakeUpstream::always(Reply::json(
        400,
        json!({"success": 0, "error": "bad", "customer": {"emails": ["x"]}}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.json(),
        json!({"success": 0, "error": "bad", "user_group": {"emails": ["x"]}})
    );
}

#[tokio::test]
async fn upstream_html_error_page_is_passed_through() {
    let page = "<html><body>502 Bad Gateway</body></html>";
    let upstream =
        FakeUpstream::always(Reply::raw(503, "text/html", page).header("retry-after", "30")).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 503);
    assert_eq!(&got.body[..], page.as_bytes());
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert_eq!(got.header("retry-after"), Some("30"));
}

/// Rule 1: a 2xx means the write happened, so an untranslatable reply goes to the
/// client as it came (with the deprecation headers), never as a 5xx that invites a retry.
#[tokio::test]
async fn a_2xx_reply_that_is_not_json_is_passed_on_as_it_came_and_counted() {
    let upstream = FakeUpstream::always(
        Reply::raw(200, "text/html", "<html>maintenance</html>").header("x-upstream", "kept"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"<html>maintenance</html>");
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert_eq!(got.header("x-upstream"), Some("kept"));
    assert!(got.header("deprecation").is_some());
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics
            .contains(r#"explo_shim_untranslated_successes_total{endpoint="update_user_group"} 1"#),
        "{metrics}"
    );
    assert!(
        shim.logs()
            .iter()
            .any(|line| line.contains("\"level\":\"ERROR\"")
                && line.contains("could not be translated")),
        "{:?}",
        shim.logs()
    );
}

#[tokio::test]
async fn gzip_from_the_upstream_is_decoded_on_success_and_error() {
    let success = json!({"success": 1, "customer": customer("example_1", "t")});
    let gz_success = gzip(success.to_string().as_bytes());
    let gz_error = gzip(br#"{"detail": "Invalid token."}"#);
    let upstream = FakeUpstream::start(move |request| {
        let body = if request.path() == "/api/update_customer/" {
            gz_success.clone()
        } else {
            gz_error.clone()
        };
        let status = if request.path() == "/api/update_customer/" {
            200
        } else {
            401
        };
        Reply::raw(status, "application/json", body).header("content-encoding", "gzip")
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let headers = [
        ("content-type", "application/json"),
        ("accept-encoding", "gzip, deflate"),
    ];

    let got = send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &headers,
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    assert_eq!(got.json()["user_group"]["token"], "t");

    let got = send(
        "POST",
        &shim.url("/api/refresh_user_group_token/"),
        &headers,
        r#"{"current_token": "x"}"#,
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.json(), json!({"detail": "Invalid token."}));
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_corrupt_gzip_success_is_passed_on_as_it_came() {
    let garbled = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff garbage".to_vec();
    let upstream = FakeUpstream::always(
        Reply::raw(200, "application/json", garbled.clone()).header("content-encoding", "gzip"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(&got.body[..], &garbled[..]);
}

#[tokio::test]
async fn connect_is_refused() {
    let upstream = upstream_ok().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let reply = raw_exchange(
        shim.addr,
        b"CONNECT internal.example:443 HTTP/1.1\r\nhost: internal.example:443\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    assert!(reply.contains("connect_refused"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(upstream.requests().is_empty());
}

/// Rule 1 again: a success too large to translate (over `limits.upstream_reply_bytes`) is still
/// a success. The client gets every byte, the ones the shim read first and the rest as it
/// streams, with the upstream's length.
#[tokio::test]
async fn a_2xx_reply_over_the_reply_limit_is_passed_on_whole() {
    let customer_json =
        json!({"success": 1, "customer": customer("a", "tok"), "padding": "x".repeat(300_000)});
    let body = customer_json.to_string();
    let upstream = FakeUpstream::always(Reply::raw(200, "application/json", body.clone())).await;
    let config = TempConfig::new("[limits]\nupstream_reply_bytes = 4096\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), body.len());
    assert_eq!(&got.body[..], body.as_bytes());
    assert_eq!(
        got.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(got.header("deprecation").is_some());
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains(r#"explo_shim_untranslated_successes_total{endpoint="update_user_group"} 1"#)
    );
}

/// A failure over the limit wrote nothing: the shim's own 502, which the client may retry.
#[tokio::test]
async fn an_error_reply_over_the_reply_limit_is_502() {
    let page = "e".repeat(10_000);
    let upstream = FakeUpstream::always(Reply::raw(500, "text/plain", page)).await;
    let config = TempConfig::new("[limits]\nupstream_reply_bytes = 4096\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await
    .assert_shim_error(502, "upstream_invalid_reply");
}
