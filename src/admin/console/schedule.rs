//! The console's retirement schedule: the deprecation and sunset dates with countdowns, what
//! happens after the sunset, the brownout in progress and the next one, and the exempt
//! clients.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::clients::client_label;
use super::markup::{countdown, escape, time_element};
use crate::legacy::retirement::schedule::Window;
use crate::legacy::retirement::{AfterSunset, Retirement};

/// What the console shows besides the report: the dates, the retirement schedule and the
/// names in `[clients]` (for exempt clients that have not called yet).
pub struct Schedule<'a> {
    pub deprecated_at: SystemTime,
    pub sunset_at: Option<SystemTime>,
    pub retirement: &'a Retirement,
    pub client_names: &'a BTreeMap<String, String>,
}

fn window_text(window: &Window) -> String {
    format!(
        "<code>{}</code> ({} to {})",
        escape(&window.to_iso8601()),
        time_element(window.start),
        time_element(window.end)
    )
}

pub(super) fn schedule_section(schedule: &Schedule<'_>, now: SystemTime) -> String {
    let retirement = schedule.retirement;
    let mut out = String::from(
        "<section aria-labelledby=\"schedule-heading\">\
         <h2 id=\"schedule-heading\">Retirement schedule</h2><dl class=\"schedule\">",
    );
    let _ = write!(
        out,
        "<div><dt>Deprecated</dt><dd id=\"deprecated\">{} ({})</dd></div>",
        time_element(schedule.deprecated_at),
        countdown(schedule.deprecated_at, now)
    );
    let sunset = match schedule.sunset_at {
        Some(at) => format!("{} ({})", time_element(at), countdown(at, now)),
        None => "not set (<code>deprecation.sunset</code>)".to_owned(),
    };
    let _ = write!(
        out,
        "<div><dt>Sunset</dt><dd id=\"sunset\">{sunset}</dd></div>"
    );
    let past_sunset = schedule.sunset_at.is_some_and(|at| now >= at);
    let after = match (retirement.after_sunset(), past_sunset) {
        (AfterSunset::Serve, _) => {
            "<code>serve</code>: legacy calls are still translated after the sunset"
        }
        (AfterSunset::Refuse, false) => {
            "<code>refuse</code>: from the sunset, legacy calls get 410 <code>sunset</code> \
             (exempt clients are served)"
        }
        (AfterSunset::Refuse, true) => {
            "<code>refuse</code>: the sunset has passed; legacy calls get 410 \
             <code>sunset</code> (exempt clients are served)"
        }
    };
    let _ = write!(
        out,
        "<div><dt>After the sunset</dt><dd id=\"after-sunset\">{after}</dd></div>"
    );
    let active = match retirement.active(now) {
        Some(window) => format!(
            "<strong class=\"alert\">In a brownout</strong>, <code>{}</code>, until {} (ends \
             {}): legacy calls get 410 <code>brownout</code> (exempt clients are served)",
            escape(&window.to_iso8601()),
            time_element(window.end),
            countdown(window.end, now)
        ),
        None => "none in progress".to_owned(),
    };
    let _ = write!(
        out,
        "<div><dt>Brownout now</dt><dd id=\"brownout-active\">{active}</dd></div>"
    );
    let next = match retirement.next(now) {
        Some(window) => {
            let later = retirement
                .windows()
                .iter()
                .filter(|other| other.start > window.start)
                .count();
            let later = match later {
                0 => String::new(),
                1 => "; 1 more after it".to_owned(),
                n => format!("; {n} more after it"),
            };
            format!(
                "{} starts {}{later}",
                window_text(window),
                countdown(window.start, now)
            )
        }
        None => "none scheduled (<code>deprecation.brownouts</code>)".to_owned(),
    };
    let _ = write!(
        out,
        "<div><dt>Next brownout</dt><dd id=\"brownout-next\">{next}</dd></div>"
    );
    let exempt = retirement.exempt_clients();
    let exempt = if exempt.is_empty() {
        "none (<code>deprecation.exempt_clients</code>)".to_owned()
    } else {
        exempt
            .iter()
            .map(|fingerprint| client_label(schedule.client_names.get(fingerprint), fingerprint))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = write!(
        out,
        "<div><dt>Exempt clients</dt><dd id=\"exempt\">{exempt}</dd></div></dl></section>"
    );
    out
}
