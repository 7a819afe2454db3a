//! Counters kept by every cache: read through [`Cache::stats`](crate::Cache::stats) and
//! emitted through the `metrics` facade.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `corral_lookups_total` | counter | `cache`, `outcome` = `hit` \| `stale` \| `miss` \| `coalesced` |
//! | `corral_loads_total` | counter | `cache`, `result` = `ok` \| `error` \| `panic` \| `timeout` |
//! | `corral_load_duration_seconds` | histogram | `cache` |
//! | `corral_evictions_total` | counter | `cache` (entries evicted to stay within `max_bytes`) |
//! | `corral_weighted_bytes` | gauge | `cache` (the memory tier's weighted size) |
//! | `corral_entries` | gauge | `cache` |
//! | `corral_remote_ops_total` | counter | `cache`, `op` = `read` \| `write` \| `lock`, `result` = `ok` \| `failed` (failed includes skipped by the breaker) |
//! | `corral_remote_hits_total` | counter | `cache` (loads answered from Redis) |
//! | `corral_remote_waits_total` | counter | `cache` (loads that waited for another server's load) |
//! | `corral_remote_decode_errors_total` | counter | `cache` (undecodable records, read as misses) |
//! | `corral_remote_breaker_open` | gauge | `cache` (1 while Redis is being skipped) |
//!
//! The two gauges are as of the memory tier's last maintenance, which runs at least
//! every 64 writes and whenever the byte bound is at stake; `Cache::run_pending_tasks`
//! brings them up to date.
//!
//! Metric handles are taken from the recorder installed when the cache is built, so
//! install your exporter (e.g. `metrics-exporter-prometheus`) before building caches.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A fresh entry.
    Hit = 0,
    /// A stale entry, served while a background refresh runs.
    Stale = 1,
    /// No usable entry; this caller started the load.
    Miss = 2,
    /// No usable entry; this caller waited for a load already running.
    Coalesced = 3,
}

const LOOKUPS: [(Lookup, &str); 4] = [
    (Lookup::Hit, "hit"),
    (Lookup::Stale, "stale"),
    (Lookup::Miss, "miss"),
    (Lookup::Coalesced, "coalesced"),
];

/// How a load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadResult {
    Ok = 0,
    Error = 1,
    Panic = 2,
    Timeout = 3,
}

const LOAD_RESULTS: [(LoadResult, &str); 4] = [
    (LoadResult::Ok, "ok"),
    (LoadResult::Error, "error"),
    (LoadResult::Panic, "panic"),
    (LoadResult::Timeout, "timeout"),
];

/// A kind of Redis operation, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteOp {
    Read = 0,
    Write = 1,
    Lock = 2,
}

impl RemoteOp {
    pub(crate) fn label(self) -> &'static str {
        match self {
            RemoteOp::Read => "read",
            RemoteOp::Write => "write",
            RemoteOp::Lock => "lock",
        }
    }

    const ALL: [RemoteOp; 3] = [RemoteOp::Read, RemoteOp::Write, RemoteOp::Lock];
}

/// A snapshot of a cache's counters since it was built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache: corral::Cache<String> = corral::Cache::builder().build()?;
/// cache.get_or_load("k", || async { Ok::<_, std::io::Error>("v".to_string()) }).await?;
/// cache.get_or_load("k", || async { Ok::<_, std::io::Error>("v".to_string()) }).await?;
/// let stats = cache.stats();
/// assert_eq!((stats.misses, stats.hits, stats.loads_ok), (1, 1, 1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups answered by a fresh entry.
    pub hits: u64,
    /// Lookups answered by a stale entry (a background refresh was started or running).
    pub stale_hits: u64,
    /// Lookups that found no usable entry: `get` returned `None`, or `get_or_load`
    /// started a load.
    pub misses: u64,
    /// Lookups that found no usable entry and waited for a load already running.
    pub coalesced: u64,
    /// Loads that returned a value.
    pub loads_ok: u64,
    /// Loads whose loader returned an error.
    pub load_errors: u64,
    /// Loads whose loader panicked.
    pub load_panics: u64,
    /// Loads cancelled by `load_timeout`.
    pub load_timeouts: u64,
    /// Total time spent in loads (divide by the number of loads for the mean).
    pub load_time: Duration,
    /// Loads running now.
    pub loads_in_flight: u64,
    /// Entries evicted to stay within `max_bytes`.
    pub evictions: u64,
    /// Entries in the memory tier.
    pub entries: u64,
    /// The memory tier's weighted size in bytes (keys, values and per-entry overhead).
    pub weighted_bytes: u64,
    /// Loads answered from the Redis tier.
    pub remote_hits: u64,
    /// Loads that waited for another server's load (cross-server coalescing).
    pub remote_waits: u64,
    /// Redis operations that failed, timed out or were skipped by the breaker.
    pub remote_errors: u64,
    /// Records in Redis that could not be decoded (read as misses).
    pub remote_decode_errors: u64,
    /// Whether the breaker is skipping Redis now.
    pub remote_breaker_open: bool,
    /// The disk tier's counters, if the cache has one.
    pub disk: Option<DiskStats>,
}

/// A disk tier's counters (see `corral::disk`), in [`Stats::disk`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskStats {
    /// Loads answered from disk.
    pub hits: u64,
    /// Entries written.
    pub writes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Writes skipped: too many at once, too large for the tier, or the tier off.
    pub writes_skipped: u64,
    /// Files evicted to stay within the tier's bound.
    pub evictions: u64,
    /// Files that failed their check (read as misses, and removed).
    pub corrupt: u64,
    /// I/O errors that turned the tier off.
    pub faults: u64,
    /// Files indexed now.
    pub entries: u64,
    /// The disk they take, in bytes (in 4 KiB blocks).
    pub bytes: u64,
    /// Whether the tier is off now (after a fault, until a probe passes).
    pub off: bool,
    /// Files the walk at start indexed.
    pub recovered: u64,
    /// How long that walk took; `None` while it runs.
    pub recovery_time: Option<Duration>,
}

/// The live counters and their `metrics` handles.
pub(crate) struct Metrics {
    lookups: [AtomicU64; 4],
    loads: [AtomicU64; 4],
    load_nanos: AtomicU64,
    evictions: AtomicU64,
    lookup_counters: [Counter; 4],
    load_counters: [Counter; 4],
    load_duration: Histogram,
    eviction_counter: Counter,
    weighted_bytes: Gauge,
    entries: Gauge,
    remote: Remote,
}

/// The Redis tier's counters.
struct Remote {
    hits: AtomicU64,
    waits: AtomicU64,
    errors: AtomicU64,
    decode_errors: AtomicU64,
    breaker_open: std::sync::atomic::AtomicBool,
    ops: [[Counter; 2]; 3],
    hit_counter: Counter,
    wait_counter: Counter,
    decode_counter: Counter,
    breaker_gauge: Gauge,
}

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!("corral_lookups_total", "Cache lookups by outcome");
        metrics::describe_counter!("corral_loads_total", "Loads by result");
        metrics::describe_histogram!(
            "corral_load_duration_seconds",
            Unit::Seconds,
            "How long loads ran"
        );
        metrics::describe_counter!(
            "corral_evictions_total",
            "Entries evicted to stay within max_bytes"
        );
        metrics::describe_gauge!(
            "corral_weighted_bytes",
            Unit::Bytes,
            "Weighted size of the memory tier"
        );
        metrics::describe_gauge!("corral_entries", "Entries in the memory tier");
        metrics::describe_counter!(
            "corral_remote_ops_total",
            "Redis operations by kind and result"
        );
        metrics::describe_counter!("corral_remote_hits_total", "Loads answered from Redis");
        metrics::describe_counter!(
            "corral_remote_waits_total",
            "Loads that waited for another server's load"
        );
        metrics::describe_counter!(
            "corral_remote_decode_errors_total",
            "Undecodable records in Redis"
        );
        metrics::describe_gauge!("corral_remote_breaker_open", "1 while Redis is skipped");
    });
}

impl Metrics {
    pub(crate) fn new(cache: &str) -> Self {
        describe();
        let name = cache.to_owned();
        Metrics {
            lookups: Default::default(),
            loads: Default::default(),
            load_nanos: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            lookup_counters: LOOKUPS.map(|(_, outcome)| {
                metrics::counter!("corral_lookups_total", "cache" => name.clone(), "outcome" => outcome)
            }),
            load_counters: LOAD_RESULTS.map(|(_, result)| {
                metrics::counter!("corral_loads_total", "cache" => name.clone(), "result" => result)
            }),
            load_duration: metrics::histogram!("corral_load_duration_seconds", "cache" => name.clone()),
            eviction_counter: metrics::counter!("corral_evictions_total", "cache" => name.clone()),
            weighted_bytes: metrics::gauge!("corral_weighted_bytes", "cache" => name.clone()),
            entries: metrics::gauge!("corral_entries", "cache" => name.clone()),
            remote: Remote {
                hits: AtomicU64::new(0),
                waits: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                decode_errors: AtomicU64::new(0),
                breaker_open: Default::default(),
                ops: RemoteOp::ALL.map(|op| {
                    ["ok", "failed"].map(|result| {
                        metrics::counter!("corral_remote_ops_total", "cache" => name.clone(), "op" => op.label(), "result" => result)
                    })
                }),
                hit_counter: metrics::counter!("corral_remote_hits_total", "cache" => name.clone()),
                wait_counter: metrics::counter!("corral_remote_waits_total", "cache" => name.clone()),
                decode_counter: metrics::counter!("corral_remote_decode_errors_total", "cache" => name.clone()),
                breaker_gauge: metrics::gauge!("corral_remote_breaker_open", "cache" => name),
            },
        }
    }

    /// A Redis operation ended (`ok`), or failed or was skipped.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote(&self, op: RemoteOp, ok: bool) {
        if !ok {
            self.remote.errors.fetch_add(1, Relaxed);
        }
        self.remote.ops[op as usize][usize::from(!ok)].increment(1);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote_hit(&self) {
        self.remote.hits.fetch_add(1, Relaxed);
        self.remote.hit_counter.increment(1);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote_wait(&self) {
        self.remote.waits.fetch_add(1, Relaxed);
        self.remote.wait_counter.increment(1);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn remote_decode_error(&self) {
        self.remote.decode_errors.fetch_add(1, Relaxed);
        self.remote.decode_counter.increment(1);
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn breaker(&self, open: bool) {
        self.remote.breaker_open.store(open, Relaxed);
        self.remote.breaker_gauge.set(if open { 1.0 } else { 0.0 });
    }

    #[inline]
    pub(crate) fn lookup(&self, lookup: Lookup) {
        self.lookups[lookup as usize].fetch_add(1, Relaxed);
        self.lookup_counters[lookup as usize].increment(1);
    }

    pub(crate) fn load(&self, result: LoadResult, took: Duration) {
        self.loads[result as usize].fetch_add(1, Relaxed);
        self.load_counters[result as usize].increment(1);
        self.load_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.load_duration.record(took.as_secs_f64());
    }

    pub(crate) fn evicted(&self) {
        self.evictions.fetch_add(1, Relaxed);
        self.eviction_counter.increment(1);
    }

    pub(crate) fn size(&self, entries: u64, weighted_bytes: u64) {
        self.entries.set(entries as f64);
        self.weighted_bytes.set(weighted_bytes as f64);
    }

    pub(crate) fn snapshot(&self, entries: u64, weighted_bytes: u64, in_flight: u64) -> Stats {
        let lookup = |l: Lookup| self.lookups[l as usize].load(Relaxed);
        let load = |r: LoadResult| self.loads[r as usize].load(Relaxed);
        Stats {
            hits: lookup(Lookup::Hit),
            stale_hits: lookup(Lookup::Stale),
            misses: lookup(Lookup::Miss),
            coalesced: lookup(Lookup::Coalesced),
            loads_ok: load(LoadResult::Ok),
            load_errors: load(LoadResult::Error),
            load_panics: load(LoadResult::Panic),
            load_timeouts: load(LoadResult::Timeout),
            load_time: Duration::from_nanos(self.load_nanos.load(Relaxed)),
            loads_in_flight: in_flight,
            evictions: self.evictions.load(Relaxed),
            entries,
            weighted_bytes,
            remote_hits: self.remote.hits.load(Relaxed),
            remote_waits: self.remote.waits.load(Relaxed),
            remote_errors: self.remote.errors.load(Relaxed),
            remote_decode_errors: self.remote.decode_errors.load(Relaxed),
            remote_breaker_open: self.remote.breaker_open.load(Relaxed),
            disk: None,
        }
    }
}
