//! Through the real binary: client names from `[clients]` (in `/usage`, the `usage`
//! table and the deprecated-usage line, never in metrics labels), and the admin token
//! (`admin_token_file`): Bearer or the console's cookie for `/`, `/usage` and `/metrics`,
//! probes always open, the file read again on SIGHUP.
//!
//! And what keeps the admin port from being guessed, rebound or held: one credential per
//! request; failed credentials counted, logged in summary and throttled per client address
//! (sources on 127/8 other than 127.0.0.1 stand for other clients: Linux routes all of it to
//! loopback); sessions that expire and are signed with the token; sign-out; a warning for a
//! short token; a capped head; sign-ins that never send their form; and, without a token,
//! `Host` checked against DNS rebinding.

use std::time::{Duration, Instant};

use crate::support::*;
use explo_shim::message::fingerprint::client_fingerprint;
use http::HeaderValue;

fn team_fingerprint() -> String {
    client_fingerprint(Some(&HeaderValue::from_static(TEAM_TOKEN)))
}

async fn legacy_update(shim: &Shim) -> Got {
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "g1"}"#,
    )
    .await
}

/// Waits up to 10 s until `count` reloads have ended, put in service or refused.
async fn wait_for_reload(shim: &Shim, count: usize) {
    until_ok(Duration::from_secs(10), || async {
        let done = shim
            .lines_so_far()
            .iter()
            .filter(|line| line.contains("SIGHUP: configuration"))
            .count();
        match done >= count {
            true => Ok(()),
            false => Err(format!("{:?}", shim.logs())),
        }
    })
    .await
}

#[tokio::test]
async fn a_named_client_shows_its_name_beside_its_fingerprint_but_metrics_keep_the_fingerprint() {
    let upstream = team_only_upstream().await;
    let fingerprint = team_fingerprint();
    let config = TempConfig::new(&format!(
        "[clients]\n\"{fingerprint}\" = \"billing-service\"\n"
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(legacy_update(&shim).await.status, 200);

    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    let client = &usage["clients"][0];
    assert_eq!(client["client_fingerprint"], fingerprint.as_str());
    assert_eq!(client["client_name"], "billing-service");
    let audit = shim.events("deprecated");
    assert_eq!(audit[0]["client_name"], "billing-service");
    assert_eq!(audit[0]["client_fingerprint"], fingerprint.as_str());
    let metrics =
        String::from_utf8_lossy(&send("GET", &shim.admin_url("/metrics"), &[], "").await.body)
            .into_owned();
    assert!(
        metrics.contains(&format!("client=\"{fingerprint}\"")),
        "{metrics}"
    );
    assert!(!metrics.contains("billing-service"), "names add no series");

    let table = run_binary(&["usage", "--admin", &shim.admin_url("")], &[]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("billing-service ({fingerprint})")),
        "{table}"
    );

    // Names reload with the rest of the file.
    std::fs::write(
        &config.0,
        format!("[clients]\n\"{fingerprint}\" = \"invoicing\"\n"),
    )
    .unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1).await;
    let usage = send("GET", &shim.admin_url("/usage"), &[], "").await.json();
    assert_eq!(usage["clients"][0]["client_name"], "invoicing");
}

#[tokio::test]
async fn with_a_token_file_the_migration_data_needs_the_token_and_the_probes_do_not() {
    let upstream = team_only_upstream().await;
    let token = TempConfig::new("first-token-0123456789\n");
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token.path()));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);

    for path in ["/usage", "/metrics"] {
        let refused = send("GET", &shim.admin_url(path), &[], "").await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(
            refused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{path}"
        );
        let wrong = send(
            "GET",
            &shim.admin_url(path),
            &[("authorization", "Bearer first-token-012345678X")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
        let allowed = send(
            "GET",
            &shim.admin_url(path),
            &[("authorization", "Bearer first-token-0123456789")],
            "",
        )
        .await;
        assert_eq!(allowed.status, 200, "{path}");
    }
    // A browser asking for the console gets the sign-in form.
    let page = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(page.status, 401);
    assert!(String::from_utf8_lossy(&page.body).contains("action=\"/login\""));
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            send("GET", &shim.admin_url(probe), &[], "").await.status,
            200,
            "{probe}"
        );
    }

    // The sign-in form sets a same-site, script-proof cookie that opens the same paths.
    let wrong = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=guess",
    )
    .await;
    assert_eq!(wrong.status, 401);
    let signed_in = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=first-token-0123456789",
    )
    .await;
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        send("GET", &shim.admin_url("/usage"), &[("cookie", pair)], "")
            .await
            .status,
        200
    );

    // The subcommands send the configured token themselves.
    assert_eq!(legacy_update(&shim).await.status, 200);
    let table = run_binary(
        &["usage", "--admin", &shim.admin_url("")],
        &[("EXPLO_SHIM_CONFIG", config.path())],
    );
    assert!(table.status.success(), "{table:?}");
    assert!(String::from_utf8_lossy(&table.stdout).contains("update_user_group"));

    // A new token in the file replaces the old one on SIGHUP.
    std::fs::write(&token.0, "second-token-0123456789").unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1).await;
    let old = send(
        "GET",
        &shim.admin_url("/usage"),
        &[("authorization", "Bearer first-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(old.status, 401);
    let new = send(
        "GET",
        &shim.admin_url("/usage"),
        &[("authorization", "Bearer second-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(new.status, 200);
    // The token is in no log line.
    for line in shim.logs() {
        assert!(!line.contains("token-0123456789"), "{line}");
    }
}

#[test]
fn an_empty_or_missing_token_file_stops_start_up_naming_the_key() {
    let empty = TempConfig::new("\n");
    for path in [empty.path(), "/nonexistent/explo-shim-token"] {
        let config = TempConfig::new(&format!("admin_token_file = \"{path}\"\n"));
        let output = run_binary(&["--config", config.path(), "--check-config"], &[]);
        assert_eq!(output.status.code(), Some(64), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("admin_token_file"),
            "{output:?}"
        );
    }
}

// ---------------------------------------------------------------- guarding the admin port

/// A token long enough to draw no warning.
const STRONG_TOKEN: &str = "0123456789abcdef0123456789abcdef-strong";

/// A shim whose admin token is `token`, with the file kept for rotation.
fn shim_with_token(upstream: &FakeUpstream, token: &str) -> (Shim, TempConfig, TempConfig) {
    let token_file = TempConfig::new(&format!("{token}\n"));
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token_file.path()));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    (shim, token_file, config)
}

/// One request over a fresh connection from `source` (any of 127/8 reaches loopback on Linux),
/// so the throttle sees another client address.
async fn send_from(
    source: std::net::IpAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source));
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("reply within 20 s")
        .expect("request succeeds");
    let (parts, body) = response.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn address(text: &str) -> std::net::IpAddr {
    text.parse().unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Signs in with `token` and returns the cookie pair (`explo_shim_admin=...`) and the whole
/// `Set-Cookie` value.
async fn sign_in(shim: &Shim, token: &str) -> (String, String) {
    let signed_in = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("token={token}"),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{:?}", signed_in.body);
    let set_cookie = signed_in.header("set-cookie").unwrap().to_owned();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (pair, set_cookie)
}

/// A session value for `token` that expires at `expiry` (Unix seconds), computed here from the
/// documented construction: HMAC-SHA256 keyed by the token over the label and the expiry.
fn session_for(token: &str, expiry: u64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(format!("explo-shim admin session v1\n{expiry}").as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("explo_shim_admin={expiry}.{signature}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn metric_line(shim: &Shim, name: &str, token: &str) -> String {
    let metrics = send(
        "GET",
        &shim.admin_url("/metrics"),
        &[("authorization", &bearer(token))],
        "",
    )
    .await;
    assert_eq!(metrics.status, 200);
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .to_owned()
}

/// Log events whose message starts with `prefix`.
fn messages(shim: &Shim, prefix: &str) -> Vec<serde_json::Value> {
    shim.logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(prefix))
        })
        .collect()
}

#[tokio::test]
async fn several_credentials_in_one_request_are_refused_unchecked_even_when_one_is_right() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let (session, _) = sign_in(&shim, STRONG_TOKEN).await;
    let right = bearer(STRONG_TOKEN);
    let two_cookies = format!("explo_shim_admin=guess; {session}");
    let cases: [&[(&str, &str)]; 4] = [
        &[("authorization", "Bearer guess"), ("authorization", &right)],
        &[("cookie", &two_cookies)],
        &[("cookie", "explo_shim_admin=guess"), ("cookie", &session)],
        &[("authorization", &right), ("cookie", &session)],
    ];
    // From an address per case, so that none reaches the failures that block an address.
    for (case, headers) in cases.into_iter().enumerate() {
        let source = address(&format!("127.0.0.{}", 20 + case));
        for path in ["/usage", "/metrics", "/"] {
            let refused = send_from(source, "GET", &shim.admin_url(path), headers, "").await;
            assert_eq!(refused.status, 400, "{path} {headers:?}");
            assert_eq!(refused.header("content-type"), Some("application/json"));
            let body = refused.json();
            assert_eq!(body["error"], "several credentials", "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("none of them was checked"),
                "{body}"
            );
        }
    }
    // The sign-in form, too, takes one token.
    let form = send(
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("token=guess&token={STRONG_TOKEN}"),
    )
    .await;
    assert_eq!(form.status, 400);
    assert!(form.header("set-cookie").is_none());
    // Each was a failure.
    assert_eq!(
        metric_line(&shim, "explo_shim_admin_auth_failures_total", STRONG_TOKEN).await,
        "explo_shim_admin_auth_failures_total 13"
    );
}

#[tokio::test]
async fn after_ten_failures_an_address_gets_429_even_with_the_right_token_and_another_does_not() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let guesser = address("127.0.0.2");
    let url = shim.admin_url("/usage");
    for attempt in 1..=10 {
        let wrong = send_from(
            guesser,
            "GET",
            &url,
            &[("authorization", "Bearer guess")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "attempt {attempt}");
    }
    let right = bearer(STRONG_TOKEN);
    for path in ["/usage", "/metrics"] {
        let blocked = send_from(
            guesser,
            "GET",
            &shim.admin_url(path),
            &[("authorization", &right)],
            "",
        )
        .await;
        assert_eq!(blocked.status, 429, "{path}");
        let retry_after: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(blocked.json()["error"], "too many failed credentials");
    }
    // The console and its sign-in form say so as a page, and set no cookie.
    let page = send_from(
        guesser,
        "GET",
        &shim.admin_url("/"),
        &[("authorization", &right)],
        "",
    )
    .await;
    assert_eq!(page.status, 429);
    assert!(page.header("retry-after").is_some());
    assert!(String::from_utf8_lossy(&page.body).contains("Too many failed sign-ins"));
    let form = send_from(
        guesser,
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={STRONG_TOKEN}"),
    )
    .await;
    assert_eq!(form.status, 429);
    assert!(form.header("set-cookie").is_none());
    // Another address is unaffected.
    let other = send_from(
        address("127.0.0.1"),
        "GET",
        &url,
        &[("authorization", &right)],
        "",
    )
    .await;
    assert_eq!(other.status, 200);
    assert!(other.json()["clients"].is_array());
    // The block is in the log once, naming the address.
    let blocked = messages(&shim, "admin: too many failed credentials");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["client"], "127.0.0.2");
}

#[tokio::test]
async fn probes_are_never_throttled() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let guesser = address("127.0.0.3");
    for _ in 0..10 {
        let url = shim.admin_url("/metrics");
        send_from(
            guesser,
            "GET",
            &url,
            &[("authorization", "Bearer guess")],
            "",
        )
        .await;
    }
    let url = shim.admin_url("/metrics");
    let blocked = send_from(
        guesser,
        "GET",
        &url,
        &[("authorization", "Bearer guess")],
        "",
    )
    .await;
    assert_eq!(blocked.status, 429);
    for _ in 0..20 {
        for probe in ["/healthz", "/readyz"] {
            let answered = send_from(
                guesser,
                "GET",
                &shim.admin_url(probe),
                &[("authorization", "Bearer guess")],
                "",
            )
            .await;
            assert_eq!(answered.status, 200, "{probe}");
        }
    }
}

#[tokio::test]
async fn failed_credentials_are_counted_in_a_metric_that_starts_at_zero() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let name = "explo_shim_admin_auth_failures_total";
    assert_eq!(
        metric_line(&shim, name, STRONG_TOKEN).await,
        format!("{name} 0")
    );
    let guesser = address("127.0.0.4");
    let expired = session_for(STRONG_TOKEN, unix_now() - 1);
    let wrong: [(&str, &str, &str); 4] = [
        ("/usage", "authorization", "Bearer guess"),
        ("/metrics", "authorization", "Basic Z3Vlc3M6Z3Vlc3M="),
        ("/", "cookie", &expired),
        ("/usage", "cookie", "explo_shim_admin=1.00"),
    ];
    for (path, header, value) in wrong {
        let refused = send_from(
            guesser,
            "GET",
            &shim.admin_url(path),
            &[(header, value)],
            "",
        )
        .await;
        assert_eq!(refused.status, 401, "{path} {header}");
    }
    let form = send_from(
        guesser,
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=guess",
    )
    .await;
    assert_eq!(form.status, 401);
    // Asking without any credential is no failure: a browser's first visit does that.
    assert_eq!(
        send("GET", &shim.admin_url("/usage"), &[], "").await.status,
        401
    );
    assert_eq!(
        metric_line(&shim, name, STRONG_TOKEN).await,
        format!("{name} 5")
    );
}

#[tokio::test]
async fn failed_credentials_are_logged_once_then_summarised_never_with_the_credential() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    // 9 from each of 6 addresses: 54 failures, none of them blocked.
    let started = Instant::now();
    let mut sent = 0;
    for last in 10..16 {
        let source = address(&format!("127.0.0.{last}"));
        for _ in 0..9 {
            let url = shim.admin_url("/usage");
            let refused = send_from(
                source,
                "GET",
                &url,
                &[("authorization", "Bearer wrong-guess-secret")],
                "",
            )
            .await;
            assert_eq!(refused.status, 401);
            sent += 1;
        }
    }
    let first = messages(&shim, "admin: credential refused");
    assert_eq!(first.len(), 1, "one line of its own: {first:?}");
    assert_eq!(first[0]["client"], "127.0.0.10");
    assert_eq!(first[0]["reason"], "wrong token");
    // The rest come as summary lines, at most one a second, that add up to the rest.
    let summaries = until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let summaries = messages(&shim, "admin: more credentials refused");
            let counted: u64 = summaries
                .iter()
                .map(|event| event["refused"].as_u64().unwrap())
                .sum();
            if counted == sent - 1 {
                return Ok(summaries);
            }
            Err(format!("{counted} of {}: {summaries:?}", sent - 1))
        },
    )
    .await;
    assert!(
        summaries.len() as u64 <= started.elapsed().as_secs() + 1,
        "at most one summary a second, not a line per failure: {summaries:?}"
    );
    for line in shim.logs() {
        assert!(!line.contains("wrong-guess-secret"), "{line}");
        assert!(!line.contains(STRONG_TOKEN), "{line}");
    }
}

#[tokio::test]
async fn a_session_expires_is_signed_with_the_token_and_ends_when_the_token_changes() {
    let upstream = team_only_upstream().await;
    let (shim, token_file, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let before = unix_now();
    let (session, set_cookie) = sign_in(&shim, STRONG_TOKEN).await;
    assert!(
        set_cookie.ends_with("; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(STRONG_TOKEN));
    // The value carries its expiry, 12 h on, signed with the token.
    let value = session.strip_prefix("explo_shim_admin=").unwrap();
    let (expiry, _) = value.split_once('.').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (before + 43_200..=unix_now() + 43_200).contains(&expiry),
        "{value}"
    );
    assert_eq!(session, session_for(STRONG_TOKEN, expiry));
    let usage = |cookie: String| {
        let url = shim.admin_url("/usage");
        async move { send("GET", &url, &[("cookie", &cookie)], "").await }
    };
    assert_eq!(usage(session.clone()).await.status, 200);
    // Any replica with the token makes the same value: one this shim never issued works.
    assert_eq!(
        usage(session_for(STRONG_TOKEN, unix_now() + 60))
            .await
            .status,
        200
    );
    // Expired, forged (a later expiry under the old signature), signed with another token.
    let expired = session_for(STRONG_TOKEN, unix_now() - 1);
    let forged = session.replacen(&expiry.to_string(), &(expiry + 3_600).to_string(), 1);
    let other_key = session_for("another-token-0123456789abcdef0123", expiry);
    for refused in [expired, forged, other_key] {
        let got = usage(refused.clone()).await;
        assert_eq!(got.status, 401, "{refused}");
    }
    // The console asks to sign in again, saying why.
    let page = send(
        "GET",
        &shim.admin_url("/"),
        &[("cookie", &session_for(STRONG_TOKEN, unix_now() - 1))],
        "",
    )
    .await;
    assert_eq!(page.status, 401);
    assert!(String::from_utf8_lossy(&page.body).contains("The session has ended"));

    // A new token ends every session signed with the old one.
    let rotated = "fedcba9876543210fedcba9876543210-rotated";
    std::fs::write(&token_file.0, rotated).unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1).await;
    assert_eq!(usage(session.clone()).await.status, 401);
    let (fresh, _) = sign_in(&shim, rotated).await;
    assert_eq!(usage(fresh).await.status, 200);
    for line in shim.logs() {
        assert!(!line.contains(value) && !line.contains(rotated), "{line}");
    }
}

#[tokio::test]
async fn logout_clears_the_session_cookie_and_the_console_offers_it() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let (session, _) = sign_in(&shim, STRONG_TOKEN).await;
    let console = send("GET", &shim.admin_url("/"), &[("cookie", &session)], "").await;
    assert_eq!(console.status, 200);
    assert!(
        String::from_utf8_lossy(&console.body)
            .contains("<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out"),
    );
    let out = send(
        "POST",
        &shim.admin_url("/logout"),
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/"));
    assert_eq!(out.header("cache-control"), Some("no-store"));
    assert_eq!(
        out.header("set-cookie"),
        Some("explo_shim_admin=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict")
    );
    assert!(out.body.is_empty());
    // The browser now sends no cookie, and gets the sign-in form.
    let page = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(page.status, 401);
    assert!(String::from_utf8_lossy(&page.body).contains("action=\"/login\""));
    // Without a token there is no session, and the console offers no way out.
    let open = Shim::start(&upstream.url(), &[]);
    let console = send("GET", &open.admin_url("/"), &[], "").await;
    assert_eq!(console.status, 200);
    assert!(!String::from_utf8_lossy(&console.body).contains("/logout"));
}

#[tokio::test]
async fn a_short_token_is_a_warning_at_start_and_when_a_reload_reads_a_new_one() {
    let upstream = team_only_upstream().await;
    let (shim, token_file, _config) = shim_with_token(&upstream, "short-token-123");
    let warnings = |shim: &Shim| messages(shim, "the admin token in `admin_token_file` is shorter");
    let at_start = warnings(&shim);
    assert_eq!(at_start.len(), 1, "{at_start:?}");
    let message = at_start[0]["message"].as_str().unwrap();
    assert!(message.contains("openssl rand -hex 32"), "{message}");
    assert_eq!(at_start[0]["level"], "WARN");
    assert_eq!(at_start[0]["min_chars"], 32);
    // Reading the same token again says nothing new; a new short one does; a strong one not.
    shim.signal("HUP");
    wait_for_reload(&shim, 1).await;
    assert_eq!(warnings(&shim).len(), 1);
    std::fs::write(&token_file.0, "other-short-456").unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 2).await;
    assert_eq!(warnings(&shim).len(), 2);
    std::fs::write(&token_file.0, STRONG_TOKEN).unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 3).await;
    assert_eq!(warnings(&shim).len(), 2);
    for line in shim.logs() {
        assert!(
            !line.contains("short-token-123") && !line.contains("other-short-456"),
            "{line}"
        );
    }
    // A strong token at start draws none.
    let (strong, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    assert!(warnings(&strong).is_empty());
}

#[tokio::test]
async fn a_head_past_8_kib_gets_431_on_the_admin_port() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let cookie = format!("explo_shim_admin={}", "0".repeat(10 * 1024));
    let request = format!("GET /usage HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n");
    let reply = raw_exchange(shim.admin, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    // Nothing of it was checked: it is no failed credential.
    assert_eq!(
        metric_line(&shim, "explo_shim_admin_auth_failures_total", STRONG_TOKEN).await,
        "explo_shim_admin_auth_failures_total 0"
    );
    // A head under the cap is read as before.
    let request = format!(
        "GET /usage HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {STRONG_TOKEN}\r\n\
         X-Padding: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(6 * 1024)
    );
    let reply = raw_exchange(shim.admin, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        reply.starts_with("HTTP/1.1 200 "),
        "{}",
        &reply[..reply.len().min(200)]
    );
}

/// The shim's `SIGN_IN_FORM_TIMEOUT`: how long it waits for a sign-in form's body.
const SIGN_IN_FORM_TIMEOUT: Duration = Duration::from_secs(5);

/// A `POST /login` from `source` (any local address when `None`) that the shim has let in and
/// whose form of `content_length` bytes it now waits for: hyper says `100 Continue` when the
/// shim starts reading the form, which is after the throttle's check. The form is not sent.
async fn sign_in_awaiting_its_form(
    shim: &Shim,
    source: Option<std::net::IpAddr>,
    content_length: usize,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    }
    let mut stream = socket.connect(shim.admin).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {content_length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("100 Continue within 10 s")
            .unwrap();
        assert_eq!(read, 1, "closed: {:?}", String::from_utf8_lossy(&interim));
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100 "),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    stream
}

/// The status of `GET /usage` with `Authorization: <authorization>`, sent from `source` over a
/// connection of its own.
async fn usage_status_from(
    admin: std::net::SocketAddr,
    source: std::net::IpAddr,
    authorization: &str,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(admin).await.unwrap();
    let request = format!(
        "GET /usage HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply))
        .await
        .expect("reply within 20 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    reply
        .get(9..12)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("{source}: {reply}"))
}

#[tokio::test]
async fn concurrent_sign_ins_from_one_address_are_checked_no_more_than_ten_times() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let source = address("127.0.0.30");
    let form = b"token=wrong-guess-0123456789";
    // Twenty sign-ins, all let in at their start, all waiting for their forms at once.
    let mut waiting = Vec::new();
    for _ in 0..20 {
        waiting.push(sign_in_awaiting_its_form(&shim, Some(source), form.len()).await);
    }
    for stream in &mut waiting {
        stream.write_all(form).await.unwrap();
    }
    let (mut checked, mut throttled) = (0, 0);
    for mut stream in waiting {
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply))
            .await
            .expect("reply within 20 s")
            .unwrap();
        let reply = String::from_utf8_lossy(&reply);
        if reply.starts_with("HTTP/1.1 401 ") {
            assert!(reply.contains("That is not the admin token."), "{reply}");
            checked += 1;
        } else {
            assert!(reply.starts_with("HTTP/1.1 429 "), "{reply}");
            assert!(reply.contains("Too many failed sign-ins"), "{reply}");
            throttled += 1;
        }
    }
    assert!(
        checked <= 10,
        "{checked} of 20 guesses checked, {throttled} throttled"
    );
    assert_eq!(checked + throttled, 20);
    // The address is blocked now, and only the checked guesses were failures.
    assert_eq!(
        usage_status_from(shim.admin, source, &bearer(STRONG_TOKEN)).await,
        429
    );
    assert_eq!(
        metric_line(&shim, "explo_shim_admin_auth_failures_total", STRONG_TOKEN).await,
        format!("explo_shim_admin_auth_failures_total {checked}")
    );
}

#[tokio::test]
async fn sign_ins_whose_forms_never_arrive_do_not_keep_the_operator_out() {
    use tokio::io::AsyncWriteExt;
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    // Every held form's clock starts after `held_from`, so a real sign-in answered within
    // SIGN_IN_FORM_TIMEOUT of it was answered while all eight were still held. A machine too
    // loaded to get that far in time shows nothing either way: then try again.
    for attempt in 1..=3 {
        let held_from = Instant::now();
        let mut held = Vec::new();
        for _ in 0..8 {
            let mut stream = sign_in_awaiting_its_form(&shim, None, 200).await;
            stream.write_all(b"token=").await.unwrap();
            held.push(stream);
        }
        // The real sign-in is answered, whatever became of the held ones.
        let (session, _) = sign_in(&shim, STRONG_TOKEN).await;
        let answered_after = held_from.elapsed();
        let usage = send(
            "GET",
            &shim.admin_url("/usage"),
            &[("cookie", &session)],
            "",
        )
        .await;
        assert_eq!(usage.status, 200);
        // Each held sign-in still waits for its form, or was ended by its own timeout: never
        // answered sooner.
        for stream in &held {
            let mut reply = [0; 1024];
            match stream.try_read(&mut reply) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(read) => {
                    let reply = String::from_utf8_lossy(&reply[..read]);
                    assert!(
                        held_from.elapsed() >= SIGN_IN_FORM_TIMEOUT
                            && reply.starts_with("HTTP/1.1 401 "),
                        "a held sign-in was answered before its form's timeout: {reply:?}"
                    );
                }
                Err(error) => panic!("{error}"),
            }
        }
        if answered_after < SIGN_IN_FORM_TIMEOUT {
            return;
        }
        eprintln!("attempt {attempt}: the sign-in came {answered_after:?} after the forms");
    }
    panic!("three attempts too slow to show that held sign-ins do not keep the operator out");
}

#[tokio::test]
async fn the_right_token_from_an_address_does_not_wipe_its_failures() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    // A guesser and a scraper with the token behind one NAT address.
    let shared = address("127.0.0.31");
    let right = bearer(STRONG_TOKEN);
    for attempt in 1..=9 {
        let status = usage_status_from(shim.admin, shared, "Bearer guess").await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    assert_eq!(usage_status_from(shim.admin, shared, &right).await, 200);
    // The scrape did not start the guesser's count again: its tenth failure blocks the address.
    assert_eq!(
        usage_status_from(shim.admin, shared, "Bearer guess").await,
        401
    );
    assert_eq!(usage_status_from(shim.admin, shared, &right).await, 429);
}

#[tokio::test]
async fn a_flood_that_fills_the_throttles_table_never_blocks_an_address_that_has_not_failed() {
    let upstream = team_only_upstream().await;
    let (shim, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let right = bearer(STRONG_TOKEN);
    // A guesser blocked before the flood.
    let guesser = address("127.0.0.32");
    for _ in 0..10 {
        assert_eq!(
            usage_status_from(shim.admin, guesser, "Bearer guess").await,
            401
        );
    }
    // One failure each from 4,096 more addresses, the most the throttle counts, and 20 past
    // them: none failed ten times, so none is refused unchecked.
    let base = u32::from(std::net::Ipv4Addr::new(127, 1, 0, 0));
    let flood: Vec<std::net::IpAddr> = (0..4096 + 20)
        .map(|n| std::net::IpAddr::V4((base + n).into()))
        .collect();
    for chunk in flood.chunks(32) {
        let mut sending = tokio::task::JoinSet::new();
        for &source in chunk {
            let admin = shim.admin;
            sending.spawn(async move {
                (
                    source,
                    usage_status_from(admin, source, "Bearer guess").await,
                )
            });
        }
        while let Some(sent) = sending.join_next().await {
            let (source, status) = sent.unwrap();
            assert_eq!(status, 401, "{source}");
        }
    }
    // Addresses that never failed are checked, and let in with the token, as a bearer or
    // through the sign-in form.
    assert_eq!(
        usage_status_from(shim.admin, address("127.2.0.1"), &right).await,
        200
    );
    let form = send_from(
        address("127.2.0.2"),
        "POST",
        &shim.admin_url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("token={STRONG_TOKEN}"),
    )
    .await;
    assert_eq!(form.status, 303);
    // The guesser is still blocked: the flood took no place of a blocked address.
    assert_eq!(usage_status_from(shim.admin, guesser, &right).await, 429);
}

#[tokio::test]
async fn without_a_token_only_this_machines_names_and_listed_hosts_reach_the_data() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("admin_allowed_hosts = [\"shim.internal\"]\n");
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    assert_eq!(legacy_update(&shim).await.status, 200);
    let port = shim.admin.port();
    let with_host = |path: &str, host: String| {
        let url = shim.admin_url(path);
        async move { send("GET", &url, &[("host", &host)], "").await }
    };
    for path in ["/usage", "/metrics", "/"] {
        for host in ["evil.example".to_owned(), format!("evil.example:{port}")] {
            let refused = with_host(path, host.clone()).await;
            assert_eq!(refused.status, 421, "{path} {host}");
            assert_eq!(refused.header("content-type"), Some("application/json"));
            let body = refused.json();
            assert_eq!(body["error"], "misdirected request", "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("admin_allowed_hosts")
            );
            let text = String::from_utf8_lossy(&refused.body);
            assert!(
                !text.contains("evil.example")
                    && !text.contains("explo_shim_")
                    && !text.contains("update_user_group"),
                "no data, and the Host is not echoed: {text}"
            );
        }
        for host in [
            format!("127.0.0.1:{port}"),
            "127.0.0.1".to_owned(),
            format!("[::1]:{port}"),
            "localhost".to_owned(),
            format!("LocalHost:{port}"),
            "shim.internal".to_owned(),
            format!("shim.internal:{port}"),
        ] {
            assert_eq!(
                with_host(path, host.clone()).await.status,
                200,
                "{path} {host}"
            );
        }
    }
    // Probes answer any Host.
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            with_host(probe, "evil.example".to_owned()).await.status,
            200,
            "{probe}"
        );
    }
    // HTTP/1.0 without Host: no browser sends that, so no rebinding page can.
    let reply = raw_exchange(
        shim.admin,
        b"GET /usage HTTP/1.0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.0 200 "), "{reply}");

    // The list reloads with the file.
    std::fs::write(&config.0, "admin_allowed_hosts = [\"metrics.internal\"]\n").unwrap();
    shim.signal("HUP");
    wait_for_reload(&shim, 1).await;
    assert_eq!(
        with_host("/usage", "metrics.internal".to_owned())
            .await
            .status,
        200
    );
    assert_eq!(
        with_host("/usage", "shim.internal".to_owned()).await.status,
        421
    );

    // With a token, the token is the guard, whatever the Host.
    let (guarded, _token, _config) = shim_with_token(&upstream, STRONG_TOKEN);
    let right = bearer(STRONG_TOKEN);
    let got = send(
        "GET",
        &guarded.admin_url("/usage"),
        &[("host", "evil.example"), ("authorization", &right)],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
}

#[test]
fn admin_allowed_hosts_comes_from_flag_variable_or_file_and_check_config_shows_it() {
    let output = run_binary(
        &["--check-config"],
        &[(
            "EXPLO_SHIM_ADMIN_ALLOWED_HOSTS",
            "Shim.Internal, metrics.internal",
        )],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().any(|line| line
            .starts_with("admin_allowed_hosts = [\"metrics.internal\", \"shim.internal\"]")
            && line.ends_with("# env EXPLO_SHIM_ADMIN_ALLOWED_HOSTS")),
        "{stdout}"
    );
    let output = run_binary(
        &["--check-config", "--admin-allowed-hosts", "*.internal"],
        &[],
    );
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin_allowed_hosts") && stderr.contains("--admin-allowed-hosts"),
        "{stderr}"
    );
}
