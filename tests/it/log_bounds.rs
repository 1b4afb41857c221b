//! Queues and logs under floods and stalled readers, against the real binary: the log queue is
//! bounded in bytes when nobody reads stderr, a long query is cut in its access line, the trace
//! exporter reads only a little of a collector's reply, and refusals are summarised in the log
//! while the metrics count every one.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;

use crate::support::*;

/// The resident memory of process `pid`, in bytes (`VmRSS` in `/proc/PID/status`).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib * 1024
}

/// A memory ceiling well above what the bounded queues allow (a few MiB each, on a process of
/// about 20 MB) and well below what the unbounded ones reached (hundreds of MB).
const MEMORY_CEILING_BYTES: u64 = 100 * 1024 * 1024;

/// The shim with its stderr on a pipe the test reads only when it says so: a stalled log
/// collector.
struct UnreadShim {
    child: Child,
    stderr: Option<BufReader<ChildStderr>>,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl UnreadShim {
    /// Starts the shim and reads its stderr up to the "listening" line, then no further.
    // The child is killed and waited for by `Drop`, or before the panic when it exits early.
    #[allow(clippy::zombie_processes)]
    fn start(upstream_url: &str, extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_explo-shim"))
            .args(["--upstream", upstream_url])
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .env_remove("EXPLO_SHIM_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn explo-shim");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                let status = child.wait();
                panic!("explo-shim exited before listening: {status:?}");
            }
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["message"] == "explo-shim listening" {
                return Self {
                    child,
                    stderr: Some(stderr),
                    addr: event["listen"].as_str().unwrap().parse().unwrap(),
                    admin: event["admin"].as_str().unwrap().parse().unwrap(),
                };
            }
        }
    }

    /// From now on, stderr is read: its lines are collected as they come.
    fn drain(&mut self) -> Arc<Mutex<Vec<String>>> {
        let stderr = self.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        lines
    }
}

impl Drop for UnreadShim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the unlabelled `metric` on `/metrics`.
async fn metric(admin: SocketAddr, metric: &str) -> u64 {
    let text = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&text.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{metric} ")))
        .unwrap_or_else(|| panic!("no {metric} in {text}"))
        .parse()
        .unwrap()
}

/// Sends `count` GETs of `path_and_query` to `addr` over `connections` keep-alive connections,
/// and returns their statuses.
async fn flood(
    addr: SocketAddr,
    path_and_query: &str,
    count: usize,
    connections: usize,
) -> Vec<u16> {
    let url = format!("http://{addr}{path_and_query}");
    let mut senders = Vec::new();
    for connection in 0..connections {
        let url = url.clone();
        let share = count / connections + usize::from(connection < count % connections);
        senders.push(tokio::spawn(async move {
            let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            let mut statuses = Vec::with_capacity(share);
            for _ in 0..share {
                let response = client
                    .request(Request::get(&url).body(Empty::new()).unwrap())
                    .await
                    .expect("request succeeds");
                statuses.push(response.status().as_u16());
                let _ = response.into_body().collect().await;
            }
            statuses
        }));
    }
    let mut statuses = Vec::with_capacity(count);
    for sender in senders {
        statuses.extend(sender.await.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_nobody_reads_bounds_memory_drops_lines_and_recovers_once_read() {
    const REQUESTS: usize = 10_000;
    let upstream = FakeUpstream::always(Reply::json(200, serde_json::json!({"ok": true}))).await;
    // No upstream budget: every request goes through and is logged.
    let config = TempConfig::new("[rate_limit]\nenabled = false\n");
    let mut shim = UnreadShim::start(
        &upstream.url(),
        &["--access-log", "--config", config.path()],
    );
    let pid = shim.child.id();
    let before = resident_bytes(pid);

    // About 15 KB of query per request: the access lines alone would be 150 MB.
    let query = format!("/api/customers/?q={}", "x".repeat(15_000));
    let statuses = flood(shim.addr, &query, REQUESTS, 8).await;
    assert!(statuses.iter().all(|status| *status == 200));
    let after = resident_bytes(pid);
    let dropped = metric(shim.admin, "explo_shim_log_lines_dropped_total").await;
    eprintln!(
        "stalled log pipe, {REQUESTS} requests: RSS {} KiB before, {} KiB after; {dropped} lines dropped",
        before / 1024,
        after / 1024
    );
    assert!(
        after < MEMORY_CEILING_BYTES,
        "RSS grew from {before} to {after} bytes with nobody reading the log"
    );
    assert!(dropped > 0, "no line was dropped with the pipe stalled");

    // The collector reads again: the queue empties and new lines are written.
    let lines = shim.drain();
    let marker = "after-the-stall-0123";
    let got = send(
        "GET",
        &format!("http://{}/api/customers/?{marker}", shim.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    until_ok(Duration::from_secs(20), || async {
        let found = lines.lock().unwrap().iter().any(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|event| event["target"] == "access" && event["url.query"] == marker)
        });
        if found {
            return Ok(());
        }
        Err("no access line after the pipe was read again".to_owned())
    })
    .await;
    let dropped_after = metric(shim.admin, "explo_shim_log_lines_dropped_total").await;
    assert_eq!(
        dropped_after, dropped,
        "lines were dropped once the pipe was read"
    );
}

#[tokio::test]
async fn an_access_line_keeps_the_first_4_kib_of_a_20_kb_query_and_says_how_much_was_cut() {
    let upstream = FakeUpstream::always(Reply::json(200, serde_json::json!({"ok": true}))).await;
    let config = TempConfig::new("[limits]\nmax_header_bytes = 65536\n");
    let shim = Shim::start(
        &upstream.url(),
        &["--access-log", "--config", config.path()],
    );
    // Distinct bytes, so that the test can tell which ones were kept.
    let query: String = (0..20_000)
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    let got = send(
        "GET",
        &shim.url(&format!("/api/customers/?{query}")),
        &[],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    // The upstream still gets the whole query: only the log line is cut.
    assert_eq!(upstream.requests()[0].path(), "/api/customers/");
    let line = until(Duration::from_secs(10), "no access line", || async {
        shim.events_so_far("access").pop()
    })
    .await;
    let expected = format!("{}…[{} bytes cut]", &query[..4096], 20_000 - 4096);
    assert_eq!(line["url.query"], expected.as_str());
    assert_eq!(line["url.path"], "/api/customers/");
    assert_eq!(line["http.response.status_code"], 200);
    assert_eq!(line["outcome"], "complete");
}

/// A collector that answers every export 200 with a body that never ends, and says when a
/// reply's body was dropped (the shim closed the connection).
struct EndlessCollector {
    addr: SocketAddr,
    exports: Arc<AtomicU64>,
    replies_dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Marks its reply as dropped when hyper drops the body (the connection is gone).
struct DropFlag(Arc<AtomicU64>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl EndlessCollector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exports = Arc::new(AtomicU64::new(0));
        let replies_dropped = Arc::new(AtomicU64::new(0));
        let (counted, dropped) = (Arc::clone(&exports), Arc::clone(&replies_dropped));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counted, dropped) = (Arc::clone(&counted), Arc::clone(&dropped));
                let service = service_fn(move |request: Request<Incoming>| {
                    let (counted, dropped) = (Arc::clone(&counted), Arc::clone(&dropped));
                    async move {
                        let _ = request.into_body().collect().await;
                        counted.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(EndlessBody {
                            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                            _dropped: DropFlag(dropped),
                        }))
                    }
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            exports,
            replies_dropped,
            task,
        }
    }
}

impl Drop for EndlessCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reply body that never ends: the same chunk, as fast as it is read. Dropped with its
/// connection, it marks the reply as dropped.
struct EndlessBody {
    chunk: Bytes,
    _dropped: DropFlag,
}

impl hyper::body::Body for EndlessBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_reply_that_never_ends_is_not_read_past_a_cap() {
    let upstream = FakeUpstream::always(Reply::json(200, serde_json::json!({"ok": true}))).await;
    let collector = EndlessCollector::start().await;
    let endpoint = format!("http://{}", collector.addr);
    let shim = Shim::start_with_env(
        &upstream.url(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let pid = shim.pid();
    let before = resident_bytes(pid);
    assert_eq!(
        send("GET", &shim.url("/api/customers/"), &[], "")
            .await
            .status,
        200
    );

    // Watch the shim's memory until it drops the reply, or its export times out.
    let watching = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(before));
    let watcher = {
        let (watching, peak) = (Arc::clone(&watching), Arc::clone(&peak));
        std::thread::spawn(move || {
            while watching.load(Ordering::SeqCst) {
                peak.fetch_max(resident_bytes(pid), Ordering::SeqCst);
                // The memory watch's sampling period: a peak has no event to wait on, so it
                // is caught by looking often.
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    until(
        Duration::from_secs(30),
        "the export never ended",
        || async { (collector.replies_dropped.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
    watching.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    eprintln!(
        "endless collector reply: RSS {} KiB before, peak {} KiB",
        before / 1024,
        peak / 1024
    );
    assert_eq!(collector.exports.load(Ordering::SeqCst), 1);
    assert!(
        peak < MEMORY_CEILING_BYTES,
        "RSS grew from {before} to {peak} bytes reading the collector's reply"
    );
    // The collector's 200 counts as taken: no span was dropped.
    shim.wait_for_metric(
        "explo_shim_trace_spans_dropped_total 0",
        "spans were dropped",
    )
    .await;
}

/// The events of `shim`'s log with `message`, whatever follows it.
fn lines_starting(shim: &Shim, target: &str, message: &str) -> Vec<Value> {
    shim.events(target)
        .into_iter()
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|text| text.starts_with(message))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_budget_refusals_logs_the_first_and_a_count_while_the_metric_counts_all() {
    const REQUESTS: usize = 2_000;
    let upstream = FakeUpstream::always(Reply::json(200, serde_json::json!({"ok": true}))).await;
    // One call a minute, none waiting: everything after the first is refused with a 429.
    let config = TempConfig::new("[rate_limit]\nper_minute = 1\nburst = 1\nmax_wait = \"1ms\"\n");
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--config", config.path()],
        &[("RUST_LOG", "info")],
    );
    let started = Instant::now();
    let statuses = flood(shim.addr, "/api/customers/", REQUESTS, 4).await;
    let refused = statuses.iter().filter(|status| **status == 429).count() as u64;
    assert_eq!(refused, REQUESTS as u64 - 1, "{statuses:?}");
    // And legacy calls, refused the same way: their audit line is summarised too.
    for _ in 0..20 {
        let got = post_json(
            &shim.url("/api/update_user_group/"),
            &serde_json::json!({"user_group_id": "example_1"}),
        )
        .await;
        got.assert_shim_error(429, "rate_limited");
    }
    let elapsed_seconds = started.elapsed().as_secs() + 1;
    let refused = refused + 20;
    shim.wait_for_metric(
        &format!("explo_shim_rate_limit_refused_total {refused}"),
        "the metric did not count every refusal",
    )
    .await;

    // Every refusal is in the log, as a line or in a summary's count, once the summaries of
    // the last second are written (at most a couple of seconds later).
    let (written, summaries) = until_ok(Duration::from_secs(20), || async {
        let written: Vec<Value> = lines_starting(
            &shim,
            "explo_shim::error",
            "answered with the shim's own error",
        )
        .into_iter()
        .filter(|event| event["code"] == "rate_limited")
        .collect();
        let (summaries, full): (Vec<Value>, Vec<Value>) = written
            .into_iter()
            .partition(|event| event.get("more").is_some());
        let summarised: u64 = summaries
            .iter()
            .map(|event| event["more"].as_u64().unwrap())
            .sum();
        if full.len() as u64 + summarised == refused {
            return Ok((full, summaries));
        }
        Err(format!(
            "{} lines and {summarised} summarised, of {refused} refusals",
            full.len()
        ))
    })
    .await;
    let log_bytes: usize = shim
        .logs()
        .iter()
        .filter(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|event| {
                event["target"] == "explo_shim::error" || event["target"] == "deprecated"
            })
        })
        .map(|line| line.len() + 1)
        .sum();
    eprintln!(
        "{refused} budget refusals: {} lines ({} bytes the first), {} summaries, {log_bytes} bytes \
         of error and audit lines",
        written.len(),
        written[0].to_string().len() + 1,
        summaries.len()
    );
    // One written line and one summary per second of the flood, at most, not one per request.
    let seconds = elapsed_seconds + 3;
    assert!(
        written.len() as u64 <= seconds && summaries.len() as u64 <= seconds,
        "{} lines and {} summaries for {refused} refusals in about {elapsed_seconds} s",
        written.len(),
        summaries.len()
    );
    assert_eq!(written[0]["status"], 429);
    assert_eq!(written[0]["level"], "INFO");
    let summary = &summaries[0];
    assert!(summary["more"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{} more like this", summary["more"])),
        "{summary}"
    );

    // The refused legacy calls: one audit line to start with, then the count. Their summary
    // may come a moment after the error lines' (the same ticker writes one, then the other).
    let (audit_summaries, audit_lines, audit_summarised) =
        until_ok(Duration::from_secs(10), || async {
            let (audit_summaries, audit_lines): (Vec<Value>, Vec<Value>) = shim
                .events_so_far("deprecated")
                .into_iter()
                .partition(|event| event.get("more").is_some());
            let audit_summarised: u64 = audit_summaries
                .iter()
                .map(|event| event["more"].as_u64().unwrap())
                .sum();
            match audit_lines.len() as u64 + audit_summarised >= 20 {
                true => Ok((audit_summaries, audit_lines, audit_summarised)),
                false => Err(format!(
                    "{} audit lines and {audit_summarised} summarised, of 20",
                    audit_lines.len()
                )),
            }
        })
        .await;
    assert_eq!(audit_lines.len() as u64 + audit_summarised, 20);
    assert!(audit_lines.len() < 20, "{audit_lines:?}");
    assert_eq!(audit_lines[0]["status"], 429);
    assert_eq!(audit_summaries[0]["code"], "rate_limited");
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("explo_shim_legacy_calls_total")
                && line.contains("status_class=\"4xx\"")
                && line.ends_with(" 20")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_logs_one_warning_and_a_count_not_one_per_request() {
    const REQUESTS: usize = 300;
    // A port nobody listens on: every request is a 502 `upstream_unreachable`.
    let port = ClosedPort::new();
    let closed = port.url();
    let config = TempConfig::new("[rate_limit]\nenabled = false\n");
    let shim = Shim::start_with_env(
        &closed,
        &["--config", config.path()],
        &[("RUST_LOG", "info")],
    );
    let started = Instant::now();
    let statuses = flood(shim.addr, "/api/customers/", REQUESTS, 4).await;
    assert!(statuses.iter().all(|status| *status == 502), "{statuses:?}");
    let elapsed_seconds = started.elapsed().as_secs() + 1;
    let (full, summaries) = until_ok(Duration::from_secs(20), || async {
        let (summaries, full): (Vec<Value>, Vec<Value>) = lines_starting(
            &shim,
            "explo_shim::error",
            "answered with the shim's own error",
        )
        .into_iter()
        .filter(|event| event["code"] == "upstream_unreachable")
        .partition(|event| event.get("more").is_some());
        let summarised: u64 = summaries
            .iter()
            .map(|event| event["more"].as_u64().unwrap())
            .sum();
        if full.len() as u64 + summarised == REQUESTS as u64 {
            return Ok((full, summaries));
        }
        Err(format!(
            "{} lines and {summarised} summarised, of {REQUESTS} failures",
            full.len()
        ))
    })
    .await;
    let seconds = elapsed_seconds + 3;
    assert!(
        full.len() as u64 <= seconds && summaries.len() as u64 <= seconds,
        "{} lines and {} summaries for {REQUESTS} failures in about {elapsed_seconds} s",
        full.len(),
        summaries.len()
    );
    // Warnings both: the shim's 5xx, with the cause on the written line.
    assert_eq!(full[0]["level"], "WARN");
    assert_eq!(full[0]["status"], 502);
    assert!(
        !full[0]["cause"].as_str().unwrap().is_empty(),
        "{}",
        full[0]
    );
    assert_eq!(summaries[0]["level"], "WARN");
}

/// A legacy call is summarised only when it was refused before anything went upstream: one
/// whose look-up reached the upstream and that the budget refused after it keeps its own audit
/// line, however many come at once.
#[tokio::test]
async fn a_legacy_call_refused_after_its_look_up_reached_the_upstream_keeps_its_audit_line() {
    const CALLS: usize = 4;
    let token = "a".repeat(64);
    let held = token.clone();
    // Look-ups answer late, so that every call has taken its turn for its look-up before any
    // asks for a turn for the call itself: all the turns go to the look-ups.
    let upstream = FakeUpstream::start(move |request| {
        if request.path() == "/api/get_customer/" {
            Reply::json(
                200,
                serde_json::json!({"success": 1, "customer": customer("g1", &held)}),
            )
            .delayed(Duration::from_millis(500))
        } else {
            Reply::json(
                200,
                serde_json::json!({"success": 1, "customer": customer("g1", "b")}),
            )
        }
    })
    .await;
    let config = TempConfig::new(&format!(
        "[rate_limit]\nper_minute = 1\nburst = {CALLS}\nmax_wait = \"1ms\"\n"
    ));
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--config", config.path()],
        &[("RUST_LOG", "info")],
    );
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let url = shim.url("/api/refresh_user_group_token/");
        let body = serde_json::json!({"user_group_id": "g1", "current_token": token});
        calls.spawn(async move { post_json(&url, &body).await });
    }
    while let Some(got) = calls.join_next().await {
        got.unwrap().assert_shim_error(429, "rate_limited");
    }
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|request| request.path().to_owned())
        .collect();
    assert_eq!(paths, vec!["/api/get_customer/"; CALLS], "look-ups only");

    until_ok(Duration::from_secs(10), || async {
        let audit = shim.events("deprecated");
        let lines: Vec<&Value> = audit
            .iter()
            .filter(|event| event.get("more").is_none())
            .collect();
        if lines.len() == CALLS {
            assert!(lines.iter().all(|line| line["status"] == 429), "{lines:?}");
            assert!(
                audit.iter().all(|event| event.get("more").is_none()),
                "none summarised: {audit:?}"
            );
            return Ok(());
        }
        Err(format!("{} audit lines of {CALLS}: {audit:?}", lines.len()))
    })
    .await;
}
