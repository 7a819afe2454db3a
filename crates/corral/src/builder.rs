//! Options for a [`Cache`], each with a documented default.

use std::marker::PhantomData;
use std::time::Duration;

use crate::{Cache, ConfigError, Weigh};

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
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheBuilder<V> {
    pub(crate) name: String,
    pub(crate) max_bytes: u64,
    pub(crate) fresh_for: Option<Duration>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) load_timeout: Duration,
    #[cfg(feature = "redis")]
    remote: Option<RemoteSpec<V>>,
    value: PhantomData<fn() -> V>,
}

/// A Redis tier, its codec erased, waiting for the cache to be built.
#[cfg(feature = "redis")]
pub(crate) struct RemoteSpec<V> {
    pub(crate) config: crate::tier::redis::Config,
    pub(crate) codec: std::sync::Arc<dyn crate::Codec<V>>,
}

#[cfg(feature = "redis")]
impl<V> Clone for RemoteSpec<V> {
    fn clone(&self) -> Self {
        RemoteSpec {
            config: self.config.clone(),
            codec: self.codec.clone(),
        }
    }
}

#[cfg(feature = "redis")]
impl<V> std::fmt::Debug for RemoteSpec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier").finish_non_exhaustive()
    }
}

impl<V> Default for CacheBuilder<V> {
    fn default() -> Self {
        CacheBuilder {
            name: "default".to_owned(),
            max_bytes: DEFAULT_MAX_BYTES,
            fresh_for: None,
            ttl: None,
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            #[cfg(feature = "redis")]
            remote: None,
            value: PhantomData,
        }
    }
}

/// The options after defaults are applied and checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) max_bytes: u64,
    pub(crate) fresh_for: Duration,
    pub(crate) ttl: Duration,
    pub(crate) load_timeout: Duration,
}

impl<V> CacheBuilder<V> {
    /// Names the cache in metrics (`cache` label) and logs. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bounds the memory tier's weighted size: keys, values (by [`Weigh`]) and a
    /// per-entry overhead. Default 64 MiB.
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

    /// Adds a Redis tier shared by every server that uses the same prefix: loads look
    /// there first, and one load runs per key across all of them. See
    /// [`RedisTier`](crate::RedisTier).
    #[cfg(feature = "redis")]
    pub fn redis<C: crate::Codec<V>>(mut self, tier: crate::RedisTier<C>) -> Self {
        self.remote = Some(RemoteSpec {
            config: tier.config,
            codec: std::sync::Arc::new(tier.codec),
        });
        self
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
        })
    }
}

impl<V: Weigh + Clone + Send + Sync + 'static> CacheBuilder<V> {
    /// Checks the options and builds the cache. Nothing connects yet: a Redis tier
    /// connects on first use, so the cache works whether or not Redis is up.
    pub fn build(self) -> Result<Cache<V>, ConfigError> {
        let config = self.config()?;
        let metrics = std::sync::Arc::new(crate::stats::Metrics::new(&config.name));
        #[cfg(feature = "redis")]
        let remote = self.remote.map(|spec| {
            std::sync::Arc::new(crate::tier::redis::RedisRemote::new(spec, metrics.clone()))
        });
        Ok(Cache::from_config(
            config,
            metrics,
            #[cfg(feature = "redis")]
            remote,
        ))
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
