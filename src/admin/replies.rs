//! The admin listener's own answers besides the data: JSON bodies, the sign-in form, and the
//! refusals (401, 421, 429, 400) in the form the asker reads, a page or JSON.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use super::throttle;
use crate::message::body::{ProxyBody, full_body};

/// A JSON error response.
pub(super) fn json_error(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    json_text(status, body.to_string())
}

/// A response of JSON already written.
pub(super) fn json_text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 400: a request with more than one credential. None of them is checked, so one request
/// tries one guess at most.
pub(super) fn several_credentials() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": "several credentials",
            "detail": "send one Authorization header or one explo_shim_admin cookie, not \
                       several; none of them was checked"
        }),
    )
}

/// 429 while `client`'s address is refused for its failed credentials; `Retry-After` in
/// whole seconds, rounded up.
pub(super) fn throttled(page: bool, wait: Duration) -> Response<ProxyBody> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = if page {
        page_response(&sign_in_page(Some(&format!(
            "Too many failed sign-ins from this address; try again in {seconds} s."
        ))))
    } else {
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({
                "error": "too many failed credentials",
                "detail": format!(
                    "this address sent {} wrong credentials within {} s; nothing it sends is \
                     checked until Retry-After has passed",
                    throttle::FAILURES_BEFORE_BLOCK,
                    throttle::FAILURE_WINDOW.as_secs()
                ),
            }),
        )
    };
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// 421: without a token, `/`, `/usage` and `/metrics` answer only to a `Host` that names
/// this machine or a name in `admin_allowed_hosts`. The `Host` sent is not echoed back.
pub(super) fn misdirected() -> Response<ProxyBody> {
    json_error(
        StatusCode::MISDIRECTED_REQUEST,
        &json!({
            "error": "misdirected request",
            "detail": "without admin_token_file, this admin listener answers /, /usage and \
                       /metrics only to a Host that is an IP address, localhost or a name in \
                       admin_allowed_hosts; list the name you use there, or set \
                       admin_token_file"
        }),
    )
}

/// An HTML page of the shim's own that loads nothing from anywhere; forms post back here only.
pub(super) fn page_response(page: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(page.to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 401: the sign-in form for a browser asking for the console, a JSON error for the rest.
pub(super) fn unauthorized(page: bool, problem: Option<&str>) -> Response<ProxyBody> {
    let mut response = if page {
        page_response(&sign_in_page(problem))
    } else {
        json_error(
            StatusCode::UNAUTHORIZED,
            &json!({
                "error": "unauthorized",
                "detail": "send Authorization: Bearer <the token in admin_token_file>"
            }),
        )
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"explo-shim admin\""),
    );
    response
}

/// The sign-in form: one field, posted to `/login`; `problem` is the shim's own text.
pub(super) fn sign_in_page(problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |text| format!("<p role=\"alert\">{text}</p>"));
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>explo-shim: sign in</title></head><body><main><h1>explo-shim</h1>\
         <p>This admin listener asks for the token in its <code>admin_token_file</code>.</p>\
         {problem}<form method=\"post\" action=\"/login\"><label>Admin token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required>\
         </label> <button type=\"submit\">Sign in</button></form></main></body></html>"
    )
}
