//! Where the state lives: the `store` field, either a file path (the
//! embedded store) or an etcd URL (cluster mode):
//! `etcd://host:port[,host:port…][/prefix][?option=value&…]`, or
//! `etcds://…` for TLS. Options: `lease_ttl`, the TLS files `ca`, `cert`,
//! `key`, `server_name`, and authentication `user` with `password_env` or
//! `password_file` (a password is never written in the config).
//! Parsing only; reading the files and opening the store is the server's.

use std::path::PathBuf;
use std::time::Duration;

/// The key prefix when an etcd URL names none.
pub const DEFAULT_ETCD_PREFIX: &str = "/sluice/";
/// The leader's lease when the URL does not say.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The options an etcd URL may carry, for error messages.
const KNOWN_OPTIONS: &str =
    "lease_ttl, ca, cert, key, server_name (etcds:// only), user, password_env, password_file";

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
    /// TLS to every member (`etcds://`); None = plain HTTP (`etcd://`).
    pub tls: Option<EtcdTls>,
    /// etcd's user authentication; None = etcd's auth is off.
    pub auth: Option<EtcdAuth>,
}

/// How to reach etcd over TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA certificates to trust (`ca=`); None = the public
    /// web roots built into sluice.
    pub ca: Option<PathBuf>,
    /// PEM file of this node's client certificate chain (`cert=`), for etcd's
    /// `--client-cert-auth`; always together with `key`.
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (`key=`).
    pub key: Option<PathBuf>,
    /// The name the members' certificates are checked against
    /// (`server_name=`); None = each endpoint's host.
    pub server_name: Option<String>,
}

/// A user of etcd's authentication (`/v3/auth/authenticate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdAuth {
    /// The etcd user (`user=`).
    pub user: String,
    /// Where the password is read when the store is opened.
    pub password: PasswordSource,
}

/// Where a secret is read from: never the config itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// This environment variable (`password_env=`).
    Env(String),
    /// The first line of this file (`password_file=`).
    File(PathBuf),
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
        let (rest, tls) = if let Some(rest) = text.strip_prefix("etcd://") {
            (rest, false)
        } else if let Some(rest) = text.strip_prefix("etcds://") {
            (rest, true)
        } else {
            if text.contains("://") {
                return Err(format!(
                    "{text:?}: only etcd:// and etcds:// (TLS) URLs are supported (or a file path for the embedded store)"
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
        let options = Options::parse(query.unwrap_or(""), tls)?;
        Ok(StoreLocation::Etcd(EtcdLocation {
            endpoints,
            prefix,
            lease_ttl: options.lease_ttl,
            tls: options.tls,
            auth: options.auth,
        }))
    }
}

/// The query of an etcd URL, checked option by option.
struct Options {
    lease_ttl: Duration,
    tls: Option<EtcdTls>,
    auth: Option<EtcdAuth>,
}

// === impl Options ===

impl Options {
    fn parse(query: &str, tls: bool) -> Result<Options, String> {
        let mut lease_ttl = DEFAULT_LEASE_TTL;
        let mut files = EtcdTls::default();
        let (mut user, mut password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.trim();
            let needs_tls = matches!(name, "ca" | "cert" | "key" | "server_name");
            if needs_tls && !tls {
                return Err(format!(
                    "option {name}= is for TLS: write the URL as etcds://… to reach etcd over TLS"
                ));
            }
            if value.is_empty() && name != "password" {
                return Err(format!("option {name}= needs a value"));
            }
            match name {
                "lease_ttl" => {
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
                "ca" => files.ca = Some(PathBuf::from(value)),
                "cert" => files.cert = Some(PathBuf::from(value)),
                "key" => files.key = Some(PathBuf::from(value)),
                "server_name" => files.server_name = Some(value.to_string()),
                "user" => user = Some(value.to_string()),
                "password_env" => {
                    set_once(&mut password, PasswordSource::Env(value.to_string()))?
                }
                "password_file" => {
                    set_once(&mut password, PasswordSource::File(PathBuf::from(value)))?
                }
                "password" => {
                    return Err(
                        "option password= would keep the password in the config: name where to read it with password_env=VARIABLE or password_file=PATH"
                            .into(),
                    )
                }
                _ => return Err(format!("unknown etcd option {pair:?} (known: {KNOWN_OPTIONS})")),
            }
        }
        if files.cert.is_some() != files.key.is_some() {
            return Err(
                "options cert= and key= go together (the client certificate and its private key)"
                    .into(),
            );
        }
        let auth = match (user, password) {
            (Some(user), Some(password)) => Some(EtcdAuth { user, password }),
            (None, None) => None,
            (Some(user), None) => {
                return Err(format!(
                    "user={user:?} needs password_env=VARIABLE or password_file=PATH"
                ))
            }
            (None, Some(_)) => return Err("password_env= and password_file= need user=NAME".into()),
        };
        Ok(Options {
            lease_ttl,
            tls: tls.then_some(files),
            auth,
        })
    }
}

fn set_once(slot: &mut Option<PasswordSource>, source: PasswordSource) -> Result<(), String> {
    if slot.replace(source).is_some() {
        return Err("use one of password_env= and password_file=, not both".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(text: &str) -> EtcdLocation {
        match StoreLocation::parse(text) {
            Ok(StoreLocation::Etcd(etcd)) => etcd,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_path_is_the_embedded_store() {
        assert_eq!(
            StoreLocation::parse("data/sluice.db"),
            Ok(StoreLocation::File("data/sluice.db".into()))
        );
    }

    #[test]
    fn an_etcd_url_names_members_prefix_and_lease() {
        let etcd = etcd("etcd://a:2379,b:2379/team/web?lease_ttl=3");
        assert_eq!(etcd.endpoints, vec!["a:2379", "b:2379"]);
        assert_eq!(etcd.prefix, "/team/web/");
        assert_eq!(etcd.lease_ttl, Duration::from_secs(3));
        assert_eq!((etcd.tls, etcd.auth), (None, None));
        let plain = self::etcd("etcd://127.0.0.1:2379");
        assert_eq!(plain.prefix, DEFAULT_ETCD_PREFIX);
        assert_eq!(plain.lease_ttl, DEFAULT_LEASE_TTL);
    }

    #[test]
    fn an_etcds_url_names_the_tls_files_and_the_user() {
        let etcd = etcd(
            "etcds://a:2379,b:2379/sluice?ca=/etc/sluice/ca.pem&cert=/etc/sluice/node.pem\
             &key=/etc/sluice/node-key.pem&server_name=etcd.internal&user=sluice&password_env=ETCD_PASSWORD",
        );
        assert_eq!(etcd.prefix, "/sluice/");
        assert_eq!(
            etcd.tls,
            Some(EtcdTls {
                ca: Some("/etc/sluice/ca.pem".into()),
                cert: Some("/etc/sluice/node.pem".into()),
                key: Some("/etc/sluice/node-key.pem".into()),
                server_name: Some("etcd.internal".into()),
            })
        );
        assert_eq!(
            etcd.auth,
            Some(EtcdAuth {
                user: "sluice".into(),
                password: PasswordSource::Env("ETCD_PASSWORD".into()),
            })
        );
        // TLS with the built-in roots, and auth over plain HTTP.
        assert_eq!(self::etcd("etcds://a:2379").tls, Some(EtcdTls::default()));
        let file = self::etcd("etcd://a:2379?user=u&password_file=/run/secrets/etcd");
        assert_eq!(
            file.auth.map(|a| a.password),
            Some(PasswordSource::File("/run/secrets/etcd".into()))
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, says) in [
            ("etcd://", "needs a port"),
            ("etcd://host", "needs a port"),
            ("etcd://host:0", "port from 1 to 65535"),
            ("etcd://host:2379?lease_ttl=0", "from 1 to 60"),
            ("etcd://host:2379?tls=1", "unknown etcd option \"tls=1\""),
            (
                "etcd://host:2379?ca=/ca.pem",
                "ca= is for TLS: write the URL as etcds://",
            ),
            ("etcds://host:2379?ca=", "ca= needs a value"),
            (
                "etcds://host:2379?cert=/c.pem",
                "cert= and key= go together",
            ),
            (
                "etcd://host:2379?user=u",
                "needs password_env=VARIABLE or password_file=PATH",
            ),
            ("etcd://host:2379?password_env=P", "need user=NAME"),
            (
                "etcd://host:2379?user=u&password=hunter2",
                "would keep the password in the config",
            ),
            (
                "etcd://host:2379?user=u&password_env=P&password_file=/p",
                "not both",
            ),
            ("redis://host:1", "only etcd:// and etcds://"),
            (" ", "must name a file"),
        ] {
            let error = StoreLocation::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{text}: {error}");
        }
    }
}
