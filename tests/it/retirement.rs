//! Brownouts, sunset enforcement and exemptions, through the real shim against the
//! in-process upstream and the emulator.

use std::time::{Duration, SystemTime};

use crate::support::*;
use explo_shim::emulator::Emulator;
use serde_json::json;

fn iso(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn from_now(seconds: i64) -> SystemTime {
    let now = SystemTime::now();
    if seconds >= 0 {
        now + Duration::from_secs(seconds as u64)
    } else {
        now - Duration::from_secs(seconds.unsigned_abs())
    }
}

fn deprecation_config(lines: &str) -> TempConfig {
    TempConfig::new(&format!("[deprecation]\n{lines}\n"))
}

async fn update(shim: &Shim, token: Option<&str>) -> Got {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(token) = token {
        headers.push((TOKEN_HEADER, token));
    }
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &headers,
        r#"{"user_group_id": "g1"}"#,
    )
    .await
}

async fn ok_upstream() -> FakeUpstream {
    FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await
}

#[tokio::test]
async fn an_active_window_refuses_legacy_calls_with_410_and_guidance() {
    let upstream = ok_upstream().await;
    // One clock reading: a second reading could fall in the next second.
    let started = from_now(-60);
    let window = format!("{}/PT1H", iso(started));
    let config = deprecation_config(&format!("brownouts = [\"{window}\"]"));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);

    let got = update(&shim, Some(TEAM_TOKEN)).await;
    got.assert_shim_error(410, "brownout");
    let message = got.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("POST /api/update_customer/"), "{message}");
    assert!(
        message.contains(&iso(started + Duration::from_secs(3600))),
        "{message}"
    );
    let retry_after: u64 = got.header("retry-after").unwrap().parse().unwrap();
    assert!((3400..=3540).contains(&retry_after), "{retry_after}");
    assert!(got.header("deprecation").is_some() && got.header("link").is_some());
    // Nothing reached the upstream; pass-through traffic is untouched.
    assert!(upstream.requests().is_empty());
    assert_eq!(
        send("GET", &shim.url("/api/customers/"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(upstream.requests().len(), 1);

    // Refused calls are counted, logged and recorded like any deprecated call.
    let text = shim.metrics_text().await;
    assert!(
        text.contains(
            r#"explo_shim_legacy_refused_total{endpoint="update_user_group",reason="brownout"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("explo_shim_brownout_active 1"), "{text}");
    let deprecated = shim.wait_for_events("deprecated", 1).await;
    assert_eq!(deprecated.len(), 1);
    assert_eq!(deprecated[0]["status"], 410);
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["clients"][0]["endpoints"][0]["refused"], 1);
    let table = run_binary(&["usage", "--admin", &shim.admin_url("")], &[]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("1 (brownout/sunset)"));
}

#[tokio::test]
async fn past_and_future_windows_serve_and_a_near_one_is_announced() {
    let upstream = ok_upstream().await;
    let past = format!("{}/{}", iso(from_now(-7200)), iso(from_now(-3600)));
    let soon = from_now(2 * 86_400);
    let later = from_now(30 * 86_400);
    let config = deprecation_config(&format!(
        "brownouts = [\"{past}\", \"{}/PT30M\", \"{}/PT2H\"]",
        iso(soon),
        iso(later)
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = update(&shim, None).await;
    assert_eq!(got.status, 200);
    let unix = |at: SystemTime| at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        got.header("explo-shim-brownout"),
        Some(format!("start=@{}, end=@{}", unix(soon), unix(soon) + 1800).as_str())
    );
    let text = shim.metrics_text().await;
    assert!(text.contains("explo_shim_brownout_active 0"), "{text}");
    assert!(
        text.contains(&format!(
            "explo_shim_brownout_next_start_timestamp_seconds {}",
            unix(soon)
        )),
        "{text}"
    );

    // Only the far window: nothing to announce yet.
    let config = deprecation_config(&format!("brownouts = [\"{}/PT2H\"]", iso(later)));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = update(&shim, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("explo-shim-brownout"), None);
}

#[tokio::test]
async fn an_exempt_client_is_served_through_a_brownout_and_the_sunset() {
    let upstream = ok_upstream().await;
    // The client's fingerprint, as /usage shows it.
    let probe = Shim::start(&upstream.url(), &[]);
    update(&probe, Some(TEAM_TOKEN)).await;
    let usage = send("GET", &probe.admin_url("/usage"), &[], "")
        .await
        .json();
    let fingerprint = usage["clients"][0]["client_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    let window = format!("{}/{}", iso(from_now(-60)), iso(from_now(3600)));
    let config = deprecation_config(&format!(
        "sunset = \"{}\"\nafter_sunset = \"refuse\"\nbrownouts = [\"{window}\"]\n\
         exempt_clients = [\"{fingerprint}\"]",
        iso(from_now(-10))
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(update(&shim, Some(TEAM_TOKEN)).await.status, 200, "exempt");
    update(&shim, Some("Token someone_else"))
        .await
        .assert_shim_error(410, "sunset");
    update(&shim, None).await.assert_shim_error(410, "sunset");
}

#[tokio::test]
async fn after_the_sunset_legacy_calls_are_refused_only_when_told() {
    let upstream = ok_upstream().await;
    let sunset = iso(from_now(-60));
    let refuse = deprecation_config(&format!("sunset = \"{sunset}\"\nafter_sunset = \"refuse\""));
    let shim = Shim::start(&upstream.url(), &["--config", refuse.path()]);
    let got = update(&shim, None).await;
    got.assert_shim_error(410, "sunset");
    assert!(got.json()["error"].as_str().unwrap().contains("retired on"));
    assert!(got.header("sunset").is_some());
    assert!(
        got.header("retry-after").is_none(),
        "the sunset does not end"
    );
    assert!(upstream.requests().is_empty());
    assert!(shim.metrics_text().await.contains(
        r#"explo_shim_legacy_refused_total{endpoint="update_user_group",reason="sunset"} 1"#
    ));

    // The default is to keep serving; the flag and variable say so too.
    let serve = deprecation_config(&format!("sunset = \"{sunset}\""));
    let shim = Shim::start(&upstream.url(), &["--config", serve.path()]);
    assert_eq!(update(&shim, None).await.status, 200);
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--config", serve.path()],
        &[("EXPLO_SHIM_AFTER_SUNSET", "refuse")],
    );
    update(&shim, None).await.assert_shim_error(410, "sunset");
}

#[tokio::test]
async fn a_window_that_ends_lets_calls_through_to_the_emulator_again() {
    let url = serve_emulator(Emulator::new(None)).await;
    // The START/END form, given by flag, ending two seconds from now.
    let window = format!("{}/{}", iso(from_now(-1)), iso(from_now(2)));
    let shim = Shim::start(&url, &["--brownouts", &window]);
    let body = json!({"user_group_id": "g9"});
    post_json(&shim.url("/api/create_user_group/"), &body)
        .await
        .assert_shim_error(410, "brownout");
    // Asked until the window is over (a refused call creates nothing).
    let created = until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let got = post_json(&shim.url("/api/create_user_group/"), &body).await;
            match got.status.as_u16() {
                410 => Err(format!("still refused: {:?}", got.body)),
                _ => Ok(got),
            }
        },
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.json()["user_group"]["provided_id"], "g9");
}

#[test]
fn bad_schedules_stop_start_up_and_name_the_key() {
    for (file, key) in [
        (
            "brownouts = [\"2026-12-01T10:00:00Z\"]",
            "deprecation.brownouts",
        ),
        (
            "brownouts = [\"2026-12-01T10:00:00Z/PT0S\"]",
            "deprecation.brownouts",
        ),
        (
            "brownouts = [\"2026-12-01T10:00:00Z/P1M\"]",
            "deprecation.brownouts",
        ),
        (
            "brownouts = [\"2026-12-01T10:00:00Z/2026-12-01T09:00:00Z\"]",
            "deprecation.brownouts",
        ),
        ("after_sunset = \"later\"", "deprecation.after_sunset"),
        ("after_sunset = \"refuse\"", "deprecation.after_sunset"),
        (
            "exempt_clients = [\"Token abc\"]",
            "deprecation.exempt_clients",
        ),
    ] {
        let config = deprecation_config(file);
        let output = start_up_output(config.path());
        assert_eq!(output.status.code(), Some(64), "{file}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{file}: {stderr}");
    }
    let output = run_binary(
        &["--check-config"],
        &[("EXPLO_SHIM_BROWNOUTS", "2026-12-01T10:00:00Z/PT1X")],
    );
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("EXPLO_SHIM_BROWNOUTS"));
}

#[tokio::test]
async fn brownout_plan_suggests_growing_windows_and_lists_who_is_affected() {
    let upstream = ok_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    update(&shim, Some(TEAM_TOKEN)).await;
    let sunset = iso(from_now(60 * 86_400));
    let output = run_binary(
        &[
            "brownout-plan",
            "--sunset",
            &sunset,
            "--at",
            "15:00",
            "--admin",
            &shim.admin_url(""),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("brownouts = ["), "{text}");
    assert!(text.contains("T15:00:00Z/PT5M\""), "{text}");
    assert!(text.contains("/PT4H\""), "{text}");
    assert!(text.contains("1 of 1 client(s)"), "{text}");
    // The printed windows are valid configuration.
    let windows: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.strip_suffix("\","))
        .collect();
    let config = deprecation_config(&format!(
        "brownouts = [{}]",
        windows
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let check = run_binary(&["--check-config", "--config", config.path()], &[]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let no_sunset = run_binary(&["brownout-plan"], &[]);
    assert_eq!(no_sunset.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&no_sunset.stderr).contains("--sunset"));
}
