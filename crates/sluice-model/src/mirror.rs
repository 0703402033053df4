//! Mirrored traffic (the `shadow` strategy): which share of stable's
//! requests is copied to the canary, the bounds that keep a slow canary from
//! costing stable anything, and how each (stable, canary) answer pair is
//! compared. Parsed and validated here; the proxy does the mirroring.

use serde::{Deserialize, Serialize};

use crate::validate::FieldError;

/// `rollout.mirror`: copy requests to the canary while the client gets stable's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// Share of stable's requests mirrored, in percent (above 0, at most 100).
    #[serde(default = "default_percent")]
    pub percent: f64,
    /// Mirrored requests in flight at once (at least 1); above it a mirror is
    /// dropped and counted, never queued.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Largest request body mirrored, and largest response body kept for the
    /// body digest, in bytes. A larger request is not mirrored (counted); a
    /// larger response is compared without its body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// What makes a pair of answers a mismatch.
    #[serde(default)]
    pub compare: CompareSpec,
}

/// How a (stable, canary) pair of answers is compared. The status class
/// (2xx, 4xx, 5xx, no answer) is always compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// Compare a digest of the bodies (JSON bodies without `ignore_fields`).
    #[serde(default)]
    pub body: bool,
    /// Compare the response headers, except `ignore_headers`.
    #[serde(default)]
    pub headers: bool,
    /// Headers left out of the header comparison (any case). The default
    /// list holds those that differ between any two answers.
    #[serde(default = "default_ignore_headers")]
    pub ignore_headers: Vec<String>,
    /// JSON field paths (`timestamp`, `meta.request_id`; a path through an
    /// array applies to each element) dropped from both bodies before the
    /// digest, when the answer is JSON.
    #[serde(default)]
    pub ignore_fields: Vec<String>,
    /// A pair mismatches on latency when the canary's time to response head
    /// is above stable's × this factor + 10 ms (null: latency is not compared).
    #[serde(default = "default_latency_factor")]
    pub latency_factor: Option<f64>,
}

/// Latency below this difference never makes a mismatch (scheduling noise).
pub const LATENCY_SLACK_MS: u64 = 10;

fn default_percent() -> f64 {
    100.0
}
fn default_max_in_flight() -> usize {
    64
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_latency_factor() -> Option<f64> {
    Some(2.0)
}

/// Headers that differ between two answers of the same code.
pub fn default_ignore_headers() -> Vec<String> {
    [
        "date",
        "server",
        "age",
        "expires",
        "last-modified",
        "etag",
        "set-cookie",
        "content-length",
        "x-request-id",
        "x-upstream",
        "traceparent",
        "tracestate",
        "via",
    ]
    .map(str::to_string)
    .to_vec()
}

impl Default for MirrorSpec {
    fn default() -> Self {
        MirrorSpec {
            percent: default_percent(),
            max_in_flight: default_max_in_flight(),
            max_body_bytes: default_max_body_bytes(),
            compare: CompareSpec::default(),
        }
    }
}

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec {
            body: false,
            headers: false,
            ignore_headers: default_ignore_headers(),
            ignore_fields: Vec::new(),
            latency_factor: default_latency_factor(),
        }
    }
}

// === impl MirrorSpec ===

impl MirrorSpec {
    /// Every rule broken, with field paths under `path` (`…rollout.mirror`).
    pub(crate) fn problems(&self, path: &str, errors: &mut Vec<FieldError>) {
        let mut push = |field: &str, message: String| {
            errors.push(FieldError {
                path: format!("{path}.{field}"),
                message,
            })
        };
        if !(self.percent > 0.0 && self.percent <= 100.0) {
            push(
                "percent",
                format!("{} must be above 0 and at most 100", self.percent),
            );
        }
        if self.max_in_flight == 0 {
            push(
                "max_in_flight",
                "must be at least 1 (mirrors in flight at once)".to_string(),
            );
        }
        let compare = &self.compare;
        if let Some(factor) = compare.latency_factor {
            if !(factor.is_finite() && factor >= 1.0) {
                push(
                    "compare.latency_factor",
                    format!("{factor} must be at least 1 (or null to not compare latency)"),
                );
            }
        }
        for (i, name) in compare.ignore_headers.iter().enumerate() {
            if !crate::validate::is_header_name(name) {
                push(
                    &format!("compare.ignore_headers[{i}]"),
                    format!("{name:?} is not a header name"),
                );
            }
        }
        for (i, field) in compare.ignore_fields.iter().enumerate() {
            if field.split('.').any(str::is_empty) {
                push(
                    &format!("compare.ignore_fields[{i}]"),
                    format!("{field:?} is not a field path like `timestamp` or `meta.request_id`"),
                );
            }
        }
        if !compare.ignore_fields.is_empty() && !compare.body {
            push(
                "compare.ignore_fields",
                "only used with `body: true` (bodies are not compared)".to_string(),
            );
        }
    }
}

/// `mirror` only where the strategy mirrors; a `mirror_mismatch_rate` check
/// only where requests are mirrored (elsewhere it would never have data).
pub(crate) fn validate_mirror(
    rollout: &crate::RolloutSpec,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let mirrors = rollout.is_mirroring();
    match &rollout.mirror {
        Some(mirror) if rollout.strategy.mirrors() => {
            mirror.problems(&format!("{path}.mirror"), errors)
        }
        Some(_) => errors.push(FieldError {
            path: format!("{path}.mirror"),
            message: "only the `shadow` and `blue_green` strategies mirror requests".to_string(),
        }),
        None => {}
    }
    for (i, check) in rollout.checks.iter().enumerate() {
        if check.metric != Some(crate::Metric::MirrorMismatchRate) {
            continue;
        }
        if !mirrors {
            errors.push(FieldError {
                path: format!("{path}.checks[{i}].metric"),
                message: "mirror_mismatch_rate needs mirrored requests (`strategy: shadow`, or `blue_green` with `mirror`)"
                    .to_string(),
            });
        }
        if check.needs_stable() {
            errors.push(FieldError {
                path: format!("{path}.checks[{i}].max"),
                message: "mirror_mismatch_rate is the canary's alone: write an absolute bound like `max: 5`"
                    .to_string(),
            });
        }
    }
}

// === impl RolloutSpec (mirroring) ===

impl crate::RolloutSpec {
    /// Whether a rollout of this plan mirrors requests to the canary:
    /// always for `shadow`, for `blue_green` when `mirror` is set.
    pub fn is_mirroring(&self) -> bool {
        self.strategy == crate::Strategy::Shadow
            || (self.strategy.mirrors() && self.mirror.is_some())
    }
}
