//! A breaker's policy: when it trips, how long it stays open and how it
//! closes again, with `Policy::try_new` checking every rule once, at the edge.
//! Not the place that reads config files: the model crate maps its config to
//! a `Policy` and reports field paths; the errors here name the field.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest count-based window: the ring holds one byte per call.
pub const MAX_WINDOW_CALLS: u32 = 100_000;
/// The largest time-based window: one bucket per second, an hour at most.
pub const MAX_WINDOW_SECONDS: u32 = 3_600;

/// How much a breaker may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Runs the machine and rejects calls while open.
    On,
    /// Runs the same machine, with the same transitions, but never rejects:
    /// an admission that `On` would have refused carries `would_reject`.
    /// Resilience4j's METRICS_ONLY records without transitions; shadow runs
    /// the transitions too, so that it predicts what `On` would do.
    Shadow,
    /// Always admits and never transitions (state `Disabled`); results are
    /// still counted. Resilience4j's DISABLED.
    Off,
}

/// Which recent calls the rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlidingWindow {
    /// The last `calls` results (Resilience4j COUNT_BASED), 1..=[`MAX_WINDOW_CALLS`].
    Count { calls: u32 },
    /// The results of the last `seconds` whole seconds, one bucket per second
    /// (Resilience4j TIME_BASED), 1..=[`MAX_WINDOW_SECONDS`].
    Time { seconds: u32 },
}

/// When a breaker trips, how long it stays open and how it closes again.
///
/// Build one with [`Policy::try_new`]; [`crate::Breaker`] does not validate
/// again (it never panics on a bad policy, but may never trip or close).
///
/// Defaults ([`Policy::default`]) are Resilience4j's shape sized for a proxy:
///
/// | field | default | Resilience4j / Envoy equivalent |
/// |---|---|---|
/// | `mode` | `On` | circuit breaker enabled |
/// | `consecutive_failures` | `Some(5)` | Envoy outlier detection `consecutive_5xx: 5` |
/// | `failure_rate_threshold` | `Some(50.0)` | `failureRateThreshold` 50 |
/// | `slow_call_rate_threshold` | `None` | `slowCallRateThreshold` 100 (effectively off) |
/// | `slow_call_duration_ms` | `60_000` | `slowCallDurationThreshold` 60 s |
/// | `window` | `Count { calls: 100 }` | `slidingWindowType` COUNT_BASED, `slidingWindowSize` 100 |
/// | `minimum_calls` | `20` | `minimumNumberOfCalls` 100: a proxy should react on fewer calls |
/// | `open_duration_ms` | `30_000` | Envoy `base_ejection_time` 30 s (`waitDurationInOpenState` 60 s) |
/// | `max_open_duration_ms` | `300_000` | Envoy `max_ejection_time` 300 s |
/// | `backoff_multiplier` | `2.0` | Resilience4j exponential `waitIntervalFunctionInOpenState`; Envoy grows linearly |
/// | `half_open_calls` | `3` | `permittedNumberOfCallsInHalfOpenState` 10 |
/// | `success_threshold` | `3` | none: Resilience4j closes on the trials' failure rate |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// On, shadow (decide and count, never reject) or off.
    pub mode: Mode,
    /// Trip after this many consecutive failures, at least 1 (None = no
    /// consecutive rule). A success resets the count.
    pub consecutive_failures: Option<u32>,
    /// Trip when the failure rate over the window is >= this percent
    /// (0 < x <= 100). None = no rate rule.
    pub failure_rate_threshold: Option<f64>,
    /// Trip when the slow-call rate over the window is >= this percent
    /// (0 < x <= 100). None = off; slow calls are still counted.
    pub slow_call_rate_threshold: Option<f64>,
    /// A call that took longer than this (strictly) is slow, even when it
    /// succeeded. At least 1.
    pub slow_call_duration_ms: u64,
    /// The calls the rates are computed over.
    pub window: SlidingWindow,
    /// No rate is computed below this many calls in the window, at least 1
    /// and, for a count window, at most its size.
    pub minimum_calls: u32,
    /// Open duration before half-open, at least 1 ms; multiplied by
    /// `backoff_multiplier` on each trip in a row, capped at
    /// `max_open_duration_ms`.
    pub open_duration_ms: u64,
    /// The longest open duration, at least `open_duration_ms`.
    pub max_open_duration_ms: u64,
    /// Growth of the open duration per trip in a row, >= 1.0 (1.0 = no backoff).
    pub backoff_multiplier: f64,
    /// Trial calls admitted in half-open, at least 1: in flight at once and
    /// in total for one half-open round.
    pub half_open_calls: u32,
    /// Successful trial calls needed to close (1..=half_open_calls). Once
    /// more than `half_open_calls - success_threshold` trials have failed,
    /// the breaker re-opens at once.
    pub success_threshold: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::On,
            consecutive_failures: Some(5),
            failure_rate_threshold: Some(50.0),
            slow_call_rate_threshold: None,
            slow_call_duration_ms: 60_000,
            window: SlidingWindow::Count { calls: 100 },
            minimum_calls: 20,
            open_duration_ms: 30_000,
            max_open_duration_ms: 300_000,
            backoff_multiplier: 2.0,
            half_open_calls: 3,
            success_threshold: 3,
        }
    }
}

// === impl Policy ===

impl Policy {
    /// Checks every rule and reports every broken one at once.
    pub fn try_new(self) -> Result<Policy, InvalidPolicy> {
        let mut problems = Vec::new();
        let mut broken = |field: &'static str, message: String| {
            problems.push(PolicyProblem { field, message });
        };
        if self.consecutive_failures == Some(0) {
            broken(
                "consecutive_failures",
                "consecutive_failures 0 must be at least 1 (or absent)".into(),
            );
        }
        for (field, threshold) in [
            ("failure_rate_threshold", self.failure_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if let Some(percent) = threshold.filter(|p| !(*p > 0.0 && *p <= 100.0)) {
                broken(
                    field,
                    format!("{field} {percent} must be above 0 and at most 100 (percent)"),
                );
            }
        }
        if self.consecutive_failures.is_none()
            && self.failure_rate_threshold.is_none()
            && self.slow_call_rate_threshold.is_none()
        {
            broken(
                "consecutive_failures",
                "no trip rule: set consecutive_failures, failure_rate_threshold or \
                 slow_call_rate_threshold"
                    .into(),
            );
        }
        if self.slow_call_duration_ms == 0 {
            broken(
                "slow_call_duration_ms",
                "slow_call_duration_ms 0 must be at least 1".into(),
            );
        }
        match self.window {
            SlidingWindow::Count { calls } if !(1..=MAX_WINDOW_CALLS).contains(&calls) => broken(
                "window.calls",
                format!("window.calls {calls} must be between 1 and {MAX_WINDOW_CALLS}"),
            ),
            SlidingWindow::Time { seconds } if !(1..=MAX_WINDOW_SECONDS).contains(&seconds) => {
                broken(
                    "window.seconds",
                    format!("window.seconds {seconds} must be between 1 and {MAX_WINDOW_SECONDS}"),
                )
            }
            _ => {}
        }
        if self.minimum_calls == 0 {
            broken("minimum_calls", "minimum_calls 0 must be at least 1".into());
        }
        if let SlidingWindow::Count { calls } = self.window {
            if self.minimum_calls > calls && calls > 0 {
                broken(
                    "minimum_calls",
                    format!(
                        "minimum_calls {} is above window.calls {calls}: no rate would ever be computed",
                        self.minimum_calls
                    ),
                );
            }
        }
        if self.open_duration_ms == 0 {
            broken(
                "open_duration_ms",
                "open_duration_ms 0 must be at least 1".into(),
            );
        }
        if self.max_open_duration_ms < self.open_duration_ms {
            broken(
                "max_open_duration_ms",
                format!(
                    "max_open_duration_ms {} is below open_duration_ms {}",
                    self.max_open_duration_ms, self.open_duration_ms
                ),
            );
        }
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier.is_finite()) {
            broken(
                "backoff_multiplier",
                format!(
                    "backoff_multiplier {} must be a finite number >= 1.0",
                    self.backoff_multiplier
                ),
            );
        }
        if self.half_open_calls == 0 {
            broken(
                "half_open_calls",
                "half_open_calls 0 must be at least 1".into(),
            );
        }
        if self.success_threshold == 0 {
            broken(
                "success_threshold",
                "success_threshold 0 must be at least 1".into(),
            );
        } else if self.success_threshold > self.half_open_calls && self.half_open_calls > 0 {
            broken(
                "success_threshold",
                format!(
                    "success_threshold {} is above half_open_calls {}",
                    self.success_threshold, self.half_open_calls
                ),
            );
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(InvalidPolicy { problems })
        }
    }

    /// The open duration for the `trips_in_a_row`-th trip in a row (from 1):
    /// `open_duration_ms * backoff_multiplier^(trips_in_a_row - 1)`, capped.
    pub fn open_duration_for(&self, trips_in_a_row: u32) -> u64 {
        // Past 1024 doublings every multiplier > 1 has long hit the cap.
        let exponent = trips_in_a_row.saturating_sub(1).min(1024) as i32;
        let grown = self.open_duration_ms as f64 * self.backoff_multiplier.powi(exponent);
        let cap = self.max_open_duration_ms.max(self.open_duration_ms);
        if grown.is_nan() || grown >= cap as f64 {
            cap
        } else {
            (grown as u64).max(self.open_duration_ms)
        }
    }

    /// Whether a call of this duration is slow.
    pub(crate) fn is_slow(&self, duration_ms: u64) -> bool {
        duration_ms > self.slow_call_duration_ms
    }
}

/// A policy that breaks at least one rule; lists every broken rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid breaker policy: {}", ProblemList(.problems))]
pub struct InvalidPolicy {
    /// Every broken rule, in field order.
    pub problems: Vec<PolicyProblem>,
}

/// One broken rule: the field and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The field's name as in the config (`window.calls` for a nested one).
    pub field: &'static str,
    /// The rule, with the value, e.g. "success_threshold 5 is above half_open_calls 3".
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

struct ProblemList<'a>(&'a [PolicyProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
