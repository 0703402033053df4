//! The checks every backend passes for the circuit-breaker policies replaced
//! through the admin API. Policies are one set per store: the checks use ids
//! of their own (`suite-…`) and hold whatever else a store already keeps.

use serde_json::json;

use crate::Store;

/// Runs every breaker-policy check that needs only one open store.
pub fn run_all(store: &dyn Store) {
    policies_round_trip(store);
}

/// A stored policy is read back unchanged, a second put replaces it, and ids
/// that share a beginning (or hold a slash) stay apart, in id order.
pub fn policies_round_trip(store: &dyn Store) {
    let first = json!({ "policy": { "mode": "shadow", "failure_threshold": 5 }, "config": "a" });
    let second = json!({ "policy": { "mode": "on", "failure_threshold": 3 }, "config": "b" });
    store
        .put_breaker_policy("suite-payments", &first)
        .expect("put");
    store
        .put_breaker_policy("suite-payments/eu", &second)
        .expect("put an id with a slash");
    store
        .put_breaker_policy("suite-pay", &second)
        .expect("put an id that begins another");
    let stored = store.breaker_policies().expect("read");
    assert_eq!(stored.get("suite-payments"), Some(&first));
    assert_eq!(stored.get("suite-payments/eu"), Some(&second));
    assert_eq!(stored.get("suite-pay"), Some(&second));
    let ours: Vec<&str> = stored
        .keys()
        .map(String::as_str)
        .filter(|id| id.starts_with("suite-pay"))
        .collect();
    assert_eq!(ours, ["suite-pay", "suite-payments", "suite-payments/eu"]);

    store
        .put_breaker_policy("suite-payments", &second)
        .expect("replace");
    let stored = store.breaker_policies().expect("read");
    assert_eq!(stored.get("suite-payments"), Some(&second));
    assert_eq!(stored.get("suite-payments/eu"), Some(&second));
}

/// What one store put, the next one opened on the same data reads.
pub fn policies_survive_reopen(open: &dyn Fn() -> Box<dyn Store>) {
    let policy = json!({ "policy": { "mode": "on", "open_duration": "30s" }, "config": "c" });
    {
        let store = open();
        store
            .put_breaker_policy("suite-reopen", &policy)
            .expect("put");
    }
    let store = open();
    let stored = store.breaker_policies().expect("read after reopen");
    assert_eq!(stored.get("suite-reopen"), Some(&policy));
}
