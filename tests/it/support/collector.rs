//! An OTLP/HTTP collector of the test's own: it keeps every export request's headers and its
//! body decoded with the OpenTelemetry project's definitions (`ExportTraceServiceRequest`,
//! protobuf or JSON by `Content-Type`, gunzipped when `Content-Encoding: gzip`), then
//! written back in the OTLP/JSON mapping so tests read spans as JSON whatever the wire said.
//! It can listen over TLS, take requests and never answer (a collector slower than any
//! timeout), or answer the first requests with statuses of the test's choosing (a collector
//! that is overloaded for a while).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::Value;

use super::pki::TestPki;
use super::wait::until_ok;

/// One export request as it arrived.
#[derive(Clone, Debug)]
pub struct Post {
    /// The request target: path and query.
    pub target: String,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with (0 for a silent collector).
    pub status: u16,
    pub headers: HeaderMap,
    /// The decoded request, in the OTLP/JSON mapping.
    pub request: Value,
}

impl Post {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// An answer a scripted collector gives instead of 200: a status and a `Retry-After`.
pub type CollectorReply = (u16, Option<&'static str>);

pub struct Collector {
    addr: SocketAddr,
    scheme: &'static str,
    posts: Arc<Mutex<Vec<Post>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Self {
        Self::spawn(None, true, vec![]).await
    }

    /// A collector that answers its first requests with `replies`, in order, then 200.
    pub async fn start_answering(replies: Vec<CollectorReply>) -> Self {
        Self::spawn(None, true, replies).await
    }

    /// A collector over TLS, with `pki`'s certificate for 127.0.0.1.
    pub async fn start_tls(pki: &TestPki) -> Self {
        Self::spawn(Some(pki.acceptor.clone()), true, vec![]).await
    }

    /// A collector that reads every request and never answers.
    pub async fn start_silent() -> Self {
        Self::spawn(None, false, vec![]).await
    }

    async fn spawn(
        tls: Option<tokio_rustls::TlsAcceptor>,
        answers: bool,
        replies: Vec<CollectorReply>,
    ) -> Self {
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let posts = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&posts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = Arc::clone(&kept);
                let replies = Arc::clone(&replies);
                let service = service_fn(move |request: Request<Incoming>| {
                    let kept = Arc::clone(&kept);
                    let replies = Arc::clone(&replies);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        assert!(parts.uri.path().ends_with("/v1/traces"), "{}", parts.uri);
                        let request = decode(&parts.headers, &body);
                        let (status, retry_after) =
                            replies.lock().unwrap().pop_front().unwrap_or((200, None));
                        kept.lock().unwrap().push(Post {
                            target: parts.uri.to_string(),
                            at: Instant::now(),
                            status: if answers { status } else { 0 },
                            headers: parts.headers,
                            request,
                        });
                        if !answers {
                            std::future::pending::<()>().await;
                        }
                        let mut response = Response::builder().status(status);
                        if let Some(wait) = retry_after {
                            response = response.header("retry-after", wait);
                        }
                        Ok::<_, Infallible>(
                            response.body(Full::new(Bytes::from_static(b"{}"))).unwrap(),
                        )
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            posts,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Every export request received so far.
    pub fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Every span received so far, each with its resource's `service.name` added as
    /// `"service"`.
    pub fn spans(&self) -> Vec<Value> {
        let mut spans = vec![];
        for post in self.posts() {
            for resource in post.request["resourceSpans"].as_array().unwrap() {
                let service = resource_attribute(resource, "service.name")
                    .map(Value::from)
                    .unwrap_or(Value::Null);
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    for span in scope["spans"].as_array().unwrap() {
                        let mut span = span.clone();
                        span["service"] = service.clone();
                        spans.push(span);
                    }
                }
            }
        }
        spans
    }

    /// Waits (up to 20 s) until `count` spans of `trace_id` have arrived.
    pub async fn trace(&self, trace_id: &str, count: usize) -> Vec<Value> {
        until_ok(Duration::from_secs(20), || async {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|span| span["traceId"] == trace_id)
                .collect();
            if spans.len() >= count {
                Ok(spans)
            } else {
                Err(format!(
                    "{count} spans of {trace_id} never arrived: {:#?}",
                    self.spans()
                ))
            }
        })
        .await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body as the official definitions read it, by `Content-Type` and `Content-Encoding`.
fn decode(headers: &HeaderMap, body: &[u8]) -> Value {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    };
    let mut plain = Vec::new();
    let body = match header("content-encoding") {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .expect("a gzip body");
            &plain[..]
        }
        "" => body,
        other => panic!("unexpected Content-Encoding {other}"),
    };
    let request = match header("content-type") {
        "application/x-protobuf" => {
            ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request")
        }
        "application/json" => serde_json::from_slice(body).expect("an OTLP/JSON request"),
        other => panic!("unexpected Content-Type {other}"),
    };
    serde_json::to_value(&request).unwrap()
}

/// A `stringValue` attribute of a resource (`resourceSpans[i]`).
pub fn resource_attribute(resource: &Value, key: &str) -> Option<String> {
    resource["resource"]["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .and_then(|kv| kv["value"]["stringValue"].as_str())
        .map(str::to_owned)
}
