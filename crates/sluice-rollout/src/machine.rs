//! The rollout state machine: `step(state, event, now) -> (state, actions)`.
//! Deterministic and pure: the same `(state, event, now)` always gives the
//! same result, so a controller that stores the new state before performing
//! the actions can replay after a crash without taking a step twice. Not the
//! place that measures, waits or routes: the controller feeds it analysis
//! runs and ticks at [`Rollout::next_wakeup`] and performs the [`Action`]s.
//!
//! Semantics (Flagger-like):
//! - **Weight step**: the weight is held for one `interval`, then the
//!   analysis run decides. A pass advances to the next step (kind
//!   `Advanced`); a pass at the last step promotes (`Promoted`).
//! - **Failed run**: counted (over the whole rollout, as Flagger does); the
//!   step does not advance (`CheckFailed`). When `failed_runs` reaches
//!   `threshold` the rollout is rolled back (`RolledBack`): weight 0, the
//!   canary pool stays in its slot, stable is unchanged.
//! - **Decisive failure** (the sequential judge's: its false-rollback rate
//!   is already bounded by alpha): rolls back at once (`RolledBack`).
//! - **Inconclusive run** (too little traffic, no data, a provider error, a
//!   sustained condition still pending): counted, never advances, never
//!   fails (`Inconclusive`) — until `max_inconclusive` of them in a row,
//!   when the run counts as failed: waiting for evidence is bounded.
//! - **Timed pause** `Pause(Some(d))`: the weight is held for `d` from the
//!   moment the step began; analysis keeps running every interval (failures
//!   count, passes only hold: `Held`). The first `Tick` or `Analysis` at or
//!   after the end advances. A run at the end is recorded first: a pass is
//!   folded into the `Advanced` decision; a failure below the threshold or an
//!   inconclusive run is recorded on its own and does not hold the pause
//!   open (the pause is a duration, not a gate).
//! - **Replace step** `Replace { new, old }` (`rolling`, `recreate`): the
//!   first `new` endpoints of the canary pool and the first `old` of the
//!   stable pool serve, split by count (`canary_weight` = new / (new + old)).
//!   With new endpoints in, it is held and judged like a weight step. With
//!   none (a rolling plan's first step, recreate's gap) there is nothing to
//!   analyse: it is due at once and ends with a `Tick`, which the controller
//!   sends when the next step's endpoints are healthy. Rollback serves the
//!   whole stable pool again; promotion the whole canary pool.
//! - **Manual pause** `Pause(None)`: the rollout waits in `Paused` (no
//!   analysis) until `Resume` (which moves past it) or `Promote`.
//! - **Operator**: `Pause` stops analysis (`Paused`); `Resume` continues
//!   with the next analysis one interval later (time spent paused counts
//!   toward a timed pause); `Promote` promotes at once, skipping the
//!   remaining steps; `Abort` rolls back (`Aborted`).
//! - An analysis run that arrives before `next_analysis_at`, or while paused,
//!   is ignored, so a redelivered run cannot advance a step twice.
//! - Events the rollout cannot accept (no rollout, final phase, not due,
//!   already paused...) leave the state unchanged with no actions;
//!   [`can_accept`] says why, for the admin API.
//! - Every accepted event bumps `ServiceState::revision` and
//!   `Rollout::updated_at` and records at least one [`Decision`].
//! - On promotion the rollout's (and the decision's) `canary_weight` is 100%
//!   (the new version has all traffic), while the service's canary slot is
//!   emptied and its `canary_weight` is 0.

use sluice_analysis::{AnalysisRun, Verdict};
use sluice_model::{
    duration, Endpoint, OnDeadline, RolloutSpec, Step, Timestamp, Weight, DEFAULT_SCALE_DOWN_DELAY,
};

use crate::{Action, Decision, DecisionKind, Phase, Rollout, ServiceState};

mod accept;
mod undo;

pub use accept::{can_accept, RejectReason};
pub use undo::{release_warm, undo, UndoError};

/// What can happen to a rollout.
#[derive(Clone, Debug, PartialEq)]
// One event per analysis interval: its size is of no consequence, and a
// Box would only add an allocation and noise to every caller.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// An analysis run over the last interval finished.
    Analysis(AnalysisRun),
    /// Time passed (the controller's wake-up at `next_wakeup`): ends timed pauses.
    Tick,
    /// Operator: promote now, skipping the remaining steps.
    Promote,
    /// Operator: stop analysis and hold the weight.
    Pause,
    /// Operator: continue (and pass a manual pause).
    Resume,
    /// Operator: roll back now.
    Abort,
    /// Something outside the checks failed the rollout (a pre-rollout test,
    /// a rollback request): roll back now, with this reason.
    Reject { reason: String },
}

impl Event {
    /// A short name for messages (`analysis`, `promote`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Analysis(_) => "analysis",
            Event::Tick => "tick",
            Event::Promote => "promote",
            Event::Pause => "pause",
            Event::Resume => "resume",
            Event::Abort => "abort",
            Event::Reject { .. } => "reject",
        }
    }
}

/// Begins a new rollout of `spec`'s plan towards the `canary` pool.
///
/// The id is the previous rollout's plus one (or 1). The first step is
/// entered at once: a weight is routed (`SetWeight`), a pause holds at
/// weight 0 (a manual one waits in `Paused`). If a rollout is still running
/// it is replaced: its end is recorded as `Aborted` ("superseded by a new
/// rollout") before the new one's `Started`.
pub fn start(
    service_state: &ServiceState,
    spec: &RolloutSpec,
    canary: Vec<Endpoint>,
    now: Timestamp,
) -> (ServiceState, Vec<Action>) {
    let mut next = service_state.clone();
    let mut actions = Vec::new();
    let previous = next.rollout.take();
    let id = previous.as_ref().map_or(1, |r| r.id + 1);
    if let Some(mut old) = previous.filter(|r| !r.phase.is_final()) {
        let from = old.phase;
        end_rolled_back(&mut old, now);
        let reason = "superseded by a new rollout".to_string();
        actions.push(record(
            &mut old,
            DecisionKind::Aborted,
            from,
            reason,
            None,
            now,
        ));
    }

    let mut rollout = Rollout {
        id,
        service: next.service.clone(),
        plan: crate::replace_steps(spec, next.stable.len(), canary.len())
            .unwrap_or_else(|| spec.plan()),
        interval: spec.interval,
        threshold: spec.threshold,
        min_requests: spec.min_requests,
        checks: spec.checks.clone(),
        canary: canary.clone(),
        phase: Phase::Progressing,
        step_index: 0,
        canary_weight: Weight::ZERO,
        steps_taken: 0,
        failed_runs: 0,
        passed_runs: 0,
        inconclusive_runs: 0,
        started_at: now,
        step_started_at: now,
        next_analysis_at: None,
        updated_at: now,
        last_analysis: None,
        decisions: 0,
        max_inconclusive: spec.max_inconclusive,
        inconclusive_streak: 0,
        check_memory: Vec::new(),
        judge: spec.judge,
        sequential: spec.sequential.clone(),
        sequential_evidence: Default::default(),
        keep_warm: (spec.strategy == sluice_model::Strategy::BlueGreen)
            .then(|| spec.scale_down_delay.unwrap_or(DEFAULT_SCALE_DOWN_DELAY)),
        tenant_header: spec.tenant_header.clone(),
    };
    enter_current_step(&mut rollout, now);
    let reason = format!(
        "rollout {id} started: {} steps, analysis every {}; {}",
        rollout.plan.len(),
        duration::format(rollout.interval),
        describe_position(&rollout)
    );
    actions.push(record(
        &mut rollout,
        DecisionKind::Started,
        Phase::Idle,
        reason,
        None,
        now,
    ));
    actions.push(Action::SetWeight(rollout.canary_weight));

    next.canary = Some(canary);
    next.canary_weight = rollout.canary_weight;
    next.rollout = Some(rollout);
    next.revision += 1;
    (next, actions)
}

/// Applies one event at `now`. Events that [`can_accept`] refuses return
/// the state unchanged and no actions.
pub fn step(state: &ServiceState, event: Event, now: Timestamp) -> (ServiceState, Vec<Action>) {
    if can_accept(state, &event, now).is_err() {
        return (state.clone(), Vec::new());
    }
    let mut next = state.clone();
    let Some(mut rollout) = next.rollout.take() else {
        return (state.clone(), Vec::new());
    };
    let mut change = Change {
        service: &mut next,
        actions: Vec::new(),
        now,
    };
    match event {
        Event::Analysis(run) => change.analysis(&mut rollout, run),
        Event::Tick => match rollout.current_step() {
            Some(Step::Approve {
                deadline: Some(deadline),
                on_deadline,
            }) => {
                let waited = duration::format(*deadline);
                if *on_deadline == OnDeadline::Proceed {
                    let reason =
                        format!("no approval within {waited}: proceeding (on_deadline: proceed)");
                    change.advance(&mut rollout, DecisionKind::Advanced, reason, None);
                } else {
                    let reason = format!("rolled back: no approval within {waited}");
                    change.roll_back(&mut rollout, DecisionKind::RolledBack, reason, None);
                }
            }
            Some(Step::Replace { .. }) => {
                let reason = "the next endpoints are ready".to_string();
                change.advance(&mut rollout, DecisionKind::Advanced, reason, None);
            }
            _ => {
                let reason = format!("{} ended", describe_pause(&rollout));
                change.advance(&mut rollout, DecisionKind::Advanced, reason, None);
            }
        },
        Event::Promote => {
            let reason = "promoted by operator".to_string();
            change.promote(&mut rollout, reason, None);
        }
        Event::Abort => {
            let reason = "aborted by operator".to_string();
            change.roll_back(&mut rollout, DecisionKind::Aborted, reason, None);
        }
        Event::Reject { reason } => {
            let reason = format!("rolled back: {reason}");
            change.roll_back(&mut rollout, DecisionKind::RolledBack, reason, None);
        }
        Event::Pause => {
            let from = rollout.phase;
            rollout.phase = Phase::Paused;
            rollout.next_analysis_at = None;
            let reason = format!("paused by operator at {}", rollout.canary_weight);
            change.record(&mut rollout, DecisionKind::Paused, from, reason, None);
        }
        Event::Resume => change.resume(&mut rollout),
    }
    let actions = change.actions;
    rollout.updated_at = now;
    next.rollout = Some(rollout);
    next.revision += 1;
    (next, actions)
}

// === transitions ===

/// One event's effects: the service's routing and the actions so far.
struct Change<'a> {
    service: &'a mut ServiceState,
    actions: Vec<Action>,
    now: Timestamp,
}

impl Change<'_> {
    fn analysis(&mut self, rollout: &mut Rollout, mut run: AnalysisRun) {
        let from = rollout.phase;
        rollout.check_memory = run.memory.clone();
        if let Some(evidence) = run.sequential_state.take() {
            rollout.sequential_evidence = evidence;
        }
        if run.verdict == Verdict::Inconclusive {
            rollout.inconclusive_streak = rollout.inconclusive_streak.saturating_add(1);
            if rollout.inconclusive_streak >= rollout.max_inconclusive.max(1) {
                run.reason = format!(
                    "{} inconclusive runs in a row (max_inconclusive {}): {}",
                    rollout.inconclusive_streak, rollout.max_inconclusive, run.reason
                );
                run.verdict = Verdict::Fail;
                rollout.inconclusive_streak = 0;
            }
        } else {
            rollout.inconclusive_streak = 0;
        }
        rollout.last_analysis = Some(run.clone());
        rollout.next_analysis_at = Some(self.now + rollout.interval);
        let timed_pause = matches!(rollout.current_step(), Some(Step::Pause(Some(_))));
        match run.verdict {
            Verdict::Fail => {
                rollout.failed_runs = rollout.failed_runs.saturating_add(1);
                if run.decisive {
                    let reason = format!("rolled back at once: {}", run.reason);
                    self.roll_back(rollout, DecisionKind::RolledBack, reason, Some(run));
                    return;
                }
                if rollout.failed_runs >= rollout.threshold {
                    let reason = format!(
                        "rolled back: {}; {} failed runs reached threshold {}",
                        run.reason, rollout.failed_runs, rollout.threshold
                    );
                    self.roll_back(rollout, DecisionKind::RolledBack, reason, Some(run));
                    return;
                }
                let reason = format!(
                    "{} (failed runs {} of threshold {})",
                    run.reason, rollout.failed_runs, rollout.threshold
                );
                self.record(rollout, DecisionKind::CheckFailed, from, reason, Some(run));
                self.end_pause_if_over(rollout);
            }
            Verdict::Inconclusive => {
                rollout.inconclusive_runs = rollout.inconclusive_runs.saturating_add(1);
                let reason = format!(
                    "inconclusive: {}; holding at {}",
                    run.reason, rollout.canary_weight
                );
                self.record(rollout, DecisionKind::Inconclusive, from, reason, Some(run));
                self.end_pause_if_over(rollout);
            }
            Verdict::Pass if timed_pause => {
                rollout.passed_runs = rollout.passed_runs.saturating_add(1);
                let pause = describe_pause(rollout);
                if pause_over(rollout, self.now) {
                    let reason = format!("{pause} ended; analysis passed: {}", run.reason);
                    self.advance(rollout, DecisionKind::Advanced, reason, Some(run));
                } else {
                    let reason = format!(
                        "analysis passed: {}; holding at {} for the {pause}",
                        run.reason, rollout.canary_weight
                    );
                    self.record(rollout, DecisionKind::Held, from, reason, Some(run));
                }
            }
            Verdict::Pass => {
                rollout.passed_runs = rollout.passed_runs.saturating_add(1);
                let reason = format!(
                    "analysis passed at {}: {}",
                    rollout.canary_weight, run.reason
                );
                self.advance(rollout, DecisionKind::Advanced, reason, Some(run));
            }
        }
    }

    fn end_pause_if_over(&mut self, rollout: &mut Rollout) {
        if pause_over(rollout, self.now) {
            let reason = format!("{} ended", describe_pause(rollout));
            self.advance(rollout, DecisionKind::Advanced, reason, None);
        }
    }

    fn resume(&mut self, rollout: &mut Rollout) {
        if matches!(rollout.current_step(), Some(Step::Approve { .. })) {
            let reason = "approved by operator".to_string();
            self.advance(rollout, DecisionKind::Resumed, reason, None);
            return;
        }
        if rollout.current_step() == Some(&Step::Pause(None)) {
            let reason = "resumed by operator past the manual pause".to_string();
            self.advance(rollout, DecisionKind::Resumed, reason, None);
            return;
        }
        let from = rollout.phase;
        rollout.phase = Phase::Progressing;
        rollout.next_analysis_at = Some(self.now + rollout.interval);
        let reason = format!("resumed by operator; {}", describe_position(rollout));
        self.record(rollout, DecisionKind::Resumed, from, reason, None);
    }

    /// Completes the current step and enters the next, or promotes after the last.
    fn advance(
        &mut self,
        rollout: &mut Rollout,
        kind: DecisionKind,
        reason: String,
        analysis: Option<AnalysisRun>,
    ) {
        let from = rollout.phase;
        rollout.steps_taken += 1;
        rollout.step_index += 1;
        if rollout.step_index >= rollout.plan.len() {
            let reason = format!("{reason}; all {} steps done", rollout.plan.len());
            self.promote(rollout, reason, analysis);
            return;
        }
        let before = rollout.canary_weight;
        enter_current_step(rollout, self.now);
        self.service.canary_weight = rollout.canary_weight;
        let reason = format!("{reason}; {}", describe_position(rollout));
        self.record(rollout, kind, from, reason, analysis);
        if rollout.canary_weight != before {
            self.actions.push(Action::SetWeight(rollout.canary_weight));
        }
    }

    fn promote(&mut self, rollout: &mut Rollout, reason: String, analysis: Option<AnalysisRun>) {
        let from = rollout.phase;
        rollout.phase = Phase::Succeeded;
        rollout.next_analysis_at = None;
        rollout.canary_weight = Weight::FULL;
        let mut reason = reason;
        if let Some(delay) = rollout.keep_warm.filter(|d| !d.is_zero()) {
            let previous = std::mem::take(&mut self.service.stable);
            reason = format!(
                "{reason}; switched all traffic at once; the previous pool ({}) stays warm for {}",
                previous.join(", "),
                duration::format(delay)
            );
            self.service.warm = Some(crate::WarmPool {
                endpoints: previous,
                until: self.now + delay,
            });
        }
        self.service.stable = rollout.canary.clone();
        let cause = format!("rollout {} promoted", rollout.id);
        self.service.push_revision(&rollout.canary, self.now, cause);
        self.service.canary = None;
        self.service.canary_weight = Weight::ZERO;
        self.record(rollout, DecisionKind::Promoted, from, reason, analysis);
        self.actions.push(Action::PromoteCanary);
    }

    fn roll_back(
        &mut self,
        rollout: &mut Rollout,
        kind: DecisionKind,
        reason: String,
        analysis: Option<AnalysisRun>,
    ) {
        let from = rollout.phase;
        end_rolled_back(rollout, self.now);
        self.service.canary_weight = Weight::ZERO;
        self.record(rollout, kind, from, reason, analysis);
        self.actions.push(Action::SetWeight(Weight::ZERO));
    }

    fn record(
        &mut self,
        rollout: &mut Rollout,
        kind: DecisionKind,
        from: Phase,
        reason: String,
        analysis: Option<AnalysisRun>,
    ) {
        let action = record(rollout, kind, from, reason, analysis, self.now);
        self.actions.push(action);
    }
}

/// Sets the phase, weight and timers for the step at `step_index`.
fn enter_current_step(rollout: &mut Rollout, now: Timestamp) {
    rollout.step_started_at = now;
    rollout.phase = Phase::Progressing;
    rollout.next_analysis_at = Some(now + rollout.interval);
    match rollout.current_step().cloned() {
        Some(Step::Weight(weight)) => rollout.canary_weight = weight,
        Some(Step::Cohort(cohort)) => rollout.canary_weight = cohort.weight(),
        Some(Step::Pause(None) | Step::Approve { .. }) => {
            rollout.phase = Phase::Paused;
            rollout.next_analysis_at = None;
        }
        Some(Step::Replace { new, old }) => {
            rollout.canary_weight = replace_weight(new, old);
            if new == 0 {
                // Nothing to analyse: it ends when the next endpoints are admitted.
                rollout.next_analysis_at = None;
            }
        }
        Some(Step::Pause(Some(_))) | None => {}
    }
}

/// The canary's share when `new` canary and `old` stable endpoints serve.
fn replace_weight(new: usize, old: usize) -> Weight {
    match new + old {
        0 => Weight::ZERO,
        all => {
            let bp = (new as u64 * 10_000 / all as u64) as u16;
            Weight::from_basis_points(bp).unwrap_or(Weight::FULL)
        }
    }
}

fn end_rolled_back(rollout: &mut Rollout, now: Timestamp) {
    rollout.phase = Phase::RolledBack;
    rollout.next_analysis_at = None;
    rollout.canary_weight = Weight::ZERO;
    rollout.updated_at = now;
}

/// Appends a decision to the rollout's log (the next `seq`).
fn record(
    rollout: &mut Rollout,
    kind: DecisionKind,
    from: Phase,
    reason: String,
    analysis: Option<AnalysisRun>,
    now: Timestamp,
) -> Action {
    let decision = Decision {
        service: rollout.service.clone(),
        rollout_id: rollout.id,
        seq: rollout.decisions,
        at: now,
        kind,
        from,
        to: rollout.phase,
        weight: rollout.canary_weight,
        step_index: rollout.step_index,
        reason,
        analysis,
    };
    rollout.decisions += 1;
    Action::Record(decision)
}

pub(super) fn pause_over(rollout: &Rollout, now: Timestamp) -> bool {
    rollout.pause_ends_at().is_some_and(|end| now >= end)
}

fn describe_pause(rollout: &Rollout) -> String {
    match rollout.current_step() {
        Some(Step::Pause(Some(pause))) => format!("pause of {}", duration::format(*pause)),
        _ => "pause".to_string(),
    }
}

/// Where the rollout now is, for reasons: "canary weight 10%", ...
fn describe_position(rollout: &Rollout) -> String {
    let step = rollout.step_index + 1;
    let steps = rollout.plan.len();
    let weight = rollout.canary_weight;
    match rollout.current_step() {
        Some(Step::Weight(_)) => format!("step {step} of {steps}: canary weight {weight}"),
        Some(Step::Cohort(cohort)) => format!("step {step} of {steps}: canary for {cohort}"),
        Some(Step::Pause(Some(pause))) => format!(
            "step {step} of {steps}: holding {weight} for {}",
            duration::format(*pause)
        ),
        Some(Step::Pause(None)) => {
            format!("step {step} of {steps}: holding {weight} until resumed or promoted")
        }
        Some(Step::Approve {
            deadline,
            on_deadline,
        }) => {
            match deadline {
                Some(d) => {
                    format!(
                "step {step} of {steps}: waiting for approval at {weight} (then {} after {})",
                if *on_deadline == OnDeadline::Proceed { "proceeding" } else { "rolling back" },
                duration::format(*d)
            )
                }
                None => format!("step {step} of {steps}: waiting for approval at {weight}"),
            }
        }
        Some(Step::Replace { new: 0, old: 0 }) => format!(
            "step {step} of {steps}: no endpoint serves until the {} new ones are healthy",
            rollout.canary.len()
        ),
        Some(Step::Replace { new, old }) => format!(
            "step {step} of {steps}: {new} of {} new and {old} old endpoints serve (canary weight {weight})",
            rollout.canary.len()
        ),
        None => format!("no steps left, canary weight {weight}"),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_replace;
