//! One request: a legacy route is translated, everything else passes through.
//!
//! The handlers return `Result<_, ShimError>` and use `?`; [`Proxy::handle`] turns any error
//! into the legacy envelope and one log line, in one place.

pub(crate) mod legacy_call;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::config::policy::{CurrentPolicy, Policy};
use crate::config::{Config, ConfigError};
use crate::error::ShimError;
use crate::fleet::Fleet;
use crate::legacy::route::LegacyRoute;
use crate::legacy::route::path::{self, UnsafePath};
use crate::message::body::{FrameObserver, Observed, ProxyBody, streamed_body};
use crate::message::headers::forwarding::prepare_upstream_headers;
use crate::message::headers::framing::check_request_framing;
use crate::message::headers::hop::strip_hop_by_hop;
use crate::message::headers::request_id::{X_REQUEST_ID, request_id};
use crate::observe::access_log::{AccessEntry, BytesIn, UpstreamStatus, counted};
use crate::observe::metrics::{InFlightGuard, Metrics, RequestTimer};
use crate::observe::otel::{Settings as TraceSettings, TraceScope, Tracing};
use crate::observe::usage::UsageTracker;
use crate::proxy::legacy_call::LegacyCalls;
use crate::server::send_clock::watch_reply;
use crate::upstream::{Upstream, tls_config};

/// Everything one request needs. One per serving thread: the upstream connections are the
/// thread's own ([`Proxy::for_this_thread`]); the rest is built once and shared, so the caps
/// and counts hold for the whole process.
pub struct Proxy {
    upstream: Upstream,
    shared: Arc<Shared>,
}

/// What every thread's [`Proxy`] has in common.
struct Shared {
    body_idle_timeout: Duration,
    add_x_forwarded_for: bool,
    /// `limits.max_in_flight`; a request's permit goes with its reply's body.
    in_flight: Arc<Semaphore>,
    legacy: LegacyCalls,
    /// What a SIGHUP may change; each request keeps the snapshot it started with.
    policy: CurrentPolicy,
    metrics: Arc<Metrics>,
    usage: Arc<UsageTracker>,
    fleet: Option<Arc<Fleet>>,
    /// `None` unless an OTLP endpoint is set: then each request is one `Option` test.
    tracing: Option<Tracing>,
}

impl Proxy {
    /// The proxy for `config`; with `tracing`, its spans are exported (and the export thread
    /// starts here).
    pub fn new(config: &Config, tracing: Option<&TraceSettings>) -> Result<Self, ConfigError> {
        let metrics = Arc::new(Metrics::new(
            usize::try_from(config.limits.max_tracked_clients).unwrap_or(usize::MAX),
        ));
        let fleet = config
            .fleet
            .as_ref()
            .map(|settings| {
                Fleet::new(
                    settings,
                    config.limits.max_tracked_clients,
                    Arc::clone(&metrics),
                )
            })
            .transpose()?;
        let upstream = Upstream::new(
            &config.upstream,
            config.rate_limit.as_ref(),
            fleet.as_ref().map(Fleet::link),
            Arc::clone(&metrics),
        )?;
        let tracing = match tracing {
            Some(settings) => Some(
                Tracing::start(
                    settings,
                    tls_config(&config.upstream)?,
                    Arc::clone(&metrics),
                )
                .map_err(|error| {
                    ConfigError(format!("cannot start the trace export thread: {error}"))
                })?,
            ),
            None => None,
        };
        let usage = Arc::new(UsageTracker::default());
        let shared = Shared {
            body_idle_timeout: config.limits.body_idle_timeout,
            add_x_forwarded_for: config.upstream.add_x_forwarded_for,
            legacy: LegacyCalls::new(
                config,
                Arc::clone(&metrics),
                Arc::clone(&usage),
                fleet.clone(),
            ),
            in_flight: Arc::new(Semaphore::new(
                usize::try_from(config.limits.max_in_flight).unwrap_or(usize::MAX),
            )),
            policy: CurrentPolicy::new(Policy::from_config(config)?),
            metrics,
            usage,
            fleet,
            tracing,
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

    /// Where a reload puts new upstream budget figures; `None` when the budget is off.
    pub(crate) fn budget(&self) -> Option<crate::upstream::BudgetFigures> {
        self.upstream.budget()
    }

    /// The reloadable rules in service.
    pub fn policy(&self) -> &CurrentPolicy {
        &self.shared.policy
    }

    pub fn usage(&self) -> &Arc<UsageTracker> {
        &self.shared.usage
    }

    /// The fleet's Redis, when `rate_limit.redis_url` is set.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.shared.fleet.as_ref()
    }

    /// Answers one request. Never fails: errors become legacy-envelope replies here. Every
    /// reply carries the request's `x-request-id`, which also goes upstream and labels every
    /// log line of the request.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        // The client's clock starts with its request's head, parsed.
        let started = Instant::now();
        let id = request_id(request.headers());
        request.headers_mut().insert(&X_REQUEST_ID, id.clone());
        // The shim's own lines carry the id as a field; the span is for the libraries' debug
        // lines, so at the default level it is never built.
        // Sane IDs are visible ASCII (see `request_id`), so this never falls back.
        let id_text = id.to_str().unwrap_or_default();
        let span = tracing::debug_span!("request", request_id = id_text);
        // Recognised once, for the dispatch, the access line and the span alike.
        let recognised = path::recognise(request.method(), request.uri().path());
        let route = recognised.ok().flatten();
        // The server span rides in the extensions to every upstream exchange for the request.
        let trace = self.shared.tracing.as_ref().map(|tracing| {
            let scope = tracing.server_span(
                request.method(),
                request.uri().path(),
                request.headers(),
                route,
                id_text,
            );
            request.extensions_mut().insert(scope.clone());
            scope
        });
        let access = self.shared.policy.peek().access_log.then(|| {
            let bytes_in = BytesIn::default();
            request.extensions_mut().insert(bytes_in.clone());
            AccessEntry::start(
                request.method(),
                request.uri(),
                request.headers(),
                id_text,
                route,
                bytes_in,
                trace
                    .as_ref()
                    .map(|scope| (scope.trace_id(), scope.span_id())),
            )
        });
        // Observed once: with the reply's body, or here, when this future is dropped because the
        // client went away before there was a reply (`aborted`).
        let timer = self.shared.metrics.request_timer(
            route,
            started,
            trace
                .as_ref()
                .filter(|scope| scope.is_sampled())
                .map(TraceScope::trace_id),
        );
        let mut response = self
            .handle_with_id(recognised, request, client, id_text, timer)
            .instrument(span)
            .await;
        if let Some(scope) = trace {
            scope.end(response.status().as_u16());
        }
        response.headers_mut().insert(&X_REQUEST_ID, id);
        match access {
            Some(entry) => entry.finish(response),
            None => response,
        }
    }

    async fn handle_with_id(
        &self,
        recognised: Result<Option<LegacyRoute>, UnsafePath>,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
        timer: RequestTimer,
    ) -> Response<ProxyBody> {
        let route = match recognised {
            Ok(route) => route,
            Err(unsafe_path) => {
                let response = ShimError::from(unsafe_path).into_logged_response(id);
                return self.until_sent(response, timer, None);
            }
        };
        let Some(route) = route else {
            return self.dispatch(None, request, client, id, None, timer).await;
        };
        // Read once: the call keeps these rules to its end, whatever a reload does meanwhile.
        let policy = self.shared.policy.snapshot();
        let mut response = self
            .dispatch(Some(route), request, client, id, Some(&policy), timer)
            .await;
        // Every reply to a legacy call says it is deprecated, the shim's own errors too.
        policy.deprecation.apply(route, response.headers_mut());
        response
    }

    async fn dispatch(
        &self,
        route: Option<LegacyRoute>,
        request: Request<Incoming>,
        client: SocketAddr,
        id: &str,
        policy: Option<&Policy>,
        timer: RequestTimer,
    ) -> Response<ProxyBody> {
        // Shed at once rather than queue: a queue would grow without bound under overload.
        let Ok(permit) = Arc::clone(&self.shared.in_flight).try_acquire_owned() else {
            self.shared.metrics.shed();
            let response = ShimError::Overloaded.into_logged_response(id);
            return self.until_sent(response, timer, None);
        };
        let held = (permit, self.shared.metrics.in_flight());
        // One async fn, not a call to another: a nested one's future (several KB) would be
        // built and then copied into this one's state on every request.
        let response = if let Err(error) = check_request_framing(request.headers()) {
            error.into_logged_response(id)
        } else if request.method() == Method::CONNECT {
            ShimError::ConnectRefused.into_logged_response(id)
        } else {
            match route.zip(policy) {
                Some((route, policy)) => {
                    let legacy = &self.shared.legacy;
                    // Boxed: a legacy call's state (about 9 KB) would otherwise size, and be
                    // copied with, every request's future, pass-through ones too.
                    Box::pin(legacy.handle(&self.upstream, route, request, client, id, policy))
                        .await
                }
                None => {
                    let response = self
                        .pass_through(request, client)
                        .await
                        .unwrap_or_else(|error| error.into_logged_response(id));
                    self.shared.metrics.pass_through(response.status().as_u16());
                    response
                }
            }
        };
        // The slot and the count go with the reply's body until it has been handed on in full
        // or abandoned: a reply still being sent holds its upstream connection and buffers.
        self.until_sent(response, timer, Some(held))
    }

    /// The reply, whose body holds the request's clock (and its place in flight, if it took
    /// one) until it has been handed on in full, failed or been dropped. On HTTP/2 the body
    /// is watched inside them (and inside the access line's observer), so that they see its
    /// end only once hyper has taken its last piece.
    fn until_sent(
        &self,
        response: Response<ProxyBody>,
        mut timer: RequestTimer,
        in_flight: Option<(OwnedSemaphorePermit, InFlightGuard)>,
    ) -> Response<ProxyBody> {
        timer.answered(response.status().as_u16());
        let until_sent = UntilSent {
            in_flight,
            timer: Some(timer),
        };
        response.map(|body| Observed::new(watch_reply(body), until_sent).boxed_unsync())
    }

    async fn pass_through(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<ProxyBody>, ShimError> {
        let (mut parts, body) = request.into_parts();
        let teaches = self
            .shared
            .legacy
            .learns_from(&parts.method, parts.uri.path());
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
        // Only with the access log on: an extension costs an allocation per request.
        let logged = parts.extensions.get::<BytesIn>().cloned();
        let body = match &logged {
            Some(bytes_in) => streamed_body(
                counted(body, bytes_in.clone()),
                self.shared.body_idle_timeout,
            ),
            None => streamed_body(body, self.shared.body_idle_timeout),
        };
        let response = self.upstream.send(Request::from_parts(parts, body)).await?;
        let (mut parts, body) = response.into_parts();
        if logged.is_some() {
            parts
                .extensions
                .insert(UpstreamStatus(parts.status.as_u16()));
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        let response =
            Response::from_parts(parts, streamed_body(body, self.shared.body_idle_timeout));
        Ok(if teaches {
            self.shared.legacy.learn_from(response)
        } else {
            response
        })
    }
}

/// What a reply's body holds until it ends, fails or is dropped (sent in full, or abandoned:
/// the client went away or was cut off by the send timeout): the request's place under
/// `limits.max_in_flight` and its count in `explo_shim_requests_in_flight` (none for a request
/// refused before it took one), and its clock in `explo_shim_request_duration_seconds`, stopped
/// then, as the client saw the reply end.
struct UntilSent {
    in_flight: Option<(OwnedSemaphorePermit, InFlightGuard)>,
    timer: Option<RequestTimer>,
}

impl UntilSent {
    fn done(&mut self) {
        // Dropping the timer observes it.
        self.timer = None;
        self.in_flight = None;
    }
}

impl FrameObserver for UntilSent {
    fn data(&mut self, _: &bytes::Bytes) {}

    fn ended(&mut self) {
        self.done();
    }

    fn failed(&mut self) {
        self.done();
    }
}

impl Drop for UntilSent {
    fn drop(&mut self) {
        self.done();
    }
}
