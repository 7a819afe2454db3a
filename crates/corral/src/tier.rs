//! Where entries are kept: the memory tier in every cache, and the tiers below it, each
//! an implementation of [`Tier`]: the disk tier (feature `disk`) and the Redis tier
//! (feature `redis`).
//!
//! The memory tier is not a [`Tier`]: it is read on every call and written under the
//! flight's lock, synchronously. The tiers below it are slower, shared or persistent,
//! and the engine treats them all alike (pingora-cache's `storage.rs` and `lock.rs` are
//! the model), in the order the builder was given them:
//!
//! - A load (one per key per server, under the flight) looks in each tier in order
//!   ([`Tier::lookup`]). The first usable entry answers it, and is copied into memory
//!   and into the tiers above, with its remaining lifetime.
//! - Where a tier has no usable entry, the load asks for the key's lock in it
//!   ([`Tier::lock`]). A tier shared by many servers lets one of them load and the
//!   others wait ([`Lock::Held`], then look again); a tier nobody else writes always
//!   grants it. The loader runs holding every lock granted ([`Permit::keep`]), and each
//!   [`Permit`] stores the outcome in its tier ([`Permit::release`]), unless the key was
//!   invalidated meanwhile: nothing loaded before an invalidation survives it.
//! - A tier that does not answer is skipped: the load goes on without it.
//! - Inserts and invalidations go to every tier; the invalidations other servers make
//!   reach this one through [`Tier::listen`].

#[cfg(feature = "disk")]
pub mod disk;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "disk"))]
pub(crate) mod wall;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::entry::Entry;
use crate::error::{ConfigError, Error, SharedError};
use crate::stats::{Metrics, Stats};

/// A caller's test of whether a stored entry will do (fresh enough, say).
pub(crate) type Usable<V> = dyn Fn(&Entry<V>) -> bool + Send + Sync;

/// A tier below memory: a slower, larger, shared or persistent store of entries.
///
/// Every method is best-effort: a tier that fails logs it and answers as if empty
/// ([`Lookup::Unavailable`], [`Lock::Unavailable`], a store that does nothing), and the
/// cache carries on with its other tiers and its loader.
pub(crate) trait Tier<V>: Send + Sync {
    /// Looks `key` up. An entry `usable` refuses is not found.
    fn lookup<'a>(&'a self, key: &'a str, usable: &'a Usable<V>) -> BoxFuture<'a, Lookup<'a, V>>;

    /// Asks for the lock on loading `key` into this tier. Called after a lookup found
    /// nothing usable; the caller looks once more after winning it (a load elsewhere
    /// may have finished in between).
    fn lock<'a>(self: Arc<Self>, key: &'a str) -> BoxFuture<'a, Lock<'a, V>>;

    /// Stores an entry outside any load (an insert, or an entry a load stores beside
    /// its own).
    fn store<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()>;

    /// Removes `key`'s entry; a load holding its lock no longer stores.
    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;

    /// Removes the entries whose keys start with `prefix`; loads of such keys holding
    /// their locks no longer store.
    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()>;

    /// Removes every entry of this cache; loads holding locks no longer store.
    fn clear(&self) -> BoxFuture<'_, ()>;

    /// Purges the entries tagged `tag` (softly: they become stale), whichever key
    /// they are under, including those of loads that began before the purge and store
    /// after it.
    fn purge_tag<'a>(&'a self, tag: &'a str, soft: bool) -> BoxFuture<'a, ()>;

    /// Makes `key`'s entry stale (a soft purge); loads holding its lock no longer
    /// store. The default removes it, which a tier that cannot rewrite an entry's
    /// lifetime in place does instead.
    fn soften<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        self.invalidate(key)
    }

    /// [`soften`](Self::soften) for every key starting with `prefix`. The default
    /// removes them.
    fn soften_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
        self.invalidate_prefix(prefix)
    }

    /// Starts handing `sink` the invalidations other servers make in this tier, for as
    /// long as the tier lives and `sink` wants them. Called once, from within the
    /// runtime, when the cache first loads or inserts. A tier that no other server writes has
    /// nothing to hand on: the default does nothing.
    fn listen(self: Arc<Self>, sink: Sink) {
        drop(sink);
    }

    /// The mark of the latest invalidation in this tier, if it takes entries written
    /// as they arrive ([`stream`](Self::stream)).
    #[cfg(feature = "disk")]
    fn write_mark(&self) -> Option<crate::disk::WriteMark> {
        None
    }

    /// Starts writing the entry of `entry`'s key, carrying its tags, as it arrives,
    /// fresh for and kept for `lifetime`, unless an invalidation after `mark` covers
    /// it: `head` now, `rest_len` bytes
    /// later (see [`Cache::stream_to_disk`](crate::Cache::stream_to_disk)). The
    /// default writes nothing.
    #[cfg(feature = "disk")]
    fn stream<'a>(
        &'a self,
        entry: (&'a str, Vec<Box<str>>),
        lifetime: (std::time::Duration, std::time::Duration),
        mark: crate::disk::WriteMark,
        head: Vec<u8>,
        rest_len: u64,
    ) -> BoxFuture<'a, Option<crate::disk::DiskWriter>> {
        let _ = (entry, lifetime, mark, head, rest_len);
        Box::pin(futures_util::future::ready(None))
    }

    /// Adds this tier's own counters to a cache's [`Stats`]. The default adds none.
    fn report(&self, stats: &mut Stats) {
        let _ = stats;
    }
}

/// What a [`Tier::lookup`] found.
// Tiers construct these; without the `redis` feature no tier is compiled in yet.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Lookup<'a, V> {
    /// A usable entry, with its lifetime.
    Found(Entry<V>),
    /// Nothing usable, and nobody is loading it: ask for the [lock](Tier::lock).
    Missing,
    /// A load of this key failed elsewhere moments ago; its error is every waiter's.
    Failed(SharedError),
    /// Another server is loading the key into this tier: wait for this (it ends when
    /// that load finishes, or when its lock's lease runs out), then look again.
    Loading(BoxFuture<'a, ()>),
    /// The tier is not answering: skip it.
    Unavailable,
}

/// What a [`Tier::lock`] decided.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Lock<'a, V> {
    /// This server loads the key; the permit stores the outcome.
    Won(Box<dyn Permit<V>>),
    /// Another server holds the lock: wait for this, then look again.
    Held(BoxFuture<'a, ()>),
    /// The tier is not answering: load without it.
    Unavailable,
}

/// The right to load one key into a tier, and the duty to end the load there. Dropped
/// without [`release`](Permit::release) (its load's task was cancelled), a permit
/// releases its lock on its own, so that nobody waits for a load that will never end.
pub(crate) trait Permit<V>: Send + Sync {
    /// Keeps the lock for as long as the load runs (renewing its lease, say). Never
    /// completes: the load's task drops it when the loader is done.
    fn keep(&self) -> BoxFuture<'_, Infallible>;

    /// Ends the load: stores its outcome if the lock is still this load's (an
    /// invalidation takes it away), releases the lock and wakes whoever waits.
    fn release<'a>(self: Box<Self>, outcome: Release<'a, V>) -> BoxFuture<'a, ()>;

    /// Stores an entry the load gives beside its own ([`Loaded::also_store`]), as of
    /// when the load began: a purge made since covers it as it covers the load's own.
    ///
    /// [`Loaded::also_store`]: crate::Loaded::also_store
    fn store_also<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()>;
}

/// How a load that held a [`Permit`] ended.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Release<'a, V> {
    /// Store this entry (the load's value, or a lower tier's entry copied up).
    Value(&'a Entry<V>),
    /// The load failed: share its error with the other servers' waiters for a moment.
    Error(&'a Error),
    /// Nothing to store.
    Nothing,
}

impl<'a, V> Release<'a, V> {
    /// How a failed load ends: its error shared, unless it is this server's alone
    /// ([`Unshared`](crate::Unshared)).
    pub(crate) fn failed(error: &'a Error) -> Self {
        if error.is_unshared() {
            Release::Nothing
        } else {
            Release::Error(error)
        }
    }
}

/// An invalidation another server made, as a tier hands it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Invalidation<'a> {
    /// One key.
    Key(&'a str),
    /// The keys that start with this prefix.
    Prefix(&'a str),
    /// Every key.
    All,
    /// The entries tagged with this (softly: made stale).
    Tag { tag: &'a str, soft: bool },
    /// One key, made stale.
    Soften(&'a str),
    /// The keys that start with this prefix, made stale.
    SoftenPrefix(&'a str),
}

/// Where a tier hands on other servers' invalidations: the cache drops the keys from
/// its memory and from the tiers above the one that reported them. The future resolves
/// to `false` once the cache is gone, and the tier stops listening.
pub(crate) type Sink = Box<dyn Fn(Invalidation<'_>) -> BoxFuture<'static, bool> + Send + Sync>;

/// A tier as the builder holds it: made into a [`Tier`] when the cache is built, with
/// the cache's name and metrics.
pub(crate) trait TierSpec<V>: fmt::Debug + Send + Sync {
    /// The tier, for one cache; an error if it cannot be opened (its directory, say).
    fn build(&self, cache: &str, metrics: &Arc<Metrics>) -> Result<Arc<dyn Tier<V>>, ConfigError>;
}
