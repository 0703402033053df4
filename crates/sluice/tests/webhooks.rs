//! Rollout webhooks through the real binary, at Flagger's hook points: a
//! failing pre-rollout smoke test leaves traffic on stable with the hook's
//! answer in the reason; a healthy rollout calls the hooks in order and
//! holds while a gate says no; a rollback hook stops a rollout.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn plan(hooks: SocketAddr, names: &[&str]) -> String {
    let mut plan = String::from(
        "      interval: 300ms\n      threshold: 2\n      min_requests: 5\n      step_weights: [20, 50]\n      webhooks:\n",
    );
    for name in names {
        plan.push_str(&format!(
            "        - {{ name: {name}, type: {name}, url: 'http://{hooks}/{name}', timeout: 2s, retries: 0, metadata: {{ cmd: test }} }}\n"
        ));
    }
    plan
}

/// A receiver answering as `answers` (path, status, text), and sluice rolling
/// out v2 with the plan that `plan_for` makes from the receiver's address.
async fn start(
    answers: &[(&str, u16, &str)],
    plan_for: impl FnOnce(SocketAddr) -> String,
) -> (HookReceiver, Upstream, Sluice, tempfile::TempDir) {
    let receiver = HookReceiver::default();
    let hooks = receiver.start().await;
    for (path, status, text) in answers {
        receiver.answer(path, *status, text);
    }
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let config = service_config(&v1.endpoint(), &v2.endpoint(), &plan_for(hooks));
    let sluice = Sluice::start(dir.path(), &config);
    (receiver, v2, sluice, dir)
}

async fn with_load<T>(sluice: &Sluice, wait: impl std::future::Future<Output = T>) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let (_counts, tasks) = spawn_load(sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    let value = wait.await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_smoke_test_leaves_traffic_on_stable() {
    let (_receiver, v2, sluice, _dir) = start(
        &[("/pre_rollout", 500, "smoke test: GET /health answered 503")],
        |hooks| plan(hooks, &["pre_rollout"]),
    )
    .await;
    let client = client();
    let status = eventually(Duration::from_secs(10), "the rollout to end", || async {
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
        (status["phase"] == "RolledBack").then_some(status)
    })
    .await;
    let reason = status["decisions"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains(
            "pre_rollout webhook \"pre_rollout\" said no: 500 smoke test: GET /health answered 503"
        ),
        "{reason}"
    );
    for _ in 0..20 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v1");
    }
    assert_eq!(
        v2.served.load(Ordering::Relaxed),
        0,
        "no traffic reached the canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_called_in_order_and_a_gate_holds_the_weight() {
    let names = [
        "confirm_rollout",
        "pre_rollout",
        "rollout",
        "confirm_traffic_increase",
        "confirm_promotion",
        "post_rollout",
        "event",
    ];
    let (receiver, _v2, sluice, _dir) = start(
        &[("/confirm_traffic_increase", 403, "change freeze")],
        |hooks| plan(hooks, &names),
    )
    .await;
    let client = client();
    with_load(&sluice, async {
        // Held at 20% while the gate says no.
        eventually(
            Duration::from_secs(10),
            "the gate to be asked twice",
            || async {
                let asked = receiver
                    .hooks_called()
                    .iter()
                    .filter(|h| *h == "confirm_traffic_increase")
                    .count();
                (asked >= 2).then_some(())
            },
        )
        .await;
        let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
        assert_eq!(status["weight"], 20.0, "{status}");
        receiver.answer("/confirm_traffic_increase", 200, "ok");
        eventually(Duration::from_secs(20), "the promotion", || async {
            let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
            (status["phase"] == "Succeeded").then_some(())
        })
        .await;
    })
    .await;
    let called = eventually(Duration::from_secs(5), "post_rollout", || async {
        let called = receiver.hooks_called();
        called
            .contains(&"post_rollout".to_string())
            .then_some(called)
    })
    .await;
    assert_eq!(
        called[..2],
        ["confirm_rollout", "pre_rollout"],
        "{called:?}"
    );
    let position = |hook: &str| called.iter().position(|h| h == hook).unwrap();
    assert!(
        position("rollout") < position("confirm_promotion"),
        "{called:?}"
    );
    assert!(
        position("confirm_promotion") < position("post_rollout"),
        "{called:?}"
    );
    assert!(called.contains(&"event".to_string()), "{called:?}");
    let calls = receiver.calls.lock().unwrap();
    let (_, payload) = calls.iter().find(|(p, _)| p == "/rollout").unwrap();
    assert_eq!(payload["name"], "web");
    assert_eq!(payload["metadata"]["cmd"], "test");
    assert_eq!(payload["phase"], "Progressing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_hook_stops_the_rollout() {
    let (receiver, _v2, sluice, _dir) = start(&[("/rollback", 404, "no")], |hooks| {
        plan(hooks, &["rollback"]).replace("[20, 50]", "[20, 30, 40, 50, 60]")
    })
    .await;
    let client = client();
    let status = with_load(&sluice, async {
        eventually(
            Duration::from_secs(10),
            "the rollback hook to be asked",
            || async { (!receiver.hooks_called().is_empty()).then_some(()) },
        )
        .await;
        receiver.answer("/rollback", 200, "yes");
        eventually(Duration::from_secs(10), "the rollback", || async {
            let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
            (status["phase"] == "RolledBack").then_some(status)
        })
        .await
    })
    .await;
    let reasons = status["decisions"].to_string();
    assert!(
        reasons.contains("rollback requested by webhook \\\"rollback\\\""),
        "{reasons}"
    );
}
