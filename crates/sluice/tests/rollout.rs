//! End to end: the real binary, real upstreams on loopback, real load; a
//! rollout promotes a healthy canary and rolls back a bad one by itself,
//! and resumes at the same step after kill -9.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

const FAST_PLAN: &str = "      interval: 500ms
      threshold: 2
      step_weights: [20, 50]
      min_requests: 10
      checks:
        - metric: success_rate
          min: 95
        - metric: latency
          percentile: 99
          max: 150ms
";

async fn decisions(client: &HttpClient, sluice: &Sluice) -> Vec<Value> {
    admin_json(client, sluice.admin, "/api/v1/rollouts/web/history")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_final(client: &HttpClient, sluice: &Sluice, limit: Duration) -> Value {
    eventually(limit, "a final phase", || async {
        let status = admin_json(client, sluice.admin, "/api/v1/rollouts/web").await;
        matches!(
            status["phase"].as_str(),
            Some("Succeeded" | "RolledBack" | "Failed")
        )
        .then_some(status)
    })
    .await
}

/// A rollout run to its end under load, with what a test needs to look further.
struct Finished {
    status: Value,
    sluice: Sluice,
    client: HttpClient,
    v1: Upstream,
    v2: Upstream,
    counts: Arc<LoadCounts>,
    _dir: tempfile::TempDir,
}

/// Starts sluice with `plan` for v1 → v2 (`make_v2` sets v2's behaviour), sends
/// load from `concurrency` clients, and waits (bounded) for a final phase.
async fn run_rollout(plan: &str, concurrency: usize, make_v2: impl FnOnce(&Upstream)) -> Finished {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    make_v2(&v2);
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, _tasks) = spawn_load(
        sluice.proxy,
        concurrency,
        Duration::from_millis(5),
        stop.clone(),
    );
    let client = client();
    let status = wait_final(&client, &sluice, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    Finished {
        status,
        sluice,
        client,
        v1,
        v2,
        counts,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted() {
    let Finished {
        status,
        sluice,
        client,
        v1,
        v2,
        counts,
        ..
    } = run_rollout(
        &FAST_PLAN.replace("threshold: 2", "threshold: 3"),
        4,
        |_| {},
    )
    .await;
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{status:#}\n{}",
        sluice.log_text()
    );
    assert_eq!(
        status["stable"],
        serde_json::json!([v2.endpoint()]),
        "the canary pool became stable"
    );
    assert_eq!(status["weight"], 0.0);
    assert_eq!(status["steps_taken"], 2);
    let kinds: Vec<String> = decisions(&client, &sluice)
        .await
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("started"));
    assert_eq!(kinds.last().map(String::as_str), Some("promoted"));
    assert_eq!(
        kinds.iter().filter(|k| *k == "advanced").count(),
        1,
        "{kinds:?}"
    );

    // After promotion every request goes to v2, the new stable.
    let served_before = v1.served.load(Ordering::Relaxed);
    for _ in 0..200 {
        let (status, upstream, _) = get(&client, sluice.proxy, "/", &[]).await;
        assert_eq!((status, upstream.as_str()), (200, "v2"));
    }
    assert_eq!(v1.served.load(Ordering::Relaxed), served_before);
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        counts.failures.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_20_percent_errors_is_rolled_back_within_the_threshold() {
    let Finished {
        status,
        sluice,
        client,
        v1,
        v2,
        ..
    } = run_rollout(FAST_PLAN, 4, |v2| {
        v2.behaviour.fail_every.store(5, Ordering::Relaxed)
    })
    .await;
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["weight"], 0.0);
    assert_eq!(
        status["failed_runs"], 2,
        "rolled back exactly at the threshold"
    );
    assert_eq!(status["stable"], serde_json::json!([v1.endpoint()]));
    let history = decisions(&client, &sluice).await;
    let rollback = history.last().unwrap();
    assert_eq!(rollback["kind"], "rolled_back");
    let reason = rollback["reason"].as_str().unwrap();
    let checks = rollback["analysis"]["checks"].as_array().unwrap();
    let success = checks.iter().find(|c| c["name"] == "success_rate").unwrap();
    assert_eq!(success["verdict"], "fail");
    let value = success["value"].as_f64().unwrap();
    assert!(
        (70.0..90.0).contains(&value),
        "about 80% succeed: {success:#}"
    );
    let shown: f64 = reason
        .split("success_rate ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("the reason names the check and its value: {reason}"));
    assert!((shown - value).abs() < 0.05, "{shown} vs {value}: {reason}");
    assert!(reason.contains("is below the minimum 95%"), "{reason}");

    // The verdict is exported with its numbers, in a valid exposition.
    let (_, _, metrics) = get(&client, sluice.admin, "/metrics", &[]).await;
    for line in [
        "sluice_check_verdict{service=\"web\",check=\"success_rate\",verdict=\"fail\"} 1",
        "sluice_check_bound{service=\"web\",check=\"success_rate\",unit=\"ratio\"} 0.95",
        &format!("sluice_check_value{{service=\"web\",check=\"success_rate\",unit=\"ratio\",version=\"canary\"}} {}", value / 100.0),
        "sluice_rollout_phase{service=\"web\",phase=\"RolledBack\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    promtool_check_metrics(&metrics);

    // Back on stable: nothing reaches v2 any more.
    let served = v2.served.load(Ordering::Relaxed);
    for _ in 0..200 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
    assert_eq!(v2.served.load(Ordering::Relaxed), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_200ms_slower_fails_the_latency_check() {
    let Finished {
        status,
        sluice,
        client,
        ..
    } = run_rollout(FAST_PLAN, 8, |v2| {
        v2.behaviour.delay_ms.store(200, Ordering::Relaxed)
    })
    .await;
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    let history = decisions(&client, &sluice).await;
    let failed: Vec<&Value> = history
        .iter()
        .filter(|d| d["kind"] == "check_failed" || d["kind"] == "rolled_back")
        .collect();
    assert!(!failed.is_empty());
    for decision in failed {
        let checks = decision["analysis"]["checks"].as_array().unwrap();
        let latency = checks.iter().find(|c| c["name"] == "latency_p99").unwrap();
        assert_eq!(latency["verdict"], "fail", "{latency:#}");
        assert!(latency["value"].as_f64().unwrap() >= 200.0, "{latency:#}");
        let success = checks.iter().find(|c| c["name"] == "success_rate").unwrap();
        assert_eq!(
            success["verdict"], "pass",
            "only latency is wrong: {success:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_resumes_at_the_same_step() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let plan = "      interval: 700ms
      threshold: 3
      step_weights: [10, 20, 30, 40, 50, 60]
      min_requests: 5
      checks:
        - metric: success_rate
          min: 90
";
    let client = client();
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let _load = spawn_load(sluice.proxy, 4, Duration::from_millis(5), stop.clone());
    let before = eventually(Duration::from_secs(60), "two steps taken", || async {
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
        (status["steps_taken"].as_u64().unwrap_or(0) >= 2).then_some(status)
    })
    .await;
    sluice.kill9();
    stop.store(true, Ordering::Relaxed);

    let sluice = Sluice::start_existing(dir.path());
    let after = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
    assert_eq!(
        after["rollout_id"], before["rollout_id"],
        "the same rollout, not a new one"
    );
    assert!(
        after["steps_taken"].as_u64() >= before["steps_taken"].as_u64(),
        "{before:#} vs {after:#}"
    );
    assert_eq!(after["phase"], "Progressing");

    let stop = Arc::new(AtomicBool::new(false));
    let _load = spawn_load(sluice.proxy, 4, Duration::from_millis(5), stop.clone());
    let status = wait_final(&client, &sluice, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert_eq!(status["steps_taken"], 6);

    // The log has one start, every step once, in order, with contiguous sequence numbers.
    let history = decisions(&client, &sluice).await;
    let seqs: Vec<u64> = history.iter().map(|d| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..history.len() as u64).collect::<Vec<_>>());
    assert_eq!(history.iter().filter(|d| d["kind"] == "started").count(), 1);
    let advanced: Vec<f64> = history
        .iter()
        .filter(|d| d["kind"] == "advanced")
        .map(|d| d["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(
        advanced,
        [20.0, 30.0, 40.0, 50.0, 60.0],
        "no step skipped or taken twice"
    );
}

const SEQUENTIAL_PLAN: &str = "      interval: 500ms
      threshold: 5
      step_weights: [20, 40, 60]
      min_requests: 10
      judge: both
      sequential:
        alpha: 0.01
      checks:
        - metric: success_rate
          min: 50
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequential_judge_rolls_back_at_once_what_a_lenient_check_lets_through() {
    let Finished {
        status,
        sluice,
        client,
        ..
    } = run_rollout(SEQUENTIAL_PLAN, 4, |v2| {
        v2.behaviour.fail_every.store(10, Ordering::Relaxed)
    })
    .await;
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(
        status["failed_runs"], 1,
        "no failure count needed: {status:#}"
    );
    let history = decisions(&client, &sluice).await;
    let last = history.last().unwrap();
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rolled back at once: sequential judge: "),
        "{reason}"
    );
    let outcome = &last["analysis"]["sequential"];
    assert_eq!(outcome["verdict"], "fail", "{outcome:#}");
    assert_eq!(
        last["analysis"]["checks"][0]["verdict"], "pass",
        "the lenient check passed"
    );

    // The evidence is exported, and the exposition is valid.
    let (_, _, metrics) = get(&client, sluice.admin, "/metrics", &[]).await;
    let statistic = metric_value(
        &metrics,
        "sluice_sequential_statistic{service=\"web\",test=\"errors\"}",
    );
    let threshold = metric_value(
        &metrics,
        "sluice_sequential_threshold{service=\"web\",test=\"errors\"}",
    );
    assert!(statistic >= threshold, "{statistic} < {threshold}");
    promtool_check_metrics(&metrics);
}

fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_judges_a_healthy_canary_is_promoted() {
    let Finished {
        status,
        sluice,
        client,
        ..
    } = run_rollout(SEQUENTIAL_PLAN, 4, |_| {}).await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    let history = decisions(&client, &sluice).await;
    assert!(history
        .iter()
        .filter(|d| d["kind"] == "advanced")
        .all(|d| d["analysis"]["sequential"]["verdict"] != "fail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_promotion_serves_the_previous_revision_again() {
    let Finished {
        status,
        sluice,
        client,
        v1,
        ..
    } = run_rollout(
        &FAST_PLAN.replace("threshold: 2", "threshold: 3"),
        4,
        |_| {},
    )
    .await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");

    // Undo under load: every request answered, by v1 once it took effect.
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = spawn_load(sluice.proxy, 4, Duration::from_millis(2), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = sluice.cli(&["rollout", "undo", "web"]);
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(said.contains("undo to revision 1"), "{said}");
    let served_before = v1.served.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "v1 to serve the load", || {
        let served = v1.served.load(Ordering::Relaxed);
        std::future::ready((served > served_before).then_some(()))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        counts.failures.lock().unwrap()
    );
    for _ in 0..50 {
        let (status, upstream, _) = get(&client, sluice.proxy, "/", &[]).await;
        assert_eq!((status, upstream.as_str()), (200, "v1"));
    }

    // The revisions, in the history; a second undo with nothing newer is refused.
    let revisions = admin_json(&client, sluice.admin, "/api/v1/rollouts/web/revisions").await;
    let causes: Vec<&str> = revisions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        ["config", "rollout 1 promoted", "undo to revision 1"]
    );
    assert_eq!(revisions[1]["config_digest"].as_str().unwrap().len(), 16);
    let history = sluice.cli(&["rollout", "history", "web"]);
    let table = String::from_utf8_lossy(&history.stdout).to_string();
    assert!(
        table.contains("REVISION") && table.contains("3 (current)"),
        "{table}"
    );
    assert!(
        table.contains("Undone") && table.contains("it came from config"),
        "{table}"
    );
    let refused = sluice.cli(&["rollout", "undo", "web", "--to-revision", "9"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no revision 9"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_sends_only_matching_requests_to_the_canary_then_promotes() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let plan = r#"      strategy: ab
      interval: 300ms
      iterations: 3
      min_requests: 5
      match:
        - { header: x-beta, exact: "yes" }
        - { cookie: group, regex: "beta-[0-9]+" }
      checks:
        - { metric: success_rate, min: 95 }"#;
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    let client = client();
    let beta = [("x-beta", "yes")];
    let cookie = [("cookie", "theme=dark; group=beta-42")];
    let other = [("cookie", "group=beta-x")];
    for _ in 0..20 {
        assert_eq!(get(&client, sluice.proxy, "/", &beta).await.1, "v2");
        assert_eq!(get(&client, sluice.proxy, "/", &cookie).await.1, "v2");
        assert_eq!(get(&client, sluice.proxy, "/", &other).await.1, "v1");
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
    let status = eventually(
        Duration::from_secs(20),
        "the A/B test to promote",
        || async {
            for _ in 0..10 {
                get(&client, sluice.proxy, "/", &beta).await;
            }
            let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
            (status["phase"] == "Succeeded").then_some(status)
        },
    )
    .await;
    assert_eq!(status["steps_taken"], 3, "{status}");
    // Promoted: everyone is on v2, matching or not.
    for _ in 0..10 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
    }
    assert!(v1.served.load(Ordering::Relaxed) >= 40);
}
