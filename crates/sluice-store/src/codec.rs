//! Stored values are JSON (readable with any tool, tolerant of added fields);
//! the errors name the service and the record.

use sluice_rollout::{Decision, ServiceState};

use crate::StoreError;

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
