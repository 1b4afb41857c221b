//! The reports the admin listener serves: the console page, the `/usage` report (the fleet's
//! when its Redis answers, else this replica's) and the `/metrics` text.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Response, header};

use super::{AdminState, console};
use crate::config::policy::Policy;
use crate::message::body::{ProxyBody, full_body};
use crate::observe::metrics::exposition::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, wants_openmetrics};
use crate::observe::usage::{Source, UsageReport};

/// The console: the same report as `/usage`, as a page with its own nonce in its
/// `Content-Security-Policy`, never kept by a cache (it names clients, and is stale in 10 s).
pub(super) async fn console_page(state: &AdminState, policy: &Policy) -> Response<ProxyBody> {
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
pub(super) async fn usage_report(state: &AdminState, policy: &Policy) -> UsageReport {
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
pub(super) fn name_clients(report: &mut UsageReport, names: &BTreeMap<String, String>) {
    for client in &mut report.clients {
        if let Some(name) = names.get(&client.client_fingerprint) {
            client.client_name = Some(name.clone());
        }
    }
}

/// `/metrics`: the counters, in the text format `headers` ask for, with the brownout gauges
/// brought up to date first.
pub(super) fn metrics(headers: &HeaderMap, state: &AdminState) -> Response<ProxyBody> {
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
    let accept = headers.get(header::ACCEPT).map(HeaderValue::as_bytes);
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
    response
}
