//! Two controllers on one store that both believe they lead (a new leader
//! and an old one that has not noticed its lease ran out): the store's
//! compare-and-swap lets one write win, and the other takes its state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_model::Config;
use sluice_proxy::{Metrics, Proxy, RouteTable};
use sluice_rollout::{Event, Phase};
use sluice_store::{MemoryStore, Store};

use super::Leadership;
use crate::controller::{ControlError, Controller, Request};

const CONFIG: &str = r#"
services:
  - name: web
    versions:
      stable: { endpoints: ["127.0.0.1:1"] }
      canary: { endpoints: ["127.0.0.1:2"] }
    rollout:
      interval: 1h
      step_weights: [10, 50]
"#;

async fn controller(store: Arc<MemoryStore>, leadership: Arc<Leadership>) -> Arc<Controller> {
    let config = Config::from_yaml(CONFIG).unwrap();
    let metrics = Metrics::new();
    let proxy = Proxy::new(
        &config.proxy,
        RouteTable::build(&config, &HashMap::new(), &metrics),
        metrics.clone(),
    );
    let flags = crate::flags::FlagServer::start(&config.flags, &[], store.clone()).unwrap();
    Controller::start_with(
        Arc::new(config),
        store,
        proxy,
        metrics,
        flags,
        leadership,
        None,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn of_two_nodes_that_both_think_they_lead_only_one_writes() {
    let store = Arc::new(MemoryStore::new());
    let old = controller(store.clone(), Arc::new(Leadership::single())).await;
    let started = old.state("web").unwrap();
    assert!(
        started.rollout.is_some(),
        "the config's canary starts a rollout"
    );

    let new_role = Arc::new(Leadership::follower());
    let new = controller(store.clone(), new_role.clone()).await;
    // A follower refuses changes and names the leader it knows of.
    let refused = new
        .request("web", Request::Event(Event::Pause))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ControlError::NotLeader { .. }),
        "{refused}"
    );

    // The new node is elected, but before it reloads, the old one (its
    // lease run out unnoticed) pauses the rollout.
    new_role.set_leader(true);
    new_role.renewed(Instant::now(), Duration::from_secs(5));
    let paused = old
        .request("web", Request::Event(Event::Pause))
        .await
        .unwrap();
    assert_eq!(paused.revision, started.revision + 1);

    let lost = new
        .request("web", Request::Event(Event::Pause))
        .await
        .unwrap_err();
    assert!(
        matches!(&lost, ControlError::Store(e) if e.is_conflict()),
        "{lost}"
    );
    // Nothing of the loser's was written, and it now holds the winner's state.
    assert_eq!(new.state("web").unwrap(), paused);
    let stored = store.load("web").unwrap().unwrap();
    assert_eq!(stored, paused);
    let pauses = store
        .history("web", None, None)
        .unwrap()
        .into_iter()
        .filter(|d| d.to == Phase::Paused)
        .count();
    assert_eq!(pauses, 1);
    // From the winner's state, the new leader goes on.
    let resumed = new
        .request("web", Request::Event(Event::Resume))
        .await
        .unwrap();
    assert_eq!(resumed.revision, paused.revision + 1);
}
