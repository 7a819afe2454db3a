//! The running configuration, and reloading it without a restart (SIGHUP, or the admin
//! API's `POST /reload`).
//!
//! A reload reads the configuration again from where it came from (the file, the
//! environment, the flags), checks it, builds a new [`Proxy`] around the same cache
//! and pool, reads the TLS certificates again, and only once all of that succeeded
//! makes it current: each new request (on new connections and open ones alike) uses
//! it, while requests in flight finish with the one they started with, and the cache
//! keeps its contents. What configures a connection itself (`header-read-timeout`,
//! `idle-timeout`, `send-timeout`, `max-header-bytes`) applies to connections accepted
//! from then on.
//! The new proxy has an origin client of its own (connections to origins are opened
//! afresh), under the same bound on requests in flight. If anything fails, nothing changes. The options in
//! [`RESTART_ONLY`](crate::config::RESTART_ONLY) keep their running value and are
//! reported as needing a restart.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::access_log::AccessLog;
use crate::config::{Config, ConfigError, Loaded};
use crate::limit::Limit;
use crate::proxy::{Foundation, Proxy, ProxyError};
use crate::tls::{Certificates, Tls};
use crate::traffic::Traffic;

/// Where a reload reads the configuration from.
pub(crate) type Source = Box<dyn Fn() -> Result<Loaded, ConfigError> + Send + Sync>;

/// What one configuration runs: each request takes the current one.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) config: Config,
    pub(crate) proxy: Arc<Proxy>,
    /// Where access lines go, when `access-log` is on.
    pub(crate) access_log: Option<AccessLog>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// The options changed in the file that keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was built from a configuration, not from a source it can re-read.
    #[error("this proxy was not started from a configuration it can read again")]
    NoSource,
    /// The new configuration is refused.
    #[error(transparent)]
    Refused(#[from] ProxyError),
}

impl From<ConfigError> for ReloadError {
    fn from(error: ConfigError) -> Self {
        ReloadError::Refused(error.into())
    }
}

/// The running configuration and what outlives it.
pub(crate) struct Live {
    current: ArcSwap<Generation>,
    foundation: Foundation,
    tls: Option<Tls>,
    /// What the server answered (the status page's rates and hottest keys).
    pub(crate) traffic: Traffic,
    /// Client connections at once (`max-connections`), resized by reloads.
    pub(crate) connections: Limit,
    /// Where access lines go while `access-log` is on.
    access_log: ArcSwap<AccessLog>,
    source: OnceLock<Source>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("current", &self.current.load())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// `config` running, with what outlives reloads.
    pub(crate) fn new(
        config: Config,
        foundation: Foundation,
        tls: Option<Tls>,
        access_log: AccessLog,
    ) -> Result<Live, ProxyError> {
        let proxy = Proxy::new(&config, &foundation)?;
        let generation = Generation {
            access_log: config.access_log.then(|| access_log.clone()),
            proxy: Arc::new(proxy),
            config,
        };
        Ok(Live {
            connections: Limit::new(generation.config.max_connections),
            current: ArcSwap::from_pointee(generation),
            traffic: Traffic::new(),
            foundation,
            tls,
            access_log: ArcSwap::from_pointee(access_log),
            source: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration running now, and its proxy.
    pub(crate) fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// The pool of peers, if there is one.
    pub(crate) fn pool(&self) -> Option<&corral_http::pool::Pool> {
        self.foundation.peers.as_ref().map(|peers| &peers.pool)
    }

    /// A handle on the cache (purges, statistics).
    pub(crate) fn cache(&self) -> corral_http::CacheHandle {
        self.foundation.cache.handle()
    }

    /// Reloads read the configuration from `source` (once; later calls are ignored).
    pub(crate) fn reload_from(&self, source: Source) {
        let _ = self.source.set(source);
    }

    /// Access lines go to `log` from now on.
    pub(crate) fn log_access_to(&self, log: AccessLog) {
        self.access_log.store(Arc::new(log.clone()));
        self.current.rcu(|current| Generation {
            config: current.config.clone(),
            proxy: current.proxy.clone(),
            access_log: current.config.access_log.then(|| log.clone()),
        });
    }

    /// Reads the configuration again and, if it is valid, runs it.
    pub(crate) async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let source = self.source.get().ok_or(ReloadError::NoSource)?;
        let _one = self.reloading.lock().await;
        let loaded = source()?;
        let running = self.current();
        let (config, needs_restart) = loaded.config.reloaded_over(&running.config)?;
        let certificates = match self.tls {
            Some(_) => Certificates::load(&config).map_err(ProxyError::from)?,
            None => None,
        };
        let proxy = Proxy::new(&config, &self.foundation)?;
        // Checked; from here on nothing fails but the pool's new members, set first.
        if let Some(peers) = &self.foundation.peers
            && config.peers != running.config.peers
        {
            peers
                .pool
                .set_peers(&config.peers)
                .map_err(ProxyError::from)?;
        }
        if let (Some(tls), Some(certificates)) = (&self.tls, certificates) {
            tls.replace(certificates);
        }
        self.connections
            .resize(running.config.max_connections, config.max_connections);
        self.foundation.in_flight.resize(
            running.config.max_upstream_connections,
            config.max_upstream_connections,
        );
        let access_log = AccessLog::clone(&self.access_log.load());
        access_log.set_format(config.log_format);
        crate::telemetry::set_log_format(config.log_format);
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        self.current.store(Arc::new(Generation {
            access_log: config.access_log.then_some(access_log),
            proxy: Arc::new(proxy),
            config,
        }));
        if needs_restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                needs_restart = ?needs_restart,
                "configuration reloaded; these options keep their running value until a restart"
            );
        }
        Ok(Reloaded { needs_restart })
    }
}
