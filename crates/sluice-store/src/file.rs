//! The embedded store: one redb file, no server. Each `commit` is one redb
//! write transaction with immediate durability, so a state and its decisions
//! are on disk together when it returns. redb locks the file, so a second
//! process (or a second `FileStore` in this one) cannot open it. The flag
//! document and its log work the same way: a flag commit or append is one
//! write transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use sluice_rollout::{Decision, ServiceState};

use crate::codec::{
    decode_decision, decode_flag_change, decode_flag_document, decode_state, encode_decision,
    encode_flag_change, encode_flag_document, encode_state,
};
use crate::{
    check_commit, check_flag_change, decode_policy, keep_newest, next_flag_revision, FlagChange,
    FlagDocument, Store, StoreError,
};

/// service → JSON of its `ServiceState`.
const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("service_states");
/// (service, rollout_id, seq) → JSON of the `Decision`; ordered for range scans.
const DECISIONS: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("decisions");
/// [`FLAGS_KEY`] → JSON of the flag document and its revision (one row).
const FLAG_DOCUMENT: TableDefinition<&str, &[u8]> = TableDefinition::new("flag_document");
const FLAGS_KEY: &str = "flags";
/// seq → JSON of the `FlagChange`; the flag log, append-only.
const FLAG_CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("flag_changes");
/// (flag key, seq) → nothing: the seqs of one flag's changes, so that reading
/// one flag's history does not read every other flag's.
const FLAG_CHANGES_BY_KEY: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("flag_changes_by_key");
/// breaker policy id → its JSON, as the admin API stored it.
const BREAKER_POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("breaker_policies");

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
        txn.open_table(FLAG_DOCUMENT)
            .map_err(|e| open_error(Box::new(e)))?;
        txn.open_table(FLAG_CHANGES)
            .map_err(|e| open_error(Box::new(e)))?;
        txn.open_table(FLAG_CHANGES_BY_KEY)
            .map_err(|e| open_error(Box::new(e)))?;
        txn.open_table(BREAKER_POLICIES)
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

/// Appends `change` to the flag log inside `txn` with the next seq, which it
/// returns. Write transactions are serialized, so no other append can take
/// the same seq.
fn append_in(
    txn: &WriteTransaction,
    change: &FlagChange,
    err: &dyn Fn(redb::Error) -> StoreError,
) -> Result<u64, StoreError> {
    let mut log = txn.open_table(FLAG_CHANGES).map_err(|e| err(e.into()))?;
    let last = log.last().map_err(|e| err(e.into()))?;
    let seq = last.map_or(0, |(seq, _)| seq.value()) + 1;
    let json = encode_flag_change(change, seq)?;
    log.insert(seq, json.as_slice())
        .map_err(|e| err(e.into()))?;
    if let Some(key) = change.key.as_deref() {
        let mut by_key = txn
            .open_table(FLAG_CHANGES_BY_KEY)
            .map_err(|e| err(e.into()))?;
        by_key.insert((key, seq), ()).map_err(|e| err(e.into()))?;
    }
    Ok(seq)
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

    fn load_flags(&self) -> Result<Option<FlagDocument>, StoreError> {
        let err = self.backend_error("load of the flag document");
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(FLAG_DOCUMENT).map_err(|e| err(e.into()))?;
        let json = table.get(FLAGS_KEY).map_err(|e| err(e.into()))?;
        json.map(|json| decode_flag_document(json.value()))
            .transpose()
    }

    fn commit_flags(
        &self,
        document: &serde_json::Value,
        expected_revision: u64,
        change: &FlagChange,
    ) -> Result<u64, StoreError> {
        check_flag_change(change)?;
        let revision = next_flag_revision(expected_revision)?;
        let document_json = encode_flag_document(revision, document)?;

        let err = self.backend_error("commit of the flag document");
        // As in `commit`: the serialized write transaction is the
        // compare-and-swap, and an early return aborts it.
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let seq = {
            let mut table = txn.open_table(FLAG_DOCUMENT).map_err(|e| err(e.into()))?;
            let found = match table.get(FLAGS_KEY).map_err(|e| err(e.into()))? {
                Some(json) => decode_flag_document(json.value())?.revision,
                None => 0,
            };
            if found != expected_revision {
                return Err(StoreError::FlagConflict {
                    expected: expected_revision,
                    found,
                });
            }
            table
                .insert(FLAGS_KEY, document_json.as_slice())
                .map_err(|e| err(e.into()))?;
            append_in(&txn, change, &err)?
        };
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(seq)
    }

    fn append_flag_change(&self, change: &FlagChange) -> Result<u64, StoreError> {
        check_flag_change(change)?;
        let err = self.backend_error("append to the flag log");
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let seq = append_in(&txn, change, &err)?;
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(seq)
    }

    fn flag_changes(
        &self,
        key: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, StoreError> {
        let err = self.backend_error(match key {
            Some(key) => format!("read of the flag log of flag {key:?}"),
            None => "read of the flag log".to_string(),
        });
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let log = txn.open_table(FLAG_CHANGES).map_err(|e| err(e.into()))?;
        let full = |count: usize| limit.is_some_and(|limit| count >= limit);
        // Walk from the newest end so that a limit reads only what it keeps.
        let mut newest_first = Vec::new();
        match key {
            None => {
                for entry in log.iter().map_err(|e| err(e.into()))?.rev() {
                    if full(newest_first.len()) {
                        break;
                    }
                    let (seq, json) = entry.map_err(|e| err(e.into()))?;
                    newest_first.push(decode_flag_change(seq.value(), json.value())?);
                }
            }
            Some(key) => {
                let by_key = txn
                    .open_table(FLAG_CHANGES_BY_KEY)
                    .map_err(|e| err(e.into()))?;
                let seqs = by_key
                    .range((key, 0)..=(key, u64::MAX))
                    .map_err(|e| err(e.into()))?;
                for entry in seqs.rev() {
                    if full(newest_first.len()) {
                        break;
                    }
                    let (_, seq) = entry.map_err(|e| err(e.into()))?.0.value();
                    let json = log.get(seq).map_err(|e| err(e.into()))?;
                    // The index and the log are written in one transaction,
                    // so an indexed seq is always in the log.
                    if let Some(json) = json {
                        newest_first.push(decode_flag_change(seq, json.value())?);
                    }
                }
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    fn breaker_policies(&self) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let err = self.backend_error("load of the breaker policies");
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn
            .open_table(BREAKER_POLICIES)
            .map_err(|e| err(e.into()))?;
        let mut policies = BTreeMap::new();
        for entry in table.iter().map_err(|e| err(e.into()))? {
            let (id, json) = entry.map_err(|e| err(e.into()))?;
            let id = id.value().to_string();
            let policy = decode_policy(&id, json.value())?;
            policies.insert(id, policy);
        }
        Ok(policies)
    }

    fn put_breaker_policy(&self, id: &str, policy: &serde_json::Value) -> Result<(), StoreError> {
        let err = self.backend_error(format!("store of breaker policy {id:?}"));
        let json = policy.to_string();
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn
                .open_table(BREAKER_POLICIES)
                .map_err(|e| err(e.into()))?;
            table
                .insert(id, json.as_bytes())
                .map_err(|e| err(e.into()))?;
        }
        txn.commit().map_err(|e| err(e.into()))
    }
}
