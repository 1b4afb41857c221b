//! The parts of an HTTP message that the whole shim shares: the body type of streamed and built
//! messages, one module per header concern, and a client's fingerprint (its name without its
//! credential).

pub(crate) mod body;
pub mod fingerprint;
pub mod headers;
