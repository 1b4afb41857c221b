//! The admin listener: liveness and readiness for orchestrators.
//!
//! `GET /healthz` is 200 while the process runs. `GET /readyz` is 200 while the shim accepts
//! traffic and 503 once shutdown has begun, so a load balancer stops sending new requests
//! while in-flight ones drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::body::{ProxyBody, full_body};

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

/// Answers one admin request.
pub fn handle<B>(request: &Request<B>, readiness: &Readiness) -> Response<ProxyBody> {
    let (status, body) = match (request.method(), request.uri().path()) {
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
            json!({"error": "not found", "endpoints": ["/healthz", "/readyz"]}),
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

    #[test]
    fn readyz_follows_readiness() {
        let readiness = Readiness::default();
        assert_eq!(
            handle(&get("/readyz"), &readiness).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_ready(true);
        assert_eq!(handle(&get("/readyz"), &readiness).status(), StatusCode::OK);
        assert_eq!(
            handle(&get("/healthz"), &readiness).status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(&get("/other"), &readiness).status(),
            StatusCode::NOT_FOUND
        );
    }
}
