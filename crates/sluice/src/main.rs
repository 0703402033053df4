//! The `sluice` binary: parses the command line and hands over to the
//! command's module. Everything with logic lives in the modules.

mod admin;
mod cli;
mod client;
mod controller;
mod demo;
mod output;
mod providers;
mod server;
mod simulate_cmd;
mod status;

use std::process::ExitCode;

use clap::Parser;

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
