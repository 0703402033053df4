//! The circuit-breaker core: a pure, Resilience4j-style state machine
//! (Closed → Open → HalfOpen → Closed, plus ForcedOpen and Disabled) with
//! consecutive-failure, failure-rate and slow-call-rate rules over a count-
//! or time-based sliding window, exponential open-duration backoff and a
//! shadow mode. No I/O and no clock: `now` ([`Millis`] on a monotonic clock
//! the caller chooses) is a parameter, so tests drive a breaker through
//! hours of traffic with plain numbers. [`sync`] is the thin shell for
//! library users: a mutex and a clock.
//!
//! A call goes: [`Breaker::try_acquire`] → [`Admission::Admitted`]`(ticket)`
//! → the call → [`Breaker::on_result`]`(ticket, outcome, duration_ms, now)`,
//! or [`Breaker::on_cancel`] if it ended without a result.
//!
//! # Semantics, beside Resilience4j and Envoy
//!
//! | | sluice-breaker | Resilience4j | Envoy |
//! |---|---|---|---|
//! | Closed | every result fills the window; trip when `consecutive_failures` failures in a row, or, with at least `minimum_calls` calls in the window, failure rate >= `failure_rate_threshold` or slow-call rate >= `slow_call_rate_threshold` (all at `>=`) | same rate rules at `>=`, no consecutive rule | outlier detection: `consecutive_5xx` (5) ejects a host; no rate over a window of one host (success-rate ejection compares hosts) |
//! | Count window | the last `calls` results: a ring with running totals | COUNT_BASED (`FixedSizeSlidingWindowMetrics`) | — |
//! | Time window | one bucket per second (`now / 1000`) over `seconds` buckets; a bucket drops out when `now` moves past it | TIME_BASED (`SlidingTimeWindowMetrics`), same buckets | detection `interval` 10 s |
//! | Timeout | a failure, counted apart | an exception, recorded as a failure | a 5xx/gateway error |
//! | Slow call | duration > `slow_call_duration_ms`, success or not | `slowCallDurationThreshold`, strict | — |
//! | Open | rejects with `retry_after_ms` = the time left; the open duration is `open_duration_ms × backoff_multiplier^(trips_in_a_row − 1)`, capped at `max_open_duration_ms` | `waitDurationInOpenState`, optionally an exponential `IntervalFunction` | `base_ejection_time × ejections`, linear, capped by `max_ejection_time` |
//! | Open → HalfOpen | at the first `try_acquire` or `tick` at or after the deadline | the first call after the wait (automatic transition off by default) | the host returns at the end of its ejection |
//! | HalfOpen | at most `half_open_calls` trials per round, in flight or ended (a cancel frees its slot); closes after `success_threshold` successes, re-opens as soon as more than `half_open_calls − success_threshold` trials failed | `permittedNumberOfCallsInHalfOpenState` trials, then their failure rate decides | no half-open: the host is back in rotation |
//! | Slow trial | a failure only when the slow-call rule is on | counts in the trials' slow rate | — |
//! | Closing | a fresh window; `trips_in_a_row` back to 0 | a fresh window | — |
//! | ForcedOpen | sticky until `force_close` or `reset`; rejects with `retry_after_ms` = `open_duration_ms` | FORCED_OPEN | — |
//! | Shadow | the same transitions as On; never rejects; `Ticket::would_reject` and the `shadow_rejected` counter say what On would have done | METRICS_ONLY records but never transitions | — |
//! | Off | state Disabled: admits, never transitions, still counts | DISABLED | outlier detection not configured |
//!
//! Every transition, reset and force starts a new *generation*: a result
//! whose ticket was admitted in an older one still counts in [`Counters`]
//! but not in the window, the consecutive count or the half-open round, so a
//! slow call from before a trip cannot close (or re-trip) the breaker.
//! Rejected calls are not results and never enter the window.
#![forbid(unsafe_code)]

mod machine;
mod policy;
mod state;
pub mod sync;
mod window;

pub use machine::Breaker;
pub use policy::{
    InvalidPolicy, Mode, Policy, PolicyProblem, SlidingWindow, MAX_WINDOW_CALLS, MAX_WINDOW_SECONDS,
};
pub use state::{
    Admission, Counters, Outcome, Snapshot, State, Ticket, Transition, TransitionReason,
    HALF_OPEN_RETRY_AFTER_MS,
};

/// Milliseconds on a monotonic clock chosen by the caller (the proxy uses ms
/// since process start).
pub type Millis = u64;
