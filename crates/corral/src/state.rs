//! What every clone of a [`Cache`](crate::Cache) shares: its checked options, its memory
//! tier, its flights, the tiers below memory and its metrics; and the changes a cache
//! makes to itself alone (turning a loaded value into an entry, dropping keys here).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use crate::entry::Entry;
use crate::flight::{Flights, Settled};
use crate::ledger::{Ledger, Scope};
use crate::loaded::Loaded;
use crate::stats::Metrics;
use crate::tags::{TagPurges, Tagged, Verdict};
use crate::tier::memory::MemoryTier;
use crate::tier::{Invalidation, Sink, Tier};
use crate::weigh::Weigher;

/// The invalidations made up to a moment, from [`Cache::insert_mark`]: an insert
/// made with it ([`Cache::insert_since`]) is dropped if one came after.
///
/// [`Cache::insert_mark`]: crate::Cache::insert_mark
/// [`Cache::insert_since`]: crate::Cache::insert_since
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertMark {
    /// The tag clock.
    pub(crate) tick: u64,
    /// The latest other invalidation, in the [`Ledger`].
    invalidations: u64,
}

/// A cache's options after defaults are applied and checked.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) max_bytes: u64,
    pub(crate) fresh_for: Duration,
    pub(crate) ttl: Duration,
    pub(crate) load_timeout: Duration,
    /// Whether a loader's error is logged at WARN (else at DEBUG).
    pub(crate) log_load_errors: bool,
    /// XFetch's `beta`, when hits may refresh early.
    pub(crate) early_refresh: Option<f64>,
}

/// The state of one cache.
pub(crate) struct State<V> {
    pub(crate) config: Config,
    pub(crate) memory: MemoryTier<V>,
    pub(crate) flights: Flights<Settled<V>>,
    /// The tiers below memory, in the order loads look in them.
    pub(crate) tiers: Vec<Arc<dyn Tier<V>>>,
    pub(crate) metrics: Arc<Metrics>,
    /// The tag purges made here (and, through the tiers, on other servers).
    pub(crate) tags: TagPurges,
    /// The longest life (in ms) of an entry kept in memory so far: a tag purge made
    /// longer ago than that (and a load's timeout) concerns no entry any more.
    longest_life: AtomicU64,
    /// The recent invalidations (of keys, prefixes, everything; soft or not) this
    /// cache's memory has taken: a value fetched before one that covers its key is
    /// not stored ([`InsertMark`]).
    ledger: Ledger,
    /// Whether the tiers' listeners were started (on the first load).
    listening: AtomicBool,
}

impl<V: Clone + Send + Sync + 'static> State<V> {
    pub(crate) fn new(
        config: Config,
        weigher: Arc<dyn Weigher<V>>,
        metrics: Arc<Metrics>,
        tiers: Vec<Arc<dyn Tier<V>>>,
    ) -> Self {
        let memory = MemoryTier::new(
            &config.name,
            config.max_bytes,
            weigher,
            Arc::clone(&metrics),
        );
        State {
            config,
            memory,
            flights: Flights::new(),
            tiers,
            metrics,
            tags: TagPurges::default(),
            longest_life: AtomicU64::new(0),
            ledger: Ledger::default(),
            listening: AtomicBool::new(false),
        }
    }

    /// `key`'s entry in memory, as the tag purges left it: `None` if one purged it,
    /// stale from a soft one's instant.
    #[inline]
    pub(crate) fn read(&self, key: &str) -> Option<Entry<V>> {
        let entry = self.memory.get(key)?;
        self.judged(entry)
    }

    /// An entry as the tag purges made since its load began left it.
    #[inline]
    pub(crate) fn judged(&self, entry: Entry<V>) -> Option<Entry<V>> {
        let Some(tagged) = &entry.tagged else {
            return Some(entry);
        };
        match self.tags.judge(tagged) {
            Verdict::Intact => Some(entry),
            Verdict::Softened(at) => Some(entry.soften(at)),
            Verdict::Purged => None,
        }
    }

    /// The invalidations made so far.
    pub(crate) fn mark(&self) -> InsertMark {
        InsertMark {
            tick: self.tags.now(),
            invalidations: self.ledger.last(),
        }
    }

    /// Whether an invalidation (soft or not) that covers `key` came after `mark` (a
    /// tag purge is judged by the tick instead).
    pub(crate) fn invalidated_since(&self, mark: InsertMark, key: &str) -> bool {
        self.ledger.covers_since(mark.invalidations, key)
    }

    /// Whether a tag purge made since its load began covers an entry tagged `tagged`.
    pub(crate) fn tag_purged(&self, tagged: Option<&Tagged>) -> bool {
        tagged.is_some_and(|tagged| self.tags.judge(tagged) == Verdict::Purged)
    }

    /// The entry a loaded value becomes, with its lifetime (the cache's defaults where
    /// it sets none) and its tags, noting the tag clock's `tick` when its load began;
    /// `None` if it is not to be stored (`uncached`, or a zero `ttl`).
    pub(crate) fn entry_for(&self, loaded: &Loaded<V>, tick: u64) -> Option<Entry<V>> {
        let ttl = loaded.ttl.unwrap_or(self.config.ttl);
        if !loaded.store || ttl.is_zero() {
            return None;
        }
        let fresh_for = loaded.fresh_for.unwrap_or(self.config.fresh_for);
        let mut entry = Entry::new(loaded.value.clone(), Instant::now(), fresh_for, ttl);
        entry.tagged = Tagged::new(&loaded.tags, tick);
        self.lives_until(entry.stale_until);
        Some(entry)
    }

    /// Notes that an entry kept in memory lives until `until`.
    pub(crate) fn lives_until(&self, until: Instant) {
        let life = until.saturating_duration_since(Instant::now()).as_millis();
        let life = u64::try_from(life).unwrap_or(u64::MAX);
        self.longest_life.fetch_max(life, Ordering::Relaxed);
    }

    /// Drops `key` from memory, and detaches its running load so it stores nothing;
    /// returns whether memory held an entry for it.
    pub(crate) fn invalidate_locally(&self, key: &str) -> bool {
        self.ledger.record(Scope::Key(key.into()));
        self.drop_locally(key)
    }

    /// Drops `key` from memory and detaches its running load, for an invalidation
    /// already noted in the ledger.
    pub(crate) fn drop_locally(&self, key: &str) -> bool {
        let held = self
            .flights
            .detach_with(key, || self.memory.invalidate(key));
        self.publish_size();
        held
    }

    /// [`invalidate_locally`](Self::invalidate_locally) for every key starting with
    /// `prefix`; returns how many entries memory held.
    pub(crate) fn invalidate_prefix_locally(&self, prefix: &str) -> usize {
        self.ledger.record(Scope::Prefix(prefix.into()));
        self.flights.detach_prefix(prefix);
        let keys = self.memory.keys_with_prefix(prefix);
        for key in &keys {
            self.drop_locally(key);
        }
        keys.len()
    }

    /// Makes `key`'s entry in memory stale now (a soft purge), and detaches its running
    /// load so it stores nothing; returns whether memory held an entry for it.
    pub(crate) fn soften_locally(&self, key: &str) -> bool {
        self.ledger.record(Scope::Key(key.into()));
        self.soften_noted(key)
    }

    /// Makes `key`'s entry stale now, as a soft purge already noted in the ledger.
    fn soften_noted(&self, key: &str) -> bool {
        let now = Instant::now();
        self.flights
            .detach_with(key, || self.memory.soften(key, now))
    }

    /// [`soften_locally`](Self::soften_locally) for every key starting with `prefix`;
    /// returns how many entries memory held.
    pub(crate) fn soften_prefix_locally(&self, prefix: &str) -> usize {
        self.ledger.record(Scope::Prefix(prefix.into()));
        self.flights.detach_prefix(prefix);
        let keys = self.memory.keys_with_prefix(prefix);
        for key in &keys {
            self.soften_noted(key);
        }
        keys.len()
    }

    /// Purges `tag` here (softly, or not): one mark, read by every entry's check.
    pub(crate) fn purge_tag_locally(&self, tag: &str, soft: bool) {
        let longest = Duration::from_millis(self.longest_life.load(Ordering::Relaxed));
        let outlived = longest.saturating_add(self.config.load_timeout);
        self.tags.purge(tag, soft, outlived);
    }

    /// Empties memory and detaches every running load.
    pub(crate) fn clear_locally(&self) {
        self.ledger.record(Scope::All);
        self.flights.detach_all_with(|| self.memory.clear());
        self.memory.run_pending_tasks();
        self.publish_size();
    }

    pub(crate) fn publish_size(&self) {
        let (entries, bytes) = self.memory.size();
        self.metrics.size(entries, bytes);
    }

    /// Starts listening to the other servers' invalidations in every tier, once.
    pub(crate) fn listen(self: &Arc<Self>) {
        if self.tiers.is_empty() || self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            Arc::clone(tier).listen(self.sink(index));
        }
    }

    /// Where tier `index` hands on an invalidation: the tiers above it (each server has
    /// its own copies there), then memory and the flights.
    fn sink(self: &Arc<Self>, index: usize) -> Sink {
        let state = Arc::downgrade(self);
        Box::new(move |invalidation| {
            let Some(state) = state.upgrade() else {
                return std::future::ready(false).boxed();
            };
            let above = state.tiers[..index].to_vec();
            if above.is_empty() {
                state.apply_locally(invalidation);
                return std::future::ready(true).boxed();
            }
            // As the cache's own invalidations go: the tiers nearest the reporter
            // first, memory last.
            let invalidation = Owned::from(invalidation);
            async move {
                for tier in above.iter().rev() {
                    invalidation.apply(&**tier).await;
                }
                state.apply_locally(invalidation.borrowed());
                true
            }
            .boxed()
        })
    }

    /// Applies another server's invalidation to memory and the flights.
    fn apply_locally(&self, invalidation: Invalidation<'_>) {
        match invalidation {
            Invalidation::Key(key) => {
                self.invalidate_locally(key);
            }
            Invalidation::Prefix(prefix) => {
                self.invalidate_prefix_locally(prefix);
            }
            Invalidation::All => self.clear_locally(),
            Invalidation::Tag { tag, soft } => self.purge_tag_locally(tag, soft),
            Invalidation::Soften(key) => {
                self.soften_locally(key);
            }
            Invalidation::SoftenPrefix(prefix) => {
                self.soften_prefix_locally(prefix);
            }
        }
    }
}

/// An [`Invalidation`] that outlives its message.
enum Owned {
    Key(String),
    Prefix(String),
    All,
    Tag(String, bool),
    Soften(String),
    SoftenPrefix(String),
}

impl Owned {
    /// Makes the same invalidation in `tier`.
    async fn apply<V>(&self, tier: &dyn Tier<V>) {
        match self {
            Owned::Key(key) => tier.invalidate(key).await,
            Owned::Prefix(prefix) => tier.invalidate_prefix(prefix).await,
            Owned::All => tier.clear().await,
            Owned::Tag(tag, soft) => tier.purge_tag(tag, *soft).await,
            Owned::Soften(key) => tier.soften(key).await,
            Owned::SoftenPrefix(prefix) => tier.soften_prefix(prefix).await,
        }
    }
}

impl Owned {
    fn borrowed(&self) -> Invalidation<'_> {
        match self {
            Owned::Key(key) => Invalidation::Key(key),
            Owned::Prefix(prefix) => Invalidation::Prefix(prefix),
            Owned::All => Invalidation::All,
            Owned::Tag(tag, soft) => Invalidation::Tag { tag, soft: *soft },
            Owned::Soften(key) => Invalidation::Soften(key),
            Owned::SoftenPrefix(prefix) => Invalidation::SoftenPrefix(prefix),
        }
    }
}

impl From<Invalidation<'_>> for Owned {
    fn from(invalidation: Invalidation<'_>) -> Self {
        match invalidation {
            Invalidation::Key(key) => Owned::Key(key.to_owned()),
            Invalidation::Prefix(prefix) => Owned::Prefix(prefix.to_owned()),
            Invalidation::All => Owned::All,
            Invalidation::Tag { tag, soft } => Owned::Tag(tag.to_owned(), soft),
            Invalidation::Soften(key) => Owned::Soften(key.to_owned()),
            Invalidation::SoftenPrefix(prefix) => Owned::SoftenPrefix(prefix.to_owned()),
        }
    }
}
