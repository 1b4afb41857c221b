//! Test harness: the real `explo-shim` binary against an in-process fake upstream.
//!
//! The shim runs as a child process on `127.0.0.1:0` with JSON logs on stderr; the harness
//! reads the bound addresses from its "listening" line and keeps every log line for
//! assertions. The fake upstream is a small hyper server that records what it receives and
//! answers with whatever the test's handler says.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

pub const TOKEN_HEADER: &str = "explo-authorization";
/// A team token that must never appear in any log line.
pub const TEAM_TOKEN: &str = "Token sk_live_team_secret_0123456789abcdef";

// ---------------------------------------------------------------- fake upstream

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

// ---------------------------------------------------------------- scripted TCP upstream

/// An upstream that runs `script` on every accepted TCP connection: for faults no HTTP server
/// would commit on purpose (resets, lies, silence).
pub struct RawUpstream {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(script(stream));
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (and a Content-Length body) from `stream`; returns it as text.
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return String::from_utf8_lossy(&data).into_owned();
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&data).into_owned(),
            Ok(n) => data.extend_from_slice(&buffer[..n]),
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
                            tokio::time::sleep(reply.delay).await;
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

/// A test CA and a server certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestPki {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }
}

impl TestPki {
    /// An HTTPS client (h2 or http/1.1 by ALPN) that trusts only this CA.
    pub fn client(
        &self,
    ) -> Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    > {
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Client::builder(TokioExecutor::new()).build(connector)
    }
}

// ---------------------------------------------------------------- the shim process

pub struct Shim {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Shim {
    /// The shim in front of `upstream_url`, at trace level, with any extra flags.
    pub fn start(upstream_url: &str, extra_args: &[&str]) -> Shim {
        Self::start_with_env(upstream_url, extra_args, &[])
    }

    pub fn start_with_env(upstream_url: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Shim {
        let mut args = vec!["--upstream", upstream_url];
        args.extend_from_slice(extra_args);
        Self::spawn(&args, env)
    }

    /// `explo-shim --demo`: the shim in front of its own emulator.
    pub fn start_demo() -> Shim {
        Self::spawn(&["--demo"], &[])
    }

    /// `explo-shim --demo` with more flags (a `--config`, say).
    pub fn start_demo_with(extra_args: &[&str]) -> Shim {
        let mut args = vec!["--demo"];
        args.extend_from_slice(extra_args);
        Self::spawn(&args, &[])
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Shim {
        let mut command = Command::new(env!("CARGO_BIN_EXE_explo-shim"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .env("RUST_LOG", "trace")
            .env_remove("EXPLO_SHIM_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn explo-shim");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listening = logs.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["message"] == "explo-shim listening").then(|| {
                    (
                        event["listen"].as_str().unwrap().parse().unwrap(),
                        event["admin"].as_str().unwrap().parse().unwrap(),
                    )
                })
            });
            if let Some((addr, admin)) = listening {
                return Shim {
                    child,
                    addr,
                    admin,
                    logs,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "explo-shim exited early with {status}: {:?}",
                    logs.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "explo-shim did not start: {:?}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Polls `/metrics` until it has `line` (a whole line, name and value), for up to 10 s.
    pub async fn wait_for_metric(&self, line: &str, failure: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = send("GET", &self.admin_url("/metrics"), &[], "").await;
            if String::from_utf8_lossy(&metrics.body)
                .lines()
                .any(|found| found == line)
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{failure}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every log line so far, after a moment for the reader thread to catch up.
    pub fn logs(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(100));
        self.logs.lock().unwrap().clone()
    }

    /// Parsed log events on `target`.
    pub fn events(&self, target: &str) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["target"] == target)
            .collect()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port with nothing listening on it (bound, then released).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server with `config_file` on free ports and expects it to refuse to start.
pub fn start_up_output(config_file: &str) -> std::process::Output {
    run_binary(
        &[
            "--config",
            config_file,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &[],
    )
}

/// Runs the binary to completion (for start-up failures and --check-config).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    run_binary_with_stdin(args, env, "")
}

/// Runs the binary to completion with `stdin` as its standard input.
pub fn run_binary_with_stdin(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_explo-shim"));
    command
        .args(args)
        .env_remove("EXPLO_SHIM_CONFIG")
        .env_remove("EXPLO_SHIM_ADMIN")
        .stdin(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command that exits before reading its input closes the pipe; that is fine here.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("explo-shim {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- clients

/// A reply as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts the shim's own error envelope with this status and code.
    pub fn assert_shim_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["success"], 0, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(!body["error"].as_str().unwrap_or("").is_empty(), "{body}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(
            self.header("content-length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(self.body.len())
        );
    }
}

/// One HTTP/1.1 request with a fresh connection.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Got {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(request.body(Full::new(body.into())).unwrap()),
    )
    .await
    .expect("reply within 20 s")
    .expect("request succeeds");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A JSON POST with the team token, as legacy clients send it.
pub async fn post_json(url: &str, body: &Value) -> Got {
    send(
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            (TOKEN_HEADER, TEAM_TOKEN),
        ],
        body.to_string(),
    )
    .await
}

/// Writes `request` on a raw TCP connection and returns everything read until the server
/// closes or `limit` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn doc_fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes a config file for one test; removed on drop.
pub struct TempConfig(pub std::path::PathBuf);

impl TempConfig {
    pub fn new(text: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "explo-shim-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------- emulator

/// `emulator` serving on a free loopback port for the rest of the test; its base URL.
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

// ---------------------------------------------------------------- redis

/// A `redis-server` of the test's own: a free loopback port, no persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts one, or says why it cannot. Without `redis-server` installed the test is
    /// skipped with a message, except where `EXPLO_SHIM_REQUIRE_REDIS` is set (`.ci/run` sets
    /// it after installing Redis), where that is a failure.
    pub fn start() -> Option<RedisServer> {
        Self::start_on(unused_port())
    }

    /// On a given port (to bring one back after an outage).
    pub fn start_on(port: u16) -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            let why = "redis-server is not installed (apt-get install redis-server; .ci/run \
                       installs it), so this Redis test cannot run";
            assert!(
                std::env::var_os("EXPLO_SHIM_REQUIRE_REDIS").is_none(),
                "{why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer { child, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops it, as an outage would.
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- usage over time

/// The start of the UTC period of `seconds` that `at` falls in, as `/usage` writes it.
pub fn period_start(at: std::time::SystemTime, seconds: u64) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(since / seconds * seconds),
    )
    .to_string()
}

/// `/usage`'s buckets of one kind for the first client's `endpoint`, checked against the calls
/// made between `before` and `after`: every one of them in the period they were made in. Made
/// within one period (the usual case), they are all in one bucket; across a boundary they are
/// split between its two sides, and only their sum can be known.
pub fn assert_buckets(
    usage: &Value,
    endpoint: &str,
    kind: &str,
    seconds: u64,
    (before, after): (std::time::SystemTime, std::time::SystemTime),
    calls: u64,
) {
    let found = usage["clients"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no {endpoint}: {usage}"));
    let (first, last) = (period_start(before, seconds), period_start(after, seconds));
    if first == last {
        assert_eq!(
            found[kind],
            json!([{"start": first, "calls": calls}]),
            "{usage}"
        );
    } else {
        let buckets = found[kind].as_array().unwrap();
        assert!(
            buckets
                .iter()
                .all(|bucket| bucket["start"] == first || bucket["start"] == last),
            "{usage}"
        );
        let sum: u64 = buckets.iter().map(|b| b["calls"].as_u64().unwrap()).sum();
        assert_eq!(sum, calls, "{usage}");
    }
}
