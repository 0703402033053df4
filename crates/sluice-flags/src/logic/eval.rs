//! Evaluation of a compiled rule against a context. Values read from the
//! context or from constants in the rule are borrowed (`Cow::Borrowed`);
//! only computed values (sums, concatenations…) are built.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::value::{
    compare, js_string, loose_equals, number_value, push_js_string, strict_equals, to_number,
    truthy,
};
use super::{custom, Expr, Op, Var, VarPath};
use crate::Context;

static NULL: Value = Value::Null;

/// What a rule sees: the context, the flag being evaluated (for
/// `$flagd.flagKey`) and, inside `map`/`filter`/…, the current item.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub ctx: &'a Context,
    /// The flag key as a JSON string, so `$flagd.flagKey` is borrowed.
    pub flag_key: &'a Value,
    /// The current item inside an iterating operator; `None` at the top.
    pub data: Option<&'a Value>,
}

// === impl Expr ===

impl Expr {
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Cow<'a, Value> {
        match self {
            Expr::Lit(value) => Cow::Borrowed(value),
            Expr::Array(items) => Cow::Owned(Value::Array(
                items.iter().map(|e| e.eval(env).into_owned()).collect(),
            )),
            Expr::Var(var) => var.eval(env),
            Expr::Op(op, args) => eval_op(*op, args, env),
            Expr::InSegment(needle, segment) => {
                let needle = needle.eval(env);
                let found = match needle.as_ref() {
                    Value::String(s) => segment.contains(s.as_str()),
                    Value::Number(n) => segment.contains(&n.to_string()),
                    _ => false,
                };
                Cow::Owned(Value::Bool(found))
            }
            Expr::Fractional(fractional) => fractional.eval(env),
        }
    }

    /// Evaluates a rule in result position, also telling whether the value
    /// came from a pseudorandom split (`fractional`), for reason `SPLIT`.
    pub(crate) fn eval_top<'a>(&'a self, env: &Env<'a>) -> (Cow<'a, Value>, bool) {
        match self {
            Expr::Fractional(fractional) => (fractional.eval(env), true),
            Expr::Op(Op::If, args) => match choose_branch(args, env) {
                Some(branch) => branch.eval_top(env),
                None => (Cow::Borrowed(&NULL), false),
            },
            other => (other.eval(env), false),
        }
    }
}

/// The branch of an `if` chain that applies, if any.
fn choose_branch<'a>(args: &'a [Expr], env: &Env<'a>) -> Option<&'a Expr> {
    let mut i = 0;
    while i + 1 < args.len() {
        if truthy(&args[i].eval(env)) {
            return Some(&args[i + 1]);
        }
        i += 2;
    }
    args.get(i)
}

fn arg<'a>(args: &'a [Expr], i: usize, env: &Env<'a>) -> Cow<'a, Value> {
    match args.get(i) {
        Some(expr) => expr.eval(env),
        None => Cow::Borrowed(&NULL),
    }
}

fn boolean<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn number<'a>(f: f64) -> Cow<'a, Value> {
    Cow::Owned(number_value(f))
}

fn eval_op<'a>(op: Op, args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    match op {
        Op::If => match choose_branch(args, env) {
            Some(branch) => branch.eval(env),
            None => Cow::Borrowed(&NULL),
        },
        Op::And | Op::Or => {
            let mut last = Cow::Borrowed(&NULL);
            for expr in args {
                last = expr.eval(env);
                if truthy(&last) == (op == Op::Or) {
                    break;
                }
            }
            last
        }
        Op::Not => boolean(!truthy(&arg(args, 0, env))),
        Op::Truthy => boolean(truthy(&arg(args, 0, env))),
        Op::Eq => boolean(loose_equals(&arg(args, 0, env), &arg(args, 1, env))),
        Op::Ne => boolean(!loose_equals(&arg(args, 0, env), &arg(args, 1, env))),
        Op::StrictEq => boolean(strict_equals(&arg(args, 0, env), &arg(args, 1, env))),
        Op::StrictNe => boolean(!strict_equals(&arg(args, 0, env), &arg(args, 1, env))),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => boolean(relation(op, args, env)),
        Op::Add => number(args.iter().map(|e| to_number(&e.eval(env))).sum()),
        Op::Mul => number(args.iter().map(|e| to_number(&e.eval(env))).product()),
        Op::Sub => {
            let a = to_number(&arg(args, 0, env));
            if args.len() == 1 {
                number(-a)
            } else {
                number(a - to_number(&arg(args, 1, env)))
            }
        }
        Op::Div => number(to_number(&arg(args, 0, env)) / to_number(&arg(args, 1, env))),
        Op::Mod => number(to_number(&arg(args, 0, env)) % to_number(&arg(args, 1, env))),
        Op::Min | Op::Max => extremum(op, args, env),
        Op::In => boolean(contains(&arg(args, 0, env), &arg(args, 1, env))),
        Op::Cat => {
            let mut out = String::new();
            for expr in args {
                push_js_string(&expr.eval(env), &mut out);
            }
            Cow::Owned(Value::String(out))
        }
        Op::Substr => substr(args, env),
        Op::Merge => {
            let mut out = Vec::new();
            for expr in args {
                match expr.eval(env).into_owned() {
                    Value::Array(items) => out.extend(items),
                    other => out.push(other),
                }
            }
            Cow::Owned(Value::Array(out))
        }
        Op::Missing => Cow::Owned(Value::Array(missing(args, env))),
        Op::MissingSome => missing_some(args, env),
        Op::Map | Op::Filter | Op::Reduce | Op::All | Op::Some | Op::None => iterate(op, args, env),
        Op::SemVer => custom::sem_ver(args, env),
        Op::StartsWith => custom::affix(args, env, true),
        Op::EndsWith => custom::affix(args, env, false),
    }
}

fn relation<'a>(op: Op, args: &'a [Expr], env: &Env<'a>) -> bool {
    let holds = |ordering: Option<Ordering>| match (op, ordering) {
        (_, None) => false,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (_, Some(o)) => o != Ordering::Less,
    };
    let a = arg(args, 0, env);
    let b = arg(args, 1, env);
    if !holds(compare(&a, &b)) {
        return false;
    }
    // `{"<": [a, b, c]}` is "between": a < b < c.
    if args.len() == 3 && matches!(op, Op::Lt | Op::Le) {
        return holds(compare(&b, &arg(args, 2, env)));
    }
    true
}

fn extremum<'a>(op: Op, args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    let mut best: Option<f64> = None;
    for expr in args {
        let n = to_number(&expr.eval(env));
        if n.is_nan() {
            return Cow::Borrowed(&NULL);
        }
        best = Some(match best {
            None => n,
            Some(b) if op == Op::Min => b.min(n),
            Some(b) => b.max(n),
        });
    }
    best.map_or(Cow::Borrowed(&NULL), number)
}

fn contains(needle: &Value, haystack: &Value) -> bool {
    match haystack {
        Value::String(s) => match needle {
            Value::String(n) => s.contains(n.as_str()),
            other => s.contains(&js_string(other)),
        },
        Value::Array(items) => items.iter().any(|item| strict_equals(item, needle)),
        _ => false,
    }
}

/// `{"substr": [text, start, length?]}`, counting characters; a negative
/// start counts from the end, a negative length stops that far from the end.
fn substr<'a>(args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    let text = js_string(&arg(args, 0, env));
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len() as i64;
    let start = to_number(&arg(args, 1, env));
    let start = if start.is_nan() { 0 } else { start as i64 };
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start.min(len)
    };
    let end = match args.get(2) {
        None => len,
        Some(expr) => {
            let n = to_number(&expr.eval(env));
            let n = if n.is_nan() { 0 } else { n as i64 };
            if n < 0 {
                (len + n).max(start)
            } else {
                (start + n).min(len)
            }
        }
    };
    let out: String = chars[start as usize..end.max(start) as usize]
        .iter()
        .collect();
    Cow::Owned(Value::String(out))
}

fn missing<'a>(args: &'a [Expr], env: &Env<'a>) -> Vec<Value> {
    let first = arg(args, 0, env);
    let keys: Vec<Value> = match first.as_ref() {
        Value::Array(items) => items.clone(),
        _ => args.iter().map(|e| e.eval(env).into_owned()).collect(),
    };
    keys.into_iter()
        .filter(|key| {
            let path = js_string(key);
            match lookup_dotted(env, &path) {
                None => true,
                Some(v) => v.is_null() || v.as_str() == Some(""),
            }
        })
        .collect()
}

fn missing_some<'a>(args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    let need = to_number(&arg(args, 0, env));
    let keys = args.get(1).map_or(Cow::Borrowed(&NULL), |e| e.eval(env));
    let Value::Array(items) = keys.as_ref() else {
        return Cow::Owned(Value::Array(Vec::new()));
    };
    let lookup = [Expr::Lit(Value::Array(items.clone()))];
    let absent = missing(&lookup, env);
    if (items.len() - absent.len()) as f64 >= need {
        Cow::Owned(Value::Array(Vec::new()))
    } else {
        Cow::Owned(Value::Array(absent))
    }
}

fn iterate<'a>(op: Op, args: &'a [Expr], env: &Env<'a>) -> Cow<'a, Value> {
    let source = arg(args, 0, env);
    let items: &[Value] = source.as_array().map_or(&[], Vec::as_slice);
    let Some(logic) = args.get(1) else {
        return Cow::Borrowed(&NULL);
    };
    let apply = |item: &Value| -> Value {
        let scoped = Env {
            data: Some(item),
            ..*env
        };
        logic.eval(&scoped).into_owned()
    };
    let value = match op {
        Op::Map => Value::Array(items.iter().map(apply).collect()),
        Op::Filter => Value::Array(
            items
                .iter()
                .filter(|item| truthy(&apply(item)))
                .cloned()
                .collect(),
        ),
        Op::All => Value::Bool(!items.is_empty() && items.iter().all(|i| truthy(&apply(i)))),
        Op::Some => Value::Bool(items.iter().any(|i| truthy(&apply(i)))),
        Op::None => Value::Bool(!items.iter().any(|i| truthy(&apply(i)))),
        _ => {
            let mut accumulator = arg(args, 2, env).into_owned();
            for item in items {
                let mut scope = Map::new();
                scope.insert("current".into(), item.clone());
                scope.insert("accumulator".into(), accumulator);
                accumulator = apply(&Value::Object(scope));
            }
            accumulator
        }
    };
    Cow::Owned(value)
}

// === impl Var ===

impl Var {
    fn eval<'a>(&'a self, env: &Env<'a>) -> Cow<'a, Value> {
        let found = match &self.path {
            VarPath::Static(segments) => lookup(env, segments.iter().map(|s| &**s)),
            VarPath::Dynamic(expr) => match expr.eval(env).as_ref() {
                Value::Null => lookup(env, std::iter::empty()),
                other => lookup_dotted(env, &js_string(other)),
            },
        };
        match (found, &self.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.eval(env),
            (None, None) => Cow::Borrowed(&NULL),
        }
    }
}

fn lookup_dotted<'a>(env: &Env<'a>, path: &str) -> Option<Cow<'a, Value>> {
    if path.is_empty() {
        lookup(env, std::iter::empty())
    } else {
        lookup(env, path.split('.'))
    }
}

/// Resolves a path in the current item or, at the top, in the context,
/// where `$flagd.flagKey` and `$flagd.timestamp` are answered per flag.
fn lookup<'a, 's>(env: &Env<'a>, path: impl Iterator<Item = &'s str>) -> Option<Cow<'a, Value>> {
    let mut path = path.peekable();
    let mut current: &'a Value = match env.data {
        Some(data) => data,
        None => {
            let Some(first) = path.next() else {
                return Some(Cow::Owned(whole_context(env)));
            };
            if first == "$flagd" {
                return flagd_property(env, path.next(), path.next().is_some());
            }
            env.ctx.attributes().get(first)?
        }
    };
    for segment in path {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(Cow::Borrowed(current))
}

fn flagd_property<'a>(env: &Env<'a>, name: Option<&str>, deeper: bool) -> Option<Cow<'a, Value>> {
    match (name, deeper) {
        (None, _) => Some(Cow::Owned(flagd_object(env))),
        (Some("flagKey"), false) => Some(Cow::Borrowed(env.flag_key)),
        (Some("timestamp"), false) => Some(Cow::Owned(Value::from(env.ctx.now_unix_seconds()))),
        _ => None,
    }
}

fn flagd_object(env: &Env<'_>) -> Value {
    let mut map = Map::new();
    map.insert("flagKey".into(), env.flag_key.clone());
    map.insert("timestamp".into(), Value::from(env.ctx.now_unix_seconds()));
    Value::Object(map)
}

fn whole_context(env: &Env<'_>) -> Value {
    let mut map = env.ctx.attributes().clone();
    map.insert("$flagd".into(), flagd_object(env));
    Value::Object(map)
}
