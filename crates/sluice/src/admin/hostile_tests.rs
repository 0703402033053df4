//! Malformed input to the admin API and OFREP, in-process: broken JSON,
//! wrong types, unknown fields, deep nesting, huge bodies, wrong methods.
//! Each answers a 4xx problem (OFREP: its own error shape) naming what was
//! wrong — never a 500, never a panic.

use axum::http::StatusCode;
use serde_json::Value;

use super::tests::{admin, call};

/// Calls and parses a problem+json answer; asserts the status and type.
async fn problem(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
    status: StatusCode,
) -> Value {
    let (got, content_type, text) = call(app, method, uri, None, body).await;
    assert_eq!(got, status, "{method} {uri}: {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "{method} {uri}: {text}"
    );
    let problem: Value = serde_json::from_str(&text).expect("a JSON problem");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    problem
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

const POLICY: &str = "/api/v1/breakers/policies/strict";

#[tokio::test]
async fn malformed_json_is_a_400_problem_saying_where() {
    let app = admin(None, true).await;
    for body in ["{", "{\"failure_threshold\": }", "not json", "\u{0}"] {
        let p = problem(&app, "PUT", POLICY, body, StatusCode::BAD_REQUEST).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON body"),
            "{p}"
        );
    }
    let p = problem(
        &app,
        "POST",
        "/api/v1/rollouts/web/start",
        "{\"canary\": [\"127.0.0.1:9\"",
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("EOF"), "{p}");
}

#[tokio::test]
async fn wrong_types_name_the_field_path() {
    let app = admin(None, true).await;
    let p = problem(
        &app,
        "PUT",
        POLICY,
        r#"{"failure_threshold": "five"}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["path"], "failure_threshold", "{p}");
    let p = problem(
        &app,
        "POST",
        "/api/v1/rollouts/web/start",
        r#"{"canary": ["127.0.0.1:9", 7]}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["path"], "canary[1]", "{p}");
    let p = problem(
        &app,
        "PUT",
        "/api/v1/flags/new-builder",
        r#"{"state": "ENABLED", "variants": {"on": true}, "percentage": "ten"}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["path"], "percentage", "{p}");
    let p = problem(
        &app,
        "POST",
        "/api/v1/rollouts/web/undo",
        r#"{"to_revision": -1}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(p["errors"][0]["path"], "to_revision", "{p}");
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let app = admin(None, true).await;
    for (method, uri, body, field) in [
        (
            "PUT",
            POLICY,
            r#"{"failure_thresold": 3}"#,
            "failure_thresold",
        ),
        (
            "POST",
            "/api/v1/rollouts/web/start",
            r#"{"canaries": []}"#,
            "canaries",
        ),
        (
            "PUT",
            "/api/v1/flags/f",
            r#"{"state": "ENABLED", "variants": {"on": true}, "colour": 1}"#,
            "colour",
        ),
    ] {
        let p = problem(&app, method, uri, body, StatusCode::BAD_REQUEST).await;
        assert!(p["detail"].as_str().unwrap().contains(field), "{uri}: {p}");
    }
}

#[tokio::test]
async fn deep_nesting_is_a_400_not_a_stack_overflow() {
    let app = admin(None, true).await;
    let deep = format!(r#"{{"canary": {}}}"#, nested(100_000));
    let p = problem(
        &app,
        "POST",
        "/api/v1/rollouts/web/start",
        &deep,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // A typed field refuses the first level it does not expect.
    assert_eq!(p["errors"][0]["path"], "canary[0]", "{p}");
    let targeting = format!(
        r#"{{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "targeting": {}}}"#,
        nested(100_000)
    );
    let p = problem(
        &app,
        "PUT",
        "/api/v1/flags/f",
        &targeting,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("recursion"), "{p}");

    let (status, _, text) = call(
        &app,
        "POST",
        "/ofrep/v1/evaluate/flags",
        None,
        &format!(r#"{{"context": {{"a": {}}}}}"#, nested(100_000)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["errorCode"], "PARSE_ERROR", "{error}");
}

#[tokio::test]
async fn a_huge_body_is_a_413_problem() {
    let app = admin(None, true).await;
    let huge = format!(r#"{{"canary": ["{}"]}}"#, "a".repeat(3 * 1024 * 1024));
    for (method, uri) in [
        ("POST", "/api/v1/rollouts/web/start"),
        ("PUT", POLICY),
        ("PUT", "/api/v1/flags/f"),
        ("POST", "/ofrep/v1/evaluate/flags"),
        ("POST", "/ofrep/v1/evaluate/flags/f"),
    ] {
        let p = problem(&app, method, uri, &huge, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(
            p["detail"].as_str().unwrap().contains("larger than"),
            "{uri}: {p}"
        );
    }
}

#[tokio::test]
async fn ofrep_answers_bad_requests_in_its_own_shape() {
    let app = admin(None, true).await;
    for (body, code) in [
        ("{", "PARSE_ERROR"),
        ("[1, 2]", "INVALID_CONTEXT"),
        (r#"{"context": 5}"#, "INVALID_CONTEXT"),
        (r#"{"context": {"targetingKey": 5}}"#, "INVALID_CONTEXT"),
    ] {
        let (status, content_type, text) =
            call(&app, "POST", "/ofrep/v1/evaluate/flags/f", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert_eq!(content_type, "application/json", "{body}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["errorCode"], code, "{body}: {error}");
    }
}

#[tokio::test]
async fn a_wrong_method_or_undecodable_path_is_a_problem() {
    let app = admin(None, true).await;
    problem(
        &app,
        "DELETE",
        "/api/v1/rollouts",
        "",
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    problem(
        &app,
        "GET",
        "/api/v1/rollouts/%FF%FE",
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;
}
