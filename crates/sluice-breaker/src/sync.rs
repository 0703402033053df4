//! The shell for library users: a [`Breaker`] behind a mutex, shareable
//! between threads, and a [`MonotonicClock`] to feed it `now`. The only
//! module of the crate that reads a clock. Not for a hot path with many
//! threads on one breaker: the mutex is held for the few nanoseconds of a
//! call, but it is still a lock that can be contended.
//!
//! ```
//! use sluice_breaker::sync::{MonotonicClock, SharedBreaker};
//! use sluice_breaker::{Admission, Outcome, Policy};
//!
//! let clock = MonotonicClock::new();
//! let breaker = SharedBreaker::new(Policy::default(), clock.now());
//! let (admission, _transition) = breaker.try_acquire(clock.now());
//! if let Admission::Admitted(ticket) = admission {
//!     let started = clock.now();
//!     let outcome = Outcome::Success; // ... make the call ...
//!     breaker.on_result(ticket, outcome, clock.now() - started, clock.now());
//! }
//! ```

use crate::{Admission, Breaker, Millis, Outcome, Policy, Snapshot, State, Ticket, Transition};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A [`Breaker`] behind a `std::sync::Mutex`; every method takes `now`.
#[derive(Debug)]
pub struct SharedBreaker {
    inner: Mutex<Breaker>,
}

// === impl SharedBreaker ===

impl SharedBreaker {
    pub fn new(policy: Policy, now: Millis) -> SharedBreaker {
        SharedBreaker::from(Breaker::new(policy, now))
    }

    /// See [`Breaker::try_acquire`].
    pub fn try_acquire(&self, now: Millis) -> (Admission, Option<Transition>) {
        self.lock().try_acquire(now)
    }

    /// See [`Breaker::on_result`].
    pub fn on_result(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        duration_ms: u64,
        now: Millis,
    ) -> Option<Transition> {
        self.lock().on_result(ticket, outcome, duration_ms, now)
    }

    /// See [`Breaker::on_cancel`].
    pub fn on_cancel(&self, ticket: Ticket) {
        self.lock().on_cancel(ticket)
    }

    /// See [`Breaker::tick`].
    pub fn tick(&self, now: Millis) -> Option<Transition> {
        self.lock().tick(now)
    }

    /// See [`Breaker::force_open`].
    pub fn force_open(&self, now: Millis) -> Option<Transition> {
        self.lock().force_open(now)
    }

    /// See [`Breaker::force_close`].
    pub fn force_close(&self, now: Millis) -> Option<Transition> {
        self.lock().force_close(now)
    }

    /// See [`Breaker::reset`].
    pub fn reset(&self, now: Millis) -> Option<Transition> {
        self.lock().reset(now)
    }

    /// See [`Breaker::set_policy`].
    pub fn set_policy(&self, policy: Policy, now: Millis) -> Option<Transition> {
        self.lock().set_policy(policy, now)
    }

    /// A copy of the current policy.
    pub fn policy(&self) -> Policy {
        self.lock().policy().clone()
    }

    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// See [`Breaker::snapshot`].
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        self.lock().snapshot(now)
    }

    /// Runs `f` on the breaker under the lock, for several steps at once.
    pub fn with<R>(&self, f: impl FnOnce(&mut Breaker) -> R) -> R {
        f(&mut self.lock())
    }

    /// The breaker, no longer shared.
    pub fn into_inner(self) -> Breaker {
        self.inner
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker's methods do not panic; were one ever to, the breaker
    /// would still be usable (one call miscounted at worst), so a poisoned
    /// lock is taken over rather than turning every later call into a panic.
    fn lock(&self) -> MutexGuard<'_, Breaker> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl From<Breaker> for SharedBreaker {
    fn from(breaker: Breaker) -> SharedBreaker {
        SharedBreaker {
            inner: Mutex::new(breaker),
        }
    }
}

/// Milliseconds since the clock was made, from `std::time::Instant`
/// (monotonic, so a wall-clock step cannot reopen or close a breaker).
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    start: Instant,
}

// === impl MonotonicClock ===

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since [`MonotonicClock::new`].
    pub fn now(&self) -> Millis {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, TransitionReason};
    use std::sync::Arc;

    fn policy() -> Policy {
        Policy {
            consecutive_failures: Some(2),
            ..Policy::default()
        }
    }

    fn admit(breaker: &SharedBreaker, now: Millis) -> Ticket {
        match breaker.try_acquire(now).0 {
            Admission::Admitted(ticket) => ticket,
            rejected => panic!("expected an admission at {now}, got {rejected:?}"),
        }
    }

    #[test]
    fn shared_breaker_runs_the_machine() {
        let breaker = SharedBreaker::new(policy(), 0);
        let ticket = admit(&breaker, 0);
        assert_eq!(breaker.on_result(ticket, Outcome::Failure, 5, 1), None);
        let ticket = admit(&breaker, 2);
        let trip = breaker
            .on_result(ticket, Outcome::Timeout, 5, 3)
            .expect("trips");
        assert_eq!(
            trip.reason,
            TransitionReason::ConsecutiveFailures {
                count: 2,
                threshold: 2
            }
        );
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(
            breaker.try_acquire(4).0,
            Admission::Rejected {
                retry_after_ms: 29_999
            }
        );
        assert!(breaker.tick(30_003).is_some());
        assert_eq!(breaker.state(), State::HalfOpen);
        let trial = admit(&breaker, 30_004);
        breaker.on_cancel(trial);
        assert!(breaker.force_open(30_005).is_some());
        assert!(breaker.force_close(30_006).is_some());
        assert!(breaker.force_open(30_007).is_some());
        assert!(breaker.reset(30_008).is_some());
        let off = Policy {
            mode: Mode::Off,
            ..policy()
        };
        assert!(breaker.set_policy(off.clone(), 30_009).is_some());
        assert_eq!(breaker.policy(), off);
        let snapshot = breaker.snapshot(30_010);
        assert_eq!(snapshot.state, State::Disabled);
        assert_eq!(snapshot.counters.failures + snapshot.counters.timeouts, 2);
        assert_eq!(breaker.with(|b| b.state()), State::Disabled);
        assert_eq!(breaker.into_inner().state(), State::Disabled);
    }

    #[test]
    fn threads_share_one_breaker() {
        let breaker = Arc::new(SharedBreaker::new(Policy::default(), 0));
        let clock = MonotonicClock::new();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        let ticket = admit(&breaker, clock.now());
                        breaker.on_result(ticket, Outcome::Success, 1, clock.now());
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker thread");
        }
        let snapshot = breaker.snapshot(clock.now());
        assert_eq!(snapshot.counters.successes, 4_000);
        assert_eq!(snapshot.state, State::Closed);
    }

    #[test]
    fn the_clock_is_monotonic_and_starts_near_zero() {
        let clock = MonotonicClock::default();
        let first = clock.now();
        assert!(first < 1_000, "a fresh clock reads {first} ms");
        assert!(clock.now() >= first);
    }
}
