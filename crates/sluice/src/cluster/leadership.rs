//! Whether this node may decide: always on a single node; in cluster mode
//! only while it holds the leader key and its lease has not run out. Read
//! by the controller right before every store write, so a leader that cannot
//! renew its lease stops deciding when the lease ends, not when it notices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The process's clock origin for the lease deadline (an atomic holds millis since it).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// This node's right to decide.
#[derive(Debug)]
pub struct Leadership {
    /// Single-node mode: always deciding.
    always: bool,
    leader: AtomicBool,
    /// Millis after `origin()` at which the lease ends unless renewed.
    lease_until: AtomicU64,
    /// Who leads, as the admin API names it to a caller of a follower.
    hint: Mutex<String>,
}

// === impl Leadership ===

impl Leadership {
    /// The embedded store: one node, always the controller.
    pub fn single() -> Leadership {
        Leadership {
            always: true,
            leader: AtomicBool::new(true),
            lease_until: AtomicU64::new(u64::MAX),
            hint: Mutex::new("this node".into()),
        }
    }

    /// Cluster mode: not deciding until elected.
    pub fn follower() -> Leadership {
        Leadership {
            always: false,
            leader: AtomicBool::new(false),
            lease_until: AtomicU64::new(0),
            hint: Mutex::new("none elected yet".into()),
        }
    }

    /// True while this node may write transitions.
    pub fn deciding(&self) -> bool {
        if self.always {
            return true;
        }
        self.leader.load(Ordering::SeqCst)
            && (origin().elapsed().as_millis() as u64) < self.lease_until.load(Ordering::SeqCst)
    }

    /// The lease was granted or renewed by a request sent at `sent`: it
    /// holds until `sent + ttl` (etcd counts from when it received it, later).
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        let until = (sent + ttl).saturating_duration_since(origin());
        self.lease_until
            .store(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// The leader's name and admin address, or why there is none.
    pub fn leader_hint(&self) -> String {
        self.hint.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_leader_hint(&self, hint: String) {
        *self.hint.lock().unwrap_or_else(|e| e.into_inner()) = hint;
    }

    pub fn set_leader(&self, leader: bool) {
        if !self.always {
            self.leader.store(leader, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_decides_only_while_leader_within_its_lease() {
        let role = Leadership::follower();
        assert!(!role.deciding());
        role.set_leader(true);
        assert!(!role.deciding(), "no lease yet");
        role.renewed(Instant::now(), Duration::from_secs(5));
        assert!(role.deciding());
        role.renewed(
            Instant::now() - Duration::from_secs(6),
            Duration::from_secs(5),
        );
        assert!(!role.deciding(), "the lease ran out");
        role.renewed(Instant::now(), Duration::from_secs(5));
        role.set_leader(false);
        assert!(!role.deciding());
        assert!(Leadership::single().deciding());
    }
}
