//! Prometheus metrics on the admin listener's `GET /metrics`: OpenMetrics text when the
//! scraper asks for it, the Prometheus text format 0.0.4 otherwise ([`exposition`]).
//!
//! Every series whose labels are a known, finite set exists from start-up at 0, so that
//! `increase()` sees the first event and a dashboard shows 0 rather than no data. A family
//! labelled by client fingerprint cannot be filled in ahead of its clients; it is declared
//! from start-up (its `# HELP` and `# TYPE` lines, no samples) so that scrapers and tools that
//! read metadata know it. `absent()` still looks at samples: ask it of a pre-created series.
//! The request-duration histogram is declared the same way, its series made at their first
//! request ([`request_duration`] says why).
//! The `process_*` metrics ([`process`]) are read from `/proc` at each scrape, on Linux.
//!
//! Labels are bounded: endpoints and status classes are fixed sets, and client fingerprints
//! are capped at `limits.max_tracked_clients` distinct values, after which new clients are
//! counted as `other`. A hostile client cannot grow memory by inventing credentials.
//!
//! The table serves operators, not whoever sends a header: a client is only placed once its
//! call is over ([`Metrics::settle`]), and one the upstream has accepted (a reply other than
//! 401, 403, 429 or 5xx) outranks one it has not. When the table is full, a new accepted client takes
//! the place of one never accepted (its label series are removed), and only when every place
//! holds an accepted client is it counted as `other`. So refused tokens cannot file the next
//! real team under `other`; a client refused before the upstream saw it (a brownout) is still
//! tracked while there is room, for the operator to see who hit the brownout. The rule is in
//! [`eviction`], shared with the fleet's usage records; the table in [`clients`].
//!
//! The files: the registry (this one: every family, registered once with its help text),
//! [`labels`], [`clients`] and [`eviction`], the [`recorders`] the serving code calls, and
//! the [`exposition`] that writes it all out; [`process`] for the `process_*` metrics;
//! [`request_duration`] for each request as its client saw it, with trace exemplars;
//! [`sunset`] for the configured sunset, a gauge with no sample while none is set.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::legacy::route::LegacyRoute;

pub mod clients;
pub mod eviction;
pub mod exposition;
pub mod labels;
pub mod process;
pub mod recorders;
pub mod request_duration;
pub mod sunset;

use clients::ClientTable;
use exposition::{Declared, DroppedLogLines};
use labels::{
    BackendLabels, EndpointLabels, LegacyCallLabels, LookupLabels, ReasonLabels, RefusalLabels,
    ReloadLabels, RouteKindLabels, STATUS_CLASSES, StatusClassLabels, latency_histogram,
};

pub use eviction::OTHER_CLIENTS;
pub use labels::{LOOKUPS, REFUSAL_REASONS, RouteKind, UpstreamFailure};
pub use recorders::InFlightGuard;
use request_duration::RequestDurations;
pub use request_duration::RequestTimer;
use sunset::Sunset;

/// Every metric the shim exports.
pub struct Metrics {
    registry: Registry,
    legacy_calls: Family<LegacyCallLabels, Counter>,
    /// Handles into the families, one per status class and route kind, taken once: the
    /// per-request path then skips the family's lock and hash.
    pass_through_by_class: [Counter; 5],
    upstream_latency_by_route: [Histogram; 2],
    request_durations: RequestDurations,
    /// One per [`UpstreamFailure`], in the order of [`UpstreamFailure::ALL`].
    upstream_errors: [Counter; 5],
    in_flight: Gauge,
    open_connections: Gauge,
    connection_limit: Gauge,
    shed: Counter,
    send_timeouts: Counter,
    upstream_throttled: Counter,
    admin_auth_failures: Counter,
    trace_spans_dropped: Counter,
    rate_limit_waits: Counter,
    rate_limit_wait_seconds: Histogram,
    rate_limit_refused: Counter,
    cascade_refused: Counter,
    cascade_unverified: Counter,
    untranslated_successes: Family<EndpointLabels, Counter>,
    lookups: Family<LookupLabels, Counter>,
    /// `[redis, local]`: 1 for the budget in use, only registered with a fleet.
    rate_limit_backend: [Gauge; 2],
    fleet_usage_dropped: Counter,
    /// Moves of the fleet to a new Redis primary ([`crate::fleet`]).
    fleet_failovers: Counter,
    legacy_refused: Family<RefusalLabels, Counter>,
    brownout_active: Gauge,
    brownout_next_start: Gauge,
    /// `[success, failure]`: SIGHUP reloads of the config file.
    config_reloads: [Counter; 2],
    config_last_reload: Gauge,
    /// 1 while the last reload was put in service (or none was tried), 0 after a refused one.
    config_last_reload_successful: Gauge,
    /// `deprecation.sunset` of the policy in service.
    sunset: Sunset,
    clients: ClientTable,
}

impl Metrics {
    pub fn new(max_clients: usize) -> Self {
        // The root holds the unprefixed `process_*` metrics; the shim's own are under it.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("explo_shim");
        let legacy_calls = Family::<LegacyCallLabels, Counter>::default();
        registry.register(
            "legacy_calls",
            "Deprecated End User Group API calls by endpoint, status class and client fingerprint",
            Declared(legacy_calls.clone()),
        );
        let pass_through = Family::<StatusClassLabels, Counter>::default();
        registry.register(
            "pass_through_requests",
            "Requests passed through by status class",
            pass_through.clone(),
        );
        let upstream_latency =
            Family::<RouteKindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "upstream_latency_seconds",
            "Upstream latency until the reply headers, by route kind",
            upstream_latency.clone(),
        );
        let request_durations = RequestDurations::register(registry);
        let upstream_errors_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream exchanges that failed, pass-through and translated, by reason: connect, \
             timeout, reset, tls, invalid_reply",
            upstream_errors_family.clone(),
        );
        let upstream_errors = UpstreamFailure::ALL.map(|failure| {
            upstream_errors_family
                .get_or_create(&ReasonLabels {
                    reason: failure.label(),
                })
                .clone()
        });
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now: from the request head until the reply has been handed \
             on in full, or abandoned",
            in_flight.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open on the main listener now; past connection_limit, new \
             ones wait in the kernel's backlog",
            open_connections.clone(),
        );
        let connection_limit = Gauge::default();
        registry.register(
            "connection_limit",
            "limits.max_connections: the open connections the shim serves at once",
            connection_limit.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "shed_requests",
            "Requests refused with 503 because max_in_flight was reached",
            shed.clone(),
        );
        let send_timeouts = Counter::default();
        registry.register(
            "send_timeouts",
            "Replies cut off because the client accepted nothing of them for \
             limits.send_timeout: HTTP/1.1 connections closed (main and admin listeners), HTTP/2 \
             streams reset, and HTTP/2 connections ended whose socket took nothing",
            send_timeouts.clone(),
        );
        let upstream_throttled = Counter::default();
        registry.register(
            "upstream_throttled",
            "Upstream 429 replies",
            upstream_throttled.clone(),
        );
        let admin_auth_failures = Counter::default();
        registry.register(
            "admin_auth_failures",
            "Admin credentials refused: a wrong token or session, or several in one request",
            admin_auth_failures.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "trace_spans_dropped",
            "Trace spans not exported: the export queue was full, or the collector did not take them",
            trace_spans_dropped.clone(),
        );
        let rate_limit_waits = Counter::default();
        registry.register(
            "rate_limit_waits",
            "Upstream calls delayed by the upstream budget",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = latency_histogram();
        registry.register(
            "rate_limit_wait_seconds",
            "Time upstream calls waited for the upstream budget",
            rate_limit_wait_seconds.clone(),
        );
        let rate_limit_refused = Counter::default();
        registry.register(
            "rate_limit_refused",
            "Requests refused with 429 by the upstream budget",
            rate_limit_refused.clone(),
        );
        let cascade_refused = Counter::default();
        registry.register(
            "cascade_refused",
            "Legacy deletes refused with 409 because the customer has children",
            cascade_refused.clone(),
        );
        let cascade_unverified = Counter::default();
        registry.register(
            "cascade_unverified",
            "Legacy deletes refused with 409 because the shim could not establish that the \
             customer has no children",
            cascade_unverified.clone(),
        );
        let untranslated_successes = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "untranslated_successes",
            "Successful upstream replies to legacy calls passed on as they came because they \
             could not be translated",
            untranslated_successes.clone(),
        );
        for route in LegacyRoute::ALL {
            untranslated_successes.get_or_create_owned(&EndpointLabels {
                endpoint: route.legacy_endpoint(),
            });
        }
        let lookups = Family::<LookupLabels, Counter>::default();
        for lookup in LOOKUPS {
            lookups.get_or_create_owned(&LookupLabels { lookup });
        }
        registry.register(
            "lookups",
            "Upstream calls made before a legacy call's own Customer call, by what they looked up",
            lookups.clone(),
        );
        let backend = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "rate_limit_backend",
            "Which upstream budget is in use: the fleet's in Redis, or this replica's own while \
             Redis is unreachable (1 for the one in use)",
            backend.clone(),
        );
        let rate_limit_backend = ["redis", "local"].map(|backend_name| {
            backend
                .get_or_create(&BackendLabels {
                    backend: backend_name,
                })
                .clone()
        });
        // Without a fleet the replica's own budget is the only one.
        rate_limit_backend[1].set(1);
        let fleet_usage_dropped = Counter::default();
        registry.register(
            "fleet_usage_dropped",
            "Legacy calls left out of the fleet's usage records because the queue to Redis was full",
            fleet_usage_dropped.clone(),
        );
        let fleet_failovers = Counter::default();
        registry.register(
            "fleet_failovers",
            "Moves of the fleet to a new Redis primary: named by the sentinels, or reached \
             behind the same URL after the old one answered READONLY",
            fleet_failovers.clone(),
        );
        let legacy_refused = Family::<RefusalLabels, Counter>::default();
        for route in LegacyRoute::ALL {
            for reason in REFUSAL_REASONS {
                legacy_refused.get_or_create_owned(&RefusalLabels {
                    endpoint: route.legacy_endpoint(),
                    reason,
                });
            }
        }
        registry.register(
            "legacy_refused",
            "Legacy calls answered 410 on purpose: during a brownout or after the sunset",
            legacy_refused.clone(),
        );
        let brownout_active = Gauge::default();
        registry.register(
            "brownout_active",
            "1 while a scheduled brownout refuses legacy calls",
            brownout_active.clone(),
        );
        let brownout_next_start = Gauge::default();
        registry.register(
            "brownout_next_start_timestamp_seconds",
            "When the next brownout starts (Unix seconds); 0 when none is scheduled",
            brownout_next_start.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Reloads of the configuration, on SIGHUP or a watched file's change, by result",
            config_reloads.clone(),
        );
        let config_last_reload = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config in service was loaded (Unix seconds): start-up or the last good reload",
            config_last_reload.clone(),
        );
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload of the configuration (SIGHUP or a watched file) was put in \
             service, or none was tried since start-up; 0 when it was refused",
            config_last_reload_successful.clone(),
        );
        // The shim only starts on a configuration it accepted.
        config_last_reload_successful.set(1);
        let sunset = Sunset::default();
        registry.register_collector(Box::new(sunset.clone()));
        registry.register_collector(Box::new(DroppedLogLines));
        registry.register(
            "build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    crate::observe::BUILD_COMMIT.unwrap_or("unknown"),
                ),
            ]),
        );
        #[cfg(target_os = "linux")]
        root.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry: root,
            legacy_calls,
            pass_through_by_class: STATUS_CLASSES.map(|status_class| {
                pass_through
                    .get_or_create(&StatusClassLabels { status_class })
                    .clone()
            }),
            upstream_latency_by_route: [RouteKind::Translated, RouteKind::PassThrough].map(
                |kind| {
                    upstream_latency
                        .get_or_create(&RouteKindLabels {
                            route: kind.label(),
                        })
                        .clone()
                },
            ),
            config_reloads: ["success", "failure"].map(|result| {
                config_reloads
                    .get_or_create(&ReloadLabels { result })
                    .clone()
            }),
            config_last_reload,
            config_last_reload_successful,
            sunset,
            request_durations,
            upstream_errors,
            in_flight,
            open_connections,
            connection_limit,
            shed,
            send_timeouts,
            upstream_throttled,
            admin_auth_failures,
            trace_spans_dropped,
            rate_limit_waits,
            rate_limit_wait_seconds,
            rate_limit_refused,
            cascade_refused,
            cascade_unverified,
            untranslated_successes,
            lookups,
            rate_limit_backend,
            fleet_usage_dropped,
            fleet_failovers,
            legacy_refused,
            brownout_active,
            brownout_next_start,
            clients: ClientTable::new(max_clients),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::new(10);
        metrics.legacy_call(
            LegacyRoute::UpdateUserGroup,
            200,
            &Arc::new("abc123".to_owned()),
        );
        metrics.pass_through(404);
        metrics.upstream_latency(RouteKind::Translated, Duration::from_millis(3));
        metrics.shed();
        metrics.upstream_throttled();
        metrics.rate_limit_wait(Duration::from_millis(10));
        {
            let _guard = metrics.in_flight();
            assert!(metrics.encode().contains("explo_shim_requests_in_flight 1"));
        }
        let text = metrics.encode();
        for needle in [
            r#"explo_shim_legacy_calls_total{endpoint="update_user_group",status_class="2xx",client="abc123"} 1"#,
            r#"explo_shim_pass_through_requests_total{status_class="4xx"} 1"#,
            r#"explo_shim_upstream_latency_seconds_count{route="translated"} 1"#,
            "explo_shim_requests_in_flight 0",
            "explo_shim_shed_requests_total 1",
            "explo_shim_upstream_throttled_total 1",
            "explo_shim_rate_limit_waits_total 1",
            "explo_shim_rate_limit_refused_total 0",
            &format!(
                r#"explo_shim_build_info{{version="{}",revision="{}"}} 1"#,
                env!("CARGO_PKG_VERSION"),
                crate::observe::BUILD_COMMIT.unwrap_or("unknown")
            ),
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn every_known_label_combination_is_there_at_zero_from_the_start() {
        let text = Metrics::new(10).encode();
        let mut expected = vec![];
        for route in LegacyRoute::ALL {
            let endpoint = route.legacy_endpoint();
            for reason in REFUSAL_REASONS {
                expected.push(format!(
                    r#"explo_shim_legacy_refused_total{{endpoint="{endpoint}",reason="{reason}"}} 0"#
                ));
            }
            expected.push(format!(
                r#"explo_shim_untranslated_successes_total{{endpoint="{endpoint}"}} 0"#
            ));
        }
        for lookup in LOOKUPS {
            expected.push(format!(
                r#"explo_shim_lookups_total{{lookup="{lookup}"}} 0"#
            ));
        }
        for failure in UpstreamFailure::ALL {
            expected.push(format!(
                r#"explo_shim_upstream_errors_total{{reason="{}"}} 0"#,
                failure.label()
            ));
        }
        for status_class in STATUS_CLASSES {
            expected.push(format!(
                r#"explo_shim_pass_through_requests_total{{status_class="{status_class}"}} 0"#
            ));
        }
        expected.extend(
            [
                "explo_shim_cascade_refused_total 0",
                "explo_shim_cascade_unverified_total 0",
                "explo_shim_trace_spans_dropped_total 0",
                "explo_shim_send_timeouts_total 0",
                "explo_shim_connections_open 0",
                "explo_shim_requests_in_flight 0",
                "explo_shim_connection_limit 0",
                // The client-labelled family is declared, without samples.
                "# TYPE explo_shim_legacy_calls counter",
            ]
            .map(str::to_owned),
        );
        let lines: Vec<&str> = text.lines().collect();
        for line in &expected {
            assert!(lines.contains(&line.as_str()), "missing {line} in\n{text}");
        }
        assert!(!text.contains("explo_shim_legacy_calls_total{"), "{text}");
    }

    #[test]
    fn the_last_reload_is_successful_until_one_is_refused() {
        let metrics = Metrics::new(10);
        let successful = |metrics: &Metrics| {
            let text = metrics.encode();
            text.lines()
                .find_map(|line| line.strip_prefix("explo_shim_config_last_reload_successful "))
                .unwrap_or_else(|| panic!("{text}"))
                .to_owned()
        };
        assert_eq!(
            successful(&metrics),
            "1",
            "start-up accepted its configuration"
        );
        metrics.config_reload(false);
        assert_eq!(successful(&metrics), "0");
        metrics.config_reload(false);
        assert_eq!(successful(&metrics), "0");
        metrics.config_reload(true);
        assert_eq!(successful(&metrics), "1");
        let text = metrics.encode();
        for line in [
            r#"explo_shim_config_reloads_total{result="success"} 1"#,
            r#"explo_shim_config_reloads_total{result="failure"} 2"#,
            "# TYPE explo_shim_config_last_reload_successful gauge",
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn upstream_errors_count_by_reason() {
        for (index, failure) in UpstreamFailure::ALL.into_iter().enumerate() {
            assert_eq!(failure as usize, index, "ALL is in declaration order");
        }
        let metrics = Metrics::new(10);
        metrics.upstream_error(UpstreamFailure::Reset);
        metrics.upstream_error(UpstreamFailure::Reset);
        metrics.upstream_error(UpstreamFailure::Tls);
        let text = metrics.encode();
        for line in [
            r#"explo_shim_upstream_errors_total{reason="connect"} 0"#,
            r#"explo_shim_upstream_errors_total{reason="reset"} 2"#,
            r#"explo_shim_upstream_errors_total{reason="tls"} 1"#,
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn prometheus_text_declares_what_each_sample_is_named() {
        let metrics = Metrics::new(10);
        metrics.shed();
        let text = metrics.encode_prometheus_text();
        for line in [
            "# TYPE explo_shim_shed_requests_total counter",
            "explo_shim_shed_requests_total 1",
            "# TYPE explo_shim_legacy_calls_total counter",
            "# TYPE explo_shim_build_info gauge",
            "# TYPE explo_shim_requests_in_flight gauge",
            "# TYPE explo_shim_upstream_latency_seconds histogram",
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let kind = line.rsplit(' ').next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
        }
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}
