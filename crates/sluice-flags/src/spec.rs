//! What users write: flagd's flag definition format, plus sluice's
//! additions (`percentage`, `bucket_by`, `env`, set-level `segments`). A
//! flagd file is a valid [`FlagsSpec`], so flagd flags load unchanged.
//!
//! ```yaml
//! segments:
//!   beta: [acme, globex]          # {"segment": "beta"} in targeting
//! flags:
//!   new-builder:
//!     state: ENABLED
//!     variants: {on: true, off: false}
//!     defaultVariant: off
//!     percentage: 10              # 10% of targetingKeys get "on"
//!     bucket_by: tenant           # …or of this attribute instead
//!     env: {enabled: ENABLE_MAIN_BUILDER, percentage: MAIN_BUILDER_PERCENTAGE}
//!     targeting: {"if": [{"in": [{"var": "tenant"}, {"segment": "beta"}]}, "on", null]}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A set of flags as written (YAML or JSON); [`crate::FlagSet::from_spec`] validates it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagsSpec {
    /// flagd's schema reference; ignored.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The flags by key.
    #[serde(default)]
    pub flags: BTreeMap<String, FlagSpec>,
    /// flagd's shared rules: `{"$ref": "name"}` in targeting is replaced by `name`'s rule at load.
    #[serde(rename = "$evaluators", default, skip_serializing_if = "Map::is_empty")]
    pub evaluators: Map<String, Value>,
    /// Named lists of strings (tenants, users…): `{"segment": "name"}` in
    /// targeting is the list, and `{"in": [x, {"segment": "name"}]}` a set lookup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, Vec<String>>,
    /// Set-level metadata; every flag's metadata starts from it (flagd's rule).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// One flag as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// `ENABLED`, or `DISABLED` (evaluations answer reason DISABLED and no value).
    pub state: State,
    /// Variant name → value; all of one type: boolean, string, number or object.
    pub variants: Map<String, Value>,
    /// The variant served without targeting or when targeting gives `null`;
    /// absent or `null` means "no value: the caller's default".
    #[serde(rename = "defaultVariant", default)]
    pub default_variant: Option<String>,
    /// JsonLogic that evaluates to a variant name (or `null` for the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Value>,
    /// Free-form facts returned with every evaluation (strings, numbers, booleans).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// Boolean flags only, 0..=100: the share of bucketing keys served the
    /// `true` variant (the rest get the `false` one). Applies when there is
    /// no targeting or targeting gives `null`; reason SPLIT. It buckets as
    /// flagd's `fractional: [{"cat": [{"var": "$flagd.flagKey"}, {"var":
    /// ATTR}]}, [true-variant, w], [false-variant, 1000000 - w]]` with
    /// `w = percentage × 10000`, so a key keeps its bucket as the
    /// percentage moves. A context without the attribute answers
    /// TARGETING_KEY_MISSING (except at 0 and 100, which need no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// The context attribute (dotted path) whose value (a string or number)
    /// is bucketed, after the flag key; default `targetingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_by: Option<String>,
    /// Environment variables that override the file, read at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSpec>,
}

/// Legacy environment variables that win over the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    /// A boolean variable (`true/false`, `1/0`, `yes/no`, `on/off`) setting the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    /// A number 0..=100 (a trailing `%` is allowed) setting `percentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<String>,
}

/// Whether a flag is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Enabled,
    Disabled,
}

impl State {
    /// The wire name, `ENABLED` or `DISABLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enabled => "ENABLED",
            State::Disabled => "DISABLED",
        }
    }
}

/// The type of a flag's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    Boolean,
    String,
    Number,
    Object,
}

impl ValueKind {
    /// The kind of a JSON value; `None` for `null` and arrays, which flags cannot hold.
    pub fn of(value: &Value) -> Option<ValueKind> {
        match value {
            Value::Bool(_) => Some(ValueKind::Boolean),
            Value::String(_) => Some(ValueKind::String),
            Value::Number(_) => Some(ValueKind::Number),
            Value::Object(_) => Some(ValueKind::Object),
            Value::Null | Value::Array(_) => None,
        }
    }

    /// The lowercase name, e.g. `boolean`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Boolean => "boolean",
            ValueKind::String => "string",
            ValueKind::Number => "number",
            ValueKind::Object => "object",
        }
    }
}
