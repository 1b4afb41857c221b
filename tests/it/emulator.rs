//! A legacy client tested against shim + emulator entirely offline, and `--demo`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use explo_shim::emulator::Emulator;
use serde_json::{Value, json};

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

// Hierarchy levels -------------------------------------------------------------------------

/// A create at the emulator itself, with the team token.
async fn create_customer(emulator: &str, body: Value) -> Got {
    post_json(&format!("{emulator}/api/create_customer/"), &body).await
}

/// Asserts the emulator's refusal of invalid hierarchy input: 400 `{"success": 0, "error"}`,
/// the message containing `says`.
fn assert_refused(got: &Got, says: &str) {
    assert_eq!(got.status, 400, "{:?}", got.json());
    let body = got.json();
    assert_eq!(body["success"], 0, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

#[tokio::test]
async fn by_default_new_customers_are_customers_and_users_sit_under_them_and_nothing_under_users() {
    let emulator = start_emulator(None).await;
    let org = create_customer(&emulator, json!({"provided_id": "acme"})).await;
    assert_eq!(org.status, 200);
    assert_eq!(org.json()["customer"]["hierarchy_level"], "Customer");

    let alice = create_customer(
        &emulator,
        json!({"provided_id": "alice", "parent_provided_id": "acme", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    assert_eq!(alice.json()["customer"]["hierarchy_level"], "User");

    let under_a_user = create_customer(
        &emulator,
        json!({"provided_id": "bob", "parent_provided_id": "alice", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_refused(&under_a_user, "lowest hierarchy level `User`");
    let dave = create_customer(
        &emulator,
        json!({"provided_id": "dave", "parent_provided_id": "acme", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(dave.status, 200);
    let moved_under_a_user = post_json(
        &format!("{emulator}/api/update_customer/"),
        &json!({"provided_id": "dave", "parent_provided_id": "alice"}),
    )
    .await;
    assert_refused(&moved_under_a_user, "lowest hierarchy level `User`");

    let unknown_second_level = create_customer(
        &emulator,
        json!({"provided_id": "carol", "parent_provided_id": "acme", "hierarchy_level_name": "Level 2"}),
    )
    .await;
    assert_refused(
        &unknown_second_level,
        "hierarchy level `Level 2` does not exist",
    );

    let customer_with_a_parent = create_customer(
        &emulator,
        json!({"provided_id": "globex", "parent_provided_id": "acme"}),
    )
    .await;
    assert_refused(
        &customer_with_a_parent,
        "top hierarchy level `Customer` cannot have a parent",
    );
}

/// `explo-shim emulate` running as a process of this test; killed (by its own PID) on drop.
struct EmulateProcess {
    child: Child,
    url: String,
}

impl EmulateProcess {
    /// Starts `explo-shim emulate --listen 127.0.0.1:0` with `args` and waits for the line that
    /// says where it listens.
    fn start(args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_explo-shim"))
            .args(["emulate", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn explo-shim emulate");
        // Owned from here on, so that a failed start still kills the process.
        let mut started = Self {
            child,
            url: String::new(),
        };
        let stdout = started.child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("explo-shim emulate says where it listens within 20 s");
        // "explo-shim emulate: in-memory Customer API on http://ADDR; hierarchy levels ..."
        let address = line
            .split_once("on http://")
            .and_then(|(_, rest)| rest.split([';', ' ', '\n']).next())
            .filter(|address| !address.is_empty())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        started.url = format!("http://{address}");
        started
    }
}

impl Drop for EmulateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn emulate_hierarchy_levels_configures_the_team_and_creates_at_the_top_by_default() {
    let emulator = EmulateProcess::start(&["--hierarchy-levels", "Region,Customer,User"]);
    let region = create_customer(&emulator.url, json!({"provided_id": "emea"})).await;
    assert_eq!(region.status, 200);
    assert_eq!(region.json()["customer"]["hierarchy_level"], "Region");

    let customer = create_customer(
        &emulator.url,
        json!({"provided_id": "acme", "parent_provided_id": "emea", "hierarchy_level_name": "Customer",
               "properties": {"own": 1}}),
    )
    .await;
    assert_eq!(customer.status, 200, "{:?}", customer.json());
    assert_eq!(customer.json()["customer"]["hierarchy_level"], "Customer");

    let user = create_customer(
        &emulator.url,
        json!({"provided_id": "alice", "parent_provided_id": "acme", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(user.status, 200, "{:?}", user.json());
    let listed = send(
        "GET",
        &format!("{}/api/customers/?parent_provided_id=emea", emulator.url),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        "",
    )
    .await
    .json();
    let children: Vec<&str> = listed["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["provided_id"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["acme"]);
}

#[test]
fn emulate_refuses_a_bad_hierarchy_levels_value_with_64_naming_the_flag() {
    for value in ["", "Customer,,User", "A,B,C,D", "Customer,User,Customer"] {
        let output = run_binary(&["emulate", "--hierarchy-levels", value], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{value:?}: {stderr}");
        assert!(stderr.contains("--hierarchy-levels"), "{value:?}: {stderr}");
    }
}
