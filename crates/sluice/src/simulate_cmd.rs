//! `sluice analysis simulate`: the decision-quality benchmark of the
//! judges, printed as a table, or as one JSON or YAML object. The simulation itself
//! lives in [`sluice_analysis::simulate`]; this is only its front door.

use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cli::Output;
use sluice_analysis::simulate::{simulate, SimulationConfig};

/// Runs `runs` seeded runs per scenario and judge and prints the report:
/// `{"runs", "seed", ..., "judges": {"threshold": {"aa": {...}, ...},
/// "sequential": {...}}}` with `json` (or YAML), else a table.
pub fn run(runs: usize, seed: u64, output: Output) -> anyhow::Result<ExitCode> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let config = SimulationConfig {
        runs,
        seed,
        ..SimulationConfig::default()
    };
    let report = simulate(&config);
    let text = crate::output::render(&report, output, |r| r.to_table())
        .context("serializing the report")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
