//! Retiring the legacy API on schedule: brownouts, the sunset, and the clients exempt from
//! both.
//!
//! - **Brownouts** (`deprecation.brownouts`): announced windows in which legacy calls fail on
//!   purpose (410 `brownout`, with `Retry-After` at the window's end), so the owners of the
//!   last integrations see the failure in their own monitoring long before the sunset.
//! - **The sunset** (`deprecation.after_sunset = "refuse"`): once `deprecation.sunset` has
//!   passed, legacy calls get 410 `sunset`. `"serve"` (the default) keeps translating.
//! - **Exemptions** (`deprecation.exempt_clients`): client fingerprints that are served through
//!   both, for the integration a team has agreed to migrate last.
//! - **Tell before you cut**: while a brownout starts within [`NOTICE_AHEAD`], successful
//!   legacy replies carry [`BROWNOUT_NOTICE`] naming it.
//!
//! Decisions are pure functions of the schedule, the time and the caller's fingerprint.

pub mod plan;
pub mod schedule;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use http::header::HeaderName;

use schedule::Window;

/// How far ahead a brownout is announced on successful replies.
pub const NOTICE_AHEAD: Duration = Duration::from_secs(7 * 24 * 3600);

/// `Explo-Shim-Brownout: start=@<unix seconds>, end=@<unix seconds>`: the next brownout, as a
/// Structured Field dictionary of dates (RFC 9651 §3.3.7, the form RFC 9745's `Deprecation`
/// uses).
pub static BROWNOUT_NOTICE: HeaderName = HeaderName::from_static("explo-shim-brownout");

/// What happens to legacy calls once the sunset has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterSunset {
    /// Keep translating (today's behaviour).
    #[default]
    Serve,
    /// Answer 410 `sunset`.
    Refuse,
}

/// The retirement schedule as configured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Retirement {
    /// Sorted by start; overlapping windows are merged.
    windows: Vec<Window>,
    /// Each window's notice header value, built once: `notices[i]` announces `windows[i]`.
    notices: Vec<Option<HeaderValue>>,
    sunset: Option<SystemTime>,
    after_sunset: AfterSunset,
    exempt: BTreeSet<String>,
}

/// What to do with one legacy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Serve,
    /// Inside a brownout that lasts until then.
    Brownout {
        ends_at: SystemTime,
    },
    /// After the sunset, with `after_sunset = "refuse"`.
    Sunset {
        since: SystemTime,
    },
}

impl Retirement {
    pub fn new(
        mut windows: Vec<Window>,
        sunset: Option<SystemTime>,
        after_sunset: AfterSunset,
        exempt: BTreeSet<String>,
    ) -> Self {
        windows.sort();
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        for window in windows {
            match merged.last_mut() {
                Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
                _ => merged.push(window),
            }
        }
        let notices = merged.iter().map(notice_value).collect();
        Self {
            windows: merged,
            notices,
            sunset,
            after_sunset,
            exempt,
        }
    }

    /// Whether anything is scheduled at all; the request path skips everything else when not.
    pub fn is_idle(&self) -> bool {
        self.windows.is_empty() && self.after_sunset == AfterSunset::Serve
    }

    pub fn is_exempt(&self, fingerprint: &str) -> bool {
        self.exempt.contains(fingerprint)
    }

    /// What a legacy call from `fingerprint` gets at `now`.
    pub fn decide(&self, now: SystemTime, fingerprint: &str) -> Decision {
        if self.is_idle() || self.is_exempt(fingerprint) {
            return Decision::Serve;
        }
        if let (AfterSunset::Refuse, Some(sunset)) = (self.after_sunset, self.sunset)
            && now >= sunset
        {
            return Decision::Sunset { since: sunset };
        }
        match self.active(now) {
            Some(window) => Decision::Brownout {
                ends_at: window.end,
            },
            None => Decision::Serve,
        }
    }

    /// The brownout in progress at `now`.
    pub fn active(&self, now: SystemTime) -> Option<&Window> {
        self.windows.iter().find(|window| window.contains(now))
    }

    /// The next brownout to start after `now`.
    pub fn next(&self, now: SystemTime) -> Option<&Window> {
        self.next_index(now).map(|index| &self.windows[index])
    }

    fn next_index(&self, now: SystemTime) -> Option<usize> {
        self.windows.iter().position(|window| window.start > now)
    }

    /// The notice for successful replies to `fingerprint`: the next brownout, when it starts
    /// within [`NOTICE_AHEAD`]. Exempt clients are not told: it does not concern them.
    pub fn notice(&self, now: SystemTime, fingerprint: &str) -> Option<HeaderValue> {
        if self.windows.is_empty() || self.is_exempt(fingerprint) {
            return None;
        }
        let next = self.next_index(now)?;
        if self.windows[next]
            .start
            .duration_since(now)
            .unwrap_or_default()
            > NOTICE_AHEAD
        {
            return None;
        }
        self.notices[next].clone()
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn exempt_clients(&self) -> &BTreeSet<String> {
        &self.exempt
    }

    pub fn after_sunset(&self) -> AfterSunset {
        self.after_sunset
    }
}

/// `start=@<unix>, end=@<unix>`: the `Explo-Shim-Brownout` value announcing `window`.
fn notice_value(window: &Window) -> Option<HeaderValue> {
    let unix = |at: SystemTime| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    };
    HeaderValue::from_str(&format!(
        "start=@{}, end=@{}",
        unix(window.start),
        unix(window.end)
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule::parse_interval;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn retirement(windows: &[&str], after_sunset: AfterSunset) -> Retirement {
        Retirement::new(
            windows.iter().map(|w| parse_interval(w).unwrap()).collect(),
            Some(at("2027-03-01T00:00:00Z")),
            after_sunset,
            BTreeSet::from(["aaaaaaaaaaaa".to_owned()]),
        )
    }

    #[test]
    fn a_window_refuses_while_active_only() {
        let plan = retirement(&["2026-12-01T10:00:00Z/PT1H"], AfterSunset::Serve);
        assert_eq!(
            plan.decide(at("2026-12-01T09:59:59Z"), "x"),
            Decision::Serve
        );
        assert_eq!(
            plan.decide(at("2026-12-01T10:30:00Z"), "x"),
            Decision::Brownout {
                ends_at: at("2026-12-01T11:00:00Z")
            }
        );
        assert_eq!(
            plan.decide(at("2026-12-01T11:00:00Z"), "x"),
            Decision::Serve
        );
        assert_eq!(
            plan.decide(at("2026-12-01T10:30:00Z"), "aaaaaaaaaaaa"),
            Decision::Serve,
            "exempt"
        );
    }

    #[test]
    fn overlapping_windows_merge_and_report_the_later_end() {
        let plan = retirement(
            &[
                "2026-12-01T10:30:00Z/PT1H",
                "2026-12-01T10:00:00Z/PT1H",
                "2026-12-02T10:00:00Z/PT5M",
            ],
            AfterSunset::Serve,
        );
        assert_eq!(plan.windows().len(), 2);
        assert_eq!(
            plan.decide(at("2026-12-01T10:10:00Z"), "x"),
            Decision::Brownout {
                ends_at: at("2026-12-01T11:30:00Z")
            }
        );
    }

    #[test]
    fn the_sunset_refuses_only_when_told_and_not_the_exempt() {
        let serve = retirement(&[], AfterSunset::Serve);
        assert!(serve.is_idle());
        assert_eq!(
            serve.decide(at("2027-04-01T00:00:00Z"), "x"),
            Decision::Serve
        );
        let refuse = retirement(&[], AfterSunset::Refuse);
        assert_eq!(
            refuse.decide(at("2027-02-28T23:59:59Z"), "x"),
            Decision::Serve
        );
        assert_eq!(
            refuse.decide(at("2027-03-01T00:00:00Z"), "x"),
            Decision::Sunset {
                since: at("2027-03-01T00:00:00Z")
            }
        );
        assert_eq!(
            refuse.decide(at("2027-04-01T00:00:00Z"), "aaaaaaaaaaaa"),
            Decision::Serve
        );
    }

    #[test]
    fn the_notice_names_the_next_window_within_seven_days() {
        let plan = retirement(&["2026-12-08T10:00:00Z/PT1H"], AfterSunset::Serve);
        assert_eq!(
            plan.notice(at("2026-11-30T10:00:00Z"), "x"),
            None,
            "8 days ahead"
        );
        assert_eq!(
            plan.notice(at("2026-12-01T10:00:00Z"), "x").unwrap(),
            "start=@1796724000, end=@1796727600"
        );
        assert_eq!(
            plan.notice(at("2026-12-01T10:00:00Z"), "aaaaaaaaaaaa"),
            None
        );
        assert_eq!(
            plan.notice(at("2026-12-08T10:30:00Z"), "x"),
            None,
            "active, not next"
        );
    }
}
