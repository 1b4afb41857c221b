//! The access log (`access_log = true`): one line per request, pass-through included, with
//! target `access`, written when the reply's body has been sent (or abandoned), so the
//! duration and the bytes out are the whole exchange's, as in nginx's `$request_time`.
//!
//! `outcome` is `complete` (the whole body was handed on to the connection), `body_error`
//! (the body failed, e.g. the upstream went silent), `aborted` (the request or its reply was
//! dropped unfinished: the client went away, or the drain ran out) or `send_timeout` (the
//! client accepted nothing of the reply for `limits.send_timeout`, and its connection or
//! stream was cut off).
//!
//! Field names follow OpenTelemetry's HTTP semantic conventions where one exists
//! (`http.request.method`, `url.path`, `url.query`, `http.response.status_code`,
//! `http.request.body.size`, `http.response.body.size`); the shim's own facts keep the names
//! the deprecated-usage line uses (`request_id`, `client_fingerprint`, `legacy_endpoint`,
//! `upstream_status`, `trace_id`, `span_id`). Absent values are left out of the line. No
//! header value is logged: the client is named by its fingerprint only.
//!
//! `trace_id` and `span_id` join the line to the request's trace ([`LogTrace`], which the
//! deprecated-usage line shares): with tracing on, the shim's SERVER span's ids; with it off,
//! the caller's `traceparent` trace id alone.
//!
//! With the log off, nothing here runs: [`crate::proxy`] checks the switch once per request.
//!
//! A path or query longer than [`ACCESS_LINE_TEXT_BYTES`] is cut, with a marker that says how
//! many bytes were left out (`…[12000 bytes cut]`): a line waits in the log queue, whose
//! bytes are bounded, and a 16 KB query per line would fill it with a few hundred requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;
use hyper::body::Body;
use opentelemetry::{SpanId, TraceId};

use crate::legacy::route::LegacyRoute;
use crate::message::body::{FrameObserver, Observed, ProxyBody};
use crate::message::fingerprint::{EXPLO_AUTHORIZATION, client_fingerprint};
use crate::message::headers::trace_context::trace_id;
use crate::observe::bounded_text::cut_to;
use crate::server::send_clock;

/// The `tracing` target of access-log lines.
pub const ACCESS_TARGET: &str = "access";

/// The most of a request's path, and of its query, an access line keeps, in bytes: enough for
/// any real path and query; longer ones keep their first bytes and a marker.
pub const ACCESS_LINE_TEXT_BYTES: usize = 4096;

/// A request body's bytes as they are read, shared with the line written at the end. Put in
/// the request's extensions; whoever reads the body adds to it.
#[derive(Clone, Default, Debug)]
pub struct BytesIn(Arc<AtomicU64>);

impl BytesIn {
    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The trace a request's log lines name (`trace_id`, `span_id`), on the access line and the
/// deprecated-usage line alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogTrace {
    /// Tracing is off and the caller sent no valid `traceparent`.
    #[default]
    None,
    /// Tracing is off: the caller's trace id, from its `traceparent`. There is no span of the
    /// shim's to name.
    Caller(String),
    /// Tracing is on: the shim's SERVER span, sampled or not. Its trace is the caller's when
    /// the `traceparent` was valid (the span continues it), else one the shim started.
    Span { trace_id: TraceId, span_id: SpanId },
}

impl LogTrace {
    /// The trace of a request with `headers`; `server_span` holds the ids of its server span
    /// when tracing is on.
    pub fn of(headers: &HeaderMap, server_span: Option<(TraceId, SpanId)>) -> Self {
        match server_span {
            Some((trace_id, span_id)) => Self::Span { trace_id, span_id },
            None => trace_id(headers).map_or(Self::None, |id| Self::Caller(id.to_owned())),
        }
    }

    /// The `trace_id` field: 32 lowercase hex digits.
    pub fn trace_id(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            Self::None => None,
            Self::Caller(trace_id) => Some(trace_id),
            Self::Span { trace_id, .. } => Some(trace_id),
        }
    }

    /// The `span_id` field: 16 lowercase hex digits, the shim's server span's.
    pub fn span_id(&self) -> Option<&dyn std::fmt::Display> {
        match self {
            Self::Span { span_id, .. } => Some(span_id),
            Self::None | Self::Caller(_) => None,
        }
    }
}

/// The upstream's status, left in a reply's extensions by whoever called the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamStatus(pub u16);

/// A request's line until its reply is known: dropped before that (the client reset the
/// stream or went away, or the drain ran out), it writes the line itself, with no status and
/// `outcome="aborted"`, so the requests that never finish still leave a trace.
pub struct AccessEntry(Option<Arrived>);

/// What is known of a request when it arrives.
struct Arrived {
    method: Method,
    path: String,
    query: Option<String>,
    request_id: String,
    client_fingerprint: String,
    legacy_endpoint: Option<&'static str>,
    trace: LogTrace,
    bytes_in: BytesIn,
    started: Instant,
}

impl AccessEntry {
    /// Starts the line for a request; `bytes_in` is the counter put in its extensions,
    /// `server_span` the ids of its server span when tracing is on ([`LogTrace::of`]).
    pub fn start(
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        request_id: &str,
        route: Option<LegacyRoute>,
        bytes_in: BytesIn,
        server_span: Option<(TraceId, SpanId)>,
    ) -> Self {
        Self(Some(Arrived {
            method: method.clone(),
            path: cut_to(uri.path(), ACCESS_LINE_TEXT_BYTES).into_owned(),
            query: uri
                .query()
                .map(|query| cut_to(query, ACCESS_LINE_TEXT_BYTES).into_owned()),
            request_id: request_id.to_owned(),
            client_fingerprint: client_fingerprint(headers.get(&EXPLO_AUTHORIZATION)),
            legacy_endpoint: route.map(LegacyRoute::legacy_endpoint),
            trace: LogTrace::of(headers, server_span),
            bytes_in,
            started: Instant::now(),
        }))
    }

    /// The reply, whose body writes the line when it ends, fails or is dropped.
    pub fn finish(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(entry) = self.0.take() else {
            return response;
        };
        let status = response.status().as_u16();
        // hyper sends no body for these, and drops it unread.
        let bodiless = entry.method == Method::HEAD || matches!(status, 204 | 304);
        let upstream_status = response
            .extensions()
            .get::<UpstreamStatus>()
            .map(|status| status.0);
        response.map(|inner| {
            let empty = bodiless || inner.is_end_stream();
            let sent = Sent {
                pending: Some(Pending {
                    entry,
                    status: Some(status),
                    upstream_status,
                }),
                bytes_out: 0,
                empty,
            };
            Observed::new(inner, sent).boxed_unsync()
        })
    }
}

impl Drop for AccessEntry {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            let pending = Pending {
                entry,
                status: None,
                upstream_status: None,
            };
            pending.write(0, "aborted");
        }
    }
}

struct Pending {
    entry: Arrived,
    /// `None`: no reply was made.
    status: Option<u16>,
    upstream_status: Option<u16>,
}

impl Pending {
    fn write(self, bytes_out: u64, outcome: &'static str) {
        let entry = self.entry;
        // Rounded to the microsecond: more digits are noise, and long floats hard to read.
        let duration_ms = entry.started.elapsed().as_micros() as f64 / 1000.0;
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = tracing::field::display(&entry.request_id),
            http.request.method = %entry.method,
            url.path = entry.path.as_str(),
            url.query = entry.query.as_deref(),
            http.response.status_code = self.status,
            duration_ms,
            http.request.body.size = entry.bytes_in.get(),
            http.response.body.size = bytes_out,
            client_fingerprint = tracing::field::display(&entry.client_fingerprint),
            legacy_endpoint = entry.legacy_endpoint.map(tracing::field::display),
            upstream_status = self.upstream_status,
            trace_id = entry.trace.trace_id().map(tracing::field::display),
            span_id = entry.trace.span_id().map(tracing::field::display),
            outcome,
            "request"
        );
    }
}

/// Watches the reply's body: counts what is sent, and writes the line once, when the body
/// ends, fails, or is dropped unfinished.
struct Sent {
    pending: Option<Pending>,
    bytes_out: u64,
    /// The body had nothing to send (a HEAD, a 204): hyper may drop it unpolled.
    empty: bool,
}

impl Sent {
    fn write(&mut self, outcome: &'static str) {
        if let Some(pending) = self.pending.take() {
            pending.write(self.bytes_out, outcome);
        }
    }
}

impl FrameObserver for Sent {
    fn data(&mut self, data: &Bytes) {
        self.bytes_out += data.len() as u64;
    }

    fn ended(&mut self) {
        self.write("complete");
    }

    fn failed(&mut self) {
        self.write("body_error");
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        // A client that went away mid-body leaves the rest unsent; one that accepted nothing
        // for `limits.send_timeout` had its connection or stream cut off.
        let outcome = if self.empty {
            "complete"
        } else if send_clock::is_cutting_off() {
            "send_timeout"
        } else {
            "aborted"
        };
        self.write(outcome);
    }
}

/// A request body counted into a [`BytesIn`] as it is read.
pub fn counted<B>(body: B, bytes_in: BytesIn) -> Observed<B, BytesIn> {
    Observed::new(body, bytes_in)
}

impl FrameObserver for BytesIn {
    fn data(&mut self, data: &Bytes) {
        self.add(data.len() as u64);
    }

    fn ended(&mut self) {}

    fn failed(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::body::full_body;

    #[tokio::test]
    async fn counted_bodies_add_what_passes_through_them() {
        let bytes_in = BytesIn::default();
        let body = counted(
            http_body_util::Full::new(Bytes::from_static(b"12345")),
            bytes_in.clone(),
        );
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 5);
        assert_eq!(bytes_in.get(), 5);
    }

    /// A subscriber for a test whose access line is not looked at: were the line's callsite
    /// first met on a thread with none, tracing could cache it as of no interest while
    /// another test's [`lines`] sets its subscriber, and that test would see no line.
    fn discarded_lines() -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .finish(),
        )
    }

    /// The access lines written while `emit` runs.
    fn lines(emit: impl FnOnce()) -> String {
        let sink = crate::observe::captured_log::CapturedLog::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        sink.text()
    }

    fn entry(method: Method) -> AccessEntry {
        AccessEntry::start(
            &method,
            &"/x".parse().unwrap(),
            &HeaderMap::new(),
            "r-1",
            None,
            BytesIn::default(),
            None,
        )
    }

    /// A GET of `/x` with `headers`, under the server span `trace` if tracing is on.
    fn traced_entry(headers: &HeaderMap, trace: Option<(TraceId, SpanId)>) -> AccessEntry {
        AccessEntry::start(
            &Method::GET,
            &"/x".parse().unwrap(),
            headers,
            "r-1",
            None,
            BytesIn::default(),
            trace,
        )
    }

    #[test]
    fn a_request_dropped_before_its_reply_still_leaves_a_line() {
        let line = lines(|| drop(entry(Method::GET)));
        let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(line["outcome"], "aborted");
        assert!(line.get("http.response.status_code").is_none(), "{line}");
        assert_eq!(line["request_id"], "r-1");
    }

    fn traced_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        headers
    }

    #[test]
    fn without_tracing_a_line_names_the_callers_trace_and_no_span() {
        let headers = traced_headers();
        assert_eq!(
            LogTrace::of(&headers, None),
            LogTrace::Caller("4bf92f3577b34da6a3ce929d0e0e4736".to_owned())
        );
        assert_eq!(LogTrace::of(&HeaderMap::new(), None), LogTrace::None);
        let entry = traced_entry(&headers, None);
        let line = lines(|| drop(entry));
        let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(line.get("span_id").is_none(), "{line}");
    }

    #[test]
    fn with_tracing_a_line_names_the_server_span_whatever_the_caller_sent() {
        let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let span_id = SpanId::from_hex("b7ad6b7169203331").unwrap();
        for headers in [traced_headers(), HeaderMap::new()] {
            let entry = traced_entry(&headers, Some((trace_id, span_id)));
            let line = lines(|| drop(entry));
            let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(line["span_id"], "b7ad6b7169203331");
        }
    }

    #[test]
    fn a_head_reply_dropped_unread_is_complete_and_an_unsent_body_aborted() {
        let head = lines(|| drop(entry(Method::HEAD).finish(Response::new(full_body("{}")))));
        assert!(head.contains("\"outcome\":\"complete\""), "{head}");
        let get = lines(|| drop(entry(Method::GET).finish(Response::new(full_body("{}")))));
        assert!(get.contains("\"outcome\":\"aborted\""), "{get}");
        assert_eq!(get.lines().count(), 1, "one line, not two: {get}");
    }

    #[test]
    fn a_reply_cut_off_by_the_send_timeout_says_so() {
        let reply = entry(Method::GET).finish(Response::new(full_body("{}")));
        let cut = lines(|| send_clock::cutting_off(|| drop(reply)));
        assert!(cut.contains("\"outcome\":\"send_timeout\""), "{cut}");
    }

    #[test]
    fn a_long_path_and_query_are_cut_with_a_marker() {
        let _lines = discarded_lines();
        let uri: http::Uri = format!("/{}?{}", "p".repeat(5000), "q".repeat(20_000))
            .parse()
            .unwrap();
        let entry = AccessEntry::start(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            "r-1",
            None,
            BytesIn::default(),
            None,
        );
        let arrived = entry.0.as_ref().unwrap();
        let path = format!("/{}", "p".repeat(4095));
        assert_eq!(arrived.path, format!("{path}…[905 bytes cut]"));
        let query = "q".repeat(ACCESS_LINE_TEXT_BYTES);
        assert_eq!(
            arrived.query.as_deref(),
            Some(format!("{query}…[15904 bytes cut]").as_str())
        );
        // Its line, written under a subscriber of the test's own: an event with none would
        // still register its call site, and tracing may then skip it in another test.
        let line = lines(|| drop(entry));
        assert!(line.contains("…[905 bytes cut]"), "{line}");
        assert!(line.contains("…[15904 bytes cut]"), "{line}");
    }

    #[tokio::test]
    async fn the_reply_passes_unchanged_through_the_logged_body() {
        let _lines = discarded_lines();
        let entry = AccessEntry::start(
            &Method::GET,
            &"/x?y=1".parse().unwrap(),
            &HeaderMap::new(),
            "r-1",
            None,
            BytesIn::default(),
            None,
        );
        let arrived = entry.0.as_ref().unwrap();
        assert_eq!(arrived.query.as_deref(), Some("y=1"));
        assert_eq!(arrived.client_fingerprint, "anonymous");
        let response = entry.finish(Response::new(full_body("hello")));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }
}
