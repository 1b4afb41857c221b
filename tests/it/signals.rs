//! Deprecation headers, request IDs, metrics and the usage tracker, read back from a running
//! shim.

use crate::support::*;
use serde_json::json;

const UPDATE: &str = "/api/update_user_group/";

async fn customer_upstream() -> FakeUpstream {
    FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await
}

#[tokio::test]
async fn every_legacy_reply_is_marked_deprecated_errors_included() {
    let upstream = customer_upstream().await;
    let config = TempConfig::new("[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2026-10-15\"\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let success = post_json(&shim.url(UPDATE), &json!({"user_group_id": "a"})).await;
    let shim_error = send(
        "POST",
        &shim.url("/embed/update_user_group"),
        &[],
        "not json",
    )
    .await;
    assert_eq!(shim_error.status, 415);
    for got in [&success, &shim_error] {
        assert_eq!(got.header("deprecation"), Some("@1760486400"));
        assert_eq!(got.header("sunset"), Some("Thu, 15 Oct 2026 00:00:00 GMT"));
        assert_eq!(
            got.header("link"),
            Some(
                "<https://docs.explo.co/api-reference/customer-api/update>; rel=\"successor-version\", \
                 <https://docs.explo.co/api-reference/end-user-group-api/update>; rel=\"deprecation\""
            )
        );
    }
    let passed = send("GET", &shim.url("/api/customers/"), &[], "").await;
    assert_eq!(passed.header("deprecation"), None);
    assert_eq!(passed.header("link"), None);
}

#[tokio::test]
async fn upstream_errors_on_legacy_routes_are_marked_too_and_sunset_is_absent_by_default() {
    let upstream =
        FakeUpstream::always(Reply::json(401, json!({"detail": "Invalid token."}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": "x"}),
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(got.header("deprecation"), Some("@1760486400"));
    assert!(
        got.header("link")
            .unwrap()
            .contains("customer-api/refresh-token")
    );
    assert_eq!(got.header("sunset"), None);
}

#[test]
fn a_sunset_before_the_deprecation_date_stops_start_up() {
    let config = TempConfig::new("[deprecation]\ndate = \"2025-10-15\"\nsunset = \"2025-01-01\"\n");
    let output = start_up_output(config.path());
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("deprecation.sunset") && stderr.contains("earlier"),
        "{stderr}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_made_sent_upstream_and_logged() {
    let upstream = customer_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "POST",
        &shim.url(UPDATE),
        &[
            ("x-request-id", "client-req-42"),
            (TOKEN_HEADER, TEAM_TOKEN),
        ],
        r#"{"user_group_id": "a"}"#,
    )
    .await;
    assert_eq!(got.header("x-request-id"), Some("client-req-42"));
    assert_eq!(
        upstream.requests()[0].headers["x-request-id"],
        "client-req-42"
    );

    let generated = send("GET", &shim.url("/api/customers/"), &[], "").await;
    let id = generated.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(upstream.requests()[1].headers["x-request-id"], id.as_str());

    let deprecated = shim.wait_for_events("deprecated", 1).await;
    assert_eq!(deprecated.len(), 1);
    assert_eq!(
        deprecated[0]["span"]["request_id"], "client-req-42",
        "{}",
        deprecated[0]
    );
    // The line names its request on its own, at any log level.
    assert_eq!(
        deprecated[0]["request_id"], "client-req-42",
        "{}",
        deprecated[0]
    );
}

#[tokio::test]
async fn metrics_count_legacy_calls_by_endpoint_status_class_and_client() {
    let upstream = customer_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    for _ in 0..2 {
        post_json(&shim.url(UPDATE), &json!({"user_group_id": "a"})).await;
    }
    send("POST", &shim.url(UPDATE), &[], "[]").await;
    send("GET", &shim.url("/api/customers/"), &[], "").await;
    let fingerprint = shim.wait_for_events("deprecated", 1).await[0]["client_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    let got = shim.openmetrics().await;
    assert_eq!(got.status, 200);
    assert!(
        got.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8_lossy(&got.body).into_owned();
    for needle in [
        format!(r#"explo_shim_legacy_calls_total{{endpoint="update_user_group",status_class="2xx",client="{fingerprint}"}} 2"#),
        r#"explo_shim_legacy_calls_total{endpoint="update_user_group",status_class="4xx",client="anonymous"} 1"#.to_owned(),
        r#"explo_shim_pass_through_requests_total{status_class="2xx"} 1"#.to_owned(),
        r#"explo_shim_upstream_latency_seconds_count{route="translated"} 2"#.to_owned(),
        r#"explo_shim_upstream_latency_seconds_count{route="pass_through"} 1"#.to_owned(),
        "explo_shim_requests_in_flight 0".to_owned(),
        "explo_shim_log_lines_dropped_total 0".to_owned(),
        "explo_shim_build_info{version=".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle}\n{text}");
    }
    assert!(!text.contains(TEAM_TOKEN.trim_start_matches("Token ")));
}

#[tokio::test]
async fn usage_reports_who_still_calls_what() {
    let upstream = customer_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    post_json(&shim.url(UPDATE), &json!({"user_group_id": "first"})).await;
    post_json(&shim.url(UPDATE), &json!({"user_group_id": "second"})).await;
    post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "third"}),
    )
    .await;
    let report = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let clients = report["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1);
    let endpoints = clients[0]["endpoints"].as_array().unwrap();
    let update = endpoints
        .iter()
        .find(|e| e["endpoint"] == "update_user_group")
        .unwrap();
    assert_eq!(update["count"], 2);
    assert_eq!(update["last_user_group_id"], "second");
    assert_eq!(update["replacement"], "update_customer");
    for key in ["first_seen", "last_seen"] {
        let stamp = update[key].as_str().unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    }
    let create = endpoints
        .iter()
        .find(|e| e["endpoint"] == "create_user_group")
        .unwrap();
    assert_eq!(create["count"], 1);
}

/// A log file gets plain text: colour codes only go to a terminal. The line is written by the
/// background writer, and the queued lines are written out when the shim stops.
#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes_and_are_flushed_at_exit() {
    let upstream = customer_upstream().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_explo-shim"))
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--upstream", &upstream.url(), "--log-format", "text"])
        .env("RUST_LOG", "info")
        .env_remove("EXPLO_SHIM_CONFIG")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn explo-shim");
    // The bound address is in the text line `... explo-shim listening listen=ADDR admin=...`;
    // the lines up to it are kept for the assertions at the end.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut head = String::new();
    let listen = loop {
        let before = head.len();
        let read = std::io::BufRead::read_line(&mut stderr, &mut head).unwrap();
        assert!(read > 0, "the shim exited before listening: {head}");
        let line = &head[before..];
        if line.contains("explo-shim listening") {
            let field = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("listen="));
            break field.expect("the listen address").to_owned();
        }
    };
    let got = post_json(
        &format!("http://{listen}{UPDATE}"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    child.wait().unwrap();
    let stderr = head + &rest;
    assert!(
        stderr.contains("deprecated End User Group API call"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
