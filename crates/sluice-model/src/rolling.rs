//! The config of the pool-replacing strategies, `rolling` and `recreate`:
//! how many endpoints may be above or below the new pool's size while it
//! replaces the old one (`max_surge`, `max_unavailable`, as Kubernetes
//! means them), the active health check that admits a new endpoint, and
//! recreate's `Retry-After`. Not the plan itself: that depends on the pools'
//! sizes and is made by the rollout core when a rollout starts.

use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::RolloutSpec;
use crate::{duration, FieldError, Strategy};

/// A number of endpoints, or a percentage of the new pool's size (`"25%"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Count(u32),
    /// 0 to 100.
    Percent(f64),
}

// === impl Amount ===

impl Amount {
    /// The count for a pool of `size`: a percentage rounds up (`up`, as
    /// Kubernetes rounds `maxSurge`) or down (as it rounds `maxUnavailable`).
    pub fn resolve(self, size: usize, up: bool) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => {
                let exact = size as f64 * p / 100.0;
                // A tolerance keeps 3 × 33.333…% from rounding up to 2.
                if up {
                    (exact - 1e-9).ceil().max(0.0) as usize
                } else {
                    (exact + 1e-9).floor() as usize
                }
            }
        }
    }

    fn is_zero(self) -> bool {
        match self {
            Amount::Count(n) => n == 0,
            Amount::Percent(p) => p == 0.0,
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u32(*n),
            Amount::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number of endpoints (e.g. 1) or a percentage (e.g. \"25%\")")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Amount, E> {
                u32::try_from(n)
                    .map(Amount::Count)
                    .map_err(|_| E::custom(format!("{n} endpoints is too many")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Amount, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} is negative")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Amount, E> {
                let bad = || {
                    E::custom(format!(
                        "{text:?} is not a count or a percentage from 0% to 100%"
                    ))
                };
                let Some(number) = text.trim().strip_suffix('%') else {
                    return text.trim().parse().map(Amount::Count).map_err(|_| bad());
                };
                match number.trim().parse::<f64>() {
                    Ok(p) if (0.0..=100.0).contains(&p) => Ok(Amount::Percent(p)),
                    _ => Err(bad()),
                }
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}

/// Probing of each new endpoint before it is admitted (and while it serves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// The path probed with a GET, starting with `/`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between two probes of an endpoint (at least 100ms).
    #[serde(default = "default_health_interval", with = "crate::duration")]
    pub interval: Duration,
    /// A probe without a response head within this long fails (above 0).
    #[serde(default = "default_health_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Passing probes in a row that make an endpoint healthy (at least 1).
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Failing probes in a row that make an endpoint unhealthy (at least 1).
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// The statuses that pass: `2xx`, `200-399` or `204` (default `2xx`).
    #[serde(default)]
    pub expect: StatusRange,
}

fn default_health_path() -> String {
    "/healthz".to_string()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// An inclusive range of HTTP statuses, written `2xx`, `200-399` or `204`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

// === impl StatusRange ===

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }

    /// Parses `2xx`, `200-399` or `204` (statuses 100 to 599).
    pub fn parse(text: &str) -> Result<StatusRange, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not a status range like 2xx, 200-399 or 204");
        let status = |s: &str| -> Result<u16, String> {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(bad)
        };
        let range = if let Some(class) = text.strip_suffix("xx").or(text.strip_suffix("XX")) {
            let digit: u16 = class
                .parse()
                .ok()
                .filter(|d| (1..=5).contains(d))
                .ok_or_else(bad)?;
            StatusRange {
                min: digit * 100,
                max: digit * 100 + 99,
            }
        } else if let Some((min, max)) = text.split_once('-') {
            StatusRange {
                min: status(min)?,
                max: status(max)?,
            }
        } else {
            let one = status(text)?;
            StatusRange { min: one, max: one }
        };
        if range.min > range.max {
            return Err(bad());
        }
        Ok(range)
    }
}

impl Default for StatusRange {
    fn default() -> Self {
        StatusRange { min: 200, max: 299 }
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min % 100 == 0 && self.max == self.min + 99 {
            write!(f, "{}xx", self.min / 100)
        } else if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StatusRange, D::Error> {
        struct RangeVisitor;
        impl Visitor<'_> for RangeVisitor {
            type Value = StatusRange;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status range like 2xx, 200-399 or 204")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusRange, E> {
                StatusRange::parse(&n.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<StatusRange, E> {
                StatusRange::parse(text).map_err(E::custom)
            }
        }
        d.deserialize_any(RangeVisitor)
    }
}

// === impl RolloutSpec (rolling, recreate) ===

impl RolloutSpec {
    /// Whether the strategy replaces one pool by another (`rolling`, `recreate`).
    pub fn replaces_pools(&self) -> bool {
        matches!(self.strategy, Strategy::Rolling | Strategy::Recreate)
    }

    /// `max_surge` for a new pool of `size` (default 1; a percentage rounds up).
    pub fn surge(&self, size: usize) -> usize {
        self.max_surge
            .unwrap_or(Amount::Count(1))
            .resolve(size, true)
    }

    /// `max_unavailable` for a new pool of `size` (default 0; a percentage rounds down).
    /// When both resolve to 0 (small percentages of a small pool), one endpoint
    /// may be unavailable, as Kubernetes does, so that the replacement moves.
    pub fn unavailable(&self, size: usize) -> usize {
        let unavailable = self
            .max_unavailable
            .unwrap_or(Amount::Count(0))
            .resolve(size, false);
        if unavailable == 0 && self.surge(size) == 0 {
            1
        } else {
            unavailable
        }
    }

    /// The `Retry-After` of recreate's gap (default 5s).
    pub fn gap_retry_after(&self) -> Duration {
        self.retry_after.unwrap_or(Duration::from_secs(5))
    }
}

/// The rules of the rolling and recreate fields, and that the other
/// strategies do not use them.
pub(crate) fn validate(rollout: &RolloutSpec, path: &str, errors: &mut Vec<FieldError>) {
    let mut push = |field: &str, message: String| {
        errors.push(FieldError {
            path: format!("{path}.{field}"),
            message,
        })
    };
    let strategy = rollout.strategy;
    let rolling = strategy == Strategy::Rolling;
    let name = match strategy {
        Strategy::Canary => "canary",
        Strategy::Ab => "ab",
        Strategy::BlueGreen => "blue_green",
        Strategy::Shadow => "shadow",
        Strategy::Rolling => "rolling",
        Strategy::Recreate => "recreate",
    };
    if !rolling {
        for (field, set) in [
            ("max_surge", rollout.max_surge.is_some()),
            ("max_unavailable", rollout.max_unavailable.is_some()),
        ] {
            if set {
                push(field, "only the `rolling` strategy uses it".to_string());
            }
        }
    }
    if strategy != Strategy::Recreate && rollout.retry_after.is_some() {
        push(
            "retry_after",
            "only the `recreate` strategy has a gap to answer".to_string(),
        );
    }
    if !rollout.replaces_pools() {
        if rollout.health_check.is_some() {
            push(
                "health_check",
                "only the `rolling` and `recreate` strategies admit endpoints by health check"
                    .to_string(),
            );
        }
        return;
    }
    if rollout.steps.is_some()
        || rollout.step_weights.is_some()
        || rollout.step_weight.is_some()
        || rollout.max_weight.is_some()
    {
        push(
            "strategy",
            format!("{name} derives its steps from the pools' sizes: remove `steps`, `step_weights`, `step_weight` and `max_weight`"),
        );
    }
    let zero =
        |amount: Option<Amount>, default: u32| amount.unwrap_or(Amount::Count(default)).is_zero();
    if rolling && zero(rollout.max_surge, 1) && zero(rollout.max_unavailable, 0) {
        push(
            "max_surge",
            "max_surge and max_unavailable cannot both be 0: the old pool could never be replaced"
                .to_string(),
        );
    }
    if rollout.retry_after.is_some_and(|d| d.is_zero()) {
        push("retry_after", "must be at least 1s".to_string());
    }
    if let Some(check) = &rollout.health_check {
        if !check.path.starts_with('/') {
            push(
                "health_check.path",
                format!("{:?} must start with '/'", check.path),
            );
        }
        if check.interval < Duration::from_millis(100) {
            push(
                "health_check.interval",
                format!(
                    "{} is shorter than the 100ms minimum",
                    duration::format(check.interval)
                ),
            );
        }
        if check.timeout.is_zero() {
            push("health_check.timeout", "must be longer than 0".to_string());
        }
        for (field, value) in [
            ("healthy_threshold", check.healthy_threshold),
            ("unhealthy_threshold", check.unhealthy_threshold),
        ] {
            if value == 0 {
                push(
                    &format!("health_check.{field}"),
                    "must be at least 1 (probes in a row)".to_string(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let quarter = Amount::Percent(25.0);
        assert_eq!(quarter.resolve(10, true), 3);
        assert_eq!(quarter.resolve(10, false), 2);
        assert_eq!(quarter.resolve(4, true), 1);
        assert_eq!(Amount::Percent(100.0 / 3.0).resolve(3, true), 1);
        assert_eq!(Amount::Count(2).resolve(10, false), 2);
    }

    #[test]
    fn amounts_and_ranges_read_what_people_write() {
        let amount = |text: &str| serde_json::from_str::<Amount>(text);
        assert_eq!(amount("2").unwrap(), Amount::Count(2));
        assert_eq!(amount("\"25%\"").unwrap(), Amount::Percent(25.0));
        assert!(amount("\"125%\"").is_err());
        assert!(amount("-1").is_err());
        assert_eq!(
            serde_json::to_string(&Amount::Percent(25.0)).unwrap(),
            "\"25%\""
        );

        assert_eq!(StatusRange::parse("2xx").unwrap(), StatusRange::default());
        assert_eq!(
            StatusRange::parse("200-399").unwrap(),
            StatusRange { min: 200, max: 399 }
        );
        assert_eq!(StatusRange::parse("204").unwrap().to_string(), "204");
        assert!(StatusRange::parse("399-200").is_err());
        assert!(StatusRange::parse("9xx").is_err());
    }
}
