//! The admin API of feature flags: list and read them, set, delete, kill or
//! revive one, move a percentage, the change log (who, when, before, after)
//! and a Server-Sent Events stream of changes. Evaluation is OFREP
//! (`crate::flags::ofrep`).

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_flags::FlagSpec;
use sluice_model::api::PercentageBody;

use super::{problem, AdminState, Caller, Problem};
use crate::flags::{FlagError, FlagServer};

pub fn reads() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/flags", get(list))
        .route("/api/v1/flags/changes", get(changes))
        .route("/api/v1/flags/events", get(events))
        .route("/api/v1/flags/{key}", get(one))
}

pub fn writes() -> Router<AdminState> {
    Router::new()
        .route(
            "/api/v1/flags/{key}",
            axum::routing::put(put).delete(delete),
        )
        .route("/api/v1/flags/{key}/{action}", post(action))
}

/// One flag in a listing.
#[derive(Serialize)]
pub struct FlagSummary {
    pub key: String,
    pub state: String,
    pub kind: Option<String>,
    pub default_variant: Option<String>,
    pub variants: Vec<String>,
    pub percentage: Option<f64>,
    pub targeting: bool,
    pub killed: bool,
    pub source: String,
}

impl From<FlagError> for Problem {
    fn from(error: FlagError) -> Problem {
        match error {
            FlagError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, error.to_string()),
            FlagError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("flag change refused; the previous flags keep serving: {detail}"),
                )
                .with_errors(errors)
            }
            FlagError::Store(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
        }
    }
}

fn summaries(flags: &FlagServer) -> Vec<FlagSummary> {
    let served = flags.served();
    served
        .set
        .flags()
        .map(|flag| FlagSummary {
            key: flag.key().to_string(),
            state: flag.state().as_str().to_string(),
            kind: flag.kind().map(|k| k.as_str().to_string()),
            default_variant: flag.default_variant().map(str::to_string),
            variants: flag.variants().map(|(name, _)| name.to_string()).collect(),
            percentage: flag.percentage(),
            targeting: flag.targeting().is_some(),
            killed: served.killed.contains(flag.key()),
            source: served.origin.get(flag.key()).cloned().unwrap_or_default(),
        })
        .collect()
}

async fn list(State(state): State<AdminState>) -> Json<Vec<FlagSummary>> {
    Json(summaries(&state.flags))
}

async fn one(
    State(state): State<AdminState>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let served = state.flags.served();
    let definition = served
        .combined
        .flags
        .get(&key)
        .ok_or_else(|| FlagError::NotFound(key.clone()))?;
    let summary = summaries(&state.flags)
        .into_iter()
        .find(|s| s.key == key)
        .ok_or_else(|| FlagError::NotFound(key.clone()))?;
    Ok(Json(json!({"flag": summary, "definition": definition})).into_response())
}

/// Who made a change, as the audit log keeps it: the API, the name of the
/// token used (never the token), and the user the CLI says runs it.
fn actor(caller: &Caller, headers: &HeaderMap) -> String {
    let user = headers
        .get("x-sluice-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|name| !name.is_empty() && name.len() <= 64);
    match (caller.name(), user) {
        (Some(token), Some(user)) => format!("api (token {token}, user {user})"),
        (Some(token), None) => format!("api (token {token})"),
        (None, Some(user)) => format!("api ({user})"),
        (None, None) => "api".to_string(),
    }
}

async fn put(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let flag: FlagSpec = problem::parse_json(&body)?;
    let event = state
        .flags
        .put(&key, flag, &actor(&caller, &headers))
        .await?;
    Ok(Json(event).into_response())
}

async fn delete(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let event = state.flags.delete(&key, &actor(&caller, &headers)).await?;
    Ok(Json(event).into_response())
}

async fn action(
    State(state): State<AdminState>,
    Path((key, action)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let who = actor(&caller, &headers);
    let event = match action.as_str() {
        "kill" => state.flags.kill(&key, true, &who).await?,
        "revive" => state.flags.kill(&key, false, &who).await?,
        "percentage" => {
            let body: PercentageBody = problem::parse_json(&body)?;
            state
                .flags
                .set_percentage(&key, body.percentage, &who)
                .await?
        }
        other => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!("no flag action {other:?}: use kill, revive or percentage"),
            ))
        }
    };
    Ok(Json(event).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    key: Option<String>,
    limit: Option<usize>,
}

async fn changes(
    State(state): State<AdminState>,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let changes = state.flags.changes(query.key, query.limit).await?;
    Ok(Json(changes).into_response())
}

/// `text/event-stream`: one `flag-change` event per change, with the JSON of
/// the change (seq, actor, action, key, the set's new fingerprint).
async fn events(
    State(state): State<AdminState>,
) -> Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>> {
    let mut receiver = state.flags.subscribe();
    let stream = async_stream(move |sender| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let sse = Event::default()
                        .event("flag-change")
                        .id(event.seq.to_string())
                        .data(data);
                    if sender.send(Ok(sse)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let sse = Event::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string());
                    if sender.send(Ok(sse)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream fed by a task through a bounded channel (no extra crate).
fn async_stream<F, Fut>(produce: F) -> ReceiverStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(sender));
    ReceiverStream(receiver)
}

pub struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Event, Infallible>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
