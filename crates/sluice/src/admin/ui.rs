//! The web dashboard: a few hand-written files (HTML, CSS, JavaScript)
//! embedded in the binary and served at `/ui/`, plus `GET /api/v1/session`,
//! which tells the page whether it may act. The page reads and acts through
//! the same admin API as the CLI; nothing here changes state.
//!
//! No build step and no framework: the assets are the source. The
//! Content-Security-Policy allows only this origin's script and style, so no
//! inline script or style attribute ever runs.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sluice_model::Role;

use super::AdminState;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_CSS: &str = include_str!("ui/app.css");
const APP_JS: &str = include_str!("ui/app.js");
const ROLLOUT_JS: &str = include_str!("ui/rollout.js");
const CHART_JS: &str = include_str!("ui/chart.js");

/// Only this origin's files and API; no inline code, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(file))
        .route("/api/v1/session", get(session))
}

async fn index(headers: HeaderMap) -> Response {
    asset(&headers, "index.html")
}

async fn file(headers: HeaderMap, Path(name): Path<String>) -> Response {
    asset(&headers, &name)
}

/// An embedded file with its type, a validator and the security headers.
/// `no-cache`: the browser revalidates (a 304 when unchanged), so an upgraded
/// binary never serves a stale script next to a new page.
fn asset(headers: &HeaderMap, file: &str) -> Response {
    let (body, content_type) = match file {
        "index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "rollout.js" => (ROLLOUT_JS, "text/javascript; charset=utf-8"),
        "chart.js" => (CHART_JS, "text/javascript; charset=utf-8"),
        _ => {
            return super::Problem::new(
                StatusCode::NOT_FOUND,
                format!("no dashboard file {file:?}"),
            )
            .into_response()
        }
    };
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// 64-bit FNV-1a: a content hash for the `ETag`, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `GET /api/v1/session`: whether this server wants a token, whether the
/// request's `Authorization` carries a known one, its name and role, and
/// whether that role may act on traffic (`operator` and above). Lets the
/// dashboard check a token at sign-in and show a read-only view honestly,
/// without trying an action.
async fn session(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let caller = state.access.identify(&headers);
    let role = caller.role();
    let mut response = Json(json!({
        "token_required": state.access.protected(),
        "authorized": role.is_some(),
        "name": caller.name(),
        "role": role.map(Role::as_str),
        "can_act": role.is_some_and(|role| role >= Role::Operator),
        "can_configure": role == Some(Role::Admin),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
