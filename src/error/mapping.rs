//! Where each [`ShimError`] becomes a status, a stable `code`, a message for the client and a
//! detail for the log: the one mapping, in one file, so a new variant is one match arm away
//! from a complete reply.

use http::StatusCode;
use serde_json::json;

use super::{ShimError, retry_after_seconds};
use crate::legacy::route::LegacyRoute;

impl ShimError {
    /// The HTTP status of the shim's reply.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson { .. }
            | Self::BodyNotObject
            | Self::MissingField { .. }
            | Self::InvalidField { .. }
            | Self::ConflictingIds
            | Self::UnsupportedDataSourceField { .. }
            | Self::IncompleteBody
            | Self::BrokenClientBody { .. }
            | Self::BadRequestTarget
            | Self::UnsafePath { .. }
            | Self::AmbiguousFraming { .. } => StatusCode::BAD_REQUEST,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DeleteWouldCascade { .. }
            | Self::TokenOfAnotherGroup { .. }
            | Self::CascadeUnverified { .. } => StatusCode::CONFLICT,
            Self::NotJson | Self::EncodedRequestBody => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Brownout { .. } | Self::Sunset { .. } => StatusCode::GONE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::ConnectRefused => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamFailed { .. }
            | Self::UpstreamInvalidReply { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A stable, machine-readable code; clients and dashboards may match on it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } => "invalid_json",
            Self::NotJson => "unsupported_media_type",
            Self::BodyNotObject => "body_not_object",
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::ConflictingIds => "conflicting_ids",
            Self::UnsupportedDataSourceField { .. } => "unsupported_field",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::IncompleteBody => "incomplete_body",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::BrokenClientBody { .. } => "broken_request_body",
            Self::ConnectRefused => "connect_refused",
            Self::BadRequestTarget => "bad_request_target",
            Self::UnsafePath { .. } => "unsafe_path",
            Self::EncodedRequestBody => "encoded_request_body",
            Self::AmbiguousFraming { .. } => "ambiguous_framing",
            Self::Overloaded => "overloaded",
            Self::RateLimited { .. } => "rate_limited",
            Self::DeleteWouldCascade { .. } => "delete_would_cascade",
            Self::TokenOfAnotherGroup { .. } => "token_of_another_group",
            Self::CascadeUnverified { .. } => "cascade_unverified",
            Self::Brownout { .. } => "brownout",
            Self::Sunset { .. } => "sunset",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamFailed { .. } => "upstream_failed",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamInvalidReply { .. } => "upstream_invalid_reply",
        }
    }

    /// What went wrong and what the caller can do about it.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidJson { detail } => {
                format!("the request body is not valid JSON ({detail}); send a JSON object")
            }
            Self::NotJson => "the request body is not JSON; send a JSON object with \
                              Content-Type: application/json"
                .to_owned(),
            Self::BodyNotObject => "the request body must be a JSON object".to_owned(),
            Self::MissingField { field, route } => {
                format!("`{field}` is required by {route}")
            }
            Self::InvalidField { field, reason } => format!("`{field}` {reason}"),
            Self::ConflictingIds => "`provided_id` and `user_group_id` name different groups; \
                                     send only `user_group_id`"
                .to_owned(),
            Self::UnsupportedDataSourceField { field } => format!(
                "`{field}` has no Customer API equivalent; send `mapping` \
                 (schema id -> data source id) instead"
            ),
            Self::BodyTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            Self::IncompleteBody => {
                "the request body ended before its declared length; resend the request".to_owned()
            }
            Self::BodyTimeout {
                limit,
                whole: false,
            } => format!(
                "no request body data arrived for {}; send the body with the request",
                humantime::format_duration(*limit)
            ),
            Self::BodyTimeout { limit, whole: true } => format!(
                "the request body did not arrive whole within {}; send the body with the request",
                humantime::format_duration(*limit)
            ),
            Self::BrokenClientBody { detail } => format!(
                "the request body is malformed ({detail}); fix its framing and resend the request"
            ),
            Self::ConnectRefused => {
                "CONNECT is not supported: explo-shim only talks to its configured upstream"
                    .to_owned()
            }
            Self::BadRequestTarget => {
                "the request target cannot be forwarded; send an origin-form path".to_owned()
            }
            Self::UnsafePath { reason } => format!(
                "the request path has {reason}, so it is unclear which endpoint it names; send \
                 the path with only the escapes RFC 3986 requires"
            ),
            Self::EncodedRequestBody => {
                "compressed legacy request bodies are not supported; send plain JSON".to_owned()
            }
            Self::AmbiguousFraming { reason } => format!(
                "the request has {reason}; send exactly one of Content-Length or \
                 Transfer-Encoding: chunked"
            ),
            Self::Overloaded => "explo-shim is at its limit of requests in flight; retry after \
                                 the Retry-After delay"
                .to_owned(),
            Self::RateLimited { retry_after } => format!(
                "the upstream request budget (the Explo API allows 180 requests per minute per \
                 source IP) is used up; retry in {} s",
                retry_after_seconds(*retry_after)
            ),
            Self::DeleteWouldCascade {
                provided_id,
                children,
            } => format!(
                "user group `{provided_id}` has {children} child customer(s), and the Customer \
                 API delete would delete them too, which the legacy delete never did; nothing \
                 was deleted. Delete the children first, or delete deliberately with \
                 DELETE /api/delete_customer/ on the Customer API"
            ),
            Self::TokenOfAnotherGroup { provided_id } => format!(
                "`current_token` does not belong to user group `{provided_id}` named by \
                 `user_group_id`; nothing was changed. Send that group's token, or only one of \
                 the two"
            ),
            Self::CascadeUnverified { reason } => format!(
                "the shim could not establish that this user group has no child customers \
                 ({reason}), and the Customer API delete would delete them too, which the \
                 legacy delete never did; nothing was deleted. Delete by `user_group_id` \
                 instead, or delete deliberately with DELETE /api/delete_customer/ on the \
                 Customer API"
            ),
            Self::Brownout { route, ends_at, .. } => format!(
                "the End User Group API is in a scheduled brownout until {}: legacy calls fail \
                 on purpose so that integrations still using it notice before it is retired. \
                 {}",
                humantime::format_rfc3339_seconds(*ends_at),
                call_instead(*route)
            ),
            Self::Sunset { route, since } => format!(
                "the End User Group API was retired on {}. {}",
                humantime::format_rfc3339_seconds(*since),
                call_instead(*route)
            ),
            Self::UpstreamUnreachable { .. } => {
                "the Explo API could not be reached; retry later".to_owned()
            }
            Self::UpstreamFailed { .. } => {
                "the connection to the Explo API broke before a complete reply; retry later"
                    .to_owned()
            }
            Self::UpstreamTimeout { timeout } => format!(
                "the Explo API did not answer within {}; retry later",
                humantime::format_duration(*timeout)
            ),
            Self::UpstreamInvalidReply { .. } => {
                "the Explo API sent a reply the shim cannot translate; retry later".to_owned()
            }
        }
    }

    /// Detail for the log only: it may name internal addresses, so it stays out of replies.
    pub fn log_detail(&self) -> &str {
        match self {
            Self::InvalidJson { detail }
            | Self::UpstreamUnreachable { detail }
            | Self::UpstreamFailed { detail }
            | Self::UpstreamInvalidReply { detail } => detail,
            _ => "",
        }
    }

    /// The legacy JSON envelope.
    pub fn body(&self) -> serde_json::Value {
        json!({"success": 0, "error": self.message(), "code": self.code()})
    }
}

/// Where a retired legacy call's client should go instead.
fn call_instead(route: LegacyRoute) -> String {
    let spec = route.spec();
    format!(
        "Call {} {} on the Customer API instead ({}); `explo-shim translate` prints the call",
        spec.method,
        spec.customer_path,
        crate::legacy::route::successor_doc_url(route)
    )
}
