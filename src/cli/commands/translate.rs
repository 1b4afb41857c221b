//! `explo-shim translate`: the migration assistant. Reads a legacy request (its JSON body, or a
//! whole `curl` command like the ones in the docs) and prints the equivalent Customer API
//! call(s), with every semantic difference that applies.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::DEFAULT_LEGACY_BODY_BYTES;
use crate::error::ShimError;
use crate::legacy::json::{Document, member, parse_object};
use crate::legacy::request::{
    CustomerCall, USER_GROUP_ID, check_body_size, token_lookup_body, translate_request,
};
use crate::legacy::route::{GET_CUSTOMER_PATH, LegacyRoute};

/// Where Customer API calls go unless the input's URL says otherwise.
pub const DEFAULT_BASE_URL: &str = crate::config::DEFAULT_UPSTREAM;
const TOKEN_PLACEHOLDER: &str = "Token <your_api_token>";
const LOOKED_UP_TOKEN: &str = "<customer.token from the get_customer reply>";

/// A legacy request as read from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyInput {
    pub route: LegacyRoute,
    /// The body exactly as given: it goes through the shim's own parser, limit and errors.
    pub body: Bytes,
    pub authorization: Option<String>,
}

/// One Customer API call to make.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    pub method: &'static str,
    pub path: &'static str,
    /// The JSON body as the shim would send it, numbers and all.
    pub body: Bytes,
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
        let spec = route.spec();
        name == spec.legacy_endpoint || name == spec.short_name
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
    // Only a first look, to tell what the input is; the shim's own parser reads it in `plan`.
    serde_json::from_str::<IgnoredAny>(trimmed).map_err(|error| {
        TranslateError::Input(format!(
            "the input is neither a curl command nor JSON: {error}"
        ))
    })?;
    let body = Bytes::copy_from_slice(trimmed.as_bytes());
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
    serde_json::from_str::<IgnoredAny>(&body_text)
        .map_err(|error| TranslateError::Input(format!("the curl body is not JSON: {error}")))?;
    let body = Bytes::from(body_text);
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

/// The Customer API calls for `input`, and the notes that apply: the shim's own translation,
/// with its parser, its default body limit and its errors.
pub fn plan(input: &LegacyInput) -> Result<Migration, TranslateError> {
    let route = input.route;
    let size = u64::try_from(input.body.len()).unwrap_or(u64::MAX);
    check_body_size(size, DEFAULT_LEGACY_BODY_BYTES).map_err(TranslateError::Legacy)?;
    let translated = translate_request(route, &input.body).map_err(TranslateError::Legacy)?;
    let method = if *route.method() == http::Method::DELETE {
        "DELETE"
    } else {
        "POST"
    };
    let mut notes: Vec<String> = Vec::new();
    let calls =
        match translated.plan {
            CustomerCall::Send(body) => vec![PlannedCall {
                method,
                path: route.customer_path(),
                body,
            }],
            CustomerCall::ByToken(call) => {
                let mut calls = Vec::new();
                if let Some(provided_id) = &call.provided_id {
                    notes.push(if call.token.is_none() {
                    "The Customer call takes the customer's token, not its id: the first call \
                     looks the token up, the second uses it."
                } else {
                    "`user_group_id` is not a Customer key and is not sent; the shim checks \
                     first that the token belongs to that group (the first call), and refuses \
                     the call if it does not."
                }
                .to_owned());
                    calls.push(PlannedCall {
                        method: "POST",
                        path: GET_CUSTOMER_PATH,
                        body: token_lookup_body(provided_id),
                    });
                }
                calls.push(PlannedCall {
                    method,
                    path: route.customer_path(),
                    body: call.body(Some(LOOKED_UP_TOKEN)),
                });
                calls
            }
        };
    if sends_a_numeric_group_id(&input.body) {
        notes.push(
            "`provided_id` is a string: the numeric `user_group_id` is sent as its digits."
                .to_owned(),
        );
    }
    notes.extend(
        route
            .spec()
            .migration_notes
            .iter()
            .map(|note| (*note).to_owned()),
    );
    Ok(Migration { calls, notes })
}

/// Whether the (already translated, so valid) body has a `user_group_id` that is a number.
fn sends_a_numeric_group_id(body: &[u8]) -> bool {
    match parse_object(body) {
        Ok(Document::Object(members)) => {
            member(&members, USER_GROUP_ID).is_some_and(|id| !id.get().starts_with('"'))
        }
        _ => false,
    }
}

/// A planned body for JSON output, its bytes kept exactly; `None` (printed as `null`) only if
/// it were not JSON, which translation never writes.
fn as_raw(body: &[u8]) -> Option<Box<RawValue>> {
    RawValue::from_string(String::from_utf8_lossy(body).into_owned()).ok()
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
        let body = pretty(&call.body);
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

/// The migration as JSON text, for tools. Each body is embedded exactly as it would be sent.
pub fn render_json(migration: &Migration, base_url: &str, authorization: Option<&str>) -> String {
    #[derive(serde::Serialize)]
    struct Rendered<'a> {
        calls: Vec<RenderedCall<'a>>,
        notes: &'a [String],
    }
    #[derive(serde::Serialize)]
    struct RenderedCall<'a> {
        method: &'a str,
        url: String,
        headers: Value,
        body: Option<Box<RawValue>>,
    }
    let base_url = base_url.trim_end_matches('/');
    let rendered = Rendered {
        calls: migration
            .calls
            .iter()
            .map(|call| RenderedCall {
                method: call.method,
                url: format!("{base_url}{}", call.path),
                headers: json!({
                    "Content-Type": "application/json",
                    "Explo-Authorization": authorization.unwrap_or(TOKEN_PLACEHOLDER),
                }),
                body: as_raw(&call.body),
            })
            .collect(),
        notes: &migration.notes,
    };
    serde_json::to_string_pretty(&rendered).unwrap_or_default()
}

/// The body indented for reading, two spaces a level. Only whitespace outside strings changes:
/// every number and string keeps its exact text (a `Value` would turn `1e400` into `1e+400`).
fn pretty(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|next| next.is_ascii_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|next| matches!(next, '}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Single-quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Update User Group page's own example (`docs/integrators/explo-api.md` §7).
    const SEED_CURL: &str = include_str!("../../../tests/fixtures/update_user_group.curl.txt");

    #[test]
    fn the_seed_doc_curl_becomes_update_customer() {
        let input = parse_input(SEED_CURL, None).unwrap();
        assert_eq!(input.route, LegacyRoute::UpdateUserGroup);
        assert_eq!(input.authorization.as_deref(), Some("Token <token>"));
        let migration = plan(&input).unwrap();
        assert_eq!(migration.calls.len(), 1);
        assert_eq!(migration.calls[0].path, "/api/update_customer/");
        assert_eq!(
            body_of(&migration.calls[0]),
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

    fn body_of(call: &PlannedCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn translate_gives_the_shims_answer_for_duplicates_limits_and_numbers() {
        let duplicate = parse_input(
            r#"{"user_group_id": "a", "user_group_id": "b"}"#,
            Some(LegacyRoute::UpdateUserGroup),
        )
        .unwrap();
        assert!(matches!(
            plan(&duplicate),
            Err(TranslateError::Legacy(ShimError::InvalidJson { .. }))
        ));
        let huge = format!(
            r#"{{"user_group_id": "a", "name": "{}"}}"#,
            "x".repeat(usize::try_from(DEFAULT_LEGACY_BODY_BYTES).unwrap())
        );
        let huge = parse_input(&huge, Some(LegacyRoute::UpdateUserGroup)).unwrap();
        assert!(matches!(
            plan(&huge),
            Err(TranslateError::Legacy(ShimError::BodyTooLarge { .. }))
        ));
        let exact = parse_input(
            r#"{"user_group_id": "a", "properties": {"n": 1e400, "m": 1E5}}"#,
            Some(LegacyRoute::UpdateUserGroup),
        )
        .unwrap();
        let migration = plan(&exact).unwrap();
        assert_eq!(
            &migration.calls[0].body[..],
            br#"{"provided_id":"a","properties":{"n": 1e400, "m": 1E5}}"#
        );
        let text = render_curl(&migration, DEFAULT_BASE_URL, None);
        assert!(text.contains("1e400") && text.contains("1E5"), "{text}");
        let json = render_json(&migration, DEFAULT_BASE_URL, None);
        assert!(json.contains("1e400") && json.contains("1E5"), "{json}");
    }

    #[test]
    fn by_token_calls_drop_the_group_id_and_check_it_first() {
        let input = parse_input(
            r#"{"current_token": "t", "user_group_id": "g"}"#,
            Some(LegacyRoute::RefreshUserGroupToken),
        )
        .unwrap();
        let migration = plan(&input).unwrap();
        assert_eq!(migration.calls.len(), 2);
        assert_eq!(migration.calls[0].path, "/api/get_customer/");
        assert_eq!(body_of(&migration.calls[1]), json!({"current_token": "t"}));
    }

    #[test]
    fn pretty_printing_changes_only_whitespace() {
        let body = br#"{"a":{"b":[1e400, 2],"e":{}},"s":"x, {y}: \"z\"","n":[ ]}"#;
        let printed = pretty(body);
        assert_eq!(
            printed,
            "{\n  \"a\": {\n    \"b\": [\n      1e400,\n      2\n    ],\n    \"e\": {}\n  },\n  \
             \"s\": \"x, {y}: \\\"z\\\"\",\n  \"n\": []\n}"
        );
        let reparsed: Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(reparsed, serde_json::from_slice::<Value>(body).unwrap());
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
