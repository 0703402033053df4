//! [`FlagSet`]: the validated, compiled, immutable set of flags that
//! evaluation reads. Cloning is an `Arc` bump, so a server can swap a new
//! set in (arc-swap) while requests keep reading the old one. Changes
//! (a merge, a release plan's new percentage) build a new set.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::build::{self, Built, Mode};
use crate::flag::Flag;
use crate::{fingerprint, FieldError, FlagsError, FlagsSpec};

/// A validated set of flags; cheap to clone and share between threads.
#[derive(Clone, Debug)]
pub struct FlagSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sorted by key.
    flags: Vec<Arc<Flag>>,
    index: HashMap<Box<str>, usize>,
    metadata: Map<String, Value>,
    fingerprint: String,
}

const DEFAULT_SOURCE: &str = "inline";

// === impl FlagSet ===

impl FlagSet {
    /// Loads flagd's flag definition format (`{"flags": {...}, "$evaluators":
    /// {...}, "metadata": {...}}`; sluice's additions are accepted too).
    /// Strict: targeting that does not compile is an error, listed with
    /// every other problem.
    pub fn from_flagd_json(text: &str) -> Result<FlagSet, FlagsError> {
        let spec = parse_json(text)?;
        Self::build(spec, &|_| None, Mode::Strict).map(|(set, _)| set)
    }

    /// Loads flagd's format as flagd does: a flag whose targeting does not
    /// compile (unknown operator, unknown `$ref`) is kept and answers
    /// PARSE_ERROR; lints do not refuse the set. The problems come back as
    /// warnings. Structural errors (bad JSON, unknown default variant…) still fail.
    pub fn from_flagd_json_lenient(text: &str) -> Result<(FlagSet, Vec<FieldError>), FlagsError> {
        let spec = parse_json(text)?;
        Self::build(spec, &|_| None, Mode::Lenient)
    }

    /// Validates and compiles a spec (read from YAML or JSON by the caller),
    /// applying the environment overrides it names through `env`
    /// (`&|name| std::env::var(name).ok()` in a binary, a map in tests).
    pub fn from_spec(
        spec: FlagsSpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FlagSet, FlagsError> {
        Self::build(spec, env, Mode::Strict).map(|(set, _)| set)
    }

    fn build(
        spec: FlagsSpec,
        env: &dyn Fn(&str) -> Option<String>,
        mode: Mode,
    ) -> Result<(FlagSet, Vec<FieldError>), FlagsError> {
        let source: Arc<str> = Arc::from(DEFAULT_SOURCE);
        let Built {
            flags,
            metadata,
            warnings,
        } = build::build(spec, env, mode, &source).map_err(FlagsError::Invalid)?;
        let flags = flags.into_iter().map(Arc::new).collect();
        Ok((FlagSet::assemble(flags, metadata), warnings))
    }

    /// An empty set.
    pub fn empty() -> FlagSet {
        FlagSet::assemble(Vec::new(), Map::new())
    }

    /// Names where these flags came from (a file path, "api", "env"…), for
    /// [`FlagSet::merge`]'s errors and [`Flag::source`].
    pub fn with_source(&self, source: &str) -> FlagSet {
        let source: Arc<str> = Arc::from(source);
        let flags = self
            .inner
            .flags
            .iter()
            .map(|flag| {
                let mut flag = Flag::clone(flag);
                flag.source = source.clone();
                Arc::new(flag)
            })
            .collect();
        FlagSet::assemble(flags, self.inner.metadata.clone())
    }

    /// Unites sets from several sources. A key defined in two sources is an
    /// error naming both (all such keys are listed): two files silently
    /// shadowing each other is how a flag ends up on in production by
    /// surprise. Set-level metadata is united too; a key whose values
    /// differ between sources is dropped (each flag keeps its own copy).
    pub fn merge(sets: impl IntoIterator<Item = FlagSet>) -> Result<FlagSet, FlagsError> {
        let mut by_key: HashMap<Box<str>, Arc<Flag>> = HashMap::new();
        let mut errors = Vec::new();
        let mut metadata = Map::new();
        let mut conflicting = Vec::new();
        for set in sets {
            for flag in &set.inner.flags {
                if let Some(first) = by_key.get(flag.key()) {
                    errors.push(FieldError::new(
                        format!("flags.{}", flag.key()),
                        format!(
                            "defined in both \"{}\" and \"{}\"",
                            first.source(),
                            flag.source()
                        ),
                    ));
                } else {
                    by_key.insert(flag.key.clone(), flag.clone());
                }
            }
            for (key, value) in &set.inner.metadata {
                match metadata.get(key) {
                    Some(existing) if existing != value => conflicting.push(key.clone()),
                    _ => {
                        metadata.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(FlagsError::Invalid(errors));
        }
        for key in conflicting {
            metadata.remove(&key);
        }
        Ok(FlagSet::assemble(by_key.into_values().collect(), metadata))
    }

    fn assemble(mut flags: Vec<Arc<Flag>>, metadata: Map<String, Value>) -> FlagSet {
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        let index = flags
            .iter()
            .enumerate()
            .map(|(i, flag)| (flag.key.clone(), i))
            .collect();
        let fingerprint = fingerprint::set_fingerprint(flags.iter().map(|f| &**f), &metadata);
        FlagSet {
            inner: Arc::new(Inner {
                flags,
                index,
                metadata,
                fingerprint,
            }),
        }
    }

    /// The flag with this key.
    pub fn get(&self, key: &str) -> Option<&Flag> {
        self.inner.index.get(key).map(|&i| &*self.inner.flags[i])
    }

    /// Every key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.inner.flags.iter().map(|flag| flag.key())
    }

    /// Every flag, sorted by key.
    pub fn flags(&self) -> impl Iterator<Item = &Flag> {
        self.inner.flags.iter().map(|flag| &**flag)
    }

    /// How many flags there are.
    pub fn len(&self) -> usize {
        self.inner.flags.len()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.inner.flags.is_empty()
    }

    /// Set-level metadata (flagd's `metadata`; OFREP's bulk `metadata`).
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.inner.metadata
    }

    /// A stable digest of every definition (32 hex digits), for ETags: equal
    /// sets give equal fingerprints in every process.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// A flag's percentage rollout, if it has one.
    pub fn percentage(&self, key: &str) -> Option<f64> {
        self.get(key)?.percentage()
    }

    /// The same set with one boolean flag's percentage set (a release plan
    /// ramping it). Keys keep their buckets: raising the percentage only
    /// adds keys to the enabled side.
    pub fn with_percentage(&self, key: &str, percentage: f64) -> Result<FlagSet, FlagsError> {
        let path = format!("flags.{key}");
        let Some(&i) = self.inner.index.get(key) else {
            return Err(FlagsError::one(path, "no flag has this key"));
        };
        let current = &self.inner.flags[i];
        let bucket_by = current.bucket_by();
        let rule = build::percentage_rule(&current.variants, percentage, bucket_by.as_deref())
            .map_err(|(field, message)| FlagsError::one(format!("{path}.{field}"), message))?;
        let mut flag = Flag::clone(current);
        flag.percentage = Some(rule);
        flag.digest = fingerprint::flag_digest(&flag);
        let mut flags = self.inner.flags.clone();
        flags[i] = Arc::new(flag);
        Ok(FlagSet::assemble(flags, self.inner.metadata.clone()))
    }
}

impl Default for FlagSet {
    fn default() -> Self {
        FlagSet::empty()
    }
}

fn parse_json(text: &str) -> Result<FlagsSpec, FlagsError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FlagsError::Parse(FieldError::new(path, e.into_inner().to_string()))
    })?;
    de.end()
        .map_err(|e| FlagsError::Parse(FieldError::new("", e.to_string())))?;
    Ok(spec)
}
