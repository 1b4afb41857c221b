//! The one error type for every response the shim makes itself.
//!
//! Each variant maps, in exactly one place, to an HTTP status, a stable snake_case `code` and a
//! message that says what went wrong and what to do. The body is always the legacy envelope
//! `{"success": 0, "error": "...", "code": "..."}` so legacy clients that read `success` keep
//! working, and nothing the shim answers is a bare 500 or an empty body. The mapping is
//! [`mapping`]; this file holds the type, its log line and its reply.

mod mapping;

use std::time::{Duration, SystemTime};

use http::{HeaderValue, Response, header};

use crate::legacy::route::LegacyRoute;
use crate::message::body::{ProxyBody, full_body};
use crate::observe::log_summary::{LogSummary, Summary};

/// Everything that makes the shim answer instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimError {
    /// The body said it was JSON (by `Content-Type`) but does not parse.
    InvalidJson { detail: String },
    /// The body is not JSON and did not claim to be.
    NotJson,
    /// The body is JSON but not an object.
    BodyNotObject,
    /// A field the legacy call needs is missing.
    MissingField {
        field: &'static str,
        route: &'static str,
    },
    /// A field has a type or value the shim cannot forward faithfully.
    InvalidField { field: &'static str, reason: String },
    /// `provided_id` and `user_group_id` were both sent and disagree.
    ConflictingIds,
    /// Oldest-docs fields that have no Customer API equivalent.
    UnsupportedDataSourceField { field: &'static str },
    /// The legacy body is larger than `limits.legacy_body_bytes`.
    BodyTooLarge { limit: u64 },
    /// The client stopped sending its body part-way.
    IncompleteBody,
    /// The legacy body stalled for `limits.body_idle_timeout` (`whole: false`), or did not
    /// arrive whole within `limits.legacy_body_timeout` (`whole: true`).
    BodyTimeout { limit: Duration, whole: bool },
    /// The client's pass-through body broke mid-way (a malformed chunk, say): the client's
    /// fault, not the upstream's.
    BrokenClientBody { detail: String },
    /// `CONNECT` would let a client pick where the shim connects.
    ConnectRefused,
    /// The request target cannot be forwarded (e.g. the asterisk form `OPTIONS *`).
    BadRequestTarget,
    /// A path spelled so that the shim cannot tell whether it names a legacy endpoint.
    UnsafePath { reason: &'static str },
    /// The legacy body was sent with a `Content-Encoding` the shim does not undo.
    EncodedRequestBody,
    /// Framing two parsers could read differently (request smuggling).
    AmbiguousFraming { reason: &'static str },
    /// More requests in flight than `limits.max_in_flight`.
    Overloaded,
    /// The upstream budget would make this request wait longer than allowed.
    RateLimited { retry_after: Duration },
    /// The legacy delete would also delete child customers (Customer delete cascades).
    DeleteWouldCascade {
        provided_id: String,
        children: usize,
    },
    /// A by-token call also named a `user_group_id` that does not hold the token.
    TokenOfAnotherGroup { provided_id: String },
    /// The legacy delete was not carried out because the shim could not establish that the
    /// customer has no children (`refuse_cascading_delete`).
    CascadeUnverified { reason: String },
    /// A legacy call during a scheduled brownout (`deprecation.brownouts`).
    Brownout {
        route: LegacyRoute,
        ends_at: SystemTime,
        retry_after: Duration,
    },
    /// A legacy call after the sunset, with `deprecation.after_sunset = "refuse"`.
    Sunset {
        route: LegacyRoute,
        since: SystemTime,
    },
    /// The upstream could not be reached (DNS, TCP, TLS).
    UpstreamUnreachable { detail: String },
    /// The upstream broke the exchange after the connection was made.
    UpstreamFailed { detail: String },
    /// No complete reply within `upstream.timeout`.
    UpstreamTimeout { timeout: Duration },
    /// The upstream answered, but with something a legacy reply cannot be built from.
    UpstreamInvalidReply { detail: String },
}

impl From<crate::legacy::route::path::UnsafePath> for ShimError {
    fn from(unsafe_path: crate::legacy::route::path::UnsafePath) -> Self {
        use crate::legacy::route::path::UnsafePath;
        Self::UnsafePath {
            reason: match unsafe_path {
                UnsafePath::MalformedEscape => "a malformed percent-escape",
                UnsafePath::EncodedSeparator => "an encoded `/`, `\\` or NUL",
            },
        }
    }
}

/// A client body that went silent for its idle timeout, whoever was reading it.
impl From<&crate::message::body::BodyIdleTimeout> for ShimError {
    fn from(stalled: &crate::message::body::BodyIdleTimeout) -> Self {
        Self::BodyTimeout {
            limit: stalled.0,
            whole: false,
        }
    }
}

impl ShimError {
    /// The reply and its log line: a warning for the shim's 5xx, information otherwise. Under
    /// a flood the line is summarised ([`SHIM_ERROR_LINES`]); the metrics count every reply.
    pub fn into_logged_response(self, request_id: &str) -> Response<ProxyBody> {
        let status = self.status();
        let summary = if status.is_server_error() {
            &SHIM_SERVER_ERROR_LINES
        } else {
            &SHIM_ERROR_LINES
        };
        // Asked before anything is formatted: a suppressed line costs no allocation.
        if !summary.admit(self.code()) {
            return self.into_response();
        }
        // The description can hold the client's own text (a `user_group_id`), so it is a
        // field, quoted and escaped, never the bare message, where it could pass for fields
        // of its own in the text format.
        let error = self.to_string();
        if status.is_server_error() {
            tracing::warn!(
                request_id,
                code = self.code(),
                status = status.as_u16(),
                cause = self.log_detail(),
                error = error.as_str(),
                "answered with the shim's own error"
            );
        } else {
            tracing::info!(
                request_id,
                code = self.code(),
                status = status.as_u16(),
                cause = self.log_detail(),
                error = error.as_str(),
                "answered with the shim's own error"
            );
        }
        self.into_response()
    }

    /// The complete reply. The one place where a `ShimError` becomes HTTP.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = Response::new(full_body(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let retry_after = match &self {
            Self::Overloaded => Some(OVERLOAD_RETRY_AFTER),
            Self::RateLimited { retry_after } | Self::Brownout { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        if let Some(delay) = retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(delay)),
            );
        }
        if matches!(
            self,
            Self::BodyTooLarge { .. }
                | Self::IncompleteBody
                | Self::BodyTimeout { .. }
                | Self::BrokenClientBody { .. }
                | Self::AmbiguousFraming { .. }
                | Self::ConnectRefused
        ) {
            // The unread rest of the body (or a refused tunnel's bytes) must never be parsed as
            // the next request on this HTTP/1 connection, so the connection ends here.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The shim's own 4xx lines, by code: a flood of refusals (the budget's 429s, bad requests)
/// writes the first line of each second and a count, not a line per request.
static SHIM_ERROR_LINES: LogSummary = LogSummary::new(report_shim_errors);
/// The shim's own 5xx lines (an upstream that is down), summarised the same way, as warnings.
static SHIM_SERVER_ERROR_LINES: LogSummary = LogSummary::new(report_shim_server_errors);

fn report_shim_errors(summary: Summary) {
    tracing::info!(
        code = summary.kind,
        more = summary.more,
        over_ms = summary.over.as_millis() as u64,
        "answered with the shim's own error: {} more like this",
        summary.more
    );
}

fn report_shim_server_errors(summary: Summary) {
    tracing::warn!(
        code = summary.kind,
        more = summary.more,
        over_ms = summary.over.as_millis() as u64,
        "answered with the shim's own error: {} more like this",
        summary.more
    );
}

/// What a shed client is told to wait: long enough for in-flight requests to finish.
pub const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `Retry-After` is whole seconds (RFC 9110 §10.2.3); round up so a client never comes back early.
pub fn retry_after_seconds(delay: Duration) -> u64 {
    let whole = delay.as_secs();
    if delay.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole.max(1)
    }
}

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ShimError {}

/// An error and all its sources on one line, for the log.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn every_error_has_a_snake_case_code_and_a_non_server_error_status() {
        let all = [
            ShimError::InvalidJson { detail: "x".into() },
            ShimError::NotJson,
            ShimError::BodyNotObject,
            ShimError::MissingField {
                field: "user_group_id",
                route: "update_user_group",
            },
            ShimError::InvalidField {
                field: "user_group_id",
                reason: "must be a string".into(),
            },
            ShimError::ConflictingIds,
            ShimError::UnsupportedDataSourceField {
                field: "data_source_id",
            },
            ShimError::BodyTooLarge { limit: 10 },
            ShimError::IncompleteBody,
            ShimError::BodyTimeout {
                limit: Duration::from_secs(30),
                whole: false,
            },
            ShimError::BodyTimeout {
                limit: Duration::from_secs(60),
                whole: true,
            },
            ShimError::BrokenClientBody {
                detail: "invalid chunk size".into(),
            },
            ShimError::ConnectRefused,
            ShimError::BadRequestTarget,
            ShimError::EncodedRequestBody,
            ShimError::AmbiguousFraming { reason: "both" },
            ShimError::Overloaded,
            ShimError::RateLimited {
                retry_after: Duration::from_millis(1500),
            },
            ShimError::DeleteWouldCascade {
                provided_id: "p".into(),
                children: 2,
            },
            ShimError::UpstreamUnreachable {
                detail: "refused".into(),
            },
            ShimError::UpstreamFailed {
                detail: "reset".into(),
            },
            ShimError::UpstreamTimeout {
                timeout: Duration::from_secs(30),
            },
            ShimError::UpstreamInvalidReply {
                detail: "html".into(),
            },
        ];
        for error in all {
            let code = error.code();
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert_ne!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!error.message().is_empty());
        }
    }

    #[tokio::test]
    async fn response_is_the_legacy_envelope_with_json_content_type() {
        let response = ShimError::ConflictingIds.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["success"], 0);
        assert_eq!(body["code"], "conflicting_ids");
        assert!(body["error"].as_str().unwrap().contains("user_group_id"));
    }

    #[test]
    fn body_too_large_closes_the_connection() {
        let response = ShimError::BodyTooLarge { limit: 1 }.into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn overload_and_rate_limit_carry_retry_after_in_whole_seconds() {
        let shed = ShimError::Overloaded.into_response();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        let limited = ShimError::RateLimited {
            retry_after: Duration::from_millis(2100),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(4)), 4);
    }

    #[test]
    fn upstream_details_stay_out_of_the_reply() {
        let error = ShimError::UpstreamUnreachable {
            detail: "10.0.0.7:443 refused".into(),
        };
        assert!(!error.body().to_string().contains("10.0.0.7"));
        assert_eq!(error.log_detail(), "10.0.0.7:443 refused");
    }
}
