//! One validated, compiled flag: what listings show and what evaluation
//! reads. Built only by the loaders in `build.rs`; immutable afterwards
//! (a percentage change builds a new flag).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::logic::Expr;
use crate::{State, ValueKind};

/// A flag of a [`crate::FlagSet`].
#[derive(Clone, Debug)]
pub struct Flag {
    pub(crate) key: Box<str>,
    /// The key as a JSON string, what `$flagd.flagKey` answers.
    pub(crate) key_value: Value,
    pub(crate) state: State,
    /// Sorted by name.
    pub(crate) variants: Box<[(Box<str>, Value)]>,
    pub(crate) default_variant: Option<usize>,
    pub(crate) kind: Option<ValueKind>,
    pub(crate) rule: Rule,
    /// The targeting as loaded, with `$ref`s resolved.
    pub(crate) targeting: Option<Value>,
    pub(crate) percentage: Option<Percentage>,
    /// Set-level metadata overlaid with the flag's own.
    pub(crate) metadata: Map<String, Value>,
    pub(crate) source: Arc<str>,
    pub(crate) overrides: Vec<EnvOverride>,
    /// The segments the targeting refers to, with their members (for the fingerprint).
    pub(crate) segments: BTreeMap<String, Vec<String>>,
    /// Digest of everything above that changes an evaluation.
    pub(crate) digest: u128,
}

/// The compiled targeting.
#[derive(Clone, Debug)]
pub(crate) enum Rule {
    None,
    Targeting(Expr),
    /// Loaded leniently with targeting that does not compile: every
    /// evaluation answers PARSE_ERROR with this message (as flagd does).
    Broken(String),
}

/// A boolean flag's percentage rollout.
#[derive(Clone, Debug)]
pub(crate) struct Percentage {
    pub percentage: f64,
    /// `percentage` in millionths of the keys (see [`crate::bucket`]).
    pub weight: u64,
    /// Index of the `true` variant.
    pub on: usize,
    /// Index of the `false` variant.
    pub off: usize,
    /// Dotted path of the bucketing attribute; `None` for `targetingKey`.
    pub bucket_by: Option<Box<[Box<str>]>>,
}

/// An environment variable that overrode the file when the flag was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvOverride {
    /// `state` or `percentage`.
    pub field: &'static str,
    /// The variable's name, e.g. `ENABLE_MAIN_BUILDER`.
    pub variable: String,
    /// Its value as read.
    pub value: String,
}

// === impl Flag ===

impl Flag {
    /// The flag's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// ENABLED or DISABLED, after environment overrides.
    pub fn state(&self) -> State {
        self.state
    }

    /// Variant names and values, sorted by name.
    pub fn variants(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.variants.iter().map(|(name, value)| (&**name, value))
    }

    /// The value of one variant.
    pub fn variant(&self, name: &str) -> Option<&Value> {
        self.index_of(name).map(|i| &self.variants[i].1)
    }

    /// The default variant's name, if the flag has one.
    pub fn default_variant(&self) -> Option<&str> {
        self.default_variant.map(|i| &*self.variants[i].0)
    }

    /// The type of the flag's values (`None` only for flags loaded leniently with mixed types).
    pub fn kind(&self) -> Option<ValueKind> {
        self.kind
    }

    /// The targeting rule as loaded, `$ref`s resolved.
    pub fn targeting(&self) -> Option<&Value> {
        self.targeting.as_ref()
    }

    /// The percentage rollout (0..=100), after environment overrides.
    pub fn percentage(&self) -> Option<f64> {
        self.percentage.as_ref().map(|p| p.percentage)
    }

    /// The bucketing attribute of the percentage rollout (`targetingKey` when not set).
    pub fn bucket_by(&self) -> Option<String> {
        let percentage = self.percentage.as_ref()?;
        Some(match &percentage.bucket_by {
            None => "targetingKey".to_string(),
            Some(path) => path.join("."),
        })
    }

    /// Metadata returned with every evaluation (set-level overlaid with the flag's).
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Where the flag was loaded from (see [`crate::FlagSet::with_source`]).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The environment variables that overrode the file.
    pub fn env_overrides(&self) -> &[EnvOverride] {
        &self.overrides
    }

    /// Why the targeting did not compile, for flags loaded leniently.
    pub fn parse_error(&self) -> Option<&str> {
        match &self.rule {
            Rule::Broken(message) => Some(message),
            _ => None,
        }
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|(n, _)| &**n == name)
    }

    pub(crate) fn variant_names(&self) -> String {
        let names: Vec<&str> = self.variants.iter().map(|(n, _)| &**n).collect();
        format!("[{}]", names.join(", "))
    }
}
