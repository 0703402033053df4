//! Command-line interface: the commands and their flags, and which module
//! runs each. Commands that talk to a running sluice go through `client`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::breakers_cmd::{self, BreakersCommand};
use crate::cluster_cmd::{self, ClusterCommand};
use crate::flags_cmd::{self, FlagsCommand};
use crate::load_cmd::{self, LoadCommand};
use crate::logging::LogFormat;
use crate::watch::WatchArgs;
use crate::{client, demo, output, server, simulate_cmd};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery in one binary: a traffic-splitting proxy and a rollout controller"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines of `run`, `demo` and `load serve` (stderr): `human`, or one JSON object per line.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on one machine: demo upstreams, load, proxy, controller, admin API, and a canary rollout.
    Demo(DemoArgs),
    /// Run the proxy, the controller, the flag server and the admin API from a config file.
    Run {
        /// The config file (YAML). Default `sluice.yaml`, unless `--flags` alone is given.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// A flagd flag-definition file to serve over OFREP (repeatable; watched for changes).
        #[arg(long = "flags", value_name = "FILE")]
        flags: Vec<PathBuf>,
        /// The admin API (and OFREP) listener, overriding `admin.address`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// At SIGTERM, how long in-flight requests may take before their
        /// connections are closed (e.g. `30s`).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Analysis tools.
    Analysis {
        #[command(subcommand)]
        command: AnalysisCommand,
    },
    /// Operate rollouts through the admin API.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Feature flags: list, get, set, kill, evaluate, history.
    Flags {
        #[command(subcommand)]
        command: FlagsCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Circuit breakers: list, force open/close, reset, policies, switches.
    Breakers {
        #[command(subcommand)]
        command: BreakersCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cluster mode (store: etcd://…): the nodes, the leader, their lag.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Prometheus alerting rules and Grafana dashboards for sluice's metrics.
    Generate {
        #[command(subcommand)]
        command: crate::generate::GenerateCommand,
    },
    /// Built-in load generator: send load now (`run`) or on webhook calls, like Flagger's loadtester (`serve`).
    Load {
        #[command(subcommand)]
        command: LoadCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config and print every error with its field path.
    Validate {
        #[arg(short, long, default_value = "sluice.yaml")]
        config: PathBuf,
        /// `json` or `yaml`: `{file, valid, services, listeners, errors: [{path, message}]}`.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum AnalysisCommand {
    /// Simulate rollouts from a seed and measure each judge's decision quality:
    /// false rollbacks on identical versions, and the traffic needed to catch each regression.
    Simulate {
        /// Independent runs per judge and scenario.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Base seed: the same seed gives the same numbers.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Args)]
pub struct DemoArgs {
    /// Share of v2's requests answered 500, from 0 to 1 (e.g. 0.3).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub canary_error_rate: f64,
    /// Latency added to each of v2's answers (e.g. 80ms).
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub canary_latency: Duration,
    /// End when the rollout reaches a final phase (otherwise serve until Ctrl-C).
    #[arg(long)]
    pub exit_when_done: bool,
    /// `json` prints the final rollout status as one JSON object on stdout, `yaml` as YAML (progress goes to stderr).
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Requests per second of the built-in load.
    #[arg(long, default_value_t = 400)]
    pub rate: u32,
    /// Analysis interval of the demo plan.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Proxy listener (port 0 picks a free one; the default falls back to a free port when busy).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Admin API listener (same fallback).
    #[arg(long)]
    pub admin: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Phase, weight, step and latest checks of one service or all.
    Status {
        service: Option<String>,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Start a rollout of the service's canary (or of the given endpoints).
    Start {
        service: String,
        /// Canary endpoints (host:port, comma-separated); default: the config's canary pool.
        #[arg(long, value_delimiter = ',')]
        canary: Vec<String>,
        /// Then show its progress until it ends, as `rollout watch` does.
        #[arg(long)]
        wait: bool,
    },
    /// Skip the remaining steps and promote the canary now.
    Promote {
        service: String,
        /// Then show progress until the rollout ends (a bake, say).
        #[arg(long)]
        wait: bool,
    },
    /// Hold the current weight; analysis stops until resume.
    Pause { service: String },
    /// Continue a paused rollout (or pass a manual gate).
    Resume { service: String },
    /// Send all traffic back to stable at once.
    Abort { service: String },
    /// Serve an earlier revision's stable pool again (default: the previous one).
    Undo {
        service: String,
        #[arg(long)]
        to_revision: Option<u64>,
    },
    /// The service's revisions, then the decisions of its rollouts, with reasons.
    History {
        service: String,
        /// Only this rollout (id); default: all.
        #[arg(long)]
        rollout: Option<u64>,
        /// Newest N decisions.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Live progress of a rollout until it ends (Ctrl-C to stop watching).
    Watch { service: String },
}

/// Where the admin API is and how to authenticate.
#[derive(Args, Clone)]
pub struct Remote {
    /// Admin API base URL.
    #[arg(
        long,
        global = true,
        env = "SLUICE_ADMIN",
        default_value = "http://127.0.0.1:9090"
    )]
    pub admin: String,
    /// Bearer token (any role for reads; operator or admin for changes).
    #[arg(
        long,
        global = true,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// PEM certificate(s) trusted for an https:// admin API (instead of the
    /// public web roots), e.g. the admin listener's own self-signed certificate.
    #[arg(long, global = true, env = "SLUICE_ADMIN_CA")]
    pub admin_ca: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `-o`: how a command prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people (coloured on a terminal unless `NO_COLOR` is set).
    Table,
    /// The admin API's JSON, pretty-printed.
    Json,
    /// The same data as YAML.
    Yaml,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not a rate between 0 and 1"))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_model::duration::parse(text)
}

/// Runs the command; the exit code follows the command's own rules.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    output::enable_colour_on_terminal();
    let log_format = cli.log_format;
    match cli.command {
        Command::Demo(args) => runtime()?.block_on(demo::run(args, log_format)),
        Command::Run {
            config,
            flags,
            admin,
            drain_timeout,
        } => {
            // `--flags` alone serves flags without a config file, like flagd.
            let config = match config {
                Some(config) => Some(config),
                None if flags.is_empty() => Some(PathBuf::from("sluice.yaml")),
                None => None,
            };
            runtime()?.block_on(server::run(server::RunOptions {
                config,
                flag_files: flags,
                admin,
                log_format,
                drain: drain_timeout,
            }))
        }
        Command::Config {
            command: ConfigCommand::Validate { config, output },
        } => validate(&config, output),
        Command::Analysis {
            command: AnalysisCommand::Simulate { runs, seed, output },
        } => simulate_cmd::run(runs, seed, output),
        Command::Rollout { command, remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(rollout(command, remote))
        }
        Command::Flags { command, remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(flags_cmd::run(command, remote))
        }
        Command::Breakers { command, remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(breakers_cmd::run(command, remote))
        }
        Command::Cluster { command, remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(cluster_cmd::run(command, remote))
        }
        Command::Load { command } => runtime()?.block_on(load_cmd::run(command, log_format)),
        Command::Generate { command } => crate::generate::run(command),
    }
}

/// A tokio runtime with `SLUICE_THREADS` workers (default: one per core).
/// One thread gets the single-threaded scheduler, which skips the
/// work-stealing machinery nobody can use (as one nginx worker does).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = match std::env::var("SLUICE_THREADS") {
        Ok(threads) => Some(
            threads
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("SLUICE_THREADS={threads:?} is not a positive number"))?,
        ),
        Err(_) => None,
    };
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    Ok(builder.enable_all().build()?)
}

/// What `config validate -o json|yaml` prints.
#[derive(serde::Serialize)]
struct Validation {
    file: String,
    valid: bool,
    services: usize,
    listeners: usize,
    errors: Vec<sluice_model::FieldError>,
}

fn validate(path: &std::path::Path, output: Output) -> anyhow::Result<ExitCode> {
    let result = server::load_config(path);
    if output != Output::Table {
        let (services, listeners) = result
            .as_ref()
            .map_or((0, 0), |c| (c.services.len(), c.listeners.len()));
        let errors = match &result {
            Ok(_) => Vec::new(),
            Err(e) => match e.downcast_ref::<sluice_model::ConfigError>() {
                Some(config_error) => config_error.errors(),
                None => vec![sluice_model::FieldError {
                    path: String::new(),
                    message: format!("{e:#}"),
                }],
            },
        };
        let report = Validation {
            file: path.display().to_string(),
            valid: result.is_ok(),
            services,
            listeners,
            errors,
        };
        print!("{}", output::render(&report, output, |_| String::new())?);
        return Ok(ExitCode::from(u8::from(result.is_err())));
    }
    Ok(match result {
        Ok(config) => {
            println!(
                "{}: valid ({} service{}, {} listener{})",
                path.display(),
                config.services.len(),
                if config.services.len() == 1 { "" } else { "s" },
                config.listeners.len(),
                if config.listeners.len() == 1 { "" } else { "s" },
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid", path.display());
            eprintln!("{e}");
            ExitCode::from(1)
        }
    })
}

async fn rollout(command: RolloutCommand, remote: Remote) -> anyhow::Result<ExitCode> {
    let api = client::AdminClient::new(&remote)?;
    match command {
        RolloutCommand::Status { service, watch } => {
            client::status(&api, service.as_deref(), watch, remote.output).await
        }
        RolloutCommand::Start {
            service,
            canary,
            wait,
        } => {
            client::start(&api, &service, canary, remote.output).await?;
            wait_for_end(&api, &service, wait).await
        }
        RolloutCommand::Promote { service, wait } => {
            client::action(&api, &service, "promote", remote.output).await?;
            wait_for_end(&api, &service, wait).await
        }
        RolloutCommand::Pause { service } => {
            client::action(&api, &service, "pause", remote.output).await
        }
        RolloutCommand::Resume { service } => {
            client::action(&api, &service, "resume", remote.output).await
        }
        RolloutCommand::Abort { service } => {
            client::action(&api, &service, "abort", remote.output).await
        }
        RolloutCommand::Undo {
            service,
            to_revision,
        } => client::undo(&api, &service, to_revision, remote.output).await,
        RolloutCommand::History {
            service,
            rollout,
            limit,
        } => client::history(&api, &service, rollout, limit, remote.output).await,
        RolloutCommand::Watch { service } => client::watch(&api, &service).await,
    }
}

/// `--wait`: the live progress of the rollout until it ends (on stderr, so
/// that stdout holds only the action's answer).
async fn wait_for_end(
    api: &client::AdminClient,
    service: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    if wait {
        client::watch_to(api, service, &mut std::io::stderr()).await
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
