//! Through the real binary: SIGHUP reloads the config file (whole, or not at all),
//! the shutdown delay, the access log, the trace id in log lines, and the logging knobs.

use std::time::{Duration, SystemTime};

use crate::support::*;
use serde_json::{Value, json};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn iso(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

async fn update(shim: &Shim) -> Got {
    post_json(
        &shim.url("/api/update_user_group/"),
        &serde_json::json!({"user_group_id": "g1"}),
    )
    .await
}

/// Waits up to 10 s for a log line that `matches`.
async fn wait_for_log(shim: &Shim, matches: impl Fn(&str) -> bool, what: &str) -> String {
    shim.wait_for_line(&format!("no {what}"), matches).await
}

/// Waits up to 10 s until `count` reloads have ended, put in service or refused.
async fn reloads(shim: &Shim, count: usize) {
    until_ok(Duration::from_secs(10), || async {
        let done = shim
            .lines_so_far()
            .iter()
            .filter(|line| {
                line.contains("SIGHUP: configuration reloaded")
                    || line.contains("SIGHUP: configuration refused")
            })
            .count();
        match done >= count {
            true => Ok(()),
            false => Err(format!("reload {count} never ended: {:?}", shim.logs())),
        }
    })
    .await
}

#[tokio::test]
async fn sighup_puts_a_new_brownout_window_in_service_and_counts_the_reload() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("[deprecation]\nbrownouts = []\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(update(&shim).await.status, 200);
    let loaded_at = shim.metrics_text().await;
    assert!(
        loaded_at.contains("explo_shim_config_last_reload_success_timestamp_seconds "),
        "{loaded_at}"
    );

    let started = SystemTime::now() - Duration::from_secs(60);
    std::fs::write(
        &config.0,
        format!("[deprecation]\nbrownouts = [\"{}/PT1H\"]\n", iso(started)),
    )
    .unwrap();
    shim.signal("HUP");
    reloads(&shim, 1).await;
    update(&shim).await.assert_shim_error(410, "brownout");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="success"} 1"#,
        "the reload was not counted",
    )
    .await;
    assert!(
        shim.metrics_text()
            .await
            .contains("explo_shim_brownout_active 1"),
        "/metrics reads the new schedule"
    );
}

#[tokio::test]
async fn an_invalid_file_is_refused_naming_the_key_and_nothing_changes() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("[legacy]\nteam_id = 7\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(update(&shim).await.json()["user_group"]["team_id"], 7);

    // One good change and one bad value: the file is taken whole or not at all.
    std::fs::write(
        &config.0,
        "[legacy]\nteam_id = 8\n[rate_limit]\nper_minute = 0\n",
    )
    .unwrap();
    shim.signal("HUP");
    reloads(&shim, 1).await;
    let refused = wait_for_log(
        &shim,
        |line| line.contains("configuration refused"),
        "refusal",
    )
    .await;
    assert!(refused.contains("rate_limit.per_minute"), "{refused}");
    let got = update(&shim).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json()["user_group"]["team_id"],
        7,
        "the running config stays"
    );
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="failure"} 1"#,
        "the refusal was not counted",
    )
    .await;

    // A file that is not TOML at all is refused the same way.
    std::fs::write(&config.0, "[legacy\n").unwrap();
    shim.signal("HUP");
    reloads(&shim, 2).await;
    assert_eq!(update(&shim).await.json()["user_group"]["team_id"], 7);
}

#[tokio::test]
async fn a_key_that_needs_a_restart_is_named_and_keeps_its_running_value() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("[legacy]\nteam_id = 7\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    // `workers` and `limits` are bound at start-up; `legacy.team_id` is not.
    std::fs::write(
        &config.0,
        "workers = 3\n[legacy]\nteam_id = 9\n[limits]\nmax_in_flight = 5\n",
    )
    .unwrap();
    shim.signal("HUP");
    reloads(&shim, 1).await;
    let logs = shim.events("explo_shim::server::reload");
    let waiting: Vec<&str> = logs
        .iter()
        .filter(|event| {
            event["message"]
                .as_str()
                .unwrap_or("")
                .contains("needs a restart")
        })
        .filter_map(|event| event["key"].as_str())
        .collect();
    assert_eq!(waiting, ["workers", "limits"], "{logs:?}");
    // What may change did; the shim still serves where it did.
    assert_eq!(update(&shim).await.json()["user_group"]["team_id"], 9);
}

#[tokio::test]
async fn a_call_in_flight_during_a_reload_finishes_on_the_config_it_started_with() {
    let upstream = FakeUpstream::start(|_| {
        Reply::json(200, json!({"success": 1, "customer": customer("g1", "t")}))
            .delayed(Duration::from_millis(1500))
    })
    .await;
    let config = TempConfig::new("[legacy]\nteam_id = 1\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let url = shim.url("/api/update_user_group/");
    let in_flight = tokio::spawn(async move {
        send(
            "POST",
            &url,
            &[(TOKEN_HEADER, TEAM_TOKEN)],
            r#"{"user_group_id": "g1"}"#,
        )
        .await
    });
    // The call has reached the upstream before the file changes.
    until(
        Duration::from_secs(10),
        "the call never reached the upstream",
        || async { (!upstream.requests().is_empty()).then_some(()) },
    )
    .await;
    std::fs::write(&config.0, "[legacy]\nteam_id = 2\n").unwrap();
    shim.signal("HUP");
    reloads(&shim, 1).await;
    assert_eq!(in_flight.await.unwrap().json()["user_group"]["team_id"], 1);
    assert_eq!(update(&shim).await.json()["user_group"]["team_id"], 2);
}

#[tokio::test]
async fn a_reloaded_log_level_keeps_the_audit_line_unless_it_names_it() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("log_level = \"info\"\n");
    // RUST_LOG, where set, would win over the file; the tests' default sets it.
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--config", config.path()],
        &[("RUST_LOG", "")],
    );
    let audit_lines = |shim: &Shim| shim.events("deprecated").len();
    update(&shim).await;
    // At warn the reload's own line is not written: its counter says when it is done.
    std::fs::write(&config.0, "log_level = \"warn\"\n").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="success"} 1"#,
        "the first reload did not end",
    )
    .await;
    let before = audit_lines(&shim);
    update(&shim).await;
    until(
        Duration::from_secs(10),
        "a plain warn silenced the audit line",
        || async { (audit_lines(&shim) != before).then_some(()) },
    )
    .await;
    std::fs::write(&config.0, "log_level = \"warn,deprecated=off\"\n").unwrap();
    shim.signal("HUP");
    shim.wait_for_metric(
        r#"explo_shim_config_reloads_total{result="success"} 2"#,
        "the second reload did not end",
    )
    .await;
    let before = audit_lines(&shim);
    update(&shim).await;
    update(&shim).await;
    assert_eq!(audit_lines(&shim), before, "named, it is silenced");
}

#[tokio::test]
async fn after_sigterm_readyz_turns_503_while_requests_are_still_served_for_the_delay() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    // A delay with room for the `kill` process, the polls and three requests on a loaded
    // machine: past it the listener closes, and a request would be refused.
    let mut shim = Shim::start(&upstream.url(), &["--shutdown-delay", "8s"]);
    assert_eq!(
        send("GET", &shim.admin_url("/readyz"), &[], "")
            .await
            .status,
        200
    );
    shim.signal("TERM");
    until(
        Duration::from_secs(3),
        "/readyz never turned 503",
        || async {
            let ready = send("GET", &shim.admin_url("/readyz"), &[], "").await;
            (ready.status == 503).then_some(())
        },
    )
    .await;
    // New connections are still accepted and served during the delay.
    for _ in 0..3 {
        assert_eq!(send("GET", &shim.url("/x"), &[], "").await.status, 200);
    }
    let status = shim
        .wait_exit(Duration::from_secs(30))
        .expect("exits after the delay");
    assert!(status.success(), "{status}");
    assert!(
        shim.logs()
            .iter()
            .any(|line| line.contains("still serving for shutdown.delay"))
    );
}

#[tokio::test]
async fn a_second_signal_skips_the_shutdown_delay() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let mut shim = Shim::start(&upstream.url(), &["--shutdown-delay", "10m"]);
    shim.signal("TERM");
    wait_for_log(
        &shim,
        |line| line.contains("still serving for shutdown.delay"),
        "the delay's start",
    )
    .await;
    shim.signal("INT");
    // Ten minutes would outlast this wait by far.
    let status = shim
        .wait_exit(Duration::from_secs(30))
        .expect("the second signal skipped the delay");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_access_log_has_one_line_per_request_with_otel_names_and_the_trace_id() {
    let upstream = team_only_upstream().await;
    let shim = Shim::start(&upstream.url(), &["--access-log"]);
    let passed = send(
        "POST",
        &shim.url("/api/customers/?page=2"),
        &[(TOKEN_HEADER, TEAM_TOKEN), ("traceparent", TRACEPARENT)],
        "12345",
    )
    .await;
    let legacy = send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN), ("traceparent", TRACEPARENT)],
        r#"{"user_group_id": "g1"}"#,
    )
    .await;
    assert_eq!(legacy.status, 200);
    let lines = until_ok(Duration::from_secs(10), || async {
        let lines = shim.events_so_far("access");
        match lines.len() >= 2 {
            true => Ok(lines),
            false => Err(format!("{:?}", shim.logs())),
        }
    })
    .await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let pass = &lines[0];
    assert_eq!(pass["http.request.method"], "POST");
    assert_eq!(pass["url.path"], "/api/customers/");
    assert_eq!(pass["url.query"], "page=2");
    assert_eq!(pass["http.response.status_code"], passed.status.as_u16());
    assert_eq!(pass["http.request.body.size"], 5);
    assert_eq!(pass["http.response.body.size"], passed.body.len() as u64);
    assert_eq!(pass["upstream_status"], passed.status.as_u16());
    assert_eq!(pass["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    // Tracing is off: the caller's trace, and no span of the shim's to name.
    assert!(pass.get("span_id").is_none(), "{pass}");
    assert_eq!(pass["outcome"], "complete");
    assert_eq!(pass["client_fingerprint"].as_str().unwrap().len(), 12);
    assert!(pass.get("legacy_endpoint").is_none(), "{pass}");
    assert_eq!(
        pass["request_id"],
        passed.headers["x-request-id"].to_str().unwrap()
    );
    let translated = &lines[1];
    assert_eq!(translated["legacy_endpoint"], "update_user_group");
    assert_eq!(translated["upstream_status"], 200);
    assert_eq!(translated["http.request.body.size"], 23);
    assert_eq!(
        translated["http.response.body.size"],
        legacy.body.len() as u64
    );
    // No header value reaches the line.
    for line in shim.logs() {
        assert!(!line.contains(TEAM_TOKEN), "{line}");
    }
    // The audit line carries the trace id too.
    let audit = shim.wait_for_events("deprecated", 1).await;
    assert_eq!(audit[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(audit[0].get("span_id").is_none(), "{}", audit[0]);
}

#[tokio::test]
async fn without_the_switch_there_is_no_access_log() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let shim = Shim::start(&upstream.url(), &[]);
    assert_eq!(send("GET", &shim.url("/x"), &[], "").await.status, 200);
    update(&shim).await;
    assert!(shim.events("access").is_empty());
}

#[test]
fn an_invalid_log_filter_exits_64_naming_it_and_where_it_came_from() {
    for (args, env, origin) in [
        (
            vec!["--log-level", "info,=["],
            vec![("RUST_LOG", "")],
            "--log-level",
        ),
        (vec![], vec![("RUST_LOG", "debug,hyper=loud")], "RUST_LOG"),
    ] {
        let mut full = vec!["--check-config"];
        full.extend(args);
        let output = run_binary(&full, &env);
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("log_level") && stderr.contains(origin),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn the_audit_line_rounds_latency_and_leaves_absent_fields_out() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "POST",
        &shim.url("/api/refresh_user_group_token/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        json!({"current_token": "t"}).to_string(),
    )
    .await;
    assert_eq!(got.status, 200);
    wait_for_log(
        &shim,
        |line| line.contains("deprecated End User Group API call"),
        "audit line",
    )
    .await;
    let audit: Value = shim.events("deprecated").remove(0);
    // A refresh names no user group, and this call sent no traceparent.
    assert!(audit.get("user_group_id").is_none(), "{audit}");
    assert!(audit.get("trace_id").is_none(), "{audit}");
    let latency = audit["latency_ms"].to_string();
    let decimals = latency.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "{audit}");
}

/// A path in the temporary folder, removed with the value.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(name: &str) -> TempFile {
    TempFile(std::env::temp_dir().join(format!("explo-shim-test-{}-{name}", std::process::id())))
}

#[tokio::test]
async fn a_reload_cannot_turn_the_admin_token_off() {
    let upstream = team_only_upstream().await;
    let token = temp_file("token-off.token");
    std::fs::write(&token.0, "a-long-enough-admin-token-for-the-test-0123\n").unwrap();
    let with_token = format!("admin_token_file = \"{}\"\n", token.0.display());
    let config = TempConfig::new(&with_token);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let bearer = "Bearer a-long-enough-admin-token-for-the-test-0123";
    let metrics_status = async |authorization: Option<&str>| {
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| vec![("authorization", value)])
            .unwrap_or_default();
        send("GET", &shim.admin_url("/metrics"), &headers, "")
            .await
            .status
    };
    assert_eq!(metrics_status(None).await, 401);

    // Removed from the file, then set to "": neither opens the door.
    for (count, without) in [(1, "# no admin token\n"), (2, "admin_token_file = \"\"\n")] {
        std::fs::write(&config.0, without).unwrap();
        shim.signal("HUP");
        reloads(&shim, count).await;
        let kept = shim
            .logs()
            .into_iter()
            .filter(|line| line.contains("needs a restart") && line.contains("admin_token_file"))
            .count();
        assert_eq!(kept, count, "the log names the key: {:?}", shim.logs());
        for path in ["/metrics", "/usage", "/"] {
            let got = send("GET", &shim.admin_url(path), &[], "").await;
            assert_eq!(got.status, 401, "{path} stays guarded");
        }
        assert_eq!(metrics_status(Some(bearer)).await, 200);
    }
    // The key unset and its file removed together: still kept, and the reload's other
    // changes are taken (the running token is not read again).
    std::fs::remove_file(&token.0).unwrap();
    std::fs::write(&config.0, "log_level = \"info\"\n").unwrap();
    shim.signal("HUP");
    reloads(&shim, 3).await;
    assert!(
        !shim
            .logs()
            .iter()
            .any(|line| line.contains("configuration refused")),
        "{:?}",
        shim.logs()
    );
    assert_eq!(metrics_status(None).await, 401);
    assert_eq!(metrics_status(Some(bearer)).await, 200);
    // A restart takes the change.
    drop(shim);
    let restarted = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(
        send("GET", &restarted.admin_url("/metrics"), &[], "")
            .await
            .status,
        200
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_named_by_a_reload_fails_it_in_seconds_and_freezes_nothing() {
    let token = temp_file("fifo-reload.token");
    std::fs::write(&token.0, "a-long-enough-admin-token-for-the-test-0123\n").unwrap();
    let fifo = temp_file("fifo-reload.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo.0)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token.0.display()));
    // The demo: its emulator must keep answering too.
    let mut shim = Shim::start_demo_with(&["--config", config.path()]);
    std::fs::write(
        &config.0,
        format!("admin_token_file = \"{}\"\n", fifo.0.display()),
    )
    .unwrap();
    shim.signal("HUP");
    wait_for_log(
        &shim,
        |line| line.contains("SIGHUP: reloading"),
        "reload start",
    )
    .await;

    // While the reload waits on the FIFO (for a few seconds), the probes, legacy calls
    // through the emulator and pass-through all answer.
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        send("GET", &shim.admin_url("/healthz"), &[], ""),
    )
    .await
    .expect("/healthz answers during the reload");
    assert_eq!(health.status, 200);
    let created = tokio::time::timeout(
        Duration::from_secs(10),
        post_json(
            &shim.url("/api/create_user_group/"),
            &json!({"user_group_id": "during_reload", "name": "During reload"}),
        ),
    )
    .await
    .expect("a legacy call answers during the reload");
    assert_eq!(created.status, 200);

    // The reload is refused, naming the key and the file, and nothing changed.
    let refused = wait_for_log(
        &shim,
        |line| line.contains("configuration refused"),
        "the refusal",
    )
    .await;
    assert!(refused.contains("admin_token_file"), "{refused}");
    assert!(refused.contains(&fifo.0.display().to_string()), "{refused}");
    assert!(refused.contains("FIFO"), "{refused}");
    assert_eq!(
        send("GET", &shim.admin_url("/metrics"), &[], "")
            .await
            .status,
        401,
        "the running token stays"
    );
    let metrics = send(
        "GET",
        &shim.admin_url("/metrics"),
        &[(
            "authorization",
            "Bearer a-long-enough-admin-token-for-the-test-0123",
        )],
        "",
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(r#"explo_shim_config_reloads_total{result="failure"} 1"#),
        "the refusal is counted: {metrics}"
    );

    // SIGTERM is heard, although the reader is still blocked on the FIFO.
    shim.signal("TERM");
    let status = shim.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|status| status.success()),
        "{status:?}: {:?}",
        shim.logs()
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_or_an_endless_file_at_start_up_stops_it_with_exit_64_naming_the_file() {
    let fifo = temp_file("fifo-start.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo.0)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let fifo_path = fifo.0.display().to_string();
    for args in [
        vec!["--config", fifo_path.as_str()],
        vec!["--config", "/dev/zero"],
    ] {
        let mut full = vec!["--check-config", "--upstream", "http://127.0.0.1:9"];
        full.extend_from_slice(&args);
        let output = run_binary(&full, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(args[1]), "{args:?}: {stderr}");
    }
}
