//! The disk tier's counters, for [`Stats::disk`](crate::Stats::disk) and the `metrics`
//! facade:
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `corral_disk_hits_total` | counter | loads answered from disk |
//! | `corral_disk_writes_total` | counter | entries written |
//! | `corral_disk_write_bytes_total` | counter | bytes written |
//! | `corral_disk_writes_skipped_total` | counter | writes skipped (too many at once, too large, or the tier off) |
//! | `corral_disk_evictions_total` | counter | files evicted to stay within the bound |
//! | `corral_disk_corrupt_total` | counter | files that failed their check, removed |
//! | `corral_disk_faults_total` | counter | I/O errors that turned the tier off |
//! | `corral_disk_off` | gauge | 1 while the tier is off |
//! | `corral_disk_entries`, `corral_disk_bytes` | gauge | files indexed, and the disk they take |
//! | `corral_disk_recovered_entries` | gauge | files indexed by the scan at start |
//! | `corral_disk_recovery_seconds` | gauge | how long that scan took |
//!
//! Every metric has the `cache` label.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::{Counter, Gauge};

use crate::stats::DiskStats;

/// A counter kept both here (for [`DiskStats`]) and in the `metrics` facade.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    counter: Counter,
}

impl Count {
    fn new(name: &'static str, cache: &str) -> Self {
        Count {
            value: AtomicU64::new(0),
            counter: metrics::counter!(name, "cache" => cache.to_owned()),
        }
    }

    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        self.counter.increment(n);
    }

    fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// Every counter of one disk tier.
#[derive(Debug)]
pub(crate) struct DiskMetrics {
    pub(crate) hits: Count,
    pub(crate) writes: Count,
    pub(crate) write_bytes: Count,
    pub(crate) writes_skipped: Count,
    pub(crate) evictions: Count,
    pub(crate) corrupt: Count,
    pub(crate) faults: Count,
    recovered: AtomicU64,
    recovery_ms: AtomicU64,
    off: Gauge,
    entries: Gauge,
    bytes: Gauge,
    recovered_gauge: Gauge,
    recovery_gauge: Gauge,
}

/// Recovery not finished, in `recovery_ms`.
const RECOVERING: u64 = u64::MAX;

impl DiskMetrics {
    pub(crate) fn new(cache: &str) -> Self {
        let gauge = |name: &'static str| metrics::gauge!(name, "cache" => cache.to_owned());
        DiskMetrics {
            hits: Count::new("corral_disk_hits_total", cache),
            writes: Count::new("corral_disk_writes_total", cache),
            write_bytes: Count::new("corral_disk_write_bytes_total", cache),
            writes_skipped: Count::new("corral_disk_writes_skipped_total", cache),
            evictions: Count::new("corral_disk_evictions_total", cache),
            corrupt: Count::new("corral_disk_corrupt_total", cache),
            faults: Count::new("corral_disk_faults_total", cache),
            recovered: AtomicU64::new(0),
            recovery_ms: AtomicU64::new(RECOVERING),
            off: gauge("corral_disk_off"),
            entries: gauge("corral_disk_entries"),
            bytes: gauge("corral_disk_bytes"),
            recovered_gauge: gauge("corral_disk_recovered_entries"),
            recovery_gauge: gauge("corral_disk_recovery_seconds"),
        }
    }

    pub(crate) fn size(&self, entries: usize, bytes: u64) {
        self.entries.set(entries as f64);
        self.bytes.set(bytes as f64);
    }

    pub(crate) fn off(&self, off: bool) {
        self.off.set(if off { 1.0 } else { 0.0 });
    }

    pub(crate) fn recovered(&self, entries: u64, took: Duration) {
        self.recovered.store(entries, Relaxed);
        let ms = u64::try_from(took.as_millis()).unwrap_or(RECOVERING - 1);
        self.recovery_ms.store(ms, Relaxed);
        self.recovered_gauge.set(entries as f64);
        self.recovery_gauge.set(took.as_secs_f64());
    }

    pub(crate) fn snapshot(&self, entries: u64, bytes: u64, off: bool) -> DiskStats {
        let recovery_ms = self.recovery_ms.load(Relaxed);
        DiskStats {
            hits: self.hits.get(),
            writes: self.writes.get(),
            write_bytes: self.write_bytes.get(),
            writes_skipped: self.writes_skipped.get(),
            evictions: self.evictions.get(),
            corrupt: self.corrupt.get(),
            faults: self.faults.get(),
            entries,
            bytes,
            off,
            recovered: self.recovered.load(Relaxed),
            recovery_time: (recovery_ms != RECOVERING).then(|| Duration::from_millis(recovery_ms)),
        }
    }
}
