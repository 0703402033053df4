//! The flag server: the flag set in force (swapped atomically, read without
//! a lock), the sources it was built from, changes through the API
//! (validated, stored before they take effect, recorded with who, when,
//! before and after), file watching, the change stream, and evaluation
//! counts. OFREP's HTTP side is `ofrep`; the pure evaluation is sluice-flags.

mod counters;
pub mod ofrep;
mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use sluice_flags::{Context, FlagSet, FlagSpec, FlagsSpec};
use sluice_model::{FieldError, FlagsConfig, Timestamp};
use sluice_store::{FlagChange, Store};
use tokio::sync::{broadcast, watch, Mutex};

pub use counters::EvaluationCounters;
use sources::{ApiFlags, Built, Inputs};

/// What evaluations read: one immutable snapshot.
pub struct Served {
    pub set: FlagSet,
    pub killed: BTreeSet<String>,
    pub combined: FlagsSpec,
    pub origin: BTreeMap<String, String>,
}

/// A change, as the change stream announces it.
#[derive(Clone, Debug, Serialize)]
pub struct FlagEvent {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The set's fingerprint after the change.
    pub fingerprint: String,
}

/// Why a flag change was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("no flag {0:?}")]
    NotFound(String),
    #[error("the flags are invalid; the previous ones keep serving")]
    Invalid(Vec<FieldError>),
    #[error("the store failed: {0}")]
    Store(String),
}

pub struct FlagServer {
    served: ArcSwap<Served>,
    inputs: Mutex<Inputs>,
    store: Arc<dyn Store>,
    events: broadcast::Sender<FlagEvent>,
    pub counters: EvaluationCounters,
    read_tokens: ArcSwap<Vec<String>>,
    /// Files named on the command line (`--flags`), kept across config reloads.
    extra_files: Vec<PathBuf>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl FlagServer {
    /// Loads every source; an invalid one stops the start with its paths.
    pub fn start(
        config: &FlagsConfig,
        extra_files: &[PathBuf],
        store: Arc<dyn Store>,
    ) -> Result<Arc<FlagServer>, FlagError> {
        let mut inputs = Inputs {
            definitions: config.definitions.clone(),
            ..Inputs::default()
        };
        for path in config.files.iter().chain(extra_files) {
            inputs
                .files
                .push(sources::read_file(path).map_err(FlagError::Invalid)?);
        }
        if let Some(document) = store
            .load_flags()
            .map_err(|e| FlagError::Store(e.to_string()))?
        {
            inputs.api = serde_json::from_value(document.document).map_err(|e| {
                FlagError::Store(format!("the stored API flags are unreadable: {e}"))
            })?;
            inputs.api_revision = document.revision;
        }
        let built = sources::build(&inputs, &env).map_err(FlagError::Invalid)?;
        let served = served(built, &inputs.api);
        Ok(Arc::new(FlagServer {
            served: ArcSwap::from_pointee(served),
            inputs: Mutex::new(inputs),
            store,
            events: broadcast::channel(256).0,
            counters: EvaluationCounters::default(),
            read_tokens: ArcSwap::from_pointee(config.read_tokens.clone()),
            extra_files: extra_files.to_vec(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }))
    }

    /// The snapshot evaluations read.
    pub fn served(&self) -> arc_swap::Guard<Arc<Served>> {
        self.served.load()
    }

    pub fn read_tokens(&self) -> Arc<Vec<String>> {
        self.read_tokens.load_full()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FlagEvent> {
        self.events.subscribe()
    }

    /// Evaluates one flag for a context, counting it.
    pub fn evaluate_counted<'a>(
        &self,
        served: &'a Served,
        key: &'a str,
        ctx: &Context,
    ) -> sluice_flags::Evaluation<'a> {
        let evaluation = served.set.evaluate(key, ctx, served.killed.contains(key));
        self.counters.count(&evaluation);
        evaluation
    }

    /// The config's flags section changed (reload): rebuild from it; on an
    /// error nothing changes.
    pub async fn reconfigure(&self, config: &FlagsConfig) -> Result<(), FlagError> {
        let extra_files = &self.extra_files;
        let mut inputs = self.inputs.lock().await;
        let mut next = inputs.clone();
        next.definitions = config.definitions.clone();
        next.files = Vec::new();
        for path in config.files.iter().chain(extra_files) {
            next.files
                .push(sources::read_file(path).map_err(FlagError::Invalid)?);
        }
        let built = sources::build(&next, &env).map_err(FlagError::Invalid)?;
        self.read_tokens.store(Arc::new(config.read_tokens.clone()));
        self.take(&mut inputs, next, built, "config reload", "reload")
            .await;
        Ok(())
    }

    /// Re-reads the files whose stamp changed; a bad file is logged and
    /// counted, and the previous flags keep serving.
    pub async fn poll_files(&self) {
        let mut inputs = self.inputs.lock().await;
        let changed: Vec<usize> = inputs
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| sources::stamp(&f.path) != f.stamp)
            .map(|(i, _)| i)
            .collect();
        if changed.is_empty() {
            return;
        }
        let mut next = inputs.clone();
        let mut errors = Vec::new();
        for &i in &changed {
            match sources::read_file(&inputs.files[i].path) {
                Ok(file) => next.files[i] = file,
                Err(e) => {
                    // Remember the stamp so the same bad file is reported once.
                    inputs.files[i].stamp = sources::stamp(&inputs.files[i].path);
                    errors.extend(e);
                }
            }
        }
        let names: Vec<String> = changed
            .iter()
            .map(|&i| inputs.files[i].path.display().to_string())
            .collect();
        let built = if errors.is_empty() {
            sources::build(&next, &env)
        } else {
            Err(errors)
        };
        match built {
            Ok(built) => {
                self.reloads_ok.fetch_add(1, Relaxed);
                tracing::info!(files = ?names, "flag files reloaded");
                let actor = format!("file {}", names.join(", "));
                self.take(&mut inputs, next, built, &actor, "reload").await;
            }
            Err(errors) => {
                for &i in &changed {
                    inputs.files[i].stamp = sources::stamp(&inputs.files[i].path);
                }
                self.reloads_failed.fetch_add(1, Relaxed);
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                tracing::error!(files = ?names, ?errors, "flag file change refused; the previous flags keep serving");
            }
        }
    }

    /// Polls the files every `interval` until `stop` says so.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.poll_files().await,
                changed = stop.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Sets (adds or replaces) a flag through the API.
    pub async fn put(
        &self,
        key: &str,
        flag: FlagSpec,
        actor: &str,
    ) -> Result<FlagEvent, FlagError> {
        self.change_api(actor, "set", key, |api| {
            api.flags.insert(key.to_string(), flag);
            Ok(())
        })
        .await
    }

    /// Removes the API's definition of a flag (a file's or the config's comes back).
    pub async fn delete(&self, key: &str, actor: &str) -> Result<FlagEvent, FlagError> {
        self.change_api(actor, "delete", key, |api| {
            api.flags
                .remove(key)
                .map(drop)
                .ok_or_else(|| FlagError::NotFound(key.to_string()))
        })
        .await
    }

    /// The kill switch of one flag: off everywhere at once (DISABLED), or back.
    pub async fn kill(&self, key: &str, killed: bool, actor: &str) -> Result<FlagEvent, FlagError> {
        if self.served().set.get(key).is_none() {
            return Err(FlagError::NotFound(key.to_string()));
        }
        let action = if killed { "kill" } else { "revive" };
        self.change_api(actor, action, key, |api| {
            if killed {
                api.killed.insert(key.to_string());
            } else {
                api.killed.remove(key);
            }
            Ok(())
        })
        .await
    }

    /// Sets a boolean flag's percentage (a release plan's step, or an operator).
    pub async fn set_percentage(
        &self,
        key: &str,
        percentage: f64,
        actor: &str,
    ) -> Result<FlagEvent, FlagError> {
        let current = self
            .served()
            .combined
            .flags
            .get(key)
            .cloned()
            .ok_or_else(|| FlagError::NotFound(key.to_string()))?;
        self.change_api(actor, "percentage", key, |api| {
            let mut flag = current;
            flag.percentage = Some(percentage);
            api.flags.insert(key.to_string(), flag);
            Ok(())
        })
        .await
    }

    /// One API change: applied to a copy, validated, stored with its change
    /// record, then served and announced.
    async fn change_api(
        &self,
        actor: &str,
        action: &str,
        key: &str,
        change: impl FnOnce(&mut ApiFlags) -> Result<(), FlagError>,
    ) -> Result<FlagEvent, FlagError> {
        let mut inputs = self.inputs.lock().await;
        let mut next = inputs.clone();
        change(&mut next.api)?;
        let built = sources::build(&next, &env).map_err(FlagError::Invalid)?;
        let before = self.served();
        let record = FlagChange {
            seq: 0,
            at: Timestamp::now_system(),
            actor: actor.to_string(),
            action: action.to_string(),
            key: Some(key.to_string()),
            before: flag_view(&before.combined, &inputs.api.killed, key),
            after: flag_view(&built.combined, &next.api.killed, key),
        };
        let document =
            serde_json::to_value(&next.api).map_err(|e| FlagError::Store(e.to_string()))?;
        let store = self.store.clone();
        let expected = inputs.api_revision;
        let record_for_store = record.clone();
        let seq = tokio::task::spawn_blocking(move || {
            store.commit_flags(&document, expected, &record_for_store)
        })
        .await
        .map_err(|e| FlagError::Store(e.to_string()))?
        .map_err(|e| FlagError::Store(e.to_string()))?;
        next.api_revision = expected + 1;
        let event = self.serve(&mut inputs, next, built, FlagChange { seq, ..record });
        Ok(event)
    }

    /// Takes a non-API change (reload): serve it and record each changed flag.
    async fn take(
        &self,
        inputs: &mut Inputs,
        next: Inputs,
        built: Built,
        actor: &str,
        action: &str,
    ) {
        let changes = sources::diff(&self.served().combined, &built.combined);
        let mut last = None;
        for (key, before, after) in changes {
            let record = FlagChange {
                seq: 0,
                at: Timestamp::now_system(),
                actor: actor.to_string(),
                action: action.to_string(),
                key: Some(key),
                before,
                after,
            };
            let store = self.store.clone();
            let for_store = record.clone();
            match tokio::task::spawn_blocking(move || store.append_flag_change(&for_store)).await {
                Ok(Ok(seq)) => last = Some(FlagChange { seq, ..record }),
                Ok(Err(e)) => tracing::error!("could not record a flag change: {e}"),
                Err(e) => tracing::error!("could not record a flag change: {e}"),
            }
        }
        let record = last.unwrap_or(FlagChange {
            seq: 0,
            at: Timestamp::now_system(),
            actor: actor.to_string(),
            action: action.to_string(),
            key: None,
            before: None,
            after: None,
        });
        self.serve(inputs, next, built, record);
    }

    fn serve(
        &self,
        inputs: &mut Inputs,
        next: Inputs,
        built: Built,
        record: FlagChange,
    ) -> FlagEvent {
        let served = served(built, &next.api);
        let event = FlagEvent {
            seq: record.seq,
            at: record.at,
            actor: record.actor,
            action: record.action,
            key: record.key,
            fingerprint: served.set.fingerprint().to_string(),
        };
        self.served.store(Arc::new(served));
        *inputs = next;
        let _ = self.events.send(event.clone());
        event
    }

    /// Cluster mode: serves the API flags another node stored, when the
    /// store holds a newer document than this node serves. Nothing is
    /// written (the writer recorded the change). True when something changed.
    pub async fn sync_from_store(&self) -> Result<bool, FlagError> {
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.load_flags())
            .await
            .map_err(|e| FlagError::Store(e.to_string()))?
            .map_err(|e| FlagError::Store(e.to_string()))?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let mut inputs = self.inputs.lock().await;
        if stored.revision <= inputs.api_revision {
            return Ok(false);
        }
        let mut next = inputs.clone();
        next.api = serde_json::from_value(stored.document)
            .map_err(|e| FlagError::Store(format!("the stored API flags are unreadable: {e}")))?;
        next.api_revision = stored.revision;
        let built = sources::build(&next, &env).map_err(FlagError::Invalid)?;
        let record = FlagChange {
            seq: 0,
            at: Timestamp::now_system(),
            actor: "cluster".to_string(),
            action: "sync".to_string(),
            key: None,
            before: None,
            after: None,
        };
        self.serve(&mut inputs, next, built, record);
        Ok(true)
    }

    /// The change log, newest last.
    pub async fn changes(
        &self,
        key: Option<String>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, FlagError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flag_changes(key.as_deref(), limit))
            .await
            .map_err(|e| FlagError::Store(e.to_string()))?
            .map_err(|e| FlagError::Store(e.to_string()))
    }
}

fn served(built: Built, api: &ApiFlags) -> Served {
    Served {
        set: built.set,
        killed: api.killed.clone(),
        combined: built.combined,
        origin: built.origin,
    }
}

/// A flag's definition and kill state, for change records.
fn flag_view(spec: &FlagsSpec, killed: &BTreeSet<String>, key: &str) -> Option<serde_json::Value> {
    let flag = spec.flags.get(key)?;
    let mut value = serde_json::to_value(flag).ok()?;
    if killed.contains(key) {
        if let Some(object) = value.as_object_mut() {
            object.insert("killed".into(), serde_json::Value::Bool(true));
        }
    }
    Some(value)
}
