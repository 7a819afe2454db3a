//! The Redis tier: a cache shared by many servers, with a cross-server lock so that one
//! load runs per cluster, and a circuit breaker so that a server keeps working from
//! memory when Redis is down. Build a [`RedisTier`] and give it to
//! [`CacheBuilder::redis`](crate::CacheBuilder::redis).
//!
//! Keys, for a cache key `K` under prefix `P` (the `{K}` hash tag keeps a key's records
//! in one cluster slot):
//!
//! | key | holds |
//! |---|---|
//! | `P` `v:{K}` | the value's record (a format version, the entry's lifetime in wall-clock time, the codec, its load time, the tag clock when its load began, when a soft purge made it stale, its tags, the payload), expiring with the entry (`PX`) |
//! | `P` `lock:{K}` | the load lock: a random token, `SET NX PX <lease>`, renewed while loading |
//! | `P` `err:{K}` | a failed load's message, shared with other servers for `error_ttl` |
//! | `P` `tick:{#tags}` | the cluster's tag clock: one tick per tag purge |
//! | `P` `tags:{#tags}` | each purged tag's latest purge: `h:T` its tick, `s:T` a soft purge's tick and Unix ms |
//! | channel `P` `events` | `done K` (a load finished), `inval K`, `purge K…`, `clear`, `tag T`, `softtag T`, `soft K`, `softpurge K…` |
//!
//! A load stores its outcome only while it still holds its lock. Invalidating a key
//! (alone, by key prefix, or by clearing) deletes its lock along with its value, so a
//! load that was running then stores nothing: nothing loaded before an invalidation
//! survives it, on any server. The next caller takes a new lock and loads afresh.
//!
//! Purging a tag ticks the tag clock and notes the tick under the tag, in one script:
//! O(1) however many entries carry it. The clock runs on Redis's own time (`TIME`, in
//! milliseconds), so that if its key is lost it starts again above every tick noted
//! before; the purges themselves must not be lost: give Redis a `maxmemory-policy` that
//! never evicts keys without a TTL (`volatile-*`, or `noeviction`). The tier needs
//! Redis 6.0 or later (`KEEPTTL`). A record notes the tick of when its load took
//! its lock, and a look at a tagged record checks its tags: one purged since is a
//! miss (a soft purge: stale from then). Nothing lists a tag's keys, so nothing can go
//! out of step with them. A soft purge of a key rewrites when its record turns stale,
//! and deletes its lock.
//!
//! `invalidate_prefix` and `clear` delete only keys of these three shapes under `P`,
//! so a cache whose prefix extends this one's (`shop:eu:` for `shop:`) is left alone.
//! On a cluster they SCAN every master, found afresh from the configured nodes
//! (`CLUSTER SLOTS`) each time, so one configured node is enough.
//!
//! Connecting is timed apart from commands: a command waits at most `connect_timeout`
//! for the tier's connection, then at most `command_timeout` for its reply. Once
//! connected, reconnecting after Redis went away runs in the background, each attempt
//! within `connect_timeout`; commands meanwhile fail after their `command_timeout`.
//!
//! # Files
//!
//! | file | what it holds |
//! |---|---|
//! | `builder.rs` | [`RedisTier`], [`RedisTierBuilder`] and the defaults |
//! | `connection.rs` | the connection, made on first use, and every command through the breaker (`breaker.rs`) |
//! | `store.rs` | one cache's tier: key names, and the plain reads, writes and deletes |
//! | `lock.rs` | the cross-server lock: look, lock, wait, renew, release |
//! | `scripts.rs` | the Lua scripts that make a release or a delete one step |
//! | `purge.rs` | deleting (or softening) by prefix, and clearing (SCAN on every master: `cluster.rs`) |
//! | `tags.rs` | the tag clock, tag purges, judging a tagged record, softening a key |
//! | `events.rs`, `subscriber.rs` | the events servers publish, and the task that receives them |
//! | `record.rs` | the stored form of an entry |

mod breaker;
mod builder;
mod cluster;
mod connection;
pub(crate) mod events;
mod lock;
mod purge;
pub(crate) mod record;
mod scripts;
mod store;
mod subscriber;
mod tags;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::entry::Entry;
use crate::tier::{Lock, Lookup, Sink, Tier, Usable};
use store::RedisStore;

pub use builder::{
    DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_THRESHOLD, DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_ERROR_TTL, DEFAULT_LOCK_LEASE, RedisTier, RedisTierBuilder,
};
pub use lock::RemoteLoadError;
pub(crate) use store::RemoteSpec;

/// Each method of the tier, by the file that does it.
impl<V: Send + Sync + 'static> Tier<V> for RedisStore<V> {
    fn lookup<'a>(&'a self, key: &'a str, usable: &'a Usable<V>) -> BoxFuture<'a, Lookup<'a, V>> {
        Box::pin(self.look(key, usable)) // lock.rs
    }

    fn lock<'a>(self: Arc<Self>, key: &'a str) -> BoxFuture<'a, Lock<'a, V>> {
        Box::pin(self.take_lock(key)) // lock.rs
    }

    fn store<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()> {
        Box::pin(self.set(key, entry)) // store.rs
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.delete(key)) // store.rs
    }

    fn invalidate_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.purge_prefix(prefix)) // purge.rs
    }

    fn clear(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.purge_all()) // purge.rs
    }

    fn purge_tag<'a>(&'a self, tag: &'a str, soft: bool) -> BoxFuture<'a, ()> {
        Box::pin(RedisStore::purge_tag(self, tag, soft)) // tags.rs
    }

    fn soften<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.soften_key(key, true)) // tags.rs
    }

    fn soften_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(RedisStore::soften_prefix(self, prefix)) // purge.rs
    }

    fn listen(self: Arc<Self>, sink: Sink) {
        tokio::spawn(subscriber::listen(Arc::downgrade(&self), sink));
    }
}
