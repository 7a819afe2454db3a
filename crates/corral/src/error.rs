//! Errors: what a caller of [`Cache::get_or_load`](crate::Cache::get_or_load) can get back
//! instead of a value, and what a builder refuses.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// A loader error, shared by every waiter of the load that produced it.
pub type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a load produced no value.
///
/// Every waiter of one load gets the same `Error` (it is cheap to clone), so each case
/// can be told apart and acted on:
///
/// ```
/// # async fn demo(cache: corral::Cache<String>) {
/// match cache.get_or_load("k", || async { Ok::<_, std::io::Error>("v".to_string()) }).await {
///     Ok(value) => println!("{value}"),
///     Err(corral::Error::Load(source)) => eprintln!("the loader failed: {source}"),
///     Err(corral::Error::Panicked(message)) => eprintln!("the loader panicked: {message}"),
///     Err(corral::Error::Timeout(limit)) => eprintln!("no value within {limit:?}"),
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The loader returned an error. Use `downcast_ref` on the source to get the
    /// loader's own error type back.
    #[error("loader failed: {0}")]
    Load(#[source] SharedError),
    /// The loader panicked; the message is the panic payload when it was a string.
    #[error("loader panicked: {0}")]
    Panicked(Arc<str>),
    /// The load ran longer than the cache's `load_timeout` and was cancelled.
    #[error("load timed out after {0:?}")]
    Timeout(Duration),
    /// The load's task ended without a result (its runtime shut down).
    #[error("load abandoned: its task ended without a result")]
    Abandoned,
}

/// A loader's error that is this server's alone. The load's waiters here get it as any
/// loader error ([`Error::Load`], whose source is this `Unshared`), but a tier shared
/// with other servers (Redis) does not pass it on: their waiters look again and load
/// for themselves. For a failure that says nothing about the key elsewhere, or whose
/// details would be lost on the way (an HTTP cache's origin answering one server with
/// a 503, say).
///
/// ```
/// let error = corral::Error::load(corral::Unshared::new(std::io::Error::other("busy")));
/// assert!(error.is_unshared());
/// let unshared = error.loader_error().and_then(|e| e.downcast_ref::<corral::Unshared>());
/// assert_eq!(unshared.map(|e| e.to_string()).as_deref(), Some("busy"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unshared(#[source] Box<dyn StdError + Send + Sync + 'static>);

impl Unshared {
    /// Wraps `error` as this server's alone.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Unshared(error.into())
    }

    /// The error it wraps.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl Error {
    /// The loader's own error, if this is [`Error::Load`].
    ///
    /// ```
    /// let err = corral::Error::load(std::io::Error::other("disk on fire"));
    /// let io = err.loader_error().and_then(|e| e.downcast_ref::<std::io::Error>());
    /// assert_eq!(io.map(|e| e.to_string()).as_deref(), Some("disk on fire"));
    /// ```
    pub fn loader_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match self {
            Error::Load(source) => Some(source.as_ref()),
            _ => None,
        }
    }

    /// Whether this is a loader's [`Unshared`] error, which shared tiers keep to this
    /// server.
    pub fn is_unshared(&self) -> bool {
        self.loader_error().is_some_and(|e| e.is::<Unshared>())
    }

    /// Wraps any error as a loader error.
    pub fn load(source: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Error::Load(Arc::from(source.into()))
    }

    /// The label this error has in metrics and logs (`error`, `panic`, `timeout`, `abandoned`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::Load(_) => "error",
            Error::Panicked(_) => "panic",
            Error::Timeout(_) => "timeout",
            Error::Abandoned => "abandoned",
        }
    }
}

/// An invalid combination of options, reported by [`CacheBuilder::build`](crate::CacheBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `fresh_for` is longer than `ttl`: an entry would expire while still fresh.
    #[error("fresh_for ({fresh_for:?}) must not exceed ttl ({ttl:?})")]
    FreshForExceedsTtl {
        /// The configured `fresh_for`.
        fresh_for: Duration,
        /// The configured `ttl`.
        ttl: Duration,
    },
    /// `max_bytes` is zero: nothing could ever be stored.
    #[error("max_bytes must be greater than zero")]
    ZeroMaxBytes,
    /// `load_timeout` is zero: every load would time out before it starts.
    #[error("load_timeout must be greater than zero")]
    ZeroLoadTimeout,
    /// `early_refresh`'s `beta` is not a positive number.
    #[error("early_refresh's beta must be a positive number, not {0}")]
    EarlyRefreshBeta(String),
    /// The cache name is empty (it labels metrics and logs).
    #[error("the cache name must not be empty")]
    EmptyName,
    /// The Redis tier has no key prefix (it keeps caches apart, and bounds `clear`).
    #[cfg(feature = "redis")]
    #[error("the redis tier needs a non-empty key prefix")]
    EmptyRedisPrefix,
    /// A Redis URL does not parse.
    #[cfg(feature = "redis")]
    #[error("invalid redis url: {0}")]
    InvalidRedisUrl(String),
    /// The disk tier's directory cannot be used: not writable, in use by another
    /// process, or holding files that are not a disk tier's (the message says which).
    #[cfg(feature = "disk")]
    #[error("disk tier: {0}")]
    Disk(String),
    /// The disk tier's `max_bytes` is zero.
    #[cfg(feature = "disk")]
    #[error("the disk tier's max_bytes must be greater than zero")]
    ZeroDiskBytes,
    /// A Redis timeout or lease is zero.
    #[cfg(feature = "redis")]
    #[error("redis timeouts and the lock lease must be greater than zero")]
    ZeroRedisTimeout,
}
