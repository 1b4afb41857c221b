//! Prometheus metrics on the admin listener's `GET /metrics`: OpenMetrics text when the
//! scraper asks for it, the Prometheus text format 0.0.4 otherwise ([`exposition`]).
//!
//! Every series whose labels are a known, finite set exists from start-up at 0, so that
//! `increase()` sees the first event and a dashboard shows 0 rather than no data. A family
//! labelled by client fingerprint cannot be filled in ahead of its clients; it is declared
//! from start-up (its `# HELP` and `# TYPE` lines, no samples) so that scrapers and tools that
//! read metadata know it. `absent()` still looks at samples: ask it of a pre-created series.
//! The `process_*` metrics ([`process`]) are read from `/proc` at each scrape, on Linux.
//!
//! Labels are bounded: endpoints and status classes are fixed sets, and client fingerprints
//! are capped at `limits.max_tracked_clients` distinct values, after which new clients are
//! counted as `other`. A hostile client cannot grow memory by inventing credentials.
//!
//! The table serves operators, not whoever sends a header: a client is only placed once its
//! call is over ([`Metrics::settle`]), and one the upstream has accepted (a reply other than
//! 401, 403, 429 or 5xx) outranks one it has not. When the table is full, a new accepted client takes
//! the place of one never accepted (its label series are removed), and only when every place
//! holds an accepted client is it counted as `other`. So refused tokens cannot file the next
//! real team under `other`; a client refused before the upstream saw it (a brownout) is still
//! tracked while there is room, for the operator to see who hit the brownout.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::legacy::route::LegacyRoute;
use crate::message::fingerprint::{ANONYMOUS, client_fingerprint, is_blank};
use crate::observe::telemetry::dropped_log_lines;
use http::HeaderValue;

pub mod exposition;
pub mod process;

/// The fingerprint label for clients past the cap.
pub const OTHER_CLIENTS: &str = "other";

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
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LegacyCallLabels {
    endpoint: &'static str,
    status_class: &'static str,
    client: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    lookup: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClassLabels {
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteKindLabels {
    route: &'static str,
}

/// Whether an upstream call served a translated legacy call or a pass-through request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Translated,
    PassThrough,
}

impl RouteKind {
    fn label(self) -> &'static str {
        match self {
            Self::Translated => "translated",
            Self::PassThrough => "pass_through",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// A calling client, as the logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// 12 hex digits of the SHA-256 of the credential (see [`client_fingerprint`]).
    pub fingerprint: Arc<String>,
    /// A keyed hash of the credential, its place in the table; `None` without one.
    credential_key: Option<u64>,
}

/// Where a call's client is counted, once the call is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The fingerprint, or `other` when the table had no place for it.
    pub label: Arc<String>,
    /// A never-accepted client whose place this one took: drop its records too.
    pub evicted: Option<Arc<String>>,
}

/// The tracked clients, by a keyed hash of the credential (never the credential itself), so
/// the SHA-256 runs once per client rather than once per call.
#[derive(Debug, Default)]
struct ClientTable {
    clients: HashMap<u64, TrackedClient>,
    /// Clients placed so far: each one's `placed`.
    placements: u64,
}

/// One client in the table.
#[derive(Debug)]
struct TrackedClient {
    fingerprint: Arc<String>,
    /// Whether the upstream has accepted one of its calls.
    accepted: bool,
    /// When it was placed, in placements: the oldest never-accepted client goes first.
    placed: u64,
}

/// Every metric the shim exports.
pub struct Metrics {
    registry: Registry,
    legacy_calls: Family<LegacyCallLabels, Counter>,
    /// Handles into the families, one per status class and route kind, taken once: the
    /// per-request path then skips the family's lock and hash.
    pass_through_by_class: [Counter; 5],
    upstream_latency_by_route: [Histogram; 2],
    /// One per [`UpstreamFailure`], in the order of [`UpstreamFailure::ALL`].
    upstream_errors: [Counter; 5],
    in_flight: Gauge,
    open_connections: Gauge,
    connection_limit: Gauge,
    shed: Counter,
    send_timeouts: Counter,
    upstream_throttled: Counter,
    admin_auth_failures: Counter,
    trace_spans_dropped: Counter,
    rate_limit_waits: Counter,
    rate_limit_wait_seconds: Histogram,
    rate_limit_refused: Counter,
    cascade_refused: Counter,
    cascade_unverified: Counter,
    untranslated_successes: Family<EndpointLabels, Counter>,
    lookups: Family<LookupLabels, Counter>,
    /// `[redis, local]`: 1 for the budget in use, only registered with a fleet.
    rate_limit_backend: [Gauge; 2],
    fleet_usage_dropped: Counter,
    legacy_refused: Family<RefusalLabels, Counter>,
    brownout_active: Gauge,
    brownout_next_start: Gauge,
    /// `[success, failure]`: SIGHUP reloads of the config file.
    config_reloads: [Counter; 2],
    config_last_reload: Gauge,
    max_clients: usize,
    clients: Mutex<ClientTable>,
    client_key: RandomState,
}

impl Metrics {
    pub fn new(max_clients: usize) -> Self {
        // The root holds the unprefixed `process_*` metrics; the shim's own are under it.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("explo_shim");
        let legacy_calls = Family::<LegacyCallLabels, Counter>::default();
        registry.register(
            "legacy_calls",
            "Deprecated End User Group API calls by endpoint, status class and client fingerprint",
            Declared(legacy_calls.clone()),
        );
        let pass_through = Family::<StatusClassLabels, Counter>::default();
        registry.register(
            "pass_through_requests",
            "Requests passed through by status class",
            pass_through.clone(),
        );
        let upstream_latency =
            Family::<RouteKindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "upstream_latency_seconds",
            "Upstream latency until the reply headers, by route kind",
            upstream_latency.clone(),
        );
        let upstream_errors_family = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream exchanges that failed, pass-through and translated, by reason: connect, \
             timeout, reset, tls, invalid_reply",
            upstream_errors_family.clone(),
        );
        let upstream_errors = UpstreamFailure::ALL.map(|failure| {
            upstream_errors_family
                .get_or_create(&ReasonLabels {
                    reason: failure.label(),
                })
                .clone()
        });
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now: from the request head until the reply has been handed \
             on in full, or abandoned",
            in_flight.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open on the main listener now; past connection_limit, new \
             ones wait in the kernel's backlog",
            open_connections.clone(),
        );
        let connection_limit = Gauge::default();
        registry.register(
            "connection_limit",
            "limits.max_connections: the open connections the shim serves at once",
            connection_limit.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "shed_requests",
            "Requests refused with 503 because max_in_flight was reached",
            shed.clone(),
        );
        let send_timeouts = Counter::default();
        registry.register(
            "send_timeouts",
            "Replies cut off because the client accepted nothing of them for \
             limits.send_timeout: HTTP/1.1 connections closed (main and admin listeners), HTTP/2 \
             streams reset, and HTTP/2 connections ended whose socket took nothing",
            send_timeouts.clone(),
        );
        let upstream_throttled = Counter::default();
        registry.register(
            "upstream_throttled",
            "Upstream 429 replies",
            upstream_throttled.clone(),
        );
        let admin_auth_failures = Counter::default();
        registry.register(
            "admin_auth_failures",
            "Admin credentials refused: a wrong token or session, or several in one request",
            admin_auth_failures.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "trace_spans_dropped",
            "Trace spans not exported: the export queue was full, or the collector did not take them",
            trace_spans_dropped.clone(),
        );
        let rate_limit_waits = Counter::default();
        registry.register(
            "rate_limit_waits",
            "Upstream calls delayed by the upstream budget",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = latency_histogram();
        registry.register(
            "rate_limit_wait_seconds",
            "Time upstream calls waited for the upstream budget",
            rate_limit_wait_seconds.clone(),
        );
        let rate_limit_refused = Counter::default();
        registry.register(
            "rate_limit_refused",
            "Requests refused with 429 by the upstream budget",
            rate_limit_refused.clone(),
        );
        let cascade_refused = Counter::default();
        registry.register(
            "cascade_refused",
            "Legacy deletes refused with 409 because the customer has children",
            cascade_refused.clone(),
        );
        let cascade_unverified = Counter::default();
        registry.register(
            "cascade_unverified",
            "Legacy deletes refused with 409 because the shim could not establish that the \
             customer has no children",
            cascade_unverified.clone(),
        );
        let untranslated_successes = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "untranslated_successes",
            "Successful upstream replies to legacy calls passed on as they came because they \
             could not be translated",
            untranslated_successes.clone(),
        );
        for route in LegacyRoute::ALL {
            untranslated_successes.get_or_create_owned(&EndpointLabels {
                endpoint: route.legacy_endpoint(),
            });
        }
        let lookups = Family::<LookupLabels, Counter>::default();
        for lookup in LOOKUPS {
            lookups.get_or_create_owned(&LookupLabels { lookup });
        }
        registry.register(
            "lookups",
            "Upstream calls made before a legacy call's own Customer call, by what they looked up",
            lookups.clone(),
        );
        let backend = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "rate_limit_backend",
            "Which upstream budget is in use: the fleet's in Redis, or this replica's own while \
             Redis is unreachable (1 for the one in use)",
            backend.clone(),
        );
        let rate_limit_backend = ["redis", "local"].map(|backend_name| {
            backend
                .get_or_create(&BackendLabels {
                    backend: backend_name,
                })
                .clone()
        });
        // Without a fleet the replica's own budget is the only one.
        rate_limit_backend[1].set(1);
        let fleet_usage_dropped = Counter::default();
        registry.register(
            "fleet_usage_dropped",
            "Legacy calls left out of the fleet's usage records because the queue to Redis was full",
            fleet_usage_dropped.clone(),
        );
        let legacy_refused = Family::<RefusalLabels, Counter>::default();
        for route in LegacyRoute::ALL {
            for reason in REFUSAL_REASONS {
                legacy_refused.get_or_create_owned(&RefusalLabels {
                    endpoint: route.legacy_endpoint(),
                    reason,
                });
            }
        }
        registry.register(
            "legacy_refused",
            "Legacy calls answered 410 on purpose: during a brownout or after the sunset",
            legacy_refused.clone(),
        );
        let brownout_active = Gauge::default();
        registry.register(
            "brownout_active",
            "1 while a scheduled brownout refuses legacy calls",
            brownout_active.clone(),
        );
        let brownout_next_start = Gauge::default();
        registry.register(
            "brownout_next_start_timestamp_seconds",
            "When the next brownout starts (Unix seconds); 0 when none is scheduled",
            brownout_next_start.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Reloads of the config file on SIGHUP, by result",
            config_reloads.clone(),
        );
        let config_last_reload = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config in service was loaded (Unix seconds): start-up or the last good reload",
            config_last_reload.clone(),
        );
        registry.register_collector(Box::new(DroppedLogLines));
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        #[cfg(target_os = "linux")]
        root.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry: root,
            legacy_calls,
            pass_through_by_class: STATUS_CLASSES.map(|status_class| {
                pass_through
                    .get_or_create(&StatusClassLabels { status_class })
                    .clone()
            }),
            upstream_latency_by_route: [RouteKind::Translated, RouteKind::PassThrough].map(
                |kind| {
                    upstream_latency
                        .get_or_create(&RouteKindLabels {
                            route: kind.label(),
                        })
                        .clone()
                },
            ),
            config_reloads: ["success", "failure"].map(|result| {
                config_reloads
                    .get_or_create(&ReloadLabels { result })
                    .clone()
            }),
            config_last_reload,
            upstream_errors,
            in_flight,
            open_connections,
            connection_limit,
            shed,
            send_timeouts,
            upstream_throttled,
            admin_auth_failures,
            trace_spans_dropped,
            rate_limit_waits,
            rate_limit_wait_seconds,
            rate_limit_refused,
            cascade_refused,
            cascade_unverified,
            untranslated_successes,
            lookups,
            rate_limit_backend,
            fleet_usage_dropped,
            legacy_refused,
            brownout_active,
            brownout_next_start,
            max_clients,
            clients: Mutex::new(ClientTable::default()),
            client_key: RandomState::new(),
        }
    }

    /// Who is calling: the fingerprint of `authorization`. Takes no place in the table; that
    /// waits for the upstream's verdict ([`Metrics::settle`]).
    pub fn identify(&self, authorization: Option<&HeaderValue>) -> ClientIdentity {
        let Some(credential) = authorization.filter(|value| !is_blank(value)) else {
            return ClientIdentity {
                fingerprint: Arc::new(ANONYMOUS.to_owned()),
                credential_key: None,
            };
        };
        let key = self.client_key.hash_one(credential.as_bytes());
        let known = self
            .lock_clients()
            .clients
            .get(&key)
            .map(|tracked| Arc::clone(&tracked.fingerprint));
        ClientIdentity {
            fingerprint: known.unwrap_or_else(|| Arc::new(client_fingerprint(Some(credential)))),
            credential_key: Some(key),
        }
    }

    /// Places `client` once its call is over; `accepted` when the upstream answered it with
    /// anything but 401 or 403. Returns the label its call counts under, and the client it
    /// displaced, whose metric series are removed here (the caller drops its other records).
    pub fn settle(&self, client: &ClientIdentity, accepted: bool) -> Placed {
        let placed_as_itself = || Placed {
            label: Arc::clone(&client.fingerprint),
            evicted: None,
        };
        // Without credentials there is nothing to rank; `anonymous` is one fixed label.
        let Some(key) = client.credential_key else {
            return placed_as_itself();
        };
        let mut table = self.lock_clients();
        let ClientTable {
            clients,
            placements,
        } = &mut *table;
        if let Some(tracked) = clients.get_mut(&key) {
            tracked.accepted |= accepted;
            return placed_as_itself();
        }
        let mut evicted = None;
        if clients.len() >= self.max_clients {
            // Only a client the upstream accepted may displace one it never has; the scan is
            // made only for such a client, so junk credentials past the cap cost no scan.
            let never_accepted = accepted
                .then(|| {
                    clients
                        .iter()
                        .filter(|(_, tracked)| !tracked.accepted)
                        .min_by_key(|(_, tracked)| tracked.placed)
                        .map(|(key, _)| *key)
                })
                .flatten();
            let Some(victim) = never_accepted else {
                return Placed {
                    label: Arc::new(OTHER_CLIENTS.to_owned()),
                    evicted: None,
                };
            };
            evicted = clients.remove(&victim).map(|tracked| tracked.fingerprint);
        }
        *placements += 1;
        clients.insert(
            key,
            TrackedClient {
                fingerprint: Arc::clone(&client.fingerprint),
                accepted,
                placed: *placements,
            },
        );
        drop(table);
        if let Some(fingerprint) = &evicted {
            self.forget_client(fingerprint);
        }
        Placed {
            label: Arc::clone(&client.fingerprint),
            evicted,
        }
    }

    /// Removes every `legacy_calls` series of `client`, so a displaced client's label does not
    /// stay in the exposition for good.
    fn forget_client(&self, client: &Arc<String>) {
        for route in LegacyRoute::ALL {
            for status_class in STATUS_CLASSES {
                self.legacy_calls.remove(&LegacyCallLabels {
                    endpoint: route.legacy_endpoint(),
                    status_class,
                    client: Arc::clone(client),
                });
            }
        }
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, ClientTable> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One legacy call, counted under `client`'s label (from [`Metrics::settle`]).
    pub fn legacy_call(&self, route: LegacyRoute, status: u16, client: &Arc<String>) {
        self.legacy_calls
            .get_or_create(&LegacyCallLabels {
                endpoint: route.legacy_endpoint(),
                status_class: status_class(status),
                client: Arc::clone(client),
            })
            .inc();
    }

    pub fn pass_through(&self, status: u16) {
        self.pass_through_by_class[status_class_index(status)].inc();
    }

    pub fn upstream_latency(&self, kind: RouteKind, latency: Duration) {
        let index = match kind {
            RouteKind::Translated => 0,
            RouteKind::PassThrough => 1,
        };
        self.upstream_latency_by_route[index].observe(latency.as_secs_f64());
    }

    /// One failed upstream exchange.
    pub fn upstream_error(&self, failure: UpstreamFailure) {
        self.upstream_errors[failure as usize].inc();
    }

    /// Counts a request in flight until the guard is dropped; the guard moves into the
    /// reply's body, so a reply still being sent counts.
    pub fn in_flight(&self) -> InFlightGuard {
        self.in_flight.inc();
        InFlightGuard(self.in_flight.clone())
    }

    /// The count of replies cut off by `limits.send_timeout`, for the connections and
    /// streams that keep the clock.
    pub fn send_timeouts(&self) -> Counter {
        self.send_timeouts.clone()
    }

    /// Counts a client connection open until the guard is dropped; the guard moves with the
    /// connection's task.
    pub fn open_connection(&self) -> OpenConnectionGuard {
        self.open_connections.inc();
        OpenConnectionGuard(self.open_connections.clone())
    }

    pub fn set_connection_limit(&self, limit: u64) {
        self.connection_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    pub fn shed(&self) {
        self.shed.inc();
    }

    pub fn upstream_throttled(&self) {
        self.upstream_throttled.inc();
    }

    /// An admin credential refused (counted before its address's throttle decides anything).
    pub fn admin_auth_failed(&self) {
        self.admin_auth_failures.inc();
    }

    /// Spans the trace exporter gave up: a full queue, or a batch the collector did not take.
    pub fn trace_spans_dropped(&self, spans: u64) {
        self.trace_spans_dropped.inc_by(spans);
    }

    pub fn rate_limit_wait(&self, waited: Duration) {
        self.rate_limit_waits.inc();
        self.rate_limit_wait_seconds.observe(waited.as_secs_f64());
    }

    pub fn rate_limit_refused(&self) {
        self.rate_limit_refused.inc();
    }

    pub fn cascade_refused(&self) {
        self.cascade_refused.inc();
    }

    /// The budget in use: the fleet's (`true`) or this replica's own.
    pub fn rate_limit_backend(&self, shared: bool) {
        let [redis, local] = &self.rate_limit_backend;
        redis.set(i64::from(shared));
        local.set(i64::from(!shared));
    }

    /// A legacy call refused on purpose; `reason` is `brownout` or `sunset`.
    pub fn legacy_refused(&self, route: LegacyRoute, reason: &'static str) {
        debug_assert!(REFUSAL_REASONS.contains(&reason), "pre-create {reason}");
        self.legacy_refused
            .get_or_create(&RefusalLabels {
                endpoint: route.legacy_endpoint(),
                reason,
            })
            .inc();
    }

    /// The brownout schedule as of now, set when `/metrics` is read.
    pub fn brownout_state(&self, active: bool, next_start_unix: Option<u64>) {
        self.brownout_active.set(i64::from(active));
        self.brownout_next_start
            .set(next_start_unix.map_or(0, |at| i64::try_from(at).unwrap_or(i64::MAX)));
    }

    /// A config was put in service (start-up, or a good reload) at `unix_seconds`.
    pub fn config_loaded(&self, unix_seconds: u64) {
        self.config_last_reload
            .set(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    }

    /// A SIGHUP reload ended: put in service, or refused.
    pub fn config_reload(&self, succeeded: bool) {
        self.config_reloads[usize::from(!succeeded)].inc();
    }

    pub fn fleet_usage_dropped(&self) {
        self.fleet_usage_dropped.inc();
    }

    pub fn cascade_unverified(&self) {
        self.cascade_unverified.inc();
    }

    /// A 2xx reply to a legacy call that could not be translated and was passed on as it came.
    pub fn untranslated_success(&self, route: LegacyRoute) {
        self.untranslated_successes
            .get_or_create(&EndpointLabels {
                endpoint: route.legacy_endpoint(),
            })
            .inc();
    }

    /// One upstream call made before a legacy call's own: `lookup` names what it looked for
    /// (`token_by_id`, `owner_check`, `children_v2`, `children_v1`, `list_v2_page`, `list_v1`).
    pub fn lookup(&self, lookup: &'static str) {
        debug_assert!(LOOKUPS.contains(&lookup), "pre-create {lookup}");
        self.lookups.get_or_create(&LookupLabels { lookup }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The same metrics in the Prometheus text format 0.0.4 ([`exposition`]).
    pub fn encode_prometheus_text(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// A family listed in the exposition even before its first series: its `# HELP` and `# TYPE`
/// lines, without samples (prometheus-client leaves an empty family out altogether).
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// Reads the background log writer's drop count at scrape time: the writer counts, the
/// metrics only report.
#[derive(Debug)]
struct DroppedLogLines;

impl Collector for DroppedLogLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(dropped_log_lines());
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because the background log writer fell behind",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// Decrements the in-flight gauge when the request is done.
pub struct InFlightGuard(Gauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct OpenConnectionGuard(Gauge);

impl Drop for OpenConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] for a status code.
fn status_class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &'static str) -> HeaderValue {
        HeaderValue::from_static(value)
    }

    /// Settles one call by `credential` and returns its label.
    fn settled(metrics: &Metrics, credential: &'static str, accepted: bool) -> String {
        let client = metrics.identify(Some(&token(credential)));
        metrics.settle(&client, accepted).label.to_string()
    }

    #[test]
    fn fingerprints_past_the_cap_count_as_other() {
        let metrics = Metrics::new(2);
        let first = metrics.identify(Some(&token("Token a")));
        assert_eq!(
            first.fingerprint.as_str(),
            client_fingerprint(Some(&token("Token a")))
        );
        assert_eq!(metrics.settle(&first, true).label, first.fingerprint);
        assert_eq!(
            settled(&metrics, "Token b", true),
            client_fingerprint(Some(&token("Token b")))
        );
        let third = metrics.identify(Some(&token("Token c")));
        assert_eq!(
            third.fingerprint.as_str(),
            client_fingerprint(Some(&token("Token c")))
        );
        assert_eq!(metrics.settle(&third, true).label.as_str(), OTHER_CLIENTS);
        assert_eq!(metrics.identify(Some(&token("Token a"))), first);
        let anonymous = metrics.identify(None);
        assert_eq!(metrics.settle(&anonymous, false).label.as_str(), ANONYMOUS);
    }

    #[test]
    fn an_accepted_client_displaces_the_oldest_never_accepted_one() {
        let metrics = Metrics::new(3);
        let refused = ["Token r1", "Token r2", "Token r3"];
        for credential in refused {
            let client = metrics.identify(Some(&token(credential)));
            let placed = metrics.settle(&client, false);
            assert_eq!(placed.label, client.fingerprint, "room: tracked");
            metrics.legacy_call(LegacyRoute::UpdateUserGroup, 401, &placed.label);
        }
        // A fourth refused client finds no room and displaces nobody.
        assert_eq!(settled(&metrics, "Token r4", false), OTHER_CLIENTS);
        // A real team does: the oldest refused one goes, with its metric series.
        let team = metrics.identify(Some(&token("Token team")));
        let placed = metrics.settle(&team, true);
        assert_eq!(placed.label, team.fingerprint);
        let first_refused = client_fingerprint(Some(&token(refused[0])));
        assert_eq!(placed.evicted.as_deref(), Some(&first_refused));
        let text = metrics.encode();
        assert!(!text.contains(&first_refused), "{text}");
        assert!(text.contains(&client_fingerprint(Some(&token(refused[1])))));
        // A tracked client accepted later is never displaced.
        assert_eq!(
            settled(&metrics, refused[1], true),
            client_fingerprint(Some(&token(refused[1])))
        );
        settled(&metrics, "Token team2", true);
        assert_eq!(settled(&metrics, "Token team3", true), OTHER_CLIENTS);
        assert_eq!(
            settled(&metrics, refused[1], false),
            client_fingerprint(Some(&token(refused[1])))
        );
    }

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::new(10);
        metrics.legacy_call(
            LegacyRoute::UpdateUserGroup,
            200,
            &Arc::new("abc123".to_owned()),
        );
        metrics.pass_through(404);
        metrics.upstream_latency(RouteKind::Translated, Duration::from_millis(3));
        metrics.shed();
        metrics.upstream_throttled();
        metrics.rate_limit_wait(Duration::from_millis(10));
        {
            let _guard = metrics.in_flight();
            assert!(metrics.encode().contains("explo_shim_requests_in_flight 1"));
        }
        let text = metrics.encode();
        for needle in [
            r#"explo_shim_legacy_calls_total{endpoint="update_user_group",status_class="2xx",client="abc123"} 1"#,
            r#"explo_shim_pass_through_requests_total{status_class="4xx"} 1"#,
            r#"explo_shim_upstream_latency_seconds_count{route="translated"} 1"#,
            "explo_shim_requests_in_flight 0",
            "explo_shim_shed_requests_total 1",
            "explo_shim_upstream_throttled_total 1",
            "explo_shim_rate_limit_waits_total 1",
            "explo_shim_rate_limit_refused_total 0",
            "explo_shim_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn every_known_label_combination_is_there_at_zero_from_the_start() {
        let text = Metrics::new(10).encode();
        let mut expected = vec![];
        for route in LegacyRoute::ALL {
            let endpoint = route.legacy_endpoint();
            for reason in REFUSAL_REASONS {
                expected.push(format!(
                    r#"explo_shim_legacy_refused_total{{endpoint="{endpoint}",reason="{reason}"}} 0"#
                ));
            }
            expected.push(format!(
                r#"explo_shim_untranslated_successes_total{{endpoint="{endpoint}"}} 0"#
            ));
        }
        for lookup in LOOKUPS {
            expected.push(format!(
                r#"explo_shim_lookups_total{{lookup="{lookup}"}} 0"#
            ));
        }
        for failure in UpstreamFailure::ALL {
            expected.push(format!(
                r#"explo_shim_upstream_errors_total{{reason="{}"}} 0"#,
                failure.label()
            ));
        }
        for status_class in STATUS_CLASSES {
            expected.push(format!(
                r#"explo_shim_pass_through_requests_total{{status_class="{status_class}"}} 0"#
            ));
        }
        expected.extend(
            [
                "explo_shim_cascade_refused_total 0",
                "explo_shim_cascade_unverified_total 0",
                "explo_shim_trace_spans_dropped_total 0",
                "explo_shim_send_timeouts_total 0",
                "explo_shim_connections_open 0",
                "explo_shim_requests_in_flight 0",
                "explo_shim_connection_limit 0",
                // The client-labelled family is declared, without samples.
                "# TYPE explo_shim_legacy_calls counter",
            ]
            .map(str::to_owned),
        );
        let lines: Vec<&str> = text.lines().collect();
        for line in &expected {
            assert!(lines.contains(&line.as_str()), "missing {line} in\n{text}");
        }
        assert!(!text.contains("explo_shim_legacy_calls_total{"), "{text}");
    }

    #[test]
    fn upstream_errors_count_by_reason() {
        for (index, failure) in UpstreamFailure::ALL.into_iter().enumerate() {
            assert_eq!(failure as usize, index, "ALL is in declaration order");
        }
        let metrics = Metrics::new(10);
        metrics.upstream_error(UpstreamFailure::Reset);
        metrics.upstream_error(UpstreamFailure::Reset);
        metrics.upstream_error(UpstreamFailure::Tls);
        let text = metrics.encode();
        for line in [
            r#"explo_shim_upstream_errors_total{reason="connect"} 0"#,
            r#"explo_shim_upstream_errors_total{reason="reset"} 2"#,
            r#"explo_shim_upstream_errors_total{reason="tls"} 1"#,
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn prometheus_text_declares_what_each_sample_is_named() {
        let metrics = Metrics::new(10);
        metrics.shed();
        let text = metrics.encode_prometheus_text();
        for line in [
            "# TYPE explo_shim_shed_requests_total counter",
            "explo_shim_shed_requests_total 1",
            "# TYPE explo_shim_legacy_calls_total counter",
            "# TYPE explo_shim_build_info gauge",
            "# TYPE explo_shim_requests_in_flight gauge",
            "# TYPE explo_shim_upstream_latency_seconds histogram",
        ] {
            assert!(text.lines().any(|found| found == line), "{line} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            let kind = line.rsplit(' ').next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
        }
        assert!(metrics.encode().ends_with("# EOF\n"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(302), "3xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(504), "5xx");
    }
}
