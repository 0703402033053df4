//! Evaluations per second: a static flag, a 50% percentage rollout and a
//! flag with five targeting rules (all five tried), side by side with
//! Unleash's Rust engine (unleash-yggdrasil) on a static toggle and the
//! equivalent gradual rollout (`flexibleRollout`, 50%, sticky on userId).
//!
//! `cargo bench -p sluice-flags --bench evaluate -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use sluice_flags::{Context, FlagSet};
use unleash_yggdrasil::{ClientFeatures, EngineState};

fn sluice_flags() -> FlagSet {
    let flags = json!({
        "segments": {"beta": ["acme", "globex", "initech", "umbrella", "hooli"]},
        "flags": {
            "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "ramp": {"state": "ENABLED", "variants": {"on": true, "off": false},
                     "defaultVariant": "off", "percentage": 50},
            "targeted": {"state": "ENABLED",
                "variants": {"a": "a", "b": "b", "c": "c", "d": "d", "e": "e", "none": "none"},
                "defaultVariant": "none",
                "targeting": {"if": [
                    {"in": [{"var": "tenant"}, {"segment": "beta"}]}, "a",
                    {"==": [{"var": "plan"}, "gold"]}, "b",
                    {"sem_ver": [{"var": "version"}, ">=", "3.0.0"]}, "c",
                    {"starts_with": [{"var": "email"}, "admin@"]}, "d",
                    {"<": [{"var": "age"}, 18]}, "e",
                    null]}}
        }
    });
    let spec = serde_json::from_value(flags).expect("a valid spec");
    FlagSet::from_spec(spec, &|_| None).expect("valid flags")
}

fn unleash_engine() -> EngineState {
    let features: ClientFeatures = serde_json::from_value(json!({
        "version": 2,
        "features": [
            {"name": "static", "enabled": true,
             "strategies": [{"name": "default", "parameters": {}}]},
            {"name": "ramp", "enabled": true,
             "strategies": [{"name": "flexibleRollout",
                             "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "ramp"}}]}
        ]
    }))
    .expect("valid Unleash features");
    let engine = EngineState::default();
    engine.apply_client_features(features);
    engine
}

fn evaluate(c: &mut Criterion) {
    let set = sluice_flags();
    let ctx = Context::empty(1_767_225_600)
        .with_targeting_key("user-4711")
        .with("tenant", "stark")
        .with("plan", "silver")
        .with("version", "2.9.1")
        .with("email", "pat@example.com")
        .with("age", 42);
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(1));
    for key in ["static", "ramp", "targeted"] {
        group.bench_function(format!("sluice/{key}"), |b| {
            b.iter(|| black_box(set.evaluate(black_box(key), black_box(&ctx), false)).reason)
        });
    }

    let engine = unleash_engine();
    let unleash_ctx = unleash_yggdrasil::Context {
        user_id: Some("user-4711".into()),
        ..Default::default()
    };
    for key in ["static", "ramp"] {
        group.bench_function(format!("yggdrasil/{key}"), |b| {
            b.iter(|| engine.is_enabled(black_box(key), black_box(&unleash_ctx), &None))
        });
    }
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
