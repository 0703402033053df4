//! The pool-replacing strategies in the shell: which endpoints serve at a
//! `rolling` or `recreate` step (the routing the controller publishes), and
//! the active health checks of the new pool that admit its endpoints and
//! roll the rollout back when one turns unhealthy. Not for deciding the
//! steps: those come from `sluice_rollout` (`replace_steps`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sluice_model::{Endpoint, HealthCheckSpec, RolloutSpec};
use sluice_proxy::ServiceRouting;
use sluice_rollout::{Event, ServiceState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::controller::{Reply, Request};

/// The health of one endpoint as its probes found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    /// Not yet enough probes in a row either way.
    Unknown,
    Healthy,
    /// The last failing probe's result.
    Unhealthy(String),
}

/// One rollout's new endpoints and their health, shared with its probes.
type PoolHealth = Arc<Mutex<Vec<(Endpoint, Health)>>>;

/// Every probed endpoint's health, by service (for `/metrics`).
#[derive(Default)]
pub struct HealthBoard {
    services: Mutex<HashMap<String, PoolHealth>>,
}

// === impl HealthBoard ===

impl HealthBoard {
    /// `(service, endpoint, healthy)` for every endpoint probed now.
    pub fn snapshot(&self) -> Vec<(String, Endpoint, bool)> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = services
            .iter()
            .flat_map(|(service, endpoints)| {
                let endpoints = endpoints.lock().unwrap_or_else(|e| e.into_inner());
                endpoints
                    .iter()
                    .map(|(endpoint, health)| {
                        (
                            service.clone(),
                            endpoint.clone(),
                            *health == Health::Healthy,
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }
}

/// Where a rollout's probes report an endpoint that turned unhealthy: the
/// service task's request queue (weak, so that it does not keep the task alive).
pub type Rejections = mpsc::WeakSender<(Request, Reply)>;

/// The probes of one rollout's new pool; they stop when this is dropped.
pub struct Probes {
    /// Which rollout and pool they probe.
    pub rollout_id: u64,
    pub endpoints: Vec<Endpoint>,
    pub spec: HealthCheckSpec,
    health: PoolHealth,
    tasks: Vec<JoinHandle<()>>,
    board: Arc<HealthBoard>,
    service: String,
}

// === impl Probes ===

impl Probes {
    /// Starts probing every endpoint of `endpoints` now and every `spec.interval`.
    pub fn start(
        service: &str,
        rollout_id: u64,
        endpoints: &[Endpoint],
        spec: &HealthCheckSpec,
        board: Arc<HealthBoard>,
        rejections: Rejections,
    ) -> Probes {
        let health = Arc::new(Mutex::new(
            endpoints
                .iter()
                .map(|e| (e.clone(), Health::Unknown))
                .collect::<Vec<_>>(),
        ));
        board
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string(), health.clone());
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let tasks = (0..endpoints.len())
            .map(|index| {
                let probe = Probe {
                    index,
                    endpoint: endpoints[index].clone(),
                    spec: spec.clone(),
                    client: client.clone(),
                    health: health.clone(),
                    rejections: rejections.clone(),
                };
                tokio::spawn(probe.run())
            })
            .collect();
        Probes {
            rollout_id,
            endpoints: endpoints.to_vec(),
            spec: spec.clone(),
            health,
            tasks,
            board,
            service: service.to_string(),
        }
    }

    /// The first of `endpoints` that is not healthy yet, with what its probes say.
    pub fn first_not_healthy(&self, endpoints: &[Endpoint]) -> Option<String> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        endpoints.iter().find_map(|endpoint| {
            match health.iter().find(|(e, _)| e == endpoint).map(|(_, h)| h) {
                Some(Health::Healthy) => None,
                Some(Health::Unhealthy(why)) => Some(format!("{endpoint} is unhealthy: {why}")),
                _ => Some(format!("{endpoint} is not healthy yet")),
            }
        })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let mut services = self
            .board
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if services
            .get(&self.service)
            .is_some_and(|h| Arc::ptr_eq(h, &self.health))
        {
            services.remove(&self.service);
        }
    }
}

/// An endpoint's probe results in a row, and the health they make.
#[derive(Default)]
struct Streak {
    passed: u32,
    failed: u32,
}

impl Streak {
    /// The health after one more probe `result`, from `before`. Unknown
    /// turns healthy after `healthy_threshold` passes in a row; any health
    /// turns unhealthy after `unhealthy_threshold` failures in a row; an
    /// unhealthy endpoint stays so (its rollout is being rolled back).
    fn record(
        &mut self,
        result: Result<(), String>,
        before: &Health,
        spec: &HealthCheckSpec,
    ) -> Health {
        match result {
            Ok(()) => {
                (self.passed, self.failed) = (self.passed.saturating_add(1), 0);
                match before {
                    Health::Unknown if self.passed >= spec.healthy_threshold => Health::Healthy,
                    other => other.clone(),
                }
            }
            Err(why) => {
                (self.passed, self.failed) = (0, self.failed.saturating_add(1));
                if self.failed >= spec.unhealthy_threshold {
                    Health::Unhealthy(format!(
                        "{why} ({} failed probes in a row, unhealthy_threshold {})",
                        self.failed, spec.unhealthy_threshold
                    ))
                } else {
                    before.clone()
                }
            }
        }
    }
}

/// One endpoint's probe loop.
struct Probe {
    index: usize,
    endpoint: Endpoint,
    spec: HealthCheckSpec,
    client: Client<HttpConnector, Empty<Bytes>>,
    health: PoolHealth,
    rejections: Rejections,
}

impl Probe {
    async fn run(self) {
        let mut streak = Streak::default();
        let mut ticks = tokio::time::interval(self.spec.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = self.probe().await;
            let before = self.current();
            let after = streak.record(result, &before, &self.spec);
            if after == before {
                continue;
            }
            self.health.lock().unwrap_or_else(|e| e.into_inner())[self.index].1 = after.clone();
            match &after {
                Health::Healthy => {
                    tracing::info!(endpoint = %self.endpoint, "health check passed: endpoint healthy")
                }
                Health::Unhealthy(why) if !matches!(before, Health::Unhealthy(_)) => {
                    tracing::warn!(endpoint = %self.endpoint, "health check: endpoint unhealthy: {why}");
                    self.reject(why).await;
                }
                _ => {}
            }
        }
    }

    fn current(&self) -> Health {
        self.health.lock().unwrap_or_else(|e| e.into_inner())[self.index]
            .1
            .clone()
    }

    /// Asks the service's task to roll the rollout back (it refuses if it already ended).
    async fn reject(&self, why: &str) {
        let Some(requests) = self.rejections.upgrade() else {
            return;
        };
        let reason = format!("health check of new endpoint {}: {why}", self.endpoint);
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let _ = requests
            .send((Request::Event(Event::Reject { reason }), reply))
            .await;
    }

    /// One GET of the health path: Ok when the status is expected in time.
    async fn probe(&self) -> Result<(), String> {
        let url = format!("http://{}{}", self.endpoint, self.spec.path);
        let request = http::Request::get(&url)
            .header(http::header::USER_AGENT, "sluice-health-check")
            .body(Empty::new())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let path = &self.spec.path;
        match tokio::time::timeout(self.spec.timeout, self.client.request(request)).await {
            Err(_) => Err(format!(
                "GET {path} sent no response within {}",
                sluice_model::duration::format(self.spec.timeout)
            )),
            Ok(Err(e)) => Err(format!("GET {path} failed: {}", innermost(&e))),
            Ok(Ok(response)) if self.spec.expect.contains(response.status().as_u16()) => Ok(()),
            Ok(Ok(response)) => Err(format!(
                "GET {path} answered {} (expected {})",
                response.status().as_u16(),
                self.spec.expect
            )),
        }
    }
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .last()
        .map_or_else(String::new, |e| e.to_string())
}

/// The pools a `rolling` or `recreate` rollout in progress serves at its
/// step: the first `old` endpoints of the stable pool, the first `new` of
/// the canary pool, split by count; with neither (recreate's gap) every
/// request is answered 503 with the plan's `Retry-After`. Other rollouts
/// leave `routing` as it is.
pub fn apply_replace_step(
    routing: &mut ServiceRouting,
    state: &ServiceState,
    spec: Option<&RolloutSpec>,
) {
    let Some(rollout) = &state.rollout else {
        return;
    };
    let Some((new, old)) = rollout.replace_position() else {
        return;
    };
    routing.stable = state.stable.iter().take(old).cloned().collect();
    routing.canary = (new > 0).then(|| rollout.canary.iter().take(new).cloned().collect());
    routing.canary_weight = rollout.canary_weight;
    if new + old == 0 {
        let retry_after = spec.map_or(Duration::from_secs(5), |s| s.gap_retry_after());
        routing.unavailable = Some(retry_after);
    }
}

/// The canary endpoints the rollout's next move admits (none unless it
/// is at a replacement step that is due now).
pub fn next_admitted(state: &ServiceState, now: sluice_model::Timestamp) -> &[Endpoint] {
    let Some(rollout) = &state.rollout else {
        return &[];
    };
    let due = rollout.analysis_due(now) || rollout.waits_for_admission();
    match (due, rollout.replace_position(), rollout.next_admitted()) {
        (true, Some((current, _)), Some(next)) if next > current => {
            let end = next.min(rollout.canary.len());
            &rollout.canary[current.min(end)..end]
        }
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use sluice_model::{Step, Timestamp, Weight};
    use sluice_rollout::{Phase, Rollout};

    use super::*;

    fn check() -> HealthCheckSpec {
        serde_json::from_str(r#"{"healthy_threshold": 2, "unhealthy_threshold": 3}"#).unwrap()
    }

    #[test]
    fn thresholds_count_probes_in_a_row() {
        let (spec, mut streak) = (check(), Streak::default());
        let fail = || Err("GET /healthz answered 503 (expected 2xx)".to_string());
        let mut health = Health::Unknown;
        for result in [Ok(()), fail(), Ok(())] {
            health = streak.record(result, &health, &spec);
        }
        assert_eq!(health, Health::Unknown, "passes must be in a row");
        health = streak.record(Ok(()), &health, &spec);
        assert_eq!(health, Health::Healthy);
        for _ in 0..2 {
            health = streak.record(fail(), &health, &spec);
        }
        assert_eq!(
            health,
            Health::Healthy,
            "two failures are below the threshold"
        );
        health = streak.record(fail(), &health, &spec);
        let Health::Unhealthy(why) = &health else {
            panic!("{health:?}");
        };
        assert_eq!(
            why,
            "GET /healthz answered 503 (expected 2xx) (3 failed probes in a row, unhealthy_threshold 3)"
        );
        for _ in 0..5 {
            health = streak.record(Ok(()), &health, &spec);
        }
        assert!(matches!(health, Health::Unhealthy(_)), "unhealthy stays so");
    }

    fn state_at(plan: Vec<Step>, step_index: usize, phase: Phase) -> ServiceState {
        let endpoints = |prefix: &str| (1..=3).map(|i| format!("{prefix}{i}:80")).collect();
        let mut rollout: Rollout = serde_json::from_value(serde_json::json!({
            "id": 1, "service": "web", "plan": [], "interval": "1m", "threshold": 1,
            "min_requests": 0, "checks": [], "canary": [], "phase": "Progressing",
            "step_index": 0, "canary_weight": Weight::ZERO, "steps_taken": 0,
            "failed_runs": 0, "passed_runs": 0, "inconclusive_runs": 0,
            "started_at": 0, "step_started_at": 0, "next_analysis_at": 60000,
            "updated_at": 0, "last_analysis": null, "decisions": 0
        }))
        .unwrap();
        rollout.plan = plan;
        rollout.step_index = step_index;
        rollout.phase = phase;
        rollout.canary = endpoints("new");
        ServiceState {
            service: "web".into(),
            stable: endpoints("old"),
            canary: Some(endpoints("new")),
            canary_weight: Weight::ZERO,
            rollout: Some(rollout),
            revision: 1,
            config_stable: endpoints("old"),
            revisions: Vec::new(),
            warm: None,
        }
    }

    fn routing(state: &ServiceState, spec: Option<&RolloutSpec>) -> ServiceRouting {
        let mut routing = ServiceRouting {
            stable: state.stable.clone(),
            canary: state.canary.clone(),
            canary_weight: state.canary_weight,
            match_active: false,
            unavailable: None,
            mirror_active: false,
            cohort: None,
        };
        apply_replace_step(&mut routing, state, spec);
        routing
    }

    #[test]
    fn a_step_serves_the_first_endpoints_of_each_pool() {
        let plan = vec![
            Step::Replace { new: 0, old: 3 },
            Step::Replace { new: 1, old: 2 },
        ];
        let state = state_at(plan.clone(), 1, Phase::Progressing);
        let at_step = routing(&state, None);
        assert_eq!(at_step.stable, vec!["old1:80", "old2:80"]);
        assert_eq!(at_step.canary, Some(vec!["new1:80".to_string()]));
        assert_eq!(at_step.unavailable, None);
        // The last step's next move is the promotion: the whole new pool.
        let at = Timestamp::from_millis(60_000);
        assert_eq!(next_admitted(&state, at), ["new2:80", "new3:80"]);
        assert!(
            next_admitted(&state, Timestamp::from_millis(1)).is_empty(),
            "not due"
        );

        let rolled_back = state_at(plan, 1, Phase::RolledBack);
        assert_eq!(
            routing(&rolled_back, None).stable.len(),
            3,
            "the whole old pool"
        );
    }

    #[test]
    fn the_gap_answers_with_the_plans_retry_after() {
        let state = state_at(
            vec![Step::Replace { new: 0, old: 0 }],
            0,
            Phase::Progressing,
        );
        let spec: RolloutSpec =
            serde_json::from_str(r#"{"strategy": "recreate", "retry_after": "9s"}"#).unwrap();
        let gap = routing(&state, Some(&spec));
        assert!(gap.stable.is_empty() && gap.canary.is_none());
        assert_eq!(gap.unavailable, Some(Duration::from_secs(9)));
        assert_eq!(next_admitted(&state, Timestamp::from_millis(0)).len(), 3);
    }
}
