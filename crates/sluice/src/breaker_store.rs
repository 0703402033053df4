//! Circuit-breaker policies replaced through the admin API outlive the
//! process and reach every node: the API stores each one with a digest of
//! the config's `breakers` section it replaced a policy of, and a node
//! serves the stored policies made under the `breakers` section it runs, at
//! start and (cluster mode) every second. A changed section (a new config)
//! wins over what was stored under the old one, as it does on one node.
//!
//! Not for: checking or applying a policy (the proxy's `Breakers` does).

use std::sync::Arc;

use serde_json::{json, Value};
use sluice_model::{BreakersConfig, PolicySpec};
use sluice_proxy::Breakers;
use sluice_store::Store;

/// A stable digest of a `breakers` section (FNV-1a over its JSON, whose maps
/// are ordered), the same on every node and across restarts.
pub fn config_digest(config: &BreakersConfig) -> String {
    let json = serde_json::to_string(config).unwrap_or_default();
    let hash = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Stores a policy the API just applied; durable on return.
pub async fn store_policy(
    store: Arc<dyn Store>,
    id: &str,
    spec: &PolicySpec,
    config: &BreakersConfig,
) -> Result<(), String> {
    let record = json!({ "policy": spec, "config": config_digest(config) });
    let id = id.to_string();
    tokio::task::spawn_blocking(move || store.put_breaker_policy(&id, &record))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Serves every stored policy made under `config` that this node does not
/// serve yet; returns the ids it took. A stored policy that no longer
/// passes validation is skipped with a warning.
pub async fn sync_from_store(
    store: Arc<dyn Store>,
    breakers: &Breakers,
    config: &BreakersConfig,
) -> Result<Vec<String>, String> {
    let stored = tokio::task::spawn_blocking(move || store.breaker_policies())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let digest = Value::String(config_digest(config));
    let mut taken = Vec::new();
    for (id, record) in stored {
        if record["config"] != digest {
            continue;
        }
        let served = breakers
            .policy(&id)
            .ok()
            .and_then(|status| serde_json::to_value(status.policy).ok());
        if served.as_ref() == Some(&record["policy"]) {
            continue;
        }
        let spec = match serde_json::from_value::<PolicySpec>(record["policy"].clone()) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(policy = %id, "stored breaker policy is unreadable, skipped: {e}");
                continue;
            }
        };
        match breakers.put_policy(&id, spec) {
            Ok(_) => {
                tracing::info!(policy = %id, "breaker policy taken from the store");
                taken.push(id);
            }
            Err(e) => tracing::warn!(policy = %id, "stored breaker policy refused, skipped: {e}"),
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_section_and_nothing_else() {
        let empty = BreakersConfig::default();
        assert_eq!(
            config_digest(&empty),
            config_digest(&BreakersConfig::default())
        );
        let mut changed = BreakersConfig::default();
        changed
            .policies
            .insert("payments".into(), PolicySpec::default());
        assert_ne!(config_digest(&empty), config_digest(&changed));
        assert_eq!(config_digest(&empty).len(), 16);
    }

    #[tokio::test]
    async fn a_stored_policy_is_served_once_and_only_under_its_section() {
        let store: Arc<dyn Store> = Arc::new(sluice_store::MemoryStore::new());
        let breakers = sluice_proxy::Metrics::new().breakers().clone();
        let config = BreakersConfig::default();
        let spec: PolicySpec =
            serde_json::from_value(json!({ "mode": "on", "failure_threshold": 2 })).unwrap();
        store_policy(store.clone(), "payments", &spec, &config)
            .await
            .unwrap();
        let taken = sync_from_store(store.clone(), &breakers, &config).await;
        assert_eq!(taken, Ok(vec!["payments".to_string()]));
        assert_eq!(breakers.policy("payments").unwrap().policy, spec);
        // Already served: nothing to take.
        let again = sync_from_store(store.clone(), &breakers, &config).await;
        assert_eq!(again, Ok(vec![]));
        // Another `breakers` section: the stored policy is not for it.
        let mut other = BreakersConfig::default();
        other.enabled = !other.enabled;
        let fresh = sluice_proxy::Metrics::new().breakers().clone();
        assert_eq!(sync_from_store(store, &fresh, &other).await, Ok(vec![]));
        assert!(fresh.policy("payments").is_err());
    }
}
