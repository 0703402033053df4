//! OFREP (OpenFeature Remote Evaluation Protocol) over HTTP: single-flag
//! and bulk evaluation with the protocol's request and response shapes,
//! error codes and statuses, an ETag on bulk answers, and auth by an admin
//! token (any role) or a read token (`Authorization: Bearer` or `X-API-Key`).

use std::hash::{Hash, Hasher};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sluice_flags::{Context, ErrorCode, Evaluation};

use crate::admin::AdminState;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(one))
        .route("/ofrep/v1/evaluate/flags", post(bulk))
}

/// Whether the caller may evaluate: open when no token is configured.
fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let read_tokens = state.flags.read_tokens();
    if !state.access.protected() && read_tokens.is_empty() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(given) = given else { return false };
    // Every read token is compared (no early exit), and the admin tokens too.
    let read = read_tokens.iter().fold(false, |found, token| {
        crate::admin::access::constant_time_eq(given.as_bytes(), token.as_bytes()) | found
    });
    state.access.knows(given) | read
}

fn now_unix_seconds() -> i64 {
    (sluice_model::Timestamp::now_system().millis() / 1000) as i64
}

/// A bad request: its error code and details.
struct BadRequest(ErrorCode, String);

impl BadRequest {
    fn into_response(self, key: Option<&str>) -> Response {
        let mut body = json!({"errorCode": self.0.as_str(), "errorDetails": self.1});
        if let Some(key) = key {
            body["key"] = json!(key);
        }
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

/// The request's context, or why the request is bad.
fn context(body: &[u8]) -> Result<Context, BadRequest> {
    sluice_flags::ofrep::context_from_request(body, now_unix_seconds())
        .map_err(|bad| BadRequest(bad.code, bad.details))
}

/// The success body of one evaluation.
fn success(evaluation: &Evaluation<'_>) -> Value {
    let mut body = Map::new();
    body.insert("key".into(), json!(evaluation.key));
    if let Some(value) = evaluation.value {
        body.insert("value".into(), value.clone());
    }
    body.insert("reason".into(), json!(evaluation.reason.as_str()));
    if let Some(variant) = evaluation.variant {
        body.insert("variant".into(), json!(variant));
    }
    body.insert(
        "metadata".into(),
        Value::Object(evaluation.metadata.clone()),
    );
    Value::Object(body)
}

fn failure(evaluation: &Evaluation<'_>, code: ErrorCode, details: &str) -> Value {
    json!({"key": evaluation.key, "errorCode": code.as_str(), "errorDetails": details})
}

async fn one(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ctx = match context(&body) {
        Ok(ctx) => ctx,
        Err(bad) => return bad.into_response(Some(&key)),
    };
    let served = state.flags.served();
    let evaluation = state.flags.evaluate_counted(&served, &key, &ctx);
    match &evaluation.error {
        None => (StatusCode::OK, axum::Json(success(&evaluation))).into_response(),
        Some((code, details)) => {
            let status = match code {
                ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, axum::Json(failure(&evaluation, *code, details))).into_response()
        }
    }
}

async fn bulk(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ctx = match context(&body) {
        Ok(ctx) => ctx,
        Err(bad) => return bad.into_response(None),
    };
    let served = state.flags.served();
    let flags: Vec<Value> = served
        .set
        .flags()
        .map(|flag| {
            let evaluation = state.flags.evaluate_counted(&served, flag.key(), &ctx);
            match &evaluation.error {
                None => success(&evaluation),
                Some((code, details)) => failure(&evaluation, *code, details),
            }
        })
        .collect();
    let body = match serde_json::to_vec(&json!({"flags": flags})) {
        Ok(body) => body,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"errorDetails": e.to_string()})),
            )
                .into_response()
        }
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body,
    )
        .into_response()
}
