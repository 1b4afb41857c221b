//! A batch of spans as one OTLP `ExportTraceServiceRequest`, built and written with the
//! OpenTelemetry project's own definitions (`opentelemetry-proto`): protobuf for
//! `http/protobuf`, its serde mapping for `http/json` (ids in hex, lowerCamelCase names, enums
//! as numbers, 64-bit integers as strings), gzipped when asked.

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression as GzipLevel;
use flate2::write::GzEncoder;
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::{Attributes, ResourceAttributesWithSchema};
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::SpanData;
use prost::Message as _;

use super::settings::{Compression, Protocol, Settings};

/// The attribute naming this process among the shim's replicas.
pub const INSTANCE_ID: &str = "service.instance.id";

/// Writes export requests as `settings` ask, for one resource.
pub struct Encoder {
    resource: ResourceAttributesWithSchema,
    protocol: Protocol,
    compression: Compression,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// The encoder for `settings`' resource, with a `service.instance.id` of this process
    /// (a UUID v4) unless `OTEL_RESOURCE_ATTRIBUTES` named one.
    pub fn new(settings: &Settings) -> Self {
        let mut attributes: Vec<KeyValue> = settings
            .resource
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
            .collect();
        if !settings.resource.iter().any(|(key, _)| key == INSTANCE_ID) {
            attributes.push(KeyValue::new(INSTANCE_ID, uuid::Uuid::new_v4().to_string()));
        }
        Self {
            resource: ResourceAttributesWithSchema {
                attributes: Attributes::from(attributes),
                schema_url: None,
            },
            protocol: settings.protocol,
            compression: settings.compression,
        }
    }

    /// The request's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::HttpProtobuf => "application/x-protobuf",
            Protocol::HttpJson => "application/json",
        }
    }

    /// The request's `Content-Encoding`, if the body is compressed.
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self.compression {
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
        }
    }

    /// The request body for `spans`.
    pub fn body(&self, spans: Vec<SpanData>) -> Result<Bytes, String> {
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        let encoded = match self.protocol {
            Protocol::HttpProtobuf => request.encode_to_vec(),
            Protocol::HttpJson => serde_json::to_vec(&request)
                .map_err(|error| format!("cannot write the spans as JSON: {error}"))?,
        };
        match self.compression {
            Compression::None => Ok(Bytes::from(encoded)),
            Compression::Gzip => {
                let mut gzip = GzEncoder::new(Vec::new(), GzipLevel::fast());
                gzip.write_all(&encoded)
                    .and_then(|()| gzip.finish())
                    .map(Bytes::from)
                    .map_err(|error| format!("cannot gzip the spans: {error}"))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::io::Read as _;
    use std::time::{Duration, UNIX_EPOCH};

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use serde_json::{Value, json};

    use crate::observe::otel::settings::from_env;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_env(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318".to_owned())
                })
        })
        .unwrap()
        .settings
        .unwrap()
    }

    /// A SERVER span with an event and a link, for the otel tests.
    pub(crate) fn span() -> SpanData {
        let context = |trace: u128, span: u64| {
            SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        let mut events = SpanEvents::default();
        events.events.push(Event::new(
            "retry",
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_150_000_000),
            vec![KeyValue::new("attempt", 2_i64)],
            0,
        ));
        let mut links = SpanLinks::default();
        links.links.push(Link::new(
            context(
                0x1111_2222_3333_4444_5555_6666_7777_8888,
                0x0a0b_0c0d_0e0f_1011,
            ),
            vec![KeyValue::new("why", "batch")],
            0,
        ));
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x0102_0304_0506_0708,
            ),
            parent_span_id: SpanId::from(0x00f0_67aa_0ba9_02b7),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("POST /api/delete_user_group/"),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
            attributes: vec![
                KeyValue::new("url.path", "/api/delete_user_group/"),
                KeyValue::new("http.response.status_code", 502_i64),
            ],
            dropped_attributes_count: 0,
            events,
            links,
            status: Status::error("502"),
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("explo-shim")
                .with_version("1.2.3")
                .build(),
        }
    }

    #[test]
    fn protobuf_carries_the_span_its_events_links_and_the_resource() {
        let encoder = Encoder::new(&settings(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod",
        )]));
        assert_eq!(encoder.content_type(), "application/x-protobuf");
        assert_eq!(encoder.content_encoding(), None);
        let body = encoder.body(vec![span()]).unwrap();
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        let attribute = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(text) => Some(text.clone()),
                    _ => None,
                })
        };
        assert_eq!(attribute("service.name").as_deref(), Some("explo-shim"));
        assert_eq!(
            attribute("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            attribute("deployment.environment.name").as_deref(),
            Some("prod")
        );
        let instance = attribute(INSTANCE_ID).unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(&instance).unwrap().get_version_num(),
            4
        );
        let scope = &request.resource_spans[0].scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().version, "1.2.3");
        let span = &scope.spans[0];
        assert_eq!(hex(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(span.kind, 2);
        assert_eq!(span.flags, 0x301);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(span.events[0].name, "retry");
        assert_eq!(hex(&span.links[0].span_id), "0a0b0c0d0e0f1011");
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.status.as_ref().unwrap().message, "502");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn json_follows_the_otlp_json_mapping_and_gzip_wraps_it() {
        let encoder = Encoder::new(&settings(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7"),
        ]));
        assert_eq!(encoder.content_type(), "application/json");
        assert_eq!(encoder.content_encoding(), Some("gzip"));
        let body = encoder.body(vec![span()]).unwrap();
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut json)
            .unwrap();
        let encoded: Value = serde_json::from_slice(&json).unwrap();
        let resource = &encoded["resourceSpans"][0];
        let instances: Vec<&Value> = resource["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|kv| kv["key"] == INSTANCE_ID)
            .collect();
        assert_eq!(
            instances,
            [&json!({"key": INSTANCE_ID, "value": {"stringValue": "pod-7"}})]
        );
        let span = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["flags"], 0x301);
        assert_eq!(
            span["attributes"][1],
            json!({"key": "http.response.status_code", "value": {"intValue": "502"}})
        );
        assert_eq!(span["status"], json!({"code": 2, "message": "502"}));
        assert_eq!(span["events"][0]["name"], "retry");
        assert_eq!(
            span["links"][0]["traceId"],
            "11112222333344445555666677778888"
        );
        // And it reads back through the same definitions.
        let request: ExportTraceServiceRequest = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            request.resource_spans[0].scope_spans[0].spans[0]
                .events
                .len(),
            1
        );
    }
}
