//! Circuit breakers through the real binary, against real upstream servers
//! that fail on command: the seed's four load scenarios (sustained failure,
//! recovery, flapping, high concurrency with exact half-open admission),
//! per-tenant isolation, shadow mode, the stale and static fallbacks, the
//! concurrency cap, live policy replacement and the switches.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::Value;

/// A config with one service `api` on `upstream`, the `breaker:` block of
/// the service and the `policies:` block (both YAML, indented to fit).
fn config(upstream: &str, service_breaker: &str, policies: &str) -> String {
    format!(
        r#"{CONFIG_HEAD}breakers:
  policies:
{policies}
services:
  - name: api
    versions:
      stable: {{ endpoints: ["{upstream}"] }}
    breaker:
{service_breaker}
"#
    )
}

/// Five consecutive failures open it for `open`; three trial calls; then
/// the `extra` lines (indented six spaces).
fn policy(open: &str, extra: &str) -> String {
    format!(
        "    default:
      failure_threshold: 5
      error_rate_threshold: null
      open_duration: {open}
      max_open_duration: {open}
      backoff_multiplier: 1
      half_open_calls: 3
      success_threshold: 3
{extra}"
    )
}

/// One upstream `api` behind a running sluice (the directory lives as long as it).
async fn setup(
    service_breaker: &str,
    policies: &str,
) -> (Upstream, Sluice, HttpClient, tempfile::TempDir) {
    let upstream = Upstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        dir.path(),
        &config(&upstream.endpoint(), service_breaker, policies),
    );
    (upstream, sluice, client(), dir)
}

fn sluice_error(answer: &Answer) -> &str {
    answer
        .headers
        .get("x-sluice-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn breaker(client: &HttpClient, admin: SocketAddr, id: &str) -> Value {
    admin_json(client, admin, &format!("/api/v1/breakers/{id}")).await
}

async fn send_json(client: &HttpClient, method: &str, url: String, body: &str) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_failure_opens_it_and_recovery_closes_it() {
    let (upstream, sluice, client, _dir) = setup("      policy: default", &policy("1s", "")).await;

    // (1) Sustained failure: exactly the five failures reach the upstream,
    // then it fails fast with 503, Retry-After and the breaker's name.
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let answer = fetch(&client, sluice.proxy, "/", &[]).await;
        if answer.status == 503 {
            assert_eq!(sluice_error(&answer), "breaker_open");
            assert_eq!(answer.headers["retry-after"], "1");
            assert!(answer.body.contains("api:stable"), "{}", answer.body);
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses[..5], [500; 5]);
    assert_eq!(statuses[5..], [503; 15]);
    assert_eq!(upstream.served.load(Ordering::Relaxed), 5);
    let open = breaker(&client, sluice.admin, "api:stable").await;
    assert_eq!(open["state"], "open");
    assert_eq!(open["counters"]["failures"], 5);
    assert_eq!(open["counters"]["rejected"], 15);

    // (2) Recovery: after the open duration, three successful trials close it.
    upstream.behaviour.fail_every.store(0, Ordering::Relaxed);
    eventually(Duration::from_secs(10), "a trial call to pass", || async {
        (fetch(&client, sluice.proxy, "/", &[]).await.status == 200).then_some(())
    })
    .await;
    for _ in 0..2 {
        assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 200);
    }
    let closed = breaker(&client, sluice.admin, "api:stable").await;
    assert_eq!(closed["state"], "closed", "{closed}");
    let log = admin_json(&client, sluice.admin, "/api/v1/breakers/transitions").await;
    let path: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().into(),
                t["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(path, expected);
    assert!(log[0]["reason"].as_str().unwrap().contains('5'), "{log}");

    // The metrics say the same, and promtool accepts them.
    let metrics = try_metrics(&client, sluice.admin).await.unwrap();
    assert!(metrics.contains(
        "sluice_circuit_breaker_state_transitions_total{breaker=\"api:stable\",service=\"api\",version=\"stable\",policy=\"default\",from=\"closed\",to=\"open\"} 1"
    ), "{metrics}");
    assert!(metrics.contains("sluice_circuit_breaker_state{breaker=\"api:stable\""));
    promtool_check_metrics(&metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_upstream_cannot_make_it_reopen_faster_than_the_open_duration() {
    let policy = "    default:
      failure_threshold: 2
      error_rate_threshold: null
      open_duration: 400ms
      max_open_duration: 2s
      backoff_multiplier: 2
      half_open_calls: 1
      success_threshold: 1";
    let (upstream, sluice, client, _dir) = setup("      policy: default", policy).await;
    // Every other request fails: the breaker trips, its trial fails or passes
    // at random, and it trips again.
    upstream.behaviour.fail_every.store(2, Ordering::Relaxed);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_counts, tasks) = spawn_load(sluice.proxy, 8, Duration::from_millis(5), stop.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let log = admin_json(
        &client,
        sluice.admin,
        "/api/v1/breakers/transitions?limit=256",
    )
    .await;
    let log = log.as_array().unwrap();
    let opened: Vec<&Value> = log.iter().filter(|t| t["to"] == "open").collect();
    assert!(
        opened.len() >= 2,
        "it should have tripped more than once: {log:?}"
    );
    // Each half-open follows its open by at least the open duration, which
    // doubles with each trip in a row (400 ms, 800 ms, 1.6 s, capped at 2 s).
    let mut in_a_row = 0u32;
    let mut last_open: Option<u64> = None;
    for t in log {
        let at = t["at"].as_u64().unwrap();
        match (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()) {
            (_, "open") => {
                in_a_row += 1;
                last_open = Some(at);
            }
            ("open", "half_open") => {
                let wait = 400u64 * 2u64.pow(in_a_row.saturating_sub(1));
                let opened_at = last_open.expect("half-open follows an open");
                // The log's times are the core's monotonic times on a wall-clock base.
                assert!(
                    at >= opened_at + wait.min(2000),
                    "half-open after {} ms, before the open duration {wait} ms: {log:?}",
                    at - opened_at
                );
            }
            (_, "closed") => in_a_row = 0,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_hundreds_of_clients_counts_are_exact_and_half_open_admits_exactly_its_trials() {
    let (upstream, sluice, client, _dir) = setup("      policy: default", &policy("1s", "")).await;
    let burst = |n: usize| {
        let client = client.clone();
        let proxy = sluice.proxy;
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move { fetch(&client, proxy, "/", &[]).await.status })
                })
                .collect();
            let mut by_status: HashMap<u16, usize> = HashMap::new();
            for task in tasks {
                *by_status.entry(task.await.unwrap()).or_default() += 1;
            }
            by_status
        }
    };

    // 300 concurrent successes: every one counted once.
    let ok = burst(300).await;
    assert_eq!(ok, HashMap::from([(200, 300)]));
    let closed = breaker(&client, sluice.admin, "api:stable").await;
    assert_eq!(closed["counters"]["successes"], 300);

    // Open it, wait out the open duration, then 200 concurrent clients
    // against a slow upstream: exactly the three trials get through.
    sluice.cli(&["breakers", "open", "api:stable"]);
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable").await["state"],
        "forced_open"
    );
    let output = sluice.cli(&["breakers", "reset", "api:stable"]);
    assert!(output.status.success(), "{output:?}");
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 500);
    }
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable").await["state"],
        "open"
    );
    upstream.behaviour.fail_every.store(0, Ordering::Relaxed);
    // Slow enough that all 200 arrive while the trials are in flight.
    upstream.behaviour.delay_ms.store(2000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let served_before = upstream.served.load(Ordering::Relaxed);
    let trial = burst(200).await;
    assert_eq!(trial.get(&200), Some(&3), "{trial:?}");
    assert_eq!(trial.get(&503), Some(&197), "{trial:?}");
    assert_eq!(upstream.served.load(Ordering::Relaxed) - served_before, 3);
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable").await["state"],
        "closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_failures_never_open_another_tenants_breaker() {
    let (upstream, sluice, client, _dir) = setup(
        "      policy: default\n      partition_header: x-tenant",
        &policy("1m", ""),
    )
    .await;
    *upstream.behaviour.fail_tenant.lock().unwrap() = Some("acme".into());
    for _ in 0..10 {
        fetch(&client, sluice.proxy, "/", &[("x-tenant", "acme")]).await;
        let other = fetch(&client, sluice.proxy, "/", &[("x-tenant", "globex")]).await;
        assert_eq!(other.status, 200);
    }
    let acme = fetch(&client, sluice.proxy, "/", &[("x-tenant", "acme")]).await;
    assert_eq!(acme.status, 503);
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable:acme").await["state"],
        "open"
    );
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable:globex").await["state"],
        "closed"
    );
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable").await["counters"]["failures"],
        0
    );

    // The per-tenant switch: acme's breaker is bypassed, globex's untouched.
    let (status, _) = admin_post(
        &client,
        sluice.admin,
        "/api/v1/breakers/partitions/acme/disable",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        fetch(&client, sluice.proxy, "/", &[("x-tenant", "acme")])
            .await
            .status,
        500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_what_it_would_do_and_never_rejects() {
    let (upstream, sluice, client, _dir) =
        setup("      policy: default", &policy("1m", "      mode: shadow")).await;
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    for _ in 0..30 {
        assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 500);
    }
    assert_eq!(upstream.served.load(Ordering::Relaxed), 30);
    let status = breaker(&client, sluice.admin, "api:stable").await;
    assert_eq!(status["state"], "open", "{status}");
    assert_eq!(status["counters"]["rejected"], 0);
    assert_eq!(status["counters"]["shadow_rejected"], 25);
    let log = admin_json(&client, sluice.admin, "/api/v1/breakers/transitions").await;
    assert_eq!(log[0]["to"], "open");
    assert_eq!(log[0]["shadow"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_serves_the_last_good_answer_or_the_static_fallback() {
    let policies = policy(
        "1m",
        "      fallback:
        stale: { max_age: 5m }
        static: { status: 200, body: 'cached later', headers: { x-degraded: 'yes' } }",
    );
    let (upstream, sluice, client, _dir) = setup("      policy: default", &policies).await;
    let fresh = fetch(&client, sluice.proxy, "/catalog?page=1", &[]).await;
    assert_eq!((fresh.status, fresh.body.as_str()), (200, "api"));
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(
            fetch(&client, sluice.proxy, "/other", &[]).await.status,
            500
        );
    }
    let stale = fetch(&client, sluice.proxy, "/catalog?page=1", &[]).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, "api");
    assert_eq!(stale.headers["x-sluice-fallback"], "stale");
    assert_eq!(stale.headers["x-upstream"], "api");
    assert!(stale.headers.contains_key("age"));
    // Never answered well before: the static fallback.
    let fixed = fetch(&client, sluice.proxy, "/catalog?page=2", &[]).await;
    assert_eq!((fixed.status, fixed.body.as_str()), (200, "cached later"));
    assert_eq!(fixed.headers["x-sluice-fallback"], "static");
    assert_eq!(fixed.headers["x-degraded"], "yes");
    assert_eq!(upstream.served.load(Ordering::Relaxed), 6);
    let status = breaker(&client, sluice.admin, "api:stable").await;
    assert_eq!(status["fallbacks"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_requests_are_shed_at_once() {
    let (upstream, sluice, client, _dir) =
        setup("      limits: { max_requests: 4 }", &policy("1s", "")).await;
    upstream.behaviour.delay_ms.store(800, Ordering::Relaxed);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let proxy = sluice.proxy;
            tokio::spawn(async move {
                let answer = fetch(&client, proxy, "/", &[]).await;
                (answer.status, sluice_error(&answer).to_string())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let shed = answers
        .iter()
        .filter(|(s, e)| *s == 503 && e == "overflow")
        .count();
    assert_eq!((ok, shed), (4, 16), "{answers:?}");
    assert_eq!(upstream.served.load(Ordering::Relaxed), 4);
    let metrics = try_metrics(&client, sluice.admin).await.unwrap();
    assert!(metrics.contains(
        "sluice_upstream_overflow_total{service=\"api\",version=\"stable\",limit=\"max_requests\"} 16"
    ), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_replaced_live_and_a_bad_one_is_refused() {
    let (upstream, sluice, client, _dir) = setup("      policy: default", &policy("1s", "")).await;
    let url = format!("{}/api/v1/breakers/policies/default", sluice.admin_url());

    let (status, problem) = send_json(
        &client,
        "PUT",
        url.clone(),
        r#"{"failure_threshold": 2, "half_open_calls": 1, "success_threshold": 2}"#,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "policy.success_threshold");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("above half_open_calls 1"));
    let unknown = send_json(&client, "PUT", url.clone(), r#"{"failure_treshold": 2}"#).await;
    assert_eq!(unknown.0, 400);
    assert!(unknown.1["detail"]
        .as_str()
        .unwrap()
        .contains("failure_treshold"));

    // The old policy still works: five failures to open.
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    for _ in 0..4 {
        fetch(&client, sluice.proxy, "/", &[]).await;
    }
    assert_eq!(
        breaker(&client, sluice.admin, "api:stable").await["state"],
        "closed"
    );
    sluice.cli(&["breakers", "reset", "api:stable"]);

    // A new policy from a file through the CLI: two failures now.
    sluice.set_policy("default", "failure_threshold: 2\nerror_rate_threshold: null\nopen_duration: 1m\nmax_open_duration: 1m\n");
    for _ in 0..2 {
        assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 500);
    }
    assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 503);

    // The table lists it; the global switch turns every breaker off.
    let list = sluice.cli(&["breakers", "list"]);
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(
        table.contains("api:stable") && table.contains("open"),
        "{table}"
    );
    let output = sluice.cli(&["breakers", "disable"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 500);
    let list = sluice.cli(&["breakers", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("switched OFF globally"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_trip_on_the_canary_rolls_the_rollout_back() {
    let stable = Upstream::start("v1").await;
    let canary = Upstream::start("v2").await;
    canary.behaviour.fail_every.store(1, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{CONFIG_HEAD}breakers:
  policies:
    default: {{ failure_threshold: 3, error_rate_threshold: null, open_duration: 1m }}
services:
  - name: web
    versions:
      stable: {{ endpoints: ["{}"] }}
      canary: {{ endpoints: ["{}"] }}
    breaker: {{ policy: default }}
    rollout:
      interval: 1s
      threshold: 1
      min_requests: 3
      step_weights: [50]
      checks:
        - metric: breaker_trips
          max: 0
"#,
        stable.endpoint(),
        canary.endpoint()
    );
    let sluice = Sluice::start(dir.path(), &config);
    let client = client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_counts, tasks) = spawn_load(sluice.proxy, 4, Duration::from_millis(10), stop.clone());
    eventually(
        Duration::from_secs(20),
        "the rollout to roll back",
        || async { (phase(&client, sluice.admin).await == "RolledBack").then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
    let reason = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .find(|r| r.contains("breaker_trips"))
        .map(str::to_string);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("above the maximum 0")),
        "{status}"
    );
    assert_eq!(
        breaker(&client, sluice.admin, "web:canary").await["counters"]["trips"],
        1
    );
}
