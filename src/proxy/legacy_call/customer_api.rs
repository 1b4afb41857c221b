//! The Customer API as one legacy call sees it: each exchange with the client's headers, under
//! the budget, as a span of the request's trace.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header;
use http::{HeaderMap, Method, Request};

use super::{APPLICATION_JSON, LegacyCalls, Precheck};
use crate::error::ShimError;
use crate::legacy::reply::{customer_token, reply_owner, reports_success};
use crate::legacy::request::token_lookup_body;
use crate::legacy::route::GET_CUSTOMER_PATH;
use crate::message::body::{ProxyBody, full_body};
use crate::observe::metrics::UpstreamFailure;
use crate::observe::otel::TraceScope;
use crate::upstream::{CollectedReply, Exchanged, Upstream};

/// The Customer API as one legacy call sees it: the upstream with the client's headers.
pub(super) struct CustomerApi<'a> {
    pub(super) calls: &'a LegacyCalls,
    pub(super) upstream: &'a Upstream,
    /// Set by every exchange that was sent, that is, not refused by the budget first.
    pub(super) reached_upstream: &'a AtomicBool,
    /// The request's server span, when tracing is on: each Customer call is a span under it.
    pub(super) trace: Option<&'a TraceScope>,
    pub(super) headers: HeaderMap,
}

impl CustomerApi<'_> {
    /// A look-up before the call itself; the client's headers are copied.
    pub(super) async fn lookup(
        &self,
        lookup: &'static str,
        method: &Method,
        target: &str,
        body: Option<Bytes>,
    ) -> Result<CollectedReply, ShimError> {
        self.calls.metrics.lookup(lookup);
        let limit = self.calls.limits.upstream_reply_bytes;
        let mut request =
            customer_request(self.upstream, method, target, self.headers.clone(), body)?;
        if let Some(trace) = self.trace {
            request.extensions_mut().insert(trace.clone());
        }
        let exchanged = self.upstream.exchange(request, limit).await;
        Self::note_sent(self.reached_upstream, &exchanged);
        exchanged
    }

    /// The budget refuses before sending ([`ShimError::RateLimited`] comes from nowhere
    /// else); anything else was sent.
    pub(super) fn note_sent<T>(reached_upstream: &AtomicBool, exchanged: &Result<T, ShimError>) {
        if !matches!(exchanged, Err(ShimError::RateLimited { .. })) {
            reached_upstream.store(true, Ordering::Relaxed);
        }
    }

    /// The call itself, which takes the headers. A reply too large to translate is kept
    /// whole: when it is a success, the write happened and the client must get it.
    pub(super) async fn call_last(
        self,
        method: &Method,
        target: &str,
        body: Bytes,
    ) -> Result<Exchanged, ShimError> {
        let limit = self.calls.limits.upstream_reply_bytes;
        let mut request =
            customer_request(self.upstream, method, target, self.headers, Some(body))?;
        if let Some(trace) = self.trace {
            request.extensions_mut().insert(trace.clone());
        }
        let exchanged = self.upstream.exchange_keeping_large(request, limit).await;
        Self::note_sent(self.reached_upstream, &exchanged);
        exchanged
    }

    /// A successful reply's body, decoded; `None` when it cannot be decoded.
    pub(super) fn decoded_success(&self, reply: &CollectedReply) -> Option<Bytes> {
        self.calls.decoded(reply).ok()
    }

    /// The token of the customer `provided_id` (`POST /api/get_customer/`), or the upstream's
    /// refusal. The reply also tells the cache whose token it is.
    pub(super) async fn token_of(
        &self,
        provided_id: &str,
        lookup: &'static str,
    ) -> Result<Precheck<String>, ShimError> {
        let reply = self
            .lookup(
                lookup,
                &Method::POST,
                GET_CUSTOMER_PATH,
                Some(token_lookup_body(provided_id)),
            )
            .await?;
        if !reply.status.is_success() {
            return Ok(Precheck::Answer(reply));
        }
        let invalid = |detail: &str| {
            self.calls
                .metrics
                .upstream_error(UpstreamFailure::InvalidReply);
            ShimError::UpstreamInvalidReply {
                detail: detail.to_owned(),
            }
        };
        let body = self
            .decoded_success(&reply)
            .ok_or_else(|| invalid("get_customer reply cannot be decoded"))?;
        // One parse in the usual case: a reply naming both token and id also teaches the cache.
        let token = match reply_owner(&body) {
            Some(owner) => {
                self.calls.owners.remember(&owner.token, &owner.provided_id);
                Some(owner.token)
            }
            None => customer_token(&body),
        };
        match token {
            Some(token) => Ok(Precheck::Proceed(token)),
            None if reports_success(&body) => {
                Err(invalid("get_customer succeeded without a customer token"))
            }
            // A 2xx that says no: that is the answer the legacy client gets.
            None => Ok(Precheck::Answer(reply)),
        }
    }
}

/// One Customer API request; `body` is sent as JSON.
pub(super) fn customer_request(
    upstream: &Upstream,
    method: &Method,
    target: &str,
    mut headers: HeaderMap,
    body: Option<Bytes>,
) -> Result<Request<ProxyBody>, ShimError> {
    let body = match body {
        Some(body) => {
            headers.insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
            body
        }
        None => Bytes::new(),
    };
    let mut request = Request::new(full_body(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = upstream.uri(target)?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `path` with the legacy call's query string, if it had one.
pub(super) fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}
