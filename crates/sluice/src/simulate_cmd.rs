//! `sluice analysis simulate`: the decision-quality benchmark of the
//! judges, printed as a table or as one JSON object. The simulation itself
//! lives in [`sluice_analysis::simulate`]; this is only its front door.

use std::process::ExitCode;

use anyhow::{bail, Context};
use sluice_analysis::simulate::{simulate, SimulationConfig};

/// Runs `runs` seeded runs per scenario and judge and prints the report:
/// `{"runs", "seed", ..., "judges": {"threshold": {"aa": {...}, ...},
/// "sequential": {...}}}` with `json`, else a table.
pub fn run(runs: usize, seed: u64, json: bool) -> anyhow::Result<ExitCode> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let config = SimulationConfig {
        runs,
        seed,
        ..SimulationConfig::default()
    };
    let report = simulate(&config);
    if json {
        let text = serde_json::to_string_pretty(&report).context("serializing the report")?;
        println!("{text}");
    } else {
        print!("{}", report.to_table());
    }
    Ok(ExitCode::SUCCESS)
}
