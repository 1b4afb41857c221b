//! The admin listener: liveness and readiness for orchestrators, metrics, and the migration
//! tracker.
//!
//! `GET /metrics` is the Prometheus text format 0.0.4, or OpenMetrics text when the `Accept`
//! header asks for it ([`crate::metrics::exposition`]); `GET /usage` is the JSON report of who
//! still calls which legacy endpoint.
//!
//! `GET /healthz` is 200 while the process runs. `GET /readyz` is 200 while the shim accepts
//! traffic and 503 once shutdown has begun, so a load balancer stops sending new requests
//! while in-flight ones drain. Neither depends on a fleet's Redis: without it the shim still
//! serves, on its own budget, so taking it out of rotation would only lose capacity; `/readyz`
//! names the budget in use (`rate_limit_backend`).
//!
//! With a fleet, `/usage` is the fleet's records from Redis (`"source": "fleet"`); while Redis
//! is unreachable it is this replica's own (`"source": "replica"`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::{ProxyBody, full_body};
use crate::fleet::FleetLink;
use crate::metrics::Metrics;
use crate::metrics::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, wants_openmetrics};
use crate::policy::CurrentPolicy;
use crate::usage::{self, UsageTracker};

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
}

/// Answers one admin request.
pub async fn handle<B>(request: &Request<B>, state: &AdminState) -> Response<ProxyBody> {
    let readiness = &state.readiness;
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if is_read && request.uri().path() == "/metrics" {
        let now = SystemTime::now();
        let policy = state.policy.peek();
        let next_start = policy.retirement.next(now).map(|window| {
            window
                .start
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        });
        state
            .metrics
            .brownout_state(policy.retirement.active(now).is_some(), next_start);
        let accept = request
            .headers()
            .get(header::ACCEPT)
            .map(HeaderValue::as_bytes);
        let (text, content_type) = if wants_openmetrics(accept) {
            (state.metrics.encode(), OPENMETRICS_TEXT)
        } else {
            (state.metrics.encode_prometheus_text(), PROMETHEUS_TEXT)
        };
        let mut response = Response::new(full_body(text));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Caches in between must keep the two formats apart.
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        return response;
    }
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/usage") => (StatusCode::OK, usage_report(state).await),
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
            json!({"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics", "/usage"]}),
        ),
    };
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The fleet's usage when Redis answers, else this replica's.
async fn usage_report(state: &AdminState) -> Value {
    let fleet_records = match &state.fleet {
        Some(fleet) => fleet.usage_records().await,
        None => None,
    };
    let (mut report, source) = match fleet_records {
        Some(records) => (usage::report(&records), "fleet"),
        None => (state.usage.report(), "replica"),
    };
    report["source"] = Value::from(source);
    report
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

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    fn state() -> AdminState {
        AdminState {
            readiness: Readiness::default(),
            metrics: Arc::new(Metrics::new(10)),
            usage: Arc::new(UsageTracker::default()),
            fleet: None,
            policy: CurrentPolicy::new(
                crate::policy::Policy::from_config(
                    &crate::config::Config::resolve(&crate::config::Overrides::default()).unwrap(),
                )
                .unwrap(),
            ),
        }
    }

    #[tokio::test]
    async fn metrics_and_usage_are_served() {
        let state = state();
        let metrics = handle(&get("/metrics"), &state).await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], PROMETHEUS_TEXT);
        let asked = Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(())
            .unwrap();
        let openmetrics = handle(&asked, &state).await;
        assert_eq!(
            openmetrics.headers()[header::CONTENT_TYPE],
            OPENMETRICS_TEXT
        );
        let usage = handle(&get("/usage"), &state).await;
        assert_eq!(usage.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_follows_readiness() {
        let state = state();
        assert_eq!(
            handle(&get("/readyz"), &state).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.readiness.set_ready(true);
        assert_eq!(
            handle(&get("/readyz"), &state).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(&get("/healthz"), &state).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(&get("/other"), &state).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
