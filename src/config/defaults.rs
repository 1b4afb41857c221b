//! The built-in defaults and the bounds every setting is checked against, each a named constant
//! with its unit. Each default appears once more, commented, in `config/explo-shim.toml` (a
//! test holds the two together); the settings table ([`super::table`]) names the constant for
//! its setting.

use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
pub const DEFAULT_UPSTREAM: &str = "https://api.explo.co";
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_UPSTREAM_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle upstream connections kept for reuse; a burst's extra connections close when it ends,
/// so memory falls back after a load peak.
pub const DEFAULT_UPSTREAM_POOL_MAX_IDLE: u64 = 64;
/// Largest legacy request body read into memory (1 MiB; the documented bodies are < 1 KiB).
pub const DEFAULT_LEGACY_BODY_BYTES: u64 = 1024 * 1024;
/// Largest upstream reply (after decompression) read into memory to build a legacy reply.
pub const DEFAULT_UPSTREAM_REPLY_BYTES: u64 = 8 * 1024 * 1024;
/// A client that has not finished sending its request headers by then is disconnected.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long the shim keeps accepting after SIGTERM, with `/readyz` at 503, before the drain
/// begins: zero by default, since only a load balancer or endpoint list that lags the signal
/// needs it (see `docs/operators/deployment.md`).
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;
/// The log filter when neither `RUST_LOG` nor `log_level` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// A streamed pass-through body (either direction) silent this long is aborted; a legacy body
/// silent this long is answered 408.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole legacy request body must have arrived within this long of its head (408 past it),
/// so a client that drips a byte at a time cannot hold an in-flight slot for hours.
pub const DEFAULT_LEGACY_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// A reply the client accepts nothing of for this long (measured between two writes that
/// made progress, as nginx's `send_timeout`, not over the whole reply) is cut off: its
/// HTTP/1.1 connection closed, its HTTP/2 stream reset.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (request line plus headers), in bytes; larger gets 431. hyper's
/// read buffer cannot be smaller than 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
pub const MIN_MAX_HEADER_BYTES: u64 = 8 * 1024;
/// Most header fields in one request; more gets 431.
pub const DEFAULT_MAX_HEADERS: u64 = 100;
/// Requests served at once; past this the shim answers 503 at once instead of queueing.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1024;
/// Open client connections; past this the shim stops accepting (the kernel backlog holds
/// the rest), so memory stays bounded however many clients connect. Chosen with
/// [`DEFAULT_MAX_IN_FLIGHT`] so that both caps reached at once cost about 115 MB (measured by
/// `benches/soak.sh`), which the deploy kit's 256 MiB limit holds with every bounded buffer
/// full besides (`docs/design/memory.md`, "Sizing a container").
pub const DEFAULT_MAX_CONNECTIONS: u64 = 2048;
/// Distinct client fingerprints tracked in metrics and `/usage`; the rest count as `other`.
pub const DEFAULT_MAX_TRACKED_CLIENTS: u64 = 1000;
/// Explo's documented limit: 180 requests per minute per source IP.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u64 = 180;
/// Calls that may go at once after a quiet spell.
pub const DEFAULT_RATE_LIMIT_BURST: u64 = 30;
/// A call that would wait longer than this for the budget is refused with 429.
pub const DEFAULT_RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(10);
/// The longest an upstream 429's `Retry-After` holds every call (and, in a fleet, every
/// replica): a longer one is cut to this. Past it the shim tries the upstream again, which
/// answers 429 again if it still means it.
pub const DEFAULT_MAX_UPSTREAM_HOLD: Duration = Duration::from_secs(10 * 60);
/// The most `rate_limit.max_upstream_hold` may be set to: a hold of hours would be an outage
/// chosen by the upstream's reply, not a pause.
pub const MAX_UPSTREAM_HOLD_CEILING: Duration = Duration::from_secs(60 * 60);
/// The longest one Redis round trip may take before the replica uses its own budget instead.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(25);

/// The longest any duration setting (timeouts, waits, the grace period) may be: none is
/// meant to last more than a day, and a longer one (up to `u64::MAX` seconds parses) would
/// overflow the clock when armed.
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest client name `[clients]` may give, in characters: a team or service name, not
/// a description; it is shown in tables and log lines.
pub const MAX_CLIENT_NAME_CHARS: usize = 64;

/// The most serving threads `workers` may ask for: more would only cost memory.
pub const MAX_WORKERS: usize = 256;
