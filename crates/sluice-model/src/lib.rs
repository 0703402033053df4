//! sluice's model: the config tree users write, the domain values it carries
//! (weights, durations, timestamps), and validation that reports every error
//! with its field path. Everything else in sluice takes these types as valid;
//! nothing here does I/O beyond parsing the text it is given.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod breaker;
pub mod check;
pub mod config;
pub mod duration;
pub mod flags;
pub mod limits;
pub mod mirror;
pub mod notify;
pub mod rolling;
pub mod secret;
pub mod store;
mod time;
pub mod upstream_tls;
mod validate;
pub mod webhook;
mod weight;

pub use access::{parse_tokens, token_problems, AdminToken, Role};
pub use breaker::{
    BreakerMode, FailureClass, FallbackSpec, Limits, PolicySpec, StaleSpec, StaticResponse,
    DEFAULT_POLICY,
};
pub use check::{parse_bound, Bound, BoundSpec, Metric, OnError, Provider, Unit};
pub use config::{
    AdminConfig, Amount, ApproveSpec, Balance, BreakersConfig, CheckSpec, CohortSpec,
    CohortTenants, Config, Endpoint, FlagsConfig, HealthCheckSpec, Judge, Listener,
    NotificationConfig, PrometheusProvider, Providers, ProxyConfig, RolloutSpec, RouteMatch,
    Routing, SequentialSpec, Service, ServiceBreaker, StatusRange, StepSpec, Sticky, Strategy,
    TlsConfig, Trigger, Version, Versions, DEFAULT_SCALE_DOWN_DELAY,
};
pub use flags::{release_plan_name, ReleasePlan, RollbackMode, VariantLabels};
pub use limits::ProxyLimits;
pub use mirror::{CompareSpec, MirrorSpec};
pub use notify::{NotificationKind, NotifyEvent};
pub use secret::{Secret, SecretSource};
pub use store::{EtcdAuth, EtcdLocation, EtcdTls, PasswordSource, StoreLocation};
pub use time::Timestamp;
pub use upstream_tls::{split_scheme, UpstreamTls};
pub use validate::{check_endpoint, Cohort, ConfigError, FieldError, OnDeadline, Step};
pub use webhook::{HookType, WebhookSpec};
pub use weight::{Weight, WeightError};
