//! JsonLogic's value semantics, which are JavaScript's: truthiness, number
//! and string coercion, loose and strict equality, relational comparison.
//! Kept apart from the operators so each rule is written once.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// JavaScript truthiness, except that `[]` is falsy (as in JsonLogic).
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// JavaScript `Number(value)`; `NaN` when there is no number.
pub(crate) fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => {
            let trimmed = s.trim();
            if trimmed.is_empty() {
                0.0
            } else {
                trimmed.parse::<f64>().unwrap_or(f64::NAN)
            }
        }
        Value::Array(a) => match a.as_slice() {
            [] => 0.0,
            [one] => to_number(one),
            _ => f64::NAN,
        },
        Value::Object(_) => f64::NAN,
    }
}

/// A number as a JSON value: integral values become integers (so that
/// `{"+": [1, 1]}` prints as `2` and names variant `"2"`), non-finite ones `null`.
pub(crate) fn number_value(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.fract() == 0.0 && f.abs() < EXACT {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// JavaScript `String(value)` appended to `out`.
pub(crate) fn push_js_string(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => push_number(n, out),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    push_js_string(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

/// JavaScript `String(value)`.
pub(crate) fn js_string(value: &Value) -> String {
    let mut out = String::new();
    push_js_string(value, &mut out);
    out
}

fn push_number(n: &Number, out: &mut String) {
    use std::fmt::Write;
    if n.is_i64() || n.is_u64() {
        let _ = write!(out, "{n}");
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && f.abs() < 1e21 {
            let _ = write!(out, "{}", f as i128);
        } else {
            let _ = write!(out, "{f}");
        }
    }
}

/// `===`: same type and equal; numbers by value (`1 === 1.0`).
pub(crate) fn strict_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| strict_equals(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| strict_equals(v, w)))
        }
        _ => a == b,
    }
}

/// `==`: JavaScript's abstract equality, except that two arrays or two
/// objects compare by content rather than by identity.
pub(crate) fn loose_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(_), _) | (_, Value::Bool(_))
            if std::mem::discriminant(a) != std::mem::discriminant(b) =>
        {
            to_number(a) == to_number(b)
        }
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            to_number(a) == to_number(b)
        }
        (Value::Array(_) | Value::Object(_), Value::String(s))
        | (Value::String(s), Value::Array(_) | Value::Object(_)) => {
            let other = if a.is_string() { b } else { a };
            js_string(other) == *s
        }
        (Value::Array(_) | Value::Object(_), Value::Number(_))
        | (Value::Number(_), Value::Array(_) | Value::Object(_)) => to_number(a) == to_number(b),
        _ => strict_equals(a, b),
    }
}

/// JavaScript's relational comparison: two strings compare as text,
/// anything else as numbers; `None` when a number is `NaN`.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return Some(x.cmp(y));
    }
    let (x, y) = (to_number(a), to_number(b));
    x.partial_cmp(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_jsonlogic() {
        for falsy in [json!(null), json!(false), json!(0), json!(""), json!([])] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for t in [json!(true), json!(1), json!("0"), json!([0]), json!({})] {
            assert!(truthy(&t), "{t}");
        }
    }

    #[test]
    fn loose_equality_coerces_like_javascript() {
        assert!(loose_equals(&json!(1), &json!("1")));
        assert!(loose_equals(&json!(0), &json!(false)));
        assert!(loose_equals(&json!(1.0), &json!(1)));
        assert!(!loose_equals(&json!(null), &json!(0)));
        assert!(!loose_equals(&json!("a"), &json!("b")));
        assert!(loose_equals(&json!([1, 2]), &json!("1,2")));
        assert!(!strict_equals(&json!(1), &json!("1")));
        assert!(strict_equals(&json!(1), &json!(1.0)));
    }

    #[test]
    fn comparison_is_textual_for_two_strings_numeric_otherwise() {
        assert_eq!(compare(&json!("10"), &json!("9")), Some(Ordering::Less));
        assert_eq!(compare(&json!("10"), &json!(9)), Some(Ordering::Greater));
        assert_eq!(compare(&json!("x"), &json!(9)), None);
        assert_eq!(compare(&json!(null), &json!(0)), Some(Ordering::Equal));
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(js_string(&json!(2.0)), "2");
        assert_eq!(js_string(&json!(1.5)), "1.5");
        assert_eq!(js_string(&json!([1, null, "a"])), "1,,a");
        assert_eq!(number_value(3.0), json!(3));
        assert_eq!(number_value(f64::INFINITY), json!(null));
    }
}
