//! The machine driven event by event with a fake clock.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use sluice_analysis::{analyse, AnalysisRun, Verdict, VersionWindow, Window};
use sluice_model::{CheckSpec, Metric, RolloutSpec, Timestamp, Weight};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn minutes(m: u64) -> Timestamp {
    Timestamp::from_millis(T0 + m * 60_000)
}

fn spec(value: serde_json::Value) -> RolloutSpec {
    serde_json::from_value(value).expect("test spec")
}

fn service() -> ServiceState {
    ServiceState {
        service: "web".to_string(),
        stable: vec!["v1:80".to_string()],
        canary: None,
        canary_weight: Weight::ZERO,
        rollout: None,
        revision: 0,
        config_stable: vec!["v1:80".to_string()],
        revisions: Vec::new(),
        warm: None,
    }
}

/// For the sibling modules' tests: a service on v1 and a two-step plan.
pub(super) fn service_state() -> ServiceState {
    service()
}

pub(super) fn plan_spec() -> RolloutSpec {
    spec(json!({"step_weights": [10, 50]}))
}

fn canary() -> Vec<String> {
    vec!["v2:80".to_string()]
}

fn pct(p: f64) -> Weight {
    Weight::from_percent(p).expect("test weight")
}

/// For the sibling modules' tests: a run with only a verdict.
pub(super) fn run_with(verdict: Verdict) -> AnalysisRun {
    run(verdict)
}

/// A run with only a verdict and a reason.
fn run(verdict: Verdict) -> AnalysisRun {
    AnalysisRun {
        verdict,
        checks: Vec::new(),
        canary_requests: 100,
        stable_requests: 900,
        canary_success_rate: Some(100.0),
        stable_success_rate: Some(100.0),
        canary_p99_ms: None,
        stable_p99_ms: None,
        reason: format!("test run: {verdict:?}"),
        memory: Vec::new(),
        sequential: None,
        sequential_state: None,
        decisive: false,
    }
}

/// A real failing run: 598 of 2000 canary requests failed against `success_rate >= 99`.
fn failing_run() -> AnalysisRun {
    let window = Window {
        stable: VersionWindow::default(),
        canary: VersionWindow {
            requests: 2000,
            errors: 598,
            ..VersionWindow::default()
        },
    };
    analyse(
        &[CheckSpec::builtin_min(Metric::SuccessRate, 99.0)],
        20,
        &window,
    )
}

fn decisions(actions: &[Action]) -> Vec<&Decision> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn weights(actions: &[Action]) -> Vec<Weight> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetWeight(w) => Some(*w),
            _ => None,
        })
        .collect()
}

fn rollout(state: &ServiceState) -> &Rollout {
    state.rollout.as_ref().expect("a rollout")
}

/// Steps and asserts the event was accepted.
fn accept(state: &ServiceState, event: Event, now: Timestamp) -> (ServiceState, Vec<Action>) {
    assert_eq!(
        can_accept(state, &event, now),
        Ok(()),
        "{event:?} at {now:?}"
    );
    let (next, actions) = step(state, event, now);
    assert_eq!(next.revision, state.revision + 1);
    assert!(!decisions(&actions).is_empty());
    (next, actions)
}

/// Steps and asserts nothing changed.
fn ignored(state: &ServiceState, event: Event, now: Timestamp) -> RejectReason {
    let reason = can_accept(state, &event, now).expect_err("should be refused");
    let (next, actions) = step(state, event, now);
    assert_eq!(&next, state);
    assert!(actions.is_empty());
    reason
}

#[test]
fn a_full_plan_is_promoted() {
    let spec = spec(json!({"step_weights": [5, 25, 50], "interval": "1m"}));
    let (state, actions) = start(&service(), &spec, canary(), minutes(0));
    assert_eq!(state.revision, 1);
    assert_eq!(state.canary, Some(canary()));
    assert_eq!(state.canary_weight, pct(5.0));
    assert_eq!(weights(&actions), vec![pct(5.0)]);
    let started = decisions(&actions)[0];
    assert_eq!(
        (started.kind, started.seq, started.rollout_id),
        (DecisionKind::Started, 0, 1)
    );
    assert_eq!(rollout(&state).next_analysis_at, Some(minutes(1)));
    assert!(!rollout(&state).analysis_due(minutes(0)));
    assert!(rollout(&state).analysis_due(minutes(1)));

    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    assert_eq!(weights(&actions), vec![pct(25.0)]);
    assert_eq!(decisions(&actions)[0].kind, DecisionKind::Advanced);
    assert_eq!(decisions(&actions)[0].seq, 1);
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(2));
    assert_eq!(state.canary_weight, pct(50.0));
    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(3));

    assert!(actions.contains(&Action::PromoteCanary));
    let promoted = decisions(&actions)[0];
    assert_eq!(promoted.kind, DecisionKind::Promoted);
    assert_eq!(
        (promoted.from, promoted.to),
        (Phase::Progressing, Phase::Succeeded)
    );
    assert!(
        promoted.reason.ends_with("all 3 steps done"),
        "{}",
        promoted.reason
    );
    assert_eq!(state.stable, canary());
    assert_eq!(state.canary, None);
    assert_eq!(state.canary_weight, Weight::ZERO);
    let r = rollout(&state);
    assert_eq!(
        (r.phase, r.steps_taken, r.passed_runs, r.decisions),
        (Phase::Succeeded, 3, 3, 4)
    );
    assert_eq!(r.next_wakeup(), None);

    let refused = ignored(&state, Event::Abort, minutes(4));
    assert_eq!(
        refused.to_string(),
        "rollout 1 of service web already Succeeded"
    );
}

#[test]
fn failures_reaching_the_threshold_roll_back_with_the_reason() {
    let spec = spec(json!({"step_weights": [10, 50], "interval": "1m", "threshold": 2}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, actions) = accept(&state, Event::Analysis(failing_run()), minutes(1));
    let failed = decisions(&actions)[0];
    assert_eq!(failed.kind, DecisionKind::CheckFailed);
    assert_eq!(
        failed.reason,
        "success_rate 70.1% is below the minimum 99% (598 of 2000 canary requests failed) \
         (failed runs 1 of threshold 2)"
    );
    assert!(weights(&actions).is_empty());
    assert_eq!(rollout(&state).step_index, 0);

    let (state, actions) = accept(&state, Event::Analysis(failing_run()), minutes(2));
    let rolled_back = decisions(&actions)[0];
    assert_eq!(rolled_back.kind, DecisionKind::RolledBack);
    assert_eq!(
        rolled_back.reason,
        "rolled back: success_rate 70.1% is below the minimum 99% (598 of 2000 canary requests \
         failed); 2 failed runs reached threshold 2"
    );
    assert_eq!(
        rolled_back.analysis.as_ref().map(|a| a.verdict),
        Some(Verdict::Fail)
    );
    assert_eq!(weights(&actions), vec![Weight::ZERO]);
    assert_eq!(state.canary, Some(canary()), "the canary stays in its slot");
    assert_eq!(state.stable, service().stable);
    assert_eq!(state.canary_weight, Weight::ZERO);
    assert_eq!(rollout(&state).phase, Phase::RolledBack);
    assert_eq!(rollout(&state).failed_runs, 2);
}

#[test]
fn inconclusive_runs_never_advance() {
    let spec = spec(
        json!({"step_weights": [10, 50], "interval": "1m", "threshold": 1, "max_inconclusive": 1000}),
    );
    let (mut state, _) = start(&service(), &spec, canary(), minutes(0));
    for m in 1..=100 {
        let (next, actions) = accept(
            &state,
            Event::Analysis(run(Verdict::Inconclusive)),
            minutes(m),
        );
        assert_eq!(decisions(&actions)[0].kind, DecisionKind::Inconclusive);
        assert!(weights(&actions).is_empty());
        state = next;
    }
    let r = rollout(&state);
    assert_eq!(
        (r.phase, r.step_index, r.canary_weight),
        (Phase::Progressing, 0, pct(10.0))
    );
    assert_eq!((r.inconclusive_runs, r.failed_runs), (100, 0));
    assert_eq!(r.next_analysis_at, Some(minutes(101)));
}

#[test]
fn a_decisive_failure_rolls_back_at_once() {
    let spec = spec(json!({"step_weights": [10, 50], "interval": "1m", "threshold": 5}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let mut decisive = run(Verdict::Fail);
    decisive.decisive = true;
    decisive.reason = "sequential judge: canary error rate 2x stable's".to_string();
    let (state, actions) = accept(&state, Event::Analysis(decisive), minutes(1));
    let r = rollout(&state);
    assert_eq!((r.phase, r.failed_runs), (Phase::RolledBack, 1));
    assert_eq!(weights(&actions), vec![Weight::ZERO]);
    let last = decisions(&actions).pop().unwrap();
    assert_eq!(last.kind, DecisionKind::RolledBack);
    assert_eq!(
        last.reason,
        "rolled back at once: sequential judge: canary error rate 2x stable's"
    );
}

#[test]
fn waiting_for_evidence_is_bounded_by_max_inconclusive() {
    let spec = spec(
        json!({"step_weights": [10, 50], "interval": "1m", "threshold": 2, "max_inconclusive": 3}),
    );
    let (mut state, _) = start(&service(), &spec, canary(), minutes(0));
    let mut kinds = Vec::new();
    for m in 1..=6 {
        let (next, actions) = accept(
            &state,
            Event::Analysis(run(Verdict::Inconclusive)),
            minutes(m),
        );
        kinds.push(decisions(&actions)[0].kind);
        state = next;
    }
    use DecisionKind::*;
    assert_eq!(
        kinds,
        [
            Inconclusive,
            Inconclusive,
            CheckFailed,
            Inconclusive,
            Inconclusive,
            RolledBack
        ]
    );
    let r = rollout(&state);
    assert_eq!((r.phase, r.failed_runs), (Phase::RolledBack, 2));
    let reason = &r.last_analysis.as_ref().unwrap().reason;
    assert!(
        reason.starts_with("3 inconclusive runs in a row (max_inconclusive 3): "),
        "{reason}"
    );
    // A conclusive run resets the count.
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, _) = accept(
        &state,
        Event::Analysis(run(Verdict::Inconclusive)),
        minutes(1),
    );
    let (state, _) = accept(
        &state,
        Event::Analysis(run(Verdict::Inconclusive)),
        minutes(2),
    );
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(3));
    assert_eq!(rollout(&state).inconclusive_streak, 0);
}

#[test]
fn a_manual_pause_waits_for_resume() {
    let spec = spec(json!({
        "steps": [{"weight": 10}, {"pause": "manual"}, {"weight": 50}],
        "interval": "1m"
    }));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    assert_eq!(decisions(&actions)[0].to, Phase::Paused);
    assert!(weights(&actions).is_empty(), "the weight is held");
    let r = rollout(&state);
    assert_eq!(
        (r.phase, r.next_analysis_at, r.next_wakeup()),
        (Phase::Paused, None, None)
    );

    // Days later, nothing moves it on its own.
    let later = minutes(60 * 24 * 3);
    ignored(&state, Event::Analysis(run(Verdict::Pass)), later);
    ignored(&state, Event::Tick, later);
    assert!(matches!(
        ignored(&state, Event::Pause, later),
        RejectReason::AlreadyPaused { .. }
    ));

    let (state, actions) = accept(&state, Event::Resume, later);
    let resumed = decisions(&actions)[0];
    assert_eq!(
        (resumed.kind, resumed.to),
        (DecisionKind::Resumed, Phase::Progressing)
    );
    assert_eq!(weights(&actions), vec![pct(50.0)]);
    assert_eq!(
        rollout(&state).next_analysis_at,
        Some(later + Duration::from_secs(60))
    );

    let (state, actions) = accept(
        &state,
        Event::Analysis(run(Verdict::Pass)),
        later + Duration::from_secs(60),
    );
    assert!(actions.contains(&Action::PromoteCanary));
    assert_eq!(rollout(&state).steps_taken, 3);
}

#[test]
fn a_manual_pause_at_the_end_is_a_promotion_gate() {
    let spec = spec(json!({"steps": [{"weight": 20}, {"pause": "manual"}], "interval": "1m"}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    assert_eq!(rollout(&state).phase, Phase::Paused);
    let (state, actions) = accept(&state, Event::Resume, minutes(30));
    assert!(actions.contains(&Action::PromoteCanary));
    assert_eq!(rollout(&state).phase, Phase::Succeeded);
}

#[test]
fn a_timed_pause_holds_then_advances() {
    let spec = spec(json!({
        "steps": [{"weight": 10}, {"pause": "1h"}, {"weight": 20}],
        "interval": "25m",
        "threshold": 3
    }));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(25));
    let r = rollout(&state);
    assert_eq!((r.step_index, r.canary_weight), (1, pct(10.0)));
    assert_eq!(r.pause_ends_at(), Some(minutes(85)));
    assert_eq!(r.next_wakeup(), Some(minutes(50)));

    // Passes hold; a failure counts but does not end the pause.
    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(50));
    assert_eq!(decisions(&actions)[0].kind, DecisionKind::Held);
    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Fail)), minutes(75));
    assert_eq!(decisions(&actions)[0].kind, DecisionKind::CheckFailed);
    assert_eq!(rollout(&state).failed_runs, 1);
    assert_eq!(
        rollout(&state).next_wakeup(),
        Some(minutes(85)),
        "the pause ends first"
    );
    ignored(&state, Event::Tick, minutes(84));

    let (state, actions) = accept(&state, Event::Tick, minutes(85));
    let advanced = decisions(&actions)[0];
    assert_eq!(advanced.kind, DecisionKind::Advanced);
    assert!(
        advanced.reason.starts_with("pause of 1h ended"),
        "{}",
        advanced.reason
    );
    assert_eq!(weights(&actions), vec![pct(20.0)]);
    assert_eq!(rollout(&state).next_analysis_at, Some(minutes(110)));
}

#[test]
fn an_analysis_at_the_end_of_a_timed_pause_advances_once() {
    let spec = spec(json!({
        "steps": [{"weight": 10}, {"pause": "2m"}, {"weight": 20}, {"weight": 30}],
        "interval": "1m"
    }));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(2));
    let (state, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(3));
    assert_eq!(
        decisions(&actions).len(),
        1,
        "a pass at the end is one decision"
    );
    assert_eq!(decisions(&actions)[0].kind, DecisionKind::Advanced);
    assert_eq!(state.canary_weight, pct(20.0));
    // The new weight step is held for a whole interval before it is judged.
    ignored(&state, Event::Analysis(run(Verdict::Pass)), minutes(3));
    assert_eq!(rollout(&state).next_analysis_at, Some(minutes(4)));

    // An inconclusive run at the end of a pause is recorded, then the pause ends.
    let spec2 = spec_with_pause_then_weight();
    let (s, _) = start(&service(), &spec2, canary(), minutes(0));
    let (s, actions) = accept(&s, Event::Analysis(run(Verdict::Inconclusive)), minutes(1));
    let kinds: Vec<_> = decisions(&actions).iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![DecisionKind::Inconclusive, DecisionKind::Advanced]
    );
    assert_eq!(s.canary_weight, pct(5.0));
}

fn spec_with_pause_then_weight() -> RolloutSpec {
    spec(json!({"steps": [{"pause": "1m"}, {"weight": 5}], "interval": "1m"}))
}

#[test]
fn operator_pause_resume_promote_and_abort() {
    let spec = spec(json!({"step_weights": [10, 20, 30], "interval": "1m"}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    assert!(matches!(
        ignored(&state, Event::Resume, minutes(0)),
        RejectReason::NotPaused { .. }
    ));

    let (paused, actions) = accept(&state, Event::Pause, minutes(0));
    assert_eq!(decisions(&actions)[0].reason, "paused by operator at 10%");
    assert_eq!(rollout(&paused).next_analysis_at, None);
    let refused = ignored(&paused, Event::Analysis(run(Verdict::Pass)), minutes(5));
    assert!(matches!(refused, RejectReason::AnalysisWhilePaused { .. }));

    let (resumed, actions) = accept(&paused, Event::Resume, minutes(10));
    assert_eq!(decisions(&actions)[0].kind, DecisionKind::Resumed);
    assert_eq!(rollout(&resumed).next_analysis_at, Some(minutes(11)));
    assert_eq!(
        rollout(&resumed).step_index,
        0,
        "resume does not skip a weight step"
    );

    let (promoted, actions) = accept(&paused, Event::Promote, minutes(10));
    let decision = decisions(&actions)[0];
    assert_eq!(
        (decision.kind, decision.reason.as_str()),
        (DecisionKind::Promoted, "promoted by operator")
    );
    assert_eq!(promoted.stable, canary());
    assert_eq!(rollout(&promoted).steps_taken, 0);

    let (aborted, actions) = accept(&resumed, Event::Abort, minutes(10));
    let decision = decisions(&actions)[0];
    assert_eq!(
        (decision.kind, decision.reason.as_str()),
        (DecisionKind::Aborted, "aborted by operator")
    );
    assert_eq!(weights(&actions), vec![Weight::ZERO]);
    assert_eq!(rollout(&aborted).phase, Phase::RolledBack);
    assert_eq!(aborted.stable, service().stable);
}

#[test]
fn events_without_a_rollout_are_refused() {
    let refused = ignored(&service(), Event::Promote, minutes(0));
    assert_eq!(
        refused.to_string(),
        "no rollout in progress for service web"
    );
}

#[test]
fn starting_again_supersedes_the_running_rollout() {
    let spec = spec(json!({"step_weights": [10, 20], "interval": "1m"}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let (state, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    let (state, actions) = start(&state, &spec, vec!["v3:80".to_string()], minutes(2));
    let log = decisions(&actions);
    assert_eq!(
        (log[0].rollout_id, log[0].kind, log[0].seq),
        (1, DecisionKind::Aborted, 2)
    );
    assert_eq!(log[0].reason, "superseded by a new rollout");
    assert_eq!(
        (log[1].rollout_id, log[1].kind, log[1].seq),
        (2, DecisionKind::Started, 0)
    );
    assert_eq!(weights(&actions), vec![pct(10.0)]);
    assert_eq!(state.canary, Some(vec!["v3:80".to_string()]));
    assert_eq!(rollout(&state).id, 2);
    assert_eq!(state.revision, 3);

    // After a final rollout the next one just counts on.
    let (done, _) = step(&state, Event::Abort, minutes(3));
    let (next, actions) = start(&done, &spec, canary(), minutes(4));
    assert_eq!(decisions(&actions).len(), 1);
    assert_eq!(rollout(&next).id, 3);
}

#[test]
fn a_step_is_never_taken_twice() {
    let spec = spec(json!({"step_weights": [10, 20, 30], "interval": "1m"}));
    let (state, _) = start(&service(), &spec, canary(), minutes(0));
    let first = step(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    // Replaying from the stored old state gives the same result.
    assert_eq!(
        step(&state, Event::Analysis(run(Verdict::Pass)), minutes(1)),
        first
    );
    // Redelivering the run to the new state does nothing.
    let refused = ignored(&first.0, Event::Analysis(run(Verdict::Pass)), minutes(1));
    assert!(matches!(refused, RejectReason::NotDue { .. }));
    assert_eq!(rollout(&first.0).steps_taken, 1);
}

/// 1%, 5%, 10%, 25%, 50%, each followed by five days' pause, analysed every
/// minute: 36,006 decisions, promoted on day 25.
#[test]
fn a_four_week_plan_runs_in_milliseconds() {
    let steps: Vec<_> = [1, 5, 10, 25, 50]
        .iter()
        .flat_map(|w| [json!({"weight": w}), json!({"pause": "5d"})])
        .collect();
    let spec = spec(json!({"steps": steps, "interval": "1m", "min_requests": 10}));
    let (mut state, _) = start(&service(), &spec, canary(), minutes(0));
    let mut log = 1u64;
    let mut set_weights = vec![pct(1.0)];
    let mut events = 0u64;
    while let Some(now) = rollout(&state).next_wakeup() {
        let event = if rollout(&state).analysis_due(now) {
            Event::Analysis(run(Verdict::Pass))
        } else {
            Event::Tick
        };
        let (next, actions) = accept(&state, event, now);
        log += decisions(&actions).len() as u64;
        set_weights.extend(weights(&actions));
        state = next;
        events += 1;
    }
    let r = rollout(&state);
    assert_eq!(r.phase, Phase::Succeeded);
    let day = Duration::from_secs(24 * 3600);
    let promoted_at = r.updated_at.saturating_since(minutes(0));
    assert_eq!(promoted_at, day * 25 + Duration::from_secs(5 * 60));
    assert_eq!(events, 5 * (1 + 5 * 24 * 60));
    assert_eq!(log, 1 + events);
    assert_eq!(r.decisions, log);
    assert_eq!(r.steps_taken, 10);
    let expected: Vec<_> = [1.0, 5.0, 10.0, 25.0, 50.0].map(pct).to_vec();
    assert_eq!(set_weights, expected);
    assert_eq!(state.stable, canary());
}

/// An arbitrary event, weighted towards analysis runs.
fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Analysis(run(Verdict::Pass))),
        2 => Just(Event::Analysis(run(Verdict::Inconclusive))),
        1 => Just(Event::Analysis(run(Verdict::Fail))),
        2 => Just(Event::Tick),
        1 => Just(Event::Pause),
        2 => Just(Event::Resume),
    ]
}

fn any_step() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => (1u32..=100).prop_map(|w| json!({"weight": w})),
        1 => (1u64..=30).prop_map(|m| json!({"pause": format!("{m}m")})),
        1 => Just(json!({"pause": "manual"})),
    ]
}

proptest! {
    #[test]
    fn weights_never_decrease_and_the_rollout_ends(
        mut plan in proptest::collection::vec(any_step(), 1..8),
        events in proptest::collection::vec(any_event(), 0..60),
        threshold in 1u32..5,
    ) {
        // Validated plans only grow: sort the weight steps among themselves.
        let mut sorted: Vec<u64> = plan.iter().filter_map(|s| s["weight"].as_u64()).collect();
        sorted.sort_unstable();
        let mut sorted = sorted.into_iter();
        for s in plan.iter_mut() {
            if s.get("weight").is_some() {
                *s = json!({"weight": sorted.next()});
            }
        }
        let spec = spec(json!({"steps": plan, "interval": "1m", "threshold": threshold}));
        let (mut state, _) = start(&service(), &spec, canary(), minutes(0));
        let mut now = minutes(0);
        let mut last = state.canary_weight;
        // Arbitrary events, then enough passes, ticks and resumes to finish.
        let finish = std::iter::repeat_n([Event::Resume, Event::Tick, Event::Analysis(run(Verdict::Pass))], 120).flatten();
        for event in events.into_iter().chain(finish) {
            now = now + Duration::from_secs(60);
            let (next, actions) = step(&state, event, now);
            let r = rollout(&next);
            if !r.phase.is_final() {
                prop_assert!(r.canary_weight >= last, "weight went from {} to {}", last, r.canary_weight);
                prop_assert_eq!(next.canary_weight, r.canary_weight);
                last = r.canary_weight;
            }
            for (i, d) in decisions(&actions).iter().enumerate() {
                prop_assert_eq!(d.seq + (decisions(&actions).len() - i) as u64, r.decisions);
            }
            state = next;
        }
        prop_assert!(rollout(&state).phase.is_final());
    }
}

#[test]
fn an_approval_gate_waits_then_rolls_back_or_proceeds_at_its_deadline() {
    let gate = |on_deadline: &str| {
        spec(json!({"steps": [
            {"weight": 10},
            {"approve": {"deadline": "1h", "on_deadline": on_deadline}},
            {"weight": 50}
        ], "interval": "1m"}))
    };
    let (state, _) = start(&service(), &gate("rollback"), canary(), minutes(0));
    let (waiting, actions) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    assert_eq!(rollout(&waiting).phase, Phase::Paused);
    assert!(
        decisions(&actions)[0]
            .reason
            .ends_with("waiting for approval at 10% (then rolling back after 1h)"),
        "{}",
        decisions(&actions)[0].reason
    );
    assert_eq!(rollout(&waiting).next_wakeup(), Some(minutes(61)));
    assert!(matches!(
        ignored(&waiting, Event::Tick, minutes(30)),
        RejectReason::NotDue { .. }
    ));
    // Approved in time: on to 50%.
    let (approved, actions) = accept(&waiting, Event::Resume, minutes(30));
    assert_eq!(
        decisions(&actions)[0].reason,
        "approved by operator; step 3 of 3: canary weight 50%"
    );
    assert_eq!(approved.canary_weight, pct(50.0));
    // Not approved: rolled back at the deadline.
    let (expired, actions) = accept(&waiting, Event::Tick, minutes(61));
    assert_eq!(rollout(&expired).phase, Phase::RolledBack);
    assert_eq!(
        decisions(&actions)[0].reason,
        "rolled back: no approval within 1h"
    );
    assert_eq!(expired.canary_weight, Weight::ZERO);

    let (state, _) = start(&service(), &gate("proceed"), canary(), minutes(0));
    let (waiting, _) = accept(&state, Event::Analysis(run(Verdict::Pass)), minutes(1));
    let (proceeded, actions) = accept(&waiting, Event::Tick, minutes(61));
    assert_eq!(proceeded.canary_weight, pct(50.0));
    assert!(decisions(&actions)[0]
        .reason
        .starts_with("no approval within 1h: proceeding"));
}

#[test]
fn cohort_steps_set_the_weight_and_describe_their_tenants() {
    let cohort_spec = spec(json!({
        "interval": "1m",
        "tenant_header": "x-tenant",
        "steps": [
            {"cohort": {"tenants": ["acme"]}},
            {"cohort": {"tenants": ["globex", "initech"]}},
            {"cohort": {"percent": 50}},
            {"cohort": "all"}
        ]
    }));
    let (mut state, actions) = start(&service(), &cohort_spec, canary(), minutes(0));
    assert_eq!(rollout(&state).tenant_header.as_deref(), Some("x-tenant"));
    assert_eq!(state.canary_weight, Weight::ZERO);
    assert!(decisions(&actions)[0]
        .reason
        .ends_with("step 1 of 4: canary for tenant acme"));
    let mut seen = Vec::new();
    for m in 1..=3 {
        let (next, actions) = step(&state, Event::Analysis(run(Verdict::Pass)), minutes(m));
        seen.push((next.canary_weight, decisions(&actions)[0].reason.clone()));
        state = next;
    }
    assert_eq!(seen[0].0, Weight::ZERO);
    assert!(
        seen[0]
            .1
            .ends_with("canary for tenants acme, globex, initech"),
        "{}",
        seen[0].1
    );
    assert_eq!(seen[1].0, pct(50.0));
    assert!(seen[1]
        .1
        .ends_with("tenants acme, globex, initech and 50% of tenants by hash"));
    assert_eq!(seen[2].0, Weight::FULL);
    assert!(seen[2].1.ends_with("canary for all tenants"));
    let (done, _) = step(&state, Event::Analysis(run(Verdict::Pass)), minutes(4));
    assert_eq!(rollout(&done).phase, Phase::Succeeded);
    assert_eq!(done.stable, canary());
}
