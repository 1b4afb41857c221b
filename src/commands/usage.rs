//! `explo-shim usage`: the `/usage` report as a table: who still calls what, and since when.

use serde_json::Value;

use super::admin_get;

/// Fetches `{admin}/usage` and renders it.
pub async fn run(admin: &str) -> Result<String, String> {
    let url = format!("{admin}/usage");
    let (status, body) = admin_get(&url).await?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let report: Value =
        serde_json::from_slice(&body).map_err(|error| format!("{url} is not JSON: {error}"))?;
    Ok(render_table(&report))
}

const COLUMNS: [&str; 8] = [
    "CLIENT",
    "LEGACY ENDPOINT",
    "REPLACEMENT",
    "CALLS",
    "FIRST SEEN",
    "LAST SEEN",
    "LAST USER_GROUP_ID",
    "REFUSED",
];

/// One row per client and endpoint, columns padded to fit. `REFUSED` marks the calls answered
/// 410 on purpose (a brownout, the sunset): `3 (brownout/sunset)`, or `-`.
pub fn render_table(report: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut rows: Vec<[String; 8]> = Vec::new();
    for client in report["clients"].as_array().into_iter().flatten() {
        for endpoint in client["endpoints"].as_array().into_iter().flatten() {
            rows.push([
                text(&client["client_fingerprint"]),
                text(&endpoint["endpoint"]),
                text(&endpoint["replacement"]),
                text(&endpoint["count"]),
                text(&endpoint["first_seen"]),
                text(&endpoint["last_seen"]),
                text(&endpoint["last_user_group_id"]),
                match endpoint["refused"].as_u64() {
                    Some(refused) if refused > 0 => format!("{refused} (brownout/sunset)"),
                    _ => "-".to_owned(),
                },
            ]);
        }
    }
    if rows.is_empty() {
        let source = match report["source"].as_str() {
            Some("fleet") => "by the fleet",
            _ => "since this shim started",
        };
        return format!("No legacy End User Group calls seen {source}.\n");
    }
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[String; 8]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&COLUMNS.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_one_row_per_client_and_endpoint() {
        let report = json!({"clients": [{"client_fingerprint": "64cc961af68c", "endpoints": [
            {"endpoint": "update_user_group", "replacement": "update_customer", "count": 12,
             "first_seen": "2026-11-01T10:00:00Z", "last_seen": "2026-11-26T05:00:00Z",
             "last_user_group_id": "example_1", "refused": 2},
            {"endpoint": "delete_user_group", "replacement": "delete_customer", "count": 1,
             "first_seen": "2026-11-02T10:00:00Z", "last_seen": "2026-11-02T10:00:00Z",
             "last_user_group_id": null}]}]});
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("CLIENT        LEGACY ENDPOINT    REPLACEMENT"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("64cc961af68c  update_user_group  update_customer  12"),
            "{table}"
        );
        assert!(lines[1].ends_with("2 (brownout/sunset)"), "{table}");
        assert!(lines[2].ends_with("-                   -"), "{table}");
    }

    #[test]
    fn an_empty_report_says_so() {
        assert!(render_table(&json!({"clients": []})).starts_with("No legacy"));
    }
}
