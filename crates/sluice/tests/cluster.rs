//! Cluster mode end to end: a real etcd and real sluice nodes on loopback,
//! load spread over every node. One leader decides; followers route by the
//! stored state and refuse changes with the leader's name; kill -9 of the
//! leader hands over at the same step; etcd down keeps the last routing (and
//! the nodes' etcd watch comes back with it); a
//! breaker policy replaced through one node is served by every node.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd::{Etcd, EtcdCluster};
use serde_json::Value;

/// Many small steps, one per second when the checks pass.
const PLAN: &str = "      interval: 1s
      threshold: 2
      step_weights: [10, 20, 30, 40, 50, 60, 70, 80, 90]
      min_requests: 5
      checks:
        - metric: success_rate
          min: 95
";

const LEASE_TTL: u64 = 2;

fn config(etcd: &Etcd, prefix: &str, v1: &Upstream, v2: &Upstream) -> String {
    service_config(&v1.endpoint(), &v2.endpoint(), PLAN).replace(
        "store: sluice.db",
        &format!(
            "store: \"{}\"\nflags:\n  definitions:\n    flags:\n      new-checkout:\n        state: ENABLED\n        variants: {{ on: true, off: false }}\n        defaultVariant: off\n        percentage: 0",
            etcd.store_url(prefix, LEASE_TTL)
        ),
    )
}

/// The percentage a node serves for the `new-checkout` flag.
async fn flag_percentage(client: &HttpClient, node: &Node) -> Option<f64> {
    let flag = admin_json(client, node.sluice.admin, "/api/v1/flags/new-checkout").await;
    flag["flag"]["percentage"].as_f64()
}

struct Node {
    name: &'static str,
    sluice: Sluice,
    _dir: tempfile::TempDir,
}

fn start_node(name: &'static str, config: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.yaml"), config).unwrap();
    let path = dir.path().join("sluice.yaml");
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "-c", path.to_str().unwrap()],
        &[("SLUICE_NODE_NAME", name)],
    );
    Node {
        name,
        sluice,
        _dir: dir,
    }
}

async fn ready(client: &HttpClient, node: &Node) -> bool {
    let url = format!("http://{}/readyz", node.sluice.admin);
    match client
        .get(url.parse().unwrap())
        .await
        .map(|r| r.status().as_u16())
    {
        Ok(status) => status == 200,
        Err(_) => false,
    }
}

/// The leader a node's `/api/v1/cluster` names; None while it cannot say
/// (503 while etcd elects a new leader of its own, say).
async fn leader_seen_by(client: &HttpClient, node: &Node) -> Option<String> {
    let (status, _, body) = get(client, node.sluice.admin, "/api/v1/cluster", &[]).await;
    if status != 200 {
        return None;
    }
    let cluster: Value = serde_json::from_str(&body).ok()?;
    cluster["leader"].as_str().map(str::to_string)
}

async fn rollout(client: &HttpClient, node: &Node) -> Value {
    admin_json(client, node.sluice.admin, "/api/v1/rollouts/web").await
}

async fn history(client: &HttpClient, node: &Node) -> Vec<Value> {
    admin_json(client, node.sluice.admin, "/api/v1/rollouts/web/history")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until every node is ready and agrees on one leader among them; returns its index.
async fn elected(client: &HttpClient, nodes: &[&Node]) -> usize {
    eventually(
        Duration::from_secs(20),
        "one leader all nodes agree on",
        || async {
            let mut seen = Vec::new();
            for node in nodes {
                if !ready(client, node).await {
                    return None;
                }
                seen.push(leader_seen_by(client, node).await?);
            }
            let first = seen[0].clone();
            if seen.iter().any(|s| *s != first) {
                return None;
            }
            nodes.iter().position(|n| n.name == first)
        },
    )
    .await
}

/// The decision log holds each (rollout, seq) once, in order, and its
/// weights climb the plan without skipping a step or going back.
fn assert_no_step_skipped_or_repeated(decisions: &[Value]) {
    let seqs: Vec<u64> = decisions
        .iter()
        .map(|d| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "{decisions:#?}"
    );
    let mut weights: Vec<f64> = decisions
        .iter()
        .filter_map(|d| d["weight"].as_f64())
        .filter(|w| *w > 0.0)
        .collect();
    assert!(
        weights.windows(2).all(|w| w[0] <= w[1]),
        "weights went back: {weights:?}"
    );
    weights.dedup();
    let plan = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
    assert_eq!(weights[..], plan[..weights.len()], "a step was skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_decides_and_followers_route_by_its_state() {
    let etcd = Etcd::start();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = config(&etcd, "one-leader", &v1, &v2);
    let a = start_node("a", &config);
    let b = start_node("b", &config);
    let client = client();
    let nodes = [&a, &b];
    let leader = nodes[elected(&client, &nodes).await];
    let follower = nodes[1 - nodes.iter().position(|n| n.name == leader.name).unwrap()];

    // A follower refuses changes and names the leader.
    let (status, problem) = admin_post(
        &client,
        follower.sluice.admin,
        "/api/v1/rollouts/web/pause",
        None,
    )
    .await;
    assert_eq!(status, 421, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(leader.name),
        "{problem}"
    );
    eventually(Duration::from_secs(5), "both nodes registered", || async {
        let cluster = admin_json(&client, follower.sluice.admin, "/api/v1/cluster").await;
        let names: Vec<String> = cluster["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["node"].as_str().map(str::to_string))
            .collect();
        (names == ["a", "b"]).then_some(())
    })
    .await;
    let table = follower.sluice.cli(&["cluster", "status"]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.starts_with(&format!("leader: {}\n", leader.name)),
        "{table}"
    );
    let listed: Vec<&str> = table
        .lines()
        .skip(2)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(listed, ["a", "b"], "{table}");

    // A flag changed through the leader's API is served by the follower within about a second.
    assert_eq!(flag_percentage(&client, follower).await, Some(0.0));
    let (status, _, body) = post_json(
        &client,
        leader.sluice.admin,
        "/api/v1/flags/new-checkout/percentage",
        serde_json::json!({ "percentage": 40 }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(3),
        "the follower to serve the flag change",
        || async { (flag_percentage(&client, follower).await == Some(40.0)).then_some(()) },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let _load_a = spawn_load(a.sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    let _load_b = spawn_load(b.sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    // Each new weight on the leader reaches the follower within about a second.
    let mut checked = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while checked < 3 && Instant::now() < deadline {
        let on_leader = rollout(&client, leader).await;
        if on_leader["steps_taken"].as_u64().unwrap_or(0) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let revision = on_leader["revision"].clone();
        let weight = on_leader["weight"].clone();
        let seen = Instant::now();
        eventually(
            Duration::from_millis(1500),
            "the follower to take the leader's weight",
            || async {
                let on_follower = rollout(&client, follower).await;
                (on_follower["revision"].as_u64() >= revision.as_u64()).then_some(())
            },
        )
        .await;
        let on_follower = rollout(&client, follower).await;
        if on_follower["revision"] == revision {
            assert_eq!(on_follower["weight"], weight, "after {:?}", seen.elapsed());
            checked += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(checked, 3, "the rollout did not advance");

    // A node that joins late is ready only once it routes by the current state.
    let current = rollout(&client, leader).await;
    let c = start_node("c", &config);
    eventually(
        Duration::from_secs(10),
        "the late node to be ready",
        || async { ready(&client, &c).await.then_some(()) },
    )
    .await;
    let on_late = rollout(&client, &c).await;
    assert!(
        on_late["revision"].as_u64() >= current["revision"].as_u64(),
        "ready at {on_late}\nwhile the leader had {current}"
    );
    assert!(on_late["steps_taken"].as_u64() >= Some(1), "{on_late}");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        history(&client, follower).await,
        history(&client, leader).await
    );
    assert!(!follower.sluice.log_text().contains("elected leader"));
    a.sluice.kill9();
    b.sluice.kill9();
    c.sluice.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_analyses_traffic_that_only_followers_proxied() {
    let etcd = Etcd::start();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = config(&etcd, "fleet-counters", &v1, &v2);
    let a = start_node("a", &config);
    let b = start_node("b", &config);
    let client = client();
    let nodes = [&a, &b];
    let leader = nodes[elected(&client, &nodes).await];
    let follower = if leader.name == "a" { &b } else { &a };
    let stop = Arc::new(AtomicBool::new(false));
    let (load, _) = spawn_load(
        follower.sluice.proxy,
        2,
        Duration::from_millis(5),
        stop.clone(),
    );
    eventually(
        Duration::from_secs(30),
        "two steps taken on the follower's traffic alone",
        || async {
            (rollout(&client, leader).await["steps_taken"]
                .as_u64()
                .unwrap_or(0)
                >= 2)
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert!(load.ok.load(Ordering::Relaxed) > 0);
    let decisions = history(&client, leader).await;
    // The leader proxied nothing: every request it analysed came through the follower.
    let analysed: u64 = decisions
        .iter()
        .filter_map(|d| d["analysis"]["canary_requests"].as_u64())
        .sum();
    assert!(analysed >= 10, "{decisions:#?}");
    assert_no_step_skipped_or_repeated(&decisions);
    a.sluice.kill9();
    b.sluice.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_hands_over_at_the_same_step() {
    let etcd = Etcd::start();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = config(&etcd, "handover", &v1, &v2);
    let a = start_node("a", &config);
    let b = start_node("b", &config);
    let client = client();
    let leader_index = elected(&client, &[&a, &b]).await;
    let (leader, follower) = if leader_index == 0 { (a, b) } else { (b, a) };
    let stop = Arc::new(AtomicBool::new(false));
    let _load_l = spawn_load(
        leader.sluice.proxy,
        2,
        Duration::from_millis(5),
        stop.clone(),
    );
    let _load_f = spawn_load(
        follower.sluice.proxy,
        2,
        Duration::from_millis(5),
        stop.clone(),
    );
    let before = eventually(Duration::from_secs(40), "two steps taken", || async {
        let status = rollout(&client, &leader).await;
        (status["steps_taken"].as_u64().unwrap_or(0) >= 2).then_some(status)
    })
    .await;
    leader.sluice.kill9();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the follower to be elected",
        || async {
            (leader_seen_by(&client, &follower).await.as_deref() == Some(follower.name))
                .then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(LEASE_TTL + 3),
        "took {took:?} with a {LEASE_TTL}s lease"
    );
    let after = rollout(&client, &follower).await;
    assert!(
        after["steps_taken"].as_u64() >= before["steps_taken"].as_u64(),
        "before {before}\nafter {after}"
    );
    let resumed = before["steps_taken"].as_u64().unwrap() + 2;
    eventually(
        Duration::from_secs(30),
        "the new leader to take two more steps",
        || async {
            let status = rollout(&client, &follower).await;
            (status["steps_taken"].as_u64().unwrap_or(0) >= resumed).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_no_step_skipped_or_repeated(&history(&client, &follower).await);
    follower.sluice.kill9();
}

/// How many registered nodes say etcd's watch wakes them, as `node` lists them.
async fn watching(client: &HttpClient, node: &Node) -> usize {
    let (status, _, body) = get(client, node.sluice.admin, "/api/v1/cluster", &[]).await;
    if status != 200 {
        return 0;
    }
    let cluster: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    cluster["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["watching"].as_bool() == Some(true))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_nodes_keep_routing_and_decide_nothing() {
    let mut etcd = Etcd::start();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = config(&etcd, "etcd-down", &v1, &v2);
    let a = start_node("a", &config);
    let b = start_node("b", &config);
    let client = client();
    let leader = [&a, &b][elected(&client, &[&a, &b]).await];
    let stop = Arc::new(AtomicBool::new(false));
    let (load_a, _) = spawn_load(a.sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    let (load_b, _) = spawn_load(b.sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    eventually(Duration::from_secs(40), "a step taken", || async {
        (rollout(&client, leader).await["steps_taken"]
            .as_u64()
            .unwrap_or(0)
            >= 1)
            .then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "both nodes woken by etcd's watch",
        || async { (watching(&client, &a).await == 2).then_some(()) },
    )
    .await;

    etcd.stop();
    eventually(
        Duration::from_secs(5),
        "both nodes to report not ready",
        || async { (!ready(&client, &a).await && !ready(&client, &b).await).then_some(()) },
    )
    .await;
    let frozen = rollout(&client, leader).await;
    let served = (
        load_a.ok.load(Ordering::Relaxed),
        load_b.ok.load(Ordering::Relaxed),
    );
    // Longer than the lease and several analysis intervals.
    tokio::time::sleep(Duration::from_secs(LEASE_TTL + 3)).await;
    let still = rollout(&client, leader).await;
    assert_eq!(
        still["revision"], frozen["revision"],
        "decided without the store"
    );
    assert_eq!(still["weight"], frozen["weight"]);
    assert!(
        load_a.ok.load(Ordering::Relaxed) > served.0 + 10,
        "node a stopped serving"
    );
    assert!(
        load_b.ok.load(Ordering::Relaxed) > served.1 + 10,
        "node b stopped serving"
    );

    etcd.resume();
    eventually(
        Duration::from_secs(10),
        "both nodes ready again",
        || async { (ready(&client, &a).await && ready(&client, &b).await).then_some(()) },
    )
    .await;
    let leader = [&a, &b][elected(&client, &[&a, &b]).await];
    eventually(
        Duration::from_secs(20),
        "both nodes watching etcd again",
        || async { (watching(&client, &a).await == 2).then_some(()) },
    )
    .await;
    let frozen_steps = frozen["steps_taken"].as_u64().unwrap();
    eventually(
        Duration::from_secs(30),
        "the rollout to continue",
        || async {
            (rollout(&client, leader).await["steps_taken"]
                .as_u64()
                .unwrap_or(0)
                > frozen_steps)
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_no_step_skipped_or_repeated(&history(&client, leader).await);
    assert_eq!(load_a.failed.load(Ordering::Relaxed), 0);
    assert_eq!(load_b.failed.load(Ordering::Relaxed), 0);
    a.sluice.kill9();
    b.sluice.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_three_etcd_members_survive_a_member_and_the_leader_dying() {
    let mut etcd = EtcdCluster::start(3);
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = service_config(&v1.endpoint(), &v2.endpoint(), PLAN).replace(
        "store: sluice.db",
        &format!("store: \"{}\"", etcd.store_url("three", LEASE_TTL)),
    );
    let nodes = vec![
        start_node("a", &config),
        start_node("b", &config),
        start_node("c", &config),
    ];
    let client = client();
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader_index = elected(&client, &refs).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = nodes
        .iter()
        .map(|n| spawn_load(n.sluice.proxy, 1, Duration::from_millis(5), stop.clone()).0)
        .collect();
    let before = eventually(Duration::from_secs(40), "two steps taken", || async {
        let status = rollout(&client, refs[leader_index]).await;
        (status["steps_taken"].as_u64().unwrap_or(0) >= 2).then_some(status)
    })
    .await;

    // The first member (every node's first endpoint) and the leader die together.
    etcd.kill(0);
    let mut nodes = nodes;
    let leader = nodes.remove(leader_index);
    leader.sluice.kill9();
    let killed = Instant::now();
    let survivors: Vec<&Node> = nodes.iter().collect();
    let new_leader = survivors[elected(&client, &survivors).await];
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(LEASE_TTL + 6),
        "took {took:?} with a {LEASE_TTL}s lease"
    );
    let resumed = before["steps_taken"].as_u64().unwrap() + 2;
    eventually(
        Duration::from_secs(30),
        "the new leader to take two more steps",
        || async {
            let status = rollout(&client, new_leader).await;
            (status["steps_taken"].as_u64().unwrap_or(0) >= resumed).then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_no_step_skipped_or_repeated(&history(&client, new_leader).await);
    for load in &loads {
        assert!(load.ok.load(Ordering::Relaxed) > 0);
    }
    for node in nodes {
        node.sluice.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_policy_replaced_through_one_node_is_served_by_every_node() {
    let etcd = Etcd::start();
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let config = config(&etcd, "breaker-policies", &v1, &v2);
    let a = start_node("a", &config);
    let b = start_node("b", &config);
    let client = client();
    elected(&client, &[&a, &b]).await;
    assert_ne!(
        default_failure_threshold(&client, b.sluice.admin).await,
        Some(2)
    );

    a.sluice.set_policy(
        "default",
        "failure_threshold: 2\nerror_rate_threshold: null\n",
    );
    assert_eq!(
        default_failure_threshold(&client, a.sluice.admin).await,
        Some(2)
    );
    // Every node reads the stored policies each second.
    eventually(
        Duration::from_secs(3),
        "node b to serve the policy replaced through node a",
        || async {
            (default_failure_threshold(&client, b.sluice.admin).await == Some(2)).then_some(())
        },
    )
    .await;
    // A node that starts later serves it from the start.
    let c = start_node("c", &config);
    assert_eq!(
        default_failure_threshold(&client, c.sluice.admin).await,
        Some(2)
    );
    a.sluice.kill9();
    b.sluice.kill9();
    c.sluice.kill9();
}
