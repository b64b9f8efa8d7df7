//! `deploy/grafana/needle.json` and `deploy/prometheus/alerts.yml` cannot rot: both
//! parse, the rules have the shape Prometheus requires, and every metric they name is
//! one that live nodes (a three-member Raft cluster that has taken writes, searches
//! and an error) export on `/metrics`.

use crate::raft_cluster::RaftCluster;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `expr` and templating `query` string in the dashboard.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(e)) => out.push(e.clone()),
                    ("query", Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression uses: identifiers that start with
/// `needle_`, and Prometheus's own `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            // A label name inside braces is followed by `=`, `!=` or `=~`: not a metric.
            let next = expr[i..].trim_start();
            let label = next.starts_with('=') || next.starts_with("!=");
            if !label && (word.starts_with("needle_") || word == "up") {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names a `/metrics` exposition has (histograms as `_bucket`, `_sum`,
/// `_count`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn alert_rules() -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&repo_file("deploy/prometheus/alerts.yml"))
        .expect("alerts.yml is YAML");
    assert_eq!(docs.len(), 1, "one document");
    let groups = docs[0]["groups"].as_vec().expect("groups: a list");
    assert!(!groups.is_empty());
    let mut rules = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some(), "every group is named");
        let group_rules = group["rules"].as_vec().expect("rules: a list");
        assert!(!group_rules.is_empty());
        rules.extend(group_rules.iter().cloned());
    }
    rules
}

/// What Prometheus checks of an alerting rule: a name, an expression, a duration
/// where given, string labels and annotations; plus this project's own rule that
/// every alert has a severity and a summary.
fn check_rule_shape(rule: &Yaml) {
    let name = rule["alert"].as_str().expect("alert: a name");
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{name}: an alert name is a metric-name-like identifier"
    );
    let hash = rule.as_hash().expect("a rule is a mapping");
    for key in hash.keys() {
        let key = key.as_str().expect("keys are strings");
        assert!(
            [
                "alert",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations"
            ]
            .contains(&key),
            "{name}: unknown rule field {key}"
        );
    }
    assert!(
        rule["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
        "{name}: expr"
    );
    if let Some(duration) = rule["for"].as_str() {
        let (number, unit) = duration.split_at(duration.len() - 1);
        assert!(
            number.parse::<u32>().is_ok() && ["s", "m", "h", "d"].contains(&unit),
            "{name}: for: {duration} is not a Prometheus duration"
        );
    }
    let severity = rule["labels"]["severity"].as_str();
    assert!(
        matches!(severity, Some("critical" | "warning" | "info")),
        "{name}: labels.severity"
    );
    for section in ["labels", "annotations"] {
        for (k, v) in rule[section].as_hash().expect("a mapping") {
            assert!(
                k.as_str().is_some() && v.as_str().is_some(),
                "{name}: {section} are strings"
            );
        }
    }
    assert!(
        rule["annotations"]["summary"].as_str().is_some(),
        "{name}: annotations.summary"
    );
}

#[test]
fn the_dashboard_and_alert_rules_name_only_metrics_nodes_export() {
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/needle.json")).expect("dashboard JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard["panels"], &mut queries);
    dashboard_queries(&dashboard["templating"], &mut queries);
    assert!(queries.len() >= 15, "the dashboard has its panels' queries");
    let rules = alert_rules();
    rules.iter().for_each(check_rule_shape);
    let mut used = BTreeSet::new();
    for q in &queries {
        used.extend(metric_names(q));
    }
    for rule in &rules {
        used.extend(metric_names(rule["expr"].as_str().unwrap_or_default()));
    }
    for family in [
        "needle_http_request_duration_seconds_bucket",
        "needle_replication_lag_seconds",
        "needle_raft_term",
        "needle_raft_leader",
        "needle_raft_commit_index",
        "needle_search_batch_size_bucket",
        "needle_write_commit_seconds_bucket",
        "needle_gpu_memory_used_bytes",
        "needle_http_errors_total",
    ] {
        assert!(
            used.contains(family),
            "the dashboard or rules show {family}"
        );
    }

    // Live nodes: a Raft cluster that has written, searched and refused a request.
    let dir = tempfile::tempdir().unwrap();
    let cluster = RaftCluster::start(dir.path(), 3, &[]);
    let leader = cluster.leader();
    let c = cluster.client(leader);
    let (status, _) = c.post(
        "/collections",
        &json!({"name": "dash", "dimensions": 2, "distance": "dot"}),
    );
    assert_eq!(status, 201);
    let (status, _) = c.post(
        "/collections/dash/vectors/batch",
        &json!({"vectors": [{"id": "a", "vector": [1.0, 0.0]}, {"id": "b", "vector": [0.0, 1.0]}]}),
    );
    assert_eq!(status, 200);
    let (status, _) = c.post(
        "/collections/dash/search",
        &json!({"vector": [1.0, 0.0], "k": 1}),
    );
    assert_eq!(status, 200);
    let (status, _) = c.get("/collections/missing");
    assert_eq!(status, 404);
    let mut live = BTreeSet::new();
    for i in 0..3 {
        let (status, text) = cluster.client(i).get_text("/metrics");
        assert_eq!(status, 200);
        live.extend(exported(&text));
    }
    assert!(
        live.contains("needle_http_errors_total"),
        "the refused request is counted"
    );
    // GPU gauges exist only where NVML is: without it, they must at least be the
    // names the node registers with NVML present.
    let gpu_source = repo_file("node/gpu_metrics.rs");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| *name != "up" && !live.contains(*name))
        .filter(|name| {
            !(name.starts_with("needle_gpu_") && gpu_source.contains(&format!("\"{name}\"")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "names no live node exports: {missing:?} (exported: {live:?})"
    );
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(needle_http_request_duration_seconds_bucket{instance=~"$instance"}[5m]))) / up{job="needle"}"#,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["needle_http_request_duration_seconds_bucket", "up"]);
}
