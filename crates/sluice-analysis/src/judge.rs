//! The threshold judge: compares the canary's numbers over one window with
//! the absolute bounds of the configured checks. Not the statistical judge
//! (canary versus stable) and not the place that collects the numbers.
//!
//! Too little canary traffic is never a pass: below `min_requests` every
//! check is inconclusive, so a rollout waits for evidence instead of
//! advancing on silence.

use sluice_model::CheckSpec;

use crate::{AnalysisRun, CheckResult, Verdict, VersionWindow, Window};

/// Judges one window against the checks.
///
/// The run fails if any check failed (its reason lists the failing checks'
/// reasons joined by `; `), is inconclusive if any check was or canary
/// traffic was below `min_requests`, and passes otherwise, including when
/// no checks are configured and traffic was enough.
pub fn analyse(checks: &[CheckSpec], min_requests: u64, window: &Window) -> AnalysisRun {
    let canary = &window.canary;
    let shortfall = (canary.requests < min_requests).then(|| {
        format!(
            "too little traffic: {} canary requests, {} needed",
            canary.requests, min_requests
        )
    });
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|check| {
            let mut result = judge_check(check, canary);
            if let Some(shortfall) = &shortfall {
                result.verdict = Verdict::Inconclusive;
                result.reason = format!("{} not judged: {shortfall}", result.name);
            }
            result
        })
        .collect();

    let (verdict, reason) = if let Some(shortfall) = shortfall {
        (Verdict::Inconclusive, shortfall)
    } else if results.iter().any(|r| r.verdict == Verdict::Fail) {
        (Verdict::Fail, join_reasons(&results, Verdict::Fail))
    } else if results.iter().any(|r| r.verdict == Verdict::Inconclusive) {
        (
            Verdict::Inconclusive,
            join_reasons(&results, Verdict::Inconclusive),
        )
    } else {
        (Verdict::Pass, pass_reason(results.len(), canary.requests))
    };

    AnalysisRun {
        verdict,
        checks: results,
        canary_requests: canary.requests,
        stable_requests: window.stable.requests,
        canary_success_rate: canary.success_rate(),
        stable_success_rate: window.stable.success_rate(),
        canary_p99_ms: canary.latency_percentile_ms(99.0),
        stable_p99_ms: window.stable.latency_percentile_ms(99.0),
        reason,
    }
}

fn judge_check(check: &CheckSpec, canary: &VersionWindow) -> CheckResult {
    let name = check.display_name();
    match check {
        CheckSpec::SuccessRate { min, .. } => {
            let bound = *min;
            let value = canary.success_rate();
            let (verdict, reason) = match value {
                None => (
                    Verdict::Inconclusive,
                    format!("{name}: no canary requests to judge"),
                ),
                Some(rate) => {
                    let failed = canary.errors.min(canary.requests);
                    let counts =
                        format!("({failed} of {} canary requests failed)", canary.requests);
                    if rate < bound {
                        let shown = shown_below(rate, bound);
                        let reason = format!(
                            "{name} {shown}% is below the minimum {}% {counts}",
                            trim(bound)
                        );
                        (Verdict::Fail, reason)
                    } else {
                        let shown = shown_at_least(rate, bound);
                        let reason = format!(
                            "{name} {shown}% meets the minimum {}% {counts}",
                            trim(bound)
                        );
                        (Verdict::Pass, reason)
                    }
                }
            };
            CheckResult {
                name,
                verdict,
                value,
                bound,
                unit: "percent".to_string(),
                reason,
            }
        }
        CheckSpec::Latency {
            percentile, max, ..
        } => {
            let bound = max.as_secs_f64() * 1000.0;
            let value = canary.latency_percentile_ms(*percentile);
            let requests = format!("({} canary requests)", canary.requests);
            let (verdict, reason) = match value {
                None => (
                    Verdict::Inconclusive,
                    format!("{name}: no latency samples from the canary {requests}"),
                ),
                Some(ms) if ms > bound => {
                    let shown = shown_above(ms, bound);
                    let reason = format!(
                        "{name} {shown}ms is above the maximum {}ms {requests}",
                        trim(bound)
                    );
                    (Verdict::Fail, reason)
                }
                Some(ms) => {
                    let shown = shown_at_most(ms, bound);
                    let reason = format!(
                        "{name} {shown}ms is within the maximum {}ms {requests}",
                        trim(bound)
                    );
                    (Verdict::Pass, reason)
                }
            };
            CheckResult {
                name,
                verdict,
                value,
                bound,
                unit: "ms".to_string(),
                reason,
            }
        }
    }
}

fn join_reasons(results: &[CheckResult], verdict: Verdict) -> String {
    results
        .iter()
        .filter(|r| r.verdict == verdict)
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn pass_reason(checks: usize, canary_requests: u64) -> String {
    match checks {
        0 => format!("no checks configured; {canary_requests} canary requests"),
        1 => format!("the 1 check passed on {canary_requests} canary requests"),
        n => format!("all {n} checks passed on {canary_requests} canary requests"),
    }
}

// === number display ===
//
// A reason must never read "99.0% is below the minimum 99%": each value is
// shown with the fewest decimals (one at least, fewer for large latencies)
// that keep it on the same side of the bound as the verdict.

fn shown_below(value: f64, bound: f64) -> String {
    shown(value, |v| v < bound)
}

fn shown_at_least(value: f64, bound: f64) -> String {
    shown(value, |v| v >= bound)
}

fn shown_above(value: f64, bound: f64) -> String {
    shown(value, |v| v > bound)
}

fn shown_at_most(value: f64, bound: f64) -> String {
    shown(value, |v| v <= bound)
}

fn shown(value: f64, holds: impl Fn(f64) -> bool) -> String {
    let first = if value.abs() >= 100.0 { 0 } else { 1 };
    for decimals in first..=6 {
        let text = format!("{value:.decimals$}");
        if text.parse::<f64>().is_ok_and(&holds) {
            return trim_zeros(text);
        }
    }
    trim(value)
}

/// The shortest exact spelling (`99`, `99.5`).
fn trim(value: f64) -> String {
    format!("{value}")
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Histogram;

    fn success(min: f64) -> CheckSpec {
        CheckSpec::SuccessRate { name: None, min }
    }

    fn p99(max_ms: u64) -> CheckSpec {
        CheckSpec::Latency {
            name: None,
            percentile: 99.0,
            max: Duration::from_millis(max_ms),
        }
    }

    /// `requests` canary requests, `errors` of them failed, all taking `latency_ms`.
    fn canary(requests: u64, errors: u64, latency_ms: u64) -> Window {
        let mut latency = Histogram::new();
        for _ in 0..requests {
            latency.record(latency_ms * 1000);
        }
        Window {
            stable: VersionWindow::default(),
            canary: VersionWindow {
                requests,
                errors,
                latency,
            },
        }
    }

    #[test]
    fn too_little_traffic_is_inconclusive_never_pass() {
        let run = analyse(&[success(99.0), p99(100)], 20, &canary(7, 0, 5));
        assert_eq!(run.verdict, Verdict::Inconclusive);
        assert_eq!(
            run.reason,
            "too little traffic: 7 canary requests, 20 needed"
        );
        assert!(run
            .checks
            .iter()
            .all(|c| c.verdict == Verdict::Inconclusive));
        assert_eq!(
            run.checks[0].reason,
            "success_rate not judged: too little traffic: 7 canary requests, 20 needed"
        );
        // Even a terrible canary with too little traffic is not judged failed.
        let run = analyse(&[success(99.0)], 20, &canary(7, 7, 5));
        assert_eq!(run.verdict, Verdict::Inconclusive);
        // And with no checks at all it is still not a pass.
        assert_eq!(
            analyse(&[], 20, &canary(7, 0, 5)).verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn success_rate_below_minimum_fails_with_numbers() {
        let run = analyse(&[success(99.0)], 20, &canary(2000, 598, 5));
        assert_eq!(run.verdict, Verdict::Fail);
        let check = &run.checks[0];
        assert_eq!(check.name, "success_rate");
        assert_eq!(check.unit, "percent");
        assert_eq!(check.bound, 99.0);
        assert!((check.value.unwrap() - 70.1).abs() < 1e-9);
        assert_eq!(
            check.reason,
            "success_rate 70.1% is below the minimum 99% (598 of 2000 canary requests failed)"
        );
        assert_eq!(run.reason, check.reason);
    }

    #[test]
    fn success_rate_just_below_minimum_is_never_shown_equal() {
        // 99.98% against 99.99%: one decimal would print 100.0.
        let run = analyse(&[success(99.99)], 20, &canary(10_000, 2, 5));
        assert_eq!(
            run.checks[0].reason,
            "success_rate 99.98% is below the minimum 99.99% (2 of 10000 canary requests failed)"
        );
        let run = analyse(&[success(99.0)], 20, &canary(1000, 10, 5));
        assert_eq!(run.verdict, Verdict::Pass);
        assert_eq!(
            run.checks[0].reason,
            "success_rate 99% meets the minimum 99% (10 of 1000 canary requests failed)"
        );
    }

    #[test]
    fn latency_above_maximum_fails() {
        let run = analyse(&[p99(100)], 20, &canary(2000, 0, 287));
        assert_eq!(run.verdict, Verdict::Fail);
        let check = &run.checks[0];
        assert_eq!(check.name, "latency_p99");
        assert_eq!(check.unit, "ms");
        assert_eq!(check.bound, 100.0);
        let value = check.value.unwrap();
        assert!((287.0..=287.0 * 1.0625).contains(&value), "{value}");
        assert!(check.reason.starts_with("latency_p99 "), "{}", check.reason);
        assert!(
            check
                .reason
                .ends_with("ms is above the maximum 100ms (2000 canary requests)"),
            "{}",
            check.reason
        );
    }

    #[test]
    fn latency_within_maximum_passes_and_no_samples_is_inconclusive() {
        let run = analyse(&[p99(100)], 20, &canary(2000, 0, 40));
        assert_eq!(run.verdict, Verdict::Pass);
        assert!(run.checks[0].reason.contains("is within the maximum 100ms"));

        let mut window = canary(50, 0, 1);
        window.canary.latency = Histogram::new();
        let run = analyse(&[p99(100)], 20, &window);
        assert_eq!(run.verdict, Verdict::Inconclusive);
        assert_eq!(run.checks[0].value, None);
        assert_eq!(
            run.reason,
            "latency_p99: no latency samples from the canary (50 canary requests)"
        );
    }

    #[test]
    fn run_verdict_combines_checks() {
        let checks = [success(99.0), p99(100)];
        let run = analyse(&checks, 20, &canary(1520, 0, 10));
        assert_eq!(run.verdict, Verdict::Pass);
        assert_eq!(run.reason, "all 2 checks passed on 1520 canary requests");

        let run = analyse(&checks, 20, &canary(2000, 598, 287));
        assert_eq!(run.verdict, Verdict::Fail);
        assert_eq!(run.reason.matches("; ").count(), 1);
        assert!(run.reason.starts_with("success_rate 70.1% is below"));
        assert!(run.reason.contains("; latency_p99 "));

        // A failure wins over an inconclusive check.
        let mut window = canary(2000, 598, 1);
        window.canary.latency = Histogram::new();
        let run = analyse(&checks, 20, &window);
        assert_eq!(run.verdict, Verdict::Fail);
        assert_eq!(run.checks[1].verdict, Verdict::Inconclusive);
    }

    #[test]
    fn no_checks_and_enough_traffic_passes() {
        let run = analyse(&[], 20, &canary(30, 30, 1));
        assert_eq!(run.verdict, Verdict::Pass);
        assert!(run.checks.is_empty());
    }

    #[test]
    fn progress_numbers_are_filled() {
        let mut window = canary(100, 1, 20);
        window.stable.requests = 900;
        window.stable.latency.record(10_000);
        let run = analyse(&[], 20, &window);
        assert_eq!(run.canary_requests, 100);
        assert_eq!(run.stable_requests, 900);
        assert_eq!(run.canary_success_rate, Some(99.0));
        assert_eq!(run.stable_success_rate, Some(100.0));
        assert!(run.canary_p99_ms.unwrap() >= 20.0);
        assert!(run.stable_p99_ms.unwrap() >= 10.0);

        let run = analyse(&[], 0, &Window::default());
        assert_eq!(run.canary_success_rate, None);
        assert_eq!(run.canary_p99_ms, None);
    }

    #[test]
    fn configured_names_are_used() {
        let check = CheckSpec::SuccessRate {
            name: Some("availability".to_string()),
            min: 99.0,
        };
        let run = analyse(&[check], 1, &canary(10, 5, 1));
        assert!(run.reason.starts_with("availability 50% is below"));
    }
}
