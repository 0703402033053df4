//! A secret-valued config field: the value itself, or where to read it
//! (`{env: NAME}`, `{file: /path}`), so that a config file can be committed
//! and printed without the secret in it. Parsing only: reading the variable
//! or the file is the binary's, at load.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

/// What a secret field holds: a literal value, or where to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a string, {env: NAME} or {file: /path}")]
pub enum Secret {
    /// The secret itself, written in the config (or already read from its source).
    Value(String),
    /// Where to read it: exactly one of `env`, `file`.
    From(SecretSource),
}

/// `{env: NAME}` (an environment variable) or `{file: /path}` (the file's
/// content without its trailing newline).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The file holding the secret (e.g. a mounted Kubernetes secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

// === impl Secret ===

impl Secret {
    /// The literal value, once given or resolved; None while it still names a source.
    pub fn value(&self) -> Option<&str> {
        match self {
            Secret::Value(value) => Some(value),
            Secret::From(_) => None,
        }
    }

    /// The rule this field breaks, if any (checked before it is resolved).
    pub fn problem(&self) -> Option<String> {
        match self {
            Secret::Value(value) if value.trim().is_empty() => {
                Some("an empty secret protects nothing; remove the field or set a value".into())
            }
            Secret::Value(_) => None,
            Secret::From(SecretSource { env, file }) => match (env, file) {
                (Some(_), Some(_)) | (None, None) => {
                    Some("give exactly one of `env: NAME` or `file: /path`".into())
                }
                (Some(name), None) if name.trim().is_empty() => {
                    Some("`env` names no variable".into())
                }
                (None, Some(path)) if path.as_os_str().is_empty() => {
                    Some("`file` names no file".into())
                }
                _ => None,
            },
        }
    }
}

/// A literal is printed as `<redacted>`; a source is printed as written.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Secret::Value(_) => serializer.serialize_str("<redacted>"),
            Secret::From(source) => source.serialize(serializer),
        }
    }
}

/// Never the value, so that a `{:?}` in a log cannot leak it.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::From(source) => f.debug_tuple("Secret").field(source).finish(),
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::Value(value.to_string())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::Value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_a_string_or_a_source_and_never_printed() {
        let value: Secret = serde_json::from_str("\"hunter2hunter2\"").unwrap();
        assert_eq!(value.value(), Some("hunter2hunter2"));
        assert_eq!(serde_json::to_string(&value).unwrap(), "\"<redacted>\"");
        assert!(!format!("{value:?}").contains("hunter2"));
        let env: Secret = serde_json::from_str(r#"{"env":"TOKEN_VAR"}"#).unwrap();
        assert_eq!(env.value(), None);
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            r#"{"env":"TOKEN_VAR"}"#
        );
        assert_eq!(env.problem(), None);
    }

    #[test]
    fn a_source_names_exactly_one_place() {
        for (text, says) in [
            (r#"{"env":"A","file":"/b"}"#, "exactly one"),
            (r#"{}"#, "exactly one"),
            (r#"{"env":" "}"#, "names no variable"),
            (r#""  ""#, "empty secret"),
        ] {
            let secret: Secret = serde_json::from_str(text).unwrap();
            let problem = secret.problem().unwrap_or_default();
            assert!(problem.contains(says), "{text}: {problem}");
        }
        let unknown = serde_json::from_str::<Secret>(r#"{"vault":"x"}"#).unwrap_err();
        assert!(unknown.to_string().contains("{env: NAME}"), "{unknown}");
    }
}
