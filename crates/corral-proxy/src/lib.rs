//! The `corral` caching proxy: a forward or reverse HTTP proxy whose core is
//! [`corral_http::HttpCache`] (shared RFC 9111 policy, request collapsing,
//! stale-while-revalidate, stale-if-error) in front of a pooled origin client, with an
//! optional Redis tier shared by many proxies.
//!
//! # Tour
//!
//! - [`config`]: the options, from defaults, a TOML file, `CORRAL_*` environment
//!   variables and flags, with the same names everywhere.
//! - [`allow`]: a forward proxy's allow-list (hosts, globs, CIDRs), enforced again at
//!   DNS resolution.
//! - [`proxy`]: one request: its target, the headers a proxy changes, the cache,
//!   `CONNECT` tunnels.
//! - `upstream`: the origin client (HTTP/1.1 and HTTP/2, rustls, timeouts, a bound on
//!   requests in flight).
//! - `server`: HTTP/1.1 and h2c for clients, limits, graceful shutdown.
//! - `admin`: metrics, health, purge, stats, the pool's members, and the live status
//!   page (`status`, reading the server's `traffic`: responses and `hot_keys`).
//! - A pool of peers (`peers`, `peer-secret`): [`corral_http::pool`]'s `Route` in
//!   front of the cache, peer requests accepted in [`proxy`].
//! - [`access_log`], [`telemetry`]: logs and metrics.
//!
//! The `corral` binary is a thin shell over [`Bound`]: bind, then serve until a
//! shutdown signal.

#![forbid(unsafe_code)]

pub mod access_log;
mod admin;
pub mod allow;
pub mod cli;
pub mod config;
mod dial;
mod forwarded;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hot_keys;
pub mod proxy;
mod purge;
mod refusal;
mod server;
mod status;
mod target;
pub mod telemetry;
mod traffic;
mod tunnel;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
pub use forwarded::InvalidPseudonym;
pub use proxy::ProxyError;

use crate::access_log::AccessLog;
use crate::allow::AllowList;
use crate::dial::Listeners;
use crate::proxy::Proxy;

/// A proxy whose listeners are bound: ready to [`serve`](Bound::serve).
pub struct Bound {
    config: Config,
    listener: TcpListener,
    admin: Option<(TcpListener, axum::Router)>,
    proxy: Arc<Proxy>,
    ready: Arc<AtomicBool>,
    access_log: Option<AccessLog>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("config", &self.config)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// Checks the configuration, builds the proxy and binds its listeners.
    pub async fn bind(config: Config) -> Result<Bound, ProxyError> {
        config.check()?;
        // Before the cache is built, so its metrics record into the exporter.
        telemetry::prometheus();
        let allow = Arc::new(AllowList::parse(&config.allow).map_err(ConfigError::from)?);
        let listen = |addr, what| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Listen { addr, what, source })
        };
        let listener = listen(config.listen, "").await?;
        let admin_listener = if config.admin {
            Some(listen(config.admin_listen, " (admin)").await?)
        } else {
            None
        };
        let self_url = match &config.peer_self {
            Some(url) => url.clone(),
            None => format!("http://{}", server::bound(&listener)),
        };
        let listeners = Listeners::new(
            std::iter::once(&listener)
                .chain(&admin_listener)
                .map(server::bound),
        );
        let proxy = Arc::new(Proxy::new(&config, allow, listeners, &self_url)?);
        let ready = Arc::new(AtomicBool::new(true));
        let admin = if let Some(listener) = admin_listener {
            let router = admin::router(Arc::new(admin::Admin {
                cache: proxy.cache(),
                keys: proxy.mode(),
                pool: proxy.pool().cloned(),
                token: config.admin_token.clone(),
                ready: ready.clone(),
                started: Instant::now(),
                mode: describe(&config),
                traffic: proxy.traffic().clone(),
                tiers: status::Tiers::of(&config),
            }));
            Some((listener, router))
        } else {
            None
        };
        let access_log = if config.access_log {
            Some(AccessLog::stderr(config.log_format).map_err(ProxyError::AccessLog)?)
        } else {
            None
        };
        Ok(Bound {
            config,
            listener,
            admin,
            proxy,
            ready,
            access_log,
        })
    }

    /// Writes the access log (when `access-log` is on) to `log` instead of stderr:
    /// for a program that embeds the proxy and keeps its own logs.
    pub fn log_access_to(mut self, log: AccessLog) -> Bound {
        if self.access_log.is_some() {
            self.access_log = Some(log);
        }
        self
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        server::bound(&self.listener)
    }

    /// Where the admin API listens, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(l, _)| server::bound(l))
    }

    /// What this proxy is, for the startup line.
    pub fn describe(&self) -> String {
        describe(&self.config)
    }

    /// Serves until `shutdown` completes; then stops accepting, reports not ready, and
    /// lets requests in flight finish within the grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProxyError> {
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.map(|(listener, router)| {
            tokio::spawn(async move {
                let stopped = async {
                    let _ = admin_stopped.await;
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        });
        let ready = self.ready.clone();
        let grace = self.config.shutdown_grace;
        let (drain_until, deadline) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            shutdown.await;
            ready.store(false, Ordering::Release);
            let _ = drain_until.send(tokio::time::Instant::now() + grace);
        };
        let access_log = self.access_log.clone();
        server::serve(
            self.listener,
            self.proxy,
            &self.config,
            self.access_log,
            shutdown,
        )
        .await;
        if let Some(log) = access_log {
            log.flush();
        }
        // The admin API answered throughout the drain (`/readyz`: 503); it stops now,
        // its own requests in flight cut off when the grace period is over.
        let _ = stop_admin.send(());
        if let Some(mut admin) = admin {
            let deadline = deadline
                .await
                .unwrap_or_else(|_| tokio::time::Instant::now());
            match tokio::time::timeout_at(deadline, &mut admin).await {
                Ok(finished) => finished??,
                Err(_) => {
                    tracing::warn!("grace period over; closing the admin API's connections");
                    admin.abort();
                }
            }
        }
        Ok(())
    }
}

fn describe(config: &Config) -> String {
    match &config.upstream {
        Some(upstream) => format!("reverse proxy for {upstream}"),
        None => "forward proxy".to_owned(),
    }
}
