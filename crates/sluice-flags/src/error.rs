//! What can go wrong: at load time a [`FlagsError`] listing every broken
//! rule with its field path; at evaluation time a [`Reason`] and, for
//! failures, an [`ErrorCode`] with OpenFeature's names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One broken rule, at one place in a flag definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Where, as `flags.new-builder.targeting.if[0]` (empty for the document itself).
    pub path: String,
    /// Which rule broke, naming the offending value.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a flag definition (or a change to a flag set) was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FlagsError {
    /// Not valid JSON, a wrong type, or an unknown field (serde stops at the first).
    #[error("{0}")]
    Parse(FieldError),
    /// Well-formed, but breaking these rules; all of them are listed.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl FlagsError {
    /// Every error, parse or semantic, as a list.
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            FlagsError::Parse(e) => vec![e.clone()],
            FlagsError::Invalid(errors) => errors.clone(),
        }
    }

    pub(crate) fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        FlagsError::Invalid(vec![FieldError::new(path, message)])
    }
}

/// Why an evaluation gave the value it gave (OpenFeature / OFREP names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no targeting and no percentage: the default variant.
    Static,
    /// Targeting chose a variant.
    TargetingMatch,
    /// A pseudorandom split (`fractional` or `percentage`) chose a variant.
    Split,
    /// Targeting ran and chose nothing (`null`): the default variant.
    Default,
    /// The flag is disabled or the kill switch is on: no value, the caller's default applies.
    Disabled,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    /// The wire name, e.g. `TARGETING_MATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an evaluation failed (OpenFeature / OFREP names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag has this key.
    FlagNotFound,
    /// The flag's targeting could not be compiled (only flags loaded leniently).
    ParseError,
    /// A percentage rollout needs a bucketing key the context does not have.
    TargetingKeyMissing,
    /// The context is not an object, or a bucketing attribute has an unusable type.
    InvalidContext,
    /// The value is not of the type the caller asked for.
    TypeMismatch,
    /// Anything else, e.g. targeting named a variant the flag does not have.
    General,
}

impl ErrorCode {
    /// The wire name, e.g. `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
