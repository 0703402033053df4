//! The config file's tree, as users write it (YAML). Every struct rejects
//! unknown fields; `Config::from_yaml` parses and validates, reporting all
//! semantic errors with their field paths (see `validate`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::breaker::{BreakersConfig, ServiceBreaker};
pub use crate::check::CheckSpec;
pub use crate::flags::FlagsConfig;
pub use crate::notify::NotificationConfig;
pub use crate::rolling::{Amount, HealthCheckSpec, StatusRange};

/// The whole config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the proxy accepts client traffic. At least one is needed to serve.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// The admin API (JSON, `/metrics`, health), on its own listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The store: a file path for the embedded store (default `sluice.db`),
    /// or `etcd://host:port[,host:port…][/prefix][?lease_ttl=SECONDS]` for cluster mode.
    #[serde(default = "default_store")]
    pub store: String,
    /// Timeouts and pooling of the data plane.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// The services sluice routes and rolls out.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Where checks get metrics other than the proxy's own.
    #[serde(default)]
    pub providers: Providers,
    /// Circuit-breaker policies and the global switch.
    #[serde(default)]
    pub breakers: BreakersConfig,
    /// Feature flags served over OFREP: inline definitions and flagd files.
    #[serde(default)]
    pub flags: FlagsConfig,
    /// Where rollout and breaker events are posted (Slack, generic webhooks).
    #[serde(default)]
    pub notifications: Vec<NotificationConfig>,
}

/// Metric providers for checks (`provider: prometheus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    #[serde(default)]
    pub prometheus: Option<PrometheusProvider>,
}

/// A Prometheus server queried through its HTTP API (instant queries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProvider {
    /// Base URL, e.g. `http://127.0.0.1:9090` (http only for now).
    pub address: String,
    /// Longest wait for one query; a slower answer makes the check's run inconclusive.
    #[serde(default = "default_provider_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer …`: a string, `{env: NAME}` or `{file: /path}`.
    #[serde(default)]
    pub bearer_token: Option<crate::Secret>,
    /// Name of an environment variable holding the bearer token (wins over `bearer_token`).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

fn default_provider_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_store() -> String {
    "sluice.db".to_string()
}

/// One listening socket of the proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port`; port 0 picks a free port (printed at start-up).
    pub address: SocketAddr,
    /// Serve TLS (rustls) with this certificate and key; HTTP/2 is offered
    /// by ALPN. Both files are re-read when they change (no restart).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback by default; a non-loopback address requires a token.
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// A single bearer token with the `admin` role (named `admin`): a
    /// string, `{env: NAME}` or `{file: /path}`; `SLUICE_ADMIN_TOKEN` overrides it.
    #[serde(default)]
    pub token: Option<crate::Secret>,
    /// Named tokens, each with a role (`viewer`, `operator`, `admin`); see docs/operations.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<crate::AdminToken>,
    /// A file of more named tokens, one `name role token` per line (read at
    /// start-up and on each reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Whether reads (`GET /api/v1/…`) need a token (any role) when tokens
    /// are configured; `/healthz`, `/readyz`, `/metrics` and the dashboard's
    /// files stay open.
    #[serde(default)]
    pub require_token_for_reads: bool,
    /// Serve the admin API over TLS (rustls) with this certificate and key;
    /// both are re-read when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: default_admin_address(),
            token: None,
            tokens: Vec::new(),
            tokens_file: None,
            require_token_for_reads: false,
            tls: None,
        }
    }
}

/// Data-plane timeouts and pooling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Longest time to connect to an upstream endpoint (then 502).
    #[serde(default = "default_connect_timeout", with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Longest time from sending a request upstream to its response head (then 504).
    #[serde(default = "default_upstream_timeout", with = "crate::duration")]
    pub upstream_timeout: Duration,
    /// Longest wait for the next piece of an upstream's response body (then
    /// the response is cut and counted as a timeout).
    #[serde(default = "default_upstream_body_timeout", with = "crate::duration")]
    pub upstream_body_timeout: Duration,
    /// Longest time a client may take to send its request head (slow clients are cut off).
    #[serde(default = "default_header_read_timeout", with = "crate::duration")]
    pub header_read_timeout: Duration,
    /// Idle keep-alive connections kept per upstream endpoint.
    #[serde(default = "default_max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
    /// How long an idle upstream connection is kept.
    #[serde(default = "default_idle_timeout", with = "crate::duration")]
    pub idle_timeout: Duration,
    /// The `le` bounds, in seconds, of the exported histogram
    /// `sluice_request_duration_seconds`: increasing, above 0, at most
    /// [`MAX_LATENCY_BUCKETS`] of them. Only the export: the analysis keeps
    /// its own fine histogram (under 6.25% error at any latency), and each
    /// exported bucket is summed from it.
    #[serde(default = "default_latency_buckets")]
    pub latency_buckets: Vec<f64>,
    /// What sluice accepts from clients before it sheds or refuses
    /// (connections, requests in flight, head size, HTTP/2 streams).
    #[serde(default)]
    pub limits: crate::limits::ProxyLimits,
}

/// Most `proxy.latency_buckets` (each is one series per service and version).
pub const MAX_LATENCY_BUCKETS: usize = 30;

/// The longest latency the histogram tells apart (2^27 µs); a bound above
/// it would always equal `+Inf`.
const LONGEST_BUCKET_SECONDS: f64 = 134.0;

fn default_latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// The rules serde cannot check, each error with its field path.
    pub(crate) fn validate(&self, errors: &mut Vec<crate::FieldError>) {
        self.limits.validate(errors);
        if self.upstream_body_timeout.is_zero() {
            errors.push(crate::FieldError {
                path: "proxy.upstream_body_timeout".into(),
                message: "0s would cut every response body that waits; give a duration such as 60s"
                    .into(),
            });
        }
        let path = "proxy.latency_buckets";
        let buckets = &self.latency_buckets;
        let mut push =
            |path: String, message: String| errors.push(crate::FieldError { path, message });
        if buckets.is_empty() || buckets.len() > MAX_LATENCY_BUCKETS {
            push(
                path.into(),
                format!(
                    "{} buckets: give between 1 and {MAX_LATENCY_BUCKETS} (each is a series per service and version)",
                    buckets.len()
                ),
            );
        }
        for (i, &bound) in buckets.iter().enumerate() {
            if !(0.000_001..=LONGEST_BUCKET_SECONDS).contains(&bound) {
                push(
                    format!("{path}[{i}]"),
                    format!("{bound} is not a latency in seconds between 0.000001 (1µs) and {LONGEST_BUCKET_SECONDS}"),
                );
            } else if i > 0 && bound <= buckets[i - 1] {
                push(
                    format!("{path}[{i}]"),
                    format!("{bound} is not above the bucket before it ({}): list them in increasing order", buckets[i - 1]),
                );
            }
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_upstream_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_upstream_body_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_idle_per_endpoint() -> usize {
    256
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: default_connect_timeout(),
            upstream_timeout: default_upstream_timeout(),
            upstream_body_timeout: default_upstream_body_timeout(),
            header_read_timeout: default_header_read_timeout(),
            max_idle_per_endpoint: default_max_idle_per_endpoint(),
            idle_timeout: default_idle_timeout(),
            latency_buckets: default_latency_buckets(),
            limits: crate::limits::ProxyLimits::default(),
        }
    }
}

/// What clients call: a route and the versions behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name, used in the API, CLI and metric labels.
    pub name: String,
    /// Which requests belong to this service.
    #[serde(rename = "match", default)]
    pub route: RouteMatch,
    /// The `stable` pool and, while a rollout is wanted, the `canary` pool.
    pub versions: Versions,
    /// How an endpoint is picked inside a version's pool.
    #[serde(default)]
    pub balance: Balance,
    /// Forced-version header and sticky assignment.
    #[serde(default)]
    pub routing: Routing,
    /// The rollout plan; without it the canary (if any) gets no traffic.
    #[serde(default)]
    pub rollout: Option<RolloutSpec>,
    /// Circuit breakers guarding each version (per version, optionally per tenant).
    #[serde(default)]
    pub breaker: Option<ServiceBreaker>,
    /// TLS to the `https://` endpoints: trusted CA, client certificate
    /// (mTLS), server name.
    #[serde(default)]
    pub upstream_tls: Option<crate::UpstreamTls>,
}

/// Host and path-prefix match; the longest matching prefix wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Host names (without port) this service answers; empty means any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix, starting with `/`.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
}

fn default_path_prefix() -> String {
    "/".to_string()
}

impl Default for RouteMatch {
    fn default() -> Self {
        RouteMatch {
            hosts: Vec::new(),
            path_prefix: default_path_prefix(),
        }
    }
}

/// The two version slots of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    pub stable: Version,
    #[serde(default)]
    pub canary: Option<Version>,
}

/// A pool of upstream endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// `host:port` of each endpoint (plain HTTP/1.1 to the upstream), or
    /// `https://host:port` (HTTP/1.1 over TLS, per the service's `upstream_tls`).
    pub endpoints: Vec<Endpoint>,
}

/// An upstream endpoint, `host:port`, `http://host:port` or `https://host:port`.
pub type Endpoint = String;

/// Load balancing inside one version's pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests in flight (ties by rotation).
    LeastRequest,
}

/// How a request may be pinned to a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// A request header that forces a version: `always`/`true` → canary,
    /// `never`/`false` → stable. Set to null to disable.
    #[serde(default = "default_force_header")]
    pub force_header: Option<String>,
    /// Keep a user on one version while the weight grows.
    #[serde(default)]
    pub sticky: Option<Sticky>,
}

fn default_force_header() -> Option<String> {
    Some("x-canary".to_string())
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            force_header: default_force_header(),
            sticky: None,
        }
    }
}

/// The request attribute whose hash picks the version: exactly one of `header`, `cookie`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A rollout plan (fields named as Flagger's where the meaning is the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    #[serde(default)]
    pub strategy: Strategy,
    /// What starts a rollout: `auto` (a new canary in the config, at start-up
    /// or reload) or `manual` (only `sluice rollout start`).
    #[serde(default)]
    pub trigger: Trigger,
    /// Time between analysis runs; each step is held at least this long.
    #[serde(default = "default_interval", with = "crate::duration")]
    pub interval: Duration,
    /// Failed analysis runs (over the whole rollout) that trigger rollback.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Explicit steps: `- weight: 5`, `- pause: 10m`, `- pause: manual`.
    #[serde(default)]
    pub steps: Option<Vec<StepSpec>>,
    /// Canary weights in percent, one step each (Flagger's `stepWeights`).
    #[serde(default)]
    pub step_weights: Option<Vec<f64>>,
    /// Increment in percent up to `max_weight` (Flagger's `stepWeight`).
    #[serde(default)]
    pub step_weight: Option<f64>,
    /// Last weight reached with `step_weight` before promotion (default 50).
    #[serde(default)]
    pub max_weight: Option<f64>,
    /// Canary requests an analysis run needs; fewer is inconclusive, never a pass.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The gates checked every interval.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Inconclusive runs in a row (too little traffic, provider errors, a
    /// sustained condition still pending) after which a run counts as failed.
    #[serde(default = "default_max_inconclusive")]
    pub max_inconclusive: u32,
    /// Who decides each run: `threshold` (the checks), `sequential` (canary
    /// against stable, anytime-valid), or `both`.
    #[serde(default)]
    pub judge: Judge,
    /// Settings of the sequential judge.
    #[serde(default)]
    pub sequential: SequentialSpec,
    /// Webhooks at Flagger's hook points (gates, smoke and load tests, rollback requests).
    #[serde(default)]
    pub webhooks: Vec<crate::webhook::WebhookSpec>,
    /// `ab`: the requests that go to the canary (any rule matching is enough).
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub match_rules: Vec<MatchRule>,
    /// `ab`, `blue_green`, `shadow`: analysis runs to pass before promotion (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// `rolling`: endpoints that may serve above the new pool's size while
    /// it replaces the old one: a count or a percentage of the new pool
    /// (rounded up); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<Amount>,
    /// `rolling`: endpoints that may be missing below the new pool's size: a
    /// count or a percentage of the new pool (rounded down); default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Amount>,
    /// `rolling`, `recreate`: the probe that admits each new endpoint (and
    /// rolls back when one turns unhealthy); without it endpoints are admitted at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// `blue_green`: how long the previous (blue) pool stays warm after the
    /// switch; `rollout undo` within it switches back at once (default 10m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale_down_delay: Option<Duration>,
    /// Cohort steps: the request header naming the tenant (e.g. `x-tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_header: Option<String>,
    /// `shadow` (and strategies that mirror): requests copied to the canary
    /// while the client gets stable's answer; defaults apply when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::mirror::MirrorSpec>,
    /// `recreate`: the `Retry-After` sent with the 503 while no pool serves (default 5s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
}

/// How long blue-green keeps the previous pool warm when `scale_down_delay` is not set.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(600);

/// Which judge decides an analysis run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judge {
    /// The checks' bounds, run by run (failed runs count toward `threshold`).
    #[default]
    Threshold,
    /// The sequential test alone: a failure rolls back at once; no evidence of harm advances.
    Sequential,
    /// Either can fail the run; both must let it pass.
    Both,
}

/// The sequential judge's settings (see docs/analysis.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialSpec {
    /// Bound on the false-rollback rate over the whole rollout, however often it looks (0 < alpha <= 0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// How much higher than stable's the canary's error rate may be, in percent (0 to 400).
    #[serde(default = "default_error_margin")]
    pub error_margin: f64,
    /// How much larger than stable's the canary's share of slow requests may be, in percent (0 to 400).
    #[serde(default = "default_latency_margin")]
    pub latency_margin: f64,
    /// The latency percentile whose exceedances are compared (50 to 99.9).
    #[serde(default = "default_latency_percentile")]
    pub latency_percentile: f64,
}

fn default_alpha() -> f64 {
    0.01
}
fn default_error_margin() -> f64 {
    5.0
}
fn default_latency_margin() -> f64 {
    25.0
}
fn default_latency_percentile() -> f64 {
    99.0
}

impl Default for SequentialSpec {
    fn default() -> Self {
        SequentialSpec {
            alpha: default_alpha(),
            error_margin: default_error_margin(),
            latency_margin: default_latency_margin(),
            latency_percentile: default_latency_percentile(),
        }
    }
}

fn default_max_inconclusive() -> u32 {
    10
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_threshold() -> u32 {
    5
}
fn default_min_requests() -> u64 {
    20
}

/// Deployment strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The canary's weight grows step by step.
    #[default]
    Canary,
    /// A/B testing: only requests matching `match` go to the canary, for
    /// `iterations` analysis runs; then it is promoted.
    Ab,
    /// Blue-green: the new (green) pool gets no user traffic while smoke
    /// tests and `iterations` analysis runs judge it on test traffic (forced
    /// header, `rollout` load hooks); then all traffic switches at once and
    /// the previous (blue) pool stays warm for `scale_down_delay`.
    BlueGreen,
    /// Shadow traffic: a share of requests is mirrored to the canary (the
    /// client gets stable's answer), each pair is compared, for `iterations`
    /// analysis runs; then it is promoted.
    Shadow,
    /// The new pool replaces the old one a few endpoints at a time
    /// (`max_surge`, `max_unavailable`), each admitted once its health check passes.
    Rolling,
    /// The whole old pool out, then the whole new pool in; requests in
    /// between get a 503 with `Retry-After`.
    Recreate,
}

// === impl Strategy ===

impl Strategy {
    /// Whether the plan is `iterations` analysis runs at weight 0.
    pub fn counts_iterations(self) -> bool {
        match self {
            Strategy::Canary | Strategy::Rolling | Strategy::Recreate => false,
            Strategy::Ab | Strategy::Shadow | Strategy::BlueGreen => true,
        }
    }

    /// Whether `mirror` may be set (copies of requests go to the canary).
    pub fn mirrors(self) -> bool {
        match self {
            Strategy::Canary | Strategy::Ab | Strategy::Rolling | Strategy::Recreate => false,
            Strategy::Shadow | Strategy::BlueGreen => true,
        }
    }
}

/// A request the A/B strategy sends to the canary: a header or a cookie,
/// with an exact value, a regex, or (neither) merely present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Matched against the whole value (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// What starts a rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Auto,
    Manual,
}

/// One entry of `steps`: exactly one of `weight` (percent) or `pause`
/// (a duration, or `manual` to wait for `sluice rollout resume`/`promote`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub pause: Option<String>,
    /// A manual gate: `approve: {}` waits for approval; with `deadline: 1h`
    /// and `on_deadline: rollback|proceed` it does not wait for ever.
    #[serde(default)]
    pub approve: Option<ApproveSpec>,
    /// A tenant cohort (with `tenant_header`): `{tenants: [acme]}`,
    /// `{percent: 50}` (tenants by hash), both, or `all`. Cohorts add up:
    /// a tenant once in stays in.
    #[serde(default)]
    pub cohort: Option<CohortSpec>,
}

/// The tenants of a cohort step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CohortSpec {
    /// `all`: every request, with a tenant or not.
    Word(String),
    Tenants(CohortTenants),
}

/// Named tenants and/or a share of all tenants by a stable hash of the name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortTenants {
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub percent: Option<f64>,
}

/// An approval step's deadline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveSpec {
    #[serde(default, with = "crate::duration::option")]
    pub deadline: Option<Duration>,
    #[serde(default)]
    pub on_deadline: crate::validate::OnDeadline,
}
