//! The flag core: a flagd flag-definition document (with JsonLogic
//! targeting) parsed strictly and leniently, then every flag evaluated
//! against a fuzzed evaluation context. Input: the flag document, then a
//! NUL byte, then the context as JSON (an object; anything else is the
//! empty context).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sluice_flags::{Context, FlagSet};

/// 2026-01-01T00:00:00Z; `$flagd.timestamp` answers it.
const NOW: i64 = 1_767_225_600;

fuzz_target!(|data: &[u8]| {
    let (flags, context) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(flags) = std::str::from_utf8(flags) else {
        return;
    };
    let ctx = match serde_json::from_slice::<Value>(context) {
        Ok(Value::Object(attributes)) => Context::new(attributes, NOW),
        _ => Context::empty(NOW),
    };
    // Strict loading refuses what lenient loading keeps (as PARSE_ERROR).
    if let Ok(set) = FlagSet::from_flagd_json(flags) {
        let _ = set.evaluate_all(&ctx, false).count();
    }
    let Ok((set, _warnings)) = FlagSet::from_flagd_json_lenient(flags) else {
        return;
    };
    let keys: Vec<String> = set.keys().map(str::to_owned).collect();
    for key in &keys {
        let evaluation = set.evaluate(key, &ctx, false);
        let _ = evaluation.error_code();
        let _ = set.evaluate_bool(key, &ctx, false);
        let _ = set.evaluate_string(key, &ctx, "");
        let _ = set.evaluate_number(key, &ctx, 0.0);
        let _ = set.evaluate_int(key, &ctx, 0);
        let _ = set.evaluate_object(key, &ctx, &Map::new());
        let killed = set.evaluate(key, &ctx, true);
        assert!(killed.value.is_none(), "the kill switch served a value");
        if let Some(percentage) = set.percentage(key) {
            if let Ok(moved) = set.with_percentage(key, 100.0 - percentage) {
                let _ = moved.evaluate(key, &ctx, false);
            }
        }
    }
    let _ = set.evaluate("no such flag", &ctx, false);
});
