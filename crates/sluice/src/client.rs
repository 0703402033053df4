//! The operator's CLI side of the admin API: `sluice rollout …` sends one
//! request (or polls, for `watch` and `--watch`) and prints a table,
//! `-o json` or `-o yaml`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use sluice_rollout::{Decision, Revision};

use crate::cli::{Output, Remote};
use crate::output;
use crate::status::ServiceStatus;
use crate::watch::{self, WatchArgs};

/// A client of one admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(remote: &Remote) -> anyhow::Result<AdminClient> {
        let base = remote.admin.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--admin {base:?}: the admin API is reached over http://host:port or https://host:port");
        }
        let connector = match &remote.admin_ca {
            Some(ca) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(trusting(ca)?)
                .https_or_http()
                .enable_http1()
                .build(),
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .build(),
        };
        Ok(AdminClient {
            base,
            token: remote.token.clone(),
            client: Client::builder(TokioExecutor::new()).build(connector),
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

/// A TLS client configuration trusting only the certificates in `ca` (`--admin-ca`).
fn trusting(ca: &std::path::Path) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("--admin-ca: cannot read {}", ca.display()))?
    {
        let cert = cert.with_context(|| format!("--admin-ca: {} is not PEM", ca.display()))?;
        roots.add(cert).with_context(|| {
            format!("--admin-ca: a certificate of {} is unusable", ca.display())
        })?;
    }
    if roots.is_empty() {
        bail!("--admin-ca: no certificate in {}", ca.display());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
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

/// Prints an answer that has no table of its own: JSON for `table` and
/// `json`, YAML for `yaml`.
pub fn print_data(value: &impl serde::Serialize, output: Output) -> anyhow::Result<()> {
    let output = match output {
        Output::Table => Output::Json,
        other => other,
    };
    print!("{}", output::render(value, output, |_| String::new())?);
    Ok(())
}

pub async fn status(
    api: &AdminClient,
    service: Option<&str>,
    watch: WatchArgs,
    output: Output,
) -> anyhow::Result<ExitCode> {
    watch::repeat(watch, output, || async {
        if let Some(service) = service {
            let status: ServiceStatus = api.get(&format!("/api/v1/rollouts/{service}")).await?;
            output::render(&status, output, |s| {
                output::status_table(std::slice::from_ref(s))
            })
        } else {
            let statuses: Vec<ServiceStatus> = api.get("/api/v1/rollouts").await?;
            output::render(&statuses, output, |s| output::status_table(s))
        }
    })
    .await
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
    let text = output::render(status, output, |status| {
        format!(
            "{}: {what}; rollout {} is {} at {} canary\n",
            status.service,
            status.rollout_id.unwrap_or(0),
            output::painted_state(&format!("{:?}", status.phase)),
            status.weight
        )
    })?;
    print!("{text}");
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
    let answer = serde_json::json!({"revisions": revisions, "decisions": decisions});
    let text = output::render(&answer, output, |_| {
        format!(
            "{}\n{}",
            output::revisions_table(&revisions),
            output::history_table(&decisions)
        )
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Polls twice a second and shows the rollout's progress on stdout until
/// it ends.
pub async fn watch(api: &AdminClient, service: &str) -> anyhow::Result<ExitCode> {
    watch_to(api, service, &mut std::io::stdout()).await
}

/// Polls twice a second until the rollout ends: each new decision on a line
/// of its own, and the progress bar, redrawn in place on a terminal (in a
/// pipe, printed again only when it changes, without escape sequences).
pub async fn watch_to<W: Write + IsTerminal>(
    api: &AdminClient,
    service: &str,
    out: &mut W,
) -> anyhow::Result<ExitCode> {
    let redraw = out.is_terminal();
    let clear = if redraw { "\r\x1b[K" } else { "" };
    let mut last_decision = None;
    let mut last_line = String::new();
    loop {
        let status: ServiceStatus = api.get(&format!("/api/v1/rollouts/{service}")).await?;
        if let Some(decision) = status.decisions.last() {
            if last_decision != Some(decision.seq) {
                last_decision = Some(decision.seq);
                writeln!(
                    out,
                    "{clear}{}  {:?}: {}",
                    output::time(decision.at),
                    decision.kind,
                    decision.reason
                )?;
                last_line.clear();
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
        if redraw {
            write!(out, "{clear}{line}")?;
        } else if line != last_line {
            writeln!(out, "{line}")?;
        }
        last_line = line;
        out.flush()?;
        if status.phase.is_final() || status.rollout_id.is_none() {
            if redraw {
                writeln!(out)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
