//! Where the state lives: the `store` field, either a file path (the
//! embedded store) or `etcd://host:port[,host:port…][/prefix][?lease_ttl=SECONDS]`
//! (cluster mode). Parsing only; opening it is the server's.

use std::time::Duration;

/// The key prefix when an etcd URL names none.
pub const DEFAULT_ETCD_PREFIX: &str = "/sluice/";
/// The leader's lease when the URL does not say.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// A parsed `store` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store in this file.
    File(String),
    /// Cluster mode: the state in etcd.
    Etcd(EtcdLocation),
}

/// An etcd cluster and where sluice's keys live in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdLocation {
    /// `host:port` of each member, tried in order (at least one).
    pub endpoints: Vec<String>,
    /// Every key sluice writes starts with it; begins and ends with `/`.
    pub prefix: String,
    /// The leader's lease: a leader that cannot renew it for this long stops
    /// deciding, and another node may take over (1 to 60 seconds).
    pub lease_ttl: Duration,
}

impl StoreLocation {
    /// Parses a `store` value; the error says which rule broke.
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "must name a file for the embedded store or etcd://host:port for cluster mode"
                    .into(),
            );
        }
        let Some(rest) = text.strip_prefix("etcd://") else {
            if text.contains("://") {
                return Err(format!(
                    "{text:?}: only etcd:// URLs are supported (or a file path for the embedded store)"
                ));
            }
            return Ok(StoreLocation::File(text.to_string()));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (hosts, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let Some((name, port)) = host.rsplit_once(':') else {
                return Err(format!("etcd endpoint {host:?} needs a port (host:2379)"));
            };
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!(
                    "etcd endpoint {host:?} is not host:port with a port from 1 to 65535"
                ));
            }
            endpoints.push(host.to_string());
        }
        let prefix = match prefix.trim_matches('/') {
            "" => DEFAULT_ETCD_PREFIX.to_string(),
            inner => format!("/{inner}/"),
        };
        let mut lease_ttl = DEFAULT_LEASE_TTL;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("lease_ttl", value)) => {
                    let seconds = value
                        .trim_end_matches('s')
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (1..=60).contains(s))
                        .ok_or_else(|| {
                            format!("lease_ttl={value:?}: use whole seconds from 1 to 60")
                        })?;
                    lease_ttl = Duration::from_secs(seconds);
                }
                _ => {
                    return Err(format!(
                        "unknown etcd option {pair:?} (known: lease_ttl=SECONDS)"
                    ))
                }
            }
        }
        Ok(StoreLocation::Etcd(EtcdLocation {
            endpoints,
            prefix,
            lease_ttl,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_the_embedded_store() {
        assert_eq!(
            StoreLocation::parse("data/sluice.db"),
            Ok(StoreLocation::File("data/sluice.db".into()))
        );
    }

    #[test]
    fn an_etcd_url_names_members_prefix_and_lease() {
        let StoreLocation::Etcd(etcd) =
            StoreLocation::parse("etcd://a:2379,b:2379/team/web?lease_ttl=3").unwrap()
        else {
            panic!("not etcd")
        };
        assert_eq!(etcd.endpoints, vec!["a:2379", "b:2379"]);
        assert_eq!(etcd.prefix, "/team/web/");
        assert_eq!(etcd.lease_ttl, Duration::from_secs(3));
        let StoreLocation::Etcd(plain) = StoreLocation::parse("etcd://127.0.0.1:2379").unwrap()
        else {
            panic!("not etcd")
        };
        assert_eq!(plain.prefix, DEFAULT_ETCD_PREFIX);
        assert_eq!(plain.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, says) in [
            ("etcd://", "needs a port"),
            ("etcd://host", "needs a port"),
            ("etcd://host:0", "port from 1 to 65535"),
            ("etcd://host:2379?lease_ttl=0", "from 1 to 60"),
            ("etcd://host:2379?tls=1", "unknown etcd option"),
            ("redis://host:1", "only etcd://"),
            (" ", "must name a file"),
        ] {
            let error = StoreLocation::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
