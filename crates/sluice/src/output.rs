//! What people read: tables for status and history, the one-line
//! progress view shared by `sluice rollout watch` and `sluice demo`, the
//! `-o table|json|yaml` switch, and colours (only on a terminal, never
//! with `NO_COLOR`).

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use sluice_analysis::AnalysisRun;
use sluice_model::{Timestamp, Unit, Weight};
use sluice_rollout::Decision;

use crate::cli::Output;
use crate::status::ServiceStatus;

/// Whether table cells are coloured; set once by the CLI from stdout.
static COLOUR: AtomicBool = AtomicBool::new(false);

/// Whether `stream` should get colours: a terminal, and `NO_COLOR` unset
/// or empty (<https://no-color.org>).
pub fn colour_for(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Colours table cells from now on when stdout is a terminal.
pub fn enable_colour_on_terminal() {
    COLOUR.store(colour_for(&std::io::stdout()), Ordering::Relaxed);
}

/// Good, in between, bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Good,
    Waiting,
    Bad,
}

/// `text` in the tone's colour when colours are on, else unchanged.
pub fn paint(text: &str, tone: Option<Tone>) -> String {
    paint_if(COLOUR.load(Ordering::Relaxed), text, tone)
}

fn paint_if(on: bool, text: &str, tone: Option<Tone>) -> String {
    let code = match tone {
        Some(_) if !on => return text.to_string(),
        None => return text.to_string(),
        Some(Tone::Good) => 32,
        Some(Tone::Waiting) => 33,
        Some(Tone::Bad) => 31,
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A phase, verdict, breaker or flag state (as shown, any case) painted by
/// what it means for the operator.
pub fn painted_state(text: &str) -> String {
    paint(text, tone_of(text))
}

fn tone_of(state: &str) -> Option<Tone> {
    match state.to_ascii_lowercase().replace('_', "").as_str() {
        "succeeded" | "promoting" | "pass" | "closed" | "enabled" | "on" => Some(Tone::Good),
        "progressing" | "initializing" | "paused" | "waitingpromotion" | "baking"
        | "inconclusive" | "halfopen" | "shadow" | "disabled" => Some(Tone::Waiting),
        "rollingback" | "rolledback" | "failed" | "fail" | "open" | "forcedopen" | "killed" => {
            Some(Tone::Bad)
        }
        _ => None,
    }
}

/// The answer as a table (default), pretty JSON or YAML, ready to print.
pub fn render<T: serde::Serialize>(
    value: &T,
    output: Output,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match output {
        Output::Table => table(value),
        Output::Json => serde_json::to_string_pretty(value)? + "\n",
        Output::Yaml => yaml(value)?,
    })
}

/// YAML with the same shape as the JSON output: enums as maps
/// (`{weight: 10}`), never YAML tags (`!weight 10`) that other tools and
/// JSON-minded readers do not take.
pub fn yaml<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(&serde_json::to_value(value)?)?)
}

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
            painted_state(&format!("{:?}", s.phase)),
            s.weight.to_string(),
            format!("{}/{}", shown_step(s), s.steps_total),
            format!("{}/{}", s.failed_runs, s.threshold),
            percent(analysis.and_then(|a| a.canary_success_rate)),
            millis(analysis.and_then(|a| a.canary_p99_ms)),
            analysis.map_or("-".to_string(), |a| {
                format!(
                    "{}: {}",
                    painted_state(&format!("{:?}", a.verdict)),
                    a.reason
                )
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
            painted_state(&format!("{:?}", d.to)),
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

/// Left-aligned columns separated by two spaces; the last column is not
/// padded. Widths count what shows: colour escapes take no room.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| shown_width(v))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, value) in row.iter().enumerate() {
            out.push_str(value);
            if c + 1 < row.len() {
                let padding = widths[c] - shown_width(value) + 2;
                out.extend(std::iter::repeat_n(' ', padding));
            }
        }
        out.push('\n');
    }
    out
}

/// Characters shown, not counting `ESC [ … m` colour sequences.
fn shown_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) => width += 1,
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    width
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run whose only check fails: 30 of 100 canary requests failed against `success_rate >= 99`.
    pub(crate) fn failing_run() -> AnalysisRun {
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
        sluice_analysis::analyse(&[check], 20, &window)
    }

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
        let run = failing_run();
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
        let coloured = vec![
            vec!["\x1b[32mok\x1b[0m".to_string(), "x".to_string()],
            vec!["fine".to_string(), "y".to_string()],
        ];
        assert_eq!(
            table(&coloured),
            "\x1b[32mok\x1b[0m    x\nfine  y\n",
            "escapes take no room"
        );
    }

    #[test]
    fn states_are_painted_only_when_colours_are_on() {
        assert_eq!(
            paint_if(false, "RolledBack", tone_of("RolledBack")),
            "RolledBack"
        );
        assert_eq!(
            paint_if(true, "RolledBack", tone_of("RolledBack")),
            "\x1b[31mRolledBack\x1b[0m"
        );
        assert_eq!(
            paint_if(true, "half_open", tone_of("half_open")),
            "\x1b[33mhalf_open\x1b[0m"
        );
        assert_eq!(paint_if(true, "Idle", tone_of("Idle")), "Idle");
    }
}
