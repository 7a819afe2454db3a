//! [`Cache`]: the read path and the rules that decide when a loader runs. A call looks
//! in the memory tier; without a usable entry it joins the key's flight, whose one load
//! (in [`load`](crate::load)) looks in each tier below memory in order, then runs the
//! loader. Writes and invalidations go to memory, then to every tier below it.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::early;
use crate::entry::{Entry, Freshness};
use crate::error::Error;
use crate::flight::{Join, Settled};
use crate::load;
use crate::loaded::Loaded;
use crate::state::{InsertMark, State};
use crate::stats::{Lookup, Stats};

/// How [`Cache::load`] came by its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The stored entry passed the caller's test; nothing was loaded.
    Stored,
    /// This call's loader ran.
    Loaded,
    /// This call waited for a load another caller had started, whose loader ran.
    Joined,
    /// A tier below memory had a usable entry (the disk tier's, or another server's
    /// load in the Redis tier): this call's load found it, or the load it waited for
    /// did. No loader ran.
    Tier,
}

/// A load's value, and how a caller came by it: `waited` (its own load, or one it
/// joined) unless a tier below memory had it.
fn sourced<V>(settled: Settled<V>, waited: Source) -> (V, Source) {
    let source = if settled.from_tier {
        Source::Tier
    } else {
        waited
    };
    (settled.value, source)
}

/// A coalescing cache: one load per key, stale-while-revalidate, a memory tier bounded
/// by bytes, and optionally a Redis tier shared by many servers.
///
/// Cheap to clone (clones share the same entries) and `Send + Sync`. Requires a Tokio
/// runtime: loads run in spawned tasks.
///
/// # When a loader runs, and who waits
///
/// [`get_or_load`](Self::get_or_load) looks the key up in the memory tier:
///
/// - **fresh** entry: returned; no loader runs.
/// - **stale** entry (past `fresh_for`, within `ttl`): returned at once; if no load is
///   running for the key, this caller's loader starts a background refresh. However
///   many callers arrive, one refresh runs per key (per cluster, with a Redis tier).
///   If it fails, the stale value keeps being served until its `ttl` ends
///   (stale-if-error); the error is counted and logged.
/// - **no entry, or expired**: if a load is running for the key, the caller waits for
///   it; otherwise its loader starts one. Only the first caller's loader runs; the other
///   callers' loaders are dropped without being called.
///
/// A load runs in its own task. Cancelling a waiter (dropping its future, aborting its
/// task) never cancels the load: it still stores its value and answers the other
/// waiters. Every waiter of a load gets the same value or the same [`Error`]. Errors
/// are never stored: the next call loads again. A panicking loader is an
/// [`Error::Panicked`] for every waiter, and a load that outlives `load_timeout` is
/// cancelled and an [`Error::Timeout`]; either way the key is free for the next load.
///
/// With a Redis tier (`corral::redis`), a load first looks in Redis (a value there is
/// copied into memory with its remaining lifetime), then takes a lock shared by every
/// server, so that one load runs per cluster; the other servers wait for it and read
/// its value. Redis failing never fails a call: the load then runs here.
///
/// [`load`](Self::load), [`refresh`](Self::refresh) and [`peek`](Self::peek) are the
/// same machinery for callers that judge freshness themselves.
///
/// [`insert`](Self::insert) and [`invalidate`](Self::invalidate) win over loads that
/// are running: such a load still answers its waiters but no longer stores its value.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache: corral::Cache<String> = corral::Cache::builder().build()?;
/// let calls = Arc::new(AtomicUsize::new(0));
/// let lookups = (0..100).map(|_| {
///     let calls = calls.clone();
///     cache.get_or_load("user:42", move || async move {
///         calls.fetch_add(1, Ordering::SeqCst);
///         Ok::<_, std::io::Error>("Ada".to_string())
///     })
/// });
/// let values = futures_util::future::join_all(lookups).await;
/// assert!(values.iter().all(|v| v.as_deref().ok() == Some("Ada")));
/// assert_eq!(calls.load(Ordering::SeqCst), 1);
/// # Ok(()) }
/// ```
pub struct Cache<V> {
    pub(crate) state: Arc<State<V>>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            state: Arc::clone(&self.state),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.state.config.name)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    pub(crate) fn from_state(state: State<V>) -> Self {
        Cache {
            state: Arc::new(state),
        }
    }

    /// The cache's name, as given to [`CacheBuilder::name`](crate::CacheBuilder::name).
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// Returns the value for `key`, loading it with `loader` if there is no usable
    /// entry. See the [type docs](Self) for exactly when the loader runs.
    ///
    /// The loader returns `Result<T, E>`: `T` is a `V` or a [`Loaded<V>`] (to set this
    /// entry's lifetime, or not to store it); `E` is any error, shared with every waiter
    /// as [`Error::Load`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// let err = cache
    ///     .get_or_load("k", || async { Err::<String, _>(std::io::Error::other("origin down")) })
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, corral::Error::Load(_)));
    /// // Errors are not stored: the next call loads again.
    /// let v = cache.get_or_load("k", || async { Ok::<_, std::io::Error>("up".to_string()) }).await;
    /// assert_eq!(v.unwrap(), "up");
    /// # }
    /// ```
    pub async fn get_or_load<F, Fut, T, E>(&self, key: &str, loader: F) -> Result<V, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Loaded<V>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    {
        let state = &*self.state;
        let now = Instant::now();
        let Some(found) = state
            .read(key)
            .filter(|e| e.freshness(now) != Freshness::Expired)
        else {
            let unexpired = |e: &Entry<V>| e.freshness(Instant::now()) != Freshness::Expired;
            let (value, _) = self.load(key, unexpired, loader).await?;
            return Ok(value);
        };
        if found.freshness(now) == Freshness::Fresh {
            state.metrics.lookup(Lookup::Hit);
            if self.refresh_early_due(found.load_time(), found.fresh_until) {
                // Only an entry fresher than this one will do instead of the load (one
                // another server's early refresh stored in a shared tier, say).
                let fresh_until = found.fresh_until;
                self.refresh(key, move |e| e.fresh_until > fresh_until, loader);
            }
        } else {
            state.metrics.lookup(Lookup::Stale);
            self.refresh(
                key,
                |e| e.freshness(Instant::now()) == Freshness::Fresh,
                loader,
            );
        }
        Ok(found.value)
    }

    /// Loads `key` through its flight, unless the stored entry passes `usable`.
    ///
    /// This is the building block under [`get_or_load`](Self::get_or_load) for callers
    /// that decide for themselves when a stored value will do (an HTTP cache, say, whose
    /// requests carry their own freshness demands). `usable` is checked under the
    /// flight's lock, just before a new load would start, so a value stored by a load
    /// that finished a moment ago is found rather than loaded twice; with a Redis tier
    /// it also decides whether a value found in Redis will do. If a load is already
    /// running, the caller waits for it without checking `usable`.
    ///
    /// ```
    /// use corral::Source;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), corral::Error> {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// let (v, source) = cache
    ///     .load("k", |_| true, || async { Ok::<_, std::io::Error>("v".to_string()) })
    ///     .await?;
    /// assert_eq!((v.as_str(), source), ("v", Source::Loaded));
    /// let (_, source) = cache
    ///     .load("k", |_| true, || async { Ok::<_, std::io::Error>("w".to_string()) })
    ///     .await?;
    /// assert_eq!(source, Source::Stored);
    /// # Ok(()) }
    /// ```
    pub async fn load<U, F, Fut, T, E>(
        &self,
        key: &str,
        usable: U,
        loader: F,
    ) -> Result<(V, Source), Error>
    where
        U: Fn(&Entry<V>) -> bool + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Loaded<V>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    {
        let state = &*self.state;
        let recheck = || state.read(key).filter(&usable);
        match state.flights.join(key, recheck) {
            Join::Found(entry) => {
                state.metrics.lookup(Lookup::Hit);
                Ok((entry.value, Source::Stored))
            }
            Join::Follow(wait) => {
                drop(loader);
                state.metrics.lookup(Lookup::Coalesced);
                // A plain `tracing` span, nothing when no subscriber wants it.
                let span = tracing::debug_span!(
                    "corral.flight_wait",
                    cache = %state.config.name,
                    key = %key,
                );
                Ok(sourced(wait.instrument(span).await?, Source::Joined))
            }
            Join::Lead(leader) => {
                state.metrics.lookup(Lookup::Miss);
                let wait = leader.wait();
                load::spawn(&self.state, leader, loader, usable, false);
                Ok(sourced(wait.await?, Source::Loaded))
            }
        }
    }

    /// Starts one background load of `key` and returns at once, unless a load of `key`
    /// is already running or the stored entry passes `usable` (checked under the
    /// flight's lock; with a Redis tier, a value there that passes it is taken instead
    /// of loading). Returns whether it started a load.
    ///
    /// If the load fails, the stored entry is left as it is (stale-if-error); the error
    /// is counted and logged.
    pub fn refresh<U, F, Fut, T, E>(&self, key: &str, usable: U, loader: F) -> bool
    where
        U: Fn(&Entry<V>) -> bool + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Loaded<V>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    {
        let state = &*self.state;
        let recheck = || state.read(key).filter(&usable);
        match state.flights.join(key, recheck) {
            Join::Lead(leader) => {
                load::spawn(&self.state, leader, loader, usable, true);
                true
            }
            Join::Follow(_) | Join::Found(_) => false,
        }
    }

    /// The stored entry for `key`, fresh or stale (not expired), without loading and
    /// without counting a lookup.
    pub fn peek(&self, key: &str) -> Option<Entry<V>> {
        self.state
            .read(key)
            .filter(|e| e.freshness(Instant::now()) != Freshness::Expired)
    }

    /// Whether a hit now on an entry whose load took `load_time`
    /// ([`Entry::load_time`]) and that is fresh until `expires` should start the key's
    /// refresh early ([`early_refresh`](crate::CacheBuilder::early_refresh); always
    /// `false` when it is off, or the load time is not known). For callers that judge
    /// freshness themselves (an HTTP cache, whose responses say how long they are
    /// fresh) and refresh through [`refresh`](Self::refresh);
    /// [`get_or_load`](Self::get_or_load) does this itself.
    pub fn refresh_early_due(&self, load_time: std::time::Duration, expires: Instant) -> bool {
        self.state
            .config
            .early_refresh
            .is_some_and(|beta| early::refresh_early(Instant::now(), expires, load_time, beta))
    }

    /// Returns the value for `key` if it is fresh or stale, without loading.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// assert_eq!(cache.get("k"), None);
    /// cache.insert("k", "v".to_string()).await;
    /// assert_eq!(cache.get("k").as_deref(), Some("v"));
    /// # }
    /// ```
    pub fn get(&self, key: &str) -> Option<V> {
        let state = &*self.state;
        let entry = state.read(key);
        let freshness = entry
            .as_ref()
            .map_or(Freshness::Expired, |e| e.freshness(Instant::now()));
        match freshness {
            Freshness::Fresh => state.metrics.lookup(Lookup::Hit),
            Freshness::Stale => state.metrics.lookup(Lookup::Stale),
            Freshness::Expired => {
                state.metrics.lookup(Lookup::Miss);
                return None;
            }
        }
        entry.map(Entry::into_value)
    }

    /// Stores a value (a `V`, or a [`Loaded<V>`] with its own lifetime) under `key`,
    /// replacing any entry, in memory and (with a Redis tier) in Redis. A load running
    /// for `key` still answers its waiters but no longer stores its value. A
    /// [`Loaded::uncached`] value is not stored, so inserting one changes nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("motd", corral::Loaded::new("hi".to_string()).ttl(Duration::from_secs(5))).await;
    /// assert_eq!(cache.get("motd").as_deref(), Some("hi"));
    /// # }
    /// ```
    pub async fn insert(&self, key: &str, value: impl Into<Loaded<V>>) {
        let mut loaded = value.into();
        for (key, related) in std::mem::take(&mut loaded.also) {
            self.insert_one(&key, related, None).await;
        }
        self.insert_one(key, loaded, None).await;
    }

    /// Inserts one entry, as of `mark` if given; returns whether it was stored (not
    /// when an invalidation came after `mark`).
    async fn insert_one(&self, key: &str, loaded: Loaded<V>, mark: Option<InsertMark>) -> bool {
        // Entries inserted here must hear of other servers' invalidations too.
        self.state.listen();
        let state = &*self.state;
        let tick = mark.map_or_else(|| state.tags.now(), |m| m.tick);
        let Some(entry) = state.entry_for(&loaded, tick) else {
            return false;
        };
        if state.tag_purged(entry.tagged.as_deref()) {
            // One of its tags was purged after the mark.
            return false;
        }
        let moved = || mark.is_some_and(|m| state.invalidated_since(m, key));
        let copy = (!state.tiers.is_empty() && !loaded.memory_only).then(|| entry.clone());
        let tagged = entry.tagged.clone();
        // In memory, unless refused there (larger than the whole bound); the tiers
        // below take it either way.
        let in_memory = state
            .flights
            .detach_with(key, || (!moved()).then(|| state.memory.insert(key, entry)));
        let Some(in_memory) = in_memory else {
            return false;
        };
        if moved() {
            // An invalidation raced the insert: it may have covered this value.
            if in_memory {
                state.drop_locally(key);
            }
            return false;
        }
        state.publish_size();
        if let Some(entry) = copy {
            for tier in &state.tiers {
                tier.store(key, &entry).await;
            }
            if moved() || state.tag_purged(tagged.as_deref()) {
                // An invalidation (of its key, or a purge of one of its tags) came
                // while the tiers were written: it may have reached them first.
                self.invalidate(key).await;
                return false;
            }
        }
        true
    }

    /// A mark of the invalidations made so far, for [`insert_since`](Self::insert_since).
    /// Take it before fetching a value that bypasses [`get_or_load`](Self::get_or_load)
    /// and its flight.
    pub fn insert_mark(&self) -> InsertMark {
        self.state.mark()
    }

    /// [`insert`](Self::insert), unless an invalidation (of any key, prefix or tag of
    /// the value; soft or not) came after `mark` was taken: a value fetched before a
    /// purge never survives it, even when it is stored after. Returns whether it was
    /// stored (its related entries, [`Loaded::also_store`], are stored likewise).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// let mark = cache.insert_mark();
    /// // ... the value is fetched, and meanwhile:
    /// cache.invalidate("/page").await;
    /// assert!(!cache.insert_since("/page", "old".to_string(), mark).await);
    /// assert_eq!(cache.get("/page"), None);
    /// # }
    /// ```
    pub async fn insert_since(
        &self,
        key: &str,
        value: impl Into<Loaded<V>>,
        mark: InsertMark,
    ) -> bool {
        let mut loaded = value.into();
        for (key, related) in std::mem::take(&mut loaded.also) {
            self.insert_one(&key, related, Some(mark)).await;
        }
        self.insert_one(key, loaded, Some(mark)).await
    }

    /// The disk tier's mark of the invalidations made so far (feature `disk`; `None`
    /// without a disk tier). Take it when the load of a value to
    /// [stream to disk](Self::stream_to_disk) begins: an invalidation of the key made
    /// after it keeps that value off disk, as it keeps a load's value out of every tier.
    #[cfg(feature = "disk")]
    pub fn write_mark(&self) -> Option<crate::disk::WriteMark> {
        self.state.tiers.iter().find_map(|tier| tier.write_mark())
    }

    /// Starts writing a value too large for memory straight into the disk tier, as its
    /// bytes arrive (feature `disk`): `head` is the start of its payload as the disk
    /// tier's codec encodes it, and `rest_len` more bytes will follow through
    /// [`DiskWriter::append`](crate::disk::DiskWriter::append). The entry is fresh for
    /// `lifetime.0` and kept for `lifetime.1` from now, tagged `tags` (as
    /// [`Loaded::tag`] tags a value), and not put in place if an invalidation of `key`
    /// or of one of its tags came after `mark` (see [`write_mark`](Self::write_mark)).
    /// Readers may read the rest through
    /// [`DiskWriter::blob`](crate::disk::DiskWriter::blob) while it is written; keep
    /// the value that holds that blob in memory with [`Loaded::memory_only`].
    ///
    /// `None` if there is no disk tier, it is off, the entry is larger than its
    /// `max_entry_bytes`, or [`writes_at_once`](crate::disk::DiskTier::writes_at_once)
    /// streams are running already. For codecs that decode such payloads from their
    /// files ([`Codec::decode_file`](crate::codec::Codec::decode_file)). Give the
    /// value kept in memory the same tags.
    #[cfg(feature = "disk")]
    pub async fn stream_to_disk(
        &self,
        key: &str,
        tags: &[String],
        (fresh_for, ttl): (std::time::Duration, std::time::Duration),
        mark: crate::disk::WriteMark,
        head: Vec<u8>,
        rest_len: u64,
    ) -> Option<crate::disk::DiskWriter> {
        let tier = self
            .state
            .tiers
            .iter()
            .find(|tier| tier.write_mark().is_some())?;
        let lifetime = (fresh_for.min(ttl), ttl);
        // As `Loaded::tag` takes them: each once, none empty.
        let tags = tags
            .iter()
            .fold(Loaded::new(()), |loaded, tag| loaded.tag(tag))
            .tags;
        tier.stream((key, tags), lifetime, mark, head, rest_len)
            .await
    }

    /// The cache's counters since it was built.
    pub fn stats(&self) -> Stats {
        let state = &*self.state;
        let (entries, bytes) = state.memory.size();
        let mut stats = state
            .metrics
            .snapshot(entries, bytes, state.flights.len() as u64);
        for tier in &state.tiers {
            tier.report(&mut stats);
        }
        stats
    }

    /// Runs the memory tier's pending maintenance now (evictions and expirations), so
    /// that [`stats`](Self::stats) counts are exact. Never needed for correctness.
    pub fn run_pending_tasks(&self) {
        self.state.memory.run_pending_tasks();
        self.state.publish_size();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::future::{pending, ready};
    use std::sync::Mutex;
    use std::time::Duration;

    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::state::Config;
    use crate::stats::Metrics;
    use crate::tier::{Invalidation, Lock, Lookup, Permit, Release, Sink, Tier, Usable};
    use crate::weigh::ByWeigh;

    /// A tier below memory that no other server writes, as a disk tier would be: a map
    /// whose lock is always granted, and whose permit stores unless the map was
    /// invalidated since it was granted.
    #[derive(Default)]
    struct MapTier {
        entries: Mutex<HashMap<String, Entry<String>>>,
        generation: Mutex<u64>,
        sink: Mutex<Option<Sink>>,
    }

    impl MapTier {
        fn with(key: &str, entry: Entry<String>) -> Arc<Self> {
            let tier = MapTier::default();
            tier.entries.lock().unwrap().insert(key.to_owned(), entry);
            Arc::new(tier)
        }

        fn get(&self, key: &str) -> Option<Entry<String>> {
            self.entries.lock().unwrap().get(key).cloned()
        }

        fn change(&self, change: impl FnOnce(&mut HashMap<String, Entry<String>>)) {
            *self.generation.lock().unwrap() += 1;
            change(&mut self.entries.lock().unwrap());
        }
    }

    impl Tier<String> for MapTier {
        fn lookup<'a>(
            &'a self,
            key: &'a str,
            usable: &'a Usable<String>,
        ) -> BoxFuture<'a, Lookup<'a, String>> {
            let found = self.get(key).filter(|e| usable(e));
            ready(found.map_or(Lookup::Missing, Lookup::Found)).boxed()
        }

        fn lock<'a>(self: Arc<Self>, key: &'a str) -> BoxFuture<'a, Lock<'a, String>> {
            let generation = *self.generation.lock().unwrap();
            let key = key.to_owned();
            let permit = MapPermit {
                tier: self,
                key,
                generation,
            };
            ready(Lock::Won(Box::new(permit))).boxed()
        }

        fn store<'a>(&'a self, key: &'a str, entry: &'a Entry<String>) -> BoxFuture<'a, ()> {
            let mut entries = self.entries.lock().unwrap();
            entries.insert(key.to_owned(), entry.clone());
            ready(()).boxed()
        }

        fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
            self.change(|entries| drop(entries.remove(key)));
            ready(()).boxed()
        }

        fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
            self.change(|entries| entries.retain(|key, _| !key.starts_with(prefix)));
            ready(()).boxed()
        }

        fn clear(&self) -> BoxFuture<'_, ()> {
            self.change(HashMap::clear);
            ready(()).boxed()
        }

        fn purge_tag<'a>(&'a self, tag: &'a str, _soft: bool) -> BoxFuture<'a, ()> {
            self.change(|entries| entries.retain(|_, e| !e.tags().any(|t| t == tag)));
            ready(()).boxed()
        }

        fn listen(self: Arc<Self>, sink: Sink) {
            *self.sink.lock().unwrap() = Some(sink);
        }
    }

    struct MapPermit {
        tier: Arc<MapTier>,
        key: String,
        generation: u64,
    }

    impl Permit<String> for MapPermit {
        fn keep(&self) -> BoxFuture<'_, Infallible> {
            pending().boxed()
        }

        fn release<'a>(self: Box<Self>, outcome: Release<'a, String>) -> BoxFuture<'a, ()> {
            let current = *self.tier.generation.lock().unwrap() == self.generation;
            if let (Release::Value(entry), true) = (outcome, current) {
                let mut entries = self.tier.entries.lock().unwrap();
                entries.insert(self.key.clone(), entry.clone());
            }
            ready(()).boxed()
        }

        fn store_also<'a>(&'a self, key: &'a str, entry: &'a Entry<String>) -> BoxFuture<'a, ()> {
            if *self.tier.generation.lock().unwrap() == self.generation {
                self.tier.store(key, entry)
            } else {
                ready(()).boxed()
            }
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// A cache over these tiers, in this order.
    fn cache_over(tiers: &[&Arc<MapTier>]) -> Cache<String> {
        let config = Config {
            name: "tiers".to_owned(),
            max_bytes: 1 << 20,
            fresh_for: MINUTE,
            ttl: MINUTE,
            load_timeout: MINUTE,
            log_load_errors: true,
            early_refresh: None,
        };
        let tiers = tiers
            .iter()
            .map(|&tier| Arc::clone(tier) as Arc<dyn Tier<String>>)
            .collect();
        let metrics = Arc::new(Metrics::new("tiers"));
        Cache::from_state(State::new(config, Arc::new(ByWeigh), metrics, tiers))
    }

    fn loader(value: &str) -> impl FnOnce() -> BoxFuture<'static, Result<String, std::io::Error>> {
        let value = value.to_owned();
        move || ready(Ok(value)).boxed()
    }

    #[tokio::test]
    async fn a_hit_in_a_lower_tier_answers_the_load_and_is_copied_up_with_its_lifetime() {
        let stored = Entry::new("lower".to_owned(), Instant::now(), MINUTE / 2, MINUTE);
        let (upper, lower) = (Arc::new(MapTier::default()), MapTier::with("k", stored));
        let cache = cache_over(&[&upper, &lower]);
        let never = || async { Err::<String, _>(std::io::Error::other("not called")) };
        assert_eq!(cache.get_or_load("k", never).await.unwrap(), "lower");
        let in_memory = cache.peek("k").expect("copied into memory");
        let in_upper = upper.get("k").expect("copied into the tier above");
        let original = lower.get("k").unwrap();
        for copy in [&in_memory, &in_upper] {
            assert_eq!(copy.fresh_until(), original.fresh_until());
            assert_eq!(copy.stale_until(), original.stale_until());
        }
        assert_eq!(cache.stats().loads_ok, 0);
    }

    #[tokio::test]
    async fn a_loaded_value_is_stored_in_every_tier_that_granted_its_lock() {
        let (upper, lower) = (Arc::new(MapTier::default()), Arc::new(MapTier::default()));
        let cache = cache_over(&[&upper, &lower]);
        let loaded = Loaded::new("v".to_owned()).also_store("other", Loaded::new("o".to_owned()));
        let value = cache
            .get_or_load("k", || async { Ok::<_, std::io::Error>(loaded) })
            .await;
        assert_eq!(value.unwrap(), "v");
        for tier in [&upper, &lower] {
            assert_eq!(tier.get("k").map(Entry::into_value).as_deref(), Some("v"));
            assert_eq!(
                tier.get("other").map(Entry::into_value).as_deref(),
                Some("o")
            );
        }
    }

    #[tokio::test]
    async fn a_load_invalidated_while_it_runs_stores_in_no_tier() {
        let tier = Arc::new(MapTier::default());
        let cache = cache_over(&[&tier]);
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let load = tokio::spawn({
            let cache = cache.clone();
            async move {
                let loader = || async move {
                    let _ = started.send(());
                    let _ = gate.await;
                    Ok::<_, std::io::Error>("old".to_owned())
                };
                cache.get_or_load("k", loader).await
            }
        });
        // The loader runs once the load holds the tier's lock.
        running.await.unwrap();
        cache.invalidate("k").await;
        go.send(()).unwrap();
        assert_eq!(
            load.await.unwrap().unwrap(),
            "old",
            "its callers still get it"
        );
        assert!(cache.peek("k").is_none());
        assert!(tier.get("k").is_none());
    }

    #[tokio::test]
    async fn inserts_and_invalidations_reach_every_tier() {
        let (upper, lower) = (Arc::new(MapTier::default()), Arc::new(MapTier::default()));
        let cache = cache_over(&[&upper, &lower]);
        for key in ["/a/1", "/a/2", "/b/1"] {
            cache.insert(key, key.to_owned()).await;
        }
        cache.invalidate("/b/1").await;
        assert_eq!(cache.invalidate_prefix("/a/").await, 2);
        for tier in [&upper, &lower] {
            assert!(tier.entries.lock().unwrap().is_empty());
        }
        cache.insert("c", "c".to_owned()).await;
        cache.clear().await;
        assert!(upper.get("c").is_none() && lower.get("c").is_none());
    }

    #[tokio::test]
    async fn another_servers_invalidation_reaches_memory_and_the_tiers_above_the_reporter() {
        let (upper, lower) = (Arc::new(MapTier::default()), Arc::new(MapTier::default()));
        let cache = cache_over(&[&upper, &lower]);
        cache.get_or_load("k", loader("v")).await.unwrap();
        let sink = lower
            .sink
            .lock()
            .unwrap()
            .take()
            .expect("listening since the load");
        assert!(upper.sink.lock().unwrap().is_some());
        assert!(sink(Invalidation::Key("k")).await, "the cache is alive");
        assert!(cache.peek("k").is_none());
        assert!(upper.get("k").is_none());
        assert!(lower.get("k").is_some(), "the reporter deleted its own");
        drop(cache);
        assert!(!sink(Invalidation::All).await, "the cache is gone");
    }
}
