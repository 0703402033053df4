//! One breaker as the proxy holds it: the core state machine behind a
//! mutex held for a few hundred nanoseconds per call, with the policy it
//! applies, its transition counts, and the guard a request carries from
//! admission to result (dropping the guard without a result frees a
//! half-open slot: the client went away, nothing is counted).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sluice_breaker::{Admission, Breaker, Millis, Outcome, Snapshot, State, Ticket, Transition};

use super::policy::CompiledPolicy;
use super::TransitionLog;
use crate::table::Slot;

/// States in the order of the transition matrix.
pub(crate) const STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
];

fn state_index(state: State) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

/// A breaker of one (service, version[, partition]).
pub(crate) struct BreakerCell {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) slot: Slot,
    pub(crate) partition: Option<String>,
    /// The policy id this breaker is meant to follow.
    pub(crate) policy_id: Mutex<String>,
    /// The per-partition switch: a disabled breaker is bypassed.
    pub(crate) disabled: AtomicBool,
    pub(crate) fallbacks: AtomicU64,
    epoch: Instant,
    log: Arc<TransitionLog>,
    inner: Mutex<CellState>,
}

struct CellState {
    breaker: Breaker,
    policy: Arc<CompiledPolicy>,
    transitions: [[u64; 5]; 5],
}

/// What the breaker said to one request.
pub(crate) enum Admit {
    /// Send it; report the result through the guard.
    Go(CallGuard),
    /// Do not send it.
    Reject {
        policy: Arc<CompiledPolicy>,
        retry_after_ms: u64,
    },
}

/// A call admitted by a breaker, until its result is reported.
pub(crate) struct CallGuard {
    cell: Arc<BreakerCell>,
    ticket: Ticket,
    pub(crate) policy: Arc<CompiledPolicy>,
    done: bool,
}

/// A cell's state for listings and metrics.
pub(crate) struct CellView {
    pub(crate) snapshot: Snapshot,
    pub(crate) policy_id: String,
    pub(crate) transitions: [[u64; 5]; 5],
}

// === impl BreakerCell ===

impl BreakerCell {
    pub(crate) fn new(
        id: String,
        service: &str,
        slot: Slot,
        partition: Option<String>,
        policy: Arc<CompiledPolicy>,
        epoch: Instant,
        log: Arc<TransitionLog>,
    ) -> BreakerCell {
        let now = millis_since(epoch);
        BreakerCell {
            id,
            service: service.to_string(),
            slot,
            partition,
            policy_id: Mutex::new(policy.id.clone()),
            disabled: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            epoch,
            log,
            inner: Mutex::new(CellState {
                breaker: Breaker::new(policy.core.clone(), now),
                policy,
                transitions: [[0; 5]; 5],
            }),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        millis_since(self.epoch)
    }

    fn lock(&self) -> MutexGuard<'_, CellState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the breaker whether a call may go; `None` when this breaker is
    /// switched off for its partition.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admit> {
        if self.disabled.load(Relaxed) {
            return None;
        }
        let now = self.now();
        let mut state = self.lock();
        let (admission, transition) = state.breaker.try_acquire(now);
        let policy = state.policy.clone();
        let transition = transition.map(|t| state.count(t));
        drop(state);
        if let Some(transition) = transition {
            self.note(&transition, &policy);
        }
        Some(match admission {
            Admission::Admitted(ticket) => Admit::Go(CallGuard {
                cell: self.clone(),
                ticket,
                policy,
                done: false,
            }),
            Admission::Rejected { retry_after_ms } => Admit::Reject {
                policy,
                retry_after_ms,
            },
        })
    }

    /// Applies `policy` if it is not the one in force.
    pub(crate) fn set_policy(&self, policy: &Arc<CompiledPolicy>) {
        let now = self.now();
        *self
            .policy_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = policy.id.clone();
        let mut state = self.lock();
        if Arc::ptr_eq(&state.policy, policy) {
            return;
        }
        state.policy = policy.clone();
        let transition = state.breaker.set_policy(policy.core.clone(), now);
        let transition = transition.map(|t| state.count(t));
        drop(state);
        if let Some(transition) = transition {
            self.note(&transition, policy);
        }
    }

    /// Runs an operator's action (force open/close, reset) on the machine.
    pub(crate) fn operate(
        &self,
        action: impl FnOnce(&mut Breaker, Millis) -> Option<Transition>,
    ) -> Option<Transition> {
        let now = self.now();
        let mut state = self.lock();
        let transition = action(&mut state.breaker, now).map(|t| state.count(t));
        let policy = state.policy.clone();
        drop(state);
        if let Some(transition) = &transition {
            self.note(transition, &policy);
        }
        transition
    }

    pub(crate) fn view(&self) -> CellView {
        let now = self.now();
        let mut state = self.lock();
        let transition = state.breaker.tick(now).map(|t| state.count(t));
        let view = CellView {
            snapshot: state.breaker.snapshot(now),
            policy_id: state.policy.id.clone(),
            transitions: state.transitions,
        };
        let policy = state.policy.clone();
        drop(state);
        if let Some(transition) = transition {
            self.note(&transition, &policy);
        }
        view
    }

    /// Logs a transition (rare: at most a few per open duration).
    fn note(&self, transition: &Transition, policy: &CompiledPolicy) {
        let shadow = matches!(policy.core.mode, sluice_breaker::Mode::Shadow);
        if transition.to == State::Open {
            tracing::warn!(
                breaker = %self.id, from = transition.from.as_str(), to = transition.to.as_str(),
                shadow, reason = %transition.reason, "circuit breaker opened"
            );
        } else {
            tracing::info!(
                breaker = %self.id, from = transition.from.as_str(), to = transition.to.as_str(),
                shadow, reason = %transition.reason, "circuit breaker changed state"
            );
        }
        self.log.push(self, transition, shadow);
    }
}

impl CellState {
    fn count(&mut self, transition: Transition) -> Transition {
        self.transitions[state_index(transition.from)][state_index(transition.to)] += 1;
        transition
    }
}

fn millis_since(epoch: Instant) -> Millis {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// === impl CallGuard ===

impl CallGuard {
    /// Reports the call's result and how long it took to its response head.
    pub(crate) fn finish(mut self, outcome: Outcome, duration_ms: u64) {
        self.done = true;
        let now = self.cell.now();
        let mut state = self.cell.lock();
        let transition = state
            .breaker
            .on_result(self.ticket, outcome, duration_ms, now)
            .map(|t| state.count(t));
        drop(state);
        if let Some(transition) = transition {
            self.cell.note(&transition, &self.policy);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            self.cell.lock().breaker.on_cancel(self.ticket);
        }
    }
}
