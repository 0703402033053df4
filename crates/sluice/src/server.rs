//! `sluice run`: loads the config, opens the store, starts the controller,
//! the proxy listeners and the admin API, then serves until SIGTERM/Ctrl-C
//! (draining in-flight requests) and reloads the config on SIGHUP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sluice_model::StoreLocation;
use sluice_model::{Config, ConfigError, FieldError};
use sluice_proxy::{Metrics, Proxy, RouteTable};
use sluice_store::{EtcdStore, FileStore, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin;
use crate::cluster::{FleetCounters, Leadership, Node};
use crate::controller::Controller;
use crate::flags::{FlagError, FlagServer};

/// How long in-flight requests may take to finish at shutdown, unless
/// `sluice run --drain-timeout` says otherwise.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// How long a new process waits for the store file beyond the old process's
/// drain time (a restart: the old one holds the file until it exits).
const STORE_WAIT_MARGIN: Duration = Duration::from_secs(10);

/// How often TLS certificate and key files are looked at for a change.
const CERT_POLL: Duration = Duration::from_secs(2);

/// Reads, parses and validates a config file, then reads its secrets and
/// admin tokens from where they are named (`crate::secrets`).
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config = Config::from_yaml(&text)?;
    crate::secrets::prepare(&mut config).map_err(ConfigError::Invalid)?;
    // The upstream TLS files are read now, so that a bad one refuses the
    // config (a reload keeps the old one) instead of emptying a pool.
    let unusable = sluice_proxy::check_upstream_tls(&config);
    if !unusable.is_empty() {
        return Err(ConfigError::Invalid(unusable).into());
    }
    Ok(config)
}

/// Outcomes of config reloads, for `/metrics`.
#[derive(Default)]
pub struct ReloadCounters {
    pub success: AtomicU64,
    pub failure: AtomicU64,
}

/// A running sluice: where it listens and how to stop it.
pub struct Running {
    pub proxy_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// `https` when the admin API serves TLS.
    pub admin_scheme: &'static str,
    pub controller: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    pub reloads: Arc<ReloadCounters>,
    pub flags: Arc<FlagServer>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    drain: Duration,
}

/// Starts everything; `source` is the file a reload re-reads, `drain` how
/// long in-flight requests may take at shutdown.
pub async fn start(
    config: Config,
    source: Option<PathBuf>,
    flag_files: &[PathBuf],
    drain: Duration,
) -> anyhow::Result<Running> {
    let admin_address = config.admin.address;
    let access = Arc::new(admin::Access::new(&config.admin));
    if !admin_address.ip().is_loopback() && !access.protected() {
        bail!(
            "refusing to serve the admin API on {admin_address} without a token: anyone who reaches it could \
             move production traffic. Set SLUICE_ADMIN_TOKEN (or admin.tokens), or bind it to 127.0.0.1"
        );
    }
    let location =
        StoreLocation::parse(&config.store).map_err(|why| anyhow::anyhow!("store: {why}"))?;
    let (store, etcd): (Arc<dyn Store>, _) = match &location {
        StoreLocation::File(path) => (
            Arc::new(
                open_file_store(Path::new(path), drain + STORE_WAIT_MARGIN)
                    .await
                    .with_context(|| format!("cannot open the store {path:?}"))?,
            ),
            None,
        ),
        StoreLocation::Etcd(etcd) => {
            let store = EtcdStore::open(etcd)
                .with_context(|| format!("cannot open the store {:?}", config.store))?;
            let security = store.security();
            (Arc::new(store), Some((etcd.clone(), security)))
        }
    };
    let fleet = Arc::new(FleetCounters::default());
    let leadership = Arc::new(match &etcd {
        Some(_) => Leadership::follower(),
        None => Leadership::single(),
    });
    let flags =
        FlagServer::start(&config.flags, flag_files, store.clone()).map_err(|e| match e {
            FlagError::Invalid(errors) => anyhow::anyhow!(
                "the feature flags are invalid:\n{}",
                errors
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            other => anyhow::anyhow!(other),
        })?;
    let metrics = Metrics::new();
    metrics.set_latency_buckets(&config.proxy.latency_buckets);
    metrics
        .breakers()
        .set_env_override(breakers_env(std::env::var("SLUICE_BREAKERS_ENABLED").ok())?);
    let table = RouteTable::build(&config, &HashMap::new(), &metrics);
    let proxy = Proxy::new(&config.proxy, table, metrics.clone());
    let config = Arc::new(config);
    let controller = Controller::start_with(
        config.clone(),
        store.clone(),
        proxy.clone(),
        metrics.clone(),
        flags.clone(),
        leadership.clone(),
        etcd.as_ref().map(|_| fleet.clone()),
    )
    .await?;

    // Policies replaced through the API before this start (or by another node).
    if let Err(e) =
        crate::breaker_store::sync_from_store(store.clone(), metrics.breakers(), &config.breakers)
            .await
    {
        tracing::warn!("cannot serve the stored breaker policies: {e}");
    }

    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(announce_breakers(
        metrics.breakers().subscribe(),
        controller.clone(),
        shutdown.subscribe(),
    )));
    let mut inherited = crate::listen::Inherited::from_env()?;
    let mut proxy_addrs = Vec::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let socket = inherited
            .listen(listener.address)
            .await
            .with_context(|| format!("listeners[{i}]: cannot listen on {}", listener.address))?;
        proxy_addrs.push(socket.local_addr()?);
        let tls = match &listener.tls {
            Some(tls) => Some(
                watched_cert(tls, &shutdown, &mut tasks)
                    .with_context(|| format!("listeners[{i}].tls"))?,
            ),
            None => None,
        };
        let stop = wait_for(shutdown.subscribe());
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = proxy.serve(socket, tls, stop, drain).await {
                tracing::error!("proxy listener stopped: {e}");
            }
        }));
    }

    let ready = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(ReloadCounters::default());
    let admin_socket = inherited
        .listen(admin_address)
        .await
        .with_context(|| format!("admin.address: cannot listen on {admin_address}"))?;
    for address in inherited.unused() {
        tracing::warn!(%address, "an inherited listening socket matches no listener nor admin.address; unused");
    }
    let admin_addr = admin_socket.local_addr()?;
    let cluster = etcd.map(|(etcd, security)| {
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&*config)
                .unwrap_or_default()
                .hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        Arc::new(Node::new(
            &etcd,
            security,
            admin_addr.to_string(),
            digest,
            store.clone(),
            ready.clone(),
            leadership.clone(),
            fleet.clone(),
        ))
    });
    if let Some(node) = &cluster {
        tasks.push(tokio::spawn(
            node.clone().run(controller.clone(), shutdown.subscribe()),
        ));
    }
    let router = admin::router(admin::AdminState {
        controller: controller.clone(),
        ready: ready.clone(),
        access,
        config_source: source,
        reloads: reloads.clone(),
        flags: flags.clone(),
        cluster: cluster.clone(),
    });
    // Always: a reload may name files the start-up config did not.
    tasks.push(tokio::spawn(
        flags
            .clone()
            .watch(config.flags.watch_interval, shutdown.subscribe()),
    ));
    let stop = wait_for(shutdown.subscribe());
    let admin_tls = match &config.admin.tls {
        Some(tls) => Some(watched_cert(tls, &shutdown, &mut tasks).context("admin.tls")?),
        None => None,
    };
    let admin_scheme = if admin_tls.is_some() { "https" } else { "http" };
    tasks.push(tokio::spawn(async move {
        match admin_tls {
            Some(acceptor) => {
                admin::listener::serve_tls(admin_socket, router, acceptor, stop).await
            }
            None => {
                if let Err(e) = axum::serve(admin_socket, router)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!("admin API stopped: {e}");
                }
            }
        }
    }));
    if cluster.is_none() {
        // In cluster mode the node is ready once it has read the stored state.
        ready.store(true, Ordering::SeqCst);
    }
    Ok(Running {
        flags,
        proxy_addrs,
        admin_addr,
        admin_scheme,
        controller,
        metrics,
        reloads,
        ready,
        shutdown,
        tasks,
        drain,
    })
}

/// Opens the store file, waiting up to `wait` while another sluice holds it
/// (during a restart the old process keeps it until it has drained).
async fn open_file_store(path: &Path, wait: Duration) -> Result<FileStore, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match FileStore::open(path) {
            Err(StoreError::InUse { .. }) if tokio::time::Instant::now() < deadline => {
                if !said {
                    tracing::info!(
                        store = %path.display(),
                        ?wait,
                        "the store is in use by another sluice (a restart?); waiting for it"
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}

/// `SLUICE_BREAKERS_ENABLED`: the global breaker switch, winning over the file.
fn breakers_env(value: Option<String>) -> anyhow::Result<Option<bool>> {
    let Some(value) = value else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => bail!("SLUICE_BREAKERS_ENABLED={value:?}: use true or false"),
    }
}

/// Hands every breaker transition to the notifier in force.
async fn announce_breakers(
    mut transitions: tokio::sync::broadcast::Receiver<sluice_proxy::TransitionRecord>,
    controller: Arc<Controller>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let record = tokio::select! {
            record = transitions.recv() => record,
            _ = stop.changed() => return,
        };
        match record {
            Ok(record) => controller
                .notifier()
                .notify(crate::notify::Notice::Breaker {
                    breaker: record.breaker,
                    service: record.service,
                    version: record.version,
                    from: record.from.as_str().to_string(),
                    to: record.to.as_str().to_string(),
                    reason: if record.shadow {
                        format!("{} (shadow mode: nothing rejected)", record.reason)
                    } else {
                        record.reason
                    },
                    at: sluice_model::Timestamp::from_millis(record.at),
                }),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "breaker transitions not notified (too many at once)"
                )
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// A TLS acceptor whose certificate is re-read when its files change
/// (looked at every `CERT_POLL` until shutdown).
fn watched_cert(
    files: &sluice_model::TlsConfig,
    shutdown: &watch::Sender<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<sluice_proxy::TlsAcceptor> {
    let cert = sluice_proxy::ServerCert::load(files)?;
    let acceptor = cert.acceptor()?;
    tasks.push(tokio::spawn(
        cert.watch(CERT_POLL, wait_for(shutdown.subscribe())),
    ));
    Ok(acceptor)
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Running {
    /// Stops accepting, reports not-ready, and waits for in-flight requests (bounded).
    pub async fn stop(self) {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let all = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(self.drain + Duration::from_secs(1), all).await;
    }
}

/// Re-reads the config file and applies it; on any error the old config keeps serving.
pub async fn reload(
    controller: &Controller,
    flags: &FlagServer,
    source: &Path,
    counters: &ReloadCounters,
) -> anyhow::Result<()> {
    let result = async {
        let config = load_config(source)?;
        let old = controller.config();
        if config.listeners != old.listeners
            || config.admin != old.admin
            || config.store != old.store
        {
            tracing::warn!("listeners, admin and store changes take effect at the next restart");
        }
        // Flags first: a refused flag change refuses the whole reload.
        flags
            .reconfigure(&config.flags)
            .await
            .map_err(|e| match e {
                FlagError::Invalid(errors) => anyhow::Error::new(ConfigError::Invalid(
                    errors
                        .into_iter()
                        .map(|e| FieldError {
                            path: format!("flags: {}", e.path),
                            message: e.message,
                        })
                        .collect(),
                )),
                other => anyhow::anyhow!(other),
            })?;
        let buckets = config.proxy.latency_buckets.clone();
        controller.reconfigure(Arc::new(config)).await?;
        controller.metrics().set_latency_buckets(&buckets);
        anyhow::Ok(())
    }
    .await;
    match &result {
        Ok(()) => {
            counters.success.fetch_add(1, Ordering::Relaxed);
            tracing::info!("config reloaded from {}", source.display());
        }
        Err(e) => {
            counters.failure.fetch_add(1, Ordering::Relaxed);
            tracing::error!("config reload refused, the previous config keeps serving: {e:#}");
        }
    }
    result
}

/// What `sluice run` was asked to serve.
pub struct RunOptions {
    /// The config file; None with `--flags` alone (a standalone flag server).
    pub config: Option<PathBuf>,
    /// flagd flag files (`--flags`, repeatable).
    pub flag_files: Vec<PathBuf>,
    /// Overrides `admin.address`.
    pub admin: Option<SocketAddr>,
    /// `--log-format`.
    pub log_format: crate::logging::LogFormat,
    /// `--drain-timeout`: how long in-flight requests may take at shutdown.
    pub drain: Duration,
}

/// `sluice run -c FILE [--flags FILE]... [--admin ADDR]`.
pub async fn run(options: RunOptions) -> anyhow::Result<ExitCode> {
    crate::logging::init(options.log_format);
    let mut config = match &options.config {
        Some(path) => load_config(path)
            .with_context(|| format!("{} is not a valid config", path.display()))?,
        None => {
            let mut config = Config::from_yaml("{}")?;
            crate::secrets::prepare(&mut config).map_err(ConfigError::Invalid)?;
            config
        }
    };
    if let Some(admin) = options.admin {
        config.admin.address = admin;
    }
    let serves_flags = !options.flag_files.is_empty()
        || !config.flags.files.is_empty()
        || !config.flags.definitions.flags.is_empty();
    if config.listeners.is_empty() && !serves_flags {
        bail!(
            "{}: listeners: at least one listener is needed to serve traffic (or --flags FILE to serve flags only)",
            options
                .config
                .as_deref()
                .map_or("the config".into(), |p| p.display().to_string())
        );
    }
    // Before anything is announced: a SIGHUP's default action would end the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let running = start(
        config,
        options.config.clone(),
        &options.flag_files,
        options.drain,
    )
    .await?;
    let announce = |message: &str| crate::logging::announce(options.log_format, message);
    for addr in &running.proxy_addrs {
        announce(&format!("sluice: proxy listening on http://{addr}"));
    }
    announce(&format!(
        "sluice: admin API on {1}://{0} (metrics: {1}://{0}/metrics)",
        running.admin_addr, running.admin_scheme
    ));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                match &options.config {
                    Some(path) => {
                        let _ = reload(&running.controller, &running.flags, path, &running.reloads).await;
                    }
                    None => running.flags.poll_files().await,
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    announce("sluice: shutting down, draining in-flight requests");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (for commands that only stop on either).
pub async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::breakers_env;

    #[test]
    fn the_breaker_switch_reads_booleans_and_names_a_bad_value() {
        assert_eq!(breakers_env(None).unwrap(), None);
        assert_eq!(breakers_env(Some("false".into())).unwrap(), Some(false));
        assert_eq!(breakers_env(Some(" TRUE ".into())).unwrap(), Some(true));
        let error = breakers_env(Some("maybe".into())).unwrap_err().to_string();
        assert!(
            error.contains("SLUICE_BREAKERS_ENABLED=\"maybe\""),
            "{error}"
        );
    }
}
