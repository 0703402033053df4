//! Comparing a (stable, canary) pair of answers to one mirrored request:
//! status class, latency, and optionally the headers and a digest of the
//! body (JSON bodies with ignored fields dropped first). Pure: the answers,
//! latencies included, come in as values.
//!
//! The digest is 64-bit FNV-1a (Fowler, Noll, Vo): not cryptographic, and it
//! need not be — both sides are ours, and a collision only hides one diff.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;
use sluice_model::mirror::LATENCY_SLACK_MS;
use sluice_model::CompareSpec;

/// What is compared, resolved once per routing snapshot.
#[derive(Debug)]
pub(crate) struct CompareRules {
    body: bool,
    headers: bool,
    ignore_headers: Vec<HeaderName>,
    /// Each path split on `.`.
    ignore_fields: Vec<Vec<String>>,
    latency_factor: Option<f64>,
}

/// One side of a pair, as observed by the proxy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer<'a> {
    /// None: no answer (connect error, timeout, broken connection).
    pub(crate) status: Option<StatusCode>,
    /// Time to response head.
    pub(crate) latency: Duration,
    pub(crate) headers: &'a HeaderMap,
    /// None: not kept (over the size cap, cut short, or not compared).
    pub(crate) body: Option<&'a [u8]>,
}

/// Why a pair mismatched (any number of reasons; none is a match).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub(crate) status: bool,
    pub(crate) latency: bool,
    pub(crate) body: bool,
    pub(crate) headers: bool,
}

// === impl CompareRules ===

impl CompareRules {
    pub(crate) fn new(spec: &CompareSpec) -> CompareRules {
        CompareRules {
            body: spec.body,
            headers: spec.headers,
            ignore_headers: spec
                .ignore_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                .collect(),
            ignore_fields: spec
                .ignore_fields
                .iter()
                .map(|path| path.split('.').map(str::to_string).collect())
                .collect(),
            latency_factor: spec.latency_factor,
        }
    }

    /// Whether the bodies are compared (so stable's must be kept).
    pub(crate) fn wants_body(&self) -> bool {
        self.body
    }

    /// Whether answers' headers are needed (for the header comparison or a body's content type).
    pub(crate) fn wants_headers(&self) -> bool {
        self.headers || self.body
    }
}

// === impl Mismatch ===

impl Mismatch {
    pub(crate) fn any(self) -> bool {
        self.status || self.latency || self.body || self.headers
    }
}

/// Compares one pair under `rules`.
pub(crate) fn compare(rules: &CompareRules, stable: &Answer<'_>, canary: &Answer<'_>) -> Mismatch {
    let class = |status: Option<StatusCode>| status.map_or(0, |s| s.as_u16() / 100);
    let status = class(stable.status) != class(canary.status);
    let latency = rules.latency_factor.is_some_and(|factor| {
        canary.latency > stable.latency.mul_f64(factor) + Duration::from_millis(LATENCY_SLACK_MS)
    });
    // Bodies and headers of an answer that did not come say nothing more.
    let both = stable.status.is_some() && canary.status.is_some();
    let body = both
        && rules.body
        && match (stable.body, canary.body) {
            (Some(s), Some(c)) => {
                digest(rules, stable.headers, s) != digest(rules, canary.headers, c)
            }
            _ => false,
        };
    let headers = both && rules.headers && !same_headers(rules, stable.headers, canary.headers);
    Mismatch {
        status,
        latency,
        body,
        headers,
    }
}

fn same_headers(rules: &CompareRules, stable: &HeaderMap, canary: &HeaderMap) -> bool {
    kept_headers(rules, stable) == kept_headers(rules, canary)
}

/// The headers compared, sorted (the order of different names is not part of an answer).
fn kept_headers<'a>(rules: &CompareRules, headers: &'a HeaderMap) -> Vec<(&'a str, &'a [u8])> {
    let mut kept: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(name, _)| !rules.ignore_headers.contains(name))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    kept.sort_unstable();
    kept
}

/// The digest of a body: of its JSON value without the ignored fields (key
/// order and spacing then do not matter) when it is JSON, else of its bytes.
pub(crate) fn digest(rules: &CompareRules, headers: &HeaderMap, body: &[u8]) -> u64 {
    if is_json(headers) {
        if let Ok(mut value) = serde_json::from_slice::<Value>(body) {
            for path in &rules.ignore_fields {
                drop_field(&mut value, path);
            }
            let mut hash = Fnv::new();
            hash_value(&mut hash, &value);
            return hash.0;
        }
    }
    let mut hash = Fnv::new();
    hash.write(body);
    hash.0
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// Removes the field at `path`; through an array, from each element.
fn drop_field(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Object(map) if rest.is_empty() => {
            map.remove(first);
        }
        Value::Object(map) => {
            if let Some(inner) = map.get_mut(first) {
                drop_field(inner, rest);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| drop_field(item, path)),
        _ => {}
    }
}

/// Hashes a JSON value with object keys in sorted order and a tag per kind,
/// so that `{"a":1,"b":2}` and `{"b":2,"a":1}` agree and `"1"` and `1` do not.
fn hash_value(hash: &mut Fnv, value: &Value) {
    match value {
        Value::Null => hash.write(b"n"),
        Value::Bool(b) => hash.write(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            hash.write(b"#");
            hash.write(n.to_string().as_bytes());
        }
        Value::String(s) => {
            hash.write(b"s");
            hash.write(&(s.len() as u64).to_le_bytes());
            hash.write(s.as_bytes());
        }
        Value::Array(items) => {
            hash.write(b"[");
            hash.write(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| hash_value(hash, item));
        }
        Value::Object(map) => {
            hash.write(b"{");
            hash.write(&(map.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            for key in keys {
                hash.write(&(key.len() as u64).to_le_bytes());
                hash.write(key.as_bytes());
                hash_value(hash, &map[key.as_str()]);
            }
        }
    }
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn rules(yaml: &str) -> CompareRules {
        CompareRules::new(&serde_yaml_ng::from_str(yaml).unwrap())
    }

    fn answer<'a>(
        status: u16,
        latency_ms: u64,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Answer<'a> {
        Answer {
            status: Some(StatusCode::from_u16(status).unwrap()),
            latency: Duration::from_millis(latency_ms),
            headers,
            body: Some(body),
        }
    }

    fn json() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers
    }

    #[test]
    fn the_status_class_is_compared_not_the_code() {
        let rules = rules("{}");
        let h = HeaderMap::new();
        let ok = answer(200, 5, &h, b"");
        assert!(!compare(&rules, &ok, &answer(204, 5, &h, b"")).any());
        assert_eq!(
            compare(&rules, &ok, &answer(503, 5, &h, b"")),
            Mismatch {
                status: true,
                ..Mismatch::default()
            }
        );
        let no_answer = Answer { status: None, ..ok };
        assert!(compare(&rules, &ok, &no_answer).status);
        assert!(!compare(&rules, &no_answer, &no_answer).any());
    }

    #[test]
    fn latency_mismatches_above_the_factor_plus_slack() {
        let h = HeaderMap::new();
        let stable = answer(200, 100, &h, b"");
        let doubled = rules("{}");
        assert!(!compare(&doubled, &stable, &answer(200, 210, &h, b"")).latency);
        assert!(compare(&doubled, &stable, &answer(200, 211, &h, b"")).latency);
        // Sub-millisecond stables: the slack absorbs scheduling noise.
        let fast = answer(200, 0, &h, b"");
        assert!(!compare(&doubled, &fast, &answer(200, 9, &h, b"")).latency);
        let off = rules("latency_factor: null");
        assert!(!compare(&off, &stable, &answer(200, 2000, &h, b"")).any());
    }

    #[test]
    fn headers_are_compared_without_the_ignored_ones() {
        let rules = rules("headers: true");
        let mut stable = HeaderMap::new();
        stable.insert(
            "date",
            HeaderValue::from_static("Mon, 23 Nov 2026 00:00:00 GMT"),
        );
        stable.insert("x-version", HeaderValue::from_static("1"));
        let mut canary = HeaderMap::new();
        canary.insert(
            "Date",
            HeaderValue::from_static("Mon, 23 Nov 2026 00:00:01 GMT"),
        );
        canary.insert("x-version", HeaderValue::from_static("1"));
        let (s, c) = (answer(200, 1, &stable, b""), answer(200, 1, &canary, b""));
        assert!(!compare(&rules, &s, &c).any());
        canary.insert("x-version", HeaderValue::from_static("2"));
        let c = answer(200, 1, &canary, b"");
        assert!(compare(&rules, &s, &c).headers);
        // Not compared unless asked.
        assert!(!compare(&self::rules("{}"), &s, &c).any());
    }

    #[test]
    fn json_bodies_are_compared_without_ignored_fields() {
        let rules = rules("{ body: true, ignore_fields: [timestamp, meta.request_id, items.at] }");
        let h = json();
        let stable = br#"{"a":1,"timestamp":"t1","meta":{"request_id":"r1","v":2},"items":[{"id":1,"at":5}]}"#;
        let canary = br#"{ "items":[{"at":6,"id":1}], "meta":{"v":2,"request_id":"r2"}, "timestamp":"t2", "a":1 }"#;
        assert_eq!(digest(&rules, &h, stable), digest(&rules, &h, canary));
        assert!(!compare(
            &rules,
            &answer(200, 1, &h, stable),
            &answer(200, 1, &h, canary)
        )
        .any());
        let changed = br#"{"a":2,"timestamp":"t3","meta":{"request_id":"r3","v":2},"items":[{"id":1,"at":5}]}"#;
        assert!(
            compare(
                &rules,
                &answer(200, 1, &h, stable),
                &answer(200, 1, &h, changed)
            )
            .body
        );
        // A number is not the string of its digits.
        assert_ne!(
            digest(&rules, &h, br#"{"a":1}"#),
            digest(&rules, &h, br#"{"a":"1"}"#)
        );
    }

    #[test]
    fn other_bodies_are_compared_byte_for_byte() {
        let rules = rules("{ body: true, ignore_fields: [a] }");
        let text = HeaderMap::new();
        assert_ne!(
            digest(&rules, &text, br#"{"a":1}"#),
            digest(&rules, &text, br#"{"a":2}"#)
        );
        assert_eq!(
            digest(&rules, &text, b"same"),
            digest(&rules, &text, b"same")
        );
        // JSON that does not parse falls back to its bytes.
        let h = json();
        assert_ne!(digest(&rules, &h, b"{oops"), digest(&rules, &h, b"{oops!"));
        // A body that was not kept is not compared.
        let stable = answer(200, 1, &text, b"x");
        let unknown = Answer {
            body: None,
            ..answer(200, 1, &text, b"y")
        };
        assert!(!compare(&rules, &stable, &unknown).any());
    }
}
