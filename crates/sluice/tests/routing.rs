//! End to end through the real binary: the split ratio, the forced-version
//! header and sticky assignment over thousands of requests, and config
//! reloads under load that lose no request.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Holds 25% for the whole test: the first analysis is an hour away.
const HOLD_AT_25: &str = "      interval: 1h
      step_weights: [25, 50]
";

/// Runs `n` GETs, 32 at a time, returning the `x-upstream` of each in order.
async fn upstreams(
    client: &HttpClient,
    sluice: &Sluice,
    n: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(32) {
        let batch: Vec<_> = (start..n.min(start + 32))
            .map(|i| {
                let (client, proxy, h) = (client.clone(), sluice.proxy, headers(i));
                tokio::spawn(async move {
                    let refs: Vec<(&str, &str)> =
                        h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                    let (status, upstream, _) = get(&client, proxy, "/", &refs).await;
                    assert_eq!(status, 200);
                    upstream
                })
            })
            .collect();
        for task in batch {
            out.push(task.await.unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_forced_header_and_stickiness_hold_over_thousands_of_requests() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), HOLD_AT_25),
    );
    let client = client();
    let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
    assert_eq!(status["weight"], 25.0, "{status:#}");

    // Without a sticky key: about 25% on the canary (±2 points is over 4 standard deviations).
    let split = upstreams(&client, &sluice, 10_000, |_| vec![]).await;
    let canary = split.iter().filter(|u| *u == "v2").count() as f64 / split.len() as f64;
    assert!((0.23..=0.27).contains(&canary), "canary share {canary}");

    // The forced header wins over the weight, both ways.
    let always = upstreams(&client, &sluice, 1_000, |_| {
        vec![("x-canary".into(), "always".into())]
    })
    .await;
    assert!(always.iter().all(|u| u == "v2"));
    let never = upstreams(&client, &sluice, 1_000, |_| {
        vec![("x-canary".into(), "never".into())]
    })
    .await;
    assert!(never.iter().all(|u| u == "v1"));

    // A user stays on one version: 300 users, 10 requests each, interleaved.
    let sticky = upstreams(&client, &sluice, 3_000, |i| {
        vec![("x-user".into(), format!("user-{}", i % 300))]
    })
    .await;
    let mut seen: HashMap<usize, &str> = HashMap::new();
    for (i, upstream) in sticky.iter().enumerate() {
        let first = *seen.entry(i % 300).or_insert(upstream.as_str());
        assert_eq!(first, upstream, "user-{} moved between versions", i % 300);
    }
    let users_on_canary = seen.values().filter(|u| **u == "v2").count();
    assert!(
        (40..=110).contains(&users_on_canary),
        "{users_on_canary} of 300 users on canary at 25%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reloads_under_load_lose_no_request() {
    let (v1, c1, c2) = (
        Upstream::start("v1").await,
        Upstream::start("c1").await,
        Upstream::start("c2").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = "      interval: 1h\n      step_weights: [50]\n";
    let config_a = service_config(&v1.endpoint(), &c1.endpoint(), plan);
    let config_b = service_config(&v1.endpoint(), &c2.endpoint(), plan)
        .replace("sticky: { header: x-user }", "sticky: { cookie: session }");
    let sluice = Sluice::start(dir.path(), &config_a);
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (counts, tasks) = spawn_load(sluice.proxy, 8, Duration::ZERO, stop.clone());

    for round in 0..10 {
        let next = if round % 2 == 0 { &config_b } else { &config_a };
        std::fs::write(dir.path().join("sluice.yaml"), next).unwrap();
        sluice.signal("HUP");
        let want = round + 1;
        wait_for_reloads(&client, sluice.admin, "success", want).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A broken config is refused and the old one keeps serving.
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config_a.replace("step_weights: [50]", "step_weights: [120]"),
    )
    .unwrap();
    sluice.signal("HUP");
    wait_for_reloads(&client, sluice.admin, "failure", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let ok = counts.ok.load(Ordering::Relaxed);
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "failures: {:?}",
        counts.failures.lock().unwrap()
    );
    assert_eq!(counts.upstream_errors.load(Ordering::Relaxed), 0);
    assert!(ok > 500, "only {ok} requests went through");
    assert!(
        c1.served.load(Ordering::Relaxed) > 0 && c2.served.load(Ordering::Relaxed) > 0,
        "both canaries served"
    );
    assert!(
        sluice
            .log_text()
            .contains("step_weights[0]: weight 120 is above 100"),
        "{}",
        sluice.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_the_moment_sluice_announces_itself_reloads_and_never_kills() {
    let (v1, c1) = (Upstream::start("v1").await, Upstream::start("c1").await);
    let dir = tempfile::tempdir().unwrap();
    let plan = "      interval: 1h\n      step_weights: [50]\n";
    let mut sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &c1.endpoint(), plan),
    );
    sluice.signal("HUP");
    let client = client();
    wait_for_reloads(&client, sluice.admin, "success", 1).await;
    assert!(sluice.is_running(), "{}", sluice.log_text());
}
