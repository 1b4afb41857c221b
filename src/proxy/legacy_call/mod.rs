//! One legacy call from end to end: read the body, translate it, run the checks a by-token call
//! needs, call the Customer API, and build the legacy reply. [`crate::proxy`] hands every
//! recognised legacy route here; the translation itself is pure ([`crate::legacy`]).
//!
//! Two rules shape the workflow:
//! - **A success is never turned into a failure.** A 2xx from the Customer call means the write
//!   happened (a token may have been rotated). If its reply cannot be translated, the client
//!   gets it as it came, and the shim logs an error and counts it; never a 5xx that invites a
//!   retry. Only an incomplete reply is a 502.
//! - **The cascade guard fails closed** ([`cascade`]): a delete goes ahead only once the shim
//!   has established that the customer has no children.
//!
//! Upstream calls per legacy call:
//!
//! | legacy call | Customer calls |
//! |---|---|
//! | create, update | 1 |
//! | refresh | 1; 2 when `user_group_id` is sent too (its token is checked first) |
//! | delete by `user_group_id` | `get_customer`, children check, delete: 3 |
//! | delete by token, its customer seen before | `get_customer` (confirms it), children check, delete: 3 |
//! | delete by token, never seen | list pages until found (1 per 1,000 customers, or per page the server serves), children check, delete |
//! | delete, `refuse_cascading_delete = false` | 1 (2 by `user_group_id`) |
//!
//! The children check is one call when the v2 list answers at the path that answered last, one
//! more for each list path that does not (the other v2 path, then v1).

mod cascade;
mod customer_api;
mod read;
mod reply;

use customer_api::{CustomerApi, with_query};
pub mod token_owners;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use http::header;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::policy::Policy;
use crate::config::{Config, Limits};
use crate::error::ShimError;
use crate::fleet::Fleet;
use crate::legacy::request::{ByToken, CustomerCall, translate_request};
use crate::legacy::retirement::{BROWNOUT_NOTICE, Decision};
use crate::legacy::route::{GET_CUSTOMER_PATH, LegacyRoute};
use crate::message::body::ProxyBody;
use crate::message::fingerprint::EXPLO_AUTHORIZATION;
use crate::message::headers::encoding::DecodeError;
use crate::message::headers::forwarding::prepare_upstream_headers;
use crate::message::headers::hop::strip_hop_by_hop;
use crate::observe::access_log::{BytesIn, LogTrace, UpstreamStatus};
use crate::observe::metrics::Metrics;
use crate::observe::otel::TraceScope;
use crate::observe::telemetry::{LegacyCallRecord, log_legacy_call};
use crate::observe::usage::{UsageTracker, recorded_user_group_id};
use crate::upstream::{CollectedReply, Exchanged, Upstream};
use read::{read_legacy_body, unparseable};
use token_owners::{OwnerTap, TokenOwners};

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static IDENTITY: HeaderValue = HeaderValue::from_static("identity");

/// The result of a look-up made before the Customer call: go on, or answer with the
/// upstream's refusal.
enum Precheck<T> {
    Proceed(T),
    Answer(CollectedReply),
}

/// Why a success reply could not be translated.
enum Untranslatable {
    Encoding(DecodeError),
    NotJson(serde_json::Error),
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encoding(error) => error.fmt(f),
            Self::NotJson(error) => write!(f, "the reply is not JSON: {error}"),
        }
    }
}

/// What every legacy call shares, across serving threads.
pub struct LegacyCalls {
    limits: Limits,
    refuse_cascading_delete: bool,
    add_x_forwarded_for: bool,
    metrics: Arc<Metrics>,
    usage: Arc<UsageTracker>,
    fleet: Option<Arc<Fleet>>,
    owners: Arc<TokenOwners>,
    v2_list_path: cascade::V2ListPath,
}

/// Who made one legacy call, and the rules it keeps to its end.
#[derive(Clone, Copy)]
struct Caller<'a> {
    client: SocketAddr,
    /// The request's `x-request-id`.
    id: &'a str,
    policy: &'a Policy,
    /// Set once a look-up or the call itself has been sent upstream.
    reached_upstream: &'a AtomicBool,
}

/// Customer endpoints whose successful reply names one customer with its token.
const SINGLE_CUSTOMER_PATHS: [&str; 4] = [
    "/api/create_customer/",
    "/api/update_customer/",
    GET_CUSTOMER_PATH,
    "/api/refresh_customer_token/",
];

impl LegacyCalls {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        usage: Arc<UsageTracker>,
        fleet: Option<Arc<Fleet>>,
    ) -> Self {
        Self {
            limits: config.limits.clone(),
            refuse_cascading_delete: config.legacy_behaviour.refuse_cascading_delete,
            add_x_forwarded_for: config.upstream.add_x_forwarded_for,
            metrics,
            usage,
            fleet,
            owners: Arc::new(TokenOwners::new(token_owners::DEFAULT_CAPACITY)),
            v2_list_path: cascade::V2ListPath::default(),
        }
    }

    /// Whether a passed-through request's reply names one customer and its token, worth
    /// reading on its way to the client ([`LegacyCalls::learn_from`]); only the cascade guard
    /// uses what it learns.
    pub fn learns_from(&self, method: &Method, path: &str) -> bool {
        self.refuse_cascading_delete
            && *method == Method::POST
            && SINGLE_CUSTOMER_PATHS.contains(&path)
    }

    /// The passed-through reply, read as it streams to the client (a success, uncompressed).
    pub fn learn_from(&self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        if !response.status().is_success()
            || response.headers().contains_key(header::CONTENT_ENCODING)
        {
            return response;
        }
        let owners = Arc::clone(&self.owners);
        response.map(|body| http_body_util::BodyExt::boxed_unsync(OwnerTap::tap(body, owners)))
    }

    /// Answers one legacy call, and logs, meters and records it as a deprecated call.
    pub async fn handle(
        &self,
        upstream: &Upstream,
        route: LegacyRoute,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
        policy: &Policy,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let trace = request.extensions().get::<TraceScope>().cloned();
        let log_trace = LogTrace::of(
            request.headers(),
            trace
                .as_ref()
                .map(|scope| (scope.trace_id(), scope.span_id())),
        );
        let logged = request.extensions().get::<BytesIn>().cloned();
        let caller = self
            .metrics
            .identify(request.headers().get(&EXPLO_AUTHORIZATION));
        let mut user_group_id = None;
        let now = SystemTime::now();
        let decision = policy.retirement.decide(now, &caller.fingerprint);
        // The shim's own 4xx: it refused the call before it could change anything upstream.
        let mut refusal = None;
        // Atomic only to keep the call's future `Send`; one task reads and writes it.
        let reached_upstream = AtomicBool::new(false);
        let (mut response, upstream_status) = match decision {
            Decision::Serve => match self
                .run(
                    upstream,
                    route,
                    request,
                    Caller {
                        client,
                        id,
                        policy,
                        reached_upstream: &reached_upstream,
                    },
                    &mut user_group_id,
                )
                .await
            {
                Ok((response, upstream_status)) => (response, Some(upstream_status.as_u16())),
                Err(error) => {
                    if let Some(trace) = &trace {
                        note_error(trace, &error);
                    }
                    // Only a call refused before anything went upstream is summarised: one
                    // whose look-ups reached the upstream (a 409 from the cascade guard, a
                    // budget refusal between a look-up and the call) keeps its own audit
                    // line, however many.
                    if error.status().is_client_error() && !reached_upstream.load(Ordering::Relaxed)
                    {
                        refusal = Some(error.code());
                    }
                    (error.into_logged_response(id), None)
                }
            },
            // Nothing reaches the upstream; the body is not even read.
            Decision::Brownout { ends_at } => {
                self.metrics.legacy_refused(route, "brownout");
                if let Some(trace) = &trace {
                    trace.refused("brownout");
                }
                let retry_after = ends_at.duration_since(now).unwrap_or_default();
                let brownout = ShimError::Brownout {
                    route,
                    ends_at,
                    retry_after,
                };
                refusal = Some(brownout.code());
                (brownout.into_logged_response(id), None)
            }
            Decision::Sunset { since } => {
                self.metrics.legacy_refused(route, "sunset");
                if let Some(trace) = &trace {
                    trace.refused("sunset");
                }
                let sunset = ShimError::Sunset { route, since };
                refusal = Some(sunset.code());
                (sunset.into_logged_response(id), None)
            }
        };
        let refused = decision != Decision::Serve;
        if response.status().is_success()
            && let Some(notice) = policy.retirement.notice(now, &caller.fingerprint)
        {
            response.headers_mut().insert(&BROWNOUT_NOTICE, notice);
        }
        let status = response.status().as_u16();
        // The client's own string, of any length: kept short wherever it is written.
        let user_group_id = user_group_id.map(recorded_user_group_id);
        log_legacy_call(&LegacyCallRecord {
            route,
            request_id: id,
            user_group_id: user_group_id.as_deref(),
            client_fingerprint: &caller.fingerprint,
            client_name: policy
                .client_names
                .get(caller.fingerprint.as_str())
                .map(String::as_str),
            upstream_status,
            status,
            latency: started.elapsed(),
            trace: &log_trace,
            refusal,
        });
        if let Some(upstream_status) = upstream_status.filter(|_| logged.is_some()) {
            response
                .extensions_mut()
                .insert(UpstreamStatus(upstream_status));
        }
        // Whether the upstream took the credential: 401 and 403 say it did not; a call it never
        // saw (a brownout, a bad body), a 429 or a 5xx says nothing either way, and during an
        // outage would let any junk token pin a place in the table.
        let accepted = upstream_status
            .is_some_and(|status| !matches!(status, 401 | 403 | 429) && status < 500);
        let placed = self.metrics.settle(&caller, accepted);
        if let Some(evicted) = &placed.evicted {
            self.usage.forget(evicted);
        }
        self.usage
            .record(&placed.label, route, user_group_id.as_deref(), now, refused);
        if let Some(fleet) = &self.fleet {
            // The fleet places clients itself, across replicas, by the same rule.
            fleet.record_usage(
                &caller.fingerprint,
                route,
                user_group_id.as_deref(),
                now,
                refused,
                accepted,
            );
        }
        self.metrics.legacy_call(route, status, &placed.label);
        response
    }

    /// The legacy call as Customer API calls. Returns the legacy reply and the upstream status.
    async fn run(
        &self,
        upstream: &Upstream,
        route: LegacyRoute,
        request: Request<Incoming>,
        call: Caller<'_>,
        user_group_id: &mut Option<String>,
    ) -> Result<(Response<ProxyBody>, StatusCode), ShimError> {
        let Caller {
            client,
            id,
            policy,
            reached_upstream,
        } = call;
        let (parts, body) = request.into_parts();
        let bytes = read_legacy_body(&parts.headers, body, &self.limits).await?;
        if let Some(bytes_in) = parts.extensions.get::<BytesIn>() {
            bytes_in.add(bytes.len() as u64);
        }
        let translated =
            translate_request(route, &bytes).map_err(|error| unparseable(&parts.headers, error))?;
        *user_group_id = translated.user_group_id;
        let api = CustomerApi {
            calls: self,
            upstream,
            reached_upstream,
            trace: parts.extensions.get::<TraceScope>(),
            headers: self.customer_headers(parts.headers, client),
        };
        let (body, sent_token) = match translated.plan {
            CustomerCall::Send(body) => (body, None),
            CustomerCall::ByToken(call) => match self.prepare_by_token(&api, route, &call).await? {
                Precheck::Answer(refusal) => {
                    return self.legacy_reply(route, refusal, None, id, policy);
                }
                Precheck::Proceed(token) => (call.body(Some(&token)), Some(token)),
            },
        };
        let target = with_query(route.customer_path(), parts.uri.query());
        match api.call_last(route.method(), &target, body).await? {
            Exchanged::Collected(reply) => {
                self.legacy_reply(route, reply, sent_token.as_deref(), id, policy)
            }
            Exchanged::TooLarge(reply) => self.large_reply(route, reply, sent_token.as_deref(), id),
        }
    }

    /// The client's headers made ready for Customer calls, whose bodies the shim writes and
    /// whose replies it reads.
    fn customer_headers(&self, mut headers: HeaderMap, client: SocketAddr) -> HeaderMap {
        prepare_upstream_headers(&mut headers, client.ip(), self.add_x_forwarded_for);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_ENCODING);
        headers.remove(header::CONTENT_TYPE);
        // The reply is rewritten, so ask for JSON, plain; a server that compresses anyway is
        // decoded. A client's `Accept: text/html` could otherwise get HTML for a write.
        headers.insert(header::ACCEPT_ENCODING, IDENTITY.clone());
        headers.insert(header::ACCEPT, APPLICATION_JSON.clone());
        headers
    }

    /// What a by-token call needs before its Customer call: the token (the client's, or looked
    /// up by `user_group_id`), a `user_group_id` sent with the token confirmed to hold it, and
    /// for a guarded delete, no children.
    async fn prepare_by_token(
        &self,
        api: &CustomerApi<'_>,
        route: LegacyRoute,
        call: &ByToken,
    ) -> Result<Precheck<String>, ShimError> {
        let (token, owner) = match (&call.token, &call.provided_id) {
            (sent, Some(provided_id)) => {
                let held = match api.token_of(provided_id, "token_by_id").await? {
                    Precheck::Proceed(token) => token,
                    Precheck::Answer(refusal) => return Ok(Precheck::Answer(refusal)),
                };
                // Dropping the id would act on the token's customer, which is not the one the
                // client named.
                if sent.as_ref().is_some_and(|sent| *sent != held) {
                    return Err(ShimError::TokenOfAnotherGroup {
                        provided_id: provided_id.clone(),
                    });
                }
                (held, Some(provided_id.clone()))
            }
            (Some(token), None) => (token.clone(), None),
            // The translation requires one of the two.
            (None, None) => {
                return Err(ShimError::MissingField {
                    field: crate::legacy::request::CURRENT_TOKEN,
                    route: route.legacy_endpoint(),
                });
            }
        };
        if !(route.spec().guards_against_cascade && self.refuse_cascading_delete) {
            return Ok(Precheck::Proceed(token));
        }
        let owner = match owner {
            Some(owner) => owner,
            None => match cascade::owner_of(api, &token).await? {
                Precheck::Proceed(cascade::Owner::Customer(owner)) => owner,
                // Nothing to protect: the upstream answers the delete of an unknown token.
                Precheck::Proceed(cascade::Owner::Nobody) => return Ok(Precheck::Proceed(token)),
                Precheck::Answer(refusal) => return Ok(Precheck::Answer(refusal)),
            },
        };
        match cascade::check_no_children(api, &owner).await? {
            Precheck::Proceed(()) => Ok(Precheck::Proceed(token)),
            Precheck::Answer(refusal) => Ok(Precheck::Answer(refusal)),
        }
    }
}

/// The shim's error on the server span: a guard's refusal, made without a Customer call, as
/// the refusal reason; any other as the error type.
fn note_error(trace: &TraceScope, error: &ShimError) {
    match error {
        ShimError::DeleteWouldCascade { .. }
        | ShimError::CascadeUnverified { .. }
        | ShimError::TokenOfAnotherGroup { .. }
        | ShimError::RateLimited { .. } => trace.refused(error.code()),
        _ => trace.failed(error.code()),
    }
}

/// The client's response from an upstream reply's status and headers, without the hop-by-hop
/// fields, and `body`.
fn reply_of(status: StatusCode, mut headers: HeaderMap, body: ProxyBody) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut headers);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
