//! What the admin listener may hold for clients that have not read their reports yet: console
//! pages, `/usage` reports and `/metrics` texts are built whole, then wait for their reader.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::json;

use super::replies::json_error;
use crate::message::body::ProxyBody;

/// The most bytes of console pages, `/usage` reports and `/metrics` texts held for clients at
/// once. Each is built whole, then held until its client has read it (or the send clock has
/// cut the client off): at `limits.max_tracked_clients`' cap a `/usage` report is about
/// 16 MB, and 256 admin connections that ask and never read would otherwise hold 4 GB.
pub const REPORT_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// Holds each report's size against [`REPORT_BYTES_IN_FLIGHT`] until its body is dropped.
#[derive(Clone, Debug)]
pub struct ReportBudget(Arc<tokio::sync::Semaphore>);

impl Default for ReportBudget {
    fn default() -> Self {
        Self::with_bytes(REPORT_BYTES_IN_FLIGHT)
    }
}

impl ReportBudget {
    fn with_bytes(bytes: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(bytes)))
    }

    /// `response`, its body holding its size against the budget until the body is dropped;
    /// or a 503 with `Retry-After` when the budget is spent. A report larger than the whole
    /// budget takes all of it.
    pub(super) fn hold(&self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let size = response.body().size_hint().exact().unwrap_or(0);
        let whole = u64::try_from(REPORT_BYTES_IN_FLIGHT).unwrap_or(u64::MAX);
        let wanted = u32::try_from(size.min(whole)).unwrap_or(u32::MAX);
        match Arc::clone(&self.0).try_acquire_many_owned(wanted) {
            Ok(held) => response.map(|body| {
                // The closure owns the permit, and the body owns the closure: the bytes are
                // given back when the body is dropped, read in full or not.
                body.map_frame(move |frame| {
                    let _held = &held;
                    frame
                })
                .boxed_unsync()
            }),
            Err(_) => {
                let mut busy = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({
                        "error": "busy",
                        "detail": "other clients have not yet read the reports they asked for; \
                                   try again in a moment"
                    }),
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                busy
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::body::full_body;

    #[tokio::test]
    async fn reports_not_yet_read_are_held_against_a_byte_budget() {
        let budget = ReportBudget::with_bytes(100);
        let report = || Response::new(full_body(vec![b'x'; 60]));
        let first = budget.hold(report());
        assert_eq!(first.status(), StatusCode::OK);
        let refused = budget.hold(report());
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // Read in full, the first gives its bytes back when its body is gone.
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 60);
        let second = budget.hold(report());
        assert_eq!(second.status(), StatusCode::OK);
        // Dropped unread, the same.
        drop(second);
        assert_eq!(budget.hold(report()).status(), StatusCode::OK);
    }
}
