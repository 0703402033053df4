//! Who decides a run: the threshold judge (the checks), the sequential
//! judge (canary against stable, anytime-valid), or both. Pure: the
//! threshold run and the sequential outcome come in, one verdict goes out.
//!
//! - `threshold`: the checks decide, as in `judge`.
//! - `sequential`: a sequential failure fails the run *decisively* (the
//!   rollout rolls back at once: the test's false-rollback rate is bounded
//!   by alpha however often it looks, so no failure count is needed); a
//!   pass, or no evidence of harm yet with enough traffic, passes the run
//!   (as guarded rollouts advance on schedule unless a regression shows);
//!   too little traffic stays inconclusive.
//! - `both`: either judge can fail the run (the sequential one decisively);
//!   the checks must pass for the run to pass.

use sluice_model::{Judge, SequentialSpec};

use crate::sequential::{
    self, SequentialConfig, SequentialConfigError, SequentialState, SequentialVerdict,
};
use crate::{AnalysisRun, Verdict, Window};

/// The judge's settings from the plan's percentages.
pub fn sequential_config(spec: &SequentialSpec) -> Result<SequentialConfig, SequentialConfigError> {
    SequentialConfig::try_new(
        spec.alpha,
        spec.error_margin / 100.0,
        spec.latency_margin / 100.0,
        spec.latency_percentile / 100.0,
    )
}

/// Folds `window` into the sequential evidence (when the judge asks for it)
/// and gives the run its final verdict.
pub fn decide(
    mut run: AnalysisRun,
    judge: Judge,
    config: &SequentialConfig,
    evidence: &SequentialState,
    window: &Window,
) -> AnalysisRun {
    if judge == Judge::Threshold {
        return run;
    }
    let (state, outcome) = sequential::update(config, evidence, window);
    let short_of_traffic = run.reason.starts_with("too little traffic");
    let (verdict, reason, decisive) = match (outcome.verdict, judge) {
        (SequentialVerdict::Fail, _) => (
            Verdict::Fail,
            format!("sequential judge: {}", outcome.reason),
            true,
        ),
        (_, Judge::Both) if run.verdict != Verdict::Pass => {
            (run.verdict, run.reason.clone(), false)
        }
        (_, Judge::Sequential) if short_of_traffic => {
            (Verdict::Inconclusive, run.reason.clone(), false)
        }
        (SequentialVerdict::Pass, _) => (
            Verdict::Pass,
            format!("sequential judge: {}", outcome.reason),
            false,
        ),
        (SequentialVerdict::Continue, _) => (
            Verdict::Pass,
            format!("no regression detected so far: {}", outcome.reason),
            false,
        ),
    };
    run.verdict = verdict;
    run.reason = reason;
    run.decisive = decisive;
    run.sequential = Some(outcome);
    run.sequential_state = Some(state);
    run
}

#[cfg(test)]
mod tests {
    use sluice_model::{CheckSpec, Metric};

    use super::*;
    use crate::{analyse, Histogram, VersionWindow};

    fn version(requests: u64, errors: u64) -> VersionWindow {
        let mut latency = Histogram::new();
        for i in 0..requests {
            latency.record(40_000 + (i % 50) * 1000);
        }
        VersionWindow {
            requests,
            errors,
            latency,
            breaker_trips: 0,
            mirror_compared: 0,
            mirror_mismatches: 0,
        }
    }

    fn config() -> SequentialConfig {
        sequential_config(&SequentialSpec::default()).unwrap()
    }

    /// Feeds `batches` windows of the given error counts; returns the last run.
    fn drive(judge: Judge, stable_errors: u64, canary_errors: u64, batches: usize) -> AnalysisRun {
        let checks = [CheckSpec::builtin_min(Metric::SuccessRate, 90.0)];
        let mut evidence = SequentialState::default();
        let mut last = None;
        for _ in 0..batches {
            let window = Window {
                stable: version(3800, stable_errors),
                canary: version(200, canary_errors),
            };
            let run = decide(
                analyse(&checks, 20, &window),
                judge,
                &config(),
                &evidence,
                &window,
            );
            evidence = run.sequential_state.clone().unwrap_or_default();
            let done = run.verdict == Verdict::Fail;
            last = Some(run);
            if done {
                break;
            }
        }
        last.unwrap()
    }

    #[test]
    fn threshold_alone_ignores_the_sequential_judge() {
        let run = drive(Judge::Threshold, 19, 20, 3);
        assert_eq!(run.verdict, Verdict::Pass);
        assert!(run.sequential.is_none() && run.sequential_state.is_none());
    }

    #[test]
    fn a_sequential_failure_is_decisive() {
        // Canary 10% errors against stable's 0.5%: the checks (>= 90%) still pass.
        let run = drive(Judge::Both, 19, 20, 20);
        assert_eq!(run.verdict, Verdict::Fail);
        assert!(run.decisive);
        assert!(
            run.reason.starts_with("sequential judge: "),
            "{}",
            run.reason
        );
        assert_eq!(
            run.sequential.as_ref().unwrap().verdict,
            SequentialVerdict::Fail
        );
    }

    #[test]
    fn no_evidence_of_harm_passes_and_the_checks_still_count_with_both() {
        let run = drive(Judge::Sequential, 19, 1, 1);
        assert_eq!(run.verdict, Verdict::Pass, "{}", run.reason);
        assert!(!run.decisive);
        // With both, a failing check fails the run (not decisively).
        let checks = [CheckSpec::builtin_min(Metric::SuccessRate, 99.9)];
        let window = Window {
            stable: version(3800, 19),
            canary: version(200, 1),
        };
        let run = decide(
            analyse(&checks, 20, &window),
            Judge::Both,
            &config(),
            &SequentialState::default(),
            &window,
        );
        assert_eq!((run.verdict, run.decisive), (Verdict::Fail, false));
    }

    #[test]
    fn too_little_traffic_stays_inconclusive() {
        let window = Window {
            stable: version(3800, 19),
            canary: version(3, 0),
        };
        let run = decide(
            analyse(&[], 20, &window),
            Judge::Sequential,
            &config(),
            &SequentialState::default(),
            &window,
        );
        assert_eq!(run.verdict, Verdict::Inconclusive);
    }
}
