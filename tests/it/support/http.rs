//! Clients: one HTTP/1.1 request on a fresh connection, the legacy clients' JSON POST, and raw
//! bytes on a TCP connection for what a well-behaved client would never send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{TEAM_TOKEN, TOKEN_HEADER};

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
