//! Ended spans to the collector: a bounded queue filled on the request path with `try_send`
//! (never a wait), and a thread of its own that sends them in batches over OTLP/HTTP, written
//! by [`Encoder`] as the settings ask.
//!
//! Limits: at most [`QUEUE_SPANS`] spans, and [`QUEUE_BYTES`] of them, wait (the batch being
//! sent included); a batch holds at most [`BATCH_SPANS`] and waits at most [`BATCH_DELAY`] for
//! more; one export attempt may take `OTEL_EXPORTER_OTLP_TIMEOUT` to get the collector's reply
//! (connection included), and at most [`super::deliver::EXPORT_REPLY_BYTES`] of the reply's body are read,
//! within [`super::deliver::REPLY_BODY_READ`] (a longer or slower body is left unread and its connection
//! dropped; a 2xx counts as delivered all the same).
//!
//! A transient failure (429, 502, 503, 504, no connection, no reply) is retried as
//! [`super::retry`] says, within a window of a few timeouts; meanwhile new spans wait in the
//! queue as usual (and what finds it full is dropped and counted). A span that finds the
//! queue full, and every span of a batch the collector does not take (refused, or still
//! failing when the window ends), is dropped and counted in
//! `explo_shim_trace_spans_dropped_total`. At exit, what is queued is sent once (a backoff
//! under way is cut short), waited for at most [`FLUSH_ON_EXIT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::Status;
use opentelemetry::{Array, Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use tokio::sync::mpsc;

pub use super::deliver::EXPORT_REPLY_BYTES;
use super::deliver::{Delivery, Stopping};
use super::encode::Encoder;
use super::settings::Settings;
use crate::observe::metrics::Metrics;

/// Spans waiting for export, at most.
pub const QUEUE_SPANS: usize = 2048;
/// Spans in one export request, at most.
pub const BATCH_SPANS: usize = 512;
/// How long a batch waits for more spans after its first.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// How long the shim's exit waits for the spans still queued to be sent.
pub const FLUSH_ON_EXIT: Duration = Duration::from_secs(2);
/// Bytes of spans waiting for export, at most, counted by [`span_bytes`]: a few seconds of
/// spans at full load. A span's client text is cut first ([`super::SPAN_TEXT_BYTES`]), so no
/// one span takes much of it.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// What a span costs besides its text, in bytes: its `SpanData`, the attributes' `Vec` and
/// their keys' slots.
const SPAN_OVERHEAD_BYTES: usize = 512;
/// What an event or a link costs besides its text, in bytes.
const ENTRY_OVERHEAD_BYTES: usize = 96;
/// What an attribute's value that is not text costs, in bytes.
const SCALAR_BYTES: usize = 16;

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
    stopping: Arc<Stopping>,
}

/// What a span holds, in bytes, for [`QUEUE_BYTES`]: its text (name, attribute keys and
/// values, status description), its events and links with theirs, and the fixed costs.
fn span_bytes(span: &SpanData) -> usize {
    let status = match &span.status {
        Status::Error { description } => description.len(),
        _ => 0,
    };
    let events: usize = span
        .events
        .iter()
        .map(|event| ENTRY_OVERHEAD_BYTES + event.name.len() + attributes_bytes(&event.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|link| {
            ENTRY_OVERHEAD_BYTES
                + link.span_context.trace_state().header().len()
                + attributes_bytes(&link.attributes)
        })
        .sum();
    SPAN_OVERHEAD_BYTES
        + span.name.len()
        + attributes_bytes(&span.attributes)
        + status
        + events
        + links
}

fn attributes_bytes(attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| {
            let value = match &kv.value {
                Value::String(text) => text.as_str().len(),
                Value::Array(Array::String(texts)) => {
                    texts.iter().map(|text| text.as_str().len()).sum()
                }
                Value::Array(Array::Bool(items)) => items.len() * SCALAR_BYTES,
                Value::Array(Array::I64(items)) => items.len() * SCALAR_BYTES,
                Value::Array(Array::F64(items)) => items.len() * SCALAR_BYTES,
                _ => SCALAR_BYTES,
            };
            kv.key.as_str().len() + value
        })
        .sum()
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
                stopping: Arc::default(),
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
        self.stopping.stop();
        let (done, sent) = std::sync::mpsc::sync_channel(1);
        if self.queue.try_send(Queued::Flush(done)).is_ok() {
            let _ = sent.recv_timeout(timeout.min(FLUSH_ON_EXIT));
        }
        Ok(())
    }
}

/// Starts the export thread; the processor feeds it. `tls` is the upstream's, used for an
/// `https://` collector unless `OTEL_EXPORTER_OTLP_CERTIFICATE` names the CA to trust instead.
/// The thread ends, after a last export, once the processor is gone.
pub fn start(
    settings: &Settings,
    tls: rustls::ClientConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<QueueProcessor> {
    let (queue, spans) = mpsc::channel(QUEUE_SPANS);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let mut tls = match &settings.certificate {
        Some(certificate) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(certificate.certificates.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        None => tls,
    };
    // One HTTP/1 stack: the exporter never offers h2.
    tls.alpn_protocols.clear();
    let stopping = Arc::new(Stopping::default());
    let encoder = Encoder::new(settings);
    let exporter = Exporter {
        delivery: Delivery {
            endpoint: settings.endpoint.clone(),
            headers: settings.headers.clone(),
            content_type: encoder.content_type(),
            content_encoding: encoder.content_encoding(),
            timeout: settings.timeout,
            stopping: Arc::clone(&stopping),
        },
        shown: settings.shown_endpoint(),
        encoder,
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
        stopping,
    })
}

struct Exporter {
    delivery: Delivery,
    /// The endpoint as logs show it: the query's values redacted.
    shown: String,
    encoder: Encoder,
    metrics: Arc<Metrics>,
    /// The processor's count: the exporter gives a batch's bytes back once it is sent.
    queued_bytes: Arc<AtomicUsize>,
}

impl Exporter {
    async fn run(self, mut spans: mpsc::Receiver<Queued>, tls: rustls::ClientConfig) {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.delivery.timeout));
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
            // Counted before the batch is handed to the encoder, which takes it.
            let sent: usize = batch.iter().map(span_bytes).sum();
            let count = batch.len();
            let outcome = match self.encoder.body(std::mem::take(&mut batch)) {
                Ok(body) => self.delivery.deliver(&client, body).await,
                Err(cause) => Err(cause),
            };
            match outcome {
                Ok(()) => {
                    if failing {
                        tracing::info!(endpoint = %self.shown, "trace export works again");
                    }
                    failing = false;
                }
                Err(cause) => {
                    self.metrics.trace_spans_dropped(count as u64);
                    // One line when exports start failing, not one per batch.
                    if !failing {
                        tracing::warn!(
                            endpoint = %self.shown,
                            %cause,
                            "trace export failed; spans are dropped until the collector takes them"
                        );
                    }
                    failing = true;
                }
            }
            self.queued_bytes.fetch_sub(sent, Ordering::AcqRel);
            if let Some(done) = flushed {
                let _ = done.send(());
            }
            if closed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode::tests::span;
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_spans_events_and_links_count_in_its_bytes() {
        let bare = span_bytes(&span());
        let mut full = span();
        full.events.events.push(opentelemetry::trace::Event::new(
            "e".repeat(1000),
            UNIX_EPOCH,
            vec![KeyValue::new("detail", "d".repeat(2000))],
            0,
        ));
        full.links.links.push(opentelemetry::trace::Link::new(
            full.span_context.clone(),
            vec![KeyValue::new("why", "w".repeat(3000))],
            0,
        ));
        assert!(
            span_bytes(&full) >= bare + 6000,
            "{bare} {}",
            span_bytes(&full)
        );
    }

    #[test]
    fn spans_past_the_queues_bytes_are_dropped_and_counted() {
        let metrics = Arc::new(Metrics::new(10));
        let (queue, mut spans) = mpsc::channel(QUEUE_SPANS);
        let processor = QueueProcessor {
            queue,
            queued_bytes: Arc::default(),
            metrics: Some(Arc::clone(&metrics)),
            stopping: Arc::default(),
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
            stopping: Arc::default(),
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
