//! One batch's body to the collector: an attempt within the export timeout, its reply read
//! briefly, and a transient failure tried again as [`super::retry`] says, within a window of a
//! few timeouts; a stop of the shim cuts a backoff short.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use tokio::sync::Notify;

use super::retry::{RETRY_WINDOW_TIMEOUTS, backoff, retry_after, retryable};
use super::settings::ExportHeaders;
use crate::error::error_chain;

/// The most of a collector's reply the exporter reads, in bytes. OTLP answers with a short
/// status message; a collector that sends more (an endless body) is not read further, and its
/// connection is dropped rather than reused.
pub const EXPORT_REPLY_BYTES: usize = 64 * 1024;
/// How long the body of the collector's reply is read once its head has come. The status is
/// what counts: a body that trickles must not turn a delivered batch into a failed one.
pub const REPLY_BODY_READ: Duration = Duration::from_secs(1);

/// Set when the shim stops: a backoff under way ends at once, and nothing more is retried.
#[derive(Default)]
pub struct Stopping {
    set: AtomicBool,
    wake: Notify,
}

impl Stopping {
    pub fn stop(&self) {
        self.set.store(true, Ordering::Release);
        // A permit is kept if the exporter is not waiting yet.
        self.wake.notify_one();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

/// What every export request carries besides its body.
const USER_AGENT: &str = concat!("explo-shim/", env!("CARGO_PKG_VERSION"));

/// Where and how a batch is sent.
pub struct Delivery {
    pub endpoint: http::Uri,
    /// The operator's headers (API keys): sent, never logged.
    pub headers: ExportHeaders,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    /// The most one export attempt may take to get the reply's head, connection included.
    pub timeout: Duration,
    pub stopping: Arc<Stopping>,
}

impl Delivery {
    /// Sends one batch, retrying a transient failure within the retry window; a stop cuts a
    /// backoff short and ends the retries.
    pub async fn deliver<C>(
        &self,
        client: &Client<C, Full<Bytes>>,
        body: Bytes,
    ) -> Result<(), String>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let window = self.timeout.saturating_mul(RETRY_WINDOW_TIMEOUTS);
        let deadline = tokio::time::Instant::now() + window;
        let mut retry = 0;
        loop {
            let failure = match self.send(client, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if !failure.retry || self.stopping.is_set() {
                return Err(failure.cause);
            }
            let wait = backoff(retry, failure.retry_after);
            // Another attempt only if it can take its whole timeout within the window.
            if tokio::time::Instant::now() + wait + self.timeout > deadline {
                return Err(format!(
                    "{}, and still failing at the end of the retry window ({window:?})",
                    failure.cause
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stopping.wake.notified() => {
                    return Err(format!("{}; not retried: the shim is stopping", failure.cause));
                }
            }
            retry += 1;
        }
    }

    /// One attempt: the reply's head within the timeout, then a little of its body.
    async fn send<C>(&self, client: &Client<C, Full<Bytes>>, body: Bytes) -> Result<(), Failure>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let mut request = Request::post(self.endpoint.clone())
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::new(body))
            .map_err(|error| Failure::permanent(error.to_string()))?;
        let headers = request.headers_mut();
        // The operator's first (a `User-Agent` of theirs wins); then the ones that describe
        // the body, which the settings refuse to take from the operator.
        for (name, value) in &self.headers.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(encoding) = self.content_encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let clock = self.timeout;
        let response = match tokio::time::timeout(clock, client.request(request)).await {
            Ok(Ok(response)) => response,
            // No connection, or it broke: transient, as far as the exporter can tell.
            // A certificate the exporter does not trust will not be trusted a second later.
            Ok(Err(error)) if refused_by_tls(&error) => {
                return Err(Failure::permanent(error_chain(&error)));
            }
            Ok(Err(error)) => return Err(Failure::transient(error_chain(&error), None)),
            Err(_) => return Err(Failure::transient(format!("no reply in {clock:?}"), None)),
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        // Read to the end so the connection can be used again, but only a short reply and
        // briefly: past the cap or the clock the body is dropped unread, which closes the
        // connection. The status alone decides.
        let _ = tokio::time::timeout(
            REPLY_BODY_READ,
            Limited::new(response.into_body(), EXPORT_REPLY_BYTES).collect(),
        )
        .await;
        let cause = format!("the collector answered {status}");
        match status {
            status if status.is_success() => Ok(()),
            status if retryable(status) => Err(Failure::transient(cause, wait)),
            _ => Err(Failure::permanent(cause)),
        }
    }
}

/// Whether `error` is TLS refusing the collector (an untrusted certificate, a protocol
/// mismatch) rather than the network failing.
fn refused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<rustls::Error>() {
            return true;
        }
        // An I/O error's `source` skips the error it wraps (the TLS connector wraps the TLS
        // stream's I/O error in another): look inside each.
        let mut wrapped: &(dyn std::error::Error + 'static) = error;
        while let Some(inner) = wrapped
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.is::<rustls::Error>() {
                return true;
            }
            wrapped = inner;
        }
        cause = error.source();
    }
    false
}

/// Why an attempt failed, and whether another may succeed.
struct Failure {
    cause: String,
    retry: bool,
    /// The collector's `Retry-After`, capped.
    retry_after: Option<Duration>,
}

impl Failure {
    fn transient(cause: String, retry_after: Option<Duration>) -> Self {
        Self {
            cause,
            retry: true,
            retry_after,
        }
    }

    fn permanent(cause: String) -> Self {
        Self {
            cause,
            retry: false,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A collector that answers every request with `head` and then sends nothing more, the
    /// connection held open; it counts the requests.
    async fn collector(head: &'static str) -> (http::Uri, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut request = vec![0; 64 * 1024];
                    let _ = stream.read(&mut request).await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(head.as_bytes()).await;
                    std::future::pending::<()>().await;
                });
            }
        });
        (uri.parse().unwrap(), count)
    }

    fn delivery(endpoint: http::Uri) -> Delivery {
        Delivery {
            endpoint,
            headers: ExportHeaders::default(),
            content_type: "application/x-protobuf",
            content_encoding: None,
            timeout: Duration::from_secs(5),
            stopping: Arc::default(),
        }
    }

    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build(HttpConnector::new())
    }

    #[tokio::test]
    async fn a_2xx_whose_body_never_ends_is_delivered_within_the_body_clock() {
        let (uri, count) =
            collector("HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\npartial").await;
        let started = std::time::Instant::now();
        let delivered = delivery(uri)
            .deliver(&client(), Bytes::from_static(b"spans"))
            .await;
        assert_eq!(delivered, Ok(()));
        assert!(started.elapsed() < REPLY_BODY_READ + Duration::from_secs(2));
        assert_eq!(count.load(Ordering::SeqCst), 1, "not sent again");
    }

    #[tokio::test]
    async fn a_refusal_for_good_is_not_retried() {
        let (uri, count) = collector("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let delivered = delivery(uri)
            .deliver(&client(), Bytes::from_static(b"spans"))
            .await;
        assert!(delivered.unwrap_err().contains("400"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stop_ends_the_retries() {
        let (uri, count) =
            collector("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let delivery = delivery(uri);
        delivery.stopping.stop();
        let delivered = delivery
            .deliver(&client(), Bytes::from_static(b"spans"))
            .await;
        assert!(delivered.unwrap_err().contains("503"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
