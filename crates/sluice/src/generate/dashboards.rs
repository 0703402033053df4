//! Grafana dashboards (JSON model, schema 39) over sluice's `/metrics`:
//! the rollout overview (canary against stable), component performance,
//! circuit breakers, rollout progress and flag usage. Every panel queries a
//! Prometheus data source chosen by the `datasource` variable; the
//! `service` variable filters by service.

use serde_json::{json, Value};

/// One query of a panel: PromQL and its legend.
struct Query(&'static str, &'static str);

/// Builds panels on a 24-column grid, two per row.
struct Grid {
    panels: Vec<Value>,
}

impl Grid {
    fn new() -> Grid {
        Grid { panels: Vec::new() }
    }

    fn add(&mut self, kind: &str, title: &str, unit: &str, queries: &[Query]) -> &mut Grid {
        let index = self.panels.len();
        let id = index + 1;
        let targets: Vec<Value> = queries
            .iter()
            .zip('A'..)
            .map(|(q, ref_id)| {
                json!({
                    "refId": ref_id.to_string(),
                    "datasource": { "type": "prometheus", "uid": "${datasource}" },
                    "expr": q.0,
                    "legendFormat": q.1,
                })
            })
            .collect();
        let mut options = json!({
            "legend": { "displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"] },
            "tooltip": { "mode": "multi", "sort": "desc" },
        });
        if kind == "stat" {
            options = json!({ "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false }, "colorMode": "value", "graphMode": "none" });
        }
        self.panels.push(json!({
            "id": id,
            "type": kind,
            "title": title,
            "datasource": { "type": "prometheus", "uid": "${datasource}" },
            "gridPos": { "x": (index % 2) * 12, "y": (index / 2) * 8, "w": 12, "h": 8 },
            "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
            "options": options,
            "targets": targets,
        }));
        self
    }

    fn dashboard(&self, uid: &str, title: &str, service_metric: &str) -> Value {
        json!({
            "uid": uid,
            "title": title,
            "tags": ["sluice"],
            "timezone": "browser",
            "editable": true,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "10s",
            "time": { "from": "now-1h", "to": "now" },
            "templating": { "list": [
                { "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus" },
                {
                    "name": "service",
                    "label": "Service",
                    "type": "query",
                    "datasource": { "type": "prometheus", "uid": "${datasource}" },
                    "definition": format!("label_values({service_metric}, service)"),
                    "query": { "query": format!("label_values({service_metric}, service)"), "refId": "service" },
                    "refresh": 2,
                    "includeAll": true,
                    "multi": true,
                    "current": { "text": "All", "value": "$__all" },
                },
            ]},
            "panels": self.panels,
        })
    }
}

/// Every dashboard, with its file name (without `.json`).
pub fn dashboards() -> Vec<(&'static str, Value)> {
    vec![
        ("sluice-overview", overview()),
        ("sluice-performance", performance()),
        ("sluice-breakers", breakers()),
        ("sluice-rollouts", rollouts()),
        ("sluice-flags", flags()),
    ]
}

const BY_VERSION: &str = "{{service}} {{version}}";

fn overview() -> Value {
    let mut grid = Grid::new();
    grid.add("timeseries", "Request rate by version", "reqps", &[Query(
        "sum by (service, version) (rate(sluice_requests_total{service=~\"$service\"}[$__rate_interval]))",
        BY_VERSION,
    )])
    .add("timeseries", "Error rate by version", "percentunit", &[Query(
        "sum by (service, version) (rate(sluice_request_errors_total{service=~\"$service\"}[$__rate_interval]))\n/\nsum by (service, version) (rate(sluice_requests_total{service=~\"$service\"}[$__rate_interval]))",
        BY_VERSION,
    )])
    .add("timeseries", "Latency p50 / p95 / p99: canary against stable", "s", &[
        Query("histogram_quantile(0.50, sum by (service, version, le) (rate(sluice_request_duration_seconds_bucket{service=~\"$service\"}[$__rate_interval])))", "p50 {{service}} {{version}}"),
        Query("histogram_quantile(0.95, sum by (service, version, le) (rate(sluice_request_duration_seconds_bucket{service=~\"$service\"}[$__rate_interval])))", "p95 {{service}} {{version}}"),
        Query("histogram_quantile(0.99, sum by (service, version, le) (rate(sluice_request_duration_seconds_bucket{service=~\"$service\"}[$__rate_interval])))", "p99 {{service}} {{version}}"),
    ])
    .add("timeseries", "Canary weight", "percentunit", &[Query(
        "sluice_canary_weight_ratio{service=~\"$service\"}",
        "{{service}}",
    )]);
    grid.dashboard(
        "sluice-overview",
        "sluice / Overview",
        "sluice_requests_total",
    )
}

fn performance() -> Value {
    let mut grid = Grid::new();
    grid.add("timeseries", "Mean latency by version", "s", &[Query(
        "sum by (service, version) (rate(sluice_request_duration_seconds_sum{service=~\"$service\"}[$__rate_interval]))\n/\nsum by (service, version) (rate(sluice_request_duration_seconds_count{service=~\"$service\"}[$__rate_interval]))",
        BY_VERSION,
    )])
    .add("timeseries", "p95 latency by version", "s", &[Query(
        "histogram_quantile(0.95, sum by (service, version, le) (rate(sluice_request_duration_seconds_bucket{service=~\"$service\"}[$__rate_interval])))",
        BY_VERSION,
    )])
    .add("timeseries", "Errors by kind", "reqps", &[Query(
        "sum by (service, version, kind) (rate(sluice_request_errors_total{service=~\"$service\"}[$__rate_interval]))",
        "{{service}} {{version}} {{kind}}",
    )])
    .add("timeseries", "Requests in flight", "short", &[Query(
        "sum by (service, version) (sluice_requests_in_flight{service=~\"$service\"})",
        BY_VERSION,
    )])
    .add("timeseries", "Load shed (max_requests, max_connections)", "reqps", &[Query(
        "sum by (service, version, limit) (rate(sluice_upstream_overflow_total{service=~\"$service\"}[$__rate_interval]))",
        "{{service}} {{version}} {{limit}}",
    )])
    .add("timeseries", "Requests waiting for a connection", "short", &[Query(
        "sum by (service, version) (sluice_upstream_pending{service=~\"$service\"})",
        BY_VERSION,
    )]);
    grid.dashboard(
        "sluice-performance",
        "sluice / Component performance",
        "sluice_requests_total",
    )
}

fn breakers() -> Value {
    let mut grid = Grid::new();
    grid.add("timeseries", "Breaker state (0 closed, 1 half-open, 2 open)", "short", &[Query(
        "max by (breaker) (sluice_circuit_breaker_state{service=~\"$service\"})",
        "{{breaker}}",
    )])
    .add("stat", "Open breakers", "short", &[Query(
        "sum(sluice_circuit_breaker_open{service=~\"$service\"}) or vector(0)",
        "open",
    )])
    .add("timeseries", "Transitions", "short", &[Query(
        "sum by (breaker, from, to) (increase(sluice_circuit_breaker_state_transitions_total{service=~\"$service\"}[$__rate_interval]))",
        "{{breaker}} {{from}} → {{to}}",
    )])
    .add("timeseries", "Calls by outcome", "reqps", &[Query(
        "sum by (service, event) (rate(sluice_circuit_breaker_events_total{service=~\"$service\"}[$__rate_interval]))",
        "{{service}} {{event}}",
    )])
    .add("timeseries", "Failure rate over each breaker's window", "percentunit", &[Query(
        "max by (breaker) (sluice_circuit_breaker_failure_rate{service=~\"$service\"})",
        "{{breaker}}",
    )])
    .add("stat", "Breakers switched on", "short", &[Query(
        "max(sluice_circuit_breakers_enabled)",
        "enabled",
    )]);
    grid.dashboard(
        "sluice-breakers",
        "sluice / Circuit breakers",
        "sluice_circuit_breaker_state",
    )
}

fn rollouts() -> Value {
    let mut grid = Grid::new();
    grid.add(
        "timeseries",
        "Canary weight",
        "percentunit",
        &[Query(
            "sluice_canary_weight_ratio{service=~\"$service\"}",
            "{{service}}",
        )],
    )
    .add(
        "timeseries",
        "Phase",
        "short",
        &[Query(
            "max by (service, phase) (sluice_rollout_phase{service=~\"$service\"}) == 1",
            "{{service}} {{phase}}",
        )],
    )
    .add(
        "timeseries",
        "Steps taken and failed runs",
        "short",
        &[
            Query(
                "sluice_rollout_steps_taken{service=~\"$service\"}",
                "{{service}} steps taken",
            ),
            Query(
                "sluice_rollout_failed_runs{service=~\"$service\"}",
                "{{service}} failed runs",
            ),
        ],
    )
    .add(
        "timeseries",
        "Analysis runs by verdict",
        "short",
        &[Query(
            "sum by (verdict) (increase(sluice_analysis_runs_total[$__rate_interval]))",
            "{{verdict}}",
        )],
    )
    .add(
        "timeseries",
        "Check values against their bounds",
        "short",
        &[
            Query(
                "sluice_check_value{service=~\"$service\"}",
                "{{service}} {{check}} {{version}}",
            ),
            Query(
                "sluice_check_bound{service=~\"$service\"}",
                "{{service}} {{check}} bound",
            ),
        ],
    )
    .add(
        "timeseries",
        "Decisions",
        "short",
        &[Query(
            "increase(sluice_rollout_decisions_total[$__rate_interval])",
            "decisions",
        )],
    )
    .add("timeseries", "Shadow: mismatching pairs", "percentunit", &[Query(
        "sum by (service) (rate(sluice_mirror_requests_total{service=~\"$service\",result=\"mismatch\"}[$__rate_interval]))\n/\nsum by (service) (rate(sluice_mirror_requests_total{service=~\"$service\"}[$__rate_interval]))",
        "{{service}}",
    )])
    .add("timeseries", "Shadow: mismatches by reason, mirrors dropped", "reqps", &[
        Query("sum by (service, reason) (rate(sluice_mirror_mismatches_total{service=~\"$service\"}[$__rate_interval]))", "{{service}} mismatch {{reason}}"),
        Query("sum by (service, reason) (rate(sluice_mirror_dropped_total{service=~\"$service\"}[$__rate_interval]))", "{{service}} dropped {{reason}}"),
    ]);
    grid.dashboard(
        "sluice-rollouts",
        "sluice / Rollout progress",
        "sluice_rollout_phase",
    )
}

fn flags() -> Value {
    let mut grid = Grid::new();
    grid.add("timeseries", "Evaluations by flag and variant", "reqps", &[Query(
        "sum by (flag, variant) (rate(sluice_flag_evaluations_total[$__rate_interval]))",
        "{{flag}} {{variant}}",
    )])
    .add("timeseries", "Evaluations by reason", "reqps", &[Query(
        "sum by (reason) (rate(sluice_flag_evaluations_total[$__rate_interval]))",
        "{{reason}}",
    )])
    .add("timeseries", "Share of each variant", "percentunit", &[Query(
        "sum by (flag, variant) (rate(sluice_flag_evaluations_total[$__rate_interval]))\n/ on (flag) group_left\nsum by (flag) (rate(sluice_flag_evaluations_total[$__rate_interval]))",
        "{{flag}} {{variant}}",
    )])
    .add("timeseries", "Flag file reloads", "short", &[Query(
        "sum by (result) (increase(sluice_flag_file_reloads_total[$__rate_interval]))",
        "{{result}}",
    )]);
    grid.dashboard(
        "sluice-flags",
        "sluice / Flags usage",
        "sluice_requests_total",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dashboard_has_unique_panels_with_queries() {
        let all = dashboards();
        assert_eq!(all.len(), 5);
        for (name, dashboard) in &all {
            assert_eq!(dashboard["uid"], *name);
            let panels = dashboard["panels"].as_array().unwrap();
            assert!(panels.len() >= 4, "{name}");
            let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
            ids.dedup();
            assert_eq!(ids.len(), panels.len(), "{name}: ids are unique");
            for panel in panels {
                for target in panel["targets"].as_array().unwrap() {
                    let expr = target["expr"].as_str().unwrap();
                    assert!(expr.contains("sluice_"), "{name}: {expr}");
                }
            }
        }
    }
}
