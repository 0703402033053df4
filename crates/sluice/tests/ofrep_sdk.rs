//! Interop with a real OpenFeature SDK: the Python SDK (`openfeature-sdk`)
//! with its OFREP provider (`openfeature-provider-ofrep`) evaluates the
//! flags of a flagd flag file served by the real binary (`run --flags FILE`).
//! Every value, reason, variant and error code asserted here is what the
//! SDK reports, so this proves what an application using the SDK sees, not
//! only what the wire carries.
//!
//! The interpreter is `SLUICE_TEST_PYTHON`, else `target/py-ofrep/bin/python`;
//! `scripts/test.sh` creates that virtualenv. A missing interpreter fails
//! the test, it never skips it.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Sluice;
use serde_json::{json, Value};

/// How long the SDK may take for all the cases (each request has its own 10 s timeout).
const SDK_WITHIN: Duration = Duration::from_secs(90);

/// The flag file: one flag per behaviour the SDK must see.
const FLAGS: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "dark-mode": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on"
    },
    "welcome-text": {
      "state": "ENABLED",
      "variants": {"formal": "Good day", "casual": "Hi"},
      "defaultVariant": "casual"
    },
    "discount-rate": {
      "state": "ENABLED",
      "variants": {"low": 0.15, "high": 0.3},
      "defaultVariant": "low"
    },
    "max-items": {
      "state": "ENABLED",
      "variants": {"few": 5, "standard": 25},
      "defaultVariant": "standard"
    },
    "layout": {
      "state": "ENABLED",
      "variants": {
        "grid": {"columns": 3, "theme": "dark", "tags": ["new", "wide"]},
        "list": {"columns": 1, "theme": "light", "tags": []}
      },
      "defaultVariant": "grid"
    },
    "pro-banner": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", null]}
    },
    "eu-theme": {
      "state": "ENABLED",
      "variants": {"eu": "eu-blue", "world": "classic"},
      "defaultVariant": "world",
      "targeting": {"if": [{"in": [{"var": "country"}, ["de", "fr", "nl"]]}, "eu", null]}
    },
    "checkout-split": {
      "state": "ENABLED",
      "variants": {"blue": "blue-checkout", "green": "green-checkout"},
      "defaultVariant": "blue",
      "targeting": {"fractional": [["blue", 50], ["green", 50]]}
    },
    "legacy-export": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    }
  }
}"#;

/// flagd's `fractional` for `checkout-split` (50/50), computed independently
/// of sluice: MurmurHash3 x86_32 (Python's `mmh3`, seed 0, unsigned) of
/// `"checkout-split" + targetingKey`, bucket `(h * 100) >> 32`, blue below 50.
const SPLIT: [(&str, u32, &str); 6] = [
    ("user-1", 2_803_843_096, "green"),
    ("user-2", 712_565_947, "blue"),
    ("user-3", 555_655_173, "blue"),
    ("user-4", 3_369_198_057, "green"),
    ("user-5", 4_143_586_431, "green"),
    ("user-6", 2_518_171_912, "green"),
];

/// One evaluation through the SDK and what it must report.
struct Case {
    id: String,
    flag: &'static str,
    kind: &'static str,
    default: Value,
    context: Value,
    value: Value,
    reason: &'static str,
    /// `None`: not asserted (a disabled flag has no variant to speak of).
    variant: Option<Value>,
    error_code: Value,
    /// A known defect of the pinned provider, by the `error_message` it
    /// causes: an answer with the right value, reason ERROR, error GENERAL and
    /// this message passes too (with a note), so that the provider's fix is
    /// picked up and any other failure still fails.
    provider_defect: Option<&'static str>,
}

impl Case {
    fn or_provider_defect(mut self, error_message: &'static str) -> Case {
        self.provider_defect = Some(error_message);
        self
    }

    /// Whether `answer` is the provider's known defect, not sluice's fault.
    fn is_provider_defect(&self, answer: &Value) -> bool {
        self.provider_defect.is_some_and(|message| {
            answer["value"] == self.value
                && answer["reason"] == "ERROR"
                && answer["error_code"] == "GENERAL"
                && answer["error_message"] == message
        })
    }
}

fn ok(
    id: &str,
    flag: &'static str,
    kind: &'static str,
    (default, context): (Value, Value),
    (value, reason, variant): (Value, &'static str, &str),
) -> Case {
    Case {
        id: id.to_string(),
        flag,
        kind,
        default,
        context,
        value,
        reason,
        variant: Some(json!(variant)),
        error_code: Value::Null,
        provider_defect: None,
    }
}

/// A case the SDK must answer with the caller's default, `reason` and `error_code`.
fn fallback(
    id: &str,
    flag: &'static str,
    kind: &'static str,
    default: Value,
    reason: &'static str,
    error_code: Value,
) -> Case {
    Case {
        id: id.to_string(),
        flag,
        kind,
        value: default.clone(),
        default,
        context: json!({"targetingKey": "user-1"}),
        reason,
        variant: if error_code.is_null() {
            None
        } else {
            Some(Value::Null)
        },
        error_code,
        provider_defect: None,
    }
}

fn cases() -> Vec<Case> {
    let user = || json!({"targetingKey": "user-1"});
    let mut cases = vec![
        ok(
            "boolean",
            "dark-mode",
            "boolean",
            (json!(false), user()),
            (json!(true), "STATIC", "on"),
        ),
        ok(
            "string",
            "welcome-text",
            "string",
            (json!("?"), user()),
            (json!("Hi"), "STATIC", "casual"),
        ),
        ok(
            "number",
            "discount-rate",
            "number",
            (json!(0.0), user()),
            (json!(0.15), "STATIC", "low"),
        ),
        ok(
            "integer",
            "max-items",
            "integer",
            (json!(1), user()),
            (json!(25), "STATIC", "standard"),
        ),
        ok(
            "object",
            "layout",
            "object",
            (json!({}), user()),
            (
                json!({"columns": 3, "theme": "dark", "tags": ["new", "wide"]}),
                "STATIC",
                "grid",
            ),
        ),
        ok(
            "ends_with matches",
            "pro-banner",
            "boolean",
            (
                json!(false),
                json!({"targetingKey": "user-1", "email": "ana@example.com"}),
            ),
            (json!(true), "TARGETING_MATCH", "on"),
        ),
        // The caller's default (true) differs from the flag's, so the value is the server's.
        ok(
            "ends_with does not match",
            "pro-banner",
            "boolean",
            (
                json!(true),
                json!({"targetingKey": "user-2", "email": "bo@example.org"}),
            ),
            (json!(false), "DEFAULT", "off"),
        ),
        ok(
            "in matches",
            "eu-theme",
            "string",
            (
                json!("?"),
                json!({"targetingKey": "user-3", "country": "fr"}),
            ),
            (json!("eu-blue"), "TARGETING_MATCH", "eu"),
        ),
        ok(
            "in does not match",
            "eu-theme",
            "string",
            (
                json!("?"),
                json!({"targetingKey": "user-4", "country": "us"}),
            ),
            (json!("classic"), "DEFAULT", "world"),
        ),
        fallback(
            "missing flag",
            "no-such-flag",
            "string",
            json!("fallback"),
            "ERROR",
            json!("FLAG_NOT_FOUND"),
        ),
        // sluice answers `{key, reason: DISABLED, metadata}` with no `value`
        // (tests/flags.rs checks the wire), so the SDK serves the caller's
        // default. OFREP makes `variant` optional, but the Python provider
        // (0.2.0 and 0.3.0) reads `data["variant"]` on every success, so
        // the KeyError makes the SDK report GENERAL 'variant' — still with
        // the caller's default, which is what the application gets.
        fallback(
            "disabled flag",
            "legacy-export",
            "boolean",
            json!(true),
            "DISABLED",
            Value::Null,
        )
        .or_provider_defect("'variant'"),
        // The flag is a string; the SDK, not the server, sees it is no boolean.
        fallback(
            "string as boolean",
            "welcome-text",
            "boolean",
            json!(false),
            "ERROR",
            json!("TYPE_MISMATCH"),
        ),
    ];
    for (key, _, variant) in SPLIT {
        let value = if variant == "blue" {
            "blue-checkout"
        } else {
            "green-checkout"
        };
        cases.push(ok(
            &format!("split {key}"),
            "checkout-split",
            "string",
            (json!("?"), json!({"targetingKey": key})),
            (json!(value), "SPLIT", variant),
        ));
    }
    cases
}

#[test]
fn the_expected_split_is_flagds_bucketing() {
    use sluice_flags::bucket::{bucket, hash, pick};
    for (key, independent_hash, variant) in SPLIT {
        let h = hash(b"checkout-split", key.as_bytes());
        assert_eq!(h, independent_hash, "MurmurHash3 of checkout-split{key}");
        let index = pick(bucket(h, 100), [50, 50]).unwrap();
        assert_eq!(["blue", "green"][index], variant, "bucket of {key}");
    }
    let variants: Vec<_> = SPLIT.iter().map(|(_, _, variant)| *variant).collect();
    assert!(variants.contains(&"blue") && variants.contains(&"green"));
}

#[test]
fn the_openfeature_python_sdk_evaluates_sluice_flags_over_ofrep() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let flags = flags.to_str().expect("a UTF-8 temp path");
    let sluice = Sluice::start_with(
        dir.path(),
        &["run", "--flags", flags, "--admin", "127.0.0.1:0"],
        &[],
    );

    let cases = cases();
    let (answers, sdk_log) = run_sdk(&python, dir.path(), &sluice.admin_url(), &cases);

    let mut wrong = Vec::new();
    for case in &cases {
        let Some(answer) = answers.get(&case.id) else {
            wrong.push(format!("{}: no answer from the SDK", case.id));
            continue;
        };
        if case.is_provider_defect(answer) {
            eprintln!(
                "note: {}: the provider's known defect, not sluice's: {answer}",
                case.id
            );
            continue;
        }
        let mut check = |field: &str, expected: &Value| {
            if &answer[field] != expected {
                wrong.push(format!(
                    "{} ({} as {}): {field} is {}, expected {expected}; SDK said {answer}",
                    case.id, case.flag, case.kind, answer[field]
                ));
            }
        };
        check("value", &case.value);
        check("reason", &json!(case.reason));
        if let Some(variant) = &case.variant {
            check("variant", variant);
        }
        check("error_code", &case.error_code);
    }
    assert!(
        wrong.is_empty(),
        "the SDK saw {} wrong evaluation(s):\n{}\n\nthe SDK's log:\n{sdk_log}\n\nsluice's log:\n{}",
        wrong.len(),
        wrong.join("\n"),
        sluice.log_text()
    );
}

/// The Python with the OpenFeature packages: `SLUICE_TEST_PYTHON` (relative
/// to the workspace) or the virtualenv `scripts/test.sh` makes.
fn python() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (python, from) = match std::env::var_os("SLUICE_TEST_PYTHON") {
        Some(path) if !path.is_empty() => (workspace.join(path), "SLUICE_TEST_PYTHON"),
        _ => (
            workspace.join("target/py-ofrep/bin/python"),
            "the default target/py-ofrep",
        ),
    };
    assert!(
        python.exists(),
        "no Python for the OpenFeature SDK at {} ({from}): run scripts/test.sh, which \
         creates target/py-ofrep with openfeature-sdk and openfeature-provider-ofrep — \
         this test is not skipped",
        python.display()
    );
    python
}

/// Runs `tests/ofrep/interop.py` on the cases: its answers by case id, and its stderr.
fn run_sdk(
    python: &Path,
    dir: &Path,
    base_url: &str,
    cases: &[Case],
) -> (BTreeMap<String, Value>, String) {
    let input: Vec<Value> = cases
        .iter()
        .map(|case| {
            json!({"id": case.id, "flag": case.flag, "type": case.kind,
                   "default": case.default, "context": case.context})
        })
        .collect();
    let input_path = dir.join("cases.json");
    std::fs::write(&input_path, serde_json::to_vec(&input).unwrap()).unwrap();
    let (stdout_path, stderr_path) = (dir.join("sdk.out"), dir.join("sdk.err"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ofrep/interop.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(base_url)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(File::open(&input_path).unwrap())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("run {} {}: {e}", python.display(), script.display()));
    let deadline = Instant::now() + SDK_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SDK did not finish within {SDK_WITHIN:?}; stderr:\n{}",
                read(&stderr_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = read(&stdout_path);
    assert!(
        status.success(),
        "{} {} failed ({status}); if it cannot import openfeature, run scripts/test.sh.\n\
         stdout:\n{stdout}\nstderr:\n{}",
        python.display(),
        script.display(),
        read(&stderr_path)
    );
    let answers = stdout
        .lines()
        .map(|line| {
            let answer: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("the SDK printed {line:?}: {e}"));
            (
                answer["id"].as_str().unwrap_or_default().to_string(),
                answer,
            )
        })
        .collect();
    (answers, read(&stderr_path))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
