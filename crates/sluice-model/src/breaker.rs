//! The circuit-breaker part of the config: named policies (`breakers:`) and
//! what each service guards with them (`services[].breaker`). Field names
//! follow the seed rollout plans (`enabled`, `failure_threshold`,
//! `error_rate_threshold`, `error_rate_window_seconds`, `timeout_ms`,
//! `success_threshold`) and Resilience4j where those are silent; see
//! docs/breakers.md for the mapping to Resilience4j and Envoy.
//!
//! Not here: the state machine (sluice-breaker) or the request path
//! (sluice-proxy). This module only says what users may write and checks it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::FieldError;

/// The name of the policy a service uses when it names none.
pub const DEFAULT_POLICY: &str = "default";

/// The top-level `breakers:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakersConfig {
    /// The global switch: `false` makes every breaker admit every call (counts
    /// are still kept). `SLUICE_BREAKERS_ENABLED=false` overrides it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Policies by id. A service without `breaker.policy` uses `default`
    /// (built-in defaults when no policy has that id).
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
}

impl Default for BreakersConfig {
    fn default() -> Self {
        BreakersConfig {
            enabled: true,
            policies: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// What a breaker does with its verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerMode {
    /// Rejects calls while open (the normal mode).
    #[default]
    On,
    /// Runs the state machine and records what it would have done, never rejects.
    Shadow,
    /// Admits everything and never changes state; counts are kept.
    Off,
}

/// One breaker policy. Every field has a default; `null` turns a rule off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// `on`, `shadow` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BreakerMode>,
    /// The seed's spelling: `false` is `mode: off`, `true` is `mode: on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive failures that open the breaker (Envoy's consecutive_5xx).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: Option<u32>,
    /// Failure rate in percent over the window that opens it (at or above).
    #[serde(default = "default_error_rate_threshold")]
    pub error_rate_threshold: Option<f64>,
    /// A time window of this many seconds (one bucket per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_window_seconds: Option<u32>,
    /// A window of the last N calls (the default, 100, when neither is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_window_calls: Option<u32>,
    /// Calls the window needs before a rate is computed.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: u32,
    /// A call slower than this is slow.
    #[serde(default = "default_slow_call_duration", with = "crate::duration")]
    pub slow_call_duration: Duration,
    /// Slow-call rate in percent that opens the breaker; null (default) turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    /// Call timeout: a call with no response head by then is a failure (504).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The seed's spelling of `timeout`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How long it stays open before trial calls.
    #[serde(default = "default_open_duration", with = "crate::duration")]
    pub open_duration: Duration,
    /// Cap of the open duration under backoff.
    #[serde(default = "default_max_open_duration", with = "crate::duration")]
    pub max_open_duration: Duration,
    /// Each consecutive trip multiplies the open duration by this (1 = none).
    #[serde(default = "default_backoff_multiplier")]
    pub backoff_multiplier: f64,
    /// Trial calls admitted while half-open (default: `success_threshold`, at least 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_calls: Option<u32>,
    /// Successful trial calls that close it again.
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    /// What counts as a failure: `5xx`, `connect`, `timeout`, `protocol`, or a status code.
    #[serde(default = "default_failure_on")]
    pub failure_on: Vec<FailureClass>,
    /// What a rejected call gets instead of the plain 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
}

fn default_failure_threshold() -> Option<u32> {
    Some(5)
}
fn default_error_rate_threshold() -> Option<f64> {
    Some(50.0)
}
fn default_minimum_calls() -> u32 {
    20
}
fn default_slow_call_duration() -> Duration {
    Duration::from_secs(60)
}
fn default_open_duration() -> Duration {
    Duration::from_secs(30)
}
fn default_max_open_duration() -> Duration {
    Duration::from_secs(300)
}
fn default_backoff_multiplier() -> f64 {
    2.0
}
fn default_success_threshold() -> u32 {
    3
}
fn default_failure_on() -> Vec<FailureClass> {
    vec![
        FailureClass::Status5xx,
        FailureClass::Connect,
        FailureClass::Timeout,
        FailureClass::Protocol,
    ]
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            mode: None,
            enabled: None,
            failure_threshold: default_failure_threshold(),
            error_rate_threshold: default_error_rate_threshold(),
            error_rate_window_seconds: None,
            error_rate_window_calls: None,
            minimum_calls: default_minimum_calls(),
            slow_call_duration: default_slow_call_duration(),
            slow_call_rate_threshold: None,
            timeout: None,
            timeout_ms: None,
            open_duration: default_open_duration(),
            max_open_duration: default_max_open_duration(),
            backoff_multiplier: default_backoff_multiplier(),
            half_open_calls: None,
            success_threshold: default_success_threshold(),
            failure_on: default_failure_on(),
            fallback: None,
        }
    }
}

/// A kind of result that counts as a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Any 5xx status from the upstream.
    Status5xx,
    /// The upstream could not be connected to.
    Connect,
    /// No response head within the call timeout (or `proxy.upstream_timeout`).
    Timeout,
    /// The upstream broke the connection or spoke something other than HTTP.
    Protocol,
    /// This exact status (e.g. 429).
    Status(u16),
}

impl FailureClass {
    pub fn parse(text: &str) -> Result<FailureClass, String> {
        Ok(match text.trim() {
            "5xx" => FailureClass::Status5xx,
            "connect" => FailureClass::Connect,
            "timeout" => FailureClass::Timeout,
            "protocol" => FailureClass::Protocol,
            other => match other.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => FailureClass::Status(code),
                _ => {
                    return Err(format!(
                        "{other:?} is not a failure class: use 5xx, connect, timeout, protocol or a status code such as 429"
                    ))
                }
            },
        })
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureClass::Status5xx => f.write_str("5xx"),
            FailureClass::Connect => f.write_str("connect"),
            FailureClass::Timeout => f.write_str("timeout"),
            FailureClass::Protocol => f.write_str("protocol"),
            FailureClass::Status(code) => write!(f, "{code}"),
        }
    }
}

impl Serialize for FailureClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FailureClass::Status(code) => s.serialize_u16(*code),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for FailureClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Code(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Code(code) => code.to_string(),
            Raw::Text(text) => text,
        };
        FailureClass::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The answer to a rejected call: the last good response (stale), else a
/// static one, else sluice's 503 with `Retry-After`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    /// Serve the last good response to the same GET, if it is young enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<StaleSpec>,
    /// A fixed response.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_response: Option<StaticResponse>,
}

/// Stale-data fallback: cacheable GET responses are remembered per service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleSpec {
    /// The oldest response still served.
    #[serde(default = "default_stale_max_age", with = "crate::duration")]
    pub max_age: Duration,
    /// Larger bodies are not remembered.
    #[serde(default = "default_stale_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Responses remembered per service (the oldest is forgotten first).
    #[serde(default = "default_stale_max_entries")]
    pub max_entries: usize,
}

fn default_stale_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_stale_max_body_bytes() -> usize {
    1 << 20
}
fn default_stale_max_entries() -> usize {
    1000
}

impl Default for StaleSpec {
    fn default() -> Self {
        StaleSpec {
            max_age: default_stale_max_age(),
            max_body_bytes: default_stale_max_body_bytes(),
            max_entries: default_stale_max_entries(),
        }
    }
}

/// A fixed fallback response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticResponse {
    #[serde(default = "default_static_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_static_status() -> u16 {
    503
}
fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_string()
}

/// `services[].breaker`: which policy guards each version of the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBreaker {
    /// Policy id (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// One breaker per value of this request header (e.g. a tenant id) instead of one per version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_header: Option<String>,
    /// Partition breakers kept per version; requests of further partitions share the version's breaker.
    #[serde(default = "default_max_partitions")]
    pub max_partitions: usize,
    /// Per-partition policy overrides: partition value (tenant) → policy id.
    #[serde(default)]
    pub partitions: BTreeMap<String, String>,
    /// Envoy-style caps per version; excess requests are shed with a 503.
    #[serde(default)]
    pub limits: Limits,
}

fn default_max_partitions() -> usize {
    1000
}

impl Default for ServiceBreaker {
    fn default() -> Self {
        ServiceBreaker {
            policy: None,
            partition_header: None,
            max_partitions: default_max_partitions(),
            partitions: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

/// Concurrency caps of one version (Envoy's circuit-breaking thresholds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests in flight to the version at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Upstream connections open to the version at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection when `max_connections` are busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u32>,
}

// === impl PolicySpec ===

impl PolicySpec {
    /// The mode after `enabled` and `mode` are reconciled.
    pub fn effective_mode(&self) -> BreakerMode {
        match (self.mode, self.enabled) {
            (Some(mode), _) => mode,
            (None, Some(false)) => BreakerMode::Off,
            (None, _) => BreakerMode::On,
        }
    }

    /// The call timeout from `timeout` or `timeout_ms`.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.timeout
            .or_else(|| self.timeout_ms.map(Duration::from_millis))
    }

    /// Trial calls admitted while half-open.
    pub fn effective_half_open_calls(&self) -> u32 {
        self.half_open_calls
            .unwrap_or_else(|| self.success_threshold.max(3))
    }

    /// Every rule this policy breaks, with paths under `path`.
    pub fn validate(&self, path: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut push = |field: &str, message: String| {
            errors.push(FieldError {
                path: format!("{path}.{field}"),
                message,
            })
        };
        if let (Some(mode), Some(enabled)) = (self.mode, self.enabled) {
            if (mode == BreakerMode::Off) == enabled {
                push(
                    "enabled",
                    format!("enabled: {enabled} contradicts mode: {mode:?}; set one of them"),
                );
            }
        }
        if self.failure_threshold == Some(0) {
            push(
                "failure_threshold",
                "must be at least 1 (null turns the rule off)".into(),
            );
        }
        for (field, value) in [
            ("error_rate_threshold", self.error_rate_threshold),
            ("slow_call_rate_threshold", self.slow_call_rate_threshold),
        ] {
            if let Some(rate) = value {
                if !(rate > 0.0 && rate <= 100.0) {
                    push(
                        field,
                        format!("{rate} is not a percentage in (0, 100] (null turns the rule off)"),
                    );
                }
            }
        }
        match (self.error_rate_window_seconds, self.error_rate_window_calls) {
            (Some(_), Some(_)) => push(
                "error_rate_window_seconds",
                "set either error_rate_window_seconds or error_rate_window_calls, not both".into(),
            ),
            (Some(seconds), None) if !(1..=3600).contains(&seconds) => push(
                "error_rate_window_seconds",
                format!("{seconds} is outside 1..=3600"),
            ),
            (None, Some(calls)) if !(1..=100_000).contains(&calls) => push(
                "error_rate_window_calls",
                format!("{calls} is outside 1..=100000"),
            ),
            _ => {}
        }
        if self.timeout.is_some() && self.timeout_ms.is_some() {
            push(
                "timeout_ms",
                "set either timeout or timeout_ms, not both".into(),
            );
        }
        if self.call_timeout() == Some(Duration::ZERO) {
            push("timeout", "must be longer than 0".into());
        }
        if self.open_duration.is_zero() {
            push("open_duration", "must be longer than 0".into());
        }
        if self.max_open_duration < self.open_duration {
            push(
                "max_open_duration",
                format!(
                    "{} is shorter than open_duration {}",
                    crate::duration::format(self.max_open_duration),
                    crate::duration::format(self.open_duration)
                ),
            );
        }
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier <= 100.0) {
            push(
                "backoff_multiplier",
                format!("{} is outside 1..=100", self.backoff_multiplier),
            );
        }
        let half_open = self.effective_half_open_calls();
        if half_open == 0 || half_open > 10_000 {
            push(
                "half_open_calls",
                format!("{half_open} is outside 1..=10000"),
            );
        }
        if self.success_threshold == 0 {
            push("success_threshold", "must be at least 1".into());
        } else if self.success_threshold > half_open {
            push(
                "success_threshold",
                format!(
                    "{} is above half_open_calls {half_open}",
                    self.success_threshold
                ),
            );
        }
        if self.failure_on.is_empty() {
            push("failure_on", "must name at least one failure class".into());
        }
        if let Some(fallback) = &self.fallback {
            if let Some(stale) = &fallback.stale {
                if stale.max_entries == 0 {
                    push("fallback.stale.max_entries", "must be at least 1".into());
                }
                if stale.max_age.is_zero() {
                    push("fallback.stale.max_age", "must be longer than 0".into());
                }
            }
            if let Some(fixed) = &fallback.static_response {
                if !(100..=599).contains(&fixed.status) {
                    push(
                        "fallback.static.status",
                        format!("{} is not an HTTP status", fixed.status),
                    );
                }
                for name in fixed.headers.keys() {
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    {
                        push(
                            "fallback.static.headers",
                            format!("{name:?} is not a header name"),
                        );
                    }
                }
            }
        }
        errors
    }
}

// === impl BreakersConfig ===

impl BreakersConfig {
    /// Whether a policy id is defined (or is the built-in default).
    pub fn has_policy(&self, id: &str) -> bool {
        id == DEFAULT_POLICY || self.policies.contains_key(id)
    }

    /// The policy of that id; the built-in defaults for an undefined `default`.
    pub fn policy(&self, id: &str) -> Option<PolicySpec> {
        match self.policies.get(id) {
            Some(policy) => Some(policy.clone()),
            None if id == DEFAULT_POLICY => Some(PolicySpec::default()),
            None => None,
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        for (id, policy) in &self.policies {
            if let Err(message) = check_policy_id(id) {
                errors.push(FieldError {
                    path: format!("breakers.policies.{id}"),
                    message,
                });
            }
            errors.extend(policy.validate(&format!("breakers.policies.{id}")));
        }
    }
}

/// Policy ids appear in URLs and metric labels: keep them plain.
pub fn check_policy_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "policy id {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

// === impl ServiceBreaker ===

impl ServiceBreaker {
    /// The policy id of this service's version breakers.
    pub fn policy_id(&self) -> &str {
        self.policy.as_deref().unwrap_or(DEFAULT_POLICY)
    }

    pub(crate) fn validate(
        &self,
        breakers: &BreakersConfig,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) {
        let mut push = |field: &str, message: String| {
            errors.push(FieldError {
                path: format!("{path}.{field}"),
                message,
            })
        };
        if !breakers.has_policy(self.policy_id()) {
            push("policy", unknown_policy(self.policy_id(), breakers));
        }
        if let Some(header) = &self.partition_header {
            if http_header_name_invalid(header) {
                push(
                    "partition_header",
                    format!("{header:?} is not a header name"),
                );
            }
        } else if !self.partitions.is_empty() {
            push(
                "partitions",
                "per-partition policies need partition_header".into(),
            );
        }
        if self.max_partitions == 0 || self.max_partitions > 1_000_000 {
            push(
                "max_partitions",
                format!("{} is outside 1..=1000000", self.max_partitions),
            );
        }
        for (partition, id) in &self.partitions {
            if !breakers.has_policy(id) {
                push(
                    &format!("partitions.{partition}"),
                    unknown_policy(id, breakers),
                );
            }
        }
        for (field, value) in [
            ("limits.max_requests", self.limits.max_requests),
            ("limits.max_connections", self.limits.max_connections),
        ] {
            if value == Some(0) {
                push(field, "must be at least 1 (leave it out for no cap)".into());
            }
        }
        if self.limits.max_pending.is_some() && self.limits.max_connections.is_none() {
            push(
                "limits.max_pending",
                "only applies with limits.max_connections".into(),
            );
        }
    }
}

fn unknown_policy(id: &str, breakers: &BreakersConfig) -> String {
    let known: Vec<&str> = breakers.policies.keys().map(String::as_str).collect();
    format!("policy {id:?} is not defined in breakers.policies (defined: {known:?})")
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> PolicySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn seed_fields_are_accepted() {
        let p = policy(
            "enabled: true\nfailure_threshold: 5\nerror_rate_threshold: 50\n\
             error_rate_window_seconds: 60\ntimeout_ms: 2000\nsuccess_threshold: 2\n",
        );
        assert!(p.validate("p").is_empty(), "{:?}", p.validate("p"));
        assert_eq!(p.call_timeout(), Some(Duration::from_millis(2000)));
        assert_eq!(p.effective_mode(), BreakerMode::On);
        assert_eq!(p.effective_half_open_calls(), 3);
        let off = policy("enabled: false");
        assert_eq!(off.effective_mode(), BreakerMode::Off);
    }

    #[test]
    fn failure_classes_parse_names_and_codes() {
        let p = policy("failure_on: [5xx, timeout, 429]");
        assert_eq!(
            p.failure_on,
            vec![
                FailureClass::Status5xx,
                FailureClass::Timeout,
                FailureClass::Status(429)
            ]
        );
        let err = serde_yaml_ng::from_str::<PolicySpec>("failure_on: [teapot]").unwrap_err();
        assert!(err.to_string().contains("\"teapot\""), "{err}");
    }

    #[test]
    fn every_broken_rule_is_named() {
        let p = policy(
            "mode: on\nenabled: false\nfailure_threshold: 0\nerror_rate_threshold: 150\n\
             error_rate_window_seconds: 10\nerror_rate_window_calls: 10\n\
             open_duration: 1m\nmax_open_duration: 10s\nbackoff_multiplier: 0.5\n\
             half_open_calls: 2\nsuccess_threshold: 3\nfailure_on: []\n\
             timeout: 1s\ntimeout_ms: 5\n",
        );
        let errors = p.validate("breakers.policies.x");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for field in [
            "enabled",
            "failure_threshold",
            "error_rate_threshold",
            "error_rate_window_seconds",
            "max_open_duration",
            "backoff_multiplier",
            "success_threshold",
            "failure_on",
            "timeout_ms",
        ] {
            assert!(
                paths.contains(&format!("breakers.policies.x.{field}").as_str()),
                "{field} missing from {paths:?}"
            );
        }
        let success = errors
            .iter()
            .find(|e| e.path.ends_with("success_threshold"))
            .unwrap();
        assert_eq!(success.message, "3 is above half_open_calls 2");
    }

    #[test]
    fn services_name_known_policies() {
        let breakers: BreakersConfig =
            serde_yaml_ng::from_str("policies: {strict: {failure_threshold: 2}}").unwrap();
        let service: ServiceBreaker = serde_yaml_ng::from_str(
            "policy: strict\npartition_header: x-tenant\npartitions: {acme: lenient}\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        service.validate(&breakers, "services[0].breaker", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "services[0].breaker.partitions.acme");
        assert!(errors[0].message.contains("\"lenient\""));
        assert!(breakers.has_policy("default"));
        assert_eq!(breakers.policy("default"), Some(PolicySpec::default()));
    }
}
