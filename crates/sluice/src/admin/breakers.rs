//! The admin API of circuit breakers: list them with state and counters,
//! force one open or closed, reset it; read and replace policies live; the
//! global, per-policy and per-partition (tenant) switches; recent
//! transitions. A breaker id is `service:version[:partition]`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sluice_model::PolicySpec;
use sluice_proxy::{BreakerAction, Breakers};

use super::{problem, AdminState, Problem};

/// Routes anyone may read.
pub fn reads() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/breakers", get(list))
        .route("/api/v1/breakers/transitions", get(transitions))
        .route("/api/v1/breakers/policies", get(policies))
        .route("/api/v1/breakers/policies/{id}", get(policy))
        .route("/api/v1/breakers/{id}", get(one))
}

/// Routes that replace a breaker policy (the `admin` role).
pub fn policy_writes() -> Router<AdminState> {
    Router::new().route(
        "/api/v1/breakers/policies/{id}",
        axum::routing::put(put_policy),
    )
}

/// Routes that trip, reset or switch breakers (the `operator` role).
pub fn operations() -> Router<AdminState> {
    Router::new()
        .route(
            "/api/v1/breakers/policies/{id}/{switch}",
            post(switch_policy),
        )
        .route(
            "/api/v1/breakers/partitions/{partition}/{switch}",
            post(switch_partition),
        )
        .route("/api/v1/breakers/{id}/{action}", post(act))
}

fn breakers(state: &AdminState) -> &Breakers {
    state.controller.metrics().breakers()
}

async fn list(State(state): State<AdminState>) -> Response {
    let breakers = breakers(&state);
    Json(json!({
        "enabled": breakers.enabled(),
        "disabled_partitions": breakers.disabled_partitions(),
        "breakers": breakers.list(),
    }))
    .into_response()
}

async fn one(State(state): State<AdminState>, Path(id): Path<String>) -> Result<Response, Problem> {
    Ok(Json(breakers(&state).get(&id)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    limit: Option<usize>,
}

async fn transitions(
    State(state): State<AdminState>,
    query: Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    Ok(Json(breakers(&state).transitions(limit)).into_response())
}

async fn policies(State(state): State<AdminState>) -> Response {
    Json(breakers(&state).policies()).into_response()
}

async fn policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    Ok(Json(breakers(&state).policy(&id)?).into_response())
}

async fn put_policy(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let spec: PolicySpec = problem::parse_json(&body)?;
    let status = breakers(&state).put_policy(&id, spec.clone())?;
    // Kept in the store, so that it survives a restart and every node of a
    // cluster serves it.
    let config = state.controller.config();
    let store = state.controller.store().clone();
    crate::breaker_store::store_policy(store, &id, &spec, &config.breakers)
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("policy {id:?} is applied on this node but could not be stored (it will not survive a restart nor reach other nodes): {e}"),
            )
        })?;
    Ok(Json(status).into_response())
}

fn parse_switch(switch: &str) -> Result<bool, Problem> {
    match switch {
        "enable" => Ok(true),
        "disable" => Ok(false),
        other => Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no switch {other:?}: use enable or disable"),
        )),
    }
}

async fn switch_policy(
    State(state): State<AdminState>,
    Path((id, switch)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let enabled = parse_switch(&switch)?;
    breakers(&state).set_policy_enabled(&id, enabled)?;
    Ok(Json(breakers(&state).policy(&id)?).into_response())
}

async fn switch_partition(
    State(state): State<AdminState>,
    Path((partition, switch)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let enabled = parse_switch(&switch)?;
    breakers(&state).set_partition_enabled(&partition, enabled);
    Ok(Json(json!({"partition": partition, "enabled": enabled})).into_response())
}

/// `POST /api/v1/breakers/{id}/{open|close|reset}`, and the global switch
/// `POST /api/v1/breakers/all/{enable|disable}`.
async fn act(
    State(state): State<AdminState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, Problem> {
    if id == "all" {
        let enabled = parse_switch(&action)?;
        breakers(&state).set_enabled(enabled);
        return Ok(Json(json!({"enabled": enabled})).into_response());
    }
    let action = match action.as_str() {
        "open" => BreakerAction::Open,
        "close" => BreakerAction::Close,
        "reset" => BreakerAction::Reset,
        other => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!("no breaker action {other:?}: use open, close or reset"),
            ))
        }
    };
    Ok(Json(breakers(&state).act(&id, action)?).into_response())
}
