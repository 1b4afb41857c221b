//! Legacy request body → Customer API request body. Pure functions, bytes in and bytes out,
//! no I/O.
//!
//! Create and update forward every key the client sent (in the client's order, each value's
//! bytes exactly as written), with `user_group_id` renamed to `provided_id`. Delete and refresh
//! name the customer by `current_token` and send the Customer API its own keys: the legacy-only
//! `user_group_id` and `data_source_*` are dropped. A `user_group_id` sent next to the token is
//! not simply dropped, because it says which group the client means: the workflow checks that
//! it is the token's customer before anything is changed. A delete by `user_group_id` alone is
//! turned into a token lookup followed by a delete by token. The body is parsed once, strictly
//! (see [`super::json`]), and no `Value` tree is built.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::json::{Document, Members, ObjectWriter, member, parse_strict_object, string_value};
use crate::error::ShimError;
use crate::legacy::route::{CallPlan, LegacyRoute};

/// The legacy request key and the Customer key that replaces it (create and update).
pub const USER_GROUP_ID: &str = "user_group_id";
pub const PROVIDED_ID: &str = "provided_id";
pub const CURRENT_TOKEN: &str = "current_token";

/// Fields from the oldest docs (S4) that no Customer endpoint accepts.
const DATA_SOURCE_FIELDS: [&str; 2] = ["data_source_id", "data_source_provided_id"];

/// Keys only the legacy API knows; never sent to a by-token Customer endpoint.
const LEGACY_ONLY_KEYS: [&str; 3] = [USER_GROUP_ID, DATA_SOURCE_FIELDS[0], DATA_SOURCE_FIELDS[1]];

/// A translated legacy call, ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslatedRequest {
    /// The group the call names, as a string, for the deprecated-usage log.
    pub user_group_id: Option<String>,
    /// What to send upstream.
    pub plan: CustomerCall,
}

/// The Customer API calls one legacy call turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCall {
    /// One call to the route's Customer endpoint with this JSON body (create, update).
    Send(Bytes),
    /// A call that names the customer by token (delete, refresh).
    ByToken(ByToken),
}

/// A by-token call: what the client named the customer by, and the Customer keys to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ByToken {
    /// The client's `current_token`; `None` for a delete by `user_group_id` alone, whose token
    /// is looked up first (`POST /api/get_customer/ {provided_id}`).
    pub token: Option<String>,
    /// The client's `user_group_id`, which must name the token's customer.
    pub provided_id: Option<String>,
    /// The client's keys without the legacy-only ones; [`ByToken::body`] completes it.
    pub keys: ObjectWriter,
}

impl ByToken {
    /// The Customer request body: the client's Customer keys, plus `current_token` when it was
    /// looked up rather than sent.
    pub fn body(self, looked_up_token: Option<&str>) -> Bytes {
        let mut keys = self.keys;
        if self.token.is_none()
            && let Some(token) = looked_up_token
        {
            keys.string(CURRENT_TOKEN, token);
        }
        Bytes::from(keys.finish())
    }
}

/// Translates a legacy body for `route`. A body that is not JSON (or repeats a key) is
/// [`ShimError::InvalidJson`]; JSON that is not an object is [`ShimError::BodyNotObject`].
pub fn translate_request(route: LegacyRoute, body: &[u8]) -> Result<TranslatedRequest, ShimError> {
    let document = parse_strict_object(body).map_err(|error| ShimError::InvalidJson {
        detail: error.to_string(),
    })?;
    let Document::Object(members) = document else {
        return Err(ShimError::BodyNotObject);
    };
    match route.spec().plan {
        CallPlan::ByGroupId => translate_by_group_id(route, &members, body.len()),
        CallPlan::ByToken => translate_by_token(route, &members, body.len(), false),
        CallPlan::ByTokenOrGroupId => translate_by_token(route, &members, body.len(), true),
    }
}

fn translate_by_group_id(
    route: LegacyRoute,
    members: &Members<'_>,
    size: usize,
) -> Result<TranslatedRequest, ShimError> {
    if let Some(field) = DATA_SOURCE_FIELDS
        .into_iter()
        .find(|field| member(members, field).is_some())
    {
        return Err(ShimError::UnsupportedDataSourceField { field });
    }
    let id = member(members, USER_GROUP_ID).ok_or(ShimError::MissingField {
        field: USER_GROUP_ID,
        route: route.legacy_endpoint(),
    })?;
    let id = user_group_id_string(id)?;
    if let Some(provided) = member(members, PROVIDED_ID)
        && string_value(provided).as_deref() != Some(id.as_str())
    {
        return Err(ShimError::ConflictingIds);
    }
    // The client's members in order, with `provided_id` where `user_group_id` stood.
    let mut customer = ObjectWriter::with_capacity(size + 8);
    for (key, value) in members {
        match key.as_ref() {
            USER_GROUP_ID => {
                customer.string(PROVIDED_ID, &id);
            }
            // Already checked equal to `user_group_id`, which is forwarded in its place.
            PROVIDED_ID => {}
            _ => {
                customer.raw(key, value.get());
            }
        }
    }
    Ok(TranslatedRequest {
        user_group_id: Some(id),
        plan: CustomerCall::Send(Bytes::from(customer.finish())),
    })
}

fn translate_by_token(
    route: LegacyRoute,
    members: &Members<'_>,
    size: usize,
    group_id_alone_allowed: bool,
) -> Result<TranslatedRequest, ShimError> {
    let provided_id = member(members, USER_GROUP_ID)
        .map(user_group_id_string)
        .transpose()?;
    let token = match member(members, CURRENT_TOKEN) {
        Some(_) => Some(require_token(route, members)?),
        None if provided_id.is_some() && group_id_alone_allowed => None,
        None => {
            return Err(ShimError::MissingField {
                field: CURRENT_TOKEN,
                route: route.legacy_endpoint(),
            });
        }
    };
    let mut keys = ObjectWriter::with_capacity(size);
    for (key, value) in members {
        if !LEGACY_ONLY_KEYS.contains(&key.as_ref()) {
            keys.raw(key, value.get());
        }
    }
    Ok(TranslatedRequest {
        user_group_id: provided_id.clone(),
        plan: CustomerCall::ByToken(ByToken {
            token,
            provided_id,
            keys,
        }),
    })
}

/// Refuses a legacy body larger than `limit` bytes (the shim while reading, `translate` on its
/// input), with the same error.
pub fn check_body_size(size: u64, limit: u64) -> Result<(), ShimError> {
    if size > limit {
        return Err(ShimError::BodyTooLarge { limit });
    }
    Ok(())
}

/// The body of the `get_customer` lookup that finds a customer's token by its id.
pub fn token_lookup_body(provided_id: &str) -> Bytes {
    let mut body = ObjectWriter::with_capacity(provided_id.len() + 20);
    body.string(PROVIDED_ID, provided_id);
    Bytes::from(body.finish())
}

fn require_token(route: LegacyRoute, members: &Members<'_>) -> Result<String, ShimError> {
    let Some(token) = member(members, CURRENT_TOKEN) else {
        return Err(ShimError::MissingField {
            field: CURRENT_TOKEN,
            route: route.legacy_endpoint(),
        });
    };
    match string_value(token) {
        Some(token) if !token.is_empty() => Ok(token.into_owned()),
        Some(_) => Err(ShimError::InvalidField {
            field: CURRENT_TOKEN,
            reason: "must not be empty".to_owned(),
        }),
        None => Err(ShimError::InvalidField {
            field: CURRENT_TOKEN,
            reason: "must be a string".to_owned(),
        }),
    }
}

/// `user_group_id` as the string the Customer API expects.
///
/// Old integrations send numeric ids; an integer is forwarded as its decimal digits, exactly
/// as written (the literal is copied, never converted). A fraction or exponent is refused
/// rather than guessed at, because `1.0` and `1` would name different customers.
fn user_group_id_string(value: &RawValue) -> Result<String, ShimError> {
    let invalid = |reason: &str| ShimError::InvalidField {
        field: USER_GROUP_ID,
        reason: reason.to_owned(),
    };
    if let Some(id) = string_value(value) {
        return if id.is_empty() {
            Err(invalid("must not be empty"))
        } else {
            Ok(id.into_owned())
        };
    }
    let literal = value.get();
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(literal.to_owned())
    } else {
        Err(invalid("must be a string or an integer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn sent(result: Result<TranslatedRequest, ShimError>) -> Value {
        match result.unwrap().plan {
            CustomerCall::Send(body) => json(&body),
            CustomerCall::ByToken(by_token) => json(&by_token.body(None)),
        }
    }

    fn by_token(route: LegacyRoute, body: &str) -> ByToken {
        match translate_request(route, body.as_bytes()).unwrap().plan {
            CustomerCall::ByToken(by_token) => by_token,
            other => panic!("expected a by-token call, got {other:?}"),
        }
    }

    #[test]
    fn update_renames_user_group_id_to_provided_id_for_the_doc_example() {
        let legacy = include_str!("../../tests/fixtures/update_user_group.request.json");
        let translated =
            translate_request(LegacyRoute::UpdateUserGroup, legacy.as_bytes()).unwrap();
        assert_eq!(translated.user_group_id.as_deref(), Some("example_1"));
        assert_eq!(
            sent(Ok(translated)),
            parse(
                r#"{"provided_id": "example_1", "name": "Example 1",
                    "mapping": {"40": "213", "134": "386"},
                    "properties": {"filterValue": "value"}}"#
            )
        );
    }

    #[test]
    fn create_keeps_key_order_and_unknown_keys() {
        let legacy =
            r#"{"name": "A", "user_group_id": "g1", "is_demo_group": true, "x_custom": [1]}"#;
        let body = sent(translate_request(
            LegacyRoute::CreateUserGroup,
            legacy.as_bytes(),
        ));
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["name", "provided_id", "is_demo_group", "x_custom"]);
        assert_eq!(body["x_custom"], parse("[1]"));
    }

    #[test]
    fn numeric_user_group_id_becomes_its_decimal_string() {
        let body = sent(translate_request(
            LegacyRoute::CreateUserGroup,
            r#"{"user_group_id": 42}"#.as_bytes(),
        ));
        assert_eq!(body, parse(r#"{"provided_id": "42"}"#));
        let huge = sent(translate_request(
            LegacyRoute::UpdateUserGroup,
            r#"{"user_group_id": 123456789012345678901234567890}"#.as_bytes(),
        ));
        assert_eq!(huge["provided_id"], "123456789012345678901234567890");
        let negative = sent(translate_request(
            LegacyRoute::UpdateUserGroup,
            r#"{"user_group_id": -7}"#.as_bytes(),
        ));
        assert_eq!(negative["provided_id"], "-7");
    }

    #[test]
    fn non_integer_or_non_string_user_group_id_is_refused() {
        for bad in ["1.5", "1e3", "true", "null", "[\"a\"]", "{}", "\"\""] {
            let body = format!(r#"{{"user_group_id": {bad}}}"#);
            let error =
                translate_request(LegacyRoute::UpdateUserGroup, body.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    error,
                    ShimError::InvalidField {
                        field: "user_group_id",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_user_group_id_on_create_and_update_is_refused() {
        for route in [LegacyRoute::CreateUserGroup, LegacyRoute::UpdateUserGroup] {
            let error = translate_request(route, r#"{"name": "x"}"#.as_bytes()).unwrap_err();
            assert_eq!(
                error,
                ShimError::MissingField {
                    field: "user_group_id",
                    route: route.legacy_endpoint()
                }
            );
        }
    }

    #[test]
    fn agreeing_provided_id_is_sent_once_and_a_disagreeing_one_is_refused() {
        let body = sent(translate_request(
            LegacyRoute::UpdateUserGroup,
            r#"{"user_group_id": "a", "provided_id": "a", "name": "n"}"#.as_bytes(),
        ));
        assert_eq!(body, parse(r#"{"provided_id": "a", "name": "n"}"#));
        for conflicting in [
            r#"{"user_group_id": "a", "provided_id": "b"}"#,
            r#"{"user_group_id": 1, "provided_id": 1}"#,
        ] {
            assert_eq!(
                translate_request(LegacyRoute::UpdateUserGroup, conflicting.as_bytes())
                    .unwrap_err(),
                ShimError::ConflictingIds
            );
        }
    }

    #[test]
    fn data_source_fields_point_to_mapping() {
        for field in DATA_SOURCE_FIELDS {
            let body = format!(r#"{{"user_group_id": "a", "{field}": 5}}"#);
            let error =
                translate_request(LegacyRoute::CreateUserGroup, body.as_bytes()).unwrap_err();
            assert_eq!(error, ShimError::UnsupportedDataSourceField { field });
            assert!(error.message().contains("mapping"));
        }
    }

    #[test]
    fn non_object_bodies_are_refused() {
        for body in ["[]", "\"x\"", "1", "null"] {
            for route in LegacyRoute::ALL {
                assert_eq!(
                    translate_request(route, body.as_bytes()).unwrap_err(),
                    ShimError::BodyNotObject
                );
            }
        }
    }

    #[test]
    fn delete_by_token_sends_the_token() {
        let legacy = include_str!("../../tests/fixtures/delete_user_group.request.json");
        assert_eq!(
            sent(translate_request(
                LegacyRoute::DeleteUserGroup,
                legacy.as_bytes()
            )),
            parse(legacy)
        );
    }

    #[test]
    fn by_token_calls_drop_legacy_only_keys_but_remember_the_id() {
        for route in [
            LegacyRoute::DeleteUserGroup,
            LegacyRoute::RefreshUserGroupToken,
        ] {
            let call = by_token(
                route,
                r#"{"user_group_id": "example_1", "current_token": "t", "data_source_id": 4,
                    "data_source_provided_id": "ds"}"#,
            );
            assert_eq!(call.token.as_deref(), Some("t"));
            assert_eq!(call.provided_id.as_deref(), Some("example_1"));
            assert_eq!(
                json(&call.body(Some("ignored"))),
                parse(r#"{"current_token": "t"}"#)
            );
        }
        let numeric = by_token(
            LegacyRoute::RefreshUserGroupToken,
            r#"{"user_group_id": 7, "current_token": "t"}"#,
        );
        assert_eq!(numeric.provided_id.as_deref(), Some("7"));
        assert!(matches!(
            translate_request(
                LegacyRoute::RefreshUserGroupToken,
                br#"{"user_group_id": 1.5, "current_token": "t"}"#
            ),
            Err(ShimError::InvalidField {
                field: "user_group_id",
                ..
            })
        ));
    }

    #[test]
    fn delete_by_id_alone_plans_a_token_lookup() {
        let call = by_token(
            LegacyRoute::DeleteUserGroup,
            r#"{"user_group_id": "example_1", "note": "kept"}"#,
        );
        assert_eq!(call.token, None);
        assert_eq!(call.provided_id.as_deref(), Some("example_1"));
        assert_eq!(
            json(&token_lookup_body("example_1")),
            parse(r#"{"provided_id": "example_1"}"#)
        );
        assert_eq!(
            json(&call.body(Some("tok"))),
            parse(r#"{"note": "kept", "current_token": "tok"}"#)
        );
    }

    #[test]
    fn delete_without_token_or_id_and_refresh_without_token_are_refused() {
        let error = translate_request(LegacyRoute::DeleteUserGroup, "{}".as_bytes()).unwrap_err();
        assert_eq!(
            error,
            ShimError::MissingField {
                field: "current_token",
                route: "delete_user_group"
            }
        );
        let error = translate_request(
            LegacyRoute::RefreshUserGroupToken,
            br#"{"user_group_id": "g"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error,
            ShimError::MissingField {
                field: "current_token",
                route: "refresh_user_group_token"
            }
        );
    }

    #[test]
    fn refresh_sends_the_token_and_needs_a_string_token() {
        let legacy = include_str!("../../tests/fixtures/refresh_user_group_token.request.json");
        assert_eq!(
            sent(translate_request(
                LegacyRoute::RefreshUserGroupToken,
                legacy.as_bytes()
            )),
            parse(legacy)
        );
        for bad in ["{}", r#"{"current_token": 5}"#, r#"{"current_token": ""}"#] {
            assert!(
                translate_request(LegacyRoute::RefreshUserGroupToken, bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_and_other_values_keep_their_exact_bytes() {
        let legacy = r#"{"user_group_id": "g", "big": 1e400, "upper": 1E5, "float": 1.10, "nested": {"n": 123456789012345678901234567890, "s": "a\u00e9"}}"#;
        let CustomerCall::Send(body) =
            translate_request(LegacyRoute::UpdateUserGroup, legacy.as_bytes())
                .unwrap()
                .plan
        else {
            panic!("one call");
        };
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"provided_id":"g","big":1e400,"upper":1E5,"float":1.10,"nested":{"n": 123456789012345678901234567890, "s": "a\u00e9"}}"#
        );
    }

    #[test]
    fn unparseable_and_duplicate_key_bodies_are_invalid_json() {
        for body in [
            "{nope",
            r#"{"user_group_id": "a", "user_group_id": "b"}"#,
            "",
        ] {
            assert!(
                matches!(
                    translate_request(LegacyRoute::UpdateUserGroup, body.as_bytes()),
                    Err(ShimError::InvalidJson { .. })
                ),
                "{body}"
            );
        }
    }
}
