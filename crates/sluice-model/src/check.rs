//! Checks: the gates of a rollout's analysis as users write them. A check
//! measures one metric of the canary — from the proxy's own counters
//! (`builtin`) or a PromQL query (`prometheus`) — and compares it with a
//! bound that is absolute (`min: 99`, `max: 500ms`) or relative to stable
//! over the same window (`max: stable * 1.10`), possibly sustained
//! (`for: 5m`). Parsed here, judged in `sluice-analysis`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// One gate of the analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Shown in decisions; defaults to the metric (`success_rate`, `latency_p99`); required for queries.
    #[serde(default)]
    pub name: Option<String>,
    /// A builtin metric (`success_rate`, `error_rate`, `latency`, `mean_latency`,
    /// `breaker_trips`, `mirror_mismatch_rate`); not with `query`.
    #[serde(default)]
    pub metric: Option<Metric>,
    /// Where the value comes from: `builtin` (default), or `prometheus` (implied by `query`).
    #[serde(default)]
    pub provider: Option<Provider>,
    /// PromQL returning one sample; `{{service}}`, `{{version}}` (stable|canary) and `{{interval}}` are filled in.
    #[serde(default)]
    pub query: Option<String>,
    /// The latency percentile, 0 < p < 100 (with `metric: latency`).
    #[serde(default)]
    pub percentile: Option<f64>,
    /// Lowest acceptable value: a number in the metric's unit (`99` or `"99%"`,
    /// `500ms`) or relative to stable (`stable * 0.9`).
    #[serde(default)]
    pub min: Option<BoundSpec>,
    /// Highest acceptable value, written like `min` (`stable * 1.10`, `500ms`, `1%`).
    #[serde(default)]
    pub max: Option<BoundSpec>,
    /// Fail only when the condition held this long (`for: 5m`); until then the run is inconclusive.
    #[serde(default, rename = "for", with = "crate::duration::option")]
    pub sustained: Option<Duration>,
    /// A provider error or missing data: `inconclusive` (default) or `fail`.
    #[serde(default)]
    pub on_error: OnError,
    /// Errors in a row after which the check fails (default 3).
    #[serde(default = "default_error_limit")]
    pub consecutive_error_limit: u32,
}

fn default_error_limit() -> u32 {
    3
}

/// The proxy's own per-version metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Percent of requests without a 5xx, connect error or timeout.
    SuccessRate,
    /// Percent of requests that failed (100 − success rate).
    ErrorRate,
    /// A percentile of the time to response head, in ms.
    Latency,
    /// The mean time to response head, in ms.
    MeanLatency,
    /// Times the version's circuit breakers opened (any partition) in the window.
    BreakerTrips,
    /// Percent of the mirrored pairs compared in the window whose answers
    /// differed (`shadow`); the canary's alone (stable has none).
    MirrorMismatchRate,
}

/// Where a check's values come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Builtin,
    Prometheus,
}

/// What a provider error or missing data means for the check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Inconclusive,
    Fail,
}

/// A bound as written: a number, or text (`"99%"`, `500ms`, `stable * 1.10`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BoundSpec {
    Number(f64),
    Text(String),
}

/// A validated bound, in the check's unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Absolute(f64),
    /// A factor applied to stable's value over the same window.
    Relative(f64),
}

/// The unit a check's values and bounds are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Millis,
    /// Whatever the query returns (bytes, seconds, a ratio…).
    Value,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::Percent => "percent",
            Unit::Millis => "ms",
            Unit::Value => "value",
        }
    }

    /// The unit of a `label()` (as stored in analysis records).
    pub fn from_label(label: &str) -> Option<Unit> {
        [Unit::Percent, Unit::Millis, Unit::Value]
            .into_iter()
            .find(|u| u.label() == label)
    }

    /// The suffix a value is shown with (`%`, `ms`, nothing).
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::Millis => "ms",
            Unit::Value => "",
        }
    }
}

// === impl CheckSpec ===

impl CheckSpec {
    /// A builtin check with a minimum, as in `success_rate >= 99%`.
    pub fn builtin_min(metric: Metric, min: f64) -> CheckSpec {
        CheckSpec {
            metric: Some(metric),
            min: Some(BoundSpec::Number(min)),
            ..CheckSpec::empty()
        }
    }

    /// A latency percentile check with an absolute maximum.
    pub fn latency_max(percentile: f64, max: Duration) -> CheckSpec {
        CheckSpec {
            metric: Some(Metric::Latency),
            percentile: Some(percentile),
            max: Some(BoundSpec::Text(duration::format(max))),
            ..CheckSpec::empty()
        }
    }

    fn empty() -> CheckSpec {
        CheckSpec {
            name: None,
            metric: None,
            provider: None,
            query: None,
            percentile: None,
            min: None,
            max: None,
            sustained: None,
            on_error: OnError::Inconclusive,
            consecutive_error_limit: default_error_limit(),
        }
    }

    /// `prometheus` when a query is set (or named), else `builtin`.
    pub fn provider(&self) -> Provider {
        self.provider.unwrap_or(if self.query.is_some() {
            Provider::Prometheus
        } else {
            Provider::Builtin
        })
    }

    /// The name shown in decisions.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match self.metric {
            Some(Metric::SuccessRate) => "success_rate".to_string(),
            Some(Metric::ErrorRate) => "error_rate".to_string(),
            Some(Metric::MeanLatency) => "mean_latency".to_string(),
            Some(Metric::BreakerTrips) => "breaker_trips".to_string(),
            Some(Metric::MirrorMismatchRate) => "mirror_mismatch_rate".to_string(),
            Some(Metric::Latency) => {
                format!("latency_p{}", trim_float(self.percentile.unwrap_or(99.0)))
            }
            None => "query".to_string(),
        }
    }

    pub fn unit(&self) -> Unit {
        match self.metric {
            Some(Metric::SuccessRate | Metric::ErrorRate | Metric::MirrorMismatchRate) => {
                Unit::Percent
            }
            Some(Metric::Latency | Metric::MeanLatency) => Unit::Millis,
            Some(Metric::BreakerTrips) | None => Unit::Value,
        }
    }

    /// The minimum, parsed (None when absent or invalid: validation reports that).
    pub fn min_bound(&self) -> Option<Bound> {
        self.min
            .as_ref()
            .and_then(|b| parse_bound(b, self.unit()).ok())
    }

    pub fn max_bound(&self) -> Option<Bound> {
        self.max
            .as_ref()
            .and_then(|b| parse_bound(b, self.unit()).ok())
    }

    /// Whether judging needs stable's value (a relative bound).
    pub fn needs_stable(&self) -> bool {
        matches!(self.min_bound(), Some(Bound::Relative(_)))
            || matches!(self.max_bound(), Some(Bound::Relative(_)))
    }

    /// Every rule this check breaks, as (field, message) pairs.
    pub(crate) fn problems(&self, has_prometheus: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self.provider() {
            Provider::Builtin => {
                if self.metric.is_none() {
                    out.push(("metric", "set a builtin metric (success_rate, error_rate, latency, mean_latency) or a prometheus `query`".to_string()));
                }
                if self.query.is_some() {
                    out.push(("query", "a query needs `provider: prometheus`".to_string()));
                }
            }
            Provider::Prometheus => {
                if self.query.as_deref().is_none_or(|q| q.trim().is_empty()) {
                    out.push((
                        "query",
                        "a prometheus check needs a PromQL `query`".to_string(),
                    ));
                }
                if self.metric.is_some() {
                    out.push((
                        "metric",
                        "a prometheus check measures its `query`; remove `metric`".to_string(),
                    ));
                }
                if self.name.is_none() {
                    out.push((
                        "name",
                        "a prometheus check needs a name (shown in decisions)".to_string(),
                    ));
                }
                if !has_prometheus {
                    out.push((
                        "provider",
                        "no Prometheus is configured: set providers.prometheus.address".to_string(),
                    ));
                }
            }
        }
        match (self.metric, self.percentile) {
            (Some(Metric::Latency), None) => out.push((
                "percentile",
                "a latency check needs a percentile (e.g. 99)".to_string(),
            )),
            (Some(Metric::Latency), Some(p)) if !(p > 0.0 && p < 100.0) => out.push((
                "percentile",
                format!("percentile {p} must be above 0 and below 100"),
            )),
            (Some(Metric::Latency), Some(_)) => {}
            (_, Some(_)) => out.push((
                "percentile",
                "only a latency check takes a percentile".to_string(),
            )),
            (_, None) => {}
        }
        if self.min.is_none() && self.max.is_none() {
            out.push(("max", "set `min`, `max` or both".to_string()));
        }
        for (field, bound) in [("min", &self.min), ("max", &self.max)] {
            if let Some(bound) = bound {
                match parse_bound(bound, self.unit()) {
                    Err(e) => out.push((field, e)),
                    Ok(Bound::Absolute(v))
                        if self.unit() == Unit::Percent && !(0.0..=100.0).contains(&v) =>
                    {
                        out.push((
                            field,
                            format!("{} {v} is not a percentage (0 to 100)", self.display_name()),
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        if let (Some(Bound::Absolute(min)), Some(Bound::Absolute(max))) =
            (self.min_bound(), self.max_bound())
        {
            if min > max {
                out.push((
                    "min",
                    format!("min {min} is above max {max}: nothing can pass"),
                ));
            }
        }
        if self.consecutive_error_limit == 0 {
            out.push(("consecutive_error_limit", "must be at least 1".to_string()));
        }
        out
    }
}

/// Parses a bound in the check's unit: `99`, `"99%"` (percent), `500ms` (latency),
/// `stable * 1.10` or `1.1 * stable` (relative).
pub fn parse_bound(spec: &BoundSpec, unit: Unit) -> Result<Bound, String> {
    let text = match spec {
        BoundSpec::Number(n) if unit == Unit::Millis => {
            return Err(format!("{n} has no unit: write a duration like {n}ms"));
        }
        BoundSpec::Number(n) if n.is_finite() => return Ok(Bound::Absolute(*n)),
        BoundSpec::Number(n) => return Err(format!("{n} is not a number")),
        BoundSpec::Text(text) => text.trim(),
    };
    if text.contains("stable") {
        let factor = text
            .split('*')
            .map(str::trim)
            .filter(|part| *part != "stable")
            .collect::<Vec<_>>();
        let factor = match factor.as_slice() {
            [one] if text.matches('*').count() == 1 => one.parse::<f64>().ok(),
            _ => None,
        };
        return match factor {
            Some(f) if f.is_finite() && f > 0.0 => Ok(Bound::Relative(f)),
            _ => Err(format!(
                "{text:?} is not a bound relative to stable like `stable * 1.10`"
            )),
        };
    }
    match unit {
        Unit::Millis => duration::parse(text).map(|d| Bound::Absolute(d.as_secs_f64() * 1000.0)),
        Unit::Percent => text
            .strip_suffix('%')
            .unwrap_or(text)
            .trim()
            .parse::<f64>()
            .map(Bound::Absolute)
            .map_err(|_| format!("{text:?} is not a percentage like 99 or \"99.5%\"")),
        Unit::Value => text
            .parse::<f64>()
            .map(Bound::Absolute)
            .map_err(|_| format!("{text:?} is not a number or a bound like `stable * 1.30`")),
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Absolute(v) => write!(f, "{}", trim_float(*v)),
            Bound::Relative(factor) => write!(f, "stable * {}", trim_float(*factor)),
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_in_the_unit_of_their_metric() {
        let text = |t: &str| BoundSpec::Text(t.to_string());
        assert_eq!(
            parse_bound(&text("500ms"), Unit::Millis),
            Ok(Bound::Absolute(500.0))
        );
        assert_eq!(
            parse_bound(&text("1s"), Unit::Millis),
            Ok(Bound::Absolute(1000.0))
        );
        assert_eq!(
            parse_bound(&text("99.5%"), Unit::Percent),
            Ok(Bound::Absolute(99.5))
        );
        assert_eq!(
            parse_bound(&BoundSpec::Number(99.0), Unit::Percent),
            Ok(Bound::Absolute(99.0))
        );
        assert_eq!(
            parse_bound(&text("stable * 1.10"), Unit::Percent),
            Ok(Bound::Relative(1.1))
        );
        assert_eq!(
            parse_bound(&text("1.3*stable"), Unit::Millis),
            Ok(Bound::Relative(1.3))
        );
        assert_eq!(
            parse_bound(&text("2.5e8"), Unit::Value),
            Ok(Bound::Absolute(2.5e8))
        );
        assert!(parse_bound(&BoundSpec::Number(500.0), Unit::Millis)
            .unwrap_err()
            .contains("500ms"));
        assert!(parse_bound(&text("stable * -1"), Unit::Millis).is_err());
        assert!(parse_bound(&text("stable + 5"), Unit::Millis).is_err());
        assert!(parse_bound(&text("fast"), Unit::Millis).is_err());
    }

    #[test]
    fn names_default_to_the_metric() {
        assert_eq!(
            CheckSpec::builtin_min(Metric::SuccessRate, 99.0).display_name(),
            "success_rate"
        );
        assert_eq!(
            CheckSpec::latency_max(95.0, Duration::from_millis(400)).display_name(),
            "latency_p95"
        );
        assert_eq!(
            CheckSpec::latency_max(99.9, Duration::from_millis(400)).display_name(),
            "latency_p99.9"
        );
    }
}
