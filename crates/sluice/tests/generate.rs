//! `sluice generate alerts|dashboards` checked by Prometheus's own tool:
//! the rules pass `promtool check rules` and fire (in `promtool test
//! rules`) on the series they describe; every dashboard is JSON whose
//! queries Prometheus parses; and every metric the two name is one a
//! running sluice exposes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn sluice(args: &[&str], dir: &Path) -> String {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's `prometheus` package; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unit tests for the rules: input series over 20 minutes, the alerts expected.
const RULE_TESTS: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'sluice_requests_total{service="web",version="canary"}'
        values: '0+100x20'
      - series: 'sluice_request_errors_total{service="web",version="canary",kind="status_5xx"}'
        values: '0+10x20'
      - series: 'sluice_requests_total{service="web",version="stable"}'
        values: '0+1000x20'
      - series: 'sluice_request_errors_total{service="web",version="stable",kind="status_5xx"}'
        values: '0+10x20'
      - series: 'sluice_requests_total{service="api",version="stable"}'
        values: '0+1000x20'
      - series: 'sluice_request_errors_total{service="api",version="stable",kind="status_5xx"}'
        values: '0+0x20'
    alert_rule_test:
      - eval_time: 12m
        alertname: SluiceCanaryErrorRateAboveStable
        exp_alerts:
          - exp_labels: { severity: warning, service: web }
            exp_annotations:
              summary: Canary of web errs more than stable
              description: "The canary's error rate of web has been more than 10% above stable's for 5 minutes (value: 10%)."
      - eval_time: 12m
        alertname: SluiceHighFailureRate
        exp_alerts:
          - exp_labels: { severity: critical, service: web, version: canary }
            exp_annotations:
              summary: High failure rate on web/canary
              description: "More than 5% of the requests to web/canary have failed for 5 minutes (5xx, connect errors, timeouts)."
  - interval: 1m
    input_series:
      - series: 'sluice_circuit_breaker_state{breaker="db/stable",service="db",version="stable",policy="default"}'
        values: '0 0 2x20'
      - series: 'sluice_circuit_breaker_open{breaker="db/stable",service="db",version="stable",policy="default"}'
        values: '0 0 1x20'
      - series: 'sluice_circuit_breaker_open{breaker="cache/stable",service="cache",version="stable",policy="default"}'
        values: '0 0 0 0 1x20'
      - series: 'sluice_circuit_breaker_state_transitions_total{breaker="db/stable",service="db",version="stable",policy="default",from="closed",to="open"}'
        values: '0 0 1x20'
    alert_rule_test:
      - eval_time: 3m
        alertname: SluiceBreakerOpened
        exp_alerts:
          - exp_labels: { severity: warning, breaker: db/stable, service: db, version: stable, policy: default, from: closed, to: open }
            exp_annotations:
              summary: Breaker db/stable opened
              description: "The circuit breaker db/stable (db/stable) opened in the last 5 minutes: calls to that upstream are being rejected or served a fallback."
      - eval_time: 10m
        alertname: SluiceBreakerStuckOpen
        exp_alerts: []
      - eval_time: 13m
        alertname: SluiceBreakerStuckOpen
        exp_alerts:
          - exp_labels: { severity: critical, breaker: db/stable, service: db, version: stable, policy: default }
            exp_annotations:
              summary: Breaker db/stable stuck open
              description: "The circuit breaker db/stable has been open for more than 10m: the upstream is not recovering."
      - eval_time: 4m
        alertname: SluiceBreakersOpenOnSeveralServices
        exp_alerts: []
      - eval_time: 6m
        alertname: SluiceBreakersOpenOnSeveralServices
        exp_alerts:
          - exp_labels: { severity: critical }
            exp_annotations:
              summary: Breakers open on several services
              description: "2 services have an open circuit breaker at once (threshold 2): a shared dependency may be down."
  - interval: 1m
    input_series:
      - series: 'sluice_rollout_phase{service="web",phase="RolledBack"}'
        values: '0 0 0 1x30'
      - series: 'sluice_rollout_phase{service="api",phase="Progressing"}'
        values: '1x90'
      - series: 'sluice_rollout_steps_taken{service="api"}'
        values: '0 1 2 3x90'
    alert_rule_test:
      - eval_time: 5m
        alertname: SluiceRolloutRolledBack
        exp_alerts:
          - exp_labels: { severity: warning, service: web, phase: RolledBack }
            exp_annotations:
              summary: Rollout of web ended RolledBack
              description: "The rollout of web was rolled back or failed in the last 15 minutes; `sluice rollout history web` shows the failing check and its numbers."
      - eval_time: 25m
        alertname: SluiceRolloutRolledBack
        exp_alerts: []
      - eval_time: 30m
        alertname: SluiceRolloutStuck
        exp_alerts: []
      - eval_time: 75m
        alertname: SluiceRolloutStuck
        exp_alerts:
          - exp_labels: { severity: warning, service: api, phase: Progressing }
            exp_annotations:
              summary: Rollout of api made no progress
              description: "The rollout of api has been Progressing without taking a step for 1h: too little traffic, inconclusive analysis, or a gate waiting for approval."
"#;

#[test]
fn alert_rules_pass_promtool_and_fire_on_what_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    sluice(&["generate", "alerts", "-o", "rules.yml"], dir.path());
    promtool(&["check", "rules", "rules.yml"], dir.path());
    std::fs::write(dir.path().join("tests.yml"), RULE_TESTS).unwrap();
    promtool(&["test", "rules", "tests.yml"], dir.path());
    // Standard output is the same file.
    let printed = sluice(&["generate", "alerts"], dir.path());
    assert_eq!(
        printed,
        std::fs::read_to_string(dir.path().join("rules.yml")).unwrap()
    );
}

/// Every `sluice_*` metric family named in `text` (histogram series folded).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|_| name.contains("_seconds")))
            .unwrap_or(name);
        names.insert(family.to_string());
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_parse_and_every_metric_they_name_is_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let listed = sluice(&["generate", "dashboards", "-o", "out"], dir.path());
    assert_eq!(listed.lines().count(), 5, "{listed}");
    let mut exprs = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(dashboard["title"]
            .as_str()
            .unwrap()
            .starts_with("sluice / "));
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                exprs.push(target["expr"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(exprs.len() >= 25, "{}", exprs.len());
    // Prometheus parses every query once Grafana's variables are filled in.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$service", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboards", "rules": rules }] });
    std::fs::write(
        dir.path().join("queries.yml"),
        serde_json::to_string(&file).unwrap(),
    )
    .unwrap();
    promtool(&["check", "rules", "queries.yml"], dir.path());

    // A sluice with a rollout, a breaker and a flag in use exposes them all.
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = format!(
        r#"{CONFIG_HEAD}breakers:
  policies:
    default: {{ failure_threshold: 3, error_rate_threshold: null, open_duration: 1m }}
flags:
  definitions:
    flags:
      new-checkout:
        state: ENABLED
        variants: {{ on: true, off: false }}
        defaultVariant: on
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{}"] }}
      canary: {{ endpoints: ["{}"] }}
    breaker:
      policy: default
      limits: {{ max_requests: 1000, max_connections: 100, max_pending: 100 }}
    rollout:
      interval: 300ms
      min_requests: 3
      steps:
        - weight: 50
        - pause: manual
      checks:
        - {{ metric: success_rate, min: 90 }}
  - name: search
    match: {{ path_prefix: /search }}
    versions:
      stable: {{ endpoints: ["{}"] }}
      canary: {{ endpoints: ["{}"] }}
    rollout:
      strategy: shadow
      interval: 1h
"#,
        v1.endpoint(),
        v2.endpoint(),
        v1.endpoint(),
        v2.endpoint()
    );
    let running = Sluice::start(dir.path(), &config);
    let client = client();
    let metrics = eventually(Duration::from_secs(20), "an analysis run", || async {
        for _ in 0..10 {
            get(&client, running.proxy, "/", &[]).await;
            get(&client, running.proxy, "/search", &[]).await;
        }
        let (status, _, _) = post_json(
            &client,
            running.admin,
            "/ofrep/v1/evaluate/flags/new-checkout",
            serde_json::json!({"context": {"targetingKey": "u1"}}),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        let text = try_metrics(&client, running.admin).await?;
        text.contains("sluice_check_value").then_some(text)
    })
    .await;
    let exposed: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let rules = sluice(&["generate", "alerts"], dir.path());
    let named = metric_names(&(exprs.join("\n") + &rules));
    let missing: Vec<&String> = named.difference(&exposed).collect();
    assert!(missing.is_empty(), "named but not exposed: {missing:?}");
}
