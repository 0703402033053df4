//! From a [`FlagsSpec`] to compiled [`Flag`]s: environment overrides,
//! validation that collects every error with its field path, `$ref`
//! resolution and compilation of the targeting.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::bucket;
use crate::flag::{EnvOverride, Flag, Percentage, Rule};
use crate::logic::{resolve_refs, Compiler, Diag, Segment};
use crate::{fingerprint, FieldError, FlagSpec, FlagsSpec, State, ValueKind};

/// How to treat targeting that does not compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse the set, listing every problem.
    Strict,
    /// Keep the flag; it answers PARSE_ERROR (flagd's behaviour). Lints become warnings.
    Lenient,
}

/// The flags and set metadata of a spec, or every error found in it.
pub(crate) struct Built {
    pub flags: Vec<Flag>,
    pub metadata: Map<String, Value>,
    pub warnings: Vec<FieldError>,
}

pub(crate) fn build(
    spec: FlagsSpec,
    env: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
    source: &Arc<str>,
) -> Result<Built, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut segments: BTreeMap<String, Segment> = BTreeMap::new();
    for (name, members) in &spec.segments {
        if name.is_empty() {
            errors.push(FieldError::new("segments", "a segment name is empty"));
        }
        segments.insert(name.clone(), Arc::new(members.iter().cloned().collect()));
    }
    let mut flags = Vec::with_capacity(spec.flags.len());
    for (key, flag_spec) in spec.flags {
        let mut report = Report {
            path: format!("flags.{key}"),
            mode,
            errors: &mut errors,
            warnings: &mut warnings,
        };
        if key.is_empty() {
            report.error("", "a flag key is empty");
        }
        let context = LoadContext {
            evaluators: &spec.evaluators,
            segments: &segments,
            set_metadata: &spec.metadata,
            source,
            env,
        };
        flags.push(build_flag(key, flag_spec, &context, &mut report));
    }
    if errors.is_empty() {
        Ok(Built {
            flags,
            metadata: spec.metadata,
            warnings,
        })
    } else {
        Err(errors)
    }
}

struct LoadContext<'a> {
    evaluators: &'a Map<String, Value>,
    segments: &'a BTreeMap<String, Segment>,
    set_metadata: &'a Map<String, Value>,
    source: &'a Arc<str>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Where one flag's problems go: errors refuse the set, warnings do not.
struct Report<'a> {
    path: String,
    mode: Mode,
    errors: &'a mut Vec<FieldError>,
    warnings: &'a mut Vec<FieldError>,
}

impl Report<'_> {
    fn at(&self, field: &str) -> String {
        if field.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        let path = self.at(field);
        self.errors.push(FieldError::new(path, message));
    }

    /// An error when strict, a warning when lenient.
    fn strict_error(&mut self, field: &str, message: impl Into<String>) {
        let error = FieldError::new(self.at(field), message);
        match self.mode {
            Mode::Strict => self.errors.push(error),
            Mode::Lenient => self.warnings.push(error),
        }
    }
}

fn build_flag(
    key: String,
    mut spec: FlagSpec,
    load: &LoadContext<'_>,
    report: &mut Report<'_>,
) -> Flag {
    let overrides = apply_env(&mut spec, load.env, report);
    let mut variants: Vec<(Box<str>, Value)> = spec
        .variants
        .into_iter()
        .map(|(name, value)| (name.into_boxed_str(), value))
        .collect();
    variants.sort_by(|a, b| a.0.cmp(&b.0));
    let kind = check_variants(&variants, report);
    let names = || {
        let names: Vec<&str> = variants.iter().map(|(n, _)| &**n).collect();
        format!("[{}]", names.join(", "))
    };
    let default_variant = match &spec.default_variant {
        None => None,
        Some(name) => match variants.iter().position(|(n, _)| **n == **name) {
            Some(i) => Some(i),
            None => {
                report.error(
                    "defaultVariant",
                    format!("\"{name}\" is not one of the variants {}", names()),
                );
                None
            }
        },
    };
    let percentage = match spec.percentage {
        None => {
            if spec.bucket_by.is_some() {
                report.error("bucket_by", "is set but the flag has no percentage");
            }
            None
        }
        Some(pct) => match percentage_rule(&variants, pct, spec.bucket_by.as_deref()) {
            Ok(rule) => Some(rule),
            Err((field, message)) => {
                report.error(field, message);
                None
            }
        },
    };
    let (rule, targeting, segments) = compile_targeting(spec.targeting, load, report);
    let mut metadata = load.set_metadata.clone();
    metadata.extend(spec.metadata);
    let mut flag = Flag {
        key_value: Value::String(key.clone()),
        key: key.into_boxed_str(),
        state: spec.state,
        variants: variants.into_boxed_slice(),
        default_variant,
        kind,
        rule,
        targeting,
        percentage,
        metadata,
        source: load.source.clone(),
        overrides,
        segments,
        digest: 0,
    };
    flag.digest = fingerprint::flag_digest(&flag);
    flag
}

fn apply_env(
    spec: &mut FlagSpec,
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut Report<'_>,
) -> Vec<EnvOverride> {
    let mut overrides = Vec::new();
    let Some(vars) = spec.env.clone() else {
        return overrides;
    };
    let read = |var: &Option<String>| {
        let var = var.as_ref()?;
        let value = env(var).filter(|v| !v.trim().is_empty())?;
        Some((var.clone(), value))
    };
    if let Some((variable, value)) = read(&vars.enabled) {
        match parse_bool(&value) {
            Some(on) => {
                spec.state = if on { State::Enabled } else { State::Disabled };
                overrides.push(EnvOverride {
                    field: "state",
                    variable,
                    value,
                });
            }
            None => report.error(
                "env.enabled",
                format!(
                    "{variable}=\"{value}\" is not a boolean (true/false, 1/0, yes/no, on/off)"
                ),
            ),
        }
    }
    if let Some((variable, value)) = read(&vars.percentage) {
        let number = value.trim().trim_end_matches('%').trim().parse::<f64>();
        match number {
            Ok(pct) if (0.0..=100.0).contains(&pct) => {
                spec.percentage = Some(pct);
                overrides.push(EnvOverride {
                    field: "percentage",
                    variable,
                    value,
                });
            }
            _ => report.error(
                "env.percentage",
                format!("{variable}=\"{value}\" is not a percentage between 0 and 100"),
            ),
        }
    }
    overrides
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The common type of the variants; problems are errors when strict.
fn check_variants(variants: &[(Box<str>, Value)], report: &mut Report<'_>) -> Option<ValueKind> {
    if variants.is_empty() {
        report.error("variants", "a flag needs at least one variant");
        return None;
    }
    let mut kind = None;
    let mut mixed = false;
    for (name, value) in variants {
        match (ValueKind::of(value), kind) {
            (None, _) => report.strict_error(
                &format!("variants.{name}"),
                format!("{value} is not a boolean, string, number or object"),
            ),
            (Some(k), None) => kind = Some(k),
            (Some(k), Some(first)) if k != first => mixed = true,
            _ => {}
        }
    }
    if mixed {
        let kinds: Vec<&str> = variants
            .iter()
            .filter_map(|(_, v)| ValueKind::of(v).map(ValueKind::as_str))
            .collect();
        report.strict_error("variants", format!("mix types: {}", kinds.join(", ")));
        return None;
    }
    kind
}

/// Validates a percentage rollout: a number in 0..=100 on a flag with one
/// `true` and one `false` variant. Errors name the field (`percentage`, `bucket_by`).
pub(crate) fn percentage_rule(
    variants: &[(Box<str>, Value)],
    percentage: f64,
    bucket_by: Option<&str>,
) -> Result<Percentage, (&'static str, String)> {
    if !(0.0..=100.0).contains(&percentage) {
        return Err((
            "percentage",
            format!("{percentage} is not between 0 and 100"),
        ));
    }
    let with = |b: bool| {
        let found: Vec<usize> = (0..variants.len())
            .filter(|&i| variants[i].1 == Value::Bool(b))
            .collect();
        match found.as_slice() {
            [one] if variants.len() == 2 => Some(*one),
            _ => None,
        }
    };
    let (Some(on), Some(off)) = (with(true), with(false)) else {
        return Err((
            "percentage",
            "needs a boolean flag with exactly two variants, one true and one false".into(),
        ));
    };
    let bucket_by = match bucket_by {
        None | Some("targetingKey") => None,
        Some(path) if path.is_empty() || path.split('.').any(str::is_empty) => {
            return Err(("bucket_by", format!("\"{path}\" is not an attribute path")));
        }
        Some(path) => Some(path.split('.').map(Box::from).collect()),
    };
    Ok(Percentage {
        percentage,
        weight: bucket::percentage_weight(percentage),
        on,
        off,
        bucket_by,
    })
}

type Compiled = (Rule, Option<Value>, BTreeMap<String, Vec<String>>);

fn compile_targeting(
    targeting: Option<Value>,
    load: &LoadContext<'_>,
    report: &mut Report<'_>,
) -> Compiled {
    let empty = || (Rule::None, None, BTreeMap::new());
    let Some(targeting) = targeting else {
        return empty();
    };
    if targeting.is_null() || targeting.as_object().is_some_and(Map::is_empty) {
        return empty();
    }
    let path = report.at("targeting");
    let mut missing = Vec::new();
    let resolved = resolve_refs(&targeting, load.evaluators, 0, &mut missing);
    if !missing.is_empty() {
        let diags = missing
            .into_iter()
            .map(|name| Diag {
                path: path.clone(),
                message: format!("unknown evaluator \"{name}\" in $ref"),
                fatal: true,
            })
            .collect();
        let rule = apply_diags(diags, report, None);
        return (rule, Some(resolved), BTreeMap::new());
    }
    let mut compiler = Compiler::new(load.segments);
    let expr = compiler.compile(&resolved, &path);
    let segments = compiler
        .used_segments
        .iter()
        .map(|name| {
            let mut members: Vec<String> = load.segments[name].iter().cloned().collect();
            members.sort();
            (name.clone(), members)
        })
        .collect();
    let rule = apply_diags(compiler.diags, report, Some(expr));
    (rule, Some(resolved), segments)
}

fn apply_diags(
    diags: Vec<Diag>,
    report: &mut Report<'_>,
    expr: Option<crate::logic::Expr>,
) -> Rule {
    let fatal: Vec<String> = diags
        .iter()
        .filter(|d| d.fatal)
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    for diag in diags {
        let error = FieldError::new(diag.path, diag.message);
        match report.mode {
            Mode::Strict => report.errors.push(error),
            Mode::Lenient => report.warnings.push(error),
        }
    }
    match expr {
        Some(expr) if fatal.is_empty() => Rule::Targeting(expr),
        _ => Rule::Broken(fatal.join("; ")),
    }
}
