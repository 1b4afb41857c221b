//! The migration console, `GET /` on the admin listener: who still calls the legacy API, how
//! much and when, next to the retirement schedule, on one page.
//!
//! The page is self-contained: its CSS, script and charts (SVG) are inline, nothing is fetched
//! from another host, and [`content_security_policy`] says so to the browser. Everything is
//! rendered here, on the server, so the page is whole without scripts; the script only ticks
//! the countdowns and, every [`REFRESH_SECONDS`], fetches `/` again and swaps `<main>` (charts
//! included) for the new one. Every text that comes from a client or the config (names,
//! fingerprints, `user_group_id`s) is escaped by [`escape`]; the script sets only its own
//! words, and only with `textContent`.
//!
//! [`render`] is a pure function: the `/usage` report, the schedule, the time and the nonce
//! in, the page out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::observe::usage::{CallBucket, ClientUsage, EndpointUsage, UsageReport};

use crate::legacy::retirement::schedule::{Window, rfc3339};
use crate::legacy::retirement::{AfterSunset, Retirement};

/// How often the page's script fetches the page again.
pub const REFRESH_SECONDS: u64 = 10;
/// The hourly chart's reach: the 48 UTC hours ending with the current one (`/usage` keeps as
/// many).
pub const CHART_HOURS: u64 = 48;
/// The daily chart's reach: the 35 UTC days ending with today (five weeks, as `/usage` keeps).
pub const CHART_DAYS: u64 = 35;

const HOUR_SECONDS: u64 = 3_600;
const DAY_SECONDS: u64 = 24 * HOUR_SECONDS;

/// What the console shows besides the report: the dates, the retirement schedule and the
/// names in `[clients]` (for exempt clients that have not called yet).
pub struct Schedule<'a> {
    pub deprecated_at: SystemTime,
    pub sunset_at: Option<SystemTime>,
    pub retirement: &'a Retirement,
    pub client_names: &'a BTreeMap<String, String>,
}

/// The page's `Content-Security-Policy`: nothing from anywhere but the inline style and script
/// carrying this response's `nonce`, fetches to this listener only, no framing.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

/// A fresh nonce: the 16 bytes of a version 4 UUID in base64; 122 of its bits are random,
/// from the operating system's generator (the other 6 name the version and variant).
pub fn nonce() -> String {
    base64(uuid::Uuid::new_v4().as_bytes())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `text` safe in HTML text and in a quoted attribute value, its control characters shown
/// as escapes ([`crate::observe::usage::printable`]) rather than hidden by the browser.
pub fn escape(text: &str) -> String {
    let text = crate::observe::usage::printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The whole page for `report` (the `/usage` JSON, client names included) at `now`.
pub fn render(
    report: &UsageReport,
    schedule: &Schedule<'_>,
    now: SystemTime,
    nonce: &str,
    sign_out: bool,
) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let nonce = escape(nonce);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>explo-shim: migration console</title>\
         <style nonce=\"{nonce}\">{STYLE}</style></head>\
         <body data-refresh-seconds=\"{REFRESH_SECONDS}\">\
         <header><h1>explo-shim migration console</h1>\
         <p id=\"refresh-status\">Rendered by the shim; with scripts on, the \
         page refreshes every {REFRESH_SECONDS}&nbsp;s.</p>{sign_out}</header>",
        // Signed in with the admin token: the way out drops the session cookie.
        sign_out = if sign_out {
            "<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out\
             </button></form>"
        } else {
            ""
        }
    );
    page.push_str(&main(report, schedule, now));
    let _ = write!(
        page,
        "<footer><p>Self-contained: nothing on this page comes from another host. The same \
         data as JSON: <a href=\"/usage\">/usage</a>; counters: \
         <a href=\"/metrics\">/metrics</a>.</p></footer>\
         <script nonce=\"{nonce}\">{SCRIPT}</script></body></html>"
    );
    page
}

/// `<main>`: what the refresh swaps.
fn main(report: &UsageReport, schedule: &Schedule<'_>, now: SystemTime) -> String {
    let mut out = String::from("<main>");
    let source = report.source.as_str();
    let source_text = if source == "fleet" {
        "every replica on this Redis"
    } else {
        "this process only: no fleet, or its Redis did not answer"
    };
    let _ = write!(
        out,
        "<p class=\"meta\">As of {}. Source: <strong id=\"source\">{}</strong> \
         ({source_text}).</p>",
        time_element(now),
        escape(source)
    );
    out.push_str(&schedule_section(schedule, now));
    out.push_str(&clients_section(&report.clients, schedule.retirement));
    out.push_str(&charts_section(&report.clients, now));
    out.push_str("</main>");
    out
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `<time>` showing `at` in RFC 3339 UTC.
fn time_element(at: SystemTime) -> String {
    let text = rfc3339(at);
    format!("<time datetime=\"{text}\">{text}</time>")
}

/// A span of time as the countdowns show it: the two largest units.
pub fn span_text(span: Duration) -> String {
    let seconds = span.as_secs();
    let (days, hours, minutes, seconds) = (
        seconds / DAY_SECONDS,
        seconds % DAY_SECONDS / HOUR_SECONDS,
        seconds % HOUR_SECONDS / 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else {
        format!("{minutes} min {seconds} s")
    }
}

/// "in 3 d 4 h" or "3 d 4 h ago", in a span the script ticks every second.
fn countdown(at: SystemTime, now: SystemTime) -> String {
    let text = match at.duration_since(now) {
        Ok(ahead) if !ahead.is_zero() => format!("in {}", span_text(ahead)),
        _ => format!(
            "{} ago",
            span_text(now.duration_since(at).unwrap_or_default())
        ),
    };
    format!(
        "<span class=\"countdown\" data-at=\"{}\">{text}</span>",
        unix(at)
    )
}

fn window_text(window: &Window) -> String {
    format!(
        "<code>{}</code> ({} to {})",
        escape(&window.to_iso8601()),
        time_element(window.start),
        time_element(window.end)
    )
}

fn schedule_section(schedule: &Schedule<'_>, now: SystemTime) -> String {
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

/// A client's name (when `[clients]` gives one) and its fingerprint, escaped.
fn client_label(name: Option<&String>, fingerprint: &str) -> String {
    let fingerprint = format!("<code class=\"fingerprint\">{}</code>", escape(fingerprint));
    match name {
        Some(name) => format!("<span class=\"name\">{}</span> {fingerprint}", escape(name)),
        None => fingerprint,
    }
}

fn clients_section(clients: &[ClientUsage], retirement: &Retirement) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"clients-heading\"><h2 id=\"clients-heading\">Legacy \
         clients</h2>",
    );
    if clients.is_empty() {
        out.push_str(
            "<p class=\"empty\" id=\"no-clients\">No legacy calls recorded yet. Clients appear \
             here after their first call to a legacy endpoint.</p></section>",
        );
        return out;
    }
    let _ = write!(
        out,
        "<div class=\"scroll\" role=\"region\" aria-labelledby=\"clients-heading\" \
         tabindex=\"0\"><table id=\"clients\"><caption>Legacy calls by client and endpoint \
         ({} client{})</caption><thead><tr><th scope=\"col\">Client</th>\
         <th scope=\"col\">Legacy endpoint</th><th scope=\"col\">Replacement</th>\
         <th scope=\"col\" class=\"num\">Calls</th><th scope=\"col\" class=\"num\">Refused</th>\
         <th scope=\"col\">First seen</th><th scope=\"col\">Last seen</th>\
         <th scope=\"col\">Last user_group_id</th></tr></thead>",
        clients.len(),
        if clients.len() == 1 { "" } else { "s" }
    );
    for client in clients {
        let fingerprint = client.client_fingerprint.as_str();
        let endpoints = &client.endpoints;
        let refused: u64 = endpoints.iter().map(|endpoint| endpoint.refused).sum();
        let mut badges = String::new();
        if retirement.is_exempt(fingerprint) {
            badges.push_str("<span class=\"badge exempt\">exempt</span>");
        }
        if refused > 0 {
            let _ = write!(
                badges,
                "<span class=\"badge refused\">refused {refused} (brownout/sunset)</span>"
            );
        }
        let rows = endpoints.len().max(1);
        let _ = write!(
            out,
            "<tbody><tr><th scope=\"rowgroup\" rowspan=\"{rows}\" class=\"client\">{}{}</th>",
            client_label(client.client_name.as_ref(), fingerprint),
            if badges.is_empty() {
                String::new()
            } else {
                format!("<span class=\"badges\">{badges}</span>")
            }
        );
        if endpoints.is_empty() {
            out.push_str("<td colspan=\"7\">no legacy endpoint recorded</td></tr>");
        }
        for (index, endpoint) in endpoints.iter().enumerate() {
            if index > 0 {
                out.push_str("<tr>");
            }
            let refused = endpoint.refused;
            let _ = write!(
                out,
                "<td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td class=\"num{}\">{refused}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&endpoint.endpoint),
                escape(endpoint.replacement.as_deref().unwrap_or("")),
                endpoint.count,
                if refused > 0 { " refused" } else { "" },
                escape(&endpoint.first_seen),
                escape(&endpoint.last_seen),
                endpoint.last_user_group_id.as_deref().map_or_else(
                    || "—".to_owned(),
                    |id| format!("<code>{}</code>", escape(id))
                )
            );
        }
        out.push_str("</tbody>");
    }
    out.push_str("</table></div></section>");
    out
}

/// One chart's reach: `slots` periods of `period` seconds ending with the one `now` is in.
#[derive(Clone, Copy)]
struct Axis {
    /// The chart's class, named after the report's member it draws.
    member: &'static str,
    /// That member of an endpoint.
    buckets: fn(&EndpointUsage) -> Option<&Vec<CallBucket>>,
    period: u64,
    slots: u64,
}

const HOURLY: Axis = Axis {
    member: "hourly",
    buckets: |endpoint| endpoint.hourly.as_ref(),
    period: HOUR_SECONDS,
    slots: CHART_HOURS,
};
const DAILY: Axis = Axis {
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
fn series(client: &ClientUsage, axis: Axis, now: SystemTime) -> Option<Vec<u64>> {
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

fn charts_section(clients: &[ClientUsage], now: SystemTime) -> String {
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
fn chart(client: &ClientUsage, axis: Axis, label: &str, now: SystemTime) -> String {
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

/// Inline, under the response's nonce. Colours keep at least 4.5:1 contrast on their
/// background in both schemes.
const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1a1a1a;--muted:#4a4a4a;--line:#c8c8c8;\
--accent:#0b5cad;--bar:#0b5cad;--alert:#a4161a;--ok:#1e6b30;--head:#f2f4f7}\
@media (prefers-color-scheme:dark){:root{--bg:#121417;--fg:#ececec;--muted:#b8b8b8;\
--line:#3d434a;--accent:#8cc4ff;--bar:#6fb3ff;--alert:#ff8a8a;--ok:#7fd98f;--head:#1d2126}}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.45 system-ui,-apple-system,\
'Segoe UI',Roboto,sans-serif}\
header,main,footer{max-width:1240px;margin:0 auto;padding:0 1rem}\
header{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;\
gap:.5rem;border-bottom:1px solid var(--line)}\
h1{font-size:1.4rem;margin:.8rem 0}h2{font-size:1.15rem;margin:1.4rem 0 .6rem}\
#refresh-status{color:var(--muted);font-size:.9rem;margin:.4rem 0}\
.meta,.hint,footer{color:var(--muted);font-size:.9rem}\
a{color:var(--accent)}code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
.schedule{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:.6rem 1.2rem;\
margin:0}\
.schedule div{border-left:3px solid var(--line);padding:.2rem .7rem}\
dt{font-weight:600}dd{margin:0}.schedule code{white-space:nowrap}\
.alert,.refused{color:var(--alert)}\
.countdown{font-variant-numeric:tabular-nums;white-space:nowrap}\
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:4px;max-width:100%}\
.scroll:focus{outline:2px solid var(--accent)}\
table{border-collapse:collapse;width:100%;min-width:56rem;font-size:.9rem}\
time{white-space:nowrap}\
caption{text-align:left;padding:.5rem .7rem;color:var(--muted);font-size:.9rem}\
th,td{padding:.45rem .6rem;border-top:1px solid var(--line);text-align:left;vertical-align:top}\
thead th{background:var(--head);white-space:nowrap}\
td{white-space:nowrap}td:last-child{white-space:normal;word-break:break-all;min-width:10rem}\
.num{text-align:right;font-variant-numeric:tabular-nums}\
th.client{font-weight:400}\
.name{font-weight:600;display:block}.fingerprint{color:var(--muted)}\
.badges{display:flex;flex-wrap:wrap;gap:.3rem;margin-top:.3rem}\
.badge{border:1px solid currentColor;border-radius:3px;padding:0 .35rem;font-size:.8rem;\
white-space:nowrap}\
.badge.exempt{color:var(--ok)}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,30rem),1fr));\
gap:1rem}\
.chart{margin:0;border:1px solid var(--line);border-radius:4px;padding:.6rem}\
.chart figcaption{margin-bottom:.3rem}\
.chart svg{display:block;width:100%;height:auto;margin-top:.4rem}\
.bar{fill:var(--bar)}.axis{stroke:var(--line)}\
.label,.note{fill:var(--muted);font-size:12px;font-family:system-ui,sans-serif}\
.note{font-size:14px}\
.empty{border:1px dashed var(--line);padding:1rem;border-radius:4px}\
footer{border-top:1px solid var(--line);margin-top:2rem;padding-bottom:1rem}\
@media (max-width:40rem){body{font-size:15px}.charts{grid-template-columns:1fr}}";

/// Ticks the countdowns each second and swaps `<main>` for a fresh one every
/// [`REFRESH_SECONDS`] (read from `<body data-refresh-seconds>`). It writes only its own
/// words, with `textContent`; the swapped `<main>` was parsed from the server's escaped markup
/// by `DOMParser`, which runs no scripts.
const SCRIPT: &str = "(function(){'use strict';\
var EVERY=Number(document.body.getAttribute('data-refresh-seconds'))||10;\
function span(ms){var s=Math.floor(ms/1000),d=Math.floor(s/86400),h=Math.floor(s%86400/3600),\
m=Math.floor(s%3600/60),r=s%60;\
if(d>0)return d+' d '+h+' h';if(h>0)return h+' h '+m+' min';return m+' min '+r+' s';}\
function tick(){var now=Date.now();\
document.querySelectorAll('.countdown[data-at]').forEach(function(el){\
var at=Number(el.getAttribute('data-at'))*1000;if(!isFinite(at))return;\
el.textContent=at>now?'in '+span(at-now):span(now-at)+' ago';});}\
function status(text){var el=document.getElementById('refresh-status');if(el)el.textContent=text;}\
function refresh(){\
fetch('/',{credentials:'same-origin',cache:'no-store',headers:{'Accept':'text/html'}})\
.then(function(r){if(!r.ok)throw new Error(r.status===401?'sign in again (401)':'HTTP '+r.status);\
return r.text();})\
.then(function(text){var doc=new DOMParser().parseFromString(text,'text/html');\
var next=doc.querySelector('main'),current=document.querySelector('main');\
if(!next||!current)throw new Error('no data in the reply');\
current.replaceWith(document.adoptNode(next));tick();\
status('Refreshed '+new Date().toISOString().slice(11,19)+' UTC; every '+EVERY+' s.');})\
.catch(function(e){status('Refresh failed: '+e.message+'. Showing the last data.');});}\
tick();setInterval(tick,1000);setInterval(refresh,EVERY*1000);\
status('Live: refreshes every '+EVERY+' s.');})();";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::retirement::schedule::parse_interval;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    fn retirement(exempt: &[&str]) -> Retirement {
        Retirement::new(
            vec![
                parse_interval("2026-12-01T15:00:00Z/PT5M").unwrap(),
                parse_interval("2026-12-09T15:00:00Z/PT30M").unwrap(),
                parse_interval("2026-12-16T15:00:00Z/PT1H").unwrap(),
            ],
            Some(at("2027-03-01T00:00:00Z")),
            AfterSunset::Refuse,
            exempt
                .iter()
                .map(|&f| f.to_owned())
                .collect::<BTreeSet<_>>(),
        )
    }

    fn page(report: &UsageReport, retirement: &Retirement, now: &str) -> String {
        let names = BTreeMap::from([("aaaaaaaaaaaa".to_owned(), "billing-job".to_owned())]);
        render(
            report,
            &Schedule {
                deprecated_at: at("2025-10-15T00:00:00Z"),
                sunset_at: Some(at("2027-03-01T00:00:00Z")),
                retirement,
                client_names: &names,
            },
            at(now),
            "bm9uY2U=",
            false,
        )
    }

    fn report() -> UsageReport {
        serde_json::from_value(json!({"source": "fleet", "clients": [
            {"client_fingerprint": "64cc961af68c", "client_name": "<script>alert(1)</script>",
             "endpoints": [
                {"endpoint": "update_user_group", "replacement": "update_customer", "count": 12,
                 "first_seen": "2026-11-01T10:00:00Z", "last_seen": "2026-12-04T10:20:00Z",
                 "last_user_group_id": "\"><img src=x onerror=alert(2)>", "refused": 2,
                 "hourly": [{"start": "2026-12-04T09:00:00Z", "calls": 4},
                            {"start": "2026-12-04T10:00:00Z", "calls": 8}],
                 "daily": [{"start": "2026-11-01T00:00:00Z", "calls": 4},
                           {"start": "2026-12-04T00:00:00Z", "calls": 8}]},
                {"endpoint": "delete_user_group", "replacement": "delete_customer", "count": 1,
                 "first_seen": "2026-12-04T10:00:00Z", "last_seen": "2026-12-04T10:00:00Z",
                 "last_user_group_id": null, "refused": 0,
                 "hourly": [{"start": "2026-12-04T10:00:00Z", "calls": 1}],
                 "daily": [{"start": "2026-12-04T00:00:00Z", "calls": 1}]}]},
            {"client_fingerprint": "aaaaaaaaaaaa", "client_name": "billing-job", "endpoints": [
                {"endpoint": "refresh_user_group_token", "replacement": "refresh_customer_token",
                 "count": 5, "first_seen": "2026-11-20T08:00:00Z",
                 "last_seen": "2026-11-20T08:00:00Z", "last_user_group_id": "g7", "refused": 0}]}
        ]}))
        .unwrap()
    }

    #[test]
    fn hostile_names_and_ids_are_escaped_everywhere() {
        let html = page(&report(), &retirement(&[]), "2026-12-04T10:30:00Z");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
        // The only scripts are the page's own, under the nonce.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script nonce=\"bm9uY2U=\">"));
        assert!(html.contains("<style nonce=\"bm9uY2U=\">"));
        assert_eq!(escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;");
    }

    #[test]
    fn the_table_has_a_row_per_endpoint_headed_by_its_client() {
        let html = page(
            &report(),
            &retirement(&["aaaaaaaaaaaa"]),
            "2026-12-04T10:30:00Z",
        );
        assert!(html.contains("<th scope=\"col\">Legacy endpoint</th>"));
        assert!(html.contains("<th scope=\"rowgroup\" rowspan=\"2\" class=\"client\">"));
        assert!(html.contains("<code class=\"fingerprint\">64cc961af68c</code>"));
        assert!(html.contains("<code>update_user_group</code>"));
        assert!(html.contains("<code>update_customer</code>"));
        assert!(html.contains("refused 2 (brownout/sunset)"));
        assert!(html.contains("<span class=\"name\">billing-job</span>"));
        assert!(html.contains("<span class=\"badge exempt\">exempt</span>"));
        assert_eq!(html.matches("class=\"badge exempt\"").count(), 1);
        assert!(html.contains("(2 clients)"));
        assert!(html.contains("Source: <strong id=\"source\">fleet</strong>"));
    }

    #[test]
    fn the_schedule_names_the_dates_the_windows_and_after_sunset() {
        let html = page(
            &report(),
            &retirement(&["aaaaaaaaaaaa"]),
            "2026-12-04T10:30:00Z",
        );
        assert!(html.contains(
            "<dd id=\"deprecated\"><time datetime=\"2025-10-15T00:00:00Z\">\
             2025-10-15T00:00:00Z</time> (<span class=\"countdown\" data-at=\"1760486400\">\
             415 d 10 h ago</span>)</dd>"
        ));
        assert!(html.contains("2027-03-01T00:00:00Z</time> (<span class=\"countdown\""));
        assert!(html.contains(">in 86 d 13 h</span>"));
        assert!(html.contains("<dd id=\"brownout-active\">none in progress</dd>"));
        assert!(html.contains("<code>2026-12-09T15:00:00Z/PT30M</code>"));
        assert!(html.contains("starts <span class=\"countdown\" data-at=\"1796828400\">in 5 d 4 h</span>; 1 more after it"));
        assert!(html.contains("<code>refuse</code>: from the sunset"));
        assert!(html.contains(
            "<dd id=\"exempt\"><span class=\"name\">billing-job</span> \
             <code class=\"fingerprint\">aaaaaaaaaaaa</code></dd>"
        ));

        let during = page(&report(), &retirement(&[]), "2026-12-09T15:10:00Z");
        assert!(during.contains(
            "<strong class=\"alert\">In a brownout</strong>, \
             <code>2026-12-09T15:00:00Z/PT30M</code>, until"
        ));
        assert!(during.contains(">in 20 min 0 s</span>"));
        assert!(during.contains("<code>2026-12-16T15:00:00Z/PT1H</code>"));
        assert!(during.contains("<dd id=\"exempt\">none"));

        let after = page(&report(), &retirement(&[]), "2027-03-02T00:00:00Z");
        assert!(after.contains("the sunset has passed"));
        assert!(after.contains("<dd id=\"brownout-next\">none scheduled"));
        assert!(after.contains(">1 d 0 h ago</span>"));
    }

    #[test]
    fn an_empty_report_says_so_and_still_shows_the_schedule() {
        let empty = UsageReport {
            clients: Vec::new(),
            source: crate::observe::usage::Source::Replica,
        };
        let html = page(&empty, &Retirement::default(), "2026-12-04T10:30:00Z");
        assert!(html.contains("id=\"no-clients\""));
        assert!(!html.contains("<table"));
        assert!(html.contains("No calls to chart yet."));
        assert!(html.contains("<dd id=\"brownout-next\">none scheduled"));
        assert!(html.contains("<code>serve</code>: legacy calls are still translated"));
        assert!(html.contains("(this process only: no fleet"));
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>"));
    }

    #[test]
    fn charts_sum_a_clients_buckets_per_hour_and_day_and_note_when_there_are_none() {
        let report = report();
        let now = at("2026-12-04T10:30:00Z");
        let client = &report.clients[0];
        let hourly = series(client, HOURLY, now).unwrap();
        assert_eq!(hourly.len(), 48);
        assert_eq!(hourly[47], 9, "this hour, both endpoints");
        assert_eq!(hourly[46], 4);
        assert_eq!(hourly.iter().sum::<u64>(), 13);
        let daily = series(client, DAILY, now).unwrap();
        assert_eq!(daily.len(), 35);
        assert_eq!(daily[34], 9);
        assert_eq!(daily[1], 4, "2026-11-01 is 33 days before 2026-12-04");

        let svg = chart(client, HOURLY, "a <b>", now);
        assert!(svg.starts_with("<svg class=\"hourly\""), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>2026-12-04T10:00:00Z: 9 calls</title>"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains("peak 9, total 13"));
        assert!(!svg.contains("class=\"note\""));

        // A report without buckets (a shim from before them): empty charts with a note.
        let bare = &report.clients[1];
        assert_eq!(series(bare, HOURLY, now), None);
        let svg = chart(bare, DAILY, "billing-job", now);
        assert!(!svg.contains("<rect"));
        assert!(svg.contains("no per-hour and per-day counts in this report yet"));
        // Buckets older than the chart's reach are left out.
        let mut old = report.clients[1].clone();
        old.endpoints[0].hourly = Some(vec![CallBucket {
            start: "2026-12-01T10:00:00Z".to_owned(),
            calls: 3,
        }]);
        assert_eq!(series(&old, HOURLY, now).unwrap().iter().sum::<u64>(), 0);
        assert!(chart(&old, HOURLY, "x", now).contains("no calls in this period"));
    }

    #[test]
    fn the_policy_allows_only_this_pages_inline_code() {
        let csp = content_security_policy("abc=");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'nonce-abc='; style-src 'nonce-abc=';")
        );
        assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let (one, two) = (nonce(), nonce());
        assert_eq!(one.len(), 24);
        assert_ne!(one, two);
    }

    #[test]
    fn countdowns_show_the_two_largest_units() {
        assert_eq!(
            span_text(Duration::from_secs(86_400 * 3 + 3_600 * 4 + 5)),
            "3 d 4 h"
        );
        assert_eq!(
            span_text(Duration::from_secs(3_600 * 2 + 60 * 5)),
            "2 h 5 min"
        );
        assert_eq!(span_text(Duration::from_secs(65)), "1 min 5 s");
    }
}
