//! The fleet's built-in counters: every node publishes its cumulative
//! per-version counters under leased keys `PREFIX/counters/NODE/SERVICE`
//! every second; the leader reads them all and keeps, per service, a
//! cumulative sum over nodes that only grows (like one proxy's counters), so
//! the controller's windows (`current − baseline`) see every node's traffic.
//!
//! A node seen for the first time counts from its first snapshot on (its
//! earlier traffic belongs to no window of ours); a node whose counters went
//! down restarted, and counts from zero again. Not for: judging anything.

use std::collections::HashMap;
use std::sync::Mutex;

use sluice_analysis::{VersionWindow, Window};

/// Per service, the fleet's cumulative counters.
#[derive(Default)]
pub struct FleetCounters {
    inner: Mutex<Sums>,
}

#[derive(Default)]
struct Sums {
    /// The last snapshot of each (node, service).
    last: HashMap<(String, String), Window>,
    /// Per service, the sum of every node's growth since first seen.
    total: HashMap<String, Window>,
}

// === impl FleetCounters ===

impl FleetCounters {
    /// The fleet's cumulative counters of `service` (zero before any were read).
    pub fn window(&self, service: &str) -> Window {
        let sums = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sums.total.get(service).cloned().unwrap_or_default()
    }

    /// Takes one node's cumulative snapshot of one service.
    pub fn observe(&self, node: &str, service: &str, snapshot: Window) {
        let mut sums = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (node.to_string(), service.to_string());
        let growth = match sums.last.get(&key) {
            None => Window::default(),
            Some(last) if restarted(last, &snapshot) => snapshot.clone(),
            Some(last) => snapshot.since(last),
        };
        sums.last.insert(key, snapshot);
        let total = sums.total.entry(service.to_string()).or_default();
        add(&mut total.stable, &growth.stable);
        add(&mut total.canary, &growth.canary);
    }
}

fn restarted(last: &Window, now: &Window) -> bool {
    now.stable.requests < last.stable.requests || now.canary.requests < last.canary.requests
}

fn add(total: &mut VersionWindow, more: &VersionWindow) {
    total.requests += more.requests;
    total.errors += more.errors;
    total.latency.merge(&more.latency);
    total.breaker_trips += more.breaker_trips;
    total.mirror_compared += more.mirror_compared;
    total.mirror_mismatches += more.mirror_mismatches;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(stable: u64, canary: u64, canary_errors: u64) -> Window {
        let mut window = Window::default();
        window.stable.requests = stable;
        window.canary.requests = canary;
        window.canary.errors = canary_errors;
        window.canary.latency.record(1_000);
        window
    }

    #[test]
    fn the_sum_grows_with_every_node_and_survives_a_restart() {
        let fleet = FleetCounters::default();
        fleet.observe("a", "web", snapshot(100, 10, 0));
        fleet.observe("b", "web", snapshot(50, 5, 1));
        assert_eq!(
            fleet.window("web"),
            Window::default(),
            "first sightings count from then on"
        );
        fleet.observe("a", "web", snapshot(120, 20, 0));
        fleet.observe("b", "web", snapshot(60, 9, 2));
        let window = fleet.window("web");
        assert_eq!((window.stable.requests, window.canary.requests), (30, 14));
        assert_eq!(window.canary.errors, 1);
        // b restarted: its new counters all count.
        fleet.observe("b", "web", snapshot(3, 1, 0));
        let after = fleet.window("web");
        assert_eq!((after.stable.requests, after.canary.requests), (33, 15));
        assert_eq!(fleet.window("other"), Window::default());
    }
}
