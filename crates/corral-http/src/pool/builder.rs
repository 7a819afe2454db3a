//! `PoolBuilder`: a pool's options, checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use super::error::PoolError;
use super::members::{Inner, PeerClientService, Pool, normalize_peer};
use super::ring::{DEFAULT_VNODES, Ring};
use crate::body::{Body, BoxError};

/// The default time to connect to a peer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time a peer may take to send its response's head: longer than an
/// `HttpCache`'s default fetch timeout (30 s), so that a slow origin behind a
/// healthy owner reaches the client as the owner's 504, not as a dead peer.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(40);
/// The default time a failed peer is left alone.
pub const DEFAULT_UNHEALTHY_FOR: Duration = Duration::from_secs(5);

impl Pool {
    /// Starts building a pool; see [`PoolBuilder`] for the options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
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

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("self_url", &self.this)
            .field("peers", &self.peers)
            .field("vnodes", &self.vnodes)
            .field("peer_timeout", &self.peer_timeout)
            .field("hot_cache", &self.hot)
            .finish_non_exhaustive()
    }
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
                hot_caches: Default::default(),
            }),
        };
        pool.set_peers(&self.peers)?;
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
