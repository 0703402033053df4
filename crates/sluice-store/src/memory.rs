//! The store in memory, for tests: the same semantics as the file store
//! (values go through JSON, so what does not survive serialization fails here
//! too), nothing kept after drop.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use sluice_rollout::{Decision, ServiceState};

use crate::codec::{
    decode_decision, decode_flag_change, decode_flag_document, decode_state, encode_decision,
    encode_flag_change, encode_flag_document, encode_state,
};
use crate::{
    check_commit, check_flag_change, decode_policy, keep_newest, next_flag_revision, FlagChange,
    FlagDocument, Store, StoreError,
};

/// A store in a `Mutex<BTreeMap>`; cheap to create, gone when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// service → JSON of its `ServiceState`.
    states: BTreeMap<String, Vec<u8>>,
    /// (service, rollout_id, seq) → JSON of the `Decision`.
    decisions: BTreeMap<(String, u64, u64), Vec<u8>>,
    /// JSON of the flag document and its revision.
    flag_document: Option<Vec<u8>>,
    /// seq → the change's flag key (to filter without decoding) and its JSON.
    flag_changes: BTreeMap<u64, (Option<String>, Vec<u8>)>,
    /// breaker policy id → its JSON.
    breaker_policies: BTreeMap<String, Vec<u8>>,
}

// === impl Inner ===

impl Inner {
    /// Appends `change` with the next seq and returns it; cannot fail after
    /// encoding, so a caller that checked first changes all or nothing.
    fn append_flag_change(&mut self, change: &FlagChange) -> Result<u64, StoreError> {
        let seq = self.flag_changes.keys().next_back().map_or(0, |last| *last) + 1;
        let json = encode_flag_change(change, seq)?;
        self.flag_changes.insert(seq, (change.key.clone(), json));
        Ok(seq)
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-done commit:
        // commit changes nothing until every check has passed.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn load(&self, service: &str) -> Result<Option<ServiceState>, StoreError> {
        let inner = self.lock();
        inner
            .states
            .get(service)
            .map(|json| decode_state(service, json))
            .transpose()
    }

    fn load_all(&self) -> Result<Vec<ServiceState>, StoreError> {
        let inner = self.lock();
        inner
            .states
            .iter()
            .map(|(service, json)| decode_state(service, json))
            .collect()
    }

    fn commit(
        &self,
        state: &ServiceState,
        expected_revision: u64,
        decisions: &[Decision],
    ) -> Result<(), StoreError> {
        check_commit(state, expected_revision, decisions)?;
        let service = &state.service;
        let state_json = encode_state(state)?;
        let mut entries = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let key = (service.clone(), decision.rollout_id, decision.seq);
            entries.push((key, encode_decision(decision)?));
        }

        let mut inner = self.lock();
        let found = match inner.states.get(service) {
            Some(json) => decode_state(service, json)?.revision,
            None => 0,
        };
        if found != expected_revision {
            return Err(StoreError::Conflict {
                service: service.clone(),
                expected: expected_revision,
                found,
            });
        }
        for (i, (key, _)) in entries.iter().enumerate() {
            let repeated = entries[..i].iter().any(|(earlier, _)| earlier == key);
            if repeated || inner.decisions.contains_key(key) {
                return Err(StoreError::DuplicateDecision {
                    service: service.clone(),
                    rollout_id: key.1,
                    seq: key.2,
                });
            }
        }
        inner.states.insert(service.clone(), state_json);
        inner.decisions.extend(entries);
        Ok(())
    }

    fn history(
        &self,
        service: &str,
        rollout_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, StoreError> {
        let inner = self.lock();
        let (first, last) = match rollout_id {
            Some(id) => (id, id),
            None => (0, u64::MAX),
        };
        let range = (service.to_string(), first, 0)..=(service.to_string(), last, u64::MAX);
        let decisions = inner
            .decisions
            .range(range)
            .map(|((_, id, seq), json)| decode_decision(service, *id, *seq, json))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(keep_newest(decisions, limit))
    }

    fn load_flags(&self) -> Result<Option<FlagDocument>, StoreError> {
        let inner = self.lock();
        inner
            .flag_document
            .as_deref()
            .map(decode_flag_document)
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

        let mut inner = self.lock();
        let found = match inner.flag_document.as_deref() {
            Some(json) => decode_flag_document(json)?.revision,
            None => 0,
        };
        if found != expected_revision {
            return Err(StoreError::FlagConflict {
                expected: expected_revision,
                found,
            });
        }
        // Append first: it is the step that can fail, and it fails before
        // changing anything.
        let seq = inner.append_flag_change(change)?;
        inner.flag_document = Some(document_json);
        Ok(seq)
    }

    fn append_flag_change(&self, change: &FlagChange) -> Result<u64, StoreError> {
        check_flag_change(change)?;
        self.lock().append_flag_change(change)
    }

    fn flag_changes(
        &self,
        key: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, StoreError> {
        let inner = self.lock();
        let mut newest_first = Vec::new();
        let matching = inner
            .flag_changes
            .iter()
            .rev()
            .filter(|(_, (change_key, _))| key.is_none() || change_key.as_deref() == key);
        for (seq, (_, json)) in matching {
            if limit.is_some_and(|limit| newest_first.len() >= limit) {
                break;
            }
            newest_first.push(decode_flag_change(*seq, json)?);
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    fn breaker_policies(&self) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        self.lock()
            .breaker_policies
            .iter()
            .map(|(id, json)| Ok((id.clone(), decode_policy(id, json)?)))
            .collect()
    }

    fn put_breaker_policy(&self, id: &str, policy: &serde_json::Value) -> Result<(), StoreError> {
        let json = policy.to_string().into_bytes();
        self.lock().breaker_policies.insert(id.to_string(), json);
        Ok(())
    }
}
