//! The single client to the configured upstream.
//!
//! One pooled hyper client, built once: HTTPS through rustls (ring provider, the web PKI roots
//! plus an optional extra CA file), HTTP/2 or HTTP/1.1 chosen by ALPN, plain HTTP only when the
//! operator configured an `http://` upstream. Every request's target is built here from the
//! configured base URL, so nothing a client sends can choose where the shim connects.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::body::ProxyBody;
use crate::config::{ConfigError, RateLimit, UpstreamConfig, UpstreamUrl};
use crate::error::ShimError;
use crate::metrics::{Metrics, RouteKind};
use crate::ratelimit::{Admission, UpstreamBudget, retry_after_delay};

/// A reply read in full (translated calls only; pass-through streams).
#[derive(Debug)]
pub struct CollectedReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The upstream: where it is, how long it may take, the pooled client that reaches it, and
/// the budget that paces calls to it.
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    url: UpstreamUrl,
    timeout: Duration,
    budget: Option<UpstreamBudget>,
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// Builds the client. Fails only on configuration problems (an unreadable CA file).
    pub fn new(
        config: &UpstreamConfig,
        rate_limit: Option<&RateLimit>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let tls = tls_config(config)?;
        let mut http = HttpConnector::new();
        // The scheme is checked by the TLS layer above, which sees the configured URL.
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            // Without a timer the idle timeout is never enforced.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let budget = rate_limit.map(|limit| {
            UpstreamBudget::new(
                limit.per_minute,
                limit.burst,
                limit.max_wait,
                Instant::now(),
            )
        });
        Ok(Self {
            client,
            url: config.url.clone(),
            timeout: config.timeout,
            budget,
            metrics,
        })
    }

    /// Waits for this call's turn in the upstream budget, or refuses it.
    async fn take_turn(&self) -> Result<(), ShimError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        match budget.admit(Instant::now()) {
            Admission::Go => Ok(()),
            Admission::WaitThenGo(delay) => {
                self.metrics.rate_limit_wait(delay);
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Admission::Refuse { retry_after } => {
                self.metrics.rate_limit_refused();
                Err(ShimError::RateLimited { retry_after })
            }
        }
    }

    /// Learns from the reply head: a 429 with `Retry-After` holds every later call.
    fn observe(&self, kind: RouteKind, started: Instant, status: StatusCode, headers: &HeaderMap) {
        self.metrics.upstream_latency(kind, started.elapsed());
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.metrics.upstream_throttled();
            if let (Some(budget), Some(delay)) =
                (&self.budget, retry_after_delay(headers, SystemTime::now()))
            {
                budget.upstream_throttled(Instant::now() + delay);
            }
        }
    }

    /// The configured base URL.
    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// The whole-request limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The upstream URI for an origin-form `path_and_query`, under the configured prefix.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, ShimError> {
        if self.url.path_prefix.is_empty() {
            // The common case: reuse the target as it is, no new string.
            let target = http::uri::PathAndQuery::try_from(path_and_query)
                .map_err(|_| ShimError::BadRequestTarget)?;
            return self.uri_with(target);
        }
        Uri::builder()
            .scheme(self.url.scheme.clone())
            .authority(self.url.authority.clone())
            .path_and_query(format!("{}{}", self.url.path_prefix, path_and_query))
            .build()
            .map_err(|_| ShimError::BadRequestTarget)
    }

    /// The upstream URI for a request target that needs no prefix.
    fn uri_with(&self, target: http::uri::PathAndQuery) -> Result<Uri, ShimError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.url.scheme.clone());
        parts.authority = Some(self.url.authority.clone());
        parts.path_and_query = Some(target);
        Uri::from_parts(parts).map_err(|_| ShimError::BadRequestTarget)
    }

    /// The upstream URI for a client's request target, under the configured prefix.
    pub fn uri_for_target(&self, target: &http::uri::PathAndQuery) -> Result<Uri, ShimError> {
        if self.url.path_prefix.is_empty() {
            return self.uri_with(target.clone());
        }
        self.uri(target.as_str())
    }

    /// Sends `request` and waits for the reply headers, within the upstream timeout.
    pub async fn send(&self, request: Request<ProxyBody>) -> Result<Response<Incoming>, ShimError> {
        self.take_turn().await?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| ShimError::UpstreamTimeout {
                timeout: self.timeout,
            })?
            .map_err(classify_client_error)?;
        self.observe(
            RouteKind::PassThrough,
            started,
            response.status(),
            response.headers(),
        );
        Ok(response)
    }

    /// Sends `request` and reads the whole reply (at most `reply_limit` bytes), all within
    /// the upstream timeout.
    pub async fn exchange(
        &self,
        request: Request<ProxyBody>,
        reply_limit: u64,
    ) -> Result<CollectedReply, ShimError> {
        self.take_turn().await?;
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(classify_client_error)?;
            self.observe(
                RouteKind::Translated,
                started,
                response.status(),
                response.headers(),
            );
            let (parts, body) = response.into_parts();
            let limit = usize::try_from(reply_limit).unwrap_or(usize::MAX);
            let body = Limited::new(body, limit).collect().await.map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    ShimError::UpstreamInvalidReply {
                        detail: format!("reply larger than {reply_limit} bytes"),
                    }
                } else {
                    ShimError::UpstreamFailed {
                        detail: error_chain(error.as_ref()),
                    }
                }
            })?;
            Ok(CollectedReply {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ShimError::UpstreamTimeout {
                timeout: self.timeout,
            })?
    }
}

/// Connect-phase failures mean nothing reached the upstream; anything later may have.
fn classify_client_error(error: hyper_util::client::legacy::Error) -> ShimError {
    let detail = error_chain(&error);
    if error.is_connect() {
        ShimError::UpstreamUnreachable { detail }
    } else {
        ShimError::UpstreamFailed { detail }
    }
}

/// An error and all its sources on one line, for the log.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &config.ca_file {
        let invalid = |reason: String| {
            ConfigError(format!(
                "invalid `upstream.ca_file` {}: {reason}",
                path.display()
            ))
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|error| invalid(error.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| invalid(error.to_string()))?;
        if certificates.is_empty() {
            return Err(invalid("no PEM certificates found".to_owned()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| invalid(error.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError(format!("TLS set-up failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Overrides, Setting};
    use crate::config::Config;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(10))
    }

    fn upstream_config(url: &str) -> UpstreamConfig {
        let overrides = Overrides {
            upstream: Some(Setting {
                value: url.to_owned(),
                origin: "--upstream",
            }),
            ..Overrides::default()
        };
        Config::resolve(&overrides).unwrap().upstream
    }

    #[tokio::test]
    async fn uris_are_built_from_the_configured_base_only() {
        let upstream = Upstream::new(
            &upstream_config("https://api.explo.co/base/"),
            None,
            metrics(),
        )
        .unwrap();
        assert_eq!(
            upstream.uri("/api/update_customer/?a=1").unwrap(),
            "https://api.explo.co/base/api/update_customer/?a=1"
        );
    }

    #[test]
    fn a_bad_ca_file_is_a_config_error_that_names_the_key() {
        let mut config = upstream_config("https://api.explo.co");
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let error = Upstream::new(&config, None, metrics())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("upstream.ca_file"), "{error}");
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Bind then drop to find a port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = Upstream::new(
            &upstream_config(&format!("http://127.0.0.1:{port}")),
            None,
            metrics(),
        )
        .unwrap();
        let request = Request::get(upstream.uri("/x").unwrap())
            .body(crate::body::full_body(Bytes::new()))
            .unwrap();
        let error = upstream.send(request).await.unwrap_err();
        assert!(
            matches!(error, ShimError::UpstreamUnreachable { .. }),
            "{error:?}"
        );
    }
}
