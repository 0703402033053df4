//! Circuit breakers in the proxy: one per (service, version), optionally one
//! per partition (a tenant header's value), each applying a named policy.
//! The registry outlives routing snapshots (a rebuilt table gets the same
//! breakers, so a weight change never closes an open breaker) and is what
//! the admin API lists, forces and re-policies.
//!
//! The request path asks a breaker through [`VersionBreakers::admit`]: an
//! uncontended mutex around the core state machine (sluice-breaker), no
//! allocation for per-version breakers; a partition breaker is found under
//! a read lock and created once per partition value, up to `max_partitions`
//! (further values share the version's breaker, so a flood of made-up
//! tenant ids cannot grow memory).
//!
//! Not here: the state machine itself (sluice-breaker), policy syntax and
//! validation (sluice-model).

mod cell;
mod limits;
mod policy;
mod render;
mod stale;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Instant;

use http::{HeaderMap, HeaderName};
use serde::Serialize;
use sluice_breaker::{Counters, Mode, State, Transition};
use sluice_model::{BreakersConfig, FieldError, PolicySpec, Service, DEFAULT_POLICY};

pub(crate) use cell::{Admit, BreakerCell, CallGuard};
pub(crate) use limits::{ConnectionSlot, Overflow, RequestSlot, VersionLimits};
pub(crate) use stale::{Capture, StaleCache};

use crate::table::Slot;
pub(crate) use policy::CompiledPolicy;

/// The response header marking an answer served by a breaker's fallback.
pub const X_SLUICE_FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");

/// Transitions kept for `GET /api/v1/breakers/transitions`.
const LOG_CAPACITY: usize = 256;

/// Every breaker of the process, and its policies. Cheap to clone.
#[derive(Clone)]
pub struct Breakers {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    enabled: AtomicBool,
    /// `SLUICE_BREAKERS_ENABLED`, which wins over the config file.
    env_enabled: Mutex<Option<bool>>,
    log: Arc<TransitionLog>,
    /// Partition values beyond `max_partitions`, summed over services.
    partition_overflow: AtomicU64,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// The config section last applied; an unchanged one is not re-applied,
    /// so policies replaced through the API survive weight changes.
    applied: Option<BreakersConfig>,
    policies: BTreeMap<String, Arc<CompiledPolicy>>,
    disabled_policies: BTreeSet<String>,
    disabled_partitions: BTreeSet<String>,
    cells: BTreeMap<String, Arc<BreakerCell>>,
    partitions: BTreeMap<(String, Slot), Arc<Partitions>>,
    stale: BTreeMap<String, Arc<StaleCache>>,
    limits: BTreeMap<(String, Slot), Arc<VersionLimits>>,
}

/// The breakers of one version, as a routing snapshot holds them.
pub(crate) struct VersionBreakers {
    whole: Arc<BreakerCell>,
    partitions: Option<Arc<Partitions>>,
    pub(crate) stale: Option<Arc<StaleCache>>,
    enabled: Arc<Inner>,
}

/// Partition breakers of one version, created on first sight of a value.
pub(crate) struct Partitions {
    header: HeaderName,
    max: usize,
    service: String,
    slot: Slot,
    policy_id: String,
    overrides: BTreeMap<String, String>,
    cells: RwLock<HashMap<String, Arc<BreakerCell>>>,
    registry: Weak<Inner>,
}

/// One breaker as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerStatus {
    /// `service:version` or `service:version:partition`.
    pub id: String,
    pub service: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    pub policy: String,
    pub state: State,
    pub mode: Mode,
    /// Switched off for its partition.
    pub disabled: bool,
    pub failure_rate: Option<f64>,
    pub slow_call_rate: Option<f64>,
    pub window_calls: u32,
    pub consecutive_failures: u32,
    /// While open: milliseconds until trial calls are let through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    pub trips_in_a_row: u32,
    pub counters: Counters,
    pub fallbacks: u64,
}

/// One policy as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStatus {
    pub id: String,
    pub policy: PolicySpec,
    pub disabled: bool,
    /// Breakers following it.
    pub breakers: usize,
}

/// A logged transition.
#[derive(Clone, Debug, Serialize)]
pub struct TransitionRecord {
    /// Wall-clock milliseconds since the Unix epoch.
    pub at: u64,
    pub breaker: String,
    pub service: String,
    pub version: String,
    pub from: State,
    pub to: State,
    pub reason: String,
    /// The breaker was in shadow mode: nothing was rejected.
    pub shadow: bool,
}

/// An operator's action on one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerAction {
    /// Reject everything until closed or reset.
    Open,
    /// Closed with a fresh window.
    Close,
    /// Closed, fresh window, backoff cleared.
    Reset,
}

/// Why an admin request about breakers was refused.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    #[error("no breaker {0:?} (see GET /api/v1/breakers)")]
    UnknownBreaker(String),
    #[error("no policy {0:?}")]
    UnknownPolicy(String),
    #[error("the policy is invalid")]
    Invalid(Vec<FieldError>),
}

/// The last transitions, newest last; each also goes to subscribers.
pub(crate) struct TransitionLog {
    /// The wall clock at the breakers' monotonic epoch, in Unix milliseconds:
    /// a transition's time is this plus its monotonic time, so that the log's
    /// times keep the core's spacing even when it is written late.
    wall_epoch: u64,
    entries: Mutex<VecDeque<TransitionRecord>>,
    announce: tokio::sync::broadcast::Sender<TransitionRecord>,
}

// === impl Breakers ===

impl Breakers {
    pub(crate) fn new() -> Breakers {
        let mut registry = Registry::default();
        registry.policies.insert(
            DEFAULT_POLICY.to_string(),
            compile_known(DEFAULT_POLICY, &PolicySpec::default(), false),
        );
        Breakers {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                enabled: AtomicBool::new(true),
                env_enabled: Mutex::new(None),
                log: Arc::new(TransitionLog {
                    wall_epoch: sluice_model::Timestamp::now_system().millis(),
                    entries: Mutex::new(VecDeque::new()),
                    announce: tokio::sync::broadcast::channel(256).0,
                }),
                partition_overflow: AtomicU64::new(0),
                registry: Mutex::new(registry),
            }),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.registry()
    }

    /// Whether breakers act at all (the global switch).
    pub fn enabled(&self) -> bool {
        self.inner.enabled.load(Relaxed)
    }

    /// The global switch (API); off, every breaker is bypassed.
    pub fn set_enabled(&self, enabled: bool) {
        tracing::warn!(enabled, "circuit breakers switched globally");
        self.inner.enabled.store(enabled, Relaxed);
    }

    /// `SLUICE_BREAKERS_ENABLED`: applied now, and wins over the config file.
    pub fn set_env_override(&self, enabled: Option<bool>) {
        *self
            .inner
            .env_enabled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = enabled;
        if let Some(enabled) = enabled {
            self.inner.enabled.store(enabled, Relaxed);
        }
    }

    /// Takes the config's policies and switch, unless this very section was
    /// applied before (policies replaced through the API then stay).
    pub(crate) fn apply_config(&self, config: &BreakersConfig) {
        let mut registry = self.registry();
        if registry.applied.as_ref() == Some(config) {
            return;
        }
        let mut policies = BTreeMap::new();
        policies.insert(
            DEFAULT_POLICY.to_string(),
            compile_known(DEFAULT_POLICY, &PolicySpec::default(), false),
        );
        for (id, spec) in &config.policies {
            let disabled = registry.disabled_policies.contains(id);
            policies.insert(id.clone(), compile_known(id, spec, disabled));
        }
        registry.policies = policies;
        registry.applied = Some(config.clone());
        let env = *self
            .inner
            .env_enabled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner
            .enabled
            .store(env.unwrap_or(config.enabled), Relaxed);
        registry.repolicy_all();
    }

    /// The breakers, caps and stale cache of one version of `service`, as
    /// a table being built needs them; None when the service has no `breaker`.
    pub(crate) fn version(
        &self,
        service: &Service,
        slot: Slot,
    ) -> (Option<VersionBreakers>, Option<Arc<VersionLimits>>) {
        let mut registry = self.registry();
        let Some(spec) = &service.breaker else {
            registry.forget_service(&service.name);
            return (None, None);
        };
        let limits = registry.limits(&service.name, slot, &spec.limits);
        let id = format!("{}:{}", service.name, slot.label());
        let whole = registry.cell(
            &self.inner,
            &id,
            &service.name,
            slot,
            None,
            spec.policy_id(),
        );
        let partitions = spec.partition_header.as_ref().and_then(|header| {
            let header = HeaderName::from_bytes(header.as_bytes()).ok()?;
            Some(registry.partitions(&self.inner, service, slot, header))
        });
        if partitions.is_none() {
            registry.drop_partitions(&service.name, slot);
        }
        let stale_spec = std::iter::once(spec.policy_id())
            .chain(spec.partitions.values().map(String::as_str))
            .filter_map(|id| registry.policies.get(id))
            .find_map(|p| p.fallback.as_ref().and_then(|f| f.stale.clone()));
        let stale = match stale_spec {
            Some(stale) => Some(
                registry
                    .stale
                    .entry(service.name.clone())
                    .or_insert_with(|| {
                        Arc::new(StaleCache::new(stale.max_entries, stale.max_body_bytes))
                    })
                    .clone(),
            ),
            None => {
                registry.stale.remove(&service.name);
                None
            }
        };
        let breakers = VersionBreakers {
            whole,
            partitions,
            stale,
            enabled: self.inner.clone(),
        };
        (Some(breakers), limits)
    }

    /// Every breaker with its state, in id order.
    pub fn list(&self) -> Vec<BreakerStatus> {
        let cells: Vec<Arc<BreakerCell>> = self.registry().cells.values().cloned().collect();
        cells.iter().map(|cell| render::status(cell)).collect()
    }

    /// One breaker.
    pub fn get(&self, id: &str) -> Result<BreakerStatus, BreakerError> {
        let cell = self.cell_by_id(id)?;
        Ok(render::status(&cell))
    }

    fn cell_by_id(&self, id: &str) -> Result<Arc<BreakerCell>, BreakerError> {
        self.registry()
            .cells
            .get(id)
            .cloned()
            .ok_or_else(|| BreakerError::UnknownBreaker(id.to_string()))
    }

    /// Forces a breaker open or closed, or resets it.
    pub fn act(&self, id: &str, action: BreakerAction) -> Result<BreakerStatus, BreakerError> {
        let cell = self.cell_by_id(id)?;
        cell.operate(|breaker, now| match action {
            BreakerAction::Open => breaker.force_open(now),
            BreakerAction::Close => breaker.force_close(now),
            BreakerAction::Reset => breaker.reset(now),
        });
        Ok(render::status(&cell))
    }

    /// The policies by id.
    pub fn policies(&self) -> Vec<PolicyStatus> {
        let registry = self.registry();
        registry
            .policies
            .values()
            .map(|p| registry.policy_status(p))
            .collect()
    }

    pub fn policy(&self, id: &str) -> Result<PolicyStatus, BreakerError> {
        let registry = self.registry();
        let policy = registry
            .policies
            .get(id)
            .ok_or_else(|| BreakerError::UnknownPolicy(id.to_string()))?;
        Ok(registry.policy_status(policy))
    }

    /// Replaces (or adds) a policy live; an invalid one is refused with its
    /// field paths and the old one keeps working. Until the config file's
    /// `breakers` section changes, the replacement stays in force.
    pub fn put_policy(&self, id: &str, spec: PolicySpec) -> Result<PolicyStatus, BreakerError> {
        if let Err(message) = sluice_model::breaker::check_policy_id(id) {
            return Err(BreakerError::Invalid(vec![FieldError {
                path: "id".into(),
                message,
            }]));
        }
        let mut registry = self.registry();
        let disabled = registry.disabled_policies.contains(id);
        let compiled = CompiledPolicy::compile(id, &spec, disabled, "policy")
            .map_err(BreakerError::Invalid)?;
        let compiled = Arc::new(compiled);
        registry.policies.insert(id.to_string(), compiled.clone());
        registry.repolicy_all();
        tracing::warn!(
            policy = id,
            "circuit-breaker policy replaced through the API"
        );
        Ok(registry.policy_status(&compiled))
    }

    /// The per-policy switch: a disabled policy's breakers admit everything.
    pub fn set_policy_enabled(&self, id: &str, enabled: bool) -> Result<(), BreakerError> {
        let mut registry = self.registry();
        let current = registry
            .policies
            .get(id)
            .cloned()
            .ok_or_else(|| BreakerError::UnknownPolicy(id.to_string()))?;
        if enabled {
            registry.disabled_policies.remove(id);
        } else {
            registry.disabled_policies.insert(id.to_string());
        }
        let recompiled = compile_known(id, &current.spec, !enabled);
        registry.policies.insert(id.to_string(), recompiled);
        registry.repolicy_all();
        tracing::warn!(policy = id, enabled, "circuit-breaker policy switched");
        Ok(())
    }

    /// The per-partition (tenant) switch, for every service.
    pub fn set_partition_enabled(&self, partition: &str, enabled: bool) {
        let mut registry = self.registry();
        if enabled {
            registry.disabled_partitions.remove(partition);
        } else {
            registry.disabled_partitions.insert(partition.to_string());
        }
        for cell in registry.cells.values() {
            if cell.partition.as_deref() == Some(partition) {
                cell.disabled.store(!enabled, Relaxed);
            }
        }
        tracing::warn!(
            partition,
            enabled,
            "circuit breakers switched for a partition"
        );
    }

    /// Partitions whose breakers are switched off.
    pub fn disabled_partitions(&self) -> Vec<String> {
        self.registry()
            .disabled_partitions
            .iter()
            .cloned()
            .collect()
    }

    /// Every transition from now on (for notifications); a slow receiver
    /// misses some (it is told how many) rather than holding anything up.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TransitionRecord> {
        self.inner.log.announce.subscribe()
    }

    /// The newest transitions, oldest first.
    pub fn transitions(&self, limit: usize) -> Vec<TransitionRecord> {
        let entries = self
            .inner
            .log
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let skip = entries.len().saturating_sub(limit);
        entries.iter().skip(skip).cloned().collect()
    }

    /// Transitions into open of all breakers of one version (partitions
    /// included), since start: a rollout check can gate on its growth.
    pub fn trips(&self, service: &str, slot: Slot) -> u64 {
        let cells: Vec<Arc<BreakerCell>> = self
            .registry()
            .cells
            .values()
            .filter(|c| c.service == service && c.slot == slot)
            .cloned()
            .collect();
        cells.iter().map(|c| c.view().snapshot.counters.trips).sum()
    }

    /// Prometheus text for every breaker, appended to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        let (cells, limits): (Vec<Arc<BreakerCell>>, Vec<_>) = {
            let registry = self.registry();
            (
                registry.cells.values().cloned().collect(),
                registry
                    .limits
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        render::prometheus(
            &cells,
            self.enabled(),
            self.inner.partition_overflow.load(Relaxed),
            out,
        );
        render::limits(&limits, out);
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

/// Compiles a policy already validated with its config.
fn compile_known(id: &str, spec: &PolicySpec, disabled: bool) -> Arc<CompiledPolicy> {
    match CompiledPolicy::compile(id, spec, disabled, &format!("breakers.policies.{id}")) {
        Ok(policy) => Arc::new(policy),
        Err(errors) => {
            // Not expected: the config was validated. Fall back to defaults, loudly.
            tracing::error!(
                policy = id,
                ?errors,
                "invalid breaker policy; using the defaults"
            );
            let defaults = CompiledPolicy::compile(id, &PolicySpec::default(), disabled, "")
                .expect("the default policy is valid");
            Arc::new(defaults)
        }
    }
}

// === impl Inner ===

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Registry ===

impl Registry {
    fn policy_or_default(&self, id: &str) -> Arc<CompiledPolicy> {
        self.policies
            .get(id)
            .or_else(|| self.policies.get(DEFAULT_POLICY))
            .cloned()
            .unwrap_or_else(|| compile_known(DEFAULT_POLICY, &PolicySpec::default(), false))
    }

    fn policy_status(&self, policy: &CompiledPolicy) -> PolicyStatus {
        PolicyStatus {
            id: policy.id.clone(),
            policy: policy.spec.clone(),
            disabled: self.disabled_policies.contains(&policy.id),
            breakers: self
                .cells
                .values()
                .filter(|c| {
                    *c.policy_id.lock().unwrap_or_else(PoisonError::into_inner) == policy.id
                })
                .count(),
        }
    }

    /// Points every breaker at the current version of its policy.
    fn repolicy_all(&self) {
        for cell in self.cells.values() {
            let id = cell
                .policy_id
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            cell.set_policy(&self.policy_or_default(&id));
        }
    }

    fn cell(
        &mut self,
        inner: &Arc<Inner>,
        id: &str,
        service: &str,
        slot: Slot,
        partition: Option<&str>,
        policy_id: &str,
    ) -> Arc<BreakerCell> {
        let policy = self.policy_or_default(policy_id);
        if let Some(cell) = self.cells.get(id) {
            cell.set_policy(&policy);
            return cell.clone();
        }
        let cell = Arc::new(BreakerCell::new(
            id.to_string(),
            service,
            slot,
            partition.map(str::to_string),
            policy,
            inner.epoch,
            inner.log.clone(),
        ));
        if partition.is_some_and(|p| self.disabled_partitions.contains(p)) {
            cell.disabled.store(true, Relaxed);
        }
        self.cells.insert(id.to_string(), cell.clone());
        cell
    }

    fn partitions(
        &mut self,
        inner: &Arc<Inner>,
        service: &Service,
        slot: Slot,
        header: HeaderName,
    ) -> Arc<Partitions> {
        let Some(spec) = &service.breaker else {
            unreachable!("partitions are asked for services with a breaker");
        };
        let key = (service.name.clone(), slot);
        if let Some(existing) = self.partitions.get(&key) {
            if existing.header == header
                && existing.max == spec.max_partitions
                && existing.policy_id == spec.policy_id()
                && existing.overrides == spec.partitions
            {
                return existing.clone();
            }
        }
        self.drop_partitions(&service.name, slot);
        let partitions = Arc::new(Partitions {
            header,
            max: spec.max_partitions,
            service: service.name.clone(),
            slot,
            policy_id: spec.policy_id().to_string(),
            overrides: spec.partitions.clone(),
            cells: RwLock::new(HashMap::new()),
            registry: Arc::downgrade(inner),
        });
        self.partitions.insert(key, partitions.clone());
        partitions
    }

    /// Forgets the partition breakers of one version.
    fn drop_partitions(&mut self, service: &str, slot: Slot) {
        if self
            .partitions
            .remove(&(service.to_string(), slot))
            .is_some()
        {
            self.cells
                .retain(|_, c| !(c.service == service && c.slot == slot && c.partition.is_some()));
        }
    }

    fn forget_service(&mut self, service: &str) {
        self.cells.retain(|_, c| c.service != service);
        self.partitions.retain(|(s, _), _| s != service);
        self.stale.remove(service);
        self.limits.retain(|(s, _), _| s != service);
    }

    fn limits(
        &mut self,
        service: &str,
        slot: Slot,
        spec: &sluice_model::Limits,
    ) -> Option<Arc<VersionLimits>> {
        let key = (service.to_string(), slot);
        if spec.max_requests.is_none() && spec.max_connections.is_none() {
            self.limits.remove(&key);
            return None;
        }
        if let Some(existing) = self.limits.get(&key) {
            if existing.spec() == spec {
                return Some(existing.clone());
            }
        }
        let limits = Arc::new(VersionLimits::new(spec));
        self.limits.insert(key, limits.clone());
        Some(limits)
    }
}

// === impl VersionBreakers ===

impl VersionBreakers {
    /// The breaker deciding this request: its partition's, else the version's.
    /// None when breakers are switched off (globally or for the partition).
    pub(crate) fn admit(&self, headers: &HeaderMap) -> Option<(Admit, Arc<BreakerCell>)> {
        if !self.enabled.enabled.load(Relaxed) {
            return None;
        }
        let partition_cell = self.partitions.as_ref().and_then(|partitions| {
            let value = headers.get(&partitions.header)?.to_str().ok()?;
            partitions.cell(value)
        });
        let cell = partition_cell.unwrap_or_else(|| self.whole.clone());
        let admit = cell.admit()?;
        Some((admit, cell))
    }
}

// === impl Partitions ===

impl Partitions {
    /// Longest partition value given its own breaker.
    const MAX_VALUE_LEN: usize = 128;

    fn cell(&self, value: &str) -> Option<Arc<BreakerCell>> {
        if let Some(cell) = self
            .cells
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(value)
        {
            return Some(cell.clone());
        }
        if value.is_empty() || value.len() > Self::MAX_VALUE_LEN {
            return None;
        }
        let inner = self.registry.upgrade()?;
        let mut registry = inner.registry();
        let mut cells = self.cells.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = cells.get(value) {
            return Some(cell.clone());
        }
        if cells.len() >= self.max {
            inner.partition_overflow.fetch_add(1, Relaxed);
            return None;
        }
        let policy_id = self.overrides.get(value).unwrap_or(&self.policy_id);
        let id = format!("{}:{}:{value}", self.service, self.slot.label());
        let cell = registry.cell(
            &inner,
            &id,
            &self.service,
            self.slot,
            Some(value),
            policy_id,
        );
        cells.insert(value.to_string(), cell.clone());
        Some(cell)
    }
}

// === impl TransitionLog ===

impl TransitionLog {
    fn push(&self, cell: &BreakerCell, transition: &Transition, shadow: bool) {
        let record = TransitionRecord {
            at: self.wall_epoch.saturating_add(transition.at),
            breaker: cell.id.clone(),
            service: cell.service.clone(),
            version: cell.slot.label().to_string(),
            from: transition.from,
            to: transition.to,
            reason: transition.reason.to_string(),
            shadow,
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == LOG_CAPACITY {
            entries.pop_front();
        }
        let _ = self.announce.send(record.clone());
        entries.push_back(record);
    }
}
