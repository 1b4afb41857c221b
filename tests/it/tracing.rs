//! OpenTelemetry traces: the real binary exporting OTLP to a collector of the test's own
//! (`support::Collector`, which decodes with the official definitions), in front of a
//! scripted Customer API that records the `traceparent` it is sent. How the export is
//! configured (protocol, headers, resource, TLS, timeouts) is `otlp.rs`'s.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const CUSTOMER_TOKEN: &str = "cust_tok_4f2a9b7c1d";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A span's attribute value as text (`stringValue` or `intValue`).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?["value"];
    value["stringValue"]
        .as_str()
        .or(value["intValue"].as_str())
        .map(str::to_owned)
}

/// The `traceparent` fields the upstream saw on `request`.
fn traceparent(request: &Recorded) -> (String, String, String) {
    let value = request.headers["traceparent"].to_str().unwrap();
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!(fields.len(), 4, "{value}");
    assert_eq!(fields[0], "00", "{value}");
    (
        fields[1].to_owned(),
        fields[2].to_owned(),
        fields[3].to_owned(),
    )
}

/// A Customer API holding `example_1` without children.
pub(crate) async fn customer_api() -> FakeUpstream {
    FakeUpstream::start(|request| match request.path() {
        "/api/get_customer/" => Reply::json(
            200,
            json!({"success": 1, "customer": customer("example_1", CUSTOMER_TOKEN)}),
        ),
        "/v2/api/customers/" => {
            Reply::json(200, json!({"total_count": 0, "results": {"customers": []}}))
        }
        "/api/delete_customer/" => Reply::json(200, json!({"success": 1})),
        "/api/customers/" => Reply::json(200, json!({"success": 1, "customers": []})),
        other => Reply::json(404, json!({"detail": format!("unexpected {other}")})),
    })
    .await
}

fn traced(collector: &Collector) -> Vec<(&'static str, String)> {
    vec![("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url())]
}

fn start_traced(upstream: &FakeUpstream, env: &[(&str, String)]) -> Shim {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Shim::start_with_env(&upstream.url(), &[], &env)
}

#[tokio::test]
async fn a_legacy_delete_by_user_group_id_is_one_trace_of_a_server_span_and_its_customer_calls() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let mut env = traced(&collector);
    env.push(("OTEL_SERVICE_NAME", "shim-under-test".to_owned()));
    let shim = start_traced(&upstream, &env);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = upstream.requests();
    let paths: Vec<&str> = seen.iter().map(Recorded::path).collect();
    assert_eq!(
        paths,
        [
            "/api/get_customer/",
            "/v2/api/customers/",
            "/api/delete_customer/"
        ]
    );
    let (trace_id, _, _) = traceparent(&seen[0]);
    let spans = collector.trace(&trace_id, 4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let server: Vec<&Value> = spans.iter().filter(|span| span["kind"] == 2).collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(server["name"], "DELETE /api/delete_user_group/");
    assert_eq!(server["parentSpanId"], "", "a root: {server}");
    assert_eq!(server["service"], "shim-under-test");
    assert_eq!(
        attribute(server, "http.request.method").as_deref(),
        Some("DELETE")
    );
    assert_eq!(
        attribute(server, "url.path").as_deref(),
        Some("/api/delete_user_group/")
    );
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(server, "explo.legacy_endpoint").as_deref(),
        Some("delete_user_group")
    );
    let fingerprint = attribute(server, "explo.client_fingerprint").unwrap();
    assert!(!fingerprint.is_empty());
    let exported = serde_json::to_string(&collector.spans()).unwrap();
    assert!(!exported.contains("sk_live_team_secret"), "{exported}");
    assert!(!exported.contains(CUSTOMER_TOKEN), "{exported}");
    // One CLIENT span per Customer call, under the server span, named in that call's
    // `traceparent`.
    for request in &seen {
        let (request_trace, parent, flags) = traceparent(request);
        assert_eq!(request_trace, trace_id);
        assert_eq!(flags, "01");
        let client = spans
            .iter()
            .find(|span| span["spanId"] == parent.as_str())
            .unwrap_or_else(|| panic!("no span {parent} for {}: {spans:#?}", request.path()));
        assert_eq!(client["kind"], 3, "{client}");
        assert_eq!(client["parentSpanId"], server["spanId"], "{client}");
        assert_eq!(
            attribute(client, "url.path").as_deref(),
            Some(request.path())
        );
        assert_eq!(
            attribute(client, "http.request.method").as_deref(),
            Some(request.method.as_str())
        );
        assert_eq!(
            attribute(client, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(
            attribute(client, "explo.legacy_endpoint").as_deref(),
            Some("delete_user_group")
        );
        assert_eq!(
            client["name"],
            format!("{} {}", request.method, request.path())
        );
    }
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_and_replaced_upstream_by_the_shims_span() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let shim = start_traced(&upstream, &traced(&collector));
    let incoming = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    // A pass-through request: its one upstream exchange is a CLIENT span too.
    let got = send(
        "GET",
        &shim.url("/api/customers/?page=1"),
        &[(TOKEN_HEADER, TEAM_TOKEN), ("traceparent", &incoming)],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    let spans = collector.trace(CALLER_TRACE, 2).await;
    let server = spans.iter().find(|span| span["kind"] == 2).unwrap();
    let client = spans.iter().find(|span| span["kind"] == 3).unwrap();
    assert_eq!(server["parentSpanId"], CALLER_SPAN);
    assert_eq!(
        server["name"], "GET",
        "a passed-through path is not a span name"
    );
    assert_eq!(
        attribute(server, "url.path").as_deref(),
        Some("/api/customers/")
    );
    assert_eq!(client["parentSpanId"], server["spanId"]);
    assert_eq!(
        attribute(client, "url.path").as_deref(),
        Some("/api/customers/")
    );
    assert_eq!(attribute(client, "explo.legacy_endpoint"), None);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers.get_all("traceparent").iter().count(), 1);
    let (trace_id, parent, flags) = traceparent(&seen[0]);
    assert_eq!(trace_id, CALLER_TRACE);
    assert_eq!(parent, client["spanId"].as_str().unwrap());
    assert_ne!(parent, CALLER_SPAN);
    assert_eq!(flags, "01");
}

#[tokio::test]
async fn an_unsampled_caller_is_not_exported_but_its_trace_still_goes_upstream() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let shim = start_traced(&upstream, &traced(&collector));
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let got = send(
        "GET",
        &shim.url("/api/customers/"),
        &[(
            "traceparent",
            &format!("00-{unsampled_trace}-b7ad6b7169203331-00"),
        )],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    let (trace_id, parent, flags) = traceparent(&upstream.requests()[0]);
    assert_eq!(trace_id, unsampled_trace);
    assert_ne!(parent, "b7ad6b7169203331");
    assert_eq!(flags, "00");
    // A sampled call after it: once its spans are in, the unsampled one's would be too.
    let got = send(
        "GET",
        &shim.url("/api/customers/"),
        &[(
            "traceparent",
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        )],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    collector.trace(CALLER_TRACE, 2).await;
    assert!(
        !collector
            .spans()
            .iter()
            .any(|span| span["traceId"] == unsampled_trace),
        "{:#?}",
        collector.spans()
    );
    // Nor is it an exemplar: it would name a trace nobody can find.
    let metrics = openmetrics(&shim).await;
    assert!(metrics.contains(CALLER_TRACE), "{metrics}");
    assert!(!metrics.contains(unsampled_trace), "{metrics}");
}

#[tokio::test]
async fn a_refusal_without_an_upstream_call_is_noted_on_the_server_span() {
    let collector = Collector::start().await;
    let upstream = FakeUpstream::start(|request| match request.path() {
        "/api/get_customer/" => Reply::json(
            200,
            json!({"success": 1, "customer": customer("example_1", CUSTOMER_TOKEN)}),
        ),
        // One child: the cascade guard refuses the delete.
        "/v2/api/customers/" => Reply::json(
            200,
            json!({"total_count": 1, "results": {"customers": [customer("child", "t2")]}}),
        ),
        other => Reply::json(404, json!({"detail": format!("unexpected {other}")})),
    })
    .await;
    let shim = start_traced(&upstream, &traced(&collector));
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[
            (TOKEN_HEADER, TEAM_TOKEN),
            (
                "traceparent",
                &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
            ),
        ],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 409);
    assert!(
        !upstream
            .requests()
            .iter()
            .any(|request| request.path() == "/api/delete_customer/")
    );
    let spans = collector.trace(CALLER_TRACE, 3).await;
    let server = spans.iter().find(|span| span["kind"] == 2).unwrap();
    assert_eq!(
        attribute(server, "explo.refusal_reason").as_deref(),
        Some("delete_would_cascade")
    );
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("409")
    );
}

#[tokio::test]
async fn with_the_collector_down_requests_succeed_and_dropped_spans_are_counted() {
    let upstream = customer_api().await;
    let collector = ClosedPort::new();
    let down = collector.url();
    // A refused connection is a transient failure, retried for three export timeouts before
    // the batch is dropped: a short timeout keeps that window (1.5 s) well inside the wait
    // below, which the default's 30 s window would outlast.
    let shim = start_traced(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", down),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500".to_owned()),
        ],
    );
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .lines()
            .any(|line| line == "explo_shim_trace_spans_dropped_total 0")
    );
    for _ in 0..3 {
        let got = send(
            "DELETE",
            &shim.url("/api/delete_user_group/"),
            &[(TOKEN_HEADER, TEAM_TOKEN)],
            r#"{"user_group_id": "example_1"}"#,
        )
        .await;
        assert_eq!(got.status, 200);
    }
    until_ok_every(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
            let text = String::from_utf8_lossy(&metrics.body).into_owned();
            let dropped: u64 = text
                .lines()
                .find_map(|line| line.strip_prefix("explo_shim_trace_spans_dropped_total "))
                .and_then(|value| value.parse().ok())
                .expect("the counter is there");
            match dropped > 0 {
                true => Ok(()),
                false => Err(format!("nothing counted as dropped:\n{text}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn without_an_endpoint_the_callers_traceparent_goes_upstream_unchanged() {
    let upstream = customer_api().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let incoming = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let got = send(
        "GET",
        &shim.url("/api/customers/"),
        &[("traceparent", &incoming)],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(upstream.requests()[0].headers["traceparent"], *incoming);
}

#[test]
fn an_invalid_endpoint_stops_start_up_with_64_naming_the_variable() {
    // An unknown sampler is warned about instead (tests/it/otlp.rs).
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
    ] {
        let output = run_binary(
            &[
                "--upstream",
                "http://127.0.0.1:9",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            &[(variable, value)],
        );
        assert_eq!(output.status.code(), Some(64), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{stderr}");
    }
}

#[tokio::test]
async fn a_long_passed_through_path_is_cut_in_its_spans_with_a_marker() {
    let collector = Collector::start().await;
    let upstream = FakeUpstream::always(Reply::json(200, json!({"ok": true}))).await;
    let shim = start_traced(&upstream, &traced(&collector));
    // Distinct bytes, so that the test can tell which ones were kept.
    let segment: String = (0..10_000)
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    let path = format!("/api/{segment}");
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let got = send("GET", &shim.url(&path), &[("traceparent", &caller)], "").await;
    assert_eq!(got.status, 200);
    // The upstream still gets the whole path: only the spans are cut.
    assert_eq!(upstream.requests()[0].path(), path);
    let spans = collector.trace(CALLER_TRACE, 2).await;
    let expected = format!("{}…[{} bytes cut]", &path[..4096], path.len() - 4096);
    for span in &spans {
        assert_eq!(
            attribute(span, "url.path").as_deref(),
            Some(expected.as_str())
        );
    }
    let kinds: Vec<i64> = spans
        .iter()
        .map(|span| span["kind"].as_i64().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{spans:#?}");
    assert!(
        kinds.contains(&2) && kinds.contains(&3),
        "a server and a client span: {kinds:?}"
    );
}

/// `/metrics` as OpenMetrics.
async fn openmetrics(shim: &Shim) -> String {
    String::from_utf8_lossy(&shim.openmetrics().await.body).into_owned()
}

/// The trace ids of the exemplars on the request-duration buckets of `endpoint`'s 2xx series.
fn exemplars(metrics: &str, endpoint: &str) -> Vec<String> {
    let series = format!(r#",endpoint="{endpoint}",status_class="2xx"}}"#);
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("explo_shim_request_duration_seconds_bucket{")
                && line.contains(&series)
        })
        .filter_map(|line| {
            let (_, exemplar) = line.split_once(" # ")?;
            let rest = exemplar.strip_prefix(r#"{trace_id=""#).unwrap();
            let (trace_id, rest) = rest.split_once(r#""} "#).unwrap();
            // Its value and its time.
            let numbers: Vec<f64> = rest.split(' ').map(|n| n.parse().unwrap()).collect();
            assert_eq!(numbers.len(), 2, "{line}");
            Some(trace_id.to_owned())
        })
        .collect()
}

/// The SERVER span among `spans`.
fn server_span(spans: &[Value]) -> &Value {
    let servers: Vec<&Value> = spans.iter().filter(|span| span["kind"] == 2).collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    servers[0]
}

#[tokio::test]
async fn log_lines_and_exemplars_name_the_exported_server_span() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let env = traced(&collector);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shim = Shim::start_with_env(&upstream.url(), &["--access-log"], &env);
    let delete = |traceparent: Option<String>| {
        let url = shim.url("/api/delete_user_group/");
        async move {
            let mut headers = vec![(TOKEN_HEADER, TEAM_TOKEN.to_owned())];
            headers.extend(traceparent.map(|value| ("traceparent", value)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(
                "DELETE",
                &url,
                &headers,
                r#"{"user_group_id": "example_1"}"#,
            )
            .await
        }
    };
    // A trace the shim starts, then one it continues, then a pass-through call it starts.
    let own = delete(None).await;
    let continued = delete(Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))).await;
    let passed = send("GET", &shim.url("/api/customers/"), &[], "").await;
    for got in [&own, &continued, &passed] {
        assert_eq!(got.status, 200);
    }
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        7,
        "two deletes of three calls, one pass-through"
    );
    let own_trace = traceparent(&seen[0]).0;
    assert_eq!(traceparent(&seen[3]).0, CALLER_TRACE);
    let passed_trace = traceparent(&seen[6]).0;
    // Each call, its trace, its spans, and its deprecated-usage lines.
    let cases = [
        (&own, own_trace.as_str(), 4, 1),
        (&continued, CALLER_TRACE, 4, 1),
        (&passed, passed_trace.as_str(), 2, 0),
    ];

    let access = until_ok(Duration::from_secs(10), || async {
        let lines = shim.events_so_far("access");
        match lines.len() >= 3 {
            true => Ok(lines),
            false => Err(format!("{:?}", shim.logs())),
        }
    })
    .await;
    let audit = shim.events("deprecated");
    assert_eq!(audit.len(), 2, "{audit:?}");
    for (got, trace_id, spans, audited) in cases {
        let spans = collector.trace(trace_id, spans).await;
        let server = server_span(&spans);
        let request_id = got.header("x-request-id").unwrap();
        assert_eq!(
            attribute(server, "explo.request_id").as_deref(),
            Some(request_id)
        );
        let mut lines: Vec<&Value> = access
            .iter()
            .filter(|line| line["request_id"] == request_id)
            .collect();
        assert_eq!(lines.len(), 1, "{access:?}");
        lines.extend(audit.iter().filter(|line| line["request_id"] == request_id));
        assert_eq!(lines.len(), 1 + audited, "{audit:?}");
        for line in lines {
            assert_eq!(line["trace_id"], trace_id, "{line}");
            assert_eq!(line["span_id"], server["spanId"], "{line}");
        }
    }

    let metrics = openmetrics(&shim).await;
    assert_eq!(
        exemplars(&metrics, "pass_through"),
        [passed_trace.as_str()],
        "{metrics}"
    );
    // A bucket keeps the last request it counted: the two deletes' traces, or the later one.
    let deletes = exemplars(&metrics, "delete_user_group");
    assert!(!deletes.is_empty(), "{metrics}");
    assert!(
        deletes
            .iter()
            .all(|trace_id| [own_trace.as_str(), CALLER_TRACE].contains(&trace_id.as_str())),
        "{deletes:?}"
    );
    // The Prometheus text has the same counts and no exemplar.
    let text = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&text.body);
    assert!(
        text.lines().any(|line| line
            == r#"explo_shim_request_duration_seconds_count{endpoint="delete_user_group",status_class="2xx"} 2"#),
        "{text}"
    );
    assert!(!text.contains(&passed_trace), "{text}");
}

/// The SERVER span of `trace_id`, once the collector has it.
async fn exported_server_span(collector: &Collector, trace_id: &str) -> Value {
    until_ok(Duration::from_secs(20), || async {
        collector
            .spans()
            .into_iter()
            .find(|span| span["traceId"] == trace_id && span["kind"] == 2)
            .ok_or_else(|| format!("no SERVER span of {trace_id}: {:#?}", collector.spans()))
    })
    .await
}

#[tokio::test]
async fn the_shims_own_answers_and_upstream_failures_join_their_lines_to_the_server_span() {
    let collector = Collector::start().await;
    let upstream = FakeUpstream::start(|request| match request.path() {
        // Held past `upstream.timeout` (3 s: time enough, on a busy machine, for the request shed
        // meanwhile): the shim answers 504.
        "/api/held/" => Reply::json(200, json!({})).delayed(Duration::from_secs(30)),
        _ => Reply::json(200, json!({"success": 1, "customers": []})),
    })
    .await;
    let env = traced(&collector);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = TempConfig::new("[limits]\nmax_in_flight = 1\n");
    let shim = Shim::start_with_env(
        &upstream.url(),
        &[
            "--access-log",
            "--config",
            config.path(),
            "--upstream-timeout",
            "3s",
        ],
        &env,
    );
    // Each request continues a trace of its own, so that its spans can be told apart even
    // when the shim calls no upstream.
    let traceparent =
        |case: u8| format!("00-5bf92f3577b34da6a3ce929d0e0e47{case:02x}-{CALLER_SPAN}-01");
    let held = {
        let url = shim.url("/api/held/");
        let traceparent = traceparent(1);
        tokio::spawn(async move {
            send("GET", &url, &[("traceparent", traceparent.as_str())], "").await
        })
    };
    until(
        Duration::from_secs(10),
        "the held request never reached the upstream",
        || async { (!upstream.requests().is_empty()).then_some(()) },
    )
    .await;
    // The only place in flight is taken: shed.
    let shed = send(
        "GET",
        &shim.url("/api/customers/"),
        &[("traceparent", traceparent(2).as_str())],
        "",
    )
    .await;
    shed.assert_shim_error(503, "overloaded");
    let held = held.await.unwrap();
    held.assert_shim_error(504, "upstream_timeout");
    let refused = send(
        "POST",
        &shim.url("/api/create_user_group/"),
        &[
            ("content-type", "application/json"),
            (TOKEN_HEADER, TEAM_TOKEN),
            ("traceparent", traceparent(3).as_str()),
        ],
        "not json",
    )
    .await;
    refused.assert_shim_error(400, "invalid_json");
    let head = send(
        "HEAD",
        &shim.url("/api/customers/"),
        &[
            (TOKEN_HEADER, TEAM_TOKEN),
            ("traceparent", traceparent(4).as_str()),
        ],
        "",
    )
    .await;
    assert_eq!(head.status, 200);

    // (reply, its case, whether it is a legacy call with a deprecated-usage line)
    let cases = [
        ("upstream timeout", &held, 1, false),
        ("shed", &shed, 2, false),
        ("refused body", &refused, 3, true),
        ("HEAD pass-through", &head, 4, false),
    ];
    let access = until_ok(Duration::from_secs(10), || async {
        let lines = shim.events_so_far("access");
        match lines.len() >= cases.len() {
            true => Ok(lines),
            false => Err(format!("{:?}", shim.logs())),
        }
    })
    .await;
    let audit = shim.events("deprecated");
    for (name, got, case, legacy) in cases {
        let trace_id = format!("5bf92f3577b34da6a3ce929d0e0e47{case:02x}");
        let server = exported_server_span(&collector, &trace_id).await;
        let request_id = got.header("x-request-id").unwrap();
        assert_eq!(
            attribute(&server, "explo.request_id").as_deref(),
            Some(request_id),
            "{name}"
        );
        let mut lines: Vec<&Value> = access
            .iter()
            .filter(|line| line["request_id"] == request_id)
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {access:?}");
        let audited: Vec<&Value> = audit
            .iter()
            .filter(|line| line["request_id"] == request_id)
            .collect();
        assert_eq!(audited.len(), usize::from(legacy), "{name}: {audit:?}");
        lines.extend(audited);
        for line in lines {
            assert_eq!(line["trace_id"], trace_id.as_str(), "{name}: {line}");
            assert_eq!(line["span_id"], server["spanId"], "{name}: {line}");
        }
    }
}
