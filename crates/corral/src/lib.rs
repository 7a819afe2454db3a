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
//!   within `max_bytes`; for a type without it, give the builder a
//!   [`weigher`](CacheBuilder::weigher) closure (or, with the `serde` feature, weigh
//!   values by their serialized size). The [`weigh`] module has the details.
//! - [`Error`] says why a load gave no value: the loader's error, a panic, or a timeout.
//!   A loader's error wrapped in [`Unshared`] stays on its server (a shared tier does
//!   not pass it on).
//! - [`Stats`] are the cache's counters; the same numbers go to the `metrics` facade
//!   (see the [`stats`] module for the metric names). Each load runs in a `tracing`
//!   span `corral.load` (`DEBUG`; fields `cache`, `key`, `background`), a child of the
//!   caller's span, and a caller that waits on another's load waits in a span
//!   `corral.flight_wait` (`cache`, `key`).
//! - With the `disk` feature, `corral::disk` adds a tier on a local disk (`DiskTier`):
//!   larger than memory, kept across restarts, every file left by an earlier process checked
//!   before it is served.
//! - With the `redis` feature, `corral::redis` adds a tier shared by many servers
//!   (`RedisTier`): one load per key per cluster (a lock in Redis, waiters woken by
//!   pub/sub), values encoded by a codec from `corral::codec` (`MessagePack` by
//!   default, `Json`, `Raw`; the `serde` feature alone brings the codecs), and a circuit
//!   breaker so a server keeps working from memory when Redis is down.
//!
//! # Inside
//!
//! | file | what it holds |
//! |---|---|
//! | `cache.rs` | [`Cache`]: the read path and inserts |
//! | `invalidate.rs` | invalidations: by key, prefix, everything or tag; hard or soft; lowest tier first |
//! | `tags.rs` | tags without an index: the tag clock and each tag's latest purge |
//! | `ledger.rs` | the recent invalidations, for values fetched outside a flight |
//! | `early.rs` | probabilistic early refresh (XFetch) |
//! | `builder.rs` | [`CacheBuilder`] and the defaults |
//! | `state.rs` | what every clone of a cache shares, and what it does to itself alone |
//! | `flight.rs` | one load per key; every waiter gets its outcome (a loom model checks it) |
//! | `load.rs` | one load: its task and timeout, the tiers below memory, the loader, a panic turned into an error |
//! | `tier.rs` | the `Tier` trait every tier below memory implements |
//! | `tier/memory.rs` | the memory tier (moka, bounded by weighted bytes) |
//! | `tier/disk.rs`, `tier/disk/` | the disk tier: one file per entry, S3-FIFO eviction, the walk at start |
//! | `tier/redis.rs`, `tier/redis/` | the Redis tier; its cross-server lock in `tier/redis/lock.rs` |
//! | `tier/wall.rs` | wall-clock lifetimes for the tiers that outlive the process |
//! | `entry.rs`, `loaded.rs`, `error.rs` | an entry and its lifetime; what a loader returns; errors |
//! | `weigh.rs`, `codec.rs`, `stats.rs` | weighing values; encoding them; counting |
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

#![forbid(unsafe_code)]

mod builder;
mod cache;
#[cfg(feature = "serde")]
pub mod codec;
mod early;
mod entry;
mod error;
mod flight;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod invalidate;
mod ledger;
mod load;
mod loaded;
mod state;
pub mod stats;
mod tags;
mod tier;
pub mod weigh;

pub use builder::{CacheBuilder, DEFAULT_FRESH_FOR, DEFAULT_LOAD_TIMEOUT, DEFAULT_MAX_BYTES};
pub use cache::{Cache, Source};
pub use entry::{Entry, Freshness};
pub use error::{ConfigError, Error, SharedError, Unshared};
pub use load::panic_message;
pub use loaded::Loaded;
pub use state::InsertMark;
pub use stats::{DiskStats, Stats};
#[cfg(feature = "disk")]
pub use tier::disk;
pub use tier::memory::ENTRY_OVERHEAD;
#[cfg(feature = "redis")]
pub use tier::redis;
pub use weigh::Weigh;
