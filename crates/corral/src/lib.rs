//! corral keeps the thundering herd in: a cache engine where a crowd of identical
//! requests runs one load, never one per caller.
//!
//! # Tour
//!
//! - [`Cache`] is the engine. [`Cache::get_or_load`] answers from the memory tier when
//!   it can and otherwise joins the key's *flight*: one load per key, run in its own
//!   task, its outcome handed to every waiter. Entries are fresh for `fresh_for`, then
//!   stale until `ttl`: a stale entry is served at once while one background refresh
//!   runs (stale-while-revalidate), and keeps being served if the refresh fails
//!   (stale-if-error).
//! - [`CacheBuilder`] holds the options, each with a documented default.
//! - [`Loaded`] lets a loader set one entry's lifetime, or not store it at all.
//! - [`Weigh`] tells the memory tier how many bytes a value holds, so the tier stays
//!   within `max_bytes`.
//! - [`Error`] says why a load gave no value: the loader's error, a panic, or a timeout.
//! - [`Stats`] are the cache's counters; the same numbers go to the `metrics` facade
//!   (see the [`stats`] module for the metric names).
//! - With the `redis` feature, `RedisTier` adds a tier shared by many servers: one load
//!   per key per cluster (a lock in Redis, waiters woken by pub/sub), values encoded by
//!   a `Codec` (`MessagePack` by default, `Json`, `Raw`), and a circuit breaker so a
//!   server keeps working from memory when Redis is down.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache: corral::Cache<String> = corral::Cache::builder()
//!     .fresh_for(Duration::from_secs(10))
//!     .ttl(Duration::from_secs(60))
//!     .build()?;
//!
//! let profile = cache
//!     .get_or_load("user:42", || async {
//!         // e.g. a database query; runs once however many callers ask at once
//!         Ok::<_, std::io::Error>("Ada Lovelace".to_string())
//!     })
//!     .await?;
//! assert_eq!(profile, "Ada Lovelace");
//! # Ok(()) }
//! ```

mod builder;
mod cache;
#[cfg(feature = "redis")]
mod codec;
mod entry;
mod error;
mod flight;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod loaded;
#[cfg(feature = "redis")]
mod remote;
pub mod stats;
mod tier;
mod weigh;

pub use builder::{CacheBuilder, DEFAULT_FRESH_FOR, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_BYTES};
pub use cache::{Cache, Source};
pub use entry::{Entry, Freshness};
pub use error::{ConfigError, Error, SharedError};
pub use loaded::Loaded;
pub use stats::Stats;
pub use tier::memory::ENTRY_OVERHEAD;
pub use weigh::Weigh;

#[cfg(feature = "redis")]
pub use codec::{Codec, CodecError, Json, MessagePack, Raw};
#[cfg(feature = "redis")]
pub use error::RemoteLoadError;
#[cfg(feature = "redis")]
pub use tier::redis::{
    DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_THRESHOLD, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_ERROR_TTL, DEFAULT_LOCK_LEASE, RedisTier, RedisTierBuilder,
};
