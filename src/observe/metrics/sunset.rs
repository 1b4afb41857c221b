//! `explo_shim_sunset_timestamp_seconds`: the configured `deprecation.sunset`, as Unix
//! seconds, set wherever a policy is put in service (start-up and every good reload), so an
//! alert can compare it with `time()` whatever `deprecation.after_sunset` says.
//!
//! With no sunset configured the family is declared (its `# HELP` and `# TYPE` lines) with no
//! sample, rather than a 0: `time() > max(explo_shim_sunset_timestamp_seconds)` is then empty,
//! not true since 1970, and `absent()` tells an operator that no sunset is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// What the gauge holds when no sunset is configured: no sample. No real sunset is this one.
const UNSET: i64 = i64::MIN;

/// The sunset in service, shared between the recorder and the collector that writes it.
#[derive(Clone, Debug)]
pub(super) struct Sunset(Arc<AtomicI64>);

impl Default for Sunset {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(UNSET)))
    }
}

impl Sunset {
    pub(super) fn set(&self, sunset: Option<SystemTime>) {
        self.0
            .store(sunset.map_or(UNSET, unix_seconds), Ordering::Relaxed);
    }

    fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&seconds| seconds != UNSET)
    }
}

/// Whole seconds since the Unix epoch; before it (a date no config passes), negative.
fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN + 1, |s| -s),
    }
}

impl Collector for Sunset {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sunset = self.get();
        let gauge = ConstGauge::new(sunset.unwrap_or_default());
        let metric = encoder.encode_descriptor(
            "sunset_timestamp_seconds",
            "deprecation.sunset: when the legacy API stops, or may stop, being served (Unix \
             seconds); no sample when no sunset is configured",
            None,
            gauge.metric_type(),
        )?;
        match sunset {
            Some(_) => gauge.encode(metric),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Metrics;
    use super::*;

    fn samples(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|line| line.starts_with("explo_shim_sunset_timestamp_seconds"))
            .collect()
    }

    #[test]
    fn the_sunset_is_a_sample_only_while_one_is_configured() {
        let metrics = Metrics::new(10);
        for text in [metrics.encode(), metrics.encode_prometheus_text()] {
            assert!(
                text.lines()
                    .any(|line| line == "# TYPE explo_shim_sunset_timestamp_seconds gauge"),
                "declared from the start: {text}"
            );
            assert_eq!(samples(&text), Vec::<&str>::new(), "{text}");
        }
        let sunset = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        metrics.sunset(Some(sunset));
        for text in [metrics.encode(), metrics.encode_prometheus_text()] {
            assert_eq!(
                samples(&text),
                vec!["explo_shim_sunset_timestamp_seconds 1790000000"],
                "{text}"
            );
        }
        // A reload to another sunset, then to none.
        metrics.sunset(Some(sunset + Duration::from_millis(86_400_900)));
        assert_eq!(
            samples(&metrics.encode()),
            vec!["explo_shim_sunset_timestamp_seconds 1790086400"]
        );
        metrics.sunset(None);
        assert_eq!(samples(&metrics.encode()), Vec::<&str>::new());
    }

    #[test]
    fn seconds_before_the_epoch_are_negative() {
        assert_eq!(unix_seconds(SystemTime::UNIX_EPOCH), 0);
        assert_eq!(
            unix_seconds(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
            -5
        );
    }
}
