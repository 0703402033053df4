//! Targeting rules: JsonLogic with flagd's operators (`fractional`,
//! `sem_ver`, `starts_with`, `ends_with`) and sluice's `segment`, compiled
//! once at load into an expression tree ([`Expr`]) that evaluation walks
//! without re-reading JSON. Not a general JsonLogic library: it implements
//! what flag targeting uses, with JsonLogic's (JavaScript's) semantics.
//!
//! Compilation reports two kinds of problems. *Fatal* ones (an unknown
//! operator or segment) leave nothing to evaluate. *Lints* (a custom
//! operator with the wrong number of arguments, an unknown `sem_ver`
//! operator) still compile, to the `null` flagd gives at run time; a strict
//! load refuses both, a lenient (flagd-compatible) load only the first.

mod custom;
mod eval;
mod semver;
pub(crate) mod value;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

pub(crate) use eval::Env;

/// A named list of strings (tenants, users…) that rules can test membership of.
pub(crate) type Segment = Arc<HashSet<String>>;

/// One node of a compiled rule.
#[derive(Clone, Debug)]
pub(crate) enum Expr {
    /// A constant (scalar, or an array/object without operators inside).
    Lit(Value),
    /// An array literal with operators inside.
    Array(Box<[Expr]>),
    Var(Box<Var>),
    Op(Op, Box<[Expr]>),
    /// `{"in": [x, {"segment": "name"}]}`, a hash-set lookup.
    InSegment(Box<Expr>, Segment),
    Fractional(Box<custom::Fractional>),
}

/// `{"var": path}` or `{"var": [path, default]}`.
#[derive(Clone, Debug)]
pub(crate) struct Var {
    path: VarPath,
    default: Option<Expr>,
}

#[derive(Clone, Debug)]
enum VarPath {
    /// Dotted path split at load; empty means the whole data.
    Static(Box<[Box<str>]>),
    /// A path computed by an expression.
    Dynamic(Expr),
}

/// The operators evaluated over their arguments (see `eval.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    If,
    And,
    Or,
    Not,
    Truthy,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Map,
    Filter,
    Reduce,
    All,
    Some,
    None,
    SemVer,
    StartsWith,
    EndsWith,
}

const OPERATORS: &[(&str, Op)] = &[
    ("if", Op::If),
    ("?:", Op::If),
    ("and", Op::And),
    ("or", Op::Or),
    ("!", Op::Not),
    ("!!", Op::Truthy),
    ("==", Op::Eq),
    ("===", Op::StrictEq),
    ("!=", Op::Ne),
    ("!==", Op::StrictNe),
    ("<", Op::Lt),
    ("<=", Op::Le),
    (">", Op::Gt),
    (">=", Op::Ge),
    ("+", Op::Add),
    ("-", Op::Sub),
    ("*", Op::Mul),
    ("/", Op::Div),
    ("%", Op::Mod),
    ("min", Op::Min),
    ("max", Op::Max),
    ("in", Op::In),
    ("cat", Op::Cat),
    ("substr", Op::Substr),
    ("merge", Op::Merge),
    ("missing", Op::Missing),
    ("missing_some", Op::MissingSome),
    ("map", Op::Map),
    ("filter", Op::Filter),
    ("reduce", Op::Reduce),
    ("all", Op::All),
    ("some", Op::Some),
    ("none", Op::None),
    ("sem_ver", Op::SemVer),
    ("starts_with", Op::StartsWith),
    ("ends_with", Op::EndsWith),
];

/// A problem found while compiling, at `path` inside the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Diag {
    pub path: String,
    pub message: String,
    /// Nothing could be compiled (vs. a lint that compiles to `null`).
    pub fatal: bool,
}

/// Compiles rules against the segments of one flag set.
pub(crate) struct Compiler<'s> {
    segments: &'s BTreeMap<String, Segment>,
    /// Segments the compiled rules referred to (part of a flag's fingerprint).
    pub used_segments: BTreeSet<String>,
    pub diags: Vec<Diag>,
}

// === impl Compiler ===

impl<'s> Compiler<'s> {
    pub fn new(segments: &'s BTreeMap<String, Segment>) -> Self {
        Compiler {
            segments,
            used_segments: BTreeSet::new(),
            diags: Vec::new(),
        }
    }

    pub fn compile(&mut self, value: &Value, path: &str) -> Expr {
        match value {
            Value::Array(items) => {
                let compiled: Vec<Expr> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.compile(item, &format!("{path}[{i}]")))
                    .collect();
                literal_array(compiled)
            }
            Value::Object(map) if map.len() == 1 => {
                let (name, args) = map.iter().next().expect("one entry");
                self.operation(name, args, &format!("{path}.{name}"))
            }
            other => Expr::Lit(other.clone()),
        }
    }

    fn operation(&mut self, name: &str, args: &Value, path: &str) -> Expr {
        let arg_values: &[Value] = match args {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        match name {
            "var" => return self.var(arg_values, path),
            "segment" => return self.segment_literal(arg_values, path),
            "fractional" => return custom::Fractional::compile(self, arg_values, path),
            "in" => {
                if let Some(expr) = self.in_segment(arg_values, path) {
                    return expr;
                }
            }
            _ => {}
        }
        let Some(&(_, op)) = OPERATORS.iter().find(|(n, _)| *n == name) else {
            let message = if name == "$ref" {
                format!("unresolved evaluator reference {args}")
            } else {
                format!("unknown operator \"{name}\"")
            };
            self.fatal(path, message);
            return Expr::Lit(Value::Null);
        };
        self.check_arity(op, arg_values, path);
        let compiled = arg_values
            .iter()
            .enumerate()
            .map(|(i, a)| self.compile(a, &format!("{path}[{i}]")))
            .collect();
        Expr::Op(op, compiled)
    }

    fn var(&mut self, args: &[Value], path: &str) -> Expr {
        let var_path = match args.first() {
            None | Some(Value::Null) => VarPath::Static(Box::new([])),
            Some(Value::String(s)) => VarPath::Static(split_path(s)),
            Some(Value::Number(n)) => VarPath::Static(split_path(&n.to_string())),
            Some(other) => VarPath::Dynamic(self.compile(other, &format!("{path}[0]"))),
        };
        let default = args.get(1).map(|d| self.compile(d, &format!("{path}[1]")));
        Expr::Var(Box::new(Var {
            path: var_path,
            default,
        }))
    }

    fn segment(&mut self, args: &[Value], path: &str) -> Option<Segment> {
        let Some(Value::String(name)) = args.first() else {
            self.fatal(path, "expects the name of a segment");
            return None;
        };
        match self.segments.get(name) {
            Some(segment) => {
                self.used_segments.insert(name.clone());
                Some(segment.clone())
            }
            None => {
                let known: Vec<&str> = self.segments.keys().map(String::as_str).collect();
                self.fatal(
                    path,
                    format!("unknown segment \"{name}\" (known: [{}])", known.join(", ")),
                );
                None
            }
        }
    }

    fn segment_literal(&mut self, args: &[Value], path: &str) -> Expr {
        match self.segment(args, path) {
            Some(segment) => {
                let mut members: Vec<&String> = segment.iter().collect();
                members.sort();
                Expr::Lit(Value::Array(
                    members
                        .into_iter()
                        .map(|m| Value::from(m.as_str()))
                        .collect(),
                ))
            }
            None => Expr::Lit(Value::Null),
        }
    }

    fn in_segment(&mut self, args: &[Value], path: &str) -> Option<Expr> {
        let [needle, Value::Object(map)] = args else {
            return None;
        };
        let segment_args = map.get("segment").filter(|_| map.len() == 1)?;
        let segment_args = match segment_args {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        let needle = self.compile(needle, &format!("{path}[0]"));
        let segment = self.segment(segment_args, &format!("{path}[1].segment"))?;
        Some(Expr::InSegment(Box::new(needle), segment))
    }

    fn check_arity(&mut self, op: Op, args: &[Value], path: &str) {
        let expected = match op {
            Op::Eq | Op::StrictEq | Op::Ne | Op::StrictNe | Op::Gt | Op::Ge | Op::In => 2..=2,
            Op::Lt | Op::Le => 2..=3,
            Op::StartsWith | Op::EndsWith => 2..=2,
            Op::SemVer => 3..=3,
            _ => return,
        };
        if !expected.contains(&args.len()) {
            let want = if expected.start() == expected.end() {
                expected.start().to_string()
            } else {
                format!("{} to {}", expected.start(), expected.end())
            };
            self.lint(
                path,
                format!("expects {want} arguments, got {}", args.len()),
            );
        }
        if op == Op::SemVer {
            semver::check_literals(self, args, path);
        }
    }

    pub(crate) fn fatal(&mut self, path: &str, message: impl Into<String>) {
        self.push(path, message.into(), true);
    }

    pub(crate) fn lint(&mut self, path: &str, message: impl Into<String>) {
        self.push(path, message.into(), false);
    }

    fn push(&mut self, path: &str, message: String, fatal: bool) {
        self.diags.push(Diag {
            path: path.to_string(),
            message,
            fatal,
        });
    }
}

/// An array of constants stays one constant, so that `in` and friends see a
/// borrowed value rather than building one per evaluation.
fn literal_array(items: Vec<Expr>) -> Expr {
    if items.iter().all(|e| matches!(e, Expr::Lit(_))) {
        let values = items
            .into_iter()
            .map(|e| match e {
                Expr::Lit(v) => v,
                _ => unreachable!("checked above"),
            })
            .collect();
        Expr::Lit(Value::Array(values))
    } else {
        Expr::Array(items.into_boxed_slice())
    }
}

fn split_path(path: &str) -> Box<[Box<str>]> {
    if path.is_empty() {
        return Box::new([]);
    }
    path.split('.').map(Box::from).collect()
}

/// Replaces every `{"$ref": "name"}` by the evaluator `name` (flagd's shared
/// rules), recursively. Returns the unknown names, if any.
pub(crate) fn resolve_refs(
    value: &Value,
    evaluators: &Map<String, Value>,
    depth: usize,
    missing: &mut Vec<String>,
) -> Value {
    const MAX_DEPTH: usize = 32;
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$ref") => {
            let name = map.get("$ref").and_then(Value::as_str);
            match name.and_then(|n| evaluators.get(n)) {
                Some(found) if depth < MAX_DEPTH => {
                    resolve_refs(found, evaluators, depth + 1, missing)
                }
                Some(_) => {
                    missing.push(format!("{} (references nest too deep)", name.unwrap_or("")));
                    value.clone()
                }
                None => {
                    missing.push(name.map_or_else(|| map["$ref"].to_string(), str::to_string));
                    value.clone()
                }
            }
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve_refs(v, evaluators, depth, missing)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_refs(v, evaluators, depth, missing))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
