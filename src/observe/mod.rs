//! What the shim records: its logs (the set-up, the `text` format, the bounded background
//! writer, the summaries of lines that repeat), the access log, the metrics, the migration
//! tracker ([`usage`]) and the OpenTelemetry traces.

pub(crate) mod access_log;
pub(crate) mod bounded_text;
#[cfg(test)]
pub(crate) mod captured_log;
pub(crate) mod log_queue;
pub(crate) mod log_summary;
pub(crate) mod log_text;
pub(crate) mod metrics;
pub mod otel;
pub mod telemetry;
pub(crate) mod usage;
