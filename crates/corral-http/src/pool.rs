//! A pool of peers (feature `pool`): many corral processes share the work of
//! caching, and each URL is fetched and stored by exactly one of them, its owner on
//! a consistent-hash ring. What Go's forwardcache and groupcache do, plus what they
//! lack: authenticated peer traffic, loop prevention, failover when a peer is down,
//! membership changed at runtime, and an optional hot-key cache on non-owners.
//!
//! - [`Route`] (from [`Pool::route_layer`]) goes in front of a peer's local
//!   [`HttpCache`](crate::HttpCache): requests this process owns go to it, others to
//!   their owner, and peer requests from other processes are authenticated and
//!   served locally.
//! - [`PoolClient`] (from [`Pool::client`]) sends each request to its owner, for
//!   applications that use the pool without being a peer.
//!
//! ```no_run
//! use corral_http::HttpCache;
//! use corral_http::pool::Pool;
//! use tower::Layer;
//!
//! # fn origin_client() -> tower::util::BoxCloneSyncService<http::Request<corral_http::Body>, http::Response<corral_http::Body>, corral_http::BoxError> { unimplemented!() }
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder()
//!     .self_url("http://10.0.0.1:8080")
//!     .peers(["http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"])
//!     .secret(std::env::var("CORRAL_PEER_SECRET")?)
//!     .build()?;
//! let cache = HttpCache::builder().service(origin_client())?;
//! let service = pool.route_layer()?.layer(cache); // serve this with hyper or axum
//! # let _ = service; Ok(()) }
//! ```
//!
//! # The wire
//!
//! A request for `url` owned by `peer` goes to `<peer>/_corral/peer?url=<url,
//! percent-encoded>` with its method, headers (hop-by-hop ones removed) and body,
//! plus `X-Corral-Peer-Secret: <secret>`. The owner refuses a missing or wrong
//! secret with a 403 (so the endpoint is not an open fetcher), strips the header,
//! and serves the request locally: a request that was forwarded once is never
//! forwarded again, even when two peers disagree on the ring. (Only the secret
//! makes a request a forwarded one: no header a client can send does.) The owner marks its answer with `X-Corral-Peer: 1` (an answer without it,
//! such as a refusal by a peer with another secret, counts as the peer being
//! unavailable); apart from that mark and hop-by-hop fields, the owner's response
//! comes back as it was sent.
//!
//! Whoever holds the secret can make a peer fetch any URL its local service will
//! fetch: the proxy applies its allow-list to peer requests as to any other; a
//! `Route` in front of a service of your own should sit behind one too.
//!
//! # Failures
//!
//! A peer that cannot be reached, resets the connection or does not answer within
//! the peer timeout is marked unhealthy for a while ([`PoolBuilder::unhealthy_for`])
//! and its requests are served locally (by `Route`) or by the next peer on the ring
//! (by `PoolClient`); then it is tried again. Only a bodiless request of a safe
//! method (GET, HEAD, OPTIONS, TRACE) is sent again elsewhere; any other that already
//! went out gets a 502, since the failed peer may have acted on it.
//!
//! # Metrics
//!
//! `corral_pool_requests_total{route}` with `route` = `local` | `peer` | `fallback`
//! | `accepted` | `refused`, `corral_pool_peer_failures_total`, and the gauge
//! `corral_pool_peers`.

mod accept;
mod forward;
mod pool_client;
mod ring;
mod route;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response, request};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

pub use accept::PeerRefusal;
pub use forward::PeerUnavailable;
pub use pool_client::PoolClient;
pub use ring::{DEFAULT_VNODES, Ring};
pub use route::{Route, RouteLayer};

use crate::body::{Body, BoxError};

/// The path of the peer endpoint.
pub const PEER_PATH: &str = "/_corral/peer";
/// The header carrying the pool's shared secret.
pub const SECRET_HEADER: HeaderName = HeaderName::from_static("x-corral-peer-secret");
/// Marks a pool member's answer to a peer request (a response without it, such as
/// a refusal or a stranger's answer, counts as the peer being unavailable).
pub const PEER_HEADER: HeaderName = HeaderName::from_static("x-corral-peer");

/// The default time to connect to a peer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time a peer may take to send its response's head: longer than an
/// `HttpCache`'s default fetch timeout (30 s), so that a slow origin behind a
/// healthy owner reaches the client as the owner's 504, not as a dead peer.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(40);
/// The default time a failed peer is left alone.
pub const DEFAULT_UNHEALTHY_FOR: Duration = Duration::from_secs(5);

/// An HTTP client as the pool uses it.
pub type PeerClientService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// A pool's configuration errors, and the errors of its client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A peer's base URL is not a plain `http(s)://host[:port][/path]`.
    #[error("invalid peer {peer:?}: {reason}")]
    InvalidPeer {
        /// The URL given.
        peer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No shared secret (or an empty one, or one that is not visible ASCII).
    #[error(
        "a pool needs a shared secret of visible ASCII characters (peers refuse requests without it)"
    )]
    InvalidSecret,
    /// Another option is invalid.
    #[error("invalid pool option: {0}")]
    InvalidOption(String),
    /// The hot cache's options are invalid.
    #[error("invalid hot cache: {0}")]
    HotCache(#[from] corral::ConfigError),
    /// A `PoolClient` request without an absolute `http(s)` URL.
    #[error("the pool needs absolute http:// or https:// URLs, not {0:?}")]
    NotAbsolute(String),
    /// A `PoolClient` request with no peer to send it to.
    #[error("no peer in the pool could serve {url}")]
    NoPeer {
        /// The request's URL.
        url: String,
    },
}

/// A peer as the pool sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// Its base URL (normal form).
    pub url: String,
    /// Whether this process is that peer.
    pub is_self: bool,
    /// False while it is left alone after a failure.
    pub healthy: bool,
}

/// The members of a pool, their health, and how to reach them. Cheap to clone;
/// clones share the ring, so [`set_peers`](Self::set_peers) changes it for all.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    this: Option<Arc<str>>,
    ring: ArcSwap<Ring>,
    vnodes: usize,
    secret: HeaderValue,
    client: PeerClientService,
    peer_timeout: Duration,
    unhealthy_for: Duration,
    /// Peers left alone, until when.
    unhealthy: Mutex<HashMap<Arc<str>, Instant>>,
    hot: Option<(u64, Duration)>,
}

impl Pool {
    /// Starts building a pool; see [`PoolBuilder`] for the options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Replaces the members (the ring is swapped at once: requests in flight finish
    /// with the ring they started with).
    pub fn set_peers<I, S>(&self, peers: I) -> Result<(), PoolError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let peers = peers
            .into_iter()
            .map(|p| normalize_peer(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(this) = &self.inner.this
            && !peers.iter().any(|p| p == &**this)
        {
            tracing::warn!(%this, "this process is not among the pool's peers: it owns no URLs");
        }
        let ring = Ring::new(peers, self.inner.vnodes);
        metrics::gauge!("corral_pool_peers").set(ring.len() as f64);
        tracing::info!(peers = ?ring.peers().collect::<Vec<_>>(), "pool membership set");
        self.inner.ring.store(Arc::new(ring));
        Ok(())
    }

    /// The members, with their health.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let ring = self.inner.ring.load();
        ring.peers()
            .map(|peer| PeerStatus {
                url: peer.to_owned(),
                is_self: self.is_self(peer),
                healthy: self.is_healthy(peer),
            })
            .collect()
    }

    /// The owner of `url` (an absolute URL), healthy or not.
    pub fn owner(&self, url: &str) -> Option<String> {
        self.inner
            .ring
            .load()
            .owner(&ring_key(url))
            .map(str::to_owned)
    }

    /// A layer that routes requests to their owners; see [`Route`].
    pub fn route_layer(&self) -> Result<RouteLayer, PoolError> {
        RouteLayer::new(self.clone())
    }

    /// A client that sends each request to its owner; see [`PoolClient`].
    pub fn client(&self) -> PoolClient {
        PoolClient::new(self.clone())
    }

    /// Whether `request` is for this member's peer endpoint: its path is the peer
    /// path, and it is addressed here (no authority, or this member's own) or
    /// carries the secret. (A forward proxy's client may ask for a URL with that
    /// path on any other site.)
    pub fn is_peer_request<B>(&self, request: &Request<B>) -> bool {
        let uri = request.uri();
        if uri.path() != PEER_PATH {
            return false;
        }
        if request.headers().contains_key(SECRET_HEADER) {
            return true;
        }
        match (&self.inner.this, uri.authority()) {
            (Some(this), Some(authority)) => {
                let scheme = uri.scheme_str().unwrap_or("http");
                normalize_peer(&format!("{scheme}://{authority}")).is_ok_and(|u| *u == **this)
            }
            _ => true,
        }
    }

    /// The local request a peer request stands for (its URL, method, headers and
    /// body, marked as forwarded), or why it is refused: 403 without the shared
    /// secret, 400 without a valid `url`.
    pub fn accept<B>(&self, request: Request<B>) -> Result<Request<B>, PeerRefusal> {
        accept::accept(&self.inner.secret, request)
    }

    fn is_self(&self, peer: &str) -> bool {
        self.inner.this.as_deref() == Some(peer)
    }

    fn is_healthy(&self, peer: &str) -> bool {
        let mut unhealthy = self
            .inner
            .unhealthy
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match unhealthy.get(peer) {
            Some(until) if Instant::now() < *until => false,
            Some(_) => {
                unhealthy.remove(peer);
                true
            }
            None => true,
        }
    }

    /// The owner of `url` when it is another, healthy process.
    fn owner_elsewhere(&self, url: &str) -> Option<Arc<str>> {
        let ring = self.inner.ring.load();
        let owner = ring.owner(&ring_key(url))?;
        (!self.is_self(owner) && self.is_healthy(owner)).then(|| Arc::from(owner))
    }

    /// The healthy peers for `url`, owner first (all of them, if none is healthy).
    fn candidates(&self, url: &str) -> Vec<Arc<str>> {
        let ring = self.inner.ring.load();
        let order = ring.successors(&ring_key(url));
        let healthy: Vec<Arc<str>> = order
            .iter()
            .filter(|p| self.is_healthy(p))
            .map(|p| Arc::from(*p))
            .collect();
        if healthy.is_empty() {
            order.into_iter().map(Arc::from).collect()
        } else {
            healthy
        }
    }

    fn mark_down(&self, peer: &str, reason: &str) {
        let until = Instant::now() + self.inner.unhealthy_for;
        let mut unhealthy = self
            .inner
            .unhealthy
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if unhealthy.insert(Arc::from(peer), until).is_none() {
            tracing::warn!(peer, reason, for_ = ?self.inner.unhealthy_for, "peer unavailable; serving its requests elsewhere");
        }
        metrics::counter!("corral_pool_peer_failures_total").increment(1);
    }

    fn mark_up(&self, peer: &str) {
        let mut unhealthy = self
            .inner
            .unhealthy
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if unhealthy.remove(peer).is_some() {
            tracing::info!(peer, "peer answering again");
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("self", &self.inner.this)
            .field("peers", &self.peers())
            .finish_non_exhaustive()
    }
}

/// Marks `response` as this pool member's answer to a peer request it accepted
/// (`Route` does it; a server that calls [`Pool::accept`] itself must too).
pub fn mark_peer_answer<B>(response: &mut Response<B>) {
    response
        .headers_mut()
        .insert(PEER_HEADER, HeaderValue::from_static("1"));
}

/// The absolute URL a request is for: its scheme, its `Host` (or URI authority),
/// path and query; `None` without a host.
pub fn request_url(parts: &request::Parts) -> Option<String> {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("{scheme}://{host}{path}"))
}

/// What the ring hashes for a URL: scheme and host lowercased (clients that spell
/// the host differently reach the same owner).
pub(crate) fn ring_key(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (host, path) = rest.split_at(host_end);
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        }
        None => url.to_owned(),
    }
}

/// A peer's base URL in normal form: `scheme://host[:port][/path]`, lowercased, no
/// default port, no trailing slash.
pub(crate) fn normalize_peer(peer: &str) -> Result<String, PoolError> {
    let invalid = |reason: &str| PoolError::InvalidPeer {
        peer: peer.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(peer.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("a base URL has no query, fragment or credentials"));
    }
    Ok(format!(
        "{}{}",
        url.origin().ascii_serialization(),
        url.path().trim_end_matches('/')
    ))
}

/// Options of a [`Pool`]; only the secret is required.
#[derive(Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder {
    this: Option<String>,
    peers: Vec<String>,
    secret: Option<String>,
    vnodes: Option<usize>,
    connect_timeout: Option<Duration>,
    peer_timeout: Option<Duration>,
    unhealthy_for: Option<Duration>,
    client: Option<PeerClientService>,
    hot: Option<(u64, Duration)>,
}

impl PoolBuilder {
    /// This process's base URL, as its peers list it [default: none: a client of the
    /// pool, owning nothing].
    pub fn self_url(mut self, url: impl Into<String>) -> Self {
        self.this = Some(url.into());
        self
    }

    /// The members' base URLs [default: none; see [`Pool::set_peers`]].
    pub fn peers<I, S>(mut self, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.peers = peers.into_iter().map(Into::into).collect();
        self
    }

    /// The shared secret every peer request carries and every peer checks (required).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Points per peer on the ring [default: [`DEFAULT_VNODES`]]. Every peer must use
    /// the same number.
    pub fn vnodes(mut self, vnodes: usize) -> Self {
        self.vnodes = Some(vnodes);
        self
    }

    /// The built-in client's time to connect to a peer [default: 1 s].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a peer may take to send its response's head before it counts as
    /// down [default: 40 s; keep it above the owners' fetch timeout].
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = Some(timeout);
        self
    }

    /// How long a failed peer is left alone before it is tried again [default: 5 s;
    /// at most a day].
    pub fn unhealthy_for(mut self, duration: Duration) -> Self {
        self.unhealthy_for = Some(duration);
        self
    }

    /// The client that talks to peers [default: the built-in pooled HTTP/1.1 and
    /// HTTP/2 client, with rustls for `https://` peers].
    pub fn client<S>(mut self, client: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        self.client = Some(BoxCloneSyncService::new(client.map_err(Into::into)));
        self
    }

    /// Lets a non-owner keep copies of the responses it got through their owners, in
    /// an RFC 9111 cache of `max_bytes` whose copies live at most `max_keep` (what
    /// groupcache calls the hot cache: the memory bound and its frequency-based
    /// admission keep the hot keys) [default: off].
    pub fn hot_cache(mut self, max_bytes: u64, max_keep: Duration) -> Self {
        self.hot = Some((max_bytes, max_keep));
        self
    }

    /// The pool, or the first invalid option.
    pub fn build(self) -> Result<Pool, PoolError> {
        let secret = self
            .secret
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .and_then(|s| HeaderValue::from_str(&s).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .ok_or(PoolError::InvalidSecret)?;
        let this = self.this.as_deref().map(normalize_peer).transpose()?;
        let durations = [self.connect_timeout, self.peer_timeout, self.unhealthy_for];
        if durations.iter().flatten().any(Duration::is_zero) {
            return Err(PoolError::InvalidOption(
                "timeouts and unhealthy_for must be longer than zero".into(),
            ));
        }
        if self
            .unhealthy_for
            .is_some_and(|d| d > Duration::from_secs(24 * 3600))
        {
            return Err(PoolError::InvalidOption(
                "unhealthy_for must be at most a day".into(),
            ));
        }
        if self.vnodes == Some(0) {
            return Err(PoolError::InvalidOption("vnodes must be at least 1".into()));
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                let client = crate::client::https_client(timeout)
                    .map_err(|e| PoolError::InvalidOption(e.to_string()))?;
                BoxCloneSyncService::new(
                    client
                        .map_response(|r| r.map(Body::streaming))
                        .map_err(BoxError::from),
                )
            }
        };
        let pool = Pool {
            inner: Arc::new(Inner {
                this: this.map(Arc::from),
                ring: ArcSwap::from_pointee(Ring::new(Vec::<String>::new(), 1)),
                vnodes: self.vnodes.unwrap_or(DEFAULT_VNODES),
                secret,
                client,
                peer_timeout: self.peer_timeout.unwrap_or(DEFAULT_PEER_TIMEOUT),
                unhealthy_for: self.unhealthy_for.unwrap_or(DEFAULT_UNHEALTHY_FOR),
                unhealthy: Mutex::new(HashMap::new()),
                hot: self.hot,
            }),
        };
        pool.set_peers(&self.peers)?;
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_normalized_and_checked() {
        assert_eq!(
            normalize_peer("HTTP://Node-1.internal:80/").unwrap(),
            "http://node-1.internal"
        );
        assert_eq!(
            normalize_peer("https://n2:8443/cache/").unwrap(),
            "https://n2:8443/cache"
        );
        for bad in ["ftp://x", "not a url", "http://x/?q=1", "http://u:p@x/"] {
            assert!(normalize_peer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_keys_ignore_the_case_of_scheme_and_host_only() {
        assert_eq!(ring_key("HTTP://Example.COM/A?B"), "http://example.com/A?B");
        assert_eq!(ring_key("http://h:8080"), "http://h:8080");
    }

    #[tokio::test]
    async fn a_pool_needs_a_secret() {
        assert!(matches!(
            Pool::builder().build(),
            Err(PoolError::InvalidSecret)
        ));
        assert!(matches!(
            Pool::builder().secret("").build(),
            Err(PoolError::InvalidSecret)
        ));
        assert!(matches!(
            Pool::builder().secret("s").peers(["gopher://x"]).build(),
            Err(PoolError::InvalidPeer { .. })
        ));
    }
}
