//! The admin API (axum) on its own listener: JSON for rollouts and their
//! decisions, the operator's actions (behind named tokens with roles when
//! any is set, see `access`), `/metrics`, `/healthz`, `/readyz`, and the web
//! dashboard at `/ui/`. Errors are RFC 9457 `application/problem+json`.

pub mod access;
mod breakers;
mod flags;
pub mod listener;
mod metrics;
mod problem;
mod rejections;
mod series;
mod ui;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use sluice_model::api::{StartBody, UndoBody};
use sluice_model::Role;
use sluice_rollout::Event;

pub use access::{Access, Caller};
pub use problem::Problem;

use crate::controller::{ControlError, Controller, Request as ControlRequest};
use crate::server::{self, ReloadCounters};
use crate::status::ServiceStatus;

/// Decisions shown with a rollout's status (the newest).
const STATUS_DECISIONS: usize = 50;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub controller: Arc<Controller>,
    pub ready: Arc<AtomicBool>,
    /// The admin tokens and their roles (none: everything is open).
    pub access: Arc<Access>,
    /// The config file a reload re-reads (None: reload unsupported, e.g. the demo).
    pub config_source: Option<PathBuf>,
    pub reloads: Arc<ReloadCounters>,
    /// The feature-flag server (OFREP and the flags API).
    pub flags: Arc<crate::flags::FlagServer>,
    /// Cluster mode: this node (None on a single node).
    pub cluster: Option<Arc<crate::cluster::Node>>,
}

pub fn router(state: AdminState) -> Router {
    let series = series::Series::start(&state.controller);
    let needs = |role: Role| middleware::from_fn_with_state((state.clone(), role), access::require);
    let reads = Router::new()
        .route("/api/v1/rollouts", get(list))
        .route("/api/v1/rollouts/{service}", get(status))
        .route("/api/v1/rollouts/{service}/history", get(history))
        .route("/api/v1/rollouts/{service}/revisions", get(revisions))
        .route("/api/v1/config", get(config))
        .route("/api/v1/cluster", get(cluster))
        .merge(breakers::reads())
        .merge(flags::reads())
        .merge(series::routes(series))
        .route_layer(needs(Role::Viewer));
    let operations = Router::new()
        .route("/api/v1/rollouts/{service}/start", post(start))
        .route("/api/v1/rollouts/{service}/{action}", post(action))
        .merge(breakers::operations())
        .merge(flags::writes())
        .route_layer(needs(Role::Operator))
        .route_layer(middleware::from_fn(same_origin));
    let configuration = Router::new()
        .route("/api/v1/config/reload", post(reload))
        .merge(breakers::policy_writes())
        .route_layer(needs(Role::Admin))
        .route_layer(middleware::from_fn(same_origin));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/readinessz", get(readyz))
        .route("/metrics", get(metrics::render))
        .merge(crate::flags::ofrep::routes())
        .merge(ui::routes())
        .merge(reads)
        .merge(operations)
        .merge(configuration)
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            Problem::new(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {method} {}", uri.path()),
            )
        })
        .layer(middleware::from_fn(rejections::as_problem))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET /api/v1/cluster`: the nodes, the leader, each node's revisions and lag.
async fn cluster(State(state): State<AdminState>) -> Response {
    let Some(node) = state.cluster.clone() else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not in cluster mode: the store is a file (use store: etcd://… for cluster mode)",
        )
        .into_response();
    };
    match tokio::task::spawn_blocking(move || node.status()).await {
        Ok(Ok(status)) => Json(status).into_response(),
        Ok(Err(e)) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the cluster from etcd: {e}"),
        )
        .into_response(),
        Err(_) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
    }
}

/// Refuses a change sent by a browser from another site (a form or script
/// on any page the operator visits can POST to a loopback admin address, and
/// without a token nothing else would stop it). Browsers name the sender in
/// `Origin` and `Sec-Fetch-Site`; the CLI and other clients send neither.
async fn same_origin(headers: HeaderMap, request: Request, next: Next) -> Response {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            Some(authority) != host
        });
    if cross_site || foreign_origin {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "a change sent by a page of another site is refused: use the dashboard on this address, the CLI or the API",
        )
        .into_response();
    }
    next.run(request).await
}

async fn list(State(state): State<AdminState>) -> Json<Vec<ServiceStatus>> {
    Json(
        state
            .controller
            .states()
            .iter()
            .map(ServiceStatus::from_state)
            .collect(),
    )
}

async fn status(
    State(state): State<AdminState>,
    Path(service): Path<String>,
) -> Result<Json<ServiceStatus>, Problem> {
    let current = state
        .controller
        .state(&service)
        .ok_or_else(|| Problem::not_found(&service))?;
    let mut status = ServiceStatus::from_state(&current);
    if let Some(id) = status.rollout_id {
        // A long plan records tens of thousands of decisions; `/history` has them all.
        // The state is this node's; only the decisions need the store. While
        // it cannot be read (etcd down), the status still answers, without them.
        match state
            .controller
            .history(&service, Some(id), Some(STATUS_DECISIONS))
            .await
        {
            Ok(decisions) => status.decisions = decisions,
            Err(ControlError::Store(e)) => {
                tracing::debug!(service = %service, "status without decisions: {e}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(status))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    rollout: Option<u64>,
    limit: Option<usize>,
}

async fn history(
    State(state): State<AdminState>,
    Path(service): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let decisions = state
        .controller
        .history(&service, query.rollout, query.limit)
        .await?;
    Ok(Json(decisions).into_response())
}

/// The stable pools the service has served, oldest first.
async fn revisions(
    State(state): State<AdminState>,
    Path(service): Path<String>,
) -> Result<Response, Problem> {
    let current = state
        .controller
        .state(&service)
        .ok_or_else(|| Problem::not_found(&service))?;
    Ok(Json(current.revisions).into_response())
}

/// The config in force; secrets print as `<redacted>`.
async fn config(State(state): State<AdminState>) -> Response {
    Json(&*state.controller.config()).into_response()
}

async fn start(
    State(state): State<AdminState>,
    Path(service): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let body: StartBody = problem::optional_json(&body)?;
    let next = state
        .controller
        .request(
            &service,
            ControlRequest::Start {
                canary: body.canary,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ServiceStatus::from_state(&next))).into_response())
}

async fn action(
    State(state): State<AdminState>,
    Path((service, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    if action == "undo" {
        let body: UndoBody = problem::optional_json(&body)?;
        let next = state
            .controller
            .request(
                &service,
                ControlRequest::Undo {
                    to: body.to_revision,
                },
            )
            .await?;
        return Ok(Json(ServiceStatus::from_state(&next)).into_response());
    }
    let event = match action.as_str() {
        "promote" => Event::Promote,
        "pause" => Event::Pause,
        "resume" => Event::Resume,
        "abort" => Event::Abort,
        other => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no rollout action {other:?}: use start, promote, pause, resume, abort or undo"
                ),
            ))
        }
    };
    let next = state
        .controller
        .request(&service, ControlRequest::Event(event))
        .await?;
    Ok(Json(ServiceStatus::from_state(&next)).into_response())
}

async fn reload(State(state): State<AdminState>) -> Result<Response, Problem> {
    let Some(source) = &state.config_source else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "this sluice was not started from a config file",
        ));
    };
    match server::reload(&state.controller, &state.flags, source, &state.reloads).await {
        Ok(()) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({"reloaded": source})),
        )
            .into_response()),
        Err(e) => Err(Problem::from_reload_error(&e)),
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
