//! The migration tracker behind the admin `GET /usage`: who still calls which legacy endpoint,
//! how often, since when, and for which group last.
//!
//! It lives in memory and covers this instance since it started; the number of distinct
//! clients is capped the same way as the metrics labels (past the cap: `other`; a client the
//! upstream never accepted gives its place up to one it has, see [`crate::observe::metrics`]).
//! `user_group_id`s are the client's own strings: only their first
//! [`MAX_RECORDED_USER_GROUP_ID_BYTES`] are kept, here, in the fleet's records and in log lines.
//! Calls over time are counted per UTC hour and day in fixed-size rings ([`buckets`]), so a
//! record's size does not grow with time.

pub mod buckets;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::legacy::route::LegacyRoute;
use buckets::Buckets;
pub use report::{CallBucket, ClientUsage, EndpointUsage, ReportError, Source, UsageReport};

/// The most of a `user_group_id` kept for `/usage`, the fleet's records and log lines, in
/// bytes: ids of a megabyte each once grew the shim by 50 MB in 40 calls. Real ids are short.
pub const MAX_RECORDED_USER_GROUP_ID_BYTES: usize = 256;

/// Ends a `user_group_id` cut to [`MAX_RECORDED_USER_GROUP_ID_BYTES`], so no reader takes it for
/// the whole id.
pub const TRUNCATED_MARKER: &str = "…(truncated)";

/// `text` (a client's own string: a `user_group_id`, a name) safe to show a person in a
/// terminal or a page: control characters (an `ESC` that starts a terminal sequence, a newline
/// that forges a row) and the invisible controls that reorder text (bidirectional overrides
/// and isolates) are written as Rust escapes (`\u{1b}`), so one record is one row and looks
/// like what it is. Borrowed whole when there is nothing to escape.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    // Controls, then what hides or reorders text without being a control: the bidirectional
    // marks, embeddings, overrides and isolates; the line and paragraph separators (a new row in
    // some terminals and pages); the zero-width spaces and joiners and the byte-order mark.
    let needs_escape = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{061c}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{feff}'
            )
    };
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `id` as it is recorded and logged: whole when short, else its first
/// [`MAX_RECORDED_USER_GROUP_ID_BYTES`] (on a character boundary) and [`TRUNCATED_MARKER`].
/// Takes the id by value: the usual short one is kept as it is, with no copy.
pub fn recorded_user_group_id(mut id: String) -> String {
    if id.len() <= MAX_RECORDED_USER_GROUP_ID_BYTES {
        return id;
    }
    let mut end = MAX_RECORDED_USER_GROUP_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id.push_str(TRUNCATED_MARKER);
    // A megabyte id must not keep its megabyte of capacity in the records.
    id.shrink_to_fit();
    id
}

/// One client's use of one legacy endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEntry {
    pub count: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub last_user_group_id: Option<String>,
    /// Calls refused on purpose (a brownout, the sunset).
    pub refused: u64,
    /// All calls, refused ones too, per UTC hour and day. Boxed: a client's endpoints share a
    /// map node sized for eleven, and only the endpoints it calls should pay for the rings.
    pub buckets: Box<Buckets>,
}

/// client fingerprint -> legacy endpoint -> usage
pub type UsageRecords = BTreeMap<String, BTreeMap<&'static str, UsageEntry>>;

/// Per client fingerprint and legacy endpoint usage.
#[derive(Debug, Default)]
pub struct UsageTracker {
    entries: Mutex<UsageRecords>,
}

impl UsageTracker {
    /// Records one legacy call by `client` (an already-capped fingerprint label).
    pub fn record(
        &self,
        client: &str,
        route: LegacyRoute,
        user_group_id: Option<&str>,
        now: SystemTime,
        refused: bool,
    ) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only a new client costs an allocation.
        if !entries.contains_key(client) {
            entries.insert(client.to_owned(), BTreeMap::new());
        }
        let Some(endpoints) = entries.get_mut(client) else {
            return;
        };
        let entry = endpoints
            .entry(route.legacy_endpoint())
            .or_insert(UsageEntry {
                count: 0,
                first_seen: now,
                last_seen: now,
                last_user_group_id: None,
                refused: 0,
                buckets: Box::default(),
            });
        entry.count += 1;
        entry.buckets.record(buckets::unix_seconds(now), 1);
        entry.refused += u64::from(refused);
        entry.last_seen = now;
        if let Some(id) = user_group_id {
            entry.last_user_group_id = Some(id.to_owned());
        }
    }

    /// Drops `client`'s records: it gave its place up to a client the upstream accepted.
    pub fn forget(&self, client: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(client);
    }

    /// This replica's report as of `now`: one entry per client, its endpoints inside,
    /// timestamps in RFC 3339, the hourly and daily buckets still in their windows at `now`.
    pub fn report_at(&self, now: SystemTime) -> UsageReport {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        UsageReport::of(&entries, now, Source::Replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printable_text_escapes_terminal_sequences_newlines_and_bidi_controls() {
        assert!(matches!(
            printable("team-42 é"),
            std::borrow::Cow::Borrowed("team-42 é")
        ));
        assert_eq!(
            printable("a\u{1b}[2J\u{1b}]0;pwned\u{7}\nforged row"),
            "a\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{a}forged row"
        );
        assert_eq!(printable("\u{202e}cba"), "\\u{202e}cba");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(
            printable("a\u{2028}b\u{200b}c\u{feff}"),
            "a\\u{2028}b\\u{200b}c\\u{feff}"
        );
    }
    use std::time::Duration;

    #[test]
    fn counts_first_and_last_seen_and_the_last_group() {
        let tracker = UsageTracker::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_486_400); // 2025-10-15
        tracker.record("abc", LegacyRoute::UpdateUserGroup, Some("g1"), t0, false);
        tracker.record(
            "abc",
            LegacyRoute::UpdateUserGroup,
            None,
            t0 + Duration::from_secs(60),
            true,
        );
        tracker.record(
            "abc",
            LegacyRoute::UpdateUserGroup,
            Some("g2"),
            t0 + Duration::from_secs(120),
            false,
        );
        tracker.record("def", LegacyRoute::DeleteUserGroup, None, t0, false);
        tracker.record("gone", LegacyRoute::DeleteUserGroup, None, t0, false);
        tracker.forget("gone");
        assert_eq!(
            serde_json::to_value(tracker.report_at(t0 + Duration::from_secs(3600))).unwrap(),
            json!({"clients": [
                {"client_fingerprint": "abc", "endpoints": [{
                    "endpoint": "update_user_group", "replacement": "update_customer", "count": 3,
                    "first_seen": "2025-10-15T00:00:00Z", "last_seen": "2025-10-15T00:02:00Z",
                    "last_user_group_id": "g2", "refused": 1,
                    "hourly": [{"start": "2025-10-15T00:00:00Z", "calls": 3}],
                    "daily": [{"start": "2025-10-15T00:00:00Z", "calls": 3}]}]},
                {"client_fingerprint": "def", "endpoints": [{
                    "endpoint": "delete_user_group", "replacement": "delete_customer", "count": 1,
                    "first_seen": "2025-10-15T00:00:00Z", "last_seen": "2025-10-15T00:00:00Z",
                    "last_user_group_id": null, "refused": 0,
                    "hourly": [{"start": "2025-10-15T00:00:00Z", "calls": 1}],
                    "daily": [{"start": "2025-10-15T00:00:00Z", "calls": 1}]}]}
            ], "source": "replica"})
        );
    }

    #[test]
    fn the_served_json_keeps_the_order_and_the_nulls_of_the_wire() {
        // What `/usage` has always sent: the members in this order, `null` for no id.
        let tracker = UsageTracker::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_486_400); // 2025-10-15
        tracker.record("abc", LegacyRoute::DeleteUserGroup, None, t0, true);
        assert_eq!(
            tracker.report_at(t0).to_json(),
            concat!(
                r#"{"clients":[{"client_fingerprint":"abc","endpoints":[{"#,
                r#""endpoint":"delete_user_group","replacement":"delete_customer","count":1,"#,
                r#""first_seen":"2025-10-15T00:00:00Z","last_seen":"2025-10-15T00:00:00Z","#,
                r#""last_user_group_id":null,"refused":1,"#,
                r#""hourly":[{"start":"2025-10-15T00:00:00Z","calls":1}],"#,
                r#""daily":[{"start":"2025-10-15T00:00:00Z","calls":1}]}]}],"source":"replica"}"#
            )
        );
    }

    #[test]
    fn hourly_and_daily_buckets_count_refused_calls_too_and_drop_what_left_the_window() {
        let tracker = UsageTracker::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_486_400); // 2025-10-15
        let hour = Duration::from_secs(3600);
        let route = LegacyRoute::CreateUserGroup;
        tracker.record("abc", route, None, t0, true);
        tracker.record("abc", route, None, t0 + hour, false);
        tracker.record("abc", route, None, t0 + 24 * hour, false);
        tracker.record("abc", route, None, t0 + 24 * hour, false);
        let endpoint = |report: UsageReport| report.clients[0].endpoints[0].clone();
        let listed = |buckets: &Option<Vec<CallBucket>>| serde_json::to_value(buckets).unwrap();
        let soon = endpoint(tracker.report_at(t0 + 25 * hour));
        assert_eq!((soon.count, soon.refused), (4, 1));
        assert_eq!(
            listed(&soon.hourly),
            json!([
                {"start": "2025-10-15T00:00:00Z", "calls": 1},
                {"start": "2025-10-15T01:00:00Z", "calls": 1},
                {"start": "2025-10-16T00:00:00Z", "calls": 2},
            ])
        );
        assert_eq!(
            listed(&soon.daily),
            json!([
                {"start": "2025-10-15T00:00:00Z", "calls": 2},
                {"start": "2025-10-16T00:00:00Z", "calls": 2},
            ])
        );
        // Read 49 hours on, the first day's hours are out of the window; its day is not.
        let later = endpoint(tracker.report_at(t0 + 49 * hour));
        assert_eq!(
            listed(&later.hourly),
            json!([{"start": "2025-10-16T00:00:00Z", "calls": 2}])
        );
        assert_eq!(later.daily, soon.daily);
        // 35 days on, nothing is left in either; the totals stay.
        let gone = endpoint(tracker.report_at(t0 + 36 * 24 * hour));
        assert_eq!((gone.hourly, gone.daily), (Some(vec![]), Some(vec![])));
        assert_eq!(gone.count, 4);
    }

    #[test]
    fn long_ids_are_cut_on_a_character_boundary_and_marked() {
        let short = "example_1";
        assert_eq!(recorded_user_group_id(short.to_owned()), short);
        let exact = "a".repeat(MAX_RECORDED_USER_GROUP_ID_BYTES);
        assert_eq!(recorded_user_group_id(exact.clone()), exact);
        let long = "a".repeat(1024 * 1024);
        assert_eq!(
            recorded_user_group_id(long.clone()),
            format!(
                "{}{TRUNCATED_MARKER}",
                &long[..MAX_RECORDED_USER_GROUP_ID_BYTES]
            )
        );
        // A three-byte character straddling the limit is left out whole, never split.
        let straddling = format!("{}€€", "a".repeat(MAX_RECORDED_USER_GROUP_ID_BYTES - 1));
        assert_eq!(
            recorded_user_group_id(straddling),
            format!(
                "{}{TRUNCATED_MARKER}",
                "a".repeat(MAX_RECORDED_USER_GROUP_ID_BYTES - 1)
            )
        );
    }
}
