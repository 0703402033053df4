//! What people read: tables for status and history, and the one-line
//! progress view shared by `sluice rollout watch` and `sluice demo`.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use sluice_analysis::AnalysisRun;
use sluice_model::{Timestamp, Unit, Weight};
use sluice_rollout::Decision;

use crate::status::ServiceStatus;

/// Success rate (percent) and p99 (ms) of one version over a recent window.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveStats {
    pub requests: u64,
    pub success_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub fn status_table(statuses: &[ServiceStatus]) -> String {
    let mut rows = vec![[
        "SERVICE",
        "PHASE",
        "WEIGHT",
        "STEP",
        "FAILED",
        "CANARY OK",
        "CANARY P99",
        "LAST ANALYSIS",
    ]
    .map(String::from)
    .to_vec()];
    for s in statuses {
        let analysis = s.last_analysis.as_ref();
        rows.push(vec![
            s.service.clone(),
            format!("{:?}", s.phase),
            s.weight.to_string(),
            format!("{}/{}", shown_step(s), s.steps_total),
            format!("{}/{}", s.failed_runs, s.threshold),
            percent(analysis.and_then(|a| a.canary_success_rate)),
            millis(analysis.and_then(|a| a.canary_p99_ms)),
            analysis.map_or("-".to_string(), |a| {
                format!("{:?}: {}", a.verdict, a.reason)
            }),
        ]);
    }
    let mut out = table(&rows);
    for s in statuses {
        if let Some(warm) = &s.warm {
            let _ = writeln!(
                out,
                "{}: previous pool {} warm until {} (`sluice rollout undo {}` switches back at once)",
                s.service,
                warm.endpoints.join(", "),
                time(warm.until),
                s.service
            );
        }
    }
    out
}

/// The stable pools served, oldest first; the last is in force.
pub fn revisions_table(revisions: &[sluice_rollout::Revision]) -> String {
    let mut rows = vec![["REVISION", "SINCE", "ENDPOINTS", "CAUSE", "CONFIG"]
        .map(String::from)
        .to_vec()];
    for (i, r) in revisions.iter().enumerate() {
        let current = if i + 1 == revisions.len() {
            " (current)"
        } else {
            ""
        };
        rows.push(vec![
            format!("{}{current}", r.number),
            time(r.at),
            r.endpoints.join(","),
            r.cause.clone(),
            r.config_digest.chars().take(8).collect(),
        ]);
    }
    table(&rows)
}

pub fn history_table(decisions: &[Decision]) -> String {
    let mut rows = vec![
        ["TIME (UTC)", "ROLLOUT", "KIND", "PHASE", "WEIGHT", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for d in decisions {
        rows.push(vec![
            time(d.at),
            d.rollout_id.to_string(),
            format!("{:?}", d.kind),
            format!("{:?}", d.to),
            d.weight.to_string(),
            d.reason.clone(),
        ]);
        for line in d.analysis.iter().flat_map(evidence_lines) {
            rows.push(vec![
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                line,
            ]);
        }
    }
    table(&rows)
}

/// One line per check (value, stable's, bound, verdict) and per sequential test.
fn evidence_lines(run: &AnalysisRun) -> Vec<String> {
    let mut lines = Vec::new();
    for check in &run.checks {
        let unit = Unit::from_label(&check.unit).map_or("", Unit::suffix);
        let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{}{unit}", round(v)));
        let mut line = format!("  · {} {}", check.name, number(check.value));
        if check.stable_value.is_some() {
            line.push_str(&format!(", stable {}", number(check.stable_value)));
        }
        if !check.bound_expr.is_empty() {
            line.push_str(&format!(", bound {}", check.bound_expr));
        }
        line.push_str(&format!(": {:?}", check.verdict).to_lowercase());
        lines.push(line);
    }
    if let Some(outcome) = &run.sequential {
        for (name, report) in [
            ("errors", &outcome.errors),
            ("latency", &outcome.latency),
            ("latency_tail", &outcome.latency_tail),
        ] {
            let interval = report.interval.map_or("-".to_string(), |(low, high)| {
                let high = if high.is_finite() {
                    round(high)
                } else {
                    "∞".to_string()
                };
                format!("[{}, {high}]", round(low))
            });
            lines.push(
                format!(
                "  · sequential {name}: ln e-value {} of {}, ratio {} {interval}, margin {}: {:?}",
                round(report.statistic),
                round(report.threshold),
                report.estimate.map_or("-".to_string(), round),
                round(report.margin),
                report.verdict
            )
                .to_lowercase(),
            );
        }
    }
    lines
}

/// Three significant decimals at most (`0.00123`, `12.3`, `1234`).
fn round(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `web  Progressing  [█████░░░░░░░░░░░░░░░]  25%  step 2/4  stable 100.0% p99 3ms  canary 99.8% p99 4ms`
pub fn progress_line(
    status: &ServiceStatus,
    stable: Option<LiveStats>,
    canary: Option<LiveStats>,
) -> String {
    let mut line = format!(
        "{}  {:<11}  {}  {:>6}  step {}/{}  failed {}/{}",
        status.service,
        format!("{:?}", status.phase),
        bar(status.weight, 20),
        status.weight.to_string(),
        shown_step(status),
        status.steps_total,
        status.failed_runs,
        status.threshold,
    );
    if let Some(pools) = &status.pools {
        let _ = write!(
            line,
            "  new {}/{} old {}/{}",
            pools.new_in, pools.new_total, pools.old_in, pools.old_total
        );
    }
    for (name, stats) in [("stable", stable), ("canary", canary)] {
        if let Some(stats) = stats {
            let _ = write!(
                line,
                "  {name} {} req ok {} p99 {}",
                stats.requests,
                percent(stats.success_rate),
                millis(stats.p99_ms)
            );
        }
    }
    line
}

/// The current step counted from 1 (all steps done shows `n/n`).
fn shown_step(status: &ServiceStatus) -> usize {
    (status.step + 1).min(status.steps_total)
}

pub fn bar(weight: Weight, width: usize) -> String {
    let filled = (usize::from(weight.basis_points()) * width + 5_000) / 10_000;
    format!(
        "[{}{}]",
        "█".repeat(filled),
        "░".repeat(width - filled.min(width))
    )
}

pub fn percent(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.1}%"))
}

pub fn millis(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v < 10.0 => format!("{v:.1}ms"),
        Some(v) => format!("{v:.0}ms"),
    }
}

pub fn time(at: Timestamp) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(at.millis());
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, value) in row.iter().enumerate() {
            if c + 1 == row.len() {
                out.push_str(value);
            } else {
                let _ = write!(out, "{value:<width$}  ", width = widths[c]);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(
            bar(Weight::from_percent(25.0).unwrap(), 20),
            format!("[{}{}]", "█".repeat(5), "░".repeat(15))
        );
        assert_eq!(bar(Weight::FULL, 4), "[████]");
        assert_eq!(bar(Weight::ZERO, 4), "[░░░░]");
    }

    #[test]
    fn time_is_utc_to_the_second() {
        assert_eq!(
            time(Timestamp::from_millis(1_700_000_000_000)),
            "2023-11-14 22:13:20"
        );
    }

    #[test]
    fn evidence_lines_show_values_bounds_and_verdicts() {
        let window = sluice_analysis::Window {
            stable: sluice_analysis::VersionWindow {
                requests: 1000,
                errors: 0,
                ..Default::default()
            },
            canary: sluice_analysis::VersionWindow {
                requests: 100,
                errors: 30,
                ..Default::default()
            },
        };
        let check = sluice_model::CheckSpec::builtin_min(sluice_model::Metric::SuccessRate, 99.0);
        let run = sluice_analysis::analyse(&[check], 20, &window);
        assert_eq!(
            evidence_lines(&run),
            ["  · success_rate 70%, stable 100%, bound 99%: fail"]
        );
        assert_eq!(
            (round(0.001234), round(12.345), round(1234.5)),
            ("0.0012".into(), "12.35".into(), "1234".into())
        );
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string()],
            vec!["CCC".to_string(), "D".to_string()],
        ];
        assert_eq!(table(&rows), "A    BB\nCCC  D\n");
    }
}
