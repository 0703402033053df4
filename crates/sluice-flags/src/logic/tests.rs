//! One test per operator, against JsonLogic's and flagd's documented results.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Compiler, Diag, Env, Segment};
use crate::Context;

fn segments() -> BTreeMap<String, Segment> {
    let beta: HashSet<String> = ["acme", "globex", "42"].map(String::from).into();
    BTreeMap::from([("beta".to_string(), Arc::new(beta))])
}

fn diags(rule: Value) -> Vec<Diag> {
    let segments = segments();
    let mut compiler = Compiler::new(&segments);
    compiler.compile(&rule, "t");
    compiler.diags
}

fn eval(rule: Value, data: Value) -> Value {
    let segments = segments();
    let mut compiler = Compiler::new(&segments);
    let expr = compiler.compile(&rule, "t");
    assert!(
        compiler.diags.iter().all(|d| !d.fatal),
        "{:?}",
        compiler.diags
    );
    let ctx = Context::new(data.as_object().cloned().unwrap_or_default(), 1_700_000_000);
    let key = Value::from("my-flag");
    let env = Env {
        ctx: &ctx,
        flag_key: &key,
        data: None,
    };
    expr.eval(&env).into_owned()
}

fn check(rule: Value, data: Value, expected: Value) {
    assert_eq!(eval(rule.clone(), data), expected, "{rule}");
}

#[test]
fn var_reads_paths_defaults_and_flagd_properties() {
    let data = json!({"user": {"name": "ann", "tags": ["a", "b"]}, "n": null});
    check(json!({"var": "user.name"}), data.clone(), json!("ann"));
    check(json!({"var": ["user.name"]}), data.clone(), json!("ann"));
    check(json!({"var": "user.tags.1"}), data.clone(), json!("b"));
    check(json!({"var": ["user.age", 30]}), data.clone(), json!(30));
    check(json!({"var": "missing"}), data.clone(), json!(null));
    check(json!({"var": ["n", 1]}), data.clone(), json!(null));
    check(
        json!({"var": {"cat": ["us", "er.name"]}}),
        data.clone(),
        json!("ann"),
    );
    check(
        json!({"var": "$flagd.flagKey"}),
        data.clone(),
        json!("my-flag"),
    );
    check(
        json!({"var": "$flagd.timestamp"}),
        data.clone(),
        json!(1_700_000_000),
    );
    let whole = eval(json!({"var": ""}), data);
    assert_eq!(whole["$flagd"]["flagKey"], json!("my-flag"));
    assert_eq!(whole["user"]["name"], json!("ann"));
}

#[test]
fn equality_and_negation() {
    check(json!({"==": [1, "1"]}), json!({}), json!(true));
    check(json!({"===": [1, "1"]}), json!({}), json!(false));
    check(json!({"!=": [1, 2]}), json!({}), json!(true));
    check(json!({"!==": [1, 1.0]}), json!({}), json!(false));
    check(json!({"!": [[]]}), json!({}), json!(true));
    check(json!({"!": true}), json!({}), json!(false));
    check(json!({"!!": ["0"]}), json!({}), json!(true));
}

#[test]
fn and_or_return_the_deciding_operand() {
    check(json!({"and": [1, "x", 0, 2]}), json!({}), json!(0));
    check(json!({"and": [1, "x"]}), json!({}), json!("x"));
    check(json!({"or": [0, "", "y"]}), json!({}), json!("y"));
    check(json!({"or": [0, false]}), json!({}), json!(false));
}

#[test]
fn if_chains_and_ternary() {
    check(json!({"if": [true, "a", "b"]}), json!({}), json!("a"));
    check(json!({"if": [false, "a", "b"]}), json!({}), json!("b"));
    check(
        json!({"if": [false, "a", true, "b", "c"]}),
        json!({}),
        json!("b"),
    );
    check(json!({"if": [false, "a"]}), json!({}), json!(null));
    check(json!({"?:": [0, "a", "b"]}), json!({}), json!("b"));
}

#[test]
fn comparisons_and_between() {
    check(json!({"<": [1, 2]}), json!({}), json!(true));
    check(json!({"<": [1, 2, 3]}), json!({}), json!(true));
    check(json!({"<": [1, 1, 3]}), json!({}), json!(false));
    check(json!({"<=": [1, 1, 3]}), json!({}), json!(true));
    check(json!({">": ["b", "a"]}), json!({}), json!(true));
    check(json!({">=": [2, "2"]}), json!({}), json!(true));
    check(json!({"<": ["x", 1]}), json!({}), json!(false));
}

#[test]
fn arithmetic() {
    check(json!({"+": [1, "2", 3.5]}), json!({}), json!(6.5));
    check(json!({"+": ["3"]}), json!({}), json!(3));
    check(json!({"-": [5, 7]}), json!({}), json!(-2));
    check(json!({"-": [4]}), json!({}), json!(-4));
    check(json!({"*": [2, 3, 4]}), json!({}), json!(24));
    check(json!({"/": [7, 2]}), json!({}), json!(3.5));
    check(json!({"/": [1, 0]}), json!({}), json!(null));
    check(json!({"%": [7, 3]}), json!({}), json!(1));
    check(json!({"min": [3, 1, 2]}), json!({}), json!(1));
    check(json!({"max": [3, 1, 2]}), json!({}), json!(3));
    check(json!({"max": []}), json!({}), json!(null));
}

#[test]
fn in_on_strings_arrays_and_segments() {
    check(json!({"in": ["ell", "hello"]}), json!({}), json!(true));
    check(json!({"in": ["b", ["a", "b"]]}), json!({}), json!(true));
    check(json!({"in": ["1", [1, 2]]}), json!({}), json!(false));
    check(json!({"in": ["x", 5]}), json!({}), json!(false));
    let rule = json!({"in": [{"var": "tenant"}, {"segment": "beta"}]});
    check(rule.clone(), json!({"tenant": "acme"}), json!(true));
    check(rule.clone(), json!({"tenant": 42}), json!(true));
    check(rule.clone(), json!({"tenant": "initech"}), json!(false));
    check(rule, json!({}), json!(false));
    check(
        json!({"segment": "beta"}),
        json!({}),
        json!(["42", "acme", "globex"]),
    );
}

#[test]
fn strings() {
    check(
        json!({"cat": ["a", 1, true, null]}),
        json!({}),
        json!("a1truenull"),
    );
    check(
        json!({"substr": ["jsonlogic", 4]}),
        json!({}),
        json!("logic"),
    );
    check(
        json!({"substr": ["jsonlogic", -5]}),
        json!({}),
        json!("logic"),
    );
    check(
        json!({"substr": ["jsonlogic", 1, 3]}),
        json!({}),
        json!("son"),
    );
    check(
        json!({"substr": ["jsonlogic", 4, -2]}),
        json!({}),
        json!("log"),
    );
    check(
        json!({"starts_with": ["abcdef", "abc"]}),
        json!({}),
        json!(true),
    );
    check(
        json!({"ends_with": ["abcdef", "def"]}),
        json!({}),
        json!(true),
    );
    check(
        json!({"ends_with": ["abcdef", "abc"]}),
        json!({}),
        json!(false),
    );
    check(json!({"starts_with": [123, "1"]}), json!({}), json!(null));
    check(json!({"ends_with": ["abc"]}), json!({}), json!(null));
}

#[test]
fn merge_missing_and_missing_some() {
    check(
        json!({"merge": [[1, 2], 3, [[4]]]}),
        json!({}),
        json!([1, 2, 3, [4]]),
    );
    let data = json!({"a": 1, "b": "", "c": {"d": 2}});
    check(
        json!({"missing": ["a", "b", "x", "c.d"]}),
        data.clone(),
        json!(["b", "x"]),
    );
    check(json!({"missing": [["a", "y"]]}), data.clone(), json!(["y"]));
    check(
        json!({"missing_some": [1, ["a", "x"]]}),
        data.clone(),
        json!([]),
    );
    check(json!({"missing_some": [2, ["a", "x"]]}), data, json!(["x"]));
}

#[test]
fn iteration_operators() {
    let data = json!({"xs": [1, 2, 3, 4]});
    check(
        json!({"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}),
        data.clone(),
        json!([2, 4, 6, 8]),
    );
    check(
        json!({"filter": [{"var": "xs"}, {">": [{"var": ""}, 2]}]}),
        data.clone(),
        json!([3, 4]),
    );
    let sum =
        json!({"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]});
    check(sum, data.clone(), json!(20));
    check(
        json!({"all": [{"var": "xs"}, {">": [{"var": ""}, 0]}]}),
        data.clone(),
        json!(true),
    );
    check(json!({"all": [[], true]}), data.clone(), json!(false));
    check(
        json!({"some": [{"var": "xs"}, {">": [{"var": ""}, 3]}]}),
        data.clone(),
        json!(true),
    );
    check(
        json!({"none": [{"var": "xs"}, {">": [{"var": ""}, 4]}]}),
        data,
        json!(true),
    );
}

#[test]
fn sem_ver_operator() {
    let rule = |op: &str, target: &str| json!({"sem_ver": [{"var": "v"}, op, target]});
    check(rule("=", "2.0.0"), json!({"v": "v2.0.0"}), json!(true));
    check(rule(">", "1.1"), json!({"v": 1.2}), json!(true));
    check(rule("<", "2.0.0"), json!({"v": "2.0.0-rc.1"}), json!(true));
    check(rule("^", "1.0.0"), json!({"v": "1.9.9"}), json!(true));
    check(rule("~", "1.0.0"), json!({"v": "1.1.0"}), json!(false));
    check(
        rule("=", "1.0.0"),
        json!({"v": "not-a-version"}),
        json!(null),
    );
    check(rule("===", "1.0.0"), json!({"v": "1.0.0"}), json!(null));
    check(json!({"sem_ver": ["1.0.0", "="]}), json!({}), json!(null));
}

#[test]
fn fractional_buckets_like_flagd() {
    // Vectors from flagd's testbed (v2 algorithm).
    let rule = json!({"fractional": [
        {"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
        ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]});
    let segments = segments();
    let mut compiler = Compiler::new(&segments);
    let expr = compiler.compile(&rule, "t");
    let key = Value::from("fractional-flag");
    for (name, expected) in [
        ("jack", "hearts"),
        ("queen", "spades"),
        ("ten", "clubs"),
        ("nine", "diamonds"),
    ] {
        let ctx = Context::empty(0).with("user", json!({"name": name}));
        let env = Env {
            ctx: &ctx,
            flag_key: &key,
            data: None,
        };
        assert_eq!(expr.eval(&env).as_ref(), &json!(expected), "{name}");
    }
    // No bucketing key at all, or weights adding up to nothing: null.
    check(json!({"fractional": [["a", 1]]}), json!({}), json!(null));
    check(
        json!({"fractional": [{"var": "k"}, ["a", 0], ["b", 0]]}),
        json!({"k": "x"}),
        json!(null),
    );
    check(
        json!({"fractional": [{"var": "k"}, ["a", -5], ["b", 1]]}),
        json!({"k": "x"}),
        json!("b"),
    );
    check(
        json!({"fractional": [{"var": "k"}, [true, 1]]}),
        json!({"k": "x"}),
        json!(true),
    );
    check(
        json!({"fractional": [{"var": "k"}, ["a", 1.5]]}),
        json!({"k": "x"}),
        json!(null),
    );
}

#[test]
fn compile_errors_name_the_path() {
    let found = diags(json!({"if": [{"foo": [1]}, "a", "b"]}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "t.if[0].foo");
    assert_eq!(found[0].message, "unknown operator \"foo\"");
    assert!(found[0].fatal);
    let found = diags(json!({"in": ["x", {"segment": "gamma"}]}));
    assert!(
        found[0].fatal && found[0].message.contains("unknown segment \"gamma\""),
        "{found:?}"
    );
    let lints =
        diags(json!({"and": [{"starts_with": ["a"]}, {"sem_ver": [{"var": "v"}, "=~", "1.0"]}]}));
    let messages: Vec<&str> = lints.iter().map(|d| d.message.as_str()).collect();
    assert!(lints.iter().all(|d| !d.fatal), "{lints:?}");
    assert_eq!(messages[0], "expects 2 arguments, got 1");
    assert!(
        messages[1].starts_with("unknown sem_ver operator \"=~\""),
        "{messages:?}"
    );
    assert!(diags(json!({"fractional": [{"var": "k"}, ["a", -1], "b"]}))
        .iter()
        .any(|d| d.path == "t.fractional[2]"));
}
