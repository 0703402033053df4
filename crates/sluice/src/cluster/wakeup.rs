//! When a node reads the store again: at once when etcd's watch says a key
//! it follows changed, every [`SAFETY_POLL`] besides while the watch is up,
//! and on the polling intervals ([`super::FOLLOW_INTERVAL`],
//! [`super::COUNTERS_INTERVAL`]) while it is down.
//!
//! Not for: reading (the follow loop does); the watch only wakes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::{spawn_watch, Gateway, Wake, WatchHandle};
use tokio::sync::Notify;

/// How often a node reads the store while the watch is up, in case an
/// event was lost.
pub const SAFETY_POLL: Duration = Duration::from_secs(5);

/// What a node follows, in the order of the watched prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// Services' states (`PREFIX/rev/`, written with every state).
    States = 0,
    /// The flag document and log (`PREFIX/flags/`).
    Flags = 1,
    /// Breaker policies (`PREFIX/breakers/`).
    BreakerPolicies = 2,
}

/// What changed since it was last read, and the signal that wakes the loop.
#[derive(Default)]
struct Changes {
    changed: [AtomicBool; 3],
    notify: Notify,
}

/// The wake-ups of one node's follow loop.
pub struct Wakeups {
    changes: Arc<Changes>,
    /// None when the watch thread could not start: the node polls.
    watch: Option<WatchHandle>,
    last_read: [Option<Instant>; 3],
}

impl Wakeups {
    /// Starts watching the keys under `prefix` a node follows, over `gateway`
    /// (a connection of its own).
    pub fn watch(gateway: Gateway, prefix: &str) -> Wakeups {
        let prefix = if prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        let prefixes = ["rev/", "flags/", "breakers/"]
            .iter()
            .map(|kind| format!("{prefix}{kind}"))
            .collect();
        let changes = Arc::new(Changes::default());
        let signal = changes.clone();
        let watch = spawn_watch(gateway, prefixes, move |wake| {
            match wake {
                Wake::Changed(index) => {
                    if let Some(changed) = signal.changed.get(index) {
                        changed.store(true, Ordering::SeqCst);
                    }
                }
                Wake::Everything => {
                    for changed in &signal.changed {
                        changed.store(true, Ordering::SeqCst);
                    }
                }
            }
            signal.notify.notify_one();
        });
        if let Err(e) = &watch {
            tracing::warn!("cluster: cannot watch etcd, polling instead: {e}");
        }
        Wakeups {
            changes,
            watch: watch.ok(),
            last_read: [None; 3],
        }
    }

    /// Whether etcd's watch runs now.
    pub fn watching(&self) -> bool {
        self.watch.as_ref().is_some_and(WatchHandle::is_up)
    }

    /// Whether `what` is to be read now (and if so, marks it read): changed,
    /// or not read for `poll` (the polling interval while the watch is
    /// down, [`SAFETY_POLL`] while it is up).
    pub fn due(&mut self, what: Followed, poll: Duration, now: Instant) -> bool {
        let index = what as usize;
        let interval = if self.watching() { SAFETY_POLL } else { poll };
        let changed = self.changes.changed[index].swap(false, Ordering::SeqCst);
        let stale = self.last_read[index].is_none_or(|at| now.duration_since(at) >= interval);
        if changed || stale {
            self.last_read[index] = Some(now);
        }
        changed || stale
    }

    /// Waits until something followed changed, or `timeout`.
    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changes.notify.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_watch_each_thing_is_due_on_its_polling_interval() {
        // Nothing listens on port 1: the watch stays down.
        let gateway = Gateway::new(vec!["127.0.0.1:1".into()], Duration::from_millis(200));
        let mut wakeups = Wakeups::watch(gateway, "/sluice");
        let start = Instant::now();
        let poll = Duration::from_millis(300);
        assert!(wakeups.due(Followed::States, poll, start));
        assert!(!wakeups.due(Followed::States, poll, start + poll / 2));
        assert!(wakeups.due(Followed::States, poll, start + poll));
        assert!(wakeups.due(Followed::Flags, poll, start));
        assert!(!wakeups.watching());
    }
}
