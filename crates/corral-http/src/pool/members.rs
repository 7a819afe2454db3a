//! `Pool`: the members on their ring, their health, and how to reach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{Request, Response};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;

use super::error::PoolError;
use super::ring::Ring;
use crate::body::{Body, BoxError};
use crate::handle::CacheHandle;

/// An HTTP client as the pool uses it.
pub type PeerClientService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) this: Option<Arc<str>>,
    pub(super) ring: ArcSwap<Ring>,
    pub(super) vnodes: usize,
    pub(super) secret: HeaderValue,
    pub(super) client: PeerClientService,
    pub(super) peer_timeout: Duration,
    pub(super) unhealthy_for: Duration,
    /// Peers left alone, until when.
    pub(super) unhealthy: Mutex<HashMap<Arc<str>, Instant>>,
    pub(super) hot: Option<(u64, Duration)>,
    /// The hot caches of this pool's route layers, which purges reach too.
    pub(super) hot_caches: Mutex<Vec<CacheHandle>>,
}

impl Pool {
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

    pub(super) fn is_self(&self, peer: &str) -> bool {
        self.inner.this.as_deref() == Some(peer)
    }

    pub(super) fn is_healthy(&self, peer: &str) -> bool {
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

    /// Who serves `url` when it is another process: its owner, or while the owner is
    /// down the next healthy member on the ring (its successor), so that every
    /// member sends a dead owner's URLs to one place and the origin sees one fetch
    /// for the pool. `None` when that is this process.
    pub(super) fn owner_elsewhere(&self, url: &str) -> Option<Arc<str>> {
        let ring = self.inner.ring.load();
        let key = ring_key(url);
        let owner = ring.owner(&key)?;
        let serving = if self.is_self(owner) || self.is_healthy(owner) {
            owner
        } else {
            ring.successors(&key)
                .into_iter()
                .find(|peer| self.is_self(peer) || self.is_healthy(peer))?
        };
        (!self.is_self(serving)).then(|| Arc::from(serving))
    }

    /// The healthy peers for `url`, owner first (all of them, if none is healthy).
    pub(super) fn candidates(&self, url: &str) -> Vec<Arc<str>> {
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

    pub(super) fn mark_down(&self, peer: &str, reason: &str) {
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

    pub(super) fn mark_up(&self, peer: &str) {
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

/// What the ring hashes for a URL: the URL as the cache keys it (scheme and host
/// lowercased, no default port: clients that spell one URL differently reach the
/// same owner).
pub(crate) fn ring_key(url: &str) -> String {
    crate::key::url_key(url).unwrap_or_else(|| url.to_owned())
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
        assert_eq!(ring_key("http://h:8080"), "http://h:8080/");
        assert_eq!(ring_key("http://h:80/x"), "http://h/x");
    }
}
