//! Cluster mode: several `sluice run` nodes share one state in etcd. Every
//! node proxies and follows the stored state, flags and breaker policies:
//! read again when etcd's watch says they changed (and every
//! [`wakeup::SAFETY_POLL`]), or, while the watch is down, polled every
//! [`FOLLOW_INTERVAL`] (flags and breaker policies every
//! [`COUNTERS_INTERVAL`]); one node, the holder of the leased key
//! `PREFIX/leader`, decides. Each node registers itself under the leased key
//! `PREFIX/nodes/NODE` so `GET /api/v1/cluster` can list the fleet.
//!
//! Not for: deciding anything (the controller does, while [`Leadership`]
//! says it may) or storing states (the `EtcdStore` does, with a
//! compare-and-swap on each service's revision, which is what keeps two
//! leaders — a new one and one that has not noticed it lost its lease —
//! from both advancing a rollout).

mod fleet;
mod leadership;
#[cfg(test)]
mod tests;
mod wakeup;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_model::EtcdLocation;
use sluice_store::{b64, range_end, unb64, Gateway, GatewayError, Security, Store};
use tokio::sync::watch;

use crate::controller::Controller;
pub use fleet::FleetCounters;
pub use leadership::Leadership;
use wakeup::{Followed, Wakeups};

/// How often every node reads the stored state while etcd's watch is down
/// (a change then reaches every node's proxy within this plus one read).
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

/// How often every node publishes its counters and the leader sums them.
pub const COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// One node of the cluster.
pub struct Node {
    gateway: Gateway,
    prefix: String,
    /// This node's name (`SLUICE_NODE_NAME`, default `HOSTNAME:ADMIN_PORT`).
    pub name: String,
    /// Where this node's admin API listens.
    admin: String,
    /// A digest of the config this node runs.
    config_digest: String,
    lease_ttl: Duration,
    pub leadership: Arc<Leadership>,
    store: Arc<dyn Store>,
    /// `/readyz`: true once the stored state was loaded, false while etcd cannot be read.
    ready: Arc<AtomicBool>,
    /// What this node last read of each service's revision.
    revisions: Mutex<BTreeMap<String, u64>>,
    /// The fleet's counters the leader's analysis reads.
    fleet: Arc<FleetCounters>,
    /// The lease id, for the counter keys.
    lease_id: Mutex<Option<String>>,
    /// Whether etcd's watch wakes this node now (else it polls).
    watching: AtomicBool,
}

/// The lease this node holds, if any.
struct Lease {
    id: String,
    renewed: Instant,
}

// === impl Node ===

impl Node {
    /// A node of the cluster `location` names, reaching etcd with `security`
    /// (the store's TLS and user).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        location: &EtcdLocation,
        security: Security,
        admin: String,
        config_digest: String,
        store: Arc<dyn Store>,
        ready: Arc<AtomicBool>,
        leadership: Arc<Leadership>,
        fleet: Arc<FleetCounters>,
    ) -> Node {
        let port = admin.rsplit(':').next().unwrap_or("0").to_string();
        let name = std::env::var("SLUICE_NODE_NAME")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "node".into());
                format!("{host}:{port}")
            });
        Node {
            gateway: Gateway::with_security(
                location.endpoints.clone(),
                Duration::from_secs(2),
                security,
            ),
            prefix: location.prefix.clone(),
            name,
            admin,
            config_digest,
            lease_ttl: location.lease_ttl,
            leadership,
            store,
            ready,
            revisions: Mutex::new(BTreeMap::new()),
            fleet,
            lease_id: Mutex::new(None),
            watching: AtomicBool::new(false),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Follows the store, keeps the lease, campaigns, and registers this node, until `stop`.
    pub async fn run(
        self: Arc<Self>,
        controller: Arc<Controller>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut lease: Option<Lease> = None;
        let mut last_election = Instant::now() - self.lease_ttl;
        let mut last_counters = Instant::now();
        let watch_gateway = Gateway::with_security(
            self.gateway.endpoints().to_vec(),
            Duration::from_secs(2),
            self.gateway.security(),
        );
        let mut wakeups = Wakeups::watch(watch_gateway, &self.prefix);
        loop {
            let now = Instant::now();
            self.watching.store(wakeups.watching(), Ordering::Relaxed);
            if wakeups.due(Followed::States, FOLLOW_INTERVAL, now) {
                self.follow(&controller).await;
            }
            if last_counters.elapsed() >= COUNTERS_INTERVAL {
                last_counters = Instant::now();
                self.exchange_counters(&controller).await;
            }
            // Flags written through another node's API (or its release plans).
            if wakeups.due(Followed::Flags, COUNTERS_INTERVAL, now) {
                if let Err(e) = controller.flags().sync_from_store().await {
                    tracing::warn!(node = %self.name, "cluster: cannot serve the stored flags: {e}");
                }
            }
            // Breaker policies replaced through another node's API.
            if wakeups.due(Followed::BreakerPolicies, COUNTERS_INTERVAL, now) {
                let breakers = controller.metrics().breakers();
                let config = controller.config();
                let synced = crate::breaker_store::sync_from_store(
                    self.store.clone(),
                    breakers,
                    &config.breakers,
                )
                .await;
                if let Err(e) = synced {
                    tracing::warn!(node = %self.name, "cluster: cannot serve the stored breaker policies: {e}");
                }
            }
            if last_election.elapsed() >= self.lease_ttl / 3 {
                last_election = Instant::now();
                lease = self.elect(lease, &controller).await;
                *self.lease_id.lock().unwrap_or_else(|e| e.into_inner()) =
                    lease.as_ref().map(|l| l.id.clone());
            } else if lease.is_none() && !self.leadership.deciding() {
                self.leadership.set_leader(false);
            }
            // The election and the counters keep this pace; reads wait for
            // a change unless the watch is down.
            tokio::select! {
                _ = wakeups.changed(FOLLOW_INTERVAL) => {}
                _ = stop.changed() => break,
            }
        }
        // Hand over at once rather than after the lease runs out.
        if let Some(lease) = lease {
            self.leadership.set_leader(false);
            let node = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                node.gateway
                    .call("/v3/lease/revoke", &json!({ "ID": lease.id }))
            })
            .await;
        }
    }

    /// Publishes this node's counters (leased, one transaction); the leader
    /// then reads every node's into the fleet sums.
    async fn exchange_counters(self: &Arc<Self>, controller: &Controller) {
        let Some(lease) = self
            .lease_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let config = controller.config();
        let metrics = controller.metrics();
        let puts: Vec<Value> = config
            .services
            .iter()
            .map(|service| {
                let window = sluice_analysis::Window {
                    stable: metrics.snapshot(&service.name, sluice_proxy::Slot::Stable),
                    canary: metrics.snapshot(&service.name, sluice_proxy::Slot::Canary),
                };
                let key = self.counters_key(&self.name, &service.name);
                let value = serde_json::to_vec(&window).unwrap_or_default();
                json!({ "request_put": { "key": b64(key.as_bytes()), "value": b64(&value), "lease": lease } })
            })
            .collect();
        let leading = self.leadership.deciding();
        let node = self.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<(), GatewayError> {
            // etcd allows 128 operations per transaction by default.
            for chunk in puts.chunks(100) {
                node.gateway
                    .call("/v3/kv/txn", &json!({ "success": chunk }))?;
            }
            if leading {
                node.read_counters()?;
            }
            Ok(())
        })
        .await;
        if let Ok(Err(e)) = outcome {
            tracing::debug!(node = %self.name, "cluster: counters not exchanged: {e}");
        }
    }

    fn counters_key(&self, node: &str, service: &str) -> String {
        self.key(&format!("counters/{}/{}", escape(node), escape(service)))
    }

    /// Every node's published counters into the fleet sums.
    fn read_counters(&self) -> Result<(), GatewayError> {
        let prefix = self.key("counters/");
        let answer = self.gateway.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&range_end(prefix.as_bytes())) }),
        )?;
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            let (Some(key), Some(value)) = (
                kv["key"].as_str().and_then(unb64),
                kv["value"].as_str().and_then(unb64),
            ) else {
                continue;
            };
            let key = String::from_utf8_lossy(&key[prefix.len()..]).to_string();
            let Some((node, service)) = key.split_once('/') else {
                continue;
            };
            if let Ok(window) = serde_json::from_slice(&value) {
                self.fleet
                    .observe(&unescape(node), &unescape(service), window);
            }
        }
        Ok(())
    }

    /// Reads every service's state and hands it to the controller.
    async fn follow(&self, controller: &Controller) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.load_all()).await {
            Ok(Ok(states)) => {
                let mut revisions = BTreeMap::new();
                for state in states {
                    revisions.insert(state.service.clone(), state.revision);
                    let known = controller.state(&state.service).map(|s| s.revision);
                    if known != Some(state.revision) {
                        controller.follow(state).await;
                    }
                }
                *self.revisions.lock().unwrap_or_else(|e| e.into_inner()) = revisions;
                if !self.ready.swap(true, Ordering::SeqCst) {
                    tracing::info!(node = %self.name, "cluster: the stored state is loaded; ready");
                }
            }
            Ok(Err(e)) => {
                if self.ready.swap(false, Ordering::SeqCst) {
                    tracing::warn!(node = %self.name, "cluster: cannot read the store; serving the last routing, not ready: {e}");
                }
            }
            Err(_) => {}
        }
    }

    /// One election round: renew (or get) the lease, campaign when no one
    /// leads, register this node. Returns the lease still held.
    async fn elect(
        self: &Arc<Self>,
        lease: Option<Lease>,
        controller: &Controller,
    ) -> Option<Lease> {
        let node = self.clone();
        let was_leader = self.leadership.deciding();
        let outcome = tokio::task::spawn_blocking(move || node.elect_blocking(lease)).await;
        let (lease, leader) = match outcome {
            Ok(Ok((lease, leader))) => (Some(lease), Some(leader)),
            Ok(Err((lease, e))) => {
                tracing::warn!(node = %self.name, "cluster: election round failed: {e}");
                (lease, None)
            }
            Err(_) => (None, None),
        };
        match leader {
            Some(leader) if leader == self.name => {
                self.leadership.set_leader(true);
                self.leadership
                    .set_leader_hint(format!("{} at {}", self.name, self.admin));
                if !was_leader && self.leadership.deciding() {
                    tracing::info!(node = %self.name, "cluster: elected leader; resuming every service from the store");
                    if let Err(e) = controller.lead().await {
                        tracing::error!(node = %self.name, "cluster: cannot resume as leader: {e}");
                    }
                }
            }
            Some(other) => {
                if was_leader {
                    tracing::warn!(node = %self.name, "cluster: no longer the leader ({other} is)");
                }
                self.leadership.set_leader(false);
                self.leadership.set_leader_hint(other);
            }
            None => {
                if was_leader && !self.leadership.deciding() {
                    tracing::warn!(node = %self.name, "cluster: the lease ran out; no longer deciding");
                }
            }
        }
        lease
    }

    /// Returns the lease and the leader's name, or the lease still believed
    /// held and the error.
    #[allow(clippy::result_large_err)]
    fn elect_blocking(
        &self,
        lease: Option<Lease>,
    ) -> Result<(Lease, String), (Option<Lease>, GatewayError)> {
        let ttl = self.lease_ttl.as_secs().max(1);
        let lease = match lease {
            Some(lease) => {
                let sent = Instant::now();
                let answer = self
                    .gateway
                    .call("/v3/lease/keepalive", &json!({ "ID": lease.id }))
                    .map_err(|e| {
                        (
                            Some(Lease {
                                id: lease.id.clone(),
                                renewed: lease.renewed,
                            }),
                            e,
                        )
                    })?;
                let remaining = answer["result"]["TTL"]
                    .as_str()
                    .and_then(|t| t.parse::<u64>().ok());
                match remaining {
                    Some(seconds) if seconds > 0 => {
                        self.leadership.renewed(sent, Duration::from_secs(seconds));
                        Lease {
                            id: lease.id,
                            renewed: sent,
                        }
                    }
                    // Expired while etcd could not be reached: start over.
                    _ => {
                        self.leadership.set_leader(false);
                        self.grant(ttl).map_err(|e| (None, e))?
                    }
                }
            }
            None => self.grant(ttl).map_err(|e| (None, e))?,
        };
        let leader_key = self.key("leader");
        let me = json!({ "node": self.name, "admin": self.admin }).to_string();
        let campaign = json!({
            "compare": [{ "key": b64(leader_key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": b64(leader_key.as_bytes()), "value": b64(me.as_bytes()), "lease": lease.id } }],
            "failure": [{ "request_range": { "key": b64(leader_key.as_bytes()) } }],
        });
        let keep = |e| {
            (
                Some(Lease {
                    id: lease.id.clone(),
                    renewed: lease.renewed,
                }),
                e,
            )
        };
        let answer = self.gateway.call("/v3/kv/txn", &campaign).map_err(keep)?;
        let leader = if answer["succeeded"].as_bool() == Some(true) {
            self.name.clone()
        } else {
            let value = answer["responses"][0]["response_range"]["kvs"][0]["value"]
                .as_str()
                .and_then(unb64)
                .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
                .unwrap_or(Value::Null);
            match (value["node"].as_str(), value["admin"].as_str()) {
                (Some(node), _) if node == self.name => node.to_string(),
                (Some(node), Some(admin)) => format!("{node} at {admin}"),
                _ => "none elected yet".into(),
            }
        };
        let leading = leader == self.name;
        let registration = json!({
            "node": self.name,
            "admin": self.admin,
            "leader": leading,
            "config_digest": self.config_digest,
            "watching": self.watching.load(Ordering::Relaxed),
            "revisions": *self.revisions.lock().unwrap_or_else(|e| e.into_inner()),
        })
        .to_string();
        let put = json!({
            "key": b64(self.key(&format!("nodes/{}", self.name)).as_bytes()),
            "value": b64(registration.as_bytes()),
            "lease": lease.id,
        });
        self.gateway.call("/v3/kv/put", &put).map_err(keep)?;
        Ok((lease, leader))
    }

    fn grant(&self, ttl: u64) -> Result<Lease, GatewayError> {
        let sent = Instant::now();
        let answer = self
            .gateway
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        let id = answer["ID"].as_str().unwrap_or_default().to_string();
        self.leadership.renewed(sent, Duration::from_secs(ttl));
        Ok(Lease { id, renewed: sent })
    }

    /// `GET /api/v1/cluster`: every registered node with its lag, and the leader.
    pub fn status(&self) -> Result<Value, GatewayError> {
        let nodes_key = self.key("nodes/");
        let request = json!({ "key": b64(nodes_key.as_bytes()), "range_end": b64(&range_end(nodes_key.as_bytes())) });
        // A read is safe to repeat: once more after a moment, e.g. while etcd elects its leader.
        let answer = match self.gateway.call("/v3/kv/range", &request) {
            Ok(answer) => answer,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(500));
                self.gateway.call("/v3/kv/range", &request)?
            }
        };
        let stored = self
            .revisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut leader = Value::Null;
        let nodes: Vec<Value> = answer["kvs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|kv| kv["value"].as_str().and_then(unb64))
            .filter_map(|v| serde_json::from_slice::<Value>(&v).ok())
            .map(|mut node| {
                let lag: u64 = stored
                    .iter()
                    .map(|(service, revision)| {
                        let seen = node["revisions"][service].as_u64().unwrap_or(0);
                        revision.saturating_sub(seen)
                    })
                    .sum();
                node["lag"] = json!(lag);
                if node["leader"].as_bool() == Some(true) {
                    leader = node["node"].clone();
                }
                node
            })
            .collect();
        Ok(json!({
            "this_node": self.name,
            "leader": leader,
            "lease_ttl_seconds": self.lease_ttl.as_secs(),
            "store_revisions": stored,
            "nodes": nodes,
        }))
    }
}

/// Names in keys: `%` and `/` escaped, so a name never spans two levels.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn unescape(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}
