//! `explo-shim brownout-plan`: a suggested brownout schedule to review, not to invent, and who
//! it would affect, from a running shim's `/usage`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::HeaderValue;

use super::admin_get;
use super::usage::read_report;
use crate::legacy::retirement::plan::suggest;
use crate::legacy::retirement::schedule::{Window, iso_duration, rfc3339};
use crate::observe::usage::UsageReport;

/// What the plan is made from.
pub struct PlanInput {
    pub now: SystemTime,
    pub sunset: SystemTime,
    /// Seconds after midnight UTC.
    pub time_of_day: Duration,
    pub exempt: BTreeSet<String>,
}

/// `HH:MM` (UTC) as the time after midnight.
pub fn parse_time_of_day(text: &str) -> Result<Duration, String> {
    let (hours, minutes) = text
        .split_once(':')
        .ok_or_else(|| format!("--at {text:?}: expected HH:MM (UTC), e.g. 15:00"))?;
    let (Ok(hours), Ok(minutes)) = (hours.parse::<u64>(), minutes.parse::<u64>()) else {
        return Err(format!("--at {text:?}: expected HH:MM (UTC), e.g. 15:00"));
    };
    if hours > 23 || minutes > 59 {
        return Err(format!("--at {text:?}: no such time of day"));
    }
    Ok(Duration::from_secs(hours * 3600 + minutes * 60))
}

/// The plan as text: the windows as a config snippet and a table, then who is affected
/// (`usage` is the `/usage` report, or why it could not be read).
pub fn render(input: &PlanInput, usage: Result<UsageReport, String>) -> Result<String, String> {
    let windows = suggest(input.now, input.sunset, input.time_of_day)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Suggested brownouts before the sunset on {} ({} windows, one a week, each announced a \
         week ahead on successful replies). Review, then put them in the [deprecation] table:\n",
        rfc3339(input.sunset),
        windows.len()
    );
    out.push_str("brownouts = [\n");
    for window in &windows {
        let _ = writeln!(out, "  \"{}\",", window.to_iso8601());
    }
    out.push_str("]\n\n");
    let _ = writeln!(
        out,
        "{:<3} {:<21} {:<21} LASTS",
        "#", "STARTS (UTC)", "ENDS (UTC)"
    );
    for (index, window) in windows.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<3} {:<21} {:<21} {}",
            index + 1,
            rfc3339(window.start),
            rfc3339(window.end),
            iso_duration(window.end.duration_since(window.start).unwrap_or_default())
        );
    }
    out.push('\n');
    out.push_str(&affected(&windows, input, usage));
    Ok(out)
}

/// Who would hit the windows: every client in `/usage`, exempt ones marked.
fn affected(windows: &[Window], input: &PlanInput, usage: Result<UsageReport, String>) -> String {
    let report = match usage {
        Ok(report) => report,
        Err(error) => return format!("Who would be affected is unknown: {error}\n"),
    };
    let mut rows = Vec::new();
    for client in &report.clients {
        let fingerprint = client.client_fingerprint.as_str();
        let endpoints: Vec<&str> = client
            .endpoints
            .iter()
            .map(|endpoint| endpoint.endpoint.as_str())
            .collect();
        let calls: u64 = client.endpoints.iter().map(|endpoint| endpoint.count).sum();
        let last_seen = client
            .endpoints
            .iter()
            .map(|endpoint| endpoint.last_seen.as_str())
            .max()
            .unwrap_or("-");
        let exempt = input.exempt.contains(fingerprint);
        rows.push((
            fingerprint.to_owned(),
            endpoints.join(","),
            calls,
            last_seen.to_owned(),
            exempt,
        ));
    }
    if rows.is_empty() {
        return "No client has called the legacy API (per /usage): nobody would be affected.\n"
            .to_owned();
    }
    let affected = rows.iter().filter(|row| !row.4).count();
    let mut out = format!(
        "{affected} of {} client(s) seen in /usage would hit the {} window(s); exempt ones \
         (deprecation.exempt_clients) are served through them:\n\n",
        rows.len(),
        windows.len()
    );
    let width = rows.iter().map(|row| row.1.len()).max().unwrap_or(0).max(9);
    let _ = writeln!(
        out,
        "{:<12}  {:<width$}  {:>7}  {:<20}  EXEMPT",
        "CLIENT", "ENDPOINTS", "CALLS", "LAST SEEN"
    );
    for (fingerprint, endpoints, calls, last_seen, exempt) in rows {
        let _ = writeln!(
            out,
            "{fingerprint:<12}  {endpoints:<width$}  {calls:>7}  {last_seen:<20}  {}",
            if exempt { "yes" } else { "no" }
        );
    }
    out
}

/// Fetches `{admin}/usage`.
pub async fn fetch_usage(admin: &str, bearer: Option<&HeaderValue>) -> Result<UsageReport, String> {
    let url = format!("{admin}/usage");
    let (status, body) = admin_get(&url, bearer).await?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    read_report(&url, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> PlanInput {
        PlanInput {
            now: humantime::parse_rfc3339("2026-12-01T09:00:00Z").unwrap(),
            sunset: humantime::parse_rfc3339("2027-01-15T00:00:00Z").unwrap(),
            time_of_day: parse_time_of_day("15:00").unwrap(),
            exempt: BTreeSet::from(["bbbbbbbbbbbb".to_owned()]),
        }
    }

    #[test]
    fn the_plan_prints_a_config_snippet_a_table_and_who_is_affected() {
        let usage = serde_json::from_value(json!({"clients": [
            {"client_fingerprint": "aaaaaaaaaaaa", "endpoints": [
                {"endpoint": "update_user_group", "count": 5,
                 "first_seen": "2026-11-30T10:00:00Z", "last_seen": "2026-11-30T10:00:00Z"}]},
            {"client_fingerprint": "bbbbbbbbbbbb", "endpoints": [
                {"endpoint": "delete_user_group", "count": 1,
                 "first_seen": "2026-11-29T10:00:00Z", "last_seen": "2026-11-29T10:00:00Z"}]}
        ]}))
        .unwrap();
        let text = render(&input(), Ok(usage)).unwrap();
        assert!(
            text.contains("brownouts = [\n  \"2026-12-08T15:00:00Z/PT5M\",\n"),
            "{text}"
        );
        assert!(text.contains("\"2027-01-12T15:00:00Z/PT4H\",\n]"), "{text}");
        assert!(text.contains("1 of 2 client(s)"), "{text}");
        assert!(text.contains("aaaaaaaaaaaa  update_user_group"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("bbbbbbbbbbbb") && l.ends_with("yes"))
        );
    }

    #[test]
    fn without_usage_the_plan_still_prints_and_says_why() {
        let text = render(&input(), Err("cannot reach http://x/usage".into())).unwrap();
        assert!(text.contains("brownouts = ["));
        assert!(text.contains("unknown: cannot reach"));
    }

    #[test]
    fn times_of_day_are_checked() {
        assert_eq!(parse_time_of_day("09:30").unwrap().as_secs(), 34_200);
        for bad in ["9", "24:00", "12:60", "ab:cd"] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }
}
