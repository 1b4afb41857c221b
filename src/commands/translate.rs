//! `explo-shim translate`: the migration assistant. Reads a legacy request (its JSON body, or a
//! whole `curl` command like the ones in the docs) and prints the equivalent Customer API
//! call(s), with every semantic difference that applies.

use serde_json::{Value, json};

use crate::error::ShimError;
use crate::legacy::request::{
    CustomerCall, TranslatedRequest, delete_by_token_body, token_lookup_body, translate_request,
};
use crate::legacy::{GET_CUSTOMER_PATH, LegacyRoute};

/// Where Customer API calls go unless the input's URL says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.explo.co";
const TOKEN_PLACEHOLDER: &str = "Token <your_api_token>";
const LOOKED_UP_TOKEN: &str = "<customer.token from the get_customer reply>";

/// A legacy request as read from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyInput {
    pub route: LegacyRoute,
    pub body: Value,
    pub authorization: Option<String>,
}

/// One Customer API call to make.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    pub method: &'static str,
    pub path: &'static str,
    pub body: Value,
}

/// The whole answer: the calls in order and the differences to know about.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub calls: Vec<PlannedCall>,
    pub notes: Vec<String>,
}

/// Why the input could not be translated.
#[derive(Debug, Clone, PartialEq)]
pub enum TranslateError {
    /// The input is neither JSON nor a curl command, or lacks what is needed.
    Input(String),
    /// The legacy request itself is invalid (the same answer the shim would give).
    Legacy(ShimError),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(message) => f.write_str(message),
            Self::Legacy(error) => write!(f, "{} ({})", error.message(), error.code()),
        }
    }
}

/// A legacy endpoint by name: `update_user_group`, `update`, `/api/update_user_group/`, ...
pub fn parse_endpoint(name: &str) -> Option<LegacyRoute> {
    let name = name.trim().trim_matches('/');
    let name = name.rsplit('/').next().unwrap_or(name);
    LegacyRoute::ALL.into_iter().find(|route| {
        let legacy = route.legacy_endpoint();
        name == legacy
            || legacy
                .strip_suffix("_user_group")
                .is_some_and(|short| short == name)
            || (name == "refresh" && *route == LegacyRoute::RefreshUserGroupToken)
            || (name == "create" && *route == LegacyRoute::CreateUserGroup)
    })
}

/// Reads the input: a curl command or a JSON body (`endpoint` is then required).
pub fn parse_input(
    text: &str,
    endpoint: Option<LegacyRoute>,
) -> Result<LegacyInput, TranslateError> {
    let trimmed = text.trim();
    if trimmed.starts_with("curl") {
        return parse_curl(trimmed, endpoint);
    }
    let body: Value = serde_json::from_str(trimmed).map_err(|error| {
        TranslateError::Input(format!(
            "the input is neither a curl command nor JSON: {error}"
        ))
    })?;
    let route = endpoint.ok_or_else(|| {
        TranslateError::Input(
            "a JSON body alone does not say which endpoint it is for; add --endpoint \
             create_user_group|update_user_group|delete_user_group|refresh_user_group_token"
                .to_owned(),
        )
    })?;
    Ok(LegacyInput {
        route,
        body,
        authorization: None,
    })
}

fn parse_curl(command: &str, endpoint: Option<LegacyRoute>) -> Result<LegacyInput, TranslateError> {
    // Backslash-newline is a line continuation in the shell.
    let joined = command.replace("\\\r\n", " ").replace("\\\n", " ");
    let words = shlex::split(&joined).ok_or_else(|| {
        TranslateError::Input("the curl command has unbalanced quotes".to_owned())
    })?;
    let mut method = None;
    let mut url = None;
    let mut data = None;
    let mut authorization = None;
    let mut words = words.into_iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-X" | "--request" => method = words.next(),
            "-H" | "--header" => {
                if let Some((name, value)) = words.next().as_deref().and_then(|h| h.split_once(':'))
                    && name.trim().eq_ignore_ascii_case("explo-authorization")
                {
                    authorization = Some(value.trim().to_owned());
                }
            }
            "-d" | "--data" | "--data-raw" | "--data-binary" | "--data-ascii" => {
                data = words.next()
            }
            "--url" => url = words.next(),
            other if other.starts_with("-X") && other.len() > 2 => {
                method = Some(other[2..].to_owned())
            }
            other if !other.starts_with('-') => url = Some(other.to_owned()),
            _ => {}
        }
    }
    let body_text = data.ok_or_else(|| {
        TranslateError::Input("the curl command sends no body (--data-raw)".to_owned())
    })?;
    let body: Value = serde_json::from_str(&body_text)
        .map_err(|error| TranslateError::Input(format!("the curl body is not JSON: {error}")))?;
    let route = match endpoint {
        Some(route) => route,
        None => {
            let url =
                url.ok_or_else(|| TranslateError::Input("the curl command has no URL".to_owned()))?;
            let path = url_path(&url);
            let method: http::Method = method
                .as_deref()
                .unwrap_or("POST")
                .parse()
                .map_err(|_| TranslateError::Input(format!("unknown method {method:?}")))?;
            LegacyRoute::recognise(&method, path).ok_or_else(|| {
                TranslateError::Input(format!(
                    "{method} {path} is not a legacy End User Group call; nothing to translate"
                ))
            })?
        }
    };
    Ok(LegacyInput {
        route,
        body,
        authorization,
    })
}

/// The path of an absolute or relative URL, without query.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        after_scheme
            .find('/')
            .map_or("/", |start| &after_scheme[start..])
    } else {
        after_scheme
    };
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The Customer API calls for `input`, and the notes that apply.
pub fn plan(input: &LegacyInput) -> Result<Migration, TranslateError> {
    let route = input.route;
    // The body as JSON text again: the same translation the shim runs, bytes in and bytes out.
    let text = serde_json::to_vec(&input.body).unwrap_or_default();
    let TranslatedRequest { plan, .. } =
        translate_request(route, &text).map_err(TranslateError::Legacy)?;
    let method = route.method().as_str();
    let method: &'static str = if method == "DELETE" { "DELETE" } else { "POST" };
    let mut notes = Vec::new();
    let calls = match plan {
        CustomerCall::Send(body) => vec![PlannedCall {
            method,
            path: route.customer_path(),
            body: as_value(&body),
        }],
        CustomerCall::LookupTokenThenDelete { provided_id, rest } => {
            notes.push(
                "The Customer delete takes the customer's token, not its id: the first call looks \
                 the token up, the second deletes with it."
                    .to_owned(),
            );
            vec![
                PlannedCall {
                    method: "POST",
                    path: GET_CUSTOMER_PATH,
                    body: as_value(&token_lookup_body(&provided_id)),
                },
                PlannedCall {
                    method: "DELETE",
                    path: route.customer_path(),
                    body: as_value(&delete_by_token_body(rest, LOOKED_UP_TOKEN)),
                },
            ]
        }
    };
    if input
        .body
        .get("user_group_id")
        .is_some_and(Value::is_number)
    {
        notes.push(
            "`provided_id` is a string: the numeric `user_group_id` is sent as its digits."
                .to_owned(),
        );
    }
    notes.extend(route_notes(route).iter().map(|note| (*note).to_owned()));
    Ok(Migration { calls, notes })
}

/// A translated body for display; translation only ever writes valid JSON.
fn as_value(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The semantic differences between each legacy endpoint and its replacement.
fn route_notes(route: LegacyRoute) -> &'static [&'static str] {
    const REPLY: &str = "The reply holds `customer` instead of `user_group`, with more keys (emails, \
        group_tags, access_group, hierarchy_level, computed_*); `team_id` and \
        `api_environment_tag` do not exist in the Customer API (`access_group` names a Data \
        Visibility Group, not an environment).";
    match route {
        LegacyRoute::CreateUserGroup => &[
            "`user_group_id` is now `provided_id`.",
            "`new_user_group` is now `new_customer`. create_customer is get-or-create: an existing \
             customer is returned, and whether the other fields are applied to it is not documented.",
            REPLY,
        ],
        LegacyRoute::UpdateUserGroup => &[
            "`user_group_id` is now `provided_id` and selects the customer; only the fields sent are \
             updated. Whether `properties` is merged or replaced is not documented.",
            REPLY,
        ],
        LegacyRoute::DeleteUserGroup => &[
            "CASCADE: delete_customer also deletes every descendant customer, which the legacy \
             delete never did. Check for children first with \
             GET /api/customers/?parent_provided_id=<provided_id>.",
            "The reply is `{\"success\": 1}` as before.",
        ],
        LegacyRoute::RefreshUserGroupToken => {
            &["The new token is `customer.token` in the reply.", REPLY]
        }
    }
}

/// The migration as ready-to-run curl commands followed by the notes.
pub fn render_curl(migration: &Migration, base_url: &str, authorization: Option<&str>) -> String {
    let authorization = authorization.unwrap_or(TOKEN_PLACEHOLDER);
    let base_url = base_url.trim_end_matches('/');
    let mut out = String::new();
    for (step, call) in migration.calls.iter().enumerate() {
        if migration.calls.len() > 1 {
            out.push_str(&format!(
                "# step {} of {}\n",
                step + 1,
                migration.calls.len()
            ));
        }
        let body = serde_json::to_string_pretty(&call.body).unwrap_or_default();
        out.push_str(&format!(
            "curl --request {} {} \\\n  --header 'Content-Type: application/json' \\\n  --header {} \\\n  --data-raw {}\n",
            call.method,
            shell_quote(&format!("{base_url}{}", call.path)),
            shell_quote(&format!("Explo-Authorization: {authorization}")),
            shell_quote(&body),
        ));
    }
    out.push_str("\nDifferences to know:\n");
    for note in &migration.notes {
        out.push_str(&format!("- {note}\n"));
    }
    out
}

/// The migration as JSON, for tools.
pub fn render_json(migration: &Migration, base_url: &str, authorization: Option<&str>) -> Value {
    let base_url = base_url.trim_end_matches('/');
    let calls: Vec<Value> = migration
        .calls
        .iter()
        .map(|call| {
            json!({
                "method": call.method,
                "url": format!("{base_url}{}", call.path),
                "headers": {
                    "Content-Type": "application/json",
                    "Explo-Authorization": authorization.unwrap_or(TOKEN_PLACEHOLDER),
                },
                "body": call.body,
            })
        })
        .collect();
    json!({"calls": calls, "notes": migration.notes})
}

/// Single-quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Update User Group page's own example (shared/reference/000_d5eb2b5954fced9c.txt).
    const SEED_CURL: &str = include_str!("../../tests/fixtures/update_user_group.curl.txt");

    #[test]
    fn the_seed_doc_curl_becomes_update_customer() {
        let input = parse_input(SEED_CURL, None).unwrap();
        assert_eq!(input.route, LegacyRoute::UpdateUserGroup);
        assert_eq!(input.authorization.as_deref(), Some("Token <token>"));
        let migration = plan(&input).unwrap();
        assert_eq!(migration.calls.len(), 1);
        assert_eq!(migration.calls[0].path, "/api/update_customer/");
        assert_eq!(
            migration.calls[0].body,
            json!({"provided_id": "example_1", "name": "Example 1",
                   "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}})
        );
        let text = render_curl(&migration, DEFAULT_BASE_URL, input.authorization.as_deref());
        assert!(
            text.starts_with("curl --request POST 'https://api.explo.co/api/update_customer/'"),
            "{text}"
        );
        assert!(text.contains("--header 'Explo-Authorization: Token <token>'"));
        assert!(text.contains("only the fields sent"));
    }

    #[test]
    fn endpoint_names_are_read_loosely() {
        assert_eq!(
            parse_endpoint("update_user_group"),
            Some(LegacyRoute::UpdateUserGroup)
        );
        assert_eq!(parse_endpoint("update"), Some(LegacyRoute::UpdateUserGroup));
        assert_eq!(
            parse_endpoint("/api/delete_user_group/"),
            Some(LegacyRoute::DeleteUserGroup)
        );
        assert_eq!(
            parse_endpoint("refresh"),
            Some(LegacyRoute::RefreshUserGroupToken)
        );
        assert_eq!(parse_endpoint("create"), Some(LegacyRoute::CreateUserGroup));
        assert_eq!(parse_endpoint("bogus"), None);
    }

    #[test]
    fn a_bare_body_needs_an_endpoint() {
        assert!(matches!(
            parse_input(r#"{"current_token": "x"}"#, None),
            Err(TranslateError::Input(_))
        ));
        let input = parse_input(
            r#"{"current_token": "x"}"#,
            Some(LegacyRoute::RefreshUserGroupToken),
        )
        .unwrap();
        assert_eq!(
            plan(&input).unwrap().calls[0].path,
            "/api/refresh_customer_token/"
        );
    }

    #[test]
    fn delete_by_id_becomes_two_calls_and_warns_about_the_cascade() {
        let input = parse_input(
            r#"{"user_group_id": "example_1"}"#,
            Some(LegacyRoute::DeleteUserGroup),
        )
        .unwrap();
        let migration = plan(&input).unwrap();
        assert_eq!(migration.calls.len(), 2);
        assert_eq!(
            (migration.calls[0].method, migration.calls[0].path),
            ("POST", "/api/get_customer/")
        );
        assert_eq!(
            (migration.calls[1].method, migration.calls[1].path),
            ("DELETE", "/api/delete_customer/")
        );
        assert!(migration.notes.iter().any(|n| n.starts_with("CASCADE")));
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn invalid_legacy_bodies_report_the_shims_error() {
        let input = parse_input(
            r#"{"user_group_id": "a", "data_source_id": 4}"#,
            Some(LegacyRoute::CreateUserGroup),
        )
        .unwrap();
        let error = plan(&input).unwrap_err();
        assert!(error.to_string().contains("mapping"), "{error}");
    }

    #[test]
    fn non_legacy_curl_is_refused() {
        let error = parse_input(
            "curl -X POST https://api.explo.co/api/generate_jwt/ -d '{}'",
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("not a legacy"), "{error}");
    }
}
