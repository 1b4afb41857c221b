//! The admin listener: liveness and readiness for orchestrators, metrics, and the migration
//! tracker.
//!
//! `GET /metrics` is the OpenMetrics text exposition; `GET /usage` is the JSON report of who
//! still calls which legacy endpoint.
//!
//! `GET /healthz` is 200 while the process runs. `GET /readyz` is 200 while the shim accepts
//! traffic and 503 once shutdown has begun, so a load balancer stops sending new requests
//! while in-flight ones drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::body::{ProxyBody, full_body};
use crate::metrics::Metrics;
use crate::usage::UsageTracker;

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
}

/// Answers one admin request.
pub fn handle<B>(request: &Request<B>, state: &AdminState) -> Response<ProxyBody> {
    let readiness = &state.readiness;
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if is_read && request.uri().path() == "/metrics" {
        let mut response = Response::new(full_body(state.metrics.encode()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        );
        return response;
    }
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/usage") => (StatusCode::OK, state.usage.report()),
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET | &Method::HEAD, "/readyz") if readiness.is_ready() => {
            (StatusCode::OK, json!({"status": "ready"}))
        }
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
        }
    }

    #[test]
    fn metrics_and_usage_are_served() {
        let state = state();
        let metrics = handle(&get("/metrics"), &state);
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            OPENMETRICS_CONTENT_TYPE
        );
        let usage = handle(&get("/usage"), &state);
        assert_eq!(usage.status(), StatusCode::OK);
    }

    #[test]
    fn readyz_follows_readiness() {
        let state = state();
        assert_eq!(
            handle(&get("/readyz"), &state).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.readiness.set_ready(true);
        assert_eq!(handle(&get("/readyz"), &state).status(), StatusCode::OK);
        assert_eq!(handle(&get("/healthz"), &state).status(), StatusCode::OK);
        assert_eq!(
            handle(&get("/other"), &state).status(),
            StatusCode::NOT_FOUND
        );
    }
}
