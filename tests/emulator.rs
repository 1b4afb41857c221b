//! A legacy client tested against shim + emulator entirely offline, and `--demo`.

mod common;

use common::*;
use explo_shim::emulator::Emulator;
use serde_json::json;

async fn start_emulator(rate_limit: Option<u32>) -> String {
    serve_emulator(Emulator::new(rate_limit)).await
}

#[tokio::test]
async fn the_whole_legacy_lifecycle_works_against_the_emulator() {
    let upstream = start_emulator(None).await;
    let config = TempConfig::new("[legacy]\nteam_id = 3\n");
    let shim = Shim::start(&upstream, &["--config", config.path()]);

    let created = post_json(
        &shim.url("/api/create_user_group/"),
        &doc_fixture("create_user_group.request.json"),
    )
    .await;
    assert_eq!(created.status, 200);
    let created = created.json();
    assert_eq!(created["new_user_group"], true);
    assert_eq!(created["user_group"]["team_id"], 3);
    assert_eq!(created["user_group"]["provided_id"], "example_1");
    let token = created["user_group"]["token"].as_str().unwrap().to_owned();

    let again = post_json(
        &shim.url("/embed/create_user_group"),
        &json!({"user_group_id": "example_1"}),
    )
    .await
    .json();
    assert_eq!(again["new_user_group"], false);

    let updated = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "example_1", "properties": {"filterValue": "new_value"}}),
    )
    .await
    .json();
    assert_eq!(
        updated["user_group"]["properties"],
        json!({"filterValue": "new_value"})
    );
    assert_eq!(updated["user_group"]["name"], "Example 1");

    let refreshed = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": token}),
    )
    .await
    .json();
    let new_token = refreshed["user_group"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_token, token);

    // The rotated-out token no longer names anyone: the upstream's 404 comes back.
    let stale = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        json!({"current_token": token}).to_string(),
    )
    .await;
    assert_eq!(stale.status, 404);

    let deleted = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), json!({"success": 1}));
    let gone = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn a_group_with_child_customers_is_not_deleted_through_the_shim() {
    let upstream = start_emulator(None).await;
    let shim = Shim::start(&upstream, &[]);
    post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "parent"}),
    )
    .await;
    // A child made with the Customer API directly (the shim passes it through).
    let child = post_json(
        &shim.url("/api/create_customer/"),
        &json!({"provided_id": "child", "parent_provided_id": "parent", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(child.status, 200, "{:?}", child.json());
    send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "parent"}"#,
    )
    .await
    .assert_shim_error(409, "delete_would_cascade");
    let still_there = post_json(
        &shim.url("/api/get_customer/"),
        &json!({"provided_id": "child"}),
    )
    .await;
    assert_eq!(still_there.status, 200);
}

#[tokio::test]
async fn the_emulators_rate_limit_reaches_the_legacy_client_with_retry_after() {
    let upstream = start_emulator(Some(2)).await;
    let config = TempConfig::new("[rate_limit]\nenabled = false\n");
    let shim = Shim::start(&upstream, &["--config", config.path()]);
    for _ in 0..2 {
        assert_eq!(
            post_json(
                &shim.url("/api/create_user_group/"),
                &json!({"user_group_id": "a"})
            )
            .await
            .status,
            200
        );
    }
    let throttled = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.header("retry-after").is_some());
    assert!(
        throttled.json()["detail"]
            .as_str()
            .unwrap()
            .contains("throttled")
    );
}

#[tokio::test]
async fn demo_mode_answers_a_legacy_call_with_no_upstream_configured() {
    let output = run_binary(
        &[
            "--demo",
            "--upstream",
            "https://api.explo.co",
            "--check-config",
        ],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(64),
        "--demo and --upstream conflict"
    );

    let shim = Shim::start_demo();
    let got = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "example_1", "name": "Example 1"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["user_group"]["provided_id"], "example_1");
    let updated = post_json(
        &shim.url("/api/update_user_group/"),
        &doc_fixture("update_user_group.request.json"),
    )
    .await;
    assert_eq!(
        updated.json()["user_group"]["properties"],
        json!({"filterValue": "value"})
    );
}
