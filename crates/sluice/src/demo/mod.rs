//! `sluice demo`: everything on one machine with nothing installed — two
//! demo upstreams (v1 healthy, v2 as bad as asked), built-in load, the real
//! proxy, controller and admin API, and a canary rollout of v2 shown live.

pub(crate) mod load;
mod upstream;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use sluice_analysis::{VersionWindow, Window};
use sluice_model::{duration, Config};
use sluice_proxy::Slot;
use sluice_rollout::{Decision, ServiceState};

use crate::cli::{DemoArgs, Output};
use crate::logging::LogFormat;
use crate::output::{self, LiveStats};
use crate::server::{self, Running};
use crate::status::ServiceStatus;

const SERVICE: &str = "demo";

pub async fn run(args: DemoArgs, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    if std::env::var_os("SLUICE_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("SLUICE_LOG", "warn");
    }
    crate::logging::init(log_format);
    let v1 = upstream::spawn_upstream(
        "v1",
        upstream::Behaviour {
            error_rate: 0.0,
            extra_latency: Duration::ZERO,
            base_latency: Duration::from_millis(2),
        },
    )
    .await?;
    let v2 = upstream::spawn_upstream(
        "v2",
        upstream::Behaviour {
            error_rate: args.canary_error_rate,
            extra_latency: args.canary_latency,
            base_latency: Duration::from_millis(2),
        },
    )
    .await?;
    let store = std::env::temp_dir().join(format!("sluice-demo-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&store);
    let listen = args.listen.unwrap_or_else(|| free_or_any(8080));
    let admin = args.admin.unwrap_or_else(|| free_or_any(9090));
    let yaml = demo_config(
        listen,
        admin,
        &store.display().to_string(),
        v1.addr,
        v2.addr,
        args.interval,
    );
    let config = Config::from_yaml(&yaml)?;
    let running = server::start(config, None, &[], server::DEFAULT_DRAIN).await?;
    let proxy = running.proxy_addrs[0];
    eprintln!(
        "sluice demo: v1 (stable) at {}, v2 (canary) at {} with error rate {} and +{} latency",
        v1.addr,
        v2.addr,
        args.canary_error_rate,
        duration::format(args.canary_latency)
    );
    eprintln!(
        "sluice demo: proxy http://{proxy}   admin http://{0}   metrics http://{0}/metrics",
        running.admin_addr
    );
    eprintln!(
        "sluice demo: try `sluice rollout status --admin http://{}` in another terminal",
        running.admin_addr
    );
    eprintln!(
        "sluice demo: dashboard http://{}/ui/ (charts, checks, actions)",
        running.admin_addr
    );
    eprintln!("sluice demo: plan: canary weights 10% 25% 50% 75% then promote, analysis every {}, rollback after 2 failed runs; checks: success_rate >= 99%, latency p99 <= 50ms", duration::format(args.interval));
    let load = load::spawn_load(proxy, args.rate, 16);

    let final_state = follow(&running, args.output).await;
    let code = match final_state {
        Some(state) => {
            let decisions = running
                .controller
                .history(SERVICE, state.rollout.as_ref().map(|r| r.id), None)
                .await?;
            report(&state, decisions, args.output)?;
            if !args.exit_when_done {
                eprintln!("sluice demo: the rollout is over; still serving (Ctrl-C to stop)");
                crate::server::interrupted().await;
            }
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("sluice demo: interrupted");
            ExitCode::from(130)
        }
    };
    load.stop();
    running.stop().await;
    drop((v1, v2));
    let _ = std::fs::remove_file(&store);
    Ok(code)
}

/// The demo's plan, written as a user would write it.
fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    store: &str,
    v1: SocketAddr,
    v2: SocketAddr,
    interval: Duration,
) -> String {
    format!(
        r#"
listeners:
  - address: "{listen}"
admin:
  address: "{admin}"
store: "{store}"
services:
  - name: {SERVICE}
    versions:
      stable: {{ endpoints: ["{v1}"] }}
      canary: {{ endpoints: ["{v2}"] }}
    routing:
      sticky: {{ header: x-user }}
    rollout:
      interval: {interval}
      threshold: 2
      step_weights: [10, 25, 50, 75]
      min_requests: 30
      checks:
        - metric: success_rate
          min: 99
        - metric: latency
          percentile: 99
          max: 50ms
"#,
        interval = duration::format(interval)
    )
}

/// The preferred port if it is free now, else any free port.
fn free_or_any(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// Prints progress until the rollout is final (Some) or Ctrl-C (None).
async fn follow(running: &Running, output: Output) -> Option<ServiceState> {
    let mut states = running.controller.subscribe(SERVICE)?;
    let tty = std::io::stderr().is_terminal() && output == Output::Table;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut previous = counters(running);
    let mut stats = (None, None);
    let mut printed = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        let state = states.borrow_and_update().clone();
        printed = print_new_decisions(running, &state, printed, tty).await;
        let line = output::progress_line(&ServiceStatus::from_state(&state), stats.0, stats.1);
        let elapsed = started.elapsed().as_secs_f64();
        if tty {
            eprint!("\r\x1b[K[{elapsed:5.1}s] {line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("[{elapsed:5.1}s] {line}");
        }
        if state.rollout.as_ref().is_some_and(|r| r.phase.is_final()) {
            if tty {
                eprintln!();
            }
            return Some(state);
        }
        tokio::select! {
            _ = ticker.tick() => {
                let current = counters(running);
                stats = (Some(live(&current.stable.since(&previous.stable))), Some(live(&current.canary.since(&previous.canary))));
                previous = current;
            }
            changed = states.changed() => { changed.ok()?; }
            _ = crate::server::interrupted() => return None,
        }
    }
}

async fn print_new_decisions(
    running: &Running,
    state: &ServiceState,
    printed: u64,
    tty: bool,
) -> u64 {
    let Some(rollout) = &state.rollout else {
        return printed;
    };
    if rollout.decisions <= printed {
        return printed;
    }
    let decisions = running
        .controller
        .history(SERVICE, Some(rollout.id), None)
        .await
        .unwrap_or_default();
    for decision in decisions.iter().filter(|d| d.seq >= printed) {
        if tty {
            eprint!("\r\x1b[K");
        }
        eprintln!(
            "  decision: {:?} → {:?} at {}: {}",
            decision.kind, decision.to, decision.weight, decision.reason
        );
    }
    rollout.decisions
}

fn counters(running: &Running) -> Window {
    Window {
        stable: running.metrics.snapshot(SERVICE, Slot::Stable),
        canary: running.metrics.snapshot(SERVICE, Slot::Canary),
    }
}

fn live(window: &VersionWindow) -> LiveStats {
    LiveStats {
        requests: window.requests,
        success_rate: window.success_rate(),
        p99_ms: window
            .latency
            .quantile(0.99)
            .map(|d| d.as_secs_f64() * 1000.0),
    }
}

/// The final status: one JSON object on stdout, or a summary for people.
fn report(state: &ServiceState, decisions: Vec<Decision>, output: Output) -> anyhow::Result<()> {
    let mut status = ServiceStatus::from_state(state);
    status.decisions = decisions;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&status)?),
        Output::Yaml => print!("{}", crate::output::yaml(&status)?),
        Output::Table => {
            println!(
                "rollout {} of {}: {:?} after {} steps",
                status.rollout_id.unwrap_or(0),
                status.service,
                status.phase,
                status.steps_taken
            );
            print!("{}", output::history_table(&status.decisions));
        }
    }
    Ok(())
}
