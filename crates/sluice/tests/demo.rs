//! `sluice demo`, the first command a new user runs: a healthy v2 is
//! promoted, a failing v2 is rolled back with the failing check named, and
//! `--output json` prints one JSON object with the final status, and
//! `/metrics` scraped mid-demo passes `promtool check metrics` untouched.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, promtool_check_metrics};
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

/// `GET /metrics` over plain HTTP/1.0 (the connection closes after the answer).
fn scrape(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: sluice\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

#[test]
fn a_metrics_scrape_during_the_demo_passes_promtool_with_no_warning() {
    let mut demo = Command::new(binary())
        .args(["demo", "--interval", "500ms"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = demo.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let admin: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo prints its admin address");
        if let Some((_, rest)) = line.split_once("admin http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Mid-rollout: both versions served and at least one analysis run counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(admin);
        let analysed = text
            .lines()
            .any(|l| l.starts_with("sluice_analysis_runs_total") && !l.ends_with(" 0"));
        if analysed && text.contains("version=\"canary\"") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no analysis run after 30s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill").arg(demo.id().to_string()).status();
    let _ = demo.wait();
    assert!(
        text.contains("sluice_request_duration_seconds_bucket{"),
        "{text}"
    );
    promtool_check_metrics(&text);
}
