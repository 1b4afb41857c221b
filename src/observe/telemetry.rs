//! Logging: subscriber set-up, the client fingerprint and the deprecated-usage event.
//!
//! Secrets never reach a log line: the shim logs no header values and no bodies, only the
//! SHA-256 fingerprint of `Explo-Authorization`. The HTTP and TLS libraries are capped at
//! `info` whatever `RUST_LOG` says, because their trace output can include frame contents.
//!
//! Logging stays off the request path: a line is formatted into a buffer on the request's
//! thread and handed to a background writer ([`crate::observe::log_queue`]), which batches lines into
//! few `write` calls. Its queue holds at most [`LOG_QUEUE_BYTES`]; when the writer falls behind
//! (a slow pipe, a full disk), lines are dropped and counted ([`dropped_log_lines`], exported
//! as a metric) rather than holding a request up or growing the process. Lines that repeat
//! under a flood are summarised ([`crate::observe::log_summary`]). ANSI colours are used only when
//! stderr is a terminal, so log files and collectors get plain text.

use std::io::{BufWriter, IsTerminal};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{DEFAULT_LOG_LEVEL as DEFAULT_LEVEL, LogFormat};
use crate::legacy::route::LegacyRoute;
use crate::observe::access_log::{ACCESS_TARGET, LogTrace};
use crate::observe::log_queue::{DropCounter, QueueGuard};
use crate::observe::log_summary::{LogSummary, SUMMARY_WINDOW, Summary};
use crate::observe::log_text::{PlainFields, PlainText};

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

/// Bytes of lines the background writer may hold before new ones are dropped: a burst of
/// several seconds at full load (about 11,000 ordinary lines of some 300 bytes), and a small part of
/// a sidecar's memory limit whatever the lines hold. Lines are counted with their overhead.
pub const LOG_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The background writer's buffer: lines are written in batches of up to this many bytes.
const LOG_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The drop counter of the process's one background writer (the subscriber is global too).
static DROPPED_LINES: OnceLock<DropCounter> = OnceLock::new();

/// Keeps the background writer alive; dropping it writes the summaries still pending, then
/// the lines still queued.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    writer: Option<QueueGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        crate::observe::log_summary::report_all();
        drop(self.writer.take());
    }
}

/// Changes the log filter of the running process (SIGHUP's `log_level`).
#[derive(Clone, Default)]
pub struct LogFilter(Option<reload::Handle<EnvFilter, Registry>>);

impl LogFilter {
    /// The filter for `level`, ready to [`install`](Self::install).
    pub fn prepare(level: &str) -> Result<EnvFilter, String> {
        log_filter(level)
    }

    /// Puts `filter` in service for every line from now on.
    pub fn install(&self, filter: EnvFilter) {
        if let Some(handle) = &self.0 {
            // Fails only when the subscriber is gone, at exit: nothing left to filter.
            let _ = handle.reload(filter);
        }
    }
}

/// The filter for `level` (`RUST_LOG` syntax): the libraries in [`CAPPED_TARGETS`] at `info`
/// at most, and the deprecated-usage line and the access log kept at any level unless the
/// filter names their targets itself. Those two are what the shim is run for; a plain `warn`
/// meant to quiet the rest must not silence them.
pub fn log_filter(level: &str) -> Result<EnvFilter, String> {
    let mut filter = EnvFilter::builder()
        .parse(level)
        .map_err(|error| format!("invalid log filter {level:?}: {error}"))?;
    let named = |target: &str| {
        level.split(',').any(|directive| {
            let directive_target = directive.split(['[', '=']).next().unwrap_or_default();
            directive_target.trim() == target
        })
    };
    for target in CAPPED_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    for target in [DEPRECATED_TARGET, ACCESS_TARGET] {
        if !named(target)
            && let Ok(directive) = format!("{target}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    Ok(filter)
}

/// Whether lines may be coloured: stderr is a terminal and `NO_COLOR` is unset or empty
/// (no-color.org).
fn colours_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Installs the global subscriber: the `level` filter (already validated), lines on stderr
/// through the background writer. Hold the returned guard until the process ends; the
/// [`LogFilter`] changes the level later.
pub fn init(format: LogFormat, level: &str) -> (LogGuard, LogFilter) {
    let filter = log_filter(level).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL));
    let (filter, handle) = reload::Layer::new(filter);
    let stderr = YieldingStderr {
        stderr: BufWriter::with_capacity(LOG_WRITE_BUFFER_BYTES, std::io::stderr()),
        yielding: false,
    };
    let (writer, guard) =
        match crate::observe::log_queue::start(stderr, LOG_QUEUE_BYTES, "explo-shim-log") {
            Ok(started) => started,
            Err(error) => {
                // Without a thread there is no background writer: say so, and run without a log.
                eprintln!("explo-shim: cannot start the log writer thread: {error}");
                return (LogGuard { writer: None }, LogFilter::default());
            }
        };
    let _ = DROPPED_LINES.set(writer.drop_counter());
    start_summary_ticker();
    let ansi = colours_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber; that is not an error worth stopping for.
    let installed = match format {
        LogFormat::Json => registry
            .with(lines.json().flatten_event(true))
            .try_init()
            .is_ok(),
        LogFormat::Text => registry
            .with(
                lines
                    .event_format(PlainText { ansi })
                    .fmt_fields(PlainFields),
            )
            .try_init()
            .is_ok(),
    };
    (
        LogGuard {
            writer: Some(guard),
        },
        LogFilter(installed.then_some(handle)),
    )
}

/// Writes the summaries of repeated lines that went quiet ([`crate::observe::log_summary`]), every
/// [`SUMMARY_WINDOW`], from a thread of its own that sleeps in between: the serving threads
/// do not have to, and the log writer may be blocked on a stalled pipe.
fn start_summary_ticker() {
    let ticker = std::thread::Builder::new()
        .name("explo-shim-log-summaries".to_owned())
        .spawn(|| {
            loop {
                std::thread::sleep(SUMMARY_WINDOW);
                crate::observe::log_summary::report_overdue(std::time::Instant::now());
            }
        });
    if let Err(error) = ticker {
        // The summaries still come with the next line of their kind, and at exit. Said on
        // stderr directly: the log is not set up yet.
        eprintln!("explo-shim: cannot start the log summary thread: {error}");
    }
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
    DROPPED_LINES.get().map_or(0, DropCounter::dropped_lines)
}

/// Everything the deprecated-usage event reports about one legacy call.
pub struct LegacyCallRecord<'a> {
    pub route: LegacyRoute,
    /// The request's `x-request-id`, so the line stands on its own without a span.
    pub request_id: &'a str,
    pub user_group_id: Option<&'a str>,
    pub client_fingerprint: &'a str,
    /// The client's name from `[clients]`, when it has one.
    pub client_name: Option<&'a str>,
    /// The upstream's status, or none when the shim answered without a usable upstream reply.
    pub upstream_status: Option<u16>,
    /// The status the legacy client received.
    pub status: u16,
    pub latency: Duration,
    /// The trace the line names: the shim's server span with tracing on, the caller's
    /// `traceparent` trace id with it off.
    pub trace: &'a LogTrace,
    /// The shim's own error code when it refused the call itself, before it could change
    /// anything upstream (a 4xx of its own but a 409: a brownout, the sunset, the budget, a
    /// bad body). Those lines are summarised under a flood; a call that reached the upstream
    /// for a change, and a 409 of the cascade guard, are always logged.
    pub refusal: Option<&'static str>,
}

/// The deprecated-usage lines of calls the shim refused itself, by error code: the first of a
/// second, then a count. Every one still counts in the metrics and `/usage`.
static REFUSED_LEGACY_CALLS: LogSummary = LogSummary::new(report_refused_legacy_calls);

fn report_refused_legacy_calls(summary: Summary) {
    tracing::info!(
        target: DEPRECATED_TARGET,
        code = summary.kind,
        more = summary.more,
        over_ms = summary.over.as_millis() as u64,
        "deprecated End User Group API call refused by the shim: {} more like this",
        summary.more
    );
}

/// Emits the one structured event per legacy call (target `deprecated`); a refused call's only
/// when [`REFUSED_LEGACY_CALLS`] admits it.
///
/// Values the shim itself made or checked (endpoint names, the fingerprint's hex digits, a
/// request ID of the sane characters only) are recorded with `Display`: the text format then
/// skips the character-by-character escaping `Debug` does, which was most of the line's cost.
/// The client-chosen `user_group_id` keeps `Debug`, so it cannot forge a line of its own.
pub fn log_legacy_call(record: &LegacyCallRecord<'_>) {
    if let Some(code) = record.refusal
        && !REFUSED_LEGACY_CALLS.admit(code)
    {
        return;
    }
    tracing::info!(
        target: DEPRECATED_TARGET,
        request_id = tracing::field::display(record.request_id),
        legacy_endpoint = tracing::field::display(record.route.legacy_endpoint()),
        replacement = tracing::field::display(record.route.customer_endpoint()),
        // Absent values (a refresh has no id; a refused call no upstream status) are left
        // out of the line rather than written empty.
        user_group_id = record.user_group_id,
        client_fingerprint = tracing::field::display(record.client_fingerprint),
        client_name = record.client_name,
        upstream_status = record.upstream_status,
        status = record.status,
        // Rounded to the microsecond: more digits are noise.
        latency_ms = record.latency.as_micros() as f64 / 1000.0,
        trace_id = record.trace.trace_id().map(tracing::field::display),
        span_id = record.trace.span_id().map(tracing::field::display),
        "deprecated End User Group API call"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The targets of the lines `filter` lets through, of one line per target and level.
    fn passed(filter: &str) -> Vec<&'static str> {
        let sink = crate::observe::captured_log::CapturedLog::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry()
            .with(log_filter(filter).unwrap())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "deprecated", "deprecated-info");
            tracing::info!(target: "access", "access-info");
            tracing::info!(target: "explo_shim::server", "server-info");
            tracing::debug!(target: "hyper::proto", "hyper-debug");
            tracing::debug!(target: "explo_shim::proxy", "proxy-debug");
        });
        let text = sink.text();
        [
            "deprecated-info",
            "access-info",
            "server-info",
            "hyper-debug",
            "proxy-debug",
        ]
        .into_iter()
        .filter(|line| text.contains(line))
        .collect()
    }

    #[test]
    fn the_audit_line_and_the_access_log_survive_a_plain_warn() {
        assert_eq!(passed("warn"), ["deprecated-info", "access-info"]);
        assert_eq!(
            passed("info"),
            ["deprecated-info", "access-info", "server-info"]
        );
        // Named, they follow what the filter says.
        assert_eq!(passed("warn,deprecated=off"), ["access-info"]);
        assert_eq!(
            passed("info,access=warn"),
            ["deprecated-info", "server-info"]
        );
        // The libraries stay capped at info, whatever the filter asks.
        assert_eq!(
            passed("trace"),
            [
                "deprecated-info",
                "access-info",
                "server-info",
                "proxy-debug"
            ]
        );
    }

    #[test]
    fn an_invalid_filter_is_refused_with_its_text() {
        let error = log_filter("info,=[").unwrap_err();
        assert!(error.contains("info,=["), "{error}");
    }

    #[test]
    fn no_color_turns_colours_off_even_on_a_terminal() {
        use std::ffi::OsStr;
        assert!(colours_wanted(true, None));
        assert!(colours_wanted(true, Some(OsStr::new(""))));
        assert!(!colours_wanted(true, Some(OsStr::new("1"))));
        assert!(!colours_wanted(false, None));
    }
}
