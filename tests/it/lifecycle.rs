//! Start-up, configuration errors, admin probes, graceful shutdown and the log contract.

use std::time::Duration;

use crate::support::*;
use serde_json::json;

#[test]
fn check_config_accepts_the_shipped_file() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/explo-shim.toml");
    let output = run_binary(&["--config", config, "--check-config"], &[]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("configuration is valid"));
}

/// Flags, environment, and what the error message must name.
type StartupCase<'a> = (
    Vec<&'a str>,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

#[test]
fn invalid_configuration_exits_64_naming_the_key_and_nothing_listens() {
    let unknown = TempConfig::new("[upstream]\nurll = \"https://x\"\n");
    // Held for the whole test: a shim that bound its listener before checking its settings
    // would fail to bind (exit 1), not refuse its settings (exit 64).
    let held = ClosedPort::new();
    let listen = held.addr.to_string();
    let cases: Vec<StartupCase> = vec![
        (vec!["--config", unknown.path()], vec![], "urll"),
        (
            vec!["--upstream-timeout", "soon"],
            vec![],
            "--upstream-timeout",
        ),
        (
            vec![],
            vec![("EXPLO_SHIM_UPSTREAM_TIMEOUT", "abc")],
            "EXPLO_SHIM_UPSTREAM_TIMEOUT",
        ),
        (
            vec![],
            vec![("EXPLO_SHIM_UPSTREAM", "ftp://x")],
            "EXPLO_SHIM_UPSTREAM",
        ),
        (vec!["--log-format", "xml"], vec![], "log_format"),
        (vec!["--workers", "0"], vec![], "--workers"),
        (
            vec![],
            vec![("EXPLO_SHIM_WORKERS", "lots")],
            "EXPLO_SHIM_WORKERS",
        ),
        (vec!["--listen", "nowhere"], vec![], "listen"),
        (vec!["--no-such-flag"], vec![], "--no-such-flag"),
        (
            vec!["--config", "/nonexistent/explo-shim.toml"],
            vec![],
            "/nonexistent/explo-shim.toml",
        ),
    ];
    for (mut args, env, named) in cases {
        let mut full = vec!["--listen", listen.as_str()];
        if args.first() == Some(&"--listen") {
            full.clear();
        }
        full.append(&mut args);
        let output = run_binary(&full, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{full:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{full:?} {env:?} should name {named}: {stderr}"
        );
        assert!(
            !stderr.contains("Address already in use"),
            "{full:?} {env:?} tried to listen on {listen}: {stderr}"
        );
    }
}

/// `--check-config`'s `[upstream]` `timeout` line, its padding squeezed to two spaces.
fn upstream_timeout_line(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with("timeout = "))
        .unwrap_or_default();
    match line.split_once("  ") {
        Some((setting, comment)) => format!("{setting}  {}", comment.trim_start()),
        None => line.to_owned(),
    }
}

#[test]
fn flag_beats_environment_beats_file() {
    let config = TempConfig::new("[upstream]\ntimeout = \"7s\"\n");
    let output = run_binary(
        &["--config", config.path(), "--check-config"],
        &[("EXPLO_SHIM_UPSTREAM_TIMEOUT", "3s")],
    );
    assert_eq!(
        upstream_timeout_line(&output.stdout),
        "timeout = \"3s\"  # env EXPLO_SHIM_UPSTREAM_TIMEOUT",
        "{output:?}"
    );
    let output = run_binary(
        &[
            "--config",
            config.path(),
            "--check-config",
            "--upstream-timeout",
            "1s",
        ],
        &[("EXPLO_SHIM_UPSTREAM_TIMEOUT", "3s")],
    );
    assert_eq!(
        upstream_timeout_line(&output.stdout),
        "timeout = \"1s\"  # flag --upstream-timeout",
        "{output:?}"
    );
    let output = run_binary(&["--config", config.path(), "--check-config"], &[]);
    assert_eq!(
        upstream_timeout_line(&output.stdout),
        format!("timeout = \"7s\"  # file {}", config.path()),
        "{output:?}"
    );
}

#[tokio::test]
async fn admin_probes_answer() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    assert_eq!(
        send("GET", &shim.admin_url("/healthz"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        send("GET", &shim.admin_url("/readyz"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        send("GET", &shim.admin_url("/nope"), &[], "").await.status,
        404
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_turns_unready_and_exits_0() {
    let upstream = FakeUpstream::always(
        Reply::json(200, json!({"success": 1, "customer": customer("a", "t")}))
            .delayed(Duration::from_secs(4)),
    )
    .await;
    let mut shim = Shim::start(&upstream.url(), &[]);
    // An idle keep-alive connection must not hold the drain up.
    let idle = tokio::net::TcpStream::connect(shim.addr).await.unwrap();

    let url = shim.url("/api/update_user_group/");
    let in_flight =
        tokio::spawn(async move { post_json(&url, &json!({"user_group_id": "a"})).await });
    // In flight once the (slow) upstream has it.
    until(
        Duration::from_secs(10),
        "the request never arrived",
        || async { (upstream.requests().len() == 1).then_some(()) },
    )
    .await;
    shim.signal("TERM");
    // Unready while the request is still in flight (the upstream holds it for 4 s; the
    // signal is a `kill` process, and a loaded machine may take a while to run it).
    until(
        Duration::from_secs(3),
        "/readyz never turned 503",
        || async {
            let ready = send("GET", &shim.admin_url("/readyz"), &[], "").await;
            (ready.status == 503).then_some(())
        },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the request ended before the check"
    );

    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["user_group"]["provided_id"], "a");
    let status = tokio::task::spawn_blocking(move || shim.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    drop(idle);
}

#[tokio::test]
async fn each_legacy_call_logs_one_deprecated_event_and_no_secret() {
    let customer_token = "cust_secret_tok_987654321";
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", customer_token)}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "example_1", "name": "n"}),
    )
    .await;
    assert_eq!(got.json()["user_group"]["token"], customer_token);
    let refresh = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": customer_token}),
    )
    .await;
    assert_eq!(refresh.status, 200);
    send(
        "GET",
        &shim.url("/api/customers/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        "",
    )
    .await;

    let events = shim.wait_for_events("deprecated", 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let update = &events[0];
    assert_eq!(update["legacy_endpoint"], "update_user_group");
    assert_eq!(update["replacement"], "update_customer");
    assert_eq!(update["user_group_id"], "example_1");
    assert_eq!(update["upstream_status"], 200);
    assert_eq!(update["status"], 200);
    assert!(update["latency_ms"].as_f64().unwrap() >= 0.0);
    let fingerprint = update["client_fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 12);
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(events[1]["legacy_endpoint"], "refresh_user_group_token");

    let logs = shim.logs();
    assert!(logs.len() >= 3, "{logs:?}");
    let secret = TEAM_TOKEN.trim_start_matches("Token ");
    for line in &logs {
        assert!(!line.contains(secret), "team token in a log line: {line}");
        assert!(
            !line.contains(customer_token),
            "customer token in a log line: {line}"
        );
    }
}

/// Thread per core: each serving thread accepts on its own duplicate of the one listening
/// socket, and what the process counts (metrics, usage) covers every thread.
#[tokio::test]
async fn serving_threads_share_one_port_and_one_set_of_counts() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &["--workers", "4"]);
    let listening = shim
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["message"] == "explo-shim listening")
        .unwrap();
    assert_eq!(listening["workers"], 4, "{listening}");
    let threads = std::fs::read_dir(format!("/proc/{}/task", shim.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| {
            name.trim()
                .strip_prefix("explo-shim-")
                .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    assert_eq!(threads, 4, "one named thread per worker");

    // Each call is a new connection, accepted by whichever serving thread is free.
    let calls = (0..40).map(|i| {
        let url = shim.url("/api/update_user_group/");
        async move { post_json(&url, &json!({"user_group_id": format!("g{i}")})).await }
    });
    for got in futures_join_all(calls).await {
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    }
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(
            r#"explo_shim_legacy_calls_total{endpoint="update_user_group",status_class="2xx""#
        ) && text.contains("} 40\n"),
        "{text}"
    );
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["clients"][0]["endpoints"][0]["count"], 40, "{usage}");
    assert_eq!(upstream.requests().len(), 40);

    // The log writer, having written, runs at the lowest priority: it yields to the serving
    // threads. (`nice` is the 19th field of a task's `stat`, after the parenthesised name.)
    let _ = shim.logs();
    let log_thread_nice = std::fs::read_dir(format!("/proc/{}/task", shim.pid()))
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            (name.trim() == "explo-shim-log")
                .then(|| std::fs::read_to_string(path.join("stat")).ok())?
        })
        .map(|stat| {
            let after_name = stat.rsplit_once(')').unwrap().1;
            after_name
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .next()
        .expect("a log writer thread");
    assert_eq!(log_thread_nice, 19);
}

/// Runs the futures at once on this runtime and returns their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn a_second_shim_on_a_listen_address_in_use_exits_and_says_so() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "first")).await;
    let first = Shim::start(&upstream.url(), &["--workers", "2"]);
    let listen = first.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        run_binary(
            &[
                "--listen",
                &listen,
                "--admin",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:9",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {}", first.addr))
            && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    // Every connection still reaches the first shim.
    for _ in 0..10 {
        let got = send("GET", &first.url("/anything"), &[], "").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "first");
    }
}

#[tokio::test]
async fn sighup_reloads_and_never_kills() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let mut shim = Shim::start(&upstream.url(), &[]);
    // Sent as soon as the shim says it listens: the handler is in place by then.
    shim.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !shim
        .logs()
        .iter()
        .any(|line| line.contains("SIGHUP: configuration reloaded"))
    {
        assert!(
            shim.wait_exit(Duration::from_millis(100)).is_none(),
            "SIGHUP ended the shim: {:?}",
            shim.logs()
        );
        assert!(std::time::Instant::now() < deadline, "{:?}", shim.logs());
    }
    shim.signal("HUP");
    assert_eq!(send("GET", &shim.url("/x"), &[], "").await.status, 200);
    assert!(shim.wait_exit(Duration::from_millis(100)).is_none());
}
