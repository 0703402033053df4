//! `proxy.limits`: how much one sluice accepts from its clients before it
//! sheds (503) or refuses (431, 413) instead of collapsing — open
//! connections, requests in flight, request-head size and header count,
//! request-body size, HTTP/2 streams.
//!
//! Not here: upstream timeouts (the rest of `proxy`) and per-version caps
//! (`breakers.policies.*.limits`), which guard one upstream, not sluice.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The smallest `max_header_bytes`: the HTTP/1 read buffer cannot be smaller.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
/// The largest `max_header_bytes` (1 MiB): a head larger than this is an attack.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// The largest `max_headers`.
pub const MAX_HEADERS: usize = 10_000;

/// Client-side limits of the proxy listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyLimits {
    /// Client connections open at once (HTTP/1 and HTTP/2, all listeners
    /// together); a connection over it is answered 503 and closed. At least 1.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Requests (HTTP/1 requests and HTTP/2 streams) being answered at once,
    /// counted until the response body is sent; a request over it is
    /// answered 503 with `Retry-After` at once, never queued. At least 1.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Largest request head in bytes (request line and headers; for
    /// HTTP/2 the decoded header list); larger answers 431. From 8192 to
    /// 1 MiB.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request; more answers 431. From 1 to 10000.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Largest request body in bytes (10 MiB by default). A request whose
    /// `Content-Length` is larger answers 413 without reaching an upstream;
    /// a streamed (chunked, HTTP/2) body that grows past it is cut: the
    /// upstream request is aborted and the client gets 413 (or, when the
    /// response had already begun, a closed connection). At least 1.
    #[serde(default = "default_max_request_body_bytes")]
    pub max_request_body_bytes: u64,
    /// Most HTTP/2 streams a client may have open at once on one connection
    /// (advertised in SETTINGS; a stream over it is refused). At least 1.
    #[serde(default = "default_http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Most HTTP/2 streams a client may reset before sluice accepted them
    /// (the "rapid reset" attack); over it the connection gets GOAWAY
    /// `ENHANCE_YOUR_CALM`. At least 1.
    #[serde(default = "default_http2_max_pending_reset_streams")]
    pub http2_max_pending_reset_streams: usize,
}

fn default_max_connections() -> u32 {
    10_000
}
fn default_max_in_flight() -> u32 {
    10_000
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_request_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_http2_max_concurrent_streams() -> u32 {
    100
}
fn default_http2_max_pending_reset_streams() -> usize {
    20
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_connections: default_max_connections(),
            max_in_flight: default_max_in_flight(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_request_body_bytes: default_max_request_body_bytes(),
            http2_max_concurrent_streams: default_http2_max_concurrent_streams(),
            http2_max_pending_reset_streams: default_http2_max_pending_reset_streams(),
        }
    }
}

// === impl ProxyLimits ===

impl ProxyLimits {
    /// The rules serde cannot check, each error with its field path.
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        let mut push = |field: &str, message: String| {
            errors.push(FieldError {
                path: format!("proxy.limits.{field}"),
                message,
            })
        };
        if self.max_connections == 0 {
            push(
                "max_connections",
                "0 would refuse every client; give at least 1".into(),
            );
        }
        if self.max_in_flight == 0 {
            push(
                "max_in_flight",
                "0 would shed every request; give at least 1".into(),
            );
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            push(
                "max_header_bytes",
                format!(
                    "{} is not between {MIN_HEADER_BYTES} (8 KiB) and {MAX_HEADER_BYTES} (1 MiB)",
                    self.max_header_bytes
                ),
            );
        }
        if !(1..=MAX_HEADERS).contains(&self.max_headers) {
            push(
                "max_headers",
                format!("{} is not between 1 and {MAX_HEADERS}", self.max_headers),
            );
        }
        if self.max_request_body_bytes == 0 {
            push(
                "max_request_body_bytes",
                "0 would refuse every request with a body; give at least 1".into(),
            );
        }
        if self.http2_max_concurrent_streams == 0 {
            push(
                "http2_max_concurrent_streams",
                "0 would refuse every HTTP/2 request; give at least 1".into(),
            );
        }
        if self.http2_max_pending_reset_streams == 0 {
            push(
                "http2_max_pending_reset_streams",
                "0 would close a connection on its first cancelled stream; give at least 1".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(limits: &ProxyLimits) -> Vec<String> {
        let mut errors = Vec::new();
        limits.validate(&mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(errors(&ProxyLimits::default()), Vec::<String>::new());
    }

    #[test]
    fn every_bad_value_is_named_by_its_path() {
        let limits = ProxyLimits {
            max_connections: 0,
            max_in_flight: 0,
            max_header_bytes: 100,
            max_headers: 0,
            max_request_body_bytes: 0,
            http2_max_concurrent_streams: 0,
            http2_max_pending_reset_streams: 0,
        };
        let errors = errors(&limits);
        for field in [
            "max_connections",
            "max_in_flight",
            "max_header_bytes",
            "max_headers",
            "max_request_body_bytes",
            "http2_max_concurrent_streams",
            "http2_max_pending_reset_streams",
        ] {
            let path = format!("proxy.limits.{field}");
            assert!(
                errors.iter().any(|e| e.starts_with(&path)),
                "{path} missing in {errors:?}"
            );
        }
        assert!(
            errors.iter().any(|e| e.contains("100 is not between 8192")),
            "{errors:?}"
        );
    }
}
