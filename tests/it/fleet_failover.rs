//! The fleet follows its Redis through a failover, with real processes: a primary, a replica
//! and a Sentinel (`redis-server --sentinel`), each on a unix socket behind a loopback port the
//! test keeps (see `support/redis.rs`), the replica and the sentinel announcing those ports.
//! The primary is killed, or demoted behind the same URL (a managed endpoint); the fleet's
//! scripts must then run on the new primary within seconds, and every legacy call meanwhile
//! gets 200 or 429 (the local fallback), never a 5xx and never a hang.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

/// The name the sentinel monitors the primary under.
const MASTER: &str = "explo-fleet";
/// The longest one legacy call may take before the test calls it a hang.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// One legacy call, from the client with `token`: 200 or 429, within [`CALL_LIMIT`].
async fn legacy_call(shim: &Shim, token: &str) {
    let got = tokio::time::timeout(
        CALL_LIMIT,
        send(
            "POST",
            &shim.url("/api/update_user_group/"),
            &[(TOKEN_HEADER, token)],
            r#"{"user_group_id": "g1"}"#,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("a legacy call hung for {CALL_LIMIT:?}"));
    assert!(
        matches!(got.status.as_u16(), 200 | 429),
        "a legacy call got {}: {:?}",
        got.status,
        got.body
    );
}

/// The budget `/readyz` names: `redis` or `local`.
async fn backend(shim: &Shim) -> String {
    let ready = send("GET", &shim.admin_url("/readyz"), &[], "")
        .await
        .json();
    ready["rate_limit_backend"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A counter's value in `/metrics`.
async fn counter(shim: &Shim, name: &str) -> f64 {
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The usage records `redis` holds.
fn usage_records(redis: &RedisServer) -> usize {
    redis
        .cli(&["--scan", "--pattern", "*usage:record:*"])
        .lines()
        .count()
}

/// Calls until `redis` runs the fleet's scripts and the shim's budget is Redis's again; the
/// moment that was first seen.
async fn until_scripts_run_on(shim: &Shim, redis: &RedisServer, limit: Duration) -> Instant {
    until_ok_every(limit, Duration::from_millis(100), || async {
        legacy_call(shim, TEAM_TOKEN).await;
        let scripts = redis.scripts_run();
        let backend = backend(shim).await;
        if scripts > 0 && backend == "redis" {
            Ok(Instant::now())
        } else {
            Err(format!(
                "the fleet's scripts do not run on the new primary ({scripts} run there, the \
                 budget in use is {backend})"
            ))
        }
    })
    .await
}

/// With `redis_sentinels`, the fleet asks the sentinel for the primary; when the primary is
/// killed and the sentinel promotes the replica, the fleet's budget and usage move there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_to_the_replica_sentinel_promotes() {
    let Some(mut primary) = RedisServer::start() else {
        return;
    };
    let Some(replica) = RedisServer::start() else {
        return;
    };
    replica.replicate(&primary);
    let sentinel = SentinelServer::watch(&primary, MASTER, 1);
    assert_eq!(sentinel.primary_port(MASTER), Some(primary.port()));
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let config = TempConfig::new(&format!(
        "[rate_limit]\nper_minute = 6000\nburst = 100\nmax_wait = \"1ms\"\n\
         {TEST_REDIS_TIMEOUT}redis_sentinels = [\"{}\"]\nredis_master_name = \"{MASTER}\"\n",
        sentinel.addr()
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    until_scripts_run_on(&shim, &primary, Duration::from_secs(10)).await;
    assert_eq!(replica.scripts_run(), 0, "a replica runs no script itself");
    assert_eq!(
        counter(&shim, "explo_shim_fleet_failovers_total").await,
        0.0
    );

    primary.stop();
    let killed = Instant::now();
    let announced = until_ok_every(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            legacy_call(&shim, TEAM_TOKEN).await;
            match sentinel.primary_port(MASTER) == Some(replica.port()) {
                true => Ok(Instant::now()),
                false => Err("the sentinel never promoted the replica".to_owned()),
            }
        },
    )
    .await;
    assert_eq!(replica.role(), "master");
    let moved = until_scripts_run_on(&shim, &replica, Duration::from_secs(15)).await;
    eprintln!(
        "the sentinel promoted the replica {:?} after the kill; the fleet's scripts ran there \
         {:?} after that",
        announced - killed,
        moved.saturating_duration_since(announced)
    );
    assert!(counter(&shim, "explo_shim_fleet_failovers_total").await >= 1.0);

    // Usage is written there too, and `/usage` reads it from there: a client first seen now.
    let before = usage_records(&replica);
    legacy_call(&shim, "Token sk_live_after_the_failover_0123456789").await;
    until(
        Duration::from_secs(10),
        "the usage writer never wrote to the new primary",
        || async { (usage_records(&replica) > before).then_some(()) },
    )
    .await;
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["source"], "fleet", "{usage}");
    assert_eq!(backend(&shim).await, "redis");
}

/// A move the sentinel announces (`+switch-master`) while the old primary still answers is
/// followed before any call fails: the fleet listens to the sentinel, not only to its calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_the_sentinel_announces_is_followed_without_a_failed_call() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let Some(replica) = RedisServer::start() else {
        return;
    };
    replica.replicate(&primary);
    let sentinel = SentinelServer::watch(&primary, MASTER, 1);
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let config = TempConfig::new(&format!(
        "[rate_limit]\nper_minute = 6000\nburst = 100\nmax_wait = \"1ms\"\n\
         {TEST_REDIS_TIMEOUT}redis_sentinels = [\"{}\"]\nredis_master_name = \"{MASTER}\"\n",
        sentinel.addr()
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    until_scripts_run_on(&shim, &primary, Duration::from_secs(10)).await;
    // The usage writer has written what it had: nothing of the fleet's calls Redis meanwhile.
    until(
        Duration::from_secs(10),
        "the usage writer never wrote to the primary",
        || async { (usage_records(&primary) > 0).then_some(()) },
    )
    .await;

    sentinel.fail_over(MASTER);
    // No legacy call until the fleet has moved: only the announcement can tell it.
    until_ok_every(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            match counter(&shim, "explo_shim_fleet_failovers_total").await {
                1.0 => Ok(()),
                moves => Err(format!("{moves} moves counted")),
            }
        },
    )
    .await;
    assert_eq!(sentinel.primary_port(MASTER), Some(replica.port()));
    until_scripts_run_on(&shim, &replica, Duration::from_secs(10)).await;
    assert_eq!(backend(&shim).await, "redis");
    let warnings: Vec<_> = shim
        .events("explo_shim::fleet")
        .into_iter()
        .filter(|event| event["level"] == "WARN")
        .collect();
    assert!(warnings.is_empty(), "no call failed: {warnings:?}");
}

/// A managed endpoint (one URL, no sentinel): the old primary is demoted (`REPLICAOF` the new
/// one) while the URL now leads to the new one; the demoted node answers `READONLY` on the
/// connection the fleet holds, and the fleet connects again and reaches the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_behind_the_same_url_is_left_for_the_new_one() {
    let Some(old) = RedisServer::start() else {
        return;
    };
    let Some(new) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    // One serving thread: every link that runs scripts (it and the usage writer's) holds a
    // connection to the old primary before the switch, so none reaches the new one by simply
    // connecting for the first time.
    let config = TempConfig::new(&format!(
        "workers = 1\n[rate_limit]\nper_minute = 6000\nburst = 100\nmax_wait = \"1ms\"\n\
         {TEST_REDIS_TIMEOUT}redis_url = \"{}\"\n",
        old.url()
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    until_scripts_run_on(&shim, &old, Duration::from_secs(10)).await;
    until(
        Duration::from_secs(10),
        "the usage writer never wrote to the old primary",
        || async { (usage_records(&old) > 0).then_some(()) },
    )
    .await;

    // The endpoint's failover: the name leads to the new primary, the old one follows it.
    old.lead_to(&new);
    old.cli(&["REPLICAOF", "127.0.0.1", &new.port().to_string()]);
    assert_eq!(old.role(), "slave");
    let demoted = Instant::now();
    let moved = until_scripts_run_on(&shim, &new, Duration::from_secs(10)).await;
    eprintln!(
        "the fleet's scripts ran on the endpoint's new primary {:?} after the old one was \
         demoted",
        moved.saturating_duration_since(demoted)
    );
    assert!(counter(&shim, "explo_shim_fleet_failovers_total").await >= 1.0);
    assert_eq!(backend(&shim).await, "redis");
    // It was the demoted node's answer that sent the fleet away, on the connection it held.
    assert!(
        shim.events("explo_shim::fleet")
            .iter()
            .any(|event| event["cause"]
                .as_str()
                .is_some_and(|cause| cause.contains("read only replica"))),
        "{:?}",
        shim.events("explo_shim::fleet")
    );
}

/// Sentinel settings that contradict each other stop start-up with exit 64 and name the key.
#[test]
fn contradictory_sentinel_settings_stop_start_up_and_name_the_key() {
    let empty = TempConfig::new("[rate_limit]\nredis_sentinels = []\nredis_master_name = \"m\"\n");
    let output = run_binary(&["--check-config", "--config", empty.path()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("rate_limit.redis_sentinels"), "{stderr}");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("EXPLO_SHIM_RATE_LIMIT_REDIS_SENTINELS", "10.0.0.1:26379")],
            "rate_limit.redis_master_name",
        ),
        (
            &[("EXPLO_SHIM_RATE_LIMIT_REDIS_MASTER_NAME", "m")],
            "rate_limit.redis_sentinels",
        ),
        (
            &[
                ("EXPLO_SHIM_RATE_LIMIT_REDIS_SENTINELS", "10.0.0.1:26379"),
                ("EXPLO_SHIM_RATE_LIMIT_REDIS_MASTER_NAME", "m"),
                (
                    "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
                    "redis://:pw@10.0.0.1:26379/0",
                ),
            ],
            "rate_limit.redis_url",
        ),
    ];
    for (env, key) in cases {
        let output = run_binary(&["--check-config"], env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{env:?}: {stderr}");
        assert!(stderr.contains(key), "{env:?}: {stderr}");
        assert!(!stderr.contains(":pw@"), "no password is printed: {stderr}");
    }
    // Sentinels with a password, and a URL for the primary's: accepted, printed redacted.
    let output = run_binary(
        &["--check-config"],
        &[
            (
                "EXPLO_SHIM_RATE_LIMIT_REDIS_SENTINELS",
                "redis://:hunter2@10.0.0.1:26379, 10.0.0.2:26379",
            ),
            ("EXPLO_SHIM_RATE_LIMIT_REDIS_MASTER_NAME", "explo"),
            (
                "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
                "rediss://:hunter3@primary/2",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        !stdout.contains("hunter"),
        "no password is printed: {stdout}"
    );
    assert!(stdout.contains("redis_master_name = \"explo\""), "{stdout}");
    assert!(stdout.contains("10.0.0.2:26379"), "{stdout}");
}
