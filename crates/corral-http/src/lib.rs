//! HTTP caching on the corral engine: RFC 9111 and request collapsing as one tower
//! service, [`HttpCache`], placed in front of
//!
//! - a server's handlers (an axum app: a server-side response cache),
//! - an HTTP client (a caching client, private or shared),
//! - a proxy's origin connection (the `corral` proxy).
//!
//! # Tour
//!
//! - [`HttpCache`] / [`HttpCacheLayer`]: the service and its layer, built by
//!   [`HttpCacheBuilder`] (every option has a documented default).
//! - [`Policy`]: RFC 9111 for a shared or private cache (with stale-while-revalidate,
//!   stale-if-error and the fixes `http-cache-semantics` lacks), or a fixed lifetime in
//!   the style of Go's stampede middleware.
//! - Keys ([`default_key`], or your own [`KeyFn`]) and `Vary`: several variants per URL.
//! - [`CacheStatus`]: every response says how it was answered, in `X-Cache` and in the
//!   standard `Cache-Status` header (RFC 9211).
//! - [`Body`]: stored bodies are served from memory; bodies over
//!   `max_body_bytes` stream through, whole, unstored; with a disk tier (feature
//!   `disk`), a body over `max_body_bytes` whose length the origin states is written
//!   to disk as it arrives and served from there in chunks, to every request for it
//!   while it is still arriving too.
//! - [`CacheHandle`]: purge (by key, prefix or tag; hard, or soft: stale instead of
//!   gone) and read counters from outside the request path. A response's tags are
//!   the origin's `Surrogate-Key` (space-separated), `Cache-Tag` (comma-separated)
//!   and `Cache-Groups` (a structured list of strings), at most [`MAX_TAGS`] of at
//!   most [`MAX_TAG_LEN`] bytes each.
//! - [`refresh`] (feature `refresh`): keep registered URLs fresh in the background.
//! - [`pool`] (feature `pool`): a pool of peers where each URL has one owner.
//!
//! # What is never served to the wrong client
//!
//! A shared cache never stores `private` or `no-store` responses, responses that set
//! cookies, or responses to requests with `Authorization` (unless `public`, `s-maxage`
//! or `must-revalidate` allow it, as RFC 9111 §3.5 does; such a response is then
//! served to other clients too); `Vary: *` is never served from the cache; and a
//! response fetched for one request is handed to requests waiting on the same fetch
//! only if it could have been stored for them. [`Policy::Fixed`] passes requests that
//! carry `Cookie` or `Authorization` to the inner service alone unless told they may
//! share ([`Credentials`]). (When the origin answers a collapsed fetch with a server
//! error, its waiters get a stale response where `stale-if-error` allows, else a short
//! response of that status of the cache's own: a failing origin gets one request, not
//! one per waiter.)
//!
//! # Framing
//!
//! Every request the cache hands its inner service is framed by the body it really
//! carries (a fetch it makes claims no body at all), and every response it returns by
//! the body it really returns, whatever `Content-Length` an origin, a client or a
//! stored response said. A GET or HEAD that arrives with a body (or asks to upgrade)
//! passes through with it, uncached and uncollapsed.
//!
//! # Inside
//!
//! A request flows down this table: the service looks it up, fetches (one fetch per
//! key, through the engine's flight) or serves what is stored, and responds.
//!
//! | file | what it holds |
//! |---|---|
//! | `builder.rs`, `layer.rs` | [`HttpCacheBuilder`] and the defaults; [`HttpCacheLayer`] |
//! | `service.rs`, `future.rs` | [`HttpCache`]'s `call`: the paths of a request (hit, collapsed fetch, alone, passed through) |
//! | `state.rs` | what every clone of a cache shares: options, the engine, counting |
//! | `lookup.rs` | one request's look at what is stored (variants followed, freshness judged) |
//! | `fetch.rs` | one fetch: the upstream request, what its response is for, the entries it stores |
//! | `respond.rs` | responses built: served from storage, finished, errors |
//! | `failure.rs` | why a request to the origin failed: the `502`/`504` line, the one WARN line, the count by cause |
//! | `upstream.rs` | the inner service, type-erased (the refresh cache and the pool use it too) |
//! | `policy.rs`, `directives.rs`, `reason.rs` | storability and freshness; `Cache-Control`; why a response is not stored |
//! | `key.rs`, `vary.rs` | keys from URLs; variants |
//! | `stored.rs`, `fields.rs`, `wire.rs` | a stored response; its header fields in compact form; its encoding in the Redis and disk tiers |
//! | `tier_form.rs` | the disk tier's codec: a response's head in MessagePack, its body raw (read back without a copy) |
//! | `framing.rs`, `hop.rs`, `body.rs` | message framing; hop-by-hop fields; bodies |
//! | `content.rs`, `spool.rs`, `disk_body.rs` | a stored body in memory or on disk; a large body written to disk as it arrives; one sent from disk in chunks |
//! | `status.rs`, `handle.rs` | `Cache-Status` and `X-Cache`; purging and counters from outside |
//! | `refresh.rs`, `refresh/` | the refresh cache |
//! | `pool.rs`, `pool/` | the pool of peers (`members.rs`, `builder.rs`, `ring.rs`, `route.rs`, `forward.rs`, `accept.rs`, `pool_client.rs`) |
//!
//! # Metrics
//!
//! `corral_http_responses_total{cache, status}` with `status` = `hit` | `miss` |
//! `stale` | `revalidated` | `bypass`; `corral_http_origin_errors_total{cache, cause}`,
//! the requests to the origin that got no response, by [`OriginFailure::label`]
//! (`dns` | `refused` | `connect_timeout` | `tls` | `fetch_timeout` | `reset` |
//! `closed` | `invalid` | `other`), each also logged once at WARN with its URL; plus
//! the engine's metrics (`corral_*`), whose loads are upstream fetches.
//!
//! # Tracing
//!
//! Each lookup is a `tracing` span `corral.lookup` (`DEBUG`), whose field `found` says
//! what it found: `answer`, `refresh` (answered, revalidated in the background),
//! `alone`, `forward` (through the key's flight) or `bypass`. A fetch through the flight
//! runs in the engine's `corral.load` span, under the span of the request that led it
//! (a background revalidation's under the lookup that started it), and a request
//! collapsed onto another's fetch waits in a `corral.flight_wait` span. Without a
//! subscriber that wants them, they cost a check each.

#![forbid(unsafe_code)]

mod body;
mod builder;
#[cfg(feature = "client")]
mod client;
mod content;
mod directives;
#[cfg(feature = "disk")]
mod disk_body;
mod failure;
mod fetch;
mod fields;
mod framing;
mod freshness;
mod future;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod hop;
mod hot;
mod key;
mod layer;
mod lookup;
mod policy;
#[cfg(feature = "pool")]
pub mod pool;
mod ranges;
mod reason;
#[cfg(feature = "refresh")]
pub mod refresh;
mod respond;
mod service;
#[cfg(feature = "disk")]
mod spool;
mod state;
mod status;
mod stored;
mod tags;
mod targeted;
#[cfg(test)]
mod testing;
#[cfg(feature = "disk")]
mod tier_form;
mod upstream;
mod vary;
#[cfg(any(feature = "redis", feature = "disk"))]
mod wire;

pub use body::{Body, BoxError, RequestBodyError};
pub use builder::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_HIT_FOR_MISS, DEFAULT_KEEP_STALE_FOR, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BYTES, DEFAULT_STALE_ON_DISCONNECT, HttpCacheBuilder,
};
pub use failure::{ORIGIN_FAILURES, OriginError, OriginFailure, find_cause};
pub use future::ResponseFuture;
pub use handle::{CacheHandle, HttpStats};
pub use hop::remove_hop_by_hop;
pub use key::{KeyFn, default_key, is_host, url_key};
pub use layer::HttpCacheLayer;
pub use policy::{Credentials, DEFAULT_FIXED_STATUSES, Policy};
pub use respond::UpstreamError;
pub use service::HttpCache;
pub use status::{CACHE_STATUS, CacheStatus, X_CACHE};
pub use tags::{MAX_TAG_LEN, MAX_TAGS};
