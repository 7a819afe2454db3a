//! Options for an [`HttpCache`], each with a documented default.

use std::sync::Arc;
use std::time::Duration;

use corral::{Cache, ConfigError};
use http::HeaderName;
use http::header::CDN_CACHE_CONTROL;
use tower::Layer;

use crate::key::{KeyFn, default_key};
use crate::layer::HttpCacheLayer;
use crate::policy::Policy;
use crate::service::HttpCache;
use crate::state::{Options, State};

/// The default largest body stored: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The default memory bound: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The default time requests skip collapsing after an uncacheable response: 10 s.
pub const DEFAULT_HIT_FOR_MISS: Duration = Duration::from_secs(10);
/// The default time a stale response with validators is kept for revalidation: 1 h.
pub const DEFAULT_KEEP_STALE_FOR: Duration = Duration::from_secs(3600);
/// The default time past freshness a response may answer when its origin cannot be
/// reached: 1 day.
pub const DEFAULT_STALE_ON_DISCONNECT: Duration = Duration::from_secs(24 * 3600);
/// The default time one upstream fetch (headers and stored body) may take: 30 s.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds an [`HttpCache`] or an [`HttpCacheLayer`]. Start with [`HttpCache::builder`].
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`policy`](Self::policy) | `Policy::Rfc9111 { shared: true }` | what is stored, for how long |
/// | [`max_bytes`](Self::max_bytes) | 256 MiB | bound on the memory the cache holds |
/// | [`max_body_bytes`](Self::max_body_bytes) | 8 MiB | larger bodies stream through, unstored (with a disk tier: to disk) |
/// | [`key`](Self::key) | [`default_key`] | which stored response a request may use |
/// | [`hit_for_miss`](Self::hit_for_miss) | 10 s | after an uncacheable response, requests for its key skip collapsing this long |
/// | [`keep_stale_for`](Self::keep_stale_for) | 1 h | how long a stale response with validators is kept to be revalidated |
/// | [`max_keep`](Self::max_keep) | none | the longest any response is kept, whatever it says |
/// | [`stale_on_disconnect`](Self::stale_on_disconnect) | 1 day | how long past freshness a response answers when its origin cannot be reached |
/// | [`fetch_timeout`](Self::fetch_timeout) | 30 s | how long one upstream fetch may take before its waiters get a 504 |
/// | [`targeted_cache_control`](Self::targeted_cache_control) | `CDN-Cache-Control` | the targeted fields (RFC 9213) a shared cache heeds over `Cache-Control` |
/// | [`early_refresh`](Self::early_refresh) | off | a hot response is revalidated before it goes stale, more likely as that nears (XFetch) |
/// | [`normalize_vary`](Self::normalize_vary) | on | `Accept-Encoding` and `Accept-Language` that differ only in order, case or spacing select one variant |
/// | [`cache_status_headers`](Self::cache_status_headers) | on | add `X-Cache` and `Cache-Status` |
/// | [`name`](Self::name) | `"corral"` | the `Cache-Status` cache name and the metrics label |
///
/// ```
/// use std::time::Duration;
/// use corral_http::{HttpCache, Policy};
///
/// let layer = HttpCache::builder()
///     .policy(Policy::fixed(Duration::from_secs(5), Duration::from_secs(60)))
///     .max_bytes(64 * 1024 * 1024)
///     .key(|parts| Some(format!("{}{}", parts.uri.path(), parts.uri.query().unwrap_or(""))))
///     .layer()
///     .expect("valid options");
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `layer` or `service` is called"]
pub struct HttpCacheBuilder {
    policy: Policy,
    max_bytes: u64,
    max_body_bytes: usize,
    key: KeyFn,
    hit_for_miss: Duration,
    keep_stale_for: Duration,
    stale_on_disconnect: Duration,
    max_keep: Option<Duration>,
    fetch_timeout: Duration,
    cache_status_headers: bool,
    targeted: Vec<HeaderName>,
    normalize_vary: bool,
    early_refresh: Option<f64>,
    name: String,
    reports_failures: bool,
    #[cfg(feature = "disk")]
    disk: Option<corral::disk::DiskTier>,
    #[cfg(feature = "redis")]
    redis: Option<corral::redis::RedisTier>,
}

impl std::fmt::Debug for HttpCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCacheBuilder")
            .field("policy", &self.policy)
            .field("max_bytes", &self.max_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("targeted_cache_control", &self.targeted)
            .field("normalize_vary", &self.normalize_vary)
            .field("early_refresh", &self.early_refresh)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for HttpCacheBuilder {
    fn default() -> Self {
        HttpCacheBuilder {
            policy: Policy::default(),
            max_bytes: DEFAULT_MAX_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            key: Arc::new(default_key),
            hit_for_miss: DEFAULT_HIT_FOR_MISS,
            keep_stale_for: DEFAULT_KEEP_STALE_FOR,
            stale_on_disconnect: DEFAULT_STALE_ON_DISCONNECT,
            max_keep: None,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            cache_status_headers: true,
            targeted: vec![CDN_CACHE_CONTROL],
            normalize_vary: true,
            early_refresh: None,
            name: "corral".to_owned(),
            reports_failures: true,
            #[cfg(feature = "disk")]
            disk: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl HttpCacheBuilder {
    /// For an upstream that reports its own failures (a pool's peers, whose outages
    /// the pool logs and counts): a failed request to it is logged at DEBUG only, and
    /// not counted as an origin failure.
    #[cfg(feature = "pool")]
    pub(crate) fn upstream_reports_failures(mut self) -> Self {
        self.reports_failures = false;
        self
    }

    /// What is stored and for how long. Default `Policy::Rfc9111 { shared: true }`.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Bounds the memory the cache holds (responses, headers, keys and per-entry
    /// overhead, and, in up to a 64th of it, ready-made heads of the responses hit
    /// most). Default 256 MiB.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The largest body stored in memory. A larger body (or one of unknown length that
    /// grows past it) streams through to its client, whole, and is not stored; with a
    /// [disk tier](Self::disk), a larger body whose length the origin states (up to
    /// the tier's `max_entry_bytes`, when the tier can take it) is written to disk as it
    /// arrives instead. Default 8 MiB.
    pub fn max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// Replaces the cache key: a function of the request's parts returning the key, or
    /// `None` to keep the request out of the cache. Use it to split the cache by user
    /// (e.g. add a header or a cookie to the key). Default [`default_key`].
    pub fn key(
        mut self,
        key: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// After a response that could not be shared (private, `no-store`, too large…),
    /// requests for its key go upstream on their own for this long instead of queueing
    /// behind one another (Varnish's hit-for-miss). Default 10 s.
    pub fn hit_for_miss(mut self, hit_for_miss: Duration) -> Self {
        self.hit_for_miss = hit_for_miss;
        self
    }

    /// How long a stale response with an `ETag` or `Last-Modified` is kept after it
    /// stops being fresh, so it can be revalidated with a conditional request. Default 1 h.
    pub fn keep_stale_for(mut self, keep_stale_for: Duration) -> Self {
        self.keep_stale_for = keep_stale_for;
        self
    }

    /// The longest any response is kept, fresh or stale, whatever its headers say (a
    /// copy that must not outlive a purge elsewhere by more than this; zero: responses
    /// are shared with the requests waiting for them, never stored). Default: no limit.
    pub fn max_keep(mut self, max_keep: Duration) -> Self {
        self.max_keep = Some(max_keep);
        self
    }

    /// How long past freshness a stored response may answer a request when its origin
    /// cannot be reached (the connection refused or reset, closed before a response,
    /// or no answer within `fetch_timeout`), as RFC 9111 §4.2.4 allows a disconnected
    /// cache; `Cache-Status` then says `detail="origin unreachable"`. Never for a
    /// response whose `no-cache`, `must-revalidate`, `proxy-revalidate` or `s-maxage`
    /// forbids serving it stale, nor for a request that asks for a fresh one
    /// (`no-cache`, `max-age`, `min-fresh`). Under [`Policy::Rfc9111`] responses are
    /// kept this long past freshness for it (within `max_bytes`); a fixed policy keeps
    /// to its `ttl`. An origin that answers with a server
    /// error is not unreachable: there `stale-if-error` decides. Zero turns it off.
    /// Default 1 day.
    pub fn stale_on_disconnect(mut self, stale_on_disconnect: Duration) -> Self {
        self.stale_on_disconnect = stale_on_disconnect;
        self
    }

    /// How long one upstream fetch (response headers and a stored body) may take; its
    /// waiters then get a 504 (or a stale response, where stale-if-error allows). A
    /// body written to disk as it arrives (see [`disk`](Self::disk)) is given up, and
    /// its readers' responses cut short, when no byte of it comes for this long.
    /// Default 30 s.
    pub fn fetch_timeout(mut self, fetch_timeout: Duration) -> Self {
        self.fetch_timeout = fetch_timeout;
        self
    }

    /// Whether responses carry `X-Cache` and `Cache-Status` (RFC 9211). Default on.
    pub fn cache_status_headers(mut self, on: bool) -> Self {
        self.cache_status_headers = on;
        self
    }

    /// The targeted cache-control fields (RFC 9213) this cache heeds, in order, when
    /// its policy is a shared one: the first of them a response carries with a valid
    /// value (a structured Dictionary) decides whether and how long it is stored, and
    /// `Cache-Control` and `Expires` are then ignored for that; one that does not
    /// parse is ignored. Default `CDN-Cache-Control`; name your own first to give
    /// this cache directives of its own, or pass none to heed only `Cache-Control`.
    ///
    /// ```
    /// use corral_http::HttpCache;
    /// use http::header::{CDN_CACHE_CONTROL, HeaderName};
    ///
    /// let layer = HttpCache::builder()
    ///     .targeted_cache_control([HeaderName::from_static("corral-cache-control"), CDN_CACHE_CONTROL])
    ///     .layer()
    ///     .expect("valid options");
    /// # let _ = layer;
    /// ```
    pub fn targeted_cache_control(mut self, fields: impl IntoIterator<Item = HeaderName>) -> Self {
        self.targeted = fields.into_iter().collect();
        self
    }

    /// Whether requests whose `Accept-Encoding` or `Accept-Language` differ only in
    /// the order, letter case or spacing of their members select the same stored
    /// variant of a response that varies on them: each is read as one list, its
    /// members lowercased, stripped of spaces and tabs, sorted and deduplicated
    /// (`gzip, br` and `BR,gzip` are one variant; `br;q=0.5` and `br` are two). Other
    /// fields are compared exactly. Default on; off compares these exactly too.
    pub fn normalize_vary(mut self, on: bool) -> Self {
        self.normalize_vary = on;
        self
    }

    /// Revalidates hot responses before they go stale (XFetch; see
    /// [`corral::CacheBuilder::early_refresh`]): a hit on a fresh response starts its
    /// one background revalidation early, with a probability that rises as the end of
    /// its freshness nears, scaled by how long its last fetch took (`beta` 1 is the
    /// paper's; larger is earlier). A response asked for often is so refreshed about
    /// once per freshness lifetime, and never answered stale nor waited for; one asked
    /// for rarely is not. Off by default; `beta` must be a positive number.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }

    /// The cache's name in `Cache-Status` and in metrics. Default `"corral"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Keeps responses on a local disk too, in the directory `path`, its files taking
    /// at most `max_bytes`: a cache larger than memory, kept across restarts. A hit
    /// there is copied into memory. Disk failing never fails a request.
    ///
    /// A body over [`max_body_bytes`](Self::max_body_bytes) whose length the origin
    /// states, up to the tier's `max_entry_bytes` (1 GiB by default), is written to
    /// disk as it arrives when the tier can take it (it is on, fewer than its
    /// `writes_at_once` bodies are being written, and all of them together fit in half
    /// its `max_bytes`; else the body streams through unstored, and a later request
    /// tries again) and served from there a chunk at a time: to the request that
    /// fetched it, and to every request for it while it arrives, which follow the
    /// writer (through its entry in memory: one evicted from memory before its body has
    /// arrived is fetched again). Memory does not grow with such a body. Ranges of it
    /// are read from disk (several ranges of it get the whole). If the origin fails
    /// part way, or sends no byte for [`fetch_timeout`](Self::fetch_timeout), the
    /// responses reading it are cut short, as they would be passing through, and
    /// nothing is kept.
    ///
    /// A body on disk counts as 1 MiB in the memory tier, which holds its file open:
    /// the memory tier's bound bounds the files it holds (256 for the default
    /// 256 MiB). A response whose file the disk tier has evicted or replaced counts as
    /// gone at its next request, which fetches it again; its file's space is freed
    /// once memory and the responses reading it let go. See
    /// [`corral::disk::DiskTier`]; [`disk_tier`](Self::disk_tier) takes one with its
    /// options set.
    #[cfg(feature = "disk")]
    pub fn disk(self, path: impl Into<std::path::PathBuf>, max_bytes: u64) -> Self {
        self.disk_tier(corral::disk::DiskTier::new(path, max_bytes))
    }

    /// Keeps responses on a local disk too, with the tier's options set (see
    /// [`disk`](Self::disk)). Its codec is the HTTP cache's own (a response's head
    /// in MessagePack, its body raw): the tier's `codec` option is not used.
    #[cfg(feature = "disk")]
    pub fn disk_tier(mut self, tier: corral::disk::DiskTier) -> Self {
        self.disk = Some(tier);
        self
    }

    /// Keeps responses in a Redis tier too, shared by every server using the same
    /// prefix: one upstream fetch per key across all of them, and purges that reach
    /// every server. Redis failing never fails a request. See [`corral::redis::RedisTier`].
    #[cfg(feature = "redis")]
    pub fn redis(mut self, tier: corral::redis::RedisTier) -> Self {
        self.redis = Some(tier);
        self
    }

    /// Builds a layer; every service it makes shares one cache.
    pub fn layer(self) -> Result<HttpCacheLayer, ConfigError> {
        Ok(HttpCacheLayer {
            state: Arc::new(self.state()?),
        })
    }

    /// Builds the cache in front of `inner`.
    pub fn service<S>(self, inner: S) -> Result<HttpCache<S>, ConfigError> {
        Ok(self.layer()?.layer(inner))
    }

    fn state(self) -> Result<State, ConfigError> {
        let hot_heads = self.max_bytes / 64;
        let builder = Cache::builder()
            .name(self.name.clone())
            .max_bytes(self.max_bytes - hot_heads)
            .load_timeout(self.fetch_timeout)
            // A failed fetch is reported once by the fetch itself, with its URL and
            // cause (`failure.rs`); the engine's own timeouts and panics it reports.
            .log_load_errors(false);
        let builder = match self.early_refresh {
            Some(beta) => builder.early_refresh(beta),
            None => builder,
        };
        #[cfg(feature = "disk")]
        let builder = match self.disk {
            Some(tier) => {
                builder.disk_tier(tier.codec(crate::tier_form::TierForm::new(self.max_body_bytes)))
            }
            None => builder,
        };
        #[cfg(feature = "redis")]
        let builder = match self.redis {
            Some(tier) => builder.redis(tier),
            None => builder,
        };
        let cache = builder.build()?;
        Ok(State::new(
            cache,
            Options {
                policy: self.policy,
                key: self.key,
                max_body: self.max_body_bytes,
                fetch_timeout: self.fetch_timeout,
                reports_failures: self.reports_failures,
                keep_stale_for: self.keep_stale_for,
                stale_on_disconnect: self.stale_on_disconnect,
                max_keep: self.max_keep,
                hit_for_miss: self.hit_for_miss,
                status_headers: self.cache_status_headers,
                targeted: self.targeted,
                normalize_vary: self.normalize_vary,
                name: self.name,
            },
            hot_heads,
        ))
    }
}

impl HttpCache<()> {
    /// Starts building an HTTP cache; see [`HttpCacheBuilder`] for the options.
    pub fn builder() -> HttpCacheBuilder {
        HttpCacheBuilder::default()
    }
}
