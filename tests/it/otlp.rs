//! The OTLP export as the OpenTelemetry SDKs configure it: protobuf by default and JSON on
//! request, the operator's headers (API keys, never shown), the resource, gzip, a collector's
//! own CA, the per-request timeout, and the variables that turn it off or that it refuses.
//! The collector (`support::Collector`) decodes with the official definitions.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::tracing::customer_api;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn start(upstream: &FakeUpstream, env: &[(&str, &str)]) -> Shim {
    Shim::start_with_env(&upstream.url(), &[], env)
}

/// A pass-through call carrying a sampled caller's `traceparent`: two spans, one trace.
async fn traced_call(shim: &Shim) {
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let got = send(
        "GET",
        &shim.url("/api/customers/"),
        &[(TOKEN_HEADER, TEAM_TOKEN), ("traceparent", &caller)],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
}

/// `explo_shim_trace_spans_dropped_total` now.
async fn dropped(shim: &Shim) -> u64 {
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|line| line.strip_prefix("explo_shim_trace_spans_dropped_total "))
        .and_then(|value| value.parse().ok())
        .expect("the counter is there")
}

#[tokio::test]
async fn a_legacy_call_arrives_as_gzipped_protobuf_with_the_operators_headers_and_resource() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let endpoint = collector.url();
    let shim = start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-honeycomb-team=hc%20secret%3D42 , x-tenant=eu",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod,k8s.pod.name=shim-7f%2C1",
            ),
            ("OTEL_SERVICE_NAME", "shim-eu"),
            ("OTEL_METRICS_EXPORTER", "prometheus_value_7"),
        ],
    );
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "get, list children, delete");
    let traceparent = seen[0].headers["traceparent"].to_str().unwrap().to_owned();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let spans = collector.trace(&trace_id, 4).await;
    let server: Vec<&Value> = spans.iter().filter(|span| span["kind"] == 2).collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let clients: Vec<&Value> = spans.iter().filter(|span| span["kind"] == 3).collect();
    assert_eq!(clients.len(), 3, "{spans:#?}");
    for client in &clients {
        assert_eq!(client["traceId"], trace_id.as_str());
        assert_eq!(client["parentSpanId"], server[0]["spanId"], "{client}");
    }
    for request in &seen {
        let parent = request.headers["traceparent"].to_str().unwrap();
        let parent = parent.split('-').nth(2).unwrap();
        assert!(
            clients.iter().any(|client| client["spanId"] == parent),
            "{parent} names a client span"
        );
    }
    for post in collector.posts() {
        assert_eq!(post.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(post.header("content-encoding"), Some("gzip"));
        assert_eq!(post.header("x-honeycomb-team"), Some("hc secret=42"));
        assert_eq!(post.header("x-tenant"), Some("eu"));
        assert!(
            post.header("user-agent")
                .is_some_and(|agent| agent.starts_with("explo-shim/")),
            "{:?}",
            post.headers
        );
        let resource = &post.request["resourceSpans"][0];
        let attribute = |key| resource_attribute(resource, key);
        assert_eq!(attribute("service.name").as_deref(), Some("shim-eu"));
        assert_eq!(
            attribute("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let instance = attribute("service.instance.id").unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(&instance).unwrap().get_version_num(),
            4
        );
        assert_eq!(
            attribute("deployment.environment.name").as_deref(),
            Some("prod")
        );
        assert_eq!(attribute("k8s.pod.name").as_deref(), Some("shim-7f,1"));
    }
    // The start-up line names the headers; neither it nor any other line holds a value.
    shim.wait_for_line("the export is announced", |line| {
        line.contains("exporting traces over OTLP/HTTP") && line.contains("x-honeycomb-team")
    })
    .await;
    shim.wait_for_line("OTEL_METRICS_EXPORTER is warned about", |line| {
        line.contains("OTEL_METRICS_EXPORTER") && line.contains("ignored")
    })
    .await;
    for line in shim.logs() {
        for secret in [
            "hc secret",
            "hc%20secret",
            "secret=42",
            "prometheus_value_7",
        ] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}

#[tokio::test]
async fn http_json_is_sent_as_otlp_json_when_asked() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let endpoint = collector.url();
    let shim = start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ],
    );
    traced_call(&shim).await;
    let spans = collector.trace(CALLER_TRACE, 2).await;
    let server = spans.iter().find(|span| span["kind"] == 2).unwrap();
    let client = spans.iter().find(|span| span["kind"] == 3).unwrap();
    assert_eq!(server["parentSpanId"], CALLER_SPAN);
    assert_eq!(client["parentSpanId"], server["spanId"]);
    for post in collector.posts() {
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("content-encoding"), None);
    }
}

/// With the SDK disabled or the exporter `none` there is no tracer: nothing is sent, even by
/// the flush a stop makes (which, tracing on, sends what is queued), and the caller's
/// `traceparent` goes upstream unchanged. Multi-threaded: the collector answers while this
/// thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_sdk_or_exporter_none_sends_nothing_even_at_the_stop() {
    for (off, why) in [
        (None, ""),
        (
            Some(("OTEL_SDK_DISABLED", "true")),
            "OTEL_SDK_DISABLED=true",
        ),
        (
            Some(("OTEL_TRACES_EXPORTER", "none")),
            "OTEL_TRACES_EXPORTER=none",
        ),
    ] {
        let collector = Collector::start().await;
        let upstream = customer_api().await;
        let endpoint = collector.url();
        let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
        env.extend(off);
        let mut shim = start(&upstream, &env);
        traced_call(&shim).await;
        shim.signal("TERM");
        assert!(shim.wait_exit(Duration::from_secs(20)).is_some(), "{why}");
        let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let forwarded = upstream.requests()[0].headers["traceparent"].clone();
        if off.is_none() {
            // The control: the stop's flush delivered the spans.
            assert!(
                !collector.posts().is_empty(),
                "a stop flushes: {:#?}",
                shim.logs()
            );
            assert_ne!(forwarded, *caller);
            continue;
        }
        assert!(
            collector.posts().is_empty(),
            "{why}: {:?}",
            collector.posts()
        );
        assert_eq!(forwarded, *caller, "{why}: no tracer, no span of ours");
        assert!(
            shim.logs()
                .iter()
                .any(|line| line.contains("traces are not exported") && line.contains(why)),
            "{why}"
        );
    }
}

#[test]
fn unusable_otlp_settings_stop_start_up_with_64_naming_the_variable() {
    let secret = "sk_live_hc_9f8e7d6c";
    let headers_without_equals = secret.to_owned();
    let refused_header = format!("content-type={secret}");
    let bad_decoding = format!("x-key={secret}%zz");
    for (variable, value, says) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "use http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", "4318"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "thrift",
            "http/protobuf, http/json",
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "gzip, none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s", "milliseconds"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "otlp"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            &headers_without_equals,
            "no `=`",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            &refused_header,
            "content-type",
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            &bad_decoding,
            "percent-encoded",
        ),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
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
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
                (variable, value),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(variable), "{stderr}");
        assert!(stderr.contains(says), "{variable}: {stderr}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

#[test]
fn check_config_shows_the_otel_settings_redacted_and_warns_of_variables_it_does_not_read() {
    let output = run_binary(
        &["--check-config", "--upstream", "http://127.0.0.1:9"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-honeycomb-team=hc_secret_9,x-honeycomb-dataset=shim",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod",
            ),
            ("OTEL_FOO", "foo_value_7"),
            ("OTEL_EXPORTER_OTLP_HEADER", "typo_value_8"),
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stdout.parse::<toml::Table>().expect("stdout is still TOML");
    for expected in [
        "# - endpoint: https://api.honeycomb.io/v1/traces (OTEL_EXPORTER_OTLP_ENDPOINT)",
        "# - protocol: http/protobuf",
        "# - compression: gzip",
        "# - timeout: 2500 ms per export request",
        "# - certificate: none",
        "# - sampler: parentbased_always_on",
        "deployment.environment.name=\"prod\"",
        "service.version=",
        "# - headers: x-honeycomb-team=<redacted>, x-honeycomb-dataset=<redacted> \
         (OTEL_EXPORTER_OTLP_HEADERS)",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(
        stderr.contains("OTEL_FOO") && stderr.contains("ignored"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "OTEL_EXPORTER_OTLP_HEADER is not an OpenTelemetry variable explo-shim reads"
        ) && stderr.contains("did you mean OTEL_EXPORTER_OTLP_HEADERS?"),
        "{stderr}"
    );
    for secret in ["hc_secret_9", "foo_value_7", "typo_value_8", "dataset=shim"] {
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
    // Off, it says why.
    let output = run_binary(
        &["--check-config", "--upstream", "http://127.0.0.1:9"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("# - export: off (OTEL_TRACES_EXPORTER=none)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn an_https_collector_is_trusted_through_otel_exporter_otlp_certificate() {
    let pki = TestPki::new();
    let collector = Collector::start_tls(&pki).await;
    let ca = TempConfig::new(&pki.ca_pem);
    let upstream = customer_api().await;
    let endpoint = collector.url();
    let shim = start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.path()),
        ],
    );
    traced_call(&shim).await;
    collector.trace(CALLER_TRACE, 2).await;
    assert_eq!(dropped(&shim).await, 0);
    // Without it the collector's certificate is not trusted: the spans are dropped, counted.
    drop(shim);
    let shim = start(&upstream, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let posts_before = collector.posts().len();
    traced_call(&shim).await;
    until_ok(Duration::from_secs(20), || async {
        match dropped(&shim).await {
            0 => Err("no span counted as dropped".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    assert_eq!(collector.posts().len(), posts_before);
}

/// A collector that takes the request and never answers: the calls go on at full speed, each
/// export gives up at `OTEL_EXPORTER_OTLP_TIMEOUT`, and the next batch is still sent.
#[tokio::test]
async fn a_collector_slower_than_the_timeout_holds_up_no_request_and_each_export_ends() {
    let collector = Collector::start_silent().await;
    let upstream = customer_api().await;
    let endpoint = collector.url();
    let shim = start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ],
    );
    for _ in 0..3 {
        let started = Instant::now();
        traced_call(&shim).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let line = shim
        .wait_for_line("the export gives up", |line| {
            line.contains("trace export failed")
        })
        .await;
    assert!(line.contains("no reply in 300ms"), "{line}");
    until_ok(Duration::from_secs(20), || async {
        match dropped(&shim).await {
            0 => Err("no span counted as dropped".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    // The exporter is not stuck on the first request: later spans are sent too.
    traced_call(&shim).await;
    until_ok(Duration::from_secs(20), || async {
        match collector.posts().len() {
            0 | 1 => Err(format!("{} export requests", collector.posts().len())),
            _ => Ok(()),
        }
    })
    .await;
}
