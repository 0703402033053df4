//! The etcd backend (cluster mode): the same `Store` over etcd's v3 API,
//! through its JSON gateway, so several sluice nodes share one state. Every
//! write is one etcd transaction whose compares make it a compare-and-swap:
//!
//! - `PREFIX/rev/SERVICE` holds the state's revision as text; a commit
//!   compares it (or, for the first commit, that it was never created),
//!   checks that none of its decision keys exists yet, and puts the state,
//!   the revision and the decisions together.
//! - `PREFIX/state/SERVICE` holds the state's JSON, `PREFIX/log/SERVICE/
//!   ROLLOUT/SEQ` (zero-padded) each decision's.
//! - `PREFIX/flags/revision` and `PREFIX/flags/seq` are the flag document's
//!   revision and the flag log's last seq; `PREFIX/flags/document` and
//!   `PREFIX/flags/log/SEQ` the values. A flag commit compares both, so two
//!   writers never take the same seq.
//!
//! - `PREFIX/breakers/policies/ID` holds a breaker policy replaced through
//!   the admin API.
//!
//! Service names and policy ids are escaped (`%` → `%25`, `/` → `%2F`) so that one
//! service's log is never a prefix of another's.

pub(crate) mod gateway;
pub(crate) mod security;
pub(crate) mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_rollout::{Decision, ServiceState};

use crate::codec::{
    decode_decision, decode_flag_change, decode_flag_document, decode_state, encode_decision,
    encode_flag_change, encode_flag_document, encode_state,
};
use crate::{
    check_commit, check_flag_change, decode_policy, keep_newest, next_flag_revision, FlagChange,
    FlagDocument, Store, StoreError,
};
use gateway::{b64, unb64, Gateway, GatewayError};
use security::Security;

/// One key-value pair of a range answer.
struct Kv {
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A store in etcd under a key prefix.
pub struct EtcdStore {
    gateway: Gateway,
    prefix: String,
}

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (`host:port`, tried in
    /// order), under `prefix` (e.g. `/sluice/`), over plain HTTP without a
    /// user. Checks that etcd answers.
    pub fn connect(endpoints: Vec<String>, prefix: &str) -> Result<EtcdStore, StoreError> {
        EtcdStore::connect_with(endpoints, prefix, Security::default())
    }

    /// The store a `store: etcd://…` or `etcds://…` value names: its
    /// members, prefix, TLS files and user. Checks that etcd answers (and
    /// accepts the certificates and the password).
    pub fn open(location: &sluice_model::EtcdLocation) -> Result<EtcdStore, StoreError> {
        let security = Security::from_location(location).map_err(|source| StoreError::Open {
            path: location_text(
                &location.endpoints,
                &location.prefix,
                location.tls.is_some(),
            )
            .into(),
            source: Box::new(source),
        })?;
        EtcdStore::connect_with(location.endpoints.clone(), &location.prefix, security)
    }

    /// The TLS and user this store reaches etcd with, so that another
    /// client of the same cluster (the cluster node's) needs not read the
    /// files and the password again.
    pub fn security(&self) -> Security {
        self.gateway.security()
    }

    /// [`EtcdStore::connect`] with TLS and/or a user.
    pub fn connect_with(
        endpoints: Vec<String>,
        prefix: &str,
        security: Security,
    ) -> Result<EtcdStore, StoreError> {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let store = EtcdStore {
            gateway: Gateway::with_security(endpoints, Duration::from_secs(5), security),
            prefix,
        };
        store
            .range(&store.key("rev/"), None, Some(1), false)
            .map_err(|e| match e {
                StoreError::Backend { source, .. } => StoreError::Open {
                    path: store.location().into(),
                    source,
                },
                other => other,
            })?;
        Ok(store)
    }

    fn location(&self) -> String {
        location_text(
            self.gateway.endpoints(),
            &self.prefix,
            self.gateway.scheme() == "https",
        )
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn service_key(&self, kind: &str, service: &str) -> String {
        self.key(&format!("{kind}/{}", escape(service)))
    }

    fn decision_key(&self, service: &str, rollout_id: u64, seq: u64) -> String {
        format!(
            "{}/{rollout_id:020}/{seq:020}",
            self.service_key("log", service)
        )
    }

    fn backend(&self, operation: &str, error: GatewayError) -> StoreError {
        StoreError::Backend {
            location: self.location(),
            operation: operation.to_string(),
            source: Box::new(error),
        }
    }

    /// Keys from `key` (with `prefix_end`, every key under it), ascending or
    /// newest-first, at most `limit`.
    fn range(
        &self,
        key: &str,
        prefix_end: Option<()>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Kv>, StoreError> {
        let mut request = json!({ "key": b64(key.as_bytes()) });
        if prefix_end.is_some() || key.ends_with('/') {
            request["range_end"] = json!(b64(&range_end(key.as_bytes())));
        }
        if let Some(limit) = limit {
            request["limit"] = json!(limit.to_string());
        }
        if descending {
            request["sort_order"] = json!("DESCEND");
            request["sort_target"] = json!("KEY");
        }
        let answer = self
            .gateway
            .call("/v3/kv/range", &request)
            .map_err(|e| self.backend(&format!("read of {key}"), e))?;
        let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
        kvs.iter()
            .map(|kv| {
                let field = |name: &str| {
                    unb64(kv[name].as_str().unwrap_or("")).ok_or_else(|| StoreError::Backend {
                        location: self.location(),
                        operation: format!("read of {key}"),
                        source: format!("etcd answered a {name} that is not base64").into(),
                    })
                };
                Ok(Kv {
                    key: field("key")?,
                    value: field("value")?,
                })
            })
            .collect()
    }

    /// The value of one key.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .range(key, None, None, false)?
            .into_iter()
            .next()
            .map(|kv| kv.value))
    }

    /// A counter kept as decimal text (0 when absent).
    fn get_number(&self, key: &str) -> Result<u64, StoreError> {
        match self.get(key)? {
            None => Ok(0),
            Some(text) => std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| StoreError::Backend {
                    location: self.location(),
                    operation: format!("read of {key}"),
                    source: "not a number".into(),
                }),
        }
    }

    /// Runs a transaction; true when its compares held and the puts were applied.
    fn txn(
        &self,
        operation: &str,
        compares: Vec<Value>,
        puts: &[(String, Vec<u8>)],
    ) -> Result<bool, StoreError> {
        let success: Vec<Value> = puts
            .iter()
            .map(|(key, value)| {
                json!({ "request_put": { "key": b64(key.as_bytes()), "value": b64(value) } })
            })
            .collect();
        let answer = self
            .gateway
            .call(
                "/v3/kv/txn",
                &json!({ "compare": compares, "success": success }),
            )
            .map_err(|e| self.backend(operation, e))?;
        // The gateway leaves out `false`.
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Appends `change` after the current last seq, with `extra` compares and puts in the same transaction.
    fn append_change(
        &self,
        change: &FlagChange,
        extra_compares: &[Value],
        extra_puts: &[(String, Vec<u8>)],
    ) -> Result<Option<u64>, StoreError> {
        let seq_key = self.key("flags/seq");
        let last = self.get_number(&seq_key)?;
        let seq = last + 1;
        let mut compares = extra_compares.to_vec();
        compares.push(counter_is(&seq_key, last));
        let mut puts = extra_puts.to_vec();
        puts.push((
            self.key(&format!("flags/log/{seq:020}")),
            encode_flag_change(change, seq)?,
        ));
        puts.push((seq_key, seq.to_string().into_bytes()));
        let applied = self.txn(&format!("append of flag change {seq}"), compares, &puts)?;
        Ok(applied.then_some(seq))
    }
}

/// How errors name the store: `etcd://` or `etcds://`, members, prefix.
fn location_text(endpoints: &[String], prefix: &str, tls: bool) -> String {
    let scheme = if tls { "etcds" } else { "etcd" };
    format!("{scheme}://{}{prefix}", endpoints.join(","))
}

/// Compare: a counter key equals `value`, or was never created when 0.
fn counter_is(key: &str, value: u64) -> Value {
    if value == 0 {
        json!({ "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
    } else {
        json!({ "key": b64(key.as_bytes()), "target": "VALUE", "result": "EQUAL", "value": b64(value.to_string().as_bytes()) })
    }
}

/// Compare: the key was never created.
fn absent(key: &str) -> Value {
    json!({ "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
}

/// The end of the range of every key starting with `prefix`.
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn escape(service: &str) -> String {
    service.replace('%', "%25").replace('/', "%2F")
}

fn unescape(key: &str) -> String {
    key.replace("%2F", "/").replace("%25", "%")
}

/// How many flag-log appends race before one gives up (each loss means
/// another writer appended: progress is being made).
const APPEND_ATTEMPTS: usize = 100;

impl Store for EtcdStore {
    fn load(&self, service: &str) -> Result<Option<ServiceState>, StoreError> {
        self.get(&self.service_key("state", service))?
            .map(|json| decode_state(service, &json))
            .transpose()
    }

    fn load_all(&self) -> Result<Vec<ServiceState>, StoreError> {
        let prefix = self.key("state/");
        let mut states = self
            .range(&prefix, Some(()), None, false)?
            .into_iter()
            .map(|kv| {
                let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string();
                decode_state(&unescape(&name), &kv.value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        states.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(states)
    }

    fn commit(
        &self,
        state: &ServiceState,
        expected_revision: u64,
        decisions: &[Decision],
    ) -> Result<(), StoreError> {
        check_commit(state, expected_revision, decisions)?;
        let service = &state.service;
        let rev_key = self.service_key("rev", service);
        let mut compares = vec![counter_is(&rev_key, expected_revision)];
        let mut puts = vec![
            (self.service_key("state", service), encode_state(state)?),
            (rev_key.clone(), state.revision.to_string().into_bytes()),
        ];
        for (i, decision) in decisions.iter().enumerate() {
            let key = self.decision_key(service, decision.rollout_id, decision.seq);
            let repeated = decisions[..i]
                .iter()
                .any(|d| (d.rollout_id, d.seq) == (decision.rollout_id, decision.seq));
            if repeated {
                return Err(StoreError::DuplicateDecision {
                    service: service.clone(),
                    rollout_id: decision.rollout_id,
                    seq: decision.seq,
                });
            }
            compares.push(absent(&key));
            puts.push((key, encode_decision(decision)?));
        }
        if self.txn(&format!("commit of service {service:?}"), compares, &puts)? {
            return Ok(());
        }
        // Which compare failed: the revision, or a decision already logged.
        let found = self.get_number(&rev_key)?;
        if found != expected_revision {
            return Err(StoreError::Conflict {
                service: service.clone(),
                expected: expected_revision,
                found,
            });
        }
        for decision in decisions {
            let key = self.decision_key(service, decision.rollout_id, decision.seq);
            if self.get(&key)?.is_some() {
                return Err(StoreError::DuplicateDecision {
                    service: service.clone(),
                    rollout_id: decision.rollout_id,
                    seq: decision.seq,
                });
            }
        }
        // The revision moved and came back between the two reads: report the conflict.
        Err(StoreError::Conflict {
            service: service.clone(),
            expected: expected_revision,
            found,
        })
    }

    fn history(
        &self,
        service: &str,
        rollout_id: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Decision>, StoreError> {
        let base = self.service_key("log", service);
        let prefix = match rollout_id {
            Some(id) => format!("{base}/{id:020}/"),
            None => format!("{base}/"),
        };
        let newest_first = limit.is_some();
        let kvs = self.range(&prefix, Some(()), limit, newest_first)?;
        let mut decisions = kvs
            .iter()
            .map(|kv| {
                let rest = String::from_utf8_lossy(&kv.key[base.len() + 1..]).to_string();
                let mut parts = rest.split('/').map(|p| p.parse::<u64>().unwrap_or(0));
                let (id, seq) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
                decode_decision(service, id, seq, &kv.value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if newest_first {
            decisions.reverse();
        }
        Ok(keep_newest(decisions, limit))
    }

    fn load_flags(&self) -> Result<Option<FlagDocument>, StoreError> {
        self.get(&self.key("flags/document"))?
            .map(|json| decode_flag_document(&json))
            .transpose()
    }

    fn commit_flags(
        &self,
        document: &Value,
        expected_revision: u64,
        change: &FlagChange,
    ) -> Result<u64, StoreError> {
        check_flag_change(change)?;
        let revision = next_flag_revision(expected_revision)?;
        let revision_key = self.key("flags/revision");
        let puts = [
            (
                self.key("flags/document"),
                encode_flag_document(revision, document)?,
            ),
            (revision_key.clone(), revision.to_string().into_bytes()),
        ];
        let compares = [counter_is(&revision_key, expected_revision)];
        for _ in 0..APPEND_ATTEMPTS {
            if let Some(seq) = self.append_change(change, &compares, &puts)? {
                return Ok(seq);
            }
            let found = self.get_number(&revision_key)?;
            if found != expected_revision {
                return Err(StoreError::FlagConflict {
                    expected: expected_revision,
                    found,
                });
            }
            // Only the seq moved (another writer appended): try again.
        }
        Err(self.backend(
            "commit of the flag document",
            GatewayError::Unreachable("the flag log kept moving".into()),
        ))
    }

    fn append_flag_change(&self, change: &FlagChange) -> Result<u64, StoreError> {
        check_flag_change(change)?;
        for _ in 0..APPEND_ATTEMPTS {
            if let Some(seq) = self.append_change(change, &[], &[])? {
                return Ok(seq);
            }
        }
        Err(self.backend(
            "append of a flag change",
            GatewayError::Unreachable("the flag log kept moving".into()),
        ))
    }

    fn flag_changes(
        &self,
        key: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FlagChange>, StoreError> {
        let prefix = self.key("flags/log/");
        let kvs = self.range(&prefix, Some(()), None, true)?;
        let mut newest_first = Vec::new();
        for kv in kvs {
            if limit.is_some_and(|limit| newest_first.len() >= limit) {
                break;
            }
            let seq = String::from_utf8_lossy(&kv.key[prefix.len()..])
                .parse()
                .unwrap_or(0);
            let change = decode_flag_change(seq, &kv.value)?;
            if key.is_none() || change.key.as_deref() == key {
                newest_first.push(change);
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    fn breaker_policies(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        let prefix = self.key("breakers/policies/");
        self.range(&prefix, Some(()), None, false)?
            .iter()
            .map(|kv| {
                let id = unescape(&String::from_utf8_lossy(&kv.key[prefix.len()..]));
                let policy = decode_policy(&id, &kv.value)?;
                Ok((id, policy))
            })
            .collect()
    }

    fn put_breaker_policy(&self, id: &str, policy: &Value) -> Result<(), StoreError> {
        let key = self.service_key("breakers/policies", id);
        let put =
            json!({ "key": b64(key.as_bytes()), "value": b64(policy.to_string().as_bytes()) });
        self.gateway
            .call("/v3/kv/put", &put)
            .map_err(|e| self.backend(&format!("store of breaker policy {id:?}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends_and_escapes() {
        assert_eq!(range_end(b"/sluice/log/"), b"/sluice/log0".to_vec());
        assert_eq!(range_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(escape("a/b%c"), "a%2Fb%25c");
        assert_eq!(unescape(&escape("a/b%2Fc%")), "a/b%2Fc%");
    }
}
