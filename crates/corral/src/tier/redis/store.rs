//! The Redis tier of one cache: its link, codec, scripts and waiters; how a cache key
//! names its records in Redis; and the plain operations on them (look at a key, store
//! an entry, delete a key's records).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::builder::{Options, RedisTier};
use super::connection::{Link, Unavailable};
use super::events::{Waiters, instance_id};
use super::record;
use super::scripts::Scripts;
use crate::codec::Codec;
use crate::entry::Entry;
use crate::error::ConfigError;
use crate::stats::{Metrics, RemoteOp};
use crate::tags::Tagged;
use crate::tier::{Tier, TierSpec};

/// A Redis tier waiting for its cache to be built, its codec erased.
pub(crate) struct RemoteSpec<V> {
    options: Options,
    codec: Arc<dyn Codec<V>>,
}

impl<V> RemoteSpec<V> {
    pub(crate) fn new<C: Codec<V>>(tier: RedisTier<C>) -> Self {
        RemoteSpec {
            options: tier.options,
            codec: Arc::new(tier.codec),
        }
    }
}

impl<V> fmt::Debug for RemoteSpec<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<V: Send + Sync + 'static> TierSpec<V> for RemoteSpec<V> {
    fn build(&self, _: &str, metrics: &Arc<Metrics>) -> Result<Arc<dyn Tier<V>>, ConfigError> {
        Ok(Arc::new(RedisStore::new(
            self.options.clone(),
            Arc::clone(&self.codec),
            Arc::clone(metrics),
        )))
    }
}

/// The shapes of the keys this tier writes for a cache key `K`: `P` `kind:{K}`.
pub(crate) const KEY_KINDS: [&str; 3] = ["v", "err", "lock"];

/// The hash tag of the cache's tag clock and tag purges (`tags.rs`), `P` `tick:{#tags}`
/// and `P` `tags:{#tags}`: one slot in a cluster, so one script updates both, and no
/// kind of [`KEY_KINDS`], so prefix purges and `clear` leave them.
const TAG_SLOT: &str = "#tags";

/// What one look at a key in Redis found.
pub(crate) struct Probe<V> {
    /// The stored entry, if there is one that decodes.
    pub(crate) value: Option<Entry<V>>,
    /// The message of a load that failed on another server moments ago.
    pub(crate) error: Option<String>,
    /// How long the load lock is still held, if someone holds it.
    pub(crate) lock_ttl: Option<Duration>,
}

/// The Redis tier of one cache, for its value type.
pub(crate) struct RedisStore<V> {
    pub(crate) link: Link,
    codec: Arc<dyn Codec<V>>,
    pub(crate) scripts: Scripts,
    /// This server's waiters for other servers' loads, woken by their `done` events.
    pub(crate) waiters: Arc<Waiters>,
    /// This cache instance, in the events it publishes (so it ignores its own).
    pub(crate) id: u64,
    /// The prefix's events channel.
    pub(crate) channel: String,
    /// The prefix of every key this cache writes.
    pub(crate) prefix: String,
    pub(crate) lock_lease: Duration,
    pub(crate) error_ttl: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

impl<V: Send + Sync + 'static> RedisStore<V> {
    fn new(options: Options, codec: Arc<dyn Codec<V>>, metrics: Arc<Metrics>) -> Self {
        RedisStore {
            channel: format!("{}events", options.prefix),
            prefix: options.prefix.clone(),
            lock_lease: options.lock_lease,
            error_ttl: options.error_ttl,
            link: Link::new(options, Arc::clone(&metrics)),
            codec,
            scripts: Scripts::new(),
            waiters: Arc::default(),
            id: instance_id(),
            metrics,
        }
    }

    /// The Redis key of one of `key`'s records ([`KEY_KINDS`]).
    pub(crate) fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{{{key}}}", self.prefix)
    }

    /// The Redis key of the cache's tag clock (`tick`) or tag purges (`tags`).
    pub(crate) fn tag_key(&self, kind: &str) -> String {
        self.key(kind, TAG_SLOT)
    }

    /// Looks at a key: its value, a shared error, and who holds its lock.
    pub(crate) async fn probe(&self, key: &str) -> Result<Probe<V>, Unavailable> {
        let (value_key, error_key, lock_key) = (
            self.key("v", key),
            self.key("err", key),
            self.key("lock", key),
        );
        let (raw, error, lock_ms): (Option<Vec<u8>>, Option<String>, i64) = self
            .link
            .run(RemoteOp::Read, |mut c| {
                Box::pin(async move {
                    redis::pipe()
                        .get(&value_key)
                        .get(&error_key)
                        .pttl(&lock_key)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        let value = raw.and_then(|bytes| match self.decode(&bytes) {
            Ok(entry) => Some(entry),
            Err(error) => {
                self.metrics.remote_decode_error();
                tracing::warn!(key, %error, "undecodable record in redis; treated as a miss");
                None
            }
        });
        Ok(Probe {
            value,
            error,
            lock_ttl: (lock_ms > 0).then(|| Duration::from_millis(lock_ms as u64)),
        })
    }

    /// The entry a record holds; its tags noted at the cluster's tick in the record.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<Entry<V>, record::RecordError> {
        let record = record::decode(bytes, self.codec.id())?;
        Ok(Entry {
            value: self.codec.decode(record.payload)?,
            stored_at: record.stored_at,
            fresh_until: record.fresh_until,
            stale_until: record.stale_until,
            load_micros: record.load_micros,
            tagged: Tagged::new(&record.tags, record.tick),
            softened: record.softened,
        })
    }

    /// The record of an entry whose load began at the cluster's tag clock `tick`.
    pub(crate) fn encode(&self, entry: &Entry<V>, tick: u64) -> Option<Vec<u8>> {
        match self.codec.encode(&entry.value) {
            Ok(payload) => {
                let record = record::encode(entry, tick, self.codec.id(), &payload);
                if record.is_none() {
                    tracing::warn!("a tag longer than 64 KiB; kept in memory only");
                }
                record
            }
            Err(error) => {
                tracing::warn!(%error, "value not encodable for redis; kept in memory only");
                None
            }
        }
    }

    /// Stores an entry outside any load (an insert), as of the cluster's tag clock now.
    pub(crate) async fn set(&self, key: &str, entry: &Entry<V>) {
        let Ok(tick) = self.tick().await else {
            return;
        };
        self.set_at(key, entry, tick).await;
    }

    /// Stores an entry (no lock involved: an insert, or a related entry of a load) as
    /// of the cluster's tag clock `tick`.
    pub(crate) async fn set_at(&self, key: &str, entry: &Entry<V>, tick: u64) {
        let Some(bytes) = self.encode(entry, tick) else {
            return;
        };
        let value_key = self.key("v", key);
        let px = record::millis_until(entry.stale_until);
        let _ = self
            .link
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(&value_key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(px)
                        .query_async::<()>(&mut c)
                        .await
                })
            })
            .await;
    }

    /// Deletes a key in Redis (with its lock, so a load running for it stores nothing)
    /// and tells every server to drop its copy.
    pub(crate) async fn delete(&self, key: &str) {
        let (value_key, error_key, lock_key) = (
            self.key("v", key),
            self.key("err", key),
            self.key("lock", key),
        );
        let message = format!("inval {:x} {key}", self.id);
        let _ = self
            .link
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .invalidate
                        .key(&value_key)
                        .key(&error_key)
                        .key(&lock_key)
                        .arg(&self.channel)
                        .arg(&message)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
    }
}
