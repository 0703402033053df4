//! RFC 9457 problem details: every admin API error is
//! `application/problem+json` with a title, a detail a person can act on,
//! and for config errors the list of field paths.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_model::{ConfigError, FieldError};

use crate::controller::ControlError;

/// A problem details object.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The same problem with field errors listed.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Problem {
        self.errors = errors;
        self
    }

    pub fn not_found(service: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("no service named {service:?}"),
        )
    }

    /// A refused reload: 422 with every config error and its path.
    pub fn from_reload_error(error: &anyhow::Error) -> Problem {
        let mut problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config reload refused; the previous config keeps serving: {error:#}"),
        );
        if let Some(config_error) = error.downcast_ref::<ConfigError>() {
            problem.errors = config_error.errors();
        }
        problem
    }
}

/// Parses a JSON body that may be empty (then the default).
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Problem> {
    sluice_model::api::decode_optional_json(body).map_err(bad_body)
}

/// Parses a JSON body; an error names where in the body it is.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    sluice_model::api::decode_json(body).map_err(bad_body)
}

/// 400 for a body that does not decode, with the field path.
fn bad_body(error: FieldError) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        format!("invalid JSON body: {}", error.message),
    )
    .with_errors(vec![error])
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<ControlError> for Problem {
    fn from(error: ControlError) -> Problem {
        let status = match &error {
            ControlError::UnknownService(_) => StatusCode::NOT_FOUND,
            ControlError::NoRollout { .. } | ControlError::Ended { .. } => StatusCode::CONFLICT,
            ControlError::NoPlan(_) | ControlError::NoCanary(_) => StatusCode::CONFLICT,
            ControlError::InvalidEndpoint(_) => StatusCode::BAD_REQUEST,
            ControlError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ControlError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            // 421 Misdirected Request: the caller should ask the leader named in the detail.
            ControlError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            ControlError::Provider(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Undo(sluice_rollout::UndoError::UnknownRevision { .. }) => {
                StatusCode::NOT_FOUND
            }
            ControlError::Undo(_) | ControlError::Hook(_) => StatusCode::CONFLICT,
        };
        Problem::new(status, error.to_string())
    }
}

impl From<sluice_proxy::BreakerError> for Problem {
    fn from(error: sluice_proxy::BreakerError) -> Problem {
        use sluice_proxy::BreakerError;
        match error {
            BreakerError::UnknownBreaker(_) | BreakerError::UnknownPolicy(_) => {
                Problem::new(StatusCode::NOT_FOUND, error.to_string())
            }
            BreakerError::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("policy refused; the previous one keeps working: {detail}"),
                );
                problem.errors = errors;
                problem
            }
        }
    }
}
