//! How the proxy speaks TLS to a service's `https://` endpoints: which CA
//! it trusts, which client certificate it presents (mTLS), and which name it
//! asks for and checks. Only the shape is checked here (pure); the files are
//! read when the routing table is built (sluice-proxy).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The scheme prefix of an endpoint that is reached over TLS.
pub const HTTPS_SCHEME: &str = "https://";

/// TLS settings for a service's `https://` endpoints (`services[].upstream_tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificate(s) the upstream's certificate must chain to;
    /// without it, the Mozilla web roots (webpki-roots) are trusted.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain presented to the upstream (mTLS);
    /// requires `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1); requires `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name sent as SNI and checked in the upstream's certificate;
    /// without it, each endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Whether `endpoint` is reached over TLS, and its `host:port` without scheme.
pub fn split_scheme(endpoint: &str) -> (bool, &str) {
    match endpoint.strip_prefix(HTTPS_SCHEME) {
        Some(authority) => (true, authority),
        None => (false, endpoint.strip_prefix("http://").unwrap_or(endpoint)),
    }
}

/// Shape checks of `tls` at `path` (`services[i].upstream_tls`): `cert` and
/// `key` come together, a `server_name` is a DNS name or an IP address.
pub(crate) fn validate(tls: &UpstreamTls, path: &str, errors: &mut Vec<FieldError>) {
    let mut push = |field: &str, message: String| {
        errors.push(FieldError {
            path: format!("{path}.{field}"),
            message,
        })
    };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => push("key", "`cert` is set, so its `key` is needed".into()),
        (None, Some(_)) => push("cert", "`key` is set, so its `cert` is needed".into()),
        _ => {}
    }
    if let Some(name) = &tls.server_name {
        let bad = name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
        if bad {
            push(
                "server_name",
                format!("{name:?} is not a DNS name or an IP address"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_split_off() {
        assert_eq!(split_scheme("https://a.test:443"), (true, "a.test:443"));
        assert_eq!(split_scheme("http://a.test:80"), (false, "a.test:80"));
        assert_eq!(split_scheme("a.test:80"), (false, "a.test:80"));
        assert!(crate::check_endpoint("https://a.test:443").is_ok());
        assert!(crate::check_endpoint("https://[::1]:8443").is_ok());
        let error = crate::check_endpoint("https://a.test").unwrap_err();
        assert!(error.contains("\"https://a.test\""), "{error}");
        assert!(crate::check_endpoint("https://a.test:443/path").is_err());
        assert!(crate::check_endpoint("ftp://a.test:21").is_err());
    }

    #[test]
    fn cert_and_key_come_together_and_names_are_checked() {
        let mut errors = Vec::new();
        let tls = UpstreamTls {
            cert: Some("c.pem".into()),
            server_name: Some("bad name".into()),
            ..UpstreamTls::default()
        };
        validate(&tls, "services[0].upstream_tls", &mut errors);
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "services[0].upstream_tls.key",
                "services[0].upstream_tls.server_name"
            ]
        );
        errors.clear();
        let tls = UpstreamTls {
            ca: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            server_name: Some("api.internal".into()),
        };
        validate(&tls, "s", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
