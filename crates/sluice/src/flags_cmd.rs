//! `sluice flags …`: list, read, set, kill and evaluate feature flags, and
//! read their change log, through the admin API and OFREP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::breakers_cmd::text;
use crate::cli::{Output, Remote};
use crate::client::{path_segment as segment, print_data, AdminClient};
use crate::output;
use crate::watch::{self, WatchArgs};

#[derive(Subcommand)]
pub enum FlagsCommand {
    /// Every flag: state, type, default, percentage, source.
    List {
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// One flag's definition as served.
    Get { key: String },
    /// Set a flag: a whole definition from a file (YAML or JSON, flagd's
    /// format for one flag), or just its percentage.
    Set {
        key: String,
        #[arg(short, long, conflicts_with = "percentage")]
        file: Option<PathBuf>,
        /// Boolean flags: the share (0 to 100) served the `true` variant.
        #[arg(long)]
        percentage: Option<f64>,
    },
    /// Remove the API's definition (the file's or config's comes back).
    Delete { key: String },
    /// The kill switch: the flag answers DISABLED everywhere, at once.
    Kill { key: String },
    /// Lift the kill switch.
    Revive { key: String },
    /// Evaluate a flag over OFREP for a context.
    Eval {
        key: String,
        /// The context as a JSON object.
        #[arg(long)]
        context: Option<String>,
        /// One context attribute, `name=value` (repeatable; `targetingKey=…` too).
        #[arg(short = 'c', value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// The change log: who changed what, when, before and after.
    History {
        key: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub async fn run(command: FlagsCommand, remote: Remote) -> anyhow::Result<ExitCode> {
    let api = AdminClient::new(&remote)?;
    let output = remote.output;
    let answer: Value = match command {
        FlagsCommand::List { watch } => {
            return watch::repeat(watch, output, || async {
                let answer: Value = api.get("/api/v1/flags").await?;
                output::render(&answer, output, list_table)
            })
            .await;
        }
        FlagsCommand::Get { key } => api.get(&format!("/api/v1/flags/{}", segment(&key))).await?,
        FlagsCommand::Set {
            key,
            file,
            percentage,
        } => match (file, percentage) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let body: Value = serde_yaml_ng::from_str(&text)
                    .with_context(|| format!("{} is not YAML or JSON", file.display()))?;
                api.put(&format!("/api/v1/flags/{}", segment(&key)), body)
                    .await?
            }
            (None, Some(percentage)) => {
                api.post(
                    &format!("/api/v1/flags/{}/percentage", segment(&key)),
                    Some(json!({ "percentage": percentage })),
                )
                .await?
            }
            (None, None) => bail!("give --file FILE or --percentage N"),
        },
        FlagsCommand::Delete { key } => {
            api.delete(&format!("/api/v1/flags/{}", segment(&key)))
                .await?
        }
        FlagsCommand::Kill { key } => {
            api.post(&format!("/api/v1/flags/{}/kill", segment(&key)), None)
                .await?
        }
        FlagsCommand::Revive { key } => {
            api.post(&format!("/api/v1/flags/{}/revive", segment(&key)), None)
                .await?
        }
        FlagsCommand::Eval {
            key,
            context,
            attributes,
        } => {
            let context = build_context(context.as_deref(), &attributes)?;
            let (status, answer) = api
                .post_any(
                    &format!("/ofrep/v1/evaluate/flags/{}", segment(&key)),
                    json!({ "context": context }),
                )
                .await?;
            if output == Output::Table {
                match answer.get("errorCode") {
                    Some(code) => {
                        println!("{key}: {} ({})", text(code), text(&answer["errorDetails"]))
                    }
                    None => println!(
                        "{key} = {}  variant {}  reason {}",
                        answer
                            .get("value")
                            .map_or("(caller's default)".to_string(), |v| v.to_string()),
                        text(&answer["variant"]),
                        text(&answer["reason"])
                    ),
                }
            } else {
                print_data(&answer, output)?;
            }
            return Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        FlagsCommand::History { key, limit } => {
            let path = match key {
                Some(key) => format!("/api/v1/flags/changes?key={}&limit={limit}", segment(&key)),
                None => format!("/api/v1/flags/changes?limit={limit}"),
            };
            let answer: Value = api.get(&path).await?;
            print!("{}", output::render(&answer, output, history_table)?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_data(&answer, output)?;
    Ok(ExitCode::SUCCESS)
}

/// A context from `--context JSON` and `-c name=value` pairs (values that
/// parse as JSON numbers or booleans are typed; the rest are strings).
fn build_context(json_text: Option<&str>, attributes: &[String]) -> anyhow::Result<Value> {
    let mut context = match json_text {
        Some(text) => match serde_json::from_str(text).context("--context is not JSON")? {
            Value::Object(map) => map,
            other => bail!("--context must be a JSON object, not {other}"),
        },
        None => Map::new(),
    };
    for attribute in attributes {
        let Some((name, value)) = attribute.split_once('=') else {
            bail!("-c {attribute:?}: write name=value");
        };
        let value = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
            _ => Value::String(value.to_string()),
        };
        context.insert(name.to_string(), value);
    }
    Ok(Value::Object(context))
}

fn list_table(answer: &Value) -> String {
    let mut rows = vec![[
        "KEY",
        "STATE",
        "TYPE",
        "DEFAULT",
        "VARIANTS",
        "PERCENT",
        "TARGETING",
        "SOURCE",
    ]
    .map(String::from)
    .to_vec()];
    let empty = Vec::new();
    for flag in answer.as_array().unwrap_or(&empty) {
        let state = if flag["killed"] == Value::Bool(true) {
            output::painted_state("KILLED")
        } else {
            output::painted_state(&text(&flag["state"]))
        };
        rows.push(vec![
            text(&flag["key"]),
            state,
            text(&flag["kind"]),
            text(&flag["default_variant"]),
            flag["variants"]
                .as_array()
                .map(|v| v.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default(),
            flag["percentage"]
                .as_f64()
                .map_or("-".into(), |p| format!("{p}%")),
            if flag["targeting"] == Value::Bool(true) {
                "yes"
            } else {
                "-"
            }
            .to_string(),
            text(&flag["source"]),
        ]);
    }
    output::table(&rows)
}

fn history_table(answer: &Value) -> String {
    let mut rows = vec![["SEQ", "AT", "ACTOR", "ACTION", "FLAG", "CHANGE"]
        .map(String::from)
        .to_vec()];
    let empty = Vec::new();
    for change in answer.as_array().unwrap_or(&empty) {
        let at = sluice_model::Timestamp::from_millis(change["at"].as_u64().unwrap_or(0));
        rows.push(vec![
            text(&change["seq"]),
            output::time(at),
            text(&change["actor"]),
            text(&change["action"]),
            text(&change["key"]),
            summary(&change["before"], &change["after"]),
        ]);
    }
    output::table(&rows)
}

/// The fields that changed, `field: before → after`.
fn summary(before: &Value, after: &Value) -> String {
    match (before, after) {
        (Value::Null, Value::Null) => "-".into(),
        (Value::Null, _) => "added".into(),
        (_, Value::Null) => "removed".into(),
        (Value::Object(b), Value::Object(a)) => {
            let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
            fields.sort();
            fields.dedup();
            fields
                .into_iter()
                .filter(|f| b.get(*f) != a.get(*f))
                .map(|f| {
                    format!(
                        "{f}: {} → {}",
                        b.get(f).map_or("-".into(), |v| v.to_string()),
                        a.get(f).map_or("-".into(), |v| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        _ => "changed".into(),
    }
}
