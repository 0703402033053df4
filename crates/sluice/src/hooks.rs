//! Calling a rollout's webhooks: a JSON POST with Flagger's payload
//! (`name`, `namespace`, `phase`, `metadata`) plus sluice's (`hook`,
//! `service`, `rollout_id`, `weight`, `checks`), a timeout per attempt and
//! retries with backoff on transport errors and 5xx. The answer is a 2xx
//! (yes) or anything else (no, with the status and the start of the body,
//! which goes into the decision's reason). Each attempt (connect, answer,
//! body) ends within the hook's `timeout`; redirects are not followed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use sluice_model::{HookType, WebhookSpec};
use sluice_rollout::ServiceState;

use crate::notify::sender::{backoff, client, redirect_target, HttpClient};

/// The longest part of an answer's body kept in a reason.
const ANSWER_CHARS: usize = 200;
/// The most of an answer's body read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Calls webhooks; one per controller, shared by the services.
pub struct Hooks {
    client: HttpClient,
}

impl Hooks {
    pub fn new() -> Hooks {
        Hooks { client: client() }
    }

    /// Calls every hook of `kind` in order; the first "no" is the answer
    /// (`Err` names the hook and what it said).
    pub async fn ask(
        &self,
        hooks: &[WebhookSpec],
        kind: HookType,
        state: &ServiceState,
    ) -> Result<(), String> {
        for hook in hooks.iter().filter(|h| h.kind == kind) {
            self.call(hook, state).await.map_err(|answer| {
                format!(
                    "{} webhook {:?} said no: {answer}",
                    kind.as_str(),
                    hook.name
                )
            })?;
        }
        Ok(())
    }

    /// For `rollback` hooks: the first that answers 2xx asks for a rollback.
    pub async fn rollback_requested(
        &self,
        hooks: &[WebhookSpec],
        state: &ServiceState,
    ) -> Option<String> {
        for hook in hooks.iter().filter(|h| h.kind == HookType::Rollback) {
            if self.call(hook, state).await.is_ok() {
                return Some(format!("rollback requested by webhook {:?}", hook.name));
            }
        }
        None
    }

    /// Calls every hook of `kind` in the background, logging failures
    /// (`post_rollout`, `event`: nothing waits for them).
    pub fn tell(
        self: &std::sync::Arc<Self>,
        hooks: &[WebhookSpec],
        kind: HookType,
        state: &ServiceState,
    ) {
        for hook in hooks.iter().filter(|h| h.kind == kind) {
            let (this, hook, state) = (self.clone(), hook.clone(), state.clone());
            tokio::spawn(async move {
                if let Err(answer) = this.call(&hook, &state).await {
                    tracing::warn!(hook = %hook.name, kind = kind.as_str(), "webhook failed: {answer}");
                }
            });
        }
    }

    async fn call(&self, hook: &WebhookSpec, state: &ServiceState) -> Result<(), String> {
        let body = Bytes::from(payload(hook, state).to_string());
        let mut last = String::new();
        for attempt in 0..=hook.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            match self.post(&hook.url, body.clone(), hook.timeout).await {
                Ok((status, _)) if (200..300).contains(&status) => return Ok(()),
                // A clear "no" is not retried: asking again gets the same answer.
                Ok((status, answer)) if status < 500 => return Err(format!("{status} {answer}")),
                Ok((status, answer)) => last = format!("{status} {answer}"),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// One attempt: connecting, the answer's head and (the start of) its
    /// body all within `timeout`. A redirect is not followed: it is an
    /// answer like any other 3xx, a "no" that names where it pointed.
    async fn post(
        &self,
        url: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            let status = response.status();
            let location = redirect_target(&response);
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, location, body))
        };
        let (status, location, body) =
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| {
                    format!(
                        "no answer within {}",
                        sluice_model::duration::format(timeout)
                    )
                })??;
        if let Some(location) = location {
            return Ok((
                status.as_u16(),
                format!("a redirect to {location:?}, not followed (sluice follows no redirects: give the final URL)"),
            ));
        }
        let answer: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(ANSWER_CHARS)
            .collect();
        Ok((status.as_u16(), answer))
    }
}

/// Flagger's webhook payload, with sluice's fields beside it.
pub fn payload(hook: &WebhookSpec, state: &ServiceState) -> Value {
    let rollout = state.rollout.as_ref();
    let checks: Vec<Value> = rollout
        .and_then(|r| r.last_analysis.as_ref())
        .map(|run| {
            run.checks
                .iter()
                .map(|c| json!({"name": c.name, "verdict": c.verdict, "value": c.value, "bound": c.bound}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": state.service,
        "namespace": "",
        "phase": rollout.map_or("Idle".to_string(), |r| format!("{:?}", r.phase)),
        "metadata": hook.metadata,
        "hook": hook.kind.as_str(),
        "service": state.service,
        "rollout_id": rollout.map(|r| r.id),
        "weight": state.canary_weight.percent(),
        "canary": rollout.map(|r| r.canary.clone()),
        "checks": checks,
    })
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
