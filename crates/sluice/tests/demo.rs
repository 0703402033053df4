//! `sluice demo`, the first command a new user runs: a healthy v2 is
//! promoted, a failing v2 is rolled back with the failing check named, and
//! `--output json` prints one JSON object with the final status.

mod common;

use std::process::Command;

use common::binary;
use serde_json::Value;

fn demo(extra: &[&str]) -> Value {
    let output = Command::new(binary())
        .args([
            "demo",
            "--exit-when-done",
            "--output",
            "json",
            "--interval",
            "700ms",
        ])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(stderr.contains("admin http://127.0.0.1:"), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object on stdout: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn the_demo_promotes_a_healthy_canary() {
    let status = demo(&[]);
    assert_eq!(status["service"], "demo");
    assert_eq!(status["phase"], "Succeeded", "{status:#}");
    assert_eq!(status["weight"], 0.0);
    assert_eq!(status["steps_taken"], 4);
    let decisions = status["decisions"].as_array().unwrap();
    assert_eq!(decisions.first().unwrap()["kind"], "started");
    assert_eq!(decisions.last().unwrap()["kind"], "promoted");
    assert!(decisions
        .iter()
        .all(|d| !d["reason"].as_str().unwrap().is_empty()));
}

#[test]
fn the_demo_rolls_back_a_failing_canary_and_names_the_check() {
    let status = demo(&["--canary-error-rate", "0.3"]);
    assert_eq!(status["phase"], "RolledBack", "{status:#}");
    assert_eq!(status["weight"], 0.0);
    let last = status["decisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "rolled_back");
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("success_rate") && reason.contains("is below the minimum 99%"),
        "{reason}"
    );
}

#[test]
fn demo_flags_are_checked() {
    let output = Command::new(binary())
        .args(["demo", "--canary-error-rate", "1.5"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("1.5 is not a rate between 0 and 1"));
}
