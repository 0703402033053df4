//! The values a breaker hands out and takes back: states, admissions and
//! tickets, outcomes, transitions with their reasons, counters and
//! snapshots. Not the place that decides: see `machine`.

use crate::policy::Mode;
use crate::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow; results fill the window.
    Closed,
    /// Calls are rejected until the open duration has elapsed.
    Open,
    /// A few trial calls decide between closing and re-opening.
    HalfOpen,
    /// Opened by an operator; stays open until `force_close` or `reset`.
    ForcedOpen,
    /// Mode off: every call admitted, no transitions.
    Disabled,
}

// === impl State ===

impl State {
    /// The value of a state gauge, Resilience4j's convention:
    /// closed 0, half-open 1, open 2 (forced open 2, disabled 0).
    pub fn gauge(self) -> u8 {
        match self {
            State::Closed | State::Disabled => 0,
            State::HalfOpen => 1,
            State::Open | State::ForcedOpen => 2,
        }
    }

    /// The state's name as in serde and metric labels (`half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    /// Counts as a failure; reported separately in the counters.
    Timeout,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Success)
    }
}

/// What `try_acquire` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; pass `Ticket` back to `on_result` (or `on_cancel`).
    Admitted(Ticket),
    /// Rejected; retry after this many ms: the remaining open time, the open
    /// duration when forced open, [`HALF_OPEN_RETRY_AFTER_MS`] when every
    /// half-open trial slot is taken.
    Rejected { retry_after_ms: u64 },
}

/// The retry hint when half-open has no free trial slot: a trial usually
/// ends within a second.
pub const HALF_OPEN_RETRY_AFTER_MS: u64 = 1_000;

/// A permission to call, to hand back with the call's result. Every
/// admitted ticket must end in exactly one `on_result` or `on_cancel`: a
/// lost trial ticket holds its half-open slot until the next transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// A half-open trial call: its result decides whether the breaker closes.
    pub trial: bool,
    /// Shadow mode: the machine would have rejected this call.
    pub would_reject: bool,
    /// The breaker's generation when admitted; a result from an older one
    /// (before a transition, reset or force) only counts in the counters.
    pub(crate) generation: u32,
}

/// A change of state, with when and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub at: Millis,
    pub reason: TransitionReason,
}

/// Why a transition happened, with the numbers that made it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionReason {
    ConsecutiveFailures {
        count: u32,
        threshold: u32,
    },
    FailureRate {
        rate: f64,
        threshold: f64,
        calls: u32,
    },
    SlowCallRate {
        rate: f64,
        threshold: f64,
        calls: u32,
    },
    OpenElapsed {
        open_for_ms: u64,
    },
    TrialsSucceeded {
        successes: u32,
    },
    TrialFailed {
        failures: u32,
    },
    Forced,
    Reset,
    PolicyChanged,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { count, threshold } => {
                write!(f, "{count} consecutive failures >= {threshold}")
            }
            TransitionReason::FailureRate {
                rate,
                threshold,
                calls,
            } => write!(
                f,
                "failure rate {}% >= {}% over {calls} calls",
                Percent(*rate),
                Percent(*threshold)
            ),
            TransitionReason::SlowCallRate {
                rate,
                threshold,
                calls,
            } => write!(
                f,
                "slow-call rate {}% >= {}% over {calls} calls",
                Percent(*rate),
                Percent(*threshold)
            ),
            TransitionReason::OpenElapsed { open_for_ms } => {
                write!(f, "open for {open_for_ms} ms, trying calls again")
            }
            TransitionReason::TrialsSucceeded { successes } => {
                write!(f, "{successes} trial calls succeeded")
            }
            TransitionReason::TrialFailed { failures } => {
                write!(
                    f,
                    "{failures} trial calls failed, closing is no longer possible"
                )
            }
            TransitionReason::Forced => f.write_str("forced by an operator"),
            TransitionReason::Reset => f.write_str("reset by an operator"),
            TransitionReason::PolicyChanged => f.write_str("policy changed"),
        }
    }
}

/// A percentage with at most two decimals and no trailing zeros (62.5, 50, 33.33).
struct Percent(f64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", (self.0 * 100.0).round() / 100.0)
    }
}

/// Running totals since the breaker was made; never reset, so they can be
/// exported as Prometheus counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Results reported as `Success`.
    pub successes: u64,
    /// Results reported as `Failure` (timeouts are apart).
    pub failures: u64,
    /// Results reported as `Timeout`.
    pub timeouts: u64,
    /// Results slower than `slow_call_duration_ms`, whatever their outcome.
    pub slow: u64,
    /// Calls rejected (mode on).
    pub rejected: u64,
    /// Calls admitted with `would_reject` (mode shadow).
    pub shadow_rejected: u64,
    /// Every state change.
    pub transitions: u64,
    /// Transitions into `Open`.
    pub trips: u64,
}

/// A breaker's state and numbers at one moment, for listings and gauges.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub state: State,
    pub mode: Mode,
    /// Percent over the window; `None` below `minimum_calls`.
    pub failure_rate: Option<f64>,
    /// Percent over the window; `None` below `minimum_calls`.
    pub slow_call_rate: Option<f64>,
    /// Results in the window (for a time window, those not yet expired at `now`).
    pub window_calls: u32,
    /// Failures in a row while Closed (or Disabled); kept as it was while
    /// open, zero again once closed.
    pub consecutive_failures: u32,
    /// When an `Open` breaker turns half-open; `None` in every other state.
    pub open_until: Option<Millis>,
    /// Trips since the breaker last closed from half-open (or was reset);
    /// drives the open-duration backoff.
    pub trips_in_a_row: u32,
    pub counters: Counters,
}
