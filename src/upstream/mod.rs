//! The client to the configured upstream.
//!
//! Built once from the configuration: HTTPS through rustls (ring provider, the web PKI roots
//! plus an optional extra CA file), HTTP/2 or HTTP/1.1 chosen by ALPN, plain HTTP only when the
//! operator configured an `http://` upstream. Every request's target is built here from the
//! configured base URL, so nothing a client sends can choose where the shim connects. Each
//! serving thread gets its own connections ([`Upstream::for_this_thread`], [`pool`]); the
//! budget and the metrics are shared by all.
//!
//! [`connect`] makes a connection (TCP, TLS, ALPN) and classifies its failures; [`pool`] keeps
//! each thread's connections, and [`pool::bodies`] are the request and reply bodies that keep the pool's
//! accounts; [`budget`] is the local upstream budget.

pub mod budget;
pub(crate) mod connect;
pub(crate) mod pool;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::message::body::ProxyBody;
use crate::server::coarse_timer;
use arc_swap::ArcSwap;

use crate::config::{ConfigError, RateLimit, UpstreamConfig, UpstreamUrl};
use crate::error::{ShimError, error_chain};
use crate::fleet::FleetLink;
use crate::observe::metrics::{Metrics, RouteKind, UpstreamFailure};
use crate::observe::otel::{ClientSpan, TraceScope};
use crate::upstream::budget::{Admission, UpstreamBudget, retry_after_delay};
use connect::Endpoint;
use pool::ConnectionPool;
use pool::bodies::PooledBody;

/// A reply read in full (translated calls only; pass-through streams).
#[derive(Debug)]
pub(crate) struct CollectedReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A reply read in full, or one too large to read in full.
#[derive(Debug)]
pub(crate) enum Exchanged {
    Collected(CollectedReply),
    TooLarge(LargeReply),
}

/// A reply larger than the limit: its head, the bytes read so far and the rest of its body.
#[derive(Debug)]
pub(crate) struct LargeReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub read: Bytes,
    pub rest: PooledBody,
}

/// The upstream: where it is, how long it may take, this thread's connections to it, and the
/// budget that paces calls to it.
pub(crate) struct Upstream {
    connections: ConnectionPool,
    /// This thread's connection to the fleet's Redis, when the budget is shared.
    fleet: Option<FleetLink>,
    shared: Arc<Shared>,
}

/// The shared budget's settings, for a reload to replace.
pub(crate) struct BudgetFigures(Arc<Shared>);

impl BudgetFigures {
    /// Puts `limit` in service for every call from now on.
    pub fn set(&self, limit: &RateLimit) {
        if let Some((current, local)) = &self.0.budget {
            local.set_figures(
                limit.per_minute,
                limit.burst,
                limit.max_wait,
                limit.max_upstream_hold,
            );
            current.store(Arc::new(limit.clone()));
        }
    }
}

/// What every thread's [`Upstream`] has in common.
struct Shared {
    endpoint: Endpoint,
    url: UpstreamUrl,
    timeout: Duration,
    /// The budget's settings and this replica's own budget (the only one without a fleet, the
    /// fallback with one); `None` when the budget is off. A reload replaces the settings.
    budget: Option<(ArcSwap<RateLimit>, UpstreamBudget)>,
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// Builds the client. Fails only on configuration problems (an unreadable CA file).
    pub fn new(
        config: &UpstreamConfig,
        rate_limit: Option<&RateLimit>,
        fleet: Option<FleetLink>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let tls = Arc::new(tls_config(config)?);
        let endpoint = Endpoint::new(
            &config.url,
            tls,
            config.connect_timeout,
            config.pool_idle_timeout,
            config.pool_max_idle,
            Arc::clone(&metrics),
        )
        .map_err(|error| ConfigError(format!("`upstream.url`: {error}")))?;
        let budget = rate_limit.map(|limit| {
            let local = UpstreamBudget::new(
                limit.per_minute,
                limit.burst,
                limit.max_wait,
                limit.max_upstream_hold,
                Instant::now(),
            );
            (ArcSwap::from_pointee(limit.clone()), local)
        });
        Ok(Self {
            connections: ConnectionPool::new(endpoint.clone()),
            fleet: fleet.filter(|_| budget.is_some()),
            shared: Arc::new(Shared {
                endpoint,
                url: config.url.clone(),
                timeout: config.timeout,
                budget,
                metrics,
            }),
        })
    }

    /// The same upstream, budget and metrics with connections of its own, for another serving
    /// thread.
    pub fn for_this_thread(&self) -> Self {
        Self {
            connections: ConnectionPool::new(self.shared.endpoint.clone()),
            fleet: self.fleet.as_ref().map(FleetLink::for_this_thread),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Where a reload puts new budget figures; `None` when the budget is off.
    pub fn budget(&self) -> Option<BudgetFigures> {
        self.shared
            .budget
            .is_some()
            .then(|| BudgetFigures(Arc::clone(&self.shared)))
    }

    /// Waits for this call's turn in the upstream budget, or refuses it.
    async fn take_turn(&self) -> Result<(), ShimError> {
        let Some((limit, local)) = &self.shared.budget else {
            return Ok(());
        };
        let limit = limit.load_full();
        let shared = match &self.fleet {
            Some(fleet) => fleet.admit(&limit).await,
            None => None,
        };
        // Without an answer from the fleet's Redis, this replica's own budget decides.
        let admission = shared.unwrap_or_else(|| local.admit(Instant::now()));
        match admission {
            Admission::Go => Ok(()),
            Admission::WaitThenGo(delay) => {
                self.shared.metrics.rate_limit_wait(delay);
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Admission::Refuse { retry_after } => {
                self.shared.metrics.rate_limit_refused();
                Err(ShimError::RateLimited { retry_after })
            }
        }
    }

    /// Learns from the reply head: a 429 with `Retry-After` holds every later call.
    fn observe(&self, kind: RouteKind, started: Instant, status: StatusCode, headers: &HeaderMap) {
        self.shared
            .metrics
            .upstream_latency(kind, started.elapsed());
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.shared.metrics.upstream_throttled();
            let Some((limit, local)) = &self.shared.budget else {
                return;
            };
            let limit = limit.load();
            // Capped: a Retry-After of years must not hold every call until a restart.
            let Some(delay) =
                retry_after_delay(headers, SystemTime::now(), limit.max_upstream_hold)
            else {
                return;
            };
            local.upstream_throttled(Instant::now(), delay);
            if let Some(fleet) = self.fleet.clone() {
                let longest = limit.max_upstream_hold;
                // Off the request path: every replica waits, not just this one.
                tokio::spawn(async move { fleet.hold_for(delay, longest).await });
            }
        }
    }

    /// The upstream URI for an origin-form `path_and_query`, under the configured prefix.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, ShimError> {
        if self.shared.url.path_prefix.is_empty() {
            // The common case: reuse the target as it is, no new string.
            let target = http::uri::PathAndQuery::try_from(path_and_query)
                .map_err(|_| ShimError::BadRequestTarget)?;
            return self.uri_with(target);
        }
        Uri::builder()
            .scheme(self.shared.url.scheme.clone())
            .authority(self.shared.url.authority.clone())
            .path_and_query(format!("{}{}", self.shared.url.path_prefix, path_and_query))
            .build()
            .map_err(|_| ShimError::BadRequestTarget)
    }

    /// The upstream URI for a request target that needs no prefix.
    fn uri_with(&self, target: http::uri::PathAndQuery) -> Result<Uri, ShimError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.shared.url.scheme.clone());
        parts.authority = Some(self.shared.url.authority.clone());
        parts.path_and_query = Some(target);
        Uri::from_parts(parts).map_err(|_| ShimError::BadRequestTarget)
    }

    /// The upstream URI for a client's request target, under the configured prefix.
    pub fn uri_for_target(&self, target: &http::uri::PathAndQuery) -> Result<Uri, ShimError> {
        if self.shared.url.path_prefix.is_empty() {
            return self.uri_with(target.clone());
        }
        self.uri(target.as_str())
    }

    /// Sends `request` and waits for the reply headers, within the upstream timeout.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, ShimError> {
        let span = self.turn_traced(&mut request).await?;
        let started = Instant::now();
        let response = coarse_timer::timeout(self.shared.timeout, self.connections.send(request))
            .await
            .map_err(|_| self.timed_out())
            .and_then(|sent| sent);
        if let Some(span) = span {
            match &response {
                Ok(response) => span.replied(response.status().as_u16()),
                Err(error) => span.failed(error.code(), error.to_string()),
            }
        }
        let response = response?;
        self.observe(
            RouteKind::PassThrough,
            started,
            response.status(),
            response.headers(),
        );
        Ok(response)
    }

    /// Sends `request` and reads the whole reply (at most `reply_limit` bytes), all within
    /// the upstream timeout. A larger reply is an error: for look-ups, which write nothing.
    pub async fn exchange(
        &self,
        request: Request<ProxyBody>,
        reply_limit: u64,
    ) -> Result<CollectedReply, ShimError> {
        match self.exchange_keeping_large(request, reply_limit).await? {
            Exchanged::Collected(reply) => Ok(reply),
            Exchanged::TooLarge(_) => {
                self.shared
                    .metrics
                    .upstream_error(UpstreamFailure::InvalidReply);
                Err(reply_too_large(reply_limit))
            }
        }
    }

    /// Like [`Upstream::exchange`], but a reply larger than `reply_limit` is kept: its head
    /// and the bytes read so far, with the rest still to stream. For the call that writes,
    /// whose success must reach the client even when it cannot be translated.
    pub async fn exchange_keeping_large(
        &self,
        mut request: Request<ProxyBody>,
        reply_limit: u64,
    ) -> Result<Exchanged, ShimError> {
        let span = self.turn_traced(&mut request).await?;
        let started = Instant::now();
        let exchange = async {
            let response = self.connections.send(request).await?;
            self.observe(
                RouteKind::Translated,
                started,
                response.status(),
                response.headers(),
            );
            let (parts, mut body) = response.into_parts();
            let limit = usize::try_from(reply_limit).unwrap_or(usize::MAX);
            let mut read = bytes::BytesMut::new();
            while let Some(frame) = body.frame().await {
                // Counted by the body itself (`PooledBody`), like a pass-through reply's.
                let frame = frame.map_err(|error| ShimError::UpstreamFailed {
                    detail: error_chain(&error),
                })?;
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: a translated reply has no use for them
                };
                read.extend_from_slice(&data);
                if read.len() > limit {
                    return Ok(Exchanged::TooLarge(LargeReply {
                        status: parts.status,
                        headers: parts.headers,
                        read: read.freeze(),
                        rest: body,
                    }));
                }
            }
            Ok(Exchanged::Collected(CollectedReply {
                status: parts.status,
                headers: parts.headers,
                body: read.freeze(),
            }))
        };
        let exchanged = coarse_timer::timeout(self.shared.timeout, exchange)
            .await
            .map_err(|_| self.timed_out())
            .and_then(|exchanged| exchanged);
        if let Some(span) = span {
            match &exchanged {
                Ok(Exchanged::Collected(reply)) => span.replied(reply.status.as_u16()),
                Ok(Exchanged::TooLarge(reply)) => span.replied(reply.status.as_u16()),
                Err(error) => span.failed(error.code(), error.to_string()),
            }
        }
        exchanged
    }

    /// [`Upstream::take_turn`], and when the request is traced ([`TraceScope`] in its
    /// extensions), its CLIENT span, named in the request's `traceparent`. A call the budget
    /// refuses makes no upstream call: the refusal is noted on the server span instead.
    async fn turn_traced(
        &self,
        request: &mut Request<ProxyBody>,
    ) -> Result<Option<ClientSpan>, ShimError> {
        // Without tracing the extensions are empty, and this costs a test of a null pointer.
        let scope = request.extensions_mut().remove::<TraceScope>();
        if let Err(error) = self.take_turn().await {
            if let Some(scope) = &scope {
                scope.refused(error.code());
            }
            return Err(error);
        }
        Ok(scope.map(|scope| scope.client_span(request)))
    }

    /// The error for an exchange past `upstream.timeout`. An HTTP/1.1 connection goes with
    /// its abandoned request; the shared HTTP/2 connection is dropped from the pool too, since
    /// a silent upstream may be a dead connection, and the next request gets a fresh one.
    fn timed_out(&self) -> ShimError {
        self.shared.metrics.upstream_error(UpstreamFailure::Timeout);
        self.connections.forget_http2();
        ShimError::UpstreamTimeout {
            timeout: self.shared.timeout,
        }
    }
}

/// The error for a reply over the limit where nothing can be passed on instead; the caller
/// counts it (`invalid_reply`).
pub(crate) fn reply_too_large(reply_limit: u64) -> ShimError {
    ShimError::UpstreamInvalidReply {
        detail: format!("reply larger than {reply_limit} bytes"),
    }
}

/// The client TLS settings for `config`: the web PKI roots plus `upstream.ca_file`. The trace
/// exporter uses them too, for an `https://` collector.
pub(crate) fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, ConfigError> {
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
        let pem =
            crate::config::read::read_bounded(path).map_err(|error| invalid(error.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
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
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError(format!("TLS set-up failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The upstream picks: HTTP/2 when it speaks it, HTTP/1.1 otherwise.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::{Overrides, Setting};

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
        let error = Upstream::new(&config, None, None, metrics())
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
            None,
            metrics(),
        )
        .unwrap();
        let request = Request::get(upstream.uri("/x").unwrap())
            .body(crate::message::body::full_body(Bytes::new()))
            .unwrap();
        let error = upstream.send(request).await.unwrap_err();
        assert!(
            matches!(error, ShimError::UpstreamUnreachable { .. }),
            "{error:?}"
        );
    }
}
