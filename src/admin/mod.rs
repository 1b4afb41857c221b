//! The admin listener: liveness and readiness for orchestrators, metrics, and the migration
//! tracker.
//!
//! `GET /` is the migration console ([`console`]): one self-contained HTML page with the
//! `/usage` data, the retirement schedule and charts of the calls over time.
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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::body::{BoxError, ProxyBody, full_body};
use crate::fleet::FleetLink;
use crate::metrics::Metrics;
use crate::metrics::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, wants_openmetrics};
use crate::policy::{AdminToken, CurrentPolicy, Policy};
use crate::usage::{self, UsageTracker};

mod auth;
mod console;

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
    /// Sign-ins read at once: a form body is the one thing this listener reads past the head,
    /// so a few held open must not take the probes' connections.
    pub sign_ins: Arc<Semaphore>,
}

/// Sign-in forms read at once; more get 503 at once.
pub const MAX_SIGN_INS: usize = 4;

/// Answers one admin request.
pub async fn handle<B>(request: Request<B>, state: &AdminState) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let policy = state.policy.snapshot();
    if let Some(token) = &policy.admin_token {
        let path = request.uri().path();
        if path == "/login" && request.method() == Method::POST {
            let Ok(_slot) = state.sign_ins.try_acquire() else {
                return too_many_sign_ins();
            };
            return sign_in(request, token).await;
        }
        if auth::is_guarded(path) && !auth::is_authorized(request.headers(), token) {
            return unauthorized(path == "/", None);
        }
    }
    let readiness = &state.readiness;
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if is_read && request.uri().path() == "/" {
        return console_page(state, &policy).await;
    }
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
        (&Method::GET | &Method::HEAD, "/usage") => {
            (StatusCode::OK, usage_report(state, &policy).await)
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
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The most of a sign-in form read: a token and its field name.
const SIGN_IN_FORM_BYTES: usize = 4096;
/// How long a sign-in form's body may take to arrive: hyper's head timeout ends with the head.
const SIGN_IN_FORM_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /login` from the console's sign-in form (`token=...`): the right token is kept in the
/// session cookie and the browser sent to the console; a wrong one gets the form again.
async fn sign_in<B>(request: Request<B>, token: &AdminToken) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let reading = Limited::new(request.into_body(), SIGN_IN_FORM_BYTES).collect();
    let form = match tokio::time::timeout(SIGN_IN_FORM_TIMEOUT, reading).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) | Err(_) => return unauthorized(true, Some("The form could not be read.")),
    };
    let given = form_urlencoded::parse(&form)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    if !token.matches(given.as_bytes()) {
        return unauthorized(true, Some("That is not the admin token."));
    }
    let cookie = auth::session_cookie(token);
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 503 while [`MAX_SIGN_INS`] forms are being read: a moment later there is room.
fn too_many_sign_ins() -> Response<ProxyBody> {
    let mut response = Response::new(full_body("Too many sign-ins at once; try again.\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 401: the sign-in form for a browser asking for the console, a JSON error for the rest.
fn unauthorized(page: bool, problem: Option<&str>) -> Response<ProxyBody> {
    let mut response = if page {
        let mut response = Response::new(full_body(sign_in_page(problem)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // Nothing to load from anywhere; the form posts back here only.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        response
    } else {
        let mut response = Response::new(full_body(
            json!({
                "error": "unauthorized",
                "detail": "send Authorization: Bearer <the token in admin_token_file>"
            })
            .to_string(),
        ));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"explo-shim admin\""),
    );
    response
}

/// The sign-in form: one field, posted to `/login`; `problem` is the shim's own text.
fn sign_in_page(problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |text| format!("<p role=\"alert\">{text}</p>"));
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>explo-shim: sign in</title></head><body><main><h1>explo-shim</h1>\
         <p>This admin listener asks for the token in its <code>admin_token_file</code>.</p>\
         {problem}<form method=\"post\" action=\"/login\"><label>Admin token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required>\
         </label> <button type=\"submit\">Sign in</button></form></main></body></html>"
    )
}

/// The console: the same report as `/usage`, as a page with its own nonce in its
/// `Content-Security-Policy`, never kept by a cache (it names clients, and is stale in 10 s).
async fn console_page(state: &AdminState, policy: &Policy) -> Response<ProxyBody> {
    let report = usage_report(state, policy).await;
    let nonce = console::nonce();
    let schedule = console::Schedule {
        deprecated_at: policy.deprecated_at,
        sunset_at: policy.sunset_at,
        retirement: &policy.retirement,
        client_names: &policy.client_names,
    };
    let page = console::render(&report, &schedule, SystemTime::now(), &nonce);
    let mut response = Response::new(full_body(page));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // A nonce is base64, always a valid header value; were it not, the page would still be
    // served under a policy that lets nothing run rather than under none.
    let csp = HeaderValue::from_str(&console::content_security_policy(&nonce))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The fleet's usage when Redis answers, else this replica's, with each client's name from
/// `[clients]` beside its fingerprint.
async fn usage_report(state: &AdminState, policy: &Policy) -> Value {
    let fleet_records = match &state.fleet {
        Some(fleet) => fleet.usage_records().await,
        None => None,
    };
    // One clock reading, so both reports cut their buckets at the same time.
    let now = SystemTime::now();
    let (mut report, source) = match fleet_records {
        Some(records) => (usage::report_at(&records, now), "fleet"),
        None => (state.usage.report_at(now), "replica"),
    };
    report["source"] = Value::from(source);
    name_clients(&mut report, &policy.client_names);
    report
}

/// Adds `client_name` to each client of a `/usage` report that `[clients]` names.
fn name_clients(report: &mut Value, names: &BTreeMap<String, String>) {
    let Some(clients) = report.get_mut("clients").and_then(Value::as_array_mut) else {
        return;
    };
    for client in clients {
        let name = client
            .get("client_fingerprint")
            .and_then(Value::as_str)
            .and_then(|fingerprint| names.get(fingerprint));
        if let (Some(name), Some(object)) = (name.cloned(), client.as_object_mut()) {
            object.insert("client_name".to_owned(), Value::from(name));
        }
    }
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

    fn get(path: &str) -> Request<String> {
        Request::get(path).body(String::new()).unwrap()
    }

    fn state() -> AdminState {
        AdminState {
            readiness: Readiness::default(),
            metrics: Arc::new(Metrics::new(10)),
            usage: Arc::new(UsageTracker::default()),
            fleet: None,
            sign_ins: Arc::new(Semaphore::new(MAX_SIGN_INS)),
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
        let metrics = handle(get("/metrics"), &state).await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], PROMETHEUS_TEXT);
        let asked = Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(String::new())
            .unwrap();
        let openmetrics = handle(asked, &state).await;
        assert_eq!(
            openmetrics.headers()[header::CONTENT_TYPE],
            OPENMETRICS_TEXT
        );
        let usage = handle(get("/usage"), &state).await;
        assert_eq!(usage.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn the_console_is_a_page_under_its_own_nonce_never_cached() {
        let state = state();
        let page = handle(get("/"), &state).await;
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
        let again = handle(get("/"), &state).await;
        assert_ne!(
            again.headers()[header::CONTENT_SECURITY_POLICY],
            headers[header::CONTENT_SECURITY_POLICY],
            "a fresh nonce per response"
        );
        let head = Request::head("/").body(String::new()).unwrap();
        assert_eq!(handle(head, &state).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_sign_in_past_the_cap_is_told_to_come_back() {
        let path = std::env::temp_dir().join(format!("explo-shim-signin-{}", std::process::id()));
        std::fs::write(&path, "t0ken").unwrap();
        let mut state = state();
        state.policy = CurrentPolicy::new(crate::policy::Policy {
            admin_token: Some(AdminToken::read(&path).unwrap()),
            ..crate::policy::Policy::from_config(
                &crate::config::Config::resolve(&crate::config::Overrides::default()).unwrap(),
            )
            .unwrap()
        });
        std::fs::remove_file(&path).unwrap();
        let _held: Vec<_> = (0..MAX_SIGN_INS)
            .map(|_| state.sign_ins.try_acquire().unwrap())
            .collect();
        let sign_in = Request::post("/login")
            .body("token=t0ken".to_owned())
            .unwrap();
        let refused = handle(sign_in, &state).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn readyz_follows_readiness() {
        let state = state();
        assert_eq!(
            handle(get("/readyz"), &state).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.readiness.set_ready(true);
        assert_eq!(
            handle(get("/readyz"), &state).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(get("/healthz"), &state).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            handle(get("/other"), &state).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
