//! Events between the servers sharing a Redis tier: a load finished (wake the waiters
//! here), a key was invalidated, the cache was cleared. Servers publish them on the
//! prefix's channel; each server's [subscriber](super::subscriber) hands them on. And
//! the waiters a `done` event wakes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// A random number naming a cache instance (or a lock token's owner).
pub(crate) fn instance_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(RandomState::new)
        .hash_one((COUNTER.fetch_add(1, Ordering::Relaxed), std::process::id()))
}

/// One event, as published: `<kind> <instance id in hex> <key>`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// A load of `key` finished (with a value, an error, or nothing to store).
    Done(&'a str),
    /// `key` was invalidated by another instance.
    Invalidated(&'a str),
    /// The keys starting with this prefix were invalidated by another instance.
    Purged(&'a str),
    /// The cache was cleared by another instance.
    Cleared,
    /// Another instance purged this tag (softly, or not).
    TagPurged { tag: &'a str, soft: bool },
    /// Another instance made `key`'s entry stale.
    Softened(&'a str),
    /// Another instance made the entries of the keys starting with this prefix stale.
    SoftPurged(&'a str),
}

impl<'a> Event<'a> {
    /// Parses a message; `None` for one this instance published itself, or one it does
    /// not understand.
    pub(crate) fn parse(message: &'a str, own_id: u64) -> Option<Event<'a>> {
        let mut parts = message.splitn(3, ' ');
        let (kind, origin, key) = (parts.next()?, parts.next()?, parts.next()?);
        let from_self = u64::from_str_radix(origin, 16).ok() == Some(own_id);
        match kind {
            "done" => Some(Event::Done(key)),
            "inval" if !from_self => Some(Event::Invalidated(key)),
            "purge" if !from_self => Some(Event::Purged(key)),
            "clear" if !from_self => Some(Event::Cleared),
            "tag" if !from_self => Some(Event::TagPurged {
                tag: key,
                soft: false,
            }),
            "softtag" if !from_self => Some(Event::TagPurged {
                tag: key,
                soft: true,
            }),
            "soft" if !from_self => Some(Event::Softened(key)),
            "softpurge" if !from_self => Some(Event::SoftPurged(key)),
            _ => None,
        }
    }
}

/// The local waiters of other servers' loads, by key.
#[derive(Default)]
pub(crate) struct Waiters {
    by_key: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// Arms a waiter for `key`, woken when a `done` event for it arrives. Arm before
    /// looking at Redis, so that no event slips between the look and the wait.
    pub(crate) fn arm(self: &Arc<Self>, key: &str) -> Armed {
        let signal = self.lock().entry(key.to_owned()).or_default().clone();
        let mut notified = Box::pin(signal.notified_owned());
        notified.as_mut().enable();
        Armed {
            waiters: Arc::clone(self),
            key: key.to_owned(),
            notified: Some(notified),
        }
    }

    /// Forgets `key`'s signal once its last waiter is gone.
    fn release(&self, key: &str) {
        let mut by_key = self.lock();
        if by_key.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            by_key.remove(key);
        }
    }

    pub(crate) fn wake(&self, key: &str) {
        if let Some(signal) = self.lock().get(key) {
            signal.notify_waiters();
        }
    }

    /// Wakes every waiter (the subscriber lost its connection: everyone looks again).
    pub(crate) fn wake_all(&self) {
        for signal in self.lock().values() {
            signal.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One armed waiter. Dropped (woken or not, or its load cancelled), it forgets its
/// key's signal if it was the last waiter of that key.
pub(crate) struct Armed {
    waiters: Arc<Waiters>,
    key: String,
    notified: Option<Pin<Box<OwnedNotified>>>,
}

impl Armed {
    /// Waits for a `done` event for the key, for at most `limit`.
    pub(crate) async fn wait(mut self, limit: Duration) {
        if let Some(notified) = self.notified.as_mut() {
            let _ = tokio::time::timeout(limit, notified.as_mut()).await;
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // Its own reference to the signal goes first, so the count can reach one.
        self.notified = None;
        self.waiters.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_own_invalidations_are_ignored() {
        assert_eq!(
            Event::parse("done ff my key", 1),
            Some(Event::Done("my key"))
        );
        assert_eq!(Event::parse("inval ff k", 1), Some(Event::Invalidated("k")));
        assert_eq!(Event::parse("inval ff k", 0xff), None);
        assert_eq!(Event::parse("clear 2 -", 1), Some(Event::Cleared));
        assert_eq!(
            Event::parse("purge 2 http://h/docs/", 1),
            Some(Event::Purged("http://h/docs/"))
        );
        assert_eq!(Event::parse("clear 1 -", 1), None);
        assert_eq!(
            Event::parse("softtag 2 product 7", 1),
            Some(Event::TagPurged {
                tag: "product 7",
                soft: true
            })
        );
        assert_eq!(Event::parse("soft 2 k", 1), Some(Event::Softened("k")));
        assert_eq!(
            Event::parse("softpurge 2 /d/", 1),
            Some(Event::SoftPurged("/d/"))
        );
        assert_eq!(Event::parse("garbage", 1), None);
        assert_eq!(Event::parse("what 1 k", 2), None);
    }

    #[tokio::test]
    async fn an_armed_waiter_is_woken_and_released() {
        let waiters = Arc::new(Waiters::default());
        let armed = waiters.arm("k");
        let other = waiters.arm("k");
        waiters.wake("k");
        let started = std::time::Instant::now();
        armed.wait(Duration::from_secs(60)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "woken, not timed out"
        );
        assert_eq!(
            waiters.lock().len(),
            1,
            "kept while another waiter is armed"
        );
        drop(other);
        assert!(waiters.lock().is_empty());
    }

    #[test]
    fn ids_differ() {
        assert_ne!(instance_id(), instance_id());
    }
}
