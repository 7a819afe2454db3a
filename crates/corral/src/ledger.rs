//! The recent invalidations of a cache's memory (of keys, prefixes, everything; soft or
//! not), numbered. A value fetched without a flight of its own (a load's related
//! entries, a value inserted with [`Cache::insert_since`](crate::Cache::insert_since))
//! notes the number when its fetch begins, and is not stored if an invalidation since
//! covers its key: nothing fetched before a purge survives it. Tag purges are judged by
//! the tag clock instead (`tags.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many recent invalidations are remembered; a value fetched before all of them
/// is taken as covered (it may have been).
const REMEMBERED: usize = 4096;

/// What an invalidation covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Key(Box<str>),
    /// Keys that start with this.
    Prefix(Box<str>),
    All,
}

impl Scope {
    fn covers(&self, key: &str) -> bool {
        match self {
            Scope::Key(k) => **k == *key,
            Scope::Prefix(prefix) => key.starts_with(&**prefix),
            Scope::All => true,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The number of the latest invalidation (read without the lock).
    last: AtomicU64,
    recent: Mutex<VecDeque<(u64, Scope)>>,
}

impl Ledger {
    /// The number of the latest invalidation: a fetch notes it when it begins.
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Notes an invalidation, before it is made.
    pub(crate) fn record(&self, scope: Scope) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let number = self.last.load(Ordering::Acquire) + 1;
        recent.push_back((number, scope));
        if recent.len() > REMEMBERED {
            recent.pop_front();
        }
        self.last.store(number, Ordering::Release);
    }

    /// Whether an invalidation after number `since` covers `key`.
    pub(crate) fn covers_since(&self, since: u64, key: &str) -> bool {
        if self.last() == since {
            return false;
        }
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let forgotten = recent.front().is_none_or(|(first, _)| *first > since + 1);
        forgotten
            || recent
                .iter()
                .rev()
                .take_while(|(n, _)| *n > since)
                .any(|(_, scope)| scope.covers(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_learns_of_the_invalidations_of_its_key_since_it_began() {
        let ledger = Ledger::default();
        let since = ledger.last();
        assert!(!ledger.covers_since(since, "/a"));
        ledger.record(Scope::Key("/b".into()));
        assert!(!ledger.covers_since(since, "/a"), "another key");
        assert!(ledger.covers_since(since, "/b"));
        ledger.record(Scope::Prefix("/docs/".into()));
        assert!(ledger.covers_since(since, "/docs/x"));
        assert!(
            !ledger.covers_since(ledger.last(), "/docs/x"),
            "began after"
        );
        let before_all = ledger.last();
        ledger.record(Scope::All);
        assert!(ledger.covers_since(before_all, "/anything"));
        for n in 0..REMEMBERED {
            ledger.record(Scope::Key(format!("/k/{n}").into()));
        }
        assert!(
            ledger.covers_since(since, "/a"),
            "forgotten: taken as covered"
        );
        assert!(!ledger.covers_since(ledger.last() - 1, "/a"));
    }
}
