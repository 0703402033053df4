//! A time-uniform confidence sequence for the ratio of two event rates
//! (canary over stable) from per-batch counts, and the two one-sided tests
//! the sequential judge reads from it. Not the judge itself (that is
//! [`super`]) and not tied to errors: the latency test feeds it
//! exceedances.
//!
//! Model: in batch `i` the canary saw `canary_events` out of
//! `canary_trials` and stable `stable_events` out of `stable_trials`.
//! Conditional on the batch's total events `m`, the canary's count is
//! binomial with success probability `s·ρ / (s·ρ + 1 − s)`, where
//! `s = canary_trials / (canary_trials + stable_trials)` is the canary's
//! exposure share *in that batch* and `ρ` the rate ratio (exact for Poisson
//! counts, the usual model for rare events). Because the share is taken per
//! batch, a weight that moves between batches is handled exactly.
//!
//! The evidence is the log-likelihood `ℓ(θ)`, `θ = ln ρ`, accumulated on a
//! fixed grid of ratios. For any true ratio `ρ*`,
//! `M_t(ρ*) = Σ_k w_k exp(ℓ_t(θ_k) − ℓ_t(θ*))` is a nonnegative martingale
//! starting at 1 (a product of per-batch likelihood ratios, mixed over the
//! prior weights `w_k`; Robbins' method of mixtures as used by the mSPRT of
//! Johari et al. and by Lindon et al., KDD 2022), so by Ville's inequality
//! `{ρ : M_t(ρ) < 1/α}` covers `ρ*` at every batch at once with probability
//! at least `1 − α` (Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform,
//! nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021).
//! The same holds for `M⁺`, the mixture over the grid's ratios above 1 only,
//! which the fail side reads so that no evidence is spent on improvements.
//! When the two versions are identical and events are Bernoulli rather than
//! Poisson, the canary's conditional count is hypergeometric, whose moment
//! generating function is dominated by the binomial one (Hoeffding 1963,
//! Theorem 4), so `M_t(1)` is a supermartingale and the A/A guarantee is
//! exact, not asymptotic.
//!
//! `ℓ` is concave in `θ`, so `M_t` is log-convex and the confidence set is
//! an interval. The grid only ever makes answers more conservative: a bound
//! is reported at the next grid ratio outwards, and a test rejects only when
//! the grid point on the far side of the margin is excluded *and* the
//! likelihood slopes away from the margin there (see [`RatioEvidence::assess`]).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Standard deviation, in `ln ρ`, of the normal prior the alternatives are
/// mixed over (half of its mass on ratios within 0.5x..2x). Tuned
/// on the simulator (`crate::simulate`); the guarantee holds for any fixed
/// choice.
const PRIOR_SCALE: f64 = 1.0;

/// One point of the ratio grid.
#[derive(Clone, Copy, Debug)]
struct GridPoint {
    /// `ln ρ`.
    theta: f64,
    /// `ρ`.
    ratio: f64,
    /// `ln w`: log weight of the two-sided mixture (normal prior on `ln ρ`).
    log_weight: f64,
    /// `ln w⁺`: log weight of the regression mixture (the same prior
    /// restricted to `ρ > 1`, renormalized); `-∞` at and below 1.
    log_weight_up: f64,
}

/// The grid: steps of 0.025 in `ln ρ` (2.5%) between ratios 0.61 and 2.1,
/// where margins and most decisions sit, and steps of 0.1 out to ratios
/// 0.22 and 20. Frozen: stored evidence depends on it.
fn grid() -> &'static [GridPoint] {
    static GRID: OnceLock<Vec<GridPoint>> = OnceLock::new();
    GRID.get_or_init(|| {
        // In thousandths of a unit of ln ρ, to keep the points exact.
        let mut milli: Vec<i32> = (-1500..-500).step_by(100).collect();
        milli.extend((-500..=750).step_by(25));
        milli.extend((850..=3000).step_by(100));
        let thetas: Vec<f64> = milli.iter().map(|m| f64::from(*m) / 1000.0).collect();
        let last = thetas.len() - 1;
        // Each point stands for the cell around it, so the weights follow
        // the prior density times the cell's width.
        let raw: Vec<f64> = thetas
            .iter()
            .enumerate()
            .map(|(k, theta)| {
                let left = if k == 0 { 0.1 } else { theta - thetas[k - 1] };
                let right = if k == last {
                    0.1
                } else {
                    thetas[k + 1] - theta
                };
                let z = theta / PRIOR_SCALE;
                (-0.5 * z * z).exp() * (left + right) / 2.0
            })
            .collect();
        let total: f64 = raw.iter().sum();
        let total_up: f64 = raw
            .iter()
            .zip(&thetas)
            .filter(|(_, theta)| **theta > 0.0)
            .map(|(weight, _)| weight)
            .sum();
        thetas
            .iter()
            .zip(raw)
            .map(|(theta, weight)| GridPoint {
                theta: *theta,
                ratio: theta.exp(),
                log_weight: (weight / total).ln(),
                log_weight_up: if *theta > 0.0 {
                    (weight / total_up).ln()
                } else {
                    f64::NEG_INFINITY
                },
            })
            .collect()
    })
}

/// Counts and accumulated log-likelihood of one rate-ratio test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioEvidence {
    /// Totals over all batches folded in so far (for estimates and reasons).
    pub canary_events: u64,
    pub canary_trials: u64,
    pub stable_events: u64,
    pub stable_trials: u64,
    /// `ℓ(θ_k)` on the frozen grid, empty until the first informative batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    log_likelihood: Vec<f64>,
}

/// What the evidence says about the ratio against one margin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioAssessment {
    /// `ln` of the e-value against "the ratio is at most the margin".
    pub log_e_worse: f64,
    /// `ln` of the e-value against "the ratio is at least the margin".
    pub log_e_within: f64,
    /// The confidence sequence has left the margin upwards: reject "within".
    pub worse: bool,
    /// The confidence sequence has left the margin downwards: reject "worse".
    pub within: bool,
    /// Bounds on the ratio (`0` and `∞` where the grid's end was reached).
    pub lower: f64,
    pub upper: f64,
}

// === impl RatioEvidence ===

impl RatioEvidence {
    /// Folds in one batch. Events above trials are clamped; a batch with no
    /// events, or with no trials on one side, carries no information about
    /// the ratio and only adds to the totals.
    pub fn observe(
        &mut self,
        canary_events: u64,
        canary_trials: u64,
        stable_events: u64,
        stable_trials: u64,
    ) {
        let canary_events = canary_events.min(canary_trials);
        let stable_events = stable_events.min(stable_trials);
        self.canary_events = self.canary_events.saturating_add(canary_events);
        self.canary_trials = self.canary_trials.saturating_add(canary_trials);
        self.stable_events = self.stable_events.saturating_add(stable_events);
        self.stable_trials = self.stable_trials.saturating_add(stable_trials);
        let events = canary_events + stable_events;
        if events == 0 || canary_trials == 0 || stable_trials == 0 {
            return;
        }
        let grid = grid();
        if self.log_likelihood.len() != grid.len() {
            // Empty, or stored under another grid: start the evidence afresh.
            self.log_likelihood = vec![0.0; grid.len()];
        }
        let share = canary_trials as f64 / (canary_trials as f64 + stable_trials as f64);
        let (x, m) = (canary_events as f64, events as f64);
        for (point, log_likelihood) in grid.iter().zip(self.log_likelihood.iter_mut()) {
            *log_likelihood += x * point.theta - m * (share * point.ratio + 1.0 - share).ln();
        }
    }

    /// Pooled canary rate over pooled stable rate; None while undefined.
    pub fn estimate(&self) -> Option<f64> {
        if self.canary_trials == 0 || self.stable_trials == 0 || self.stable_events == 0 {
            return None;
        }
        Some(
            (self.canary_events as f64 / self.canary_trials as f64)
                / (self.stable_events as f64 / self.stable_trials as f64),
        )
    }

    /// The two one-sided tests against `margin` (a ratio, at least 1, e.g.
    /// 1.05), each at level `alpha` in (0, 1), with the matching bounds.
    ///
    /// "Worse" reads the regression mixture `M⁺`, whose weight is all on
    /// ratios above 1, so a canary test spends no evidence on improvements:
    /// it needs the first grid ratio at or above the margin excluded from
    /// `{ρ : M⁺(ρ) < 1/alpha}` and the likelihood rising past it; by
    /// concavity every ratio at or below the margin is then excluded too,
    /// and `M⁺` at the true ratio is at least as large, so Ville's
    /// inequality bounds the chance of ever saying "worse" wrongly by
    /// `alpha`. "Within" is the mirror image on the two-sided mixture `M`.
    /// The lower bound comes from `M⁺`, the upper from `M`: each holds at
    /// every batch with probability `1 − alpha`.
    pub fn assess(&self, margin: f64, alpha: f64) -> RatioAssessment {
        let grid = grid();
        let threshold = (1.0 / alpha).ln();
        let flat;
        let log_likelihood: &[f64] = if self.log_likelihood.len() == grid.len() {
            &self.log_likelihood
        } else {
            flat = vec![0.0; grid.len()];
            &flat
        };
        let mixture = |weight: fn(&GridPoint) -> f64| {
            let log_mixture = log_sum_exp(
                grid.iter()
                    .zip(log_likelihood)
                    .map(|(point, l)| weight(point) + l),
            );
            // ln M_t at each grid ratio.
            log_likelihood
                .iter()
                .map(|l| log_mixture - l)
                .collect::<Vec<f64>>()
        };
        let log_e = mixture(|p| p.log_weight);
        let log_e_up = mixture(|p| p.log_weight_up);
        let margin_theta = margin.ln();
        let last = grid.len() - 1;

        let above = grid.iter().position(|p| p.theta >= margin_theta);
        let (log_e_worse, worse) = match above {
            Some(j) if j < last => (
                log_e_up[j],
                log_e_up[j] >= threshold && log_likelihood[j + 1] >= log_likelihood[j],
            ),
            Some(j) => (log_e_up[j], false),
            None => (0.0, false),
        };
        let below = grid.iter().rposition(|p| p.theta <= margin_theta);
        let (log_e_within, within) = match below {
            Some(i) if i > 0 => (
                log_e[i],
                log_e[i] >= threshold && log_likelihood[i - 1] >= log_likelihood[i],
            ),
            Some(i) => (log_e[i], false),
            None => (0.0, false),
        };

        let (lo, _) = confidence_set(&log_e_up, log_likelihood, threshold);
        let (_, hi) = confidence_set(&log_e, log_likelihood, threshold);
        let lower = if lo == 0 { 0.0 } else { grid[lo - 1].ratio };
        let upper = if hi == last {
            f64::INFINITY
        } else {
            grid[hi + 1].ratio
        };
        RatioAssessment {
            log_e_worse,
            log_e_within,
            worse,
            within,
            // Two bounds from two mixtures may cross on a rare unlucky path.
            lower: lower.min(upper),
            upper,
        }
    }
}

/// First and last grid index inside `{M < 1/alpha}` (an interval, since
/// `M` is log-convex); around the likelihood's peak when the interval falls
/// between two grid points.
fn confidence_set(log_e: &[f64], log_likelihood: &[f64], threshold: f64) -> (usize, usize) {
    let inside = |k: &usize| log_e[*k] < threshold;
    let last = log_e.len() - 1;
    match ((0..=last).find(inside), (0..=last).rev().find(inside)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => {
            let peak = argmax(log_likelihood);
            (peak, peak)
        }
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(best, top), (k, v)| {
            if *v > top {
                (k, *v)
            } else {
                (best, top)
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grid_is_ordered_and_weights_sum_to_one() {
        let grid = grid();
        assert!(grid.windows(2).all(|w| w[0].theta < w[1].theta));
        let total: f64 = grid.iter().map(|p| p.log_weight.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        let total_up: f64 = grid.iter().map(|p| p.log_weight_up.exp()).sum();
        assert!((total_up - 1.0).abs() < 1e-12);
        assert!(grid.iter().any(|p| p.theta == 0.0));
    }

    #[test]
    fn no_data_decides_nothing() {
        let a = RatioEvidence::default().assess(1.1, 0.01);
        assert!(!a.worse && !a.within);
        assert_eq!((a.lower, a.upper), (0.0, f64::INFINITY));
        assert_eq!(a.log_e_worse, 0.0);
    }

    #[test]
    fn a_large_ratio_is_detected_and_bounded() {
        let mut evidence = RatioEvidence::default();
        for _ in 0..10 {
            // Canary 5% of trials, errors at 5x stable's rate.
            evidence.observe(25, 1_000, 95, 19_000);
        }
        let a = evidence.assess(1.1, 0.01);
        assert!(a.worse, "{a:?}");
        assert!(!a.within);
        assert!(a.lower > 1.1 && a.lower < 5.0 && a.upper > 5.0, "{a:?}");
        assert!((evidence.estimate().unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn equal_rates_with_much_data_are_within_the_margin() {
        let mut evidence = RatioEvidence::default();
        for _ in 0..200 {
            evidence.observe(500, 10_000, 500, 10_000);
        }
        let a = evidence.assess(1.1, 0.01);
        assert!(a.within && !a.worse, "{a:?}");
        assert!(a.lower < 1.0 && a.upper > 1.0 && a.upper <= 1.1);
    }

    proptest! {
        #[test]
        fn e_values_are_finite_and_order_does_not_matter(
            batches in proptest::collection::vec((0u64..50, 0u64..2_000, 0u64..50, 0u64..20_000), 1..20),
            margin in 1.0f64..3.0,
        ) {
            let mut forward = RatioEvidence::default();
            let mut backward = RatioEvidence::default();
            for (ce, ct, se, st) in &batches {
                forward.observe(*ce, *ct, *se, *st);
            }
            for (ce, ct, se, st) in batches.iter().rev() {
                backward.observe(*ce, *ct, *se, *st);
            }
            prop_assert_eq!(forward.canary_events, backward.canary_events);
            for (f, b) in forward.log_likelihood.iter().zip(&backward.log_likelihood) {
                prop_assert!((f - b).abs() <= 1e-9 * f.abs().max(1.0));
            }
            let a = forward.assess(margin, 0.01);
            prop_assert!(!a.log_e_worse.is_nan() && !a.log_e_within.is_nan());
            // An e-value is never negative: its log is a real number or +∞.
            prop_assert!(a.log_e_worse > f64::NEG_INFINITY);
            prop_assert!(a.lower <= a.upper);
            prop_assert!(!(a.worse && a.within));
        }
    }
}
