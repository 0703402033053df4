//! Where flags come from and how the sources become one flag set: the
//! config's inline definitions, flagd files, and the flags written through
//! the API (which win over the others, key by key). A key defined by two
//! files (or a file and the config) is an error naming both; the set is
//! validated whole, so a bad source is refused with its field paths and the
//! previous set keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sluice_flags::{FlagSet, FlagSpec, FlagsSpec};
use sluice_model::FieldError;

/// A watched flag file and what it held when last read.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// Modification time and length when read; a change of either re-reads it.
    pub stamp: Option<(SystemTime, u64)>,
    pub spec: FlagsSpec,
}

/// What the API wrote: whole flags (replacing any other source's) and the
/// keys switched off by the kill switch. Persisted in the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFlags {
    #[serde(default)]
    pub flags: BTreeMap<String, FlagSpec>,
    #[serde(default)]
    pub killed: BTreeSet<String>,
}

/// Every source of flags.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub definitions: FlagsSpec,
    pub files: Vec<SourceFile>,
    pub api: ApiFlags,
    /// The store revision of `api` (0: never written).
    pub api_revision: u64,
}

/// A validated, compiled flag set with what it was built from.
pub struct Built {
    pub set: FlagSet,
    /// The definitions as served (sources combined, API flags applied).
    pub combined: FlagsSpec,
    /// Where each flag comes from: `config`, a file path, or `api`.
    pub origin: BTreeMap<String, String>,
}

/// The file's current stamp (None when it cannot be read).
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads a flag file: flagd JSON, or the same document in YAML.
pub fn read_file(path: &Path) -> Result<SourceFile, Vec<FieldError>> {
    let name = path.display().to_string();
    let fail = |message: String| {
        vec![FieldError {
            path: name.clone(),
            message,
        }]
    };
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let spec: FlagsSpec = if name.ends_with(".yaml") || name.ends_with(".yml") {
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de)
            .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?
    } else {
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?
    };
    Ok(SourceFile {
        path: path.to_path_buf(),
        stamp,
        spec,
    })
}

/// Combines the sources and compiles them; `env` answers environment variables.
pub fn build(
    inputs: &Inputs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Built, Vec<FieldError>> {
    let mut combined = FlagsSpec::default();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut evaluator_origin: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    let sources = std::iter::once(("config".to_string(), &inputs.definitions)).chain(
        inputs
            .files
            .iter()
            .map(|f| (f.path.display().to_string(), &f.spec)),
    );
    for (name, spec) in sources {
        for (key, flag) in &spec.flags {
            if let Some(first) = origin.get(key) {
                errors.push(FieldError {
                    path: format!("flags.{key}"),
                    message: format!("defined in both {first} and {name}"),
                });
                continue;
            }
            origin.insert(key.clone(), name.clone());
            combined.flags.insert(key.clone(), flag.clone());
        }
        for (evaluator, rule) in &spec.evaluators {
            match combined.evaluators.get(evaluator) {
                Some(existing) if existing != rule => errors.push(FieldError {
                    path: format!("$evaluators.{evaluator}"),
                    message: format!(
                        "defined differently in {} and {name}",
                        evaluator_origin[evaluator]
                    ),
                }),
                _ => {
                    evaluator_origin.insert(evaluator.clone(), name.clone());
                    combined.evaluators.insert(evaluator.clone(), rule.clone());
                }
            }
        }
        for (segment, members) in &spec.segments {
            let entry = combined.segments.entry(segment.clone()).or_default();
            for member in members {
                if !entry.contains(member) {
                    entry.push(member.clone());
                }
            }
        }
        for (k, v) in &spec.metadata {
            combined.metadata.insert(k.clone(), v.clone());
        }
    }
    for (key, flag) in &inputs.api.flags {
        origin.insert(key.clone(), "api".to_string());
        combined.flags.insert(key.clone(), flag.clone());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let set = FlagSet::from_spec(combined.clone(), env).map_err(|e| {
        e.errors()
            .into_iter()
            .map(|e| {
                let source = e
                    .path
                    .strip_prefix("flags.")
                    .and_then(|rest| rest.split('.').next())
                    .and_then(|key| origin.get(key));
                FieldError {
                    message: match source {
                        Some(source) => format!("{} (from {source})", e.message),
                        None => e.message,
                    },
                    path: e.path,
                }
            })
            .collect::<Vec<_>>()
    })?;
    Ok(Built {
        set,
        combined,
        origin,
    })
}

/// The keys whose definition differs between two combined specs, with the
/// definitions before and after (None: absent).
pub fn diff(
    before: &FlagsSpec,
    after: &FlagsSpec,
) -> Vec<(String, Option<serde_json::Value>, Option<serde_json::Value>)> {
    let keys: BTreeSet<&String> = before.flags.keys().chain(after.flags.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let old = before.flags.get(key);
            let new = after.flags.get(key);
            (old != new).then(|| {
                (
                    key.clone(),
                    old.and_then(|f| serde_json::to_value(f).ok()),
                    new.and_then(|f| serde_json::to_value(f).ok()),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FlagsSpec {
        serde_json::from_str(json).unwrap()
    }

    const ON_OFF: &str =
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#;

    #[test]
    fn a_key_in_two_sources_is_refused_and_the_api_wins_over_both() {
        let mut inputs = Inputs {
            definitions: spec(&format!(r#"{{"flags": {{"a": {ON_OFF}}}}}"#)),
            files: vec![SourceFile {
                path: "flags.json".into(),
                stamp: None,
                spec: spec(&format!(r#"{{"flags": {{"a": {ON_OFF}, "b": {ON_OFF}}}}}"#)),
            }],
            ..Inputs::default()
        };
        let errors = build(&inputs, &|_| None).err().unwrap();
        assert_eq!(errors[0].path, "flags.a");
        assert_eq!(errors[0].message, "defined in both config and flags.json");

        inputs.files[0].spec.flags.remove("a");
        let mut api_flag: FlagSpec = serde_json::from_str(ON_OFF).unwrap();
        api_flag.default_variant = Some("on".into());
        inputs.api.flags.insert("b".into(), api_flag);
        let built = build(&inputs, &|_| None).unwrap();
        assert_eq!(built.origin["a"], "config");
        assert_eq!(built.origin["b"], "api");
        let ctx = sluice_flags::Context::empty(0);
        assert_eq!(built.set.evaluate("b", &ctx, false).variant, Some("on"));
    }

    #[test]
    fn an_invalid_flag_names_its_path_and_source() {
        let inputs = Inputs {
            files: vec![SourceFile {
                path: "bad.json".into(),
                stamp: None,
                spec: spec(
                    r#"{"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}}"#,
                ),
            }],
            ..Inputs::default()
        };
        let errors = build(&inputs, &|_| None).err().unwrap();
        assert!(errors[0].path.starts_with("flags.x"), "{errors:?}");
        assert!(errors[0].message.ends_with("(from bad.json)"), "{errors:?}");
    }

    #[test]
    fn diff_lists_changed_keys_only() {
        let before = spec(&format!(r#"{{"flags": {{"a": {ON_OFF}, "b": {ON_OFF}}}}}"#));
        let mut after = before.clone();
        after.flags.remove("a");
        after.flags.get_mut("b").unwrap().percentage = Some(10.0);
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].0, "a");
        assert!(changes[0].2.is_none());
        assert_eq!(changes[1].2.as_ref().unwrap()["percentage"], 10.0);
    }
}
