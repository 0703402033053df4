//! Rollout webhooks, with Flagger's hook points and meaning: gates
//! (`confirm_rollout`, `confirm_traffic_increase`, `confirm_promotion`),
//! checks (`pre_rollout` before any traffic, `rollout` every interval), an
//! external stop (`rollback`), and announcements (`post_rollout`, `event`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::FieldError;

/// When a webhook is called and what its answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookType {
    /// Before a rollout starts; a non-2xx answer keeps it waiting (asked again every interval).
    ConfirmRollout,
    /// After the rollout is created, before any traffic; a failure rolls it back with the answer.
    PreRollout,
    /// Every analysis interval (e.g. a load test); a failure is a failed check.
    Rollout,
    /// Before each weight increase; a non-2xx answer holds the weight.
    ConfirmTrafficIncrease,
    /// Before promotion; a non-2xx answer holds at the last step.
    ConfirmPromotion,
    /// After promotion or rollback (its answer is only logged).
    PostRollout,
    /// Asked every interval: a 2xx answer rolls the rollout back.
    Rollback,
    /// Told about every decision (its answer is only logged).
    Event,
}

impl HookType {
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm_rollout",
            HookType::PreRollout => "pre_rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm_traffic_increase",
            HookType::ConfirmPromotion => "confirm_promotion",
            HookType::PostRollout => "post_rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }
}

/// One webhook of a rollout plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Shown in decisions and logs.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: HookType,
    /// `http://` or `https://` URL that gets a JSON POST.
    pub url: String,
    /// Longest wait for one attempt.
    #[serde(default = "default_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Attempts after the first on a transport error or a 5xx (backoff from 200ms).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Passed as `metadata` in the payload (Flagger's field), e.g. a load test's settings.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    2
}

pub(crate) fn validate_webhooks(hooks: &[WebhookSpec], path: &str, errors: &mut Vec<FieldError>) {
    let mut names = std::collections::HashSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let at = |field: &str| format!("{path}.webhooks[{i}].{field}");
        if hook.name.trim().is_empty() {
            errors.push(FieldError {
                path: at("name"),
                message: "must not be empty".into(),
            });
        } else if !names.insert(hook.name.as_str()) {
            errors.push(FieldError {
                path: at("name"),
                message: format!("webhook {:?} is defined twice", hook.name),
            });
        }
        let url = hook.url.as_str();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            errors.push(FieldError {
                path: at("url"),
                message: format!("{url:?} is not an http:// or https:// URL with a host"),
            });
        }
        if hook.timeout.is_zero() {
            errors.push(FieldError {
                path: at("timeout"),
                message: "must be longer than 0".into(),
            });
        }
        if hook.retries > 10 {
            errors.push(FieldError {
                path: at("retries"),
                message: format!("{} is above 10", hook.retries),
            });
        }
    }
}
