//! [`HotHeads`]: the ready-made head of a plain hit, for the responses hit most.
//!
//! A hit's head is the stored fields, its `Age`, `X-Cache` and `Cache-Status`: a
//! `HeaderMap` built field by field (every name hashed, every value checked again).
//! For a response hit many times a second, that map is the same for the whole second
//! of its age, so it is built once and cloned. So is the head of a hit on one range of
//! it (a `206` of one part, with its `Content-Range`), kept with the part it names. The ready-made heads live in a
//! table of a fixed number of slots, not in the stored responses: memory is spent
//! on what is hot now, not on every response that was hit once, and the table's
//! size bounds it. A response takes the slot its address falls in when the slot is
//! free or holds a head made in an earlier second; within a second, the first
//! response to take a slot keeps it, and another that falls in the same slot builds
//! its head every time, as if there were no table.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::stored::StoredResponse;

/// The most heads the table holds, and the least.
const MOST_SLOTS: usize = 1 << 16;
const LEAST_SLOTS: usize = 16;

/// Heads of more fields than this are not kept.
const MOST_FIELDS: usize = 32;

/// Heads of a range written in more bytes than this are not kept (the table keeps a
/// copy of each range it answers).
const MOST_RANGE_BYTES: usize = 64;

/// What the table reckons one head to take, at most: a map of [`MOST_FIELDS`] and
/// its index, a range of [`MOST_RANGE_BYTES`], and the allocation of the response it
/// names.
const HEAD_BYTES: u64 = 4096;

/// Ready-made heads of plain hits, one per slot.
pub(crate) struct HotHeads {
    slots: Box<[ArcSwapOption<Head>]>,
    /// Where the cache's clock starts.
    started: Instant,
}

/// The head of a hit on one response (or one range of it) during one second of its
/// age.
struct Head {
    /// The response it was made for. (A `Weak` keeps the response's allocation,
    /// and so its address, from being reused by another response while this head
    /// names it.)
    response: Weak<StoredResponse>,
    age_secs: u64,
    /// The `Range` it answers, copied (a value as parsed is a slice of its
    /// connection's read buffer, which it would keep alive).
    range: Option<Box<[u8]>>,
    /// The second, on the cache's clock, it was made in.
    made_in: u64,
    ready: Ready,
}

/// A ready-made answer's head.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub headers: HeaderMap,
    /// The first and last byte of the stored body a `206` carries; `None`: all of it.
    pub part: Option<(u64, u64)>,
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

    /// The head of a hit on `response` (on its `range`, if any) at `age_secs` of its
    /// age, at `now`: the ready-made one if there is one, else `make`'s (kept for the
    /// rest of the second if the slot is free, holds an earlier second's head or one
    /// of this response's). `make` may have none to give (`None`: the answer is not
    /// one the table keeps).
    pub(crate) fn head(
        &self,
        response: &Arc<StoredResponse>,
        age_secs: u64,
        range: Option<&HeaderValue>,
        now: Instant,
        make: impl FnOnce() -> Option<Ready>,
    ) -> Option<Ready> {
        let range = range.map(HeaderValue::as_bytes);
        if range.is_some_and(|range| range.len() > MOST_RANGE_BYTES) {
            return make();
        }
        let address = Arc::as_ptr(response) as usize;
        // Allocations are aligned to at least 16 bytes: the low bits say nothing.
        let spread = range.map_or(0, |r| {
            r.iter().fold(0usize, |h, &b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            })
        });
        let slot = &self.slots[((address >> 4) ^ spread) & (self.slots.len() - 1)];
        let clock_secs = now.saturating_duration_since(self.started).as_secs();
        let current = slot.load();
        if let Some(head) = &*current {
            let same = std::ptr::eq(head.response.as_ptr(), Arc::as_ptr(response))
                && head.range.as_deref() == range;
            if same && head.age_secs == age_secs {
                return Some(head.ready.clone());
            }
            if !same && head.made_in == clock_secs {
                return make();
            }
        }
        let ready = make()?;
        if ready.headers.len() > MOST_FIELDS {
            return Some(ready);
        }
        slot.store(Some(Arc::new(Head {
            response: Arc::downgrade(response),
            age_secs,
            range: range.map(Box::from),
            made_in: clock_secs,
            ready: ready.clone(),
        })));
        Some(ready)
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
    fn head_of(made: &Cell<u32>) -> impl FnOnce() -> Option<Ready> + '_ {
        move || {
            made.set(made.get() + 1);
            let mut headers = HeaderMap::new();
            headers.insert("x-made", HeaderValue::from(made.get()));
            Some(Ready {
                headers,
                part: None,
            })
        }
    }

    /// The head of a plain hit.
    fn plain(
        hot: &HotHeads,
        response: &Arc<StoredResponse>,
        age_secs: u64,
        now: Instant,
        make: impl FnOnce() -> Option<Ready>,
    ) -> HeaderMap {
        hot.head(response, age_secs, None, now, make)
            .unwrap()
            .headers
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_response_gets_one_head_per_second_of_its_age() {
        let hot = HotHeads::new(0);
        let (a, made) = (response(), Cell::new(0));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(plain(&hot, &a, 5, now, head_of(&made))["x-made"], "1");
        }
        let later = now + Duration::from_millis(1500);
        assert_eq!(plain(&hot, &a, 6, later, head_of(&made))["x-made"], "2");
        assert_eq!(plain(&hot, &a, 6, later, head_of(&made))["x-made"], "2");
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
        plain(&hot, a, 0, now, head_of(&made_a));
        plain(&hot, b, 0, now, head_of(&made_b));
        plain(&hot, b, 0, now, head_of(&made_b));
        plain(&hot, a, 0, now, head_of(&made_a));
        assert_eq!((made_a.get(), made_b.get()), (1, 2), "a keeps the slot");
        let later = now + Duration::from_secs(1);
        plain(&hot, b, 1, later, head_of(&made_b));
        plain(&hot, b, 1, later, head_of(&made_b));
        assert_eq!(made_b.get(), 3, "b takes it in the next second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_never_given_to_another_response() {
        let hot = HotHeads::new(0);
        let now = Instant::now();
        let made = Cell::new(0);
        let a = response();
        plain(&hot, &a, 0, now, head_of(&made));
        drop(a);
        // Whatever address the next responses get, none is given a's head.
        for _ in 0..100 {
            let b = response();
            let before = made.get();
            plain(&hot, &b, 0, now, head_of(&made));
            assert_eq!(made.get(), before + 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_of_many_fields_is_not_kept() {
        let hot = HotHeads::new(0);
        let (a, now, made) = (response(), Instant::now(), Cell::new(0));
        let big = || {
            made.set(made.get() + 1);
            let headers = (0..=MOST_FIELDS)
                .map(|i| {
                    (
                        http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                        HeaderValue::from(i),
                    )
                })
                .collect::<HeaderMap>();
            Some(Ready {
                headers,
                part: None,
            })
        };
        plain(&hot, &a, 0, now, big);
        plain(&hot, &a, 0, now, big);
        assert_eq!(made.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn each_range_of_a_response_has_its_own_head_and_what_make_declines_is_not_kept() {
        let hot = HotHeads::new(0);
        let (a, now, made) = (response(), Instant::now(), Cell::new(0));
        let first = HeaderValue::from_static("bytes=0-1");
        let ranged = |range: &HeaderValue, made: &Cell<u32>| {
            hot.head(&a, 0, Some(range), now, || {
                let mut ready = head_of(made)()?;
                ready.part = Some((0, 1));
                Some(ready)
            })
            .unwrap()
        };
        let one = ranged(&first, &made);
        assert_eq!(
            (one.headers["x-made"].clone(), one.part),
            ("1".parse().unwrap(), Some((0, 1)))
        );
        assert_eq!(ranged(&first, &made).headers["x-made"], "1", "kept");
        assert_eq!(
            plain(&hot, &a, 0, now, head_of(&made))["x-made"],
            "2",
            "not the plain head"
        );
        let declined = Cell::new(0);
        for _ in 0..2 {
            let none = hot.head(&a, 5, Some(&first), now + Duration::from_secs(5), || {
                declined.set(declined.get() + 1);
                None
            });
            assert!(none.is_none());
        }
        assert_eq!(declined.get(), 2, "a declined answer is asked for again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_range_is_answered_but_never_kept() {
        let hot = HotHeads::new(0);
        let (a, now, made) = (response(), Instant::now(), Cell::new(0));
        let long =
            HeaderValue::from_str(&format!("bytes=0-1{}", " ".repeat(MOST_RANGE_BYTES))).unwrap();
        for _ in 0..2 {
            assert!(hot.head(&a, 0, Some(&long), now, head_of(&made)).is_some());
        }
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn the_table_is_sized_by_its_budget() {
        assert_eq!(HotHeads::new(0).slots.len(), LEAST_SLOTS);
        assert_eq!(HotHeads::new(256 << 20 >> 6).slots.len(), 1024);
        assert_eq!(HotHeads::new(u64::MAX).slots.len(), MOST_SLOTS);
    }
}
