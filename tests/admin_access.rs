//! Issue 18 through the real binary: client names from `[clients]` (in `/usage`, the `usage`
//! table and the deprecated-usage line, never in metrics labels), and the admin token
//! (`admin_token_file`): Bearer or the console's cookie for `/`, `/usage` and `/metrics`,
//! probes always open, the file read again on SIGHUP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use explo_shim::fingerprint::client_fingerprint;
use http::HeaderValue;

fn team_fingerprint() -> String {
    client_fingerprint(Some(&HeaderValue::from_static(TEAM_TOKEN)))
}

async fn legacy_update(shim: &Shim) -> Got {
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "g1"}"#,
    )
    .await
}

fn wait_for_reload(shim: &Shim, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while shim
        .logs()
        .iter()
        .filter(|line| line.contains("SIGHUP: configuration"))
        .count()
        < count
    {
        assert!(Instant::now() < deadline, "{:?}", shim.logs());
    }
}

#[tokio::test]
async fn a_named_client_shows_its_name_beside_its_fingerprint_but_metrics_keep_the_fingerprint() {
    let upstream = team_only_upstream().await;
    let fingerprint = team_fingerprint();
    let config = TempConfig::new(&format!(
        "[clients]\n\"{fingerprint}\" = \"billing-service\"\n"
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(legacy_update(&shim).await.status, 200);

    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let client = &usage["clients"][0];
    assert_eq!(client["client_fingerprint"], fingerprint.as_str());
    assert_eq!(client["client_name"], "billing-service");
    let audit = shim.events("deprecated");
    assert_eq!(audit[0]["client_name"], "billing-service");
    assert_eq!(audit[0]["client_fingerprint"], fingerprint.as_str());
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains(&format!("client=\"{fingerprint}\"")),
        "{metrics}"
    );
    assert!(!metrics.contains("billing-service"), "names add no series");

    let table = run_binary(&["usage", "--admin", &shim.admin_url("")], &[]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("billing-service ({fingerprint})")),
        "{table}"
    );

    // Names reload with the rest of the file.
    std::fs::write(
        &config.0,
        format!("[clients]\n\"{fingerprint}\" = \"invoicing\"\n"),
    )
    .unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1);
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["clients"][0]["client_name"], "invoicing");
}

#[tokio::test]
async fn with_a_token_file_the_migration_data_needs_the_token_and_the_probes_do_not() {
    let upstream = team_only_upstream().await;
    let token = TempConfig::new("first-token-0123456789\n");
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token.path()));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);

    for path in ["/usage", "/metrics"] {
        let refused = send("GET", &shim.admin_url(path), &[], "").await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(
            refused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{path}"
        );
        let wrong = send(
            "GET",
            &shim.admin_url(path),
            &[("authorization", "Bearer first-token-012345678X")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
        let allowed = send(
            "GET",
            &shim.admin_url(path),
            &[("authorization", "Bearer first-token-0123456789")],
            "",
        )
        .await;
        assert_eq!(allowed.status, 200, "{path}");
    }
    // A browser asking for the console gets the sign-in form.
    let page = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(page.status, 401);
    assert!(String::from_utf8_lossy(&page.body).contains("action=\"/login\""));
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            send("GET", &shim.admin_url(probe), &[], "").await.status,
            200,
            "{probe}"
        );
    }

    // The sign-in form sets a same-site, script-proof cookie that opens the same paths.
    let wrong = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=guess",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let signed_in = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=first-token-0123456789",
    )
    .await;
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        send("GET", &shim.admin_url("/usage"), &[("cookie", pair)], "")
            .await
            .status,
        200
    );

    // The subcommands send the configured token themselves.
    assert_eq!(legacy_update(&shim).await.status, 200);
    let table = run_binary(
        &["usage", "--admin", &shim.admin_url("")],
        &[("EXPLO_SHIM_CONFIG", config.path())],
    );
    assert!(table.status.success(), "{table:?}");
    assert!(String::from_utf8_lossy(&table.stdout).contains("update_user_group"));

    // A new token in the file replaces the old one on SIGHUP.
    std::fs::write(&token.0, "second-token-0123456789").unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1);
    let old = send(
        "GET",
        &shim.admin_url("/usage"),
        &[("authorization", "Bearer first-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(old.status, 401);
    let new = send(
        "GET",
        &shim.admin_url("/usage"),
        &[("authorization", "Bearer second-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(new.status, 200);
    // The token is in no log line.
    for line in shim.logs() {
        assert!(!line.contains("token-0123456789"), "{line}");
    }
}

#[test]
fn an_empty_or_missing_token_file_stops_start_up_naming_the_key() {
    let empty = TempConfig::new("\n");
    for path in [empty.path(), "/nonexistent/explo-shim-token"] {
        let config = TempConfig::new(&format!("admin_token_file = \"{path}\"\n"));
        let output = run_binary(&["--config", config.path(), "--check-config"], &[]);
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("admin_token_file"),
            "{output:?}"
        );
    }
}
