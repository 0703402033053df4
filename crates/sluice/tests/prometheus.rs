//! A rollout gated by a PromQL check against a real Prometheus (Debian's
//! `prometheus`, started by the test with a 1 s scrape interval) that
//! scrapes sluice's own `/metrics`: a healthy canary is promoted, a bad one
//! rolled back, and a Prometheus that stops mid-rollout makes runs
//! inconclusive, then failed — never promoted.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::prometheus::PrometheusServer;
use common::*;
use serde_json::Value;

/// The canary's share of failed requests over the last 10 s, from sluice's own counters.
const ERROR_RATIO: &str = r#"(sum(increase(sluice_request_errors_total{service="{{service}}",version="{{version}}"}[10s])) or vector(0)) / sum(increase(sluice_requests_total{service="{{service}}",version="{{version}}"}[10s]))"#;

fn plan(steps: &str) -> String {
    format!(
        "      trigger: manual
      interval: 2s
      threshold: 2
      step_weights: {steps}
      min_requests: 5
      max_inconclusive: 100
"
    )
}

const CHECK: &str = "      checks:
        - name: error_ratio
          query: 'QUERY'
          max: 0.05
          consecutive_error_limit: 3
";

struct Setup {
    sluice: Sluice,
    /// Set when the test ends (on drop): the load stops.
    stop_load: Arc<AtomicBool>,
    prometheus: Option<PrometheusServer>,
    _dir: tempfile::TempDir,
    client: HttpClient,
}

/// sluice first (its admin port is the scrape target), then Prometheus, then a
/// reload that points sluice at Prometheus, then load and the rollout.
async fn setup(v1: &Upstream, v2: &Upstream, steps: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = service_config(&v1.endpoint(), &v2.endpoint(), &plan(steps));
    let sluice = Sluice::start(dir.path(), &config);
    let admin = sluice.admin;
    let prometheus =
        tokio::task::spawn_blocking(move || common::prometheus::start(&[("sluice", admin)]))
            .await
            .unwrap();
    let with_provider = format!(
        "providers:\n  prometheus:\n    address: http://{}\n    timeout: 2s\n{config}{}",
        prometheus.addr,
        CHECK.replace("QUERY", ERROR_RATIO)
    );
    std::fs::write(dir.path().join("sluice.yaml"), with_provider).unwrap();
    sluice.signal("HUP");
    let client = client();
    wait_for_reloads(&client, sluice.admin, "success", 1).await;
    let (status, body) =
        admin_post(&client, sluice.admin, "/api/v1/rollouts/web/start", None).await;
    assert_eq!(status, 202, "{body}");
    let stop_load = Arc::new(AtomicBool::new(false));
    let _load = spawn_load(sluice.proxy, 4, Duration::from_millis(5), stop_load.clone());
    Setup {
        sluice,
        stop_load,
        prometheus: Some(prometheus),
        _dir: dir,
        client,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop_load.store(true, Ordering::Relaxed);
    }
}

async fn final_status(setup: &Setup) -> Value {
    eventually(Duration::from_secs(90), "a final phase", || async {
        let status = admin_json(&setup.client, setup.sluice.admin, "/api/v1/rollouts/web").await;
        matches!(status["phase"].as_str(), Some("Succeeded" | "RolledBack")).then_some(status)
    })
    .await
}

async fn history(setup: &Setup) -> Vec<Value> {
    admin_json(
        &setup.client,
        setup.sluice.admin,
        "/api/v1/rollouts/web/history",
    )
    .await
    .as_array()
    .cloned()
    .unwrap()
}

fn error_ratio_checks(history: &[Value]) -> Vec<Value> {
    history
        .iter()
        .filter_map(|d| d["analysis"]["checks"].as_array())
        .flatten()
        .filter(|c| c["name"] == "error_ratio")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promql_check_promotes_a_healthy_canary() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let setup = setup(&v1, &v2, "[20, 50]").await;
    let status = final_status(&setup).await;
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{status:#}\n{}",
        setup
            .prometheus
            .as_ref()
            .map(|p| p.log())
            .unwrap_or_default()
    );
    let checks = error_ratio_checks(&history(&setup).await);
    let passed: Vec<&Value> = checks.iter().filter(|c| c["verdict"] == "pass").collect();
    assert!(passed.len() >= 2, "{checks:#?}");
    assert!(
        passed.iter().all(|c| c["value"].as_f64() == Some(0.0)),
        "{passed:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promql_check_rolls_back_a_failing_canary() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    v2.behaviour.fail_every.store(5, Ordering::Relaxed);
    let setup = setup(&v1, &v2, "[20, 50]").await;
    let status = final_status(&setup).await;
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    let history = history(&setup).await;
    let last = history.last().unwrap();
    assert_eq!(last["kind"], "rolled_back");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("error_ratio 0.") && reason.contains("is above the maximum 0.05"),
        "{reason}"
    );
    let failed: Vec<f64> = error_ratio_checks(&history)
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["value"].as_f64().unwrap())
        .collect();
    assert!(
        failed.len() >= 2 && failed.iter().all(|v| (0.1..0.3).contains(v)),
        "about 20% fail: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outage_is_inconclusive_then_fails_never_promotes() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let mut setup = setup(&v1, &v2, "[10, 20, 30, 40, 50, 60, 70, 80]").await;
    // One step on real evidence, then Prometheus goes away.
    eventually(Duration::from_secs(60), "a first step", || async {
        let status = admin_json(&setup.client, setup.sluice.admin, "/api/v1/rollouts/web").await;
        (status["steps_taken"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    setup.prometheus.take().expect("prometheus runs").stop();
    let status = final_status(&setup).await;
    assert_eq!(
        status["phase"], "RolledBack",
        "never promoted on missing data: {status:#}"
    );
    assert!(status["steps_taken"].as_u64() < Some(8));
    let history = history(&setup).await;
    let inconclusive: Vec<&str> = history
        .iter()
        .filter(|d| d["kind"] == "inconclusive")
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(
        inconclusive
            .iter()
            .any(|r| r.contains("provider error 1 of 3 allowed in a row")),
        "errors first make runs inconclusive: {inconclusive:#?}"
    );
    let last = history.last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("provider errors in a row (limit 3)"),
        "{last}"
    );
}
