//! The `flags:` section: where feature flags come from (inline flagd-format
//! definitions, flagd flag files, watched) and who may evaluate them over
//! OFREP. The flag semantics live in sluice-flags; this checks what users
//! wrote and reports every error with its path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flags::{FlagSet, FlagsSpec};

use crate::check::Provider;
use crate::config::{Judge, RolloutSpec};
use crate::validate::FieldError;

/// The `flags:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsConfig {
    /// Flags written inline, in flagd's format plus sluice's additions
    /// (`percentage`, `bucket_by`, `env`, `segments`).
    #[serde(default)]
    pub definitions: FlagsSpec,
    /// flagd flag-definition files (JSON or YAML); re-read when they change.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// How often the files are checked for changes.
    #[serde(default = "default_watch_interval", with = "crate::duration")]
    pub watch_interval: Duration,
    /// Tokens accepted for OFREP evaluation (as `Authorization: Bearer` or
    /// `X-API-Key`), besides the admin token. With no admin token and no read
    /// token, evaluation is open (the admin listener is loopback by default).
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// Release plans by flag key: the rollout core's steps drive the flag's
    /// percentage, and its checks promote or roll back.
    #[serde(default)]
    pub release_plans: BTreeMap<String, ReleasePlan>,
}

/// A boolean flag's ramp: steps (percentages, holds, manual gates) and the
/// Prometheus checks judged every interval, exactly as for traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePlan {
    /// Steps, interval, threshold and checks (`services[].rollout`'s fields).
    pub plan: RolloutSpec,
    /// What `{{version}}` (or `{{variant}}`) becomes in check queries for the
    /// new and the old code path, e.g. `implementation="{{version}}"`.
    #[serde(default)]
    pub labels: VariantLabels,
    /// On rollback: `immediate` (percentage 0 at once) or `gradual` (back
    /// down the plan's steps, one per interval).
    #[serde(default)]
    pub rollback: RollbackMode,
}

/// Query labels of the two code paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantLabels {
    #[serde(default = "default_canary_label")]
    pub canary: String,
    #[serde(default = "default_stable_label")]
    pub stable: String,
}

fn default_canary_label() -> String {
    "new".into()
}
fn default_stable_label() -> String {
    "old".into()
}

impl Default for VariantLabels {
    fn default() -> Self {
        VariantLabels {
            canary: default_canary_label(),
            stable: default_stable_label(),
        }
    }
}

/// How a release plan backs out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    #[default]
    Immediate,
    Gradual,
}

/// The controller's name for a flag's release plan (not a valid service name,
/// so it never collides with one).
pub fn release_plan_name(flag: &str) -> String {
    format!("flag:{flag}")
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for FlagsConfig {
    fn default() -> Self {
        FlagsConfig {
            definitions: FlagsSpec::default(),
            files: Vec::new(),
            watch_interval: default_watch_interval(),
            read_tokens: Vec::new(),
            release_plans: BTreeMap::new(),
        }
    }
}

impl FlagsConfig {
    /// Errors of the inline definitions (env overrides are applied, and
    /// checked, when the flags are served) and of the other fields.
    pub(crate) fn validate(
        &self,
        validate_rollout: &mut dyn FnMut(&RolloutSpec, &str),
        errors: &mut Vec<FieldError>,
    ) {
        for (key, release) in &self.release_plans {
            let path = format!("flags.release_plans.{key}");
            validate_rollout(&release.plan, &format!("{path}.plan"));
            if release.plan.strategy != crate::Strategy::Canary {
                errors.push(FieldError {
                    path: format!("{path}.plan.strategy"),
                    message: "a release plan ramps the flag's percentage: only `canary` applies (no requests to match or mirror)".into(),
                });
            }
            if release.plan.tenant_header.is_some() {
                errors.push(FieldError {
                    path: format!("{path}.plan.tenant_header"),
                    message: "a release plan ramps the flag's percentage: tenant cohorts are flag targeting (segments), not plan steps".into(),
                });
            }
            if release.plan.judge != Judge::Threshold {
                errors.push(FieldError {
                    path: format!("{path}.plan.judge"),
                    message: "a release plan is judged by its Prometheus checks (the proxy does not see flag variants): use threshold".into(),
                });
            }
            for (i, check) in release.plan.checks.iter().enumerate() {
                if check.provider() != Provider::Prometheus {
                    errors.push(FieldError {
                        path: format!("{path}.plan.checks[{i}]"),
                        message: "a release plan's checks need a Prometheus query (the proxy does not see flag variants)".into(),
                    });
                }
            }
            if release.labels.canary == release.labels.stable {
                errors.push(FieldError {
                    path: format!("{path}.labels"),
                    message: "the canary and stable labels must differ".into(),
                });
            }
        }
        if let Err(e) = FlagSet::from_spec(self.definitions.clone(), &|_| None) {
            errors.extend(e.errors().into_iter().map(|mut e| {
                e.path = format!("flags.definitions.{}", e.path);
                e
            }));
        }
        if self.watch_interval < Duration::from_millis(100) {
            errors.push(FieldError {
                path: "flags.watch_interval".into(),
                message: "must be at least 100ms".into(),
            });
        }
        for (i, token) in self.read_tokens.iter().enumerate() {
            if token.trim().len() < 8 {
                errors.push(FieldError {
                    path: format!("flags.read_tokens[{i}]"),
                    message: "a token shorter than 8 characters protects little".into(),
                });
            }
        }
    }
}
