//! The public API: loading (flagd JSON, sluice spec with env overrides and
//! segments), validation with every error's path, evaluation outcomes,
//! typed helpers, merge, percentages and fingerprints.

use std::collections::HashMap;

use serde_json::{json, Value};
use sluice_flags::{Context, ErrorCode, FlagSet, FlagsError, FlagsSpec, Reason, State};

const NOW: i64 = 1_767_225_600;

fn spec(value: Value) -> FlagsSpec {
    serde_json::from_value(value).expect("a well-formed spec")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn builder_spec() -> FlagsSpec {
    spec(json!({
        "segments": {"beta": ["acme", "globex"]},
        "metadata": {"team": "build"},
        "flags": {
            "new-builder": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "percentage": 10,
                "bucket_by": "tenant",
                "env": {"enabled": "ENABLE_MAIN_BUILDER", "percentage": "MAIN_BUILDER_PERCENTAGE"},
                "targeting": {"if": [{"in": [{"var": "tenant"}, {"segment": "beta"}]}, "on", null]},
                "metadata": {"owner": "ann"}
            },
            "greeting": {
                "state": "ENABLED",
                "variants": {"hi": "hi", "bye": "bye"},
                "defaultVariant": "hi"
            }
        }
    }))
}

#[test]
fn segment_targeting_then_percentage_then_default() {
    let set = FlagSet::from_spec(builder_spec(), &no_env).unwrap();
    let beta = Context::empty(NOW).with("tenant", "acme");
    let evaluation = set.evaluate("new-builder", &beta, false);
    assert_eq!(
        (evaluation.variant, evaluation.reason),
        (Some("on"), Reason::TargetingMatch)
    );
    assert_eq!(evaluation.value, Some(&json!(true)));
    assert_eq!(evaluation.metadata.get("team"), Some(&json!("build")));
    assert_eq!(evaluation.metadata.get("owner"), Some(&json!("ann")));

    let other = Context::empty(NOW).with("tenant", "initech");
    assert_eq!(
        set.evaluate("new-builder", &other, false).reason,
        Reason::Split
    );

    let missing = set.evaluate("new-builder", &Context::empty(NOW), false);
    assert_eq!(missing.error_code(), Some(ErrorCode::TargetingKeyMissing));
    assert_eq!(missing.value, None);
    let wrong = set.evaluate(
        "new-builder",
        &Context::empty(NOW).with("tenant", json!([1])),
        false,
    );
    assert_eq!(wrong.error_code(), Some(ErrorCode::InvalidContext));
}

#[test]
fn static_disabled_killed_and_unknown() {
    let set = FlagSet::from_spec(builder_spec(), &no_env).unwrap();
    let ctx = Context::empty(NOW);
    let greeting = set.evaluate("greeting", &ctx, false);
    assert_eq!(
        (greeting.value, greeting.reason),
        (Some(&json!("hi")), Reason::Static)
    );
    let killed = set.evaluate("greeting", &ctx, true);
    assert_eq!(
        (killed.value, killed.variant, killed.reason),
        (None, None, Reason::Disabled)
    );
    let unknown = set.evaluate("nope", &ctx, false);
    assert_eq!(unknown.error_code(), Some(ErrorCode::FlagNotFound));
    assert_eq!(unknown.reason, Reason::Error);
}

#[test]
fn env_overrides_state_and_percentage() {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("ENABLE_MAIN_BUILDER", "false"),
        ("MAIN_BUILDER_PERCENTAGE", "50%"),
    ]);
    let env = |name: &str| vars.get(name).map(|v| v.to_string());
    let set = FlagSet::from_spec(builder_spec(), &env).unwrap();
    let flag = set.get("new-builder").unwrap();
    assert_eq!(flag.state(), State::Disabled);
    assert_eq!(set.percentage("new-builder"), Some(50.0));
    assert_eq!(flag.env_overrides().len(), 2);
    assert_eq!(flag.env_overrides()[0].variable, "ENABLE_MAIN_BUILDER");
    let ctx = Context::empty(NOW).with("tenant", "acme");
    assert_eq!(
        set.evaluate("new-builder", &ctx, false).reason,
        Reason::Disabled
    );

    let bad = |name: &str| (name == "ENABLE_MAIN_BUILDER").then(|| "maybe".to_string());
    let errors = FlagSet::from_spec(builder_spec(), &bad)
        .unwrap_err()
        .errors();
    assert_eq!(errors[0].path, "flags.new-builder.env.enabled");
    assert!(
        errors[0]
            .message
            .starts_with("ENABLE_MAIN_BUILDER=\"maybe\""),
        "{errors:?}"
    );
}

#[test]
fn validation_reports_every_error_with_its_path() {
    let broken = spec(json!({"flags": {
        "new-builder": {"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "on"},
        "x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
              "targeting": {"if": [{"foo": []}, "a", null]}},
        "mixed": {"state": "DISABLED", "variants": {"a": 1, "b": "two"}, "percentage": 5},
        "ramp": {"state": "ENABLED", "variants": {"on": true, "off": false}, "percentage": 120}
    }}));
    let errors: Vec<String> = FlagSet::from_spec(broken, &no_env)
        .unwrap_err()
        .errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "flags.mixed.variants: mix types: number, string",
            "flags.mixed.percentage: needs a boolean flag with exactly two variants, one true and one false",
            "flags.new-builder.defaultVariant: \"on\" is not one of the variants [a, b]",
            "flags.ramp.percentage: 120 is not between 0 and 100",
            "flags.x.targeting.if[0].foo: unknown operator \"foo\"",
        ]
    );
}

#[test]
fn parse_errors_carry_the_path() {
    let error = FlagSet::from_flagd_json(r#"{"flags": {"a": {"state": "ON", "variants": {}}}}"#)
        .unwrap_err();
    let FlagsError::Parse(field) = error else {
        panic!("a parse error: {error:?}")
    };
    assert_eq!(field.path, "flags.a.state");
    assert!(FlagSet::from_flagd_json(r#"{"flags": {}} trailing"#).is_err());
    assert!(FlagSet::from_flagd_json(r#"{"flagz": {}}"#).is_err());
}

#[test]
fn lenient_loading_keeps_broken_flags_as_parse_errors() {
    let text = r#"{"flags": {"x": {"state": "ENABLED", "variants": {"a": 1, "b": 2},
        "defaultVariant": "a", "targeting": {"if": [{"$ref": "nowhere"}, "a", "b"]}}}}"#;
    assert!(FlagSet::from_flagd_json(text).is_err());
    let (set, warnings) = FlagSet::from_flagd_json_lenient(text).unwrap();
    assert_eq!(
        warnings[0].to_string(),
        "flags.x.targeting: unknown evaluator \"nowhere\" in $ref"
    );
    let evaluation = set.evaluate("x", &Context::empty(NOW), false);
    assert_eq!(evaluation.error_code(), Some(ErrorCode::ParseError));
    assert!(set.get("x").unwrap().parse_error().is_some());
}

#[test]
fn typed_helpers() {
    let set = FlagSet::from_spec(builder_spec(), &no_env).unwrap();
    let ctx = Context::empty(NOW).with("tenant", "acme");
    assert_eq!(set.evaluate_bool("new-builder", &ctx, false), Ok(true));
    assert_eq!(set.evaluate_string("greeting", &ctx, "x"), Ok("hi"));
    assert_eq!(
        set.evaluate_number("greeting", &ctx, 1.0),
        Err(ErrorCode::TypeMismatch)
    );
    assert_eq!(
        set.evaluate_bool("nope", &ctx, true),
        Err(ErrorCode::FlagNotFound)
    );
    let disabled = FlagSet::from_flagd_json(
        r#"{"flags": {"n": {"state": "DISABLED", "variants": {"a": 1.5}, "defaultVariant": "a"},
                      "i": {"state": "ENABLED", "variants": {"a": 3}, "defaultVariant": "a"},
                      "o": {"state": "ENABLED", "variants": {"a": {"k": 1}}, "defaultVariant": "a"}}}"#,
    )
    .unwrap();
    assert_eq!(disabled.evaluate_number("n", &ctx, 7.0), Ok(7.0));
    assert_eq!(disabled.evaluate_int("i", &ctx, 0), Ok(3));
    let empty = serde_json::Map::new();
    assert_eq!(
        disabled.evaluate_object("o", &ctx, &empty).unwrap()["k"],
        json!(1)
    );
}

#[test]
fn merge_refuses_duplicates_naming_both_sources() {
    let one = FlagSet::from_spec(builder_spec(), &no_env)
        .unwrap()
        .with_source("a.yaml");
    let two = FlagSet::from_spec(builder_spec(), &no_env)
        .unwrap()
        .with_source("b.yaml");
    let errors = FlagSet::merge([one.clone(), two]).unwrap_err().errors();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0].message,
        "defined in both \"a.yaml\" and \"b.yaml\""
    );
    let other = FlagSet::from_flagd_json(
        r#"{"flags": {"z": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}},
            "metadata": {"team": "other", "env": "prod"}}"#,
    )
    .unwrap();
    let merged = FlagSet::merge([one, other]).unwrap();
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        ["greeting", "new-builder", "z"]
    );
    assert_eq!(merged.get("z").unwrap().source(), "inline");
    assert_eq!(
        merged.metadata().get("team"),
        None,
        "conflicting set metadata is dropped"
    );
    assert_eq!(merged.metadata().get("env"), Some(&json!("prod")));
}

#[test]
fn fingerprint_is_stable_and_follows_changes() {
    let a = FlagSet::from_spec(builder_spec(), &no_env).unwrap();
    let b = FlagSet::from_spec(builder_spec(), &no_env)
        .unwrap()
        .with_source("elsewhere");
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 32);
    let raised = a.with_percentage("new-builder", 25.0).unwrap();
    assert_ne!(a.fingerprint(), raised.fingerprint());
    assert_eq!(raised.percentage("new-builder"), Some(25.0));
    assert_eq!(
        a.percentage("new-builder"),
        Some(10.0),
        "the original set is unchanged"
    );
    assert_eq!(
        raised
            .with_percentage("new-builder", 10.0)
            .unwrap()
            .fingerprint(),
        a.fingerprint()
    );
    let errors = a.with_percentage("greeting", 5.0).unwrap_err().errors();
    assert_eq!(errors[0].path, "flags.greeting.percentage");
    assert!(a.with_percentage("nope", 5.0).is_err());
    assert!(a.with_percentage("new-builder", -1.0).is_err());
}

#[test]
fn percentage_extremes_need_no_key() {
    let set = FlagSet::from_spec(builder_spec(), &no_env).unwrap();
    let ctx = Context::empty(NOW);
    let all = set.with_percentage("new-builder", 100.0).unwrap();
    assert_eq!(all.evaluate("new-builder", &ctx, false).variant, Some("on"));
    let none = set.with_percentage("new-builder", 0.0).unwrap();
    assert_eq!(
        none.evaluate("new-builder", &ctx, false).variant,
        Some("off")
    );
}

#[test]
fn fractional_at_the_top_gives_split_and_bulk_evaluation_lists_all() {
    let set = FlagSet::from_flagd_json(
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
            "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "b", {"fractional": [["a", 1], ["b", 1]]}]}}}}"#,
    )
    .unwrap();
    let ctx = Context::empty(NOW).with_targeting_key("user-1");
    assert_eq!(set.evaluate("f", &ctx, false).reason, Reason::Split);
    let gold = ctx.clone().with("tier", "gold");
    assert_eq!(
        set.evaluate("f", &gold, false).reason,
        Reason::TargetingMatch
    );
    assert_eq!(set.evaluate_all(&ctx, false).count(), 1);
}
