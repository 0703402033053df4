//! `sluice breakers …`: list circuit breakers with their state and counters,
//! force one open or closed, reset it, show and replace policies, and flip
//! the global, per-policy and per-partition switches, through the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::cli::Remote;
use crate::client::{path_segment as segment, print_data, AdminClient};
use crate::output;
use crate::watch::{self, WatchArgs};

#[derive(Subcommand)]
pub enum BreakersCommand {
    /// Every breaker: state, policy, failure rate, counters.
    List {
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Force a breaker (`service:version[:partition]`) open until closed or reset.
    Open { id: String },
    /// Close a breaker with a fresh window.
    Close { id: String },
    /// Close a breaker, fresh window, backoff cleared.
    Reset { id: String },
    /// The policies, or one.
    Policies { id: Option<String> },
    /// Replace (or add) a policy from a YAML or JSON file; an invalid one is refused.
    SetPolicy {
        id: String,
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Switch breakers back on: all, one policy's, or one partition's (tenant).
    Enable {
        #[command(flatten)]
        target: SwitchTarget,
    },
    /// Switch breakers off (they admit everything): all, a policy's, or a partition's.
    Disable {
        #[command(flatten)]
        target: SwitchTarget,
    },
    /// The latest state transitions with their reasons.
    Transitions {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(clap::Args)]
#[group(multiple = false)]
pub struct SwitchTarget {
    /// Only the breakers following this policy.
    #[arg(long)]
    policy: Option<String>,
    /// Only the breakers of this partition (tenant), in every service.
    #[arg(long)]
    partition: Option<String>,
}

pub async fn run(command: BreakersCommand, remote: Remote) -> anyhow::Result<ExitCode> {
    let api = AdminClient::new(&remote)?;
    let output = remote.output;
    let answer: Value = match command {
        BreakersCommand::List { watch } => {
            return watch::repeat(watch, output, || async {
                let answer: Value = api.get("/api/v1/breakers").await?;
                output::render(&answer, output, list_table)
            })
            .await;
        }
        BreakersCommand::Open { id } => act(&api, &id, "open").await?,
        BreakersCommand::Close { id } => act(&api, &id, "close").await?,
        BreakersCommand::Reset { id } => act(&api, &id, "reset").await?,
        BreakersCommand::Policies { id: Some(id) } => {
            api.get(&format!("/api/v1/breakers/policies/{}", segment(&id)))
                .await?
        }
        BreakersCommand::Policies { id: None } => api.get("/api/v1/breakers/policies").await?,
        BreakersCommand::SetPolicy { id, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let body: Value = serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{} is not YAML or JSON", file.display()))?;
            api.put(&format!("/api/v1/breakers/policies/{}", segment(&id)), body)
                .await?
        }
        BreakersCommand::Enable { target } => switch(&api, target, "enable").await?,
        BreakersCommand::Disable { target } => switch(&api, target, "disable").await?,
        BreakersCommand::Transitions { limit } => {
            let answer: Value = api
                .get(&format!("/api/v1/breakers/transitions?limit={limit}"))
                .await?;
            print!("{}", output::render(&answer, output, transitions_table)?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_data(&answer, output)?;
    Ok(ExitCode::SUCCESS)
}

async fn act(api: &AdminClient, id: &str, action: &str) -> anyhow::Result<Value> {
    api.post(&format!("/api/v1/breakers/{}/{action}", segment(id)), None)
        .await
}

async fn switch(api: &AdminClient, target: SwitchTarget, switch: &str) -> anyhow::Result<Value> {
    let path = match (target.policy, target.partition) {
        (Some(policy), _) => format!("/api/v1/breakers/policies/{}/{switch}", segment(&policy)),
        (None, Some(partition)) => {
            format!(
                "/api/v1/breakers/partitions/{}/{switch}",
                segment(&partition)
            )
        }
        (None, None) => format!("/api/v1/breakers/all/{switch}"),
    };
    api.post(&path, None).await
}

pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn list_table(answer: &Value) -> String {
    let mut rows = vec![[
        "BREAKER",
        "POLICY",
        "MODE",
        "STATE",
        "FAIL RATE",
        "CALLS",
        "OK",
        "FAILED",
        "REJECTED",
        "RETRY IN",
    ]
    .map(String::from)
    .to_vec()];
    let empty = Vec::new();
    for b in answer["breakers"].as_array().unwrap_or(&empty) {
        let counters = &b["counters"];
        let state = if b["disabled"] == Value::Bool(true) {
            "disabled (partition)".to_string()
        } else {
            output::painted_state(&text(&b["state"]))
        };
        rows.push(vec![
            text(&b["id"]),
            text(&b["policy"]),
            text(&b["mode"]),
            state,
            output::percent(b["failure_rate"].as_f64().map(|r| r / 100.0)),
            text(&b["window_calls"]),
            text(&counters["successes"]),
            format!(
                "{}",
                counters["failures"].as_u64().unwrap_or(0)
                    + counters["timeouts"].as_u64().unwrap_or(0)
            ),
            text(&counters["rejected"]),
            b["retry_after_ms"]
                .as_u64()
                .map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        ]);
    }
    let mut out = String::new();
    if answer["enabled"] == Value::Bool(false) {
        out.push_str("circuit breakers are switched OFF globally: every call is admitted\n");
    }
    out.push_str(&output::table(&rows));
    out
}

fn transitions_table(answer: &Value) -> String {
    let mut rows = vec![["AT", "BREAKER", "FROM", "TO", "REASON"]
        .map(String::from)
        .to_vec()];
    let empty = Vec::new();
    for t in answer.as_array().unwrap_or(&empty) {
        let at = sluice_model::Timestamp::from_millis(t["at"].as_u64().unwrap_or(0));
        let shadow = if t["shadow"] == Value::Bool(true) {
            " (shadow: nothing rejected)"
        } else {
            ""
        };
        rows.push(vec![
            output::time(at),
            text(&t["breaker"]),
            output::painted_state(&text(&t["from"])),
            output::painted_state(&text(&t["to"])),
            format!("{}{shadow}", text(&t["reason"])),
        ]);
    }
    output::table(&rows)
}
