//! The disk tier: a tier below memory on a local disk, larger than memory and kept
//! across restarts. Build a [`DiskTier`] and give it to
//! [`CacheBuilder::disk_tier`](crate::CacheBuilder::disk_tier) (or call
//! [`CacheBuilder::disk`](crate::CacheBuilder::disk)).
//!
//! - **One file per entry** (as nginx's `proxy_cache` keeps them), named by a keyed
//!   hash of its key, holding the entry's lifetime in wall-clock time (so a restarted
//!   process sees its remaining freshness), the key, the value as the codec encoded it,
//!   and a checksum over all of it. A file is written under a temporary name and
//!   renamed into place whole; a file that fails its check (torn by a power cut,
//!   changed on disk) is never served: it is counted, removed, and read as a miss.
//! - **Warm restarts.** At start a background walk indexes the files an earlier process
//!   left, after a clean stop or a `SIGKILL` alike; the cache answers meanwhile, and a
//!   key the walk has not reached yet is looked for in its file all the same. Files half
//!   written when a process was killed are removed.
//! - **Bounded.** The files take at most `max_bytes` of disk, counted in 4 KiB blocks;
//!   S3-FIFO picks what to evict, so one-hit wonders pass through a small queue without
//!   pushing out what is read again.
//! - **Faults.** An I/O error (disk full, a read-only or vanished directory) turns the
//!   tier off, logged once and counted: loads go on with the other tiers and the loader.
//!   A probe brings it back once the directory works (see `health.rs`). Invalidations
//!   made while it is off are still kept, in memory, for when it is back.
//! - **Invalidations** reach disk at once: a key's file is removed, a prefix purge is
//!   written down and checked on every read until a walk has swept its files. A load
//!   that started before an invalidation does not store after it.
//!
//! It is the same [`Tier`] as the Redis tier, for a store that no other server writes:
//! its lock is always granted. Reads and writes run on Tokio's blocking threads.
//!
//! # Files
//!
//! | file | what it holds |
//! |---|---|
//! | `builder.rs` | [`DiskTier`] and the defaults |
//! | `files.rs` | the directory's files: read, write, remove, purge, and the walk at start |
//! | `layout.rs`, `record.rs` | where things are under the directory; the format of a file |
//! | `index.rs` | which files exist, their sizes, and S3-FIFO eviction |
//! | `purge.rs` | prefix purges kept until swept; the ledger that stops stale writes |
//! | `health.rs`, `metrics.rs` | on or off after a fault; the counters |

mod builder;
mod files;
mod health;
mod index;
mod layout;
mod metrics;
mod purge;
mod record;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::codec::Codec;
use crate::entry::Entry;
use crate::stats::Stats;
use crate::tier::wall::Clocks;
use crate::tier::{Lock, Lookup, Permit, Release, Tier, Usable};
use files::{Disk, fault};
use record::Times;

pub(crate) use builder::DiskSpec;
pub use builder::{DEFAULT_MAX_ENTRY_BYTES, DEFAULT_WRITES_AT_ONCE, DiskTier};
pub use layout::LayoutError;

/// One cache's disk tier, for its value type.
pub(crate) struct DiskStore<V> {
    disk: Arc<Disk>,
    codec: Arc<dyn Codec<V>>,
    writes: Arc<Semaphore>,
}

impl<V: Send + Sync + 'static> DiskStore<V> {
    fn new(disk: Arc<Disk>, codec: Arc<dyn Codec<V>>, writes_at_once: usize) -> Self {
        DiskStore {
            disk,
            codec,
            writes: Arc::new(Semaphore::new(writes_at_once)),
        }
    }

    /// Runs `work` on a blocking thread; an I/O error turns the tier off (`None`).
    async fn blocking<R: Send + 'static>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&Arc<Disk>) -> io::Result<R> + Send + 'static,
    ) -> Option<R> {
        let disk = Arc::clone(&self.disk);
        let error = match tokio::task::spawn_blocking(move || work(&disk)).await {
            Ok(Ok(done)) => return Some(done),
            Ok(Err(error)) => error,
            Err(join) => io::Error::other(join.to_string()),
        };
        fault(&self.disk, doing, &error);
        None
    }

    /// Whether the tier is on; while it is off, runs the probe when one is due.
    async fn available(&self) -> bool {
        let health = &self.disk.health;
        if !health.is_off() {
            return true;
        }
        if !health.probe_due() {
            return false;
        }
        let back = self
            .blocking("probing", |disk| disk.probe())
            .await
            .is_some();
        if back {
            health.back();
            self.disk.metrics.off(false);
        }
        back
    }

    async fn look<'a>(&self, key: &str, usable: &Usable<V>) -> Lookup<'a, V> {
        if !self.available().await {
            return Lookup::Unavailable;
        }
        let (codec, owned) = (Arc::clone(&self.codec), key.to_owned());
        let read = self.blocking("reading", move |disk| {
            let Some(checked) = disk.read(&owned)? else {
                return Ok(None);
            };
            if checked.head.codec != codec.id() {
                return Ok(None);
            }
            match codec.decode(checked.payload()) {
                Ok(value) => Ok(Some((checked.head.times, value))),
                Err(error) => disk.undecodable(&owned, &error).map(|()| None),
            }
        });
        let Some(found) = read.await else {
            return Lookup::Unavailable;
        };
        let Some((times, value)) = found else {
            return Lookup::Missing;
        };
        let clocks = Clocks::now();
        let entry = Entry {
            value,
            stored_at: clocks.instant(times.stored_ms),
            fresh_until: clocks.instant(times.fresh_ms),
            stale_until: clocks.instant(times.stale_ms),
        };
        if !usable(&entry) {
            return Lookup::Missing;
        }
        self.disk.metrics.hits.add(1);
        Lookup::Found(entry)
    }

    /// Writes an entry unless an invalidation after `since` covers it; skipped when
    /// the tier is off or [`writes_at_once`](DiskTier::writes_at_once) are running.
    async fn write(&self, key: &str, entry: &Entry<V>, since: u64) {
        let Ok(running) = Arc::clone(&self.writes).try_acquire_owned() else {
            self.disk.metrics.writes_skipped.add(1);
            return;
        };
        if !self.available().await {
            self.disk.metrics.writes_skipped.add(1);
            return;
        }
        let payload = match self.codec.encode(&entry.value) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(key, %error, "value not encodable for the disk tier; kept in memory only");
                return;
            }
        };
        let clocks = Clocks::now();
        let times = Times {
            stored_ms: clocks.unix_ms(entry.stored_at),
            fresh_ms: clocks.unix_ms(entry.fresh_until),
            stale_ms: clocks.unix_ms(entry.stale_until),
        };
        let (codec, key) = (self.codec.id(), key.to_owned());
        self.blocking("writing", move |disk| {
            disk.write(&key, codec, times, &payload, since)
        })
        .await;
        drop(running);
    }
}

/// Each method of the tier, by what it does to the files (`files.rs`).
impl<V: Send + Sync + 'static> Tier<V> for DiskStore<V> {
    fn lookup<'a>(&'a self, key: &'a str, usable: &'a Usable<V>) -> BoxFuture<'a, Lookup<'a, V>> {
        Box::pin(self.look(key, usable))
    }

    fn lock<'a>(self: Arc<Self>, key: &'a str) -> BoxFuture<'a, Lock<'a, V>> {
        let since = self.disk.since();
        let permit = DiskPermit {
            tier: self,
            key: key.to_owned(),
            since,
        };
        futures_util::future::ready(Lock::Won(Box::new(permit))).boxed()
    }

    fn store<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()> {
        Box::pin(self.write(key, entry, self.disk.since()))
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        let key = key.to_owned();
        Box::pin(
            self.blocking("removing", move |disk| disk.remove(&key))
                .map(drop),
        )
    }

    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
        let prefix = prefix.to_owned();
        Box::pin(
            self.blocking("purging", move |disk| disk.purge(&prefix))
                .map(drop),
        )
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.blocking("clearing", |disk| disk.purge("")).map(drop))
    }

    fn report(&self, stats: &mut Stats) {
        stats.disk = Some(self.disk.stats());
    }
}

/// A load's right to store its value on disk, unless the key is invalidated first.
struct DiskPermit<V> {
    tier: Arc<DiskStore<V>>,
    key: String,
    /// The latest invalidation when the load began.
    since: u64,
}

impl<V: Send + Sync + 'static> Permit<V> for DiskPermit<V> {
    fn keep(&self) -> BoxFuture<'_, Infallible> {
        futures_util::future::pending().boxed()
    }

    fn release<'a>(self: Box<Self>, outcome: Release<'a, V>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Release::Value(entry) = outcome {
                self.tier.write(&self.key, entry, self.since).await;
            }
        })
    }
}
