//! Where sluice keeps what must survive a restart: each service's routing and
//! rollout state (`ServiceState`) and the append-only decision log. One trait,
//! `Store`, with an embedded file backend (`FileStore`, on redb) and an
//! in-memory one for tests (`MemoryStore`); an etcd backend for cluster mode
//! implements the same trait and runs the same `suite`.
//!
//! Not for: deciding anything. The store checks revisions (compare-and-swap)
//! and keeps the log append-only; what a state means is the rollout core's.
#![forbid(unsafe_code)]

mod codec;
mod error;
mod file;
mod memory;
pub mod suite;

use std::sync::Arc;

use sluice_rollout::{Decision, ServiceState};

pub use error::StoreError;
pub use file::FileStore;
pub use memory::MemoryStore;

/// A service's state and decision log, changed only by compare-and-swap.
///
/// Every backend gives the same guarantees, checked by [`suite::run_all`]:
/// `commit` is atomic (state and decisions together or neither) and durable
/// when it returns.
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
}
