//! Reading the fleet's records back for `/usage`: one `SMEMBERS` and one pipelined
//! `HGETALL` per record. Redis is shared, so what it holds is checked as data, not trusted as
//! what a shim wrote: unreadable times skip a record, times from the future are clamped.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fleet::FleetLink;
use crate::legacy::route::LegacyRoute;
use crate::observe::usage::buckets::{Buckets, unix_seconds};
use crate::observe::usage::{UsageEntry, UsageRecords, recorded_user_group_id};

/// The target of this file's events: the module they were logged from before it was split
/// into files, which log filters and queries name.
const LOG_TARGET: &str = "explo_shim::fleet::usage";

impl FleetLink {
    /// The fleet's records, or `None` when Redis cannot answer in time.
    pub async fn usage_records(&self) -> Option<UsageRecords> {
        let fleet = &self.fleet;
        let records_key = fleet.key("usage:records");
        let members: Vec<String> = self
            .call(|mut connection| async move {
                redis::cmd("SMEMBERS")
                    .arg(records_key)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut pipeline = redis::pipe();
        let mut named = Vec::with_capacity(members.len());
        for member in &members {
            let Some((client, endpoint)) = member.rsplit_once(' ') else {
                continue;
            };
            let Some(route) = LegacyRoute::ALL
                .into_iter()
                .find(|route| route.legacy_endpoint() == endpoint)
            else {
                continue;
            };
            pipeline
                .cmd("HGETALL")
                .arg(fleet.key(&format!("usage:record:{client}:{endpoint}")));
            named.push((client.to_owned(), route));
        }
        let hashes: Vec<HashMap<String, String>> = if named.is_empty() {
            Vec::new()
        } else {
            self.call(|mut connection| async move { pipeline.query_async(&mut connection).await })
                .await?
        };
        let mut records: UsageRecords = BTreeMap::new();
        let now = unix_seconds(SystemTime::now());
        let mut repairs = Repairs::default();
        for ((client, route), hash) in named.into_iter().zip(hashes) {
            // The record expired, or its client was displaced, after the set was read.
            if hash.is_empty() {
                continue;
            }
            if let Some(entry) = parse_record(&hash, now, &mut repairs) {
                records
                    .entry(client)
                    .or_default()
                    .insert(route.legacy_endpoint(), entry);
            }
        }
        // One line per read, not per record: the console reads every few seconds.
        if repairs != Repairs::default() {
            tracing::warn!(target: LOG_TARGET,
                records_skipped = repairs.records_skipped,
                times_clamped = repairs.times_clamped,
                buckets_skipped = repairs.buckets_skipped,
                "the fleet's usage records in Redis hold values no shim writes (unreadable or \
                 future times); shown without them"
            );
        }
        Some(records)
    }
}

/// How far ahead of this shim's clock a replica's clock may be before its times are taken for
/// corrupt rather than skewed. Small: a bucket ahead of now moves its ring forward, and the
/// history it passes over is cleared.
const MAX_CLOCK_SKEW_SECONDS: u64 = 60 * 60;

/// What [`parse_record`] had to leave out or correct: Redis is shared, and what it holds is
/// data to check, not a promise that a shim wrote it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Repairs {
    /// Records whose `first_seen` or `last_seen` is not a time (negative, not a number).
    records_skipped: u32,
    /// Times past this shim's clock (and any skew), shown as now.
    times_clamped: u32,
    /// Hourly or daily counters for periods that have not begun.
    buckets_skipped: u32,
}

/// One record as read back from its hash at `now` (Unix seconds), or `None` when its times are
/// not times. Counts that are not numbers read as 0; a time in the future reads as `now`.
fn parse_record(
    hash: &HashMap<String, String>,
    now: u64,
    repairs: &mut Repairs,
) -> Option<UsageEntry> {
    let number = |field: &str| {
        hash.get(field)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut time = |field: &str| -> Option<SystemTime> {
        let seconds = hash.get(field)?.parse::<u64>().ok()?;
        let seconds = if seconds > now.saturating_add(MAX_CLOCK_SKEW_SECONDS) {
            repairs.times_clamped += 1;
            now
        } else {
            seconds
        };
        Some(UNIX_EPOCH + Duration::from_secs(seconds))
    };
    let (Some(first_seen), Some(last_seen)) = (time("first_seen"), time("last_seen")) else {
        repairs.records_skipped += 1;
        return None;
    };
    let buckets = Box::new(parse_buckets(hash, now, repairs));
    Some(UsageEntry {
        count: number("count"),
        first_seen,
        last_seen,
        // Cut again on the way out: a replica before the cap may have written it.
        last_user_group_id: hash
            .get("last_user_group_id")
            .filter(|id| !id.is_empty())
            .map(|id| recorded_user_group_id(id.clone())),
        refused: number("refused"),
        buckets,
    })
}

/// The buckets in a record's hash: its `h:<hour start>` and `d:<day start>` fields. Fields
/// that are not numbers are skipped, and so are periods that have not begun at `now` (counted
/// in `repairs`); counts past `u32` saturate.
fn parse_buckets(hash: &HashMap<String, String>, now: u64, repairs: &mut Repairs) -> Buckets {
    let mut buckets = Buckets::default();
    for (field, value) in hash {
        let Some((kind, start)) = field.split_once(':') else {
            continue;
        };
        let (Ok(start), Ok(calls)) = (start.parse::<u64>(), value.parse::<u64>()) else {
            continue;
        };
        if start > now.saturating_add(MAX_CLOCK_SKEW_SECONDS) {
            repairs.buckets_skipped += 1;
            continue;
        }
        let calls = u32::try_from(calls).unwrap_or(u32::MAX);
        match kind {
            "h" => buckets.add_hour(start, calls),
            "d" => buckets.add_day(start, calls),
            _ => {}
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::super::record::bucket_fields;
    use super::*;

    /// 2026-12-04T10:20:00Z.
    const NOW: u64 = 1_796_379_600;

    #[test]
    fn folded_buckets_become_fields_and_fields_become_buckets() {
        let mut buckets = Buckets::default();
        buckets.record(NOW - 3600, 2); // 09:20
        buckets.record(NOW, 1);
        let fields = bucket_fields(&buckets, NOW);
        assert_eq!(
            fields,
            [
                ("h:1796374800".to_owned(), 2),
                ("h:1796378400".to_owned(), 1),
                ("d:1796342400".to_owned(), 3),
            ]
        );
        let mut hash: HashMap<String, String> = fields
            .into_iter()
            .map(|(field, calls)| (field, calls.to_string()))
            .collect();
        hash.insert("count".to_owned(), "3".to_owned());
        hash.insert("h:junk".to_owned(), "1".to_owned());
        hash.insert("d:1796342400x".to_owned(), "1".to_owned());
        let mut repairs = Repairs::default();
        assert_eq!(parse_buckets(&hash, NOW, &mut repairs), buckets);
        assert_eq!(repairs, Repairs::default());
    }

    fn hash(fields: &[(&str, &str)]) -> HashMap<String, String> {
        fields
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn a_record_with_times_that_are_not_times_is_skipped() {
        for bad in ["-5", "soon", "", "1e9", "99999999999999999999999"] {
            let mut repairs = Repairs::default();
            let record = hash(&[
                ("count", "1"),
                ("first_seen", bad),
                ("last_seen", "1796379600"),
            ]);
            assert!(
                parse_record(&record, NOW, &mut repairs).is_none(),
                "{bad:?}"
            );
            assert_eq!(repairs.records_skipped, 1);
        }
        let mut repairs = Repairs::default();
        assert!(parse_record(&hash(&[("count", "1")]), NOW, &mut repairs).is_none());
    }

    #[test]
    fn times_and_buckets_past_the_clock_are_clamped_or_skipped_and_the_report_renders() {
        let mut repairs = Repairs::default();
        let record = hash(&[
            ("count", "2"),
            ("first_seen", "1796379000"),
            // Past the year 9999, and past what `SystemTime` can add.
            ("last_seen", "253402300800"),
            ("refused", "x"),
            ("h:18446744073709551615", "1"),
            ("d:1796342400", "2"),
        ]);
        let entry = parse_record(&record, NOW, &mut repairs).unwrap();
        assert_eq!(entry.last_seen, UNIX_EPOCH + Duration::from_secs(NOW));
        assert_eq!(entry.refused, 0);
        assert_eq!(
            repairs,
            Repairs {
                records_skipped: 0,
                times_clamped: 1,
                buckets_skipped: 1,
            }
        );
        let mut huge = record.clone();
        huge.insert("first_seen".to_owned(), u64::MAX.to_string());
        let entry = parse_record(&huge, NOW, &mut repairs).unwrap();
        assert_eq!(entry.first_seen, UNIX_EPOCH + Duration::from_secs(NOW));
        // What /usage does with it: formats the times, which panics past the year 9999.
        let _ = humantime::format_rfc3339_seconds(entry.first_seen).to_string();
        let _ = humantime::format_rfc3339_seconds(entry.last_seen).to_string();
    }
}
