//! Purges by tag without a tag index: a clock that ticks once per tag purge, and for
//! each purged tag the tick of its latest purge (hard, and soft). An entry notes the
//! tick its load began at; one of its tags purged at a later tick makes it gone (or,
//! for a soft purge, stale). A purge is one map write however many entries carry the
//! tag, covers every variant and every copy, and a load that began before it can never
//! store a result that survives it: nothing to keep in step, nothing to corrupt.
//!
//! The ticks are this process's own: each tier below memory that keeps tags has its own
//! clock for its own entries (the Redis tier one for the whole cluster), and an entry
//! copied up from a tier notes the tick its load here began at.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::time::Instant;

/// An entry's tags, and the tick at which its load began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tagged {
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) tick: u64,
}

impl Tagged {
    /// `tags` at `tick`; `None` when there are none.
    pub(crate) fn new(tags: &[Box<str>], tick: u64) -> Option<Arc<Tagged>> {
        (!tags.is_empty()).then(|| {
            Arc::new(Tagged {
                tags: tags.into(),
                tick,
            })
        })
    }

    /// The bytes the tags take, as the memory bound counts them.
    pub(crate) fn weight(&self) -> usize {
        std::mem::size_of::<Tagged>()
            + self
                .tags
                .iter()
                .map(|t| t.len() + std::mem::size_of::<Box<str>>())
                .sum::<usize>()
    }
}

/// What the purges say of an entry's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No purge since its load began.
    Intact,
    /// Soft-purged at this instant: stale from then on.
    Softened(Instant),
    /// Purged: as good as gone.
    Purged,
}

/// The latest purges of one tag.
#[derive(Debug, Clone, Copy)]
struct Marks {
    hard: u64,
    soft: u64,
    soft_at: Instant,
    /// When the latest of them was made.
    at: Instant,
}

/// Marks are pruned after every this many purges.
const PRUNE_EVERY: u64 = 1024;

/// The clock and the latest purge of every tag purged so far.
#[derive(Debug)]
pub(crate) struct TagPurges {
    clock: AtomicU64,
    marks: RwLock<HashMap<Box<str>, Marks, ahash::RandomState>>,
    /// The latest tick of a mark forgotten: a tagged entry whose load began before it
    /// (one inserted with an old mark, say) is taken as purged.
    forgotten: AtomicU64,
}

impl Default for TagPurges {
    fn default() -> Self {
        TagPurges {
            clock: AtomicU64::new(0),
            marks: RwLock::new(HashMap::default()),
            forgotten: AtomicU64::new(0),
        }
    }
}

impl TagPurges {
    /// The tick now: a load notes it as it begins.
    pub(crate) fn now(&self) -> u64 {
        self.clock.load(Ordering::Acquire)
    }

    /// Purges `tag` (softly: its entries become stale at `now`), at a new tick. Now
    /// and then, forgets the marks made more than `outlived` ago: every entry whose
    /// load began before them is gone by then.
    pub(crate) fn purge(&self, tag: &str, soft: bool, outlived: std::time::Duration) {
        let mut marks = self.marks.write().unwrap_or_else(PoisonError::into_inner);
        // Ticked under the lock, so that whoever sees the new tick sees its mark too.
        let tick = self.clock.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Instant::now();
        let mark = marks.entry(tag.into()).or_insert(Marks {
            hard: 0,
            soft: 0,
            soft_at: now,
            at: now,
        });
        mark.at = now;
        if soft {
            mark.soft = tick;
            mark.soft_at = now;
        } else {
            mark.hard = tick;
        }
        if tick.is_multiple_of(PRUNE_EVERY)
            && let Some(before) = now.checked_sub(outlived)
        {
            let mut forgotten = 0;
            marks.retain(|_, mark| {
                let keep = mark.at >= before;
                if !keep {
                    forgotten = forgotten.max(mark.hard).max(mark.soft);
                }
                keep
            });
            self.forgotten.fetch_max(forgotten, Ordering::AcqRel);
        }
    }

    /// How many tags have marks.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.marks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// What the purges made since its load began say of an entry tagged `tagged`.
    #[inline]
    pub(crate) fn judge(&self, tagged: &Tagged) -> Verdict {
        if self.now() <= tagged.tick {
            return Verdict::Intact;
        }
        if tagged.tick < self.forgotten.load(Ordering::Acquire) {
            return Verdict::Purged;
        }
        let marks = self.marks.read().unwrap_or_else(PoisonError::into_inner);
        let mut verdict = Verdict::Intact;
        for tag in &tagged.tags {
            let Some(mark) = marks.get(tag) else {
                continue;
            };
            if mark.hard > tagged.tick {
                return Verdict::Purged;
            }
            if mark.soft > tagged.tick {
                verdict = match verdict {
                    Verdict::Softened(at) if at <= mark.soft_at => verdict,
                    _ => Verdict::Softened(mark.soft_at),
                };
            }
        }
        verdict
    }
}

/// The most tags an entry read back from a tier may carry (a tier's bytes are not
/// trusted: a record of many tiny tags is refused, not read into a huge list).
const MOST_TAGS_READ: usize = 4096;

/// Tags as the tiers below memory write them: each its length (u16, big-endian) and
/// its UTF-8 bytes. `None` for what [`read_section`] would refuse: an empty tag, one
/// longer than 65 535 bytes, more than 4 096 tags.
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(crate) fn write_section<'a>(tags: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    let mut section = Vec::new();
    for (n, tag) in tags.enumerate() {
        if tag.is_empty() || n == MOST_TAGS_READ {
            return None;
        }
        let len = u16::try_from(tag.len()).ok()?;
        section.extend_from_slice(&len.to_be_bytes());
        section.extend_from_slice(tag.as_bytes());
    }
    Some(section)
}

/// The tags of a section [`write_section`] wrote; `None` for anything else (a length
/// past the end, an empty tag, bytes that are not UTF-8, too many tags).
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(crate) fn read_section(mut section: &[u8]) -> Option<Vec<Box<str>>> {
    let mut tags = Vec::new();
    while let [hi, lo, rest @ ..] = section {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let tag = rest.get(..len).filter(|tag| !tag.is_empty())?;
        if tags.len() == MOST_TAGS_READ {
            return None;
        }
        tags.push(Box::from(std::str::from_utf8(tag).ok()?));
        section = &rest[len..];
    }
    section.is_empty().then_some(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    #[test]
    fn a_tags_section_round_trips_and_anything_else_is_refused() {
        let tags = ["a", "é b", &"x".repeat(300)];
        let section = write_section(tags.into_iter()).unwrap();
        let read = read_section(&section).unwrap();
        assert_eq!(read.iter().map(|t| &**t).collect::<Vec<_>>(), tags);
        assert_eq!(
            write_section(["y".repeat(70_000).as_str()].into_iter()),
            None
        );
        assert_eq!(read_section(&[0, 0]), None, "an empty tag");
        assert_eq!(read_section(&[0, 5, b'a']), None, "past the end");
        assert_eq!(read_section(&[0, 1, 0xff]), None, "not UTF-8");
        assert_eq!(read_section(&[0]), None, "half a length");
        let many: Vec<u8> = std::iter::repeat_n([0, 1, b'a'], MOST_TAGS_READ + 1)
            .flatten()
            .collect();
        assert_eq!(read_section(&many), None, "too many");
        assert_eq!(read_section(&[]), Some(Vec::new()));
    }

    fn tagged(tags: &[&str], tick: u64) -> Tagged {
        Tagged {
            tags: tags.iter().map(|t| Box::from(*t)).collect(),
            tick,
        }
    }

    #[test]
    fn a_purge_covers_the_entries_loaded_before_it_and_no_later_ones() {
        let purges = TagPurges::default();
        let before = tagged(&["a", "b"], purges.now());
        let other = tagged(&["c"], purges.now());
        purges.purge("b", false, DAY);
        let after = tagged(&["b"], purges.now());
        assert_eq!(purges.judge(&before), Verdict::Purged);
        assert_eq!(purges.judge(&other), Verdict::Intact);
        assert_eq!(purges.judge(&after), Verdict::Intact);
    }

    #[tokio::test(start_paused = true)]
    async fn a_soft_purge_makes_an_entry_stale_from_its_instant_and_a_hard_one_wins() {
        let purges = TagPurges::default();
        let entry = tagged(&["a", "b"], purges.now());
        let at = Instant::now();
        purges.purge("a", true, DAY);
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        purges.purge("b", true, DAY);
        assert_eq!(purges.judge(&entry), Verdict::Softened(at), "the earlier");
        purges.purge("a", false, DAY);
        assert_eq!(purges.judge(&entry), Verdict::Purged);
    }

    #[tokio::test(start_paused = true)]
    async fn marks_older_than_any_entry_that_could_need_them_are_forgotten() {
        let purges = TagPurges::default();
        let old = tagged(&["t0"], purges.now());
        purges.purge("t0", false, DAY);
        tokio::time::advance(DAY * 2).await;
        for n in 1..PRUNE_EVERY {
            purges.purge(&format!("t{n}"), false, DAY);
        }
        assert_eq!(purges.len(), PRUNE_EVERY as usize - 1, "t0 forgotten");
        // An entry loaded before it (none lives that long, but one inserted with an
        // old mark might) is taken as purged; one loaded after it is judged as ever.
        assert_eq!(purges.judge(&old), Verdict::Purged);
        assert_eq!(purges.judge(&tagged(&["x"], purges.now())), Verdict::Intact);
    }
}
