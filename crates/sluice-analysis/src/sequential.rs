//! The sequential judge: compares canary with stable after every batch of
//! counts and stops as soon as the evidence allows, with a false-rollback
//! probability of at most `alpha` however often it looks. Not the
//! threshold judge ([`crate::analyse`]) and not the place that collects
//! counts: it folds [`Window`]s the providers already produced.
//!
//! # Tests
//!
//! - **Errors**: a confidence sequence for the ratio of the canary's error
//!   rate to stable's ([`ratio`]), from per-batch counts conditioned on the
//!   batch's total errors, so that a canary weight that moves between
//!   batches is handled exactly.
//! - **Latency**: the same ratio test on *exceedances*: the canary requests
//!   slower than stable's `latency_quantile` (read from stable's histogram
//!   of all *earlier* batches, so the boundary is fixed before the batch it
//!   judges and the test stays valid), against stable's requests above the
//!   same boundary in the same batch. A guard on the tail does the same at
//!   the quantile with a tenth of the exceedances (p99.9 for p99), because a
//!   regression that only moves the slowest requests further out does not
//!   change how many cross p99. Exceedance counts are the one-sided form of
//!   the quantile tests of Howard & Ramdas, "Sequential estimation of
//!   quantiles with applications to A/B-testing and best-arm
//!   identification" (Bernoulli 2022) and Lindon, Sanden, Shirikian, "Rapid
//!   regression detection in software deployments through sequential
//!   testing" (KDD 2022): a canary slower at a quantile puts more requests
//!   above stable's value there.
//!
//! # Decision
//!
//! Fail as soon as any test's confidence sequence lies above its margin;
//! Pass once the error test's and the latency test's lie below theirs (the
//! tail guard can fail a canary but is not needed for a pass: at 0.1% of
//! traffic it would take hours to bound); Continue otherwise. `alpha` is
//! split (Bonferroni): 60% to errors, 20% to each latency test, so the
//! probability that a canary no worse than the margins is ever failed is
//! at most `alpha`, and likewise for a wrong pass. The fail side mixes
//! only over regressions (ratios above 1), the pass side over all ratios
//! (see [`RatioEvidence::assess`]).
//!
//! Assumptions: requests are independent given their version; errors and
//! slow requests are rare enough for the Poisson conditional model (exact
//! under A/A, see [`ratio`]); the providers' counts are per version over the
//! same interval. The state is cumulative; a verdict is not latched, so the
//! caller acts on the first non-Continue.

mod ratio;

pub use ratio::{RatioAssessment, RatioEvidence};

use serde::{Deserialize, Serialize};

use crate::histogram::{bucket_upper_micros, Histogram};
use crate::Window;

/// Shares of `alpha` given to the error test and to each latency test.
const ERROR_ALPHA_SHARE: f64 = 0.6;
const LATENCY_ALPHA_SHARE: f64 = 0.2;
/// Stable must have seen this many requests above a quantile (in
/// expectation) before its boundary is trusted.
const MIN_STABLE_EXCEEDANCES: f64 = 20.0;

/// Settings of the sequential judge, validated at construction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SequentialConfig {
    alpha: f64,
    error_margin: f64,
    latency_margin: f64,
    latency_quantile: f64,
}

/// A setting out of its bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequentialConfigError {
    #[error("alpha must be in (0, 0.5], got {0}")]
    Alpha(f64),
    #[error("error_margin must be in [0, 4], got {0}")]
    ErrorMargin(f64),
    #[error("latency_margin must be in [0, 4], got {0}")]
    LatencyMargin(f64),
    #[error("latency_quantile must be in [0.5, 0.999], got {0}")]
    LatencyQuantile(f64),
}

// === impl SequentialConfig ===

impl SequentialConfig {
    /// - `alpha`: the bound on the probability of ever failing a canary that
    ///   is within the margins (and of ever passing one that is not); (0, 0.5].
    /// - `error_margin`: relative; the canary's error rate may be up to
    ///   `1 + error_margin` times stable's; [0, 4].
    /// - `latency_margin`: relative, on exceedances: the share of canary
    ///   requests slower than stable's `latency_quantile` may be up to
    ///   `1 + latency_margin` times stable's share; [0, 4].
    /// - `latency_quantile`: the quantile whose exceedances are compared
    ///   (0.99 is p99); [0.5, 0.999].
    pub fn try_new(
        alpha: f64,
        error_margin: f64,
        latency_margin: f64,
        latency_quantile: f64,
    ) -> Result<SequentialConfig, SequentialConfigError> {
        if !(alpha > 0.0 && alpha <= 0.5) {
            return Err(SequentialConfigError::Alpha(alpha));
        }
        if !(0.0..=4.0).contains(&error_margin) {
            return Err(SequentialConfigError::ErrorMargin(error_margin));
        }
        if !(0.0..=4.0).contains(&latency_margin) {
            return Err(SequentialConfigError::LatencyMargin(latency_margin));
        }
        if !(0.5..=0.999).contains(&latency_quantile) {
            return Err(SequentialConfigError::LatencyQuantile(latency_quantile));
        }
        Ok(SequentialConfig {
            alpha,
            error_margin,
            latency_margin,
            latency_quantile,
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    pub fn error_margin(&self) -> f64 {
        self.error_margin
    }
    pub fn latency_margin(&self) -> f64 {
        self.latency_margin
    }
    pub fn latency_quantile(&self) -> f64 {
        self.latency_quantile
    }

    /// The tail guard's quantile: a tenth of the exceedances (0.999 for 0.99).
    pub fn tail_quantile(&self) -> f64 {
        1.0 - (1.0 - self.latency_quantile) / 10.0
    }
}

impl Default for SequentialConfig {
    /// alpha 0.01, error margin 5%, latency margin 25%, p99.
    fn default() -> Self {
        SequentialConfig {
            alpha: 0.01,
            error_margin: 0.05,
            latency_margin: 0.25,
            latency_quantile: 0.99,
        }
    }
}

/// The evidence so far, kept by the caller between batches (a few kB as
/// JSON: three grids of 83 numbers and stable's sparse histogram).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// Batches folded in.
    pub batches: u64,
    pub errors: RatioEvidence,
    /// Canary versus stable requests above stable's `latency_quantile`.
    pub latency: RatioEvidence,
    /// The same above the tail quantile.
    pub latency_tail: RatioEvidence,
    /// Stable's latencies over all batches so far: where the boundaries come from.
    pub stable_latency: Histogram,
}

/// The judge's answer after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequentialVerdict {
    /// Enough evidence that the canary is within the margins.
    Pass,
    /// Enough evidence that the canary is worse than a margin.
    Fail,
    /// Not yet enough evidence either way.
    Continue,
}

/// One test's evidence, for display, storage and metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    /// Natural log of the e-value against "the canary is within the margin".
    pub statistic: f64,
    /// The statistic fails the canary at or above this: `ln(1 / alpha_test)`.
    pub threshold: f64,
    /// The pooled ratio (canary rate over stable rate), if defined.
    pub estimate: Option<f64>,
    /// Anytime-valid lower and upper bounds on the ratio, each holding at
    /// every batch with probability `1 − alpha_test` (a confidence
    /// sequence); an unbounded upper end is serialized as null.
    #[serde(with = "bounds")]
    pub interval: Option<(f64, f64)>,
    /// The margin as a ratio (1.10 for 10%).
    pub margin: f64,
    pub verdict: SequentialVerdict,
}

/// The verdict of the run so far, with each test's evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialOutcome {
    pub verdict: SequentialVerdict,
    pub errors: TestReport,
    pub latency: TestReport,
    pub latency_tail: TestReport,
    /// One sentence with the numbers behind the verdict.
    pub reason: String,
}

/// Folds one batch (both versions' counts over the last interval) into the
/// evidence and decides. Pure; `state` is not changed.
pub fn update(
    config: &SequentialConfig,
    state: &SequentialState,
    batch: &Window,
) -> (SequentialState, SequentialOutcome) {
    let mut next = state.clone();
    let outcome = next.observe(config, batch);
    (next, outcome)
}

// === impl SequentialState ===

impl SequentialState {
    /// [`update`] in place, for callers that own the state.
    pub fn observe(&mut self, config: &SequentialConfig, batch: &Window) -> SequentialOutcome {
        let (canary, stable) = (&batch.canary, &batch.stable);
        self.batches += 1;
        self.errors.observe(
            canary.errors,
            canary.requests,
            stable.errors,
            stable.requests,
        );
        let levels = [
            (config.latency_quantile, &mut self.latency),
            (config.tail_quantile(), &mut self.latency_tail),
        ];
        for (quantile, evidence) in levels {
            // The boundary comes from earlier batches only.
            if let Some(boundary) = boundary_bucket(&self.stable_latency, quantile) {
                evidence.observe(
                    count_above(&canary.latency, boundary),
                    canary.latency.count(),
                    count_above(&stable.latency, boundary),
                    stable.latency.count(),
                );
            }
        }
        self.stable_latency.merge(&stable.latency);
        self.judge(config)
    }

    /// The verdict on the evidence so far, without folding anything in.
    pub fn judge(&self, config: &SequentialConfig) -> SequentialOutcome {
        let error_alpha = config.alpha * ERROR_ALPHA_SHARE;
        let latency_alpha = config.alpha * LATENCY_ALPHA_SHARE;
        let errors = report(&self.errors, 1.0 + config.error_margin, error_alpha);
        let latency = report(&self.latency, 1.0 + config.latency_margin, latency_alpha);
        let latency_tail = report(
            &self.latency_tail,
            1.0 + config.latency_margin,
            latency_alpha,
        );
        let boundary = |q| {
            boundary_bucket(&self.stable_latency, q).map(|b| bucket_upper_micros(b) as f64 / 1000.0)
        };
        let tests = [
            (&errors, describe_errors(&self.errors, &errors, error_alpha)),
            (
                &latency,
                describe_latency(
                    &self.latency,
                    &latency,
                    config.latency_quantile,
                    boundary(config.latency_quantile),
                    latency_alpha,
                ),
            ),
            (
                &latency_tail,
                describe_latency(
                    &self.latency_tail,
                    &latency_tail,
                    config.tail_quantile(),
                    boundary(config.tail_quantile()),
                    latency_alpha,
                ),
            ),
        ];
        let failing: Vec<&str> = tests
            .iter()
            .filter(|(t, _)| t.verdict == SequentialVerdict::Fail)
            .map(|(_, sentence)| sentence.as_str())
            .collect();
        let (verdict, reason) = if !failing.is_empty() {
            (SequentialVerdict::Fail, failing.join("; "))
        } else if errors.verdict == SequentialVerdict::Pass
            && latency.verdict == SequentialVerdict::Pass
        {
            (
                SequentialVerdict::Pass,
                format!("{}; {}", tests[0].1, tests[1].1),
            )
        } else {
            (
                SequentialVerdict::Continue,
                format!(
                    "no decision yet after {} canary requests: {}; {}",
                    self.errors.canary_trials, tests[0].1, tests[1].1
                ),
            )
        };
        SequentialOutcome {
            verdict,
            errors,
            latency,
            latency_tail,
            reason,
        }
    }
}

fn report(evidence: &RatioEvidence, margin: f64, alpha: f64) -> TestReport {
    let assessment = evidence.assess(margin, alpha);
    let verdict = if assessment.worse {
        SequentialVerdict::Fail
    } else if assessment.within {
        SequentialVerdict::Pass
    } else {
        SequentialVerdict::Continue
    };
    TestReport {
        statistic: assessment.log_e_worse,
        threshold: (1.0 / alpha).ln(),
        estimate: evidence.estimate(),
        interval: Some((assessment.lower, assessment.upper)),
        margin,
        verdict,
    }
}

/// The bucket holding stable's `quantile` (nearest rank), once stable has
/// seen enough requests for it to stand on about
/// [`MIN_STABLE_EXCEEDANCES`] slower ones.
fn boundary_bucket(stable: &Histogram, quantile: f64) -> Option<usize> {
    let total = stable.count();
    if (total as f64) * (1.0 - quantile) < MIN_STABLE_EXCEEDANCES {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    stable.counts().iter().position(|count| {
        seen = seen.saturating_add(*count);
        seen >= rank
    })
}

/// `p99`, `p99.9`, `p95`.
fn quantile_name(quantile: f64) -> String {
    let percent = format!("{:.2}", 100.0 * quantile);
    format!("p{}", percent.trim_end_matches('0').trim_end_matches('.'))
}

fn count_above(histogram: &Histogram, bucket: usize) -> u64 {
    histogram.counts()[bucket + 1..]
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(*c))
}

fn percent(events: u64, trials: u64) -> String {
    if trials == 0 {
        return "n/a".to_string();
    }
    format!("{:.2}%", 100.0 * events as f64 / trials as f64)
}

fn describe_interval(report: &TestReport, alpha: f64) -> String {
    let estimate = match report.estimate {
        Some(e) => format!("ratio {e:.2}"),
        None => "ratio undefined".to_string(),
    };
    let interval = match report.interval {
        Some((lower, upper)) if upper.is_finite() => format!("[{lower:.2}, {upper:.2}]"),
        Some((lower, _)) => format!("[{lower:.2}, unbounded]"),
        None => "none".to_string(),
    };
    let level = 100.0 * (1.0 - alpha);
    format!("{estimate}, anytime-valid bounds {interval} at {level}% each")
}

fn comparison(report: &TestReport) -> &'static str {
    match report.verdict {
        SequentialVerdict::Fail => "exceeds",
        SequentialVerdict::Pass => "is within",
        SequentialVerdict::Continue => "is not yet decided against",
    }
}

fn describe_errors(evidence: &RatioEvidence, report: &TestReport, alpha: f64) -> String {
    format!(
        "canary error rate {} vs stable {} ({}) {} the margin {:.2}",
        percent(evidence.canary_events, evidence.canary_trials),
        percent(evidence.stable_events, evidence.stable_trials),
        describe_interval(report, alpha),
        comparison(report),
        report.margin
    )
}

fn describe_latency(
    evidence: &RatioEvidence,
    report: &TestReport,
    quantile: f64,
    boundary_ms: Option<f64>,
    alpha: f64,
) -> String {
    let name = quantile_name(quantile);
    let Some(boundary_ms) = boundary_ms else {
        return format!("{name}: too few stable requests yet to place the boundary");
    };
    format!(
        "canary requests slower than stable's {name} ({boundary_ms:.1} ms) {} vs stable {} ({}) {} the margin {:.2}",
        percent(evidence.canary_events, evidence.canary_trials),
        percent(evidence.stable_events, evidence.stable_trials),
        describe_interval(report, alpha),
        comparison(report),
        report.margin
    )
}

/// Serializes an interval with an unbounded upper end as `[lower, null]`.
mod bounds {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        interval: &Option<(f64, f64)>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        interval
            .map(|(lower, upper)| (lower, upper.is_finite().then_some(upper)))
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<(f64, f64)>, D::Error> {
        let raw = Option::<(f64, Option<f64>)>::deserialize(deserializer)?;
        Ok(raw.map(|(lower, upper)| (lower, upper.unwrap_or(f64::INFINITY))))
    }
}

#[cfg(test)]
mod tests;
