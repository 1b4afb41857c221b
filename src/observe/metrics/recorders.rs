//! What the serving code records: one method per event. A series of a fixed label set is
//! counted on a handle taken when the registry was built (no lock, no hash per request); a
//! series labelled by client, endpoint or reason is found in its family per call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::TraceId;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::Metrics;
use super::labels::{
    EndpointLabels, LOOKUPS, LegacyCallLabels, LookupLabels, REFUSAL_REASONS, RefusalLabels,
    RouteKind, UpstreamFailure, status_class, status_class_index,
};
use super::request_duration::RequestTimer;
use crate::legacy::route::LegacyRoute;

impl Metrics {
    /// One legacy call, counted under `client`'s label (from [`Metrics::settle`]).
    pub fn legacy_call(&self, route: LegacyRoute, status: u16, client: &Arc<String>) {
        self.legacy_calls
            .get_or_create(&LegacyCallLabels {
                endpoint: route.legacy_endpoint(),
                status_class: status_class(status),
                client: Arc::clone(client),
            })
            .inc();
    }

    pub fn pass_through(&self, status: u16) {
        self.pass_through_by_class[status_class_index(status)].inc();
    }

    /// The clock of a request to `route` (`None`: passed through), started when its head was
    /// read; observed when it is dropped ([`RequestTimer`]). The exemplar is the trace id of a
    /// sampled trace, `None` otherwise.
    pub fn request_timer(
        self: &Arc<Self>,
        route: Option<LegacyRoute>,
        started: Instant,
        exemplar: Option<TraceId>,
    ) -> RequestTimer {
        RequestTimer::new(Arc::clone(self), route, started, exemplar)
    }

    pub fn upstream_latency(&self, kind: RouteKind, latency: Duration) {
        let index = match kind {
            RouteKind::Translated => 0,
            RouteKind::PassThrough => 1,
        };
        self.upstream_latency_by_route[index].observe(latency.as_secs_f64());
    }

    /// One failed upstream exchange.
    pub fn upstream_error(&self, failure: UpstreamFailure) {
        self.upstream_errors[failure as usize].inc();
    }

    /// Counts a request in flight until the guard is dropped; the guard moves into the
    /// reply's body, so a reply still being sent counts.
    pub fn in_flight(&self) -> InFlightGuard {
        self.in_flight.inc();
        InFlightGuard(self.in_flight.clone())
    }

    /// The count of replies cut off by `limits.send_timeout`, for the connections and
    /// streams that keep the clock.
    pub fn send_timeouts(&self) -> Counter {
        self.send_timeouts.clone()
    }

    /// Counts a client connection open until the guard is dropped; the guard moves with the
    /// connection's task.
    pub fn open_connection(&self) -> OpenConnectionGuard {
        self.open_connections.inc();
        OpenConnectionGuard(self.open_connections.clone())
    }

    pub fn set_connection_limit(&self, limit: u64) {
        self.connection_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    pub fn shed(&self) {
        self.shed.inc();
    }

    pub fn upstream_throttled(&self) {
        self.upstream_throttled.inc();
    }

    /// An admin credential refused (counted before its address's throttle decides anything).
    pub fn admin_auth_failed(&self) {
        self.admin_auth_failures.inc();
    }

    /// Spans the trace exporter gave up: a full queue, or a batch the collector did not take.
    pub fn trace_spans_dropped(&self, spans: u64) {
        self.trace_spans_dropped.inc_by(spans);
    }

    pub fn rate_limit_wait(&self, waited: Duration) {
        self.rate_limit_waits.inc();
        self.rate_limit_wait_seconds.observe(waited.as_secs_f64());
    }

    pub fn rate_limit_refused(&self) {
        self.rate_limit_refused.inc();
    }

    pub fn cascade_refused(&self) {
        self.cascade_refused.inc();
    }

    /// The budget in use: the fleet's (`true`) or this replica's own.
    pub fn rate_limit_backend(&self, shared: bool) {
        let [redis, local] = &self.rate_limit_backend;
        redis.set(i64::from(shared));
        local.set(i64::from(!shared));
    }

    /// A legacy call refused on purpose; `reason` is `brownout` or `sunset`.
    pub fn legacy_refused(&self, route: LegacyRoute, reason: &'static str) {
        debug_assert!(REFUSAL_REASONS.contains(&reason), "pre-create {reason}");
        self.legacy_refused
            .get_or_create(&RefusalLabels {
                endpoint: route.legacy_endpoint(),
                reason,
            })
            .inc();
    }

    /// The brownout schedule as of now, set when `/metrics` is read.
    pub fn brownout_state(&self, active: bool, next_start_unix: Option<u64>) {
        self.brownout_active.set(i64::from(active));
        self.brownout_next_start
            .set(next_start_unix.map_or(0, |at| i64::try_from(at).unwrap_or(i64::MAX)));
    }

    /// A config was put in service (start-up, or a good reload) at `unix_seconds`.
    pub fn config_loaded(&self, unix_seconds: u64) {
        self.config_last_reload
            .set(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    }

    /// A reload (SIGHUP or a watched file) ended: put in service, or refused. A file event
    /// that found the files unchanged is no reload, and is not counted.
    pub fn config_reload(&self, succeeded: bool) {
        self.config_reloads[usize::from(!succeeded)].inc();
        self.config_last_reload_successful.set(i64::from(succeeded));
    }

    /// A policy was put in service (start-up, or a good reload) with this `deprecation.sunset`.
    pub fn sunset(&self, sunset: Option<std::time::SystemTime>) {
        self.sunset.set(sunset);
    }

    pub fn fleet_usage_dropped(&self) {
        self.fleet_usage_dropped.inc();
    }

    /// The fleet moved to a new Redis primary.
    pub fn fleet_failover(&self) {
        self.fleet_failovers.inc();
    }

    pub fn cascade_unverified(&self) {
        self.cascade_unverified.inc();
    }

    /// A 2xx reply to a legacy call that could not be translated and was passed on as it came.
    pub fn untranslated_success(&self, route: LegacyRoute) {
        self.untranslated_successes
            .get_or_create(&EndpointLabels {
                endpoint: route.legacy_endpoint(),
            })
            .inc();
    }

    /// One upstream call made before a legacy call's own: `lookup` names what it looked for
    /// (`token_by_id`, `owner_check`, `children_v2`, `children_v1`, `list_v2_page`, `list_v1`).
    pub fn lookup(&self, lookup: &'static str) {
        debug_assert!(LOOKUPS.contains(&lookup), "pre-create {lookup}");
        self.lookups.get_or_create(&LookupLabels { lookup }).inc();
    }
}

/// Decrements the in-flight gauge when the request is done.
pub struct InFlightGuard(Gauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct OpenConnectionGuard(Gauge);

impl Drop for OpenConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
