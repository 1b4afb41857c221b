//! The two text formats `/metrics` speaks, chosen by the scraper's `Accept` header:
//! OpenMetrics 1.0 only when it asks for `application/openmetrics-text`, the Prometheus text
//! format 0.0.4 otherwise (older Prometheus, curl, most agents). Both are written by
//! prometheus-client from the same registry (`encoding::text` and `encoding::prometheus_text`),
//! so they cannot drift apart. In 0.0.4 a counter is declared on the name its sample carries
//! (`# TYPE x_total counter`), `info` is a gauge named `x_info`, `unknown` is `untyped`, and
//! there are no `# UNIT` lines, `_created` samples, exemplars or `# EOF`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::Metrics;
use crate::observe::telemetry::dropped_log_lines;

/// The 0.0.4 media type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The OpenMetrics 1.0 media type.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which format the `Accept` header asks for: OpenMetrics only when it names
/// `application/openmetrics-text` (with any parameters, at a q above 0), 0.0.4 otherwise.
pub fn wants_openmetrics(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept.and_then(|value| std::str::from_utf8(value).ok()) else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default();
        media_type.eq_ignore_ascii_case("application/openmetrics-text")
            && !parts.any(|parameter| {
                parameter.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && value.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                })
            })
    })
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The same metrics in the Prometheus text format 0.0.4, as this module describes.
    pub fn encode_prometheus_text(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// A family listed in the exposition even before its first series: its `# HELP` and `# TYPE`
/// lines, without samples (prometheus-client leaves an empty family out altogether).
#[derive(Debug)]
pub(super) struct Declared<M>(pub(super) M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// Reads the background log writer's drop count at scrape time: the writer counts, the
/// metrics only report.
#[derive(Debug)]
pub(super) struct DroppedLogLines;

impl Collector for DroppedLogLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(dropped_log_lines());
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because the background log writer fell behind",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let wants = |accept: &str| wants_openmetrics(Some(accept.as_bytes()));
        assert!(!wants_openmetrics(None));
        assert!(!wants("*/*"));
        assert!(!wants("text/plain; version=0.0.4"));
        assert!(wants("application/openmetrics-text"));
        // What Prometheus sends.
        assert!(wants(
            "application/openmetrics-text;version=1.0.0;q=0.5,\
             application/openmetrics-text;version=0.0.1;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(wants(
            "text/plain, Application/OpenMetrics-Text; version=1.0.0"
        ));
        assert!(!wants("application/openmetrics-text; q=0"));
        assert!(!wants("application/openmetrics-text-ish"));
    }
}
