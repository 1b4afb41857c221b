//! `explo_shim_request_duration_seconds`: each request on the main listener as its client saw
//! it, from its parsed head to the end of its reply (the last byte handed to the connection,
//! or the moment the reply was cut off), by `endpoint` and `status_class`. The shim's own
//! answers (refusals, 429s, 503s, errors) count too, under the endpoint they addressed.
//!
//! A request the client gave up on before it had a reply (it closed the connection or reset
//! the stream while the shim waited for the upstream) counts under `status_class="aborted"`,
//! for as long as the client waited: that is the client that timed out against a hung
//! upstream, and leaving it out would keep the p99 low through the very incident it is for.
//! One [`RequestTimer`] per request, made when its head is read, observes once, when it is
//! dropped: with the reply's status if [`RequestTimer::answered`] was told one, as `aborted`
//! otherwise. Rust drops a value once, so no path can count a request twice or not at all.
//!
//! A series is made at its first request, not from start-up: 30 series of 17 samples each at 0
//! would be most of the exposition. The labels are still a closed set (five endpoints, six
//! classes), and each series' handle is kept once taken, so a request pays a load, not the
//! family's lock and hash.
//!
//! Under OpenMetrics, with tracing on, a bucket carries the trace id of the last sampled request
//! it counted as an exemplar (`# {trace_id="…"} 0.012 1700000000.123`), so a dashboard can go
//! from a slow bucket to one of its traces. prometheus-client writes no exemplar in the 0.0.4
//! text. With tracing off, or for an unsampled trace, the observation carries none and
//! allocates nothing.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use opentelemetry::TraceId;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;
use super::exposition::Declared;
use super::labels::{PASS_THROUGH, STATUS_CLASSES, status_class_index};
use crate::legacy::route::LegacyRoute;

/// The buckets' upper bounds, in seconds. From 1 ms (a refusal the shim makes itself, or a
/// fast upstream on the same network) to 60 s (past the longest `upstream.timeout` an operator
/// would set, so even a call that timed out lands below `+Inf`), about 2.5× apart: fine enough
/// at 10-500 ms, where a healthy upstream's calls fall, for a p99 read off them to mean
/// something, and few enough (15 with `+Inf`) to keep the series cheap to store.
pub const REQUEST_DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label values of `endpoint`: the legacy endpoints, in [`LegacyRoute::ALL`]'s order, then
/// [`PASS_THROUGH`] for everything else.
const ENDPOINTS: usize = LegacyRoute::ALL.len() + 1;

/// The `status_class` of a request its client gave up on before it had a reply.
pub const ABORTED: &str = "aborted";

/// The `status_class` values: [`STATUS_CLASSES`], then [`ABORTED`] at [`ABORTED_INDEX`].
const CLASSES: usize = STATUS_CLASSES.len() + 1;
const ABORTED_INDEX: usize = STATUS_CLASSES.len();

type Durations = HistogramWithExemplars<TraceExemplar>;

/// The exemplar's label set: the trace of one request the bucket counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    trace_id: TraceIdLabel,
}

/// A trace id written as its 32 lowercase hex digits, as W3C `traceparent` and OTLP/JSON spell
/// it; kept as the 16 bytes it is until a scrape writes it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct TraceIdLabel(TraceId);

impl EncodeLabelValue for TraceIdLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        write!(encoder, "{}", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status_class: &'static str,
}

/// The family and the handles taken into it, by endpoint and status class.
pub(super) struct RequestDurations {
    family: Family<RequestLabels, Durations, fn() -> Durations>,
    handles: [[OnceLock<Durations>; CLASSES]; ENDPOINTS],
}

impl RequestDurations {
    /// Registers the family, declared from start-up (its `# HELP` and `# TYPE` lines).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family =
            Family::<RequestLabels, Durations, fn() -> Durations>::new_with_constructor(|| {
                HistogramWithExemplars::new(REQUEST_DURATION_BUCKETS.into_iter())
            });
        registry.register(
            "request_duration_seconds",
            "Requests on the main listener as their clients saw them, from the request head to \
             the last byte of the reply handed to the connection (or the reply cut off), by \
             legacy endpoint or pass_through, and by the status class sent (aborted: the \
             client gave up before there was a reply, observed when it did)",
            Declared(family.clone()),
        );
        Self {
            family,
            handles: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
        }
    }

    /// The series of a request to `route` (`None`: passed through) answered with `status`
    /// (`None`: the client gave up before there was a reply).
    pub(super) fn series(&self, route: Option<LegacyRoute>, status: Option<u16>) -> &Durations {
        let endpoint = route.map_or(LegacyRoute::ALL.len(), |route| route as usize);
        let class = status.map_or(ABORTED_INDEX, status_class_index);
        self.handles[endpoint][class].get_or_init(|| {
            self.family
                .get_or_create(&RequestLabels {
                    endpoint: endpoint_label(route),
                    status_class: class_label(class),
                })
                .clone()
        })
    }
}

fn class_label(class: usize) -> &'static str {
    STATUS_CLASSES.get(class).copied().unwrap_or(ABORTED)
}

/// The `endpoint` label of a request to `route`.
fn endpoint_label(route: Option<LegacyRoute>) -> &'static str {
    route.map_or(PASS_THROUGH, LegacyRoute::legacy_endpoint)
}

/// One request's clock in the histogram: made when its head is read, observed once, when it
/// is dropped (the reply sent, cut off or dropped, or the request's future dropped because
/// its client went away): under the status [`RequestTimer::answered`] was told, `aborted`
/// when there was none. It holds a count on the metrics, not a copy of anything: a request
/// pays no allocation for it.
pub struct RequestTimer {
    metrics: Arc<Metrics>,
    route: Option<LegacyRoute>,
    started: Instant,
    exemplar: Option<TraceId>,
    status: Option<u16>,
}

impl RequestTimer {
    pub(super) fn new(
        metrics: Arc<Metrics>,
        route: Option<LegacyRoute>,
        started: Instant,
        exemplar: Option<TraceId>,
    ) -> Self {
        Self {
            metrics,
            route,
            started,
            exemplar,
            status: None,
        }
    }

    /// The request has a reply with `status`: the timer now goes with the reply's body, and
    /// is observed under this status's class when that body ends or is dropped.
    pub fn answered(&mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let exemplar = self.exemplar.map(|trace_id| TraceExemplar {
            trace_id: TraceIdLabel(trace_id),
        });
        // OpenMetrics wants an exemplar's time; there is none to read without one.
        let at = exemplar.as_ref().map(|_| SystemTime::now());
        self.metrics
            .request_durations
            .series(self.route, self.status)
            .observe(seconds, exemplar, at);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::*;

    #[test]
    fn the_buckets_rise_from_a_millisecond_to_a_minute() {
        assert_eq!(REQUEST_DURATION_BUCKETS[0], 0.001);
        assert_eq!(
            REQUEST_DURATION_BUCKETS[REQUEST_DURATION_BUCKETS.len() - 1],
            60.0
        );
        assert!(
            REQUEST_DURATION_BUCKETS
                .windows(2)
                .all(|pair| pair[0] < pair[1])
        );
    }

    #[test]
    fn endpoints_are_the_legacy_ones_then_pass_through() {
        for (index, route) in LegacyRoute::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, index, "ALL is in declaration order");
        }
        assert_eq!(
            endpoint_label(Some(LegacyRoute::DeleteUserGroup)),
            "delete_user_group"
        );
        assert_eq!(endpoint_label(None), "pass_through");
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// The sample lines of the request histogram in `text`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|line| line.starts_with("explo_shim_request_duration_seconds"))
            .collect()
    }

    #[test]
    fn before_any_request_the_histogram_is_declared_without_series() {
        let metrics = Metrics::new(10);
        let open = metrics.encode();
        assert!(
            open.lines()
                .any(|line| line == "# TYPE explo_shim_request_duration_seconds histogram"),
            "{open}"
        );
        assert_eq!(samples(&open), Vec::<&str>::new());
        let text = metrics.encode_prometheus_text();
        assert!(
            text.lines()
                .any(|line| line == "# TYPE explo_shim_request_duration_seconds histogram"),
            "{text}"
        );
    }

    /// One request to `route` answered with `status`, its reply sent at once.
    fn answer(
        metrics: &Arc<Metrics>,
        route: Option<LegacyRoute>,
        status: u16,
        trace: Option<TraceId>,
    ) {
        let mut timer = metrics.request_timer(route, Instant::now(), trace);
        timer.answered(status);
    }

    /// The `_count` and `_sum` of one series in the OpenMetrics text, `None` when it is absent.
    fn count_and_sum(text: &str, endpoint: &str, class: &str) -> Option<(u64, f64)> {
        let labels = format!(r#"{{endpoint="{endpoint}",status_class="{class}"}} "#);
        let value = |name: &str| {
            text.lines().find_map(|line| {
                line.strip_prefix(&format!(
                    "explo_shim_request_duration_seconds_{name}{labels}"
                ))
            })
        };
        Some((
            value("count")?.parse().unwrap(),
            value("sum")?.parse().unwrap(),
        ))
    }

    #[test]
    fn a_request_is_observed_once_with_its_reply_or_as_aborted_without() {
        let metrics = Arc::new(Metrics::new(10));
        // The client went away before there was a reply: the timer is dropped unanswered.
        let started = Instant::now() - std::time::Duration::from_millis(250);
        drop(metrics.request_timer(Some(LegacyRoute::CreateUserGroup), started, None));
        drop(metrics.request_timer(None, Instant::now(), None));
        // Answered, then told again (a reply replaced before it was sent): one observation,
        // under the last status, and none as aborted.
        let mut timer =
            metrics.request_timer(Some(LegacyRoute::CreateUserGroup), Instant::now(), None);
        timer.answered(502);
        timer.answered(200);
        drop(timer);

        let text = metrics.encode();
        let (count, sum) = count_and_sum(&text, "create_user_group", ABORTED).unwrap();
        assert_eq!(count, 1, "{text}");
        assert!(sum >= 0.25, "the time the client waited: {sum}");
        assert_eq!(count_and_sum(&text, "pass_through", ABORTED).unwrap().0, 1);
        assert_eq!(
            count_and_sum(&text, "create_user_group", "2xx").unwrap().0,
            1
        );
        assert_eq!(
            count_and_sum(&text, "create_user_group", "5xx"),
            None,
            "{text}"
        );
        assert_eq!(
            samples(&text)
                .iter()
                .filter(|line| line.contains("_count{"))
                .count(),
            3
        );
        assert!(
            text.contains("(aborted: the client gave up before there was a reply"),
            "the help text names the sixth class: {text}"
        );
    }

    #[test]
    fn a_sampled_trace_is_an_exemplar_in_openmetrics_only() {
        let metrics = Arc::new(Metrics::new(10));
        let trace = TraceId::from_hex(TRACE).unwrap();
        answer(
            &metrics,
            Some(LegacyRoute::UpdateUserGroup),
            200,
            Some(trace),
        );
        answer(&metrics, None, 503, None);
        answer(&metrics, None, 404, None);

        let open = metrics.encode();
        let with_exemplar: Vec<&str> = samples(&open)
            .into_iter()
            .filter(|line| line.contains(" # "))
            .collect();
        assert_eq!(with_exemplar.len(), 1, "{open}");
        let (sample, exemplar) = with_exemplar[0].split_once(" # ").unwrap();
        // prometheus-client writes `le` first in OpenMetrics, last in 0.0.4.
        let bound = sample
            .strip_prefix(r#"explo_shim_request_duration_seconds_bucket{le=""#)
            .and_then(|rest| {
                rest.strip_suffix(r#"",endpoint="update_user_group",status_class="2xx"} 1"#)
            })
            .unwrap_or_else(|| panic!("{sample}"));
        let exemplar = exemplar
            .strip_prefix(&format!(r#"{{trace_id="{TRACE}"}} "#))
            .unwrap_or_else(|| panic!("{exemplar}"));
        let (value, timestamp) = exemplar.split_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        assert!(value <= bound.parse::<f64>().unwrap(), "{value} in {bound}");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now - timestamp.parse::<f64>().unwrap()).abs() < 60.0,
            "{timestamp}"
        );
        for line in [
            r#"explo_shim_request_duration_seconds_count{endpoint="update_user_group",status_class="2xx"} 1"#,
            r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="5xx"} 1"#,
            r#"explo_shim_request_duration_seconds_count{endpoint="pass_through",status_class="4xx"} 1"#,
            r#"explo_shim_request_duration_seconds_bucket{le="60.0",endpoint="pass_through",status_class="4xx"} 1"#,
            r#"explo_shim_request_duration_seconds_bucket{le="+Inf",endpoint="pass_through",status_class="4xx"} 1"#,
        ] {
            assert!(open.lines().any(|found| found == line), "{line} in\n{open}");
        }
        assert!(
            !open.contains(r#"endpoint="create_user_group",status_class="#),
            "{open}"
        );

        let text = metrics.encode_prometheus_text();
        assert!(!text.contains(TRACE), "{text}");
        for line in samples(&text) {
            assert!(!line.contains('#'), "no exemplar syntax in 0.0.4: {line}");
        }
        for line in [
            r#"explo_shim_request_duration_seconds_count{endpoint="update_user_group",status_class="2xx"} 1"#,
            r#"explo_shim_request_duration_seconds_bucket{endpoint="pass_through",status_class="4xx",le="60"} 1"#,
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_series_is_made_once_at_its_first_request_and_shared_after() {
        let mut registry = Registry::default();
        let durations = RequestDurations::register(&mut registry);
        let first = durations.series(None, Some(200)) as *const Durations;
        assert_eq!(first, durations.series(None, Some(204)) as *const Durations);
        assert_ne!(first, durations.series(None, Some(500)) as *const Durations);
        assert_ne!(first, durations.series(None, None) as *const Durations);
        // 1 endpoint × 3 classes so far, not the 30 there could be.
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(text.matches("le=\"+Inf\"").count(), 3, "{text}");
        assert!(text.contains(r#"status_class="aborted""#), "{text}");
    }
}
