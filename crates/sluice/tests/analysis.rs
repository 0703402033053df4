//! `sluice analysis simulate`: the decision-quality benchmark of the
//! judges, through the binary, held to the goals it exists to prove.

mod common;

use std::process::Command;

use common::binary;
use serde_json::Value;

const SCENARIOS: [&str; 6] = [
    "aa",
    "err_2x",
    "err_10x",
    "latency_20pct",
    "p99_plus_50ms",
    "burst",
];

#[test]
fn the_sequential_judge_is_faster_than_the_threshold_judge_without_more_false_rollbacks() {
    let output = Command::new(binary())
        .args([
            "analysis", "simulate", "--runs", "200", "--seed", "1", "-o", "json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let judges = &report["judges"];
    for judge in ["threshold", "sequential"] {
        for scenario in SCENARIOS {
            let row = &judges[judge][scenario];
            assert_eq!(row["runs"], 200, "{judge}/{scenario}: {row}");
            for field in [
                "false_rollbacks",
                "median_requests_to_detect",
                "p90_requests_to_detect",
            ] {
                assert!(
                    row.get(field).is_some(),
                    "{judge}/{scenario} lacks {field}: {row}"
                );
            }
        }
    }
    // A/A: false rollbacks at or under alpha = 0.01, with sampling tolerance (binomial, 200 runs).
    let false_rollbacks = judges["sequential"]["aa"]["false_rollbacks"]
        .as_u64()
        .unwrap();
    assert!(
        false_rollbacks <= 6,
        "{false_rollbacks} of 200 A/A runs rolled back"
    );
    // A 2x error regression in at most a third of the threshold judge's traffic.
    let sequential = judges["sequential"]["err_2x"]["median_requests_to_detect"]
        .as_f64()
        .unwrap();
    let threshold = judges["threshold"]["err_2x"]["median_requests_to_detect"]
        .as_f64()
        .unwrap();
    assert!(
        sequential * 3.0 <= threshold,
        "sequential {sequential} vs threshold {threshold} requests"
    );
    // The same seed gives the same numbers.
    let again = Command::new(binary())
        .args([
            "analysis", "simulate", "--runs", "200", "--seed", "1", "-o", "json",
        ])
        .output()
        .unwrap();
    assert_eq!(again.stdout, output.stdout);
}
