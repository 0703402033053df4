//! The persisted state of a service and its rollout, and the decision log.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_analysis::sequential::SequentialState;
use sluice_analysis::{AnalysisRun, CheckMemory};
use sluice_model::{CheckSpec, Endpoint, Judge, SequentialSpec, Step, Timestamp, Weight};

/// Where a rollout is (names as in DESIGN.md; later strategies use the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Idle,
    Initializing,
    Progressing,
    Paused,
    WaitingPromotion,
    Promoting,
    Baking,
    Succeeded,
    RollingBack,
    RolledBack,
    Failed,
}

// === impl Phase ===

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Phase {
    /// No further event moves a rollout out of a final phase.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Failed)
    }
}

/// One rollout: the plan it follows and where it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Increases by one per rollout of the service.
    pub id: u64,
    pub service: String,
    /// The plan, copied at start so that a config reload does not change a running rollout.
    pub plan: Vec<Step>,
    #[serde(with = "sluice_model::duration")]
    pub interval: Duration,
    /// Failed runs that trigger rollback.
    pub threshold: u32,
    pub min_requests: u64,
    pub checks: Vec<CheckSpec>,
    /// The canary pool this rollout introduces.
    pub canary: Vec<Endpoint>,

    pub phase: Phase,
    /// Index into `plan` of the current step (== plan.len() once all are done).
    pub step_index: usize,
    pub canary_weight: Weight,
    /// Steps completed (a step is taken once, even across restarts).
    pub steps_taken: usize,
    /// Failed analysis runs so far (whole rollout, as Flagger counts them).
    pub failed_runs: u32,
    pub passed_runs: u32,
    pub inconclusive_runs: u32,
    pub started_at: Timestamp,
    /// When the current step began (a timed pause ends at step_started_at + pause).
    pub step_started_at: Timestamp,
    /// When the next analysis run is due; None while paused or final.
    pub next_analysis_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// The last analysis run, for status displays.
    pub last_analysis: Option<AnalysisRun>,
    /// Number of decisions recorded so far (the next decision's `seq`).
    pub decisions: u64,
    /// Inconclusive runs in a row after which one counts as failed.
    #[serde(default = "default_max_inconclusive")]
    pub max_inconclusive: u32,
    /// Inconclusive runs in a row so far.
    #[serde(default)]
    pub inconclusive_streak: u32,
    /// What each check remembers between runs (sustained violations, provider error streaks).
    #[serde(default)]
    pub check_memory: Vec<CheckMemory>,
    /// Who decides each run.
    #[serde(default)]
    pub judge: Judge,
    /// The sequential judge's settings, copied at start.
    #[serde(default)]
    pub sequential: SequentialSpec,
    /// The sequential judge's evidence so far (over the whole rollout).
    #[serde(default)]
    pub sequential_evidence: SequentialState,
    /// Blue-green: how long the previous pool stays warm after promotion.
    #[serde(default, with = "sluice_model::duration::option")]
    pub keep_warm: Option<Duration>,
    /// Cohort plans: the header naming the tenant.
    #[serde(default)]
    pub tenant_header: Option<String>,
}

fn default_max_inconclusive() -> u32 {
    10
}

// === impl Rollout ===

impl Rollout {
    /// The step the rollout is at; None once every step is done.
    pub fn current_step(&self) -> Option<&Step> {
        self.plan.get(self.step_index)
    }

    /// Whether an analysis run is due: progressing and its time has come.
    pub fn analysis_due(&self, now: Timestamp) -> bool {
        self.phase == Phase::Progressing
            && !self.waits_for_admission()
            && self.next_analysis_at.is_some_and(|due| now >= due)
    }

    /// When the current timed pause ends (None unless the current step is a timed pause).
    pub fn pause_ends_at(&self) -> Option<Timestamp> {
        match self.current_step() {
            Some(Step::Pause(Some(pause))) => Some(self.step_started_at + *pause),
            _ => None,
        }
    }

    /// When the current approval step's deadline passes (None without one).
    pub fn approval_deadline(&self) -> Option<Timestamp> {
        match self.current_step() {
            Some(Step::Approve {
                deadline: Some(deadline),
                ..
            }) if self.phase == Phase::Paused => Some(self.step_started_at + *deadline),
            _ => None,
        }
    }

    /// Whether the current step is a replacement with no new endpoint in
    /// (a rolling plan's first step, recreate's gap): it ends with a `Tick`
    /// once the next endpoints are admitted, not with an analysis run.
    pub fn waits_for_admission(&self) -> bool {
        self.phase == Phase::Progressing
            && matches!(self.current_step(), Some(Step::Replace { new: 0, .. }))
    }

    /// `(new, old)`: how many endpoints of the canary and stable pools
    /// serve at the current step of a `rolling` or `recreate` rollout in
    /// progress; None for other steps and once the rollout ended.
    pub fn replace_position(&self) -> Option<(usize, usize)> {
        match self.current_step() {
            Some(Step::Replace { new, old }) if !self.phase.is_final() => Some((*new, *old)),
            _ => None,
        }
    }

    /// How many canary endpoints serve once the rollout moves on from a
    /// replacement step: the next step's, or the whole pool at promotion.
    /// The controller admits them only when healthy.
    pub fn next_admitted(&self) -> Option<usize> {
        self.replace_position()?;
        match self.plan.get(self.step_index + 1) {
            Some(Step::Replace { new, .. }) => Some(*new),
            _ => Some(self.canary.len()),
        }
    }

    /// When the controller should next call `step` on its own (with an
    /// `Analysis` or a `Tick`): the earlier of the next analysis and the end
    /// of a timed pause. None while paused (only an operator moves it on) or final.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        if self.phase != Phase::Progressing {
            return self.approval_deadline();
        }
        if self.waits_for_admission() {
            return Some(self.step_started_at);
        }
        match (self.next_analysis_at, self.pause_ends_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A service's routing state as the controller owns it: which pools serve, at what weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub service: String,
    /// The pool that serves today.
    pub stable: Vec<Endpoint>,
    /// The canary slot's pool; None when there is nothing to roll out.
    pub canary: Option<Vec<Endpoint>>,
    pub canary_weight: Weight,
    /// The current rollout, or the last one (final phase).
    pub rollout: Option<Rollout>,
    /// Increases by one with every stored change (compare-and-swap in the store).
    pub revision: u64,
    /// The config's stable pool when last applied: a change in the file (not a
    /// promotion) is the operator's word and replaces `stable`.
    #[serde(default)]
    pub config_stable: Vec<Endpoint>,
    /// The stable pools served so far, oldest first (the newest is the one
    /// in force), for `rollout undo`; the last [`MAX_REVISIONS`] are kept.
    #[serde(default)]
    pub revisions: Vec<Revision>,
    /// Blue-green: the pool served before the last switch, kept warm (and
    /// instantly reachable by `rollout undo`) until it is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmPool>,
}

/// A previous pool kept warm after a blue-green switch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmPool {
    pub endpoints: Vec<Endpoint>,
    /// When it is released (`scale_down_delay` after the switch).
    pub until: Timestamp,
}

/// Revisions kept per service.
pub const MAX_REVISIONS: usize = 20;

/// A stable pool that was served: what, since when, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, 3… per service.
    pub number: u64,
    pub endpoints: Vec<Endpoint>,
    pub at: Timestamp,
    /// What made it: `config`, `rollout 3 promoted`, `undo to revision 2`.
    pub cause: String,
    /// A digest of the service's config when it was made (set by the controller).
    #[serde(default)]
    pub config_digest: String,
}

// === impl ServiceState (revisions) ===

impl ServiceState {
    /// Records `endpoints` as the newest revision, unless it already is.
    pub fn push_revision(&mut self, endpoints: &[Endpoint], at: Timestamp, cause: String) {
        if self
            .revisions
            .last()
            .is_some_and(|r| r.endpoints == endpoints)
        {
            return;
        }
        let number = self.revisions.last().map_or(1, |r| r.number + 1);
        self.revisions.push(Revision {
            number,
            endpoints: endpoints.to_vec(),
            at,
            cause,
            config_digest: String::new(),
        });
        if self.revisions.len() > MAX_REVISIONS {
            self.revisions.drain(..self.revisions.len() - MAX_REVISIONS);
        }
    }
}

/// What the controller must do after storing a transition. Idempotent:
/// replaying them after a restart gives the same routing.
// A few actions per transition, so the size gap costs nothing worth a
// `Box` in an API other crates match on.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Route this share of traffic to the canary pool.
    SetWeight(Weight),
    /// The canary pool becomes stable; the canary slot is emptied (weight 0).
    PromoteCanary,
    /// Record this decision in the log.
    Record(Decision),
}

/// Kinds of decision, for filtering and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Started,
    Advanced,
    Held,
    CheckFailed,
    Inconclusive,
    Paused,
    Resumed,
    Promoted,
    RolledBack,
    Aborted,
    /// An operator switched back to an earlier revision (`rollout undo`).
    Undone,
    /// Blue-green: the previous pool's warm time ended; it may be scaled down.
    Released,
}

/// One recorded decision: what changed, why, and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub service: String,
    pub rollout_id: u64,
    /// Position in this rollout's log, from 0.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: DecisionKind,
    pub from: Phase,
    pub to: Phase,
    /// Canary weight after the decision.
    pub weight: Weight,
    pub step_index: usize,
    /// One sentence a person reads (names the failing check and its value on a failure).
    pub reason: String,
    /// The analysis run that caused it, if any.
    pub analysis: Option<AnalysisRun>,
}
