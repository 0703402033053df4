//! flagd's own test suite (flagd-testbed, beside the project in
//! `shared/flagd-testbed`), run against sluice's evaluator: the
//! evaluator-level features with `evaluator/flags/testkit-flags.json`, and
//! the provider-level `evaluation` and `targeting` features with `flags/*.json`.
//! The testbed is read in place, never copied; without it these tests fail.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::gherkin::{self, Scenario};
use serde_json::{Map, Value};
use sluice_flags::{Context, ErrorCode, FlagSet, Reason, ValueKind};

/// What `$flagd.timestamp` answers (2026-01-01T00:00:00Z).
const NOW: i64 = 1_767_225_600;

fn testbed() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/flagd-testbed");
    assert!(
        dir.join("evaluator").is_dir(),
        "flagd-testbed not found at {} (it sits beside the project on CI)",
        dir.display()
    );
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Printed past libtest's capture, so the counts show in a plain `cargo test`.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn flagd_evaluator_testbed() {
    let dir = testbed().join("evaluator");
    let (flags, warnings) =
        FlagSet::from_flagd_json_lenient(&read(&dir.join("flags/testkit-flags.json")))
            .expect("the testkit flags load");
    assert!(
        warnings.iter().any(|w| w
            .path
            .starts_with("flags.ref-to-nonexistent-evaluator-flag")),
        "the unknown $ref is reported: {warnings:?}"
    );
    let skip = |s: &Scenario| {
        ["@fractional-v1", "@fractional-v3"]
            .into_iter()
            .find(|tag| s.tags.iter().any(|t| t == tag))
    };
    run_suite("evaluator", &dir.join("gherkin"), None, &flags, skip);
}

#[test]
fn flagd_provider_evaluation_and_targeting() {
    let dir = testbed();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("flags"))
        .expect("flags/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    // As the testbed's allFlags.json: every file but the selector ones, in
    // one document, so that one file's `$ref`s reach another's `$evaluators`.
    let (mut all_flags, mut evaluators, mut sets) = (Map::new(), Map::new(), Vec::new());
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with("selector") || !name.ends_with(".json") {
            continue;
        }
        let text = read(&file);
        let document: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (part, into) in [("flags", &mut all_flags), ("$evaluators", &mut evaluators)] {
            if let Some(Value::Object(map)) = document.get(part) {
                into.extend(map.clone());
            }
        }
        let (set, _) =
            FlagSet::from_flagd_json_lenient(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        sets.push(set.with_source(&name));
    }
    let merged = FlagSet::merge(sets).expect("the testbed's files share no key");
    let all = serde_json::json!({"flags": all_flags, "$evaluators": evaluators});
    let (flags, _) = FlagSet::from_flagd_json_lenient(&all.to_string()).expect("allFlags loads");
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        flags.keys().collect::<Vec<_>>()
    );
    // In-process mode, as sluice evaluates; the features are tagged for
    // every mode (@rpc @in-process @file), so @rpc alone does not exclude.
    // @deprecated: the old no-default rule (FLAG_NOT_FOUND), replaced by
    // @no-default-variant in the same feature.
    let skip = |s: &Scenario| {
        let has = |tag: &str| s.tags.iter().any(|t| t == tag);
        let excluded = [
            "@fractional-v1",
            "@fractional-v3",
            "@caching",
            "@events",
            "@grace",
            "@deprecated",
        ];
        if let Some(tag) = excluded.into_iter().find(|t| has(t)) {
            return Some(tag);
        }
        (has("@rpc") && !has("@in-process") && !has("@file")).then_some("@rpc")
    };
    let features = ["evaluation.feature", "targeting.feature"];
    run_suite(
        "provider",
        &dir.join("gherkin"),
        Some(&features),
        &flags,
        skip,
    );
}

fn run_suite(
    suite: &str,
    dir: &Path,
    only: Option<&[&str]>,
    flags: &FlagSet,
    skip: impl Fn(&Scenario) -> Option<&'static str>,
) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the gherkin folder is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .filter(|p| {
            only.is_none_or(|names| names.iter().any(|n| p.file_name().is_some_and(|f| f == *n)))
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no feature files in {}", dir.display());
    let (mut ran, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    for path in &paths {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        for scenario in gherkin::parse(&read(path)) {
            if let Some(tag) = skip(&scenario) {
                skipped.push(tag);
                continue;
            }
            ran += 1;
            if let Err(message) = run_scenario(flags, &scenario) {
                failures.push(format!("{file}: {}: {message}", scenario.name));
            }
        }
    }
    let mut reasons: Vec<&str> = skipped.clone();
    reasons.sort();
    reasons.dedup();
    let by_tag: Vec<String> = reasons
        .iter()
        .map(|r| format!("{} {r}", skipped.iter().filter(|s| *s == r).count()))
        .collect();
    report(&format!(
        "flagd-testbed {suite}: {ran} scenarios ran over {} features, {} skipped ({}), {} failed",
        paths.len(),
        skipped.len(),
        by_tag.join(", "),
        failures.len()
    ));
    assert!(ran > 0, "no scenario ran");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One scenario's state, as an OpenFeature client would hold it.
#[derive(Default)]
struct World {
    flag: Option<(String, String, Value)>,
    context: Map<String, Value>,
    details: Option<Details>,
}

struct Details {
    value: Value,
    reason: Reason,
    error: Option<ErrorCode>,
    metadata: Map<String, Value>,
}

fn run_scenario(flags: &FlagSet, scenario: &Scenario) -> Result<(), String> {
    let mut world = World::default();
    for step in &scenario.steps {
        let (shape, args) = step.shape();
        let arg = |i: usize| args[i].as_str();
        match shape.as_str() {
            "an evaluator" | "a stable flagd provider" => {}
            "an option {} of type {} with value {}" => {}
            "a context containing a key {}, with type {} and with value {}" => {
                let value = typed(arg(1), arg(2))?;
                world.context.insert(arg(0).to_string(), value);
            }
            "a context containing a nested property with outer key {} and inner key {}, with value {}" => {
                let mut inner = Map::new();
                inner.insert(arg(1).to_string(), Value::from(arg(2)));
                world.context.insert(arg(0).to_string(), Value::Object(inner));
            }
            "a context containing a targeting key with value {}" => {
                world.context.insert("targetingKey".into(), Value::from(arg(0)));
            }
            "the flag was evaluated with details" => {
                let (key, kind, default) = world.flag.clone().ok_or("no flag given")?;
                let ctx = Context::new(world.context.clone(), NOW);
                world.details = Some(details(flags, &key, &kind, default, &ctx)?);
            }
            "the resolved details value should be {}" => {
                let (_, kind, _) = world.flag.as_ref().ok_or("no flag given")?;
                let expected = typed(kind, arg(0))?;
                let actual = &world.details.as_ref().ok_or("not evaluated")?.value;
                if !same(actual, &expected) {
                    return Err(format!("value {actual}, expected {expected}"));
                }
            }
            "the reason should be {}" => {
                let reason = world.details.as_ref().ok_or("not evaluated")?.reason;
                if reason.as_str() != arg(0) {
                    return Err(format!("reason {reason}, expected {}", arg(0)));
                }
            }
            "the error-code should be {}" => {
                let error = world.details.as_ref().ok_or("not evaluated")?.error;
                let actual = error.map_or("", ErrorCode::as_str);
                if actual != arg(0) {
                    return Err(format!("error code \"{actual}\", expected \"{}\"", arg(0)));
                }
            }
            "the resolved metadata should contain" => {
                let metadata = &world.details.as_ref().ok_or("not evaluated")?.metadata;
                for row in step.table.iter().skip(1) {
                    let expected = typed(&row[1], &row[2])?;
                    match metadata.get(&row[0]) {
                        Some(actual) if same(actual, &expected) => {}
                        other => return Err(format!("metadata {}: {other:?}", row[0])),
                    }
                }
            }
            "the resolved metadata is empty" => {
                let metadata = &world.details.as_ref().ok_or("not evaluated")?.metadata;
                if !metadata.is_empty() {
                    return Err(format!("metadata not empty: {metadata:?}"));
                }
            }
            _ => {
                let flag = flag_step(&shape).ok_or_else(|| format!("unknown step: {}", step.text))?;
                world.flag = Some((arg(0).to_string(), flag.to_string(), typed(flag, arg(1))?));
            }
        }
    }
    Ok(())
}

/// `a Boolean-flag with key {} and a fallback value {}` (or `default value`) → `Boolean`.
fn flag_step(shape: &str) -> Option<&str> {
    let rest = shape.strip_prefix("a ")?;
    let (kind, rest) = rest.split_once("-flag with key {} and a ")?;
    matches!(rest, "fallback value {}" | "default value {}").then_some(kind)
}

/// The resolution an SDK would report: the flag's value or the caller's
/// default, TYPE_MISMATCH for a value of another type.
fn details(
    flags: &FlagSet,
    key: &str,
    kind: &str,
    default: Value,
    ctx: &Context,
) -> Result<Details, String> {
    let value_kind = match kind {
        "Boolean" => ValueKind::Boolean,
        "String" => ValueKind::String,
        "Integer" | "Float" => ValueKind::Number,
        "Object" => ValueKind::Object,
        other => return Err(format!("unknown flag type {other}")),
    };
    let evaluation = flags.evaluate(key, ctx, false).expect_kind(value_kind);
    let integral = evaluation
        .value
        .is_none_or(|v| kind != "Integer" || v.as_f64().is_some_and(|f| f.fract() == 0.0));
    let (value, reason, error) = if integral {
        let value = evaluation.value.cloned().unwrap_or(default);
        (value, evaluation.reason, evaluation.error_code())
    } else {
        (default, Reason::Error, Some(ErrorCode::TypeMismatch))
    };
    Ok(Details {
        value,
        reason,
        error,
        metadata: evaluation.metadata.clone(),
    })
}

fn typed(kind: &str, text: &str) -> Result<Value, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{kind} \"{text}\": {e}");
    Ok(match kind {
        "String" => Value::from(text),
        "Boolean" => Value::from(text.parse::<bool>().map_err(|e| bad(&e))?),
        "Integer" => Value::from(text.parse::<i64>().map_err(|e| bad(&e))?),
        "Float" => Value::from(text.parse::<f64>().map_err(|e| bad(&e))?),
        "Object" => serde_json::from_str(text).map_err(|e| bad(&e))?,
        other => return Err(format!("unknown type {other}")),
    })
}

/// Equality with numbers compared by value (`0` equals `0.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
