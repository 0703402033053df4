//! Admin roles through the real binary: tokens from the config (a secret
//! read from an environment variable), a tokens file and
//! `SLUICE_ADMIN_TOKENS`; reads, operations and configuration each need
//! their least role (401 without a token, 403 naming the role with too low a
//! one); a change records the token's name; no token ever reaches the logs
//! or the printed config.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const VIEWER: &str = "viewer-secret-4b1d";
const OPERATOR: &str = "operator-secret-77c2";
const ADMIN: &str = "admin-secret-90e5";
const BOT: &str = "bot-secret-d00d";

const PLAN: &str = "      interval: 1h\n      step_weights: [10, 50]\n";

#[tokio::test]
async fn each_role_may_do_what_it_needs_and_changes_carry_the_token_name() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokens"),
        format!("# the team\nwatcher viewer {VIEWER}\nlead admin {ADMIN}\n"),
    )
    .unwrap();
    let config = service_config(&v1.endpoint(), &v2.endpoint(), PLAN).replace(
        "admin:\n  address: 127.0.0.1:0\n",
        "admin:\n  address: 127.0.0.1:0\n  require_token_for_reads: true\n  tokens_file: tokens\n  tokens:\n    - {name: ci, role: operator, token: {env: CI_TOKEN}}\n",
    );
    std::fs::write(dir.path().join("sluice.yaml"), &config).unwrap();
    let bot_entry = format!("bot operator {BOT}");
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "-c", "sluice.yaml"],
        &[("CI_TOKEN", OPERATOR), ("SLUICE_ADMIN_TOKENS", &bot_entry)],
    );
    let client = client();
    let admin = sluice.admin;
    let bearer = |token: &str| format!("Bearer {token}");

    // Health, readiness and metrics stay open; reads need a token.
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&client, admin, open, &[]).await.0, 200, "{open}");
    }
    let (status, _, body) = get(&client, admin, "/api/v1/rollouts/web", &[]).await;
    assert_eq!(status, 401, "{body}");
    let viewer = bearer(VIEWER);
    let (status, _, body) = get(
        &client,
        admin,
        "/api/v1/rollouts/web",
        &[("authorization", &viewer)],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Operations need operator; a viewer is told which role is needed.
    let (status, problem) =
        admin_post(&client, admin, "/api/v1/rollouts/web/pause", Some(VIEWER)).await;
    assert_eq!(status, 403, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"watcher\" has the role viewer"),
        "{detail}"
    );
    assert!(detail.contains("needs the role operator"), "{detail}");
    let (status, _) = admin_post(&client, admin, "/api/v1/rollouts/web/pause", None).await;
    assert_eq!(status, 401);
    let (status, answer) =
        admin_post(&client, admin, "/api/v1/rollouts/web/pause", Some(OPERATOR)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["phase"], "Paused");
    let (status, answer) =
        admin_post(&client, admin, "/api/v1/rollouts/web/resume", Some(BOT)).await;
    assert_eq!(status, 200, "{answer}");

    // Replacing config needs admin.
    let (status, problem) =
        admin_post(&client, admin, "/api/v1/config/reload", Some(OPERATOR)).await;
    assert_eq!(status, 403, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("needs the role admin"));
    let (status, answer) = admin_post(&client, admin, "/api/v1/config/reload", Some(ADMIN)).await;
    assert_eq!(status, 200, "{answer}");

    // A flag change is recorded with the token's name.
    let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
    let operator = bearer(OPERATOR);
    let request = hyper::Request::put(format!("http://{admin}/api/v1/flags/checkout"))
        .header("authorization", &operator)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            flag.to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, _, changes) = get(
        &client,
        admin,
        "/api/v1/flags/changes",
        &[("authorization", &viewer)],
    )
    .await;
    let changes: Value = serde_json::from_str(&changes).unwrap();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["actor"] == "api (token ci)"),
        "{changes}"
    );

    // The session tells the dashboard the name and what the role may do.
    let (_, _, session) = get(
        &client,
        admin,
        "/api/v1/session",
        &[("authorization", &viewer)],
    )
    .await;
    let session: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(session["name"], "watcher");
    assert_eq!(session["role"], "viewer");
    assert_eq!(session["can_act"], false);

    // The CLI reads with a viewer token.
    let output = std::process::Command::new(binary())
        .args(["rollout", "status", "web"])
        .env("SLUICE_ADMIN", sluice.admin_url())
        .env("SLUICE_ADMIN_TOKEN", VIEWER)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // The audit log names each change's holder; no token is printed anywhere.
    let (_, _, printed) = get(
        &client,
        admin,
        "/api/v1/config",
        &[("authorization", &viewer)],
    )
    .await;
    let log = eventually(Duration::from_secs(20), "the audit lines", || async {
        let log = sluice.log_text();
        (log.contains("actor=ci") && log.contains("actor=lead") && log.contains("actor=bot"))
            .then_some(log)
    })
    .await;
    assert!(log.contains("admin call refused"), "{log}");
    for token in [VIEWER, OPERATOR, ADMIN, BOT] {
        assert!(!log.contains(token), "a token in the log:\n{log}");
        assert!(!printed.contains(token), "a token in the config: {printed}");
    }
    assert!(printed.contains("\"token\":\"<redacted>\""), "{printed}");
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_stops_the_start_naming_field_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = "listeners:\n  - address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n  tokens:\n    - {name: ci, role: operator, token: {env: SLUICE_TEST_NOT_SET}}\nservices:\n  - name: web\n    versions:\n      stable: { endpoints: [\"127.0.0.1:9\"] }\n";
    std::fs::write(dir.path().join("sluice.yaml"), config).unwrap();
    let output = std::process::Command::new(binary())
        .args(["config", "validate", "-c", "sluice.yaml"])
        .current_dir(dir.path())
        .env_remove("SLUICE_TEST_NOT_SET")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("admin.tokens[0].token"), "{text}");
    assert!(text.contains("SLUICE_TEST_NOT_SET is not set"), "{text}");
}
