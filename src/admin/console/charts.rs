//! The console's charts: per client, its legacy calls in each hour of the last two days and
//! each day of the last five weeks, as inline SVG drawn from the report's buckets.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::clients::client_label;
use super::markup::{DAY_SECONDS, HOUR_SECONDS, escape, unix};
use crate::legacy::retirement::schedule::rfc3339;
use crate::observe::usage::{CallBucket, ClientUsage, EndpointUsage};

/// The hourly chart's reach: the 48 UTC hours ending with the current one (`/usage` keeps as
/// many).
pub const CHART_HOURS: u64 = 48;
/// The daily chart's reach: the 35 UTC days ending with today (five weeks, as `/usage` keeps).
pub const CHART_DAYS: u64 = 35;

/// One chart's reach: `slots` periods of `period` seconds ending with the one `now` is in.
#[derive(Clone, Copy)]
pub(super) struct Axis {
    /// The chart's class, named after the report's member it draws.
    member: &'static str,
    /// That member of an endpoint.
    buckets: fn(&EndpointUsage) -> Option<&Vec<CallBucket>>,
    period: u64,
    slots: u64,
}

pub(super) const HOURLY: Axis = Axis {
    member: "hourly",
    buckets: |endpoint| endpoint.hourly.as_ref(),
    period: HOUR_SECONDS,
    slots: CHART_HOURS,
};
pub(super) const DAILY: Axis = Axis {
    member: "daily",
    buckets: |endpoint| endpoint.daily.as_ref(),
    period: DAY_SECONDS,
    slots: CHART_DAYS,
};

impl Axis {
    fn first(self, now: SystemTime) -> u64 {
        (unix(now) / self.period).saturating_sub(self.slots - 1) * self.period
    }
}

/// A client's calls per period on `axis`, all its endpoints together; `None` when the report
/// has no such buckets (a shim from before they were reported).
pub(super) fn series(client: &ClientUsage, axis: Axis, now: SystemTime) -> Option<Vec<u64>> {
    let endpoints = &client.endpoints;
    if !endpoints
        .iter()
        .any(|endpoint| (axis.buckets)(endpoint).is_some())
    {
        return None;
    }
    let first = axis.first(now);
    let mut counts = vec![0u64; axis.slots as usize];
    for bucket in endpoints
        .iter()
        .filter_map(|endpoint| (axis.buckets)(endpoint))
        .flatten()
    {
        let Ok(start) = humantime::parse_rfc3339(&bucket.start) else {
            continue;
        };
        let Some(offset) = unix(start).checked_sub(first) else {
            continue;
        };
        if let Some(slot) = counts.get_mut((offset / axis.period) as usize) {
            *slot += bucket.calls;
        }
    }
    Some(counts)
}

pub(super) fn charts_section(clients: &[ClientUsage], now: SystemTime) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"charts-heading\"><h2 id=\"charts-heading\">Calls over \
         time</h2><p class=\"hint\">Per client, all its legacy endpoints together: each hour \
         of the last two days and each day of the last five weeks (UTC).</p>",
    );
    if clients.is_empty() {
        out.push_str("<p class=\"empty\">No calls to chart yet.</p></section>");
        return out;
    }
    out.push_str("<div class=\"charts\">");
    for client in clients {
        let fingerprint = client.client_fingerprint.as_str();
        let label = client.client_name.as_ref().map_or_else(
            || fingerprint.to_owned(),
            |name| format!("{name} ({fingerprint})"),
        );
        let _ = write!(
            out,
            "<figure class=\"chart\"><figcaption>{}</figcaption>",
            client_label(client.client_name.as_ref(), fingerprint)
        );
        out.push_str(&chart(client, HOURLY, &label, now));
        out.push_str(&chart(client, DAILY, &label, now));
        out.push_str("</figure>");
    }
    out.push_str("</div></section>");
    out
}

const CHART_WIDTH: u64 = 480;
const CHART_HEIGHT: u64 = 120;
const PLOT_TOP: u64 = 18;
const PLOT_BOTTOM: u64 = 100;

/// One chart as inline SVG: a bar per period, a `<title>` on each for its count, and a note
/// when there is nothing to draw.
pub(super) fn chart(client: &ClientUsage, axis: Axis, label: &str, now: SystemTime) -> String {
    let counts = series(client, axis, now);
    let (heading, reach) = if axis.period == HOUR_SECONDS {
        ("Hourly", "the last 48 hours")
    } else {
        ("Daily", "the last 35 days")
    };
    let total: u64 = counts.iter().flatten().sum();
    let peak = counts.iter().flatten().copied().max().unwrap_or(0);
    let note = match &counts {
        None => Some("no per-hour and per-day counts in this report yet"),
        Some(_) if total == 0 => Some("no calls in this period"),
        Some(_) => None,
    };
    let label = escape(label);
    let mut out = format!(
        "<svg class=\"{}\" viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\" aria-label=\"{heading} legacy calls of {label} \
         over {reach}: {total}\"><title>{heading} legacy calls of {label} over {reach}: \
         {total}</title>",
        axis.member
    );
    let slots = axis.slots;
    let step = CHART_WIDTH as f64 / slots as f64;
    let plot = (PLOT_BOTTOM - PLOT_TOP) as f64;
    let first = axis.first(now);
    if let Some(counts) = &counts {
        for (index, calls) in counts.iter().enumerate() {
            if *calls == 0 {
                continue;
            }
            let height = (plot * *calls as f64 / peak as f64).max(1.0);
            let start = UNIX_EPOCH + Duration::from_secs(first + index as u64 * axis.period);
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
                 <title>{}: {calls} call{}</title></rect>",
                index as f64 * step + 0.5,
                PLOT_BOTTOM as f64 - height,
                (step - 1.0).max(1.0),
                rfc3339(start),
                if *calls == 1 { "" } else { "s" }
            );
        }
    }
    let first_label = rfc3339(UNIX_EPOCH + Duration::from_secs(first));
    let first_label = if axis.period == HOUR_SECONDS {
        first_label[..16].replace('T', " ")
    } else {
        first_label[..10].to_owned()
    };
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"0\" y1=\"{PLOT_BOTTOM}\" x2=\"{CHART_WIDTH}\" \
         y2=\"{PLOT_BOTTOM}\"/>\
         <text class=\"label\" x=\"0\" y=\"12\">{heading}, peak {peak}, total {total}</text>\
         <text class=\"label\" x=\"0\" y=\"116\">{first_label}</text>\
         <text class=\"label\" x=\"{CHART_WIDTH}\" y=\"116\" text-anchor=\"end\">now</text>"
    );
    if let Some(note) = note {
        let _ = write!(
            out,
            "<text class=\"note\" x=\"{}\" y=\"62\" text-anchor=\"middle\">{note}</text>",
            CHART_WIDTH / 2
        );
    }
    out.push_str("</svg>");
    out
}
