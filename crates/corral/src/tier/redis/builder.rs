//! The Redis tier's public face: [`RedisTier`], built by [`RedisTierBuilder`] with
//! documented defaults, and given to [`CacheBuilder::redis`](crate::CacheBuilder::redis).

use std::fmt;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};

use crate::codec::MessagePack;
use crate::error::ConfigError;

/// The default time establishing a connection may take: 1 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time one Redis command may take once connected: 250 ms.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// The default lease of the load lock (renewed every third of it while loading): 5 s.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(5);
/// The default time a failed load's error is shared with other servers: 1 s.
pub const DEFAULT_ERROR_TTL: Duration = Duration::from_secs(1);
/// The default number of consecutive failures that opens the circuit breaker: 3.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// The default time Redis is skipped once the breaker opens, before a probe: 1 s.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(1);

/// A Redis tier for a [`Cache`](crate::Cache): give it to
/// [`CacheBuilder::redis`](crate::CacheBuilder::redis).
///
/// ```no_run
/// use corral::Cache;
/// use corral::redis::RedisTier;
///
/// # fn demo() -> Result<(), corral::ConfigError> {
/// let cache: Cache<String> = Cache::builder()
///     .redis(RedisTier::builder("redis://127.0.0.1:6379").prefix("shop:").build()?)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTier<C = MessagePack> {
    pub(crate) options: Options,
    pub(crate) codec: C,
}

impl<C> fmt::Debug for RedisTier<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("options", &self.options)
            .field("codec", &std::any::type_name::<C>())
            .finish()
    }
}

/// Where Redis is.
#[derive(Clone)]
pub(crate) enum Target {
    Single(Box<redis::Client>),
    Cluster {
        client: Box<ClusterClient>,
        /// The configured nodes, from which the current masters are found.
        seeds: Vec<redis::Client>,
    },
}

impl Target {
    /// The nodes the tier was given (so that none of their URLs, which may hold a
    /// password, is ever printed).
    fn nodes(&self) -> usize {
        match self {
            Target::Single(_) => 1,
            Target::Cluster { seeds, .. } => seeds.len(),
        }
    }
}

/// A Redis tier's checked options.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) target: Target,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) lock_lease: Duration,
    pub(crate) error_ttl: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("cluster", &matches!(self.target, Target::Cluster { .. }))
            .field("nodes", &self.target.nodes())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("lock_lease", &self.lock_lease)
            .field("error_ttl", &self.error_ttl)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cool_down", &self.breaker_cool_down)
            .finish()
    }
}

/// Builds a [`RedisTier`]. Every option has a default but the prefix, which is
/// required (so two caches can never read each other's keys, and `clear` deletes only
/// this cache's).
///
/// | option | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | required, never empty |
/// | [`connect_timeout`](Self::connect_timeout) | 1 s |
/// | [`command_timeout`](Self::command_timeout) | 250 ms |
/// | [`lock_lease`](Self::lock_lease) | 5 s, renewed while the load runs |
/// | [`error_ttl`](Self::error_ttl) | 1 s |
/// | [`breaker`](Self::breaker) | open after 3 consecutive failures, probe after 1 s |
/// | [`codec`](Self::codec) | [`MessagePack`] |
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisTierBuilder<C = MessagePack> {
    urls: Vec<String>,
    cluster: bool,
    prefix: Option<String>,
    connect_timeout: Duration,
    command_timeout: Duration,
    lock_lease: Duration,
    error_ttl: Duration,
    breaker_threshold: u32,
    breaker_cool_down: Duration,
    #[cfg(feature = "redis-tls")]
    root_certificates: Option<Vec<u8>>,
    codec: C,
}

impl<C> fmt::Debug for RedisTierBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs are left out: they may hold a password.
        let mut debug = f.debug_struct("RedisTierBuilder");
        debug
            .field("cluster", &self.cluster)
            .field("nodes", &self.urls.len())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("lock_lease", &self.lock_lease)
            .field("error_ttl", &self.error_ttl)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cool_down", &self.breaker_cool_down);
        #[cfg(feature = "redis-tls")]
        debug.field("root_certificates", &self.root_certificates.is_some());
        debug.field("codec", &std::any::type_name::<C>()).finish()
    }
}

impl RedisTier<MessagePack> {
    /// A tier on one Redis server: `redis://host:port/db`, `rediss://…` (TLS), or
    /// `redis+unix:///path/to/socket`.
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder<MessagePack> {
        RedisTierBuilder::new(vec![url.into()], false)
    }

    /// A tier on a Redis Cluster, reached through any of these nodes (one is enough:
    /// the others are found from it).
    pub fn cluster_builder<U: Into<String>>(
        urls: impl IntoIterator<Item = U>,
    ) -> RedisTierBuilder<MessagePack> {
        RedisTierBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }
}

impl RedisTierBuilder<MessagePack> {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        RedisTierBuilder {
            urls,
            cluster,
            prefix: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            lock_lease: DEFAULT_LOCK_LEASE,
            error_ttl: DEFAULT_ERROR_TTL,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cool_down: DEFAULT_BREAKER_COOL_DOWN,
            #[cfg(feature = "redis-tls")]
            root_certificates: None,
            codec: MessagePack,
        }
    }
}

impl<C> RedisTierBuilder<C> {
    /// The prefix of every key this cache writes (e.g. `"shop:"`). Required.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How long establishing a connection may take (each attempt, reconnections after
    /// Redis went away included). A command waits at most this for the tier to
    /// connect, then its [`command_timeout`](Self::command_timeout) for its reply.
    /// Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may take once connected (the time to connect is
    /// [`connect_timeout`](Self::connect_timeout)'s); a slower one counts as a failure.
    /// Default 250 ms.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The lease of the cross-server load lock. The winner renews it while its load
    /// runs; if the winner dies, another server takes over within one lease. Default 5 s.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lock_lease = lease;
        self
    }

    /// How long a failed load's error is given to other servers' waiters instead of
    /// loading again. Default 1 s.
    pub fn error_ttl(mut self, ttl: Duration) -> Self {
        self.error_ttl = ttl;
        self
    }

    /// The circuit breaker: after `threshold` consecutive failures Redis is skipped
    /// for `cool_down`, then probed by one command at a time. Default 3 and 1 s.
    pub fn breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// Trusts these root certificates (PEM) for `rediss://` servers, instead of the
    /// system's (for a private CA); for a cluster, on every node.
    #[cfg(feature = "redis-tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// How values are encoded: [`MessagePack`] (default), [`Json`](crate::codec::Json)
    /// or [`Raw`](crate::codec::Raw) bytes.
    pub fn codec<D>(self, codec: D) -> RedisTierBuilder<D> {
        RedisTierBuilder {
            urls: self.urls,
            cluster: self.cluster,
            prefix: self.prefix,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            lock_lease: self.lock_lease,
            error_ttl: self.error_ttl,
            breaker_threshold: self.breaker_threshold,
            breaker_cool_down: self.breaker_cool_down,
            #[cfg(feature = "redis-tls")]
            root_certificates: self.root_certificates,
            codec,
        }
    }

    /// Checks the options. Nothing connects yet: the tier connects on first use, so a
    /// server starts whether or not Redis is up.
    pub fn build(mut self) -> Result<RedisTier<C>, ConfigError> {
        let prefix = self
            .prefix
            .take()
            .filter(|p| !p.is_empty())
            .ok_or(ConfigError::EmptyRedisPrefix)?;
        if self.command_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.lock_lease.is_zero()
        {
            return Err(ConfigError::ZeroRedisTimeout);
        }
        let invalid = |url: &str, e: redis::RedisError| {
            let hint = if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
                " (rediss:// needs corral's `redis-tls` feature)"
            } else {
                ""
            };
            ConfigError::InvalidRedisUrl(format!("{url}: {e}{hint}"))
        };
        #[cfg(feature = "redis-tls")]
        {
            // rustls needs one process-wide crypto provider; keep the application's if
            // it installed one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let target = if self.cluster {
            if self.urls.is_empty() {
                return Err(ConfigError::InvalidRedisUrl(
                    "a cluster needs at least one node".into(),
                ));
            }
            let seeds = self
                .urls
                .iter()
                .map(|url| self.client(url).map_err(|e| invalid(url, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let builder = ClusterClientBuilder::new(
                seeds.iter().map(|seed| seed.get_connection_info().clone()),
            )
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.command_timeout)
            .retries(1);
            #[cfg(feature = "redis-tls")]
            let builder = match self.certificates() {
                Some(certificates) => builder.certs(certificates),
                None => builder,
            };
            let client = builder
                .build()
                .map_err(|e| invalid(&self.urls.join(", "), e))?;
            Target::Cluster {
                client: Box::new(client),
                seeds,
            }
        } else {
            let url = self.urls.first().map(String::as_str).unwrap_or_default();
            Target::Single(Box::new(self.client(url).map_err(|e| invalid(url, e))?))
        };
        Ok(self.finish(target, prefix))
    }

    /// A client for one server, trusting the configured root certificates if any.
    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        #[cfg(feature = "redis-tls")]
        if let Some(certificates) = self.certificates() {
            return redis::Client::build_with_tls(url, certificates);
        }
        redis::Client::open(url)
    }

    #[cfg(feature = "redis-tls")]
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.root_certificates
            .as_ref()
            .map(|pem| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            })
    }

    fn finish(self, target: Target, prefix: String) -> RedisTier<C> {
        RedisTier {
            options: Options {
                target,
                prefix,
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
                lock_lease: self.lock_lease,
                error_ttl: self.error_ttl,
                breaker_threshold: self.breaker_threshold,
                breaker_cool_down: self.breaker_cool_down,
            },
            codec: self.codec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_required_and_urls_are_checked() {
        let missing = RedisTier::builder("redis://127.0.0.1").build();
        assert!(matches!(missing, Err(ConfigError::EmptyRedisPrefix)));
        let empty = RedisTier::builder("redis://127.0.0.1").prefix("").build();
        assert!(matches!(empty, Err(ConfigError::EmptyRedisPrefix)));
        let bad = RedisTier::builder("http://nope").prefix("p:").build();
        assert!(matches!(bad, Err(ConfigError::InvalidRedisUrl(_))));
        let zero = RedisTier::builder("redis://127.0.0.1")
            .prefix("p:")
            .command_timeout(Duration::ZERO)
            .build();
        assert!(matches!(zero, Err(ConfigError::ZeroRedisTimeout)));
        assert!(
            RedisTier::builder("redis+unix:///tmp/redis.sock")
                .prefix("p:")
                .build()
                .is_ok()
        );
        assert!(
            RedisTier::cluster_builder(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
                .prefix("p:")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn debug_output_names_the_options_and_never_a_url() {
        let tier = RedisTier::builder("redis://:hunter2@127.0.0.1")
            .prefix("p:")
            .build()
            .unwrap();
        let builder = RedisTier::builder("redis://:hunter2@127.0.0.1").prefix("p:");
        for debug in [format!("{tier:?}"), format!("{builder:?}")] {
            assert!(debug.contains(r#""p:""#), "{debug}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }
    }
}
