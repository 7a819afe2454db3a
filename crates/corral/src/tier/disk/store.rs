//! One cache's disk tier: the [`Tier`] the engine sees, for its value type. It encodes
//! and decodes values with the cache's codec, runs the file work of `files.rs` on
//! Tokio's blocking threads, and turns an I/O error into the tier going off.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

use super::files::{Checked, Disk, fault, now_ms};
use super::open::Payload;
use super::record::Times;
use super::stream::{DiskWriter, Start, WriteMark};
use super::walk;
use crate::codec::Codec;
use crate::entry::Entry;
use crate::stats::Stats;
use crate::tags::Tagged;
use crate::tier::wall::Clocks;
use crate::tier::{Lock, Lookup, Permit, Release, Tier, Usable};

/// An entry as read from disk, decoded.
struct Found<V> {
    times: Times,
    tags: Vec<Box<str>>,
    softened_ms: Option<u64>,
    value: V,
}

/// Decodes `key`'s entry as read (`None`: there was none); an undecodable one is
/// counted as corrupt and removed.
fn decode<V: 'static>(
    disk: &Disk,
    codec: &dyn Codec<V>,
    key: &str,
    checked: Option<Checked>,
) -> io::Result<Option<Found<V>>> {
    let Some(checked) = checked else {
        return Ok(None);
    };
    if checked.head.codec != codec.id() {
        return Ok(None);
    }
    let (times, tags, softened_ms) = (checked.head.times, checked.tags, checked.softened_ms);
    let decoded = match checked.payload {
        Payload::Bytes(bytes) => codec.decode_owned(bytes),
        Payload::File(file) => match codec.decode_file(&file) {
            Some(decoded) => decoded,
            None => codec.decode_owned(file.read_all()?),
        },
    };
    match decoded {
        Ok(value) => Ok(Some(Found {
            times,
            tags,
            softened_ms,
            value,
        })),
        Err(error) => disk.undecodable(key, &error).map(|()| None),
    }
}

/// One cache's disk tier, for its value type.
pub(crate) struct DiskStore<V> {
    disk: Arc<Disk>,
    codec: Arc<dyn Codec<V>>,
    writes: Arc<Semaphore>,
    /// Entries being written as they arrive (`stream.rs`), each holding one.
    streams: Arc<Semaphore>,
}

impl<V: Send + Sync + 'static> DiskStore<V> {
    pub(crate) fn new(disk: Arc<Disk>, codec: Arc<dyn Codec<V>>, writes_at_once: usize) -> Self {
        DiskStore {
            disk,
            codec,
            writes: Arc::new(Semaphore::new(writes_at_once)),
            streams: Arc::new(Semaphore::new(writes_at_once)),
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
        // On a blocking thread, even when the file is in the page cache: a read that
        // takes a moment lets concurrent requests for the key join its flight and share
        // it (reading on the event loop was measured slower on a hot key; BENCHMARKS.md).
        let (codec, owned) = (Arc::clone(&self.codec), key.to_owned());
        let read = self.blocking("reading", move |disk| {
            let checked = disk.read(&owned)?;
            decode(disk, &*codec, &owned, checked)
        });
        let Some(found) = read.await else {
            return Lookup::Unavailable;
        };
        let Some(Found {
            times,
            tags,
            softened_ms,
            value,
        }) = found
        else {
            return Lookup::Missing;
        };
        let clocks = Clocks::now();
        // Its tags, at no tick: the cache notes the tick its own load began at.
        let entry = Entry {
            value,
            stored_at: clocks.instant(times.stored_ms),
            fresh_until: clocks.instant(times.fresh_ms),
            stale_until: clocks.instant(times.stale_ms),
            load_micros: 0,
            tagged: Tagged::new(&tags, 0),
            softened: softened_ms.map(|ms| clocks.instant(ms)),
        };
        if !usable(&entry) {
            return Lookup::Missing;
        }
        self.disk.metrics.hits.add(1);
        Lookup::Found(entry)
    }

    /// Writes an entry with its tags, unless an invalidation after `since` covers it;
    /// skipped when the tier is off or [`writes_at_once`](super::DiskTier::writes_at_once)
    /// are running.
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
        // Stale from a soft purge on, if one made it so (one of another server's,
        // found in Redis, say): records keep no other mark of it.
        let fresh_until = entry.softened.map_or(entry.fresh_until, |at| {
            at.max(entry.stored_at).min(entry.fresh_until)
        });
        let times = Times {
            stored_ms: clocks.unix_ms(entry.stored_at),
            fresh_ms: clocks.unix_ms(fresh_until),
            stale_ms: clocks.unix_ms(entry.stale_until),
        };
        let (codec, key) = (self.codec.id(), key.to_owned());
        let tags: Vec<Box<str>> = entry.tags().map(Box::from).collect();
        self.blocking("writing", move |disk| {
            disk.write((&key, &tags), codec, times, &payload, since)
        })
        .await;
        drop(running);
    }
}

impl<V: Send + Sync + 'static> DiskStore<V> {
    /// Starts writing an entry as it arrives (see `stream.rs`); `None` when the tier
    /// is off, or as many streams as writes at once are running.
    async fn start_stream(
        &self,
        (key, tags): (&str, Vec<Box<str>>),
        (fresh_for, ttl): (Duration, Duration),
        mark: WriteMark,
        head: Vec<u8>,
        rest_len: u64,
    ) -> Option<DiskWriter> {
        let Ok(running) = Arc::clone(&self.streams).try_acquire_owned() else {
            self.disk.metrics.writes_skipped.add(1);
            return None;
        };
        if !self.available().await {
            self.disk.metrics.writes_skipped.add(1);
            return None;
        }
        let now = now_ms();
        let ms = |d: Duration| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let times = Times {
            stored_ms: now,
            fresh_ms: ms(fresh_for),
            stale_ms: ms(ttl),
        };
        let (key, codec, since) = (key.to_owned(), self.codec.id(), mark.0);
        self.blocking("writing", move |disk| {
            let start = Start {
                key: &key,
                tags,
                codec,
                times,
                head,
                rest_len,
                since,
            };
            DiskWriter::create(disk, start, running)
        })
        .await
        .flatten()
    }

    /// Purges `prefix` (every key, when empty) for reads at once, and starts the walk
    /// that removes its files.
    async fn purge(&self, prefix: String) {
        let purged = self.blocking("purging", move |disk| {
            disk.purge(&prefix)?;
            walk::start(disk, false)
        });
        purged.await;
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
        Box::pin(self.purge(prefix.to_owned()))
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.purge(String::new()))
    }

    fn purge_tag<'a>(&'a self, tag: &'a str, soft: bool) -> BoxFuture<'a, ()> {
        let tag = tag.to_owned();
        Box::pin(
            self.blocking("purging a tag", move |disk| disk.purge_tag(&tag, soft))
                .map(drop),
        )
    }

    fn write_mark(&self) -> Option<WriteMark> {
        Some(WriteMark(self.disk.since()))
    }

    fn stream<'a>(
        &'a self,
        entry: (&'a str, Vec<Box<str>>),
        lifetime: (Duration, Duration),
        mark: WriteMark,
        head: Vec<u8>,
        rest_len: u64,
    ) -> BoxFuture<'a, Option<DiskWriter>> {
        Box::pin(self.start_stream(entry, lifetime, mark, head, rest_len))
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

    fn store_also<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()> {
        Box::pin(self.tier.write(key, entry, self.since))
    }
}
