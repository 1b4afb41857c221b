//! The rules a replica's own code and the fleet's Redis scripts share, run on a real
//! `redis-server` against the same tables of cases the unit tests run the local code against:
//! the upstream budget (GCRA) and the client cap's eviction rule. Each table lives next to the
//! local rule in `src/`, reached here through `explo_shim::shared_rules`.

use std::time::Duration;

use explo_shim::config::RateLimit;
use explo_shim::shared_rules::budget_cases::{CASES as BUDGET_CASES, Expect, Figures, Step};
use explo_shim::shared_rules::eviction_cases::{CASES as EVICTION_CASES, Counted, OTHER_CLIENTS};
use explo_shim::shared_rules::{fleet_budget, fleet_usage};

use crate::support::*;

/// A Redis of the test's own and a connection to it; `None` only where a missing
/// `redis-server` may skip the test (see [`RedisServer::start`]).
async fn redis() -> Option<(RedisServer, redis::aio::MultiplexedConnection)> {
    let server = RedisServer::start()?;
    let connection = server.connect().await;
    Some((server, connection))
}

fn rate_limit(figures: &Figures) -> RateLimit {
    RateLimit {
        per_minute: figures.per_minute,
        burst: figures.burst,
        max_wait: figures.max_wait(),
        max_upstream_hold: figures.longest_hold(),
    }
}

/// Redis's clock as the script would read it: a Unix time in milliseconds, so the keys' expiry
/// (set from the script's own clock) stays sensible.
const EPOCH_MS: u64 = 1_796_379_600_000;

#[tokio::test]
async fn the_fleet_budget_follows_every_shared_case() {
    let Some((_server, mut connection)) = redis().await else {
        return;
    };
    for (number, case) in BUDGET_CASES.iter().enumerate() {
        // Every case starts from an empty budget of its own.
        let prefix = format!("explo-shim:{{case-{number}}}:");
        let mut limit = rate_limit(&case.figures);
        for (index, step) in case.steps.iter().enumerate() {
            match *step {
                Step::Admit { at_ms, expect } => {
                    let admission =
                        fleet_budget::admit_at(&mut connection, &prefix, &limit, EPOCH_MS + at_ms)
                            .await
                            .expect("the budget script runs");
                    assert_eq!(Expect::of(admission), expect, "{}: step {index}", case.name);
                }
                Step::Throttled { at_ms, delay_ms } => fleet_budget::hold_at(
                    &mut connection,
                    &prefix,
                    (Duration::from_millis(delay_ms), limit.max_upstream_hold),
                    EPOCH_MS + at_ms,
                )
                .await
                .expect("the hold script runs"),
                Step::Reload(figures) => limit = rate_limit(&figures),
            }
        }
    }
}

#[tokio::test]
async fn the_fleet_usage_records_follow_every_shared_eviction_case() {
    let Some((_server, mut connection)) = redis().await else {
        return;
    };
    for (number, case) in EVICTION_CASES.iter().enumerate() {
        let prefix = format!("explo-shim:{{case-{number}}}:");
        let cap = u64::try_from(case.cap).unwrap();
        for (index, call) in case.calls.iter().enumerate() {
            let counted = fleet_usage::record_call(
                &mut connection,
                (&prefix, cap),
                call.client,
                call.accepted,
            )
            .await
            .expect("the usage script runs");
            let expected = match call.counted {
                Counted::Itself => (call.client, None),
                Counted::Displacing(client) => (call.client, Some(client)),
                Counted::Other => (OTHER_CLIENTS, None),
            };
            assert_eq!(
                (counted.label.as_str(), counted.displaced.as_deref()),
                expected,
                "{}: call {index}",
                case.name
            );
        }
    }
}
