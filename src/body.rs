//! The one body type that flows through the shim, in both directions.
//!
//! Pass-through bodies stream (`hyper::body::Incoming`); bodies the shim builds are `Full`.
//! Boxing both into one type keeps every handler's signature the same.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Errors a streamed body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body of any origin.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full; its exact length becomes the `Content-Length`.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A streamed body passed on as it arrives.
pub fn streamed_body(incoming: hyper::body::Incoming) -> ProxyBody {
    incoming.map_err(BoxError::from).boxed_unsync()
}
