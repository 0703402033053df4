//! `/metrics`: the proxy's per-version counters and the controller's
//! rollout gauges in the Prometheus text format. Every name is `sluice_*`
//! with base units; this file is the list of the controller's names.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use sluice_analysis::sequential::TestReport;
use sluice_analysis::Verdict;
use sluice_rollout::Phase;

use super::AdminState;

const PHASES: [Phase; 11] = [
    Phase::Idle,
    Phase::Initializing,
    Phase::Progressing,
    Phase::Paused,
    Phase::WaitingPromotion,
    Phase::Promoting,
    Phase::Baking,
    Phase::Succeeded,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Failed,
];

pub async fn render(State(state): State<AdminState>) -> impl IntoResponse {
    let mut out = String::with_capacity(16 * 1024);
    state.controller.metrics().render_prometheus(&mut out);
    state.flags.counters.render(&mut out);
    state.controller.notifier().render(&mut out);
    let _ = writeln!(
        out,
        "# HELP sluice_flag_file_reloads_total Flag file changes taken or refused.\n\
         # TYPE sluice_flag_file_reloads_total counter\n\
         sluice_flag_file_reloads_total{{result=\"success\"}} {}\n\
         sluice_flag_file_reloads_total{{result=\"failure\"}} {}",
        state.flags.reloads_ok.load(Ordering::Relaxed),
        state.flags.reloads_failed.load(Ordering::Relaxed)
    );
    let states = state.controller.states();

    gauge_header(
        &mut out,
        "sluice_canary_weight_ratio",
        "Share of the service's traffic routed to the canary (0 to 1).",
    );
    for s in &states {
        let _ = writeln!(
            out,
            "sluice_canary_weight_ratio{{service=\"{}\"}} {}",
            escape(&s.service),
            s.canary_weight.percent() / 100.0
        );
    }
    gauge_header(
        &mut out,
        "sluice_rollout_phase",
        "1 for the phase the service's current or last rollout is in.",
    );
    for s in &states {
        let current = s.rollout.as_ref().map_or(Phase::Idle, |r| r.phase);
        for phase in PHASES {
            let _ = writeln!(
                out,
                "sluice_rollout_phase{{service=\"{}\",phase=\"{phase:?}\"}} {}",
                escape(&s.service),
                u8::from(phase == current)
            );
        }
    }
    gauge_header(
        &mut out,
        "sluice_rollout_failed_runs",
        "Failed analysis runs of the service's current or last rollout.",
    );
    for s in &states {
        let failed = s.rollout.as_ref().map_or(0, |r| r.failed_runs);
        let _ = writeln!(
            out,
            "sluice_rollout_failed_runs{{service=\"{}\"}} {failed}",
            escape(&s.service)
        );
    }
    gauge_header(
        &mut out,
        "sluice_rollout_steps_taken",
        "Steps completed by the service's current or last rollout.",
    );
    for s in &states {
        let taken = s.rollout.as_ref().map_or(0, |r| r.steps_taken);
        let _ = writeln!(
            out,
            "sluice_rollout_steps_taken{{service=\"{}\"}} {taken}",
            escape(&s.service)
        );
    }

    gauge_header(
        &mut out,
        "sluice_endpoint_healthy",
        "1 when a new endpoint of a rolling or recreate rollout passes its health checks, else 0.",
    );
    for (service, endpoint, healthy) in state.controller.endpoint_health() {
        let _ = writeln!(
            out,
            "sluice_endpoint_healthy{{service=\"{}\",endpoint=\"{}\"}} {}",
            escape(&service),
            escape(&endpoint),
            u8::from(healthy)
        );
    }

    render_checks(&mut out, &states);
    render_sequential(&mut out, &states);

    let counters = state.controller.counters();
    counter_header(
        &mut out,
        "sluice_analysis_runs_total",
        "Analysis runs by verdict.",
    );
    for (verdict, value) in [
        ("pass", &counters.analysis_pass),
        ("fail", &counters.analysis_fail),
        ("inconclusive", &counters.analysis_inconclusive),
    ] {
        let _ = writeln!(
            out,
            "sluice_analysis_runs_total{{verdict=\"{verdict}\"}} {}",
            value.load(Ordering::Relaxed)
        );
    }
    counter_header(
        &mut out,
        "sluice_rollout_decisions_total",
        "Rollout decisions recorded.",
    );
    let _ = writeln!(
        out,
        "sluice_rollout_decisions_total {}",
        counters.decisions.load(Ordering::Relaxed)
    );
    counter_header(
        &mut out,
        "sluice_config_reloads_total",
        "Config reloads by result (a failed reload keeps the old config).",
    );
    let _ = writeln!(
        out,
        "sluice_config_reloads_total{{result=\"success\"}} {}",
        state.reloads.success.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "sluice_config_reloads_total{{result=\"failure\"}} {}",
        state.reloads.failure.load(Ordering::Relaxed)
    );
    gauge_header(
        &mut out,
        "sluice_build_info",
        "Always 1; the version is a label.",
    );
    let _ = writeln!(
        out,
        "sluice_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The latest analysis run's checks: what was measured, against what, and the verdict.
fn render_checks(out: &mut String, states: &[sluice_rollout::ServiceState]) {
    let runs: Vec<(&str, &sluice_analysis::AnalysisRun)> = states
        .iter()
        .filter_map(|s| {
            s.rollout
                .as_ref()
                .and_then(|r| r.last_analysis.as_ref())
                .map(|a| (s.service.as_str(), a))
        })
        .collect();
    gauge_header(
        out,
        "sluice_check_value",
        "The latest value of each check, per version, in base units (label `unit`: ratio, seconds, or value for a query's own).",
    );
    for (service, run) in &runs {
        for check in &run.checks {
            let labels = format!(
                "service=\"{}\",check=\"{}\",unit=\"{}\"",
                escape(service),
                escape(&check.name),
                base_unit(&check.unit, 0.0).0
            );
            for (version, value) in [("canary", check.value), ("stable", check.stable_value)] {
                if let Some(value) = value.filter(|v| v.is_finite()) {
                    let value = base_unit(&check.unit, value).1;
                    let _ = writeln!(
                        out,
                        "sluice_check_value{{{labels},version=\"{version}\"}} {value}"
                    );
                }
            }
        }
    }
    gauge_header(
        out,
        "sluice_check_bound",
        "The bound each check was last compared with (relative bounds resolved against stable).",
    );
    for (service, run) in &runs {
        for check in &run.checks {
            if let Some(bound) = check.bound.filter(|v| v.is_finite()) {
                let (unit, bound) = base_unit(&check.unit, bound);
                let _ = writeln!(
                    out,
                    "sluice_check_bound{{service=\"{}\",check=\"{}\",unit=\"{unit}\"}} {bound}",
                    escape(service),
                    escape(&check.name),
                );
            }
        }
    }
    gauge_header(
        out,
        "sluice_check_verdict",
        "1 for each check's latest verdict (pass, fail, inconclusive).",
    );
    for (service, run) in &runs {
        for check in &run.checks {
            for verdict in [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive] {
                let name = match verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                    Verdict::Inconclusive => "inconclusive",
                };
                let _ = writeln!(
                    out,
                    "sluice_check_verdict{{service=\"{}\",check=\"{}\",verdict=\"{name}\"}} {}",
                    escape(service),
                    escape(&check.name),
                    u8::from(check.verdict == verdict)
                );
            }
        }
    }
}

/// The sequential judge's latest evidence per test: statistic, threshold, ratio estimate and interval.
fn render_sequential(out: &mut String, states: &[sluice_rollout::ServiceState]) {
    let outcomes: Vec<(&str, &sluice_analysis::sequential::SequentialOutcome)> = states
        .iter()
        .filter_map(|s| {
            let run = s.rollout.as_ref()?.last_analysis.as_ref()?;
            Some((s.service.as_str(), run.sequential.as_ref()?))
        })
        .collect();
    type Read = fn(&TestReport) -> Option<f64>;
    let series: [(&str, &str, Read); 5] = [
        ("sluice_sequential_statistic", "Log e-value of each sequential test against \"the canary is within the margin\".", |r| Some(r.statistic)),
        ("sluice_sequential_threshold", "The statistic at or above which the test fails the canary (ln of 1/alpha).", |r| Some(r.threshold)),
        ("sluice_sequential_ratio", "Estimated ratio of canary to stable (error rate, or share of slow requests).", |r| r.estimate),
        ("sluice_sequential_ratio_lower", "Lower end of the anytime-valid confidence interval of the ratio.", |r| r.interval.map(|i| i.0)),
        ("sluice_sequential_ratio_upper", "Upper end of the anytime-valid confidence interval of the ratio (absent when unbounded).", |r| r.interval.map(|i| i.1)),
    ];
    for (name, help, value) in series {
        gauge_header(out, name, help);
        for (service, outcome) in &outcomes {
            for (test, report) in [
                ("errors", &outcome.errors),
                ("latency", &outcome.latency),
                ("latency_tail", &outcome.latency_tail),
            ] {
                if let Some(v) = value(report).filter(|v| v.is_finite()) {
                    let _ = writeln!(
                        out,
                        "{name}{{service=\"{}\",test=\"{test}\"}} {v}",
                        escape(service)
                    );
                }
            }
        }
    }
}

fn gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn counter_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
/// A check's value in Prometheus base units: a percentage as a ratio
/// (0 to 1), milliseconds as seconds; a query's own value unchanged.
fn base_unit(unit: &str, value: f64) -> (&str, f64) {
    match sluice_model::Unit::from_label(unit) {
        Some(sluice_model::Unit::Percent) => ("ratio", value / 100.0),
        Some(sluice_model::Unit::Millis) => ("seconds", value / 1000.0),
        _ => (unit, value),
    }
}

#[cfg(test)]
mod tests {
    use super::base_unit;

    #[test]
    fn check_values_are_exported_in_base_units() {
        assert_eq!(base_unit("percent", 99.5), ("ratio", 0.995));
        assert_eq!(base_unit("ms", 250.0), ("seconds", 0.25));
        assert_eq!(base_unit("value", 3.0), ("value", 3.0));
    }
}
