use super::*;

const GOOD: &str = r#"
listeners:
  - address: 127.0.0.1:8080
services:
  - name: web
    match: { path_prefix: / }
    versions:
      stable: { endpoints: ["127.0.0.1:8001"] }
      canary: { endpoints: ["127.0.0.1:8002"] }
    routing:
      sticky: { header: x-user }
    rollout:
      interval: 30s
      threshold: 2
      steps:
        - weight: 0.1
        - pause: 1m
        - weight: 25
        - pause: manual
        - weight: 50
      checks:
        - metric: success_rate
          min: 99
        - metric: latency
          percentile: 99
          max: 500ms
"#;

#[test]
fn a_good_config_parses_into_a_plan() {
    let config = Config::from_yaml(GOOD).unwrap();
    let plan = config.services[0].rollout.as_ref().unwrap().plan();
    assert_eq!(
        plan,
        vec![
            Step::Weight(Weight::from_basis_points(10).unwrap()),
            Step::Pause(Some(Duration::from_secs(60))),
            Step::Weight(Weight::from_percent(25.0).unwrap()),
            Step::Pause(None),
            Step::Weight(Weight::from_percent(50.0).unwrap()),
        ]
    );
    let names: Vec<_> = config.services[0]
        .rollout
        .as_ref()
        .unwrap()
        .checks
        .iter()
        .map(|c| c.display_name())
        .collect();
    assert_eq!(names, ["success_rate", "latency_p99"]);
}

#[test]
fn a_weight_above_100_names_its_path() {
    let bad = GOOD.replace("- weight: 25", "- weight: 120");
    let err = Config::from_yaml(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "services[0].rollout.steps[2]: weight 120 is above 100"
    );
}

#[test]
fn every_semantic_error_is_reported_at_once() {
    let bad = GOOD
        .replace("- weight: 25", "- weight: 120")
        .replace("min: 99", "min: 101")
        .replace("127.0.0.1:8002", "nowhere")
        .replace("threshold: 2", "threshold: 0");
    let errors = Config::from_yaml(&bad).unwrap_err().errors();
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "services[0].versions.canary.endpoints[0]",
            "services[0].rollout.threshold",
            "services[0].rollout.steps[2]",
            "services[0].rollout.checks[0].min",
        ]
    );
}

#[test]
fn unknown_fields_are_errors_with_their_path() {
    let bad = GOOD.replace("threshold: 2", "threshold: 2\n      treshold: 3");
    let err = Config::from_yaml(&bad).unwrap_err();
    let ConfigError::Parse(e) = err else {
        panic!("expected a parse error, got {err:?}")
    };
    assert_eq!(e.path, "services[0].rollout.treshold");
    assert!(
        e.message.contains("unknown field `treshold`"),
        "{}",
        e.message
    );
}

#[test]
fn step_weight_expands_up_to_max_weight() {
    let yaml = GOOD.replace(
        "steps:\n        - weight: 0.1\n        - pause: 1m\n        - weight: 25\n        - pause: manual\n        - weight: 50",
        "step_weight: 20\n      max_weight: 60",
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let plan = config.services[0].rollout.as_ref().unwrap().plan();
    let pct: Vec<f64> = plan
        .iter()
        .map(|s| match s {
            Step::Weight(w) => w.percent(),
            _ => -1.0,
        })
        .collect();
    assert_eq!(pct, [20.0, 40.0, 60.0]);
}

#[test]
fn weights_must_not_shrink_and_forms_are_exclusive() {
    let yaml = GOOD.replace("- weight: 50", "- weight: 5\n      step_weight: 10");
    let errors = Config::from_yaml(&yaml).unwrap_err().errors();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("set only one of")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("services[0].rollout.steps[4]: weight 5% is below")),
        "{text:?}"
    );
}

#[test]
fn duplicate_services_and_bad_durations_are_named() {
    let yaml = format!(
        "{GOOD}  - name: web\n    match: {{ path_prefix: /api }}\n    versions:\n      stable: {{ endpoints: [\"a:1\"] }}\n"
    );
    let errors = Config::from_yaml(&yaml).unwrap_err().errors();
    assert_eq!(errors[0].path, "services[1].name");
    let bad = GOOD.replace("interval: 30s", "interval: soon");
    let err = Config::from_yaml(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with("services[0].rollout.interval: \"soon\" is not a duration"),
        "{err}"
    );
}

const CHECKS: &str = r#"
providers:
  prometheus:
    address: http://127.0.0.1:9091
services:
  - name: web
    versions:
      stable: { endpoints: ["127.0.0.1:8001"] }
    rollout:
      checks:
        - metric: error_rate
          max: stable * 1.10
          for: 2m
        - metric: latency
          percentile: 95
          max: stable * 1.30
        - metric: mean_latency
          max: 250ms
        - name: memory
          query: process_resident_memory_bytes{job="web-{{version}}"}
          max: stable * 1.3
          on_error: fail
          consecutive_error_limit: 2
"#;

#[test]
fn relative_sustained_and_prometheus_checks_parse() {
    use crate::{Bound, Metric, OnError, Provider};
    let config = Config::from_yaml(CHECKS).unwrap();
    let checks = &config.services[0].rollout.as_ref().unwrap().checks;
    assert_eq!(checks[0].max_bound(), Some(Bound::Relative(1.1)));
    assert_eq!(checks[0].sustained, Some(Duration::from_secs(120)));
    assert_eq!(checks[1].display_name(), "latency_p95");
    assert_eq!(checks[2].metric, Some(Metric::MeanLatency));
    assert_eq!(checks[2].max_bound(), Some(Bound::Absolute(250.0)));
    assert_eq!(checks[3].provider(), Provider::Prometheus);
    assert_eq!(checks[3].on_error, OnError::Fail);
    assert!(checks[3].needs_stable());
}

#[test]
fn check_rules_name_their_fields() {
    let bad = CHECKS
        .replace(
            "    address: http://127.0.0.1:9091\n",
            "    address: 127.0.0.1:9091\n",
        )
        .replace("          percentile: 95\n", "")
        .replace("max: 250ms", "max: 250")
        .replace(
            "        - name: memory\n",
            "        - provider: prometheus\n",
        );
    let errors = Config::from_yaml(&bad).unwrap_err().errors();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        [
            "providers.prometheus.address: \"127.0.0.1:9091\" is not an http:// URL (e.g. http://127.0.0.1:9090)",
            "services[0].rollout.checks[1].percentile: a latency check needs a percentile (e.g. 99)",
            "services[0].rollout.checks[2].max: 250 has no unit: write a duration like 250ms",
            "services[0].rollout.checks[3].name: a prometheus check needs a name (shown in decisions)",
        ]
    );
    let no_provider = CHECKS.replace(
        "providers:\n  prometheus:\n    address: http://127.0.0.1:9091\n",
        "",
    );
    let errors = Config::from_yaml(&no_provider).unwrap_err().errors();
    assert_eq!(errors[0].path, "services[0].rollout.checks[3].provider");
}

#[test]
fn an_approval_step_parses_and_its_mistakes_are_named() {
    let good = GOOD.replace(
        "- weight: 25",
        "- approve: { deadline: 2h, on_deadline: proceed }",
    );
    let config = Config::from_yaml(&good).unwrap();
    let plan = config.services[0].rollout.as_ref().unwrap().plan();
    assert_eq!(
        plan[2],
        Step::Approve {
            deadline: Some(Duration::from_secs(7200)),
            on_deadline: crate::OnDeadline::Proceed
        }
    );
    let zero = GOOD.replace("- weight: 25", "- approve: { deadline: 0s }");
    assert_eq!(
        Config::from_yaml(&zero).unwrap_err().to_string(),
        "services[0].rollout.steps[2].approve.deadline: must be longer than 0"
    );
    let both = GOOD.replace("- weight: 25", "- { weight: 25, approve: {} }");
    assert!(Config::from_yaml(&both)
        .unwrap_err()
        .to_string()
        .contains("set exactly one of `weight`, `pause`, `approve` or `cohort`"));
}

#[test]
fn an_ab_plan_needs_rules_and_no_weights() {
    let ab = GOOD.replace("    rollout:\n", "    rollout:\n      strategy: ab\n");
    let errors = Config::from_yaml(&ab).unwrap_err().errors();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"services[0].rollout.match"), "{paths:?}");
    assert!(paths.contains(&"services[0].rollout.strategy"), "{paths:?}");
    let bad_regex = GOOD.replace(
        "    rollout:\n",
        "    rollout:\n      match: [ { header: x-beta, regex: \"(\" } ]\n",
    );
    let errors = Config::from_yaml(&bad_regex).unwrap_err().errors();
    assert!(
        errors.iter().any(|e| e.path == "services[0].rollout.match"
            && e.message == "only the `ab` strategy routes by match rules"),
        "{errors:?}"
    );
}

const STEPS: &str = "steps:\n        - weight: 0.1\n        - pause: 1m\n        - weight: 25\n        - pause: manual\n        - weight: 50";

#[test]
fn cohort_steps_add_up_and_need_a_tenant_header() {
    let yaml = GOOD.replace(
        STEPS,
        "tenant_header: x-tenant\n      steps:\n        - cohort: { tenants: [acme] }\n        - pause: 1h\n        - cohort: { tenants: [globex, initech, acme] }\n        - cohort: { percent: 50 }\n        - cohort: all",
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let plan = config.services[0].rollout.as_ref().unwrap().plan();
    let tenants = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let half = Weight::from_percent(50.0).unwrap();
    assert_eq!(
        plan,
        vec![
            Step::Cohort(Cohort {
                tenants: tenants(&["acme"]),
                ..Cohort::default()
            }),
            Step::Pause(Some(Duration::from_secs(3600))),
            Step::Cohort(Cohort {
                tenants: tenants(&["acme", "globex", "initech"]),
                ..Cohort::default()
            }),
            Step::Cohort(Cohort {
                tenants: tenants(&["acme", "globex", "initech"]),
                percent: half,
                all: false,
            }),
            Step::Cohort(Cohort {
                tenants: tenants(&["acme", "globex", "initech"]),
                percent: half,
                all: true,
            }),
        ]
    );
    let Step::Cohort(third) = &plan[3] else {
        unreachable!()
    };
    assert_eq!(
        third.to_string(),
        "tenants acme, globex, initech and 50% of tenants by hash"
    );
    assert_eq!(third.weight(), half);

    let bad = GOOD.replace(
        STEPS,
        "steps:\n        - cohort: { percent: 50 }\n        - cohort: { percent: 20, tenants: [\" \"] }\n        - cohort: some\n        - weight: 5\n        - cohort: {}",
    );
    let errors = Config::from_yaml(&bad).unwrap_err().errors();
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    for want in [
        "services[0].rollout.steps[1].cohort.percent: 20% is below an earlier cohort's 50%",
        "services[0].rollout.steps[1].cohort.tenants[0]: \" \" is not a tenant name",
        "services[0].rollout.steps[2].cohort: \"some\" is not a cohort",
        "services[0].rollout.steps[3]: a cohort plan moves tenants, not weights",
        "services[0].rollout.steps[4].cohort: name `tenants`, a `percent`, or `all`",
        "services[0].rollout.tenant_header: cohort steps need the header",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(want)),
            "{want}\n{text:#?}"
        );
    }
}

#[test]
fn a_blue_green_plan_counts_iterations_and_keeps_blue_warm() {
    let yaml = GOOD.replace(
        STEPS,
        "strategy: blue_green\n      iterations: 3\n      scale_down_delay: 2m",
    );
    let config = Config::from_yaml(&yaml).unwrap();
    let rollout = config.services[0].rollout.as_ref().unwrap();
    assert_eq!(rollout.plan(), vec![Step::Weight(Weight::ZERO); 3]);
    assert_eq!(rollout.scale_down_delay, Some(Duration::from_secs(120)));

    let with_steps = GOOD.replace(
        "    rollout:\n",
        "    rollout:\n      strategy: blue_green\n",
    );
    let errors = Config::from_yaml(&with_steps).unwrap_err().errors();
    assert!(errors
        .iter()
        .any(|e| e.path == "services[0].rollout.strategy"
            && e.message
                .starts_with("blue_green switches all traffic at once")));
    let misplaced = GOOD.replace(
        "    rollout:\n",
        "    rollout:\n      scale_down_delay: 1m\n",
    );
    let errors = Config::from_yaml(&misplaced).unwrap_err().errors();
    assert!(errors
        .iter()
        .any(|e| e.path == "services[0].rollout.scale_down_delay"));
}

#[test]
fn a_shadow_plan_runs_iterations_and_its_mirror_is_checked() {
    let shadow = GOOD
        .replace(
            "      steps:\n        - weight: 0.1\n        - pause: 1m\n        - weight: 25\n        - pause: manual\n        - weight: 50\n",
            "",
        )
        .replace(
            "    rollout:\n",
            "    rollout:\n      strategy: shadow\n      iterations: 3\n",
        );
    let config = Config::from_yaml(&shadow).unwrap();
    let rollout = config.services[0].rollout.as_ref().unwrap();
    assert_eq!(rollout.plan(), vec![Step::Weight(Weight::ZERO); 3]);
    assert_eq!(rollout.mirror, None);

    let bad = shadow.replace(
        "      iterations: 3\n",
        "      iterations: 3\n      mirror:\n        percent: 0\n        max_in_flight: 0\n        compare: { latency_factor: 0.5, ignore_headers: [\"a b\"], ignore_fields: [\"meta..id\"] }\n",
    );
    let errors = Config::from_yaml(&bad).unwrap_err().errors();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for path in [
        "services[0].rollout.mirror.percent",
        "services[0].rollout.mirror.max_in_flight",
        "services[0].rollout.mirror.compare.latency_factor",
        "services[0].rollout.mirror.compare.ignore_headers[0]",
        "services[0].rollout.mirror.compare.ignore_fields[0]",
        "services[0].rollout.mirror.compare.ignore_fields",
    ] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }

    // A canary plan may neither mirror nor gate on mirror mismatches.
    let canary = GOOD.replace(
        "      checks:\n",
        "      mirror: { percent: 50 }\n      checks:\n        - { metric: mirror_mismatch_rate, max: stable * 2 }\n",
    );
    let errors = Config::from_yaml(&canary).unwrap_err().errors();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for path in [
        "services[0].rollout.mirror",
        "services[0].rollout.checks[0].metric",
        "services[0].rollout.checks[0].max",
    ] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
    let steps = shadow.replace("      iterations: 3\n", "      step_weights: [5]\n");
    let errors = Config::from_yaml(&steps).unwrap_err().errors();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "services[0].rollout.strategy"
                && e.message.starts_with("shadow mirrors requests")),
        "{errors:?}"
    );
}

#[test]
fn mirror_defaults_are_documented_values() {
    let mirror: crate::MirrorSpec = serde_yaml_ng::from_str("compare: { body: true }").unwrap();
    assert_eq!(mirror.percent, 100.0);
    assert_eq!(mirror.max_in_flight, 64);
    assert_eq!(mirror.max_body_bytes, 1024 * 1024);
    assert_eq!(mirror.compare.latency_factor, Some(2.0));
    assert!(mirror.compare.ignore_headers.contains(&"date".to_string()));
    let off: crate::MirrorSpec =
        serde_yaml_ng::from_str("compare: { latency_factor: null }").unwrap();
    assert_eq!(off.compare.latency_factor, None);
    assert!(serde_yaml_ng::from_str::<crate::MirrorSpec>("percnt: 5").is_err());
}

#[test]
fn a_flag_release_plan_cannot_match_or_mirror() {
    let yaml = "flags:
  release_plans:
    main-builder:
      plan: { strategy: shadow, iterations: 3 }
";
    let errors = Config::from_yaml(yaml).unwrap_err().errors();
    assert!(
        errors
            .iter()
            .any(|e| e.path == "flags.release_plans.main-builder.plan.strategy"),
        "{errors:?}"
    );
}

/// GOOD's service with `rollout` replaced by `block` (indented six spaces).
fn with_rollout(block: &str) -> String {
    let start = GOOD.find("    rollout:\n").unwrap();
    format!("{}    rollout:\n{block}", &GOOD[..start])
}

#[test]
fn a_rolling_plan_reads_its_fields_and_names_its_mistakes() {
    let good = with_rollout(
        "      strategy: rolling\n      max_surge: 25%\n      max_unavailable: 1\n      health_check: { path: /ready, interval: 500ms, expect: 200-399 }\n",
    );
    let config = Config::from_yaml(&good).unwrap();
    let rollout = config.services[0].rollout.as_ref().unwrap();
    assert_eq!(rollout.surge(10), 3);
    assert_eq!(rollout.unavailable(10), 1);
    let check = rollout.health_check.as_ref().unwrap();
    assert_eq!(check.healthy_threshold, 2);
    assert!(check.expect.contains(302) && !check.expect.contains(404));
    assert!(rollout.plan().is_empty(), "the plan is made from the pools");

    let bad = with_rollout(
        "      strategy: rolling\n      max_surge: 0\n      max_unavailable: 0%\n      step_weights: [10]\n      retry_after: 3s\n      health_check: { path: ready, healthy_threshold: 0 }\n",
    );
    let errors = Config::from_yaml(&bad).unwrap_err().errors();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for path in [
        "services[0].rollout.max_surge",
        "services[0].rollout.strategy",
        "services[0].rollout.retry_after",
        "services[0].rollout.health_check.path",
        "services[0].rollout.health_check.healthy_threshold",
    ] {
        assert!(paths.contains(&path), "{path} missing from {errors:?}");
    }
    let text = Config::from_yaml(&with_rollout("      max_surge: \"150%\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("services[0].rollout.max_surge") && text.contains("150%"),
        "{text}"
    );
}

#[test]
fn rolling_fields_belong_to_their_strategies() {
    let canary = GOOD.replace(
        "      interval: 30s\n",
        "      interval: 30s\n      max_surge: 1\n      health_check: {}\n",
    );
    let errors = Config::from_yaml(&canary).unwrap_err().errors();
    assert!(errors
        .iter()
        .any(|e| e.path == "services[0].rollout.max_surge"
            && e.message == "only the `rolling` strategy uses it"));
    assert!(errors
        .iter()
        .any(|e| e.path == "services[0].rollout.health_check"));
    let recreate =
        with_rollout("      strategy: recreate\n      retry_after: 2s\n      max_unavailable: 1\n");
    let errors = Config::from_yaml(&recreate).unwrap_err().errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "services[0].rollout.max_unavailable");
    let fine = with_rollout("      strategy: recreate\n      retry_after: 2s\n");
    let config = Config::from_yaml(&fine).unwrap();
    let rollout = config.services[0].rollout.as_ref().unwrap();
    assert_eq!(rollout.gap_retry_after(), Duration::from_secs(2));
}

#[test]
fn latency_buckets_are_increasing_positive_and_few() {
    let config = Config::from_yaml(GOOD).unwrap();
    assert_eq!(config.proxy.latency_buckets.len(), 13, "the default");
    let with = |buckets: &str| format!("proxy:\n  latency_buckets: {buckets}\n{GOOD}");
    let config = Config::from_yaml(&with("[0.005, 0.05, 0.5, 5]")).unwrap();
    assert_eq!(config.proxy.latency_buckets, [0.005, 0.05, 0.5, 5.0]);

    let errors = Config::from_yaml(&with("[0.1, 0.05, -1, 500]"))
        .unwrap_err()
        .errors();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "proxy.latency_buckets[1]",
            "proxy.latency_buckets[2]",
            "proxy.latency_buckets[3]"
        ],
        "{errors:?}"
    );
    assert!(errors[0].message.contains("increasing order"), "{errors:?}");
    let many: Vec<String> = (1..=31)
        .map(|i| format!("{}", f64::from(i) / 100.0))
        .collect();
    let errors = Config::from_yaml(&with(&format!("[{}]", many.join(", "))))
        .unwrap_err()
        .errors();
    assert_eq!(errors[0].path, "proxy.latency_buckets", "{errors:?}");
    assert!(Config::from_yaml(&with("[]")).is_err());
}
