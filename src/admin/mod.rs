//! The admin listener: liveness and readiness for orchestrators, metrics, and the migration
//! tracker.
//!
//! `GET /` is the migration console ([`console`]): one self-contained HTML page with the
//! `/usage` data, the retirement schedule and charts of the calls over time.
//!
//! `GET /metrics` is the Prometheus text format 0.0.4, or OpenMetrics text when the `Accept`
//! header asks for it ([`crate::observe::metrics::exposition`]); `GET /usage` is the JSON report of who
//! still calls which legacy endpoint.
//!
//! `GET /healthz` is 200 while the process runs. `GET /readyz` is 200 while the shim accepts
//! traffic and 503 once shutdown has begun, so a load balancer stops sending new requests
//! while in-flight ones drain. Neither depends on a fleet's Redis: without it the shim still
//! serves, on its own budget, so taking it out of rotation would only lose capacity; `/readyz`
//! names the budget in use (`rate_limit_backend`).
//!
//! Who may read `/`, `/usage` and `/metrics` is [`auth`]'s to say: the admin token when one
//! is set, else the `Host` a request names. Failed credentials are counted per client
//! address ([`throttle`]), in `explo_shim_admin_auth_failures_total`, and in summarised log
//! lines ([`refusals`]). `POST /login` trades the token for a session cookie that expires;
//! `POST /logout` drops it ([`sign_in`](mod@sign_in)).
//!
//! This file routes. The answers are built in [`reports`] (the console, `/usage` and
//! `/metrics`), [`replies`] (refusals and errors) and [`sign_in`](mod@sign_in); reports not
//! yet read by their clients are held against [`report_budget`].
//!
//! With a fleet, `/usage` is the fleet's records from Redis (`"source": "fleet"`); while Redis
//! is unreachable it is this replica's own (`"source": "replica"`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body;
use serde_json::json;

use crate::config::policy::CurrentPolicy;
use crate::fleet::FleetLink;
use crate::message::body::{BoxError, ProxyBody};
use crate::observe::metrics::Metrics;
use crate::observe::usage::UsageTracker;

mod auth;
mod console;
mod refusals;
mod replies;
mod report_budget;
mod reports;
mod sign_in;
pub(crate) mod throttle;

pub use refusals::AuthFailures;
use refusals::refusal;
use replies::{json_text, misdirected};
pub use report_budget::{REPORT_BYTES_IN_FLIGHT, ReportBudget};
use reports::{console_page, usage_report};
use sign_in::{sign_in, signed_out};

/// Whether the main listener is accepting traffic.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the admin endpoints read: the process's readiness, metrics and usage records. Shared
/// with the serving threads, never the request path itself.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub usage: Arc<UsageTracker>,
    /// The fleet's Redis, for its usage records.
    pub fleet: Option<FleetLink>,
    /// The reloadable rules: the brownout schedule, shown in `/metrics`.
    pub policy: CurrentPolicy,
    /// Failed admin credentials: per-address counts and their log lines.
    pub failures: Arc<AuthFailures>,
    /// The bytes of reports held for clients that have not read them yet.
    pub reports: ReportBudget,
}

/// Answers one admin request from `client`.
pub async fn handle<B>(
    request: Request<B>,
    state: &AdminState,
    client: IpAddr,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let report = auth::is_guarded(request.uri().path());
    let response = respond(request, state, client).await;
    if report && response.status() == StatusCode::OK {
        state.reports.hold(response)
    } else {
        response
    }
}

async fn respond<B>(request: Request<B>, state: &AdminState, client: IpAddr) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let policy = state.policy.snapshot();
    let path = request.uri().path();
    if path == "/logout" && request.method() == Method::POST {
        return signed_out();
    }
    match &policy.admin_token {
        Some(token) if path == "/login" && request.method() == Method::POST => {
            return sign_in(request, token, state, client).await;
        }
        Some(token) if auth::is_guarded(path) => {
            if let Some(refused) = refusal(request.headers(), path == "/", token, state, client) {
                return refused;
            }
        }
        Some(_) => {}
        None if auth::is_guarded(path)
            && !auth::host_is_allowed(
                request.headers(),
                request.uri(),
                &policy.admin_allowed_hosts,
            ) =>
        {
            return misdirected();
        }
        None => {}
    }
    let readiness = &state.readiness;
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if is_read && request.uri().path() == "/" {
        return console_page(state, &policy).await;
    }
    if is_read && request.uri().path() == "/metrics" {
        return reports::metrics(request.headers(), state);
    }
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/usage") => {
            return json_text(StatusCode::OK, usage_report(state, &policy).await.to_json());
        }
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET | &Method::HEAD, "/readyz") if readiness.is_ready() => (
            StatusCode::OK,
            json!({"status": "ready", "rate_limit_backend": rate_limit_backend(state)}),
        ),
        (&Method::GET | &Method::HEAD, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down"}),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": "not found", "endpoints": ["/", "/healthz", "/readyz", "/metrics", "/usage"]}),
        ),
    };
    json_text(status, body.to_string())
}

fn rate_limit_backend(state: &AdminState) -> &'static str {
    match &state.fleet {
        Some(fleet) if fleet.fleet().is_reachable() => "redis",
        _ => "local",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT};
    use http::header;
    use http_body_util::BodyExt;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn get(path: &str) -> Request<String> {
        Request::get(path).body(String::new()).unwrap()
    }

    fn state() -> AdminState {
        AdminState {
            readiness: Readiness::default(),
            metrics: Arc::new(Metrics::new(10)),
            usage: Arc::new(UsageTracker::default()),
            fleet: None,
            failures: Arc::default(),
            reports: ReportBudget::default(),
            policy: CurrentPolicy::new(
                crate::config::policy::Policy::from_config(
                    &crate::config::Config::resolve(&crate::config::Overrides::default()).unwrap(),
                )
                .unwrap(),
            ),
        }
    }

    #[tokio::test]
    async fn metrics_and_usage_are_served() {
        let state = state();
        let metrics = handle(get("/metrics"), &state, LOCAL).await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], PROMETHEUS_TEXT);
        let asked = Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(String::new())
            .unwrap();
        let openmetrics = handle(asked, &state, LOCAL).await;
        assert_eq!(
            openmetrics.headers()[header::CONTENT_TYPE],
            OPENMETRICS_TEXT
        );
        let usage = handle(get("/usage"), &state, LOCAL).await;
        assert_eq!(usage.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_console_is_a_page_under_its_own_nonce_never_cached() {
        let state = state();
        let page = handle(get("/"), &state, LOCAL).await;
        assert_eq!(page.status(), StatusCode::OK);
        let headers = page.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap()
            .to_owned();
        let body = page.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("<script nonce=\"{nonce}\">")));
        let again = handle(get("/"), &state, LOCAL).await;
        assert_ne!(
            again.headers()[header::CONTENT_SECURITY_POLICY],
            headers[header::CONTENT_SECURITY_POLICY],
            "a fresh nonce per response"
        );
        let head = Request::head("/").body(String::new()).unwrap();
        assert_eq!(handle(head, &state, LOCAL).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_follows_readiness() {
        let state = state();
        assert_eq!(
            handle(get("/readyz"), &state, LOCAL).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.readiness.set_ready(true);
        assert_eq!(
            handle(get("/readyz"), &state, LOCAL).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(get("/healthz"), &state, LOCAL).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(get("/other"), &state, LOCAL).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
