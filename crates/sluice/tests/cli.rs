//! The binary's own contract: config validation output, refusing an
//! unprotected admin API, the token on mutating calls, and the operator CLI.

mod common;

use std::process::Command;

use common::*;

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
