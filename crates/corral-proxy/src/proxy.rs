//! One request through the proxy: a loop (a request whose `Via` names this proxy) is
//! a `508`; a `CONNECT` is tunnelled; any other request gets the fields a proxy must
//! change (hop-by-hop fields, `X-Forwarded-For`, `Via`), then goes down the stack:
//! the pool's [`Route`] (with peers), the `Target` step (its target URL, the
//! allow-list), the HTTP cache, the origin client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use corral_http::pool::{Pool, Route, RouteLayer};
use corral_http::{Body, BoxError, HttpCache, HttpCacheLayer, Policy};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, request};
use hyper::body::Incoming;
use tower::{Layer, ServiceExt};

use crate::allow::AllowList;
use crate::config::{Config, ConfigError};
use crate::dial::Listeners;
use crate::forwarded::{Forwarding, client_ip};
use crate::limit::Limit;
use crate::refusal::{Refusal, refuse};
use crate::target::{Mode, Target};
use crate::tunnel::Tunnels;
use crate::upstream::Upstream;

/// Why the proxy could not be built, bound or served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The upstream's host cannot be a `Host` field.
    #[error("the upstream's host is not a valid Host")]
    UpstreamHost,
    /// The origin client cannot be set up (TLS, `upstream-ca-file`).
    #[error("cannot set up the origin client: {0}")]
    OriginClient(BoxError),
    /// The cache or its Redis tier refuses its options.
    #[error("cannot build the cache: {0}")]
    Cache(#[from] corral::ConfigError),
    /// The pool of peers refuses its options.
    #[error("cannot build the pool of peers: {0}")]
    Pool(#[from] corral_http::pool::PoolError),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// `""` for the proxy, `" (TLS)"` for `tls-listen`, `" (admin)"` for the admin
        /// API.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The admin API stopped with an error.
    #[error("the admin API failed: {0}")]
    Admin(#[from] std::io::Error),
    /// The admin API's task panicked.
    #[error("the admin task failed: {0}")]
    AdminTask(#[from] tokio::task::JoinError),
    /// The TLS certificates cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The access log's writer thread cannot be started.
    #[error("cannot start the access log: {0}")]
    AccessLog(#[source] std::io::Error),
}

/// The services a request goes through, with or without a pool of peers.
enum Stack {
    Alone(Target<HttpCache<Upstream>>),
    Pooled(Route<Target<HttpCache<Upstream>>>),
}

/// The proxy's request handling, shared by all connections.
pub struct Proxy {
    stack: Stack,
    pool: Option<Pool>,
    /// Where requests go (a reverse proxy tunnels nothing).
    mode: Arc<Mode>,
    tunnels: Tunnels,
    forwarding: Forwarding,
    /// Clients whose forwarding fields are believed.
    trusted: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("pool", &self.pool)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Who sent a request, as the proxy tells the origin: made once per connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its address, as an `X-Forwarded-For` value.
    forwarded_for: HeaderValue,
    /// Its address, to tell whether its own forwarding fields are believed.
    ip: std::net::IpAddr,
}

impl Client {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            forwarded_for: client_ip(addr),
            ip: addr.ip().to_canonical(),
        }
    }
}

/// The cache the proxy keeps across reloads: its memory, disk and Redis tiers, built
/// once from `config`.
pub(crate) fn cache_layer(config: &Config) -> Result<HttpCacheLayer, ProxyError> {
    let builder = HttpCache::builder()
        .policy(Policy::Rfc9111 { shared: true })
        .max_bytes(config.max_bytes.0)
        .max_body_bytes(usize::try_from(config.max_body_bytes.0).unwrap_or(usize::MAX))
        .fetch_timeout(config.fetch_timeout)
        .stale_on_disconnect(config.stale_on_disconnect)
        .normalize_vary(config.normalize_vary)
        .cache_status_headers(config.cache_status_headers)
        .targeted_cache_control(config.targeted_fields()?);
    let builder = match config.early_refresh {
        Some(beta) => builder.early_refresh(beta),
        None => builder,
    };
    let builder = match &config.disk {
        Some(path) => builder.disk_tier(
            corral::disk::DiskTier::new(path, config.disk_size.0)
                .max_entry_bytes(config.max_disk_body.0),
        ),
        None => builder,
    };
    let builder = match &config.redis_url {
        Some(url) => builder.redis(
            corral::redis::RedisTier::builder(url.clone())
                .prefix(config.redis_prefix.clone())
                .build()?,
        ),
        None => builder,
    };
    Ok(builder.layer()?)
}

/// The pool of peers, kept across reloads (a reload sets its members), with the layer
/// that routes requests to their owners (and keeps the hot cache).
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) pool: Pool,
    route: RouteLayer,
}

impl Peers {
    /// The pool `peer-secret` turns on, if it does; `self_url` is this proxy's base
    /// URL in it, and `cache` the cache its purges reach.
    pub(crate) fn new(
        config: &Config,
        self_url: &str,
        cache: &HttpCacheLayer,
    ) -> Result<Option<Peers>, ProxyError> {
        let Some(secret) = &config.peer_secret else {
            return Ok(None);
        };
        let mut pool = Pool::builder()
            .self_url(self_url)
            .peers(config.peers.iter().cloned())
            .secret(secret.clone())
            .connect_timeout(config.connect_timeout)
            .peer_timeout(config.peer_timeout);
        if config.peer_hot_cache.0 > 0 {
            pool = pool.hot_cache(config.peer_hot_cache.0, config.peer_hot_ttl);
        }
        let pool = pool.build()?;
        let route = pool.route_layer()?.purges(cache.handle());
        Ok(Some(Peers { pool, route }))
    }
}

/// What a proxy is built around, which a reload keeps: the cache, the pool, the
/// addresses it listens on (never fetched from by a forward proxy), the bound on
/// requests to origins, and its `Via` name when `via` is not set (one per proxy).
#[derive(Debug)]
pub(crate) struct Foundation {
    pub(crate) cache: HttpCacheLayer,
    pub(crate) peers: Option<Peers>,
    pub(crate) listeners: Listeners,
    pub(crate) in_flight: Arc<Limit>,
    pub(crate) pseudonym: String,
}

impl Proxy {
    /// The proxy for `config` around `foundation`; a reload builds a new one around
    /// the same foundation.
    pub(crate) fn new(config: &Config, foundation: &Foundation) -> Result<Proxy, ProxyError> {
        let Foundation {
            cache,
            peers,
            listeners,
            in_flight,
            pseudonym,
        } = foundation;
        let allow = Arc::new(AllowList::parse(&config.allow).map_err(ConfigError::from)?);
        let mode =
            Mode::new(config.origin()?, config.host).map_err(|_| ProxyError::UpstreamHost)?;
        // A reverse proxy's origin is the operator's choice, and an origin that leads
        // back here is a loop that `Via` catches (with a 508 that says so).
        let listeners = Arc::new(match mode {
            Mode::Forward => listeners.clone(),
            Mode::Reverse { .. } => Listeners::default(),
        });
        let pseudonym = config.via.as_deref().unwrap_or(pseudonym);
        let forwarding = Forwarding::new(Some(pseudonym)).map_err(ConfigError::from)?;
        // A forward proxy's client named the origin; a reverse proxy's is not told it.
        let names_origins = matches!(mode, Mode::Forward);
        let upstream = Upstream::new(
            config,
            allow.clone(),
            listeners.clone(),
            (forwarding.clone(), names_origins),
            in_flight.clone(),
        )
        .map_err(ProxyError::OriginClient)?;
        let cached = cache.layer(upstream);
        let mode = Arc::new(mode);
        let target = Target::new(cached, mode.clone(), allow.clone());
        let stack = match peers {
            Some(peers) => {
                // Routed by the URL each request will have once pointed at its
                // target, so that every member sends a resource to one owner.
                let route_mode = mode.clone();
                let route = peers
                    .route
                    .clone()
                    .key(move |parts| route_mode.target_url(parts))
                    .layer(target);
                Stack::Pooled(route)
            }
            None => Stack::Alone(target),
        };
        Ok(Proxy {
            stack,
            pool: peers.as_ref().map(|peers| peers.pool.clone()),
            mode,
            tunnels: Tunnels {
                allow,
                listeners,
                connect_timeout: config.connect_timeout,
            },
            forwarding,
            trusted: config.trusted_networks()?,
        })
    }

    /// Whether `client` is one of `trusted-proxies`, whose forwarding fields (and
    /// trace context) are believed.
    pub(crate) fn trusts(&self, client: &Client) -> bool {
        self.trusted.iter().any(|net| net.contains(&client.ip))
    }

    /// The pool of peers, if there is one.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// Where requests go: how a client's URL maps to a cache key.
    pub(crate) fn mode(&self) -> Arc<Mode> {
        self.mode.clone()
    }

    /// Answers one request from `client`.
    pub async fn handle(&self, request: Request<Incoming>, client: &Client) -> Response<Body> {
        if self.forwarding.is_loop(request.headers()) {
            tracing::warn!(uri = %request.uri(), "a request came back to this proxy: loop");
            return refuse(
                StatusCode::LOOP_DETECTED,
                "this request already passed through this proxy (its Via names it): a loop",
            );
        }
        if request.method() == Method::CONNECT {
            if matches!(*self.mode, Mode::Reverse { .. }) {
                return refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "a reverse proxy does not tunnel",
                );
            }
            return self.tunnels.open(request).await;
        }
        let (mut parts, body) = request.into_parts();
        if let Err(refusal) = one_host(&parts) {
            return refusal.response();
        }
        // A peer of the pool is trusted as a proxy in front of this one is.
        let from_peer = self
            .pool
            .as_ref()
            .is_some_and(|pool| pool.authenticates(&parts));
        self.forwarding.prepare_request(
            &mut parts.headers,
            &client.forwarded_for,
            from_peer || self.trusts(client),
        );
        // The origin connection speaks its own version (HTTP/2 where configured or
        // offered by ALPN), whatever the client spoke.
        parts.version = http::Version::HTTP_11;
        let body = if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::from_client(body)
        };
        let request = Request::from_parts(parts, body);
        let response: Result<_, Infallible> = match &self.stack {
            Stack::Alone(target) => target.clone().oneshot(request).await,
            Stack::Pooled(route) => route.clone().oneshot(request).await,
        };
        match response {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A request names one host: more than one `Host` line (RFC 9112 §3.2), a `Host` that
/// is not a `host[:port]`, or an HTTP/2 `Host` that differs from `:authority` (RFC
/// 9113 §8.3.1), is a 400 (the cache key and the origin could each read a different
/// one).
fn one_host(parts: &request::Parts) -> Result<(), Refusal> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal(StatusCode::BAD_REQUEST, "more than one Host"));
    }
    if host.is_some_and(|h| !h.to_str().is_ok_and(corral_http::is_host)) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "the Host is not a host[:port]",
        ));
    }
    if let (http::Version::HTTP_2, Some(host), Some(authority)) =
        (parts.version, host, parts.uri.authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "Host and :authority name different hosts",
        ));
    }
    Ok(())
}
