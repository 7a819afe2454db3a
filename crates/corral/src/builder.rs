//! Options for a [`Cache`], each with a documented default.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::error::ConfigError;
use crate::state::{Config, State};
use crate::stats::Metrics;
use crate::tier::TierSpec;
use crate::weigh::{ByWeigh, Weigher};

/// The default memory bound: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The default time an entry is fresh: 60 s.
pub const DEFAULT_FRESH_FOR: Duration = Duration::from_secs(60);
/// The default time a load may run: 30 s.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`Cache`]. Start with [`Cache::builder`].
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`name`](Self::name) | `"default"` | labels metrics and log lines |
/// | [`max_bytes`](Self::max_bytes) | 64 MiB | bound on the memory tier's weighted size |
/// | [`fresh_for`](Self::fresh_for) | 60 s, or `ttl` if that is shorter | how long an entry is served without a refresh |
/// | [`ttl`](Self::ttl) | `fresh_for` (nothing stale is served) | how long an entry is kept; from `fresh_for` to `ttl` it is served stale while one background refresh runs |
/// | [`load_timeout`](Self::load_timeout) | 30 s | how long one load may run before its waiters get [`Error::Timeout`](crate::Error::Timeout) |
/// | [`log_load_errors`](Self::log_load_errors) | on | whether a loader's error is logged at WARN (off: at DEBUG, for loaders that report their own) |
/// | [`early_refresh`](Self::early_refresh) | off | hits refresh a key before it expires, more likely as expiry nears (XFetch) |
/// | [`weigher`](Self::weigher) | the values' [`Weigh`](crate::Weigh) impl | how many bytes a value holds, for `max_bytes` (or `weigh_serialized`, `serde` feature) |
/// | `disk` | none | a tier below memory on a local disk, kept across restarts (`disk` feature) |
/// | `redis` | none | a tier below memory shared by many servers (`redis` feature) |
///
/// ```
/// use std::time::Duration;
///
/// let cache: corral::Cache<bytes::Bytes> = corral::Cache::builder()
///     .name("avatars")
///     .max_bytes(256 * 1024 * 1024)
///     .fresh_for(Duration::from_secs(30))
///     .ttl(Duration::from_secs(300))
///     .load_timeout(Duration::from_secs(5))
///     .build()
///     .expect("valid options");
///
/// let invalid = corral::Cache::<String>::builder()
///     .fresh_for(Duration::from_secs(10))
///     .ttl(Duration::from_secs(5))
///     .build();
/// assert!(matches!(invalid, Err(corral::ConfigError::FreshForExceedsTtl { .. })));
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheBuilder<V, W = ByWeigh> {
    name: String,
    max_bytes: u64,
    fresh_for: Option<Duration>,
    ttl: Option<Duration>,
    load_timeout: Duration,
    log_load_errors: bool,
    early_refresh: Option<f64>,
    /// The tiers below memory, in the order loads look in them.
    lower: Vec<Arc<dyn TierSpec<V>>>,
    weigher: W,
    value: PhantomData<fn() -> V>,
}

impl<V> Default for CacheBuilder<V> {
    fn default() -> Self {
        CacheBuilder {
            name: "default".to_owned(),
            max_bytes: DEFAULT_MAX_BYTES,
            fresh_for: None,
            ttl: None,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            log_load_errors: true,
            early_refresh: None,
            lower: Vec::new(),
            weigher: ByWeigh,
            value: PhantomData,
        }
    }
}

impl<V, W: Clone> Clone for CacheBuilder<V, W> {
    fn clone(&self) -> Self {
        self.with_weigher(self.weigher.clone())
    }
}

impl<V, W> fmt::Debug for CacheBuilder<V, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("fresh_for", &self.fresh_for)
            .field("ttl", &self.ttl)
            .field("load_timeout", &self.load_timeout)
            .field("log_load_errors", &self.log_load_errors)
            .field("early_refresh", &self.early_refresh)
            .field("tiers", &self.lower)
            .field("weigher", &std::any::type_name::<W>())
            .finish()
    }
}

impl<V> Cache<V> {
    /// Starts building a cache; see [`CacheBuilder`] for the options and defaults.
    pub fn builder() -> CacheBuilder<V> {
        CacheBuilder::default()
    }
}

impl<V, W> CacheBuilder<V, W> {
    /// Names the cache in metrics (`cache` label) and logs. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bounds the memory tier's weighted size: keys, values (by their
    /// [`Weigh`](crate::Weigh) impl, or the [`weigher`](Self::weigher)) and a per-entry
    /// overhead. Default 64 MiB.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How long an entry is fresh. Default 60 s, or `ttl` if that is shorter.
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = Some(fresh_for);
        self
    }

    /// How long an entry is kept. Between `fresh_for` and `ttl` it is stale: served at
    /// once while one background refresh runs, and kept if that refresh fails.
    /// Zero means nothing is kept (coalescing only); more than a century is a
    /// century. Default: equal to `fresh_for`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long one load may run; then it is cancelled and its waiters get
    /// [`Error::Timeout`](crate::Error::Timeout). Default 30 s.
    pub fn load_timeout(mut self, load_timeout: Duration) -> Self {
        self.load_timeout = load_timeout;
        self
    }

    /// Whether the cache logs a loader's error (a failed load, once however many
    /// waited on it; a failed background refresh) at WARN. Off, it logs them at DEBUG:
    /// for loaders that report their own failures, with what only they know (an HTTP
    /// cache, the URL and why its origin failed), so that each failure is logged once.
    /// What the cache decides itself (a load timed out, a loader panicked) is logged at
    /// WARN either way. Default on.
    ///
    /// ```
    /// let cache: corral::Cache<String> = corral::Cache::builder()
    ///     .log_load_errors(false)
    ///     .build()
    ///     .expect("valid options");
    /// # let _ = cache;
    /// ```
    pub fn log_load_errors(mut self, log: bool) -> Self {
        self.log_load_errors = log;
        self
    }

    /// Refreshes hot keys before they expire (XFetch, Vattani et al., VLDB 2015): a hit
    /// on a fresh entry through [`get_or_load`](crate::Cache::get_or_load) starts the
    /// key's one background refresh early with a probability that rises as expiry
    /// nears, scaled by how long the key took to load:
    /// `now + load_time - load_time * beta * ln(random) >= fresh_until` (the paper's
    /// rule, plus the load's own duration, so that the refresh ends before expiry). A
    /// key read often is
    /// refreshed about once per lifetime, before it expires, so its callers never wait
    /// for a load or get a stale value; a key read rarely, or long before its expiry,
    /// is not. `beta` 1 is the paper's choice; larger refreshes earlier. Off by default.
    ///
    /// ```
    /// let cache: corral::Cache<String> = corral::Cache::builder()
    ///     .early_refresh(1.0)
    ///     .build()
    ///     .expect("valid options");
    /// # drop(cache);
    /// assert!(corral::Cache::<String>::builder().early_refresh(-1.0).build().is_err());
    /// ```
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }

    /// Weighs values with `weigher` instead of their [`Weigh`](crate::Weigh) impl, so
    /// that a type without one can be cached. It returns the bytes a value keeps alive
    /// beyond its inline size (what [`Weigh::weigh`](crate::Weigh::weigh) returns); the
    /// cache adds the key's length, the value's inline size and
    /// [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD) itself. It runs once per stored entry.
    ///
    /// ```
    /// #[derive(Clone)]
    /// struct Profile {
    ///     name: String,
    ///     tags: Vec<String>,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache: corral::Cache<Profile> = corral::Cache::builder()
    ///     .max_bytes(16 * 1024 * 1024)
    ///     .weigher(|_key, profile: &Profile| {
    ///         profile.name.len() + profile.tags.iter().map(String::len).sum::<usize>()
    ///     })
    ///     .build()?;
    /// cache.insert("user:42", Profile { name: "Ada".into(), tags: vec!["math".into()] }).await;
    /// assert_eq!(cache.get("user:42").map(|p| p.name).as_deref(), Some("Ada"));
    /// # Ok(()) }
    /// ```
    pub fn weigher<F>(self, weigher: F) -> CacheBuilder<V, F>
    where
        F: Fn(&str, &V) -> usize + Send + Sync + 'static,
    {
        self.with_weigher(weigher)
    }

    /// Weighs values by the size of their serialized form, so that a type that derives
    /// `Serialize` needs no [`Weigh`](crate::Weigh) impl. An estimate, at the cost of
    /// one serialization per stored entry: see
    /// [`SerializedSize`](crate::weigh::SerializedSize). With the `serde` feature.
    ///
    /// ```
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Profile {
    ///     name: String,
    ///     tags: Vec<String>,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache: corral::Cache<Profile> = corral::Cache::builder().weigh_serialized().build()?;
    /// let ada = cache
    ///     .get_or_load("user:42", || async {
    ///         Ok::<_, std::io::Error>(Profile { name: "Ada".into(), tags: vec!["math".into()] })
    ///     })
    ///     .await?;
    /// assert_eq!(ada.name, "Ada");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn weigh_serialized(self) -> CacheBuilder<V, crate::weigh::SerializedSize> {
        self.with_weigher(crate::weigh::SerializedSize)
    }

    /// Adds a Redis tier shared by every server that uses the same prefix: loads look
    /// there first, and one load runs per key across all of them. See
    /// [`RedisTier`](crate::redis::RedisTier).
    #[cfg(feature = "redis")]
    pub fn redis<C>(mut self, tier: crate::redis::RedisTier<C>) -> Self
    where
        V: Send + Sync + 'static,
        C: crate::codec::Codec<V>,
    {
        let spec = crate::tier::redis::RemoteSpec::new(tier);
        self.lower.push(Arc::new(spec));
        self
    }

    /// Adds a disk tier in the directory `path`, its files taking at most `max_bytes`,
    /// with the other options at their defaults: loads look there before any Redis
    /// tier, and it keeps its entries across restarts. See
    /// [`DiskTier`](crate::disk::DiskTier); [`disk_tier`](Self::disk_tier) takes one
    /// with its options set.
    #[cfg(feature = "disk")]
    pub fn disk(self, path: impl Into<std::path::PathBuf>, max_bytes: u64) -> Self
    where
        V: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.disk_tier(crate::disk::DiskTier::new(path, max_bytes))
    }

    /// Adds a disk tier with its options set (see [`disk`](Self::disk)). The tiers
    /// below memory are looked in in the order they were added: add the disk tier
    /// before a Redis tier.
    #[cfg(feature = "disk")]
    pub fn disk_tier<C>(mut self, tier: crate::disk::DiskTier<C>) -> Self
    where
        V: Send + Sync + 'static,
        C: crate::codec::Codec<V>,
    {
        self.lower
            .push(Arc::new(crate::tier::disk::DiskSpec::new(tier)));
        self
    }

    /// Checks the options and builds the cache. Nothing connects yet: a Redis tier
    /// connects on first use, so the cache works whether or not Redis is up. A disk
    /// tier opens its directory here (an error if it cannot) and indexes what it holds
    /// in the background.
    ///
    /// The values must be weighable: of a type that implements [`Weigh`](crate::Weigh),
    /// or of any type once the builder has a [`weigher`](Self::weigher).
    pub fn build(self) -> Result<Cache<V>, ConfigError>
    where
        V: Clone + Send + Sync + 'static,
        W: Weigher<V>,
    {
        let config = self.config()?;
        let metrics = Arc::new(Metrics::new(&config.name));
        let tiers = self
            .lower
            .iter()
            .map(|spec| spec.build(&config.name, &metrics))
            .collect::<Result<_, _>>()?;
        let state = State::new(config, Arc::new(self.weigher), metrics, tiers);
        Ok(Cache::from_state(state))
    }

    /// The same options with another weigher.
    fn with_weigher<X>(&self, weigher: X) -> CacheBuilder<V, X> {
        CacheBuilder {
            name: self.name.clone(),
            max_bytes: self.max_bytes,
            fresh_for: self.fresh_for,
            ttl: self.ttl,
            load_timeout: self.load_timeout,
            log_load_errors: self.log_load_errors,
            early_refresh: self.early_refresh,
            lower: self.lower.clone(),
            weigher,
            value: PhantomData,
        }
    }

    pub(crate) fn config(&self) -> Result<Config, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::ZeroMaxBytes);
        }
        if self.load_timeout.is_zero() {
            return Err(ConfigError::ZeroLoadTimeout);
        }
        if let Some(beta) = self.early_refresh
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(ConfigError::EarlyRefreshBeta(beta.to_string()));
        }
        let (fresh_for, ttl) = match (self.fresh_for, self.ttl) {
            (Some(fresh_for), Some(ttl)) if fresh_for > ttl => {
                return Err(ConfigError::FreshForExceedsTtl { fresh_for, ttl });
            }
            (Some(fresh_for), Some(ttl)) => (fresh_for, ttl),
            (Some(fresh_for), None) => (fresh_for, fresh_for),
            (None, Some(ttl)) => (DEFAULT_FRESH_FOR.min(ttl), ttl),
            (None, None) => (DEFAULT_FRESH_FOR, DEFAULT_FRESH_FOR),
        };
        Ok(Config {
            name: self.name.clone(),
            max_bytes: self.max_bytes,
            fresh_for,
            ttl,
            load_timeout: self.load_timeout,
            log_load_errors: self.log_load_errors,
            early_refresh: self.early_refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(b: CacheBuilder<String>) -> Result<Config, ConfigError> {
        b.config()
    }

    #[test]
    fn defaults_are_fresh_for_a_minute_and_never_stale() {
        let c = config(CacheBuilder::default()).unwrap();
        assert_eq!((c.fresh_for, c.ttl), (DEFAULT_FRESH_FOR, DEFAULT_FRESH_FOR));
        assert_eq!(c.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(c.load_timeout, DEFAULT_LOAD_TIMEOUT);
    }

    #[test]
    fn a_lone_ttl_shortens_the_default_fresh_for() {
        let c = config(CacheBuilder::default().ttl(Duration::ZERO)).unwrap();
        assert_eq!((c.fresh_for, c.ttl), (Duration::ZERO, Duration::ZERO));
        let c = config(CacheBuilder::default().ttl(Duration::from_secs(600))).unwrap();
        assert_eq!(c.fresh_for, DEFAULT_FRESH_FOR);
    }

    #[test]
    fn a_lone_fresh_for_sets_the_ttl_too() {
        let c = config(CacheBuilder::default().fresh_for(Duration::from_secs(600))).unwrap();
        assert_eq!(c.ttl, Duration::from_secs(600));
    }

    #[test]
    fn invalid_options_are_errors() {
        let b = || CacheBuilder::<String>::default();
        assert_eq!(
            config(
                b().fresh_for(Duration::from_secs(2))
                    .ttl(Duration::from_secs(1))
            )
            .unwrap_err(),
            ConfigError::FreshForExceedsTtl {
                fresh_for: Duration::from_secs(2),
                ttl: Duration::from_secs(1)
            }
        );
        assert_eq!(
            config(b().max_bytes(0)).unwrap_err(),
            ConfigError::ZeroMaxBytes
        );
        assert_eq!(
            config(b().load_timeout(Duration::ZERO)).unwrap_err(),
            ConfigError::ZeroLoadTimeout
        );
        assert_eq!(config(b().name("")).unwrap_err(), ConfigError::EmptyName);
    }
}
