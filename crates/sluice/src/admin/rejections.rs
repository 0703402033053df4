//! The admin API's last word on errors it did not write itself: axum's
//! extractors reject a body over the size limit (413), a path that does not
//! decode (400) or a wrong method (405) with plain text; this layer turns
//! those into `application/problem+json` like every other admin error.
//!
//! Not for: handlers' own errors (they return [`Problem`] already), nor
//! OFREP's evaluation errors (their shape is OFREP's).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::Problem;

/// The largest request body the admin API reads (axum's default limit).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Plain-text rejections are short; anything longer is not one of them.
const MAX_REJECTION_TEXT: usize = 4096;

/// Rewrites a plain-text or empty 4xx answer as problem+json.
pub async fn as_problem(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() || !is_plain(&response) {
        return response;
    }
    let (_, body) = response.into_parts();
    let text = match Body::new(http_body_util::Limited::new(body, MAX_REJECTION_TEXT))
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    Problem::new(status, detail(status, text.trim())).into_response()
}

/// A rejection by axum: text/plain, or no body type at all.
fn is_plain(response: &Response) -> bool {
    match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value.as_bytes().starts_with(b"text/plain"),
    }
}

fn detail(status: StatusCode, text: &str) -> String {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than the admin API accepts ({MAX_BODY_BYTES} bytes)"
        ),
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not accept this method".into(),
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("client error")
            .to_string(),
        _ => text.to_string(),
    }
}
