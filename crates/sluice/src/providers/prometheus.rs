//! The Prometheus provider: one PromQL instant query over the HTTP API
//! (`POST {address}/api/v1/query`) that must yield exactly one number.
//! Anything else — no sample, several, NaN, a server or transport error — is
//! a [`ProviderError`] whose message says what happened, to which query, on
//! which server, so that a check's run can be marked inconclusive with a
//! reason a user can act on. Not for range queries, TLS, or discovery.
//!
//! This file uses only external crates (no `crate::` paths): the
//! integration test includes it with `#[path]`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Longest response body read; an instant query's single value is tiny.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How much of a query or a body an error message quotes.
const QUOTE_CHARS: usize = 160;

/// Why a query gave no usable value; every message names the query
/// (shortened) and the server.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("prometheus provider: {0}")]
    Config(String),
    #[error("prometheus at {server} is unreachable for query `{query}`: {reason}")]
    Unreachable {
        server: String,
        query: String,
        reason: String,
    },
    #[error("prometheus at {server}: connection failed during query `{query}`: {reason}")]
    Transport {
        server: String,
        query: String,
        reason: String,
    },
    #[error("prometheus at {server} did not answer query `{query}` within {timeout:?}")]
    Timeout {
        server: String,
        query: String,
        timeout: Duration,
    },
    #[error("prometheus at {server} answered HTTP {status} to query `{query}`: {body}")]
    Http {
        server: String,
        query: String,
        status: u16,
        body: String,
    },
    #[error("prometheus at {server} rejected query `{query}`: {error_type}: {error}")]
    Query {
        server: String,
        query: String,
        error_type: String,
        error: String,
    },
    #[error("query `{query}` on {server} returned no sample (no series matched, or none in the lookback window)")]
    NoSample { server: String, query: String },
    #[error("query `{query}` on {server} returned {count} samples ({series}); a check needs exactly one: aggregate (sum, max, …) or narrow the labels")]
    TooManySamples {
        server: String,
        query: String,
        count: usize,
        series: String,
    },
    #[error("query `{query}` on {server} returned {value}, not a number a check can judge")]
    NotANumber {
        server: String,
        query: String,
        value: String,
    },
    #[error("query `{query}` on {server} returned a {result_type}; a check needs a scalar or an instant vector with one sample")]
    WrongResultType {
        server: String,
        query: String,
        result_type: String,
    },
    #[error("prometheus at {server} sent an unreadable answer to query `{query}`: {reason}")]
    BadResponse {
        server: String,
        query: String,
        reason: String,
    },
}

/// A Prometheus server, validated and ready to query.
pub struct Prometheus {
    /// `http://host:port/prefix/api/v1/query`.
    query_uri: Uri,
    /// The address as configured, for messages.
    server: String,
    /// Bound on one whole query: connect, send, read the answer.
    timeout: Duration,
    /// `Bearer …`, marked sensitive.
    authorization: Option<HeaderValue>,
    client: Client<HttpConnector, Full<Bytes>>,
}

// === impl Prometheus ===

impl Prometheus {
    /// Validates the address (`http://host[:port][/prefix]`) and reads the
    /// bearer token (`bearer_token_env` wins over `bearer_token`).
    pub fn new(config: &sluice_model::PrometheusProvider) -> Result<Prometheus, ProviderError> {
        let server = config.address.trim().trim_end_matches('/').to_string();
        let query_uri = query_uri(&server)?;
        if config.timeout.is_zero() {
            return Err(ProviderError::Config(
                "timeout must be more than zero".into(),
            ));
        }
        let token = match (&config.bearer_token_env, &config.bearer_token) {
            (Some(var), _) => match std::env::var(var) {
                Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
                _ => {
                    return Err(ProviderError::Config(format!(
                        "bearer_token_env names `{var}`, which is not set or empty"
                    )))
                }
            },
            (None, None) => None,
            (None, Some(token)) => Some(token.value().map(str::to_string).ok_or_else(|| {
                ProviderError::Config(
                    "bearer_token names a variable or file that was not read (load the config with sluice's loader)".into(),
                )
            })?),
        };
        let authorization = match token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    ProviderError::Config(
                        "the bearer token holds characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Prometheus {
            query_uri,
            server,
            timeout: config.timeout,
            authorization,
            client,
        })
    }

    /// Instant query → exactly one value: a `scalar`, or a `vector` with
    /// exactly one sample. Sent as a POST form so long queries fit.
    pub async fn query(&self, promql: &str) -> Result<f64, ProviderError> {
        let context = Context::new(&self.server, promql);
        match tokio::time::timeout(self.timeout, self.exchange(promql, &context)).await {
            Ok(Ok((status, body))) => parse_response(status, &body, &context),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ProviderError::Timeout {
                server: context.server,
                query: context.query,
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        promql: &str,
        context: &Context,
    ) -> Result<(StatusCode, Bytes), ProviderError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.query_uri.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let body = format!("query={}", percent_encode(promql));
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| context.transport(error.to_string()))?;
        let response = self.client.request(request).await.map_err(|error| {
            let reason = error_chain(&error);
            if error.is_connect() {
                ProviderError::Unreachable {
                    server: context.server.clone(),
                    query: context.query.clone(),
                    reason,
                }
            } else {
                context.transport(reason)
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|error| context.transport(format!("reading the answer: {error}")))?
            .to_bytes();
        Ok((status, body))
    }
}

impl fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prometheus")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .field("bearer_token", &self.authorization.as_ref().map(|_| "…"))
            .finish()
    }
}

/// `http://host[:port][/prefix]` → `…/prefix/api/v1/query`.
fn query_uri(address: &str) -> Result<Uri, ProviderError> {
    let invalid = |why: &str| {
        ProviderError::Config(format!(
            "address `{address}` {why}; expected http://host:port[/prefix]"
        ))
    };
    let uri: Uri = address
        .parse()
        .map_err(|error| invalid(&format!("is not a URL ({error})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("uses https, which is not supported yet")),
        Some(other) => return Err(invalid(&format!("has scheme `{other}`"))),
        None => return Err(invalid("has no scheme")),
    }
    let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
    if authority.host().is_empty() {
        return Err(invalid("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("carries credentials; use bearer_token"));
    }
    if uri.query().is_some() {
        return Err(invalid("has a query string"));
    }
    let prefix = uri.path().trim_end_matches('/');
    format!("http://{authority}{prefix}/api/v1/query")
        .parse()
        .map_err(|error| invalid(&format!("does not make a valid query URL ({error})")))
}

/// The server and the shortened query, carried into every error.
#[derive(Clone, Debug)]
struct Context {
    server: String,
    query: String,
}

impl Context {
    fn new(server: &str, promql: &str) -> Context {
        Context {
            server: server.to_string(),
            query: shorten(promql),
        }
    }

    fn transport(&self, reason: String) -> ProviderError {
        ProviderError::Transport {
            server: self.server.clone(),
            query: self.query.clone(),
            reason,
        }
    }

    fn bad_response(&self, reason: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            server: self.server.clone(),
            query: self.query.clone(),
            reason: reason.into(),
        }
    }
}

// === response parsing (pure) ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    value: Option<(serde_json::Value, String)>,
}

/// An answer of the query API → the one value, or why there is none.
fn parse_response(
    status: StatusCode,
    body: &[u8],
    context: &Context,
) -> Result<f64, ProviderError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        // Prometheus answers its errors (400, 422, 503) in JSON too; a body
        // that is not JSON came from something else on the way.
        Err(_) if !status.is_success() => {
            return Err(ProviderError::Http {
                server: context.server.clone(),
                query: context.query.clone(),
                status: status.as_u16(),
                body: shorten(&String::from_utf8_lossy(body)),
            })
        }
        Err(error) => {
            return Err(context.bad_response(format!("not the query API's JSON ({error})")))
        }
    };
    if envelope.status != "success" {
        return Err(ProviderError::Query {
            server: context.server.clone(),
            query: context.query.clone(),
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope
                .error
                .unwrap_or_else(|| format!("status `{}`", envelope.status)),
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| context.bad_response("success without `data`"))?;
    let value = match data.result_type.as_str() {
        "scalar" => {
            let (_, value): (serde_json::Value, String) = serde_json::from_value(data.result)
                .map_err(|error| context.bad_response(format!("malformed scalar ({error})")))?;
            value
        }
        "vector" => {
            let mut samples: Vec<Sample> = serde_json::from_value(data.result)
                .map_err(|error| context.bad_response(format!("malformed vector ({error})")))?;
            match samples.len() {
                0 => {
                    return Err(ProviderError::NoSample {
                        server: context.server.clone(),
                        query: context.query.clone(),
                    })
                }
                1 => {}
                count => {
                    return Err(ProviderError::TooManySamples {
                        server: context.server.clone(),
                        query: context.query.clone(),
                        count,
                        series: describe_series(&samples),
                    })
                }
            }
            let sample = samples.remove(0);
            let (_, value) = sample.value.ok_or_else(|| {
                context.bad_response("a sample without a float `value` (a native histogram?)")
            })?;
            value
        }
        other => {
            return Err(ProviderError::WrongResultType {
                server: context.server.clone(),
                query: context.query.clone(),
                result_type: match other {
                    "matrix" => "range vector (matrix)".to_string(),
                    other => other.to_string(),
                },
            })
        }
    };
    parse_value(&value, context)
}

/// Prometheus sends sample values as strings: `"42"`, `"1.5e+08"`, `"NaN"`, `"+Inf"`.
fn parse_value(value: &str, context: &Context) -> Result<f64, ProviderError> {
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        Ok(_) => Err(ProviderError::NotANumber {
            server: context.server.clone(),
            query: context.query.clone(),
            value: value.to_string(),
        }),
        Err(_) => {
            Err(context.bad_response(format!("sample value `{}` is not a number", shorten(value))))
        }
    }
}

/// The first label sets of a multi-sample answer, to show which labels differ.
fn describe_series(samples: &[Sample]) -> String {
    const SHOWN: usize = 3;
    let mut shown: Vec<String> = samples
        .iter()
        .take(SHOWN)
        .map(|sample| {
            let labels: Vec<String> = sample
                .metric
                .iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(value) => format!("{name}={value:?}"),
                    other => format!("{name}={other}"),
                })
                .collect();
            format!("{{{}}}", labels.join(", "))
        })
        .collect();
    if samples.len() > SHOWN {
        shown.push("…".into());
    }
    shorten(&shown.join(", "))
}

// === templates and encoding (pure) ===

/// `{{service}}`, `{{version}}` (stable|canary, or a release plan's labels;
/// `{{variant}}` is the same), `{{interval}}` (a PromQL
/// duration like `30s`, `1m`, `1m30s`) substituted; spaces inside the braces
/// are allowed; unknown `{{…}}` left as is.
pub fn render(template: &str, service: &str, version: &str, interval: Duration) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            rest = &rest[start..];
            break;
        };
        let value = match after[..end].trim() {
            "service" => Some(service.to_string()),
            "version" | "variant" => Some(version.to_string()),
            "interval" => Some(promql_duration(interval)),
            _ => None,
        };
        match value {
            Some(value) => {
                out.push_str(&value);
                rest = &after[end + 2..];
            }
            // Emit one brace only, so `{{{service}}}` still finds its placeholder.
            None => {
                out.push('{');
                rest = &rest[start + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A PromQL duration, largest unit first: `1h30m`, `1m30s`, `1s500ms`.
pub fn promql_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut left = total_ms;
    for (unit, ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if left >= ms {
            out.push_str(&format!("{}{unit}", left / ms));
            left %= ms;
        }
    }
    out
}

/// `application/x-www-form-urlencoded` value: unreserved bytes kept, every
/// other byte `%XX` (space too, which both decoders accept).
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xF)] as char);
        }
    }
    out
}

/// One line, at most [`QUOTE_CHARS`] characters.
fn shorten(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= QUOTE_CHARS {
        return line;
    }
    let mut short: String = line.chars().take(QUOTE_CHARS - 1).collect();
    short.push('…');
    short
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context::new("http://prom:9090", "demo_memory_bytes")
    }

    fn parse(body: &str) -> Result<f64, ProviderError> {
        parse_response(StatusCode::OK, body.as_bytes(), &context())
    }

    fn config(address: &str) -> sluice_model::PrometheusProvider {
        sluice_model::PrometheusProvider {
            address: address.into(),
            timeout: Duration::from_secs(5),
            bearer_token: None,
            bearer_token_env: None,
        }
    }

    #[test]
    fn render_substitutes_known_placeholders() {
        let template = r#"max_over_time(process_resident_memory_bytes{job="{{service}}-{{ version }}"}[{{interval}}])"#;
        assert_eq!(
            render(template, "web", "canary", Duration::from_secs(90)),
            r#"max_over_time(process_resident_memory_bytes{job="web-canary"}[1m30s])"#
        );
    }

    #[test]
    fn render_leaves_unknown_and_unclosed_placeholders() {
        let d = Duration::from_secs(30);
        assert_eq!(
            render("{{other}} {{service}}", "web", "stable", d),
            "{{other}} web"
        );
        assert_eq!(render("{{{service}}}", "web", "stable", d), "{web}");
        assert_eq!(
            render("up{job=\"x\"} {{service", "web", "stable", d),
            "up{job=\"x\"} {{service"
        );
        assert_eq!(render("", "web", "stable", d), "");
    }

    #[test]
    fn durations_are_promql() {
        assert_eq!(promql_duration(Duration::from_secs(30)), "30s");
        assert_eq!(promql_duration(Duration::from_secs(60)), "1m");
        assert_eq!(promql_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(promql_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(promql_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
        assert_eq!(
            percent_encode(r#"sum(rate(x{job="a b"}[1m])) / 2 + 1&q=%"#),
            "sum%28rate%28x%7Bjob%3D%22a%20b%22%7D%5B1m%5D%29%29%20%2F%202%20%2B%201%26q%3D%25"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn scalar_and_single_sample_give_the_value() {
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.123,"2"]}}"#;
        assert_eq!(parse(scalar).unwrap(), 2.0);
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"web-canary"},"value":[1700000000.123,"1.5e+08"]}]}}"#;
        assert_eq!(parse(vector).unwrap(), 1.5e8);
    }

    #[test]
    fn empty_vector_is_no_sample_naming_query_and_server() {
        let error = parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
            .unwrap_err();
        assert!(matches!(error, ProviderError::NoSample { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("demo_memory_bytes") && message.contains("http://prom:9090"),
            "{message}"
        );
    }

    #[test]
    fn two_samples_are_too_many_and_show_the_labels() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]}]}}"#;
        let error = parse(body).unwrap_err();
        assert!(
            matches!(error, ProviderError::TooManySamples { count: 2, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(r#"{job="b"}"#), "{error}");
    }

    #[test]
    fn nan_and_infinities_are_not_numbers() {
        for value in ["NaN", "+Inf", "-Inf"] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{value}"]}}]}}}}"#
            );
            let error = parse(&body).unwrap_err();
            assert!(
                matches!(error, ProviderError::NotANumber { .. }),
                "{value}: {error:?}"
            );
        }
    }

    #[test]
    fn error_json_carries_prometheus_text_whatever_the_status() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}"#;
        let error =
            parse_response(StatusCode::BAD_REQUEST, body.as_bytes(), &context()).unwrap_err();
        match &error {
            ProviderError::Query {
                error_type, error, ..
            } => {
                assert_eq!(error_type, "bad_data");
                assert!(error.contains("unclosed left parenthesis"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_json_bodies() {
        let error = parse_response(
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            &context(),
        )
        .unwrap_err();
        assert!(
            matches!(error, ProviderError::Http { status: 502, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("bad gateway"));
        let error = parse("hello").unwrap_err();
        assert!(
            matches!(error, ProviderError::BadResponse { .. }),
            "{error:?}"
        );
        let error = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::WrongResultType { .. }),
            "{error:?}"
        );
        let error =
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"x"]}}"#)
                .unwrap_err();
        assert!(
            matches!(error, ProviderError::BadResponse { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn long_queries_are_shortened_in_messages() {
        let long = format!("sum({})", "a + ".repeat(100));
        let message = Context::new("http://p", &long)
            .bad_response("x")
            .to_string();
        assert!(message.contains('…') && message.len() < 400, "{message}");
    }

    #[test]
    fn addresses_are_validated() {
        let ok = Prometheus::new(&config("http://127.0.0.1:9090/prom/")).unwrap();
        assert_eq!(
            ok.query_uri.to_string(),
            "http://127.0.0.1:9090/prom/api/v1/query"
        );
        let ok = Prometheus::new(&config("http://prometheus")).unwrap();
        assert_eq!(ok.query_uri.to_string(), "http://prometheus/api/v1/query");
        for bad in [
            "https://p:9090",
            "p:9090",
            "127.0.0.1:9090",
            "http://",
            "http://u:p@h:1",
            "http://h:1/?x=1",
            "",
        ] {
            let error = Prometheus::new(&config(bad)).unwrap_err();
            assert!(
                matches!(error, ProviderError::Config(_)),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn bearer_token_env_must_be_set_and_token_is_not_printed() {
        let mut missing = config("http://p:9090");
        missing.bearer_token_env = Some("SLUICE_TEST_SURELY_UNSET_TOKEN_VAR".into());
        let error = Prometheus::new(&missing).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("SLUICE_TEST_SURELY_UNSET_TOKEN_VAR"),
            "{error}"
        );
        let mut literal = config("http://p:9090");
        literal.bearer_token = Some("s3cret".into());
        let provider = Prometheus::new(&literal).unwrap();
        assert!(!format!("{provider:?}").contains("s3cret"));
        literal.bearer_token = Some("bad\ntoken".into());
        assert!(matches!(
            Prometheus::new(&literal),
            Err(ProviderError::Config(_))
        ));
    }
}
