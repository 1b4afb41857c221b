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
//! lines ([`crate::observe::log_summary`]). `POST /login` trades the token for a session cookie that
//! expires; `POST /logout` drops it.
//!
//! With a fleet, `/usage` is the fleet's records from Redis (`"source": "fleet"`); while Redis
//! is unreachable it is this replica's own (`"source": "replica"`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::{Value, json};

use crate::config::policy::{AdminToken, CurrentPolicy, Policy};
use crate::fleet::FleetLink;
use crate::message::body::{BoxError, ProxyBody, full_body};
use crate::observe::log_summary::{LogSummary, Summary};
use crate::observe::metrics::Metrics;
use crate::observe::metrics::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, wants_openmetrics};
use crate::observe::usage::{Source, UsageReport, UsageTracker};

mod auth;
mod console;
pub(crate) mod throttle;

use auth::{Credential, Presented};
use throttle::{AuthThrottle, Failed};

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

/// The most bytes of console pages, `/usage` reports and `/metrics` texts held for clients at
/// once. Each is built whole, then held until its client has read it (or the send clock has
/// cut the client off): at `limits.max_tracked_clients`' cap a `/usage` report is about
/// 16 MB, and 256 admin connections that ask and never read would otherwise hold 4 GB.
pub const REPORT_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// Holds each report's size against [`REPORT_BYTES_IN_FLIGHT`] until its body is dropped.
#[derive(Clone, Debug)]
pub struct ReportBudget(Arc<tokio::sync::Semaphore>);

impl Default for ReportBudget {
    fn default() -> Self {
        Self::with_bytes(REPORT_BYTES_IN_FLIGHT)
    }
}

impl ReportBudget {
    fn with_bytes(bytes: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(bytes)))
    }

    /// `response`, its body holding its size against the budget until the body is dropped;
    /// or a 503 with `Retry-After` when the budget is spent. A report larger than the whole
    /// budget takes all of it.
    fn hold(&self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let size = response.body().size_hint().exact().unwrap_or(0);
        let whole = u64::try_from(REPORT_BYTES_IN_FLIGHT).unwrap_or(u64::MAX);
        let wanted = u32::try_from(size.min(whole)).unwrap_or(u32::MAX);
        match Arc::clone(&self.0).try_acquire_many_owned(wanted) {
            Ok(held) => response.map(|body| {
                // The closure owns the permit, and the body owns the closure: the bytes are
                // given back when the body is dropped, read in full or not.
                body.map_frame(move |frame| {
                    let _held = &held;
                    frame
                })
                .boxed_unsync()
            }),
            Err(_) => {
                let mut busy = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({
                        "error": "busy",
                        "detail": "other clients have not yet read the reports they asked for; \
                                   try again in a moment"
                    }),
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                busy
            }
        }
    }
}

/// Failed admin credentials: who is refused unchecked for a while ([`throttle`]). Their log
/// lines are summarised ([`REFUSED_LINES`], [`BLOCKED_LINES`]): a guesser must not be able to
/// fill the log.
#[derive(Debug, Default)]
pub struct AuthFailures {
    throttle: AuthThrottle,
}

/// Refused credentials: the first line names the client and the reason, then one summary a
/// second says how many more.
static REFUSED_LINES: LogSummary = LogSummary::new(report_refused);
/// Addresses blocked by the throttle, summarised the same way.
static BLOCKED_LINES: LogSummary = LogSummary::new(report_blocked);

fn report_refused(summary: Summary) {
    tracing::warn!(
        refused = summary.more,
        over_ms = u64::try_from(summary.over.as_millis()).unwrap_or(u64::MAX),
        "admin: more credentials refused since the last line"
    );
}

fn report_blocked(summary: Summary) {
    tracing::warn!(
        addresses = summary.more,
        over_ms = u64::try_from(summary.over.as_millis()).unwrap_or(u64::MAX),
        "admin: more addresses refused since the last line"
    );
}

/// Why a credential was refused, as the log line says it.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    WrongToken,
    InvalidSession,
    Several,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::WrongToken => "wrong token",
            Refusal::InvalidSession => "session expired, forged or signed with an old token",
            Refusal::Several => "several credentials in one request",
        }
    }
}

impl AuthFailures {
    /// Counts one refused credential from `client`: the metric, the address's count, and a
    /// log line (the first at once, the rest summarised). Never logs the credential.
    fn refused(&self, client: IpAddr, refusal: Refusal, metrics: &Metrics) {
        metrics.admin_auth_failed();
        let failed = self.throttle.failed(client, Instant::now());
        let reason = refusal.reason();
        if REFUSED_LINES.admit("refused") {
            tracing::warn!(
                %client,
                reason,
                "admin: credential refused; more are summarised, at most one line a second"
            );
        }
        if failed == Failed::Blocked && BLOCKED_LINES.admit("blocked") {
            tracing::warn!(
                %client,
                failures = throttle::FAILURES_BEFORE_BLOCK,
                window_seconds = throttle::FAILURE_WINDOW.as_secs(),
                block_seconds = throttle::BLOCK_DURATION.as_secs(),
                "admin: too many failed credentials; this address is refused unchecked for a while"
            );
        }
    }
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
    json_error(status, &body)
}

/// What a request for a guarded path gets instead of the data, if anything: `None` when
/// `client`'s address is not refused for its failures and the request carries exactly one
/// credential, the right one. A page for the console (`page`), JSON for the rest.
fn refusal(
    headers: &http::HeaderMap,
    page: bool,
    token: &AdminToken,
    state: &AdminState,
    client: IpAddr,
) -> Option<Response<ProxyBody>> {
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return Some(throttled(page, wait));
    }
    let refusal = match auth::presented(headers) {
        Presented::Nothing => return Some(unauthorized(page, None)),
        // A right credential leaves the address's failures as they are ([`throttle`]).
        Presented::One(credential) if auth::accepts(credential, token, SystemTime::now()) => {
            return None;
        }
        Presented::One(Credential::Session(_)) => Refusal::InvalidSession,
        Presented::One(_) => Refusal::WrongToken,
        Presented::Several => Refusal::Several,
    };
    state.failures.refused(client, refusal, &state.metrics);
    Some(match refusal {
        Refusal::Several => several_credentials(),
        Refusal::InvalidSession => unauthorized(
            page,
            Some("The session has ended (expired, or the token changed); sign in again."),
        ),
        Refusal::WrongToken => unauthorized(page, None),
    })
}

/// The most of a sign-in form read: a token and its field name.
const SIGN_IN_FORM_BYTES: usize = 4096;
/// How long a sign-in form's body may take to arrive: hyper's head timeout ends with the head.
/// No slot is held while it is read, so forms that never arrive cost only their own
/// connections (capped with the listener's), never another sign-in its turn.
const SIGN_IN_FORM_TIMEOUT: Duration = Duration::from_secs(5);

/// `POST /login` from the console's sign-in form (`token=...`): the right token is traded for
/// a session cookie and the browser sent to the console; a wrong one gets the form again.
async fn sign_in<B>(
    request: Request<B>,
    token: &AdminToken,
    state: &AdminState,
    client: IpAddr,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // A refused address's form is not even read.
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return throttled(true, wait);
    }
    let reading = Limited::new(request.into_body(), SIGN_IN_FORM_BYTES).collect();
    let form = match tokio::time::timeout(SIGN_IN_FORM_TIMEOUT, reading).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) | Err(_) => return unauthorized(true, Some("The form could not be read.")),
    };
    // Again, now that the form is here: while it was read, other sign-ins from the address
    // may have failed enough to block it, and each of them had passed the check above too.
    // From here to counting this one's failure nothing awaits, and the admin listener runs on
    // one thread, so no other sign-in is compared in between: an address gets no more
    // guesses than the limit, however many sign-ins it sends at once.
    if let Err(wait) = state.failures.throttle.check(client, Instant::now()) {
        return throttled(true, wait);
    }
    let mut given = form_urlencoded::parse(&form)
        .filter(|(name, _)| name == "token")
        .map(|(_, value)| value.trim().to_owned());
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        state
            .failures
            .refused(client, Refusal::Several, &state.metrics);
        return several_credentials();
    }
    if !token.matches(first.unwrap_or_default().as_bytes()) {
        state
            .failures
            .refused(client, Refusal::WrongToken, &state.metrics);
        return unauthorized(true, Some("That is not the admin token."));
    }
    let cookie = auth::session_cookie(token, SystemTime::now());
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /logout`: the browser drops its session cookie and goes back to the console (the
/// sign-in form). The value itself stays good until its expiry, as any copy of it would: a
/// session is checked, not stored, so that every replica can check it.
fn signed_out() -> Response<ProxyBody> {
    let mut response = Response::new(full_body(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::SET_COOKIE, auth::signed_out_cookie());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON response.
fn json_error(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    json_text(status, body.to_string())
}

/// A response of JSON already written.
fn json_text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 400: a request with more than one credential. None of them is checked, so one request
/// tries one guess at most.
fn several_credentials() -> Response<ProxyBody> {
    json_error(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": "several credentials",
            "detail": "send one Authorization header or one explo_shim_admin cookie, not \
                       several; none of them was checked"
        }),
    )
}

/// 429 while `client`'s address is refused for its failed credentials; `Retry-After` in
/// whole seconds, rounded up.
fn throttled(page: bool, wait: Duration) -> Response<ProxyBody> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = if page {
        page_response(&sign_in_page(Some(&format!(
            "Too many failed sign-ins from this address; try again in {seconds} s."
        ))))
    } else {
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({
                "error": "too many failed credentials",
                "detail": format!(
                    "this address sent {} wrong credentials within {} s; nothing it sends is \
                     checked until Retry-After has passed",
                    throttle::FAILURES_BEFORE_BLOCK,
                    throttle::FAILURE_WINDOW.as_secs()
                ),
            }),
        )
    };
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// 421: without a token, `/`, `/usage` and `/metrics` answer only to a `Host` that names
/// this machine or a name in `admin_allowed_hosts`. The `Host` sent is not echoed back.
fn misdirected() -> Response<ProxyBody> {
    json_error(
        StatusCode::MISDIRECTED_REQUEST,
        &json!({
            "error": "misdirected request",
            "detail": "without admin_token_file, this admin listener answers /, /usage and \
                       /metrics only to a Host that is an IP address, localhost or a name in \
                       admin_allowed_hosts; list the name you use there, or set \
                       admin_token_file"
        }),
    )
}

/// An HTML page of the shim's own that loads nothing from anywhere; forms post back here only.
fn page_response(page: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(page.to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 401: the sign-in form for a browser asking for the console, a JSON error for the rest.
fn unauthorized(page: bool, problem: Option<&str>) -> Response<ProxyBody> {
    let mut response = if page {
        page_response(&sign_in_page(problem))
    } else {
        json_error(
            StatusCode::UNAUTHORIZED,
            &json!({
                "error": "unauthorized",
                "detail": "send Authorization: Bearer <the token in admin_token_file>"
            }),
        )
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
    let sign_out = policy.admin_token.is_some();
    let page = console::render(&report, &schedule, SystemTime::now(), &nonce, sign_out);
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
async fn usage_report(state: &AdminState, policy: &Policy) -> UsageReport {
    let fleet_records = match &state.fleet {
        Some(fleet) => fleet.usage_records().await,
        None => None,
    };
    // One clock reading, so both reports cut their buckets at the same time.
    let now = SystemTime::now();
    let mut report = match fleet_records {
        Some(records) => UsageReport::of(&records, now, Source::Fleet),
        None => state.usage.report_at(now),
    };
    name_clients(&mut report, &policy.client_names);
    report
}

/// Names each client of a `/usage` report that `[clients]` names.
fn name_clients(report: &mut UsageReport, names: &BTreeMap<String, String>) {
    for client in &mut report.clients {
        if let Some(name) = names.get(&client.client_fingerprint) {
            client.client_name = Some(name.clone());
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
    async fn reports_not_yet_read_are_held_against_a_byte_budget() {
        let budget = ReportBudget::with_bytes(100);
        let report = || Response::new(full_body(vec![b'x'; 60]));
        let first = budget.hold(report());
        assert_eq!(first.status(), StatusCode::OK);
        let refused = budget.hold(report());
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // Read in full, the first gives its bytes back when its body is gone.
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 60);
        let second = budget.hold(report());
        assert_eq!(second.status(), StatusCode::OK);
        // Dropped unread, the same.
        drop(second);
        assert_eq!(budget.hold(report()).status(), StatusCode::OK);
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
