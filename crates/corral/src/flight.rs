//! The flight: at most one load per key, and every waiter of a load gets its outcome.
//!
//! A caller that finds no usable entry [`join`](Flights::join)s the key's flight. The
//! first becomes the [`Leader`]; the cache moves the leader into a spawned task that runs
//! the loader. Everyone else gets a [`Wait`], a future that resolves to the leader's
//! outcome. The states a waiter can observe are named by [`Outcome`]: a value, the
//! loader's error, or `Abandoned` when the leader was dropped without finishing (its
//! task was cancelled). Abandonment is a property of the type: [`Leader`]'s `Drop`
//! publishes it, so no cancelled task can strand a waiter.
//!
//! Storing the value and retiring the flight happen under the key's shard lock, and
//! [`join`](Flights::join) re-checks the store under that same lock, so no caller can
//! slip between "stored" and "flight gone" and start a second load. An
//! [`invalidate`](Flights::detach_with) or explicit insert detaches a running flight:
//! its waiters still get its outcome, but it no longer writes to the store.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

#[cfg(corral_loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(corral_loom))]
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Error;

/// What every waiter of one load receives.
pub(crate) type Outcome<V> = Result<V, Error>;

/// What a load hands every waiter: its value, and whether a tier below memory had it
/// (so that no loader ran).
#[derive(Debug, Clone)]
pub(crate) struct Settled<V> {
    pub(crate) value: V,
    pub(crate) from_tier: bool,
}

#[cfg(not(corral_loom))]
const SHARDS: usize = 64;
#[cfg(corral_loom)]
const SHARDS: usize = 2;

type Shard<V> = Mutex<HashMap<Box<str>, Arc<Slot<V>>>>;

/// The loads in flight, by key.
pub(crate) struct Flights<V> {
    shards: Arc<Vec<Shard<V>>>,
    hasher: RandomState,
}

impl<V> Clone for Flights<V> {
    fn clone(&self) -> Self {
        Flights {
            shards: Arc::clone(&self.shards),
            hasher: self.hasher.clone(),
        }
    }
}

/// The result of joining a key's flight.
pub(crate) enum Join<V, F> {
    /// The re-check under the lock found a usable entry after all.
    Found(F),
    /// A load is running; wait for its outcome.
    Follow(Wait<V>),
    /// No load is running: the caller leads a new one.
    Lead(Leader<V>),
}

impl<V> Flights<V> {
    pub(crate) fn new() -> Self {
        Flights {
            shards: Arc::new((0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<Box<str>, Arc<Slot<V>>>> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        // A panic under this lock cannot leave the map half-updated (each operation
        // is a single insert or remove), so a poisoned lock is safe to keep using.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many loads are running.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Detaches the flight for `key` (if any) and runs `f` under the same lock, so no
    /// load that started before this call can store its value after it.
    pub(crate) fn detach_with<R>(&self, key: &str, f: impl FnOnce() -> R) -> R {
        let mut shard = self.shard(key);
        shard.remove(key);
        f()
    }

    /// Detaches the running flights whose keys start with `prefix`.
    pub(crate) fn detach_prefix(&self, prefix: &str) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|key, _| !key.starts_with(prefix));
        }
    }

    /// Detaches every running flight, then runs `f`, holding all shard locks.
    pub(crate) fn detach_all_with<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut guards: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        guards.iter_mut().for_each(|g| g.clear());
        f()
    }
}

impl<V: Clone> Flights<V> {
    /// Joins the flight for `key`, or leads a new one. `recheck` runs under the shard
    /// lock before a new flight starts: if a load stored its value between the caller's
    /// lookup and now, it returns that instead.
    pub(crate) fn join<F>(&self, key: &str, recheck: impl FnOnce() -> Option<F>) -> Join<V, F> {
        let mut shard = self.shard(key);
        if let Some(slot) = shard.get(key) {
            return Join::Follow(Wait::new(Arc::clone(slot)));
        }
        if let Some(found) = recheck() {
            return Join::Found(found);
        }
        let slot = Arc::new(Slot::new());
        let key: Box<str> = key.into();
        shard.insert(key.clone(), Arc::clone(&slot));
        drop(shard);
        Join::Lead(Leader {
            flights: self.clone(),
            key,
            slot,
            finished: false,
        })
    }
}

/// The right and duty to finish one key's flight. Dropping it unfinished publishes
/// [`Error::Abandoned`] to the waiters and frees the key.
pub(crate) struct Leader<V> {
    flights: Flights<V>,
    key: Box<str>,
    slot: Arc<Slot<V>>,
    finished: bool,
}

impl<V: Clone> Leader<V> {
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// A future that resolves to this flight's outcome.
    pub(crate) fn wait(&self) -> Wait<V> {
        Wait::new(Arc::clone(&self.slot))
    }

    /// Publishes the outcome. If this flight is still the key's current one, `store`
    /// runs first, under the shard lock, with the key and the value (when there is
    /// one), and the flight is retired.
    ///
    /// If `store` panics, the leader is dropped unfinished, so its waiters get
    /// [`Error::Abandoned`] rather than waiting forever.
    pub(crate) fn finish(mut self, outcome: Outcome<V>, store: impl FnOnce(&str, &V)) {
        {
            let mut shard = self.flights.shard(&self.key);
            if shard
                .get(&*self.key)
                .is_some_and(|current| Arc::ptr_eq(current, &self.slot))
            {
                if let Ok(value) = &outcome {
                    store(&self.key, value);
                }
                shard.remove(&*self.key);
            }
        }
        self.slot.complete(outcome);
        self.finished = true;
    }
}

impl<V> Drop for Leader<V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        {
            let mut shard = self.flights.shard(&self.key);
            if shard
                .get(&*self.key)
                .is_some_and(|current| Arc::ptr_eq(current, &self.slot))
            {
                shard.remove(&*self.key);
            }
        }
        self.slot.complete(Err(Error::Abandoned));
    }
}

/// Where a flight's outcome lands, and who is waiting for it.
pub(crate) struct Slot<V> {
    state: Mutex<SlotState<V>>,
}

enum SlotState<V> {
    Pending(Vec<Option<Waker>>),
    Done(Outcome<V>),
}

impl<V> Slot<V> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(SlotState::Pending(Vec::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the outcome once; later calls are ignored.
    fn complete(&self, outcome: Outcome<V>) {
        let wakers = {
            let mut state = self.lock();
            match &mut *state {
                SlotState::Done(_) => return,
                SlotState::Pending(wakers) => {
                    let wakers = std::mem::take(wakers);
                    *state = SlotState::Done(outcome);
                    wakers
                }
            }
        };
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

/// A future resolving to a flight's outcome. Dropping it leaves the load running.
pub(crate) struct Wait<V> {
    slot: Arc<Slot<V>>,
    waker_index: Option<usize>,
}

impl<V> Wait<V> {
    fn new(slot: Arc<Slot<V>>) -> Self {
        Wait {
            slot,
            waker_index: None,
        }
    }
}

impl<V: Clone> Future for Wait<V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.slot.lock();
        match &mut *state {
            SlotState::Done(outcome) => Poll::Ready(outcome.clone()),
            SlotState::Pending(wakers) => {
                match this.waker_index {
                    Some(i) => match &mut wakers[i] {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    },
                    None => {
                        this.waker_index = Some(wakers.len());
                        wakers.push(Some(cx.waker().clone()));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<V> Drop for Wait<V> {
    fn drop(&mut self) {
        if let Some(i) = self.waker_index
            && let SlotState::Pending(wakers) = &mut *self.slot.lock()
        {
            wakers[i] = None;
        }
    }
}

#[cfg(all(test, not(corral_loom)))]
mod tests {
    use super::*;

    fn store_into(memory: &std::sync::Mutex<Option<u32>>) -> impl FnOnce(&str, &u32) + '_ {
        |_, v| *memory.lock().unwrap() = Some(*v)
    }

    #[tokio::test]
    async fn followers_get_the_leaders_value() {
        let flights = Flights::<u32>::new();
        let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
            panic!("first caller must lead")
        };
        let followers: Vec<_> = (0..10)
            .map(|_| match flights.join("k", || None::<u32>) {
                Join::Follow(w) => tokio::spawn(w),
                _ => panic!("later callers must follow"),
            })
            .collect();
        let memory = std::sync::Mutex::new(None);
        leader.finish(Ok(7), store_into(&memory));
        for f in followers {
            assert_eq!(f.await.unwrap().unwrap(), 7);
        }
        assert_eq!(*memory.lock().unwrap(), Some(7));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_abandons_its_waiters_and_frees_the_key() {
        let flights = Flights::<u32>::new();
        let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
            panic!()
        };
        let Join::Follow(wait) = flights.join("k", || None::<u32>) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(wait.await, Err(Error::Abandoned)));
        assert!(matches!(flights.join("k", || None::<u32>), Join::Lead(_)));
    }

    #[tokio::test]
    async fn a_detached_flight_still_answers_its_waiters_but_stores_nothing() {
        let flights = Flights::<u32>::new();
        let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
            panic!()
        };
        let wait = leader.wait();
        flights.detach_with("k", || ());
        let memory = std::sync::Mutex::new(None);
        leader.finish(Ok(3), store_into(&memory));
        assert_eq!(wait.await.unwrap(), 3);
        assert_eq!(*memory.lock().unwrap(), None);
    }

    #[tokio::test]
    async fn a_store_that_panics_abandons_the_waiters_instead_of_stranding_them() {
        let flights = Flights::<u32>::new();
        let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
            panic!()
        };
        let wait = leader.wait();
        let finish = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            leader.finish(Ok(1), |_, _| panic!("weigher blew up"))
        }));
        assert!(finish.is_err());
        assert!(matches!(wait.await, Err(Error::Abandoned)));
        assert!(matches!(flights.join("k", || None::<u32>), Join::Lead(_)));
    }

    #[tokio::test]
    async fn the_recheck_under_the_lock_wins_over_a_new_flight() {
        let flights = Flights::<u32>::new();
        assert!(matches!(flights.join("k", || Some(9)), Join::Found(9)));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_dropped_before_the_outcome_leaves_the_others_unharmed() {
        let flights = Flights::<u32>::new();
        let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
            panic!()
        };
        let mut gone = Box::pin(leader.wait());
        assert!(futures_util::poll!(&mut gone).is_pending());
        drop(gone);
        let kept = leader.wait();
        leader.finish(Ok(1), |_, _| {});
        assert_eq!(kept.await.unwrap(), 1);
    }
}

/// Exhaustive interleavings of the flight protocol under loom. Run with
/// `RUSTFLAGS="--cfg corral_loom" cargo test -p corral --lib --target-dir target/loom flight::loom_model`
/// (scripts/test.sh does).
#[cfg(all(test, corral_loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;

    type Memory = Arc<Mutex<Option<u32>>>;

    /// Explores every interleaving with at most three preemptions, which covers each
    /// ordering of join, recheck, finish and wait between the threads of a test.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    /// One caller: use the stored value, or join/lead; a leader loads on its own thread.
    fn call(flights: &Flights<u32>, memory: &Memory, loads: &Arc<AtomicUsize>) -> Outcome<u32> {
        if let Some(v) = *memory.lock().unwrap() {
            return Ok(v);
        }
        let recheck = || *memory.lock().unwrap();
        match flights.join("k", recheck) {
            Join::Found(v) => Ok(v),
            Join::Follow(wait) => loom::future::block_on(wait),
            Join::Lead(leader) => {
                let wait = leader.wait();
                let (memory, loads) = (memory.clone(), loads.clone());
                let loader = thread::spawn(move || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    leader.finish(Ok(42), |_, v| *memory.lock().unwrap() = Some(*v));
                });
                let outcome = loom::future::block_on(wait);
                loader.join().unwrap();
                outcome
            }
        }
    }

    #[test]
    fn concurrent_callers_share_one_load() {
        model(|| {
            let flights = Flights::<u32>::new();
            let memory: Memory = Arc::new(Mutex::new(None));
            let loads = Arc::new(AtomicUsize::new(0));
            let (f, m, l) = (flights.clone(), memory.clone(), loads.clone());
            let other = thread::spawn(move || call(&f, &m, &l));
            assert_eq!(call(&flights, &memory, &loads).unwrap(), 42);
            assert_eq!(other.join().unwrap().unwrap(), 42);
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            assert_eq!(flights.len(), 0);
        });
    }

    #[test]
    fn an_abandoned_flight_never_strands_a_waiter() {
        model(|| {
            let flights = Flights::<u32>::new();
            let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
                panic!("first join leads")
            };
            let f = flights.clone();
            let waiter = thread::spawn(move || match f.join("k", || None::<u32>) {
                Join::Follow(wait) => Some(loom::future::block_on(wait)),
                Join::Lead(_) => None,
                Join::Found(_) => unreachable!(),
            });
            let dropper = thread::spawn(move || drop(leader));
            dropper.join().unwrap();
            if let Some(outcome) = waiter.join().unwrap() {
                assert!(matches!(outcome, Err(Error::Abandoned)));
            }
            assert_eq!(flights.len(), 0);
        });
    }

    #[test]
    fn a_load_that_started_before_an_invalidation_never_stores_after_it() {
        model(|| {
            let flights = Flights::<u32>::new();
            let memory: Memory = Arc::new(Mutex::new(None));
            let Join::Lead(leader) = flights.join("k", || None::<u32>) else {
                panic!("first join leads")
            };
            let m = memory.clone();
            let loader =
                thread::spawn(move || leader.finish(Ok(1), |_, v| *m.lock().unwrap() = Some(*v)));
            let (f, m) = (flights.clone(), memory.clone());
            let invalidator =
                thread::spawn(move || f.detach_with("k", || *m.lock().unwrap() = None));
            loader.join().unwrap();
            invalidator.join().unwrap();
            assert_eq!(*memory.lock().unwrap(), None);
        });
    }
}
