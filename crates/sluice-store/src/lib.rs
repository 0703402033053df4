//! Where sluice keeps what must survive a restart: each service's routing and
//! rollout state (`ServiceState`) and the append-only decision log, and the
//! flag server's document of flags written through the API with the
//! append-only log of every change of flags, and the circuit-breaker
//! policies replaced through the admin API. One trait,
//! `Store`, with an embedded file backend (`FileStore`, on redb) and an
//! in-memory one for tests (`MemoryStore`); an etcd backend for cluster mode
//! implements the same trait and runs the same `suite`.
//!
//! Not for: deciding anything. The store checks revisions (compare-and-swap)
//! and keeps the logs append-only; what a state means is the rollout core's,
//! what a flag document holds is the flag server's.
#![forbid(unsafe_code)]

mod codec;
mod error;
mod etcd;
mod file;
mod memory;
pub mod suite;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_rollout::{Decision, ServiceState};

pub use error::StoreError;
pub use etcd::gateway::{b64, unb64, Gateway, GatewayError};
pub use etcd::security::{Security, SecurityError};
pub use etcd::watch::{spawn_watch, Wake, WatchHandle};
pub use etcd::{range_end, EtcdStore};
pub use file::FileStore;
pub use memory::MemoryStore;

/// One change of feature flags, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    /// Position in the log, assigned by the store on append (1, 2, 3…); ignored on input.
    #[serde(default)]
    pub seq: u64,
    pub at: sluice_model::Timestamp,
    /// Who or what made it: "api", "api (token …)", "file flags.json", "config reload", "release plan new-builder"...
    pub actor: String,
    /// What was done: "set", "delete", "kill", "revive", "percentage", "reload"...
    pub action: String,
    /// The flag, or None for a change of the whole set (a file reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// The flags written through the API (a JSON document the flag server defines) and its revision.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagDocument {
    /// 1 after the first commit, one more after each.
    pub revision: u64,
    pub document: serde_json::Value,
}

/// A service's state and decision log, changed only by compare-and-swap.
///
/// Every backend gives the same guarantees, checked by [`suite::run_all`]:
/// `commit` is atomic (state and decisions together or neither) and durable
/// when it returns; so are `commit_flags` (flag document and flag change) and
/// `append_flag_change`.
pub trait Store: Send + Sync + 'static {
    /// The service's stored state, if any.
    fn load(&self, service: &str) -> Result<Option<ServiceState>, StoreError>;

    /// Every stored service's state, ordered by service name.
    fn load_all(&self) -> Result<Vec<ServiceState>, StoreError>;

    /// Atomically (one write transaction, durable on return): replace the
    /// service's state and append `decisions` to its log, but only if the
    /// stored revision equals `expected_revision` (0 = "must not exist yet");
    /// else [`StoreError::Conflict`].
    ///
    /// `state.revision` must be `expected_revision + 1`, every decision must
    /// belong to `state.service`, and a decision's `(rollout_id, seq)` must not
    /// be in the log yet (the log is append-only); else nothing is written.
    fn commit(
        &self,
        state: &ServiceState,
        expected_revision: u64,
        decisions: &[Decision],
    ) -> Result<(), StoreError>;

    /// Decisions of a service ordered by `(rollout_id, seq)`; `rollout_id`
    /// None = all rollouts; `limit` keeps the newest N.
    fn history(
        &self,
        service: &str,
        rollout_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, StoreError>;

    /// The flag document written through the API, if any.
    fn load_flags(&self) -> Result<Option<FlagDocument>, StoreError>;

    /// Atomically (one write transaction, durable on return): replace the
    /// flag document, whose revision becomes `expected_revision + 1`, and
    /// append `change` to the flag log with the next seq, which is returned.
    ///
    /// Only if the stored revision equals `expected_revision` (0 = no document
    /// yet), else [`StoreError::FlagConflict`]; a change without an actor or
    /// an action is refused ([`StoreError::FlagChangeInvalid`]). A refused
    /// commit writes nothing and uses up no seq.
    fn commit_flags(
        &self,
        document: &serde_json::Value,
        expected_revision: u64,
        change: &FlagChange,
    ) -> Result<u64, StoreError>;

    /// Appends a change that has no document of its own (a file reload, a
    /// release-plan step) with the next seq, which is returned; durable on
    /// return. Refused like `commit_flags` without an actor or an action.
    fn append_flag_change(&self, change: &FlagChange) -> Result<u64, StoreError>;

    /// The flag log in seq order: `key` Some = only changes of that flag,
    /// None = every change (of flags and of the whole set); `limit` keeps the
    /// newest N.
    fn flag_changes(
        &self,
        key: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, StoreError>;

    /// The circuit-breaker policies replaced through the admin API, by id,
    /// each the JSON value the admin API stored (the store does not read it).
    fn breaker_policies(&self) -> Result<BTreeMap<String, serde_json::Value>, StoreError>;

    /// Stores `policy` under `id`, replacing what was stored under it (the
    /// last writer wins, as with the API's PUT); durable on return.
    fn put_breaker_policy(&self, id: &str, policy: &serde_json::Value) -> Result<(), StoreError>;
}

/// A shared store is a store, so the controller and the admin API can hold
/// one `Arc<dyn Store>`.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn load(&self, service: &str) -> Result<Option<ServiceState>, StoreError> {
        (**self).load(service)
    }

    fn load_all(&self) -> Result<Vec<ServiceState>, StoreError> {
        (**self).load_all()
    }

    fn commit(
        &self,
        state: &ServiceState,
        expected_revision: u64,
        decisions: &[Decision],
    ) -> Result<(), StoreError> {
        (**self).commit(state, expected_revision, decisions)
    }

    fn history(
        &self,
        service: &str,
        rollout_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, StoreError> {
        (**self).history(service, rollout_id, limit)
    }

    fn load_flags(&self) -> Result<Option<FlagDocument>, StoreError> {
        (**self).load_flags()
    }

    fn commit_flags(
        &self,
        document: &serde_json::Value,
        expected_revision: u64,
        change: &FlagChange,
    ) -> Result<u64, StoreError> {
        (**self).commit_flags(document, expected_revision, change)
    }

    fn append_flag_change(&self, change: &FlagChange) -> Result<u64, StoreError> {
        (**self).append_flag_change(change)
    }

    fn flag_changes(
        &self,
        key: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, StoreError> {
        (**self).flag_changes(key, limit)
    }

    fn breaker_policies(&self) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        (**self).breaker_policies()
    }

    fn put_breaker_policy(&self, id: &str, policy: &serde_json::Value) -> Result<(), StoreError> {
        (**self).put_breaker_policy(id, policy)
    }
}

/// The checks every backend makes before writing, so they reject the same
/// commits with the same errors.
pub(crate) fn check_commit(
    state: &ServiceState,
    expected_revision: u64,
    decisions: &[Decision],
) -> Result<(), StoreError> {
    if state.revision != expected_revision.wrapping_add(1) {
        return Err(StoreError::BadRevision {
            service: state.service.clone(),
            expected: expected_revision,
            revision: state.revision,
        });
    }
    if let Some(stray) = decisions.iter().find(|d| d.service != state.service) {
        return Err(StoreError::ForeignDecision {
            service: state.service.clone(),
            decision_service: stray.service.clone(),
        });
    }
    Ok(())
}

/// The checks every backend makes on a flag change before writing it: an
/// audit entry must say who made it and what was done.
pub(crate) fn check_flag_change(change: &FlagChange) -> Result<(), StoreError> {
    let missing = if change.actor.trim().is_empty() {
        "actor (who or what made it)"
    } else if change.action.trim().is_empty() {
        "action (what was done)"
    } else {
        return Ok(());
    };
    Err(StoreError::FlagChangeInvalid {
        key: change.key.clone(),
        missing,
    })
}

/// The revision a flag commit writes, checked like `check_commit` checks a state's.
pub(crate) fn next_flag_revision(expected_revision: u64) -> Result<u64, StoreError> {
    expected_revision
        .checked_add(1)
        .ok_or(StoreError::FlagBadRevision {
            expected: expected_revision,
        })
}

/// A stored breaker policy's JSON, decoded.
pub(crate) fn decode_policy(id: &str, json: &[u8]) -> Result<serde_json::Value, StoreError> {
    serde_json::from_slice(json).map_err(|source| StoreError::PolicySerde {
        id: id.to_string(),
        source,
    })
}

/// Keeps the newest `limit` of decisions already in log order.
pub(crate) fn keep_newest(mut decisions: Vec<Decision>, limit: Option<usize>) -> Vec<Decision> {
    if let Some(limit) = limit {
        if decisions.len() > limit {
            decisions.drain(..decisions.len() - limit);
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn memory_store_passes_the_suite() {
        suite::run_all(&MemoryStore::new());
        let shared = Arc::new(MemoryStore::new());
        suite::survives_reopen(&|| Box::new(Arc::clone(&shared)));
    }

    #[test]
    fn file_store_passes_the_suite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileStore::open(&dir.path().join("sluice.db")).expect("open");
        suite::run_all(&store);
    }

    #[test]
    fn file_store_survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.db");
        suite::survives_reopen(&|| Box::new(FileStore::open(&path).expect("open")));
    }

    #[test]
    fn a_file_in_use_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("busy.db");
        let _first = FileStore::open(&path).expect("open");
        let err = FileStore::open(&path).expect_err("second open");
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("busy.db"), "{message}");
        assert!(
            message.contains("is in use by another sluice process"),
            "{message}"
        );
    }

    /// Run by `a_file_in_use_by_another_process_is_refused` in a child
    /// process: holds the store open until its stdin closes (at most 10 s).
    #[test]
    #[ignore = "helper run as a child process"]
    fn child_holds_the_store_open() {
        let Some(path) = std::env::var_os("SLUICE_STORE_CHILD_PATH") else {
            return;
        };
        let _store = FileStore::open(std::path::Path::new(&path)).expect("child open");
        println!("child-has-store-open");
        let (done, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
            let _ = done.send(());
        });
        let _ = closed.recv_timeout(std::time::Duration::from_secs(10));
    }

    #[test]
    fn a_file_in_use_by_another_process_is_refused() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shared.db");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "tests::child_holds_the_store_open",
                "--ignored",
                "--nocapture",
            ])
            .env("SLUICE_STORE_CHILD_PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let opened = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("child-has-store-open"));
        let outcome = FileStore::open(&path);
        drop(child.stdin.take());
        let _ = child.kill();
        let _ = child.wait();
        assert!(opened, "the child did not open the store");
        let err = outcome.expect_err("open while the child holds it");
        assert!(
            err.to_string()
                .contains("is in use by another sluice process"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not a database, just some text that is long enough").expect("write");
        let err = FileStore::open(&path).expect_err("not a store");
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }

    #[test]
    fn errors_name_the_service() {
        let store = MemoryStore::new();
        let state = suite::service_state("web", 1, None);
        store.commit(&state, 0, &[]).expect("create");
        let err = store.commit(&state, 0, &[]).expect_err("conflict");
        assert_eq!(
            err.to_string(),
            "service \"web\": stored revision is 1, expected 0 (changed by another writer; reload and retry)"
        );
    }

    #[test]
    fn flag_checks_pass_on_a_store_that_already_has_flags() {
        // The flag document is one per store: the checks must hold whatever
        // revision and log they find, e.g. after a previous run.
        let store = MemoryStore::new();
        suite::flags::run_all(&store);
        suite::flags::run_all(&store);

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.db");
        suite::run_all(&FileStore::open(&path).expect("open"));
        suite::survives_reopen(&|| Box::new(FileStore::open(&path).expect("open")));
        suite::flags::flags_survive_reopen(&|| Box::new(FileStore::open(&path).expect("open")));
    }

    #[test]
    fn a_flag_change_is_json_without_empty_fields() {
        let change = FlagChange {
            seq: 0,
            at: sluice_model::Timestamp::from_millis(5),
            actor: "file flags.json".to_string(),
            action: "reload".to_string(),
            key: None,
            before: None,
            after: None,
        };
        let json = serde_json::to_value(&change).expect("encode");
        assert_eq!(
            json,
            serde_json::json!({ "seq": 0, "at": 5, "actor": "file flags.json", "action": "reload" })
        );
        // Input without a seq (the store assigns it) is accepted.
        let input = serde_json::json!({ "at": 5, "actor": "file flags.json", "action": "reload" });
        assert_eq!(
            serde_json::from_value::<FlagChange>(input).expect("decode"),
            change
        );
    }

    #[test]
    fn flag_errors_say_what_happened() {
        let store = MemoryStore::new();
        let change = suite::flags::flag_change(Some("new-checkout"), "set", 1);
        store
            .commit_flags(&serde_json::json!({}), 0, &change)
            .expect("create");
        let err = store
            .commit_flags(&serde_json::json!({}), 0, &change)
            .expect_err("conflict");
        assert!(err.is_conflict());
        assert_eq!(
            err.to_string(),
            "flags: stored flag document has revision 1, expected 0 (changed by another writer; reload and retry)"
        );
        let anonymous = FlagChange {
            actor: String::new(),
            ..change
        };
        let err = store.append_flag_change(&anonymous).expect_err("no actor");
        assert_eq!(
            err.to_string(),
            "flags: a change of flag \"new-checkout\" has no actor (who or what made it); the audit log keeps only changes that say who made them and what was done"
        );
    }
}
