//! Replicas sharing one Redis act as one shim: one upstream budget, one usage view.
//! Every test starts its own `redis-server` (on a unix socket of its own, no persistence)
//! and real shims against an in-process upstream.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;
use serde_json::{Value, json};

/// A fleet config: `per_minute` and `burst` for the whole fleet, no waiting for a turn.
fn fleet_config(redis: &RedisServer, per_minute: u32, burst: u32) -> TempConfig {
    TempConfig::new(&format!(
        "[rate_limit]\nper_minute = {per_minute}\nburst = {burst}\nmax_wait = \"1ms\"\n\
         {TEST_REDIS_TIMEOUT}redis_url = \"{}\"\n",
        redis.url()
    ))
}

/// Whether a replica has written the fleet's hold (its key ends in `budget:hold`) to Redis.
async fn hold_written(redis: &RedisServer) -> bool {
    let mut connection = redis.connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*budget:hold")
        .query_async(&mut connection)
        .await
        .unwrap();
    !keys.is_empty()
}

async fn metric(shim: &Shim, line_start: &str) -> Option<f64> {
    let metrics = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn backend(shim: &Shim) -> Value {
    send("GET", &shim.admin_url("/readyz"), &[], "")
        .await
        .json()["rate_limit_backend"]
        .clone()
}

#[tokio::test]
async fn two_replicas_share_one_budget() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let config = fleet_config(&redis, 60, 4);
    let replicas = [
        Shim::start(&upstream.url(), &["--config", config.path()]),
        Shim::start(&upstream.url(), &["--config", config.path()]),
    ];
    let started = Instant::now();
    let (mut admitted, mut refused) = (0u32, 0u32);
    for round in 0..12 {
        let got = send("GET", &replicas[round % 2].url("/api/customers/"), &[], "").await;
        match got.status.as_u16() {
            200 => admitted += 1,
            429 => {
                got.assert_shim_error(429, "rate_limited");
                assert!(got.header("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", got.body),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The fleet's burst plus its refill (one a second), with one for the boundary; two
    // separate budgets would have let 8 through at once.
    let most = 4 + elapsed.ceil() as u32;
    assert!(admitted >= 4, "the burst goes through: {admitted}");
    assert!(
        admitted <= most,
        "{admitted} admitted in {elapsed:.2}s, at most {most}"
    );
    assert_eq!(admitted + refused, 12, "none lost");
    assert_eq!(upstream.requests().len() as u32, admitted);
    for replica in &replicas {
        assert_eq!(backend(replica).await, "redis");
    }
}

#[tokio::test]
async fn an_upstream_429_holds_the_whole_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::start(|request| {
        if request.path() == "/throttled" {
            Reply::json(429, json!({"detail": "slow down"})).header("retry-after", "6")
        } else {
            Reply::json(200, json!({"success": 1}))
        }
    })
    .await;
    let config = fleet_config(&redis, 600, 50);
    let first = Shim::start(&upstream.url(), &["--config", config.path()]);
    let second = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(
        send("GET", &first.url("/throttled"), &[], "").await.status,
        429
    );
    // The hold is written off the request path: wait until it is in Redis (the window is six
    // seconds, so a slow machine still checks inside it).
    until(
        Duration::from_secs(5),
        "the hold never reached Redis",
        || async { hold_written(&redis).await.then_some(()) },
    )
    .await;
    send("GET", &second.url("/api/customers/"), &[], "")
        .await
        .assert_shim_error(429, "rate_limited");
    assert_eq!(upstream.requests().len(), 1, "the other replica waited too");
}

#[tokio::test]
async fn the_fleet_hold_of_a_retry_after_past_u64_ends_at_the_cap() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::start(|request| {
        if request.path() == "/throttled" {
            Reply::json(429, json!({"detail": "slow down"}))
                .header("retry-after", "18446744073709551615")
        } else {
            Reply::json(200, json!({"success": 1}))
        }
    })
    .await;
    let config = TempConfig::new(&format!(
        "[rate_limit]\nper_minute = 600000\nburst = 100000\nmax_wait = \"1ms\"\n\
         max_upstream_hold = \"5s\"\n{TEST_REDIS_TIMEOUT}redis_url = \"{}\"\n",
        redis.url()
    ));
    let first = Shim::start(&upstream.url(), &["--config", config.path()]);
    let second = Shim::start(&upstream.url(), &["--config", config.path()]);
    let throttled = send("GET", &first.url("/throttled"), &[], "").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json()["detail"], "slow down");
    // The hold is written off the request path: ask the other replica until it is held.
    // A budget this large never refuses: the only 429 is the hold's.
    let held = until(
        Duration::from_secs(10),
        "the hold never reached the fleet",
        || async {
            let got = send("GET", &second.url("/api/customers/"), &[], "").await;
            (got.status == 429).then_some(got)
        },
    )
    .await;
    let held_at = std::time::Instant::now();
    held.assert_shim_error(429, "rate_limited");
    let retry_after: u64 = held.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    // Redis kept the hold, not an error: the replica still shares its budget.
    assert_eq!(backend(&second).await, "redis");
    // The hold ends when it said: asked until a call passes, for little more than that.
    let limit = Duration::from_secs(retry_after) + Duration::from_secs(2);
    until_ok_every(limit, Duration::from_millis(200), || async {
        match send("GET", &second.url("/api/customers/"), &[], "")
            .await
            .status
            .as_u16()
        {
            200 => Ok(()),
            status => Err(format!("still {status} after {retry_after} s")),
        }
    })
    .await;
    // `Retry-After` rounds the rest of the hold up, so the first call that passed came at
    // most that long after the refusal, give or take one poll (200 ms) and the round trips
    // of a loaded machine; a hold past the cap (u64::MAX s) would never end.
    let passed_after = held_at.elapsed();
    assert!(
        passed_after <= Duration::from_secs(retry_after) + Duration::from_millis(1500),
        "the hold said {retry_after} s but lasted {passed_after:?}"
    );
}

#[tokio::test]
async fn a_redis_outage_costs_no_requests_and_its_return_is_noticed() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let config = fleet_config(&redis, 6000, 100);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(
        send("GET", &shim.url("/api/customers/"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(backend(&shim).await, "redis");

    redis.stop();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            send("GET", &shim.url("/api/customers/"), &[], "")
                .await
                .status,
            200
        );
    }
    // Twenty requests with Redis gone take nowhere near twenty timeouts (40 s).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(backend(&shim).await, "local");
    assert_eq!(
        send("GET", &shim.admin_url("/healthz"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        send("GET", &shim.admin_url("/readyz"), &[], "")
            .await
            .status,
        200
    );
    let warnings = shim
        .events("explo_shim::fleet")
        .into_iter()
        .filter(|event| event["level"] == "WARN")
        .count();
    assert_eq!(warnings, 1, "one warning per outage, not one per request");
    assert_eq!(
        metric(&shim, "explo_shim_rate_limit_backend{backend=\"local\"}").await,
        Some(1.0)
    );

    redis.restart();
    until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            assert_eq!(
                send("GET", &shim.url("/api/customers/"), &[], "")
                    .await
                    .status,
                200
            );
            match backend(&shim).await == "redis" {
                true => Ok(()),
                false => Err("Redis's return was not noticed".to_owned()),
            }
        },
    )
    .await;
    assert!(
        shim.events("explo_shim::fleet")
            .iter()
            .any(|event| event["level"] == "INFO")
    );
    // The Redis URL (which may hold a password) is never logged whole; the team token never.
    assert!(!shim.logs().iter().any(|line| line.contains(TEAM_TOKEN)));
}

#[tokio::test]
async fn a_new_replica_sees_the_usage_of_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let config = fleet_config(&redis, 6000, 100);
    {
        let first = Shim::start(&upstream.url(), &["--config", config.path()]);
        let second = Shim::start(&upstream.url(), &["--config", config.path()]);
        for shim in [&first, &second] {
            let got = send(
                "POST",
                &shim.url("/api/update_user_group/"),
                &[(TOKEN_HEADER, TEAM_TOKEN)],
                r#"{"user_group_id": "g1"}"#,
            )
            .await;
            assert_eq!(got.status, 200);
        }
        // Both stop here; their last records are written as they shut down.
        for mut shim in [first, second] {
            shim.signal("TERM");
            assert!(shim.wait_exit(Duration::from_secs(10)).is_some());
        }
    }
    let newcomer = Shim::start(&upstream.url(), &["--config", config.path()]);
    let usage = send("GET", &newcomer.admin_url("/usage"), &[], "")
        .await
        .json();
    assert_eq!(usage["source"], "fleet");
    let clients = usage["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{usage}");
    let endpoint = &clients[0]["endpoints"][0];
    assert_eq!(endpoint["endpoint"], "update_user_group");
    assert_eq!(endpoint["count"], 2);
    assert_eq!(endpoint["last_user_group_id"], "g1");
    // Fingerprints only: the token is stored nowhere in Redis.
    let dump = std::process::Command::new("redis-cli")
        .args(["-s", redis.socket(), "--scan"])
        .output();
    if let Ok(dump) = dump {
        assert!(!String::from_utf8_lossy(&dump.stdout).contains("sk_live"));
    }
    // `explo-shim usage` shows the same.
    let output = run_binary(&["usage", "--admin", &newcomer.admin_url("")], &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("update_user_group"));
}

/// The fleet's `/usage` once it lists `count` calls in all, asking until the writer (once a
/// second) has written them.
async fn fleet_usage_with_calls(shim: &Shim, count: u64) -> Value {
    until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
            let written: u64 = usage["clients"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|client| client["endpoints"].as_array().unwrap())
                .map(|endpoint| endpoint["count"].as_u64().unwrap())
                .sum();
            if usage["source"] == "fleet" && written >= count {
                Ok(usage)
            } else {
                Err(format!("never written: {usage}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn usage_keys_in_redis_expire_after_35_days_without_writes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let config = fleet_config(&redis, 6000, 100);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "g1"}),
    )
    .await;
    assert_eq!(got.status, 200);
    fleet_usage_with_calls(&shim, 1).await;

    let mut connection = redis.connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("explo-shim:*usage*")
        .query_async(&mut connection)
        .await
        .unwrap();
    // The clients set, the records set and the one record (no unverified client).
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(
            (35 * 86_400 - 60..=35 * 86_400).contains(&ttl),
            "{key}: {ttl}"
        );
    }
}

/// The fleet's calls per UTC hour and day are one set of buckets in Redis, and each
/// write deletes the ones that left the window.
#[tokio::test]
async fn two_replicas_calls_add_up_in_the_same_buckets_and_writes_delete_old_ones() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let config = fleet_config(&redis, 6000, 100);
    let replicas = [
        Shim::start(&upstream.url(), &["--config", config.path()]),
        Shim::start(&upstream.url(), &["--config", config.path()]),
    ];
    let update = async |shim: &Shim| {
        let got = post_json(
            &shim.url("/api/update_user_group/"),
            &json!({"user_group_id": "g1"}),
        )
        .await;
        assert_eq!(got.status, 200);
    };
    let before = SystemTime::now();
    for shim in [
        &replicas[0],
        &replicas[1],
        &replicas[0],
        &replicas[1],
        &replicas[0],
    ] {
        update(shim).await;
    }
    let made = (before, SystemTime::now());
    for replica in &replicas {
        let usage = fleet_usage_with_calls(replica, 5).await;
        assert_eq!(usage["clients"][0]["endpoints"][0]["count"], 5, "{usage}");
        assert_buckets(&usage, "update_user_group", "hourly", 3600, made, 5);
        assert_buckets(&usage, "update_user_group", "daily", 86_400, made, 5);
    }

    // Fields as an earlier write left them: one hour and one day past the window (49 hours
    // and 40 days ago), one hour still in it (two hours ago).
    let mut connection = redis.connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("explo-shim:*usage:record:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record = &keys[0];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hour_start = |ago: u64| (now - ago * 3600) / 3600 * 3600;
    let (stale_hour, kept_hour) = (
        format!("h:{}", hour_start(49)),
        format!("h:{}", hour_start(2)),
    );
    let stale_day = format!("d:{}", (now - 40 * 86_400) / 86_400 * 86_400);
    let _: () = redis::cmd("HSET")
        .arg(record)
        .arg(&stale_hour)
        .arg(7)
        .arg(&stale_day)
        .arg(9)
        .arg(&kept_hour)
        .arg(4)
        .query_async(&mut connection)
        .await
        .unwrap();

    update(&replicas[1]).await;
    let usage = fleet_usage_with_calls(&replicas[0], 6).await;
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(record)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!fields.contains(&stale_hour), "{fields:?}");
    assert!(!fields.contains(&stale_day), "{fields:?}");
    assert!(fields.contains(&kept_hour), "{fields:?}");
    // The hour kept is read back with the others, oldest first.
    let hourly = &usage["clients"][0]["endpoints"][0]["hourly"];
    let kept_start =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(hour_start(2)))
            .to_string();
    assert_eq!(
        hourly[0],
        json!({"start": kept_start, "calls": 4}),
        "{usage}"
    );
    let calls: u64 = hourly
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 4 + 6, "{usage}");
}

#[tokio::test]
async fn refused_tokens_do_not_push_a_team_out_of_the_fleets_usage() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = team_only_upstream().await;
    let config = TempConfig::new(&format!(
        "[limits]\nmax_tracked_clients = 3\n[rate_limit]\n{TEST_REDIS_TIMEOUT}redis_url = \"{}\"\n",
        redis.url()
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    for token in ["Token guess-1", "Token guess-2", "Token guess-3"] {
        let got = send(
            "POST",
            &shim.url("/api/update_user_group/"),
            &[(TOKEN_HEADER, token)],
            r#"{"user_group_id": "g1"}"#,
        )
        .await;
        assert_eq!(got.status, 401);
    }
    // Written before the team calls, as a separate replica's would be.
    fleet_usage_with_calls(&shim, 3).await;
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "g1"}),
    )
    .await;
    assert_eq!(got.status, 200);
    // The team's call takes the place of one refused client's, not `other`'s.
    let team = explo_shim::message::fingerprint::client_fingerprint(Some(
        &http::HeaderValue::from_static(TEAM_TOKEN),
    ));
    let usage = until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let usage = fleet_usage_with_calls(&shim, 3).await;
            match usage.to_string().contains(&team) {
                true => Ok(usage),
                false => Err(format!("the team never appeared: {usage}")),
            }
        },
    )
    .await;
    let clients = usage["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 3, "{usage}");
    assert!(
        !clients
            .iter()
            .any(|client| client["client_fingerprint"] == "other"),
        "{usage}"
    );
}

#[test]
fn bad_redis_urls_stop_start_up_and_name_the_key() {
    for url in ["http://localhost:6379", "redis://", "not a url"] {
        let output = run_binary(
            &[
                "--check-config",
                "--upstream",
                "https://api.explo.co",
                "--rate-limit-redis-url",
                url,
            ],
            &[],
        );
        assert_eq!(output.status.code(), Some(64), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("rate_limit.redis_url"), "{url}: {stderr}");
    }
    let output = run_binary(
        &["--check-config"],
        &[(
            "EXPLO_SHIM_RATE_LIMIT_REDIS_URL",
            "redis://:hunter2@127.0.0.1:6379/0",
        )],
    );
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("hunter2"),
        "the password is never printed: {stdout}"
    );
}

/// `/usage` may read many records, so it has a timeout of its own; a slow read must never make
/// the serving threads give up on Redis (their budget would go local on every replica).
#[tokio::test]
async fn a_slow_usage_read_waits_for_redis_and_never_marks_it_down() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(200, json!({"success": 1}))).await;
    let config = fleet_config(&redis, 6000, 100);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "a"}),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(backend(&shim).await, "redis");
    // Redis answers nobody for 300 ms once `CLIENT PAUSE` has returned: far past the request
    // path's 25 ms, well within the admin read's 2 s.
    let paused = std::process::Command::new("redis-cli")
        .args(["-s", redis.socket(), "CLIENT", "PAUSE", "300"])
        .output()
        .expect("redis-cli comes with redis-server");
    assert!(paused.status.success(), "{paused:?}");
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["source"], "fleet", "{usage}");
    assert_eq!(backend(&shim).await, "redis");
}

#[tokio::test]
async fn absurd_values_in_the_fleets_usage_records_are_skipped_or_clamped_not_trusted() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = FakeUpstream::always(Reply::json(
        200,
        json!({"success": 1, "customer": customer("g1", "t")}),
    ))
    .await;
    let config = fleet_config(&redis, 6000, 100);
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "g1"}),
    )
    .await;
    assert_eq!(got.status, 200);
    fleet_usage_with_calls(&shim, 1).await;

    let mut connection = redis.connect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("explo-shim:*usage:record:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let hset = async |connection: &mut redis::aio::MultiplexedConnection,
                      fields: &[(&str, &str)]| {
        let mut command = redis::cmd("HSET");
        command.arg(&keys[0]);
        for (field, value) in fields {
            command.arg(*field).arg(*value);
        }
        let _: () = command.query_async(connection).await.unwrap();
    };
    let console_and_usage = async || {
        let usage = send("GET", &shim.admin_url("/usage"), &[], "").await;
        assert_eq!(usage.status, 200);
        let console = send("GET", &shim.admin_url("/"), &[], "").await;
        assert_eq!(console.status, 200);
        usage.json()
    };

    // Past the year 9999, and past what a clock can add; an hour that has not begun.
    hset(
        &mut connection,
        &[
            ("last_seen", "18446744073709551615"),
            ("h:253402300800", "5"),
            ("d:99999999999", "5"),
        ],
    )
    .await;
    let usage = console_and_usage().await;
    let endpoint = &usage["clients"][0]["endpoints"][0];
    let last_seen = humantime::parse_rfc3339(endpoint["last_seen"].as_str().unwrap()).unwrap();
    assert!(last_seen <= SystemTime::now(), "clamped to now: {usage}");
    let hourly_calls: u64 = endpoint["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(hourly_calls, 1, "the future hour is left out: {usage}");
    shim.wait_for_line("no warning", |line| {
        line.contains("hold values no shim writes")
    })
    .await;

    // Times that are not times: the record is left out, the rest of the report stands.
    hset(
        &mut connection,
        &[("first_seen", "-12"), ("last_seen", "soon")],
    )
    .await;
    let usage = console_and_usage().await;
    assert_eq!(usage["clients"], json!([]), "{usage}");
}
