//! The cross-server lock: one load per key per cluster (pingora-cache's `lock.rs` is
//! the model). A load's task, for the Redis tier, through [`Tier`](crate::tier::Tier):
//!
//! 1. Look in Redis. A value the caller accepts is the answer (it is copied into
//!    memory with its remaining lifetime); an error another server shared moments ago
//!    is the answer too.
//! 2. If nobody holds the key's lock, take it. The winner looks once more (a load may
//!    have finished in between), runs the loader while renewing its lease, then in one
//!    step writes the value (or the error), releases the lock and wakes the waiters of
//!    every server through pub/sub. An invalidation deletes the lock: a load that no
//!    longer holds it stores nothing (its own callers still get its value).
//! 3. Otherwise wait for that wake-up (not polling), or for the holder's lease to run
//!    out, and look again: a winner that died is taken over after its lease.
//!
//! Redis failing never fails the load: when Redis does not answer (or the breaker is
//! open), the loader runs here, coalesced by the local flight only.
//!
//! A waiter is armed before each look and each attempt at the lock, so that no `done`
//! slips between the look and the wait; a won lock is a [`Permit`] whose drop, if its
//! load's task was cancelled, releases the lock in the background.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::connection::Unavailable;
use super::events::instance_id;
use super::record;
use super::store::RedisStore;
use crate::entry::Entry;
use crate::stats::RemoteOp;
use crate::tier::{Lock, Lookup, Permit, Release, Usable};

/// How much longer than a lock's lease a waiter waits for its `done` event.
const WAIT_SLACK: Duration = Duration::from_millis(5);

/// A load that failed on another server sharing the Redis tier, as that server
/// reported it: the source of the [`Error::Load`](crate::Error::Load) its waiters get.
///
/// ```
/// # fn demo(error: &corral::Error) {
/// let elsewhere = error
///     .loader_error()
///     .and_then(|e| e.downcast_ref::<corral::redis::RemoteLoadError>());
/// if let Some(corral::redis::RemoteLoadError(message)) = elsewhere {
///     eprintln!("another server's load failed: {message}");
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("load failed on another server: {0}")]
pub struct RemoteLoadError(pub String);

impl<V: Send + Sync + 'static> RedisStore<V> {
    /// One look at a key ([`Tier::lookup`](crate::tier::Tier::lookup)): a usable value,
    /// an error shared moments ago, or a lock someone holds (wait for its `done`, or the
    /// end of its lease).
    pub(crate) async fn look<'a>(&self, key: &str, usable: &Usable<V>) -> Lookup<'a, V> {
        let armed = self.waiters.arm(key);
        let Ok(probe) = self.probe(key).await else {
            return Lookup::Unavailable;
        };
        let value = match probe.value {
            Some(entry) => match self.judged(entry).await {
                Ok(judged) => judged,
                Err(Unavailable) => return Lookup::Unavailable,
            },
            None => None,
        };
        if let Some(entry) = value.filter(|e| usable(e)) {
            self.metrics.remote_hit();
            return Lookup::Found(entry);
        }
        if let Some(message) = probe.error {
            return Lookup::Failed(Arc::new(RemoteLoadError(message)));
        }
        match probe.lock_ttl {
            Some(lease_left) => Lookup::Loading(Box::pin(armed.wait(lease_left + WAIT_SLACK))),
            None => Lookup::Missing,
        }
    }

    /// Tries to take the key's lock ([`Tier::lock`](crate::tier::Tier::lock)); if another
    /// server took it first, waits for its `done` or a whole lease. A won lock notes
    /// the cluster's tag clock: the load begins after it.
    pub(crate) async fn take_lock<'a>(self: Arc<Self>, key: &str) -> Lock<'a, V> {
        let armed = self.waiters.arm(key);
        match self.try_lock(key).await {
            Ok(Some(token)) => {
                let mut held = Held {
                    key: key.to_owned(),
                    store: self,
                    token,
                    tick: 0,
                    also: Default::default(),
                    finished: false,
                };
                match held.store.tick().await {
                    Ok(tick) => held.tick = tick,
                    // Dropped unfinished, it releases the lock.
                    Err(Unavailable) => return Lock::Unavailable,
                }
                Lock::Won(Box::new(held))
            }
            Ok(None) => Lock::Held(Box::pin(armed.wait(self.lock_lease + WAIT_SLACK))),
            Err(Unavailable) => Lock::Unavailable,
        }
    }

    /// Tries to take the load lock; `Some(token)` if this server won it.
    async fn try_lock(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let lock_key = self.key("lock", key);
        let token = format!("{:016x}{:016x}", self.id, instance_id());
        let lease = self.lock_lease.as_millis() as u64;
        let won: Option<String> = self
            .link
            .run(RemoteOp::Lock, |mut c| {
                let token = token.clone();
                Box::pin(async move {
                    redis::cmd("SET")
                        .arg(&lock_key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(lease)
                        .query_async(&mut c)
                        .await
                })
            })
            .await?;
        Ok(won.map(|_| token))
    }

    /// Extends the lock's lease while the load runs; `false` if it is no longer ours.
    async fn renew(&self, key: &str, token: &str) -> bool {
        let lock_key = self.key("lock", key);
        let lease = self.lock_lease.as_millis() as u64;
        let renewed: Result<i64, Unavailable> = self
            .link
            .run(RemoteOp::Lock, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .renew
                        .key(&lock_key)
                        .arg(token)
                        .arg(lease)
                        .invoke_async(&mut c)
                        .await
                })
            })
            .await;
        renewed.is_ok_and(|n| n == 1)
    }

    /// Ends a load that held the lock: stores its outcome if the lock is still `token`'s,
    /// releases the lock and wakes every server's waiters, in one step. Returns
    /// whether the lock was still this load's (`false` too if Redis did not answer).
    async fn finish(&self, key: &str, (token, tick): (&str, u64), outcome: Release<'_, V>) -> bool {
        let (mode, payload, px) = match outcome {
            Release::Value(entry) => match self.encode(entry, tick) {
                Some(bytes) => ("value", bytes, record::millis_until(entry.stale_until)),
                None => ("none", Vec::new(), 1),
            },
            Release::Error(error) => (
                "error",
                error.to_string().into_bytes(),
                self.error_ttl.as_millis().max(1) as u64,
            ),
            Release::Nothing => ("none", Vec::new(), 1),
        };
        let (value_key, lock_key, error_key) = (
            self.key("v", key),
            self.key("lock", key),
            self.key("err", key),
        );
        let message = format!("done {:x} {key}", self.id);
        let ours = self
            .link
            .run(RemoteOp::Write, |mut c| {
                Box::pin(async move {
                    self.scripts
                        .finish
                        .key(&value_key)
                        .key(&lock_key)
                        .key(&error_key)
                        .arg(token)
                        .arg(mode)
                        .arg(payload)
                        .arg(px)
                        .arg(&self.channel)
                        .arg(&message)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
            })
            .await;
        ours.is_ok_and(|ours| ours == 1)
    }
}

/// The lock this server won. Dropped without [`release`](Permit::release) (the load's
/// task was cancelled), it releases the lock in the background so the others need not
/// wait out the lease.
struct Held<V: Send + Sync + 'static> {
    store: Arc<RedisStore<V>>,
    key: String,
    token: String,
    /// The cluster's tag clock when the lock was won.
    tick: u64,
    /// The related entries stored under it ([`Permit::store_also`]).
    also: std::sync::Mutex<Vec<String>>,
    finished: bool,
}

impl<V: Send + Sync + 'static> Permit<V> for Held<V> {
    /// Renews the lease every third of it, for as long as the load runs.
    fn keep(&self) -> BoxFuture<'_, Infallible> {
        Box::pin(async move {
            let every = self.store.lock_lease / 3;
            loop {
                tokio::time::sleep(every).await;
                if !self.store.renew(&self.key, &self.token).await {
                    tracing::debug!(key = %self.key, "load lock lost while loading; the load goes on");
                    return std::future::pending().await;
                }
            }
        })
    }

    fn release<'a>(mut self: Box<Self>, outcome: Release<'a, V>) -> BoxFuture<'a, ()> {
        self.finished = true;
        Box::pin(async move {
            let lock = (self.token.as_str(), self.tick);
            if !self.store.finish(&self.key, lock, outcome).await {
                // The lock was taken away (an invalidation of the key, or of a prefix
                // of it, deletes it): the related entries stored under it are stale
                // too. Deleted as invalidations, so that a server that read one
                // meanwhile drops its copy.
                let also =
                    std::mem::take(&mut *self.also.lock().unwrap_or_else(|p| p.into_inner()));
                for key in also {
                    self.store.delete(&key).await;
                }
            }
        })
    }

    /// Stores a related entry as of the lock's tick; should the lock be taken away
    /// before the load ends, [`release`](Permit::release) removes it again.
    fn store_also<'a>(&'a self, key: &'a str, entry: &'a Entry<V>) -> BoxFuture<'a, ()> {
        self.also
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.to_owned());
        Box::pin(self.store.set_at(key, entry, self.tick))
    }
}

impl<V: Send + Sync + 'static> Drop for Held<V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key, token, tick) = (
                self.store.clone(),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
                self.tick,
            );
            runtime
                .spawn(async move { store.finish(&key, (&token, tick), Release::Nothing).await });
        }
    }
}
