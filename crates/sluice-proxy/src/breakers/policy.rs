//! A config policy made ready for the request path: the core's validated
//! [`Policy`], the failure classes as flags, the call timeout and fallback.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use sluice_breaker::{Mode, Policy, SlidingWindow};
use sluice_model::{BreakerMode, FailureClass, FallbackSpec, FieldError, PolicySpec};

use crate::body::ProxyBody;
use crate::metrics::ErrorKind;

/// One policy as the proxy applies it.
#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) id: String,
    pub(crate) spec: PolicySpec,
    pub(crate) core: Policy,
    failure_5xx: bool,
    failure_connect: bool,
    failure_timeout: bool,
    failure_protocol: bool,
    failure_statuses: Vec<u16>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) fallback: Option<FallbackSpec>,
    /// `fallback.static`, ready to clone into a response.
    static_answer: Option<(StatusCode, HeaderMap, Bytes)>,
}

impl CompiledPolicy {
    /// Validates `spec` (paths under `path`) and builds the core policy;
    /// `disabled` forces mode off (the per-policy switch).
    pub(crate) fn compile(
        id: &str,
        spec: &PolicySpec,
        disabled: bool,
        path: &str,
    ) -> Result<CompiledPolicy, Vec<FieldError>> {
        let errors = spec.validate(path);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mode = match (disabled, spec.effective_mode()) {
            (true, _) | (false, BreakerMode::Off) => Mode::Off,
            (false, BreakerMode::On) => Mode::On,
            (false, BreakerMode::Shadow) => Mode::Shadow,
        };
        let window = match (spec.error_rate_window_seconds, spec.error_rate_window_calls) {
            (Some(seconds), _) => SlidingWindow::Time { seconds },
            (None, Some(calls)) => SlidingWindow::Count { calls },
            (None, None) => SlidingWindow::Count { calls: 100 },
        };
        let core = Policy {
            mode,
            consecutive_failures: spec.failure_threshold,
            failure_rate_threshold: spec.error_rate_threshold,
            slow_call_rate_threshold: spec.slow_call_rate_threshold,
            slow_call_duration_ms: millis(spec.slow_call_duration),
            window,
            minimum_calls: spec.minimum_calls,
            open_duration_ms: millis(spec.open_duration),
            max_open_duration_ms: millis(spec.max_open_duration),
            backoff_multiplier: spec.backoff_multiplier,
            half_open_calls: spec.effective_half_open_calls(),
            success_threshold: spec.success_threshold,
        }
        .try_new()
        .map_err(|e| {
            vec![FieldError {
                path: path.to_string(),
                message: e.to_string(),
            }]
        })?;
        let has = |class: FailureClass| spec.failure_on.contains(&class);
        Ok(CompiledPolicy {
            id: id.to_string(),
            spec: spec.clone(),
            core,
            failure_5xx: has(FailureClass::Status5xx),
            failure_connect: has(FailureClass::Connect),
            failure_timeout: has(FailureClass::Timeout),
            failure_protocol: has(FailureClass::Protocol),
            failure_statuses: spec
                .failure_on
                .iter()
                .filter_map(|c| match c {
                    FailureClass::Status(code) => Some(*code),
                    _ => None,
                })
                .collect(),
            call_timeout: spec.call_timeout(),
            fallback: spec.fallback.clone(),
            static_answer: static_answer(spec, path)?,
        })
    }

    /// The static fallback response, if the policy has one.
    pub(crate) fn static_response(&self) -> Option<Response<ProxyBody>> {
        let (status, headers, body) = self.static_answer.as_ref()?;
        let mut response = Response::new(ProxyBody::text(body.clone()));
        *response.status_mut() = *status;
        *response.headers_mut() = headers.clone();
        Some(response)
    }

    /// Whether an upstream answer with this status is a failure.
    pub(crate) fn status_fails(&self, status: u16) -> bool {
        (self.failure_5xx && (500..600).contains(&status))
            || self.failure_statuses.contains(&status)
    }

    /// Whether an upstream-caused error of this kind is a failure.
    pub(crate) fn error_fails(&self, kind: ErrorKind) -> bool {
        match kind {
            ErrorKind::Status5xx => self.failure_5xx,
            ErrorKind::Connect => self.failure_connect,
            ErrorKind::Timeout => self.failure_timeout,
            ErrorKind::Protocol => self.failure_protocol,
            // Never an outcome of a call that was sent.
            ErrorKind::BreakerOpen => false,
        }
    }
}

fn static_answer(
    spec: &PolicySpec,
    path: &str,
) -> Result<Option<(StatusCode, HeaderMap, Bytes)>, Vec<FieldError>> {
    let Some(fixed) = spec
        .fallback
        .as_ref()
        .and_then(|f| f.static_response.as_ref())
    else {
        return Ok(None);
    };
    let invalid = |field: &str, message: String| {
        vec![FieldError {
            path: format!("{path}.fallback.static.{field}"),
            message,
        }]
    };
    let status = StatusCode::from_u16(fixed.status)
        .map_err(|_| invalid("status", format!("{} is not an HTTP status", fixed.status)))?;
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&fixed.content_type).map_err(|_| {
        invalid(
            "content_type",
            format!("{:?} is not a header value", fixed.content_type),
        )
    })?;
    headers.insert(http::header::CONTENT_TYPE, content_type);
    for (name, value) in &fixed.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("headers", format!("{name:?} is not a header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid("headers", format!("{value:?} is not a header value")))?;
        headers.insert(name, value);
    }
    headers.insert(super::X_SLUICE_FALLBACK, HeaderValue::from_static("static"));
    Ok(Some((status, headers, Bytes::from(fixed.body.clone()))))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_windows_follow_the_spec() {
        let spec: PolicySpec = serde_yaml_ng::from_str(
            "failure_on: [connect, 429]\nerror_rate_window_seconds: 10\nmode: shadow",
        )
        .unwrap();
        let policy = CompiledPolicy::compile("p", &spec, false, "p").unwrap();
        assert!(!policy.status_fails(503));
        assert!(policy.status_fails(429));
        assert!(policy.error_fails(ErrorKind::Connect));
        assert!(!policy.error_fails(ErrorKind::Timeout));
        assert_eq!(policy.core.window, SlidingWindow::Time { seconds: 10 });
        assert_eq!(policy.core.mode, Mode::Shadow);
        let disabled = CompiledPolicy::compile("p", &spec, true, "p").unwrap();
        assert_eq!(disabled.core.mode, Mode::Off);
    }

    #[test]
    fn invalid_specs_name_their_field() {
        let spec: PolicySpec = serde_yaml_ng::from_str("success_threshold: 0").unwrap();
        let errors = CompiledPolicy::compile("p", &spec, false, "policies.p").unwrap_err();
        assert_eq!(errors[0].path, "policies.p.success_threshold");
    }
}
