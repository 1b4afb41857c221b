//! Every legacy route through the real shim against a fake Customer API.

use crate::support::*;
use serde_json::json;

const CUSTOMER_TOKEN: &str = "cust_tok_4f2a9b7c1d";

fn shim_with_team(upstream: &FakeUpstream, config: &str) -> (Shim, TempConfig) {
    let config = TempConfig::new(config);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    (shim, config)
}

#[tokio::test]
async fn update_user_group_doc_example_becomes_update_customer_and_back() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        doc_fixture("update_customer.response.json"),
    ))
    .await;
    let (shim, _config) = shim_with_team(&upstream, "[legacy]\nteam_id = 113\n");

    let got = send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[
            ("content-type", "application/json"),
            (TOKEN_HEADER, TEAM_TOKEN),
            ("accept-encoding", "gzip"),
        ],
        include_str!("../fixtures/update_user_group.request.json"),
    )
    .await;

    assert_eq!(got.status, 200);
    let mut expected = doc_fixture("update_user_group.response.json");
    expected["user_group"]["properties"] = json!({"filterValue": "new_value"});
    expected["user_group"]["api_environment_tag"] = serde_json::Value::Null;
    assert_eq!(got.json(), expected);
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    assert_eq!(got.header("content-encoding"), None);

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/api/update_customer/");
    assert_eq!(
        seen[0].json(),
        json!({"provided_id": "example_1", "name": "Example 1",
               "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}})
    );
    assert_eq!(seen[0].headers[TOKEN_HEADER], TEAM_TOKEN);
    assert_eq!(seen[0].headers["host"], upstream.addr.to_string());
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[0].headers["accept-encoding"], "identity");
    assert_eq!(seen[0].headers["accept"], "application/json");
    assert!(seen[0].headers.get("x-forwarded-for").is_none());
}

#[tokio::test]
async fn create_user_group_renames_both_ways_under_every_path_variant() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        doc_fixture("create_customer.response.json"),
    ))
    .await;
    let (shim, _config) = shim_with_team(&upstream, "[legacy]\nteam_id = 3\n");
    let paths = [
        "/api/create_user_group/",
        "/api/create_user_group",
        "/embed/create_user_group/",
        "/embed/create_user_group",
        // Fronts that merge slashes (nginx's default) hand these to the legacy endpoint.
        "//api/create_user_group/",
        "/api//create_user_group/",
        "/embed//create_user_group",
    ];
    for path in paths {
        let got = post_json(
            &shim.url(path),
            &doc_fixture("create_user_group.request.json"),
        )
        .await;
        assert_eq!(got.status, 200, "{path}");
        let mut expected = doc_fixture("create_user_group.response.json");
        expected["user_group"]["properties"] = json!({"filterValue": "value"});
        expected["user_group"]["api_environment_tag"] = serde_json::Value::Null;
        assert_eq!(got.json(), expected, "{path}");
    }
    let seen = upstream.requests();
    assert_eq!(seen.len(), paths.len());
    for request in seen {
        assert_eq!(request.target, "/api/create_customer/");
        assert_eq!(request.json()["provided_id"], "example_1");
        assert!(request.json().get("user_group_id").is_none());
    }
}

#[tokio::test]
async fn numeric_user_group_id_is_forwarded_as_a_string() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("42", "t")}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = post_json(
        &shim.url("/api/update_user_group"),
        &json!({"user_group_id": 42, "name": "n"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.requests()[0].json(),
        json!({"provided_id": "42", "name": "n"})
    );
    // Without team_id configured the key is null; only legacy keys are
    // returned.
    assert_eq!(
        got.json(),
        json!({"success": 1, "user_group": {"team_id": null, "token": "t", "name": "Example 1",
               "provided_id": "42", "is_demo_group": false,
               "properties": {"filterValue": "value"}, "api_environment_tag": null}})
    );
}

/// A Customer API holding `example_1` (token `CUSTOMER_TOKEN`) with the given children. The
/// v1 list answers, and the v2 list at `v2_path` only (every other path answers 404, as a
/// deployment without it would); `None`: no v2 list at all.
fn customer_api(
    children: &'static [&'static str],
    v2_path: Option<&'static str>,
) -> impl Fn(&Recorded) -> Reply {
    move |request| {
        let filtered = request.target.contains("parent_provided_id=example_1");
        let listed: Vec<serde_json::Value> = if filtered {
            children
                .iter()
                .map(|id| customer(id, "child_tok"))
                .collect()
        } else {
            vec![
                customer("other", "tok_other"),
                customer("example_1", CUSTOMER_TOKEN),
            ]
        };
        match request.path() {
            "/api/get_customer/" | "/api/update_customer/" => Reply::json(
                200,
                json!({"success": 1, "customer": customer("example_1", CUSTOMER_TOKEN)}),
            ),
            path if Some(path) == v2_path => {
                let page_size = if filtered { 1 } else { 1000 };
                let page: Vec<_> = listed.iter().take(page_size).cloned().collect();
                Reply::json(
                    200,
                    json!({"total_count": listed.len(), "results": {"customers": page}}),
                )
            }
            "/api/customers/" => Reply::json(200, json!({"success": 1, "customers": listed})),
            "/api/delete_customer/" => Reply::json(200, json!({"success": 1})),
            other => Reply::json(404, json!({"detail": format!("unexpected {other}")})),
        }
    }
}

fn customer_api_with_children(children: &'static [&'static str]) -> impl Fn(&Recorded) -> Reply {
    customer_api(children, Some("/v2/api/customers/"))
}

const LIST_V2_PAGE: &str = "GET /v2/api/customers/?page=1&page_size=1000&pageSize=1000";
const CHILDREN_V2: &str = "GET /v2/api/customers/?parent_provided_id=example_1&parentProvidedId=example_1&page=1&page_size=1&pageSize=1";
/// The same calls at the v2 path of the other stored doc version (explo-api.md §3.5).
const LIST_API_V2_PAGE: &str = "GET /api/v2/customers/?page=1&page_size=1000&pageSize=1000";
const CHILDREN_API_V2: &str = "GET /api/v2/customers/?parent_provided_id=example_1&parentProvidedId=example_1&page=1&page_size=1&pageSize=1";

fn calls(upstream: &FakeUpstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

#[tokio::test]
async fn delete_by_token_checks_for_children_then_forwards_its_body() {
    let upstream = FakeUpstream::start(customer_api_with_children(&[])).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let body = json!({"current_token": CUSTOMER_TOKEN});
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[
            ("content-type", "application/json"),
            (TOKEN_HEADER, TEAM_TOKEN),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), json!({"success": 1}));
    // Never seen before: the token's customer comes from the list, then one filtered call.
    assert_eq!(
        calls(&upstream),
        [LIST_V2_PAGE, CHILDREN_V2, "DELETE /api/delete_customer/"]
    );
    let seen = upstream.requests();
    assert_eq!(seen[2].json(), body);
    for request in &seen {
        assert_eq!(request.headers[TOKEN_HEADER], TEAM_TOKEN);
        assert_eq!(request.headers["accept"], "application/json");
    }
    assert!(seen[0].body.is_empty());
}

/// The upstream calls one legacy delete by `CUSTOMER_TOKEN` makes (it must succeed).
async fn delete_by_token_calls(shim: &Shim, upstream: &FakeUpstream) -> Vec<String> {
    let before = upstream.requests().len();
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        json!({"current_token": CUSTOMER_TOKEN}).to_string(),
    )
    .await;
    assert_eq!(got.status, 200);
    calls(upstream).split_off(before)
}

#[tokio::test]
async fn a_token_seen_before_is_confirmed_with_one_get_customer_instead_of_the_list() {
    let upstream = FakeUpstream::start(customer_api_with_children(&[])).await;
    let shim = Shim::start(&upstream.url(), &[]);
    // Any Customer reply through the shim shows whose token it is; here an update's.
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "example_1", "name": "n"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        delete_by_token_calls(&shim, &upstream).await,
        [
            "POST /api/get_customer/",
            CHILDREN_V2,
            "DELETE /api/delete_customer/"
        ]
    );
}

#[tokio::test]
async fn a_customer_reply_passed_through_teaches_the_token_too() {
    let upstream = FakeUpstream::start(customer_api_with_children(&[])).await;
    let shim = Shim::start(&upstream.url(), &[]);
    // A migrated client calling the Customer API through the shim.
    let got = post_json(
        &shim.url("/api/get_customer/"),
        &json!({"provided_id": "example_1"}),
    )
    .await;
    assert_eq!(got.json()["customer"]["token"], CUSTOMER_TOKEN, "unchanged");
    assert_eq!(
        delete_by_token_calls(&shim, &upstream).await,
        [
            "POST /api/get_customer/",
            CHILDREN_V2,
            "DELETE /api/delete_customer/"
        ]
    );
}

#[tokio::test]
async fn without_v2_the_v1_lists_answer() {
    let upstream = FakeUpstream::start(customer_api(&[], None)).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        json!({"current_token": CUSTOMER_TOKEN}).to_string(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        calls(&upstream),
        [
            LIST_V2_PAGE,
            LIST_API_V2_PAGE,
            "GET /api/customers/",
            CHILDREN_V2,
            CHILDREN_API_V2,
            "GET /api/customers/?parent_provided_id=example_1",
            "DELETE /api/delete_customer/"
        ]
    );
}

#[tokio::test]
async fn the_v2_path_that_answered_is_asked_first_from_then_on() {
    let upstream = FakeUpstream::start(customer_api(&[], Some("/api/v2/customers/"))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    // The first delete finds the list at the second documented path...
    assert_eq!(
        delete_by_token_calls(&shim, &upstream).await,
        [
            LIST_V2_PAGE,
            LIST_API_V2_PAGE,
            CHILDREN_API_V2,
            "DELETE /api/delete_customer/"
        ]
    );
    // ...and the next one, by id so that no list page is needed, goes straight there.
    let before = upstream.requests().len();
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        calls(&upstream).split_off(before),
        [
            "POST /api/get_customer/",
            CHILDREN_API_V2,
            "DELETE /api/delete_customer/"
        ]
    );
}

#[tokio::test]
async fn delete_by_user_group_id_looks_the_token_up_first() {
    let upstream = FakeUpstream::start(customer_api_with_children(&[])).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "example_1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), json!({"success": 1}));
    assert_eq!(
        calls(&upstream),
        [
            "POST /api/get_customer/",
            CHILDREN_V2,
            "DELETE /api/delete_customer/"
        ]
    );
    let seen = upstream.requests();
    assert_eq!(seen[0].json(), json!({"provided_id": "example_1"}));
    assert_eq!(seen[2].json(), json!({"current_token": CUSTOMER_TOKEN}));
    assert!(!shim.logs().iter().any(|line| line.contains(CUSTOMER_TOKEN)));
}

#[tokio::test]
async fn delete_of_a_customer_with_children_is_refused_and_deletes_nothing() {
    let upstream = FakeUpstream::start(customer_api_with_children(&["child_a", "child_b"])).await;
    let shim = Shim::start(&upstream.url(), &[]);
    for body in [
        json!({"current_token": CUSTOMER_TOKEN}),
        json!({"user_group_id": "example_1"}),
    ] {
        let got = send(
            "DELETE",
            &shim.url("/api/delete_user_group/"),
            &[],
            body.to_string(),
        )
        .await;
        got.assert_shim_error(409, "delete_would_cascade");
        let message = got.json()["error"].as_str().unwrap().to_owned();
        assert!(message.contains("2 child customer"), "{message}");
        assert!(message.contains("delete_customer"), "{message}");
    }
    assert!(
        !calls(&upstream)
            .iter()
            .any(|call| call.starts_with("DELETE")),
        "{:?}",
        calls(&upstream)
    );
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("explo_shim_cascade_refused_total 2"));
}

#[tokio::test]
async fn cascade_protection_can_be_switched_off() {
    let upstream = FakeUpstream::start(customer_api_with_children(&["child_a"])).await;
    let config = TempConfig::new("[legacy]\nrefuse_cascading_delete = false\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        json!({"current_token": CUSTOMER_TOKEN}).to_string(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(calls(&upstream), ["DELETE /api/delete_customer/"]);
}

#[tokio::test]
async fn a_failed_children_check_is_answered_with_the_upstream_refusal() {
    let upstream =
        FakeUpstream::always(Reply::json(403, json!({"detail": "read-only token"}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        r#"{"current_token": "t"}"#,
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json(), json!({"detail": "read-only token"}));
    assert_eq!(calls(&upstream), [LIST_V2_PAGE]);
}

#[tokio::test]
async fn delete_by_unknown_user_group_id_returns_the_upstream_refusal_and_deletes_nothing() {
    let upstream = FakeUpstream::start(|_| Reply::json(404, json!({"detail": "Not found."}))).await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send(
        "DELETE",
        &shim.url("/api/delete_user_group/"),
        &[],
        r#"{"user_group_id": "nope"}"#,
    )
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(got.json(), json!({"detail": "Not found."}));
    assert_eq!(
        upstream.requests().len(),
        1,
        "no delete after a failed lookup"
    );
}

#[tokio::test]
async fn refresh_user_group_token_renames_customer() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("example_1", "new_token")}),
    ))
    .await;
    let (shim, _config) = shim_with_team(&upstream, "[legacy]\nteam_id = 3\n");
    let body = doc_fixture("refresh_user_group_token.request.json");
    let got = post_json(&shim.url("/api/refresh_user_group_token/"), &body).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.json(),
        json!({"success": 1, "user_group": {"team_id": 3, "token": "new_token", "name": "Example 1",
               "provided_id": "example_1", "is_demo_group": false,
               "properties": {"filterValue": "value"}, "api_environment_tag": null}})
    );
    let seen = upstream.requests();
    assert_eq!(seen[0].target, "/api/refresh_customer_token/");
    assert_eq!(seen[0].json(), body);
}

#[tokio::test]
async fn config_maps_access_group_and_can_pass_extra_customer_keys() {
    let upstream = FakeUpstream::always(Reply::json(
        200,
        doc_fixture("update_customer.response.json"),
    ))
    .await;
    let (shim, _config) = shim_with_team(
        &upstream,
        "[legacy]\nextra_customer_keys = true\n[legacy.api_environment_tag]\nProduction = \"Customer\"\n",
    );
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "example_1"}),
    )
    .await;
    let group = &got.json()["user_group"];
    assert_eq!(group["api_environment_tag"], "Customer");
    assert_eq!(group["group_tags"], json!(["engineers", "sales"]));
    assert_eq!(group["hierarchy_level"], "Level 1");
}

#[tokio::test]
async fn upstream_prefix_is_kept_on_translated_calls() {
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let shim = Shim::start(&format!("{}/explo/", upstream.url()), &[]);
    let got = send(
        "POST",
        &shim.url("/api/update_user_group/?trace=1"),
        &[],
        r#"{"user_group_id": "a"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        upstream.requests()[0].target,
        "/explo/api/update_customer/?trace=1"
    );
}

#[tokio::test]
async fn a_legacy_path_with_another_method_passes_through() {
    let upstream = FakeUpstream::always(Reply::json(
        405,
        json!({"detail": "Method \"GET\" not allowed."}),
    ))
    .await;
    let shim = Shim::start(&upstream.url(), &[]);
    let got = send("GET", &shim.url("/api/update_user_group/"), &[], "").await;
    assert_eq!(got.status, 405);
    assert_eq!(upstream.requests()[0].target, "/api/update_user_group/");
}

#[tokio::test]
async fn repeated_slashes_decide_the_route_but_pass_through_paths_go_byte_for_byte() {
    let upstream = FakeUpstream::always(Reply::raw(200, "text/plain", "ok")).await;
    let (shim, _config) = shim_with_team(&upstream, "");
    for path in ["//api/customers/", "/api//dashboards//x"] {
        assert_eq!(send("GET", &shim.url(path), &[], "").await.status, 200);
    }
    let targets: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["//api/customers/", "/api//dashboards//x"]);
}
