//! The operator's CLI side of the admin API: `sluice rollout …` sends one
//! request (or polls, for `watch`) and prints a table or `-o json`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use sluice_rollout::{Decision, Revision};

use crate::cli::{Output, Remote};
use crate::output;
use crate::status::ServiceStatus;

/// A client of one admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(remote: &Remote) -> anyhow::Result<AdminClient> {
        let base = remote.admin.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--admin {base:?}: the admin API is reached over http://host:port");
        }
        Ok(AdminClient {
            base,
            token: remote.token.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(http::Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        self.call(http::Method::POST, path, body).await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(http::Method::PUT, path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{status}: {detail}");
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from {}{path}", self.base))
    }

    /// A POST whose answer is read whatever its status (OFREP answers
    /// errors with a JSON body of their own).
    pub async fn post_any(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(http::StatusCode, serde_json::Value)> {
        let (status, bytes) = self.send(http::Method::POST, path, Some(body)).await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Ok(user) = std::env::var("USER") {
            request = request.header("x-sluice-actor", user);
        }
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&json)?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("bad admin URL {url:?}"))?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| anyhow!("the admin API at {} did not answer within 30s", self.base))?
            .map_err(|e| {
                anyhow!(
                    "cannot reach the admin API at {} ({e}); is sluice running? (set --admin or SLUICE_ADMIN)",
                    self.base
                )
            })?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(http::Method::DELETE, path, None).await
    }
}

/// Percent-encodes what is not safe in one path segment.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn status(
    api: &AdminClient,
    service: Option<&str>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let statuses: Vec<ServiceStatus> = match service {
        Some(service) => vec![api.get(&format!("/api/v1/rollouts/{service}")).await?],
        None => api.get("/api/v1/rollouts").await?,
    };
    match output {
        Output::Json if service.is_some() => print_json(&statuses[0])?,
        Output::Json => print_json(&statuses)?,
        Output::Table => print!("{}", output::status_table(&statuses)),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn start(
    api: &AdminClient,
    service: &str,
    canary: Vec<String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let body = (!canary.is_empty()).then(|| serde_json::json!({ "canary": canary }));
    let status: ServiceStatus = api
        .post(&format!("/api/v1/rollouts/{service}/start"), body)
        .await?;
    report(&status, output, "started")
}

pub async fn action(
    api: &AdminClient,
    service: &str,
    action: &str,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let status: ServiceStatus = api
        .post(&format!("/api/v1/rollouts/{service}/{action}"), None)
        .await?;
    report(&status, output, action)
}

/// `rollout undo`: serve an earlier revision again.
pub async fn undo(
    api: &AdminClient,
    service: &str,
    to_revision: Option<u64>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "to_revision": to_revision });
    let status: ServiceStatus = api
        .post(&format!("/api/v1/rollouts/{service}/undo"), Some(body))
        .await?;
    let revisions: Vec<Revision> = api
        .get(&format!("/api/v1/rollouts/{service}/revisions"))
        .await?;
    match (output, revisions.last()) {
        (Output::Table, Some(newest)) => {
            println!(
                "{service}: {} — serving {}",
                newest.cause,
                newest.endpoints.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => report(&status, output, "undo"),
    }
}

fn report(status: &ServiceStatus, output: Output, what: &str) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => print_json(status)?,
        Output::Table => println!(
            "{}: {what}; rollout {} is {:?} at {} canary",
            status.service,
            status.rollout_id.unwrap_or(0),
            status.phase,
            status.weight
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(
    api: &AdminClient,
    service: &str,
    rollout: Option<u64>,
    limit: Option<usize>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    if let Some(rollout) = rollout {
        query.push(format!("rollout={rollout}"));
    }
    if let Some(limit) = limit {
        query.push(format!("limit={limit}"));
    }
    let path = format!("/api/v1/rollouts/{service}/history?{}", query.join("&"));
    let decisions: Vec<Decision> = api.get(&path).await?;
    let revisions: Vec<Revision> = api
        .get(&format!("/api/v1/rollouts/{service}/revisions"))
        .await?;
    match output {
        Output::Json => {
            print_json(&serde_json::json!({"revisions": revisions, "decisions": decisions}))?
        }
        Output::Table => {
            print!("{}", output::revisions_table(&revisions));
            println!();
            print!("{}", output::history_table(&decisions));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls twice a second and redraws one progress line until the rollout ends.
pub async fn watch(api: &AdminClient, service: &str) -> anyhow::Result<ExitCode> {
    let mut last_decision = None;
    loop {
        let status: ServiceStatus = api.get(&format!("/api/v1/rollouts/{service}")).await?;
        if let Some(decision) = status.decisions.last() {
            if last_decision != Some(decision.seq) {
                last_decision = Some(decision.seq);
                println!(
                    "\r\x1b[K{}  {:?}: {}",
                    output::time(decision.at),
                    decision.kind,
                    decision.reason
                );
            }
        }
        let analysis = status.last_analysis.as_ref();
        let stats = |requests, success_rate, p99_ms| output::LiveStats {
            requests,
            success_rate,
            p99_ms,
        };
        let line = output::progress_line(
            &status,
            analysis.map(|a| stats(a.stable_requests, a.stable_success_rate, a.stable_p99_ms)),
            analysis.map(|a| stats(a.canary_requests, a.canary_success_rate, a.canary_p99_ms)),
        );
        print!("\r\x1b[K{line}");
        std::io::stdout().flush()?;
        if status.phase.is_final() || status.rollout_id.is_none() {
            println!();
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
