//! What the metrics' labels may say: fixed sets, so that no caller can grow the exposition
//! (the client label is capped apart, by the client table), and the label sets themselves.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Why a legacy call was refused on purpose (`legacy_refused{reason}`).
pub const REFUSAL_REASONS: [&str; 2] = ["brownout", "sunset"];

/// What a look-up before a legacy call's own Customer call looked up (`lookups{lookup}`).
pub const LOOKUPS: [&str; 6] = [
    "token_by_id",
    "owner_check",
    "children_v2",
    "children_v1",
    "list_v2_page",
    "list_v1",
];

/// Why an upstream exchange failed, as `explo_shim_upstream_errors_total{reason}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection: refused, unreachable, a name that does not resolve, or
    /// `upstream.connect_timeout` passed.
    Connect,
    /// No complete reply within `upstream.timeout`.
    Timeout,
    /// The connection broke during the exchange: reset, broken pipe, closed before the reply
    /// was complete (head or body), an HTTP/2 stream or connection torn down.
    Reset,
    /// The TLS handshake failed (an untrusted certificate, a wrong name, no common protocol,
    /// not TLS at all) or TLS broke later.
    Tls,
    /// A reply the shim cannot use: not HTTP, a head over hyper's limits, over
    /// `limits.upstream_reply_bytes` where it must be read whole, or a legacy call's reply
    /// that is corrupt or lacks what it must hold.
    InvalidReply,
}

impl UpstreamFailure {
    pub const ALL: [Self; 5] = [
        Self::Connect,
        Self::Timeout,
        Self::Reset,
        Self::Tls,
        Self::InvalidReply,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Tls => "tls",
            Self::InvalidReply => "invalid_reply",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LegacyCallLabels {
    pub(super) endpoint: &'static str,
    pub(super) status_class: &'static str,
    pub(super) client: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EndpointLabels {
    pub(super) endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusalLabels {
    pub(super) endpoint: &'static str,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReloadLabels {
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BackendLabels {
    pub(super) backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LookupLabels {
    pub(super) lookup: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StatusClassLabels {
    pub(super) status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteKindLabels {
    pub(super) route: &'static str,
}

/// The label value that names pass-through requests, in `upstream_latency_seconds{route}` and
/// `request_duration_seconds{endpoint}` alike.
pub const PASS_THROUGH: &str = "pass_through";

/// Whether an upstream call served a translated legacy call or a pass-through request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Translated,
    PassThrough,
}

impl RouteKind {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Translated => "translated",
            Self::PassThrough => PASS_THROUGH,
        }
    }
}

pub(super) fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub(super) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] for a status code.
pub(super) fn status_class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(302), "3xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(504), "5xx");
    }
}
