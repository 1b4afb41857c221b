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

/// The commit the binary was built from, when the build said (`EXPLO_SHIM_COMMIT`, set by
/// `.ci/run`, `.ci/static-build` and the image build from `git rev-parse --short HEAD`); an
/// empty value counts as unknown. `--version` prints it, and `explo_shim_build_info` carries it
/// as `revision`: here, under both, so the command line and the metrics read the same one.
pub const BUILD_COMMIT: Option<&str> = match option_env!("EXPLO_SHIM_COMMIT") {
    Some(commit) if !commit.is_empty() => Some(commit),
    _ => None,
};
