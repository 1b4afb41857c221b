//! The `/usage` report as one typed shape: built here from the records (this replica's, or the
//! fleet's read back from Redis), served as JSON by the admin listener, and read back by the
//! console, the `usage` and `brownout-plan` subcommands.
//!
//! The fields are declared in the order they are written on the wire, which readers and the
//! tests of the real binary see: a field moved here moves in every `/usage` reply. Members that
//! older shims did not write yet read as what those shims meant: no `source` was this replica's
//! own records, no `refused` was none refused, and no `hourly` or `daily` is "not counted",
//! kept apart from an empty list (counted, no calls in the window).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::UsageRecords;
use super::buckets::unix_seconds;
use crate::legacy::route::LegacyRoute;

/// Who still calls which legacy endpoint: `GET /usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// One per client fingerprint, in fingerprint order as built.
    pub clients: Vec<ClientUsage>,
    #[serde(default)]
    pub source: Source,
}

/// Whose records a report holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Every replica on the fleet's Redis.
    Fleet,
    /// This process only: no fleet, or its Redis did not answer.
    #[default]
    Replica,
}

impl Source {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Fleet => "fleet",
            Source::Replica => "replica",
        }
    }
}

/// One client's legacy calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientUsage {
    pub client_fingerprint: String,
    /// One per legacy endpoint it called, in endpoint name order as built.
    pub endpoints: Vec<EndpointUsage>,
    /// Its name in `[clients]`, when the config gives one; absent, not `null`, otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

/// One client's calls to one legacy endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointUsage {
    /// The legacy endpoint's name, e.g. `update_user_group`.
    pub endpoint: String,
    /// The Customer API endpoint that replaces it (`null` for one the shim does not know).
    pub replacement: Option<String>,
    pub count: u64,
    /// RFC 3339, to the second, UTC.
    pub first_seen: String,
    /// RFC 3339, to the second, UTC.
    pub last_seen: String,
    /// As recorded: cut to a bounded length ([`super::recorded_user_group_id`]), not escaped.
    pub last_user_group_id: Option<String>,
    /// Calls refused on purpose (a brownout, the sunset).
    #[serde(default)]
    pub refused: u64,
    /// The UTC hours with calls among the last [`super::buckets::HOURS`], oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<Vec<CallBucket>>,
    /// The UTC days with calls among the last [`super::buckets::DAYS`], oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<Vec<CallBucket>>,
}

/// The calls in one UTC hour or day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBucket {
    /// The period's start, RFC 3339, UTC.
    pub start: String,
    pub calls: u64,
}

/// Why bytes given as a report are not one.
#[derive(Debug)]
pub enum ReportError {
    /// Not JSON at all.
    NotJson(serde_json::Error),
    /// JSON, but not in the shape of a report.
    NotAReport(serde_json::Error),
}

impl UsageReport {
    /// The report of `records` (this replica's, or the fleet's from Redis) as of `now`: per
    /// endpoint, besides the totals, `hourly` and `daily` list the UTC hours (of the last
    /// [`super::buckets::HOURS`]) and days (of the last [`super::buckets::DAYS`]) with calls, oldest first.
    pub fn of(records: &UsageRecords, now: SystemTime, source: Source) -> Self {
        let now = unix_seconds(now);
        let clients = records
            .iter()
            .map(|(client, endpoints)| ClientUsage {
                client_fingerprint: client.clone(),
                endpoints: endpoints
                    .iter()
                    .map(|(endpoint, entry)| EndpointUsage {
                        endpoint: (*endpoint).to_owned(),
                        replacement: LegacyRoute::ALL
                            .iter()
                            .find(|route| route.legacy_endpoint() == *endpoint)
                            .map(|route| route.customer_endpoint().to_owned()),
                        count: entry.count,
                        first_seen: rfc3339(entry.first_seen),
                        last_seen: rfc3339(entry.last_seen),
                        last_user_group_id: entry.last_user_group_id.clone(),
                        refused: entry.refused,
                        hourly: Some(listed(entry.buckets.hourly(now))),
                        daily: Some(listed(entry.buckets.daily(now))),
                    })
                    .collect(),
                client_name: None,
            })
            .collect();
        UsageReport { clients, source }
    }

    /// A report read from `bytes` (a `/usage` body). Not JSON and JSON of another shape are
    /// told apart, so that a reader can say which.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ReportError> {
        // JSON first, on its own: a body that is not JSON is refused with the parser's own
        // words, whatever shape its first bytes promised.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(ReportError::NotJson)?;
        serde_json::from_value(value).map_err(ReportError::NotAReport)
    }

    /// The report as `/usage` serves it: compact JSON.
    pub fn to_json(&self) -> String {
        // Strings, numbers and lists of them: nothing here can fail to serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `at` as the report writes times.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Buckets as `(start in Unix seconds, calls)` in the report's terms.
pub fn listed(buckets: impl Iterator<Item = (u64, u32)>) -> Vec<CallBucket> {
    buckets
        .map(|(start, calls)| CallBucket {
            start: rfc3339(UNIX_EPOCH + Duration::from_secs(start)),
            calls: u64::from(calls),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with every member the shim writes, and the ones it leaves out.
    fn sample() -> UsageReport {
        UsageReport {
            clients: vec![
                ClientUsage {
                    client_fingerprint: "64cc961af68c".to_owned(),
                    endpoints: vec![EndpointUsage {
                        endpoint: "update_user_group".to_owned(),
                        replacement: Some("update_customer".to_owned()),
                        count: 12,
                        first_seen: "2026-11-01T10:00:00Z".to_owned(),
                        last_seen: "2026-12-04T10:20:00Z".to_owned(),
                        last_user_group_id: Some("g\u{1b}[2J\n\"x\"".to_owned()),
                        refused: 2,
                        hourly: Some(vec![CallBucket {
                            start: "2026-12-04T10:00:00Z".to_owned(),
                            calls: 12,
                        }]),
                        daily: Some(Vec::new()),
                    }],
                    client_name: Some("billing <svc>".to_owned()),
                },
                ClientUsage {
                    client_fingerprint: "anonymous".to_owned(),
                    endpoints: vec![EndpointUsage {
                        endpoint: "delete_user_group".to_owned(),
                        replacement: None,
                        count: 1,
                        first_seen: "2026-12-04T10:00:00Z".to_owned(),
                        last_seen: "2026-12-04T10:00:00Z".to_owned(),
                        last_user_group_id: None,
                        refused: 0,
                        hourly: None,
                        daily: None,
                    }],
                    client_name: None,
                },
            ],
            source: Source::Fleet,
        }
    }

    #[test]
    fn a_report_round_trips_through_its_json() {
        let report = sample();
        let json = report.to_json();
        assert_eq!(UsageReport::from_slice(json.as_bytes()).unwrap(), report);
        let pretty = serde_json::to_string_pretty(&report).unwrap();
        assert_eq!(UsageReport::from_slice(pretty.as_bytes()).unwrap(), report);
    }

    #[test]
    fn the_wire_order_is_the_declared_order_and_absent_members_stay_absent() {
        assert_eq!(
            sample().to_json(),
            concat!(
                r#"{"clients":[{"client_fingerprint":"64cc961af68c","endpoints":[{"#,
                r#""endpoint":"update_user_group","replacement":"update_customer","count":12,"#,
                r#""first_seen":"2026-11-01T10:00:00Z","last_seen":"2026-12-04T10:20:00Z","#,
                r#""last_user_group_id":"g\u001b[2J\n\"x\"","refused":2,"#,
                r#""hourly":[{"start":"2026-12-04T10:00:00Z","calls":12}],"daily":[]}],"#,
                r#""client_name":"billing <svc>"},{"client_fingerprint":"anonymous","#,
                r#""endpoints":[{"endpoint":"delete_user_group","replacement":null,"count":1,"#,
                r#""first_seen":"2026-12-04T10:00:00Z","last_seen":"2026-12-04T10:00:00Z","#,
                r#""last_user_group_id":null,"refused":0}]}],"source":"fleet"}"#
            )
        );
    }

    #[test]
    fn an_older_shims_report_reads_with_what_it_meant() {
        let old = br#"{"clients":[{"client_fingerprint":"abc","endpoints":[{
            "endpoint":"update_user_group","replacement":"update_customer","count":3,
            "first_seen":"2026-12-04T10:00:00Z","last_seen":"2026-12-04T10:10:00Z",
            "last_user_group_id":null}]}]}"#;
        let report = UsageReport::from_slice(old).unwrap();
        assert_eq!(report.source, Source::Replica);
        let endpoint = &report.clients[0].endpoints[0];
        assert_eq!((endpoint.refused, &endpoint.hourly), (0, &None));
    }

    #[test]
    fn not_json_and_not_a_report_are_told_apart() {
        for (bytes, message) in [
            (&b"garbage"[..], "expected value at line 1 column 1"),
            (
                b"{\"clients\": [",
                "EOF while parsing a list at line 1 column 13",
            ),
        ] {
            match UsageReport::from_slice(bytes) {
                Err(ReportError::NotJson(error)) => assert_eq!(error.to_string(), message),
                other => panic!("{other:?}"),
            }
        }
        for bytes in [
            &b"[]"[..],
            b"{}",
            b"{\"clients\": 5}",
            b"{\"source\": \"moon\"}",
        ] {
            assert!(
                matches!(
                    UsageReport::from_slice(bytes),
                    Err(ReportError::NotAReport(_))
                ),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
