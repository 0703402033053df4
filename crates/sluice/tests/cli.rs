//! The binary's own contract: config validation output, refusing an
//! unprotected admin API, the token on mutating calls, the operator CLI
//! (`-o json|yaml`, plain tables in a pipe, `--watch`) and JSON logs.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `sluice config validate -c PATH`.
fn validate(path: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(["config", "validate", "-c"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn config_validate_prints_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = service_config(
        "127.0.0.1:8001",
        "nowhere",
        "      step_weights: [5, 120]\n      threshold: 0\n",
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let output = validate(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("services[0].rollout.step_weights[1]: weight 120 is above 100"),
        "{stderr}"
    );
    assert!(stderr.contains("services[0].rollout.threshold"), "{stderr}");
    assert!(
        stderr.contains("services[0].versions.canary.endpoints[0]"),
        "{stderr}"
    );

    let unknown = service_config(
        "127.0.0.1:8001",
        "127.0.0.1:8002",
        "      step_weights: [5]\n      wieght: 3\n",
    );
    std::fs::write(&path, unknown).unwrap();
    let output = validate(&path);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("services[0].rollout.wieght") && stderr.contains("unknown field"),
        "{stderr}"
    );

    let good = service_config(
        "127.0.0.1:8001",
        "127.0.0.1:8002",
        "      step_weights: [5, 50]\n",
    );
    std::fs::write(&path, good).unwrap();
    let output = validate(&path);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_examples_validate() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            // flagd flag files: they load unchanged.
            seen += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = sluice_flags::FlagSet::from_flagd_json(&text) {
                panic!("{}: {:?}", path.display(), e.errors());
            }
        }
        if path.extension().is_some_and(|e| e == "yaml") {
            seen += 1;
            let output = validate(&path);
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert!(seen > 0, "no examples found in {examples}");
}

#[test]
fn an_admin_api_on_a_public_address_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = service_config(
        "127.0.0.1:8001",
        "127.0.0.1:8002",
        "      step_weights: [5]\n",
    )
    .replace(
        "admin:\n  address: 127.0.0.1:0",
        "admin:\n  address: 0.0.0.0:0",
    );
    std::fs::write(dir.path().join("sluice.yaml"), config).unwrap();
    let output = Command::new(binary())
        .args(["run", "-c", "sluice.yaml"])
        .current_dir(dir.path())
        .env_remove("SLUICE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without a token") && stderr.contains("SLUICE_ADMIN_TOKEN"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_need_the_token_and_the_cli_drives_a_rollout() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let config = service_config(
        &v1.endpoint(),
        &v2.endpoint(),
        "      interval: 1h\n      step_weights: [10, 50]\n",
    )
    .replace(
        "admin:\n  address: 127.0.0.1:0",
        "admin:\n  address: 127.0.0.1:0\n  token: s3cret",
    );
    let sluice = Sluice::start(dir.path(), &config);
    let client = client();

    let (status, problem) =
        admin_post(&client, sluice.admin, "/api/v1/rollouts/web/pause", None).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("Bearer"),
        "{problem}"
    );
    let (status, _) = admin_post(
        &client,
        sluice.admin,
        "/api/v1/rollouts/web/pause",
        Some("wrong"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        phase(&client, sluice.admin).await,
        "Progressing",
        "a refused call changed nothing"
    );

    // Reads need no token.
    let out = sluice.cli(&["rollout", "status", "web", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (status["phase"].as_str(), status["weight"].as_f64()),
        (Some("Progressing"), Some(10.0))
    );

    let out = sluice.cli(&["rollout", "pause", "web"]);
    assert!(!out.status.success(), "pause without a token must fail");
    let with_token = |args: &[&str]| {
        Command::new(binary())
            .args(args)
            .env("SLUICE_ADMIN", sluice.admin_url())
            .env("SLUICE_ADMIN_TOKEN", "s3cret")
            .output()
            .unwrap()
    };
    for (action, want) in [
        ("pause", "Paused"),
        ("resume", "Progressing"),
        ("abort", "RolledBack"),
    ] {
        let out = with_token(&["rollout", action, "web"]);
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(phase(&client, sluice.admin).await, want, "after {action}");
    }
    let out = with_token(&["rollout", "abort", "web"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already ended"));

    // A new rollout by hand, then promote skips the remaining steps.
    let out = with_token(&["rollout", "start", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_token(&["rollout", "promote", "web", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["rollout_id"], 2);
    for _ in 0..50 {
        assert_eq!(get(&client, sluice.proxy, "/", &[]).await.1, "v2");
    }

    let out = sluice.cli(&["rollout", "history", "web"]);
    let table = String::from_utf8_lossy(&out.stdout);
    for word in [
        "Started",
        "Paused",
        "Resumed",
        "Aborted",
        "Promoted",
        "promoted by operator",
    ] {
        assert!(table.contains(word), "history lacks {word}:\n{table}");
    }
    let unknown = sluice.cli(&["rollout", "status", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no service named \"nope\""));
}

const QUICK_PLAN: &str = "      interval: 300ms
      threshold: 2
      step_weights: [20, 50]
      min_requests: 5
      checks:
        - metric: success_rate
          min: 95
        - metric: latency
          percentile: 99
          max: 500ms
";

/// Each value of a stream of JSON documents (as `--watch -o json` prints).
fn json_documents(bytes: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn success(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_hold_one_line_per_decision_with_its_numbers() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        service_config(&v1.endpoint(), &v2.endpoint(), QUICK_PLAN),
    )
    .unwrap();
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "-c", config.to_str().unwrap()],
        &[("SLUICE_LOG_FORMAT", "json")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let _load = spawn_load(sluice.proxy, 2, Duration::from_millis(5), stop.clone());
    let client = client();
    eventually(
        Duration::from_secs(60),
        "the rollout to succeed",
        || async { (phase(&client, sluice.admin).await == "Succeeded").then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    eventually(
        Duration::from_secs(5),
        "the promotion's log line",
        || async {
            sluice
                .log_text()
                .contains(r#""kind":"promoted""#)
                .then_some(())
        },
    )
    .await;

    let log = sluice.log_text();
    // Every line is a JSON object, the listener announcements too.
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .unwrap()
        .starts_with("sluice: admin API on http://")));
    let decisions: Vec<&Value> = lines.iter().filter(|l| l["kind"].is_string()).collect();
    let kinds: Vec<&str> = decisions
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"started"), "{log}");
    assert_eq!(kinds.last(), Some(&"promoted"), "{log}");
    let stored = admin_json(&client, sluice.admin, "/api/v1/rollouts/web/history").await;
    assert_eq!(
        decisions.len(),
        stored.as_array().unwrap().len(),
        "one line per stored decision:\n{log}"
    );
    for line in &decisions {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "web");
        assert_eq!(line["rollout"], 1);
        for field in ["from", "to", "weight", "step", "message"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
    }
    let analysed: Vec<&&Value> = decisions
        .iter()
        .filter(|d| d["verdict"].is_string())
        .collect();
    assert!(!analysed.is_empty(), "no analysis line in\n{log}");
    let run = analysed
        .iter()
        .find(|d| d["verdict"] == "pass")
        .unwrap_or_else(|| panic!("no passing run in\n{log}"));
    assert!(run["canary_requests"].as_u64().unwrap() >= 5, "{run}");
    assert!(run["stable_requests"].as_u64().unwrap() > 0, "{run}");
    assert!(
        run["canary_success_rate"].as_f64().unwrap() >= 95.0,
        "{run}"
    );
    assert!(run["canary_p99_ms"].as_f64().is_some(), "{run}");
    let checks = run["checks"].as_str().unwrap();
    assert!(
        checks.contains("success_rate=") && checks.contains("bound=95% pass"),
        "{checks}"
    );
    assert!(checks.contains("latency_p99="), "{checks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_json_yaml_and_plain_tables_in_a_pipe() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(
        dir.path(),
        &service_config(
            &v1.endpoint(),
            &v2.endpoint(),
            "      interval: 1h\n      step_weights: [10, 50]\n",
        ),
    );

    let yaml: Value = serde_yaml_ng::from_str(&success(
        &sluice.cli(&["rollout", "status", "web", "-o", "yaml"]),
        "status",
    ))
    .unwrap();
    assert_eq!(yaml["phase"], "Progressing");
    assert_eq!(yaml["weight"], 10.0);
    let history: Value = serde_yaml_ng::from_str(&success(
        &sluice.cli(&["rollout", "history", "web", "-o", "yaml"]),
        "history",
    ))
    .unwrap();
    assert_eq!(history["decisions"][0]["kind"], "started");
    for args in [
        &["breakers", "list", "-o", "yaml"][..],
        &["breakers", "transitions", "-o", "yaml"],
        &["breakers", "policies", "-o", "yaml"],
        &["flags", "list", "-o", "yaml"],
        &["flags", "history", "-o", "yaml"],
    ] {
        let text = success(&sluice.cli(args), &args.join(" "));
        let _: Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"));
        let json = success(&sluice.cli(&[&args[..2], &["-o", "json"]].concat()), "json");
        let _: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }

    // Tables in a pipe: aligned, and not one escape sequence (NO_COLOR unset).
    for args in [
        &["rollout", "status"][..],
        &["rollout", "history", "web"],
        &["breakers", "list"],
        &["flags", "list"],
    ] {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env("SLUICE_ADMIN", sluice.admin_url())
            .env_remove("NO_COLOR");
        let table = success(&command.output().unwrap(), &args.join(" "));
        assert!(
            !table.contains('\x1b'),
            "{args:?} printed escapes:\n{table}"
        );
    }
    let status = success(&sluice.cli(&["rollout", "status"]), "status");
    let header = status.lines().next().unwrap();
    let row = status.lines().nth(1).unwrap();
    assert_eq!(
        header.find("WEIGHT"),
        row.find("10%"),
        "columns align:\n{status}"
    );

    // --watch prints again every interval; a pipe gets one JSON document each time.
    let mut watch = Command::new(binary())
        .args([
            "rollout",
            "status",
            "web",
            "--watch",
            "--interval",
            "200ms",
            "-o",
            "json",
        ])
        .env("SLUICE_ADMIN", sluice.admin_url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let documents = json_documents(&out.stdout);
    assert!(documents.len() >= 3, "{} documents", documents.len());
    assert!(documents.iter().all(|d| d["service"] == "web"));
    assert!(!out.stdout.contains(&0x1b), "no screen clearing in a pipe");

    // --wait: the answer on stdout, then the progress bar on stderr until the end.
    let out = sluice.cli(&["rollout", "promote", "web", "--wait"]);
    let answer = success(&out, "promote --wait");
    assert!(
        answer.starts_with("web: promote; rollout 1 is Succeeded"),
        "{answer}"
    );
    let progress = String::from_utf8(out.stderr).unwrap();
    assert!(
        progress.contains("Succeeded") && progress.contains("[░░░░"),
        "{progress}"
    );
    assert!(
        !progress.contains('\x1b'),
        "no redrawing in a pipe: {progress:?}"
    );
}

#[test]
fn config_validate_answers_in_json_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        service_config("127.0.0.1:1", "127.0.0.1:2", "      step_weights: [10]\n"),
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "proxy:\n  latency_buckets: [0.5, 0.1]\nstore: ''\n").unwrap();
    let run = |path: &std::path::Path, format: &str| {
        Command::new(binary())
            .args([
                "config",
                "validate",
                "-c",
                path.to_str().unwrap(),
                "-o",
                format,
            ])
            .output()
            .unwrap()
    };
    let out = run(&good, "json");
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["valid"].as_bool(), report["services"].as_u64()),
        (Some(true), Some(1))
    );

    let out = run(&bad, "yaml");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["store", "proxy.latency_buckets[1]"], "{report}");
}
