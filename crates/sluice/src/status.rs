//! The status of a service's rollout as the admin API, the CLI and the demo
//! show it: one flat, documented JSON object (weights in percent).

use serde::{Deserialize, Serialize};
use sluice_analysis::AnalysisRun;
use sluice_model::{Endpoint, Step, Timestamp, Weight};
use sluice_rollout::{Decision, Phase, ServiceState};

/// A service and its current (or last) rollout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `Idle` when the service never had a rollout.
    pub phase: Phase,
    /// Canary weight now, in percent.
    pub weight: Weight,
    pub rollout_id: Option<u64>,
    /// The rollout's steps, as copied at its start (empty without a rollout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<Step>,
    /// Index of the current step (equals `steps_total` once all are done).
    pub step: usize,
    pub steps_total: usize,
    pub steps_taken: usize,
    pub failed_runs: u32,
    pub threshold: u32,
    pub stable: Vec<Endpoint>,
    pub canary: Option<Vec<Endpoint>>,
    pub started_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    pub revision: u64,
    pub last_analysis: Option<AnalysisRun>,
    /// During a `rolling` or `recreate` rollout: how much of each pool serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<PoolsServing>,
    /// The rollout's decisions, oldest first: the newest 50 from the admin API
    /// (`/history` has every one), all of them in the demo's final report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
    /// Blue-green: the previous pool, kept warm until it is released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<sluice_rollout::WarmPool>,
}

/// Endpoints of the new (canary) and old (stable) pools serving at a
/// rolling or recreate step: the first `new_in` and the first `old_in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolsServing {
    pub new_in: usize,
    pub new_total: usize,
    pub old_in: usize,
    pub old_total: usize,
}

impl ServiceStatus {
    pub fn from_state(state: &ServiceState) -> ServiceStatus {
        let rollout = state.rollout.as_ref();
        ServiceStatus {
            service: state.service.clone(),
            phase: rollout.map_or(Phase::Idle, |r| r.phase),
            weight: state.canary_weight,
            rollout_id: rollout.map(|r| r.id),
            plan: rollout.map(|r| r.plan.clone()).unwrap_or_default(),
            step: rollout.map_or(0, |r| r.step_index),
            steps_total: rollout.map_or(0, |r| r.plan.len()),
            steps_taken: rollout.map_or(0, |r| r.steps_taken),
            failed_runs: rollout.map_or(0, |r| r.failed_runs),
            threshold: rollout.map_or(0, |r| r.threshold),
            stable: state.stable.clone(),
            canary: state.canary.clone(),
            started_at: rollout.map(|r| r.started_at),
            updated_at: rollout.map(|r| r.updated_at),
            revision: state.revision,
            last_analysis: rollout.and_then(|r| r.last_analysis.clone()),
            pools: rollout.and_then(|r| {
                let (new_in, old_in) = r.replace_position()?;
                Some(PoolsServing {
                    new_in,
                    new_total: r.canary.len(),
                    old_in,
                    old_total: state.stable.len(),
                })
            }),
            decisions: Vec::new(),
            warm: state.warm.clone(),
        }
    }
}
