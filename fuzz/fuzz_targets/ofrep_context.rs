//! The OFREP evaluation request body (`{"context": {...}}`) as the
//! evaluation endpoints read it, then a bulk evaluation of a fixed flag set
//! that uses every kind of rule (fractional, sem_ver, string and segment
//! operators, percentages bucketed by an attribute, `$flagd.timestamp`)
//! with the context it gives.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_flags::ofrep::context_from_request;
use sluice_flags::FlagSet;

const NOW: i64 = 1_767_225_600;

const FLAGS: &str = r#"{
  "segments": {"beta": ["acme", "globex"]},
  "$evaluators": {"is_beta": {"in": [{"var": "tenant"}, {"segment": "beta"}]}},
  "flags": {
    "split": {"state": "ENABLED", "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"fractional": [["on", 10], ["off", 90]]}},
    "split-by": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"},
      "defaultVariant": "a",
      "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "user.id"}]},
        ["a", 1], ["b", 1], ["c", 1]]}},
    "percent": {"state": "ENABLED", "variants": {"on": true, "off": false},
      "defaultVariant": "off", "percentage": 25},
    "percent-tenant": {"state": "ENABLED", "variants": {"on": true, "off": false},
      "defaultVariant": "off", "percentage": 50, "bucket_by": "org.tenant"},
    "beta": {"state": "ENABLED", "variants": {"on": true, "off": false},
      "defaultVariant": "off", "targeting": {"if": [{"$ref": "is_beta"}, "on", null]}},
    "version": {"state": "ENABLED", "variants": {"new": "new", "old": "old"},
      "defaultVariant": "old",
      "targeting": {"if": [{"sem_ver": [{"var": "app.version"}, ">=", "1.2.0"]}, "new",
        {"sem_ver": [{"var": "app.version"}, "^", "0.9.0"]}, "new", "old"]}},
    "strings": {"state": "ENABLED", "variants": {"x": 1, "y": 2.5, "z": -3},
      "defaultVariant": "x",
      "targeting": {"if": [{"starts_with": [{"var": "email"}, "admin@"]}, "y",
        {"ends_with": [{"var": "email"}, ".example"]}, "z",
        {"in": ["@", {"var": "email"}]}, "x", null]}},
    "numbers": {"state": "ENABLED", "variants": {"small": {"n": 1}, "big": {"n": 2}},
      "defaultVariant": "small",
      "targeting": {"if": [{"and": [{">": [{"var": "age"}, 17]},
        {"<=": [{"+": [{"var": "age"}, {"var": "bonus"}]}, 120]},
        {"==": [{"%": [{"var": "age"}, 2]}, 0]}]}, "big", null]}},
    "clock": {"state": "ENABLED", "variants": {"before": "before", "after": "after"},
      "defaultVariant": "before",
      "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, {"var": "launch"}]}, "after", "before"]}},
    "lists": {"state": "ENABLED", "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"if": [{"some": [{"var": "roles"}, {"==": [{"var": ""}, "admin"]}]}, "on",
        {"all": [{"var": "roles"}, {"!!": [{"var": ""}]}]}, null, "off"]}},
    "variant-from-context": {"state": "ENABLED", "variants": {"a": "a", "b": "b"},
      "defaultVariant": "a", "targeting": {"var": "chosen"}},
    "off": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
  }
}"#;

fn flags() -> &'static FlagSet {
    static FLAGS_SET: OnceLock<FlagSet> = OnceLock::new();
    FLAGS_SET.get_or_init(|| FlagSet::from_flagd_json(FLAGS).expect("the fuzz flag set is valid"))
}

fuzz_target!(|data: &[u8]| {
    match context_from_request(data, NOW) {
        Ok(ctx) => {
            assert_eq!(ctx.now_unix_seconds(), NOW);
            for evaluation in flags().evaluate_all(&ctx, false) {
                if let Some(code) = evaluation.error_code() {
                    let _ = code.as_str();
                }
            }
        }
        Err(bad) => assert!(!bad.details.is_empty(), "an error without details"),
    }
});
