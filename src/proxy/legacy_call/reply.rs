//! Building the legacy reply from the Customer reply: translated on a 2xx, passed on as it came
//! when it cannot be (a success is never turned into a failure), refused when too large.

use bytes::Bytes;
use http::header;
use http::{Response, StatusCode};

use super::{APPLICATION_JSON, LegacyCalls, Untranslatable, reply_of};
use crate::config::policy::Policy;
use crate::error::ShimError;
use crate::legacy::json::without_bom;
use crate::legacy::reply::{ReplyOptions, legacy_error_reply, legacy_success_reply};
use crate::legacy::route::LegacyRoute;
use crate::message::body::{ProxyBody, full_body, prefixed_body};
use crate::message::headers::encoding::{DecodeError, decode_body};
use crate::observe::metrics::UpstreamFailure;
use crate::upstream::{CollectedReply, LargeReply, reply_too_large};

/// The target of this file's events: the module they were logged from before it was split
/// into files, which log filters and queries name.
const LOG_TARGET: &str = "explo_shim::proxy::legacy_call";

impl LegacyCalls {
    /// A reply over `limits.upstream_reply_bytes`. A success is passed on as it came, the
    /// bytes already read first (rule 1: the write happened); anything else is an error the
    /// client may retry, since nothing was written.
    pub(super) fn large_reply(
        &self,
        route: LegacyRoute,
        reply: LargeReply,
        sent_token: Option<&str>,
        id: &str,
    ) -> Result<(Response<ProxyBody>, StatusCode), ShimError> {
        let limit = self.limits.upstream_reply_bytes;
        if !reply.status.is_success() {
            self.metrics.upstream_error(UpstreamFailure::InvalidReply);
            return Err(reply_too_large(limit));
        }
        if let Some(token) = sent_token {
            self.owners.forget(token);
        }
        self.report_untranslated(
            route,
            reply.status,
            id,
            &format_args!("reply larger than {limit} bytes"),
        );
        // The whole body follows, so its `Content-Length` still holds.
        let body = prefixed_body(reply.read, reply.rest, self.limits.body_idle_timeout);
        Ok((reply_of(reply.status, reply.headers, body), reply.status))
    }

    /// Rule 1's log line and metric: a success the client gets as it came.
    pub(super) fn report_untranslated(
        &self,
        route: LegacyRoute,
        status: StatusCode,
        id: &str,
        cause: &dyn std::fmt::Display,
    ) {
        tracing::error!(target: LOG_TARGET,
            request_id = id,
            endpoint = route.legacy_endpoint(),
            status = status.as_u16(),
            cause = %cause,
            "the upstream's success reply could not be translated; it is passed on as it came"
        );
        self.metrics.untranslated_success(route);
    }

    /// The legacy reply for the Customer reply. `sent_token` is the token the call named. Only
    /// a success whose compressed body ends early is an error (502): it is incomplete.
    pub(super) fn legacy_reply(
        &self,
        route: LegacyRoute,
        reply: CollectedReply,
        sent_token: Option<&str>,
        id: &str,
        policy: &Policy,
    ) -> Result<(Response<ProxyBody>, StatusCode), ShimError> {
        let status = reply.status;
        if status.is_success() {
            // The write happened: a rotated or deleted token names nothing any more.
            if let Some(token) = sent_token {
                self.owners.forget(token);
            }
            match self.translate_success(route, &reply, &policy.reply_options) {
                Ok(body) => return Ok((self.rebuilt(reply, body, true), status)),
                Err(Untranslatable::Encoding(DecodeError::Truncated)) => {
                    self.metrics.upstream_error(UpstreamFailure::InvalidReply);
                    return Err(ShimError::UpstreamInvalidReply {
                        detail: format!("{status} reply: {}", DecodeError::Truncated),
                    });
                }
                Err(cause) => {
                    self.report_untranslated(route, status, id, &cause);
                    let body = reply.body.clone();
                    return Ok((self.rebuilt(reply, body, false), status));
                }
            }
        }
        let response = match self.decoded(&reply) {
            // Only a `customer` key needs renaming; otherwise the bytes stay exact.
            Ok(decoded) => {
                let body = legacy_error_reply(&decoded).unwrap_or(decoded);
                self.rebuilt(reply, body, true)
            }
            // An encoding the shim cannot undo: the error goes on as it came.
            Err(_) => {
                let body = reply.body.clone();
                self.rebuilt(reply, body, false)
            }
        };
        Ok((response, status))
    }

    /// The legacy body for a 2xx reply, remembering whose token it shows.
    pub(super) fn translate_success(
        &self,
        route: LegacyRoute,
        reply: &CollectedReply,
        reply_options: &ReplyOptions,
    ) -> Result<Bytes, Untranslatable> {
        let decoded = self.decoded(reply).map_err(Untranslatable::Encoding)?;
        let legacy = legacy_success_reply(route, &decoded, reply_options)
            .map_err(Untranslatable::NotJson)?;
        if let Some(owner) = &legacy.owner {
            self.owners.remember(&owner.token, &owner.provided_id);
        }
        Ok(legacy.body)
    }

    /// The client's response: the upstream's status and headers with `body`. A `decoded` body
    /// loses the upstream's `Content-Encoding`; one passed on as it came keeps its headers.
    pub(super) fn rebuilt(
        &self,
        reply: CollectedReply,
        body: Bytes,
        decoded: bool,
    ) -> Response<ProxyBody> {
        let mut headers = reply.headers;
        headers.remove(header::CONTENT_LENGTH);
        if decoded {
            headers.remove(header::CONTENT_ENCODING);
            if reply.status.is_success() {
                headers.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
            }
        }
        reply_of(reply.status, headers, full_body(body))
    }

    /// A reply's body without its `Content-Encoding` or a leading byte order mark.
    pub(super) fn decoded(&self, reply: &CollectedReply) -> Result<Bytes, DecodeError> {
        decode_body(
            &reply.headers,
            reply.body.clone(),
            self.limits.upstream_reply_bytes,
        )
        .map(|body| without_bom(&body))
    }
}
