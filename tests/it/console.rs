//! The migration console, `GET /` on the admin listener, through the real binary and
//! a real browser (headless Chromium from Debian's `chromium` package). Without Chromium the
//! browser test is skipped with a note, unless `EXPLO_SHIM_REQUIRE_CHROMIUM` is set (`.ci/run`
//! installs Chromium and sets it), where that is a failure. In a fleet, any replica's console
//! shows the fleet's records (a real `redis-server`, as in the fleet tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::support::*;
use explo_shim::message::fingerprint::client_fingerprint;
use http::HeaderValue;

/// How long one Chromium run may take before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

const OTHER_TOKEN: &str = "Token sk_live_other_team_9876543210";
/// A name as hostile as `[clients]` lets one be: it must reach the page as text, never markup.
const HOSTILE_NAME: &str = "<img src=//evil.example/x onerror=alert(1)>";

fn iso(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn fingerprint(token: &'static str) -> String {
    client_fingerprint(Some(&HeaderValue::from_static(token)))
}

/// Debian's Chromium, or `None` (with the note printed) when it is not installed.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if found.is_none() {
        let why = "chromium is not installed (apt-get install chromium; .ci/run installs it), \
                   so the console's browser test cannot run";
        assert!(
            std::env::var_os("EXPLO_SHIM_REQUIRE_CHROMIUM").is_none(),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
    }
    found.map(PathBuf::from)
}

/// Runs headless Chromium on `url` with `extra` flags in a profile of its own, and returns
/// what it printed on stdout. Killed after [`BROWSER_LIMIT`].
fn run_chromium(chromium: &Path, url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "explo-shim-console-chromium-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let stdout = profile.with_extension("out");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let Some(status) = blocking_poll(BROWSER_LIMIT, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within {BROWSER_LIMIT:?}");
    };
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let _ = std::fs::remove_file(&stdout);
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium: {status}");
    out
}

/// The values of every `name="..."` attribute in serialized HTML.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_console_shows_clients_schedule_and_charts_in_a_browser_and_loads_nothing_else() {
    let upstream = team_only_upstream().await;
    let (named, hostile) = (fingerprint(TEAM_TOKEN), fingerprint(OTHER_TOKEN));
    let now = SystemTime::now();
    let brownout_start = iso(now + Duration::from_secs(3 * 86_400));
    let sunset = iso(now + Duration::from_secs(60 * 86_400));
    let config = TempConfig::new(&format!(
        "[clients]\n\"{named}\" = \"billing-service\"\n\"{hostile}\" = \"{}\"\n\
         [deprecation]\nsunset = \"{sunset}\"\nafter_sunset = \"refuse\"\n\
         brownouts = [\"{brownout_start}/PT30M\"]\nexempt_clients = [\"{hostile}\"]\n",
        HOSTILE_NAME.replace('"', "\\\"")
    ));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    for (method, path, body) in [
        (
            "POST",
            "/api/update_user_group/",
            r#"{"user_group_id": "g1"}"#,
        ),
        (
            "POST",
            "/api/update_user_group/",
            r#"{"user_group_id": "<b>g2</b>"}"#,
        ),
        (
            "DELETE",
            "/api/delete_user_group/",
            r#"{"user_group_id": "g1"}"#,
        ),
    ] {
        let got = send(
            method,
            &shim.url(path),
            &[
                (TOKEN_HEADER, TEAM_TOKEN),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
        assert!(got.status.as_u16() < 500, "{method} {path}: {got:?}");
    }
    send(
        "POST",
        &shim.url("/api/update_user_group/"),
        &[(TOKEN_HEADER, OTHER_TOKEN)],
        r#"{"user_group_id": "g9"}"#,
    )
    .await;

    // The page and its headers, without a browser: a policy with this response's nonce.
    let page = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").unwrap().to_owned();
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    assert!(nonce.len() >= 22, "{csp}");
    for directive in [
        "default-src 'none'",
        &format!("style-src 'nonce-{nonce}'"),
        "img-src data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    let again = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_ne!(
        again.header("content-security-policy"),
        Some(csp.as_str()),
        "a fresh nonce per response"
    );
    let head = send("HEAD", &shim.admin_url("/"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let Some(chromium) = chromium() else {
        return;
    };
    // 12 s of virtual time: the countdowns tick and the 10 s refresh swaps `<main>` once.
    let dom = run_chromium(
        &chromium,
        &shim.admin_url("/"),
        &["--dump-dom", "--virtual-time-budget=12000"],
    );
    assert!(dom.contains("explo-shim migration console"), "{dom}");
    assert!(
        dom.contains("Refreshed "),
        "the script ran and refreshed: {dom}"
    );
    for expected in [
        "billing-service",
        named.as_str(),
        hostile.as_str(),
        "update_user_group",
        "delete_user_group",
        "update_customer",
        &format!("{brownout_start}/PT30M"),
        &sunset,
        "<code>refuse</code>",
        "badge exempt",
        "<svg class=\"hourly\"",
        "<svg class=\"daily\"",
        "Source: <strong id=\"source\">replica</strong>",
        // The client's strings arrive as text.
        "&lt;img src=//evil.example/x onerror=alert(1)&gt;",
        "&lt;b&gt;g2&lt;/b&gt;",
    ] {
        assert!(dom.contains(expected), "{expected} in {dom}");
    }
    assert!(!dom.contains("<img"), "{dom}");
    assert!(!dom.contains("<b>g2"), "{dom}");
    // The countdowns the script ticks (it writes the same form as the server).
    assert!(
        dom.contains("<span class=\"countdown\" data-at=\""),
        "{dom}"
    );
    // Nothing on the page points at another host.
    let admin_origin = shim.admin_url("");
    for name in [
        "src",
        "href",
        "action",
        "xlink:href",
        "srcset",
        "poster",
        "data",
    ] {
        for value in attribute_values(&dom, name) {
            let local = (value.starts_with('/') && !value.starts_with("//"))
                || value.starts_with('#')
                || value.starts_with(&admin_origin);
            assert!(local, "{name}=\"{value}\" points away from the shim");
        }
    }
    assert!(!dom.contains("evil.example/x\""), "{dom}");
}

#[tokio::test]
async fn the_console_asks_for_the_token_like_usage_and_shows_an_empty_state() {
    let upstream = team_only_upstream().await;
    let token = TempConfig::new("console-token-0123456789\n");
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token.path()));
    let shim = Shim::start(&upstream.url(), &["--config", config.path()]);
    let refused = send("GET", &shim.admin_url("/"), &[], "").await;
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8_lossy(&refused.body).contains("action=\"/login\""));
    let page = send(
        "GET",
        &shim.admin_url("/"),
        &[("authorization", "Bearer console-token-0123456789")],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("No legacy calls recorded yet"), "{html}");
    assert!(
        html.contains("<dd id=\"brownout-next\">none scheduled"),
        "{html}"
    );
}

#[tokio::test]
async fn a_replicas_console_shows_the_calls_made_through_the_others_in_a_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let upstream = team_only_upstream().await;
    let named = fingerprint(TEAM_TOKEN);
    let config = TempConfig::new(&format!(
        "[clients]\n\"{named}\" = \"billing-service\"\n[rate_limit]\n{TEST_REDIS_TIMEOUT}redis_url = \"{}\"\n",
        redis.url()
    ));
    let first = Shim::start(&upstream.url(), &["--config", config.path()]);
    let second = Shim::start(&upstream.url(), &["--config", config.path()]);
    let got = send(
        "POST",
        &first.url("/api/update_user_group/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        r#"{"user_group_id": "g1"}"#,
    )
    .await;
    assert_eq!(got.status, 200);
    // Each replica writes its records to Redis once a second.
    until_ok_every(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let page = send("GET", &second.admin_url("/"), &[], "").await;
            let html = String::from_utf8_lossy(&page.body).into_owned();
            if html.contains("<code>update_user_group</code>") {
                assert!(
                    html.contains("Source: <strong id=\"source\">fleet</strong>"),
                    "{html}"
                );
                assert!(html.contains("<span class=\"name\">billing-service</span>"));
                assert!(html.contains(&named));
                return Ok(());
            }
            Err(format!("never shown: {html}"))
        },
    )
    .await;
}
