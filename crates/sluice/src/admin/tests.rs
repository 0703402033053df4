//! The admin API in-process (`Router::oneshot`): routes, problem+json,
//! the token on mutating calls, readiness and `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sluice_model::Config;
use sluice_proxy::{Metrics, Proxy, RouteTable};
use sluice_store::MemoryStore;
use tower::ServiceExt;

use super::{router, AdminState};
use crate::controller::Controller;
use crate::server::ReloadCounters;

const CONFIG: &str = r#"
services:
  - name: web
    versions:
      stable: { endpoints: ["127.0.0.1:1"] }
      canary: { endpoints: ["127.0.0.1:2"] }
    rollout:
      interval: 1h
      step_weights: [10, 50]
"#;

pub(super) async fn admin(token: Option<&str>, ready: bool) -> Router {
    let mut config = Config::from_yaml(CONFIG).unwrap();
    config.admin.token = token.map(|t| sluice_model::Secret::Value(t.to_string()));
    admin_with(config, ready).await
}

async fn admin_with(config: Config, ready: bool) -> Router {
    let access = Arc::new(super::Access::new(&config.admin));
    let metrics = Metrics::new();
    let proxy = Proxy::new(
        &config.proxy,
        RouteTable::build(&config, &HashMap::new(), &metrics),
        metrics.clone(),
    );
    let store = Arc::new(MemoryStore::new());
    let flags = crate::flags::FlagServer::start(&config.flags, &[], store.clone()).unwrap();
    let controller = Controller::start(Arc::new(config), store, proxy, metrics, flags.clone())
        .await
        .unwrap();
    router(AdminState {
        cluster: None,
        flags,
        controller,
        ready: Arc::new(AtomicBool::new(ready)),
        access,
        config_source: None,
        reloads: Arc::new(ReloadCounters::default()),
    })
}

pub(super) async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn status_lists_the_rollout_the_config_started() {
    let app = admin(None, true).await;
    let (status, _, body) = call(&app, "GET", "/api/v1/rollouts", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["service"], "web");
    assert_eq!(list[0]["phase"], "Progressing");
    assert_eq!(list[0]["weight"], 10.0);
    let (_, _, body) = call(&app, "GET", "/api/v1/rollouts/web", None, "").await;
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["decisions"][0]["kind"], "started");
}

#[tokio::test]
async fn mutating_calls_need_the_token_and_errors_are_problem_json() {
    let app = admin(Some("t0ken"), true).await;
    let (status, content_type, body) =
        call(&app, "POST", "/api/v1/rollouts/web/pause", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["title"], "Unauthorized");

    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/pause",
        Some("t0ken"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"phase\":\"Paused\""), "{body}");

    let (status, content_type, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/nope/pause",
        Some("t0ken"),
        "",
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    assert!(body.contains("no service named \\\"nope\\\""), "{body}");

    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/explode",
        Some("t0ken"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no rollout action"), "{body}");

    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/start",
        Some("t0ken"),
        r#"{"canary": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("\"path\":\"canary\""),
        "the error names the field: {body}"
    );

    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/start",
        Some("t0ken"),
        r#"{"canary": ["nohost"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("nohost"), "{body}");

    let (status, _, _) = call(&app, "POST", "/api/v1/config/reload", Some("t0ken"), "").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "no config file to reload from"
    );

    let (status, _, body) = call(&app, "GET", "/api/v1/nothing", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("no admin endpoint GET /api/v1/nothing"),
        "{body}"
    );
}

#[tokio::test]
async fn a_final_rollout_refuses_actions_with_409() {
    let app = admin(None, true).await;
    let (status, _, _) = call(&app, "POST", "/api/v1/rollouts/web/abort", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&app, "POST", "/api/v1/rollouts/web/promote", None, "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("already ended"), "{body}");
}

#[tokio::test]
async fn readiness_follows_the_latch_and_health_is_always_ok() {
    let app = admin(None, false).await;
    assert_eq!(
        call(&app, "GET", "/readyz", None, "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&app, "GET", "/readinessz", None, "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&app, "GET", "/healthz", None, "").await.0,
        StatusCode::OK
    );
    let app = admin(None, true).await;
    assert_eq!(
        call(&app, "GET", "/readyz", None, "").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_show_weight_and_phase() {
    let app = admin(None, true).await;
    let (status, content_type, body) = call(&app, "GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert!(
        body.contains("sluice_canary_weight_ratio{service=\"web\"} 0.1\n"),
        "{body}"
    );
    assert!(
        body.contains("sluice_rollout_phase{service=\"web\",phase=\"Progressing\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("sluice_rollout_phase{service=\"web\",phase=\"Succeeded\"} 0\n"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE sluice_config_reloads_total counter"),
        "{body}"
    );
}

#[tokio::test]
async fn the_dashboard_is_served_with_types_validators_and_a_strict_policy() {
    let app = admin(None, true).await;
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()[header::LOCATION], "/ui/");

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/rollout.js", "text/javascript; charset=utf-8"),
        ("/ui/chart.js", "text/javascript; charset=utf-8"),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        // Unchanged: 304 without a body.
        let etag = headers[header::ETAG].clone();
        let again = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header(header::IF_NONE_MATCH, etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let (status, content_type, _) = call(&app, "GET", "/ui/missing.js", None, "").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    // No inline script: every script is a file the policy allows.
    let (_, _, html) = call(&app, "GET", "/ui/", None, "").await;
    assert_eq!(html.matches("<script").count(), 3, "{html}");
    assert_eq!(html.matches("<script src=").count(), 3, "{html}");
}

#[tokio::test]
async fn the_session_says_whether_a_token_is_needed_and_given() {
    let session = |app: Router, token: Option<&'static str>| async move {
        let (status, _, body) = call(&app, "GET", "/api/v1/session", token, "").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let open = admin(None, true).await;
    assert_eq!(
        session(open, None).await,
        serde_json::json!({"token_required": false, "authorized": true, "name": null,
            "role": "admin", "can_act": true, "can_configure": true})
    );
    let guarded = admin(Some("t0ken"), true).await;
    assert_eq!(
        session(guarded.clone(), None).await,
        serde_json::json!({"token_required": true, "authorized": false, "name": null,
            "role": null, "can_act": false, "can_configure": false})
    );
    assert_eq!(
        session(guarded.clone(), Some("wrong")).await["authorized"],
        false
    );
    let signed = session(guarded, Some("t0ken")).await;
    assert_eq!(signed["authorized"], true);
    assert_eq!(signed["name"], "admin");
    assert_eq!(signed["role"], "admin");
}

/// A config with one token per role and reads protected.
fn with_roles() -> Config {
    let mut config = Config::from_yaml(CONFIG).unwrap();
    config.admin.require_token_for_reads = true;
    config.admin.tokens = [
        ("watcher", sluice_model::Role::Viewer, "viewer-token"),
        ("ci", sluice_model::Role::Operator, "operator-token"),
        ("lead", sluice_model::Role::Admin, "admin-token"),
    ]
    .into_iter()
    .map(|(name, role, token)| sluice_model::AdminToken {
        name: name.into(),
        role,
        token: sluice_model::Secret::Value(token.into()),
    })
    .collect();
    config
}

#[tokio::test]
async fn each_route_needs_the_least_role_that_may_call_it() {
    let app = admin_with(with_roles(), true).await;
    for open in ["/healthz", "/readyz", "/metrics", "/ui/", "/api/v1/session"] {
        let (status, _, _) = call(&app, "GET", open, None, "").await;
        assert_eq!(status, StatusCode::OK, "{open} stays open");
    }
    let (status, content_type, _) = call(&app, "GET", "/api/v1/rollouts", None, "").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::UNAUTHORIZED, "application/problem+json")
    );
    let (status, _, _) = call(&app, "GET", "/api/v1/rollouts", Some("viewer-token"), "").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/pause",
        Some("viewer-token"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("the role viewer"), "{body}");
    assert!(body.contains("needs the role operator"), "{body}");
    assert!(!body.contains("viewer-token"), "{body}");
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/rollouts/web/pause",
        Some("operator-token"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let policy = r#"{"mode":"on"}"#;
    let (status, _, body) = call(
        &app,
        "PUT",
        "/api/v1/breakers/policies/default",
        Some("operator-token"),
        policy,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("needs the role admin"), "{body}");
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/config/reload",
        Some("operator-token"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The admin role passes the gate (this test server has no config file to re-read).
    let (status, _, body) = call(
        &app,
        "POST",
        "/api/v1/config/reload",
        Some("admin-token"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, _) = call(&app, "POST", "/api/v1/config/reload", Some("nope"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_flag_change_records_the_token_name_never_the_token() {
    let app = admin_with(with_roles(), true).await;
    let flag = r#"{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}"#;
    let (status, _, body) = call(
        &app,
        "PUT",
        "/api/v1/flags/checkout",
        Some("operator-token"),
        flag,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, changes) = call(
        &app,
        "GET",
        "/api/v1/flags/changes",
        Some("viewer-token"),
        "",
    )
    .await;
    assert!(changes.contains("api (token ci)"), "{changes}");
    assert!(!changes.contains("operator-token"), "{changes}");
    let (_, _, config) = call(&app, "GET", "/api/v1/config", Some("viewer-token"), "").await;
    assert!(config.contains("\"name\":\"watcher\""), "{config}");
    for token in ["viewer-token", "operator-token", "admin-token"] {
        assert!(!config.contains(token), "{config}");
    }
}

#[tokio::test]
async fn the_series_of_a_service_is_served_and_an_unknown_one_is_404() {
    let app = admin(None, true).await;
    let (status, _, body) = call(&app, "GET", "/api/v1/rollouts/web/series", None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["service"], "web");
    assert_eq!(series["interval_ms"], 2000);
    assert!(series["samples"].is_array());
    let (status, _, _) = call(&app, "GET", "/api/v1/rollouts/nope/series", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, "GET", "/api/v1/rollouts/web/series?bad=1", None, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The status carries the plan for the dashboard's timeline.
    let (_, _, body) = call(&app, "GET", "/api/v1/rollouts/web", None, "").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["plan"],
        serde_json::json!([{"weight": 10.0}, {"weight": 50.0}])
    );
}

#[tokio::test]
async fn a_change_sent_from_another_site_is_refused() {
    let app = admin(None, true).await;
    let post = |headers: &[(&str, &str)]| {
        let mut request =
            Request::post("/api/v1/rollouts/web/pause").header(header::HOST, "127.0.0.1:9090");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let app = app.clone();
        let request = request.body(Body::empty()).unwrap();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    assert_eq!(
        post(&[("origin", "https://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&[("sec-fetch-site", "cross-site")]).await,
        StatusCode::FORBIDDEN
    );
    // Reads stay open to any page; nothing was changed.
    let (status, _, body) = call(&app, "GET", "/api/v1/rollouts/web", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"phase\":\"Progressing\""), "{body}");
    // The dashboard on this address and the CLI (no Origin) may act.
    assert_eq!(
        post(&[
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin")
        ])
        .await,
        StatusCode::OK
    );
    let (_, _, body) = call(&app, "GET", "/api/v1/rollouts/web", None, "").await;
    assert!(body.contains("\"phase\":\"Paused\""), "{body}");
    assert_eq!(post(&[]).await, StatusCode::OK);
}
