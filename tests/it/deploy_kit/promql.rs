//! `deploy/prometheus` and `deploy/grafana`: every PromQL expression parses, and every metric
//! it names is one the real binary exposes (or one the rules record), with label values it
//! really uses.

use std::collections::{BTreeMap, BTreeSet};

use super::yaml_file;
use crate::deployment::items;
use crate::deployment::repo_file;
use crate::support::*;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use serde_json::{Value, json};

const RULES: &str = "deploy/prometheus/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/grafana/explo-shim.json";
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// What an expression selects: each selector's metric name and its equality matchers.
#[derive(Debug, Default)]
struct Selected {
    /// metric name -> (label, value) pairs it is matched on with `=`.
    metrics: BTreeMap<String, BTreeSet<(String, String)>>,
}

impl Selected {
    fn of(expr: &str) -> Self {
        let ast = parser::parse(expr).unwrap_or_else(|error| panic!("{expr}: {error}"));
        let mut selected = Selected::default();
        selected.walk(&ast);
        assert!(!selected.metrics.is_empty(), "{expr} selects no metric");
        selected
    }

    fn walk(&mut self, expr: &Expr) {
        match expr {
            Expr::Aggregate(aggregate) => {
                self.walk(&aggregate.expr);
                if let Some(param) = &aggregate.param {
                    self.walk(param);
                }
            }
            Expr::Unary(unary) => self.walk(&unary.expr),
            Expr::Binary(binary) => {
                self.walk(&binary.lhs);
                self.walk(&binary.rhs);
            }
            Expr::Paren(paren) => self.walk(&paren.expr),
            Expr::Subquery(subquery) => self.walk(&subquery.expr),
            Expr::Call(call) => call.args.args.iter().for_each(|arg| self.walk(arg)),
            Expr::VectorSelector(selector) => self.select(
                selector.name.as_deref(),
                &selector.matchers.matchers,
                &selector.matchers.or_matchers,
            ),
            Expr::MatrixSelector(matrix) => self.select(
                matrix.vs.name.as_deref(),
                &matrix.vs.matchers.matchers,
                &matrix.vs.matchers.or_matchers,
            ),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => panic!("the parser made an extension node"),
        }
    }

    /// A selector's metric: its name, or its `__name__` matcher (`{__name__="..."}`).
    fn select(&mut self, name: Option<&str>, matchers: &[Matcher], or_matchers: &[Vec<Matcher>]) {
        let all: Vec<&Matcher> = matchers
            .iter()
            .chain(or_matchers.iter().flatten())
            .collect();
        let by_name = all
            .iter()
            .find(|matcher| matcher.name == "__name__" && matches!(matcher.op, MatchOp::Equal));
        let metric = name
            .map(str::to_owned)
            .or_else(|| by_name.map(|matcher| matcher.value.clone()))
            .expect("every selector names its metric");
        let labels = self.metrics.entry(metric).or_default();
        for matcher in all {
            if matcher.name != "__name__" && matches!(matcher.op, MatchOp::Equal) {
                labels.insert((matcher.name.clone(), matcher.value.clone()));
            }
        }
    }
}

/// The rules file's rules, recordings and alerts alike.
fn rules() -> Vec<yaml_rust2::Yaml> {
    let documents = yaml_file(RULES);
    assert_eq!(documents.len(), 1);
    let rule = &documents[0];
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    items(&rule["spec"], "groups")
        .iter()
        .flat_map(|group| items(group, "rules").to_vec())
        .collect()
}

fn recorded_names() -> BTreeSet<String> {
    rules()
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_owned))
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&repo_file(DASHBOARD)).expect("the dashboard is JSON")
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("a PromQL target").to_owned())
        .collect()
}

/// Every expression of the kit, with where it comes from.
fn all_exprs() -> Vec<(String, String)> {
    let mut exprs: Vec<(String, String)> = rules()
        .iter()
        .map(|rule| {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            (
                name.to_owned(),
                rule["expr"].as_str().expect("an expr").to_owned(),
            )
        })
        .collect();
    exprs.extend(
        dashboard_exprs(&dashboard())
            .into_iter()
            .map(|expr| (DASHBOARD.to_owned(), expr)),
    );
    exprs
}

/// `/metrics` of a shim that has every family a setting can bring (a sunset date, tracing to
/// an OTLP endpoint) and has served a translated call and a passed-through request, so the
/// labelled families have series. Its families (as `# TYPE` names them) and, for each sample
/// name, the label pairs its series carry.
struct Exposition {
    families: BTreeSet<String>,
    samples: BTreeMap<String, BTreeSet<(String, String)>>,
}

async fn exposition() -> Exposition {
    let upstream = team_only_upstream().await;
    let collector = FakeUpstream::always(Reply::json(200, json!({}))).await;
    let endpoint = collector.url();
    // The sunset has no flag: a config file of its own.
    let config = TempConfig::new("[deprecation]\nsunset = \"2099-01-01\"\n");
    let shim = Shim::start_with_env(
        &upstream.url(),
        &["--config", config.path(), "--access-log"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let translated = post_json(
        &shim.url("/api/update_user_group/"),
        &json!({"user_group_id": "g1"}),
    )
    .await;
    assert_eq!(translated.status, 200);
    let passed = send(
        "GET",
        &shim.url("/api/dashboard/"),
        &[(TOKEN_HEADER, TEAM_TOKEN)],
        "",
    )
    .await;
    assert_eq!(passed.status, 200);
    let got = send("GET", &shim.admin_url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    let mut families = BTreeSet::new();
    let mut samples: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            families.insert(declared.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap();
            let labels = samples.entry(line[..end].to_owned()).or_default();
            if let Some(set) = line[end..]
                .strip_prefix('{')
                .and_then(|rest| rest.split_once('}'))
            {
                for pair in set.0.split(',').filter(|pair| !pair.is_empty()) {
                    let (label, value) = pair.split_once('=').unwrap();
                    labels.insert((label.to_owned(), value.trim_matches('"').to_owned()));
                }
            }
        }
    }
    Exposition { families, samples }
}

impl Exposition {
    /// Whether `metric` is exposed: as a sample, or as a family whose samples carry a suffix
    /// (`_total`, `_bucket`, `_count`, `_sum`) the exposition adds.
    fn has(&self, metric: &str) -> bool {
        self.samples.contains_key(metric)
            || ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| {
                    metric
                        .strip_suffix(suffix)
                        .is_some_and(|family| self.families.contains(family))
                })
    }
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_on_metrics() {
    let exposition = exposition().await;
    let recorded = recorded_names();
    let mut missing = Vec::new();
    for (source, expr) in all_exprs() {
        for (metric, matched) in Selected::of(&expr).metrics {
            if recorded.contains(&metric) {
                continue;
            }
            if !exposition.has(&metric) {
                missing.push(format!("{source}: {metric}"));
                continue;
            }
            // A label value the shim never uses would make the expression match nothing.
            let Some(series) = exposition.samples.get(&metric) else {
                continue;
            };
            for (label, value) in matched {
                assert!(
                    series.iter().any(|(l, v)| *l == label && *v == value),
                    "{source}: {metric}{{{label}=\"{value}\"}} is not a series the shim has"
                );
            }
        }
    }
    assert!(missing.is_empty(), "not on /metrics: {missing:#?}");
}

#[test]
fn every_alert_has_for_severity_summary_and_description() {
    let mut alerts = BTreeSet::new();
    for rule in rules() {
        let Some(name) = rule["alert"].as_str() else {
            let record = rule["record"]
                .as_str()
                .expect("a rule is an alert or a record");
            assert!(
                record.contains(':'),
                "{record}: recorded names have a colon"
            );
            continue;
        };
        assert!(alerts.insert(name.to_owned()), "{name} twice");
        let duration = rule["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: for"));
        humantime::parse_duration(duration).unwrap_or_else(|error| panic!("{name}: for: {error}"));
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            severity.is_some_and(|severity| SEVERITIES.contains(&severity)),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|text| !text.trim().is_empty()),
                "{name}: {annotation}"
            );
        }
    }
    assert!(alerts.len() >= 5, "{alerts:?}");
}

/// The alerts the brief of the kit asks for, by what they select.
#[test]
fn the_alerts_cover_the_failures_an_operator_must_hear_of() {
    let mut selected: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for rule in rules()
        .iter()
        .filter(|rule| rule["alert"].as_str().is_some())
    {
        for (metric, labels) in Selected::of(rule["expr"].as_str().unwrap()).metrics {
            selected.entry(metric).or_default().extend(labels);
        }
    }
    let pair = |label: &str, value: &str| (label.to_owned(), value.to_owned());
    let covers = |metric: &str, label: Option<(String, String)>| {
        selected
            .get(metric)
            .is_some_and(|labels| label.is_none_or(|label| labels.contains(&label)))
    };
    for (what, metric, label) in [
        (
            "legacy calls after the sunset",
            "explo_shim_legacy_calls_total",
            None,
        ),
        (
            "the configured sunset",
            "explo_shim_sunset_timestamp_seconds",
            None,
        ),
        (
            "legacy calls refused at the sunset",
            "explo_shim_legacy_refused_total",
            Some(pair("reason", "sunset")),
        ),
        (
            "a refused config still in place",
            "explo_shim_config_last_reload_successful",
            None,
        ),
        (
            "connections near the cap",
            "explo_shim_connections_open",
            None,
        ),
        ("the cap itself", "explo_shim_connection_limit", None),
        ("upstream errors", "explo_shim_upstream_errors_total", None),
        ("upstream 429s", "explo_shim_upstream_throttled_total", None),
        (
            "the budget's refusals",
            "explo_shim_rate_limit_refused_total",
            None,
        ),
        (
            "dropped log lines",
            "explo_shim_log_lines_dropped_total",
            None,
        ),
        (
            "dropped spans",
            "explo_shim_trace_spans_dropped_total",
            None,
        ),
    ] {
        assert!(covers(metric, label), "no alert on {what} ({metric})");
    }
}

#[test]
fn the_dashboard_takes_its_datasource_from_a_variable() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"]
            .as_i64()
            .is_some_and(|version| version >= 39),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|variable| variable["name"] == "datasource"
                && variable["type"] == "datasource"
                && variable["query"] == "prometheus"),
        "a Prometheus datasource variable named datasource"
    );
    // Every datasource reference anywhere is the variable: no UID of someone's Grafana.
    fn references(node: &Value, found: &mut Vec<Value>) {
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "datasource" {
                        found.push(value.clone());
                    } else {
                        references(value, found);
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|value| references(value, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&dashboard["panels"], &mut found);
    assert!(!found.is_empty());
    for reference in found {
        assert_eq!(
            reference,
            json!({"type": "prometheus", "uid": "${datasource}"}),
            "a hard-coded datasource"
        );
    }
}

#[test]
fn the_dashboard_has_the_panels_an_operator_looks_for() {
    let exprs = dashboard_exprs(&dashboard());
    let compact: Vec<String> = exprs.iter().map(|expr| expr.replace(' ', "")).collect();
    for quantile in ["0.5", "0.9", "0.99"] {
        let wanted = format!(
            "histogram_quantile({quantile},sumby(namespace,endpoint,le)(rate(explo_shim_request_duration_seconds_bucket{{namespace=~\"$namespace\",job=~\"$job\"}}[5m])))"
        );
        assert!(compact.contains(&wanted), "the p{quantile} latency");
    }
    let selects = |metric: &str, by: &str| {
        exprs.iter().zip(&compact).any(|(expr, compact)| {
            Selected::of(expr).metrics.contains_key(metric) && compact.contains(by)
        })
    };
    for (what, metric, by) in [
        (
            "legacy calls by endpoint",
            "explo_shim_legacy_calls_total",
            "by(endpoint",
        ),
        (
            "legacy calls by client",
            "explo_shim_legacy_calls_total",
            "by(client",
        ),
        (
            "pass-through rate",
            "explo_shim_pass_through_requests_total",
            "rate(",
        ),
        ("refusals", "explo_shim_legacy_refused_total", "by(reason"),
        (
            "the budget's refusals",
            "explo_shim_rate_limit_refused_total",
            "rate(",
        ),
        ("connections", "explo_shim_connections_open", ""),
        ("memory", "process_resident_memory_bytes", ""),
    ] {
        assert!(selects(metric, by), "no panel of {what}");
    }
}

/// The alert on sunset calls fires on legacy calls once the configured sunset has passed,
/// whatever `after_sunset` does with them (the default serves them, and refuses none); the
/// reload alert holds while a refused config stays in place, not only while failures are new.
#[test]
fn the_sunset_and_reload_alerts_hold_while_their_condition_does() {
    let alerts = rules();
    let alert = |name: &str| {
        alerts
            .iter()
            .find(|rule| rule["alert"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    let sunset = alert("ExploShimLegacyCallsAfterSunset");
    let expr = sunset["expr"].as_str().unwrap();
    let selected = Selected::of(expr).metrics;
    assert!(
        selected.contains_key("explo_shim_legacy_calls_total")
            && selected.contains_key("explo_shim_sunset_timestamp_seconds")
            && !selected.contains_key("explo_shim_legacy_refused_total"),
        "{expr}: legacy calls against the sunset's time, not refusals"
    );
    assert!(
        expr.contains("time() >"),
        "{expr}: compares now with the sunset"
    );
    let reload = alert("ExploShimConfigReloadFailed");
    let expr = reload["expr"].as_str().unwrap().replace(' ', "");
    assert_eq!(expr, "explo_shim_config_last_reload_successful==0");
    let held = humantime::parse_duration(reload["for"].as_str().unwrap()).unwrap();
    assert!(
        held >= std::time::Duration::from_secs(60),
        "the reload alert waits a few minutes: a reload follows a file's edit within seconds"
    );
}

/// Every aggregation of an alert keeps the labels that tell deployments apart.
#[test]
fn aggregating_rules_keep_namespace_and_job() {
    for rule in rules() {
        let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
        let expr = rule["expr"].as_str().unwrap().replace(' ', "");
        for (at, _) in expr.match_indices("by(") {
            let grouping = &expr[at + 3..];
            let grouping = &grouping[..grouping.find(')').unwrap()];
            let labels: Vec<&str> = grouping.split(',').collect();
            assert!(labels.contains(&"namespace"), "{name}: by ({grouping})");
            if rule["alert"].as_str().is_some() {
                assert!(labels.contains(&"job"), "{name}: by ({grouping})");
            }
        }
    }
}

/// The dashboard's namespace and job variables narrow every panel's every selector.
#[test]
fn every_dashboard_query_is_narrowed_by_namespace_and_job() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    for name in ["namespace", "job"] {
        let variable = variables
            .iter()
            .find(|variable| variable["name"] == name)
            .unwrap_or_else(|| panic!("a {name} variable"));
        assert_eq!(variable["type"], "query", "{name}");
        assert_eq!(variable["includeAll"], true, "{name}");
        assert_eq!(
            variable["datasource"],
            json!({"type": "prometheus", "uid": "${datasource}"}),
            "{name}"
        );
    }
    for expr in dashboard_exprs(&dashboard) {
        let ast = parser::parse(&expr).unwrap_or_else(|error| panic!("{expr}: {error}"));
        let mut selectors = Vec::new();
        collect_selectors(&ast, &mut selectors);
        assert!(!selectors.is_empty(), "{expr}");
        for matchers in selectors {
            for (label, value) in [("namespace", "$namespace"), ("job", "$job")] {
                assert!(
                    matchers.iter().any(|matcher| matcher.name == label
                        && matches!(matcher.op, MatchOp::Re(_))
                        && matcher.value == value),
                    "{expr}: a selector without {label}=~\"{value}\""
                );
            }
        }
    }
}

/// The label matchers of every selector of `expr`.
fn collect_selectors(expr: &Expr, found: &mut Vec<Vec<Matcher>>) {
    match expr {
        Expr::Aggregate(aggregate) => collect_selectors(&aggregate.expr, found),
        Expr::Unary(unary) => collect_selectors(&unary.expr, found),
        Expr::Binary(binary) => {
            collect_selectors(&binary.lhs, found);
            collect_selectors(&binary.rhs, found);
        }
        Expr::Paren(paren) => collect_selectors(&paren.expr, found),
        Expr::Subquery(subquery) => collect_selectors(&subquery.expr, found),
        Expr::Call(call) => call
            .args
            .args
            .iter()
            .for_each(|arg| collect_selectors(arg, found)),
        Expr::VectorSelector(selector) => found.push(selector.matchers.matchers.clone()),
        Expr::MatrixSelector(matrix) => found.push(matrix.vs.matchers.matchers.clone()),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}
