//! Header concerns, one small module each:
//!
//! - [`hop`]: hop-by-hop headers (RFC 9110 §7.6.1), stripped in both directions.
//! - [`framing`]: refusing request smuggling shapes (RFC 9112 §6).
//! - [`encoding`]: undoing the upstream's `Content-Encoding` before a legacy reply is rewritten.
//! - [`forwarding`]: what the shim adds to or removes from requests it sends upstream.

pub mod encoding;
pub mod forwarding;
pub mod framing;
pub mod hop;
