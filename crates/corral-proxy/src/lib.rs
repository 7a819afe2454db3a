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
//! - `server`: HTTP/1.1 and HTTP/2 for clients, plain or TLS (`tls`, `sniff`), limits,
//!   graceful shutdown; `live`: the running configuration and its reload.
//! - `admin`: metrics, health, purge, stats, reload, the pool's members, and the live
//!   status page (`status`, reading the server's `traffic`: responses and `hot_keys`).
//! - A pool of peers (`peers`, `peer-secret`): [`corral_http::pool`]'s `Route` in
//!   front of the cache, peer requests accepted in [`proxy`].
//! - [`access_log`], [`telemetry`]: logs, metrics and (feature `otel`) the request
//!   spans exported over OTLP.
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
mod idle;
mod limit;
mod live;
pub mod proxy;
mod purge;
mod refusal;
mod server;
mod sniff;
mod status;
mod target;
pub mod telemetry;
mod tls;
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
pub use live::{ReloadError, Reloaded};
pub use proxy::ProxyError;
pub use tls::TlsError;

use crate::access_log::AccessLog;
use crate::config::Loaded;
use crate::dial::Listeners;
use crate::limit::Limit;
use crate::live::Live;
use crate::proxy::{Foundation, Peers};
use crate::server::Listener;
use crate::tls::{Certificates, Tls};

/// A proxy whose listeners are bound: ready to [`serve`](Bound::serve).
pub struct Bound {
    listener: TcpListener,
    /// `tls-listen`'s listener.
    tls_listener: Option<TcpListener>,
    /// Whether `listener` or `tls_listener` speaks TLS.
    tls: Option<Tls>,
    admin: Option<(TcpListener, axum::Router)>,
    live: Arc<Live>,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("live", &self.live)
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
        let tls = Certificates::load(&config)?.map(Tls::new);
        let listen = |addr, what| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Listen { addr, what, source })
        };
        let listener = listen(config.listen, "").await?;
        let tls_listener = match config.tls_listen {
            Some(addr) => Some(listen(addr, " (TLS)").await?),
            None => None,
        };
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
                .chain(&tls_listener)
                .chain(&admin_listener)
                .map(server::bound),
        );
        let cache = proxy::cache_layer(&config)?;
        let foundation = Foundation {
            peers: Peers::new(&config, &self_url, &cache)?,
            cache,
            listeners,
            in_flight: Arc::new(Limit::new(config.max_upstream_connections)),
            pseudonym: forwarded::random_pseudonym(),
        };
        let access_log = AccessLog::stderr(config.log_format).map_err(ProxyError::AccessLog)?;
        let tiers = status::Tiers::of(&config);
        let live = Arc::new(Live::new(config, foundation, tls.clone(), access_log)?);
        let ready = Arc::new(AtomicBool::new(true));
        let admin = admin_listener.map(|listener| {
            let router = admin::router(Arc::new(admin::Admin {
                live: live.clone(),
                ready: ready.clone(),
                started: Instant::now(),
                tiers,
            }));
            (listener, router)
        });
        Ok(Bound {
            listener,
            tls_listener,
            tls,
            admin,
            live,
            ready,
        })
    }

    /// Writes the access log (when `access-log` is on) to `log` instead of stderr:
    /// for a program that embeds the proxy and keeps its own logs.
    pub fn log_access_to(self, log: AccessLog) -> Bound {
        self.live.log_access_to(log);
        self
    }

    /// Lets the proxy reload its configuration (on [`Reloader::reload`], and the admin
    /// API's `POST /reload`) by calling `source` again: usually what loaded it first,
    /// such as [`cli::Options::load`].
    pub fn reload_from(
        self,
        source: impl Fn() -> Result<Loaded, ConfigError> + Send + Sync + 'static,
    ) -> Bound {
        self.live.reload_from(Box::new(source));
        self
    }

    /// A handle that reloads the configuration (see [`reload_from`](Self::reload_from)).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            live: self.live.clone(),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        server::bound(&self.listener)
    }

    /// Where the proxy speaks TLS, if it does: `tls-listen`, or `listen` when only
    /// `tls-cert` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref()?;
        Some(
            self.tls_listener
                .as_ref()
                .map_or_else(|| self.addr(), server::bound),
        )
    }

    /// Where the admin API listens, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(l, _)| server::bound(l))
    }

    /// What this proxy is, for the startup line.
    pub fn describe(&self) -> String {
        self.live.current().config.describe()
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
        let (ready, live) = (self.ready.clone(), self.live.clone());
        let (drain_until, deadline) = tokio::sync::oneshot::channel();
        let shutdown = async move {
            shutdown.await;
            ready.store(false, Ordering::Release);
            let grace = live.current().config.shutdown_grace;
            let _ = drain_until.send(tokio::time::Instant::now() + grace);
        };
        // With `tls-listen`, `listen` stays plain.
        let listeners = match self.tls_listener {
            Some(tls_listener) => (
                Listener {
                    tcp: self.listener,
                    tls: None,
                },
                Some(Listener {
                    tcp: tls_listener,
                    tls: self.tls,
                }),
            ),
            None => (
                Listener {
                    tcp: self.listener,
                    tls: self.tls,
                },
                None,
            ),
        };
        server::serve(listeners, self.live.clone(), shutdown).await;
        if let Some(log) = &self.live.current().access_log {
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

/// Reloads a running proxy's configuration; from [`Bound::reloader`].
#[derive(Debug, Clone)]
pub struct Reloader {
    live: Arc<Live>,
}

impl Reloader {
    /// Reads the configuration again and, if it is valid, runs it for new requests
    /// (requests in flight finish as they started; the cache keeps its contents);
    /// if it is not, nothing changes. See [`Reloaded`] for what needs a restart.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.live.reload().await
    }
}

/// Reads and checks the files `config` names (TLS certificates and keys) as `serve`
/// would: what `corral check-config` checks beyond the options themselves.
pub fn check_files(config: &Config) -> Result<(), ProxyError> {
    Certificates::load(config)?;
    Ok(())
}
