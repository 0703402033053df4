use serde_json::json;
use sluice_model::{NotificationConfig, NotificationKind, NotifyEvent, Timestamp, Weight};
use sluice_rollout::{Decision, DecisionKind, Phase};

use super::payload::{slack, webhook};
use super::*;

fn decision(kind: DecisionKind, from: Phase, to: Phase) -> Decision {
    Decision {
        service: "checkout".to_string(),
        rollout_id: 3,
        seq: 4,
        at: Timestamp::from_millis(1_700_000_000_000),
        kind,
        from,
        to,
        weight: Weight::from_percent(10.0).unwrap(),
        step_index: 1,
        reason: "rolled back: success_rate 91.5% below 99%".to_string(),
        analysis: None,
    }
}

/// A failed run: success_rate 91.5% against 99% (latency passing). Also
/// used by tests/notifications.rs, which includes this module.
pub(crate) fn failed_analysis() -> sluice_analysis::AnalysisRun {
    serde_json::from_value(json!({
        "verdict": "fail",
        "checks": [
            { "name": "success_rate", "verdict": "fail", "value": 91.5, "bound": 99.0,
              "bound_expr": "99%", "unit": "percent", "reason": "91.5% < 99%" },
            { "name": "latency_p99", "verdict": "pass", "value": 120.0, "bound": 500.0,
              "unit": "ms", "reason": "120ms <= 500ms" },
        ],
        "canary_requests": 400, "stable_requests": 3600,
        "canary_success_rate": 91.5, "stable_success_rate": 99.9,
        "canary_p99_ms": 120.0, "stable_p99_ms": 110.0,
        "reason": "success_rate 91.5% below 99%",
    }))
    .unwrap()
}

fn rolled_back() -> Decision {
    let mut decision = decision(
        DecisionKind::RolledBack,
        Phase::Progressing,
        Phase::RolledBack,
    );
    decision.weight = Weight::ZERO;
    decision.analysis = Some(failed_analysis());
    decision
}

fn target(name: &str, services: &[&str], events: &[NotifyEvent]) -> NotificationConfig {
    NotificationConfig {
        name: name.to_string(),
        kind: NotificationKind::Webhook,
        url: Some("http://127.0.0.1:9/hook".to_string()),
        url_env: None,
        services: services.iter().map(|s| s.to_string()).collect(),
        events: events.to_vec(),
        timeout: std::time::Duration::from_secs(1),
        retries: 0,
    }
}

fn breaker(to: &str) -> Notice {
    Notice::Breaker {
        breaker: "checkout-canary".to_string(),
        service: "checkout".to_string(),
        version: "canary".to_string(),
        from: "closed".to_string(),
        to: to.to_string(),
        reason: "5 failures in a row".to_string(),
        at: Timestamp::from_millis(0),
    }
}

#[test]
fn decisions_map_to_events() {
    use DecisionKind as K;
    use Phase as P;
    let cases = [
        (
            K::Started,
            P::Idle,
            P::Progressing,
            Some(NotifyEvent::Started),
        ),
        (
            K::Advanced,
            P::Progressing,
            P::Progressing,
            Some(NotifyEvent::Advanced),
        ),
        (
            K::Advanced,
            P::Progressing,
            P::Paused,
            Some(NotifyEvent::Waiting),
        ),
        (
            K::Resumed,
            P::Paused,
            P::Progressing,
            Some(NotifyEvent::Advanced),
        ),
        (
            K::Advanced,
            P::Progressing,
            P::WaitingPromotion,
            Some(NotifyEvent::Waiting),
        ),
        (
            K::Promoted,
            P::Progressing,
            P::Succeeded,
            Some(NotifyEvent::Promoted),
        ),
        (
            K::RolledBack,
            P::Progressing,
            P::RolledBack,
            Some(NotifyEvent::RolledBack),
        ),
        (
            K::Aborted,
            P::Paused,
            P::RolledBack,
            Some(NotifyEvent::RolledBack),
        ),
        (
            K::CheckFailed,
            P::Progressing,
            P::Failed,
            Some(NotifyEvent::RolledBack),
        ),
        (K::Held, P::Progressing, P::Progressing, None),
        (K::CheckFailed, P::Progressing, P::Progressing, None),
        (K::Inconclusive, P::Progressing, P::Progressing, None),
        (K::Paused, P::Progressing, P::Paused, None),
    ];
    for (kind, from, to, event) in cases {
        let notice = Notice::Decision(decision(kind, from, to));
        assert_eq!(notice.event(), event, "{kind:?} {from} → {to}");
    }
    assert_eq!(breaker("open").event(), Some(NotifyEvent::BreakerOpened));
    assert_eq!(
        breaker("forced_open").event(),
        Some(NotifyEvent::BreakerOpened)
    );
    assert_eq!(breaker("closed").event(), Some(NotifyEvent::BreakerClosed));
    assert_eq!(breaker("half_open").event(), None);
}

#[tokio::test]
async fn notices_go_to_the_targets_that_want_them() {
    let targets = [
        target("all", &[], &[]),
        target(
            "checkout-rollbacks",
            &["checkout"],
            &[NotifyEvent::RolledBack],
        ),
        target("flags", &["flag:main-builder"], &[]),
        target("breakers", &[], &[NotifyEvent::BreakerOpened]),
    ];
    let notifier = Notifier::new(&targets, &|_| None);
    let rollback = Notice::Decision(rolled_back());
    assert_eq!(notifier.route(&rollback), ["all", "checkout-rollbacks"]);
    let mut flag = decision(DecisionKind::Started, Phase::Idle, Phase::Progressing);
    flag.service = "flag:main-builder".to_string();
    assert_eq!(notifier.route(&Notice::Decision(flag)), ["all", "flags"]);
    assert_eq!(notifier.route(&breaker("open")), ["all", "breakers"]);
    assert_eq!(notifier.route(&breaker("closed")), ["all"]);
    let held = decision(DecisionKind::Held, Phase::Progressing, Phase::Progressing);
    assert!(notifier.route(&Notice::Decision(held)).is_empty());
}

#[test]
fn the_slack_payload_names_the_failing_check_and_its_numbers() {
    let body = slack(&Notice::Decision(rolled_back()), NotifyEvent::RolledBack);
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("checkout: rolled back (rollout 3)"), "{text}");
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks
        .iter()
        .all(|b| b["type"] == "section" && b["text"]["type"] == "mrkdwn"));
    let all: String = blocks
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert!(all.contains("*Phase:* Progressing → RolledBack"), "{all}");
    assert!(all.contains("*Weight:* 0%"), "{all}");
    assert!(
        all.contains("• *success_rate*: 91.5 percent, bound 99%"),
        "{all}"
    );
    assert!(!all.contains("latency_p99"), "only failing checks: {all}");
}

#[test]
fn the_webhook_payload_carries_the_decision_and_every_check() {
    let body = webhook(&Notice::Decision(rolled_back()), NotifyEvent::RolledBack);
    assert_eq!(body["event"], "rolled_back");
    assert_eq!(body["service"], "checkout");
    assert_eq!(body["rollout_id"], 3);
    assert_eq!(body["phase"], "RolledBack");
    assert_eq!(body["weight"], 0.0);
    assert_eq!(body["step"], 1);
    assert_eq!(body["at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(
        body["checks"][0],
        json!({"name": "success_rate", "verdict": "fail", "value": 91.5, "bound": 99.0, "unit": "percent"})
    );
    assert_eq!(body["checks"][1]["verdict"], "pass");
}

#[test]
fn breaker_payloads_carry_the_transition() {
    let body = webhook(&breaker("open"), NotifyEvent::BreakerOpened);
    assert_eq!(
        (&body["event"], &body["breaker"], &body["from"], &body["to"]),
        (
            &json!("breaker_opened"),
            &json!("checkout-canary"),
            &json!("closed"),
            &json!("open")
        )
    );
    let body = slack(&breaker("open"), NotifyEvent::BreakerOpened);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("checkout: breaker checkout-canary on canary opened"),
        "{text}"
    );
    assert!(body["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("closed → open"));
}

#[test]
fn mrkdwn_control_characters_are_escaped() {
    let mut decision = rolled_back();
    decision.reason = "p99 <500ms & rising".to_string();
    let body = slack(&Notice::Decision(decision), NotifyEvent::RolledBack);
    let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.contains("p99 &lt;500ms &amp; rising"), "{section}");
}

#[test]
fn counters_render_per_target_and_result() {
    let notifier = Notifier::new(&[target("a\"b", &[], &[])], &|_| None);
    // No runtime here: the notice is dropped and counted.
    notifier.notify(breaker("open"));
    let mut out = String::new();
    notifier.render(&mut out);
    assert!(out.contains("# TYPE sluice_notifications_total counter"));
    assert!(out.contains("sluice_notifications_total{target=\"a\\\"b\",result=\"dropped\"} 1"));
    assert!(out.contains("sluice_notifications_total{target=\"a\\\"b\",result=\"sent\"} 0"));
    let mut empty = String::new();
    Notifier::new(&[], &|_| None).render(&mut empty);
    assert!(empty.is_empty());
}

#[test]
fn a_url_from_the_environment_is_checked() {
    let mut config = target("env", &[], &[]);
    config.url = None;
    config.url_env = Some("HOOK".to_string());
    let env = |value: &'static str| move |name: &str| (name == "HOOK").then(|| value.to_string());
    assert_eq!(
        resolve_url(&config, &env("https://x.test/h")),
        Ok("https://x.test/h".into())
    );
    assert!(resolve_url(&config, &env("x.test"))
        .unwrap_err()
        .contains("HOOK"));
    assert!(resolve_url(&config, &|_| None)
        .unwrap_err()
        .contains("HOOK is not set"));
}
