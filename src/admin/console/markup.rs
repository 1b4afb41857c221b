//! The small pieces of markup every section of the console uses: escaped text, times and the
//! countdowns the page's script ticks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::legacy::retirement::schedule::rfc3339;

pub(super) const HOUR_SECONDS: u64 = 3_600;
pub(super) const DAY_SECONDS: u64 = 24 * HOUR_SECONDS;

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

pub(super) fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `<time>` showing `at` in RFC 3339 UTC.
pub(super) fn time_element(at: SystemTime) -> String {
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
pub(super) fn countdown(at: SystemTime, now: SystemTime) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
