//! A stable digest of a flag set, for ETags: MurmurHash3 x64_128 over a
//! canonical JSON form (object keys sorted, no whitespace) of everything
//! that changes an evaluation. The same definitions give the same digest
//! in every process and on every machine, whatever order they were
//! written or merged in; the source names are not part of it.

use serde_json::{Map, Value};

use crate::flag::{Flag, Rule};

/// The digest of one flag.
pub(crate) fn flag_digest(flag: &Flag) -> u128 {
    let mut doc = Map::new();
    doc.insert("key".into(), flag.key_value.clone());
    doc.insert("state".into(), Value::from(flag.state.as_str()));
    let variants: Map<String, Value> = flag
        .variants
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    doc.insert("variants".into(), Value::Object(variants));
    if let Some(name) = flag.default_variant() {
        doc.insert("defaultVariant".into(), Value::from(name));
    }
    if let Some(targeting) = &flag.targeting {
        doc.insert("targeting".into(), targeting.clone());
    }
    if let Rule::Broken(message) = &flag.rule {
        doc.insert("parseError".into(), Value::from(message.as_str()));
    }
    if let (Some(pct), Some(by)) = (flag.percentage(), flag.bucket_by()) {
        doc.insert("percentage".into(), Value::from(pct));
        doc.insert("bucket_by".into(), Value::from(by));
    }
    if !flag.metadata.is_empty() {
        doc.insert("metadata".into(), Value::Object(flag.metadata.clone()));
    }
    if !flag.segments.is_empty() {
        let segments = flag
            .segments
            .iter()
            .map(|(name, members)| (name.clone(), Value::from(members.clone())))
            .collect();
        doc.insert("segments".into(), Value::Object(segments));
    }
    digest(&canonical(&Value::Object(doc)))
}

/// The digest of a set: its flags' digests in key order, then its metadata.
pub(crate) fn set_fingerprint<'a>(
    flags: impl Iterator<Item = &'a Flag>,
    metadata: &Map<String, Value>,
) -> String {
    let mut bytes = Vec::new();
    for flag in flags {
        bytes.extend_from_slice(&flag.digest.to_le_bytes());
    }
    bytes.extend_from_slice(&canonical(&Value::Object(metadata.clone())));
    format!("{:032x}", digest(&bytes))
}

fn digest(bytes: &[u8]) -> u128 {
    // Reading a byte slice cannot fail.
    let mut reader = bytes;
    murmur3::murmur3_x64_128(&mut reader, 0).unwrap_or(0)
}

/// JSON with object keys sorted at every level, whatever map type serde_json
/// was built with (`preserve_order` keeps insertion order).
fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::from(key.as_str()).to_string().as_bytes());
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "s"}});
        assert_eq!(
            String::from_utf8(canonical(&a)).unwrap(),
            r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }
}
