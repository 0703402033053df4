//! The JSON bodies posted for a notice: Slack's incoming-webhook format
//! (`text` as the fallback, `blocks` for display) and a generic webhook
//! format for machines. Pure functions of the notice.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sluice_analysis::{CheckResult, Verdict};
use sluice_model::{NotificationKind, NotifyEvent, Timestamp};
use sluice_rollout::Decision;

use super::Notice;

/// The body for a target of this kind.
pub fn body(kind: NotificationKind, notice: &Notice, event: NotifyEvent) -> Value {
    match kind {
        NotificationKind::Slack => slack(notice, event),
        NotificationKind::Webhook => webhook(notice, event),
    }
}

/// Slack incoming-webhook JSON: `{"text": fallback, "blocks": [sections]}`.
pub fn slack(notice: &Notice, event: NotifyEvent) -> Value {
    let (headline, details) = match notice {
        Notice::Decision(decision) => (
            format!(
                "{} {}: {} (rollout {})",
                emoji(event),
                decision.service,
                describe(event),
                decision.rollout_id
            ),
            decision_details(decision, event),
        ),
        Notice::Breaker {
            breaker,
            service,
            version,
            from,
            to,
            reason,
            ..
        } => (
            format!(
                "{} {service}: breaker {breaker} on {version} {}",
                emoji(event),
                describe(event)
            ),
            vec![format!(
                "*Service:* {}  *Version:* {}  *Breaker:* {}\n*State:* {} → {}\n*Reason:* {}",
                mrkdwn(service),
                mrkdwn(version),
                mrkdwn(breaker),
                mrkdwn(from),
                mrkdwn(to),
                mrkdwn(reason)
            )],
        ),
    };
    let mut blocks = vec![section(&format!("*{}*", mrkdwn(&headline)))];
    blocks.extend(details.iter().map(|text| section(text)));
    let mut text = headline;
    if let Notice::Decision(decision) = notice {
        text.push_str(": ");
        text.push_str(&decision.reason);
    }
    json!({ "text": text, "blocks": blocks })
}

/// Generic JSON: the event, the decision's or breaker's fields, and the checks behind it.
pub fn webhook(notice: &Notice, event: NotifyEvent) -> Value {
    match notice {
        Notice::Decision(d) => {
            let checks: Vec<Value> = d
                .analysis
                .iter()
                .flat_map(|run| &run.checks)
                .map(|check| {
                    json!({
                        "name": check.name,
                        "verdict": check.verdict,
                        "value": check.value,
                        "bound": check.bound,
                        "unit": check.unit,
                    })
                })
                .collect();
            json!({
                "event": event.as_str(),
                "service": d.service,
                "rollout_id": d.rollout_id,
                "kind": d.kind,
                "from_phase": d.from.to_string(),
                "phase": d.to.to_string(),
                "weight": d.weight.percent(),
                "step": d.step_index,
                "reason": d.reason,
                "at": rfc3339(d.at),
                "checks": checks,
            })
        }
        Notice::Breaker {
            breaker,
            service,
            version,
            from,
            to,
            reason,
            at,
        } => json!({
            "event": event.as_str(),
            "service": service,
            "breaker": breaker,
            "version": version,
            "from": from,
            "to": to,
            "reason": reason,
            "at": rfc3339(*at),
        }),
    }
}

/// The decision's sections: where it is and why; for a rollback, the failing checks.
fn decision_details(decision: &Decision, event: NotifyEvent) -> Vec<String> {
    let mut details = vec![format!(
        "*Service:* {}  *Phase:* {} → {}  *Weight:* {}  *Step:* {}\n*Reason:* {}",
        mrkdwn(&decision.service),
        decision.from,
        decision.to,
        decision.weight,
        decision.step_index + 1,
        mrkdwn(&decision.reason)
    )];
    if event == NotifyEvent::RolledBack {
        let failing: Vec<String> = failing_checks(decision).map(describe_check).collect();
        if !failing.is_empty() {
            details.push(format!("*Failing checks:*\n{}", failing.join("\n")));
        }
    }
    details
}

/// The checks that failed in the decision's analysis run.
pub fn failing_checks(decision: &Decision) -> impl Iterator<Item = &CheckResult> {
    decision
        .analysis
        .iter()
        .flat_map(|run| &run.checks)
        .filter(|check| check.verdict == Verdict::Fail)
}

/// `• *success_rate*: 91.5 percent, bound 99%` (the bound as configured when known).
fn describe_check(check: &CheckResult) -> String {
    let value = check.value.map_or("no value".to_string(), |v| {
        format!("{} {}", round(v), check.unit)
    });
    let bound = if !check.bound_expr.is_empty() {
        check.bound_expr.clone()
    } else {
        check.bound.map_or("none".to_string(), |b| {
            format!("{} {}", round(b), check.unit)
        })
    };
    format!(
        "• *{}*: {}, bound {}",
        mrkdwn(&check.name),
        mrkdwn(&value),
        mrkdwn(&bound)
    )
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

fn describe(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Started => "rollout started",
        NotifyEvent::Advanced => "rollout advanced",
        NotifyEvent::Waiting => "waiting for approval",
        NotifyEvent::Promoted => "promoted",
        NotifyEvent::RolledBack => "rolled back",
        NotifyEvent::BreakerOpened => "opened",
        NotifyEvent::BreakerClosed => "closed",
    }
}

fn emoji(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Started => ":rocket:",
        NotifyEvent::Advanced => ":arrow_forward:",
        NotifyEvent::Waiting => ":hourglass:",
        NotifyEvent::Promoted => ":white_check_mark:",
        NotifyEvent::RolledBack => ":rewind:",
        NotifyEvent::BreakerOpened => ":no_entry:",
        NotifyEvent::BreakerClosed => ":large_green_circle:",
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters.
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Up to three decimals, without trailing zeros.
fn round(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at.millis())).to_string()
}
