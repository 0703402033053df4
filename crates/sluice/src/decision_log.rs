//! The log line of one rollout decision: every transition and every
//! analysis run, with the numbers that caused it as structured fields, so
//! that `--log-format json` gives one self-contained JSON object per
//! decision. Not the stored decision log (that is the store's), only its echo.

use std::fmt::Write as _;

use sluice_analysis::AnalysisRun;
use sluice_model::Unit;
use sluice_rollout::Decision;

/// Logs `decision` at info level (one event; the analysis fields only when
/// an analysis run caused it).
pub fn log(decision: &Decision) {
    let kind = snake(&decision.kind);
    let (from, to) = (phase(decision.from), phase(decision.to));
    let step = decision.step_index + 1;
    let weight = decision.weight.percent();
    match &decision.analysis {
        None => tracing::info!(
            service = %decision.service,
            rollout = decision.rollout_id,
            seq = decision.seq,
            kind = %kind,
            from = %from,
            to = %to,
            weight,
            step,
            "{:?}: {}",
            decision.kind,
            decision.reason
        ),
        Some(run) => tracing::info!(
            service = %decision.service,
            rollout = decision.rollout_id,
            seq = decision.seq,
            kind = %kind,
            from = %from,
            to = %to,
            weight,
            step,
            verdict = %snake(&run.verdict),
            canary_requests = run.canary_requests,
            stable_requests = run.stable_requests,
            canary_success_rate = run.canary_success_rate.map(thousandths),
            stable_success_rate = run.stable_success_rate.map(thousandths),
            canary_p99_ms = run.canary_p99_ms.map(thousandths),
            stable_p99_ms = run.stable_p99_ms.map(thousandths),
            checks = %checks(run),
            sequential = sequential(run).as_deref(),
            "{:?}: {}",
            decision.kind,
            decision.reason
        ),
    }
}

/// The serde name of a unit enum (`check_failed`, `pass`).
fn snake(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn phase(phase: sluice_rollout::Phase) -> String {
    format!("{phase:?}")
}

/// `success_rate=99.8% bound=99% pass, latency_p99=3.1ms stable=2.9ms bound=50ms pass`.
pub fn checks(run: &AnalysisRun) -> String {
    let mut out = String::new();
    for (i, check) in run.checks.iter().enumerate() {
        let unit = Unit::from_label(&check.unit).map_or("", Unit::suffix);
        let number = |v: f64| format!("{}{unit}", trimmed(v));
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{}={}",
            check.name,
            check.value.map_or("-".to_string(), number)
        );
        if let Some(stable) = check.stable_value {
            let _ = write!(out, " stable={}", number(stable));
        }
        match (&check.bound_expr, check.bound) {
            (expr, _) if !expr.is_empty() => {
                let _ = write!(out, " bound={}", expr.replace(' ', ""));
            }
            (_, Some(bound)) => {
                let _ = write!(out, " bound={}", number(bound));
            }
            _ => {}
        }
        let _ = write!(out, " {}", snake(&check.verdict));
    }
    out
}

/// The sequential judge's three tests, `errors=pass latency=inconclusive …`.
fn sequential(run: &AnalysisRun) -> Option<String> {
    let outcome = run.sequential.as_ref()?;
    Some(format!(
        "errors={} latency={} latency_tail={}",
        snake(&outcome.errors.verdict),
        snake(&outcome.latency.verdict),
        snake(&outcome.latency_tail.verdict)
    ))
}

/// To 0.001 (a percent or a millisecond needs no more, and the float noise
/// of `5.119000000000001` goes).
fn thousandths(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// At most four decimals, trailing zeros dropped (`99.5`, `0.0012`, `1234`).
fn trimmed(v: f64) -> String {
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_one_compact_field_with_value_bound_and_verdict() {
        let run = crate::output::tests::failing_run();
        assert_eq!(checks(&run), "success_rate=70% stable=100% bound=99% fail");
        assert_eq!(
            snake(&sluice_rollout::DecisionKind::CheckFailed),
            "check_failed"
        );
        assert_eq!(trimmed(0.00123), "0.0012");
    }
}
