//! [`Cache`]: the read path (memory tier, then the Redis tier if there is one, then the
//! flight, then the loader) and the rules that decide when a loader runs.

use std::any::Any;
use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::builder::Config;
use crate::entry::{Entry, Freshness};
use crate::flight::{Flights, Join, Leader};
use crate::stats::{LoadResult, Lookup, Metrics};
use crate::tier::memory::MemoryTier;
use crate::{CacheBuilder, Error, Loaded, Stats, Weigh};

#[cfg(feature = "redis")]
use crate::tier::redis::{Event, RedisRemote};

/// How [`Cache::load`] came by its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The stored entry passed the caller's test; nothing was loaded.
    Stored,
    /// This call's loader ran (or this call's load read another server's value from
    /// the Redis tier).
    Loaded,
    /// This call waited for a load another caller had started.
    Joined,
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
/// With a [Redis tier](crate::RedisTier), a load first looks in Redis (a value there is
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
    inner: Arc<Inner<V>>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<V> {
    config: Config,
    memory: MemoryTier<V>,
    flights: Flights<V>,
    metrics: Arc<Metrics>,
    #[cfg(feature = "redis")]
    remote: Option<Arc<RedisRemote<V>>>,
    /// Whether the Redis events listener was started (on the first load).
    #[cfg(feature = "redis")]
    listening: std::sync::atomic::AtomicBool,
}

/// How a load came by its value.
pub(crate) enum Obtained<V> {
    /// The loader ran (here).
    Loaded(Loaded<V>),
    /// Another server's load, read from the Redis tier.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Remote(Entry<V>),
}

impl<V> Cache<V> {
    /// Starts building a cache; see [`CacheBuilder`] for the options and defaults.
    pub fn builder() -> CacheBuilder<V> {
        CacheBuilder::default()
    }
}

impl<V: Weigh + Clone + Send + Sync + 'static> Cache<V> {
    pub(crate) fn from_config(
        config: Config,
        metrics: Arc<Metrics>,
        #[cfg(feature = "redis")] remote: Option<Arc<RedisRemote<V>>>,
    ) -> Self {
        let memory = MemoryTier::new(&config.name, config.max_bytes, Arc::clone(&metrics));
        Cache {
            inner: Arc::new(Inner {
                config,
                memory,
                flights: Flights::new(),
                metrics,
                #[cfg(feature = "redis")]
                remote,
                #[cfg(feature = "redis")]
                listening: Default::default(),
            }),
        }
    }

    /// The cache's name, as given to [`CacheBuilder::name`].
    pub fn name(&self) -> &str {
        &self.inner.config.name
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
        let inner = &*self.inner;
        let now = Instant::now();
        let Some(found) = inner
            .memory
            .get(key)
            .filter(|e| e.freshness(now) != Freshness::Expired)
        else {
            let unexpired = |e: &Entry<V>| e.freshness(Instant::now()) != Freshness::Expired;
            let (value, _) = self.load(key, unexpired, loader).await?;
            return Ok(value);
        };
        if found.freshness(now) == Freshness::Fresh {
            inner.metrics.lookup(Lookup::Hit);
        } else {
            inner.metrics.lookup(Lookup::Stale);
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
        let inner = &*self.inner;
        let recheck = || inner.memory.get(key).filter(&usable);
        match inner.flights.join(key, recheck) {
            Join::Found(entry) => {
                inner.metrics.lookup(Lookup::Hit);
                Ok((entry.value, Source::Stored))
            }
            Join::Follow(wait) => {
                drop(loader);
                inner.metrics.lookup(Lookup::Coalesced);
                Ok((wait.await?, Source::Joined))
            }
            Join::Lead(leader) => {
                inner.metrics.lookup(Lookup::Miss);
                let wait = leader.wait();
                self.spawn_load(leader, loader, usable, false);
                Ok((wait.await?, Source::Loaded))
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
        let inner = &*self.inner;
        let recheck = || inner.memory.get(key).filter(&usable);
        match inner.flights.join(key, recheck) {
            Join::Lead(leader) => {
                self.spawn_load(leader, loader, usable, true);
                true
            }
            Join::Follow(_) | Join::Found(_) => false,
        }
    }

    /// The stored entry for `key`, fresh or stale (not expired), without loading and
    /// without counting a lookup.
    pub fn peek(&self, key: &str) -> Option<Entry<V>> {
        self.inner
            .memory
            .get(key)
            .filter(|e| e.freshness(Instant::now()) != Freshness::Expired)
    }

    /// Runs a load in its own task on behalf of `leader`'s flight.
    fn spawn_load<U, F, Fut, T, E>(&self, leader: Leader<V>, loader: F, accept: U, background: bool)
    where
        U: Fn(&Entry<V>) -> bool + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Loaded<V>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let span = tracing::debug_span!(
            "corral.load",
            cache = %inner.config.name,
            key = %leader.key(),
            background,
        );
        let load = async move {
            let timeout = inner.config.load_timeout;
            let started = Instant::now();
            let obtained =
                tokio::time::timeout(timeout, inner.obtain(leader.key(), loader, &accept)).await;
            let outcome = obtained.unwrap_or(Err(Error::Timeout(timeout)));
            inner.finish_load(leader, outcome, started, background);
        };
        tokio::spawn(load.instrument(span));
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
        let inner = &*self.inner;
        let entry = inner.memory.get(key);
        let freshness = entry
            .as_ref()
            .map_or(Freshness::Expired, |e| e.freshness(Instant::now()));
        match freshness {
            Freshness::Fresh => inner.metrics.lookup(Lookup::Hit),
            Freshness::Stale => inner.metrics.lookup(Lookup::Stale),
            Freshness::Expired => {
                inner.metrics.lookup(Lookup::Miss);
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
            self.insert_one(&key, related).await;
        }
        self.insert_one(key, loaded).await;
    }

    async fn insert_one(&self, key: &str, loaded: Loaded<V>) {
        let inner = &*self.inner;
        let Some(entry) = inner.entry_for(&loaded) else {
            return;
        };
        #[cfg(feature = "redis")]
        let copy = inner.remote.as_ref().map(|_| entry.clone());
        inner
            .flights
            .detach_with(key, || inner.memory.insert(key, entry));
        inner.publish_size();
        #[cfg(feature = "redis")]
        if let (Some(remote), Some(entry)) = (&inner.remote, copy) {
            remote.store(key, &entry).await;
        }
    }

    /// Removes `key`'s entry: from memory here, from Redis, and from the memory of every
    /// other server sharing the Redis tier. A load running for `key` still answers its
    /// waiters but no longer stores its value, so nothing loaded before this call
    /// survives it.
    pub async fn invalidate(&self, key: &str) {
        self.inner.invalidate_locally(key);
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            remote.invalidate(key).await;
        }
    }

    /// Removes every entry whose key starts with `prefix` (a URL prefix, for an HTTP
    /// cache), here, in Redis, and in every other server's memory; returns how many
    /// entries this server's memory held. Loads running for such keys no longer store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache: corral::Cache<String> = corral::Cache::builder().build().unwrap();
    /// cache.insert("/docs/a", "a".to_string()).await;
    /// cache.insert("/docs/b", "b".to_string()).await;
    /// cache.insert("/blog/c", "c".to_string()).await;
    /// assert_eq!(cache.invalidate_prefix("/docs/").await, 2);
    /// assert_eq!(cache.get("/blog/c").as_deref(), Some("c"));
    /// # }
    /// ```
    pub async fn invalidate_prefix(&self, prefix: &str) -> usize {
        let removed = self.inner.invalidate_prefix_locally(prefix);
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            remote.invalidate_prefix(prefix).await;
        }
        removed
    }

    /// Removes every entry (and detaches every running load, as
    /// [`invalidate`](Self::invalidate) does). With a Redis tier, this cache's keys in
    /// Redis (those under its prefix, and no others) are deleted too, and every server
    /// clears its memory.
    pub async fn clear(&self) {
        self.inner.clear_locally();
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            remote.clear().await;
        }
    }

    /// The cache's counters since it was built.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let (entries, bytes) = inner.memory.size();
        inner
            .metrics
            .snapshot(entries, bytes, inner.flights.len() as u64)
    }

    /// Runs the memory tier's pending maintenance now (evictions and expirations), so
    /// that [`stats`](Self::stats) counts are exact. Never needed for correctness.
    pub fn run_pending_tasks(&self) {
        self.inner.memory.run_pending_tasks();
        self.inner.publish_size();
    }
}

/// Runs a loader, catching its panic.
pub(crate) async fn run_loader<V, F, Fut, T, E>(loader: F) -> Result<Loaded<V>, Error>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Loaded<V>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
{
    match AssertUnwindSafe(async move { loader().await })
        .catch_unwind()
        .await
    {
        Ok(Ok(loaded)) => Ok(loaded.into()),
        Ok(Err(error)) => Err(Error::load(error)),
        Err(panic) => Err(Error::Panicked(panic_message(panic))),
    }
}

impl<V: Weigh + Clone + Send + Sync + 'static> Inner<V> {
    /// Gets a value for a load: from the Redis tier's protocol if there is one, else by
    /// running the loader.
    async fn obtain<F, Fut, T, E>(
        self: &Arc<Self>,
        key: &str,
        loader: F,
        accept: &(dyn Fn(&Entry<V>) -> bool + Send + Sync),
    ) -> Result<Obtained<V>, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Loaded<V>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
    {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            self.listen(remote);
            let entry_for = |loaded: &Loaded<V>| self.entry_for(loaded);
            return crate::remote::obtain(remote, &self.metrics, key, loader, accept, &entry_for)
                .await;
        }
        let _ = (key, accept);
        run_loader(loader).await.map(Obtained::Loaded)
    }

    /// Records a finished load and hands its outcome to the flight.
    fn finish_load(
        &self,
        leader: Leader<V>,
        outcome: Result<Obtained<V>, Error>,
        started: Instant,
        background: bool,
    ) {
        let took = started.elapsed();
        match outcome {
            Ok(Obtained::Remote(entry)) => {
                self.metrics.remote_hit();
                let value = entry.value.clone();
                leader.finish(Ok(value), |key, _| {
                    self.memory.insert(key, entry);
                    self.publish_size();
                });
            }
            Ok(Obtained::Loaded(loaded)) => {
                self.metrics.load(LoadResult::Ok, took);
                let entry = self.entry_for(&loaded);
                let related: Vec<_> = loaded
                    .also
                    .iter()
                    .filter_map(|(key, l)| Some((key.clone(), self.entry_for(l)?)))
                    .collect();
                leader.finish(Ok(loaded.value), |key, _| {
                    if let Some(entry) = entry {
                        self.memory.insert(key, entry);
                    }
                    for (key, entry) in related {
                        self.memory.insert(&key, entry);
                    }
                    self.publish_size();
                });
            }
            Err(error) => {
                let result = match error {
                    Error::Panicked(_) => LoadResult::Panic,
                    Error::Timeout(_) => LoadResult::Timeout,
                    _ => LoadResult::Error,
                };
                self.metrics.load(result, took);
                if background {
                    tracing::warn!(%error, kind = error.kind(), "background refresh failed; serving the stale value until its ttl ends");
                } else {
                    tracing::warn!(%error, kind = error.kind(), "load failed");
                }
                leader.finish(Err(error), |_, _| {});
            }
        }
    }

    /// The entry a loaded value becomes, with its lifetime (the cache's defaults where
    /// it sets none); `None` if it is not to be stored (`uncached`, or a zero `ttl`).
    pub(crate) fn entry_for(&self, loaded: &Loaded<V>) -> Option<Entry<V>> {
        let ttl = loaded.ttl.unwrap_or(self.config.ttl);
        if !loaded.store || ttl.is_zero() {
            return None;
        }
        let fresh_for = loaded.fresh_for.unwrap_or(self.config.fresh_for);
        Some(Entry::new(
            loaded.value.clone(),
            Instant::now(),
            fresh_for,
            ttl,
        ))
    }

    fn invalidate_locally(&self, key: &str) {
        self.flights
            .detach_with(key, || self.memory.invalidate(key));
        self.publish_size();
    }

    fn invalidate_prefix_locally(&self, prefix: &str) -> usize {
        self.flights.detach_prefix(prefix);
        let keys = self.memory.keys_with_prefix(prefix);
        for key in &keys {
            self.invalidate_locally(key);
        }
        keys.len()
    }

    fn clear_locally(&self) {
        self.flights.detach_all_with(|| self.memory.clear());
        self.memory.run_pending_tasks();
        self.publish_size();
    }

    fn publish_size(&self) {
        let (entries, bytes) = self.memory.size();
        self.metrics.size(entries, bytes);
    }

    /// Starts listening to the other servers' events, once.
    #[cfg(feature = "redis")]
    fn listen(self: &Arc<Self>, remote: &Arc<RedisRemote<V>>) {
        use std::sync::atomic::Ordering;
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(crate::remote::listen(
            Arc::downgrade(remote),
            move |event| {
                let Some(inner) = weak.upgrade() else {
                    return false;
                };
                match event {
                    Event::Done(key) => {
                        if let Some(remote) = &inner.remote {
                            remote.waiters.wake(key);
                        }
                    }
                    Event::Invalidated(key) => inner.invalidate_locally(key),
                    Event::Purged(prefix) => {
                        inner.invalidate_prefix_locally(prefix);
                    }
                    Event::Cleared => inner.clear_locally(),
                }
                true
            },
        ));
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> Arc<str> {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("a non-string panic payload")
    }
}
