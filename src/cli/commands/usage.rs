//! `explo-shim usage`: the `/usage` report as a table (or as JSON): who still calls what, and
//! since when. `--since` and `--sort` are pure functions over the report, so the table and the
//! JSON show the same clients in the same order.

use std::cmp::Reverse;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::admin_get;
use crate::cli::UsageSort;
use crate::observe::usage::buckets::{DAY_SECONDS, HOUR_SECONDS, unix_seconds};
use crate::observe::usage::{
    CallBucket, ClientUsage, EndpointUsage, ReportError, Source, UsageReport, printable,
};

/// What to show of the report, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageView {
    pub json: bool,
    pub sort: Option<UsageSort>,
    /// `--since` as given (for the empty table's wording) and as parsed.
    pub since: Option<(String, Duration)>,
}

/// Fetches `{admin}/usage`, filters and orders it as `view` says, and renders it: a table, or
/// pretty-printed JSON with a final newline.
pub async fn run(
    admin: &str,
    bearer: Option<&HeaderValue>,
    view: &UsageView,
    now: SystemTime,
) -> Result<String, String> {
    let url = format!("{admin}/usage");
    let (status, body) = admin_get(&url, bearer).await?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let mut report = read_report(&url, &body)?;
    if let Some((_, window)) = &view.since {
        // A window longer than the clock goes back keeps everything.
        let cutoff = now.checked_sub(*window).unwrap_or(SystemTime::UNIX_EPOCH);
        report = seen_since(report, cutoff);
    }
    if let Some(order) = view.sort {
        report = sorted(report, order);
    }
    if view.json {
        let mut text = serde_json::to_string_pretty(&report)
            .map_err(|error| format!("cannot print {url} as JSON: {error}"))?;
        text.push('\n');
        return Ok(text);
    }
    Ok(render_table(
        &report,
        view.since.as_ref().map(|(text, _)| text.as_str()),
        now,
    ))
}

/// The report in `body`, as answered by `url`; or why it is not one, naming `url`.
pub fn read_report(url: &str, body: &[u8]) -> Result<UsageReport, String> {
    UsageReport::from_slice(body).map_err(|error| match error {
        ReportError::NotJson(error) => format!("{url} is not JSON: {error}"),
        ReportError::NotAReport(error) => format!("{url} is not a usage report: {error}"),
    })
}

/// `--since`: a humantime duration such as `7d`, `12h` or `30m`.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| {
        format!("invalid --since {text:?}: {error}; expected a duration such as 7d, 12h or 30m")
    })
}

/// The report with only the endpoints last seen at or after `cutoff`, and only the clients
/// that have one left. An endpoint whose `last_seen` is not RFC 3339 cannot be shown to fall
/// in the window, so it goes too. The report's other members are kept as they are.
pub fn seen_since(mut report: UsageReport, cutoff: SystemTime) -> UsageReport {
    for client in &mut report.clients {
        client
            .endpoints
            .retain(|endpoint| last_seen(endpoint).is_some_and(|at| at >= cutoff));
    }
    report.clients.retain(|client| !client.endpoints.is_empty());
    report
}

/// The report with its clients, and each client's endpoints, ordered by `order`, most first.
/// Ties keep the report's order (client fingerprint, then endpoint name). A client's calls are
/// the sum over its endpoints; its last seen is its latest endpoint's.
pub fn sorted(mut report: UsageReport, order: UsageSort) -> UsageReport {
    let clients = &mut report.clients;
    for client in clients.iter_mut() {
        let endpoints = &mut client.endpoints;
        match order {
            UsageSort::Calls => endpoints.sort_by_key(|endpoint| Reverse(endpoint.count)),
            UsageSort::LastSeen => endpoints.sort_by_key(|endpoint| Reverse(last_seen(endpoint))),
        }
    }
    match order {
        UsageSort::Calls => {
            clients.sort_by_key(|client| Reverse(client_calls(client)));
        }
        UsageSort::LastSeen => {
            clients
                .sort_by_key(|client| Reverse(client.endpoints.iter().filter_map(last_seen).max()));
        }
    }
    report
}

fn client_calls(client: &ClientUsage) -> u64 {
    client.endpoints.iter().map(|endpoint| endpoint.count).sum()
}

/// When `endpoint` was last called; `None` when its `last_seen` is not a time.
fn last_seen(endpoint: &EndpointUsage) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(&endpoint.last_seen).ok()
}

/// An endpoint's calls in the last 24 hours (the current UTC hour and the 23 before) and the
/// last 7 days (today, UTC, and the 6 days before) as of `now`, from its `hourly` and `daily`
/// buckets; `None` for a report without them (a shim from before they were added).
pub fn recent_calls(endpoint: &EndpointUsage, now: SystemTime) -> Option<(u64, u64)> {
    let now = unix_seconds(now);
    let since = |buckets: Option<&Vec<CallBucket>>, oldest: u64| -> Option<u64> {
        Some(
            buckets?
                .iter()
                .filter(|bucket| {
                    humantime::parse_rfc3339_weak(&bucket.start)
                        .is_ok_and(|start| unix_seconds(start) >= oldest)
                })
                .map(|bucket| bucket.calls)
                .sum(),
        )
    };
    let hour = now / HOUR_SECONDS * HOUR_SECONDS;
    let day = now / DAY_SECONDS * DAY_SECONDS;
    Some((
        since(
            endpoint.hourly.as_ref(),
            hour.saturating_sub(23 * HOUR_SECONDS),
        )?,
        since(endpoint.daily.as_ref(), day.saturating_sub(6 * DAY_SECONDS))?,
    ))
}

const COLUMNS: [&str; 9] = [
    "CLIENT",
    "LEGACY ENDPOINT",
    "REPLACEMENT",
    "CALLS",
    "24H/7D",
    "FIRST SEEN",
    "LAST SEEN",
    "LAST USER_GROUP_ID",
    "REFUSED",
];

/// One row per client and endpoint, columns padded to fit. `24H/7D` is the endpoint's calls in
/// the last 24 hours and 7 days as of `now` ([`recent_calls`]). `REFUSED` marks the calls
/// answered 410 on purpose (a brownout, the sunset): `3 (brownout/sunset)`, or `-`. `since` is
/// the `--since` the report was filtered with, for the wording of an empty one.
pub fn render_table(report: &UsageReport, since: Option<&str>, now: SystemTime) -> String {
    // Every cell may hold a client's own text: escaped, so that no escape sequence reaches
    // the terminal and no newline forges a row.
    let text = |text: &str| printable(text).into_owned();
    let maybe = |text: &Option<String>| {
        text.as_deref()
            .map_or_else(|| "-".to_owned(), |text| printable(text).into_owned())
    };
    let mut rows: Vec<[String; 9]> = Vec::new();
    for client in &report.clients {
        for endpoint in &client.endpoints {
            // A named client shows as `name (fingerprint)`: the name for people, the
            // fingerprint to match logs and metrics, which keep it.
            let fingerprint = text(&client.client_fingerprint);
            let client_cell = match &client.client_name {
                Some(name) => format!("{} ({fingerprint})", printable(name)),
                None => fingerprint,
            };
            rows.push([
                client_cell,
                text(&endpoint.endpoint),
                maybe(&endpoint.replacement),
                endpoint.count.to_string(),
                recent_calls(endpoint, now)
                    .map_or_else(|| "-".to_owned(), |(day, week)| format!("{day}/{week}")),
                text(&endpoint.first_seen),
                text(&endpoint.last_seen),
                maybe(&endpoint.last_user_group_id),
                match endpoint.refused {
                    0 => "-".to_owned(),
                    refused => format!("{refused} (brownout/sunset)"),
                },
            ]);
        }
    }
    if rows.is_empty() {
        if let Some(since) = since {
            return format!("No legacy End User Group calls seen in the last {since}.\n");
        }
        let source = match report.source {
            Source::Fleet => "by the fleet",
            Source::Replica => "since this shim started",
        };
        return format!("No legacy End User Group calls seen {source}.\n");
    }
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 9]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&COLUMNS.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A report written as JSON, as the shim serves it.
    fn report(json: Value) -> UsageReport {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn renders_one_row_per_client_and_endpoint() {
        let report = report(
            json!({"clients": [{"client_fingerprint": "64cc961af68c", "endpoints": [
            {"endpoint": "update_user_group", "replacement": "update_customer", "count": 12,
             "first_seen": "2026-11-01T10:00:00Z", "last_seen": "2026-11-26T05:00:00Z",
             "last_user_group_id": "example_1", "refused": 2,
             "hourly": [{"start": "2026-11-26T05:00:00Z", "calls": 3}],
             "daily": [{"start": "2026-11-20T00:00:00Z", "calls": 4},
                       {"start": "2026-11-26T00:00:00Z", "calls": 3}]},
            {"endpoint": "delete_user_group", "replacement": "delete_customer", "count": 1,
             "first_seen": "2026-11-02T10:00:00Z", "last_seen": "2026-11-02T10:00:00Z",
             "last_user_group_id": null}]}]}),
        );
        let table = render_table(&report, None, at("2026-11-26T06:00:00Z"));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("CLIENT        LEGACY ENDPOINT    REPLACEMENT"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("64cc961af68c  update_user_group  update_customer  12     3/7"),
            "{table}"
        );
        // A report without buckets (an older shim's) shows none.
        assert!(
            lines[2].starts_with("64cc961af68c  delete_user_group  delete_customer  1      -"),
            "{table}"
        );
        assert!(lines[1].ends_with("2 (brownout/sunset)"), "{table}");
        assert!(lines[2].ends_with("-                   -"), "{table}");
    }

    #[test]
    fn recent_calls_count_the_last_24_hours_and_7_days_as_of_now() {
        let endpoint: EndpointUsage = serde_json::from_value(json!({
            "endpoint": "update_user_group", "count": 7,
            "first_seen": "2026-11-27T00:00:00Z", "last_seen": "2026-12-04T10:00:00Z",
            "hourly": [
                {"start": "2026-12-03T10:00:00Z", "calls": 1},
                {"start": "2026-12-03T11:00:00Z", "calls": 2},
                {"start": "2026-12-04T10:00:00Z", "calls": 4}],
            "daily": [
                {"start": "2026-11-27T00:00:00Z", "calls": 8},
                {"start": "2026-11-28T00:00:00Z", "calls": 16},
                {"start": "2026-12-04T00:00:00Z", "calls": 32}]}))
        .unwrap();
        // 11:00 yesterday is the oldest of the last 24 hours; 28 November of the last 7 days.
        assert_eq!(
            recent_calls(&endpoint, at("2026-12-04T10:30:00Z")),
            Some((2 + 4, 16 + 32))
        );
        let unbucketed = EndpointUsage {
            hourly: None,
            daily: None,
            ..endpoint
        };
        assert_eq!(recent_calls(&unbucketed, at("2026-12-04T10:30:00Z")), None);
    }

    #[test]
    fn an_empty_report_says_so() {
        let now = at("2026-11-26T06:00:00Z");
        let empty = report(json!({"clients": []}));
        assert!(render_table(&empty, None, now).starts_with("No legacy"));
        assert_eq!(
            render_table(&empty, Some("7d"), now),
            "No legacy End User Group calls seen in the last 7d.\n"
        );
    }

    /// Two clients: `aaa` with few calls seen lately, `bbb` with many calls seen long ago.
    fn two_clients() -> UsageReport {
        report(json!({"source": "fleet", "clients": [
            {"client_fingerprint": "aaaaaaaaaaaa", "endpoints": [
                {"endpoint": "delete_user_group", "count": 1,
                 "first_seen": "2026-11-01T00:00:00Z", "last_seen": "2026-11-01T00:00:00Z"},
                {"endpoint": "update_user_group", "count": 3,
                 "first_seen": "2026-11-01T00:00:00Z", "last_seen": "2026-11-29T00:00:00Z"}]},
            {"client_fingerprint": "bbbbbbbbbbbb", "endpoints": [
                {"endpoint": "create_user_group", "count": 50,
                 "first_seen": "2026-10-01T00:00:00Z", "last_seen": "2026-10-02T00:00:00Z"},
                {"endpoint": "update_user_group", "count": 2,
                 "first_seen": "2026-10-01T00:00:00Z", "last_seen": "2026-11-10T00:00:00Z"}]}]}))
    }

    fn rows(report: &UsageReport) -> Vec<(String, String)> {
        report
            .clients
            .iter()
            .flat_map(|client| {
                client
                    .endpoints
                    .iter()
                    .map(|endpoint| (client.client_fingerprint.clone(), endpoint.endpoint.clone()))
            })
            .collect()
    }

    fn pair(client: &str, endpoint: &str) -> (String, String) {
        (client.repeat(12), endpoint.to_owned())
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn since_keeps_endpoints_last_seen_in_the_window_and_drops_clients_left_empty() {
        let recent = seen_since(two_clients(), at("2026-11-05T00:00:00Z"));
        assert_eq!(
            rows(&recent),
            [
                pair("a", "update_user_group"),
                pair("b", "update_user_group")
            ]
        );
        assert_eq!(recent.source, Source::Fleet, "other members stay");
        let latest = seen_since(two_clients(), at("2026-11-20T00:00:00Z"));
        assert_eq!(rows(&latest), [pair("a", "update_user_group")]);
        // The cutoff itself is in the window.
        let edge = seen_since(two_clients(), at("2026-11-29T00:00:00Z"));
        assert_eq!(rows(&edge), [pair("a", "update_user_group")]);
        let none = seen_since(two_clients(), at("2026-12-01T00:00:00Z"));
        assert_eq!(none.clients, []);
        assert!(
            render_table(&none, Some("1d"), at("2026-12-01T00:00:00Z")).starts_with("No legacy")
        );
    }

    #[test]
    fn sort_by_calls_puts_the_busiest_client_and_endpoint_first() {
        // bbb: 52 calls; aaa: 4.
        assert_eq!(
            rows(&sorted(two_clients(), UsageSort::Calls)),
            [
                pair("b", "create_user_group"),
                pair("b", "update_user_group"),
                pair("a", "update_user_group"),
                pair("a", "delete_user_group"),
            ]
        );
    }

    #[test]
    fn sort_by_last_seen_puts_the_latest_client_and_endpoint_first() {
        assert_eq!(
            rows(&sorted(two_clients(), UsageSort::LastSeen)),
            [
                pair("a", "update_user_group"),
                pair("a", "delete_user_group"),
                pair("b", "update_user_group"),
                pair("b", "create_user_group"),
            ]
        );
    }

    #[test]
    fn ties_keep_the_report_order() {
        let report = report(json!({"clients": [
            {"client_fingerprint": "aaaaaaaaaaaa", "endpoints": [
                {"endpoint": "delete_user_group", "count": 2,
                 "first_seen": "2026-11-01T00:00:00Z", "last_seen": "2026-11-01T00:00:00Z"}]},
            {"client_fingerprint": "bbbbbbbbbbbb", "endpoints": [
                {"endpoint": "delete_user_group", "count": 2,
                 "first_seen": "2026-11-01T00:00:00Z", "last_seen": "2026-11-01T00:00:00Z"}]}]}));
        for order in [UsageSort::Calls, UsageSort::LastSeen] {
            assert_eq!(
                rows(&sorted(report.clone(), order)),
                [
                    pair("a", "delete_user_group"),
                    pair("b", "delete_user_group")
                ]
            );
        }
    }

    #[test]
    fn since_reads_humantime_durations_and_names_the_flag_when_it_cannot() {
        assert_eq!(parse_since("7d"), Ok(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(
            parse_since("12h 30m"),
            Ok(Duration::from_secs(12 * 3600 + 1800))
        );
        for bad in ["", "7", "seven days", "-1d"] {
            let error = parse_since(bad).unwrap_err();
            assert!(error.contains("--since"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_report_is_refused_naming_the_url() {
        let url = "http://127.0.0.1:9090/usage";
        // Not JSON: the same words as before the report had a type.
        assert_eq!(
            read_report(url, b"garbage").unwrap_err(),
            "http://127.0.0.1:9090/usage is not JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            read_report(url, b"{\"clients\": [").unwrap_err(),
            "http://127.0.0.1:9090/usage is not JSON: EOF while parsing a list at line 1 column 13"
        );
        // JSON of another shape is not shown as an empty report.
        assert_eq!(
            read_report(url, b"{\"clients\": 5}").unwrap_err(),
            "http://127.0.0.1:9090/usage is not a usage report: invalid type: number, \
             expected a sequence"
        );
        assert!(read_report(url, b"{\"clients\": [], \"source\": \"fleet\"}").is_ok());
    }
}
