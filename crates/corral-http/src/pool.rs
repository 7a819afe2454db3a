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
mod builder;
mod error;
mod forward;
mod members;
mod pool_client;
mod protocol;
mod purge;
mod ring;
mod route;

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PEER_TIMEOUT, DEFAULT_UNHEALTHY_FOR, PoolBuilder,
};
pub use error::PoolError;
pub use forward::PeerUnavailable;
pub use members::{PeerClientService, PeerStatus, Pool};
// For the fuzzing targets.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use members::{normalize_peer, ring_key};
pub use pool_client::PoolClient;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use protocol::{PEER_PATH, SECRET_HEADER};
pub use purge::{MemberPurged, PeerPurge, PurgeScope};
pub use ring::{DEFAULT_VNODES, Ring};
pub use route::{Route, RouteLayer};
