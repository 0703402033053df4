//! The `flags:` section: where feature flags come from (inline flagd-format
//! definitions, flagd flag files, watched) and who may evaluate them over
//! OFREP. The flag semantics live in sluice-flags; this checks what users
//! wrote and reports every error with its path.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flags::{FlagSet, FlagsSpec};

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
        }
    }
}

impl FlagsConfig {
    /// Errors of the inline definitions (env overrides are applied, and
    /// checked, when the flags are served) and of the other fields.
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Err(e) = FlagSet::from_spec(self.definitions.clone(), &|_| None) {
            errors.extend(e.errors().into_iter().map(|e| FieldError {
                path: format!("flags.definitions.{}", e.path),
                message: e.message,
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
