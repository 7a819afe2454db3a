//! [`DiskTier`]: the options of a disk tier, each with its default.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::files::Disk;
use super::store::DiskStore;
use super::walk;
use crate::codec::{Codec, MessagePack};
use crate::error::ConfigError;
use crate::stats::Metrics;
use crate::tier::{Tier, TierSpec};

/// The default bound on one entry's file: 1 GiB.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1 << 30;
/// The default number of entries written at once; a write beyond it is skipped.
pub const DEFAULT_WRITES_AT_ONCE: usize = 8;

/// A tier below memory on a local disk: larger than memory, and kept across restarts.
/// Give it to [`CacheBuilder::disk_tier`](crate::CacheBuilder::disk_tier), or use
/// [`CacheBuilder::disk`](crate::CacheBuilder::disk) for the defaults.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `path` | (required) | the directory; made if missing; one process at a time |
/// | `max_bytes` | (required) | bound on the disk the files take, counted in 4 KiB blocks |
/// | [`max_entry_bytes`](Self::max_entry_bytes) | 1 GiB | an entry whose file would be larger is not written |
/// | [`writes_at_once`](Self::writes_at_once) | 8 | writes running at once; one more is skipped, not queued |
/// | [`codec`](Self::codec) | [`MessagePack`] | how values become bytes |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("corral-doc-disk-{}", std::process::id()));
/// let cache: corral::Cache<String> = corral::Cache::builder()
///     .disk_tier(corral::disk::DiskTier::new(&dir, 1 << 30).max_entry_bytes(1 << 20))
///     .build()?;
/// cache.insert("greeting", "hello".to_string()).await;
/// assert_eq!(cache.stats().disk.map(|d| d.writes), Some(1));
/// # drop(cache); std::fs::remove_dir_all(&dir)?; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a disk tier does nothing until given to a cache builder"]
pub struct DiskTier<C = MessagePack> {
    pub(crate) path: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) max_entry_bytes: u64,
    pub(crate) writes_at_once: usize,
    pub(crate) codec: C,
}

impl<C> fmt::Debug for DiskTier<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskTier")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("writes_at_once", &self.writes_at_once)
            .field("codec", &std::any::type_name::<C>())
            .finish()
    }
}

impl DiskTier {
    /// A disk tier in the directory `path`, its files taking at most `max_bytes`.
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        DiskTier {
            path: path.into(),
            max_bytes,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            writes_at_once: DEFAULT_WRITES_AT_ONCE,
            codec: MessagePack,
        }
    }
}

impl<C> DiskTier<C> {
    /// An entry whose file would be larger than this is kept in memory only. Default
    /// 1 GiB.
    pub fn max_entry_bytes(mut self, max_entry_bytes: u64) -> Self {
        self.max_entry_bytes = max_entry_bytes;
        self
    }

    /// How many writes may run at once (each on one of Tokio's blocking threads); a
    /// write beyond them is skipped and counted, so a slow disk never holds up a load.
    /// Default 8.
    pub fn writes_at_once(mut self, writes_at_once: usize) -> Self {
        self.writes_at_once = writes_at_once.max(1);
        self
    }

    /// Encodes values with `codec` instead of MessagePack. Files another codec wrote
    /// are read as misses.
    pub fn codec<D>(self, codec: D) -> DiskTier<D> {
        DiskTier {
            path: self.path,
            max_bytes: self.max_bytes,
            max_entry_bytes: self.max_entry_bytes,
            writes_at_once: self.writes_at_once,
            codec,
        }
    }
}

/// A disk tier waiting for its cache, its codec erased.
pub(crate) struct DiskSpec<V> {
    tier: DiskTier<()>,
    codec: Arc<dyn Codec<V>>,
}

impl<V> DiskSpec<V> {
    pub(crate) fn new<C: Codec<V>>(tier: DiskTier<C>) -> Self {
        let codec: Arc<dyn Codec<V>> = Arc::new(tier.codec);
        DiskSpec {
            tier: DiskTier {
                path: tier.path,
                max_bytes: tier.max_bytes,
                max_entry_bytes: tier.max_entry_bytes,
                writes_at_once: tier.writes_at_once,
                codec: (),
            },
            codec,
        }
    }
}

impl<V> fmt::Debug for DiskSpec<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tier.fmt(f)
    }
}

impl<V: Send + Sync + 'static> TierSpec<V> for DiskSpec<V> {
    fn build(&self, cache: &str, _: &Arc<Metrics>) -> Result<Arc<dyn Tier<V>>, ConfigError> {
        let tier = &self.tier;
        if tier.max_bytes == 0 {
            return Err(ConfigError::ZeroDiskBytes);
        }
        let disk = Disk::open(&tier.path, tier.max_bytes, tier.max_entry_bytes, cache)
            .map_err(|e| ConfigError::Disk(e.to_string()))?;
        walk::start(&disk, true).map_err(|e| ConfigError::Disk(e.to_string()))?;
        Ok(Arc::new(DiskStore::new(
            disk,
            Arc::clone(&self.codec),
            tier.writes_at_once,
        )))
    }
}
