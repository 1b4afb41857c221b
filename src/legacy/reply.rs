//! Customer API reply → legacy End User Group reply. Pure functions, no I/O.
//!
//! A successful reply gets the legacy shape: `customer` becomes `user_group` holding only the
//! legacy keys (so strict legacy deserialisers keep working), and `new_customer` becomes
//! `new_user_group` on create. An unsuccessful reply keeps its body: only `customer` is renamed,
//! because error bodies are the upstream's words and the client may need all of them.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::LegacyRoute;

const CUSTOMER: &str = "customer";
const USER_GROUP: &str = "user_group";
const NEW_CUSTOMER: &str = "new_customer";
const NEW_USER_GROUP: &str = "new_user_group";
const ACCESS_GROUP: &str = "access_group";
const TEAM_ID: &str = "team_id";
const API_ENVIRONMENT_TAG: &str = "api_environment_tag";
const PROPERTIES: &str = "properties";

/// The Customer keys that have a legacy `user_group` counterpart, in legacy order.
/// `properties` is always present in the legacy shape (null when absent).
const LEGACY_USER_GROUP_KEYS: [&str; 5] =
    ["token", "name", "provided_id", "is_demo_group", PROPERTIES];

/// What the operator configured about the legacy reply shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplyOptions {
    /// Sent as `user_group.team_id`; the Customer API has no team id.
    pub team_id: Option<Number>,
    /// `access_group` name → legacy `api_environment_tag`; unmapped groups get no tag.
    pub api_environment_tags: BTreeMap<String, String>,
    /// Pass the Customer-only keys (`emails`, `group_tags`, ...) through as well.
    pub extra_customer_keys: bool,
}

/// The legacy reply for a successful (2xx) Customer reply.
pub fn legacy_success_reply(route: LegacyRoute, reply: Value, options: &ReplyOptions) -> Value {
    let Value::Object(fields) = reply else {
        return reply;
    };
    if route == LegacyRoute::DeleteUserGroup {
        // `{"success": 1}` is the same in both APIs.
        return Value::Object(fields);
    }
    let mut legacy = Map::with_capacity(fields.len());
    for (key, value) in fields {
        match key.as_str() {
            CUSTOMER => {
                legacy.insert(USER_GROUP.to_owned(), legacy_user_group(value, options));
            }
            NEW_CUSTOMER if route == LegacyRoute::CreateUserGroup => {
                legacy.insert(NEW_USER_GROUP.to_owned(), value);
            }
            _ => {
                legacy.insert(key, value);
            }
        }
    }
    Value::Object(legacy)
}

/// The legacy reply for an unsuccessful Customer reply: the same body, `customer` renamed.
pub fn legacy_error_reply(reply: Value) -> Value {
    match reply {
        Value::Object(fields) if fields.contains_key(CUSTOMER) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| {
                    if key == CUSTOMER {
                        (USER_GROUP.to_owned(), value)
                    } else {
                        (key, value)
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// The customer's token from a `get_customer` reply, if it has one.
pub fn customer_token(reply: &Value) -> Option<&str> {
    reply
        .get(CUSTOMER)?
        .get("token")?
        .as_str()
        .filter(|token| !token.is_empty())
}

/// One Customer object in the legacy `user_group` shape.
fn legacy_user_group(customer: Value, options: &ReplyOptions) -> Value {
    let Value::Object(mut customer) = customer else {
        return customer;
    };
    let mut group = Map::new();
    if let Some(team_id) = &options.team_id {
        group.insert(TEAM_ID.to_owned(), Value::Number(team_id.clone()));
    }
    for key in LEGACY_USER_GROUP_KEYS {
        match customer.shift_remove(key) {
            Some(value) => {
                group.insert(key.to_owned(), value);
            }
            None if key == PROPERTIES => {
                group.insert(key.to_owned(), Value::Null);
            }
            None => {}
        }
    }
    let tag = customer
        .get(ACCESS_GROUP)
        .and_then(Value::as_str)
        .and_then(|access_group| options.api_environment_tags.get(access_group));
    if let Some(tag) = tag {
        group.insert(API_ENVIRONMENT_TAG.to_owned(), Value::String(tag.clone()));
    }
    if options.extra_customer_keys {
        for (key, value) in customer {
            group.entry(key).or_insert(value);
        }
    }
    Value::Object(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn with_team(team_id: u64) -> ReplyOptions {
        ReplyOptions {
            team_id: Some(team_id.into()),
            ..ReplyOptions::default()
        }
    }

    #[test]
    fn update_reply_matches_the_legacy_doc_example() {
        let customer = parse(include_str!(
            "../../tests/fixtures/update_customer.response.json"
        ));
        let legacy = legacy_success_reply(LegacyRoute::UpdateUserGroup, customer, &with_team(113));
        let mut expected = parse(include_str!(
            "../../tests/fixtures/update_user_group.response.json"
        ));
        // The doc example omits properties; the Customer reply carries them and the legacy
        // shape always has the key.
        expected["user_group"]["properties"] = parse(r#"{"filterValue": "new_value"}"#);
        assert_eq!(legacy, expected);
    }

    #[test]
    fn create_reply_renames_new_customer_and_matches_the_doc_example() {
        let customer = parse(include_str!(
            "../../tests/fixtures/create_customer.response.json"
        ));
        let legacy = legacy_success_reply(LegacyRoute::CreateUserGroup, customer, &with_team(3));
        let mut expected = parse(include_str!(
            "../../tests/fixtures/create_user_group.response.json"
        ));
        expected["user_group"]["properties"] = parse(r#"{"filterValue": "value"}"#);
        assert_eq!(legacy, expected);
        let keys: Vec<&str> = legacy
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["success", "new_user_group", "user_group"]);
    }

    #[test]
    fn without_team_id_the_key_is_absent_and_properties_default_to_null() {
        let reply =
            parse(r#"{"success": 1, "customer": {"token": "t", "name": "n", "provided_id": "p"}}"#);
        let legacy = legacy_success_reply(
            LegacyRoute::RefreshUserGroupToken,
            reply,
            &ReplyOptions::default(),
        );
        assert_eq!(
            legacy,
            parse(
                r#"{"success": 1, "user_group": {"token": "t", "name": "n", "provided_id": "p", "properties": null}}"#
            )
        );
    }

    #[test]
    fn access_group_maps_to_api_environment_tag_only_when_configured() {
        let reply = parse(include_str!(
            "../../tests/fixtures/update_customer.response.json"
        ));
        let mut options = ReplyOptions::default();
        options
            .api_environment_tags
            .insert("Production".into(), "Customer".into());
        let legacy = legacy_success_reply(LegacyRoute::UpdateUserGroup, reply.clone(), &options);
        assert_eq!(legacy["user_group"]["api_environment_tag"], "Customer");

        options.api_environment_tags = BTreeMap::from([("Development".into(), "Testing".into())]);
        let legacy = legacy_success_reply(LegacyRoute::UpdateUserGroup, reply, &options);
        assert!(legacy["user_group"].get("api_environment_tag").is_none());
    }

    #[test]
    fn extra_customer_keys_pass_through_when_switched_on() {
        let reply = parse(include_str!(
            "../../tests/fixtures/create_customer.response.json"
        ));
        let options = ReplyOptions {
            extra_customer_keys: true,
            ..ReplyOptions::default()
        };
        let legacy = legacy_success_reply(LegacyRoute::CreateUserGroup, reply.clone(), &options);
        let customer = reply["customer"].as_object().unwrap();
        let group = legacy["user_group"].as_object().unwrap();
        assert_eq!(group.len(), customer.len());
        for (key, value) in customer {
            assert_eq!(&group[key], value, "{key}");
        }
    }

    #[test]
    fn new_customer_is_renamed_on_create_only() {
        let reply = parse(r#"{"success": 1, "new_customer": false}"#);
        let create = legacy_success_reply(
            LegacyRoute::CreateUserGroup,
            reply.clone(),
            &ReplyOptions::default(),
        );
        assert_eq!(create, parse(r#"{"success": 1, "new_user_group": false}"#));
        let update = legacy_success_reply(
            LegacyRoute::UpdateUserGroup,
            reply.clone(),
            &ReplyOptions::default(),
        );
        assert_eq!(update, reply);
    }

    #[test]
    fn delete_reply_is_unchanged() {
        let reply = parse(r#"{"success": 1, "customer": {"x": 1}}"#);
        assert_eq!(
            legacy_success_reply(LegacyRoute::DeleteUserGroup, reply.clone(), &with_team(1)),
            reply
        );
    }

    #[test]
    fn error_reply_keeps_everything_but_the_customer_key_name() {
        let reply =
            parse(r#"{"success": 0, "error": "nope", "customer": {"token": "t", "emails": []}}"#);
        assert_eq!(
            legacy_error_reply(reply),
            parse(r#"{"success": 0, "error": "nope", "user_group": {"token": "t", "emails": []}}"#)
        );
        let detail = parse(r#"{"detail": "Invalid token."}"#);
        assert_eq!(legacy_error_reply(detail.clone()), detail);
    }

    #[test]
    fn odd_shapes_are_left_alone() {
        let options = ReplyOptions::default();
        assert_eq!(
            legacy_success_reply(LegacyRoute::UpdateUserGroup, parse("[1]"), &options),
            parse("[1]")
        );
        let null_customer = parse(r#"{"success": 1, "customer": null}"#);
        assert_eq!(
            legacy_success_reply(LegacyRoute::UpdateUserGroup, null_customer, &options),
            parse(r#"{"success": 1, "user_group": null}"#)
        );
    }

    #[test]
    fn customer_token_is_read_from_get_customer() {
        assert_eq!(
            customer_token(&parse(r#"{"customer": {"token": "abc"}}"#)),
            Some("abc")
        );
        assert_eq!(
            customer_token(&parse(r#"{"customer": {"token": ""}}"#)),
            None
        );
        assert_eq!(customer_token(&parse(r#"{"success": 0}"#)), None);
    }
}
