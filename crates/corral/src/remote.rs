//! The cross-server load protocol, run by a load's task when the cache has a Redis
//! tier: one load per key per cluster.
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

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::cache::{Obtained, run_loader};
use crate::entry::Entry;
use crate::error::RemoteLoadError;
use crate::stats::Metrics;
use crate::tier::redis::{Event, Finish, RedisRemote, Unavailable};
use crate::{Error, Loaded};

/// What the load's task hands back for storing: the loader's result, already written to
/// Redis by the protocol when this server held the lock.
pub(crate) async fn obtain<V, F, Fut, T, E>(
    remote: &Arc<RedisRemote<V>>,
    metrics: &Metrics,
    key: &str,
    loader: F,
    accept: &(dyn Fn(&Entry<V>) -> bool + Send + Sync),
    entry_for: &(dyn Fn(&Loaded<V>) -> Option<Entry<V>> + Send + Sync),
) -> Result<Obtained<V>, Error>
where
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Loaded<V>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
{
    let mut waited = false;
    loop {
        let signal = remote.waiters.register(key);
        let step = {
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = look(remote, key, accept).await;
            if let Step::Wait(lease_left) = step {
                if !waited {
                    waited = true;
                    metrics.remote_wait();
                }
                // Woken by the holder's `done`, or by the end of its lease.
                let _ = tokio::time::timeout(lease_left + Duration::from_millis(5), notified).await;
            }
            step
        };
        remote.waiters.release(key, signal);
        match step {
            Step::Found(entry) => return Ok(Obtained::Remote(entry)),
            Step::Failed(message) => return Err(Error::Load(Arc::new(RemoteLoadError(message)))),
            Step::Unavailable => return run_loader(loader).await.map(Obtained::Loaded),
            Step::Won(token) => {
                let held = Held::new(remote.clone(), key, token);
                return load_holding(held, loader, accept, entry_for).await;
            }
            Step::Wait(_) => continue,
        }
    }
}

/// What one look at Redis decided.
enum Step<V> {
    Found(Entry<V>),
    Failed(String),
    Won(String),
    Wait(Duration),
    Unavailable,
}

async fn look<V: Send + Sync + 'static>(
    remote: &RedisRemote<V>,
    key: &str,
    accept: &(dyn Fn(&Entry<V>) -> bool + Send + Sync),
) -> Step<V> {
    let Ok(probe) = remote.probe(key).await else {
        return Step::Unavailable;
    };
    if let Some(entry) = probe.value.filter(|e| accept(e)) {
        return Step::Found(entry);
    }
    if let Some(message) = probe.error {
        return Step::Failed(message);
    }
    if let Some(lease_left) = probe.lock_ttl {
        return Step::Wait(lease_left);
    }
    match remote.lock(key).await {
        Ok(Some(token)) => Step::Won(token),
        Ok(None) => Step::Wait(remote.lock_lease()),
        Err(Unavailable) => Step::Unavailable,
    }
}

/// The lock this server won. Dropped without [`finish`](Held::finish) (the load's task
/// was cancelled), it releases the lock in the background so the others need not wait
/// out the lease.
struct Held<V: Send + Sync + 'static> {
    remote: Arc<RedisRemote<V>>,
    key: String,
    token: String,
    finished: bool,
}

impl<V: Send + Sync + 'static> Held<V> {
    fn new(remote: Arc<RedisRemote<V>>, key: &str, token: String) -> Self {
        Held {
            remote,
            key: key.to_owned(),
            token,
            finished: false,
        }
    }

    async fn finish(mut self, outcome: Finish<'_, V>) {
        self.finished = true;
        self.remote.finish(&self.key, &self.token, outcome).await;
    }

    /// Renews the lease every third of it, for as long as the load runs.
    async fn renew(&self) {
        let every = self.remote.lock_lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            if !self.remote.renew(&self.key, &self.token).await {
                tracing::debug!(key = %self.key, "load lock lost while loading; the load goes on");
                return std::future::pending().await;
            }
        }
    }
}

impl<V: Send + Sync + 'static> Drop for Held<V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (remote, key, token) = (
                self.remote.clone(),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move { remote.finish(&key, &token, Finish::Nothing).await });
        }
    }
}

/// Loads while holding the lock, then writes the outcome for every server.
async fn load_holding<V, F, Fut, T, E>(
    held: Held<V>,
    loader: F,
    accept: &(dyn Fn(&Entry<V>) -> bool + Send + Sync),
    entry_for: &(dyn Fn(&Loaded<V>) -> Option<Entry<V>> + Send + Sync),
) -> Result<Obtained<V>, Error>
where
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Loaded<V>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
{
    // A load that finished between our look and our lock left its value behind.
    if let Ok(probe) = held.remote.probe(&held.key).await
        && let Some(entry) = probe.value.filter(|e| accept(e))
    {
        held.finish(Finish::Nothing).await;
        return Ok(Obtained::Remote(entry));
    }
    let outcome = tokio::select! {
        outcome = run_loader(loader) => outcome,
        () = held.renew() => unreachable!("renewing never ends"),
    };
    match &outcome {
        Ok(loaded) => {
            for (key, related) in &loaded.also {
                if let Some(entry) = entry_for(related) {
                    held.remote.store(key, &entry).await;
                }
            }
            match entry_for(loaded) {
                Some(entry) => held.finish(Finish::Value(&entry)).await,
                None => held.finish(Finish::Nothing).await,
            }
        }
        Err(error) => held.finish(Finish::Error(&error.to_string())).await,
    }
    outcome.map(Obtained::Loaded)
}

/// Listens to the other servers' events for as long as the cache lives: wakes local
/// waiters of finished loads, and drops invalidated entries from memory. Reconnects
/// (every second) when Redis goes away; meanwhile waiters fall back on lease expiry.
pub(crate) async fn listen<V: Send + Sync + 'static>(
    remote: std::sync::Weak<RedisRemote<V>>,
    mut on_event: impl FnMut(Event<'_>) -> bool + Send,
) {
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        let Some(tier) = remote.upgrade() else { return };
        let subscribed = async {
            let mut pubsub = tier.pubsub().await?;
            pubsub.subscribe(tier.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let (id, channel) = (tier.id, tier.channel().to_owned());
        drop(tier);
        let mut messages = match subscribed {
            Ok(pubsub) => pubsub.into_on_message(),
            Err(error) => {
                tracing::debug!(%error, "redis events unavailable; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::debug!(%channel, "listening for redis events");
        loop {
            match tokio::time::timeout(RETRY, messages.next()).await {
                Err(_quiet) => {
                    if remote.strong_count() == 0 {
                        return;
                    }
                }
                Ok(Some(message)) => {
                    let payload = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                    if let Some(event) = Event::parse(&payload, id)
                        && !on_event(event)
                    {
                        return;
                    }
                }
                Ok(None) => {
                    if let Some(tier) = remote.upgrade() {
                        tier.waiters.wake_all();
                    }
                    break;
                }
            }
        }
    }
}
