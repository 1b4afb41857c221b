//! Customer API reply → legacy End User Group reply. Pure functions, bytes in and bytes out,
//! no I/O.
//!
//! A successful reply gets the legacy shape: `customer` becomes `user_group` holding only the
//! legacy keys (so strict legacy deserialisers keep working), and `new_customer` becomes
//! `new_user_group` on create. An unsuccessful reply keeps its body: only `customer` is renamed,
//! because error bodies are the upstream's words and the client may need all of them. Values
//! are copied as the upstream wrote them (see [`super::json`]); no `Value` tree is built.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Number;
use serde_json::value::RawValue;

use super::json::{
    Document, Members, ObjectWriter, SplitReply, member, members_of, parse_object,
    parse_object_expanding, string_value,
};
use crate::legacy::route::{LegacyRoute, ReplyShape};

const CUSTOMER: &str = "customer";
const USER_GROUP: &str = "user_group";
const NEW_CUSTOMER: &str = "new_customer";
const NEW_USER_GROUP: &str = "new_user_group";
const ACCESS_GROUP: &str = "access_group";
const TEAM_ID: &str = "team_id";
const API_ENVIRONMENT_TAG: &str = "api_environment_tag";
const PROPERTIES: &str = "properties";

const TOKEN: &str = "token";
const PROVIDED_ID: &str = "provided_id";

/// The Customer keys that have a legacy `user_group` counterpart, in legacy order. Each is
/// always present in the legacy shape, `null` when the customer has no value.
const LEGACY_USER_GROUP_KEYS: [&str; 5] = [TOKEN, "name", PROVIDED_ID, "is_demo_group", PROPERTIES];

/// Keys of the legacy `user_group` that the Customer API does not have; also always present.
const LEGACY_ONLY_KEYS: [&str; 2] = [TEAM_ID, API_ENVIRONMENT_TAG];

/// A successful legacy reply, and whose token it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacySuccess {
    pub body: Bytes,
    /// The customer's token and `provided_id`, when the reply names both.
    pub owner: Option<TokenOwner>,
}

/// A customer token and the `provided_id` of the customer holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub token: String,
    pub provided_id: String,
}

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

/// The legacy reply for a successful (2xx) Customer reply; an error when it is not JSON.
/// A reply that needs no change (a delete, a body that is not an object) is returned as it came.
pub fn legacy_success_reply(
    route: LegacyRoute,
    reply: &Bytes,
    options: &ReplyOptions,
) -> Result<LegacySuccess, serde_json::Error> {
    let as_it_came = || LegacySuccess {
        body: reply.clone(),
        owner: None,
    };
    let shape = route.spec().reply;
    if shape == ReplyShape::Unchanged {
        // `{"success": 1}` is the same in both APIs; it only has to be JSON.
        parse_object(reply)?;
        return Ok(as_it_came());
    }
    // The reply and its `customer` are split in one pass; the rare reply whose `customer` is
    // not an object takes a second one.
    let (fields, mut customer) = match parse_object_expanding(reply, CUSTOMER)? {
        SplitReply::Object { members, expanded } => (members, expanded),
        SplitReply::NotAnObject => return Ok(as_it_came()),
        SplitReply::ExpandedIsNotAnObject => match parse_object(reply)? {
            Document::Object(members) => (members, None),
            Document::NotAnObject => return Ok(as_it_came()),
        },
    };
    let owner = customer.as_ref().and_then(token_owner);
    let mut legacy = ObjectWriter::with_capacity(reply.len() + 64);
    for (key, value) in &fields {
        match key.as_ref() {
            CUSTOMER => match customer.take() {
                Some(members) => {
                    legacy.raw_bytes(USER_GROUP, &user_group_of(&members, options));
                }
                None => {
                    legacy.raw_bytes(USER_GROUP, &user_group(value, options));
                }
            },
            NEW_CUSTOMER if shape == ReplyShape::NewUserGroup => {
                legacy.raw(NEW_USER_GROUP, value.get());
            }
            _ => {
                legacy.raw(key, value.get());
            }
        }
    }
    Ok(LegacySuccess {
        body: Bytes::from(legacy.finish()),
        owner,
    })
}

/// The token and `provided_id` of a Customer object, when it has both as non-empty strings.
fn token_owner(customer: &Members<'_>) -> Option<TokenOwner> {
    let text = |key| {
        string_value(member(customer, key)?)
            .filter(|value| !value.is_empty())
            .map(|value| value.into_owned())
    };
    Some(TokenOwner {
        token: text(TOKEN)?,
        provided_id: text(PROVIDED_ID)?,
    })
}

/// The customer a `get_customer` (or any single-customer) reply shows, if it names one.
pub fn reply_owner(reply: &[u8]) -> Option<TokenOwner> {
    let Ok(Document::Object(fields)) = parse_object(reply) else {
        return None;
    };
    token_owner(&members_of(member(&fields, CUSTOMER)?)?)
}

/// The legacy reply for an unsuccessful Customer reply: the same body with `customer` renamed,
/// or `None` when there is nothing to rename (the bytes then go back exactly as they came).
pub fn legacy_error_reply(reply: &[u8]) -> Option<Bytes> {
    let Ok(Document::Object(fields)) = parse_object(reply) else {
        return None;
    };
    member(&fields, CUSTOMER)?;
    let mut legacy = ObjectWriter::with_capacity(reply.len() + 4);
    for (key, value) in &fields {
        let key = if key == CUSTOMER { USER_GROUP } else { key };
        legacy.raw(key, value.get());
    }
    Some(Bytes::from(legacy.finish()))
}

/// The customer's token from a `get_customer` reply, if it has one.
pub fn customer_token(reply: &[u8]) -> Option<String> {
    let Ok(Document::Object(fields)) = parse_object(reply) else {
        return None;
    };
    let customer = members_of(member(&fields, CUSTOMER)?)?;
    string_value(member(&customer, TOKEN)?)
        .filter(|token| !token.is_empty())
        .map(|token| token.into_owned())
}

/// Whether a reply says `"success": 1`.
pub fn reports_success(reply: &[u8]) -> bool {
    match parse_object(reply) {
        Ok(Document::Object(fields)) => member(&fields, "success").is_some_and(|v| v.get() == "1"),
        _ => false,
    }
}

/// One Customer object in the legacy `user_group` shape. Anything but an object is copied as
/// it is.
fn user_group<'a>(raw_customer: &'a RawValue, options: &ReplyOptions) -> Cow<'a, [u8]> {
    match members_of(raw_customer) {
        Some(customer) => Cow::Owned(user_group_of(&customer, options)),
        None => Cow::Borrowed(raw_customer.get().as_bytes()),
    }
}

/// The legacy `user_group` for a Customer object's members: every documented legacy key, in
/// the legacy order, `null` where there is no value, so a client that reads
/// `user_group["team_id"]` always finds the key.
fn user_group_of(customer: &Members<'_>, options: &ReplyOptions) -> Vec<u8> {
    let mut group = ObjectWriter::with_capacity(customer.len() * 32);
    match &options.team_id {
        Some(team_id) => group.raw(TEAM_ID, &team_id.to_string()),
        None => group.raw(TEAM_ID, "null"),
    };
    for key in LEGACY_USER_GROUP_KEYS {
        match member(customer, key) {
            Some(value) => group.raw(key, value.get()),
            None => group.raw(key, "null"),
        };
    }
    match api_environment_tag(customer, options) {
        Some(tag) => group.string(API_ENVIRONMENT_TAG, tag),
        None => group.raw(API_ENVIRONMENT_TAG, "null"),
    };
    if options.extra_customer_keys {
        let mut extra: Vec<&str> = Vec::new();
        for (key, value) in customer {
            // Every legacy key is written above; the first of each other key wins, as it did
            // for the legacy keys.
            let written = LEGACY_USER_GROUP_KEYS.contains(&key.as_ref())
                || LEGACY_ONLY_KEYS.contains(&key.as_ref());
            if !written && !extra.contains(&key.as_ref()) {
                group.raw(key, value.get());
                extra.push(key);
            }
        }
    }
    group.finish()
}

/// The configured tag for the customer's `access_group`, if any.
fn api_environment_tag<'o>(customer: &Members<'_>, options: &'o ReplyOptions) -> Option<&'o str> {
    let access_group = string_value(member(customer, ACCESS_GROUP)?)?;
    options
        .api_environment_tags
        .get(access_group.as_ref())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The translation of `reply` as a `Value`, to compare with the doc examples.
    fn success(route: LegacyRoute, reply: Value, options: &ReplyOptions) -> Value {
        let bytes = Bytes::from(serde_json::to_vec(&reply).unwrap());
        serde_json::from_slice(&legacy_success_reply(route, &bytes, options).unwrap().body).unwrap()
    }

    fn error_reply(reply: Value) -> Value {
        match legacy_error_reply(&serde_json::to_vec(&reply).unwrap()) {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap(),
            None => reply,
        }
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
        let legacy = success(LegacyRoute::UpdateUserGroup, customer, &with_team(113));
        let mut expected = parse(include_str!(
            "../../tests/fixtures/update_user_group.response.json"
        ));
        // The doc example omits properties and the tag; the Customer reply carries properties,
        // and the legacy shape always has both keys.
        expected["user_group"]["properties"] = parse(r#"{"filterValue": "new_value"}"#);
        expected["user_group"]["api_environment_tag"] = Value::Null;
        assert_eq!(legacy, expected);
    }

    #[test]
    fn create_reply_renames_new_customer_and_matches_the_doc_example() {
        let customer = parse(include_str!(
            "../../tests/fixtures/create_customer.response.json"
        ));
        let legacy = success(LegacyRoute::CreateUserGroup, customer, &with_team(3));
        let mut expected = parse(include_str!(
            "../../tests/fixtures/create_user_group.response.json"
        ));
        expected["user_group"]["properties"] = parse(r#"{"filterValue": "value"}"#);
        expected["user_group"]["api_environment_tag"] = Value::Null;
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
    fn every_legacy_key_is_present_null_when_unknown_in_the_legacy_order() {
        let reply =
            parse(r#"{"success": 1, "customer": {"token": "t", "name": "n", "provided_id": "p"}}"#);
        let legacy = success(
            LegacyRoute::RefreshUserGroupToken,
            reply,
            &ReplyOptions::default(),
        );
        assert_eq!(
            legacy,
            parse(
                r#"{"success": 1, "user_group": {"team_id": null, "token": "t", "name": "n",
                    "provided_id": "p", "is_demo_group": null, "properties": null,
                    "api_environment_tag": null}}"#
            )
        );
        let keys: Vec<&str> = legacy["user_group"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "team_id",
                "token",
                "name",
                "provided_id",
                "is_demo_group",
                "properties",
                "api_environment_tag"
            ]
        );
    }

    #[test]
    fn the_reply_names_the_token_owner() {
        let reply = Bytes::from_static(
            br#"{"success": 1, "customer": {"token": "t", "provided_id": "p"}}"#,
        );
        let legacy = legacy_success_reply(
            LegacyRoute::RefreshUserGroupToken,
            &reply,
            &ReplyOptions::default(),
        )
        .unwrap();
        let owner = TokenOwner {
            token: "t".into(),
            provided_id: "p".into(),
        };
        assert_eq!(legacy.owner, Some(owner.clone()));
        assert_eq!(reply_owner(&reply), Some(owner));
        assert_eq!(reply_owner(br#"{"customer": {"token": "t"}}"#), None);
        assert_eq!(
            reply_owner(br#"{"customer": {"token": "", "provided_id": "p"}}"#),
            None
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
        let legacy = success(LegacyRoute::UpdateUserGroup, reply.clone(), &options);
        assert_eq!(legacy["user_group"]["api_environment_tag"], "Customer");

        options.api_environment_tags = BTreeMap::from([("Development".into(), "Testing".into())]);
        let legacy = success(LegacyRoute::UpdateUserGroup, reply, &options);
        assert_eq!(legacy["user_group"]["api_environment_tag"], Value::Null);
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
        let legacy = success(LegacyRoute::CreateUserGroup, reply.clone(), &options);
        let customer = reply["customer"].as_object().unwrap();
        let group = legacy["user_group"].as_object().unwrap();
        // Every Customer key, plus the two legacy-only ones.
        assert_eq!(group.len(), customer.len() + 2);
        assert_eq!(group["team_id"], Value::Null);
        for (key, value) in customer {
            assert_eq!(&group[key], value, "{key}");
        }
    }

    #[test]
    fn new_customer_is_renamed_on_create_only() {
        let reply = parse(r#"{"success": 1, "new_customer": false}"#);
        let create = success(
            LegacyRoute::CreateUserGroup,
            reply.clone(),
            &ReplyOptions::default(),
        );
        assert_eq!(create, parse(r#"{"success": 1, "new_user_group": false}"#));
        let update = success(
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
            success(LegacyRoute::DeleteUserGroup, reply.clone(), &with_team(1)),
            reply
        );
    }

    #[test]
    fn error_reply_keeps_everything_but_the_customer_key_name() {
        let reply =
            parse(r#"{"success": 0, "error": "nope", "customer": {"token": "t", "emails": []}}"#);
        assert_eq!(
            error_reply(reply),
            parse(r#"{"success": 0, "error": "nope", "user_group": {"token": "t", "emails": []}}"#)
        );
        let detail = parse(r#"{"detail": "Invalid token."}"#);
        assert_eq!(error_reply(detail.clone()), detail);
    }

    #[test]
    fn odd_shapes_are_left_alone() {
        let options = ReplyOptions::default();
        assert_eq!(
            success(LegacyRoute::UpdateUserGroup, parse("[1]"), &options),
            parse("[1]")
        );
        let null_customer = parse(r#"{"success": 1, "customer": null}"#);
        assert_eq!(
            success(LegacyRoute::UpdateUserGroup, null_customer, &options),
            parse(r#"{"success": 1, "user_group": null}"#)
        );
    }

    #[test]
    fn customer_token_is_read_from_get_customer() {
        assert_eq!(
            customer_token(br#"{"customer": {"token": "abc"}}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(customer_token(br#"{"customer": {"token": ""}}"#), None);
        assert_eq!(customer_token(br#"{"success": 0}"#), None);
        assert_eq!(customer_token(br#"{"customer": "x"}"#), None);
        assert!(reports_success(br#"{"success": 1}"#));
        assert!(!reports_success(br#"{"success": 0}"#));
        assert!(!reports_success(b"[1]"));
    }

    #[test]
    fn values_keep_the_upstreams_exact_bytes_and_unchanged_replies_are_not_rewritten() {
        let reply = Bytes::from_static(
            br#"{"success": 1, "customer": {"token": "t", "provided_id": "p", "properties": {"n": 1E5, "big": 1e400}, "name": "n"}, "extra": 1.10}"#,
        );
        let legacy = legacy_success_reply(
            LegacyRoute::UpdateUserGroup,
            &reply,
            &ReplyOptions::default(),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&legacy.body).unwrap(),
            r#"{"success":1,"user_group":{"team_id":null,"token":"t","name":"n","provided_id":"p","is_demo_group":null,"properties":{"n": 1E5, "big": 1e400},"api_environment_tag":null},"extra":1.10}"#
        );
        let delete = Bytes::from_static(br#"{"success": 1}"#);
        assert_eq!(
            legacy_success_reply(
                LegacyRoute::DeleteUserGroup,
                &delete,
                &ReplyOptions::default()
            )
            .unwrap()
            .body,
            delete
        );
        assert!(
            legacy_success_reply(
                LegacyRoute::UpdateUserGroup,
                &Bytes::from_static(b"<html>"),
                &ReplyOptions::default()
            )
            .is_err()
        );
        assert_eq!(legacy_error_reply(br#"{"detail": "Invalid token."}"#), None);
        assert_eq!(legacy_error_reply(b"not json"), None);
    }
}
