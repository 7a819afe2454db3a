//! A bound on how many are held at once (client connections, `max-connections`;
//! requests to origins, `max-upstream-connections`), which a reload may change while
//! some are held: a larger bound admits more at once; a smaller one is reached as
//! those held are given back (none is cut short), and a later change counts from what
//! was asked before, not from what has been reached so far.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many may be held at once.
#[derive(Debug)]
pub(crate) struct Limit {
    permits: Arc<Semaphore>,
    /// Slots to take out of use as connections close: what a smaller bound still owes.
    owed: Arc<Mutex<usize>>,
}

/// A place under the bound, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    owed: Arc<Mutex<usize>>,
}

impl Limit {
    /// At most `max` at once.
    pub(crate) fn new(max: usize) -> Limit {
        Limit {
            permits: Arc::new(Semaphore::new(max)),
            owed: Arc::new(Mutex::new(0)),
        }
    }

    /// Waits for a place.
    pub(crate) async fn acquire(&self) -> Slot {
        let permit = self.permits.clone().acquire_owned().await;
        Slot {
            // The semaphore is never closed.
            permit: permit.ok(),
            owed: self.owed.clone(),
        }
    }

    /// Changes the bound from `from` to `to`.
    pub(crate) fn resize(&self, from: usize, to: usize) {
        let mut owed = lock(&self.owed);
        if to >= from {
            let grow = to - from;
            let repaid = grow.min(*owed);
            *owed -= repaid;
            self.permits.add_permits(grow - repaid);
        } else {
            let shrink = from - to;
            let free = self.permits.forget_permits(shrink);
            *owed += shrink - free;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut owed = lock(&self.owed);
        if *owed > 0
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
            *owed -= 1;
        }
    }
}

/// What a client connection holds while it is open (its [`Slot`], its part in the
/// server's drain), shared with what outlives the connection's requests: a `CONNECT`
/// tunnel keeps it until the tunnel closes, so tunnels count against `max-connections`
/// and a shutdown waits for them (within its grace period).
#[derive(Clone)]
pub(crate) struct Held {
    _holding: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl Held {
    /// Holds `holding` until every clone is dropped.
    pub(crate) fn new(holding: impl Send + Sync + 'static) -> Held {
        Held {
            _holding: Arc::new(holding),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(limit: &Limit) -> usize {
        limit.permits.available_permits()
    }

    #[tokio::test]
    async fn a_smaller_bound_is_reached_as_connections_close() {
        let limit = Limit::new(3);
        let slots = [
            limit.acquire().await,
            limit.acquire().await,
            limit.acquire().await,
        ];
        limit.resize(3, 1);
        let [a, b, c] = slots;
        drop(a);
        drop(b);
        assert_eq!(available(&limit), 0, "two closed, both owed");
        drop(c);
        assert_eq!(available(&limit), 1);
    }

    #[tokio::test]
    async fn a_bound_lowered_then_raised_counts_from_what_was_asked() {
        let limit = Limit::new(2);
        let (a, b) = (limit.acquire().await, limit.acquire().await);
        limit.resize(2, 1);
        limit.resize(1, 4);
        assert_eq!(available(&limit), 2, "4 asked, 2 in use");
        drop((a, b));
        assert_eq!(available(&limit), 4);
        limit.resize(4, 1);
        assert_eq!(available(&limit), 1, "free slots go at once");
    }
}
