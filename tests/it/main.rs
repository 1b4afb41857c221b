//! The integration tests, one binary: linking the crate and its dependencies (hyper, rustls,
//! Redis, OpenTelemetry) once instead of once per file is most of what a clean `cargo test`
//! costs. One module per area; [`support`] is the harness they share.
//!
//! The tests share this process, so none of them may change process-wide state (environment
//! variables, the current directory, a global tracing subscriber): the shim under test runs
//! as a child process with an environment of its own, and whatever a test needs from the
//! environment it passes to that child.

mod support;

mod admin_access;
mod cli;
mod console;
mod data_safety;
mod deploy_kit;
mod deployment;
mod docs;
mod emulator;
mod faults;
mod fleet;
mod fleet_failover;
mod hostile;
mod inbound_tls;
mod layering;
mod legacy_errors;
mod legacy_routes;
mod lifecycle;
mod log_bounds;
mod metrics;
mod operability;
mod otlp;
mod pass_through;
mod properties;
mod release;
mod retirement;
mod shared_rules;
mod signals;
mod slow_readers;
mod tracing;
mod usage;
mod watch;
