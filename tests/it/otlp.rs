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

/// A shim in front of `upstream` that exports its traces to `collector`, with `env` besides.
fn exporting_to(collector: &Collector, upstream: &FakeUpstream, env: &[(&str, &str)]) -> Shim {
    let endpoint = collector.url();
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    all.extend_from_slice(env);
    start(upstream, &all)
}

/// A pass-through call carrying a sampled caller's `traceparent`: two spans, one trace.
async fn traced_call(shim: &Shim) {
    traced_call_in(shim, CALLER_TRACE).await;
}

/// [`traced_call`], in the caller's trace `trace_id`.
async fn traced_call_in(shim: &Shim, trace_id: &str) {
    let caller = format!("00-{trace_id}-{CALLER_SPAN}-01");
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
    let shim = exporting_to(
        &collector,
        &upstream,
        &[
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
    let shim = exporting_to(
        &collector,
        &upstream,
        &[
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
        let mut shim = exporting_to(&collector, &upstream, off.as_slice());
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
    let userinfo = format!("http://user:{secret}@127.0.0.1:9/");
    let not_a_url = format!("http://127.0.0.1:9/{secret} x");
    for (variable, value, says) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "use http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc", "4318"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "thrift",
            "http/protobuf, http/json",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC", "4318"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &userinfo,
            "put the credentials in OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &userinfo,
            "put the credentials in OTEL_EXPORTER_OTLP_HEADERS",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &not_a_url, "is not a URL"),
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
    let shim = exporting_to(
        &collector,
        &upstream,
        &[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca.path())],
    );
    traced_call(&shim).await;
    collector.trace(CALLER_TRACE, 2).await;
    assert_eq!(dropped(&shim).await, 0);
    // Without it the collector's certificate is not trusted: the spans are dropped, counted.
    drop(shim);
    let shim = exporting_to(&collector, &upstream, &[]);
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

/// A collector that reads every export and never answers, the Customer API, and a shim that
/// exports to the collector with `OTEL_EXPORTER_OTLP_TIMEOUT` = `timeout_ms`.
async fn exporting_to_a_silent_collector(timeout_ms: &str) -> (Collector, FakeUpstream, Shim) {
    let collector = Collector::start_silent().await;
    let upstream = customer_api().await;
    let shim = exporting_to(
        &collector,
        &upstream,
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", timeout_ms)],
    );
    (collector, upstream, shim)
}

/// Until the collector has had its first export request.
async fn until_exported(collector: &Collector) {
    until_ok(Duration::from_secs(20), || async {
        match collector.posts().len() {
            0 => Err("no export yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
}

/// A collector that takes the export and never answers, with the longest timeout: the calls
/// made while that export is held all complete (each within `send`'s 20 s clock, a third of
/// the export's), and the exporter is still on its first request when they have.
#[tokio::test]
async fn an_export_the_collector_holds_holds_up_no_request() {
    let (collector, _upstream, shim) = exporting_to_a_silent_collector("60000").await;
    traced_call(&shim).await;
    until_exported(&collector).await;
    for _ in 0..3 {
        traced_call(&shim).await;
    }
    assert_eq!(collector.posts().len(), 1, "the first export is still held");
    assert_eq!(dropped(&shim).await, 0);
}

/// A collector that takes the request and never answers: each export gives up at
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, its spans are counted as dropped, and the next batch is
/// still sent.
#[tokio::test]
async fn a_collector_slower_than_the_timeout_has_each_export_end() {
    let (collector, _upstream, shim) = exporting_to_a_silent_collector("300").await;
    traced_call(&shim).await;
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
    // The exporter is not stuck on the first request: later spans are sent too (their own
    // trace, so that a retry of the first batch is not taken for them).
    let later = "5c0ffee5c0ffee5c0ffee5c0ffee5c0f";
    traced_call_in(&shim, later).await;
    until_ok(Duration::from_secs(20), || async {
        match collector
            .spans()
            .iter()
            .any(|span| span["traceId"] == later)
        {
            true => Ok(()),
            false => Err(format!("{} export requests", collector.posts().len())),
        }
    })
    .await;
}

/// `OTEL_*` output of a `--check-config` run with `env`: (exit code, stdout, stderr).
fn check_config(env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = run_binary(&["--check-config", "--upstream", "http://127.0.0.1:9"], env);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A base endpoint with a path and a query: the traces path goes after the base path, the
/// query stays and is sent, and no log line, failure warning or `--check-config` shows its
/// value.
#[tokio::test]
async fn a_base_endpoint_keeps_its_path_and_query_and_no_display_shows_the_query() {
    // The first export is refused (400, not retried): its warning shows the endpoint too.
    let collector = Collector::start_answering(vec![(400, None)]).await;
    let upstream = customer_api().await;
    let endpoint = format!("{}/base/?tenant=QSECRET", collector.url());
    let shim = start(&upstream, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    traced_call(&shim).await;
    let warning = shim
        .wait_for_line("the refused export is warned about", |line| {
            line.contains("trace export failed")
        })
        .await;
    assert!(warning.contains("400"), "{warning}");
    traced_call(&shim).await;
    until_ok(Duration::from_secs(20), || async {
        match collector
            .posts()
            .iter()
            .filter(|post| post.status == 200)
            .count()
        {
            0 => Err(format!("no delivered export: {:?}", collector.posts())),
            _ => Ok(()),
        }
    })
    .await;
    for post in collector.posts() {
        assert_eq!(post.target, "/base/v1/traces?tenant=QSECRET");
    }
    let announced = shim
        .wait_for_line("the export is announced", |line| {
            line.contains("exporting traces over OTLP/HTTP")
        })
        .await;
    assert!(
        announced.contains("/base/v1/traces?tenant=<redacted>"),
        "{announced}"
    );
    for line in shim.logs() {
        assert!(!line.contains("QSECRET"), "{line}");
    }
    let (code, stdout, stderr) = check_config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("/base/v1/traces?tenant=<redacted> (OTEL_EXPORTER_OTLP_ENDPOINT)"),
        "{stdout}"
    );
    assert!(!stdout.contains("QSECRET") && !stderr.contains("QSECRET"));
}

/// Values in any case, and an exporter list naming one the shim does not have besides otlp:
/// spans are exported as asked, with a warning, rather than the shim refusing to start.
#[tokio::test]
async fn values_in_any_case_and_otlp_with_console_export_with_a_warning() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let shim = exporting_to(
        &collector,
        &upstream,
        &[
            ("OTEL_TRACES_EXPORTER", "OTLP,console"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/JSON"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
            ("OTEL_TRACES_SAMPLER", "Always_On"),
        ],
    );
    traced_call(&shim).await;
    collector.trace(CALLER_TRACE, 2).await;
    for post in collector.posts() {
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("content-encoding"), Some("gzip"));
    }
    let warning = shim
        .wait_for_line("console is warned about", |line| {
            line.contains("OTEL_TRACES_EXPORTER") && line.contains("console")
        })
        .await;
    assert!(warning.contains("only otlp is used"), "{warning}");
}

/// An unknown sampler or compression, a timeout that is not a number or is huge: warned
/// about, the default (or the cap) used, and `--check-config` shows what is in force.
#[test]
fn unknown_choices_warn_and_default_and_a_huge_timeout_is_clamped() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_TRACES_SAMPLER", "AlwaysOn"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "18446744073709551615"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
    ];
    let (code, stdout, stderr) = check_config(&env);
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        "# - sampler: parentbased_always_on",
        "# - compression: none",
        "# - timeout: 60000 ms per export request",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    for expected in [
        "OTEL_TRACES_SAMPLER is \"AlwaysOn\"",
        "OTEL_EXPORTER_OTLP_COMPRESSION is \"zstd\"",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT is over the limit: clamped to 60000 ms",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    let (code, stdout, stderr) = check_config(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the default 10000 ms is used"), "{stderr}");
    assert!(stdout.contains("# - export: off"), "{stdout}");
    // otlp asked for, no endpoint: a warning, not a quiet INFO line.
    let (code, _, stderr) = check_config(&[("OTEL_TRACES_EXPORTER", "otlp")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("OTEL_TRACES_EXPORTER asks for otlp but no traces are exported"),
        "{stderr}"
    );
}

/// `OTEL_SDK_DISABLED=TRUE`: the other variables are not read, so a bad one does not stop the
/// shim, and nothing is sent, even at the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_sdk_starts_despite_bad_variables_and_sends_nothing() {
    let collector = Collector::start().await;
    let upstream = customer_api().await;
    let mut shim = exporting_to(
        &collector,
        &upstream,
        &[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    traced_call(&shim).await;
    shim.signal("TERM");
    assert!(shim.wait_exit(Duration::from_secs(20)).is_some());
    assert!(collector.posts().is_empty(), "{:?}", collector.posts());
    assert!(
        shim.logs()
            .iter()
            .any(|line| line.contains("traces are not exported")
                && line.contains("OTEL_SDK_DISABLED=true")),
        "{:#?}",
        shim.logs()
    );
}

/// The spans of the caller's trace in the requests the collector took (answered 2xx).
fn delivered(collector: &Collector) -> Vec<String> {
    let mut ids = vec![];
    for post in collector
        .posts()
        .into_iter()
        .filter(|post| post.status == 200)
    {
        for resource in post.request["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    if span["traceId"] == CALLER_TRACE {
                        ids.push(span["spanId"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    ids
}

/// A collector overloaded for a moment (503, then 429 with `Retry-After: 1`): the batch is
/// sent again, after the collector's wait, and its spans arrive once; nothing is dropped.
#[tokio::test]
async fn a_transient_refusal_is_retried_and_retry_after_is_honoured() {
    for (reply, at_least) in [
        ((503, None), Duration::ZERO),
        ((429, Some("1")), Duration::from_millis(950)),
    ] {
        let collector = Collector::start_answering(vec![reply]).await;
        let upstream = customer_api().await;
        let shim = exporting_to(&collector, &upstream, &[]);
        traced_call(&shim).await;
        until_ok(Duration::from_secs(20), || async {
            match delivered(&collector).len() {
                2 => Ok(()),
                n => Err(format!("{n} spans delivered: {:?}", collector.posts())),
            }
        })
        .await;
        let posts = collector.posts();
        assert_eq!(posts.len(), 2, "{reply:?}: one refused, one taken");
        assert_eq!(posts[0].status, reply.0);
        assert_eq!(posts[0].request, posts[1].request, "the same batch again");
        assert!(
            posts[1].at.duration_since(posts[0].at) >= at_least,
            "{reply:?}: retried after {:?}",
            posts[1].at.duration_since(posts[0].at)
        );
        let mut ids = delivered(&collector);
        ids.dedup();
        assert_eq!(ids.len(), 2, "each span once");
        assert_eq!(dropped(&shim).await, 0);
    }
}

/// A stop while the exporter waits out a collector's long `Retry-After`: the shim exits within
/// its flush bound, not after the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cuts_a_retry_wait_short() {
    let collector = Collector::start_answering(vec![(503, Some("30"))]).await;
    let upstream = customer_api().await;
    let mut shim = exporting_to(
        &collector,
        &upstream,
        &[
            // A window of three minutes: the 30 s wait fits in it.
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ],
    );
    traced_call(&shim).await;
    until_exported(&collector).await;
    let stopped = Instant::now();
    shim.signal("TERM");
    assert!(shim.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(collector.posts().len(), 1, "not retried once stopping");
}
