//! Analysis: turns the metrics of one window (canary and stable, over one
//! interval) into a verdict per check and for the run, each explainable by
//! the numbers behind it. Pure: no I/O, no clock; the shells collect the
//! samples (the proxy's counters, later Prometheus) and pass them in.
#![forbid(unsafe_code)]

mod decide;
pub mod histogram;
mod judge;
pub mod sequential;
pub mod simulate;

pub use decide::{decide, sequential_config};
pub use histogram::Histogram;
pub use judge::{analyse, analyse_with, CheckMemory, Inputs, Measured};

use serde::{Deserialize, Serialize};

/// What one version did over one analysis window (a difference of two
/// cumulative snapshots of the proxy's counters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionWindow {
    /// Requests answered (by the upstream or by sluice on its behalf).
    pub requests: u64,
    /// Failures caused by the upstream: 5xx answers, connect errors, timeouts.
    pub errors: u64,
    /// Time to response head.
    pub latency: Histogram,
    /// Times a circuit breaker of the version opened.
    #[serde(default)]
    pub breaker_trips: u64,
    /// Mirrored (stable, canary) answer pairs compared (`shadow`; canary only).
    #[serde(default)]
    pub mirror_compared: u64,
    /// Of those, the pairs whose answers differed.
    #[serde(default)]
    pub mirror_mismatches: u64,
}

// === impl VersionWindow ===

impl VersionWindow {
    /// What happened between two cumulative snapshots: `self` (later) minus
    /// `earlier`, saturating at zero so that a counter reset (a proxy
    /// restart) gives an empty window instead of a wrapped one.
    pub fn since(&self, earlier: &VersionWindow) -> VersionWindow {
        VersionWindow {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: self.latency.saturating_sub(&earlier.latency),
            breaker_trips: self.breaker_trips.saturating_sub(earlier.breaker_trips),
            mirror_compared: self.mirror_compared.saturating_sub(earlier.mirror_compared),
            mirror_mismatches: self
                .mirror_mismatches
                .saturating_sub(earlier.mirror_mismatches),
        }
    }

    /// Share of requests that did not fail, in percent; None without requests.
    pub fn success_rate(&self) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let errors = self.errors.min(self.requests);
        Some(100.0 * (self.requests - errors) as f64 / self.requests as f64)
    }

    /// Share of compared mirror pairs that differed, in percent; None without pairs.
    pub fn mirror_mismatch_rate(&self) -> Option<f64> {
        if self.mirror_compared == 0 {
            return None;
        }
        let mismatches = self.mirror_mismatches.min(self.mirror_compared);
        Some(100.0 * mismatches as f64 / self.mirror_compared as f64)
    }

    /// A latency percentile (`99.0` is p99) in milliseconds; None without samples.
    pub fn latency_percentile_ms(&self, percentile: f64) -> Option<f64> {
        self.latency
            .quantile(percentile / 100.0)
            .map(|d| d.as_secs_f64() * 1000.0)
    }
}

/// Both versions over the same window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub stable: VersionWindow,
    pub canary: VersionWindow,
}

// === impl Window ===

impl Window {
    /// Both versions' [`VersionWindow::since`].
    pub fn since(&self, earlier: &Window) -> Window {
        Window {
            stable: self.stable.since(&earlier.stable),
            canary: self.canary.since(&earlier.canary),
        }
    }
}

/// The outcome of a check or of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not enough evidence either way (too little traffic, no data): never a pass.
    Inconclusive,
}

/// One check's verdict with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's display name (`success_rate`, `latency_p99`, or the configured name).
    pub name: String,
    pub verdict: Verdict,
    /// The measured value in the check's unit (percent, or milliseconds), if any.
    pub value: Option<f64>,
    /// Stable's value over the same window, when measured (relative bounds need it).
    #[serde(default)]
    pub stable_value: Option<f64>,
    /// The bound it was compared to, in the same unit (a relative bound resolved against stable).
    pub bound: Option<f64>,
    /// The bound as configured and resolved, e.g. `stable * 1.1 = 0.55%` or `99%`.
    #[serde(default)]
    pub bound_expr: String,
    /// `percent` or `ms`.
    pub unit: String,
    /// One sentence a person reads: what was measured, against what, on how many requests.
    pub reason: String,
}

/// One analysis run: every check, and the verdict of the whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRun {
    /// Fail if any check failed; else inconclusive if any was (or traffic was too low); else pass.
    pub verdict: Verdict,
    pub checks: Vec<CheckResult>,
    pub canary_requests: u64,
    pub stable_requests: u64,
    /// Canary success rate and p99 of the window, for progress display (None without traffic).
    pub canary_success_rate: Option<f64>,
    pub stable_success_rate: Option<f64>,
    pub canary_p99_ms: Option<f64>,
    pub stable_p99_ms: Option<f64>,
    /// Why this verdict: the failing checks' reasons, or the traffic shortfall.
    pub reason: String,
    /// Per check, what the next run needs to know (sustained violations, error streaks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<CheckMemory>,
    /// The sequential judge's outcome, when the rollout uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<sequential::SequentialOutcome>,
    /// The sequential judge's evidence after this run, for the rollout to keep
    /// (stored with the rollout, not with every decision).
    #[serde(skip)]
    pub sequential_state: Option<sequential::SequentialState>,
    /// A failure that rolls back at once, without counting toward `threshold`:
    /// the sequential judge's, whose false-rollback rate is already bounded by alpha.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_saturating_difference() {
        let mut earlier = VersionWindow {
            requests: 100,
            errors: 3,
            ..VersionWindow::default()
        };
        earlier.latency.record(1_000);
        let mut later = earlier.clone();
        later.requests = 150;
        later.errors = 8;
        later.latency.record(2_000);
        let window = later.since(&earlier);
        assert_eq!(window.requests, 50);
        assert_eq!(window.errors, 5);
        assert_eq!(window.latency.count(), 1);
        assert_eq!(window.success_rate(), Some(90.0));
        // A counter reset gives an empty window, not a wrapped one.
        let reset = VersionWindow::default().since(&later);
        assert_eq!(reset, VersionWindow::default());
        assert_eq!(reset.success_rate(), None);
        assert_eq!(reset.latency_percentile_ms(99.0), None);
    }
}
