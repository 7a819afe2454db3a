//! [`HotKeys`]: the keys requested most in the last minute or so, for the status page,
//! in a bounded Space-Saving summary (Metwally, Agrawal and El Abbadi, 2005) whose
//! counts halve every [`HALVING`].
//!
//! Keys are hashed (SipHash with this process's random keys, so no client can aim
//! requests at one slot) into one of [`SHARDS`] shards, each a mutex around
//! [`SLOTS`] slots: a key already there counts one more; a new key takes a free slot,
//! or the slot of the least counted key, inheriting its count plus one (the count is
//! then an overestimate by at most what it inherited; any key with more than a
//! `1/SLOTS` share of its shard's requests is always tracked). A request never waits
//! for the mutex: when another request holds it, the request is not counted (see
//! [`HotKeys::skipped`]), so the summary is a sample under contention and the request
//! path never blocks on it.
//!
//! Memory is bounded whatever clients send: `SHARDS × SLOTS` keys of at most
//! [`MAX_KEY_BYTES`] bytes each (longer keys are cut there, at a character boundary,
//! and keys that agree up to the cut are one key). A slot's string is reused when a new
//! key takes it, so the request path allocates only while the summary fills.
//!
//! Cost, measured on one thread of a release build with 45-byte keys: 55 ns a request
//! for one key over and over, 80 ns spread over 1,000 keys, 170 ns over 100,000 keys
//! that keep taking one another's slots (a clock read is 26 ns of each, hashing 14);
//! against the microseconds of a cache hit.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// How many shards (independent mutexes) the summary has.
pub(crate) const SHARDS: usize = 16;
/// How many keys each shard tracks.
pub(crate) const SLOTS: usize = 16;
/// The longest key kept, in bytes: a longer one is cut to this.
pub(crate) const MAX_KEY_BYTES: usize = 256;
/// How often every count halves, so that the summary follows what is hot now.
pub(crate) const HALVING: Duration = Duration::from_secs(15);

/// The most requested keys, approximately and recently (see the module's doc).
pub(crate) struct HotKeys {
    shards: Box<[Shard]>,
    hasher: RandomState,
    started: Instant,
    skipped: AtomicU64,
}

/// One shard, on a cache line of its own so that shards taken by different threads do
/// not share one.
#[repr(align(128))]
struct Shard(Mutex<Summary>);

/// A shard's slots and the halving period its counts were last halved in.
struct Summary {
    slots: Vec<Slot>,
    /// Requests counted in this shard (halved with the slots' counts).
    total: u64,
    period: u64,
}

struct Slot {
    hash: u64,
    key: String,
    count: u64,
}

/// A tracked key and its count, as [`HotKeys::top`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HotKey {
    /// The key (at most [`MAX_KEY_BYTES`] bytes).
    pub key: String,
    /// Its requests, each halved once per [`HALVING`] since it was made (an
    /// overestimate by at most what its slot inherited).
    pub count: u64,
}

impl HotKeys {
    /// An empty summary.
    pub(crate) fn new() -> HotKeys {
        HotKeys {
            shards: (0..SHARDS)
                .map(|_| {
                    Shard(Mutex::new(Summary {
                        slots: Vec::with_capacity(SLOTS),
                        total: 0,
                        period: 0,
                    }))
                })
                .collect(),
            hasher: RandomState::new(),
            started: Instant::now(),
            skipped: AtomicU64::new(0),
        }
    }

    /// Counts one request for the key made of `parts`, concatenated (and cut at
    /// [`MAX_KEY_BYTES`]); skipped when another request holds its shard.
    pub(crate) fn record(&self, parts: &[&str]) {
        let mut hasher = self.hasher.build_hasher();
        for part in cut(parts) {
            hasher.write(part.as_bytes());
        }
        let hash = hasher.finish();
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        let mut summary = match shard.0.try_lock() {
            Ok(summary) => summary,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        summary.halve_until(self.period());
        summary.count(hash, parts);
    }

    /// The `n` keys with the highest counts, highest first, and the requests counted
    /// over all keys (halved as the counts are).
    pub(crate) fn top(&self, n: usize) -> (Vec<HotKey>, u64) {
        let period = self.period();
        let mut keys = Vec::with_capacity(SHARDS * SLOTS);
        let mut total = 0;
        for shard in &self.shards {
            let mut summary = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            summary.halve_until(period);
            total += summary.total;
            keys.extend(
                summary
                    .slots
                    .iter()
                    .filter(|slot| slot.count > 0)
                    .map(|slot| HotKey {
                        key: slot.key.clone(),
                        count: slot.count,
                    }),
            );
        }
        keys.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        keys.truncate(n);
        (keys, total)
    }

    /// Requests not counted because another request held their shard.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The halving period we are in: how many [`HALVING`]s since the summary was made.
    fn period(&self) -> u64 {
        self.started.elapsed().as_secs() / HALVING.as_secs()
    }
}

impl Summary {
    /// Halves every count once per period since the last halving.
    fn halve_until(&mut self, period: u64) {
        if period <= self.period {
            return;
        }
        let shift = u32::try_from(period - self.period).unwrap_or(u32::MAX);
        self.period = period;
        let halve = |count: u64| count.checked_shr(shift).unwrap_or(0);
        self.total = halve(self.total);
        for slot in &mut self.slots {
            slot.count = halve(slot.count);
        }
    }

    /// Counts one request for the key `parts` make, whose hash is `hash`.
    fn count(&mut self, hash: u64, parts: &[&str]) {
        self.total += 1;
        if let Some(slot) = self.slots.iter_mut().find(|slot| slot.hash == hash) {
            slot.count += 1;
            return;
        }
        if self.slots.len() < SLOTS {
            let mut key = String::with_capacity(MAX_KEY_BYTES);
            cut(parts).for_each(|part| key.push_str(part));
            self.slots.push(Slot {
                hash,
                key,
                count: 1,
            });
            return;
        }
        // Space-Saving: the least counted key gives its slot, and its count, away.
        if let Some(slot) = self.slots.iter_mut().min_by_key(|slot| slot.count) {
            slot.hash = hash;
            slot.count += 1;
            slot.key.clear();
            cut(parts).for_each(|part| slot.key.push_str(part));
        }
    }
}

/// `parts`, cut so that together they are at most [`MAX_KEY_BYTES`] bytes (each at a
/// character boundary).
fn cut<'a>(parts: &[&'a str]) -> impl Iterator<Item = &'a str> {
    let mut room = MAX_KEY_BYTES;
    parts.iter().map(move |part| {
        let mut end = part.len().min(room);
        while !part.is_char_boundary(end) {
            end -= 1;
        }
        room -= end;
        &part[..end]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_requested_key_comes_first_with_its_count() {
        let hot = HotKeys::new();
        for _ in 0..5 {
            hot.record(&["site", "/a"]);
        }
        hot.record(&["site", "/b"]);
        for _ in 0..3 {
            hot.record(&["site/", "c"]);
        }
        let (top, total) = hot.top(2);
        assert_eq!(
            top,
            [
                HotKey {
                    key: "site/a".into(),
                    count: 5
                },
                HotKey {
                    key: "site/c".into(),
                    count: 3
                },
            ]
        );
        assert_eq!(total, 9);
    }

    #[test]
    fn a_hot_key_stays_tracked_among_many_distinct_ones_and_memory_stays_bounded() {
        let hot = HotKeys::new();
        for i in 0..100_000 {
            hot.record(&["site", &format!("/cold/{i}")]);
            if i % 10 == 0 {
                hot.record(&["site", "/hot"]);
            }
        }
        let (top, total) = hot.top(usize::MAX);
        assert!(top.len() <= SHARDS * SLOTS, "{} keys kept", top.len());
        assert_eq!(top[0].key, "site/hot");
        assert!(
            top[0].count >= 10_000,
            "never undercounted: {}",
            top[0].count
        );
        assert!(total >= 110_000 - hot.skipped());
    }

    #[test]
    fn a_long_key_is_cut_at_a_character_boundary() {
        let hot = HotKeys::new();
        let long = "é".repeat(MAX_KEY_BYTES);
        hot.record(&["h", &long]);
        let (top, _) = hot.top(1);
        assert!(top[0].key.len() <= MAX_KEY_BYTES);
        assert!(top[0].key.len() >= MAX_KEY_BYTES - 1);
        assert!(top[0].key.starts_with("hé"));
        // Keys that agree up to the cut are one key.
        hot.record(&["h", &format!("{long}tail")]);
        assert_eq!(hot.top(usize::MAX).0.len(), 1);
        assert_eq!(hot.top(1).0[0].count, 2);
    }

    #[test]
    fn counts_halve_once_per_period_and_a_new_key_takes_the_least_counted_slot() {
        let mut summary = Summary {
            slots: Vec::new(),
            total: 0,
            period: 0,
        };
        for i in 0..SLOTS as u64 {
            for _ in 0..=i + 8 {
                summary.count(i, &["k", &i.to_string()]);
            }
        }
        summary.halve_until(2);
        assert_eq!(summary.slots[0].count, 9 / 4);
        assert_eq!(summary.slots[SLOTS - 1].count, (SLOTS as u64 + 8) / 4);
        summary.halve_until(2);
        assert_eq!(summary.slots[0].count, 2, "once per period");
        summary.count(1000, &["k", "new"]);
        assert_eq!(
            summary.slots[0].key, "knew",
            "the least counted slot is taken"
        );
        assert_eq!(summary.slots[0].count, 3, "with its count, plus one");
        summary.halve_until(100);
        assert!(summary.slots.iter().all(|slot| slot.count == 0));
        assert_eq!(summary.total, 0);
    }

    #[test]
    fn a_request_that_finds_its_shard_taken_is_skipped_not_blocked() {
        let hot = HotKeys::new();
        let held: Vec<_> = hot.shards.iter().map(|s| s.0.lock().unwrap()).collect();
        hot.record(&["site", "/a"]);
        assert_eq!(hot.skipped(), 1);
        drop(held);
        hot.record(&["site", "/a"]);
        assert_eq!(hot.top(1).0[0].count, 1);
    }
}
