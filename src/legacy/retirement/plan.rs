//! A suggested brownout schedule for `explo-shim brownout-plan`: one window a week between now
//! and the sunset, growing from 5 minutes to 4 hours, so owners get small, early nudges and
//! long, unmissable ones near the end. Pure: the caller supplies the times.
//!
//! The first window starts a week out, so every window is announced on successful replies for
//! a full week beforehand ([`super::NOTICE_AHEAD`]); the last ends at least a day before the
//! sunset.

use std::time::{Duration, SystemTime};

use super::schedule::Window;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// Window lengths, shortest first; a plan spreads its windows over this ladder.
const LADDER: [u64; 10] = [
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    45 * MINUTE,
    HOUR,
    90 * MINUTE,
    2 * HOUR,
    3 * HOUR,
    4 * HOUR,
];

/// Windows from `now` to `sunset`, each starting at `time_of_day` (seconds after midnight,
/// UTC) on the same weekday.
pub fn suggest(
    now: SystemTime,
    sunset: SystemTime,
    time_of_day: Duration,
) -> Result<Vec<Window>, String> {
    let unix = |at: SystemTime| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| "times before 1970 are not supported".to_owned())
            .map(|since| since.as_secs())
    };
    let (now, sunset) = (unix(now)?, unix(sunset)?);
    let time_of_day = time_of_day.as_secs() % DAY;
    // A week of notice, then the first `time_of_day` after that.
    let earliest = now + WEEK;
    let mut first = earliest - earliest % DAY + time_of_day;
    if first < earliest {
        first += DAY;
    }
    let mut starts = Vec::new();
    let mut start = first;
    // Room for the window itself is checked below; keep a day before the sunset.
    while start + 5 * MINUTE + DAY <= sunset {
        starts.push(start);
        start += WEEK;
    }
    if starts.is_empty() {
        return Err(format!(
            "the sunset ({}) is too close: a brownout needs a week's notice and a day before \
             the sunset",
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(sunset))
        ));
    }
    let count = starts.len();
    let last_rung = LADDER.len() - 1;
    Ok(starts
        .into_iter()
        .enumerate()
        .map(|(index, start)| {
            let rung = if count == 1 {
                0
            } else {
                (index * last_rung + (count - 1) / 2) / (count - 1)
            };
            // Never run into the day kept before the sunset.
            let length = LADDER[rung].min(sunset - DAY - start).max(5 * MINUTE);
            let at = |seconds: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
            Window {
                start: at(start),
                end: at(start + length),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn lengths(windows: &[Window]) -> Vec<u64> {
        windows
            .iter()
            .map(|w| w.end.duration_since(w.start).unwrap().as_secs() / 60)
            .collect()
    }

    #[test]
    fn weekly_windows_grow_from_five_minutes_to_four_hours() {
        let windows = suggest(
            at("2026-12-01T09:00:00Z"),
            at("2027-03-01T00:00:00Z"),
            Duration::from_secs(15 * 3600),
        )
        .unwrap();
        assert_eq!(
            windows[0].start,
            at("2026-12-08T15:00:00Z"),
            "a week's notice"
        );
        assert_eq!(windows.len(), 12);
        let minutes = lengths(&windows);
        assert_eq!(minutes.first(), Some(&5));
        assert_eq!(minutes.last(), Some(&240));
        assert!(
            minutes.windows(2).all(|pair| pair[0] <= pair[1]),
            "{minutes:?}"
        );
        for pair in windows.windows(2) {
            assert_eq!(
                pair[1].start.duration_since(pair[0].start).unwrap(),
                Duration::from_secs(WEEK)
            );
        }
        assert!(windows.last().unwrap().end <= at("2027-02-28T00:00:00Z"));
    }

    #[test]
    fn a_close_sunset_gets_what_fits_or_a_clear_error() {
        let one = suggest(
            at("2026-12-01T09:00:00Z"),
            at("2026-12-10T00:00:00Z"),
            Duration::from_secs(15 * 3600),
        )
        .unwrap();
        assert_eq!(lengths(&one), [5]);
        let error = suggest(
            at("2026-12-01T09:00:00Z"),
            at("2026-12-05T00:00:00Z"),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(error.contains("too close"), "{error}");
    }
}
