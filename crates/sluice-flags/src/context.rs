//! The evaluation context: the caller's attributes (with `targetingKey`)
//! and the time of the request, given as a value so that evaluation reads
//! no clock. flagd's `$flagd.flagKey` and `$flagd.timestamp` are not stored
//! here: the evaluator answers them per flag, so one context serves a bulk
//! evaluation of every flag without a copy.

use serde_json::{Map, Value};

use crate::ErrorCode;

/// Attributes of the subject of an evaluation, plus the current time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    attributes: Map<String, Value>,
    now_unix_seconds: i64,
}

impl Context {
    /// `attributes` is the OFREP `context` object (`targetingKey` plus any
    /// attributes); `now_unix_seconds` is what `$flagd.timestamp` answers.
    pub fn new(attributes: Map<String, Value>, now_unix_seconds: i64) -> Self {
        Context {
            attributes,
            now_unix_seconds,
        }
    }

    /// A context with no attributes.
    pub fn empty(now_unix_seconds: i64) -> Self {
        Context::new(Map::new(), now_unix_seconds)
    }

    /// Takes a JSON value that must be an object (`null` counts as empty);
    /// anything else is `INVALID_CONTEXT`.
    pub fn from_value(value: Value, now_unix_seconds: i64) -> Result<Self, ErrorCode> {
        match value {
            Value::Object(map) => Ok(Context::new(map, now_unix_seconds)),
            Value::Null => Ok(Context::empty(now_unix_seconds)),
            _ => Err(ErrorCode::InvalidContext),
        }
    }

    /// Sets one attribute (builder style, for tests and examples).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets `targetingKey`.
    pub fn with_targeting_key(self, key: impl Into<String>) -> Self {
        self.with("targetingKey", key.into())
    }

    /// `targetingKey` when it is a string.
    pub fn targeting_key(&self) -> Option<&str> {
        self.attributes.get("targetingKey").and_then(Value::as_str)
    }

    /// All attributes as given.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// The time of the request, in seconds since the Unix epoch.
    pub fn now_unix_seconds(&self) -> i64 {
        self.now_unix_seconds
    }
}
