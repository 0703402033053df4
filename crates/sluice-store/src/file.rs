//! The embedded store: one redb file, no server. Each `commit` is one redb
//! write transaction with immediate durability, so a state and its decisions
//! are on disk together when it returns. redb locks the file, so a second
//! process (or a second `FileStore` in this one) cannot open it.

use std::path::{Path, PathBuf};

use redb::{Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};
use sluice_rollout::{Decision, ServiceState};

use crate::codec::{decode_decision, decode_state, encode_decision, encode_state};
use crate::{check_commit, keep_newest, Store, StoreError};

/// service → JSON of its `ServiceState`.
const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("service_states");
/// (service, rollout_id, seq) → JSON of the `Decision`; ordered for range scans.
const DECISIONS: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("decisions");

/// The store in one file on local disk (the default backend).
pub struct FileStore {
    db: Database,
    path: PathBuf,
}

// === impl FileStore ===

impl FileStore {
    /// Opens the store file, creating it (and its tables) if it does not exist.
    /// Fails with [`StoreError::InUse`] while another process has it open.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // Checking integrity on open turns a file damaged outside redb into an
        // error instead of a panic; the store is small, so it is cheap.
        let db = Builder::new()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                    StoreError::InUse {
                        path: path.to_path_buf(),
                    }
                }
                other => open_error(Box::new(other)),
            })?;
        let store = FileStore {
            db,
            path: path.to_path_buf(),
        };
        // Create the tables once, so that readers never meet a missing table.
        let txn = store
            .db
            .begin_write()
            .map_err(|e| open_error(Box::new(e)))?;
        txn.open_table(STATES)
            .map_err(|e| open_error(Box::new(e)))?;
        txn.open_table(DECISIONS)
            .map_err(|e| open_error(Box::new(e)))?;
        txn.commit().map_err(|e| open_error(Box::new(e)))?;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn backend_error(
        &self,
        operation: impl Into<String>,
    ) -> impl Fn(redb::Error) -> StoreError + '_ {
        let operation = operation.into();
        move |source| StoreError::Backend {
            location: self.path.display().to_string(),
            operation: operation.clone(),
            source: Box::new(source),
        }
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

impl Store for FileStore {
    fn load(&self, service: &str) -> Result<Option<ServiceState>, StoreError> {
        let err = self.backend_error(format!("load of service {service:?}"));
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(STATES).map_err(|e| err(e.into()))?;
        let json = table.get(service).map_err(|e| err(e.into()))?;
        json.map(|json| decode_state(service, json.value()))
            .transpose()
    }

    fn load_all(&self) -> Result<Vec<ServiceState>, StoreError> {
        let err = self.backend_error("load of all services");
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(STATES).map_err(|e| err(e.into()))?;
        let mut states = Vec::new();
        for entry in table.iter().map_err(|e| err(e.into()))? {
            let (service, json) = entry.map_err(|e| err(e.into()))?;
            states.push(decode_state(service.value(), json.value())?);
        }
        Ok(states)
    }

    fn commit(
        &self,
        state: &ServiceState,
        expected_revision: u64,
        decisions: &[Decision],
    ) -> Result<(), StoreError> {
        check_commit(state, expected_revision, decisions)?;
        let service = state.service.as_str();
        let state_json = encode_state(state)?;
        let decision_json = decisions
            .iter()
            .map(encode_decision)
            .collect::<Result<Vec<_>, _>>()?;

        let err = self.backend_error(format!("commit of service {service:?}"));
        // Write transactions are serialized, so the revision read here cannot
        // change before this one commits: that is the compare-and-swap.
        // Returning early drops `txn`, which aborts it: nothing is written.
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut states = txn.open_table(STATES).map_err(|e| err(e.into()))?;
            let found = match states.get(service).map_err(|e| err(e.into()))? {
                Some(json) => decode_state(service, json.value())?.revision,
                None => 0,
            };
            if found != expected_revision {
                return Err(StoreError::Conflict {
                    service: service.to_string(),
                    expected: expected_revision,
                    found,
                });
            }
            states
                .insert(service, state_json.as_slice())
                .map_err(|e| err(e.into()))?;

            let mut log = txn.open_table(DECISIONS).map_err(|e| err(e.into()))?;
            for (decision, json) in decisions.iter().zip(&decision_json) {
                let key = (service, decision.rollout_id, decision.seq);
                let previous = log
                    .insert(key, json.as_slice())
                    .map_err(|e| err(e.into()))?;
                if previous.is_some() {
                    return Err(StoreError::DuplicateDecision {
                        service: service.to_string(),
                        rollout_id: decision.rollout_id,
                        seq: decision.seq,
                    });
                }
            }
        }
        // The default durability is `Immediate`: on disk when commit returns.
        txn.commit().map_err(|e| err(e.into()))
    }

    fn history(
        &self,
        service: &str,
        rollout_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, StoreError> {
        let err = self.backend_error(format!("history of service {service:?}"));
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let log = txn.open_table(DECISIONS).map_err(|e| err(e.into()))?;
        let (first, last) = rollout_id.map_or((0, u64::MAX), |id| (id, id));
        let range = log
            .range((service, first, 0)..=(service, last, u64::MAX))
            .map_err(|e| err(e.into()))?;
        // Walk from the newest end so that a limit reads only what it keeps.
        let mut newest_first = Vec::new();
        for entry in range.rev() {
            if limit.is_some_and(|limit| newest_first.len() >= limit) {
                break;
            }
            let (key, json) = entry.map_err(|e| err(e.into()))?;
            let (_, id, seq) = key.value();
            newest_first.push(decode_decision(service, id, seq, json.value())?);
        }
        newest_first.reverse();
        Ok(keep_newest(newest_first, limit))
    }
}
