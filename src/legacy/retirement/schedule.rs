//! ISO 8601 time intervals for brownout windows: `START/END` or `START/DURATION`, e.g.
//! `2026-12-01T10:00:00Z/PT1H` or `2026-12-01T10:00:00Z/2026-12-01T11:30:00Z`. Pure functions.
//!
//! Times are RFC 3339 date-times in UTC (`Z`). Durations are `PnW` or `PnDTnHnMnS` (any of the
//! parts, seconds may have a fraction); years and months are refused, since their length
//! depends on the calendar. Second 60 is refused: the clock the shim reads has no leap
//! seconds, so `23:59:60Z` would silently become `23:59:59Z`. A window must end by
//! [`LAST_WRITABLE_TIME`]: the shim writes each window's end (messages, `--check-config`), and
//! a duration long enough to overflow the clock is a typo, not a plan.

use std::time::{Duration, SystemTime};

/// The last second RFC 3339 can write, 9999-12-31T23:59:59Z, in seconds since the epoch.
pub const LAST_WRITABLE_TIME: Duration = Duration::from_secs(253_402_300_799);

/// One brownout window, `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
}

/// As the configuration writes it (`--check-config` prints this).
impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_iso8601())
    }
}

impl Window {
    pub fn contains(&self, at: SystemTime) -> bool {
        self.start <= at && at < self.end
    }

    /// `START/DURATION`, the form the plan prints.
    pub fn to_iso8601(&self) -> String {
        let length = self.end.duration_since(self.start).unwrap_or_default();
        format!("{}/{}", rfc3339(self.start), iso_duration(length))
    }
}

/// An RFC 3339 UTC date-time, to the second.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Parses `START/END` or `START/DURATION`; the message says what is wrong.
pub fn parse_interval(text: &str) -> Result<Window, String> {
    let text = text.trim();
    let (start, end) = text
        .split_once('/')
        .ok_or_else(|| "expected START/END or START/DURATION".to_owned())?;
    let start = parse_time(start)?;
    let end = if end.starts_with('P') {
        let length = parse_duration(end)?;
        if length.is_zero() {
            return Err("the duration must be longer than zero".to_owned());
        }
        start
            .checked_add(length)
            .filter(|end| *end <= SystemTime::UNIX_EPOCH + LAST_WRITABLE_TIME)
            .ok_or_else(|| {
                format!("{end:?} is too long: the window would end after 9999-12-31T23:59:59Z")
            })?
    } else {
        parse_time(end)?
    };
    if end <= start {
        return Err("the window ends before it starts".to_owned());
    }
    Ok(Window { start, end })
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    if !text.ends_with('Z') || !text.contains('T') {
        return Err(format!(
            "{text:?} is not a UTC date-time like 2026-12-01T10:00:00Z"
        ));
    }
    if names_second_60(text) {
        return Err(leap_second_refusal(text));
    }
    humantime::parse_rfc3339(text).map_err(|error| format!("{text:?}: {error}"))
}

/// Whether an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS…`) names second 60, which the date
/// parser would quietly read as second 59.
pub fn names_second_60(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 19 && bytes[13] == b':' && bytes[16] == b':' && &bytes[17..19] == b"60"
}

/// Why `text`, which names second 60, is refused.
pub fn leap_second_refusal(text: &str) -> String {
    format!(
        "{text:?} names second 60 (a leap second), which the system clock never shows; write \
         :59 or the next minute's :00"
    )
}

/// `PnW` or `PnDTnHnMnS`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not an ISO 8601 duration like PT1H, PT30M or P1DT2H");
    let body = text.strip_prefix('P').ok_or_else(invalid)?;
    if body.is_empty() {
        return Err(invalid());
    }
    let (date_part, time_part) = match body.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(invalid()),
        None => (body, None),
    };
    let mut seconds = 0f64;
    for (index, (part, units)) in [
        (date_part, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (
            time_part.unwrap_or(""),
            &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)][..],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let in_date_part = index == 0;
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let at = rest
                .find(|c: char| c.is_ascii_alphabetic())
                .ok_or_else(invalid)?;
            let (number, unit) = (&rest[..at], rest[at..].chars().next().ok_or_else(invalid)?);
            if in_date_part && matches!(unit, 'Y' | 'M') {
                return Err(format!(
                    "{text:?}: years and months have no fixed length; use weeks, days or hours"
                ));
            }
            let position = allowed
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(invalid)?;
            let value: f64 = number.replace(',', ".").parse().map_err(|_| invalid())?;
            if !value.is_finite() || value < 0.0 || (unit != 'S' && value.fract() != 0.0) {
                return Err(invalid());
            }
            seconds += value * allowed[position].1;
            allowed = &allowed[position + 1..];
            rest = &rest[at + 1..];
        }
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// A duration as ISO 8601 (`PT5M`, `PT1H30M`, `P1DT2H`).
pub fn iso_duration(length: Duration) -> String {
    let mut seconds = length.as_secs();
    let days = seconds / 86_400;
    seconds %= 86_400;
    let (hours, minutes, seconds) = (seconds / 3_600, seconds % 3_600 / 60, seconds % 60);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours + minutes + seconds > 0 || days == 0 {
        out.push('T');
        for (value, unit) in [(hours, 'H'), (minutes, 'M'), (seconds, 'S')] {
            if value > 0 {
                out.push_str(&format!("{value}{unit}"));
            }
        }
        if out.ends_with('T') {
            out.push_str("0S");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn both_interval_forms_are_read() {
        assert_eq!(
            parse_interval("2026-12-01T10:00:00Z/PT1H").unwrap(),
            Window {
                start: at("2026-12-01T10:00:00Z"),
                end: at("2026-12-01T11:00:00Z")
            }
        );
        assert_eq!(
            parse_interval("2026-12-01T10:00:00Z/2026-12-01T11:30:00Z").unwrap(),
            Window {
                start: at("2026-12-01T10:00:00Z"),
                end: at("2026-12-01T11:30:00Z")
            }
        );
    }

    #[test]
    fn durations_follow_iso_8601() {
        for (text, seconds) in [
            ("PT5M", 300.0),
            ("PT1H30M", 5_400.0),
            ("P1DT2H", 93_600.0),
            ("P2W", 1_209_600.0),
            ("PT0.5S", 0.5),
            ("P1D", 86_400.0),
        ] {
            assert_eq!(
                parse_duration(text).unwrap().as_secs_f64(),
                seconds,
                "{text}"
            );
        }
        for bad in [
            "", "P", "PT", "1H", "PT1X", "PT1M1H", "P1Y", "P1M", "PT-1H", "PT1.5H", "PTH",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("P1M").unwrap_err().contains("months"));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (bad, says) in [
            ("2026-12-01T10:00:00Z", "START/END"),
            ("2026-12-01/PT1H", "UTC date-time"),
            ("2026-12-01T10:00:00+02:00/PT1H", "UTC date-time"),
            ("2026-12-01T10:00:00Z/PT0S", "longer than zero"),
            ("2026-12-01T10:00:00Z/2026-12-01T09:00:00Z", "ends before"),
            ("2026-13-01T10:00:00Z/PT1H", "2026-13-01"),
            ("2026-12-01T23:59:60Z/PT1H", "second 60"),
            ("2026-12-01T10:00:00Z/2026-12-31T23:59:60Z", "second 60"),
            ("2026-12-01T00:00:00Z/P30000000000000W", "too long"),
            ("2026-12-01T00:00:00Z/P1000000W", "9999-12-31T23:59:59Z"),
            ("9999-12-31T23:00:00Z/PT2H", "too long"),
        ] {
            let error = parse_interval(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_last_writable_window_is_accepted_and_printed() {
        let window = parse_interval("9999-12-31T23:00:00Z/PT59M59S").unwrap();
        assert_eq!(window.to_iso8601(), "9999-12-31T23:00:00Z/PT59M59S");
        assert_eq!(rfc3339(window.end), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn windows_are_half_open_and_print_as_start_and_duration() {
        let window = parse_interval("2026-12-01T10:00:00Z/PT1H30M").unwrap();
        assert!(window.contains(at("2026-12-01T10:00:00Z")));
        assert!(window.contains(at("2026-12-01T11:29:59Z")));
        assert!(!window.contains(at("2026-12-01T11:30:00Z")));
        assert!(!window.contains(at("2026-12-01T09:59:59Z")));
        assert_eq!(window.to_iso8601(), "2026-12-01T10:00:00Z/PT1H30M");
        assert_eq!(iso_duration(Duration::from_secs(93_600)), "P1DT2H");
        assert_eq!(iso_duration(Duration::from_secs(300)), "PT5M");
    }
}
