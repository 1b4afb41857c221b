//! The fake upstream: a small hyper server on a port of its own that records every request it
//! receives and answers with whatever the test's handler says; and the emulator served the
//! same way.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

use super::{TEAM_TOKEN, TOKEN_HEADER};

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("upstream body is JSON")
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the fake upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
    /// Send the body, then never end the stream.
    pub stall: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
            delay: Duration::ZERO,
            stall: false,
        }
    }
    pub fn raw(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
            stall: false,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn stalled(mut self) -> Self {
        self.stall = true;
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Sends its bytes, then stays open without ending the stream.
struct StallingBody(Option<Bytes>);

impl hyper::body::Body for StallingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(bytes) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            None => std::task::Poll::Pending,
        }
    }
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with_tls(handler, None).await
    }

    /// Serves HTTPS with `tls`, offering h2 and http/1.1 by ALPN.
    pub async fn start_with_tls(
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                let service = service_fn(move |request: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let seen = Recorded {
                            method: parts.method,
                            target: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        };
                        let reply = handler(&seen);
                        recorded.lock().unwrap().push(seen);
                        if !reply.delay.is_zero() {
                            super::wait::pace(reply.delay).await;
                        }
                        let body = if reply.stall {
                            StallingBody(Some(reply.body)).boxed_unsync()
                        } else {
                            Full::new(reply.body)
                                .map_err(|never| match never {})
                                .boxed_unsync()
                        };
                        let mut response = Response::new(body);
                        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                        for (name, value) in reply.headers {
                            response.headers_mut().append(
                                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                                value.parse().unwrap(),
                            );
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Answers every request with `reply`.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream that knows one credential, [`TEAM_TOKEN`]: its calls succeed (customer `g1`),
/// every other credential is refused with 401.
pub async fn team_only_upstream() -> FakeUpstream {
    FakeUpstream::start(
        |request| match request.headers.get(TOKEN_HEADER).map(|v| v.as_bytes()) {
            Some(token) if token == TEAM_TOKEN.as_bytes() => {
                Reply::json(200, json!({"success": 1, "customer": customer("g1", "t")}))
            }
            _ => Reply::json(401, json!({"detail": "Invalid token."})),
        },
    )
    .await
}

/// A Customer object as the docs show it, with the given token.
pub fn customer(provided_id: &str, token: &str) -> Value {
    serde_json::json!({
        "token": token, "name": "Example 1", "provided_id": provided_id, "is_demo_group": false,
        "emails": ["user@example.com"], "group_tags": ["sales"],
        "properties": {"filterValue": "value"}, "computed_properties": {"filterValue": "value"},
        "access_group": "Production",
        "parent_schema_datasource_mapping": {"40": "213", "134": "386"},
        "computed_parent_schema_datasource_mapping": {"40": "213", "134": "386"},
        "hierarchy_level": "Customer"
    })
}

/// `emulator` serving on a loopback port of its own (bound to port 0 and kept) for the rest of the test; its base URL.
pub async fn serve_emulator(emulator: explo_shim::emulator::Emulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(explo_shim::emulator::serve(
        listener,
        Arc::new(emulator),
        std::future::pending(),
    ));
    url
}
