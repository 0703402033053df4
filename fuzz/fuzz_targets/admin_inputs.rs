//! The JSON bodies the admin API accepts, decoded as its handlers decode
//! them (`sluice_model::api::decode_json`) and passed to the validation each
//! handler runs next. The first byte picks the endpoint; the rest is the
//! body:
//!
//! - 0: `PUT /api/v1/flags/{key}` (a flag definition, built into a set and evaluated)
//! - 1: `PUT /api/v1/breakers/policies/{id}` (a breaker policy, validated)
//! - 2: `POST /api/v1/rollouts/{service}/start` (canary endpoints, checked)
//! - 3: `POST /api/v1/rollouts/{service}/undo`
//! - 4: `POST /api/v1/flags/{key}/percentage` (applied to a boolean flag)
//! - 5: a path segment naming a breaker policy (`{id}`)
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sluice_flags::{Context, FlagSet, FlagSpec, FlagsSpec};
use sluice_model::api::{decode_json, decode_optional_json, PercentageBody, StartBody, UndoBody};
use sluice_model::PolicySpec;

const NOW: i64 = 1_767_225_600;

const RAMPED: &str = r#"{"flags": {"ramped": {"state": "ENABLED",
  "variants": {"on": true, "off": false}, "defaultVariant": "off", "percentage": 5}}}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, body)) = data.split_first() else {
        return;
    };
    match endpoint % 6 {
        0 => put_flag(body),
        1 => {
            if let Ok(policy) = decode_json::<PolicySpec>(body) {
                if policy.validate("policy").is_empty() {
                    let _ = policy.effective_mode();
                    let _ = policy.call_timeout();
                    let _ = policy.effective_half_open_calls();
                }
            }
        }
        2 => {
            if let Ok(StartBody {
                canary: Some(endpoints),
            }) = decode_optional_json::<StartBody>(body)
            {
                for endpoint in &endpoints {
                    let _ = sluice_model::check_endpoint(endpoint);
                }
            }
        }
        3 => {
            let _ = decode_optional_json::<UndoBody>(body);
        }
        4 => {
            if let Ok(PercentageBody { percentage }) = decode_json(body) {
                let set = FlagSet::from_flagd_json(RAMPED).expect("the ramped flag is valid");
                if let Ok(moved) = set.with_percentage("ramped", percentage) {
                    let ctx = Context::empty(NOW).with_targeting_key("user-1");
                    let _ = moved.evaluate("ramped", &ctx, false);
                }
            }
        }
        _ => {
            if let Ok(id) = std::str::from_utf8(body) {
                let _ = sluice_model::breaker::check_policy_id(id);
            }
        }
    }
});

fn put_flag(body: &[u8]) {
    let Ok(flag) = decode_json::<FlagSpec>(body) else {
        return;
    };
    let spec = FlagsSpec {
        flags: BTreeMap::from([("fuzzed".to_string(), flag)]),
        ..FlagsSpec::default()
    };
    let Ok(set) = FlagSet::from_spec(spec, &|_| None) else {
        return;
    };
    for ctx in [
        Context::empty(NOW),
        Context::empty(NOW)
            .with_targeting_key("user-1")
            .with("tenant", "acme"),
    ] {
        let _ = set.evaluate("fuzzed", &ctx, false);
    }
}
