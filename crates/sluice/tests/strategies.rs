//! Blue-green and tenant cohort plans through the real binary and real
//! upstreams: green is judged on test traffic only, a failing smoke test
//! leaves traffic on blue, the switch is all at once and `rollout undo`
//! within the warm time switches back with no failed request; a cohort plan
//! moves tenants (named, then by hash, then all) step by step.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn blue_green(extra: &str) -> String {
    format!(
        "      strategy: blue_green\n      interval: 300ms\n      iterations: 3\n      min_requests: 5\n      checks:\n        - {{ metric: success_rate, min: 95 }}\n{extra}"
    )
}

async fn rollout_status(client: &HttpClient, sluice: &Sluice) -> serde_json::Value {
    admin_json(client, sluice.admin, "/api/v1/rollouts/web").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_smoke_test_failure_leaves_traffic_on_blue() {
    let receiver = HookReceiver::default();
    let hooks = receiver.start().await;
    receiver.answer("/smoke", 500, "smoke: GET /orders answered 404");
    let hook = format!(
        "      webhooks:\n        - {{ name: smoke, type: pre_rollout, url: 'http://{hooks}/smoke', retries: 0 }}\n"
    );
    let (_v1, v2, sluice, _dir) = start_web(&blue_green(&hook)).await;
    let client = client();
    let status = eventually(Duration::from_secs(10), "the rollout to end", || async {
        let status = rollout_status(&client, &sluice).await;
        (status["phase"] == "RolledBack").then_some(status)
    })
    .await;
    let reason = status["decisions"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("smoke: GET /orders answered 404"),
        "{reason}"
    );
    assert_eq!(receiver.hooks_called(), ["pre_rollout"]);
    for _ in 0..20 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
    assert_eq!(v2.served.load(Ordering::Relaxed), 0, "green got no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_at_once_and_undo_within_the_warm_time_loses_nothing() {
    let (v1, v2, sluice, _dir) = start_web(&blue_green("      scale_down_delay: 10m\n")).await;
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = spawn_load(sluice.proxy, 2, Duration::from_millis(2), stop.clone());
    // While green is judged, user traffic stays on blue; test traffic
    // (the forced header) is what the analysis sees.
    let test = [("x-canary", "always")];
    let judged_on_test_traffic = AtomicBool::new(false);
    let status = eventually(Duration::from_secs(30), "green to be promoted", || async {
        let status = rollout_status(&client, &sluice).await;
        if status["phase"] == "Progressing" {
            assert_eq!(status["weight"], 0.0, "{status}");
            assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
            for _ in 0..5 {
                assert_eq!(get(&client, sluice.proxy, "/", &test).await.1, "v2");
            }
            if status["last_analysis"]["canary_requests"]
                .as_u64()
                .is_some_and(|n| n >= 5)
            {
                judged_on_test_traffic.store(true, Ordering::Relaxed);
            }
        }
        (status["phase"] == "Succeeded").then_some(status)
    })
    .await;
    assert!(
        judged_on_test_traffic.load(Ordering::Relaxed),
        "an analysis run counted the test requests"
    );
    let served_by_green_before = v2.served.load(Ordering::Relaxed);
    assert!(served_by_green_before >= 15, "{served_by_green_before}");
    // The switch: every user request on green, blue kept warm.
    for _ in 0..20 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
    }
    assert_eq!(status["warm"]["endpoints"][0], v1.endpoint(), "{status}");
    let table = String::from_utf8_lossy(&sluice.cli(&["rollout", "status"]).stdout).to_string();
    assert!(table.contains("warm until"), "{table}");

    // Undo under load: back on blue at once, not one request failed.
    let v1_before = v1.served.load(Ordering::Relaxed);
    let undo = sluice.cli(&["rollout", "undo", "web"]);
    assert!(undo.status.success(), "{undo:?}");
    for _ in 0..20 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(v1.served.load(Ordering::Relaxed) > v1_before + 20);
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "{:?}",
        counts.failures.lock().unwrap()
    );
    assert!(counts.ok.load(Ordering::Relaxed) > 100);
    let status = rollout_status(&client, &sluice).await;
    assert!(status["warm"].is_null(), "{status}");
    let reason = status["decisions"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.ends_with("it was still warm: switched at once"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_releases_blue_after_the_warm_time() {
    let plan = "      strategy: blue_green\n      interval: 200ms\n      iterations: 1\n      min_requests: 0\n      scale_down_delay: 1s\n";
    let (v1, _v2, sluice, _dir) = start_web(plan).await;
    let client = client();
    let released = eventually(Duration::from_secs(20), "blue to be released", || async {
        let status = rollout_status(&client, &sluice).await;
        let decisions = status["decisions"].as_array().cloned().unwrap_or_default();
        decisions
            .iter()
            .find(|d| d["kind"] == "released")
            .map(|d| (status.clone(), d.clone()))
    })
    .await;
    let (status, decision) = released;
    assert_eq!(status["phase"], "Succeeded");
    assert!(status["warm"].is_null(), "{status}");
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("released the previous pool ({})", v1.endpoint())),
        "{reason}"
    );
    assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
}

/// Which version answers each of `tenants` (None: no tenant header).
async fn versions_of(
    client: &HttpClient,
    sluice: &Sluice,
    tenants: &[Option<&str>],
) -> Vec<String> {
    let mut out = Vec::new();
    for tenant in tenants {
        let headers: Vec<(&str, &str)> = tenant.iter().map(|t| ("x-tenant", *t)).collect();
        out.push(get(client, sluice.proxy, "/", &headers).await.1);
    }
    out
}

async fn wait_for_approval(client: &HttpClient, sluice: &Sluice, step: u64) {
    eventually(
        Duration::from_secs(20),
        "the next approval step",
        || async {
            // Canary traffic for the analysis: acme is in every cohort.
            versions_of(client, sluice, &[Some("acme"); 5]).await;
            let status = rollout_status(client, sluice).await;
            (status["phase"] == "Paused" && status["step"] == step).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_plan_moves_tenants_step_by_step() {
    let plan = r#"      interval: 300ms
      min_requests: 0
      tenant_header: x-tenant
      steps:
        - cohort: { tenants: [acme] }
        - approve: {}
        - cohort: { tenants: [globex, initech, umbrella, hooli, stark] }
        - approve: {}
        - cohort: { percent: 50 }
        - approve: {}
        - cohort: all
      checks:
        - { metric: success_rate, min: 95 }"#;
    let (v1, _v2, sluice, _dir) = start_web(plan).await;
    let client = client();
    let named = [
        Some("acme"),
        Some("globex"),
        Some("stark"),
        Some("wayne"),
        None,
    ];
    let resume = || {
        let out = sluice.cli(&["rollout", "resume", "web"]);
        assert!(out.status.success(), "{out:?}");
    };

    wait_for_approval(&client, &sluice, 1).await;
    assert_eq!(
        versions_of(&client, &sluice, &named).await,
        ["v2", "v1", "v1", "v1", "v1"]
    );
    resume();
    wait_for_approval(&client, &sluice, 3).await;
    assert_eq!(
        versions_of(&client, &sluice, &named).await,
        ["v2", "v2", "v2", "v1", "v1"]
    );
    resume();
    wait_for_approval(&client, &sluice, 5).await;
    // Half of the other tenants, chosen by a stable hash: the same ones every time.
    let others: Vec<String> = (0..60).map(|i| format!("tenant-{i}")).collect();
    let others: Vec<Option<&str>> = others.iter().map(|t| Some(t.as_str())).collect();
    let first = versions_of(&client, &sluice, &others).await;
    assert_eq!(versions_of(&client, &sluice, &others).await, first);
    let in_canary: HashSet<usize> = (0..first.len()).filter(|&i| first[i] == "v2").collect();
    let expected: HashSet<usize> = (0..others.len())
        .filter(|&i| sluice_proxy::sticky_bucket("web", others[i].unwrap().as_bytes()) < 5_000)
        .collect();
    assert_eq!(in_canary, expected);
    assert!((15..=45).contains(&in_canary.len()), "{}", in_canary.len());
    // Named tenants stay in; requests without a tenant still go to stable.
    assert_eq!(
        versions_of(&client, &sluice, &named[..3]).await,
        ["v2", "v2", "v2"]
    );
    assert_eq!(versions_of(&client, &sluice, &[None]).await, ["v1"]);
    resume();
    eventually(
        Duration::from_secs(20),
        "the cohort plan to promote",
        || async {
            versions_of(&client, &sluice, &[Some("acme"); 5]).await;
            (phase(&client, sluice.admin).await == "Succeeded").then_some(())
        },
    )
    .await;
    assert_eq!(
        versions_of(&client, &sluice, &named).await,
        ["v2", "v2", "v2", "v2", "v2"]
    );
    let history = admin_json(&client, sluice.admin, "/api/v1/rollouts/web/history").await;
    let text = history.to_string();
    assert!(text.contains("canary for tenant acme"), "{text}");
    assert!(text.contains("canary for all tenants"), "{text}");
    assert!(v1.served.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_mirror_judges_green_on_copies_of_user_traffic() {
    let (_v1, v2, sluice, _dir) = start_web(&blue_green("      mirror: { percent: 100 }\n")).await;
    let client = client();
    let status = eventually(Duration::from_secs(30), "green to be promoted", || async {
        // User traffic only (no forced header): answered by blue, copied to green.
        for _ in 0..10 {
            let (_, upstream, _) = get(&client, sluice.proxy, "/", &[]).await;
            let status = rollout_status(&client, &sluice).await;
            if status["phase"] == "Progressing" {
                assert_eq!(upstream, "v1", "users stay on blue while green is judged");
            }
        }
        let status = rollout_status(&client, &sluice).await;
        (status["phase"] == "Succeeded").then_some(status)
    })
    .await;
    let decisions = status["decisions"].as_array().unwrap();
    let judged = decisions
        .iter()
        .filter(|d| {
            d["analysis"]["canary_requests"]
                .as_u64()
                .is_some_and(|n| n >= 5)
        })
        .count();
    assert!(judged >= 3, "each run saw mirrored requests: {status}");
    assert!(v2.served.load(Ordering::Relaxed) >= 15);
    assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
}
