//! `sluice generate alerts|dashboards`: Prometheus alerting rules and
//! Grafana dashboards for what `/metrics` exposes, so operators get the
//! seed plans' alerts and dashboards without writing PromQL. Pure text
//! generation (the files are written by `run`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

mod alerts;
mod dashboards;

pub use alerts::{alert_rules, AlertSettings};
pub use dashboards::dashboards;

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// Prometheus alerting rules (YAML; check with `promtool check rules`).
    Alerts {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A rollout is stuck when no step was taken for this long while it runs.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        stuck_after: Duration,
        /// Alert when the canary's error rate is above stable's by more than this many percent.
        #[arg(long, default_value_t = 10.0)]
        canary_error_margin: f64,
        /// Alert when a breaker stays open this long.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        stuck_open_after: Duration,
        /// Alert when this many services have an open breaker at once.
        #[arg(long, default_value_t = 2)]
        open_services: u32,
        /// Alert when a version's error rate stays above this percent for 5 minutes.
        #[arg(long, default_value_t = 5.0)]
        failure_rate: f64,
    },
    /// Grafana dashboards (one JSON file each): overview, performance, breakers, rollouts, flags.
    Dashboards {
        /// The directory to write them to (created if missing).
        #[arg(short, long, default_value = "dashboards")]
        output: PathBuf,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_model::duration::parse(text)
}

pub fn run(command: GenerateCommand) -> anyhow::Result<ExitCode> {
    match command {
        GenerateCommand::Alerts {
            output,
            stuck_after,
            canary_error_margin,
            stuck_open_after,
            open_services,
            failure_rate,
        } => {
            let settings = AlertSettings {
                stuck_after,
                canary_error_margin,
                stuck_open_after,
                open_services,
                failure_rate,
            };
            let text = alert_rules(&settings);
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
        GenerateCommand::Dashboards { output } => {
            std::fs::create_dir_all(&output)
                .with_context(|| format!("creating {}", output.display()))?;
            for (name, dashboard) in dashboards() {
                let path = output.join(format!("{name}.json"));
                let text = serde_json::to_string_pretty(&dashboard)?;
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
