//! The migration console, `GET /` on the admin listener: who still calls the legacy API, how
//! much and when, next to the retirement schedule, on one page.
//!
//! The page is self-contained: its CSS ([`console.css`](STYLE)), script
//! ([`console.js`](SCRIPT)) and charts (SVG, [`charts`]) are inline, nothing is fetched from
//! another host, and [`content_security_policy`] says so to the browser. Everything is
//! rendered here, on the server, so the page is whole without scripts; the script only ticks
//! the countdowns and, every [`REFRESH_SECONDS`], fetches `/` again and swaps `<main>` (charts
//! included) for the new one. Every text that comes from a client or the config (names,
//! fingerprints, `user_group_id`s) is escaped by [`escape`]; the script sets only its own
//! words, and only with `textContent`.
//!
//! [`render`] is a pure function: the `/usage` report, the schedule, the time and the nonce
//! in, the page out.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use crate::observe::usage::{Source, UsageReport};
use charts::charts_section;
use clients::clients_section;
use markup::{escape, time_element};
use schedule::schedule_section;

mod charts;
mod clients;
mod markup;
mod policy;
mod schedule;

pub use policy::{content_security_policy, nonce};
pub use schedule::Schedule;

/// How often the page's script fetches the page again.
pub const REFRESH_SECONDS: u64 = 10;

/// The whole page for `report` (the `/usage` JSON, client names included) at `now`.
pub fn render(
    report: &UsageReport,
    schedule: &Schedule<'_>,
    now: SystemTime,
    nonce: &str,
    sign_out: bool,
) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let nonce = escape(nonce);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>explo-shim: migration console</title>\
         <style nonce=\"{nonce}\">{style}</style></head>\
         <body data-refresh-seconds=\"{REFRESH_SECONDS}\">\
         <header><h1>explo-shim migration console</h1>\
         <p id=\"refresh-status\">Rendered by the shim; with scripts on, the \
         page refreshes every {REFRESH_SECONDS}&nbsp;s.</p>{sign_out}</header>",
        style = Joined(STYLE),
        // Signed in with the admin token: the way out drops the session cookie.
        sign_out = if sign_out {
            "<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out\
             </button></form>"
        } else {
            ""
        }
    );
    page.push_str(&main(report, schedule, now));
    let _ = write!(
        page,
        "<footer><p>Self-contained: nothing on this page comes from another host. The same \
         data as JSON: <a href=\"/usage\">/usage</a>; counters: \
         <a href=\"/metrics\">/metrics</a>.</p></footer>\
         <script nonce=\"{nonce}\">{script}</script></body></html>",
        script = Joined(SCRIPT)
    );
    page
}

/// `<main>`: what the refresh swaps.
fn main(report: &UsageReport, schedule: &Schedule<'_>, now: SystemTime) -> String {
    let mut out = String::from("<main>");
    let source = report.source.as_str();
    let source_text = match report.source {
        Source::Fleet => "every replica on this Redis",
        Source::Replica => "this process only: no fleet, or its Redis did not answer",
    };
    let _ = write!(
        out,
        "<p class=\"meta\">As of {}. Source: <strong id=\"source\">{}</strong> \
         ({source_text}).</p>",
        time_element(now),
        escape(source)
    );
    out.push_str(&schedule_section(schedule, now));
    out.push_str(&clients_section(&report.clients, schedule.retirement));
    out.push_str(&charts_section(&report.clients, now));
    out.push_str("</main>");
    out
}

/// Inline, under the response's nonce. Colours keep at least 4.5:1 contrast on their
/// background in both schemes.
const STYLE: &str = include_str!("console.css");

/// Ticks the countdowns each second and swaps `<main>` for a fresh one every
/// [`REFRESH_SECONDS`] (read from `<body data-refresh-seconds>`). It writes only its own
/// words, with `textContent`; the swapped `<main>` was parsed from the server's escaped markup
/// by `DOMParser`, which runs no scripts.
const SCRIPT: &str = include_str!("console.js");

/// `text` with its line breaks left out: the files keep a rule or a few statements a line for
/// people, and the page carries them joined, the same bytes as when they were Rust strings.
/// So a break in either file must mean nothing: no `//` comment, no statement that ends
/// without its `;`, no break inside a string.
struct Joined(&'static str);

impl fmt::Display for Joined {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.lines().try_for_each(|line| out.write_str(line))
    }
}

#[cfg(test)]
mod tests {
    use super::charts::{DAILY, HOURLY, chart, series};
    use super::*;
    use crate::legacy::retirement::schedule::parse_interval;
    use crate::legacy::retirement::{AfterSunset, Retirement};
    use crate::observe::usage::CallBucket;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn retirement(exempt: &[&str]) -> Retirement {
        Retirement::new(
            vec![
                parse_interval("2026-12-01T15:00:00Z/PT5M").unwrap(),
                parse_interval("2026-12-09T15:00:00Z/PT30M").unwrap(),
                parse_interval("2026-12-16T15:00:00Z/PT1H").unwrap(),
            ],
            Some(at("2027-03-01T00:00:00Z")),
            AfterSunset::Refuse,
            exempt
                .iter()
                .map(|&f| f.to_owned())
                .collect::<BTreeSet<_>>(),
        )
    }

    fn page(report: &UsageReport, retirement: &Retirement, now: &str) -> String {
        let names = BTreeMap::from([("aaaaaaaaaaaa".to_owned(), "billing-job".to_owned())]);
        render(
            report,
            &Schedule {
                deprecated_at: at("2025-10-15T00:00:00Z"),
                sunset_at: Some(at("2027-03-01T00:00:00Z")),
                retirement,
                client_names: &names,
            },
            at(now),
            "bm9uY2U=",
            false,
        )
    }

    fn report() -> UsageReport {
        serde_json::from_value(json!({"source": "fleet", "clients": [
            {"client_fingerprint": "64cc961af68c", "client_name": "<script>alert(1)</script>",
             "endpoints": [
                {"endpoint": "update_user_group", "replacement": "update_customer", "count": 12,
                 "first_seen": "2026-11-01T10:00:00Z", "last_seen": "2026-12-04T10:20:00Z",
                 "last_user_group_id": "\"><img src=x onerror=alert(2)>", "refused": 2,
                 "hourly": [{"start": "2026-12-04T09:00:00Z", "calls": 4},
                            {"start": "2026-12-04T10:00:00Z", "calls": 8}],
                 "daily": [{"start": "2026-11-01T00:00:00Z", "calls": 4},
                           {"start": "2026-12-04T00:00:00Z", "calls": 8}]},
                {"endpoint": "delete_user_group", "replacement": "delete_customer", "count": 1,
                 "first_seen": "2026-12-04T10:00:00Z", "last_seen": "2026-12-04T10:00:00Z",
                 "last_user_group_id": null, "refused": 0,
                 "hourly": [{"start": "2026-12-04T10:00:00Z", "calls": 1}],
                 "daily": [{"start": "2026-12-04T00:00:00Z", "calls": 1}]}]},
            {"client_fingerprint": "aaaaaaaaaaaa", "client_name": "billing-job", "endpoints": [
                {"endpoint": "refresh_user_group_token", "replacement": "refresh_customer_token",
                 "count": 5, "first_seen": "2026-11-20T08:00:00Z",
                 "last_seen": "2026-11-20T08:00:00Z", "last_user_group_id": "g7", "refused": 0}]}
        ]}))
        .unwrap()
    }

    #[test]
    fn hostile_names_and_ids_are_escaped_everywhere() {
        let html = page(&report(), &retirement(&[]), "2026-12-04T10:30:00Z");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
        // The only scripts are the page's own, under the nonce.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script nonce=\"bm9uY2U=\">"));
        assert!(html.contains("<style nonce=\"bm9uY2U=\">"));
        assert_eq!(escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;");
    }

    #[test]
    fn the_table_has_a_row_per_endpoint_headed_by_its_client() {
        let html = page(
            &report(),
            &retirement(&["aaaaaaaaaaaa"]),
            "2026-12-04T10:30:00Z",
        );
        assert!(html.contains("<th scope=\"col\">Legacy endpoint</th>"));
        assert!(html.contains("<th scope=\"rowgroup\" rowspan=\"2\" class=\"client\">"));
        assert!(html.contains("<code class=\"fingerprint\">64cc961af68c</code>"));
        assert!(html.contains("<code>update_user_group</code>"));
        assert!(html.contains("<code>update_customer</code>"));
        assert!(html.contains("refused 2 (brownout/sunset)"));
        assert!(html.contains("<span class=\"name\">billing-job</span>"));
        assert!(html.contains("<span class=\"badge exempt\">exempt</span>"));
        assert_eq!(html.matches("class=\"badge exempt\"").count(), 1);
        assert!(html.contains("(2 clients)"));
        assert!(html.contains("Source: <strong id=\"source\">fleet</strong>"));
    }

    #[test]
    fn the_schedule_names_the_dates_the_windows_and_after_sunset() {
        let html = page(
            &report(),
            &retirement(&["aaaaaaaaaaaa"]),
            "2026-12-04T10:30:00Z",
        );
        assert!(html.contains(
            "<dd id=\"deprecated\"><time datetime=\"2025-10-15T00:00:00Z\">\
             2025-10-15T00:00:00Z</time> (<span class=\"countdown\" data-at=\"1760486400\">\
             415 d 10 h ago</span>)</dd>"
        ));
        assert!(html.contains("2027-03-01T00:00:00Z</time> (<span class=\"countdown\""));
        assert!(html.contains(">in 86 d 13 h</span>"));
        assert!(html.contains("<dd id=\"brownout-active\">none in progress</dd>"));
        assert!(html.contains("<code>2026-12-09T15:00:00Z/PT30M</code>"));
        assert!(html.contains("starts <span class=\"countdown\" data-at=\"1796828400\">in 5 d 4 h</span>; 1 more after it"));
        assert!(html.contains("<code>refuse</code>: from the sunset"));
        assert!(html.contains(
            "<dd id=\"exempt\"><span class=\"name\">billing-job</span> \
             <code class=\"fingerprint\">aaaaaaaaaaaa</code></dd>"
        ));

        let during = page(&report(), &retirement(&[]), "2026-12-09T15:10:00Z");
        assert!(during.contains(
            "<strong class=\"alert\">In a brownout</strong>, \
             <code>2026-12-09T15:00:00Z/PT30M</code>, until"
        ));
        assert!(during.contains(">in 20 min 0 s</span>"));
        assert!(during.contains("<code>2026-12-16T15:00:00Z/PT1H</code>"));
        assert!(during.contains("<dd id=\"exempt\">none"));

        let after = page(&report(), &retirement(&[]), "2027-03-02T00:00:00Z");
        assert!(after.contains("the sunset has passed"));
        assert!(after.contains("<dd id=\"brownout-next\">none scheduled"));
        assert!(after.contains(">1 d 0 h ago</span>"));
    }

    #[test]
    fn an_empty_report_says_so_and_still_shows_the_schedule() {
        let empty = UsageReport {
            clients: Vec::new(),
            source: crate::observe::usage::Source::Replica,
        };
        let html = page(&empty, &Retirement::default(), "2026-12-04T10:30:00Z");
        assert!(html.contains("id=\"no-clients\""));
        assert!(!html.contains("<table"));
        assert!(html.contains("No calls to chart yet."));
        assert!(html.contains("<dd id=\"brownout-next\">none scheduled"));
        assert!(html.contains("<code>serve</code>: legacy calls are still translated"));
        assert!(html.contains("(this process only: no fleet"));
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>"));
    }

    #[test]
    fn charts_sum_a_clients_buckets_per_hour_and_day_and_note_when_there_are_none() {
        let report = report();
        let now = at("2026-12-04T10:30:00Z");
        let client = &report.clients[0];
        let hourly = series(client, HOURLY, now).unwrap();
        assert_eq!(hourly.len(), 48);
        assert_eq!(hourly[47], 9, "this hour, both endpoints");
        assert_eq!(hourly[46], 4);
        assert_eq!(hourly.iter().sum::<u64>(), 13);
        let daily = series(client, DAILY, now).unwrap();
        assert_eq!(daily.len(), 35);
        assert_eq!(daily[34], 9);
        assert_eq!(daily[1], 4, "2026-11-01 is 33 days before 2026-12-04");

        let svg = chart(client, HOURLY, "a <b>", now);
        assert!(svg.starts_with("<svg class=\"hourly\""), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>2026-12-04T10:00:00Z: 9 calls</title>"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains("peak 9, total 13"));
        assert!(!svg.contains("class=\"note\""));

        // A report without buckets (a shim from before them): empty charts with a note.
        let bare = &report.clients[1];
        assert_eq!(series(bare, HOURLY, now), None);
        let svg = chart(bare, DAILY, "billing-job", now);
        assert!(!svg.contains("<rect"));
        assert!(svg.contains("no per-hour and per-day counts in this report yet"));
        // Buckets older than the chart's reach are left out.
        let mut old = report.clients[1].clone();
        old.endpoints[0].hourly = Some(vec![CallBucket {
            start: "2026-12-01T10:00:00Z".to_owned(),
            calls: 3,
        }]);
        assert_eq!(series(&old, HOURLY, now).unwrap().iter().sum::<u64>(), 0);
        assert!(chart(&old, HOURLY, "x", now).contains("no calls in this period"));
    }
}
