//! The console's table of legacy clients: a row per client and endpoint, headed by the client
//! with its name, and badges for exempt clients and refused calls.

use std::fmt::Write as _;

use super::markup::escape;
use crate::legacy::retirement::Retirement;
use crate::observe::usage::ClientUsage;

/// A client's name (when `[clients]` gives one) and its fingerprint, escaped.
pub(super) fn client_label(name: Option<&String>, fingerprint: &str) -> String {
    let fingerprint = format!("<code class=\"fingerprint\">{}</code>", escape(fingerprint));
    match name {
        Some(name) => format!("<span class=\"name\">{}</span> {fingerprint}", escape(name)),
        None => fingerprint,
    }
}

pub(super) fn clients_section(clients: &[ClientUsage], retirement: &Retirement) -> String {
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
