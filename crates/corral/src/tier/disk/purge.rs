//! Invalidations on disk. A key's own is done at once (its file removed); a prefix's
//! (or everything's) cannot be, as file names are hashes: it is written down in
//! `purges` and every read checks it until a sweep through the files has removed what
//! it covers, so it holds across a crash or restart too. The ledger of recent
//! invalidations lets a write that started before one of them know it must not land.

use std::collections::VecDeque;
use std::io;

use super::layout::Layout;

/// How many recent invalidations the ledger remembers; a write older than all of them
/// is dropped (it may have been covered).
const LEDGER_LEN: usize = 4096;

/// What an invalidation covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The key with this hash.
    Key(u64),
    /// Keys that start with this (every key, when empty).
    Prefix(Box<str>),
    /// Entries carrying this tag.
    Tag(Box<str>),
}

/// The recent invalidations, numbered.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    last: u64,
    recent: VecDeque<(u64, Scope)>,
}

impl Ledger {
    /// The number of the latest invalidation: a write notes it when it starts.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Notes an invalidation.
    pub(crate) fn record(&mut self, scope: Scope) {
        self.last += 1;
        self.recent.push_back((self.last, scope));
        if self.recent.len() > LEDGER_LEN {
            self.recent.pop_front();
        }
    }

    /// Whether an invalidation after number `since` covers the entry of the key
    /// (`hash`, `key`) carrying `tags`.
    pub(crate) fn covers_since(
        &self,
        since: u64,
        (hash, key): (u64, &str),
        tags: &[Box<str>],
    ) -> bool {
        if since == self.last {
            return false;
        }
        let forgotten = self
            .recent
            .front()
            .is_none_or(|(first, _)| *first > since + 1);
        forgotten
            || self
                .recent
                .iter()
                .rev()
                .take_while(|(n, _)| *n > since)
                .any(|(_, scope)| match scope {
                    Scope::Key(h) => *h == hash,
                    Scope::Prefix(prefix) => key.starts_with(&**prefix),
                    Scope::Tag(tag) => tags.contains(tag),
                })
    }
}

/// The prefix purges not yet swept, as written in `purges`.
#[derive(Debug, Default)]
pub(crate) struct Purges {
    marks: Vec<(u64, Box<str>)>,
}

impl Purges {
    /// Reads `purges` (none if it is missing; a line that does not parse is dropped).
    pub(crate) fn load(layout: &Layout) -> io::Result<Self> {
        let text = match std::fs::read_to_string(layout.root().join("purges")) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let marks = text
            .lines()
            .filter_map(|line| {
                let (ms, prefix) = line.split_once(' ')?;
                Some((ms.parse().ok()?, unescape(prefix)?.into_boxed_str()))
            })
            .collect();
        Ok(Purges { marks })
    }

    fn save(&self, layout: &Layout) -> io::Result<()> {
        let text: String = self
            .marks
            .iter()
            .map(|(ms, prefix)| format!("{ms} {}\n", prefix.escape_default()))
            .collect();
        layout.write_whole(&layout.root().join("purges"), text.as_bytes())
    }

    /// Adds a purge of `prefix` made at `ms`, and writes the list down.
    pub(crate) fn add(&mut self, layout: &Layout, ms: u64, prefix: &str) -> io::Result<()> {
        self.marks.push((ms, prefix.into()));
        self.save(layout)
    }

    /// Drops the purges made at or before `ms` (a sweep that started after them has
    /// removed what they cover), and writes the list down.
    pub(crate) fn swept(&mut self, layout: &Layout, ms: u64) -> io::Result<()> {
        let before = self.marks.len();
        self.marks.retain(|(at, _)| *at > ms);
        if self.marks.len() == before {
            return Ok(());
        }
        self.save(layout)
    }

    /// Whether a purge covers an entry of `key` stored at `stored_ms`.
    pub(crate) fn covers(&self, key: &[u8], stored_ms: u64) -> bool {
        self.marks
            .iter()
            .any(|(ms, prefix)| stored_ms <= *ms && key.starts_with(prefix.as_bytes()))
    }
}

/// Reads back a prefix written with `escape_default`.
pub(crate) fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_learns_of_the_invalidations_since_it_started() {
        let mut ledger = Ledger::default();
        let since = ledger.last();
        let none: &[Box<str>] = &[];
        assert!(!ledger.covers_since(since, (1, "/a"), none));
        ledger.record(Scope::Key(2));
        assert!(!ledger.covers_since(since, (1, "/a"), none));
        assert!(ledger.covers_since(since, (2, "/b"), none));
        ledger.record(Scope::Prefix("/docs/".into()));
        assert!(ledger.covers_since(since, (1, "/docs/x"), none));
        assert!(!ledger.covers_since(ledger.last(), (1, "/docs/x"), none));
        let tagged = ledger.last();
        ledger.record(Scope::Tag("t".into()));
        assert!(ledger.covers_since(tagged, (1, "/a"), &["t".into()]));
        assert!(!ledger.covers_since(tagged, (1, "/a"), &["u".into()]));
        for n in 0..LEDGER_LEN as u64 {
            ledger.record(Scope::Key(1000 + n));
        }
        assert!(
            ledger.covers_since(since, (1, "/a"), none),
            "forgotten: assume covered"
        );
    }

    #[test]
    fn purges_survive_a_reload_even_with_odd_prefixes() {
        let dir = std::env::temp_dir().join(format!("corral-purges-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::open(&dir).unwrap();
        let mut purges = Purges::default();
        purges.add(&layout, 10, "/a b\n\\é").unwrap();
        purges.add(&layout, 20, "").unwrap();
        let loaded = Purges::load(&layout).unwrap();
        assert_eq!(loaded.marks, purges.marks);
        assert!(loaded.covers("/a b\n\\é/x".as_bytes(), 10));
        assert!(loaded.covers(b"/anything", 20));
        assert!(!loaded.covers(b"/anything", 21), "stored after the purge");
        purges.swept(&layout, 10).unwrap();
        assert_eq!(Purges::load(&layout).unwrap().marks.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
