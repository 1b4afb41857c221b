//! Header concerns, one small module each:
//!
//! - [`cookie`]: finding a cookie by name, and keeping the admin session cookie from the upstream.
//! - [`deprecation`]: `Deprecation`, `Link` and `Sunset` on legacy replies (RFC 9745, 8594).
//! - [`hop`]: hop-by-hop headers (RFC 9110 §7.6.1), stripped in both directions.
//! - [`framing`]: refusing request smuggling shapes (RFC 9112 §6).
//! - [`encoding`]: undoing the upstream's `Content-Encoding` before a legacy reply is rewritten.
//! - [`request_id`]: the `x-request-id` carried upstream, back, and into the logs.
//! - [`forwarding`]: what the shim adds to or removes from requests it sends upstream.
//! - [`trace_context`]: the caller's W3C `traceparent` trace id, for the log lines.

pub mod cookie;
pub mod deprecation;
pub mod encoding;
pub mod forwarding;
pub mod framing;
pub mod hop;
pub mod request_id;
pub mod trace_context;
