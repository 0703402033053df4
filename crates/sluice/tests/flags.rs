//! The flag server through the real binary: `run --flags FILE` serving a
//! flagd file over OFREP (shapes, reasons, error codes and statuses, the
//! bulk ETag), file watching with a bad change refused, API changes stored
//! and recorded (who, before, after) and surviving a restart, the kill
//! switch, env overrides, the change stream, and the evaluation metric.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::post_json as post;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};

const FLAGS: &str = r#"{
  "flags": {
    "new-builder": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"fractional": [["on", 50], ["off", 50]]}
    },
    "banner": {
      "state": "ENABLED",
      "variants": {"plain": "welcome", "fancy": "WELCOME!"},
      "defaultVariant": "plain",
      "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "fancy", null]}
    },
    "limits": {
      "state": "ENABLED",
      "variants": {"small": {"rps": 10}, "large": {"rps": 1000}},
      "defaultVariant": "small"
    },
    "checkout-v2": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    },
    "retired": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on"
    }
  }
}"#;

async fn evaluate(
    client: &HttpClient,
    admin: SocketAddr,
    key: &str,
    context: Value,
) -> (u16, Value) {
    let (status, _, body) = post(
        client,
        admin,
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        json!({ "context": context }),
        &[],
    )
    .await;
    (status, body)
}

/// The variant flagd's `fractional` gives `key` for a 50/50 on/off split.
fn flagd_variant(flag: &str, targeting_key: &str) -> &'static str {
    let hash = sluice_flags::bucket::hash(flag.as_bytes(), targeting_key.as_bytes());
    let bucket = sluice_flags::bucket::bucket(hash, 100);
    match sluice_flags::bucket::pick(bucket, [50, 50]) {
        Some(0) => "on",
        _ => "off",
    }
}

fn start_flags(dir: &std::path::Path, env: &[(&str, &str)]) -> Sluice {
    std::fs::write(dir.join("flags.json"), FLAGS).unwrap();
    Sluice::start_with(
        dir,
        &["run", "--flags", "flags.json", "--admin", "127.0.0.1:0"],
        env,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagd_file_is_served_over_ofrep_like_flagd() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start_flags(dir.path(), &[]);
    let client = client();
    let admin = sluice.admin;

    let mut seen = std::collections::HashSet::new();
    for user in ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"] {
        let (status, body) =
            evaluate(&client, admin, "new-builder", json!({"targetingKey": user})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["reason"], "SPLIT");
        let variant = flagd_variant("new-builder", user);
        assert_eq!(body["variant"], variant, "{user}: {body}");
        assert_eq!(body["value"], variant == "on");
        assert_eq!(body["key"], "new-builder");
        seen.insert(variant);
    }
    assert_eq!(seen.len(), 2, "six users all landed on one side");

    let (_, fancy) = evaluate(
        &client,
        admin,
        "banner",
        json!({"targetingKey": "u", "email": "a@example.com"}),
    )
    .await;
    assert_eq!(
        (fancy["value"].clone(), fancy["reason"].clone()),
        (json!("WELCOME!"), json!("TARGETING_MATCH"))
    );
    let (_, plain) = evaluate(
        &client,
        admin,
        "banner",
        json!({"targetingKey": "u", "email": "a@other.org"}),
    )
    .await;
    assert_eq!(
        (plain["value"].clone(), plain["reason"].clone()),
        (json!("welcome"), json!("DEFAULT"))
    );
    let (_, object) = evaluate(&client, admin, "limits", json!({})).await;
    assert_eq!(
        (object["value"].clone(), object["reason"].clone()),
        (json!({"rps": 10}), json!("STATIC"))
    );

    let (status, disabled) = evaluate(&client, admin, "retired", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(disabled["reason"], "DISABLED");
    assert!(disabled.get("value").is_none(), "{disabled}");

    let (status, missing) = evaluate(&client, admin, "nope", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        missing,
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "no flag \"nope\""})
    );
    let (status, invalid) = evaluate(&client, admin, "banner", json!({"targetingKey": 7})).await;
    assert_eq!(status, 400);
    assert_eq!(invalid["errorCode"], "INVALID_CONTEXT");
    let (status, _, unparsable) = post(
        &client,
        admin,
        "/ofrep/v1/evaluate/flags/banner",
        json!("not an object"),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(unparsable["errorCode"], "INVALID_CONTEXT");

    // Bulk: every flag, an ETag, 304 for the same tag.
    let (status, headers, bulk) = post(
        &client,
        admin,
        "/ofrep/v1/evaluate/flags",
        json!({"context": {"targetingKey": "user-1"}}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bulk["flags"].as_array().unwrap().len(), 5);
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, _) = post(
        &client,
        admin,
        "/ofrep/v1/evaluate/flags",
        json!({"context": {"targetingKey": "user-1"}}),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, 304);

    // Counted per flag, variant and reason; promtool accepts the text.
    let metrics = try_metrics(&client, admin).await.unwrap();
    assert!(metrics.contains("sluice_flag_evaluations_total{flag=\"banner\",variant=\"fancy\",reason=\"TARGETING_MATCH\"} 1"), "{metrics}");
    assert!(
        !metrics.contains("flag=\"nope\""),
        "unknown keys are not counted one by one"
    );
    promtool_check_metrics(&metrics);

    // The CLI evaluates with -c attributes.
    let output = sluice.cli(&[
        "flags",
        "eval",
        "banner",
        "-c",
        "targetingKey=u",
        "-c",
        "email=b@example.com",
    ]);
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(
        line.contains("\"WELCOME!\"") && line.contains("TARGETING_MATCH"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_apply_live_and_a_bad_one_keeps_the_old_flags() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start_flags(dir.path(), &[]);
    let client = client();
    let admin = sluice.admin;
    let path = dir.path().join("flags.json");

    let changed = FLAGS.replace(
        r#""defaultVariant": "small""#,
        r#""defaultVariant": "large""#,
    );
    std::fs::write(&path, changed).unwrap();
    eventually(
        Duration::from_secs(10),
        "the file change to apply",
        || async {
            let (_, body) = evaluate(&client, admin, "limits", json!({})).await;
            (body["value"] == json!({"rps": 1000})).then_some(())
        },
    )
    .await;

    std::fs::write(
        &path,
        FLAGS.replace(
            r#""defaultVariant": "plain""#,
            r#""defaultVariant": "gold""#,
        ),
    )
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "the bad change to be refused",
        || async {
            let metrics = try_metrics(&client, admin).await?;
            metrics
                .contains("sluice_flag_file_reloads_total{result=\"failure\"} 1")
                .then_some(())
        },
    )
    .await;
    let (_, body) = evaluate(&client, admin, "limits", json!({})).await;
    assert_eq!(
        body["value"],
        json!({"rps": 1000}),
        "the previous flags keep serving"
    );
    assert!(
        sluice.log_text().contains("gold"),
        "the refusal names the value"
    );

    let history = admin_json(&client, admin, "/api/v1/flags/changes?key=limits").await;
    assert_eq!(history[0]["actor"], format!("file {}", "flags.json"));
    assert_eq!(history[0]["before"]["defaultVariant"], "small");
    assert_eq!(history[0]["after"]["defaultVariant"], "large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_are_validated_recorded_streamed_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sluice = start_flags(dir.path(), &[]);
    let client = client();
    let admin = sluice.admin;

    // The change stream, opened before the changes.
    let stream = client
        .request(
            Request::get(format!("http://{admin}/api/v1/flags/events"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut stream = stream.into_body();

    let output = sluice.cli(&["flags", "set", "checkout-v2", "--percentage", "100"]);
    assert!(output.status.success(), "{output:?}");
    for user in ["a", "b", "c"] {
        let (_, body) =
            evaluate(&client, admin, "checkout-v2", json!({"targetingKey": user})).await;
        assert_eq!(
            (body["value"].clone(), body["reason"].clone()),
            (json!(true), json!("SPLIT")),
            "{body}"
        );
    }
    let output = sluice.cli(&["flags", "kill", "banner"]);
    assert!(output.status.success(), "{output:?}");
    let (_, killed) = evaluate(&client, admin, "banner", json!({})).await;
    assert_eq!(killed["reason"], "DISABLED");

    // A bad definition is refused with its path; the old one keeps serving.
    let request = Request::put(format!("http://{admin}/api/v1/flags/limits"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        problem["errors"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("flags.limits"),
        "{problem}"
    );
    let (_, limits) = evaluate(&client, admin, "limits", json!({})).await;
    assert_eq!(limits["value"], json!({"rps": 10}));

    // The stream saw both changes, in order.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(text.contains("\"action\":\"kill\"")) {
        let frame = tokio::time::timeout_at(deadline, stream.frame())
            .await
            .expect("no event")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let percentage = text.find("\"action\":\"percentage\"").expect(&text);
    assert!(
        percentage < text.find("\"action\":\"kill\"").unwrap(),
        "{text}"
    );
    assert!(text.contains("event: flag-change"), "{text}");

    // Who, before, after.
    let history = admin_json(&client, admin, "/api/v1/flags/changes?key=checkout-v2").await;
    let change = &history[0];
    assert_eq!(change["action"], "percentage");
    assert!(
        change["actor"].as_str().unwrap().starts_with("api"),
        "{change}"
    );
    assert!(change["before"].get("percentage").is_none());
    assert_eq!(change["after"]["percentage"], 100.0);
    let table = String::from_utf8_lossy(&sluice.cli(&["flags", "history"]).stdout).to_string();
    assert!(table.contains("percentage: - → 100.0"), "{table}");

    // Stored before it took effect: a restart serves the same.
    drop(sluice);
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "--flags", "flags.json", "--admin", "127.0.0.1:0"],
        &[],
    );
    let (_, body) = evaluate(
        &client,
        sluice.admin,
        "checkout-v2",
        json!({"targetingKey": "zz"}),
    )
    .await;
    assert_eq!(body["value"], true);
    let (_, body) = evaluate(&client, sluice.admin, "banner", json!({})).await;
    assert_eq!(body["reason"], "DISABLED");
    let list = String::from_utf8_lossy(&sluice.cli(&["flags", "list"]).stdout).to_string();
    assert!(list.contains("KILLED") && list.contains("100%"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_variables_override_the_config_and_tokens_guard_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        r#"admin: { address: 127.0.0.1:0 }
store: sluice.db
flags:
  read_tokens: [reader-token-1]
  definitions:
    segments: { canary-tenants: [acme] }
    flags:
      main-builder:
        state: DISABLED
        variants: { on: true, off: false }
        defaultVariant: off
        percentage: 0
        bucket_by: tenant
        env: { enabled: ENABLE_MAIN_BUILDER, percentage: MAIN_BUILDER_PERCENTAGE }
      canary-only:
        state: ENABLED
        variants: { on: true, off: false }
        defaultVariant: off
        targeting: { if: [ { in: [ { var: tenant }, { segment: canary-tenants } ] }, "on", null ] }
"#,
    )
    .unwrap();
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "-c", "sluice.yaml"],
        &[
            ("ENABLE_MAIN_BUILDER", "true"),
            ("MAIN_BUILDER_PERCENTAGE", "100"),
        ],
    );
    let client = client();
    let admin = sluice.admin;
    let path = "/ofrep/v1/evaluate/flags/main-builder";
    let body = json!({"context": {"tenant": "globex"}});
    let (status, _, _) = post(&client, admin, path, body.clone(), &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(
        &client,
        admin,
        path,
        body.clone(),
        &[("x-api-key", "wrong-token")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, answer) = post(
        &client,
        admin,
        path,
        body,
        &[("authorization", "Bearer reader-token-1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (answer["value"].clone(), answer["reason"].clone()),
        (json!(true), json!("SPLIT"))
    );

    let auth = [("x-api-key", "reader-token-1")];
    let (_, _, acme) = post(
        &client,
        admin,
        "/ofrep/v1/evaluate/flags/canary-only",
        json!({"context": {"tenant": "acme"}}),
        &auth,
    )
    .await;
    assert_eq!(acme["value"], true);
    let (_, _, other) = post(
        &client,
        admin,
        "/ofrep/v1/evaluate/flags/canary-only",
        json!({"context": {"tenant": "globex"}}),
        &auth,
    )
    .await;
    assert_eq!(other["value"], false);
}
