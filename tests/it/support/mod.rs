//! The harness every integration test shares, one job per file: the real `explo-shim` binary
//! running (`shim`) or run to completion (`run`), in-process upstreams that record what they
//! receive (`upstream`, `raw_upstream`, `pki` for TLS), an OTLP collector (`collector`), clients (`http`), a Redis of the
//! test's own (`redis`) and a Sentinel watching it (`sentinel`), config files and fixtures
//! (`files`), ports nothing else can take (`ports`), waiting on an observable effect instead
//! of a fixed pause (`wait`), and the usage tracker's time buckets (`usage`). Tests import the
//! items (`use crate::support::*`), not the modules, whose names (`http`, `redis`) would clash
//! with the crates'.
//!
//! Every listener binds port 0 and keeps its socket: a port released and handed on could be
//! taken in between by anything else on the machine, including another test of this binary.

mod collector;
mod files;
mod http;
mod pki;
mod ports;
mod raw_upstream;
mod redis;
mod run;
mod sentinel;
mod shim;
mod upstream;
mod usage;
mod wait;

pub use collector::*;
pub use files::*;
pub use http::*;
pub use pki::*;
pub use ports::*;
pub use raw_upstream::*;
pub use redis::*;
pub use run::*;
pub use sentinel::*;
pub use shim::*;
pub use upstream::*;
pub use usage::*;
pub use wait::*;

/// The header legacy clients send their team token in.
pub const TOKEN_HEADER: &str = "explo-authorization";
/// A team token that must never appear in any log line.
pub const TEAM_TOKEN: &str = "Token sk_live_team_secret_0123456789abcdef";
