//! OpenTelemetry traces, exported over OTLP/HTTP, configured by the standard
//! `OTEL_*` variables ([`settings::from_env`]). Off unless an endpoint is set (and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`); then the proxy holds one
//! [`Tracing`] and every request costs one `Option` test, nothing more.
//!
//! Spans are made by `opentelemetry_sdk` (ids, sampling, the span life cycle); what ends is
//! handed to a bounded queue ([`export`]) and sent from a thread of its own, as protobuf or
//! JSON ([`encode`]), so a slow or absent collector never holds up a request.
//!
//! One request is one SERVER span ([`Tracing::server_span`]), which continues the caller's
//! `traceparent`. It rides in the request's extensions as a [`TraceScope`]; every upstream
//! exchange made for the request opens a CLIENT span under it ([`TraceScope::client_span`]) and
//! names that span in the upstream request's `traceparent`.

mod choices;
mod deliver;
pub mod describe;
pub mod encode;
mod endpoint;
pub mod export;
mod key_values;
mod retry;
pub mod settings;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, SpanId, TraceId};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::legacy::route::LegacyRoute;
use crate::message::fingerprint::{EXPLO_AUTHORIZATION, client_fingerprint};
use crate::message::headers::trace_context::{self, TRACEPARENT};
use crate::observe::bounded_text::cut_to;
use crate::observe::metrics::Metrics;

pub use settings::{
    DEFAULT_SERVICE_NAME, Resolved, SamplerChoice, Settings, SettingsError, from_env,
};

/// The most of a client's text (a passed-through path) or of an error's detail a span keeps,
/// in bytes; longer ones keep their first bytes and a marker. Spans wait in a queue bounded
/// in bytes ([`export::QUEUE_BYTES`]), and a 60 KB path must not take a hundred spans' room.
pub const SPAN_TEXT_BYTES: usize = 4096;

/// The attribute naming the legacy endpoint a span served, e.g. `delete_user_group`.
pub const LEGACY_ENDPOINT: &str = "explo.legacy_endpoint";
/// The attribute naming why the shim refused a call without asking the upstream.
pub const REFUSAL_REASON: &str = "explo.refusal_reason";
/// The attribute naming the client, by fingerprint (never its credential).
pub const CLIENT_FINGERPRINT: &str = "explo.client_fingerprint";
/// The attribute holding the request's `x-request-id`, the `request_id` of its log lines.
/// OpenTelemetry's conventions have no name for it (`http.request.header.x-request-id` would
/// be the client's header, and the shim makes the id when the client sent none).
pub const REQUEST_ID: &str = "explo.request_id";

/// The shim's tracer and the exporter behind it. Built once; shared by every serving thread.
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the export thread and returns the tracer. `tls` is for an `https://` collector.
    pub fn start(
        settings: &Settings,
        tls: rustls::ClientConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let processor = export::start(settings, tls, metrics)?;
        Ok(Self::with_processor(settings.sampler, processor))
    }

    fn with_processor(sampler: SamplerChoice, processor: export::QueueProcessor) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.sampler())
            .with_span_processor(processor)
            .build();
        let scope = InstrumentationScope::builder(DEFAULT_SERVICE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Self { tracer, provider }
    }

    /// Opens the SERVER span of one request, under the caller's span when its `traceparent`
    /// is valid. Its legacy `route` (as the proxy recognised it) names the span; anything else
    /// is named by its method alone (a passed-through path may hold ids).
    pub fn server_span(
        &self,
        method: &Method,
        uri_path: &str,
        headers: &HeaderMap,
        route: Option<LegacyRoute>,
        request_id: &str,
    ) -> TraceScope {
        let parent = match trace_context::parse(headers).and_then(remote_parent) {
            Some(parent) => Context::new().with_remote_span_context(parent),
            None => Context::new(),
        };
        let name = match route {
            Some(route) => format!("{method} /api/{}/", route.legacy_endpoint()),
            None => method.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", cut_to(uri_path, SPAN_TEXT_BYTES).into_owned()),
            KeyValue::new(
                CLIENT_FINGERPRINT,
                client_fingerprint(headers.get(&EXPLO_AUTHORIZATION)),
            ),
            KeyValue::new(REQUEST_ID, request_id.to_owned()),
        ];
        if let Some(route) = route {
            attributes.push(KeyValue::new(
                "http.route",
                format!("/api/{}/", route.legacy_endpoint()),
            ));
            attributes.push(KeyValue::new(LEGACY_ENDPOINT, route.legacy_endpoint()));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        TraceScope {
            tracer: self.tracer.clone(),
            context: parent.with_span(span),
            endpoint: route.map(|route| route.legacy_endpoint()),
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The caller's span, from a valid `traceparent`.
fn remote_parent(parent: trace_context::TraceParent<'_>) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(parent.trace_id).ok()?;
    let span_id = SpanId::from_hex(parent.parent_id).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    ))
}

/// One request's SERVER span, carried in the request's extensions to where the upstream calls
/// are made.
#[derive(Clone)]
pub struct TraceScope {
    tracer: SdkTracer,
    /// Holds the server span.
    context: Context,
    /// The legacy endpoint the request is for, if any.
    endpoint: Option<&'static str>,
}

impl TraceScope {
    /// The server span's trace: the caller's, when its `traceparent` was valid.
    pub fn trace_id(&self) -> TraceId {
        self.context.span().span_context().trace_id()
    }

    /// The server span's own id.
    pub fn span_id(&self) -> SpanId {
        self.context.span().span_context().span_id()
    }

    /// Whether the server span is sampled, i.e. will be exported.
    pub fn is_sampled(&self) -> bool {
        self.context.span().span_context().is_sampled()
    }

    /// Notes on the server span that the shim refused the call itself, asking no upstream.
    pub fn refused(&self, reason: &'static str) {
        self.context
            .span()
            .set_attribute(KeyValue::new(REFUSAL_REASON, reason));
    }

    /// Notes on the server span the shim's error code for the request.
    pub fn failed(&self, code: &'static str) {
        self.context
            .span()
            .set_attribute(KeyValue::new("error.type", code));
    }

    /// Ends the server span with the reply's status; a 5xx is an error.
    pub fn end(self, status: u16) {
        let span = self.context.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(status.to_string()));
        }
        span.end();
    }

    /// Opens a CLIENT span for one upstream exchange and names it in `request`'s
    /// `traceparent` (replacing the client's).
    pub fn client_span<B>(&self, request: &mut Request<B>) -> ClientSpan {
        let method = request.method().clone();
        let uri_path = cut_to(request.uri().path(), SPAN_TEXT_BYTES).into_owned();
        let name = match self.endpoint {
            // A translated call's paths are the Customer API's own, never a client's.
            Some(_) => format!("{method} {uri_path}"),
            None => method.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", uri_path),
        ];
        if let Some(endpoint) = self.endpoint {
            attributes.push(KeyValue::new(LEGACY_ENDPOINT, endpoint));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.context);
        if let Ok(value) = HeaderValue::try_from(traceparent(span.span_context())) {
            request.headers_mut().insert(&TRACEPARENT, value);
        }
        ClientSpan { span }
    }
}

/// The `traceparent` naming `span`.
pub fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// One upstream exchange's CLIENT span; dropped unfinished (a cancelled call), it still ends.
pub struct ClientSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl ClientSpan {
    /// The upstream replied with `status`; a 4xx or 5xx is an error.
    pub fn replied(mut self, status: u16) {
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 400 {
            self.span.set_status(Status::error(status.to_string()));
        }
        self.span.end();
    }

    /// The exchange failed (`code`, e.g. `upstream_timeout`) or the shim refused to make it.
    pub fn failed(mut self, code: &'static str, detail: String) {
        self.span.set_attribute(KeyValue::new("error.type", code));
        let detail = match cut_to(&detail, SPAN_TEXT_BYTES) {
            std::borrow::Cow::Borrowed(_) => detail,
            std::borrow::Cow::Owned(cut) => cut,
        };
        self.span.set_status(Status::error(detail));
        self.span.end();
    }

    /// The exchange was never made: the shim refused it (`reason`, e.g. `rate_limited`).
    pub fn refused(mut self, reason: &'static str) {
        self.span
            .set_attribute(KeyValue::new(REFUSAL_REASON, reason));
        self.span.set_status(Status::error(reason));
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    fn decision(choice: SamplerChoice, parent_flags: Option<u8>, trace_id: u128) -> bool {
        let trace_id = TraceId::from(trace_id);
        let parent = match parent_flags {
            Some(flags) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from(7),
                TraceFlags::new(flags),
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let result = choice.sampler().should_sample(
            Some(&parent),
            trace_id,
            "POST /api/delete_user_group/",
            &SpanKind::Server,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn parent_based_samplers_follow_the_callers_sampled_flag() {
        let id = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
        for choice in [
            SamplerChoice::ParentBasedAlwaysOn,
            SamplerChoice::ParentBasedAlwaysOff,
            SamplerChoice::ParentBasedTraceIdRatio(0.0),
            SamplerChoice::ParentBasedTraceIdRatio(1.0),
        ] {
            assert!(decision(choice, Some(1), id), "{choice:?}, sampled parent");
            assert!(
                !decision(choice, Some(0), id),
                "{choice:?}, unsampled parent"
            );
        }
        // Without a parent, the root sampler decides.
        assert!(decision(SamplerChoice::ParentBasedAlwaysOn, None, id));
        assert!(!decision(SamplerChoice::ParentBasedAlwaysOff, None, id));
        assert!(!decision(
            SamplerChoice::ParentBasedTraceIdRatio(0.0),
            None,
            id
        ));
    }

    #[test]
    fn root_samplers_ignore_the_parent() {
        let id = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
        assert!(decision(SamplerChoice::AlwaysOn, Some(0), id));
        assert!(!decision(SamplerChoice::AlwaysOff, Some(1), id));
        assert!(decision(SamplerChoice::TraceIdRatio(1.0), None, id));
        assert!(!decision(SamplerChoice::TraceIdRatio(0.0), Some(1), id));
    }

    #[test]
    fn a_client_span_continues_the_callers_trace_and_is_named_upstream() {
        let (processor, mut spans) = export::QueueProcessor::for_test(16);
        let tracing = Tracing::with_processor(SamplerChoice::ParentBasedAlwaysOn, processor);
        let mut headers = HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert(
            &EXPLO_AUTHORIZATION,
            HeaderValue::from_static("Token secret"),
        );
        let scope = tracing.server_span(
            &Method::DELETE,
            "/api/delete_user_group/",
            &headers,
            Some(LegacyRoute::DeleteUserGroup),
            "r-1",
        );
        // What the log lines name: the caller's trace, the shim's own span, sampled.
        assert_eq!(
            scope.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(scope.span_id().to_string(), "00f067aa0ba902b7");
        assert!(scope.is_sampled());
        let own_span = scope.span_id();
        let mut request = Request::post("http://upstream/api/get_customer/")
            .header(
                &TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap();
        scope.client_span(&mut request).replied(200);
        scope.end(200);
        let client = spans.try_recv().unwrap();
        let server = spans.try_recv().unwrap();
        assert_eq!(server.name, "DELETE /api/delete_user_group/");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(
            server.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(server.parent_span_is_remote);
        assert_eq!(client.name, "POST /api/get_customer/");
        assert_eq!(client.parent_span_id, server.span_context.span_id());
        assert_eq!(
            request.headers()[&TRACEPARENT],
            traceparent(&client.span_context)
        );
        let attribute = |key: &str| {
            server
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(
            attribute(LEGACY_ENDPOINT).as_deref(),
            Some("delete_user_group")
        );
        assert_eq!(server.span_context.span_id(), own_span);
        assert_eq!(attribute(REQUEST_ID).as_deref(), Some("r-1"));
        let fingerprint = attribute(CLIENT_FINGERPRINT).unwrap();
        assert!(!fingerprint.contains("secret"), "{fingerprint}");
        assert_eq!(
            attribute("http.response.status_code").as_deref(),
            Some("200")
        );
        // Nobody answers this queue's flush at shutdown: closed, it is not waited for.
        drop(spans);
    }
}
