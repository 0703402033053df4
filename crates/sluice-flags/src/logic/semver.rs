//! `sem_ver`'s version grammar and ordering, as flagd has it (Go's
//! `x/mod/semver`): an optional `v`/`V`, `MAJOR[.MINOR[.PATCH[-PRE][+BUILD]]]`
//! with missing parts read as 0, no leading zeros, pre-releases ordered by
//! SemVer 2.0 §11, build metadata ignored. A number in the context is read
//! as its decimal text (`1.2` → `"1.2"`).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::value::js_string;
use super::Compiler;

const OPERATORS: [&str; 8] = ["=", "!=", "<", "<=", ">", ">=", "^", "~"];

/// A parsed version, borrowing its text (no allocation without a
/// pre-release); numeric parts stay digit strings so any length compares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    pre: Vec<&'a str>,
}

// === impl Version ===

impl<'a> Version<'a> {
    pub(crate) fn parse(text: &'a str) -> Option<Version<'a>> {
        let text = text
            .strip_prefix('v')
            .or_else(|| text.strip_prefix('V'))
            .unwrap_or(text);
        let (text, build) = match text.split_once('+') {
            Some((core, build)) => (core, Some(build)),
            None => (text, None),
        };
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = ["0"; 3];
        let mut count = 0;
        for part in core.split('.') {
            if count == 3 || !is_number(part) {
                return None;
            }
            parts[count] = part;
            count += 1;
        }
        // Shorthands (`1`, `1.2`) take no pre-release or build (as in Go).
        if count < 3 && (pre.is_some() || build.is_some()) {
            return None;
        }
        if let Some(build) = build {
            if !build.split('.').all(is_identifier) {
                return None;
            }
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => {
                let ids: Vec<&'a str> = pre.split('.').collect();
                // Numeric identifiers take no leading zeros.
                let numeric = |id: &str| id.bytes().all(|b| b.is_ascii_digit());
                let valid = ids
                    .iter()
                    .all(|id| is_identifier(id) && (!numeric(id) || is_number(id)));
                if !valid {
                    return None;
                }
                ids
            }
        };
        let [major, minor, patch] = parts;
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

/// The text of a version in a context or rule: a string, or a number read as text.
pub(crate) fn version_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(_) => Some(Cow::Owned(js_string(value))),
        _ => None,
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_numeric(self.major, other.major)
            .then_with(|| compare_numeric(self.minor, other.minor))
            .then_with(|| compare_numeric(self.patch, other.patch))
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `Some(result)` for a known operator, `None` otherwise.
pub(crate) fn compare(actual: &Version, operator: &str, target: &Version) -> Option<bool> {
    let ordering = actual.cmp(target);
    Some(match operator {
        "=" => ordering == Ordering::Equal,
        "!=" => ordering != Ordering::Equal,
        "<" => ordering == Ordering::Less,
        "<=" => ordering != Ordering::Greater,
        ">" => ordering == Ordering::Greater,
        ">=" => ordering != Ordering::Less,
        "^" => actual.major == target.major,
        "~" => actual.major == target.major && actual.minor == target.minor,
        _ => return None,
    })
}

/// Lints what a rule spells as constants: the operator and the target version.
pub(crate) fn check_literals(compiler: &mut Compiler<'_>, args: &[Value], path: &str) {
    if let Some(Value::String(op)) = args.get(1) {
        if !OPERATORS.contains(&op.as_str()) {
            compiler.lint(
                &format!("{path}[1]"),
                format!("unknown sem_ver operator \"{op}\" (one of {OPERATORS:?})"),
            );
        }
    }
    if let Some(target @ (Value::String(_) | Value::Number(_))) = args.get(2) {
        if version_text(target).is_none_or(|text| Version::parse(&text).is_none()) {
            compiler.lint(
                &format!("{path}[2]"),
                format!("{target} is not a semantic version"),
            );
        }
    }
}

fn is_number(part: &str) -> bool {
    !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'))
}

fn is_identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn compare_numeric(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn compare_pre(a: &[&str], b: &[&str]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let x_num = x.bytes().all(|c| c.is_ascii_digit());
        let y_num = y.bytes().all(|c| c.is_ascii_digit());
        let ordering = match (x_num, y_num) {
            (true, true) => compare_numeric(x, y),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version<'_> {
        Version::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn grammar() {
        for ok in [
            "1",
            "1.2",
            "1.2.3",
            "v1.2.3",
            "V1.2.3",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
        ] {
            assert!(Version::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "v", "1.2.3.4", "01.2.3", "1.2-pre", "1.2.3-", "1.2.3-01", "x.y.z", "1..2",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ordering_follows_semver() {
        assert!(v("2.0.0-alpha") < v("2.0.0"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.1") < v("1.0.0-alpha.beta"));
        assert!(v("1.0.0-beta.2") < v("1.0.0-beta.11"));
        assert!(v("1.10.0") > v("1.9.0"));
        assert_eq!(v("1.0.0+other").cmp(&v("1.0.0+build")), Ordering::Equal);
        assert_eq!(v("1").cmp(&v("1.0.0")), Ordering::Equal);
    }

    #[test]
    fn operators() {
        assert_eq!(compare(&v("3.0.1"), "~", &v("3.0.0")), Some(true));
        assert_eq!(compare(&v("3.1.0"), "~", &v("3.0.0")), Some(false));
        assert_eq!(compare(&v("3.1.0"), "^", &v("3.0.0")), Some(true));
        assert_eq!(compare(&v("1.2.0"), ">=", &v("1.2")), Some(true));
        assert_eq!(compare(&v("1.2.0"), "!=", &v("1.2.1")), Some(true));
        assert_eq!(compare(&v("1.0.0"), "===", &v("1.0.0")), None);
    }

    #[test]
    fn numbers_read_as_text() {
        assert_eq!(
            version_text(&serde_json::json!(1.2)).as_deref(),
            Some("1.2")
        );
        assert_eq!(version_text(&serde_json::json!(2)).as_deref(), Some("2"));
        assert_eq!(version_text(&serde_json::json!(true)), None);
    }
}
