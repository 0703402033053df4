//! Stored values are JSON (readable with any tool, tolerant of added fields);
//! the errors name the service or flag record.

use serde::{Deserialize, Serialize};
use sluice_rollout::{Decision, ServiceState};

use crate::{FlagChange, FlagDocument, StoreError};

pub(crate) fn encode_state(state: &ServiceState) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(|source| StoreError::Serde {
        service: state.service.clone(),
        what: "state".to_string(),
        source,
    })
}

pub(crate) fn encode_decision(decision: &Decision) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(decision).map_err(|source| StoreError::Serde {
        service: decision.service.clone(),
        what: decision_name(decision.rollout_id, decision.seq),
        source,
    })
}

pub(crate) fn decode_state(service: &str, json: &[u8]) -> Result<ServiceState, StoreError> {
    serde_json::from_slice(json).map_err(|source| StoreError::Serde {
        service: service.to_string(),
        what: "stored state".to_string(),
        source,
    })
}

pub(crate) fn decode_decision(
    service: &str,
    rollout_id: u64,
    seq: u64,
    json: &[u8],
) -> Result<Decision, StoreError> {
    serde_json::from_slice(json).map_err(|source| StoreError::Serde {
        service: service.to_string(),
        what: format!("stored {}", decision_name(rollout_id, seq)),
        source,
    })
}

fn decision_name(rollout_id: u64, seq: u64) -> String {
    format!("decision {seq} of rollout {rollout_id}")
}

/// The flag document as stored: the document with its revision beside it, so
/// that the compare-and-swap and the value are read together.
#[derive(Serialize)]
struct StoredFlagsOut<'a> {
    revision: u64,
    document: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct StoredFlagsIn {
    revision: u64,
    document: serde_json::Value,
}

pub(crate) fn encode_flag_document(
    revision: u64,
    document: &serde_json::Value,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredFlagsOut { revision, document }).map_err(|source| {
        StoreError::FlagSerde {
            what: format!("flag document (revision {revision})"),
            source,
        }
    })
}

pub(crate) fn decode_flag_document(json: &[u8]) -> Result<FlagDocument, StoreError> {
    let stored: StoredFlagsIn =
        serde_json::from_slice(json).map_err(|source| StoreError::FlagSerde {
            what: "stored flag document".to_string(),
            source,
        })?;
    Ok(FlagDocument {
        revision: stored.revision,
        document: stored.document,
    })
}

/// Encodes `change` as entry `seq` of the flag log (its own `seq` ignored).
pub(crate) fn encode_flag_change(change: &FlagChange, seq: u64) -> Result<Vec<u8>, StoreError> {
    let numbered = FlagChange {
        seq,
        ..change.clone()
    };
    serde_json::to_vec(&numbered).map_err(|source| StoreError::FlagSerde {
        what: format!("flag change {seq}"),
        source,
    })
}

/// Decodes entry `seq` of the flag log; the log's key is its seq.
pub(crate) fn decode_flag_change(seq: u64, json: &[u8]) -> Result<FlagChange, StoreError> {
    let mut change: FlagChange =
        serde_json::from_slice(json).map_err(|source| StoreError::FlagSerde {
            what: format!("stored flag change {seq}"),
            source,
        })?;
    change.seq = seq;
    Ok(change)
}
