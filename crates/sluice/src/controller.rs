//! The controller: one task per service owns that service's state, feeds the
//! rollout core its events (analysis runs, timers, operator commands), stores
//! every transition *before* acting on it, then publishes the new routing
//! snapshot to the proxy. Not for: deciding anything itself — the rules live
//! in `sluice_rollout` and `sluice_analysis`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_analysis::{analyse_with, decide, sequential_config, Inputs, Measured, Window};
use sluice_model::{
    release_plan_name, CheckSpec, Config, Endpoint, Provider, ReleasePlan, RollbackMode, Service,
    Timestamp, Trigger, Version, Versions, Weight,
};
use sluice_proxy::{Metrics, Proxy, RouteTable, ServiceRouting, Slot, TenantCohort};
use sluice_rollout::{Action, Decision, Event, Phase, ServiceState};
use sluice_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::{FleetCounters, Leadership};
use crate::flags::FlagServer;
use crate::health::{HealthBoard, Probes, Rejections};
use crate::hooks::Hooks;
use crate::notify::{Notice, Notifier};
use crate::providers::prometheus::{self, Prometheus};
use sluice_model::{HookType, WebhookSpec};

/// Why the controller refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no service named {0:?}")]
    UnknownService(String),
    #[error("service {service:?} has no rollout in progress")]
    NoRollout { service: String },
    #[error("the rollout of {service:?} already ended ({phase:?}); start a new one")]
    Ended { service: String, phase: Phase },
    #[error("service {0:?} has no rollout plan in the config (services[].rollout)")]
    NoPlan(String),
    #[error("service {0:?} has no canary endpoints to roll out (versions.canary or --canary)")]
    NoCanary(String),
    #[error("{0}")]
    InvalidEndpoint(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the controller is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Undo(#[from] sluice_rollout::UndoError),
    /// A `confirm_rollout` webhook did not confirm (asked again every interval).
    #[error("{0}")]
    Hook(String),
    /// Cluster mode: another node (or none, during an election) decides.
    #[error("this node is not the cluster's leader; send changes to the leader ({leader})")]
    NotLeader { leader: String },
}

/// What an operator (or a reload) asks of a service. Rare, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    Event(Event),
    /// Serve an earlier revision again (default: the one before the newest).
    Undo {
        to: Option<u64>,
    },
    Start {
        canary: Option<Vec<Endpoint>>,
    },
    Reconfigure(Arc<Config>),
    /// Cluster mode, a follower: the store holds a newer state (applied
    /// when its revision is newer than the one this node knows).
    Follow(ServiceState),
    /// Cluster mode: this node was elected; reload from the store and resume.
    Lead,
}

pub(crate) type Reply = oneshot::Sender<Result<ServiceState, ControlError>>;

/// Counters the controller exports on `/metrics`.
#[derive(Default)]
pub struct ControllerMetrics {
    pub analysis_pass: AtomicU64,
    pub analysis_fail: AtomicU64,
    pub analysis_inconclusive: AtomicU64,
    pub decisions: AtomicU64,
}

/// State shared by the service tasks.
struct Shared {
    store: Arc<dyn Store>,
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    config: ArcSwap<Config>,
    routing: Mutex<HashMap<String, ServiceRouting>>,
    counters: ControllerMetrics,
    /// The configured Prometheus, swapped on reload.
    prometheus: ArcSwap<Option<Prometheus>>,
    /// The flag server whose percentages release plans drive.
    flags: Arc<FlagServer>,
    /// Where decisions (and breaker transitions) are announced; rebuilt on reload.
    notifier: ArcSwap<Notifier>,
    /// Calls rollout webhooks.
    hooks: Arc<Hooks>,
    /// The health of the endpoints that rolling and recreate rollouts probe.
    health: Arc<HealthBoard>,
    /// Whether this node may decide (always, unless in cluster mode).
    leadership: Arc<Leadership>,
    /// Cluster mode: every node's built-in counters, summed (None: this node's own).
    fleet: Option<Arc<FleetCounters>>,
}

struct ServiceHandle {
    requests: mpsc::Sender<(Request, Reply)>,
    state: watch::Receiver<ServiceState>,
}

/// The running controller; cheap to share behind an `Arc`.
pub struct Controller {
    shared: Arc<Shared>,
    services: Mutex<HashMap<String, ServiceHandle>>,
}

// === impl Controller ===

impl Controller {
    /// Loads (or creates) every service's state, resumes rollouts in
    /// progress, starts those the config asks for, and publishes the routing.
    /// A single node's controller (the server uses `start_with`).
    #[cfg(test)]
    pub async fn start(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        proxy: Arc<Proxy>,
        metrics: Arc<Metrics>,
        flags: Arc<FlagServer>,
    ) -> Result<Arc<Controller>, ControlError> {
        Controller::start_with(
            config,
            store,
            proxy,
            metrics,
            flags,
            Arc::new(Leadership::single()),
            None,
        )
        .await
    }

    /// `start` for a node that decides only while `leadership` says so
    /// (cluster mode): a follower loads and routes, and writes nothing; with
    /// `fleet`, analysis reads the whole fleet's counters.
    pub async fn start_with(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        proxy: Arc<Proxy>,
        metrics: Arc<Metrics>,
        flags: Arc<FlagServer>,
        leadership: Arc<Leadership>,
        fleet: Option<Arc<FleetCounters>>,
    ) -> Result<Arc<Controller>, ControlError> {
        let shared = Arc::new(Shared {
            store,
            proxy,
            metrics,
            flags,
            config: ArcSwap::new(config.clone()),
            routing: Mutex::new(HashMap::new()),
            counters: ControllerMetrics::default(),
            prometheus: ArcSwap::from_pointee(prometheus_client(&config)?),
            notifier: ArcSwap::new(Notifier::new(&config.notifications, &env_var)),
            hooks: Arc::new(Hooks::new()),
            health: Arc::default(),
            leadership,
            fleet,
        });
        let controller = Arc::new(Controller {
            shared,
            services: Mutex::new(HashMap::new()),
        });
        for service in &controlled(&config) {
            controller.add_service(service).await?;
        }
        controller.shared.publish();
        Ok(controller)
    }

    async fn add_service(&self, service: &Service) -> Result<(), ControlError> {
        let shared = self.shared.clone();
        let name = service.name.clone();
        let store = shared.store.clone();
        let loaded = blocking(move || store.load(&name)).await?;
        let mut current = loaded.clone().unwrap_or_else(|| initial_state(service));
        if current.revisions.is_empty() {
            // Stored before revisions were kept: the pool in force is the first.
            let stable = current.stable.clone();
            current.push_revision(
                &stable,
                Timestamp::now_system(),
                "in force when revisions began".into(),
            );
        }
        let (state_tx, state_rx) = watch::channel(current);
        let (tx, rx) = mpsc::channel(64);
        let stored_revision = loaded.as_ref().map_or(0, |s| s.revision);
        let mut task = ServiceTask::new(service.clone(), shared.clone(), state_tx, stored_revision);
        task.rejections = Some(tx.downgrade());
        if shared.leadership.deciding() {
            if loaded.is_none() {
                task.commit(initial_state(service), Vec::new()).await?;
            }
            task.reconcile(service).await?;
        }
        tokio::spawn(task.run(rx));
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                service.name.clone(),
                ServiceHandle {
                    requests: tx,
                    state: state_rx,
                },
            );
        Ok(())
    }

    /// Sends a request to the service's task and waits for the new state.
    pub async fn request(
        &self,
        service: &str,
        request: Request,
    ) -> Result<ServiceState, ControlError> {
        let sender = {
            let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            let handle = services
                .get(service)
                .ok_or_else(|| ControlError::UnknownService(service.to_string()))?;
            handle.requests.clone()
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send((request, reply))
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        answer.await.map_err(|_| ControlError::ShuttingDown)?
    }

    /// Hands a state read from the store to its service's task (followers).
    pub async fn follow(&self, state: ServiceState) {
        let name = state.service.clone();
        if let Err(e) = self.request(&name, Request::Follow(state)).await {
            tracing::debug!(service = %name, "not followed: {e}");
        }
    }

    /// This node was elected: every service reloads from the store and resumes.
    pub async fn lead(&self) -> Result<(), ControlError> {
        let names: Vec<String> = {
            let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            services.keys().cloned().collect()
        };
        // Every service resumes even if one cannot (its task retries on its timer).
        let mut first_error = None;
        for name in names {
            if let Err(e) = self.request(&name, Request::Lead).await {
                tracing::error!(service = %name, "cannot resume as leader: {e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The latest state of every service, in config order, then every
    /// flag release plan (`flag:KEY`).
    pub fn states(&self) -> Vec<ServiceState> {
        let config = self.shared.config.load();
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        controlled(&config)
            .iter()
            .filter_map(|s| services.get(&s.name).map(|h| h.state.borrow().clone()))
            .collect()
    }

    pub fn state(&self, service: &str) -> Option<ServiceState> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service).map(|h| h.state.borrow().clone())
    }

    /// A receiver that sees every new state of the service.
    pub fn subscribe(&self, service: &str) -> Option<watch::Receiver<ServiceState>> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service).map(|h| h.state.clone())
    }

    pub async fn history(
        &self,
        service: &str,
        rollout: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, ControlError> {
        if self.state(service).is_none() {
            return Err(ControlError::UnknownService(service.to_string()));
        }
        let store = self.shared.store.clone();
        let service = service.to_string();
        blocking(move || store.history(&service, rollout, limit)).await
    }

    pub fn config(&self) -> Arc<Config> {
        self.shared.config.load_full()
    }

    /// The store the controller writes to (shared with the admin API).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn counters(&self) -> &ControllerMetrics {
        &self.shared.counters
    }

    /// The flag server whose percentages release plans drive.
    pub fn flags(&self) -> &Arc<FlagServer> {
        &self.shared.flags
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// `(service, endpoint, healthy)` for every endpoint a rolling or
    /// recreate rollout probes now.
    pub fn endpoint_health(&self) -> Vec<(String, Endpoint, bool)> {
        self.shared.health.snapshot()
    }

    /// The notifier in force (a reload builds a new one).
    pub fn notifier(&self) -> Arc<Notifier> {
        self.shared.notifier.load_full()
    }

    /// Applies a new, already validated config: new services start, removed
    /// ones stop routing, changed canaries start rollouts (trigger `auto`).
    /// The proxy switches to the new routing in one atomic swap.
    pub async fn reconfigure(&self, config: Arc<Config>) -> Result<(), ControlError> {
        let prometheus = prometheus_client(&config)?;
        self.shared.prometheus.store(Arc::new(prometheus));
        if config.notifications != self.shared.config.load().notifications {
            self.shared
                .notifier
                .store(Notifier::new(&config.notifications, &env_var));
        }
        self.shared.config.store(config.clone());
        let existing: Vec<String> = {
            let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            services.keys().cloned().collect()
        };
        let wanted = controlled(&config);
        for name in &existing {
            if !wanted.iter().any(|s| s.name == *name) {
                self.services
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
                self.shared
                    .routing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            }
        }
        for service in &wanted {
            if existing.contains(&service.name) {
                self.request(&service.name, Request::Reconfigure(config.clone()))
                    .await?;
            } else {
                self.add_service(service).await?;
            }
        }
        self.shared.publish();
        Ok(())
    }
}

// === impl Shared ===

impl Shared {
    /// Rebuilds the route table from the config and every service's routing, and swaps it in.
    fn publish(&self) {
        let routing = self.routing.lock().unwrap_or_else(|e| e.into_inner());
        let table = RouteTable::build(&self.config.load(), &routing, &self.metrics);
        self.proxy.publish(table);
    }

    fn set_routing(&self, state: &ServiceState) {
        let config = self.config.load();
        let spec = config
            .service(&state.service)
            .and_then(|s| s.rollout.as_ref());
        let ab = spec.is_some_and(|r| r.strategy == sluice_model::Strategy::Ab);
        // Shadow, or blue-green with `mirror`.
        let mirrors = spec.is_some_and(|r| r.is_mirroring());
        let in_progress = state.rollout.as_ref().is_some_and(|r| !r.phase.is_final());
        let rolling_back = state
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase == Phase::RollingBack);
        let mut routing = ServiceRouting {
            stable: state.stable.clone(),
            canary: state.canary.clone(),
            canary_weight: state.canary_weight,
            match_active: ab && in_progress,
            cohort: cohort_in_force(state),
            mirror_active: mirrors && in_progress && !rolling_back,
            unavailable: None,
        };
        crate::health::apply_replace_step(&mut routing, state, spec);
        self.routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(state.service.clone(), routing);
    }
}

/// The tenant cohort a rollout in progress routes to the canary: its last
/// cohort step reached so far (pauses and approvals keep it).
fn cohort_in_force(state: &ServiceState) -> Option<TenantCohort> {
    let rollout = state.rollout.as_ref().filter(|r| !r.phase.is_final())?;
    let header = rollout.tenant_header.clone()?;
    let reached = rollout.step_index.min(rollout.plan.len().saturating_sub(1));
    rollout.plan[..=reached]
        .iter()
        .rev()
        .find_map(|step| match step {
            sluice_model::Step::Cohort(cohort) => Some(TenantCohort {
                header: header.clone(),
                cohort: cohort.clone(),
            }),
            _ => None,
        })
}

fn prometheus_client(config: &Config) -> Result<Option<Prometheus>, ControlError> {
    match &config.providers.prometheus {
        Some(provider) => Prometheus::new(provider)
            .map(Some)
            .map_err(|e| ControlError::Provider(format!("providers.prometheus: {e}"))),
        None => Ok(None),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A run that a failing `rollout` webhook (a load or acceptance test) fails.
fn with_failed_hook(
    mut run: sluice_analysis::AnalysisRun,
    answer: String,
) -> sluice_analysis::AnalysisRun {
    run.checks.push(sluice_analysis::CheckResult {
        name: "webhook".into(),
        verdict: sluice_analysis::Verdict::Fail,
        value: None,
        stable_value: None,
        bound: None,
        bound_expr: String::new(),
        unit: String::new(),
        reason: answer.clone(),
    });
    run.verdict = sluice_analysis::Verdict::Fail;
    run.reason = answer;
    run
}

/// What the controller runs: the config's services, then one pseudo-service
/// per flag release plan, named `flag:KEY`, whose "pools" are the query labels
/// of the two code paths and whose weight is the flag's percentage.
fn controlled(config: &Config) -> Vec<Service> {
    let mut all = config.services.clone();
    for (key, release) in &config.flags.release_plans {
        let mut plan = release.plan.clone();
        // No proxy traffic to count: the Prometheus checks decide.
        plan.min_requests = 0;
        all.push(Service {
            name: release_plan_name(key),
            route: Default::default(),
            versions: Versions {
                stable: Version {
                    endpoints: vec![release.labels.stable.clone()],
                },
                canary: Some(Version {
                    endpoints: vec![release.labels.canary.clone()],
                }),
            },
            balance: Default::default(),
            routing: Default::default(),
            rollout: Some(plan),
            breaker: None,
            upstream_tls: None,
        });
    }
    all
}

/// The flag key and plan of a `flag:KEY` pseudo-service.
fn release_plan(config: &Config, name: &str) -> Option<(String, ReleasePlan)> {
    let key = name.strip_prefix("flag:")?;
    let plan = config.flags.release_plans.get(key)?;
    Some((key.to_string(), plan.clone()))
}

/// The percentage a release plan's state means for its flag: 100 once the
/// new code path was promoted (it became "stable"), else the canary weight.
fn flag_percentage(state: &ServiceState, release: &ReleasePlan) -> f64 {
    if state.stable.first() == Some(&release.labels.canary) {
        100.0
    } else {
        state.canary_weight.percent()
    }
}

/// The state of a service sluice has never seen: the config's stable pool, no canary traffic.
fn initial_state(service: &Service) -> ServiceState {
    let mut state = ServiceState {
        service: service.name.clone(),
        stable: service.versions.stable.endpoints.clone(),
        canary: None,
        canary_weight: Weight::ZERO,
        rollout: None,
        revision: 1,
        config_stable: service.versions.stable.endpoints.clone(),
        revisions: Vec::new(),
        warm: None,
    };
    state.push_revision(
        &service.versions.stable.endpoints,
        Timestamp::now_system(),
        "config".into(),
    );
    state
}

/// A digest of a service's config, recorded with each revision.
fn config_digest(service: &Service) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(service)
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Runs blocking store I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ControlError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ControlError::Store),
        Err(_) => Err(ControlError::ShuttingDown),
    }
}

/// The task that owns one service's state.
struct ServiceTask {
    spec: Service,
    shared: Arc<Shared>,
    state: ServiceState,
    state_tx: watch::Sender<ServiceState>,
    /// Cumulative counters at the start of the current analysis window.
    baseline: Window,
    /// The revision the store holds (0: nothing stored yet).
    stored_revision: u64,
    /// For a flag's release plan: its key and plan.
    release: Option<(String, ReleasePlan)>,
    /// A rollout waiting for its `confirm_rollout` webhooks: when to ask again.
    retry_start_at: Option<Timestamp>,
    /// A gate webhook said no: no step before this time.
    hold_until: Option<Timestamp>,
    /// The health checks of a rolling or recreate rollout's new pool.
    probes: Option<Probes>,
    /// Where the probes ask for a rollback.
    rejections: Option<Rejections>,
}

// === impl ServiceTask ===

impl ServiceTask {
    fn new(
        spec: Service,
        shared: Arc<Shared>,
        state_tx: watch::Sender<ServiceState>,
        stored_revision: u64,
    ) -> ServiceTask {
        let state = state_tx.borrow().clone();
        shared.set_routing(&state);
        let release = release_plan(&shared.config.load(), &spec.name);
        let mut task = ServiceTask {
            spec,
            shared,
            state,
            state_tx,
            baseline: Window::default(),
            stored_revision,
            release,
            retry_start_at: None,
            hold_until: None,
            probes: None,
            rejections: None,
        };
        task.baseline = task.counters();
        task
    }

    async fn run(mut self, mut requests: mpsc::Receiver<(Request, Reply)>) {
        loop {
            if !self.shared.leadership.deciding() {
                // A follower keeps no timers: `Lead` wakes it when elected.
                match requests.recv().await {
                    Some((request, reply)) => {
                        let result = self.handle(request).await.map(|()| self.state.clone());
                        let _ = reply.send(result);
                        continue;
                    }
                    None => return,
                }
            }
            let hold = self.hold_until;
            let wake = self
                .state
                .rollout
                .as_ref()
                .filter(|r| !r.phase.is_final())
                .and_then(|r| r.next_wakeup())
                .map(|at| hold.map_or(at, |h| h.max(at)));
            let wake = [
                wake,
                self.retry_start_at,
                self.state.warm.as_ref().map(|w| w.until),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = match wake {
                Some(at) => {
                    let wait = at.saturating_since(Timestamp::now_system());
                    tokio::time::sleep(wait)
                }
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                request = requests.recv() => match request {
                    Some((request, reply)) => {
                        let result = self.handle(request).await.map(|()| self.state.clone());
                        let _ = reply.send(result);
                    }
                    None => return,
                },
                _ = sleep, if wake.is_some() => {
                    let retry_due = self
                        .retry_start_at
                        .is_some_and(|at| Timestamp::now_system() >= at);
                    let release = sluice_rollout::release_warm(&self.state, Timestamp::now_system());
                    let result = if let Some((next, actions)) = release {
                        self.commit(next, actions).await
                    } else if retry_due {
                        self.retry_start_at = None;
                        let spec = self.spec.clone();
                        self.reconcile(&spec).await
                    } else {
                        self.on_timer().await
                    };
                    if let Err(e) = result {
                        tracing::error!(service = %self.spec.name, "controller: {e}");
                        // The state was not stored, so nothing was acted on; retry soon.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, request: Request) -> Result<(), ControlError> {
        let now = Timestamp::now_system();
        let deciding = self.shared.leadership.deciding();
        match request {
            Request::Follow(state) => {
                if !deciding || state.revision > self.stored_revision {
                    self.follow(state);
                }
                return Ok(());
            }
            Request::Lead => {
                self.reload().await;
                if self.stored_revision == 0 {
                    self.commit(initial_state(&self.spec), Vec::new()).await?;
                }
                let spec = self.spec.clone();
                self.baseline = self.counters();
                return self.reconcile(&spec).await;
            }
            Request::Reconfigure(config) if !deciding => {
                if let Some(spec) = controlled(&config)
                    .into_iter()
                    .find(|s| s.name == self.spec.name)
                {
                    self.release = release_plan(&config, &self.spec.name);
                    self.spec = spec;
                }
                return Ok(());
            }
            _ if !deciding => return Err(self.not_leader()),
            _ => {}
        }
        match request {
            Request::Follow(_) | Request::Lead => Ok(()),
            Request::Event(event) => {
                let rollout =
                    self.state
                        .rollout
                        .as_ref()
                        .ok_or_else(|| ControlError::NoRollout {
                            service: self.spec.name.clone(),
                        })?;
                if rollout.phase.is_final() {
                    return Err(ControlError::Ended {
                        service: self.spec.name.clone(),
                        phase: rollout.phase,
                    });
                }
                let (next, actions) = sluice_rollout::step(&self.state, event, now);
                self.commit(next, actions).await
            }
            Request::Undo { to } => {
                let (next, actions) = sluice_rollout::undo(&self.state, to, now)?;
                self.commit(next, actions).await
            }
            Request::Start { canary } => {
                let canary = match canary {
                    Some(endpoints) => endpoints,
                    None => self
                        .spec
                        .versions
                        .canary
                        .as_ref()
                        .map(|v| v.endpoints.clone())
                        .ok_or_else(|| ControlError::NoCanary(self.spec.name.clone()))?,
                };
                self.start(canary, now).await
            }
            Request::Reconfigure(config) => {
                let spec = controlled(&config)
                    .into_iter()
                    .find(|s| s.name == self.spec.name)
                    .ok_or_else(|| ControlError::UnknownService(self.spec.name.clone()))?;
                self.release = release_plan(&config, &self.spec.name);
                self.spec = spec.clone();
                self.reconcile(&spec).await
            }
        }
    }

    async fn start(&mut self, canary: Vec<Endpoint>, now: Timestamp) -> Result<(), ControlError> {
        let spec = self
            .spec
            .rollout
            .clone()
            .ok_or_else(|| ControlError::NoPlan(self.spec.name.clone()))?;
        if canary.is_empty() {
            return Err(ControlError::NoCanary(self.spec.name.clone()));
        }
        // A release plan's "pools" are query labels, not endpoints.
        if self.release.is_none() {
            for endpoint in &canary {
                sluice_model::check_endpoint(endpoint).map_err(|why| {
                    ControlError::InvalidEndpoint(format!("canary endpoint: {why}"))
                })?;
            }
        }
        if let Err(no) = self
            .shared
            .hooks
            .ask(&spec.webhooks, HookType::ConfirmRollout, &self.state)
            .await
        {
            tracing::info!(service = %self.spec.name, "rollout waiting: {no}");
            self.retry_start_at = Some(now + spec.interval);
            return Err(ControlError::Hook(no));
        }
        self.retry_start_at = None;
        let (next, mut actions) = sluice_rollout::start(&self.state, &spec, canary, now);
        // Smoke tests before any traffic: a failure ends the rollout with the answer.
        let next = match self
            .shared
            .hooks
            .ask(&spec.webhooks, HookType::PreRollout, &next)
            .await
        {
            Ok(()) => next,
            Err(no) => {
                let (mut rejected, more) =
                    sluice_rollout::step(&next, Event::Reject { reason: no }, now);
                // One stored transition: started and rolled back together.
                rejected.revision = next.revision;
                actions.extend(more);
                rejected
            }
        };
        self.commit(next, actions).await
    }

    /// Brings the state in line with the config: a new canary (trigger `auto`) starts a rollout.
    async fn reconcile(&mut self, spec: &Service) -> Result<(), ControlError> {
        self.shared.set_routing(&self.state);
        self.sync_probes();
        self.sync_flag().await;
        let config_stable = &spec.versions.stable.endpoints;
        if *config_stable != self.state.config_stable {
            tracing::info!(service = %spec.name, stable = ?config_stable, "the config names a new stable pool: serving it");
            let mut next = self.state.clone();
            next.stable = config_stable.clone();
            next.config_stable = config_stable.clone();
            next.push_revision(config_stable, Timestamp::now_system(), "config".into());
            next.revision += 1;
            self.commit(next, Vec::new()).await?;
        }
        let Some(plan) = &spec.rollout else {
            return Ok(());
        };
        let Some(canary) = &spec.versions.canary else {
            return Ok(());
        };
        if plan.trigger == Trigger::Manual || canary.endpoints == self.state.stable {
            return Ok(());
        }
        let seen = self
            .state
            .rollout
            .as_ref()
            .is_some_and(|r| r.canary == canary.endpoints);
        if !seen {
            tracing::info!(service = %spec.name, canary = ?canary.endpoints, "new canary in the config: starting a rollout");
            match self
                .start(canary.endpoints.clone(), Timestamp::now_system())
                .await
            {
                // Asked again at `retry_start_at`.
                Err(ControlError::Hook(_)) => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn webhooks(&self) -> Vec<WebhookSpec> {
        self.spec
            .rollout
            .as_ref()
            .map(|r| r.webhooks.clone())
            .unwrap_or_default()
    }

    async fn on_timer(&mut self) -> Result<(), ControlError> {
        let now = Timestamp::now_system();
        if self.hold_until.is_some_and(|until| now < until) {
            return Ok(());
        }
        self.hold_until = None;
        if let Some(wait) = self.admission_wait(now) {
            self.hold_until = Some(now + wait);
            return Ok(());
        }
        let Some(rollout) = &self.state.rollout else {
            return Ok(());
        };
        let webhooks = self.webhooks();
        let hooks = self.shared.hooks.clone();
        if rollout.analysis_due(now) {
            if let Some(reason) = hooks.rollback_requested(&webhooks, &self.state).await {
                let (next, actions) =
                    sluice_rollout::step(&self.state, Event::Reject { reason }, now);
                return self.commit(next, actions).await;
            }
        }
        let Some(rollout) = &self.state.rollout else {
            return Ok(());
        };
        let event = if rollout.analysis_due(now) {
            let hook_failure = hooks
                .ask(&webhooks, HookType::Rollout, &self.state)
                .await
                .err();
            let current = self.counters();
            let window = Window {
                stable: current.stable.since(&self.baseline.stable),
                canary: current.canary.since(&self.baseline.canary),
            };
            let provided = self.fetch(&rollout.checks, rollout.interval).await;
            let inputs = Inputs {
                window: &window,
                provided: &provided,
                memory: &rollout.check_memory,
                now,
            };
            let run = analyse_with(&rollout.checks, rollout.min_requests, &inputs);
            let run = match sequential_config(&rollout.sequential) {
                Ok(config) => decide(
                    run,
                    rollout.judge,
                    &config,
                    &rollout.sequential_evidence,
                    &window,
                ),
                // Validated with the config; a stored rollout from elsewhere falls back to the checks.
                Err(e) => {
                    tracing::warn!(service = %self.spec.name, "sequential judge settings: {e}; the checks decide");
                    run
                }
            };
            let counter = match run.verdict {
                sluice_analysis::Verdict::Pass => &self.shared.counters.analysis_pass,
                sluice_analysis::Verdict::Fail => &self.shared.counters.analysis_fail,
                sluice_analysis::Verdict::Inconclusive => {
                    &self.shared.counters.analysis_inconclusive
                }
            };
            let run = match hook_failure {
                Some(no) => with_failed_hook(run, no),
                None => run,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.baseline = current;
            Event::Analysis(run)
        } else {
            Event::Tick
        };
        let (next, actions) = sluice_rollout::step(&self.state, event, now);
        // Gates: asked before a weight increase or a promotion is acted on.
        let gate = if actions.iter().any(|a| matches!(a, Action::PromoteCanary)) {
            Some(HookType::ConfirmPromotion)
        } else if actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight(w) if *w > self.state.canary_weight))
        {
            Some(HookType::ConfirmTrafficIncrease)
        } else {
            None
        };
        if let Some(gate) = gate {
            if let Err(no) = hooks.ask(&webhooks, gate, &self.state).await {
                let interval = self
                    .state
                    .rollout
                    .as_ref()
                    .map_or(Duration::from_secs(60), |r| r.interval);
                tracing::info!(service = %self.spec.name, "holding: {no}");
                self.hold_until = Some(now + interval);
                return Ok(());
            }
        }
        self.commit(next, actions).await
    }

    /// Queries the provider of every non-builtin check: the canary's value,
    /// and stable's when a bound is relative. Errors are kept as text: the
    /// judge makes them inconclusive (a query error is not a regression).
    async fn fetch(
        &self,
        checks: &[CheckSpec],
        interval: Duration,
    ) -> Vec<Option<Result<Measured, String>>> {
        let client = self.shared.prometheus.load_full();
        let (service, canary_label, stable_label) = match &self.release {
            Some((key, release)) => (
                key.as_str(),
                release.labels.canary.as_str(),
                release.labels.stable.as_str(),
            ),
            None => (self.spec.name.as_str(), "canary", "stable"),
        };
        let queries = checks.iter().map(|check| {
            let client = client.clone();
            async move {
                if check.provider() != Provider::Prometheus {
                    return None;
                }
                let Some(client) = client.as_ref() else {
                    return Some(Err(
                        "no Prometheus is configured (providers.prometheus)".to_string()
                    ));
                };
                let template = check.query.as_deref().unwrap_or_default();
                let one = |version: &str| {
                    let query = prometheus::render(template, service, version, interval);
                    async move { client.query(&query).await.map_err(|e| e.to_string()) }
                };
                let (canary, stable) = if check.needs_stable() {
                    let (canary, stable) = tokio::join!(one(canary_label), one(stable_label));
                    (canary, stable.map(Some))
                } else {
                    (one(canary_label).await, Ok(None))
                };
                Some(canary.and_then(|canary| {
                    stable.map(|stable| Measured {
                        canary: Some(canary),
                        stable,
                    })
                }))
            }
        });
        let mut out = Vec::with_capacity(checks.len());
        for query in queries {
            out.push(query.await);
        }
        out
    }

    /// For a release plan: sets the flag's percentage to what the stored
    /// state means (after a restart too). A gradual rollback walks the
    /// percentage down the plan's steps instead, one per interval.
    async fn act_on_flag(&self, previous: &ServiceState) {
        let Some((key, release)) = &self.release else {
            return;
        };
        let target = flag_percentage(&self.state, release);
        let rolled_back = self
            .state
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase == sluice_rollout::Phase::RolledBack);
        let from = flag_percentage(previous, release);
        if rolled_back && release.rollback == RollbackMode::Gradual && from > target {
            let steps: Vec<f64> = self
                .state
                .rollout
                .as_ref()
                .map(|r| {
                    r.plan
                        .iter()
                        .filter_map(|step| match step {
                            sluice_model::Step::Weight(w) if w.percent() < from => {
                                Some(w.percent())
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let interval = release.plan.interval;
            let flags = self.shared.flags.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut down: Vec<f64> = steps;
                down.sort_by(|a, b| b.total_cmp(a));
                down.dedup();
                down.push(0.0);
                for percentage in down {
                    if let Err(e) = flags
                        .set_percentage(&key, percentage, "release plan (gradual rollback)")
                        .await
                    {
                        tracing::error!(flag = %key, "gradual rollback: {e}");
                        return;
                    }
                    if percentage > 0.0 {
                        tokio::time::sleep(interval).await;
                    }
                }
            });
            return;
        }
        if let Err(e) = self
            .shared
            .flags
            .set_percentage(key, target, &format!("release plan {}", self.spec.name))
            .await
        {
            tracing::error!(flag = %key, "release plan cannot set the percentage: {e}");
        }
    }

    /// Brings the flag in line with the stored state (after a restart).
    async fn sync_flag(&self) {
        let Some((key, release)) = &self.release else {
            return;
        };
        let want = flag_percentage(&self.state, release);
        let has = self.shared.flags.served().set.percentage(key);
        if has != Some(want) && self.state.rollout.is_some() {
            if let Err(e) = self
                .shared
                .flags
                .set_percentage(key, want, &format!("release plan {}", self.spec.name))
                .await
            {
                tracing::error!(flag = %key, "release plan cannot set the percentage: {e}");
            }
        }
    }

    fn counters(&self) -> Window {
        if self.release.is_some() {
            // A flag's code paths are not proxy versions: checks query Prometheus.
            return Window::default();
        }
        if let Some(fleet) = &self.shared.fleet {
            return fleet.window(&self.spec.name);
        }
        let metrics = &self.shared.metrics;
        Window {
            stable: metrics.snapshot(&self.spec.name, Slot::Stable),
            canary: metrics.snapshot(&self.spec.name, Slot::Canary),
        }
    }

    /// Takes a state another node stored: routes by it, tells watchers, acts on nothing.
    fn follow(&mut self, state: ServiceState) {
        self.stored_revision = state.revision;
        self.state = state;
        self.shared.set_routing(&self.state);
        self.shared.publish();
        self.state_tx.send_replace(self.state.clone());
    }

    /// Replaces this node's state with the stored one (if any).
    async fn reload(&mut self) {
        let store = self.shared.store.clone();
        let name = self.spec.name.clone();
        match blocking(move || store.load(&name)).await {
            Ok(Some(state)) => self.follow(state),
            Ok(None) => {}
            Err(e) => tracing::warn!(service = %self.spec.name, "cannot reload the state: {e}"),
        }
    }

    fn not_leader(&self) -> ControlError {
        ControlError::NotLeader {
            leader: self.shared.leadership.leader_hint(),
        }
    }

    /// Stores the transition, then acts on it (routing), then tells watchers.
    async fn commit(
        &mut self,
        mut next: ServiceState,
        actions: Vec<Action>,
    ) -> Result<(), ControlError> {
        // Checked last thing before the write: a leader whose lease ran out writes nothing.
        if !self.shared.leadership.deciding() {
            return Err(self.not_leader());
        }
        if next.revisions.iter().any(|r| r.config_digest.is_empty()) {
            let digest = config_digest(&self.spec);
            for revision in next
                .revisions
                .iter_mut()
                .filter(|r| r.config_digest.is_empty())
            {
                revision.config_digest = digest.clone();
            }
        }
        if next == self.state && actions.is_empty() && next.revision == self.stored_revision {
            return Ok(());
        }
        let decisions: Vec<Decision> = actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Record(d) => Some(d),
                _ => None,
            })
            .collect();
        let store = self.shared.store.clone();
        let expected = self.stored_revision;
        let to_store = next.clone();
        let to_log = decisions.clone();
        match blocking(move || store.commit(&to_store, expected, &to_log)).await {
            Ok(()) => {}
            Err(ControlError::Store(e)) if e.is_conflict() => {
                // Another writer (a leader this node did not know of yet) got
                // there first: nothing was written; continue from its state.
                self.reload().await;
                return Err(ControlError::Store(e));
            }
            Err(e) => return Err(e),
        }
        self.stored_revision = next.revision;
        decisions.iter().for_each(crate::decision_log::log);
        self.shared
            .counters
            .decisions
            .fetch_add(decisions.len() as u64, Ordering::Relaxed);
        let notifier = self.shared.notifier.load();
        let webhooks = self.webhooks();
        let was_final = self
            .state
            .rollout
            .as_ref()
            .map(|r| (r.id, r.phase.is_final()));
        let ended = next
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase.is_final() && was_final != Some((r.id, true)));
        if !decisions.is_empty() {
            self.shared.hooks.tell(&webhooks, HookType::Event, &next);
        }
        if ended {
            self.shared
                .hooks
                .tell(&webhooks, HookType::PostRollout, &next);
        }
        for decision in decisions {
            notifier.notify(Notice::Decision(decision));
        }
        let weight_changed =
            next.canary_weight != self.state.canary_weight || next.stable != self.state.stable;
        let previous = std::mem::replace(&mut self.state, next);
        self.shared.set_routing(&self.state);
        self.shared.publish();
        if weight_changed {
            self.act_on_flag(&previous).await;
        }
        if weight_changed {
            // Analysis judges a step on traffic at that step only.
            self.baseline = self.counters();
        }
        self.state_tx.send_replace(self.state.clone());
        self.sync_probes();
        Ok(())
    }

    /// Probes the new pool while a rolling or recreate rollout with a
    /// health check is in progress; stops when it ends.
    fn sync_probes(&mut self) {
        let check = self
            .spec
            .rollout
            .as_ref()
            .and_then(|r| r.health_check.as_ref());
        let rollout = self
            .state
            .rollout
            .as_ref()
            .filter(|r| r.replace_position().is_some());
        let (Some(rollout), Some(check), Some(rejections)) = (rollout, check, &self.rejections)
        else {
            self.probes = None;
            return;
        };
        let current = self.probes.as_ref().is_some_and(|p| {
            p.rollout_id == rollout.id && p.endpoints == rollout.canary && p.spec == *check
        });
        if !current {
            self.probes = None;
            self.probes = Some(Probes::start(
                &self.spec.name,
                rollout.id,
                &rollout.canary,
                check,
                self.shared.health.clone(),
                rejections.clone(),
            ));
        }
    }

    /// How long to wait before the rollout may move on, when its next move
    /// admits new endpoints that are not healthy yet (then the step's
    /// analysis waits too); None to go on.
    fn admission_wait(&self, now: Timestamp) -> Option<Duration> {
        let probes = self.probes.as_ref()?;
        let waiting = crate::health::next_admitted(&self.state, now);
        let why = probes.first_not_healthy(waiting)?;
        tracing::debug!(service = %self.spec.name, "holding the step: {why}");
        Some(probes.spec.interval)
    }
}
