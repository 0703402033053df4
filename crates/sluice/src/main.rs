//! The `sluice` binary: parses the command line and hands over to the
//! command's module. Everything with logic lives in the modules.

mod admin;
mod breaker_store;
mod breakers_cmd;
mod cli;
mod client;
mod cluster;
mod cluster_cmd;
mod controller;
mod decision_log;
mod demo;
mod flags;
mod flags_cmd;
mod generate;
mod health;
mod hooks;
mod listen;
mod load_cmd;
mod logging;
mod notify;
mod output;
mod providers;
mod secrets;
mod server;
mod simulate_cmd;
mod status;
mod watch;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc's per-thread free lists make the proxy's many small, short-lived
/// allocations per request (header maps, body channels, futures) cheaper than
/// glibc malloc: see the commit message for the numbers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(1)
        }
    }
}
