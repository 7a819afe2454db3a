//! A stored value and its lifetime: fresh until `fresh_until`, stale until `stale_until`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::tags::Tagged;

/// Where an entry is in its life at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before `fresh_until`: served as is.
    Fresh,
    /// Between `fresh_until` (or a soft purge) and `stale_until`: served at once while
    /// one background refresh runs.
    Stale,
    /// At or after `stale_until`: a miss.
    Expired,
}

/// A stored value with the instants that bound its life.
#[derive(Debug, Clone)]
pub struct Entry<V> {
    pub(crate) value: V,
    pub(crate) stored_at: Instant,
    pub(crate) fresh_until: Instant,
    pub(crate) stale_until: Instant,
    /// How long its load took, in microseconds (0: not known, as for an entry copied
    /// from another tier); early refresh scales by it.
    pub(crate) load_micros: u32,
    /// Its tags, and the tick its load began at (see [`crate::tags`]).
    pub(crate) tagged: Option<Arc<Tagged>>,
    /// When a soft purge made it stale, if one did.
    pub(crate) softened: Option<Instant>,
}

/// The longest life an entry gets (a century): longer lifetimes are cut to it, as
/// an instant that far away may not exist.
pub(crate) const LONGEST_LIFE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl<V> Entry<V> {
    /// An entry stored at `now`, fresh for `fresh_for` (capped at `ttl`) and kept for
    /// `ttl`; both at most [`LONGEST_LIFE`].
    pub(crate) fn new(value: V, now: Instant, fresh_for: Duration, ttl: Duration) -> Self {
        let ttl = ttl.min(LONGEST_LIFE);
        Entry {
            value,
            stored_at: now,
            fresh_until: now + fresh_for.min(ttl),
            stale_until: now + ttl,
            load_micros: 0,
            tagged: None,
            softened: None,
        }
    }

    /// The entry, noting that its load took `took`.
    pub(crate) fn loaded_in(mut self, took: Duration) -> Self {
        self.load_micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self
    }

    /// How long the load that stored it took (zero if not known: an entry copied from
    /// another tier, or inserted).
    pub fn load_time(&self) -> Duration {
        Duration::from_micros(u64::from(self.load_micros))
    }

    /// The entry, stale from `at` on (a soft purge), unless it was so already.
    pub(crate) fn soften(mut self, at: Instant) -> Self {
        let at = at.max(self.stored_at);
        if self.softened.is_none_or(|before| at < before) {
            self.softened = Some(at);
        }
        self
    }

    /// Where the entry is in its life at `now`.
    pub fn freshness(&self, now: Instant) -> Freshness {
        if now < self.fresh_until && self.softened.is_none_or(|at| now < at) {
            Freshness::Fresh
        } else if now < self.stale_until {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Takes the value out.
    pub fn into_value(self) -> V {
        self.value
    }

    /// When the value was stored.
    pub fn stored_at(&self) -> Instant {
        self.stored_at
    }

    /// Until when the value is fresh.
    pub fn fresh_until(&self) -> Instant {
        self.fresh_until
    }

    /// Until when the value may be served stale; after it the entry is expired.
    pub fn stale_until(&self) -> Instant {
        self.stale_until
    }

    /// Its tags, as its loader gave them ([`Loaded::tag`](crate::Loaded::tag)).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tagged.iter().flat_map(|t| t.tags.iter().map(|t| &**t))
    }

    /// When a soft purge ([`Cache::soft_invalidate`](crate::Cache::soft_invalidate) and
    /// its kin) made it stale, if one did: it is stale from then on, whatever its own
    /// `fresh_until`. For callers that judge freshness themselves (an HTTP cache).
    pub fn softened_at(&self) -> Option<Instant> {
        self.softened
    }

    /// How long ago the value was stored.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_fresh_then_stale_then_expired() {
        let t0 = Instant::now();
        let e = Entry::new((), t0, Duration::from_secs(10), Duration::from_secs(30));
        assert_eq!(e.freshness(t0), Freshness::Fresh);
        assert_eq!(e.freshness(t0 + Duration::from_secs(10)), Freshness::Stale);
        assert_eq!(e.freshness(t0 + Duration::from_secs(29)), Freshness::Stale);
        assert_eq!(
            e.freshness(t0 + Duration::from_secs(30)),
            Freshness::Expired
        );
    }

    #[test]
    fn fresh_for_longer_than_ttl_is_capped_at_ttl() {
        let t0 = Instant::now();
        let e = Entry::new((), t0, Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(e.fresh_until, e.stale_until);
        assert_eq!(e.freshness(t0 + Duration::from_secs(5)), Freshness::Expired);
    }
}
