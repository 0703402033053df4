//! The routing snapshot: every service's route match, version pools,
//! canary weight and pinning rules, resolved once when built (parsed header
//! names, endpoint authorities, counter handles) so the request path only
//! compares bytes. Immutable; the controller builds a new one and publishes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use sluice_model::{Config, Endpoint, Service, Weight};

use crate::balance::Pool;
use crate::breakers::{VersionBreakers, VersionLimits};
use crate::metrics::{Metrics, VersionMetrics};
use crate::mirror::MirrorRoute;
use crate::upstream_tls::{endpoint_state, upstream_tls_settings};

/// A version slot of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Stable,
    Canary,
}

impl Slot {
    /// `stable` or `canary`, as in metric labels and messages.
    pub fn label(self) -> &'static str {
        match self {
            Slot::Stable => "stable",
            Slot::Canary => "canary",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What the controller decides for one service: its pools and canary weight.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRouting {
    pub stable: Vec<Endpoint>,
    /// None: no canary pool (all traffic, forced or not, goes to stable).
    pub canary: Option<Vec<Endpoint>>,
    /// Share of unforced traffic sent to the canary pool.
    pub canary_weight: Weight,
    /// An A/B rollout is in progress: requests matching the plan's `match`
    /// rules go to the canary, the others to stable, whatever the weight.
    pub match_active: bool,
    /// No pool serves (recreate's gap): every request is answered 503 at
    /// once, with this as `Retry-After`.
    pub unavailable: Option<Duration>,
    /// A mirroring rollout is in progress (`shadow`): a share of the requests
    /// that go to stable is copied to the canary, per the plan's `mirror`
    /// (its defaults when absent).
    pub mirror_active: bool,
    /// A cohort rollout is in progress: the tenants of this cohort (read
    /// from `header`) go to the canary, every other request to stable.
    pub cohort: Option<TenantCohort>,
}

/// The tenants a cohort rollout sends to the canary, and where the tenant is read.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantCohort {
    pub header: String,
    pub cohort: sluice_model::Cohort,
}

/// Where a sticky key is read from.
#[derive(Debug)]
pub(crate) enum StickyKey {
    Header(HeaderName),
    Cookie(String),
}

/// One version of a routed service: its pool, counters, breakers and caps.
pub(crate) struct VersionRoute {
    pub(crate) slot: Slot,
    pub(crate) pool: Pool,
    pub(crate) metrics: Arc<VersionMetrics>,
    pub(crate) breakers: Option<VersionBreakers>,
    pub(crate) limits: Option<Arc<VersionLimits>>,
}

/// One service as the request path sees it.
pub(crate) struct ServiceRoute {
    pub(crate) name: String,
    /// Lowercase host names; empty means any host.
    hosts: Vec<String>,
    path_prefix: String,
    pub(crate) stable: VersionRoute,
    pub(crate) canary: Option<VersionRoute>,
    /// Basis points, 0..=10,000.
    pub(crate) canary_weight: u16,
    pub(crate) force_header: Option<HeaderName>,
    pub(crate) sticky: Option<StickyKey>,
    /// The A/B rules, when an A/B rollout is in progress (else empty).
    pub(crate) match_rules: Vec<MatchRule>,
    /// Recreate's gap: answer 503 with this `Retry-After` (whole seconds).
    pub(crate) unavailable: Option<u64>,
    /// Mirroring to the canary, when a mirroring rollout is in progress.
    pub(crate) mirror: Option<MirrorRoute>,
    /// The canary's tenants, when a cohort rollout is in progress.
    pub(crate) cohort: Option<CompiledCohort>,
}

/// A cohort as the request path reads it.
pub(crate) struct CompiledCohort {
    pub(crate) header: HeaderName,
    pub(crate) tenants: std::collections::HashSet<Box<[u8]>>,
    /// Basis points of tenants by hash.
    pub(crate) percent: u16,
    pub(crate) all: bool,
}

/// One compiled A/B rule.
pub(crate) struct MatchRule {
    pub(crate) key: StickyKey,
    pub(crate) value: MatchValue,
}

pub(crate) enum MatchValue {
    Present,
    Exact(Vec<u8>),
    Regex(regex::bytes::Regex),
}

/// An immutable routing snapshot.
pub struct RouteTable {
    /// Services with hosts before any-host ones, then longest prefix first:
    /// the first match wins.
    routes: Vec<ServiceRoute>,
}

// === impl RouteTable ===

impl RouteTable {
    /// A table for `config`'s services with the pools and weights of
    /// `routing`. A service missing from `routing` routes to its config's
    /// stable pool (and canary pool, reachable only by forced header) with
    /// canary weight 0. Endpoints that are not `host:port` are left out of
    /// their pool (config validation rejects them before this).
    pub fn build(
        config: &Config,
        routing: &HashMap<String, ServiceRouting>,
        metrics: &Arc<Metrics>,
    ) -> RouteTable {
        metrics.breakers().apply_config(&config.breakers);
        let mut routes: Vec<ServiceRoute> = config
            .services
            .iter()
            .map(|service| build_service(service, routing.get(&service.name), metrics))
            .collect();
        routes.sort_by(|a, b| {
            (a.hosts.is_empty())
                .cmp(&b.hosts.is_empty())
                .then(b.path_prefix.len().cmp(&a.path_prefix.len()))
        });
        RouteTable { routes }
    }

    /// A table with no services (every request gets 404).
    pub fn empty() -> RouteTable {
        RouteTable { routes: Vec::new() }
    }

    /// Names of the routed services.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.name.as_str())
    }

    /// The canary weight a service routes with (None for an unknown service).
    pub fn canary_weight(&self, service: &str) -> Option<Weight> {
        self.routes
            .iter()
            .find(|r| r.name == service)
            .and_then(|r| Weight::from_basis_points(r.canary_weight))
    }

    /// The service a request belongs to: `host` without port (any case),
    /// `path` the request path.
    pub(crate) fn route(&self, host: Option<&str>, path: &str) -> Option<&ServiceRoute> {
        self.routes
            .iter()
            .find(|r| r.matches_host(host) && prefix_matches(&r.path_prefix, path))
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|r| (&r.name, r.canary_weight)))
            .finish()
    }
}

fn build_service(
    service: &Service,
    routing: Option<&ServiceRouting>,
    metrics: &Arc<Metrics>,
) -> ServiceRoute {
    let config_canary = service.versions.canary.as_ref().map(|v| &v.endpoints);
    let (stable, canary, weight, match_active, mirror_active) = match routing {
        Some(r) => (
            &r.stable,
            r.canary.as_ref(),
            r.canary_weight,
            r.match_active,
            r.mirror_active,
        ),
        None => (
            &service.versions.stable.endpoints,
            config_canary,
            Weight::ZERO,
            false,
            false,
        ),
    };
    let cohort = routing.and_then(|r| r.cohort.as_ref()).and_then(|c| {
        Some(CompiledCohort {
            header: HeaderName::from_bytes(c.header.as_bytes()).ok()?,
            tenants: c
                .cohort
                .tenants
                .iter()
                .map(|t| t.as_bytes().into())
                .collect(),
            percent: c.cohort.percent.basis_points(),
            all: c.cohort.all,
        })
    });
    let mirror = (mirror_active && canary.is_some()).then(|| {
        let spec = service
            .rollout
            .as_ref()
            .and_then(|r| r.mirror.clone())
            .unwrap_or_default();
        MirrorRoute::new(&spec, metrics.mirror(&service.name))
    });
    let match_rules = if match_active {
        compile_rules(service)
    } else {
        Vec::new()
    };
    let tls = upstream_tls_settings(service, stable, canary.map(Vec::as_slice), metrics);
    let version = |slot: Slot, endpoints: &[Endpoint]| {
        let (breakers, limits) = metrics.breakers().version(service, slot);
        VersionRoute {
            slot,
            pool: Pool::new(
                endpoints
                    .iter()
                    .filter_map(|endpoint| endpoint_state(endpoint, tls.as_ref(), metrics))
                    .collect(),
                service.balance,
            ),
            metrics: metrics.version(&service.name, slot),
            breakers,
            limits,
        }
    };
    let sticky = service
        .routing
        .sticky
        .as_ref()
        .and_then(|s| match (&s.header, &s.cookie) {
            (Some(h), _) => HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(StickyKey::Header),
            (None, Some(c)) => Some(StickyKey::Cookie(c.clone())),
            (None, None) => None,
        });
    ServiceRoute {
        name: service.name.clone(),
        hosts: service
            .route
            .hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        path_prefix: service.route.path_prefix.clone(),
        stable: version(Slot::Stable, stable),
        canary: canary.map(|endpoints| version(Slot::Canary, endpoints)),
        canary_weight: weight.basis_points(),
        force_header: service
            .routing
            .force_header
            .as_ref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        sticky,
        match_rules,
        cohort,
        mirror,
        unavailable: routing
            .and_then(|r| r.unavailable)
            .map(|d| d.as_millis().div_ceil(1000).max(1) as u64),
    }
}

/// The plan's A/B rules, compiled (config validation rejects bad ones
/// before this; one that still fails is left out).
fn compile_rules(service: &Service) -> Vec<MatchRule> {
    let Some(rollout) = &service.rollout else {
        return Vec::new();
    };
    rollout
        .match_rules
        .iter()
        .filter_map(|rule| {
            let key = match (&rule.header, &rule.cookie) {
                (Some(h), _) => StickyKey::Header(HeaderName::from_bytes(h.as_bytes()).ok()?),
                (None, Some(c)) => StickyKey::Cookie(c.clone()),
                (None, None) => return None,
            };
            let value = match (&rule.exact, &rule.regex) {
                (Some(exact), _) => MatchValue::Exact(exact.as_bytes().to_vec()),
                (None, Some(pattern)) => {
                    MatchValue::Regex(regex::bytes::Regex::new(&format!("^(?:{pattern})$")).ok()?)
                }
                (None, None) => MatchValue::Present,
            };
            Some(MatchRule { key, value })
        })
        .collect()
}

// === impl ServiceRoute ===

impl ServiceRoute {
    fn matches_host(&self, host: Option<&str>) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        host.is_some_and(|host| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    }

    /// The route of `slot`; stable when there is no canary pool.
    pub(crate) fn version(&self, slot: Slot) -> &VersionRoute {
        match (slot, &self.canary) {
            (Slot::Canary, Some(canary)) => canary,
            _ => &self.stable,
        }
    }
}

/// Prefix match on a segment boundary: `/api` matches `/api`, `/api/x` and
/// `/api?q` but not `/apix`; a prefix ending in `/` matches whatever follows.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

/// The host name of a `Host` header or `:authority`: port removed, IPv6
/// literals kept in brackets.
pub(crate) fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Services written as `name hosts(comma-separated, * for any) prefix`
    /// lines, each with one stable endpoint.
    fn config(spec: &str) -> Config {
        let mut config = Config {
            listeners: vec![],
            admin: Default::default(),
            store: String::new(),
            proxy: Default::default(),
            services: vec![],
            providers: Default::default(),
            breakers: Default::default(),
            flags: Default::default(),
            notifications: Vec::new(),
        };
        for line in spec.lines().filter(|l| !l.trim().is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            config.services.push(Service {
                name: parts[0].to_string(),
                route: sluice_model::RouteMatch {
                    hosts: parts[1]
                        .split(',')
                        .filter(|h| *h != "*")
                        .map(str::to_string)
                        .collect(),
                    path_prefix: parts[2].to_string(),
                },
                versions: sluice_model::Versions {
                    stable: sluice_model::Version {
                        endpoints: vec!["127.0.0.1:1".into()],
                    },
                    canary: None,
                },
                balance: Default::default(),
                routing: Default::default(),
                rollout: None,
                breaker: None,
                upstream_tls: None,
            });
        }
        config
    }

    #[test]
    fn host_then_longest_prefix_wins() {
        let table = RouteTable::build(
            &config(
                "root * /
                 api * /api
                 api-v2 * /api/v2/
                 shop Shop.Example.com /",
            ),
            &HashMap::new(),
            &Metrics::new(),
        );
        let name =
            |host: Option<&str>, path: &str| table.route(host, path).map(|r| r.name.as_str());
        assert_eq!(name(Some("x"), "/"), Some("root"));
        assert_eq!(name(Some("x"), "/api"), Some("api"));
        assert_eq!(name(Some("x"), "/api/users"), Some("api"));
        assert_eq!(name(Some("x"), "/apis"), Some("root"));
        assert_eq!(name(Some("x"), "/api/v2/x"), Some("api-v2"));
        assert_eq!(name(Some("shop.EXAMPLE.com"), "/api"), Some("shop"));
        assert_eq!(name(None, "/api"), Some("api"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let table = RouteTable::build(&config("a a.test /a"), &HashMap::new(), &Metrics::new());
        assert!(table.route(Some("a.test"), "/b").is_none());
        assert!(table.route(Some("b.test"), "/a").is_none());
        assert!(table.route(None, "/a").is_none());
        assert!(table.route(Some("A.TEST"), "/a/b").is_some());
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }

    #[test]
    fn missing_routing_means_config_pools_at_weight_zero() {
        let mut cfg = config("web * /");
        cfg.services[0].versions.canary = Some(sluice_model::Version {
            endpoints: vec!["127.0.0.1:2".into()],
        });
        let metrics = Metrics::new();
        let table = RouteTable::build(&cfg, &HashMap::new(), &metrics);
        let route = table.route(None, "/").unwrap();
        assert_eq!(route.canary_weight, 0);
        assert_eq!(
            route.version(Slot::Canary).pool.endpoints()[0].address,
            "127.0.0.1:2"
        );

        let routing = HashMap::from([(
            "web".to_string(),
            ServiceRouting {
                stable: vec!["127.0.0.1:3".into()],
                canary: None,
                canary_weight: Weight::FULL,
                match_active: false,
                cohort: None,
                mirror_active: false,
                unavailable: None,
            },
        )]);
        let table2 = RouteTable::build(&cfg, &routing, &metrics);
        let route2 = table2.route(None, "/").unwrap();
        assert_eq!(route2.version(Slot::Canary).slot, Slot::Stable);
        assert_eq!(table2.canary_weight("web"), Some(Weight::FULL));
        // Endpoint state is shared while both tables are alive.
        let again = RouteTable::build(&cfg, &HashMap::new(), &metrics);
        assert!(Arc::ptr_eq(
            &again.route(None, "/").unwrap().stable.pool.endpoints()[0],
            &route.stable.pool.endpoints()[0],
        ));
    }
}
