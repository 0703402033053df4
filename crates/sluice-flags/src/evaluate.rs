//! Evaluation: a flag and a context in, an [`Evaluation`] out, with
//! flagd's semantics (reasons, `null` → default variant, disabled → no
//! value). The result borrows the flag's variant name, value and metadata,
//! so a flag without targeting is evaluated without allocating; targeting
//! allocates only for values it computes.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::bucket;
use crate::flag::{Flag, Percentage, Rule};
use crate::logic::value::js_string;
use crate::logic::Env;
use crate::{Context, ErrorCode, FlagSet, Reason, State, ValueKind};

static NO_METADATA: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// The outcome of evaluating one flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation<'a> {
    pub key: &'a str,
    /// `None`: use the caller's default (flag disabled, no default variant, or an error).
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    /// Set exactly when `reason` is ERROR.
    pub error: Option<(ErrorCode, String)>,
    pub metadata: &'a Map<String, Value>,
}

// === impl Evaluation ===

impl<'a> Evaluation<'a> {
    /// The error code, if evaluation failed.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.as_ref().map(|(code, _)| *code)
    }

    /// Turns a value of another type into TYPE_MISMATCH (for typed callers;
    /// OFREP itself is untyped).
    pub fn expect_kind(self, kind: ValueKind) -> Evaluation<'a> {
        match self.value {
            Some(value) if ValueKind::of(value) != Some(kind) => Evaluation {
                value: None,
                variant: None,
                reason: Reason::Error,
                error: Some((
                    ErrorCode::TypeMismatch,
                    format!(
                        "flag \"{}\" is not a {} flag: {value}",
                        self.key,
                        kind.as_str()
                    ),
                )),
                ..self
            },
            _ => self,
        }
    }

    fn failed(flag: &'a Flag, code: ErrorCode, message: String) -> Evaluation<'a> {
        Evaluation {
            key: flag.key(),
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some((code, message)),
            metadata: &flag.metadata,
        }
    }

    fn served(flag: &'a Flag, variant: Option<usize>, reason: Reason) -> Evaluation<'a> {
        let chosen = variant.map(|i| &flag.variants[i]);
        Evaluation {
            key: flag.key(),
            value: chosen.map(|(_, value)| value),
            variant: chosen.map(|(name, _)| &**name),
            reason,
            error: None,
            metadata: &flag.metadata,
        }
    }
}

// === impl Flag ===

impl Flag {
    /// Evaluates this flag. `kill_switch` turns every flag off at once
    /// (reason DISABLED, as if the flag were disabled).
    pub fn evaluate(&self, ctx: &Context, kill_switch: bool) -> Evaluation<'_> {
        if kill_switch || self.state == State::Disabled {
            return Evaluation::served(self, None, Reason::Disabled);
        }
        let targeted = match &self.rule {
            Rule::None => false,
            Rule::Broken(message) => {
                return Evaluation::failed(self, ErrorCode::ParseError, message.clone());
            }
            Rule::Targeting(expr) => {
                let env = Env {
                    ctx,
                    flag_key: &self.key_value,
                    data: None,
                };
                let (result, split) = expr.eval_top(&env);
                if !result.is_null() {
                    let reason = if split {
                        Reason::Split
                    } else {
                        Reason::TargetingMatch
                    };
                    return match self.variant_named(&result) {
                        Some(i) => Evaluation::served(self, Some(i), reason),
                        None => Evaluation::failed(
                            self,
                            ErrorCode::General,
                            format!(
                                "targeting gave {result}, which is not one of the variants {}",
                                self.variant_names()
                            ),
                        ),
                    };
                }
                true
            }
        };
        if let Some(percentage) = &self.percentage {
            return match percentage.decide(self, ctx) {
                Ok(i) => Evaluation::served(self, Some(i), Reason::Split),
                Err((code, message)) => Evaluation::failed(self, code, message),
            };
        }
        let reason = if targeted {
            Reason::Default
        } else if self.default_variant.is_some() {
            Reason::Static
        } else {
            Reason::Default
        };
        Evaluation::served(self, self.default_variant, reason)
    }

    /// The variant a targeting result names: a string, or a boolean or
    /// number read as its text (flagd reads `true` as variant "true").
    fn variant_named(&self, result: &Value) -> Option<usize> {
        match result {
            Value::String(name) => self.index_of(name),
            Value::Bool(b) => self.index_of(if *b { "true" } else { "false" }),
            Value::Number(_) => self.index_of(&js_string(result)),
            _ => None,
        }
    }
}

// === impl Percentage ===

impl Percentage {
    fn decide(&self, flag: &Flag, ctx: &Context) -> Result<usize, (ErrorCode, String)> {
        if self.weight == 0 {
            return Ok(self.off);
        }
        if self.weight >= bucket::PERCENT_TOTAL {
            return Ok(self.on);
        }
        let attribute = match &self.bucket_by {
            None => ctx.attributes().get("targetingKey"),
            Some(path) => {
                let mut at = path
                    .first()
                    .and_then(|first| ctx.attributes().get(&**first));
                for segment in path.iter().skip(1) {
                    at = at.and_then(|value| value.get(&**segment));
                }
                at
            }
        };
        let name = || flag.bucket_by().unwrap_or_default();
        let hash = match attribute {
            Some(Value::String(s)) if !s.is_empty() => {
                bucket::hash(flag.key.as_bytes(), s.as_bytes())
            }
            Some(Value::Number(n)) => bucket::hash(flag.key.as_bytes(), n.to_string().as_bytes()),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err((
                    ErrorCode::TargetingKeyMissing,
                    format!(
                        "the percentage rollout buckets on \"{}\", which the context lacks",
                        name()
                    ),
                ));
            }
            Some(other) => {
                return Err((
                    ErrorCode::InvalidContext,
                    format!(
                        "\"{}\" must be a string or a number to bucket on, not {other}",
                        name()
                    ),
                ));
            }
        };
        if bucket::bucket(hash, bucket::PERCENT_TOTAL) < self.weight {
            Ok(self.on)
        } else {
            Ok(self.off)
        }
    }
}

// === impl FlagSet ===

impl FlagSet {
    /// Evaluates the flag `key`; FLAG_NOT_FOUND when there is none.
    pub fn evaluate<'a>(
        &'a self,
        key: &'a str,
        ctx: &Context,
        kill_switch: bool,
    ) -> Evaluation<'a> {
        match self.get(key) {
            Some(flag) => flag.evaluate(ctx, kill_switch),
            None => Evaluation {
                key,
                value: None,
                variant: None,
                reason: Reason::Error,
                error: Some((ErrorCode::FlagNotFound, format!("no flag \"{key}\""))),
                metadata: &NO_METADATA,
            },
        }
    }

    /// Evaluates every flag, in key order (OFREP's bulk evaluation).
    pub fn evaluate_all<'a>(
        &'a self,
        ctx: &'a Context,
        kill_switch: bool,
    ) -> impl Iterator<Item = Evaluation<'a>> + 'a {
        self.flags()
            .map(move |flag| flag.evaluate(ctx, kill_switch))
    }

    /// A boolean flag's value, or `default` when the flag gives none
    /// (disabled, no default variant); an error code when evaluation fails.
    pub fn evaluate_bool(
        &self,
        key: &str,
        ctx: &Context,
        default: bool,
    ) -> Result<bool, ErrorCode> {
        self.typed(key, ctx, ValueKind::Boolean, default, Value::as_bool)
    }

    /// A string flag's value, or `default` when the flag gives none.
    pub fn evaluate_string<'a>(
        &'a self,
        key: &str,
        ctx: &Context,
        default: &'a str,
    ) -> Result<&'a str, ErrorCode> {
        self.typed(key, ctx, ValueKind::String, default, Value::as_str)
    }

    /// A number flag's value, or `default` when the flag gives none.
    pub fn evaluate_number(
        &self,
        key: &str,
        ctx: &Context,
        default: f64,
    ) -> Result<f64, ErrorCode> {
        self.typed(key, ctx, ValueKind::Number, default, Value::as_f64)
    }

    /// A number flag's value as an integer; TYPE_MISMATCH when it has a fraction.
    pub fn evaluate_int(&self, key: &str, ctx: &Context, default: i64) -> Result<i64, ErrorCode> {
        let integral = |v: &Value| {
            v.as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        };
        let value = self.typed(key, ctx, ValueKind::Number, None, |v| Some(Some(v)))?;
        match value {
            None => Ok(default),
            Some(v) => integral(v).ok_or(ErrorCode::TypeMismatch),
        }
    }

    /// An object flag's value, or `default` when the flag gives none.
    pub fn evaluate_object<'a>(
        &'a self,
        key: &str,
        ctx: &Context,
        default: &'a Map<String, Value>,
    ) -> Result<&'a Map<String, Value>, ErrorCode> {
        self.typed(key, ctx, ValueKind::Object, default, Value::as_object)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        ctx: &Context,
        kind: ValueKind,
        default: T,
        extract: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, ErrorCode> {
        let Some(flag) = self.get(key) else {
            return Err(ErrorCode::FlagNotFound);
        };
        let evaluation = flag.evaluate(ctx, false).expect_kind(kind);
        if let Some(code) = evaluation.error_code() {
            return Err(code);
        }
        match evaluation.value {
            None => Ok(default),
            Some(value) => extract(value).ok_or(ErrorCode::TypeMismatch),
        }
    }
}
