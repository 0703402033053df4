//! Every failure the proxy answers itself, who caused it, and the one place
//! that turns it into a response: a short text body naming the upstream
//! endpoint, service, version and cause, plus an `x-sluice-error` header.
//!
//! Only upstream-caused failures ([`ProxyError::kind`] is `Some`) count
//! against a version; a missing route, an empty pool or a client that went
//! away do not.

use std::io;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::body::{ProxyBody, RequestBodyError};
use crate::metrics::ErrorKind;
use crate::pool::SendError;
use crate::table::Slot;

/// The response header naming why sluice answered instead of the upstream.
pub const X_SLUICE_ERROR: HeaderName = HeaderName::from_static("x-sluice-error");

/// Which upstream a failure is about.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub endpoint: String,
    pub service: String,
    pub slot: Slot,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upstream {} (service {}, {})",
            self.endpoint, self.service, self.slot
        )
    }
}

/// A request the proxy could not forward, or whose upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("sluice: no service matches this host and path")]
    NoRoute,
    #[error("sluice: service {service} has no {slot} endpoints")]
    NoEndpoint { service: String, slot: Slot },
    #[error("sluice: {0} refused the connection")]
    ConnectRefused(Upstream),
    #[error("sluice: {upstream} did not accept a connection within {after:?}")]
    ConnectTimeout { upstream: Upstream, after: Duration },
    #[error("sluice: {upstream} could not be reached: {cause}")]
    Unreachable { upstream: Upstream, cause: String },
    #[error("sluice: {upstream} sent no response head within {after:?}")]
    Timeout { upstream: Upstream, after: Duration },
    #[error("sluice: {upstream} failed before a response: {cause}")]
    Protocol { upstream: Upstream, cause: String },
    /// TLS with an `https://` endpoint failed: its certificate was refused,
    /// or it refused ours (or our lack of one).
    #[error("sluice: TLS with {upstream} failed: {cause}")]
    Tls { upstream: Upstream, cause: String },
    /// A bug in sluice (an invariant that did not hold); never the upstream's fault.
    #[error("sluice: internal error: {0}")]
    Internal(&'static str),
    /// The version's circuit breaker is open: the call was not sent.
    #[error("sluice: the circuit breaker {breaker} is open; retry after {retry_after_secs}s")]
    BreakerOpen {
        breaker: String,
        retry_after_secs: u64,
    },
    /// A version's cap (max_requests, max_pending) shed the request.
    #[error("sluice: service {service} ({slot}) is at its {limit} cap; request shed")]
    Overflow {
        service: String,
        slot: Slot,
        limit: &'static str,
    },
    /// A recreate rollout took the old pool out and the new one is not in
    /// yet: nothing serves the service for a moment.
    #[error("sluice: service {service} is being recreated; retry after {retry_after_secs}s")]
    Recreating {
        service: String,
        retry_after_secs: u64,
    },
    /// The client's request body failed (the client went away or sent garbage).
    #[error("sluice: the request body to {upstream} failed: {cause}")]
    ClientBody { upstream: Upstream, cause: String },
    /// The request body is larger than `proxy.limits.max_request_body_bytes`.
    #[error("sluice: the request body is larger than {limit} bytes (proxy.limits.max_request_body_bytes)")]
    BodyTooLarge { limit: u64 },
}

// === impl ProxyError ===

impl ProxyError {
    /// Classifies a failure of the upstream client for `upstream`.
    pub(crate) fn from_client(
        upstream: Upstream,
        error: SendError,
        connect_timeout: Duration,
    ) -> ProxyError {
        let error = match error {
            SendError::Connect(error) => {
                return ProxyError::from_connect(upstream, error, connect_timeout)
            }
            SendError::Tls(error) => {
                return ProxyError::Tls {
                    upstream,
                    cause: causes(&error),
                }
            }
            SendError::Hyper(error) => error,
        };
        let too_large = sources(&error).find_map(|e| match e.downcast_ref() {
            Some(RequestBodyError::TooLarge { limit }) => Some(*limit),
            _ => None,
        });
        if let Some(limit) = too_large {
            return ProxyError::BodyTooLarge { limit };
        }
        let from_client_body = error.is_user();
        let cause = causes(&error);
        if tls_failure(&error) {
            // A TLS 1.3 upstream checks our certificate after our side of
            // the handshake is done: its refusal arrives with the response.
            ProxyError::Tls { upstream, cause }
        } else if from_client_body {
            ProxyError::ClientBody { upstream, cause }
        } else {
            ProxyError::Protocol { upstream, cause }
        }
    }

    fn from_connect(upstream: Upstream, error: io::Error, connect_timeout: Duration) -> ProxyError {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => ProxyError::ConnectRefused(upstream),
            io::ErrorKind::TimedOut => ProxyError::ConnectTimeout {
                upstream,
                after: connect_timeout,
            },
            _ => ProxyError::Unreachable {
                upstream,
                cause: causes(&error),
            },
        }
    }

    /// The upstream-caused kind this counts as, if any.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ProxyError::NoRoute
            | ProxyError::NoEndpoint { .. }
            | ProxyError::BreakerOpen { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::Recreating { .. }
            | ProxyError::ClientBody { .. }
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::Internal(_) => None,
            ProxyError::ConnectRefused(_)
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Unreachable { .. }
            | ProxyError::Tls { .. } => Some(ErrorKind::Connect),
            ProxyError::Timeout { .. } => Some(ErrorKind::Timeout),
            ProxyError::Protocol { .. } => Some(ErrorKind::Protocol),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint { .. }
            | ProxyError::BreakerOpen { .. }
            | ProxyError::Overflow { .. }
            | ProxyError::Recreating { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `x-sluice-error` value.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoEndpoint { .. } => "no_endpoint",
            ProxyError::BreakerOpen { .. } => "breaker_open",
            ProxyError::Overflow { .. } => "overflow",
            ProxyError::Recreating { .. } => "recreating",
            ProxyError::ClientBody { .. } => "client",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            other => other.kind().map_or("internal", ErrorKind::label),
        }
    }

    /// The response sluice sends for this failure.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let code = self.code();
        let retry_after = match &self {
            ProxyError::BreakerOpen {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ProxyError::Overflow { .. } => Some(1),
            ProxyError::Recreating {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let body = match self {
            // The common case of a scan or a typo: no formatting.
            ProxyError::NoRoute => {
                ProxyBody::text("sluice: no service matches this host and path\n")
            }
            other => ProxyBody::text(format!("{other}\n")),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(X_SLUICE_ERROR, HeaderValue::from_static(code));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(seconds) = retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

type DynError = dyn std::error::Error + 'static;

fn sources(error: &DynError) -> impl Iterator<Item = &DynError> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Whether a rustls error (a TLS alert or a refused certificate) is among the causes.
fn tls_failure(error: &DynError) -> bool {
    sources(error).any(|e| {
        e.downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
    })
}

/// The innermost cause's message (the outer ones are generic wrappers).
fn causes(error: &DynError) -> String {
    sources(error)
        .last()
        .map_or_else(String::new, |e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        Upstream {
            endpoint: "127.0.0.1:9".into(),
            service: "web".into(),
            slot: Slot::Canary,
        }
    }

    #[test]
    fn messages_name_endpoint_service_version_and_cause() {
        let e = ProxyError::ConnectRefused(upstream());
        assert_eq!(
            e.to_string(),
            "sluice: upstream 127.0.0.1:9 (service web, canary) refused the connection"
        );
        assert_eq!(e.kind(), Some(ErrorKind::Connect));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[X_SLUICE_ERROR], "connect");

        let t = ProxyError::Timeout {
            upstream: upstream(),
            after: Duration::from_millis(200),
        };
        assert_eq!(t.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(t.code(), "timeout");
        assert!(t.to_string().contains("200ms"), "{t}");

        assert_eq!(ProxyError::NoRoute.kind(), None);
        let gap = ProxyError::Recreating {
            service: "web".into(),
            retry_after_secs: 5,
        };
        assert_eq!(gap.kind(), None, "a gap is not the upstream's failure");
        let response = gap.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[X_SLUICE_ERROR], "recreating");
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");
        assert_eq!(
            ProxyError::NoRoute.into_response().status(),
            StatusCode::NOT_FOUND
        );
    }
}
