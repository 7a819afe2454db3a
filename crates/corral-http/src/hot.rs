//! [`HotHeads`]: the ready-made head of a plain hit, for the responses hit most.
//!
//! A hit's head is the stored fields, its `Age`, `X-Cache` and `Cache-Status`: a
//! `HeaderMap` built field by field (every name hashed, every value checked again).
//! For a response hit many times a second, that map is the same for the whole second
//! of its age, so it is built once and cloned. The ready-made heads live in a
//! table of a fixed number of slots, not in the stored responses: memory is spent
//! on what is hot now, not on every response that was hit once, and the table's
//! size bounds it. A response takes the slot its address falls in when the slot is
//! free or holds a head made in an earlier second; within a second, the first
//! response to take a slot keeps it, and another that falls in the same slot builds
//! its head every time, as if there were no table.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use tokio::time::Instant;

use crate::stored::StoredResponse;

/// The most heads the table holds, and the least.
const MOST_SLOTS: usize = 1 << 16;
const LEAST_SLOTS: usize = 16;

/// Heads of more fields than this are not kept.
const MOST_FIELDS: usize = 32;

/// What the table reckons one head to take, at most: a map of [`MOST_FIELDS`] and
/// its index, and the allocation of the response it names.
const HEAD_BYTES: u64 = 4096;

/// Ready-made heads of plain hits, one per slot.
pub(crate) struct HotHeads {
    slots: Box<[ArcSwapOption<Head>]>,
    /// Where the cache's clock starts.
    started: Instant,
}

/// The head of a plain hit on one response during one second of its age.
struct Head {
    /// The response it was made for. (A `Weak` keeps the response's allocation,
    /// and so its address, from being reused by another response while this head
    /// names it.)
    response: Weak<StoredResponse>,
    age_secs: u64,
    /// The second, on the cache's clock, it was made in.
    made_in: u64,
    headers: HeaderMap,
}

impl std::fmt::Debug for HotHeads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotHeads")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl HotHeads {
    /// A table for about `bytes` of heads (a power of two slots, 16 to 65,536).
    pub(crate) fn new(bytes: u64) -> HotHeads {
        let wanted = usize::try_from(bytes / HEAD_BYTES).unwrap_or(MOST_SLOTS);
        let slots = wanted.clamp(LEAST_SLOTS, MOST_SLOTS).next_power_of_two();
        HotHeads {
            slots: (0..slots).map(|_| ArcSwapOption::empty()).collect(),
            started: Instant::now(),
        }
    }

    /// The head of a plain hit on `response` at `age_secs` of its age, at `now`:
    /// the ready-made one if there is one, else `make`'s (kept for the rest of the
    /// second if the slot is free, holds an earlier second's head or one of this
    /// response's).
    pub(crate) fn head(
        &self,
        response: &Arc<StoredResponse>,
        age_secs: u64,
        now: Instant,
        make: impl FnOnce() -> HeaderMap,
    ) -> HeaderMap {
        let address = Arc::as_ptr(response) as usize;
        // Allocations are aligned to at least 16 bytes: the low bits say nothing.
        let slot = &self.slots[(address >> 4) & (self.slots.len() - 1)];
        let clock_secs = now.saturating_duration_since(self.started).as_secs();
        let current = slot.load();
        if let Some(head) = &*current {
            let same = std::ptr::eq(head.response.as_ptr(), Arc::as_ptr(response));
            if same && head.age_secs == age_secs {
                return head.headers.clone();
            }
            if !same && head.made_in == clock_secs {
                return make();
            }
        }
        let headers = make();
        if headers.len() > MOST_FIELDS {
            return headers;
        }
        slot.store(Some(Arc::new(Head {
            response: Arc::downgrade(response),
            age_secs,
            made_in: clock_secs,
            headers: headers.clone(),
        })));
        headers
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    fn response() -> Arc<StoredResponse> {
        Arc::new(StoredResponse::sample(&HeaderMap::new()))
    }

    /// A head that says which call made it.
    fn head_of(made: &Cell<u32>) -> impl FnOnce() -> HeaderMap + '_ {
        move || {
            made.set(made.get() + 1);
            let mut headers = HeaderMap::new();
            headers.insert("x-made", HeaderValue::from(made.get()));
            headers
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_response_gets_one_head_per_second_of_its_age() {
        let hot = HotHeads::new(0);
        let (a, made) = (response(), Cell::new(0));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(hot.head(&a, 5, now, head_of(&made))["x-made"], "1");
        }
        let later = now + Duration::from_millis(1500);
        assert_eq!(hot.head(&a, 6, later, head_of(&made))["x-made"], "2");
        assert_eq!(hot.head(&a, 6, later, head_of(&made))["x-made"], "2");
        assert_eq!(made.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_kept_for_its_second_then_goes_to_whoever_is_hit() {
        let hot = HotHeads::new(0);
        let now = Instant::now();
        // 17 responses in 16 slots: two share one.
        let responses: Vec<_> = (0..=LEAST_SLOTS).map(|_| response()).collect();
        let slot = |r: &Arc<StoredResponse>| (Arc::as_ptr(r) as usize >> 4) & (LEAST_SLOTS - 1);
        let (first, second) = (0..responses.len())
            .flat_map(|i| (i + 1..responses.len()).map(move |j| (i, j)))
            .find(|&(i, j)| slot(&responses[i]) == slot(&responses[j]))
            .unwrap();
        let (a, b) = (&responses[first], &responses[second]);
        let (made_a, made_b) = (Cell::new(0), Cell::new(0));
        hot.head(a, 0, now, head_of(&made_a));
        hot.head(b, 0, now, head_of(&made_b));
        hot.head(b, 0, now, head_of(&made_b));
        hot.head(a, 0, now, head_of(&made_a));
        assert_eq!((made_a.get(), made_b.get()), (1, 2), "a keeps the slot");
        let later = now + Duration::from_secs(1);
        hot.head(b, 1, later, head_of(&made_b));
        hot.head(b, 1, later, head_of(&made_b));
        assert_eq!(made_b.get(), 3, "b takes it in the next second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_never_given_to_another_response() {
        let hot = HotHeads::new(0);
        let now = Instant::now();
        let made = Cell::new(0);
        let a = response();
        hot.head(&a, 0, now, head_of(&made));
        drop(a);
        // Whatever address the next responses get, none is given a's head.
        for _ in 0..100 {
            let b = response();
            let before = made.get();
            hot.head(&b, 0, now, head_of(&made));
            assert_eq!(made.get(), before + 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_of_many_fields_is_not_kept() {
        let hot = HotHeads::new(0);
        let (a, now, made) = (response(), Instant::now(), Cell::new(0));
        let big = || {
            made.set(made.get() + 1);
            (0..=MOST_FIELDS)
                .map(|i| {
                    (
                        http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                        HeaderValue::from(i),
                    )
                })
                .collect::<HeaderMap>()
        };
        hot.head(&a, 0, now, big);
        hot.head(&a, 0, now, big);
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn the_table_is_sized_by_its_budget() {
        assert_eq!(HotHeads::new(0).slots.len(), LEAST_SLOTS);
        assert_eq!(HotHeads::new(256 << 20 >> 6).slots.len(), 1024);
        assert_eq!(HotHeads::new(u64::MAX).slots.len(), MOST_SLOTS);
    }
}
