//! Ended spans to the collector: a bounded queue filled on the request path with `try_send`
//! (never a wait), and a thread of its own that sends them in batches as OTLP/JSON over HTTP.
//!
//! Limits: at most [`QUEUE_SPANS`] spans, and [`QUEUE_BYTES`] of them, wait (the batch being
//! sent included); a batch holds at most [`BATCH_SPANS`] and waits at most [`BATCH_DELAY`] for
//! more; one export may take [`EXPORT_TIMEOUT`], and at most [`EXPORT_REPLY_BYTES`] of the
//! collector's reply are read (a longer reply is left unread and its connection dropped). A
//! span that finds the queue full, and every span of a batch the collector does not take
//! (refused, unreachable, too slow), is dropped and counted in
//! `explo_shim_trace_spans_dropped_total`.
//! A failed batch is not retried: a collector that is away gets one request per batch, and
//! the queue bounds what waits meanwhile. At exit, what is queued is sent, waited for at most
//! [`FLUSH_ON_EXIT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::Settings;
use crate::error::error_chain;
use crate::observe::metrics::Metrics;

/// Spans waiting for export, at most.
pub const QUEUE_SPANS: usize = 2048;
/// Spans in one export request, at most.
pub const BATCH_SPANS: usize = 512;
/// How long a batch waits for more spans after its first.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// How long one export may take, connection included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shim's exit waits for the spans still queued to be sent.
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(2);
/// Bytes of spans waiting for export, at most, counted by [`span_bytes`]: a few seconds of
/// spans at full load. A span's client text is cut first ([`super::SPAN_TEXT_BYTES`]), so no
/// one span takes much of it.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// What a span costs besides its text, in bytes: its `SpanData`, the attributes' `Vec` and
/// their keys' slots.
const SPAN_OVERHEAD_BYTES: usize = 512;
/// The most of a collector's reply the exporter reads, in bytes. OTLP answers with a short
/// status message; a collector that sends more (an endless body) is not read further, and its
/// connection is dropped rather than reused.
pub const EXPORT_REPLY_BYTES: usize = 64 * 1024;

/// What the queue carries: a span, or a request to send the batch now and say so.
// Nearly every item is a span: boxing it would add an allocation per span to spare the one
// flush at exit a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Queued {
    Span(SpanData),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The SDK's hand-over point: every ended, sampled span goes into the queue or is counted.
pub struct QueueProcessor {
    queue: mpsc::Sender<Queued>,
    /// The bytes of the spans queued or in the batch being sent ([`span_bytes`]).
    queued_bytes: Arc<AtomicUsize>,
    metrics: Option<Arc<Metrics>>,
}

/// What a span holds, in bytes, for [`QUEUE_BYTES`]: its text (name, attribute keys and
/// string values, status description) and [`SPAN_OVERHEAD_BYTES`].
fn span_bytes(span: &SpanData) -> usize {
    let attributes: usize = span
        .attributes
        .iter()
        .map(|kv| {
            let value = match &kv.value {
                Value::String(text) => text.as_str().len(),
                _ => 0,
            };
            kv.key.as_str().len() + value
        })
        .sum();
    let status = match &span.status {
        Status::Error { description } => description.len(),
        _ => 0,
    };
    SPAN_OVERHEAD_BYTES + span.name.len() + attributes + status
}

/// Takes room for `bytes` in the queue's count; false, and nothing taken, when it is full.
fn reserve(queued_bytes: &AtomicUsize, bytes: usize) -> bool {
    let before = queued_bytes.fetch_add(bytes, Ordering::AcqRel);
    if before.saturating_add(bytes) <= QUEUE_BYTES {
        return true;
    }
    queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    false
}

impl std::fmt::Debug for QueueProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProcessor").finish_non_exhaustive()
    }
}

impl QueueProcessor {
    /// A processor whose queue the test reads itself.
    #[cfg(test)]
    pub fn for_test(capacity: usize) -> (Self, TestQueue) {
        let (queue, spans) = mpsc::channel(capacity);
        (
            Self {
                queue,
                queued_bytes: Arc::default(),
                metrics: None,
            },
            TestQueue(spans),
        )
    }
}

/// The spans a test's processor queued.
#[cfg(test)]
pub struct TestQueue(mpsc::Receiver<Queued>);

#[cfg(test)]
impl TestQueue {
    pub fn try_recv(&mut self) -> Option<SpanData> {
        match self.0.try_recv().ok()? {
            Queued::Span(span) => Some(span),
            Queued::Flush(_) => None,
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let bytes = span_bytes(&span);
        let queued = reserve(&self.queued_bytes, bytes)
            && match self.queue.try_send(Queued::Span(span)) {
                Ok(()) => true,
                Err(_) => {
                    self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    false
                }
            };
        if !queued && let Some(metrics) = &self.metrics {
            metrics.trace_spans_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    /// Asks the export thread to send what is queued, and waits for it at most
    /// [`FLUSH_ON_EXIT`]: the shim is exiting, and a collector that is away must not hold it.
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (done, sent) = std::sync::mpsc::sync_channel(1);
        if self.queue.try_send(Queued::Flush(done)).is_ok() {
            let _ = sent.recv_timeout(timeout.min(FLUSH_ON_EXIT));
        }
        Ok(())
    }
}

/// Starts the export thread; the processor feeds it. The thread ends, after a last export,
/// once the processor is gone.
pub fn start(
    settings: &Settings,
    mut tls: rustls::ClientConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<QueueProcessor> {
    let (queue, spans) = mpsc::channel(QUEUE_SPANS);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    tls.alpn_protocols.clear();
    let exporter = Exporter {
        endpoint: settings.endpoint.clone(),
        service_name: settings.service_name.clone(),
        metrics: Arc::clone(&metrics),
        queued_bytes: Arc::clone(&queued_bytes),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("otel-export".to_owned())
        .spawn(move || runtime.block_on(exporter.run(spans, tls)))?;
    Ok(QueueProcessor {
        queue,
        queued_bytes,
        metrics: Some(metrics),
    })
}

struct Exporter {
    endpoint: http::Uri,
    service_name: String,
    metrics: Arc<Metrics>,
    /// The processor's count: the exporter gives a batch's bytes back once it is sent.
    queued_bytes: Arc<AtomicUsize>,
}

impl Exporter {
    async fn run(self, mut spans: mpsc::Receiver<Queued>, tls: rustls::ClientConfig) {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let mut batch = Vec::with_capacity(BATCH_SPANS);
        let mut failing = false;
        loop {
            match spans.recv().await {
                Some(Queued::Span(span)) => batch.push(span),
                Some(Queued::Flush(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => return,
            }
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            let mut closed = false;
            let mut flushed = None;
            while batch.len() < BATCH_SPANS {
                match tokio::time::timeout_at(deadline, spans.recv()).await {
                    Ok(Some(Queued::Span(span))) => batch.push(span),
                    Ok(Some(Queued::Flush(done))) => {
                        flushed = Some(done);
                        break;
                    }
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let body = Bytes::from(encode(&batch, &self.service_name).to_string());
            let outcome = tokio::time::timeout(EXPORT_TIMEOUT, self.send(&client, body)).await;
            let outcome =
                outcome.unwrap_or_else(|_| Err(format!("no reply in {EXPORT_TIMEOUT:?}")));
            match outcome {
                Ok(()) => {
                    if failing {
                        tracing::info!(endpoint = %self.endpoint, "trace export works again");
                    }
                    failing = false;
                }
                Err(cause) => {
                    self.metrics.trace_spans_dropped(batch.len() as u64);
                    // One line when exports start failing, not one per batch.
                    if !failing {
                        tracing::warn!(
                            endpoint = %self.endpoint,
                            %cause,
                            "trace export failed; spans are dropped until the collector takes them"
                        );
                    }
                    failing = true;
                }
            }
            let sent: usize = batch.iter().map(span_bytes).sum();
            self.queued_bytes.fetch_sub(sent, Ordering::AcqRel);
            batch.clear();
            if let Some(done) = flushed {
                let _ = done.send(());
            }
            if closed {
                return;
            }
        }
    }

    async fn send<C>(&self, client: &Client<C, Full<Bytes>>, body: Bytes) -> Result<(), String>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let request = Request::post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|error| error.to_string())?;
        let response = client
            .request(request)
            .await
            .map_err(|error| error_chain(&error))?;
        let status = response.status();
        // Read to the end so the connection can be used again, but only a short reply: past
        // the cap the body is dropped unread, which closes the connection.
        let _ = Limited::new(response.into_body(), EXPORT_REPLY_BYTES)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

/// The OTLP/JSON request for `spans` (an `ExportTraceServiceRequest`): ids in hex, times as
/// decimal strings of nanoseconds, enums as numbers.
pub fn encode(spans: &[SpanData], service_name: &str) -> Json {
    let spans: Vec<Json> = spans.iter().map(encode_span).collect();
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [
                    attribute("service.name", &Value::from(service_name.to_owned())),
                    attribute("telemetry.sdk.name", &Value::from("opentelemetry")),
                    attribute("telemetry.sdk.language", &Value::from("rust")),
                ]
            },
            "scopeSpans": [{
                "scope": {"name": super::DEFAULT_SERVICE_NAME, "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }]
        }]
    })
}

fn encode_span(span: &SpanData) -> Json {
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    // Bits 0-7: the W3C trace flags; bit 8: whether the parent is known to be remote or not;
    // bit 9: it is.
    let flags = u32::from(span.span_context.trace_flags().to_u8())
        | 0x100
        | if span.parent_span_is_remote { 0x200 } else { 0 };
    let mut encoded = json!({
        "traceId": span.span_context.trace_id().to_string(),
        "spanId": span.span_context.span_id().to_string(),
        "name": span.name,
        "kind": kind,
        "startTimeUnixNano": nanos(span.start_time),
        "endTimeUnixNano": nanos(span.end_time),
        "attributes": span
            .attributes
            .iter()
            .map(|kv| attribute(kv.key.as_str(), &kv.value))
            .collect::<Vec<_>>(),
        "flags": flags,
    });
    if span.parent_span_id != opentelemetry::SpanId::INVALID {
        encoded["parentSpanId"] = json!(span.parent_span_id.to_string());
    }
    let trace_state = span.span_context.trace_state().header();
    if !trace_state.is_empty() {
        encoded["traceState"] = json!(trace_state);
    }
    encoded["status"] = match &span.status {
        Status::Unset => json!({}),
        Status::Ok => json!({"code": 1}),
        Status::Error { description } => json!({"code": 2, "message": description}),
    };
    encoded
}

fn nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

fn attribute(key: &str, value: &Value) -> Json {
    json!({"key": key, "value": any_value(value)})
}

fn any_value(value: &Value) -> Json {
    match value {
        Value::Bool(value) => json!({"boolValue": value}),
        // OTLP/JSON writes 64-bit integers as strings.
        Value::I64(value) => json!({"intValue": value.to_string()}),
        Value::F64(value) => json!({"doubleValue": value}),
        Value::String(value) => json!({"stringValue": value.as_str()}),
        other => json!({"stringValue": other.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use opentelemetry::{SpanId, TraceId};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x0102_0304_0506_0708),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: "POST /api/delete_user_group/".into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
            attributes: vec![
                KeyValue::new("url.path", "/api/delete_user_group/"),
                KeyValue::new("http.response.status_code", 502_i64),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::error("502"),
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn spans_are_written_in_the_otlp_json_mapping() {
        let encoded = encode(&[span()], "shim-eu");
        let resource = &encoded["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "shim-eu"}})
        );
        let span = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["name"], "POST /api/delete_user_group/");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["endTimeUnixNano"], "1700000000223456789");
        assert_eq!(span["flags"], 0x301);
        assert_eq!(
            span["attributes"],
            json!([
                {"key": "url.path", "value": {"stringValue": "/api/delete_user_group/"}},
                {"key": "http.response.status_code", "value": {"intValue": "502"}},
            ])
        );
        assert_eq!(span["status"], json!({"code": 2, "message": "502"}));
    }

    #[test]
    fn a_root_span_has_no_parent_id() {
        let mut root = span();
        root.parent_span_id = SpanId::INVALID;
        root.parent_span_is_remote = false;
        root.status = Status::Unset;
        let encoded = encode(&[root], "explo-shim");
        let span = &encoded["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert!(span.get("parentSpanId").is_none(), "{span}");
        assert_eq!(span["flags"], 0x101);
        assert_eq!(span["status"], json!({}));
    }

    #[test]
    fn spans_past_the_queues_bytes_are_dropped_and_counted() {
        let metrics = Arc::new(Metrics::new(10));
        let (queue, mut spans) = mpsc::channel(QUEUE_SPANS);
        let processor = QueueProcessor {
            queue,
            queued_bytes: Arc::default(),
            metrics: Some(Arc::clone(&metrics)),
        };
        // A span with a path of 4 KiB, as long as a span keeps.
        let mut long = span();
        long.attributes[0] = KeyValue::new("url.path", "p".repeat(super::super::SPAN_TEXT_BYTES));
        let per_span = span_bytes(&long);
        let fit = QUEUE_BYTES / per_span;
        assert!(fit < QUEUE_SPANS, "the bytes are the bound here");
        for _ in 0..fit + 10 {
            processor.on_end(long.clone());
        }
        assert_eq!(
            processor.queued_bytes.load(Ordering::Acquire),
            fit * per_span
        );
        let mut queued = 0;
        while spans.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, fit);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|line| line == "explo_shim_trace_spans_dropped_total 10"),
        );
    }

    #[test]
    fn a_full_queue_drops_the_span_and_an_unsampled_span_is_not_queued() {
        let metrics = Arc::new(Metrics::new(10));
        let (queue, mut spans) = mpsc::channel(1);
        let processor = QueueProcessor {
            queue,
            queued_bytes: Arc::default(),
            metrics: Some(Arc::clone(&metrics)),
        };
        processor.on_end(span());
        processor.on_end(span());
        let mut unsampled = span();
        unsampled.span_context = SpanContext::new(
            unsampled.span_context.trace_id(),
            unsampled.span_context.span_id(),
            TraceFlags::NOT_SAMPLED,
            false,
            TraceState::default(),
        );
        processor.on_end(unsampled);
        assert!(matches!(spans.try_recv(), Ok(Queued::Span(_))));
        assert!(spans.try_recv().is_err());
        assert!(
            metrics
                .encode()
                .lines()
                .any(|line| line == "explo_shim_trace_spans_dropped_total 1"),
        );
    }
}
