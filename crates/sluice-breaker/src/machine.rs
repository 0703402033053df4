//! The breaker state machine: Closed → Open → HalfOpen → Closed, plus
//! ForcedOpen and Disabled. Deterministic: time is a parameter, so the same
//! calls with the same `now` always give the same transitions. Not the place
//! that measures calls, reads a clock or locks: callers (the proxy, or
//! [`crate::sync::SharedBreaker`]) do that.

use crate::policy::{Mode, Policy};
use crate::state::{
    Admission, Counters, Outcome, Snapshot, State, Ticket, Transition, TransitionReason,
    HALF_OPEN_RETRY_AFTER_MS,
};
use crate::window::{Totals, Window};
use crate::Millis;

/// One circuit breaker: its policy, state, window and counters.
#[derive(Clone, Debug)]
pub struct Breaker {
    policy: Policy,
    state: State,
    window: Window,
    /// Failures in a row in Closed (and Disabled); a success resets it.
    consecutive_failures: u32,
    /// When the breaker last entered Open, and when it may turn half-open.
    opened_at: Millis,
    open_until: Millis,
    trips_in_a_row: u32,
    /// Bumped by every transition, reset and force: tickets from an older
    /// generation no longer count toward the window or the trials.
    generation: u32,
    round: TrialRound,
    counters: Counters,
}

/// The accounting of one half-open round.
#[derive(Clone, Copy, Debug, Default)]
struct TrialRound {
    in_flight: u32,
    successes: u32,
    failures: u32,
}

impl TrialRound {
    /// Slots taken: trials in flight plus trials that have ended.
    fn taken(&self) -> u32 {
        self.in_flight + self.successes + self.failures
    }
}

// === impl Breaker ===

impl Breaker {
    /// A breaker in Closed (Disabled for mode off) with an empty window.
    /// `policy` should come from [`Policy::try_new`].
    pub fn new(policy: Policy, now: Millis) -> Breaker {
        let state = match policy.mode {
            Mode::Off => State::Disabled,
            Mode::On | Mode::Shadow => State::Closed,
        };
        Breaker {
            window: Window::new(policy.window, now),
            policy,
            state,
            consecutive_failures: 0,
            opened_at: 0,
            open_until: 0,
            trips_in_a_row: 0,
            generation: 0,
            round: TrialRound::default(),
            counters: Counters::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Ask to make a call. May move Open -> HalfOpen when the open duration
    /// has elapsed (returned).
    pub fn try_acquire(&mut self, now: Millis) -> (Admission, Option<Transition>) {
        let transition = self.tick(now);
        let verdict = match self.state {
            State::Closed | State::Disabled => Ok(false),
            State::Open => Err(self.open_until.saturating_sub(now)),
            State::ForcedOpen => Err(self.policy.open_duration_ms),
            State::HalfOpen if self.round.taken() < self.policy.half_open_calls => {
                self.round.in_flight += 1;
                Ok(true)
            }
            State::HalfOpen => Err(HALF_OPEN_RETRY_AFTER_MS),
        };
        let admission = match verdict {
            Ok(trial) => self.ticket(trial, false),
            Err(_) if self.policy.mode == Mode::Shadow => {
                self.counters.shadow_rejected += 1;
                self.ticket(false, true)
            }
            Err(retry_after_ms) => {
                self.counters.rejected += 1;
                Admission::Rejected { retry_after_ms }
            }
        };
        (admission, transition)
    }

    fn ticket(&self, trial: bool, would_reject: bool) -> Admission {
        Admission::Admitted(Ticket {
            trial,
            would_reject,
            generation: self.generation,
        })
    }

    /// Report a call's result with its duration. Returns the transition it
    /// caused, if any.
    pub fn on_result(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        duration_ms: u64,
        now: Millis,
    ) -> Option<Transition> {
        let slow = self.policy.is_slow(duration_ms);
        self.count(outcome, slow);
        // A call from an older generation, or one that On would have
        // rejected (shadow), only counts: it never feeds the machine.
        if ticket.generation != self.generation || ticket.would_reject {
            return None;
        }
        let failed = outcome.is_failure();
        match self.state {
            State::Closed => {
                let totals = self.record(failed, slow, now);
                let reason = self.trip_reason(totals)?;
                Some(self.trip(now, reason))
            }
            State::Disabled => {
                self.record(failed, slow, now);
                None
            }
            State::HalfOpen if ticket.trial => {
                self.round.in_flight = self.round.in_flight.saturating_sub(1);
                // A slow trial fails only when slowness is a trip rule.
                if failed || (slow && self.policy.slow_call_rate_threshold.is_some()) {
                    self.round.failures += 1;
                } else {
                    self.round.successes += 1;
                }
                self.decide_round(now)
            }
            State::HalfOpen | State::Open | State::ForcedOpen => None,
        }
    }

    /// The call ended without a result (client went away): frees a half-open
    /// slot, counts nothing.
    pub fn on_cancel(&mut self, ticket: Ticket) {
        if ticket.trial && ticket.generation == self.generation && self.state == State::HalfOpen {
            self.round.in_flight = self.round.in_flight.saturating_sub(1);
        }
    }

    /// Move Open -> HalfOpen if due, without a call (for listings and gauges).
    pub fn tick(&mut self, now: Millis) -> Option<Transition> {
        if self.state != State::Open || now < self.open_until {
            return None;
        }
        let open_for_ms = now.saturating_sub(self.opened_at);
        Some(self.transition(
            State::HalfOpen,
            now,
            TransitionReason::OpenElapsed { open_for_ms },
        ))
    }

    /// Sticky ForcedOpen until `force_close` or `reset`. Does nothing in
    /// mode off (the breaker is off; see `set_policy`).
    pub fn force_open(&mut self, now: Millis) -> Option<Transition> {
        if matches!(self.state, State::ForcedOpen | State::Disabled) {
            return None;
        }
        Some(self.transition(State::ForcedOpen, now, TransitionReason::Forced))
    }

    /// Closed with a fresh window. Keeps the backoff (`trips_in_a_row`): an
    /// operator's close is not evidence that the upstream recovered. Already
    /// closed (or disabled): the window is emptied and no transition is
    /// returned.
    pub fn force_close(&mut self, now: Millis) -> Option<Transition> {
        self.close(now, TransitionReason::Forced)
    }

    /// Closed, fresh window, counters kept, backoff cleared. Already closed
    /// (or disabled): the window is emptied and no transition is returned.
    pub fn reset(&mut self, now: Millis) -> Option<Transition> {
        self.trips_in_a_row = 0;
        self.close(now, TransitionReason::Reset)
    }

    fn close(&mut self, now: Millis, reason: TransitionReason) -> Option<Transition> {
        match self.state {
            State::Closed | State::Disabled => {
                self.fresh_window(now);
                None
            }
            State::Open | State::HalfOpen | State::ForcedOpen => {
                Some(self.transition(State::Closed, now, reason))
            }
        }
    }

    /// Replace the policy live, keeping the state where it still makes sense:
    /// - mode off → Disabled; mode on or shadow from Disabled → Closed;
    /// - a new window shape starts a fresh window, the same shape keeps it;
    /// - Open stays open until the deadline set when it tripped;
    /// - HalfOpen keeps its round, decided at once against the new
    ///   `half_open_calls` and `success_threshold`;
    /// - Closed is checked against the new thresholds at the next result.
    pub fn set_policy(&mut self, policy: Policy, now: Millis) -> Option<Transition> {
        if !self.window.has_shape(policy.window) {
            self.window = Window::new(policy.window, now);
        }
        self.policy = policy;
        match (self.policy.mode, self.state) {
            (Mode::Off, State::Disabled) => None,
            (Mode::Off, _) => {
                Some(self.transition(State::Disabled, now, TransitionReason::PolicyChanged))
            }
            (_, State::Disabled) => {
                Some(self.transition(State::Closed, now, TransitionReason::PolicyChanged))
            }
            (_, State::HalfOpen) => self.decide_round(now),
            _ => None,
        }
    }

    /// The state and numbers at `now` (a time window drops what has expired).
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let totals = self.window.totals_at(now);
        Snapshot {
            state: self.state,
            mode: self.policy.mode,
            failure_rate: totals.failure_rate(self.policy.minimum_calls),
            slow_call_rate: totals.slow_call_rate(self.policy.minimum_calls),
            window_calls: totals.calls_u32(),
            consecutive_failures: self.consecutive_failures,
            open_until: (self.state == State::Open).then_some(self.open_until),
            trips_in_a_row: self.trips_in_a_row,
            counters: self.counters,
        }
    }

    fn count(&mut self, outcome: Outcome, slow: bool) {
        let counter = match outcome {
            Outcome::Success => &mut self.counters.successes,
            Outcome::Failure => &mut self.counters.failures,
            Outcome::Timeout => &mut self.counters.timeouts,
        };
        *counter += 1;
        self.counters.slow += u64::from(slow);
    }

    fn record(&mut self, failed: bool, slow: bool, now: Millis) -> Totals {
        self.consecutive_failures = if failed {
            self.consecutive_failures.saturating_add(1)
        } else {
            0
        };
        self.window.record(failed, slow, now)
    }

    /// The first trip rule that holds over the window's `totals`, checked in
    /// the order consecutive failures, failure rate, slow-call rate.
    fn trip_reason(&self, totals: Totals) -> Option<TransitionReason> {
        let policy = &self.policy;
        if let Some(threshold) = policy.consecutive_failures {
            if self.consecutive_failures >= threshold {
                let count = self.consecutive_failures;
                return Some(TransitionReason::ConsecutiveFailures { count, threshold });
            }
        }
        let calls = totals.calls_u32();
        if let (Some(threshold), Some(rate)) = (
            policy.failure_rate_threshold,
            totals.failure_rate(policy.minimum_calls),
        ) {
            if rate >= threshold {
                return Some(TransitionReason::FailureRate {
                    rate,
                    threshold,
                    calls,
                });
            }
        }
        if let (Some(threshold), Some(rate)) = (
            policy.slow_call_rate_threshold,
            totals.slow_call_rate(policy.minimum_calls),
        ) {
            if rate >= threshold {
                return Some(TransitionReason::SlowCallRate {
                    rate,
                    threshold,
                    calls,
                });
            }
        }
        None
    }

    /// Closes after enough successful trials; re-opens once closing is no
    /// longer possible.
    fn decide_round(&mut self, now: Millis) -> Option<Transition> {
        let TrialRound {
            successes,
            failures,
            ..
        } = self.round;
        let success_threshold = self.policy.success_threshold;
        if successes >= success_threshold {
            self.trips_in_a_row = 0;
            let reason = TransitionReason::TrialsSucceeded { successes };
            Some(self.transition(State::Closed, now, reason))
        } else if failures
            > self
                .policy
                .half_open_calls
                .saturating_sub(success_threshold)
        {
            Some(self.trip(now, TransitionReason::TrialFailed { failures }))
        } else {
            None
        }
    }

    fn trip(&mut self, now: Millis, reason: TransitionReason) -> Transition {
        self.trips_in_a_row = self.trips_in_a_row.saturating_add(1);
        self.counters.trips += 1;
        self.opened_at = now;
        let open_for = self.policy.open_duration_for(self.trips_in_a_row);
        self.open_until = now.saturating_add(open_for);
        self.transition(State::Open, now, reason)
    }

    /// Moves to `to`, starting what the new state starts with: a fresh
    /// window for Closed and Disabled, an empty round for HalfOpen.
    fn transition(&mut self, to: State, now: Millis, reason: TransitionReason) -> Transition {
        let from = self.state;
        self.state = to;
        self.counters.transitions += 1;
        match to {
            State::Closed => self.fresh_window(now),
            State::Disabled => {
                self.trips_in_a_row = 0;
                self.fresh_window(now);
            }
            State::HalfOpen => {
                self.generation = self.generation.wrapping_add(1);
                self.round = TrialRound::default();
            }
            State::Open | State::ForcedOpen => self.generation = self.generation.wrapping_add(1),
        }
        Transition {
            from,
            to,
            at: now,
            reason,
        }
    }

    fn fresh_window(&mut self, now: Millis) {
        self.generation = self.generation.wrapping_add(1);
        self.window.clear(now);
        self.consecutive_failures = 0;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod control_tests;

#[cfg(test)]
mod proptests;
