//! Legacy request body → Customer API request body. Pure functions, no I/O.
//!
//! Every key the client sent is forwarded (in the client's order) except where this module
//! says otherwise: `user_group_id` becomes `provided_id` on create and update, and a delete by
//! `user_group_id` alone is turned into a token lookup followed by a delete by token.

use serde_json::{Map, Value, json};

use super::LegacyRoute;
use crate::error::ShimError;

/// The legacy request key and the Customer key that replaces it (create and update).
pub const USER_GROUP_ID: &str = "user_group_id";
pub const PROVIDED_ID: &str = "provided_id";
pub const CURRENT_TOKEN: &str = "current_token";

/// Fields from the oldest docs (S4) that no Customer endpoint accepts.
const DATA_SOURCE_FIELDS: [&str; 2] = ["data_source_id", "data_source_provided_id"];

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
    /// One call to the route's Customer endpoint with this body.
    Send(Value),
    /// A legacy delete that named the group by `user_group_id` only: the Customer delete needs
    /// the token, so `POST /api/get_customer/ {provided_id}` comes first, then the delete with
    /// the remaining keys plus `current_token`.
    LookupTokenThenDelete {
        provided_id: String,
        rest: Map<String, Value>,
    },
}

/// Translates a parsed legacy body for `route`.
pub fn translate_request(route: LegacyRoute, body: Value) -> Result<TranslatedRequest, ShimError> {
    let Value::Object(fields) = body else {
        return Err(ShimError::BodyNotObject);
    };
    match route {
        LegacyRoute::CreateUserGroup | LegacyRoute::UpdateUserGroup => {
            translate_create_or_update(route, fields)
        }
        LegacyRoute::DeleteUserGroup => translate_delete(route, fields),
        LegacyRoute::RefreshUserGroupToken => {
            require_token(route, &fields)?;
            Ok(TranslatedRequest {
                user_group_id: optional_user_group_id(&fields),
                plan: CustomerCall::Send(Value::Object(fields)),
            })
        }
    }
}

fn translate_create_or_update(
    route: LegacyRoute,
    fields: Map<String, Value>,
) -> Result<TranslatedRequest, ShimError> {
    if let Some(field) = DATA_SOURCE_FIELDS
        .into_iter()
        .find(|f| fields.contains_key(*f))
    {
        return Err(ShimError::UnsupportedDataSourceField { field });
    }
    let id = fields.get(USER_GROUP_ID).ok_or(ShimError::MissingField {
        field: USER_GROUP_ID,
        route: route.legacy_endpoint(),
    })?;
    let id = user_group_id_string(id)?;
    match fields.get(PROVIDED_ID) {
        None => {}
        Some(Value::String(provided)) if *provided == id => {}
        Some(_) => return Err(ShimError::ConflictingIds),
    }
    // Rebuild in the client's key order, with `provided_id` where `user_group_id` stood.
    let mut customer = Map::with_capacity(fields.len());
    for (key, value) in fields {
        match key.as_str() {
            USER_GROUP_ID => {
                customer.insert(PROVIDED_ID.to_owned(), Value::String(id.clone()));
            }
            // Already checked equal to `user_group_id`, which is forwarded in its place.
            PROVIDED_ID => {}
            _ => {
                customer.insert(key, value);
            }
        }
    }
    Ok(TranslatedRequest {
        user_group_id: Some(id),
        plan: CustomerCall::Send(Value::Object(customer)),
    })
}

fn translate_delete(
    route: LegacyRoute,
    mut fields: Map<String, Value>,
) -> Result<TranslatedRequest, ShimError> {
    if fields.contains_key(CURRENT_TOKEN) {
        require_token(route, &fields)?;
        return Ok(TranslatedRequest {
            user_group_id: optional_user_group_id(&fields),
            plan: CustomerCall::Send(Value::Object(fields)),
        });
    }
    let Some(id) = fields.shift_remove(USER_GROUP_ID) else {
        return Err(ShimError::MissingField {
            field: CURRENT_TOKEN,
            route: route.legacy_endpoint(),
        });
    };
    let provided_id = user_group_id_string(&id)?;
    Ok(TranslatedRequest {
        user_group_id: Some(provided_id.clone()),
        plan: CustomerCall::LookupTokenThenDelete {
            provided_id,
            rest: fields,
        },
    })
}

/// The body of the `get_customer` lookup that precedes a delete by id.
pub fn token_lookup_body(provided_id: &str) -> Value {
    json!({ PROVIDED_ID: provided_id })
}

/// The delete body once the token is known: the client's other keys plus `current_token`.
pub fn delete_by_token_body(mut rest: Map<String, Value>, token: &str) -> Value {
    rest.insert(CURRENT_TOKEN.to_owned(), Value::String(token.to_owned()));
    Value::Object(rest)
}

fn require_token(route: LegacyRoute, fields: &Map<String, Value>) -> Result<(), ShimError> {
    match fields.get(CURRENT_TOKEN) {
        Some(Value::String(token)) if !token.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(ShimError::InvalidField {
            field: CURRENT_TOKEN,
            reason: "must not be empty".to_owned(),
        }),
        Some(_) => Err(ShimError::InvalidField {
            field: CURRENT_TOKEN,
            reason: "must be a string".to_owned(),
        }),
        None => Err(ShimError::MissingField {
            field: CURRENT_TOKEN,
            route: route.legacy_endpoint(),
        }),
    }
}

/// `user_group_id` as the string the Customer API expects.
///
/// Old integrations send numeric ids; an integer is forwarded as its decimal digits, exactly
/// as written (no float rounding: serde_json keeps the literal). A fraction or exponent is
/// refused rather than guessed at, because `1.0` and `1` would name different customers.
fn user_group_id_string(value: &Value) -> Result<String, ShimError> {
    let invalid = |reason: &str| ShimError::InvalidField {
        field: USER_GROUP_ID,
        reason: reason.to_owned(),
    };
    match value {
        Value::String(id) if id.is_empty() => Err(invalid("must not be empty")),
        Value::String(id) => Ok(id.clone()),
        Value::Number(number) => {
            let literal = number.to_string();
            let digits = literal.strip_prefix('-').unwrap_or(&literal);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(literal)
            } else {
                Err(invalid("must be a string or an integer"))
            }
        }
        _ => Err(invalid("must be a string or an integer")),
    }
}

/// The id for the log on routes where it is optional; never an error.
fn optional_user_group_id(fields: &Map<String, Value>) -> Option<String> {
    fields
        .get(USER_GROUP_ID)
        .and_then(|id| user_group_id_string(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn sent(result: Result<TranslatedRequest, ShimError>) -> Value {
        match result.unwrap().plan {
            CustomerCall::Send(body) => body,
            other => panic!("expected a single call, got {other:?}"),
        }
    }

    #[test]
    fn update_renames_user_group_id_to_provided_id_for_the_doc_example() {
        let legacy = parse(include_str!(
            "../../tests/fixtures/update_user_group.request.json"
        ));
        let translated = translate_request(LegacyRoute::UpdateUserGroup, legacy).unwrap();
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
        let legacy = parse(
            r#"{"name": "A", "user_group_id": "g1", "is_demo_group": true, "x_custom": [1]}"#,
        );
        let body = sent(translate_request(LegacyRoute::CreateUserGroup, legacy));
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
            parse(r#"{"user_group_id": 42}"#),
        ));
        assert_eq!(body, parse(r#"{"provided_id": "42"}"#));
        let huge = sent(translate_request(
            LegacyRoute::UpdateUserGroup,
            parse(r#"{"user_group_id": 123456789012345678901234567890}"#),
        ));
        assert_eq!(huge["provided_id"], "123456789012345678901234567890");
        let negative = sent(translate_request(
            LegacyRoute::UpdateUserGroup,
            parse(r#"{"user_group_id": -7}"#),
        ));
        assert_eq!(negative["provided_id"], "-7");
    }

    #[test]
    fn non_integer_or_non_string_user_group_id_is_refused() {
        for bad in ["1.5", "1e3", "true", "null", "[\"a\"]", "{}", "\"\""] {
            let body = parse(&format!(r#"{{"user_group_id": {bad}}}"#));
            let error = translate_request(LegacyRoute::UpdateUserGroup, body).unwrap_err();
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
            let error = translate_request(route, parse(r#"{"name": "x"}"#)).unwrap_err();
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
            parse(r#"{"user_group_id": "a", "provided_id": "a", "name": "n"}"#),
        ));
        assert_eq!(body, parse(r#"{"provided_id": "a", "name": "n"}"#));
        for conflicting in [
            r#"{"user_group_id": "a", "provided_id": "b"}"#,
            r#"{"user_group_id": 1, "provided_id": 1}"#,
        ] {
            assert_eq!(
                translate_request(LegacyRoute::UpdateUserGroup, parse(conflicting)).unwrap_err(),
                ShimError::ConflictingIds
            );
        }
    }

    #[test]
    fn data_source_fields_point_to_mapping() {
        for field in DATA_SOURCE_FIELDS {
            let body = parse(&format!(r#"{{"user_group_id": "a", "{field}": 5}}"#));
            let error = translate_request(LegacyRoute::CreateUserGroup, body).unwrap_err();
            assert_eq!(error, ShimError::UnsupportedDataSourceField { field });
            assert!(error.message().contains("mapping"));
        }
    }

    #[test]
    fn non_object_bodies_are_refused() {
        for body in ["[]", "\"x\"", "1", "null"] {
            for route in LegacyRoute::ALL {
                assert_eq!(
                    translate_request(route, parse(body)).unwrap_err(),
                    ShimError::BodyNotObject
                );
            }
        }
    }

    #[test]
    fn delete_by_token_is_forwarded_unchanged() {
        let legacy = parse(include_str!(
            "../../tests/fixtures/delete_user_group.request.json"
        ));
        assert_eq!(
            sent(translate_request(
                LegacyRoute::DeleteUserGroup,
                legacy.clone()
            )),
            legacy
        );
        let with_id = parse(r#"{"current_token": "t", "user_group_id": "example_1"}"#);
        let translated = translate_request(LegacyRoute::DeleteUserGroup, with_id.clone()).unwrap();
        assert_eq!(translated.user_group_id.as_deref(), Some("example_1"));
        assert_eq!(translated.plan, CustomerCall::Send(with_id));
    }

    #[test]
    fn delete_by_id_alone_plans_a_token_lookup() {
        let translated = translate_request(
            LegacyRoute::DeleteUserGroup,
            parse(r#"{"user_group_id": "example_1", "note": "kept"}"#),
        )
        .unwrap();
        let CustomerCall::LookupTokenThenDelete { provided_id, rest } = translated.plan else {
            panic!("expected a lookup");
        };
        assert_eq!(provided_id, "example_1");
        assert_eq!(
            token_lookup_body(&provided_id),
            parse(r#"{"provided_id": "example_1"}"#)
        );
        assert_eq!(
            delete_by_token_body(rest, "tok"),
            parse(r#"{"note": "kept", "current_token": "tok"}"#)
        );
    }

    #[test]
    fn delete_without_token_or_id_is_refused() {
        let error = translate_request(LegacyRoute::DeleteUserGroup, parse("{}")).unwrap_err();
        assert_eq!(
            error,
            ShimError::MissingField {
                field: "current_token",
                route: "delete_user_group"
            }
        );
    }

    #[test]
    fn refresh_is_forwarded_unchanged_and_needs_a_string_token() {
        let legacy = parse(include_str!(
            "../../tests/fixtures/refresh_user_group_token.request.json"
        ));
        assert_eq!(
            sent(translate_request(
                LegacyRoute::RefreshUserGroupToken,
                legacy.clone()
            )),
            legacy
        );
        for bad in ["{}", r#"{"current_token": 5}"#, r#"{"current_token": ""}"#] {
            assert!(
                translate_request(LegacyRoute::RefreshUserGroupToken, parse(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
