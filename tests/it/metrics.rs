//! `/metrics` of the real binary: the series that exist before any request, the `process_*`
//! metrics, upstream errors by reason, and the two text formats by `Accept`.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::support::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const UPDATE: &str = "/api/update_user_group/";
const ENDPOINTS: [&str; 4] = [
    "create_user_group",
    "update_user_group",
    "delete_user_group",
    "refresh_user_group_token",
];
const REASONS: [&str; 5] = ["connect", "timeout", "reset", "tls", "invalid_reply"];

async fn scrape(shim: &Shim, accept: Option<&str>) -> Got {
    let headers: Vec<(&str, &str)> = accept.map(|value| ("accept", value)).into_iter().collect();
    send("GET", &shim.admin_url("/metrics"), &headers, "").await
}

async fn scrape_text(shim: &Shim) -> String {
    String::from_utf8_lossy(&scrape(shim, None).await.body).into_owned()
}

/// The value of the sample named exactly `name` (labels included).
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn upstream_errors(reason: &str) -> String {
    format!(r#"explo_shim_upstream_errors_total{{reason="{reason}"}}"#)
}

/// Every other reason still at 0: one failure is counted once, under one reason.
fn assert_only(text: &str, reason: &str, count: f64) {
    for other in REASONS {
        let expected = if other == reason { count } else { 0.0 };
        assert_eq!(
            value(text, &upstream_errors(other)),
            expected,
            "{other}\n{text}"
        );
    }
}

#[tokio::test]
async fn before_any_request_every_known_series_is_there_at_zero() {
    // Nothing listens upstream: no request is made, so none is needed.
    let closed = ClosedPort::new();
    let shim = Shim::start(&closed.url(), &[]);
    let text = scrape_text(&shim).await;
    for endpoint in ENDPOINTS {
        for reason in ["brownout", "sunset"] {
            let name = format!(
                r#"explo_shim_legacy_refused_total{{endpoint="{endpoint}",reason="{reason}"}}"#
            );
            assert_eq!(value(&text, &name), 0.0, "{name}");
        }
        let name = format!(r#"explo_shim_untranslated_successes_total{{endpoint="{endpoint}"}}"#);
        assert_eq!(value(&text, &name), 0.0, "{name}");
    }
    assert_only(&text, "connect", 0.0);
    for name in [
        "explo_shim_connections_open",
        "explo_shim_requests_in_flight",
        "explo_shim_cascade_refused_total",
        "explo_shim_cascade_unverified_total",
    ] {
        assert_eq!(value(&text, name), 0.0, "{name}");
    }
    assert!(value(&text, "explo_shim_connection_limit") > 0.0);
    // The client-labelled family is declared before its first client.
    assert!(
        text.lines()
            .any(|line| line == "# TYPE explo_shim_legacy_calls_total counter"),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        assert!(value(&text, "process_resident_memory_bytes") > 0.0);
        assert!(value(&text, "process_virtual_memory_bytes") > 0.0);
        assert!(value(&text, "process_open_fds") > 0.0);
        assert!(value(&text, "process_cpu_seconds_total") >= 0.0);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value(&text, "process_start_time_seconds");
        assert!(
            (now - started).abs() < 86_400.0,
            "started {started}, now {now}"
        );
        // The max is the soft limit, absent only when unlimited.
        if text.contains("process_max_fds ") {
            assert!(value(&text, "process_max_fds") >= value(&text, "process_open_fds"));
        }
    } else {
        assert!(!text.contains("process_"), "{text}");
    }
}

#[tokio::test]
async fn a_refused_connection_counts_as_connect() {
    let closed = ClosedPort::new();
    let shim = Shim::start(&closed.url(), &[]);
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_unreachable");
    post_json(&shim.url(UPDATE), &json!({"user_group_id": "g1"}))
        .await
        .assert_shim_error(502, "upstream_unreachable");
    assert_only(&scrape_text(&shim).await, "connect", 2.0);
}

#[tokio::test]
async fn an_upstream_silent_past_the_timeout_counts_as_timeout() {
    let upstream = RawUpstream::start(|mut stream| async move {
        read_request(&mut stream).await;
        // Silent for as long as the test lasts.
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await;
    let shim = Shim::start(&upstream.url(), &["--upstream-timeout", "300ms"]);
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(504, "upstream_timeout");
    assert_only(&scrape_text(&shim).await, "timeout", 1.0);
}

/// An upstream that answers every request with `reply`, then closes the connection.
async fn answering(reply: &'static [u8]) -> RawUpstream {
    RawUpstream::start(move |mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream.write_all(reply).await;
        let _ = stream.flush().await;
        drop(stream);
    })
    .await
}

#[tokio::test]
async fn an_upstream_closing_mid_reply_counts_as_reset() {
    // Mid-head: no reply the shim could pass on (502), on either route.
    let upstream = answering(b"HTTP/1.1 200 OK\r\ncontent-ty").await;
    let shim = Shim::start(&upstream.url(), &[]);
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_failed");
    post_json(&shim.url(UPDATE), &json!({"user_group_id": "g1"}))
        .await
        .assert_shim_error(502, "upstream_failed");
    assert_only(&scrape_text(&shim).await, "reset", 2.0);
}

#[tokio::test]
async fn a_pass_through_body_cut_short_counts_as_reset() {
    // The head has gone to the client already: the shim can only cut its body short too, and
    // this counter is where the operator sees it happened.
    let upstream = answering(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\npartial",
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let seen = raw_exchange(
        shim.addr,
        b"GET /api/dashboard/ HTTP/1.1\r\nhost: shim\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    shim.wait_for_metric(
        &format!("{} 1", upstream_errors("reset")),
        "a body cut short is counted as reset",
    )
    .await;
    assert_only(&scrape_text(&shim).await, "reset", 1.0);
}

#[tokio::test]
async fn a_reply_that_is_not_http_counts_as_invalid_reply() {
    let upstream = answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let shim = Shim::start(&upstream.url(), &[]);
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_failed");
    assert_only(&scrape_text(&shim).await, "invalid_reply", 1.0);
}

#[tokio::test]
async fn an_upstream_that_does_not_speak_tls_counts_as_tls() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"ok": true}))).await;
    let https = upstream.url().replace("http://", "https://");
    let shim = Shim::start(&https, &[]);
    send("GET", &shim.url("/api/dashboard/"), &[], "")
        .await
        .assert_shim_error(502, "upstream_unreachable");
    assert_only(&scrape_text(&shim).await, "tls", 1.0);
}

/// The names a 0.0.4 `# TYPE` line declares samples for.
fn declared_names(line: &str) -> Vec<String> {
    let mut words = line.split(' ').skip(2);
    let (name, kind) = (words.next().unwrap(), words.next().unwrap());
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|suffix| format!("{name}{suffix}"))
            .collect(),
        _ => vec![name.to_owned()],
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_unless_openmetrics_is_asked_for() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"ok": true}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    // Some samples in the histograms and counters first.
    send("GET", &shim.url("/api/dashboard/"), &[], "").await;

    for accept in [
        None,
        Some("*/*"),
        Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
    ] {
        let got = scrape(&shim, accept).await;
        assert_eq!(
            got.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept:?}"
        );
        let text = String::from_utf8_lossy(&got.body).into_owned();
        assert!(!text.contains("# EOF"), "{text}");
        // Every sample is named by a `# TYPE` line of a 0.0.4 type before it.
        let mut declared = BTreeSet::new();
        for line in text.lines() {
            if line.starts_with("# TYPE ") {
                let kind = line.rsplit(' ').next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "untyped"].contains(&kind),
                    "{line}"
                );
                declared.extend(declared_names(line));
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} undeclared in\n{text}");
                let sample_value = line.rsplit(' ').next().unwrap();
                assert!(sample_value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(declared.contains("explo_shim_pass_through_requests_total"));
        assert!(declared.contains("explo_shim_build_info"));
    }

    let got = scrape(
        &shim,
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"),
    )
    .await;
    assert_eq!(
        got.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = String::from_utf8_lossy(&got.body).into_owned();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.lines()
            .any(|line| line == "# TYPE explo_shim_pass_through_requests counter"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line == "# TYPE explo_shim_build info"),
        "{text}"
    );
}

/// One request-duration series as the 0.0.4 text has it.
struct Durations {
    count: f64,
    sum: f64,
    /// Each bucket's bound and count, in order.
    buckets: Vec<(String, f64)>,
}

/// The series of `endpoint` and `class`; `None` when it does not exist.
fn durations(text: &str, endpoint: &str, class: &str) -> Option<Durations> {
    let labels = format!(r#"endpoint="{endpoint}",status_class="{class}""#);
    let name = |suffix: &str| format!("explo_shim_request_duration_seconds_{suffix}{{{labels}}}");
    let count = text
        .lines()
        .find_map(|line| line.strip_prefix(&name("count"))?.strip_prefix(' '))?
        .parse()
        .unwrap();
    let bucket = format!("explo_shim_request_duration_seconds_bucket{{{labels},le=\"");
    let buckets = text
        .lines()
        .filter_map(|line| {
            let (bound, count) = line.strip_prefix(&bucket)?.split_once("\"} ")?;
            Some((bound.to_owned(), count.parse().unwrap()))
        })
        .collect();
    Some(Durations {
        count,
        sum: value(text, &name("sum")),
        buckets,
    })
}

#[tokio::test]
async fn each_request_is_timed_as_its_client_saw_it_by_endpoint_and_status_class() {
    let upstream = team_only_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    // Every observation lies between the moment its request was sent and the moment a scrape
    // showed it: no wall-clock threshold, only what this test's own clock saw.
    let began = std::time::Instant::now();
    let translated = post_json(&shim.url(UPDATE), &json!({"user_group_id": "g1"})).await;
    assert_eq!(translated.status, 200);
    let team = [(TOKEN_HEADER, TEAM_TOKEN)];
    let passed = send("GET", &shim.url("/api/customers/"), &team, "").await;
    assert_eq!(passed.status, 200);
    // A HEAD: no body is sent, the client still saw the request through.
    let head = send("HEAD", &shim.url("/api/customers/"), &team, "").await;
    assert_eq!(head.status, 200);
    // Answered by the shim itself, asking no upstream: counted under the endpoint addressed.
    let json = [("content-type", "application/json"), team[0]];
    send("POST", &shim.url(UPDATE), &json, "not json")
        .await
        .assert_shim_error(400, "invalid_json");
    // A credential the upstream refuses: its 401, passed on.
    let refused = send("GET", &shim.url("/api/customers/"), &[], "").await;
    assert_eq!(refused.status, 401);
    // Observed when the reply's last byte has gone, a moment after the client has it.
    shim.wait_for_metric(
        r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="4xx"} 1"#,
        "the refused pass-through request is timed",
    )
    .await;
    shim.wait_for_metric(
        r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="2xx"} 2"#,
        "the pass-through GET and HEAD are timed",
    )
    .await;
    let text = scrape_text(&shim).await;
    let window = began.elapsed().as_secs_f64();
    let series = [
        ("update_user_group", "2xx", 1.0),
        ("update_user_group", "4xx", 1.0),
        ("pass_through", "2xx", 2.0),
        ("pass_through", "4xx", 1.0),
    ];
    for (endpoint, class, expected) in series {
        let Durations {
            count,
            sum,
            buckets,
        } = durations(&text, endpoint, class)
            .unwrap_or_else(|| panic!("no {endpoint} {class} in\n{text}"));
        assert_eq!(count, expected, "{endpoint} {class}");
        assert!(
            sum > 0.0 && sum <= expected * window,
            "{endpoint} {class}: {sum} s for {expected} requests, all within {window} s"
        );
        let bounds: Vec<&str> = buckets.iter().map(|(bound, _)| bound.as_str()).collect();
        assert_eq!(
            bounds,
            [
                "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                "2.5", "5", "10", "30", "60", "+Inf"
            ],
            "{endpoint} {class}"
        );
        assert!(
            buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
            "cumulative: {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap().1, expected);
    }
    // Made at their first request only, and the admin listener's scrapes are not counted.
    let made = text
        .lines()
        .filter(|line| line.starts_with("explo_shim_request_duration_seconds_count"))
        .count();
    assert_eq!(made, series.len(), "{text}");
}

/// Sends `request` on a connection of its own, waits until the upstream has the call the shim
/// made for it, then gives up after `patience` without a reply, as a client's timeout would,
/// and closes the connection. Returns how long the client waited after the upstream had the
/// call: the least the shim can have seen of the request.
async fn give_up_on(
    shim: &Shim,
    upstream: &FakeUpstream,
    request: &str,
    patience: Duration,
) -> f64 {
    use tokio::io::AsyncReadExt;
    let before = upstream.requests().len();
    let mut stream = tokio::net::TcpStream::connect(shim.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    until(
        Duration::from_secs(10),
        "the upstream has the call",
        || async { (upstream.requests().len() > before).then_some(()) },
    )
    .await;
    let held = std::time::Instant::now();
    let mut reply = [0u8; 1];
    let read = tokio::time::timeout(patience, stream.read(&mut reply)).await;
    assert!(
        read.is_err(),
        "no reply while the upstream holds it: {read:?}"
    );
    let waited = held.elapsed().as_secs_f64();
    drop(stream);
    waited
}

#[tokio::test]
async fn a_request_its_client_gives_up_on_is_timed_as_aborted() {
    // The upstream holds every reply far longer than the clients wait.
    let upstream = FakeUpstream::always(
        Reply::json(200, json!({"team_id": 1})).delayed(Duration::from_secs(30)),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &["--upstream-timeout", "60s"]);
    let patience = Duration::from_millis(300);
    let body = json!({"user_group_id": "g1"}).to_string();
    let translated = format!(
        "POST /api/create_user_group/ HTTP/1.1\r\nhost: shim\r\ncontent-type: application/json\r\n\
         {TOKEN_HEADER}: {TEAM_TOKEN}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let created = give_up_on(&shim, &upstream, &translated, patience).await;
    let passed = give_up_on(
        &shim,
        &upstream,
        &format!(
            "GET /api/customers/ HTTP/1.1\r\nhost: shim\r\n{TOKEN_HEADER}: {TEAM_TOKEN}\r\n\r\n"
        ),
        patience,
    )
    .await;
    for endpoint in ["create_user_group", "pass_through"] {
        shim.wait_for_metric(
            &format!(
                r#"explo_shim_request_duration_seconds_count{{endpoint="{endpoint}",status_class="aborted"}} 1"#
            ),
            "the request its client gave up on is timed, once",
        )
        .await;
    }
    let text = scrape_text(&shim).await;
    for (endpoint, waited) in [("create_user_group", created), ("pass_through", passed)] {
        let aborted = durations(&text, endpoint, "aborted").unwrap();
        assert_eq!(aborted.count, 1.0, "{endpoint}");
        assert!(
            aborted.sum >= waited,
            "{endpoint}: observed {} s, the client waited {waited} s",
            aborted.sum
        );
        assert_eq!(aborted.buckets.last().unwrap().1, 1.0, "{endpoint}");
    }
    // Nothing else was timed: no reply was ever made.
    let made: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("explo_shim_request_duration_seconds_count"))
        .collect();
    assert_eq!(made.len(), 2, "{text}");
}

/// Over HTTP/2 a client gives up on one stream (`RST_STREAM`), not on its connection: that
/// request is timed as aborted too, and the client's next stream is served and timed as usual.
#[tokio::test]
async fn an_http2_stream_its_client_resets_is_timed_as_aborted() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let upstream = FakeUpstream::start(|request| {
        let reply = Reply::json(200, json!({"team_id": 1}));
        match request.path() {
            "/api/held/" => reply.delayed(Duration::from_secs(30)),
            _ => reply,
        }
    })
    .await;
    let shim = Shim::start(&upstream.url(), &["--upstream-timeout", "60s"]);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let get = |path: &str| {
        http::Request::get(shim.url(path))
            .header(TOKEN_HEADER, TEAM_TOKEN)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // The first stream opens the connection; the held one is dropped once it is upstream,
    // which resets its stream.
    let first = client.request(get("/api/customers/")).await.unwrap();
    assert_eq!(first.version(), http::Version::HTTP_2);
    let held = client.request(get("/api/held/"));
    tokio::select! {
        _ = held => panic!("the held request was answered"),
        () = async {
            until(Duration::from_secs(10), "the held request never went upstream", || async {
                upstream.requests().iter().any(|seen| seen.path() == "/api/held/").then_some(())
            })
            .await;
        } => {}
    }
    shim.wait_for_metric(
        r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="aborted"} 1"#,
        "the reset stream is timed as aborted",
    )
    .await;
    // The next stream is answered and timed as usual.
    let after = client.request(get("/api/customers/")).await.unwrap();
    assert_eq!(after.version(), http::Version::HTTP_2);
    assert_eq!(after.status(), 200);
    shim.wait_for_metric(
        r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="2xx"} 2"#,
        "the streams before and after are timed",
    )
    .await;
}

#[tokio::test]
async fn build_info_names_the_revision_the_binary_was_built_from() {
    let closed = ClosedPort::new();
    let shim = Shim::start(&closed.url(), &[]);
    let text = scrape_text(&shim).await;
    // The tests are built in the same run, with the same `EXPLO_SHIM_COMMIT`, as the binary.
    let revision = option_env!("EXPLO_SHIM_COMMIT")
        .filter(|commit| !commit.is_empty())
        .unwrap_or("unknown");
    let line = format!(
        r#"explo_shim_build_info{{version="{}",revision="{revision}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
}

/// The sample lines of `name` in `text`, labels and value.
fn samples_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .collect()
}

#[tokio::test]
async fn the_sunset_and_the_last_reloads_outcome_follow_each_reload() {
    let closed = ClosedPort::new();
    let config = TempConfig::new("[deprecation]\nsunset = \"2027-03-01\"\n");
    let shim = Shim::start(&closed.url(), &["--config", config.path()]);
    let text = scrape_text(&shim).await;
    assert_eq!(
        samples_of(&text, "explo_shim_sunset_timestamp_seconds"),
        ["explo_shim_sunset_timestamp_seconds 1803859200"],
        "2027-03-01T00:00:00Z"
    );
    assert_eq!(
        samples_of(&text, "explo_shim_config_last_reload_successful"),
        ["explo_shim_config_last_reload_successful 1"],
        "the configuration it started on was accepted"
    );

    // Another sunset: the gauge follows the reload.
    std::fs::write(&config.0, "[deprecation]\nsunset = \"2027-06-30\"\n").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="success"} 1"#,
        "the reload ended",
    )
    .await;
    let text = scrape_text(&shim).await;
    assert_eq!(
        samples_of(&text, "explo_shim_sunset_timestamp_seconds"),
        ["explo_shim_sunset_timestamp_seconds 1814313600"]
    );
    assert_eq!(
        value(&text, "explo_shim_config_last_reload_successful"),
        1.0
    );

    // A refused file: 0, and the sunset in service stays.
    std::fs::write(&config.0, "[deprecation]\nsunset = \"next spring\"\n").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="failure"} 1"#,
        "the refusal ended",
    )
    .await;
    let text = scrape_text(&shim).await;
    assert_eq!(
        value(&text, "explo_shim_config_last_reload_successful"),
        0.0
    );
    assert_eq!(
        value(&text, "explo_shim_sunset_timestamp_seconds"),
        1_814_313_600.0
    );

    // A good file without a sunset: back to 1, and the sunset has no sample, only its
    // declaration.
    std::fs::write(&config.0, "[deprecation]\n").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="success"} 2"#,
        "the second good reload ended",
    )
    .await;
    let text = scrape_text(&shim).await;
    assert_eq!(
        value(&text, "explo_shim_config_last_reload_successful"),
        1.0
    );
    assert_eq!(
        samples_of(&text, "explo_shim_sunset_timestamp_seconds"),
        Vec::<&str>::new(),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line == "# TYPE explo_shim_sunset_timestamp_seconds gauge"),
        "{text}"
    );
}
