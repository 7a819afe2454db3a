//! Running one load: its own task and timeout; the tiers below memory it looks in, and
//! whose locks it takes; the loader, a panic turned into an error; and the outcome
//! handed to the flight, which stores it in memory and answers every waiter.

use std::any::Any;
use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::entry::Entry;
use crate::error::{Error, SharedError};
use crate::flight::{Leader, Settled};
use crate::loaded::Loaded;
use crate::state::{InsertMark, State};
use crate::stats::LoadResult;
use crate::tags::Tagged;
use crate::tier::{Lock, Lookup, Permit, Release, Tier, Usable};

/// How a load came by its value.
pub(crate) enum Obtained<V> {
    /// The loader ran (here).
    Loaded(Loaded<V>),
    /// A tier below memory had it (another server's load, say).
    Stored(Entry<V>),
}

/// Runs a load in its own task on behalf of `leader`'s flight: cancelling a waiter never
/// cancels it. `usable` decides whether an entry found in a tier below memory will do.
pub(crate) fn spawn<V, U, F, Fut, T, E>(
    state: &Arc<State<V>>,
    leader: Leader<Settled<V>>,
    loader: F,
    usable: U,
    background: bool,
) where
    V: Clone + Send + Sync + 'static,
    U: Fn(&Entry<V>) -> bool + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Loaded<V>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
{
    let state = Arc::clone(state);
    let span = tracing::debug_span!(
        "corral.load",
        cache = %state.config.name,
        key = %leader.key(),
        background,
    );
    let load = async move {
        let timeout = state.config.load_timeout;
        let started = Instant::now();
        // The invalidations as the load begins: a tag purge after this covers its
        // value, and an invalidation of a related entry's key keeps that entry out.
        let mark = state.mark();
        let obtained =
            tokio::time::timeout(timeout, obtain(&state, leader.key(), loader, &usable, mark))
                .await;
        let outcome = obtained.unwrap_or(Err(Error::Timeout(timeout)));
        finish(&state, leader, outcome, (started, mark), background);
    };
    tokio::spawn(load.instrument(span));
}

/// Gets a value for a load: from the first tier below memory that has a usable entry
/// (copied into the tiers above it), else from the loader, run holding the locks of
/// the tiers that granted them, each of which then stores the outcome.
async fn obtain<V, F, Fut, T, E>(
    state: &Arc<State<V>>,
    key: &str,
    loader: F,
    usable: &Usable<V>,
    mark: InsertMark,
) -> Result<Obtained<V>, Error>
where
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Loaded<V>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync + 'static>> + Send + 'static,
{
    state.listen();
    let mut held: Vec<Held<V>> = Vec::new();
    let mut waited = false;
    for tier in &state.tiers {
        match keeping(&held, look(state, tier, key, usable, &mut waited)).await {
            Step::Found(entry) => {
                for Held { permit, .. } in held {
                    permit.release(Release::Value(&entry)).await;
                }
                return Ok(Obtained::Stored(entry));
            }
            Step::Failed(error) => {
                for Held { permit, .. } in held {
                    permit.release(Release::Nothing).await;
                }
                return Err(Error::Load(error));
            }
            Step::Won(permit) => held.push(Held {
                tier: Arc::clone(tier),
                permit,
            }),
            Step::Skip => {}
        }
    }
    let started = Instant::now();
    let outcome = keeping(&held, run_loader(loader)).await;
    let took = started.elapsed();
    match &outcome {
        Ok(loaded) if !held.is_empty() => {
            // Noting how long the load took, so that every server reading the entry
            // from a shared tier can refresh it early.
            let below = |loaded: &Loaded<V>| {
                (!loaded.memory_only)
                    .then(|| state.entry_for(loaded, mark.tick))
                    .flatten()
                    .map(|entry| entry.loaded_in(took))
            };
            let entry = below(loaded);
            let related: Vec<_> = loaded
                .also
                .iter()
                .filter_map(|(key, related)| Some((key, below(related)?)))
                .collect();
            for Held { tier, permit } in held {
                // Related entries have no lock of their own: one whose key was
                // invalidated since the load began is kept out, checked before it
                // is stored and once more after, for an invalidation (another
                // server's, say) that reached the tier first.
                let mut stored = Vec::new();
                for (key, entry) in &related {
                    if !state.invalidated_since(mark, key) {
                        permit.store_also(key, entry).await;
                        stored.push(*key);
                    }
                }
                let outcome = entry.as_ref().map_or(Release::Nothing, Release::Value);
                permit.release(outcome).await;
                for key in stored {
                    if state.invalidated_since(mark, key) {
                        tier.invalidate(key).await;
                    }
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            for Held { permit, .. } in held {
                permit.release(Release::failed(error)).await;
            }
        }
    }
    outcome.map(Obtained::Loaded)
}

/// A lock this load holds in one tier.
struct Held<V> {
    tier: Arc<dyn Tier<V>>,
    permit: Box<dyn Permit<V>>,
}

/// What looking in one tier decided.
enum Step<V> {
    /// A usable entry.
    Found(Entry<V>),
    /// Another server's load failed moments ago.
    Failed(SharedError),
    /// This load holds the key's lock in the tier.
    Won(Box<dyn Permit<V>>),
    /// Nothing here, and no lock to hold (the tier is not answering).
    Skip,
}

/// Looks in one tier, and asks for its lock if it has nothing usable; while another
/// server loads the key there, waits for it and looks again.
async fn look<V: Clone + Send + Sync + 'static>(
    state: &State<V>,
    tier: &Arc<dyn Tier<V>>,
    key: &str,
    usable: &Usable<V>,
    waited: &mut bool,
) -> Step<V> {
    let mut wait_for = |wait| {
        if !std::mem::replace(waited, true) {
            state.metrics.remote_wait();
        }
        wait
    };
    loop {
        match tier.lookup(key, usable).await {
            Lookup::Found(entry) => return Step::Found(entry),
            Lookup::Failed(error) => return Step::Failed(error),
            Lookup::Unavailable => return Step::Skip,
            Lookup::Loading(wait) => {
                wait_for(wait).await;
                continue;
            }
            Lookup::Missing => {}
        }
        match Arc::clone(tier).lock(key).await {
            Lock::Won(permit) => {
                // A load that finished between the look and the lock left its value.
                if let Lookup::Found(entry) = tier.lookup(key, usable).await {
                    permit.release(Release::Nothing).await;
                    return Step::Found(entry);
                }
                return Step::Won(permit);
            }
            Lock::Held(wait) => wait_for(wait).await,
            Lock::Unavailable => return Step::Skip,
        }
    }
}

/// Runs `work` while keeping the locks held.
async fn keeping<V, R>(held: &[Held<V>], work: impl Future<Output = R>) -> R {
    if held.is_empty() {
        return work.await;
    }
    let keep = futures_util::future::select_all(held.iter().map(|h| h.permit.keep()));
    tokio::select! {
        output = work => output,
        (never, _, _) = keep => match never {},
    }
}

/// Runs a loader, catching its panic.
async fn run_loader<V, F, Fut, T, E>(loader: F) -> Result<Loaded<V>, Error>
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
        Err(panic) => Err(Error::Panicked(panic_message(&*panic))),
    }
}

/// The message of a caught panic, as [`Error::Panicked`] carries it: the payload when
/// it is a string (as `panic!` makes it), or a placeholder.
///
/// For code that catches panics of its own (a transform, a client) and reports them
/// the way the cache reports a loader's:
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("boom {}", 42)).unwrap_err();
/// assert_eq!(&*corral::panic_message(&*payload), "boom 42");
/// let payload = std::panic::catch_unwind(|| std::panic::panic_any(7)).unwrap_err();
/// assert_eq!(&*corral::panic_message(&*payload), "a non-string panic payload");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("a non-string panic payload")
    }
}

/// Records a finished load and hands its outcome to the flight, which stores it in
/// memory unless the key was invalidated or overwritten meanwhile.
fn finish<V: Clone + Send + Sync + 'static>(
    state: &State<V>,
    leader: Leader<Settled<V>>,
    outcome: Result<Obtained<V>, Error>,
    (started, mark): (Instant, InsertMark),
    background: bool,
) {
    let tick = mark.tick;
    let took = started.elapsed();
    match outcome {
        Ok(Obtained::Stored(mut entry)) => {
            state.lives_until(entry.stale_until);
            // Its tags judged by this server's purges from when this load began.
            entry.tagged = entry.tagged.map(|tagged| {
                Arc::new(Tagged {
                    tick,
                    ..(*tagged).clone()
                })
            });
            let value = entry.value.clone();
            let settled = Settled {
                value,
                from_tier: true,
            };
            leader.finish(Ok(settled), |key, _| {
                state.memory.insert(key, entry);
                state.publish_size();
            });
        }
        Ok(Obtained::Loaded(loaded)) => {
            state.metrics.load(LoadResult::Ok, took);
            let entry = state
                .entry_for(&loaded, tick)
                .map(|entry| entry.loaded_in(took));
            let related: Vec<_> = loaded
                .also
                .iter()
                .filter_map(|(key, l)| Some((key.clone(), state.entry_for(l, tick)?)))
                .collect();
            let settled = Settled {
                value: loaded.value,
                from_tier: false,
            };
            // Related entries have no flight of their own: one whose key was
            // invalidated since the load began is kept out, checked before it is
            // stored (with the value, before its waiters wake) and once more after,
            // for an invalidation that raced the store.
            let mut landed = Vec::new();
            leader.finish(Ok(settled), |key, _| {
                if let Some(entry) = entry {
                    state.memory.insert(key, entry);
                }
                for (key, entry) in related {
                    if !state.invalidated_since(mark, &key) {
                        state.memory.insert(&key, entry);
                        landed.push(key);
                    }
                }
                state.publish_size();
            });
            for key in landed {
                if state.invalidated_since(mark, &key) {
                    state.drop_locally(&key);
                }
            }
        }
        Err(error) => {
            let result = match error {
                Error::Panicked(_) => LoadResult::Panic,
                Error::Timeout(_) => LoadResult::Timeout,
                _ => LoadResult::Error,
            };
            state.metrics.load(result, took);
            let message = if background {
                "background refresh failed; serving the stale value until its ttl ends"
            } else {
                "load failed"
            };
            // Once per load, however many waited on it. A loader's own error is at
            // DEBUG when its loader reports it (`log_load_errors(false)`); what the
            // cache decided itself (a timeout, a panic) is the cache's to report.
            if state.config.log_load_errors || !matches!(error, Error::Load(_)) {
                tracing::warn!(%error, kind = error.kind(), "{message}");
            } else {
                tracing::debug!(%error, kind = error.kind(), "{message}");
            }
            leader.finish(Err(error), |_, _| {});
        }
    }
}
