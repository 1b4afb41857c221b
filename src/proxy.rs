//! One request: a legacy route is translated, everything else passes through.
//!
//! The handlers return `Result<_, ShimError>` and use `?`; [`Proxy::handle`] turns any error
//! into the legacy envelope and one log line, in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{ProxyBody, full_body, streamed_body};
use crate::config::{Config, ConfigError, Limits};
use crate::error::ShimError;
use crate::headers::deprecation::DeprecationHeaders;
use crate::headers::encoding::decode_body;
use crate::headers::forwarding::prepare_upstream_headers;
use crate::headers::framing::check_request_framing;
use crate::headers::hop::strip_hop_by_hop;
use crate::headers::request_id::{X_REQUEST_ID, request_id};
use crate::legacy::reply::{
    ReplyOptions, customer_token, legacy_error_reply, legacy_success_reply, reports_success,
};
use crate::legacy::request::{
    CustomerCall, delete_by_token_body, token_lookup_body, translate_request,
};
use crate::legacy::{GET_CUSTOMER_PATH, LegacyRoute};
use crate::metrics::Metrics;
use crate::telemetry::{LegacyCallRecord, log_legacy_call};
use crate::upstream::{CollectedReply, Upstream};
use crate::usage::UsageTracker;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// The Explo API credential header (Explo docs, "Explo's authentication").
pub static EXPLO_AUTHORIZATION: HeaderName = HeaderName::from_static("explo-authorization");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// The Customer list endpoint (v1), used to find children before a delete.
const CUSTOMERS_PATH: &str = "/api/customers/";

/// The result of a look-up made before a delete: go on, or answer with the upstream's refusal.
enum Precheck<T> {
    Proceed(T),
    Answer(CollectedReply),
}

/// Everything one request needs. One per serving thread: the upstream connections are the
/// thread's own ([`Proxy::for_this_thread`]); the rest is built once and shared, so the caps
/// and counts hold for the whole process.
pub struct Proxy {
    upstream: Upstream,
    shared: Arc<Shared>,
}

/// What every thread's [`Proxy`] has in common.
struct Shared {
    limits: Limits,
    reply_options: ReplyOptions,
    refuse_cascading_delete: bool,
    add_x_forwarded_for: bool,
    in_flight: Semaphore,
    deprecation: DeprecationHeaders,
    metrics: Arc<Metrics>,
    usage: Arc<UsageTracker>,
}

impl Proxy {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let metrics = Arc::new(Metrics::new(
            usize::try_from(config.limits.max_tracked_clients).unwrap_or(usize::MAX),
        ));
        let upstream = Upstream::new(
            &config.upstream,
            config.rate_limit.as_ref(),
            Arc::clone(&metrics),
        )?;
        let shared = Shared {
            limits: config.limits.clone(),
            reply_options: config.legacy.clone(),
            refuse_cascading_delete: config.legacy_behaviour.refuse_cascading_delete,
            add_x_forwarded_for: config.upstream.add_x_forwarded_for,
            in_flight: Semaphore::new(
                usize::try_from(config.limits.max_in_flight).unwrap_or(usize::MAX),
            ),
            deprecation: DeprecationHeaders::new(
                config.deprecation.deprecated_at,
                config.deprecation.sunset_at,
            )
            .map_err(|_| {
                ConfigError("`deprecation.sunset` is earlier than `deprecation.date`".to_owned())
            })?,
            metrics,
            usage: Arc::new(UsageTracker::default()),
        };
        Ok(Self {
            upstream,
            shared: Arc::new(shared),
        })
    }

    /// The same proxy with upstream connections of its own, for another serving thread.
    pub fn for_this_thread(&self) -> Self {
        Self {
            upstream: self.upstream.for_this_thread(),
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    pub fn usage(&self) -> &Arc<UsageTracker> {
        &self.shared.usage
    }

    /// Answers one request. Never fails: errors become legacy-envelope replies here. Every
    /// reply carries the request's `x-request-id`, which also goes upstream and labels every
    /// log line of the request.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let id = request_id(request.headers());
        request.headers_mut().insert(&X_REQUEST_ID, id.clone());
        // The shim's own lines carry the id as a field; the span is for the libraries' debug
        // lines, so at the default level it is never built.
        // Sane IDs are visible ASCII (see `request_id`), so this never falls back.
        let id_text = id.to_str().unwrap_or_default();
        let span = tracing::debug_span!("request", request_id = id_text);
        let mut response = self
            .handle_with_id(request, client, id_text)
            .instrument(span)
            .await;
        response.headers_mut().insert(&X_REQUEST_ID, id);
        response
    }

    async fn handle_with_id(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
    ) -> Response<ProxyBody> {
        let route = LegacyRoute::recognise(request.method(), request.uri().path());
        let mut response = self.dispatch(route, request, client, id).await;
        if let Some(route) = route {
            // Every reply to a legacy call says it is deprecated, the shim's own errors too.
            self.shared.deprecation.apply(route, response.headers_mut());
        }
        response
    }

    async fn dispatch(
        &self,
        route: Option<LegacyRoute>,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
    ) -> Response<ProxyBody> {
        // Shed at once rather than queue: a queue would grow without bound under overload.
        let Ok(_permit) = self.shared.in_flight.try_acquire() else {
            self.shared.metrics.shed();
            return error_response(ShimError::Overloaded, id);
        };
        let _counted = self.shared.metrics.in_flight();
        if let Err(error) = check_request_framing(request.headers()) {
            return error_response(error, id);
        }
        if request.method() == Method::CONNECT {
            return error_response(ShimError::ConnectRefused, id);
        }
        match route {
            Some(route) => self.handle_legacy(route, request, client, id).await,
            None => {
                let response = self
                    .pass_through(request, client)
                    .await
                    .unwrap_or_else(|error| error_response(error, id));
                self.shared.metrics.pass_through(response.status().as_u16());
                response
            }
        }
    }

    async fn handle_legacy(
        &self,
        route: LegacyRoute,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let caller = self
            .shared
            .metrics
            .identify(request.headers().get(&EXPLO_AUTHORIZATION));
        let mut user_group_id = None;
        let (response, upstream_status) = match self
            .translate(route, request, client, &mut user_group_id)
            .await
        {
            Ok((response, upstream_status)) => (response, Some(upstream_status.as_u16())),
            Err(error) => (error_response(error, id), None),
        };
        let status = response.status().as_u16();
        log_legacy_call(&LegacyCallRecord {
            route,
            request_id: id,
            user_group_id: user_group_id.as_deref(),
            client_fingerprint: &caller.fingerprint,
            upstream_status,
            status,
            latency: started.elapsed(),
        });
        self.shared.usage.record(
            &caller.label,
            route,
            user_group_id.as_deref(),
            SystemTime::now(),
        );
        self.shared.metrics.legacy_call(route, status, &caller);
        response
    }

    /// The legacy call as Customer API calls. Returns the legacy reply and the upstream status.
    async fn translate(
        &self,
        route: LegacyRoute,
        request: Request<Incoming>,
        client: SocketAddr,
        user_group_id: &mut Option<String>,
    ) -> Result<(Response<ProxyBody>, StatusCode), ShimError> {
        let (parts, body) = request.into_parts();
        let bytes =
            read_legacy_body(&parts.headers, body, self.shared.limits.legacy_body_bytes).await?;
        let translated =
            translate_request(route, &bytes).map_err(|error| unparseable(&parts.headers, error))?;
        *user_group_id = translated.user_group_id;

        let mut headers = parts.headers;
        prepare_upstream_headers(&mut headers, client.ip(), self.shared.add_x_forwarded_for);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_ENCODING);
        headers.remove(header::CONTENT_TYPE);
        // The reply is rewritten, so ask for it plain; a server that compresses anyway is decoded.
        headers.insert(header::ACCEPT_ENCODING, IDENTITY.clone());
        let target = with_query(route.customer_path(), parts.uri.query());

        let body = match translated.plan {
            CustomerCall::Send(body) => {
                if route == LegacyRoute::DeleteUserGroup && self.shared.refuse_cascading_delete {
                    let token = translated.current_token.as_deref().unwrap_or_default();
                    match self.provided_id_for_token(&headers, token).await? {
                        Precheck::Answer(refusal) => return self.legacy_reply(route, refusal),
                        Precheck::Proceed(None) => {}
                        Precheck::Proceed(Some(provided_id)) => {
                            if let Precheck::Answer(refusal) =
                                self.check_no_children(&headers, &provided_id).await?
                            {
                                return self.legacy_reply(route, refusal);
                            }
                        }
                    }
                }
                body
            }
            CustomerCall::LookupTokenThenDelete { provided_id, rest } => {
                let lookup_body = token_lookup_body(&provided_id);
                let lookup = self
                    .call_customer(
                        &Method::POST,
                        GET_CUSTOMER_PATH,
                        headers.clone(),
                        Some(lookup_body),
                    )
                    .await?;
                let token = match self.lookup_token(&lookup)? {
                    Some(token) => token,
                    // The upstream refused the lookup (unknown id, bad credential): that is
                    // the answer the legacy client gets.
                    None => return self.legacy_reply(route, lookup),
                };
                if self.shared.refuse_cascading_delete
                    && let Precheck::Answer(refusal) =
                        self.check_no_children(&headers, &provided_id).await?
                {
                    return self.legacy_reply(route, refusal);
                }
                delete_by_token_body(rest, &token)
            }
        };
        // The last call takes the headers themselves; only the look-ups before it copy them.
        let reply = self
            .call_customer(route.method(), &target, headers, Some(body))
            .await?;
        self.legacy_reply(route, reply)
    }

    /// One Customer API call with the client's headers; `body` is sent as JSON.
    async fn call_customer(
        &self,
        method: &Method,
        target: &str,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<CollectedReply, ShimError> {
        let body = match body {
            Some(body) => {
                headers.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
                body
            }
            None => Bytes::new(),
        };
        let mut request = Request::new(full_body(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = self.upstream.uri(target)?;
        *request.headers_mut() = headers;
        self.upstream
            .exchange(request, self.shared.limits.upstream_reply_bytes)
            .await
    }

    /// A successful Customer list reply's `customers` array.
    fn listed_customers(&self, reply: &CollectedReply) -> Result<Vec<Value>, ShimError> {
        match self.decoded_json(reply)? {
            Value::Object(mut fields) => match fields.shift_remove("customers") {
                Some(Value::Array(customers)) => Ok(customers),
                _ => Err(ShimError::UpstreamInvalidReply {
                    detail: "customer list without a `customers` array".to_owned(),
                }),
            },
            _ => Err(ShimError::UpstreamInvalidReply {
                detail: "customer list is not an object".to_owned(),
            }),
        }
    }

    /// Finds the `provided_id` of the customer holding `token` (`GET /api/customers/`): the
    /// Customer API has no look-up by token.
    async fn provided_id_for_token(
        &self,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<Precheck<Option<String>>, ShimError> {
        let reply = self
            .call_customer(&Method::GET, CUSTOMERS_PATH, headers.clone(), None)
            .await?;
        if !reply.status.is_success() {
            return Ok(Precheck::Answer(reply));
        }
        let provided_id = self
            .listed_customers(&reply)?
            .into_iter()
            .find_map(|customer| {
                (customer.get("token").and_then(Value::as_str) == Some(token))
                    .then(|| {
                        customer
                            .get("provided_id")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .flatten()
            });
        Ok(Precheck::Proceed(provided_id))
    }

    /// Refuses (409) when the customer has children, because the Customer delete cascades.
    async fn check_no_children(
        &self,
        headers: &HeaderMap,
        provided_id: &str,
    ) -> Result<Precheck<()>, ShimError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("parent_provided_id", provided_id)
            .finish();
        let target = with_query(CUSTOMERS_PATH, Some(&query));
        let reply = self
            .call_customer(&Method::GET, &target, headers.clone(), None)
            .await?;
        if !reply.status.is_success() {
            return Ok(Precheck::Answer(reply));
        }
        let children = self
            .listed_customers(&reply)?
            .iter()
            .filter(|child| child.get("provided_id").and_then(Value::as_str) != Some(provided_id))
            .count();
        if children > 0 {
            self.shared.metrics.cascade_refused();
            return Err(ShimError::DeleteWouldCascade {
                provided_id: provided_id.to_owned(),
                children,
            });
        }
        Ok(Precheck::Proceed(()))
    }

    /// The token from a `get_customer` reply; `None` when the upstream said no.
    fn lookup_token(&self, lookup: &CollectedReply) -> Result<Option<String>, ShimError> {
        if !lookup.status.is_success() {
            return Ok(None);
        }
        let reply = self.decoded_body(lookup)?;
        if let Some(token) = customer_token(&reply) {
            return Ok(Some(token));
        }
        if reports_success(&reply) {
            return Err(ShimError::UpstreamInvalidReply {
                detail: "get_customer succeeded without a customer token".to_owned(),
            });
        }
        Ok(None)
    }

    /// A reply's body without its `Content-Encoding`; one the shim cannot undo is unusable.
    fn decoded_body(&self, reply: &CollectedReply) -> Result<Bytes, ShimError> {
        decode_body(
            &reply.headers,
            reply.body.clone(),
            self.shared.limits.upstream_reply_bytes,
        )
        .map_err(|error| ShimError::UpstreamInvalidReply {
            detail: error.to_string(),
        })
    }

    /// A successful upstream reply as JSON; anything else is an unusable reply.
    fn decoded_json(&self, reply: &CollectedReply) -> Result<Value, ShimError> {
        serde_json::from_slice(&self.decoded_body(reply)?).map_err(|error| {
            ShimError::UpstreamInvalidReply {
                detail: format!("{} reply is not JSON: {error}", reply.status),
            }
        })
    }

    fn legacy_reply(
        &self,
        route: LegacyRoute,
        reply: CollectedReply,
    ) -> Result<(Response<ProxyBody>, StatusCode), ShimError> {
        let status = reply.status;
        // The body is built first: decoding reads the upstream's own `Content-Encoding`, and
        // only then are the reply's headers (owned, not copied) trimmed for the client.
        let (body, decoded) = if status.is_success() {
            let decoded = self.decoded_body(&reply)?;
            let legacy = legacy_success_reply(route, &decoded, &self.shared.reply_options)
                .map_err(|error| ShimError::UpstreamInvalidReply {
                    detail: format!("{status} reply is not JSON: {error}"),
                })?;
            (legacy, true)
        } else {
            match self.decoded_body(&reply) {
                // Only a `customer` key needs renaming; otherwise the bytes stay exact.
                Ok(decoded) => (legacy_error_reply(&decoded).unwrap_or(decoded), true),
                // An encoding the shim cannot undo: pass the error through as it came.
                Err(_) => (reply.body.clone(), false),
            }
        };
        let mut headers = reply.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        if decoded {
            headers.remove(header::CONTENT_ENCODING);
        }
        if status.is_success() {
            headers.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
        }
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok((response, status))
    }

    async fn pass_through(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<ProxyBody>, ShimError> {
        let (mut parts, body) = request.into_parts();
        // Absolute-form targets are reduced to their path: the authority never chooses the
        // upstream.
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        if !target.as_str().starts_with('/') {
            return Err(ShimError::BadRequestTarget);
        }
        parts.uri = self.upstream.uri_for_target(&target)?;
        // The client's HTTP version is a property of its connection; the pooled upstream
        // connection picks its own (ALPN).
        parts.version = Version::HTTP_11;
        prepare_upstream_headers(
            &mut parts.headers,
            client.ip(),
            self.shared.add_x_forwarded_for,
        );
        let response = self
            .upstream
            .send(Request::from_parts(
                parts,
                streamed_body(body, self.shared.limits.body_idle_timeout),
            ))
            .await?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        Ok(Response::from_parts(
            parts,
            streamed_body(body, self.shared.limits.body_idle_timeout),
        ))
    }
}

/// The one place a `ShimError` becomes a reply and a log line.
fn error_response(error: ShimError, request_id: &str) -> Response<ProxyBody> {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!(
            request_id,
            code = error.code(),
            status = status.as_u16(),
            cause = error.log_detail(),
            "{error}"
        );
    } else {
        tracing::info!(
            request_id,
            code = error.code(),
            status = status.as_u16(),
            cause = error.log_detail(),
            "{error}"
        );
    }
    error.into_response()
}

/// `path` with the legacy call's query string, if it had one.
fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// Reads a legacy body of at most `limit` bytes; a declared length over the limit is refused
/// before any of the body is read.
async fn read_legacy_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<Bytes, ShimError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ShimError::BodyTooLarge { limit });
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ShimError::EncodedRequestBody);
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ShimError::BodyTooLarge { limit })
        }
        Err(_) => Err(ShimError::IncompleteBody),
    }
}

/// Old scripts send `curl -d` bodies labelled as form data, so JSON is accepted whatever the
/// `Content-Type`; a body that does not parse is a 400 when it claimed to be JSON and a 415
/// otherwise.
fn unparseable(headers: &HeaderMap, error: ShimError) -> ShimError {
    match error {
        ShimError::InvalidJson { .. } if !claims_json(headers) => ShimError::NotJson,
        other => other,
    }
}

/// `application/json` or any `+json` media type (RFC 6839).
fn claims_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    fn parse_legacy_json(headers: &HeaderMap, bytes: &[u8]) -> Result<(), ShimError> {
        translate_request(LegacyRoute::RefreshUserGroupToken, bytes)
            .map(drop)
            .map_err(|error| unparseable(headers, error))
    }

    #[test]
    fn json_is_accepted_whatever_the_content_type() {
        let form = content_type("application/x-www-form-urlencoded");
        assert!(parse_legacy_json(&form, br#"{"current_token": "t"}"#).is_ok());
        assert!(parse_legacy_json(&HeaderMap::new(), br#"{"current_token": "t"}"#).is_ok());
    }

    #[test]
    fn unparseable_body_is_400_when_it_claimed_json_and_415_otherwise() {
        for claimed in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            let error = parse_legacy_json(&content_type(claimed), b"{nope").unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{claimed}");
        }
        for other in ["text/plain", "application/x-www-form-urlencoded"] {
            let error = parse_legacy_json(&content_type(other), b"user_group_id=1").unwrap_err();
            assert_eq!(error, ShimError::NotJson, "{other}");
        }
        assert_eq!(
            parse_legacy_json(&HeaderMap::new(), b"").unwrap_err(),
            ShimError::NotJson
        );
    }
}
