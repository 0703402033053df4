//! The JSON bodies the admin API accepts, and the one function that decodes
//! them. Pure (bytes in, a value or a field error out), so the admin
//! handlers stay thin and the decoding is fuzzed on its own
//! (`fuzz/fuzz_targets/admin_inputs.rs`). Not for the responses: those are
//! the binary's.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::FieldError;

/// `POST /api/v1/rollouts/{service}/start`: an optional body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Canary endpoints (`host:port`); default: the config's canary pool.
    #[serde(default)]
    pub canary: Option<Vec<String>>,
}

/// `POST /api/v1/rollouts/{service}/undo`: an optional body.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoBody {
    /// The revision to serve again; default: the one before the newest.
    #[serde(default)]
    pub to_revision: Option<u64>,
}

/// `POST /api/v1/flags/{key}/percentage`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentageBody {
    /// The share of bucketing keys served `true`, 0..=100 (checked by the flag core).
    pub percentage: f64,
}

/// Decodes a JSON body; the error names where in the body it broke
/// (`canary[1]`, `failure_threshold`; empty for the document itself).
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        FieldError {
            path: if path == "." { String::new() } else { path },
            message: e.inner().to_string(),
        }
    })?;
    de.end().map_err(|e| FieldError {
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Decodes a body that may be empty or blank (then `T::default()`).
pub fn decode_optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, FieldError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        decode_json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_start_body_is_the_default() {
        let body: StartBody = decode_optional_json(b" \n").unwrap();
        assert_eq!(body, StartBody::default());
    }

    #[test]
    fn an_error_names_the_field_path() {
        let error = decode_json::<StartBody>(br#"{"canary": ["a:1", 2]}"#).unwrap_err();
        assert_eq!(error.path, "canary[1]");
        let error = decode_json::<UndoBody>(br#"{"to_revison": 3}"#).unwrap_err();
        assert!(error.message.contains("to_revison"), "{error:?}");
    }

    #[test]
    fn trailing_bytes_after_the_document_are_refused() {
        let error = decode_json::<PercentageBody>(br#"{"percentage": 5} x"#).unwrap_err();
        assert_eq!(error.path, "");
        assert!(error.message.contains("trailing"), "{error:?}");
    }

    #[test]
    fn a_percentage_body_decodes() {
        let body: PercentageBody = decode_json(br#"{"percentage": 12.5}"#).unwrap();
        assert_eq!(body.percentage, 12.5);
    }
}
