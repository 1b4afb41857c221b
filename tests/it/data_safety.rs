//! A legacy client never loses a write or is told the wrong thing. One test (or more)
//! per case, through the real shim against the emulator, told to misbehave where
//! the case needs it, or against the fake upstream.

use crate::support::*;
use explo_shim::emulator::{Emulator, Fault, Faults};
use serde_json::{Value, json};

async fn start_emulator(faults: &[Fault]) -> String {
    let faults: Faults = faults.iter().copied().collect();
    serve_emulator(Emulator::with_faults(None, faults)).await
}

async fn create(shim: &Shim, id: &str) -> String {
    let created = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": id}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    created.json()["user_group"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn delete(shim: &Shim, body: Value) -> Got {
    send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        body.to_string(),
    )
    .await
}

async fn exists(shim: &Shim, provided_id: &str) -> bool {
    let got = post_json(
        &shim.url("/api/get_customer/"),
        &json!({"provided_id": provided_id}),
    )
    .await;
    got.status == 200
}

// 1. A rotated token can be lost -------------------------------------------------------------

#[tokio::test]
async fn case_1_a_refresh_whose_reply_is_not_json_still_hands_over_the_upstream_reply() {
    let upstream = start_emulator(&[Fault::NonJsonAfterWrite]).await;
    let shim = Shim::start(&upstream, &[]);
    let token = create_through_customer_api(&shim, "g1").await;
    let got = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": token}),
    )
    .await;
    // The write happened: the client gets the upstream's 200 as it came, never a 5xx.
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert!(got.header("deprecation").is_some());
    assert!(String::from_utf8_lossy(&got.body).contains("OK"));
    // And the token really was rotated.
    let old = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": token}),
    )
    .await;
    assert_eq!(old.status, 404);
}

/// A customer made with the Customer API through the shim; its token is read back with
/// `get_customer`, a read, which answers JSON even when writes misbehave.
async fn create_through_customer_api(shim: &Shim, id: &str) -> String {
    let created = post_json(
        &shim.url("/api/create_customer/"),
        &json!({"provided_id": id}),
    )
    .await;
    assert_eq!(created.status, 200);
    let got = post_json(&shim.url("/api/get_customer/"), &json!({"provided_id": id})).await;
    got.json()["customer"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn case_1_a_delete_that_was_carried_out_is_not_reported_as_a_failure() {
    let upstream = start_emulator(&[Fault::NonJsonAfterWrite]).await;
    let shim = Shim::start(&upstream, &[]);
    let token = create_through_customer_api(&shim, "gone").await;
    let got = delete(&shim, json!({"current_token": token})).await;
    assert_eq!(got.status, 200);
    assert!(!exists(&shim, "gone").await);
}

#[tokio::test]
async fn case_1_a_bom_and_brotli_are_read() {
    let reply = json!({"success": 1, "customer": customer("g", "new_tok")}).to_string();
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), reply.as_bytes()].concat();
    let mut brotli = Vec::new();
    brotli::BrotliCompress(&mut &with_bom[..], &mut brotli, &Default::default()).unwrap();
    let upstream = FakeUpstream::always(
        Reply::raw(200, "application/json", brotli).header("content-encoding", "br"),
    )
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": "old"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.json()["user_group"]["token"], "new_tok");
}

// 2. The cascade guard fails closed ----------------------------------------------------------

#[tokio::test]
async fn case_2_a_list_without_tokens_stops_the_delete_of_a_parent() {
    let upstream = start_emulator(&[Fault::ListsWithoutTokens]).await;
    let shim = Shim::start(&upstream, &[]);
    // Made with the Customer API directly, so the shim has never seen the parent's token.
    let parent = create_through_customer_api(&shim, "parent").await;
    let child = post_json(
        &shim.url("/api/create_customer/"),
        &json!({"provided_id": "child", "parent_provided_id": "parent", "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(child.status, 200);
    // A fresh shim: nothing cached from the get_customer above.
    let fresh = Shim::start(&upstream, &[]);
    let got = delete(&fresh, json!({"current_token": parent})).await;
    got.assert_shim_error(409, "cascade_unverified");
    assert!(
        got.json()["error"]
            .as_str()
            .unwrap()
            .contains("leaves tokens out")
    );
    assert!(exists(&fresh, "parent").await && exists(&fresh, "child").await);
    let metrics = send("GET", &fresh.admin_url("/metrics"), &[], "").await;
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("explo_shim_cascade_unverified_total 1")
    );
}

#[tokio::test]
async fn case_2_with_v1_retired_deletes_still_work_through_v2() {
    let upstream = start_emulator(&[Fault::V1ListRetired]).await;
    let shim = Shim::start(&upstream, &[]);
    let token = create_through_customer_api(&shim, "solo").await;
    let fresh = Shim::start(&upstream, &[]);
    let got = delete(&fresh, json!({"current_token": token})).await;
    assert_eq!(got.status, 200, "{:?}", got.json());
    assert!(!exists(&fresh, "solo").await);
}

#[tokio::test]
async fn case_2_when_no_list_can_tell_nothing_is_deleted() {
    // Only get_customer and the delete exist: no list answers at all.
    let upstream = FakeUpstream::start(|request| match request.path() {
        "/api/get_customer/" => {
            Reply::json(200, json!({"success": 1, "customer": customer("g", "tok")}))
        }
        "/api/delete_customer/" => Reply::json(200, json!({"success": 1})),
        _ => Reply::json(404, json!({"detail": "Not found."})),
    })
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    for body in [
        json!({"current_token": "tok"}),
        json!({"user_group_id": "g"}),
    ] {
        delete(&shim, body)
            .await
            .assert_shim_error(409, "cascade_unverified");
    }
    assert!(
        !upstream
            .requests()
            .iter()
            .any(|request| request.method == "DELETE")
    );
}

// 3. Equivalent spellings of a legacy path ---------------------------------------------------

#[tokio::test]
async fn case_3_equivalent_spellings_are_translated_and_ambiguous_ones_refused() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    for path in [
        "/api/update%5Fuser_group/",
        "/api/./update_user_group/",
        "/api/x/../update_user_group",
    ] {
        let got = post_json(&shim.url(path), &json!({"user_group_id": "g"})).await;
        assert_eq!(got.status, 200, "{path}");
        assert!(got.json().get("user_group").is_some(), "{path}");
        assert!(got.header("deprecation").is_some(), "{path}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.target == "/api/update_customer/"));
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await;
    assert!(String::from_utf8_lossy(&usage.body).contains("update_user_group"));

    for path in ["/api%2Fupdate_user_group/", "/api/update%5user_group/"] {
        post_json(&shim.url(path), &json!({"user_group_id": "g"}))
            .await
            .assert_shim_error(400, "unsafe_path");
    }
    assert_eq!(
        upstream.requests().len(),
        3,
        "nothing more reached the upstream"
    );
    // Other paths still pass through byte for byte.
    send("GET", &shim.url("/api/files/a%20b/./c"), &[], "").await;
    assert_eq!(upstream.requests()[3].target, "/api/files/a%20b/./c");
}

// 4. Legacy-only keys never reach the Customer API --------------------------------------------

#[tokio::test]
async fn case_4_delete_and_refresh_send_only_customer_keys_and_a_mismatched_id_is_refused() {
    let upstream = start_emulator(&[]).await;
    let shim = Shim::start(&upstream, &[]);
    let token = create(&shim, "mine").await;
    let other = create(&shim, "other").await;
    // The id names another group than the token: nothing happens.
    let got = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": token, "user_group_id": "other"}),
    )
    .await;
    got.assert_shim_error(409, "token_of_another_group");
    let still = post_json(
        &shim.url("/api/refresh_user_group_token/"),
        &json!({"current_token": other}),
    )
    .await;
    assert_eq!(still.status, 200, "the other group's token was not rotated");

    // What the Customer API receives: the fake upstream records it.
    let recorder = FakeUpstream::start(|request| match request.path() {
        "/api/get_customer/" => {
            Reply::json(200, json!({"success": 1, "customer": customer("g", "tok")}))
        }
        "/v2/api/customers/" => {
            Reply::json(200, json!({"total_count": 0, "results": {"customers": []}}))
        }
        _ => Reply::json(
            200,
            json!({"success": 1, "customer": customer("g", "tok2")}),
        ),
    })
    .await;
    let shim = Shim::start(&recorder.url(), &[]);
    let legacy = json!({"current_token": "tok", "user_group_id": "g", "data_source_id": 3,
                        "data_source_provided_id": "ds"});
    post_json(&shim.url("/api/refresh_user_group_token/"), &legacy).await;
    delete(&shim, legacy).await;
    for request in recorder.requests() {
        if matches!(
            request.path(),
            "/api/refresh_customer_token/" | "/api/delete_customer/"
        ) {
            assert_eq!(
                request.json(),
                json!({"current_token": "tok"}),
                "{}",
                request.target
            );
        }
    }
}

// 5. `translate` and the shim agree ---------------------------------------------------------

#[tokio::test]
async fn case_5_translate_refuses_duplicate_keys_like_the_shim() {
    let duplicate = r#"{"user_group_id": "a", "user_group_id": "b"}"#;
    let output = run_binary_with_stdin(&["translate", "--endpoint", "update"], &[], duplicate);
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid_json"), "{stderr}");

    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[("content-type", "application/json")],
        duplicate,
    )
    .await;
    got.assert_shim_error(400, "invalid_json");
}

// 6. The client's `Accept` stays with the client ---------------------------------------------

#[tokio::test]
async fn case_6_translated_calls_ask_for_json_whatever_the_client_accepts() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[("accept", "text/html")],
        r#"{"user_group_id": "g"}"#,
    )
    .await;
    assert_eq!(upstream.requests()[0].headers["accept"], "application/json");
    // A pass-through request keeps the client's.
    send(
        "GET",
        &shim.url("/api/customers/"),
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(upstream.requests()[1].headers["accept"], "text/html");
}

// 7. Every documented legacy key is there ----------------------------------------------------

#[tokio::test]
async fn case_7_team_id_and_api_environment_tag_are_always_present() {
    let upstream = start_emulator(&[]).await;
    let shim = Shim::start(&upstream, &[]);
    let created = post_json(
        &shim.url("/api/create_user_group/"),
        &json!({"user_group_id": "g7"}),
    )
    .await;
    let group = created.json()["user_group"].clone();
    assert_eq!(group["team_id"], Value::Null);
    assert_eq!(group["api_environment_tag"], Value::Null);
    assert!(
        shim.logs()
            .iter()
            .any(|line| line.contains("WARN") && line.contains("legacy.team_id")),
        "a start-up warning says what clients will see"
    );
}

// 8. Numbers are copied as written -----------------------------------------------------------

#[tokio::test]
async fn case_8_numbers_reach_the_upstream_exactly_as_written() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[("content-type", "application/json")],
        r#"{"user_group_id": "g", "properties": {"big": 1e400, "upper": 1E5, "float": 1.10}}"#,
    )
    .await;
    let body = String::from_utf8_lossy(&upstream.requests()[0].body).into_owned();
    assert_eq!(
        body,
        r#"{"provided_id":"g","properties":{"big": 1e400, "upper": 1E5, "float": 1.10}}"#
    );
}

// The cascade guard when the v2 list misbehaves ----------------------------------------------

/// A child of `parent` made with the Customer API: a `User` under a `Customer`, the docs'
/// two-tier hierarchy and the emulator's default.
async fn create_child(shim: &Shim, id: &str, parent: &str) {
    let child = post_json(
        &shim.url("/api/create_customer/"),
        &json!({"provided_id": id, "parent_provided_id": parent, "hierarchy_level_name": "User"}),
    )
    .await;
    assert_eq!(child.status, 200, "{:?}", child.json());
}

/// The customers `ids` made with the Customer API, and their tokens in the same order.
async fn create_all(shim: &Shim, ids: &[&str]) -> Vec<String> {
    let mut tokens = Vec::new();
    for id in ids {
        tokens.push(create_through_customer_api(shim, id).await);
    }
    tokens
}

async fn cascade_unverified_count(shim: &Shim) -> usize {
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|line| line.strip_prefix("explo_shim_cascade_unverified_total "))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

/// A v2 list that serves its first page for every `page`, 2 customers a page, and no v1 list
/// to fall back on: pages after the first repeat it, so counting entries would reach
/// `total_count` without ever seeing the customers beyond page 1.
const FIRST_PAGE_ONLY: [Fault; 3] = [
    Fault::V2ListIgnoresPage,
    Fault::V2ListCapsPageSize,
    Fault::V1ListRetired,
];

#[tokio::test]
async fn case_16_a_list_that_repeats_page_1_cannot_clear_a_parent_beyond_it() {
    let upstream = start_emulator(&FIRST_PAGE_ONLY).await;
    let shim = Shim::start(&upstream, &[]);
    // Listed in provided_id order: a1 and a2 fill the only page the list ever serves.
    let tokens = create_all(&shim, &["a1", "a2", "parent"]).await;
    create_child(&shim, "parent_kid", "parent").await;
    let fresh = Shim::start(&upstream, &[]);
    let got = delete(&fresh, json!({"current_token": tokens[2]})).await;
    got.assert_shim_error(409, "cascade_unverified");
    assert!(
        got.json()["error"]
            .as_str()
            .unwrap()
            .contains("could not be read whole"),
        "{:?}",
        got.json()
    );
    assert!(exists(&fresh, "parent").await && exists(&fresh, "parent_kid").await);
    assert_eq!(cascade_unverified_count(&fresh).await, 1);
}

#[tokio::test]
async fn case_16_a_list_that_repeats_page_1_refuses_a_token_beyond_it_and_finds_one_on_it() {
    let upstream = start_emulator(&FIRST_PAGE_ONLY).await;
    let shim = Shim::start(&upstream, &[]);
    let tokens = create_all(&shim, &["a1", "a2", "solo"]).await;
    let fresh = Shim::start(&upstream, &[]);
    // Childless, but nothing establishes who holds the token: refused, not deleted.
    delete(&fresh, json!({"current_token": tokens[2]}))
        .await
        .assert_shim_error(409, "cascade_unverified");
    assert!(exists(&fresh, "solo").await);
    // A token on the page the list does serve is found there, and its delete goes ahead.
    let got = delete(&fresh, json!({"current_token": tokens[0]})).await;
    assert_eq!(got.status, 200, "{:?}", got.json());
    assert!(!exists(&fresh, "a1").await);
}

/// The v2 list only where one stored doc version puts it, and v1 retired.
const V2_AT_API_V2_ONLY: [Fault; 2] = [Fault::V2ListOnlyAtApiV2, Fault::V1ListRetired];

#[tokio::test]
async fn case_16_with_v2_only_at_api_v2_childless_customers_are_deleted() {
    let upstream = start_emulator(&V2_AT_API_V2_ONLY).await;
    let shim = Shim::start(&upstream, &[]);
    let tokens = create_all(&shim, &["first", "second"]).await;
    let fresh = Shim::start(&upstream, &[]);
    // The second delete asks the path the first found.
    for (token, id) in tokens.iter().zip(["first", "second"]) {
        let got = delete(&fresh, json!({"current_token": token})).await;
        assert_eq!(got.status, 200, "{id}: {:?}", got.json());
        assert!(!exists(&fresh, id).await, "{id}");
    }
}

#[tokio::test]
async fn case_16_with_v2_only_at_api_v2_a_parent_is_refused_as_cascading() {
    let upstream = start_emulator(&V2_AT_API_V2_ONLY).await;
    let shim = Shim::start(&upstream, &[]);
    let tokens = create_all(&shim, &["parent"]).await;
    create_child(&shim, "parent_kid", "parent").await;
    let fresh = Shim::start(&upstream, &[]);
    for body in [
        json!({"current_token": tokens[0]}),
        json!({"user_group_id": "parent"}),
    ] {
        // Established, not merely unverified: the children were counted.
        delete(&fresh, body)
            .await
            .assert_shim_error(409, "delete_would_cascade");
    }
    assert!(exists(&fresh, "parent").await && exists(&fresh, "parent_kid").await);
}

#[tokio::test]
async fn case_16_pages_capped_below_the_size_asked_for_are_read_to_the_end() {
    let upstream = start_emulator(&[Fault::V2ListCapsPageSize, Fault::V1ListRetired]).await;
    let shim = Shim::start(&upstream, &[]);
    // Pages of 2: [a1, a2], [a3, parent], [parent_kid, solo].
    let tokens = create_all(&shim, &["a1", "a2", "a3", "parent"]).await;
    create_child(&shim, "parent_kid", "parent").await;
    let solo = create_through_customer_api(&shim, "solo").await;
    let fresh = Shim::start(&upstream, &[]);
    delete(&fresh, json!({"current_token": tokens[3]}))
        .await
        .assert_shim_error(409, "delete_would_cascade");
    assert!(exists(&fresh, "parent").await && exists(&fresh, "parent_kid").await);
    let got = delete(&fresh, json!({"current_token": solo})).await;
    assert_eq!(got.status, 200, "{:?}", got.json());
    assert!(!exists(&fresh, "solo").await);
}
