//! `sluice load`: the built-in load generator, so that a canary with no live
//! traffic can still be analysed. `load run` sends load once and prints a
//! summary; `load serve` takes Flagger-style webhook calls (as Flagger's
//! loadtester does) and runs each load in the background.
//!
//! Not for: judging. Both report what happened and leave the verdict to the
//! analysis; `load run` exits 0 whatever the upstream answered. The load
//! itself lives in `demo::load`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Subcommand;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::Output;
use crate::demo::load::{self, LoadPlan, LoadSummary, LoadWatch};
use crate::logging::LogFormat;
use crate::output;

/// Loads `load serve` runs at once; more are refused with 429.
const MAX_LOADS: usize = 8;
/// The longest load either command accepts.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
const MAX_RATE: f64 = 100_000.0;
const MAX_CONCURRENCY: usize = 1_000;
/// Webhook defaults for what `metadata` leaves out.
const DEFAULT_RATE: f64 = 10.0;
const DEFAULT_DURATION: Duration = Duration::from_secs(30);
const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Subcommand)]
pub enum LoadCommand {
    /// Send requests to URL at a steady rate for a while, then print what came back.
    Run {
        /// The target (`http://` only).
        #[arg(value_parser = parse_url)]
        url: Uri,
        /// Requests per second, all workers together (`20` or `20/s`).
        #[arg(long, default_value = "10", value_parser = parse_rate)]
        rate: f64,
        /// Workers, each with one request in flight at most.
        #[arg(long, default_value_t = 4, value_parser = parse_concurrency)]
        concurrency: usize,
        /// How long to send (e.g. `30s`, `2m`).
        #[arg(long, default_value = "30s", value_parser = parse_load_duration)]
        duration: Duration,
        /// A header sent with every request, `name: value` (repeatable).
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
        headers: Vec<(HeaderName, HeaderValue)>,
        /// The request method (the body is empty).
        #[arg(short = 'X', long, default_value = "GET", value_parser = parse_method)]
        method: Method,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Serve Flagger-style webhooks (`POST /` or `/load`) that start loads in the background.
    Serve {
        /// The listener (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
    },
}

pub async fn run(command: LoadCommand, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    match command {
        LoadCommand::Run {
            url,
            rate,
            concurrency,
            duration,
            headers,
            method,
            output,
        } => {
            let plan = LoadPlan {
                uri: url,
                method,
                headers,
                rate_per_sec: rate,
                concurrency,
                duration: Some(duration),
                rotate_users: false,
            };
            run_once(plan, output).await
        }
        LoadCommand::Serve { listen } => serve(listen, log_format).await,
    }
}

/// What `load run -o json` prints: the plan, then the summary's fields.
#[derive(Serialize)]
struct Report<'a> {
    url: String,
    method: &'a str,
    rate: f64,
    concurrency: usize,
    duration_secs: f64,
    #[serde(flatten)]
    summary: &'a LoadSummary,
}

async fn run_once(plan: LoadPlan, output: Output) -> anyhow::Result<ExitCode> {
    eprintln!(
        "sluice load: {} {} at {}/s from {} workers for {}",
        plan.method,
        plan.uri,
        plan.rate_per_sec,
        plan.concurrency,
        sluice_model::duration::format(plan.duration.unwrap_or_default()),
    );
    let handle = load::spawn(plan.clone());
    let watch = handle.watch();
    let (summary, code) = tokio::select! {
        summary = handle.finish() => (summary, ExitCode::SUCCESS),
        () = crate::server::interrupted() => {
            eprintln!("sluice load: interrupted; the counts so far:");
            (watch.summary(), ExitCode::from(130))
        }
    };
    match output {
        Output::Json | Output::Yaml => {
            let report = Report {
                url: plan.uri.to_string(),
                method: plan.method.as_str(),
                rate: plan.rate_per_sec,
                concurrency: plan.concurrency,
                duration_secs: plan.duration.unwrap_or_default().as_secs_f64(),
                summary: &summary,
            };
            let text = crate::output::render(&report, output, |_| String::new())
                .context("serializing the report")?;
            print!("{text}");
        }
        Output::Table => print!("{}", summary_table(&summary)),
    }
    Ok(code)
}

fn summary_table(summary: &LoadSummary) -> String {
    let millis = |ms: Option<f64>| ms.map_or("-".to_string(), |ms| format!("{ms:.1}ms"));
    let rows = vec![
        [
            "REQUESTS", "OK", "NON-2XX", "ERRORS", "RATE", "P50", "P99", "ELAPSED",
        ]
        .map(String::from)
        .to_vec(),
        vec![
            summary.requests.to_string(),
            summary.ok.to_string(),
            summary.non_2xx.to_string(),
            summary.transport_errors.to_string(),
            format!("{:.1}/s", summary.achieved_rate),
            millis(summary.p50_ms),
            millis(summary.p99_ms),
            format!("{:.1}s", summary.elapsed_secs),
        ],
    ];
    output::table(&rows)
}

// === serve ===

#[derive(Default)]
struct Loads {
    /// By URL: at most one load per URL at a time.
    running: HashMap<String, RunningLoad>,
    /// By URL: the summary of the latest load that ended.
    last: HashMap<String, FinishedLoad>,
}

struct RunningLoad {
    request: WebhookRequest,
    started_at: SystemTime,
    watch: LoadWatch,
}

#[derive(Serialize)]
struct FinishedLoad {
    name: String,
    finished_at: String,
    summary: LoadSummary,
}

type Shared = Arc<Mutex<Loads>>;

async fn serve(listen: SocketAddr, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    crate::logging::init(log_format);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!("sluice: load server listening on http://{addr}");
    let loads: Shared = Arc::default();
    axum::serve(listener, router(loads))
        .with_graceful_shutdown(crate::server::interrupted())
        .await
        .context("serving webhooks")?;
    eprintln!("sluice: load server stopped");
    Ok(ExitCode::SUCCESS)
}

fn router(loads: Shared) -> Router {
    Router::new()
        .route("/", post(webhook))
        .route("/load", post(webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .with_state(loads)
}

/// A validated webhook call.
#[derive(Clone)]
struct WebhookRequest {
    name: String,
    namespace: Option<String>,
    phase: Option<String>,
    plan: LoadPlan,
}

async fn webhook(State(loads): State<Shared>, body: Bytes) -> Response {
    let request = match parse_webhook(&body) {
        Ok(request) => request,
        Err(errors) => return refuse(StatusCode::BAD_REQUEST, errors),
    };
    let url = request.plan.uri.to_string();
    {
        let mut state = loads.lock().unwrap_or_else(|e| e.into_inner());
        if state.running.contains_key(&url) {
            let body = json!({"status": "already running", "url": url});
            return (StatusCode::ACCEPTED, Json(body)).into_response();
        }
        if state.running.len() >= MAX_LOADS {
            let error = format!("{MAX_LOADS} loads are running already; try again later");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                vec![FieldError::new("", error)],
            );
        }
        let handle = load::spawn(request.plan.clone());
        let running = RunningLoad {
            request: request.clone(),
            started_at: SystemTime::now(),
            watch: handle.watch(),
        };
        state.running.insert(url.clone(), running);
        tokio::spawn(finish(
            Arc::clone(&loads),
            url.clone(),
            request.name.clone(),
            handle,
        ));
    }
    tracing::info!(
        url = %url,
        name = %request.name,
        namespace = request.namespace.as_deref().unwrap_or(""),
        phase = request.phase.as_deref().unwrap_or(""),
        rate = request.plan.rate_per_sec,
        concurrency = request.plan.concurrency,
        duration = %sluice_model::duration::format(request.plan.duration.unwrap_or_default()),
        "load started"
    );
    let body = json!({"status": "started", "url": url});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Waits for a load's end, logs its summary and files it under its URL.
async fn finish(loads: Shared, url: String, name: String, handle: load::LoadHandle) {
    let summary = handle.finish().await;
    tracing::info!(
        url = %url,
        name = %name,
        requests = summary.requests,
        ok = summary.ok,
        non_2xx = summary.non_2xx,
        transport_errors = summary.transport_errors,
        achieved_rate = format!("{:.1}", summary.achieved_rate),
        p50_ms = summary.p50_ms.unwrap_or(0.0),
        p99_ms = summary.p99_ms.unwrap_or(0.0),
        "load finished"
    );
    let finished = FinishedLoad {
        name,
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        summary,
    };
    let mut state = loads.lock().unwrap_or_else(|e| e.into_inner());
    state.running.remove(&url);
    state.last.insert(url, finished);
}

async fn status(State(loads): State<Shared>) -> Json<Value> {
    let state = loads.lock().unwrap_or_else(|e| e.into_inner());
    let running: Vec<Value> = state
        .running
        .iter()
        .map(|(url, load)| {
            let plan = &load.request.plan;
            json!({
                "url": url,
                "name": load.request.name,
                "namespace": load.request.namespace,
                "phase": load.request.phase,
                "started_at": humantime::format_rfc3339_seconds(load.started_at).to_string(),
                "rate": plan.rate_per_sec,
                "concurrency": plan.concurrency,
                "duration_secs": plan.duration.unwrap_or_default().as_secs_f64(),
                "so_far": load.watch.summary(),
            })
        })
        .collect();
    Json(json!({"running": running, "last": state.last}))
}

/// One broken rule of a webhook call, with the JSON path of its field.
#[derive(Debug, Serialize)]
struct FieldError {
    field: String,
    message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// `{"error": "field: message; ...", "errors": [{"field", "message"}]}`.
fn refuse(status: StatusCode, errors: Vec<FieldError>) -> Response {
    let error = errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    (status, Json(json!({"error": error, "errors": errors}))).into_response()
}

/// Checks a Flagger webhook payload and reports every broken rule at once.
/// `metadata` is a string map in Flagger; numbers are accepted too.
fn parse_webhook(body: &[u8]) -> Result<WebhookRequest, Vec<FieldError>> {
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| vec![FieldError::new("", format!("the body is not JSON: {e}"))])?;
    let Some(payload) = payload.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let text = |field: &str, errors: &mut Vec<FieldError>| match payload.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    };
    let name = text("name", &mut errors).unwrap_or_default();
    let namespace = text("namespace", &mut errors);
    let phase = text("phase", &mut errors);
    let empty = serde_json::Map::new();
    let metadata = match payload.get("metadata") {
        Some(Value::Object(metadata)) => metadata,
        None | Some(Value::Null) => &empty,
        Some(_) => {
            errors.push(FieldError::new("metadata", "must be an object"));
            &empty
        }
    };
    let mut field = |key: &str, parse: &dyn Fn(&str) -> Result<(), String>| -> Option<String> {
        let path = format!("metadata.{key}");
        let value = match metadata.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                errors.push(FieldError::new(&path, "must be a string"));
                return None;
            }
        };
        match parse(&value) {
            Ok(()) => Some(value),
            Err(message) => {
                errors.push(FieldError::new(&path, message));
                None
            }
        }
    };
    let url = field("url", &|s| parse_url(s).map(drop));
    let rate = field("rate", &|s| parse_rate(s).map(drop));
    let duration = field("duration", &|s| parse_load_duration(s).map(drop));
    let concurrency = field("concurrency", &|s| parse_concurrency(s).map(drop));
    let method = field("method", &|s| parse_method(s).map(drop));
    let headers = field("headers", &|s| parse_headers(s).map(drop));
    if url.is_none() && !metadata.contains_key("url") {
        let hint = if metadata.contains_key("cmd") {
            " (sluice load does not run `cmd`: give url, rate, duration)"
        } else {
            ""
        };
        errors.push(FieldError::new(
            "metadata.url",
            format!("required: the http:// URL to load{hint}"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Every value parsed above; parse again to take the typed values.
    let plan = (|| -> Result<LoadPlan, String> {
        Ok(LoadPlan {
            uri: parse_url(url.as_deref().unwrap_or_default())?,
            method: method.as_deref().map_or(Ok(Method::GET), parse_method)?,
            headers: headers.as_deref().map_or(Ok(Vec::new()), parse_headers)?,
            rate_per_sec: rate.as_deref().map_or(Ok(DEFAULT_RATE), parse_rate)?,
            concurrency: concurrency
                .as_deref()
                .map_or(Ok(DEFAULT_CONCURRENCY), parse_concurrency)?,
            duration: Some(
                duration
                    .as_deref()
                    .map_or(Ok(DEFAULT_DURATION), parse_load_duration)?,
            ),
            rotate_users: false,
        })
    })()
    .map_err(|message| vec![FieldError::new("metadata", message)])?;
    Ok(WebhookRequest {
        name,
        namespace,
        phase,
        plan,
    })
}

// === parsers, shared by the flags and the webhook ===

fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "{text:?} is not an http:// URL with a host (https is not supported)"
        ));
    }
    Ok(uri)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text).trim();
    let rate: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
        Ok(rate)
    } else {
        Err(format!(
            "{text:?} is not a rate above 0 and at most {MAX_RATE}/s"
        ))
    }
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a whole number from 1 to {MAX_CONCURRENCY}"
        )),
    }
}

fn parse_load_duration(text: &str) -> Result<Duration, String> {
    let duration = sluice_model::duration::parse(text.trim())?;
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!(
            "{text:?} is not a duration above 0 and at most 24h"
        ));
    }
    Ok(duration)
}

fn parse_method(text: &str) -> Result<Method, String> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{text:?} is not an HTTP method"))
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not `name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// Headers one per line (`name: value`); blank lines are skipped.
fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_header)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(body: &str) -> Vec<String> {
        match parse_webhook(body.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn takes_a_flagger_payload_with_strings_for_numbers() {
        let body = r#"{"name": "podinfo", "namespace": "test", "phase": "Progressing",
            "metadata": {"url": "http://podinfo-canary:9898/", "rate": "20", "duration": "30s",
                         "concurrency": "4", "headers": "x-canary: always\nx-team: a"}}"#;
        let request = parse_webhook(body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(request.name, "podinfo");
        assert_eq!(request.plan.rate_per_sec, 20.0);
        assert_eq!(request.plan.concurrency, 4);
        assert_eq!(request.plan.duration, Some(Duration::from_secs(30)));
        assert_eq!(request.plan.headers.len(), 2);
        assert_eq!(request.plan.headers[0].0, "x-canary");
    }

    #[test]
    fn names_every_bad_field() {
        let body = r#"{"name": "p", "metadata": {"url": "http://x/", "rate": "fast",
            "duration": "0s", "concurrency": 0, "headers": "nocolon"}}"#;
        assert_eq!(
            errors_of(body),
            [
                "metadata.rate",
                "metadata.duration",
                "metadata.concurrency",
                "metadata.headers"
            ]
        );
        assert_eq!(errors_of(r#"{"metadata": {}}"#), ["metadata.url"]);
        assert_eq!(
            errors_of(r#"{"metadata": {"url": "https://x/"}}"#),
            ["metadata.url"]
        );
        assert_eq!(errors_of("[1]"), [""]);
    }

    #[test]
    fn rates_take_an_optional_per_second() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
    }
}
