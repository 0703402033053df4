//! Parsing and validation of a config: serde catches syntax, types and
//! unknown fields (with the path of the first one); `Config::validate` then
//! reports every semantic error at once, each with its field path, e.g.
//! `services[0].rollout.steps[2]: weight 120 is above 100`.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{CohortSpec, Config, RolloutSpec, Service, StepSpec, Version};
use crate::{duration, Weight};

/// One broken rule, at one place in the config (the same type the flag
/// core reports with, so flag errors pass through unchanged).
pub use sluice_flags::FieldError;

/// Why a config text was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid YAML, a wrong type, or an unknown field.
    #[error("{0}")]
    Parse(FieldError),
    /// Well-formed, but breaking these rules.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Every error, parse or semantic, as a list.
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Parse(e) => vec![e.clone()],
            ConfigError::Invalid(errors) => errors.clone(),
        }
    }
}

/// One step of a validated plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Send this share of traffic to the canary, then analyse for an interval.
    Weight(Weight),
    /// Hold the current weight: `Some(d)` for a duration, `None` until resumed.
    Pause(#[serde(with = "crate::duration::option")] Option<Duration>),
    /// Wait for an operator's approval (`rollout resume` or `promote`, or the
    /// API); after `deadline`, if any, roll back or proceed.
    Approve {
        #[serde(default, with = "crate::duration::option")]
        deadline: Option<Duration>,
        #[serde(default)]
        on_deadline: OnDeadline,
    },
    /// Send this cohort of tenants to the canary (cumulative: it holds every
    /// earlier cohort step's tenants too), then analyse for an interval.
    Cohort(Cohort),
    /// Pool replacement (`rolling`, `recreate`): the first `new` endpoints of
    /// the new pool (the canary slot) and the first `old` of the old pool
    /// (the stable slot) serve, split by count. With `new` above 0 it is
    /// analysed like a weight step; with none it ends as soon as the next
    /// endpoints are admitted (a `Tick`).
    Replace { new: usize, old: usize },
}

/// The tenants a cohort step sends to the canary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    /// Named tenants, exactly as the tenant header carries them.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Tenants whose hash bucket is below this share (as sticky routing hashes).
    #[serde(default)]
    pub percent: Weight,
    /// Every request, with a tenant header or without.
    #[serde(default)]
    pub all: bool,
}

// === impl Cohort ===

impl Cohort {
    /// The share of traffic the canary gets, for displays and the split of
    /// requests without a tenant: 100% for `all`, else the hashed share.
    pub fn weight(&self) -> Weight {
        if self.all {
            Weight::FULL
        } else {
            self.percent
        }
    }
}

impl std::fmt::Display for Cohort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.all {
            return f.write_str("all tenants");
        }
        let mut parts = Vec::new();
        match self.tenants.len() {
            0 => {}
            1 => parts.push(format!("tenant {}", self.tenants[0])),
            n if n <= 3 => parts.push(format!("tenants {}", self.tenants.join(", "))),
            n => parts.push(format!("{n} named tenants")),
        }
        if self.percent > Weight::ZERO {
            parts.push(format!("{} of tenants by hash", self.percent));
        }
        if parts.is_empty() {
            return f.write_str("no tenants");
        }
        f.write_str(&parts.join(" and "))
    }
}

/// What an approval step does when its deadline passes unapproved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeadline {
    #[default]
    Rollback,
    Proceed,
}

// === impl Config ===

impl Config {
    /// Parses YAML and validates it; the result is ready to use.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::Parse(FieldError {
                path,
                message: yaml_message(&e.into_inner().to_string()),
            })
        })?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Every semantic error of the tree, in document order.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Errors::default();
        if let Some(problem) = self.admin.token.as_ref().and_then(crate::Secret::problem) {
            errors.push("admin.token", problem);
        }
        for (path, message) in crate::token_problems(&self.admin.tokens, "admin.tokens") {
            errors.push(path, message);
        }
        if let Err(why) = crate::StoreLocation::parse(&self.store) {
            errors.push("store", why);
        }
        self.proxy.validate(&mut errors.0);
        let has_prometheus = self.providers.prometheus.is_some();
        if let Some(prometheus) = &self.providers.prometheus {
            if let Some(problem) = prometheus
                .bearer_token
                .as_ref()
                .and_then(crate::Secret::problem)
            {
                errors.push("providers.prometheus.bearer_token", problem);
            }
            if !prometheus.address.starts_with("http://") {
                errors.push(
                    "providers.prometheus.address",
                    format!(
                        "{:?} is not an http:// URL (e.g. http://127.0.0.1:9090)",
                        prometheus.address
                    ),
                );
            }
        }
        let mut names = HashSet::new();
        let mut routes = HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let path = format!("services[{i}]");
            if !names.insert(service.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("service {:?} is defined twice", service.name),
                );
            }
            validate_service(service, &path, has_prometheus, &mut errors);
            if let Some(breaker) = &service.breaker {
                breaker.validate(&self.breakers, &format!("{path}.breaker"), &mut errors.0);
            }
            let hosts = if service.route.hosts.is_empty() {
                vec!["*".to_string()]
            } else {
                service.route.hosts.clone()
            };
            for host in hosts {
                let key = (host.to_ascii_lowercase(), service.route.path_prefix.clone());
                if !routes.insert(key.clone()) {
                    errors.push(
                        format!("{path}.match"),
                        format!("host {:?} with path prefix {:?} is already matched by an earlier service", key.0, key.1),
                    );
                }
            }
        }
        self.breakers.validate(&mut errors.0);
        crate::notify::validate(&self.notifications, &mut errors.0);
        let mut flag_errors = Vec::new();
        let mut rollout_errors = Errors::default();
        self.flags.validate(
            &mut |rollout, path| {
                if rollout.replaces_pools() {
                    rollout_errors.push(
                        format!("{path}.strategy"),
                        "a release plan ramps a flag's percentage; rolling and recreate replace endpoint pools",
                    );
                }
                validate_rollout(rollout, path, has_prometheus, &mut rollout_errors)
            },
            &mut flag_errors,
        );
        errors.0.extend(rollout_errors.0);
        errors.0.extend(flag_errors);
        errors.0
    }

    /// The service of that name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The YAML library prefixes its own (coarser) path; ours is already in `path`.
fn yaml_message(message: &str) -> String {
    match message.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && !head.is_empty() => rest.to_string(),
        _ => message.to_string(),
    }
}

fn validate_service(service: &Service, path: &str, has_prometheus: bool, errors: &mut Errors) {
    if service.name.is_empty()
        || !service
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        errors.push(
            format!("{path}.name"),
            format!(
                "{:?} is not a service name (letters, digits, '-', '_', '.')",
                service.name
            ),
        );
    }
    if !service.route.path_prefix.starts_with('/') {
        errors.push(
            format!("{path}.match.path_prefix"),
            format!("{:?} must start with '/'", service.route.path_prefix),
        );
    }
    for (j, host) in service.route.hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ' ', ':']) {
            errors.push(
                format!("{path}.match.hosts[{j}]"),
                format!("{host:?} is not a host name"),
            );
        }
    }
    validate_version(
        &service.versions.stable,
        &format!("{path}.versions.stable"),
        errors,
    );
    if let Some(canary) = &service.versions.canary {
        validate_version(canary, &format!("{path}.versions.canary"), errors);
    }
    if let Some(header) = &service.routing.force_header {
        if !is_header_name(header) {
            errors.push(
                format!("{path}.routing.force_header"),
                format!("{header:?} is not a header name"),
            );
        }
    }
    if let Some(sticky) = &service.routing.sticky {
        let sticky_path = format!("{path}.routing.sticky");
        match (&sticky.header, &sticky.cookie) {
            (Some(h), None) if !is_header_name(h) => errors.push(
                format!("{sticky_path}.header"),
                format!("{h:?} is not a header name"),
            ),
            (None, Some(c)) if c.is_empty() || c.contains([';', '=', ' ']) => errors.push(
                format!("{sticky_path}.cookie"),
                format!("{c:?} is not a cookie name"),
            ),
            (Some(_), Some(_)) | (None, None) => {
                errors.push(sticky_path, "set exactly one of `header` or `cookie`")
            }
            _ => {}
        }
    }
    if let Some(rollout) = &service.rollout {
        validate_rollout(rollout, &format!("{path}.rollout"), has_prometheus, errors);
    }
    if let Some(tls) = &service.upstream_tls {
        crate::upstream_tls::validate(tls, &format!("{path}.upstream_tls"), &mut errors.0);
    }
}

fn validate_version(version: &Version, path: &str, errors: &mut Errors) {
    if version.endpoints.is_empty() {
        errors.push(
            format!("{path}.endpoints"),
            "needs at least one endpoint (host:port)",
        );
    }
    for (k, endpoint) in version.endpoints.iter().enumerate() {
        if let Err(why) = check_endpoint(endpoint) {
            errors.push(format!("{path}.endpoints[{k}]"), why);
        }
    }
}

/// `host:port` with a non-zero port, optionally after `http://` or
/// `https://`; IPv6 as `[::1]:8080`. The error names the value.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad =
        || format!("{endpoint:?} is not host:port or https://host:port (e.g. 127.0.0.1:8080)");
    let (_tls, authority) = crate::upstream_tls::split_scheme(endpoint);
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad());
    }
    Ok(())
}

pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate_rollout(rollout: &RolloutSpec, path: &str, has_prometheus: bool, errors: &mut Errors) {
    crate::webhook::validate_webhooks(&rollout.webhooks, path, &mut errors.0);
    validate_ab(rollout, path, errors);
    crate::rolling::validate(rollout, path, &mut errors.0);
    if rollout.interval < Duration::from_millis(100) {
        errors.push(
            format!("{path}.interval"),
            format!(
                "{} is shorter than the 100ms minimum",
                duration::format(rollout.interval)
            ),
        );
    }
    if rollout.threshold == 0 {
        errors.push(
            format!("{path}.threshold"),
            "must be at least 1 (failed runs before rollback)",
        );
    }
    let forms = [
        rollout.steps.is_some(),
        rollout.step_weights.is_some(),
        rollout.step_weight.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() > 1 {
        errors.push(
            path.to_string(),
            "set only one of `steps`, `step_weights` or `step_weight`",
        );
    }
    if rollout.max_weight.is_some() && rollout.step_weight.is_none() {
        errors.push(
            format!("{path}.max_weight"),
            "only applies with `step_weight`",
        );
    }
    plan_with_errors(rollout, path, errors);
    if rollout.max_inconclusive == 0 {
        errors.push(
            format!("{path}.max_inconclusive"),
            "must be at least 1 (inconclusive runs in a row before one counts as failed)",
        );
    }
    let sequential = &rollout.sequential;
    let ranges = [
        (
            "alpha",
            sequential.alpha,
            sequential.alpha > 0.0 && sequential.alpha <= 0.5,
            "above 0 and at most 0.5",
        ),
        (
            "error_margin",
            sequential.error_margin,
            (0.0..=400.0).contains(&sequential.error_margin),
            "from 0 to 400 (percent)",
        ),
        (
            "latency_margin",
            sequential.latency_margin,
            (0.0..=400.0).contains(&sequential.latency_margin),
            "from 0 to 400 (percent)",
        ),
        (
            "latency_percentile",
            sequential.latency_percentile,
            (50.0..=99.9).contains(&sequential.latency_percentile),
            "from 50 to 99.9",
        ),
    ];
    for (field, value, ok, rule) in ranges {
        if !ok {
            errors.push(
                format!("{path}.sequential.{field}"),
                format!("{value} must be {rule}"),
            );
        }
    }
    for (i, check) in rollout.checks.iter().enumerate() {
        for (field, message) in check.problems(has_prometheus) {
            errors.push(format!("{path}.checks[{i}].{field}"), message);
        }
    }
}

// === impl RolloutSpec ===

impl RolloutSpec {
    /// The validated plan; call only on a config that passed validation.
    pub fn plan(&self) -> Vec<Step> {
        let mut errors = Errors::default();
        plan_with_errors(self, "rollout", &mut errors)
    }
}

fn plan_with_errors(rollout: &RolloutSpec, path: &str, errors: &mut Errors) -> Vec<Step> {
    let mut plan = Vec::new();
    if rollout.strategy.counts_iterations() {
        // No user traffic by weight (ab: matching requests only; shadow:
        // mirrored copies; blue_green: test traffic) for `iterations` runs.
        let iterations = rollout.iterations.unwrap_or(10);
        return vec![Step::Weight(Weight::ZERO); iterations as usize];
    }
    if rollout.replaces_pools() {
        // Made from the pools' sizes when the rollout starts (`sluice_rollout::start`).
        return plan;
    }
    if let Some(steps) = &rollout.steps {
        let mut cohort = Cohort::default();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{path}.steps[{i}]");
            if let Some(spec) = &step.cohort {
                if step.weight.is_some() || step.pause.is_some() || step.approve.is_some() {
                    errors.push(
                        at,
                        "set exactly one of `weight`, `pause`, `approve` or `cohort`",
                    );
                } else if add_cohort(&mut cohort, spec, &format!("{at}.cohort"), errors) {
                    plan.push(Step::Cohort(cohort.clone()));
                }
                continue;
            }
            if let Some(step) = parse_step(step, &at, errors) {
                plan.push(step);
            }
        }
        validate_cohort_plan(rollout, &plan, path, errors);
    } else if let Some(weights) = &rollout.step_weights {
        for (i, w) in weights.iter().enumerate() {
            match Weight::from_percent(*w) {
                Ok(w) => plan.push(Step::Weight(w)),
                Err(e) => errors.push(format!("{path}.step_weights[{i}]"), e.to_string()),
            }
        }
    } else {
        let step = rollout.step_weight.unwrap_or(10.0);
        let max = rollout.max_weight.unwrap_or(50.0);
        let step_w = Weight::from_percent(step)
            .map_err(|e| errors.push(format!("{path}.step_weight"), e.to_string()))
            .ok();
        let max_w = Weight::from_percent(max)
            .map_err(|e| errors.push(format!("{path}.max_weight"), e.to_string()))
            .ok();
        if let (Some(step_w), Some(max_w)) = (step_w, max_w) {
            if step_w == Weight::ZERO {
                errors.push(format!("{path}.step_weight"), "must be above 0");
            } else if step_w > max_w {
                errors.push(
                    format!("{path}.step_weight"),
                    format!("{step} is above max_weight {max}"),
                );
            } else {
                let mut bp = step_w.basis_points();
                while bp <= max_w.basis_points() {
                    plan.push(Step::Weight(
                        Weight::from_basis_points(bp).unwrap_or(Weight::FULL),
                    ));
                    bp += step_w.basis_points();
                }
            }
        }
    }
    if plan.is_empty() && rollout.steps.as_ref().is_some_and(|s| s.is_empty())
        || rollout.step_weights.as_ref().is_some_and(|s| s.is_empty())
    {
        errors.push(path.to_string(), "the plan has no steps");
    }
    let mut last = Weight::ZERO;
    for (i, step) in plan.iter().enumerate() {
        if let Step::Weight(w) = step {
            if *w < last {
                let field = if rollout.steps.is_some() {
                    "steps"
                } else {
                    "step_weights"
                };
                errors.push(
                    format!("{path}.{field}[{i}]"),
                    format!("weight {w} is below the previous step's {last}; weights only grow (abort to go back)"),
                );
            }
            last = *w;
        }
    }
    plan
}

fn validate_ab(rollout: &RolloutSpec, path: &str, errors: &mut Errors) {
    let strategy = rollout.strategy;
    crate::mirror::validate_mirror(rollout, path, &mut errors.0);
    if strategy != crate::Strategy::Ab && !rollout.match_rules.is_empty() {
        errors.push(
            format!("{path}.match"),
            "only the `ab` strategy routes by match rules",
        );
    }
    if strategy != crate::Strategy::BlueGreen && rollout.scale_down_delay.is_some() {
        errors.push(
            format!("{path}.scale_down_delay"),
            "only the `blue_green` strategy keeps the previous pool warm",
        );
    }
    if !strategy.counts_iterations() {
        if rollout.iterations.is_some() {
            errors.push(
                format!("{path}.iterations"),
                "only the `ab`, `blue_green` and `shadow` strategies count iterations",
            );
        }
        return;
    }
    if rollout.iterations == Some(0) || rollout.iterations.is_some_and(|n| n > 10_000) {
        errors.push(format!("{path}.iterations"), "must be 1 to 10000");
    }
    if rollout.steps.is_some() || rollout.step_weights.is_some() || rollout.step_weight.is_some() {
        let what = match strategy {
            crate::Strategy::Ab => "ab sends matching requests only",
            crate::Strategy::BlueGreen => "blue_green switches all traffic at once",
            _ => "shadow mirrors requests and answers from stable",
        };
        errors.push(
            format!("{path}.strategy"),
            format!("{what}, with no weights: use `iterations`, not steps"),
        );
    }
    if strategy != crate::Strategy::Ab {
        return;
    }
    if rollout.match_rules.is_empty() {
        errors.push(
            format!("{path}.match"),
            "the ab strategy needs at least one rule (e.g. `- header: x-canary` with `exact: \"true\"`)",
        );
    }
    for (i, rule) in rollout.match_rules.iter().enumerate() {
        let at = format!("{path}.match[{i}]");
        match (&rule.header, &rule.cookie) {
            (Some(h), None) if !h.is_empty() && http_token(h) => {}
            (None, Some(c)) if !c.is_empty() => {}
            _ => errors.push(at.clone(), "name exactly one `header` or `cookie`"),
        }
        if rule.exact.is_some() && rule.regex.is_some() {
            errors.push(format!("{at}.regex"), "set `exact` or `regex`, not both");
        }
        if let Some(pattern) = &rule.regex {
            if let Err(e) = regex::Regex::new(pattern) {
                errors.push(
                    format!("{at}.regex"),
                    format!("{pattern:?} is not a regex: {e}"),
                );
            }
        }
    }
}

/// Adds a cohort step's tenants to the cohort so far; false if the step is invalid.
fn add_cohort(cohort: &mut Cohort, spec: &CohortSpec, path: &str, errors: &mut Errors) -> bool {
    match spec {
        CohortSpec::Word(word) if word == "all" => {
            cohort.all = true;
            true
        }
        CohortSpec::Word(word) => {
            errors.push(
                path.to_string(),
                format!("{word:?} is not a cohort: name `tenants`, a `percent`, or `all`"),
            );
            false
        }
        CohortSpec::Tenants(named) => {
            let before = errors.0.len();
            if named.tenants.is_empty() && named.percent.is_none() {
                errors.push(path.to_string(), "name `tenants`, a `percent`, or `all`");
            }
            for (i, tenant) in named.tenants.iter().enumerate() {
                if tenant.trim().is_empty() || tenant.trim() != tenant {
                    errors.push(
                        format!("{path}.tenants[{i}]"),
                        format!("{tenant:?} is not a tenant name (empty or padded with spaces)"),
                    );
                } else if !cohort.tenants.contains(tenant) {
                    cohort.tenants.push(tenant.clone());
                }
            }
            if let Some(percent) = named.percent {
                match Weight::from_percent(percent) {
                    Ok(w) if w < cohort.percent => errors.push(
                        format!("{path}.percent"),
                        format!(
                            "{w} is below an earlier cohort's {}; cohorts only grow (abort to go back)",
                            cohort.percent
                        ),
                    ),
                    Ok(w) => cohort.percent = w,
                    Err(e) => errors.push(format!("{path}.percent"), e.to_string()),
                }
            }
            errors.0.len() == before
        }
    }
}

/// A plan with cohort steps: a `tenant_header`, no weight steps, the canary strategy.
fn validate_cohort_plan(rollout: &RolloutSpec, plan: &[Step], path: &str, errors: &mut Errors) {
    let cohorts = plan.iter().any(|s| matches!(s, Step::Cohort(_)))
        || rollout.steps.iter().flatten().any(|s| s.cohort.is_some());
    match (&rollout.tenant_header, cohorts) {
        (Some(_), false) => errors.push(
            format!("{path}.tenant_header"),
            "only cohort steps (`- cohort: {tenants: [...]}`) read a tenant header",
        ),
        (None, true) => errors.push(
            format!("{path}.tenant_header"),
            "cohort steps need the header that names the tenant (e.g. `tenant_header: x-tenant`)",
        ),
        (Some(h), true) if h.is_empty() || !http_token(h) => errors.push(
            format!("{path}.tenant_header"),
            format!("{h:?} is not a header name"),
        ),
        _ => {}
    }
    if !cohorts {
        return;
    }
    if rollout.strategy != crate::Strategy::Canary {
        errors.push(
            format!("{path}.strategy"),
            "cohort steps belong to the canary strategy",
        );
    }
    for (i, step) in rollout.steps.iter().flatten().enumerate() {
        if step.weight.is_some() && step.cohort.is_none() {
            errors.push(
                format!("{path}.steps[{i}]"),
                "a cohort plan moves tenants, not weights: use `cohort` (pauses and approvals may sit between)",
            );
        }
    }
}

fn http_token(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_step(step: &StepSpec, path: &str, errors: &mut Errors) -> Option<Step> {
    match (step.weight, &step.pause, &step.approve) {
        (Some(w), None, None) => match Weight::from_percent(w) {
            Ok(w) => Some(Step::Weight(w)),
            Err(e) => {
                errors.push(path.to_string(), e.to_string());
                None
            }
        },
        (None, Some(pause), None) if pause.trim() == "manual" => Some(Step::Pause(None)),
        (None, Some(pause), None) => match duration::parse(pause) {
            Ok(d) => Some(Step::Pause(Some(d))),
            Err(e) => {
                errors.push(format!("{path}.pause"), format!("{e}, or `manual`"));
                None
            }
        },
        (None, None, Some(approve)) => {
            if approve.deadline.is_some_and(|d| d.is_zero()) {
                errors.push(format!("{path}.approve.deadline"), "must be longer than 0");
                return None;
            }
            Some(Step::Approve {
                deadline: approve.deadline,
                on_deadline: approve.on_deadline,
            })
        }
        _ => {
            errors.push(
                path.to_string(),
                "set exactly one of `weight`, `pause`, `approve` or `cohort`",
            );
            None
        }
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests;
