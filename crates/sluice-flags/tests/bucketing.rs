//! Bucketing properties: `fractional` agrees with a direct transcription of
//! flagd's v2 arithmetic, percentage rollouts are monotonic, and splits are
//! even over many keys.

use proptest::prelude::*;
use serde_json::{json, Value};
use sluice_flags::{Context, FlagSet, Reason};

/// flagd's fractional v2, as its specification words it.
fn reference(bucket_key: &str, weights: &[u64]) -> Option<usize> {
    let h = u64::from(murmur3::murmur3_32(&mut bucket_key.as_bytes(), 0).unwrap());
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return None;
    }
    let bucket = (h * total) >> 32;
    let mut end = 0;
    for (i, weight) in weights.iter().enumerate() {
        end += weight;
        if bucket < end {
            return Some(i);
        }
    }
    None
}

fn fractional_set(bucket_by: Option<Value>, weights: &[u64]) -> FlagSet {
    let mut args: Vec<Value> = bucket_by.into_iter().collect();
    let mut variants = serde_json::Map::new();
    for (i, weight) in weights.iter().enumerate() {
        args.push(json!([format!("v{i}"), weight]));
        variants.insert(format!("v{i}"), json!(format!("v{i}")));
    }
    let flags = json!({"flags": {"split": {"state": "ENABLED", "variants": variants,
        "defaultVariant": "v0", "targeting": {"fractional": args}}}});
    FlagSet::from_flagd_json(&flags.to_string()).unwrap()
}

fn ramp(percentage: f64) -> FlagSet {
    let flags = json!({"flags": {"ramp": {"state": "ENABLED",
        "variants": {"on": true, "off": false}, "defaultVariant": "off", "percentage": percentage}}});
    FlagSet::from_flagd_json(&flags.to_string()).unwrap()
}

proptest! {
    #[test]
    fn fractional_matches_the_specified_arithmetic(
        key in ".{0,32}",
        weights in prop::collection::vec(0u64..10_000, 1..6),
        explicit in any::<bool>(),
    ) {
        let (set, bucket_key, ctx) = if explicit {
            let ctx = Context::empty(0).with("k", key.clone());
            (fractional_set(Some(json!({"var": "k"})), &weights), key.clone(), ctx)
        } else {
            let ctx = Context::empty(0).with_targeting_key(key.clone());
            (fractional_set(None, &weights), format!("split{key}"), ctx)
        };
        let evaluation = set.evaluate("split", &ctx, false);
        let expected = if !explicit && key.is_empty() {
            None // no targetingKey: null, the default variant
        } else {
            reference(&bucket_key, &weights).map(|i| format!("v{i}"))
        };
        match expected {
            Some(name) => {
                prop_assert_eq!(evaluation.variant, Some(name.as_str()));
                prop_assert_eq!(evaluation.reason, Reason::Split);
            }
            None => prop_assert_eq!(evaluation.reason, Reason::Default),
        }
    }

    #[test]
    fn raising_a_flags_percentage_keeps_enabled_keys_enabled(
        key in "[a-zA-Z0-9@.-]{1,40}",
        low in 0.0f64..=100.0,
        raise in 0.0f64..=50.0,
    ) {
        let set = ramp(low);
        let raised = set.with_percentage("ramp", (low + raise).min(100.0)).unwrap();
        let ctx = Context::empty(0).with_targeting_key(key);
        if set.evaluate("ramp", &ctx, false).variant == Some("on") {
            prop_assert_eq!(raised.evaluate("ramp", &ctx, false).variant, Some("on"));
        }
    }
}

#[test]
fn splits_are_even_over_100k_keys() {
    let set = fractional_set(None, &[25, 25, 25, 25]);
    let mut counts = [0usize; 4];
    for i in 0..100_000 {
        let ctx = Context::empty(0).with_targeting_key(format!("user-{i}"));
        let variant = set.evaluate("split", &ctx, false).variant.unwrap();
        counts[variant[1..].parse::<usize>().unwrap()] += 1;
    }
    for count in counts {
        assert!((24_000..=26_000).contains(&count), "{counts:?}");
    }
    let ramp = ramp(10.0);
    let on = (0..100_000)
        .filter(|i| {
            let ctx = Context::empty(0).with_targeting_key(format!("user-{i}"));
            ramp.evaluate("ramp", &ctx, false).variant == Some("on")
        })
        .count();
    assert!((9_400..=10_600).contains(&on), "10% gave {on} of 100k");
}
