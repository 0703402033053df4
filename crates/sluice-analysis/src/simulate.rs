//! The decision-quality benchmark: simulated canary traffic, seeded and
//! deterministic, judged by the Flagger-style threshold judge and by the
//! sequential judge, so that false rollbacks and the traffic needed to
//! detect a regression can be compared. Not a load generator and not a
//! model of any real service: the traffic is Poisson arrivals with
//! log-normal latencies (median 50 ms, σ 0.5, p99 ≈ 160 ms).
//!
//! Each run draws one stream of 10-second batches (canary at
//! `canary_rps`, stable at `stable_rps`) and shows the *same* stream to both
//! judges (common random numbers, so the comparison is paired):
//! - threshold: every minute, the canary's success rate over that minute
//!   must be at least 99%; a miss adds one failed check, never reset
//!   (Flagger's cumulative `failedChecks`); five roll back.
//! - sequential: [`crate::sequential`] with its default settings, fed every
//!   batch; the first Fail rolls back.
//!
//! A run that has not rolled back by the horizon counts as undetected.
//! Medians and 90th percentiles are over *all* runs, an undetected run
//! counting as infinitely slow, so they are null when fewer than half (a
//! tenth) of the runs detected.

mod traffic;

pub use traffic::{LatencyModel, Rng, VersionTraffic};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::sequential::{SequentialConfig, SequentialState, SequentialVerdict};
use crate::{VersionWindow, Window};

/// Simulated seconds per batch fed to the sequential judge.
pub const BATCH_SECONDS: u64 = 10;
/// The threshold judge's interval.
pub const INTERVAL_SECONDS: u64 = 60;
/// Failed checks that roll back under the threshold judge.
pub const THRESHOLD_FAILED_CHECKS: u32 = 5;
/// The threshold judge's success-rate bound, in percent.
pub const THRESHOLD_SUCCESS_RATE: f64 = 99.0;
/// Error rate of stable, and of the canary where a scenario does not change it.
pub const BASELINE_ERROR_RATE: f64 = 0.005;

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationConfig {
    /// Independent runs per scenario.
    pub runs: usize,
    /// Base seed; run `i` of scenario `s` uses a seed derived from (seed, s, i).
    pub seed: u64,
    pub canary_rps: f64,
    pub stable_rps: f64,
    /// Simulated time per run.
    pub horizon_minutes: u64,
    pub sequential: SequentialConfig,
}

impl Default for SimulationConfig {
    /// 200 runs, seed 1, canary 20 req/s against stable 380 (weight 5%), 60 minutes.
    fn default() -> Self {
        SimulationConfig {
            runs: 200,
            seed: 1,
            canary_rps: 20.0,
            stable_rps: 380.0,
            horizon_minutes: 60,
            sequential: SequentialConfig::default(),
        }
    }
}

/// The simulated situations, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Identical versions: every rollback is a false one.
    Aa,
    /// Canary errors 0.5% → 1%.
    Err2x,
    /// Canary errors 0.5% → 5%.
    Err10x,
    /// Every canary latency × 1.2.
    Latency20pct,
    /// 50 ms more on the canary's slowest 1% only.
    P99Plus50ms,
    /// Canary errors at 20% for 30 s from minute 2, then back to 0.5%.
    Burst,
}

// === impl Scenario ===

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Aa,
        Scenario::Err2x,
        Scenario::Err10x,
        Scenario::Latency20pct,
        Scenario::P99Plus50ms,
        Scenario::Burst,
    ];

    /// The key in reports and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Aa => "aa",
            Scenario::Err2x => "err_2x",
            Scenario::Err10x => "err_10x",
            Scenario::Latency20pct => "latency_20pct",
            Scenario::P99Plus50ms => "p99_plus_50ms",
            Scenario::Burst => "burst",
        }
    }

    /// The canary's error rate during the batch starting at `second`.
    pub fn canary_error_rate(self, second: u64) -> f64 {
        match self {
            Scenario::Err2x => 2.0 * BASELINE_ERROR_RATE,
            Scenario::Err10x => 10.0 * BASELINE_ERROR_RATE,
            Scenario::Burst if (120..150).contains(&second) => 0.20,
            _ => BASELINE_ERROR_RATE,
        }
    }

    pub fn canary_latency(self) -> LatencyModel {
        let base = LatencyModel::baseline();
        match self {
            Scenario::Latency20pct => LatencyModel { scale: 1.2, ..base },
            Scenario::P99Plus50ms => LatencyModel {
                tail_share: 0.01,
                tail_delay_micros: 50_000.0,
                ..base
            },
            _ => base,
        }
    }
}

/// The judges compared, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    Threshold,
    Sequential,
}

impl Judge {
    pub fn key(self) -> &'static str {
        match self {
            Judge::Threshold => "threshold",
            Judge::Sequential => "sequential",
        }
    }
}

/// One judge on one scenario over all runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioResult {
    pub runs: usize,
    /// Runs rolled back in the A/A scenario (0 elsewhere: a rollback of a
    /// regression is not false).
    pub false_rollbacks: usize,
    /// Runs rolled back in a regression scenario (null for A/A).
    pub detected: Option<usize>,
    /// Runs the sequential judge passed before any rollback (null for the
    /// threshold judge, which has no pass of its own).
    pub passed: Option<usize>,
    /// Canary requests until the rollback.
    pub median_requests_to_detect: Option<u64>,
    pub p90_requests_to_detect: Option<u64>,
    /// Simulated minutes until the rollback.
    pub median_minutes_to_detect: Option<f64>,
    pub p90_minutes_to_detect: Option<f64>,
}

/// Every judge on every scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub runs: usize,
    pub seed: u64,
    pub canary_rps: f64,
    pub stable_rps: f64,
    pub horizon_minutes: u64,
    pub batch_seconds: u64,
    /// Judge key → scenario key → result, in [`Judge`] and [`Scenario::ALL`] order.
    #[serde(serialize_with = "nested_map")]
    pub judges: Vec<(Judge, Vec<(Scenario, ScenarioResult)>)>,
}

fn nested_map<S: Serializer>(
    judges: &[(Judge, Vec<(Scenario, ScenarioResult)>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    struct Scenarios<'a>(&'a [(Scenario, ScenarioResult)]);
    impl Serialize for Scenarios<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for (scenario, result) in self.0 {
                map.serialize_entry(scenario.key(), result)?;
            }
            map.end()
        }
    }
    let mut map = serializer.serialize_map(Some(judges.len()))?;
    for (judge, scenarios) in judges {
        map.serialize_entry(judge.key(), &Scenarios(scenarios))?;
    }
    map.end()
}

// === impl Report ===

impl Report {
    /// The result of one judge on one scenario.
    pub fn result(&self, judge: Judge, scenario: Scenario) -> Option<&ScenarioResult> {
        self.judges
            .iter()
            .find(|(j, _)| *j == judge)
            .and_then(|(_, s)| s.iter().find(|(sc, _)| *sc == scenario))
            .map(|(_, r)| r)
    }

    /// A table for people, one row per judge and scenario.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{} runs per scenario, seed {}, canary {} req/s, stable {} req/s, horizon {} min\n",
            self.runs, self.seed, self.canary_rps, self.stable_rps, self.horizon_minutes
        );
        out.push_str(&format!(
            "{:<11} {:<14} {:>9} {:>9} {:>7} {:>10} {:>10} {:>8} {:>8}\n",
            "JUDGE",
            "SCENARIO",
            "FALSE-RB",
            "DETECTED",
            "PASSED",
            "MED-REQ",
            "P90-REQ",
            "MED-MIN",
            "P90-MIN"
        ));
        let count = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        let requests = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let minutes = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        for (judge, scenarios) in &self.judges {
            for (scenario, r) in scenarios {
                out.push_str(&format!(
                    "{:<11} {:<14} {:>9} {:>9} {:>7} {:>10} {:>10} {:>8} {:>8}\n",
                    judge.key(),
                    scenario.key(),
                    format!("{}/{}", r.false_rollbacks, r.runs),
                    count(r.detected),
                    count(r.passed),
                    requests(r.median_requests_to_detect),
                    requests(r.p90_requests_to_detect),
                    minutes(r.median_minutes_to_detect),
                    minutes(r.p90_minutes_to_detect),
                ));
            }
        }
        out
    }
}

/// What one run ended with, per judge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct RunOutcome {
    /// (canary requests, simulated seconds) at the rollback.
    rollback: Option<(u64, u64)>,
    passed: bool,
}

/// Runs every scenario `config.runs` times under both judges.
pub fn simulate(config: &SimulationConfig) -> Report {
    let results: Vec<(Scenario, Vec<[RunOutcome; 2]>)> = Scenario::ALL
        .iter()
        .enumerate()
        .map(|(index, scenario)| (*scenario, run_all(config, index as u64, *scenario)))
        .collect();
    let judges = [Judge::Threshold, Judge::Sequential]
        .iter()
        .enumerate()
        .map(|(slot, judge)| {
            let per_scenario = results
                .iter()
                .map(|(scenario, runs)| {
                    let outcomes: Vec<RunOutcome> = runs.iter().map(|r| r[slot]).collect();
                    (*scenario, summarize(*judge, *scenario, &outcomes))
                })
                .collect();
            (*judge, per_scenario)
        })
        .collect();
    Report {
        runs: config.runs,
        seed: config.seed,
        canary_rps: config.canary_rps,
        stable_rps: config.stable_rps,
        horizon_minutes: config.horizon_minutes,
        batch_seconds: BATCH_SECONDS,
        judges,
    }
}

/// All runs of one scenario, spread over the machine's cores; the results
/// do not depend on how many there are.
fn run_all(
    config: &SimulationConfig,
    scenario_index: u64,
    scenario: Scenario,
) -> Vec<[RunOutcome; 2]> {
    let stable = VersionTraffic::new(config.stable_rps, &LatencyModel::baseline());
    let canary = VersionTraffic::new(config.canary_rps, &scenario.canary_latency());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = config.runs.div_ceil(threads).max(1);
    let indices: Vec<usize> = (0..config.runs).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| {
                let (stable, canary) = (&stable, &canary);
                scope.spawn(move || {
                    part.iter()
                        .map(|run| {
                            let seed = traffic::mix(
                                config.seed ^ traffic::mix(scenario_index << 32 | *run as u64),
                            );
                            run_one(config, scenario, stable, canary, seed)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// One run: the same batches for both judges until both rolled back or the
/// horizon passed.
fn run_one(
    config: &SimulationConfig,
    scenario: Scenario,
    stable: &VersionTraffic,
    canary: &VersionTraffic,
    seed: u64,
) -> [RunOutcome; 2] {
    // Two streams: the canary's request and error counts, which both judges
    // read, and latencies plus stable's traffic, which only the sequential
    // judge reads, so that its settings cannot change the threshold judge's
    // traffic.
    let mut counts_rng = Rng::new(seed);
    let mut latency_rng = Rng::new(traffic::mix(seed ^ 0x5EED_1A7E_0C1E_5EED));
    let horizon = config.horizon_minutes * 60;
    let mut state = SequentialState::default();
    let mut threshold = RunOutcome::default();
    let mut sequential = RunOutcome::default();
    let mut interval = VersionWindow::default();
    let mut failed_checks = 0u32;
    let mut canary_requests = 0u64;
    let mut second = 0u64;
    while second < horizon && (threshold.rollback.is_none() || sequential.rollback.is_none()) {
        let error_rate = scenario.canary_error_rate(second);
        let (requests, errors) = canary.counts(&mut counts_rng, BATCH_SECONDS as f64, error_rate);
        if sequential.rollback.is_none() {
            let batch = Window {
                stable: stable.window(&mut latency_rng, BATCH_SECONDS as f64, BASELINE_ERROR_RATE),
                canary: VersionWindow {
                    requests,
                    errors,
                    latency: canary.latencies(&mut latency_rng, requests),
                    breaker_trips: 0,
                    mirror_compared: 0,
                    mirror_mismatches: 0,
                },
            };
            match state.observe(&config.sequential, &batch).verdict {
                SequentialVerdict::Fail => {
                    sequential.rollback = Some((canary_requests + requests, second + BATCH_SECONDS))
                }
                SequentialVerdict::Pass => sequential.passed = true,
                SequentialVerdict::Continue => {}
            }
        }
        canary_requests += requests;
        second += BATCH_SECONDS;
        interval.requests += requests;
        interval.errors += errors;
        if second % INTERVAL_SECONDS == 0 {
            let failed = interval
                .success_rate()
                .is_none_or(|rate| rate < THRESHOLD_SUCCESS_RATE);
            if failed {
                failed_checks += 1;
            }
            if threshold.rollback.is_none() && failed_checks >= THRESHOLD_FAILED_CHECKS {
                threshold.rollback = Some((canary_requests, second));
            }
            interval = VersionWindow::default();
        }
    }
    [threshold, sequential]
}

fn summarize(judge: Judge, scenario: Scenario, outcomes: &[RunOutcome]) -> ScenarioResult {
    let rollbacks = outcomes.iter().filter(|o| o.rollback.is_some()).count();
    let mut requests: Vec<u64> = outcomes
        .iter()
        .map(|o| o.rollback.map_or(u64::MAX, |(r, _)| r))
        .collect();
    let mut seconds: Vec<u64> = outcomes
        .iter()
        .map(|o| o.rollback.map_or(u64::MAX, |(_, s)| s))
        .collect();
    requests.sort_unstable();
    seconds.sort_unstable();
    let minutes = |q| quantile(&seconds, q).map(|s| s as f64 / 60.0);
    ScenarioResult {
        runs: outcomes.len(),
        false_rollbacks: if scenario == Scenario::Aa {
            rollbacks
        } else {
            0
        },
        detected: (scenario != Scenario::Aa).then_some(rollbacks),
        passed: (judge == Judge::Sequential).then(|| outcomes.iter().filter(|o| o.passed).count()),
        median_requests_to_detect: quantile(&requests, 0.5),
        p90_requests_to_detect: quantile(&requests, 0.9),
        median_minutes_to_detect: minutes(0.5),
        p90_minutes_to_detect: minutes(0.9),
    }
}

/// Nearest-rank quantile of sorted values; None when it is an undetected run.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1]).filter(|v| *v != u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(runs: usize) -> SimulationConfig {
        SimulationConfig {
            runs,
            ..SimulationConfig::default()
        }
    }

    #[test]
    fn is_deterministic_and_keyed() {
        let a = simulate(&small(4));
        let b = simulate(&small(4));
        assert_eq!(a, b);
        let json = serde_json::to_value(&a).unwrap();
        for judge in ["threshold", "sequential"] {
            for scenario in Scenario::ALL {
                let r = &json["judges"][judge][scenario.key()];
                assert!(r["false_rollbacks"].is_u64(), "{judge} {}", scenario.key());
                assert!(r.get("median_requests_to_detect").is_some());
            }
        }
        assert!(a.to_table().contains("p99_plus_50ms"));
    }

    #[test]
    fn quantiles_treat_undetected_as_infinite() {
        assert_eq!(quantile(&[1, 2, 3, u64::MAX], 0.5), Some(2));
        assert_eq!(quantile(&[1, 2, 3, u64::MAX], 0.9), None);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
