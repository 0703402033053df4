//! The threshold judge: each check compares one value of the canary over
//! the last window with its bound — absolute (`min: 99`, `max: 500ms`) or
//! relative to stable over the same window (`max: stable * 1.10`) — and
//! may require the condition to hold for a while (`for: 5m`). Not the
//! statistical judge (see `sequential`) and not the place that collects
//! the numbers: provider values arrive as inputs.
//!
//! Evidence rules:
//! - Too little canary traffic is never a pass: below `min_requests` every
//!   builtin check is inconclusive, so a rollout waits instead of advancing
//!   on silence.
//! - A provider error or missing data is inconclusive, never a pass; after
//!   `consecutive_error_limit` errors in a row (or at once with
//!   `on_error: fail`) the check fails. A query error is kept apart from a
//!   regression in every reason.
//! - A sustained check (`for: 5m`) whose condition is violated is
//!   inconclusive ("pending") until the violation has lasted that long,
//!   measured from the first run that saw it; one good run resets it.

use serde::{Deserialize, Serialize};
use sluice_model::{Bound, CheckSpec, Metric, OnError, Provider, Timestamp};

use crate::{AnalysisRun, CheckResult, Verdict, VersionWindow, Window};

/// A check's value per version, as a provider measured it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub canary: Option<f64>,
    pub stable: Option<f64>,
}

/// What a check remembers between runs (stored with the rollout).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckMemory {
    /// When the current violation was first seen (sustained checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    /// Provider errors in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error_streak: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Everything one run is judged on besides the checks themselves.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The proxy's counters of both versions over the window.
    pub window: &'a Window,
    /// Per check (same index): a provider's values, an error text, or None for builtin checks.
    pub provided: &'a [Option<Result<Measured, String>>],
    /// Per check (same index) memory from the previous run; missing entries start empty.
    pub memory: &'a [CheckMemory],
    pub now: Timestamp,
}

/// Judges one window of builtin metrics only (no providers, no memory).
pub fn analyse(checks: &[CheckSpec], min_requests: u64, window: &Window) -> AnalysisRun {
    analyse_with(
        checks,
        min_requests,
        &Inputs {
            window,
            provided: &[],
            memory: &[],
            now: Timestamp::default(),
        },
    )
}

/// Judges one run. The run fails if any check failed (its reason lists the
/// failing checks' reasons joined by `; `), is inconclusive if any check was
/// or canary traffic was below `min_requests`, and passes otherwise —
/// including with no checks and enough traffic. `run.memory` is what the
/// next run needs.
pub fn analyse_with(checks: &[CheckSpec], min_requests: u64, inputs: &Inputs) -> AnalysisRun {
    let window = inputs.window;
    let canary = &window.canary;
    let shortfall = (canary.requests < min_requests).then(|| {
        format!(
            "too little traffic: {} canary requests, {} needed",
            canary.requests, min_requests
        )
    });
    let mut memory = Vec::with_capacity(checks.len());
    let results: Vec<CheckResult> = checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            let previous = inputs.memory.get(i).cloned().unwrap_or_default();
            let provided = inputs.provided.get(i).and_then(Option::as_ref);
            let (result, next) = judge_check(
                check,
                window,
                provided,
                shortfall.as_deref(),
                previous,
                inputs.now,
            );
            memory.push(next);
            result
        })
        .collect();

    let (verdict, reason) = if results.iter().any(|r| r.verdict == Verdict::Fail) {
        (Verdict::Fail, join_reasons(&results, Verdict::Fail))
    } else if let Some(shortfall) = shortfall {
        (Verdict::Inconclusive, shortfall)
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
        memory,
        sequential: None,
        sequential_state: None,
        decisive: false,
    }
}

/// A builtin metric of one version; None without the data to compute it.
fn builtin_value(metric: Metric, percentile: Option<f64>, version: &VersionWindow) -> Option<f64> {
    match metric {
        Metric::SuccessRate => version.success_rate(),
        Metric::ErrorRate => version.success_rate().map(|rate| 100.0 - rate),
        Metric::Latency => version.latency_percentile_ms(percentile.unwrap_or(99.0)),
        Metric::MeanLatency => version.latency.mean().map(|d| d.as_secs_f64() * 1000.0),
        Metric::BreakerTrips => Some(version.breaker_trips as f64),
        Metric::MirrorMismatchRate => version.mirror_mismatch_rate(),
    }
}

fn judge_check(
    check: &CheckSpec,
    window: &Window,
    provided: Option<&Result<Measured, String>>,
    shortfall: Option<&str>,
    memory: CheckMemory,
    now: Timestamp,
) -> (CheckResult, CheckMemory) {
    let name = check.display_name();
    let unit = check.unit();
    let mut result = CheckResult {
        name: name.clone(),
        verdict: Verdict::Inconclusive,
        value: None,
        stable_value: None,
        bound: None,
        bound_expr: String::new(),
        unit: unit.label().to_string(),
        reason: String::new(),
    };
    let measured = match (check.provider(), check.metric) {
        (Provider::Builtin, Some(metric)) => {
            if let Some(shortfall) = shortfall {
                result.reason = format!("{name} not judged: {shortfall}");
                return (result, memory);
            }
            Ok(Measured {
                canary: builtin_value(metric, check.percentile, &window.canary),
                stable: builtin_value(metric, check.percentile, &window.stable),
            })
        }
        (Provider::Builtin, None) => Err("no metric configured".to_string()),
        (Provider::Prometheus, _) => match provided {
            Some(Ok(measured)) => Ok(*measured),
            Some(Err(error)) => Err(error.clone()),
            None => Err("no value was fetched from the provider".to_string()),
        },
    };
    let measured = match measured {
        Ok(m) => m,
        Err(error) => return provider_error(check, result, memory, &error),
    };
    result.value = measured.canary;
    result.stable_value = measured.stable;
    let Some(value) = measured.canary else {
        result.reason = format!("{name}: no data from the canary{}", counts(check, window));
        return (result, memory);
    };
    let mut next = CheckMemory {
        failing_since: memory.failing_since,
        error_streak: 0,
    };
    let mut violation = None;
    let mut shown_bound = None;
    for (is_min, bound) in [(true, check.min_bound()), (false, check.max_bound())] {
        let Some(bound) = bound else { continue };
        let (limit, expr) = match bound {
            Bound::Absolute(v) => (v, format!("{}{}", trim(v), unit.suffix())),
            Bound::Relative(factor) => match measured.stable {
                Some(stable) => (
                    stable * factor,
                    format!(
                        "stable * {} = {}{}",
                        trim(factor),
                        shown(stable * factor, |_| true),
                        unit.suffix()
                    ),
                ),
                None => {
                    result.reason =
                        format!("{name}: no stable value to compare with (bound {bound})");
                    return (result, next);
                }
            },
        };
        // The bound is inclusive; a value equal to it up to floating-point
        // rounding (4.9% against stable 9.8% × 0.5) is not a violation.
        let slack = 1e-9 * value.abs().max(limit.abs()).max(1.0);
        let broken = if is_min {
            value < limit - slack
        } else {
            value > limit + slack
        };
        if broken && violation.is_none() {
            violation = Some((is_min, limit, expr.clone()));
        }
        if shown_bound.is_none() || broken {
            shown_bound = Some((is_min, limit, expr));
        }
    }
    let Some((is_min, limit, expr)) = shown_bound else {
        result.reason = format!("{name}: no bound configured");
        return (result, next);
    };
    result.bound = Some(limit);
    result.bound_expr = expr.clone();
    let suffix = unit.suffix();
    let Some((is_min, limit, expr)) = violation else {
        let shown_value = if is_min {
            shown(value, |v| v >= limit)
        } else {
            shown(value, |v| v <= limit)
        };
        let word = if is_min {
            "meets the minimum"
        } else {
            "is within the maximum"
        };
        result.verdict = Verdict::Pass;
        result.reason = format!(
            "{name} {shown_value}{suffix} {word} {expr}{}",
            counts(check, window)
        );
        next.failing_since = None;
        return (result, next);
    };
    let shown_value = if is_min {
        shown(value, |v| v < limit)
    } else {
        shown(value, |v| v > limit)
    };
    let word = if is_min {
        "is below the minimum"
    } else {
        "is above the maximum"
    };
    let condition = format!(
        "{name} {shown_value}{suffix} {word} {expr}{}",
        counts(check, window)
    );
    let since = *next.failing_since.get_or_insert(now);
    match check.sustained {
        Some(needed) if now.saturating_since(since) < needed => {
            result.reason = format!(
                "pending: {condition}, for {} of {}",
                sluice_model::duration::format(now.saturating_since(since)),
                sluice_model::duration::format(needed)
            );
        }
        Some(needed) => {
            result.verdict = Verdict::Fail;
            result.reason = format!(
                "{condition}, sustained for {} (needed {})",
                sluice_model::duration::format(now.saturating_since(since)),
                sluice_model::duration::format(needed)
            );
        }
        None => {
            result.verdict = Verdict::Fail;
            result.reason = condition;
        }
    }
    (result, next)
}

/// A provider error: inconclusive until the limit, kept apart from a regression.
fn provider_error(
    check: &CheckSpec,
    mut result: CheckResult,
    memory: CheckMemory,
    error: &str,
) -> (CheckResult, CheckMemory) {
    let streak = memory.error_streak + 1;
    let limit = check.consecutive_error_limit.max(1);
    let next = CheckMemory {
        failing_since: memory.failing_since,
        error_streak: streak,
    };
    if check.on_error == OnError::Fail {
        result.verdict = Verdict::Fail;
        result.reason = format!("{}: provider error (on_error: fail): {error}", result.name);
    } else if streak >= limit {
        result.verdict = Verdict::Fail;
        result.reason = format!(
            "{}: {streak} provider errors in a row (limit {limit}): {error}",
            result.name
        );
    } else {
        result.reason = format!(
            "{}: provider error {streak} of {limit} allowed in a row, inconclusive: {error}",
            result.name
        );
    }
    (result, next)
}

/// ` (12 of 1200 canary requests failed)` or ` (1200 canary requests)` for builtin checks.
fn counts(check: &CheckSpec, window: &Window) -> String {
    let canary = &window.canary;
    match check.metric {
        Some(Metric::SuccessRate | Metric::ErrorRate) if check.provider() == Provider::Builtin => {
            format!(
                " ({} of {} canary requests failed)",
                canary.errors.min(canary.requests),
                canary.requests
            )
        }
        Some(Metric::MirrorMismatchRate) => format!(
            " ({} of {} mirrored pairs differed)",
            canary.mirror_mismatches.min(canary.mirror_compared),
            canary.mirror_compared
        ),
        Some(_) if check.provider() == Provider::Builtin => {
            format!(" ({} canary requests)", canary.requests)
        }
        _ => String::new(),
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
mod tests;
