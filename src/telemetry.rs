//! Logging: subscriber set-up, the client fingerprint and the deprecated-usage event.
//!
//! Secrets never reach a log line: the shim logs no header values and no bodies, only the
//! SHA-256 fingerprint of `Explo-Authorization`. The HTTP and TLS libraries are capped at
//! `info` whatever `RUST_LOG` says, because their trace output can include frame contents.
//!
//! Logging stays off the request path: a line is formatted into a buffer on the request's
//! thread and handed to a background writer, which batches lines into few `write` calls. When
//! the writer falls behind (a slow pipe, a full disk), lines are dropped and counted
//! ([`dropped_log_lines`], exported as a metric) rather than holding a request up. ANSI colours
//! are used only when stderr is a terminal, so log files and collectors get plain text.

use std::io::{BufWriter, IsTerminal};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::log_text::{PlainFields, PlainText};
use crate::route::LegacyRoute;

/// The `tracing` target of the one event per legacy call.
pub const DEPRECATED_TARGET: &str = "deprecated";

/// Libraries whose verbose output could carry header or body bytes.
const CAPPED_TARGETS: [&str; 6] = [
    "h2",
    "hyper",
    "hyper_util",
    "redis",
    "rustls",
    "tokio_rustls",
];

/// Lines the background writer may hold before new ones are dropped: enough for a burst of
/// several seconds at full load, about 10 MB at the longest lines.
const LOG_QUEUE_LINES: usize = 32_768;

/// The background writer's buffer: lines are written in batches of up to this many bytes.
const LOG_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The drop counter of the process's one background writer (the subscriber is global too).
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the background writer alive; dropping it writes out the lines still queued.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), lines on stderr
/// through the background writer. Hold the returned guard until the process ends.
pub fn init(format: LogFormat) -> LogGuard {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in CAPPED_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("explo-shim-log")
        .finish(YieldingStderr {
            stderr: BufWriter::with_capacity(LOG_WRITE_BUFFER_BYTES, std::io::stderr()),
            yielding: false,
        });
    let _ = DROPPED_LINES.set(writer.error_counter());
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second init (tests) keeps the first subscriber; that is not an error worth stopping for.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .event_format(PlainText { ansi })
            .fmt_fields(PlainFields)
            .try_init(),
    };
    LogGuard { _writer: guard }
}

/// Stderr as the background writer's thread sees it: buffered, and written by a thread that
/// yields the CPU to the serving threads. On a busy core an equal-priority writer takes whole
/// scheduler slices from the thread serving requests (measured: added p99 latency of several
/// milliseconds on a single core); at the lowest priority it runs in the gaps instead, and if
/// there are none its queue fills and lines are dropped and counted, as designed.
struct YieldingStderr {
    stderr: BufWriter<std::io::Stderr>,
    yielding: bool,
}

impl YieldingStderr {
    /// Lowers the priority of the calling thread, which is the writer's own: the first write
    /// is the first moment this code runs there.
    fn yield_to_serving_threads(&mut self) {
        if self.yielding {
            return;
        }
        self.yielding = true;
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        // Best effort: a platform that refuses keeps the default priority.
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        );
    }
}

impl std::io::Write for YieldingStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.yield_to_serving_threads();
        self.stderr.write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.yield_to_serving_threads();
        self.stderr.write_all(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stderr.flush()
    }
}

/// Log lines dropped because the background writer fell behind, since start-up.
pub fn dropped_log_lines() -> u64 {
    DROPPED_LINES
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Everything the deprecated-usage event reports about one legacy call.
pub struct LegacyCallRecord<'a> {
    pub route: LegacyRoute,
    /// The request's `x-request-id`, so the line stands on its own without a span.
    pub request_id: &'a str,
    pub user_group_id: Option<&'a str>,
    pub client_fingerprint: &'a str,
    /// The upstream's status, or none when the shim answered without a usable upstream reply.
    pub upstream_status: Option<u16>,
    /// The status the legacy client received.
    pub status: u16,
    pub latency: Duration,
}

/// Emits the one structured event per legacy call (target `deprecated`).
///
/// Values the shim itself made or checked (endpoint names, the fingerprint's hex digits, a
/// request ID of the sane characters only) are recorded with `Display`: the text format then
/// skips the character-by-character escaping `Debug` does, which was most of the line's cost.
/// The client-chosen `user_group_id` keeps `Debug`, so it cannot forge a line of its own.
pub fn log_legacy_call(record: &LegacyCallRecord<'_>) {
    tracing::info!(
        target: DEPRECATED_TARGET,
        request_id = tracing::field::display(record.request_id),
        legacy_endpoint = tracing::field::display(record.route.legacy_endpoint()),
        replacement = tracing::field::display(record.route.customer_endpoint()),
        user_group_id = record.user_group_id.unwrap_or(""),
        client_fingerprint = tracing::field::display(record.client_fingerprint),
        upstream_status = record.upstream_status,
        status = record.status,
        latency_ms = record.latency.as_secs_f64() * 1000.0,
        "deprecated End User Group API call"
    );
}
