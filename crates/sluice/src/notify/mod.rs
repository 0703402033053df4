//! Notifications: rollout decisions and breaker transitions posted to Slack
//! incoming webhooks or generic JSON webhooks, routed per service and event.
//! `Notifier::notify` never blocks and never fails: each target has a bounded
//! queue and its own sending task; a full queue drops the notice, a failed
//! send is retried, then logged and counted. Not for: deciding anything —
//! a notice reports a decision already stored.

pub mod payload;
pub(crate) mod sender;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sluice_model::notify::check_url;
use sluice_model::{NotificationConfig, NotifyEvent, Timestamp};
use sluice_rollout::{Decision, DecisionKind, Phase};
use tokio::sync::mpsc;

/// Notices a target may hold unsent before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 256;

/// Something worth telling people about.
// A few per rollout step, moved once into an `Arc`: boxing would only add
// noise where the controller builds them.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A stored rollout decision (only some kinds are notified, see [`decision_event`]).
    Decision(Decision),
    /// A circuit breaker changed state (`from`/`to` as `closed`, `open`, `half_open`, …).
    Breaker {
        breaker: String,
        service: String,
        version: String,
        from: String,
        to: String,
        reason: String,
        at: Timestamp,
    },
}

// === impl Notice ===

impl Notice {
    /// The event this notice is, or None when it is not notified.
    pub fn event(&self) -> Option<NotifyEvent> {
        match self {
            Notice::Decision(decision) => decision_event(decision),
            Notice::Breaker { to, .. } => breaker_event(to),
        }
    }

    /// The service it concerns (a release plan's is `flag:KEY`).
    pub fn service(&self) -> &str {
        match self {
            Notice::Decision(decision) => &decision.service,
            Notice::Breaker { service, .. } => service,
        }
    }
}

/// Which event a decision is. A manual pause or a wait for promotion is
/// `waiting` whatever moved the rollout there; analysis runs that change
/// nothing (held, a failed run under threshold, inconclusive) and operator
/// pauses are not notified.
pub fn decision_event(decision: &Decision) -> Option<NotifyEvent> {
    if matches!(
        decision.to,
        Phase::RolledBack | Phase::Failed | Phase::RollingBack
    ) || matches!(
        decision.kind,
        DecisionKind::RolledBack | DecisionKind::Aborted
    ) {
        return Some(NotifyEvent::RolledBack);
    }
    match decision.kind {
        DecisionKind::Started => Some(NotifyEvent::Started),
        DecisionKind::Promoted => Some(NotifyEvent::Promoted),
        DecisionKind::Advanced | DecisionKind::Resumed
            if matches!(decision.to, Phase::Paused | Phase::WaitingPromotion) =>
        {
            Some(NotifyEvent::Waiting)
        }
        // A resume past a manual pause moves the step; a resume after an
        // operator's pause carries the rollout on: both are news.
        DecisionKind::Advanced | DecisionKind::Resumed => Some(NotifyEvent::Advanced),
        _ if decision.to == Phase::WaitingPromotion && decision.from != decision.to => {
            Some(NotifyEvent::Waiting)
        }
        _ => None,
    }
}

/// `open` and `forced_open` are openings, `closed` a closing; half-open probes are not news.
fn breaker_event(to: &str) -> Option<NotifyEvent> {
    match to {
        "open" | "forced_open" => Some(NotifyEvent::BreakerOpened),
        "closed" => Some(NotifyEvent::BreakerClosed),
        _ => None,
    }
}

/// Sends notices to the configured targets; cheap to share (`Arc`).
pub struct Notifier {
    targets: Vec<Target>,
}

/// One target: its config, the queue its task reads, and its counters.
struct Target {
    config: NotificationConfig,
    queue: Option<mpsc::Sender<Arc<Notice>>>,
    counters: Arc<Counters>,
}

/// Outcomes of one target's notices.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// A copy of one target's counters (for tests; `/metrics` has them all).
#[cfg(test)]
#[allow(dead_code)] // read by tests/notifications.rs, which includes this module
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

// === impl Notifier ===

impl Notifier {
    /// Starts one sending task per target (call inside a tokio runtime;
    /// without one, every notice is dropped and counted). `env` reads
    /// `url_env` variables. A target whose URL cannot be had is kept, and
    /// each of its notices fails with a warning naming the variable.
    pub fn new(configs: &[NotificationConfig], env: &dyn Fn(&str) -> Option<String>) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if runtime.is_none() && !configs.is_empty() {
            tracing::warn!("notifications: no async runtime; every notice will be dropped");
        }
        let client = sender::client();
        let targets = configs
            .iter()
            .map(|config| {
                let counters = Arc::new(Counters::default());
                let queue = runtime.as_ref().map(|runtime| {
                    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                    let task = sender::Task {
                        name: config.name.clone(),
                        kind: config.kind,
                        url: resolve_url(config, env),
                        timeout: config.timeout,
                        retries: config.retries,
                        client: client.clone(),
                        counters: counters.clone(),
                    };
                    runtime.spawn(task.run(rx));
                    tx
                });
                Target {
                    config: config.clone(),
                    queue,
                    counters,
                }
            })
            .collect();
        Arc::new(Notifier { targets })
    }

    /// Queues the notice for every target that wants it; returns at once.
    pub fn notify(&self, notice: Notice) {
        let Some(event) = notice.event() else {
            return;
        };
        let notice = Arc::new(notice);
        for target in &self.targets {
            if !target.config.wants(notice.service(), event) {
                continue;
            }
            let queued = target
                .queue
                .as_ref()
                .is_some_and(|queue| queue.try_send(notice.clone()).is_ok());
            if !queued {
                target.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target_name = %target.config.name,
                    event = %event,
                    service = %notice.service(),
                    "notification dropped: the target's queue is full"
                );
            }
        }
    }

    /// The names of the targets that would receive this notice.
    #[cfg(test)]
    pub fn route(&self, notice: &Notice) -> Vec<&str> {
        let Some(event) = notice.event() else {
            return Vec::new();
        };
        self.targets
            .iter()
            .filter(|t| t.config.wants(notice.service(), event))
            .map(|t| t.config.name.as_str())
            .collect()
    }

    /// The counters of the target of that name.
    #[cfg(test)]
    #[allow(dead_code)] // read by tests/notifications.rs, which includes this module
    pub fn counts(&self, target: &str) -> Option<Counts> {
        let target = self.targets.iter().find(|t| t.config.name == target)?;
        Some(Counts {
            sent: target.counters.sent.load(Ordering::Relaxed),
            failed: target.counters.failed.load(Ordering::Relaxed),
            dropped: target.counters.dropped.load(Ordering::Relaxed),
        })
    }

    /// `sluice_notifications_total{target, result}` in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if self.targets.is_empty() {
            return;
        }
        out.push_str(
            "# HELP sluice_notifications_total Notifications by target and result \
             (sent; failed after every attempt; dropped on a full queue).\n\
             # TYPE sluice_notifications_total counter\n",
        );
        for target in &self.targets {
            let name = escape_label(&target.config.name);
            let counters = &target.counters;
            for (result, counter) in [
                ("sent", &counters.sent),
                ("failed", &counters.failed),
                ("dropped", &counters.dropped),
            ] {
                let _ = writeln!(
                    out,
                    "sluice_notifications_total{{target=\"{name}\",result=\"{result}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// The URL from the file, or from the environment; an error says which is missing.
fn resolve_url(
    config: &NotificationConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match (&config.url, &config.url_env) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(var)) => {
            let url = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            check_url(&url).map_err(|why| format!("environment variable {var}: {why}"))?;
            Ok(url)
        }
        (None, None) => Err("no url or url_env".to_string()),
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
pub(crate) mod tests;
