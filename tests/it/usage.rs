//! The migration tracker serves operators, not attackers. Refused
//! credentials cannot push a real team out of `/usage` and `/metrics`, and a client's
//! `user_group_id` is kept short wherever it is written.
//! `/usage` counts each client's calls per UTC hour and day.

use std::time::SystemTime;

use crate::support::*;
use explo_shim::message::fingerprint::client_fingerprint;
use http::HeaderValue;
use serde_json::{Value, json};

const UPDATE: &str = "/api/update_user_group/";

/// The fingerprint `/usage` and `/metrics` show for `token`.
fn fingerprint_of(token: &str) -> String {
    client_fingerprint(Some(&HeaderValue::from_str(token).unwrap()))
}

async fn update_as(shim: &Shim, token: &str, user_group_id: &str) -> Got {
    send(
        "POST",
        &shim.url(UPDATE),
        &[("content-type", "application/json"), (TOKEN_HEADER, token)],
        json!({"user_group_id": user_group_id}).to_string(),
    )
    .await
}

fn usage_clients(usage: &Value) -> Vec<String> {
    usage["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|client| client["client_fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn refused_tokens_do_not_file_a_real_team_under_other() {
    // The upstream knows one team token; every other credential is refused.
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("[limits]\nmax_tracked_clients = 3\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let refused = ["Token guess-1", "Token guess-2", "Token guess-3"];
    for token in refused {
        assert_eq!(update_as(&shim, token, "g1").await.status, 401);
    }
    assert_eq!(update_as(&shim, TEAM_TOKEN, "g1").await.status, 200);

    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let clients = usage_clients(&usage);
    let team = fingerprint_of(TEAM_TOKEN);
    assert!(clients.contains(&team), "{usage}");
    assert!(!clients.contains(&"other".to_owned()), "{usage}");
    // The table keeps its size: the oldest refused client made room.
    assert_eq!(clients.len(), 3, "{usage}");
    assert!(!clients.contains(&fingerprint_of(refused[0])), "{usage}");
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains(&format!(
            r#"explo_shim_legacy_calls_total{{endpoint="update_user_group",status_class="2xx",client="{team}"}} 1"#
        )),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"client="other""#), "{metrics}");
    assert!(
        !metrics.contains(&fingerprint_of(refused[0])),
        "the displaced client's series are gone: {metrics}"
    );

    // A fourth refused credential finds no room and displaces nobody.
    assert_eq!(update_as(&shim, "Token guess-4", "g1").await.status, 401);
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let clients = usage_clients(&usage);
    assert!(
        clients.contains(&team) && clients.contains(&"other".to_owned()),
        "{usage}"
    );
    assert!(!shim.logs().iter().any(|line| line.contains("guess-")));
}

#[tokio::test]
async fn a_long_user_group_id_is_cut_and_marked_in_usage_and_the_log() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let long_id = format!("{}{}", "g".repeat(255), "€".repeat(100_000));
    assert_eq!(update_as(&shim, TEAM_TOKEN, &long_id).await.status, 200);
    // The upstream still gets the id whole: only the records are cut.
    assert_eq!(upstream.requests()[0].json()["provided_id"], long_id);

    // 255 bytes of `g`, then no room for a whole three-byte `€`.
    let recorded = format!("{}…(truncated)", "g".repeat(255));
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(
        usage["clients"][0]["endpoints"][0]["last_user_group_id"], recorded,
        "{usage}"
    );
    let logged = shim.wait_for_events("deprecated", 1).await;
    assert_eq!(logged[0]["user_group_id"], recorded);
}

#[tokio::test]
async fn usage_counts_calls_in_this_hours_and_todays_buckets_refused_ones_too() {
    let upstream = team_only_upstream().await;
    let shim = Shim::start(&upstream.url(), &[]);
    let before = SystemTime::now();
    for _ in 0..3 {
        assert_eq!(update_as(&shim, TEAM_TOKEN, "g1").await.status, 200);
    }
    let created = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "g1"}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let made = (before, SystemTime::now());
    assert_buckets(&usage, "update_user_group", "hourly", 3600, made, 3);
    assert_buckets(&usage, "update_user_group", "daily", 86_400, made, 3);
    assert_buckets(&usage, "create_user_group", "hourly", 3600, made, 1);
    assert_buckets(&usage, "create_user_group", "daily", 86_400, made, 1);

    // Calls refused after the sunset are calls too.
    let config = TempConfig::new(
        "[deprecation]\nsunset = \"2025-10-16T00:00:00Z\"\nafter_sunset = \"refuse\"\n",
    );
    let retired = Shim::start(&upstream.url(), &["--config", config.path()]);
    let before = SystemTime::now();
    for _ in 0..2 {
        update_as(&retired, TEAM_TOKEN, "g1")
            .await
            .assert_shim_error(410, "sunset");
    }
    let usage = send("GET", &retired.admin_url("/usage"), &[], "")
        .await
        .json();
    let made = (before, SystemTime::now());
    let endpoint = &usage["clients"][0]["endpoints"][0];
    assert_eq!(
        (&endpoint["count"], &endpoint["refused"]),
        (&json!(2), &json!(2))
    );
    assert_buckets(&usage, "update_user_group", "hourly", 3600, made, 2);
    assert_buckets(&usage, "update_user_group", "daily", 86_400, made, 2);
}

#[tokio::test]
async fn a_user_group_id_with_terminal_escapes_is_one_escaped_row_in_the_table_and_the_console() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let hostile = "g\u{1b}[2J\u{1b}]0;owned\u{7}\nforged-client  update_user_group";
    assert_eq!(update_as(&shim, TEAM_TOKEN, hostile).await.status, 200);

    let table = run_binary(&["usage", "--admin", &shim.admin_url("")], &[]);
    assert!(table.status.success(), "{table:?}");
    let stdout = String::from_utf8(table.stdout).unwrap();
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "no control character reaches the terminal: {stdout:?}"
    );
    assert_eq!(stdout.lines().count(), 2, "a header and one row: {stdout}");
    assert!(
        stdout.contains(r"g\u{1b}[2J\u{1b}]0;owned\u{7}\u{a}forged-client"),
        "{stdout}"
    );

    let console = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(console.status, 200);
    let page = String::from_utf8(console.body.to_vec()).unwrap();
    assert!(
        !page.contains('\u{1b}') && !page.contains('\u{7}'),
        "{page}"
    );
    assert!(page.contains(r"g\u{1b}[2J\u{1b}]0;owned\u{7}\u{a}forged-client"));
    // /usage itself is JSON: the id is there as it came, escaped by JSON alone.
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(
        usage["clients"][0]["endpoints"][0]["last_user_group_id"],
        hostile
    );
}
