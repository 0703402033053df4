//! Prometheus alerting rules over sluice's own metrics: rollouts that
//! failed or are stuck, a canary erring more than stable, breakers that
//! opened, stay open or open on several services at once, and versions
//! with a high failure rate.

use std::time::Duration;

use serde_json::{json, Value};

/// The thresholds operators tune (`sluice generate alerts --help`).
#[derive(Clone, Debug)]
pub struct AlertSettings {
    pub stuck_after: Duration,
    /// Percent above stable's error rate.
    pub canary_error_margin: f64,
    pub stuck_open_after: Duration,
    pub open_services: u32,
    /// Percent of requests.
    pub failure_rate: f64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            stuck_after: Duration::from_secs(3600),
            canary_error_margin: 10.0,
            stuck_open_after: Duration::from_secs(600),
            open_services: 2,
            failure_rate: 5.0,
        }
    }
}

/// A Prometheus duration: whole seconds, in the largest exact unit.
fn prom(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Error ratio (0–1) of one version over 5 minutes, by service.
fn error_ratio(version: &str) -> String {
    format!(
        "sum by (service) (rate(sluice_request_errors_total{{version=\"{version}\"}}[5m]))\n  /\nsum by (service) (rate(sluice_requests_total{{version=\"{version}\"}}[5m]))"
    )
}

fn rule(
    name: &str,
    expr: String,
    for_: &str,
    severity: &str,
    summary: &str,
    description: &str,
) -> Value {
    let mut rule = json!({
        "alert": name,
        "expr": expr,
        "labels": { "severity": severity },
        "annotations": { "summary": summary, "description": description },
    });
    if for_ != "0s" {
        rule["for"] = json!(for_);
    }
    rule
}

/// The rules file (YAML), ready for `promtool check rules`.
pub fn alert_rules(settings: &AlertSettings) -> String {
    let failed = "sluice_rollout_phase{phase=~\"RolledBack|Failed\"}";
    let rollouts = vec![
        rule(
            "SluiceRolloutRolledBack",
            format!("max_over_time({failed}[15m]) == 1 and min_over_time({failed}[15m]) == 0"),
            "0s",
            "warning",
            "Rollout of {{ $labels.service }} ended {{ $labels.phase }}",
            "The rollout of {{ $labels.service }} was rolled back or failed in the last 15 minutes; `sluice rollout history {{ $labels.service }}` shows the failing check and its numbers.",
        ),
        rule(
            "SluiceRolloutStuck",
            format!(
                "sluice_rollout_phase{{phase=~\"Progressing|Paused|WaitingPromotion\"}} == 1\nand on (service)\nchanges(sluice_rollout_steps_taken[{}]) == 0",
                prom(settings.stuck_after)
            ),
            "5m",
            "warning",
            "Rollout of {{ $labels.service }} made no progress",
            &format!(
                "The rollout of {{{{ $labels.service }}}} has been {{{{ $labels.phase }}}} without taking a step for {}: too little traffic, inconclusive analysis, or a gate waiting for approval.",
                prom(settings.stuck_after)
            ),
        ),
        rule(
            "SluiceCanaryErrorRateAboveStable",
            format!(
                "({canary})\n>\n({stable}) * {factor} + 0.001",
                canary = error_ratio("canary"),
                stable = error_ratio("stable"),
                factor = 1.0 + settings.canary_error_margin / 100.0,
            ),
            "5m",
            "warning",
            "Canary of {{ $labels.service }} errs more than stable",
            &format!(
                "The canary's error rate of {{{{ $labels.service }}}} has been more than {}% above stable's for 5 minutes (value: {{{{ $value | humanizePercentage }}}}).",
                settings.canary_error_margin
            ),
        ),
    ];
    let breakers = vec![
        rule(
            "SluiceBreakerOpened",
            "increase(sluice_circuit_breaker_state_transitions_total{to=\"open\"}[5m]) > 0".to_string(),
            "0s",
            "warning",
            "Breaker {{ $labels.breaker }} opened",
            "The circuit breaker {{ $labels.breaker }} ({{ $labels.service }}/{{ $labels.version }}) opened in the last 5 minutes: calls to that upstream are being rejected or served a fallback.",
        ),
        rule(
            "SluiceBreakerStuckOpen",
            "sluice_circuit_breaker_state == 2".to_string(),
            &prom(settings.stuck_open_after),
            "critical",
            "Breaker {{ $labels.breaker }} stuck open",
            &format!(
                "The circuit breaker {{{{ $labels.breaker }}}} has been open for more than {}: the upstream is not recovering.",
                prom(settings.stuck_open_after)
            ),
        ),
        rule(
            "SluiceBreakersOpenOnSeveralServices",
            format!(
                "count(max by (service) (sluice_circuit_breaker_open) == 1) >= {}",
                settings.open_services
            ),
            "1m",
            "critical",
            "Breakers open on several services",
            &format!(
                "{{{{ $value }}}} services have an open circuit breaker at once (threshold {}): a shared dependency may be down.",
                settings.open_services
            ),
        ),
    ];
    let proxy = vec![rule(
        "SluiceHighFailureRate",
        format!(
            "(sum by (service, version) (rate(sluice_request_errors_total[5m]))\n  /\nsum by (service, version) (rate(sluice_requests_total[5m]))) > {}",
            settings.failure_rate / 100.0
        ),
        "5m",
        "critical",
        "High failure rate on {{ $labels.service }}/{{ $labels.version }}",
        &format!(
            "More than {}% of the requests to {{{{ $labels.service }}}}/{{{{ $labels.version }}}} have failed for 5 minutes (5xx, connect errors, timeouts).",
            settings.failure_rate
        ),
    )];
    let file = json!({
        "groups": [
            { "name": "sluice-rollouts", "rules": rollouts },
            { "name": "sluice-breakers", "rules": breakers },
            { "name": "sluice-proxy", "rules": proxy },
        ]
    });
    let mut text = String::from(
        "# Prometheus alerting rules for sluice, from `sluice generate alerts`.\n# Check with `promtool check rules FILE`; load with `rule_files:` in prometheus.yml.\n",
    );
    text.push_str(&serde_yaml_ng::to_string(&file).unwrap_or_default());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(prom(Duration::from_secs(3600)), "1h");
        assert_eq!(prom(Duration::from_secs(600)), "10m");
        assert_eq!(prom(Duration::from_secs(90)), "90s");
        assert_eq!(prom(Duration::from_millis(10)), "1s");
    }

    #[test]
    fn settings_reach_the_rules() {
        let text = alert_rules(&AlertSettings {
            stuck_after: Duration::from_secs(7200),
            canary_error_margin: 25.0,
            ..AlertSettings::default()
        });
        let parsed: Value = serde_yaml_ng::from_str(&text).unwrap();
        let rules: Vec<&Value> = parsed["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "SluiceRolloutRolledBack",
                "SluiceRolloutStuck",
                "SluiceCanaryErrorRateAboveStable",
                "SluiceBreakerOpened",
                "SluiceBreakerStuckOpen",
                "SluiceBreakersOpenOnSeveralServices",
                "SluiceHighFailureRate",
            ]
        );
        assert_eq!(rules[1]["for"], "5m");
        assert!(rules[1]["expr"].as_str().unwrap().contains("[2h]"));
        assert!(rules[2]["expr"]
            .as_str()
            .unwrap()
            .contains("* 1.25 + 0.001"));
        assert_eq!(rules[4]["for"], "10m");
    }
}
