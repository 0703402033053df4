//! flagd's custom operators: `fractional` (deterministic weighted split,
//! see [`crate::bucket`]), `sem_ver`, `starts_with`, `ends_with`. Each gives
//! `null` on unusable input, so that the flag falls back to its default
//! variant instead of naming a variant "false" (flagd issue 1874).

use std::borrow::Cow;

use serde_json::Value;

use super::eval::Env;
use super::{semver, Compiler, Expr};
use crate::bucket;

static NULL: Value = Value::Null;

/// The largest single weight and sum of weights flagd accepts.
const MAX_WEIGHT: u64 = i32::MAX as u64;

/// `{"fractional": [bucketBy?, [variant, weight?], ...]}`.
#[derive(Clone, Debug)]
pub(crate) struct Fractional {
    /// Evaluates to the bucketing string; without it, `flagKey + targetingKey`.
    bucket_by: Option<Expr>,
    /// Variant expression and weight expression (absent: 1) per bucket.
    buckets: Box<[(Expr, Option<Expr>)]>,
    /// The weights when all are constants, resolved at load.
    static_weights: Option<Box<[u64]>>,
    /// The rule is malformed: always `null`.
    broken: bool,
}

// === impl Fractional ===

impl Fractional {
    pub(crate) fn compile(compiler: &mut Compiler<'_>, args: &[Value], path: &str) -> Expr {
        let (bucket_by, entries) = match args.split_first() {
            Some((first, rest)) if !first.is_array() => (
                Some(compiler.compile(first, &format!("{path}[0]"))),
                (rest, 1),
            ),
            _ => (None, (args, 0)),
        };
        let (entries, offset) = entries;
        let mut broken = entries.is_empty();
        if broken {
            compiler.lint(path, "needs at least one [variant, weight] entry");
        }
        let mut buckets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let here = format!("{path}[{}]", i + offset);
            match entry.as_array().map(Vec::as_slice) {
                Some([variant, rest @ ..]) if rest.len() <= 1 => {
                    let variant = compiler.compile(variant, &format!("{here}[0]"));
                    let weight = rest
                        .first()
                        .map(|w| compiler.compile(w, &format!("{here}[1]")));
                    if let Some(Expr::Lit(w)) = &weight {
                        if let Err(message) = weight_of(w) {
                            compiler.lint(&format!("{here}[1]"), message);
                            broken = true;
                        }
                    }
                    buckets.push((variant, weight));
                }
                _ => {
                    compiler.lint(&here, "expects [variant] or [variant, weight]");
                    broken = true;
                }
            }
        }
        let static_weights = constant_weights(&buckets);
        if let Some(weights) = &static_weights {
            if weights.iter().sum::<u64>() > MAX_WEIGHT {
                compiler.lint(
                    path,
                    format!("the weights add up to more than {MAX_WEIGHT}"),
                );
                broken = true;
            }
        }
        Expr::Fractional(Box::new(Fractional {
            bucket_by,
            buckets: buckets.into_boxed_slice(),
            static_weights,
            broken,
        }))
    }

    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Cow<'a, Value> {
        if self.broken {
            return Cow::Borrowed(&NULL);
        }
        let Some(h) = self.hash(env) else {
            return Cow::Borrowed(&NULL);
        };
        let index = match &self.static_weights {
            Some(weights) => {
                let total = weights.iter().sum();
                bucket::pick(bucket::bucket(h, total), weights.iter().copied())
            }
            None => self.pick_dynamic(h, env),
        };
        let Some((variant, _)) = index.and_then(|i| self.buckets.get(i)) else {
            return Cow::Borrowed(&NULL);
        };
        let value = variant.eval(env);
        match value.as_ref() {
            Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null => value,
            _ => Cow::Borrowed(&NULL),
        }
    }

    fn hash(&self, env: &Env<'_>) -> Option<u32> {
        if let Some(expr) = &self.bucket_by {
            match expr.eval(env).as_ref() {
                Value::String(key) => return Some(bucket::hash(key.as_bytes(), b"")),
                Value::Null => {}
                _ => return None,
            }
        }
        let targeting_key = env.ctx.targeting_key().filter(|k| !k.is_empty())?;
        let flag_key = env.flag_key.as_str().unwrap_or_default();
        Some(bucket::hash(flag_key.as_bytes(), targeting_key.as_bytes()))
    }

    /// Weights computed per evaluation (nested expressions): evaluated once
    /// for the total and again while walking, which keeps this allocation-free.
    fn pick_dynamic(&self, h: u32, env: &Env<'_>) -> Option<usize> {
        let weight = |(_, w): &(Expr, Option<Expr>)| match w {
            None => Ok(1),
            Some(expr) => weight_of(&expr.eval(env)),
        };
        let mut total = 0u64;
        for entry in self.buckets.iter() {
            total += weight(entry).ok()?;
        }
        if total == 0 || total > MAX_WEIGHT {
            return None;
        }
        let target = bucket::bucket(h, total);
        bucket::pick(target, self.buckets.iter().map(|e| weight(e).unwrap_or(0)))
    }
}

/// A weight as flagd reads it: an integer up to `i32::MAX`; negative counts
/// as 0, `null` as 1.
fn weight_of(value: &Value) -> Result<u64, String> {
    match value {
        Value::Null => Ok(1),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 || f.is_nan() {
                Err(format!("weight {n} is not an integer"))
            } else if f > MAX_WEIGHT as f64 {
                Err(format!("weight {n} is above {MAX_WEIGHT}"))
            } else {
                Ok(f.max(0.0) as u64)
            }
        }
        other => Err(format!("weight {other} is not a number")),
    }
}

fn constant_weights(buckets: &[(Expr, Option<Expr>)]) -> Option<Box<[u64]>> {
    buckets
        .iter()
        .map(|(_, w)| match w {
            None => Some(1),
            Some(Expr::Lit(v)) => weight_of(v).ok(),
            Some(_) => None,
        })
        .collect()
}

/// `{"sem_ver": [version, operator, version]}` → bool, or `null` when an
/// argument is missing or not a version.
pub(crate) fn sem_ver<'a>(args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    let [actual, operator, target] = args else {
        return Cow::Borrowed(&NULL);
    };
    let (operator, actual, target) = (operator.eval(env), actual.eval(env), target.eval(env));
    let result = (|| {
        let actual = semver::version_text(&actual)?;
        let target = semver::version_text(&target)?;
        let (actual, target) = (
            semver::Version::parse(&actual)?,
            semver::Version::parse(&target)?,
        );
        semver::compare(&actual, operator.as_str()?, &target)
    })();
    result.map_or(Cow::Borrowed(&NULL), |b| Cow::Owned(Value::Bool(b)))
}

/// `starts_with` (`prefix = true`) / `ends_with`: two strings → bool, else `null`.
pub(crate) fn affix<'a>(args: &'a [Expr], env: &Env<'a>, prefix: bool) -> Cow<'a, Value> {
    let [text, affix] = args else {
        return Cow::Borrowed(&NULL);
    };
    let (text, affix) = (text.eval(env), affix.eval(env));
    match (text.as_str(), affix.as_str()) {
        (Some(t), Some(a)) => Cow::Owned(Value::Bool(if prefix {
            t.starts_with(a)
        } else {
            t.ends_with(a)
        })),
        _ => Cow::Borrowed(&NULL),
    }
}
