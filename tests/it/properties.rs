//! Property tests for the pure translation functions.

use explo_shim::legacy::reply::{ReplyOptions, legacy_error_reply, legacy_success_reply};
use explo_shim::legacy::request::{CustomerCall, translate_request};
use explo_shim::legacy::route::LegacyRoute;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

fn text(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// The single call a translation plans, as a `Value`.
fn sent_object(plan: CustomerCall) -> Map<String, Value> {
    let CustomerCall::Send(body) = plan else {
        panic!("expected one call");
    };
    match serde_json::from_slice(&body).expect("translation writes valid JSON") {
        Value::Object(object) => object,
        other => panic!("not an object: {other}"),
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects with keys a legacy client might send, plus anything else.
fn legacy_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        Just("name".to_owned()),
        Just("mapping".to_owned()),
        Just("is_demo_group".to_owned()),
        Just("properties".to_owned()),
        "[a-z_]{1,12}",
    ];
    prop::collection::btree_map(key, json_value(), 0..8).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| {
                ![
                    "user_group_id",
                    "provided_id",
                    "data_source_id",
                    "data_source_provided_id",
                ]
                .contains(&k.as_str())
            })
            .collect()
    })
}

const LEGACY_GROUP_KEYS: [&str; 7] = [
    "team_id",
    "token",
    "name",
    "provided_id",
    "is_demo_group",
    "properties",
    "api_environment_tag",
];

/// 512 cases per property, and past failures replayed first from the seeds beside this file
/// (`properties.proptest-regressions`). Said outright: proptest's default would look in
/// `tests/proptest-regressions/`, beside the directory that holds the test crate's `main.rs`.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(512)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn translation_never_panics(body in json_value()) {
        for route in LegacyRoute::ALL {
            let _ = translate_request(route, &text(&body));
        }
    }

    #[test]
    fn create_and_update_keep_every_key_and_rename_only_user_group_id(
        fields in legacy_object(),
        id in "[A-Za-z0-9_-]{1,20}",
    ) {
        for route in [LegacyRoute::CreateUserGroup, LegacyRoute::UpdateUserGroup] {
            let mut legacy = fields.clone();
            legacy.insert("user_group_id".into(), Value::String(id.clone()));
            let translated = translate_request(route, &text(&Value::Object(legacy.clone()))).unwrap();
            let customer = sent_object(translated.plan);
            prop_assert_eq!(customer.len(), legacy.len());
            prop_assert_eq!(customer.get("provided_id"), Some(&Value::String(id.clone())));
            prop_assert!(!customer.contains_key("user_group_id"));
            for (key, value) in &fields {
                prop_assert_eq!(customer.get(key), Some(value));
            }
        }
    }

    #[test]
    fn delete_and_refresh_with_a_token_send_every_key_but_the_legacy_only_ones(
        fields in legacy_object(),
        token in "[a-z0-9]{1,64}",
        data_source_id in proptest::option::of(0u32..100),
    ) {
        for route in [LegacyRoute::DeleteUserGroup, LegacyRoute::RefreshUserGroupToken] {
            let mut legacy = fields.clone();
            legacy.insert("current_token".into(), Value::String(token.clone()));
            let expected = legacy.clone();
            if let Some(id) = data_source_id {
                legacy.insert("data_source_id".into(), Value::from(id));
            }
            let translated = translate_request(route, &text(&Value::Object(legacy))).unwrap();
            let CustomerCall::ByToken(call) = translated.plan else {
                panic!("expected a by-token call");
            };
            prop_assert_eq!(call.token.as_deref(), Some(token.as_str()));
            let sent: Map<String, Value> = serde_json::from_slice(&call.body(None)).unwrap();
            prop_assert_eq!(sent, expected);
        }
    }

    #[test]
    fn any_customer_reply_maps_to_the_legacy_shape(
        customer in prop::collection::btree_map("[a-z_]{1,24}", json_value(), 0..12),
        extra in prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..4),
        team_id in proptest::option::of(0u32..10_000),
    ) {
        let mut reply: Map<String, Value> = extra.into_iter().filter(|(k, _)| k != "customer").collect();
        reply.insert("success".into(), Value::from(1));
        reply.insert("customer".into(), Value::Object(customer.clone().into_iter().collect()));
        let options = ReplyOptions { team_id: team_id.map(Into::into), ..ReplyOptions::default() };
        for route in [LegacyRoute::CreateUserGroup, LegacyRoute::UpdateUserGroup, LegacyRoute::RefreshUserGroupToken] {
            let bytes = text(&Value::Object(reply.clone())).into();
            let legacy: Value = serde_json::from_slice(&legacy_success_reply(route, &bytes, &options).unwrap().body).unwrap();
            let legacy = legacy.as_object().unwrap();
            prop_assert!(!legacy.contains_key("customer"));
            let group = legacy["user_group"].as_object().unwrap();
            prop_assert!(group.keys().all(|k| LEGACY_GROUP_KEYS.contains(&k.as_str())), "{:?}", group.keys());
            // Every legacy key is always there, null when the customer has no value.
            prop_assert_eq!(group.len(), LEGACY_GROUP_KEYS.len());
            prop_assert_eq!(group["team_id"].is_null(), team_id.is_none());
            for key in ["token", "name", "provided_id", "is_demo_group", "properties"] {
                prop_assert_eq!(&group[key], customer.get(key).unwrap_or(&Value::Null));
            }
            for (key, value) in &reply {
                if key != "customer" && !(key == "new_customer" && route == LegacyRoute::CreateUserGroup) {
                    prop_assert_eq!(legacy.get(key), Some(value));
                }
            }
        }
        let error: Value = serde_json::from_slice(&legacy_error_reply(&text(&Value::Object(reply.clone()))).unwrap()).unwrap();
        prop_assert_eq!(error.as_object().unwrap().len(), reply.len());
        prop_assert!(error.get("customer").is_none());
    }
}
