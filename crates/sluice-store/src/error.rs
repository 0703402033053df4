//! What can go wrong in a store, with the file, service or flag it concerns.

use std::path::PathBuf;

/// A store operation that did not happen; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store file's lock.
    #[error("store {} is in use by another sluice process (stop it, or point `store:` at another file)", path.display())]
    InUse { path: PathBuf },

    /// The file could not be created or opened (permissions, not a store, corrupt).
    #[error("cannot open store {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A read or write failed in the backend (I/O, storage, transaction).
    #[error("store {location}: {operation} failed: {source}")]
    Backend {
        /// The file path, or the backend's name.
        location: String,
        /// What was being done, e.g. `commit of service "web"`.
        operation: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The compare-and-swap failed: someone else changed the service first.
    #[error("service {service:?}: stored revision is {found}, expected {expected} (changed by another writer; reload and retry)")]
    Conflict {
        service: String,
        expected: u64,
        /// 0 when the service is not stored.
        found: u64,
    },

    /// The state to commit does not carry the next revision.
    #[error("service {service:?}: state to commit has revision {revision}, must be {} (expected revision + 1)", expected.wrapping_add(1))]
    BadRevision {
        service: String,
        expected: u64,
        revision: u64,
    },

    /// A decision of another service was passed to a commit.
    #[error(
        "service {service:?}: cannot append a decision of service {decision_service:?} to its log"
    )]
    ForeignDecision {
        service: String,
        decision_service: String,
    },

    /// The decision log is append-only; this position is taken.
    #[error("service {service:?}: decision {seq} of rollout {rollout_id} is already in the log (the log is append-only)")]
    DuplicateDecision {
        service: String,
        rollout_id: u64,
        seq: u64,
    },

    /// A stored value could not be encoded or decoded as JSON.
    #[error("service {service:?}: {what} cannot be (de)serialized as JSON: {source}")]
    Serde {
        service: String,
        /// `state` or `decision 3 of rollout 2`.
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// The flag document's compare-and-swap failed: someone else changed the
    /// flags first.
    #[error("flags: stored flag document has revision {found}, expected {expected} (changed by another writer; reload and retry)")]
    FlagConflict {
        expected: u64,
        /// 0 when no flag document is stored.
        found: u64,
    },

    /// The flag document's revision cannot go past `u64::MAX`.
    #[error("flags: expected revision {expected} has no next revision; the flag document cannot be replaced again")]
    FlagBadRevision { expected: u64 },

    /// A flag change that the audit log cannot keep as it is.
    #[error("flags: a change {} has no {missing}; the audit log keeps only changes that say who made them and what was done", key.as_deref().map_or_else(|| "of the whole set".to_string(), |key| format!("of flag {key:?}")))]
    FlagChangeInvalid {
        /// The flag the change is about (None = the whole set).
        key: Option<String>,
        /// The missing field, e.g. `actor (who or what made it)`.
        missing: &'static str,
    },

    /// A flag document or flag change could not be encoded or decoded as JSON.
    #[error("flags: {what} cannot be (de)serialized as JSON: {source}")]
    FlagSerde {
        /// `flag document` or `flag change 12`.
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A stored breaker policy is not JSON.
    #[error("breaker policy {id:?}: cannot be (de)serialized as JSON: {source}")]
    PolicySerde {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

// === impl StoreError ===

impl StoreError {
    /// Whether another writer changed what was to be replaced first (a
    /// service's state or the flag document): reload and retry, e.g. HTTP 409.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. } | StoreError::FlagConflict { .. }
        )
    }
}
