//! The OFREP evaluation request (`{"context": {...}}`) read into a
//! [`Context`]: the one parser of the evaluation endpoints' bodies, pure
//! (the request time is a parameter) so it is tested and fuzzed here
//! (`fuzz/fuzz_targets/ofrep_context.rs`). The HTTP shell, auth and the
//! response shapes are the binary's.

use serde_json::Value;

use crate::{Context, ErrorCode};

/// Why an OFREP request body was refused: the protocol's error code and a
/// detail naming the offending part.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {details}")]
pub struct BadRequest {
    /// `PARSE_ERROR` for a body that is not JSON, `INVALID_CONTEXT` otherwise.
    pub code: ErrorCode,
    /// What was wrong, for `errorDetails`.
    pub details: String,
}

/// Reads an evaluation request's body. A blank body, a missing `context`
/// or `"context": null` is the empty context; `targetingKey`, when given,
/// must be a string.
pub fn context_from_request(body: &[u8], now_unix_seconds: i64) -> Result<Context, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::empty(now_unix_seconds));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| BadRequest {
        code: ErrorCode::ParseError,
        details: format!("the request body is not JSON: {e}"),
    })?;
    let context = match request {
        Value::Object(mut object) => object.remove("context").unwrap_or(Value::Null),
        _ => {
            return Err(BadRequest {
                code: ErrorCode::InvalidContext,
                details: "the request body must be an object with a \"context\" object".into(),
            })
        }
    };
    if let Some(key) = context.get("targetingKey") {
        if !key.is_string() {
            return Err(BadRequest {
                code: ErrorCode::InvalidContext,
                details: format!("targetingKey must be a string, not {key}"),
            });
        }
    }
    Context::from_value(context, now_unix_seconds).map_err(|code| BadRequest {
        code,
        details: "\"context\" must be an object".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn a_blank_body_or_a_missing_context_is_the_empty_context() {
        for body in [&b""[..], b" \r\n", b"{}", br#"{"context": null}"#] {
            let ctx = context_from_request(body, NOW).unwrap();
            assert_eq!(
                ctx,
                Context::empty(NOW),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_context_carries_its_attributes_and_the_time() {
        let ctx = context_from_request(
            br#"{"context": {"targetingKey": "user-1", "tenant": "acme"}}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(ctx.targeting_key(), Some("user-1"));
        assert_eq!(ctx.attributes()["tenant"], "acme");
        assert_eq!(ctx.now_unix_seconds(), NOW);
    }

    #[test]
    fn bad_bodies_name_their_error_code() {
        let cases: [(&[u8], ErrorCode, &str); 4] = [
            (b"{", ErrorCode::ParseError, "not JSON"),
            (b"[1]", ErrorCode::InvalidContext, "must be an object"),
            (
                br#"{"context": {"targetingKey": 7}}"#,
                ErrorCode::InvalidContext,
                "targetingKey must be a string, not 7",
            ),
            (
                br#"{"context": "acme"}"#,
                ErrorCode::InvalidContext,
                "\"context\" must be an object",
            ),
        ];
        for (body, code, details) in cases {
            let error = context_from_request(body, NOW).unwrap_err();
            assert_eq!(error.code, code, "{error}");
            assert!(error.details.contains(details), "{error}");
        }
    }
}
