//! `rolling` and `recreate` driven event by event with a fake clock.

use serde_json::json;
use sluice_analysis::Verdict;
use sluice_model::{RolloutSpec, Timestamp, Weight};

use super::tests::{run_with, service_state};
use super::*;

fn t(seconds: u64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + seconds * 1000)
}

fn spec(value: serde_json::Value) -> RolloutSpec {
    serde_json::from_value(value).expect("test spec")
}

fn pools(state: &ServiceState) -> Option<(usize, usize)> {
    state.rollout.as_ref().and_then(|r| r.replace_position())
}

/// A service on three old endpoints.
fn three_old() -> ServiceState {
    let mut state = service_state();
    state.stable = vec!["v1a:80".into(), "v1b:80".into(), "v1c:80".into()];
    state
}

fn three_new() -> Vec<String> {
    vec!["v2a:80".into(), "v2b:80".into(), "v2c:80".into()]
}

#[test]
fn rolling_admits_one_endpoint_a_step_then_promotes() {
    let rolling = spec(json!({"strategy": "rolling", "interval": "1m"}));
    let (state, actions) = start(&three_old(), &rolling, three_new(), t(0));
    let rollout = state.rollout.as_ref().unwrap();
    assert_eq!(rollout.plan.len(), 3);
    assert_eq!(pools(&state), Some((0, 3)));
    assert_eq!(state.canary_weight, Weight::ZERO);
    assert_eq!(rollout.next_wakeup(), Some(t(0)), "due at once");
    assert_eq!(rollout.next_admitted(), Some(1));
    assert!(actions.contains(&Action::SetWeight(Weight::ZERO)));

    // Analysis is for steps with new endpoints in; the first ends with a tick.
    let (same, none) = step(&state, Event::Analysis(run_with(Verdict::Pass)), t(120));
    assert!(none.is_empty() && same == state);
    let (state, _) = step(&state, Event::Tick, t(1));
    assert_eq!(pools(&state), Some((1, 2)));
    assert_eq!(state.canary_weight.basis_points(), 3333);
    let rollout = state.rollout.as_ref().unwrap();
    assert_eq!(rollout.next_wakeup(), Some(t(61)));
    assert_eq!(rollout.next_admitted(), Some(2));
    let (same, _) = step(&state, Event::Tick, t(2));
    assert_eq!(same, state, "an analysed step does not end with a tick");

    let (state, _) = step(&state, Event::Analysis(run_with(Verdict::Pass)), t(61));
    assert_eq!(pools(&state), Some((2, 1)));
    assert_eq!(state.rollout.as_ref().unwrap().next_admitted(), Some(3));
    let (state, actions) = step(&state, Event::Analysis(run_with(Verdict::Pass)), t(121));
    let rollout = state.rollout.as_ref().unwrap();
    assert_eq!(rollout.phase, Phase::Succeeded);
    assert_eq!(pools(&state), None);
    assert_eq!(state.stable, three_new());
    assert!(actions.contains(&Action::PromoteCanary));
}

#[test]
fn a_rejected_rolling_rollout_serves_the_whole_old_pool_again() {
    let rolling = spec(json!({"strategy": "rolling", "max_surge": "100%", "interval": "1m"}));
    let (state, _) = start(&three_old(), &rolling, three_new(), t(0));
    // A surge of the whole pool: every new endpoint at once, then promotion.
    assert_eq!(state.rollout.as_ref().unwrap().next_admitted(), Some(3));
    let reason = "health check: endpoint v2b:80 answered 503 (3 failures in a row)".to_string();
    let (state, actions) = step(&state, Event::Reject { reason }, t(5));
    let rollout = state.rollout.as_ref().unwrap();
    assert_eq!(rollout.phase, Phase::RolledBack);
    assert_eq!(pools(&state), None, "no partial pools after a rollback");
    assert_eq!(state.stable, three_old().stable);
    assert_eq!(state.canary_weight, Weight::ZERO);
    assert!(actions.iter().any(|a| matches!(a, Action::Record(d)
        if d.kind == DecisionKind::RolledBack && d.reason.contains("v2b:80 answered 503"))));
}

#[test]
fn recreate_has_one_gap_that_ends_in_promotion() {
    let recreate = spec(json!({"strategy": "recreate"}));
    let (state, _) = start(&three_old(), &recreate, three_new(), t(0));
    let rollout = state.rollout.as_ref().unwrap();
    assert_eq!(rollout.plan, vec![Step::Replace { new: 0, old: 0 }]);
    assert_eq!(pools(&state), Some((0, 0)));
    assert!(rollout.waits_for_admission());
    assert_eq!(rollout.next_admitted(), Some(3));
    let (state, actions) = step(&state, Event::Tick, t(3));
    assert_eq!(state.rollout.as_ref().unwrap().phase, Phase::Succeeded);
    assert_eq!(state.stable, three_new());
    assert!(actions.contains(&Action::PromoteCanary));
}

#[test]
fn replace_steps_survive_a_store_round_trip() {
    let rolling = spec(json!({"strategy": "rolling"}));
    let (state, _) = start(&three_old(), &rolling, three_new(), t(0));
    let text = serde_json::to_string(&state).unwrap();
    assert!(text.contains(r#"{"replace":{"new":1,"old":2}}"#), "{text}");
    let back: ServiceState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
}

#[test]
fn pausing_while_waiting_for_admission_resumes_waiting() {
    let rolling = spec(json!({"strategy": "rolling", "interval": "1m"}));
    let (state, _) = start(&three_old(), &rolling, three_new(), t(0));
    let (paused, _) = step(&state, Event::Pause, t(1));
    assert_eq!(paused.rollout.as_ref().unwrap().next_wakeup(), None);
    let (state, _) = step(&paused, Event::Resume, t(2));
    let rollout = state.rollout.as_ref().unwrap();
    assert!(rollout.waits_for_admission());
    assert!(
        !rollout.analysis_due(t(300)),
        "the first step is never analysed"
    );
    let (state, _) = step(&state, Event::Tick, t(300));
    assert_eq!(pools(&state), Some((1, 2)));
}
