//! End to end: the `rolling` and `recreate` strategies with active health
//! checks, on the real binary and real upstreams. The pools that serve are
//! observed from the traffic itself (which upstream answered), in batches.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// sluice in front of a service `web` moving from `old` to `new` with `rollout`
/// (YAML lines indented six spaces).
fn config(old: &[&Upstream], new: &[&Upstream], rollout: &str) -> String {
    let list = |pool: &[&Upstream]| {
        pool.iter()
            .map(|u| format!("\"{}\"", u.endpoint()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"{CONFIG_HEAD}services:
  - name: web
    versions:
      stable: {{ endpoints: [{}] }}
      canary: {{ endpoints: [{}] }}
    rollout:
{rollout}"#,
        list(old),
        list(new)
    )
}

/// Who answered `n` requests: upstream names, or `503 <x-sluice-error>` for
/// the ones sluice answered itself.
async fn composition(client: &HttpClient, sluice: &Sluice, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let answer = fetch(client, sluice.proxy, "/", &[]).await;
        let by = match answer.headers.get("x-upstream") {
            Some(name) => name.to_str().unwrap_or("?").to_string(),
            None => format!(
                "{} {}",
                answer.status,
                answer
                    .headers
                    .get("x-sluice-error")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            ),
        };
        seen.insert(by);
    }
    seen
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn status(client: &HttpClient, sluice: &Sluice) -> Value {
    admin_json(client, sluice.admin, "/api/v1/rollouts/web").await
}

async fn decisions(client: &HttpClient, sluice: &Sluice) -> Vec<Value> {
    admin_json(client, sluice.admin, "/api/v1/rollouts/web/history")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Samples the serving pool in batches of 30 requests until the rollout ends
/// (bounded), and once more; returns each batch's composition, in order.
async fn observe_until_final(
    client: &HttpClient,
    sluice: &Sluice,
    limit: Duration,
) -> (Vec<BTreeSet<String>>, Value) {
    let deadline = Instant::now() + limit;
    let mut batches = Vec::new();
    loop {
        batches.push(composition(client, sluice, 30).await);
        let status = status(client, sluice).await;
        if matches!(
            status["phase"].as_str(),
            Some("Succeeded" | "RolledBack" | "Failed")
        ) {
            // The batch before may have straddled the last change.
            batches.push(composition(client, sluice, 30).await);
            return (batches, status);
        }
        assert!(
            Instant::now() < deadline,
            "no final phase within {limit:?}: {status:#}\n{batches:?}\n{}",
            sluice.log_text()
        );
    }
}

const HEALTH: &str = "      health_check: { path: /healthz, interval: 200ms, healthy_threshold: 2, unhealthy_threshold: 3 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_admits_new_endpoints_one_at_a_time_then_promotes() {
    let old = [
        Upstream::start("v1a").await,
        Upstream::start("v1b").await,
        Upstream::start("v1c").await,
    ];
    let new = [
        Upstream::start("v2a").await,
        Upstream::start("v2b").await,
        Upstream::start("v2c").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let rollout = format!(
        "      strategy: rolling\n      max_surge: 1\n      max_unavailable: 0\n      interval: 1500ms\n      min_requests: 5\n      checks:\n        - metric: success_rate\n          min: 99\n{HEALTH}"
    );
    let sluice = Sluice::start(
        dir.path(),
        &config(&old.each_ref(), &new.each_ref(), &rollout),
    );
    let client = client();
    let (batches, status) = observe_until_final(&client, &sluice, Duration::from_secs(40)).await;
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{status:#}\n{}",
        sluice.log_text()
    );
    let new_endpoints: Vec<String> = new.iter().map(Upstream::endpoint).collect();
    assert_eq!(status["stable"], serde_json::json!(new_endpoints));

    // The pools seen, in order: all old; v2a for v1c; v2b for v1b; all new.
    let expected = [
        set(&["v1a", "v1b", "v1c"]),
        set(&["v1a", "v1b", "v2a"]),
        set(&["v1a", "v2a", "v2b"]),
        set(&["v2a", "v2b", "v2c"]),
    ];
    let mut at = 0;
    for batch in &batches {
        if at < expected.len() && *batch == expected[at] {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "pools seen: {batches:#?}");
    // One new endpoint at a time: the new ones seen never jump by two
    // between batches, and nothing but an upstream ever answered.
    let new_seen = |b: &BTreeSet<String>| b.iter().filter(|n| n.starts_with("v2")).count();
    for pair in batches.windows(2) {
        assert!(
            new_seen(&pair[1]) <= new_seen(&pair[0]) + 1,
            "two endpoints admitted at once: {batches:#?}"
        );
    }
    assert!(
        batches.iter().flatten().all(|n| n.starts_with('v')),
        "sluice answered itself during a rolling update: {batches:#?}"
    );
    let reasons: Vec<String> = decisions(&client, &sluice)
        .await
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("2 of 3 new and 1 old endpoints serve")),
        "{reasons:#?}"
    );
    // After promotion the old pool gets nothing.
    let served: u64 = old.iter().map(|u| u.served.load(Ordering::Relaxed)).sum();
    assert_eq!(
        composition(&client, &sluice, 60).await,
        set(&["v2a", "v2b", "v2c"])
    );
    let after: u64 = old.iter().map(|u| u.served.load(Ordering::Relaxed)).sum();
    assert_eq!(after, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_with_one_endpoint_failing_health_checks_stops_and_restores_the_old_pool() {
    let old = [
        Upstream::start("v1a").await,
        Upstream::start("v1b").await,
        Upstream::start("v1c").await,
    ];
    let new = [
        Upstream::start("v2a").await,
        Upstream::start("v2b").await,
        Upstream::start("v2c").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    // A long interval: the next step cannot come before v2b's probes fail.
    let rollout =
        format!("      strategy: rolling\n      interval: 5s\n      min_requests: 5\n{HEALTH}");
    let sluice = Sluice::start(
        dir.path(),
        &config(&old.each_ref(), &new.each_ref(), &rollout),
    );
    let client = client();
    eventually(
        Duration::from_secs(20),
        "v2a serving next to v1a, v1b",
        || async {
            (composition(&client, &sluice, 30).await == set(&["v1a", "v1b", "v2a"])).then_some(())
        },
    )
    .await;
    // v2b, waiting to be admitted at the next step, starts failing its probes.
    new[1].behaviour.unhealthy.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let status = eventually(Duration::from_secs(20), "a rollback", || async {
        let status = status(&client, &sluice).await;
        (status["phase"] != "Progressing").then_some(status)
    })
    .await;
    assert_eq!(
        status["phase"],
        "RolledBack",
        "{status:#}\n{}",
        sluice.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the rollback waited for the next step: {:?}",
        started.elapsed()
    );
    let last = decisions(&client, &sluice).await.pop().unwrap();
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains(&new[1].endpoint()) && reason.contains("answered 503"),
        "the reason names the endpoint and the probe's result: {reason}"
    );
    assert_eq!(status["steps_taken"], 1, "stopped where it was: {status:#}");
    // The whole old pool serves again, and the new endpoints get nothing.
    assert_eq!(
        composition(&client, &sluice, 60).await,
        set(&["v1a", "v1b", "v1c"])
    );
    let old_endpoints: Vec<String> = old.iter().map(Upstream::endpoint).collect();
    assert_eq!(status["stable"], serde_json::json!(old_endpoints));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_answers_the_gap_with_503_and_retry_after_then_serves_the_new_pool() {
    let old = [Upstream::start("v1a").await, Upstream::start("v1b").await];
    let new = [Upstream::start("v2a").await, Upstream::start("v2b").await];
    // The new pool is not ready yet: the gap lasts until it is.
    for upstream in &new {
        upstream.behaviour.unhealthy.store(true, Ordering::Relaxed);
    }
    let dir = tempfile::tempdir().unwrap();
    let rollout = "      strategy: recreate\n      retry_after: 7s\n      health_check: { interval: 200ms, healthy_threshold: 2, unhealthy_threshold: 1000 }\n";
    let sluice = Sluice::start(
        dir.path(),
        &config(&old.each_ref(), &new.each_ref(), rollout),
    );
    let client = client();
    let gap = eventually(Duration::from_secs(10), "the gap", || async {
        let answer = fetch(&client, sluice.proxy, "/", &[]).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(gap.headers["x-sluice-error"], "recreating");
    assert_eq!(gap.headers["retry-after"], "7");
    assert!(gap.body.contains("web"), "{}", gap.body);
    // Never a hang: every request in the gap is answered at once.
    for _ in 0..20 {
        let asked = Instant::now();
        let answer = fetch(&client, sluice.proxy, "/", &[]).await;
        assert_eq!(answer.status, 503);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
    }
    assert_eq!(status(&client, &sluice).await["phase"], "Progressing");
    let metrics = try_metrics(&client, sluice.admin).await.unwrap();
    let line = format!(
        "sluice_endpoint_healthy{{service=\"web\",endpoint=\"{}\"}} 0",
        new[0].endpoint()
    );
    assert!(metrics.contains(&line), "{metrics}");
    promtool_check_metrics(&metrics);

    // The new pool turns healthy: within a few probe intervals it serves.
    let ready = Instant::now();
    for upstream in &new {
        upstream.behaviour.unhealthy.store(false, Ordering::Relaxed);
    }
    eventually(Duration::from_secs(5), "the new pool serving", || async {
        (composition(&client, &sluice, 30).await == set(&["v2a", "v2b"])).then_some(())
    })
    .await;
    assert!(
        ready.elapsed() < Duration::from_secs(3),
        "{:?}",
        ready.elapsed()
    );
    let status = status(&client, &sluice).await;
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    let new_endpoints: Vec<String> = new.iter().map(Upstream::endpoint).collect();
    assert_eq!(status["stable"], serde_json::json!(new_endpoints));
    assert_eq!(
        old.iter()
            .map(|u| u.served.load(Ordering::Relaxed))
            .sum::<u64>(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rolling_update_serves_the_same_pools_and_finishes() {
    let old = [Upstream::start("v1a").await, Upstream::start("v1b").await];
    let new = [Upstream::start("v2a").await, Upstream::start("v2b").await];
    let dir = tempfile::tempdir().unwrap();
    let rollout =
        format!("      strategy: rolling\n      interval: 3s\n      min_requests: 5\n{HEALTH}");
    let sluice = Sluice::start(
        dir.path(),
        &config(&old.each_ref(), &new.each_ref(), &rollout),
    );
    let client = client();
    eventually(
        Duration::from_secs(20),
        "v2a serving next to v1a",
        || async {
            (composition(&client, &sluice, 30).await == set(&["v1a", "v2a"])).then_some(())
        },
    )
    .await;
    sluice.kill9();

    // The stored step is served at once, before any probe has run again.
    let sluice = Sluice::start_existing(dir.path());
    let resumed = status(&client, &sluice).await;
    assert_eq!(
        resumed["pools"],
        serde_json::json!({"new_in": 1, "new_total": 2, "old_in": 1, "old_total": 2}),
        "{resumed:#}"
    );
    assert_eq!(
        composition(&client, &sluice, 30).await,
        set(&["v1a", "v2a"])
    );
    let (batches, status) = observe_until_final(&client, &sluice, Duration::from_secs(30)).await;
    assert_eq!(
        status["phase"],
        "Succeeded",
        "{status:#}\n{}",
        sluice.log_text()
    );
    assert!(
        batches.iter().all(|b| !b.contains("v1b")),
        "v1b came back: {batches:#?}"
    );
    assert_eq!(status["steps_taken"], 2, "no step taken twice: {status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_whose_new_pool_never_gets_healthy_serves_the_old_pool_again() {
    let old = [Upstream::start("v1a").await];
    let new = [Upstream::start("v2a").await];
    new[0].behaviour.unhealthy.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let rollout = "      strategy: recreate\n      health_check: { interval: 200ms, unhealthy_threshold: 3 }\n";
    let sluice = Sluice::start(
        dir.path(),
        &config(&old.each_ref(), &new.each_ref(), rollout),
    );
    let client = client();
    let status = eventually(Duration::from_secs(10), "a rollback", || async {
        let status = status(&client, &sluice).await;
        (status["phase"] == "RolledBack").then_some(status)
    })
    .await;
    let last = decisions(&client, &sluice).await.pop().unwrap();
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("{}: GET /healthz answered 503", new[0].endpoint())),
        "{last:#}"
    );
    assert_eq!(status["pools"], Value::Null);
    assert_eq!(composition(&client, &sluice, 20).await, set(&["v1a"]));
}
