//! Tag purges on disk: for each purged tag the time (Unix ms) of its latest purge, hard
//! and soft, kept in `tags` (one `unix-ms h|s tag` a line, appended and synced at each
//! purge, compacted when the tier opens), so they hold across a crash or a restart. A
//! record carrying a tag and stored at or before the tag's purge is purged (or, for a
//! soft purge, stale from then): a purge is one line however many files carry the tag,
//! and there is no list of a tag's files to keep in step with them. A write that began
//! before a purge and ends after it is stopped by the ledger (`purge.rs`).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};

use super::layout::Layout;
use super::purge::unescape;

const FILE: &str = "tags";

/// What the tag purges say of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagVerdict {
    Intact,
    /// Stale from this time (Unix ms).
    Softened(u64),
    Purged,
}

/// The latest purge of each purged tag.
#[derive(Debug, Default)]
pub(crate) struct TagMarks {
    /// Tag: (hard, soft) purge times, 0 for none.
    marks: HashMap<Box<str>, (u64, u64)>,
}

impl TagMarks {
    /// Reads `tags` (none if it is missing; a line that does not parse is dropped), and
    /// writes it back compacted if it holds more lines than marks.
    pub(crate) fn load(layout: &Layout) -> io::Result<Self> {
        let text = match std::fs::read_to_string(layout.root().join(FILE)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TagMarks::default()),
            Err(e) => return Err(e),
        };
        let mut marks = TagMarks::default();
        let mut lines = 0;
        for line in text.lines() {
            lines += 1;
            let mut parts = line.splitn(3, ' ');
            let (Some(ms), Some(kind), Some(tag)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(ms), Some(tag)) = (ms.parse(), unescape(tag)) else {
                continue;
            };
            marks.note(&tag, ms, kind == "s");
        }
        if lines > 2 * marks.marks.len() + 64 {
            let text: String = marks
                .marks
                .iter()
                .flat_map(|(tag, &(hard, soft))| {
                    [(hard, "h"), (soft, "s")]
                        .into_iter()
                        .filter(|(ms, _)| *ms > 0)
                        .map(move |(ms, kind)| line(ms, kind, tag))
                })
                .collect();
            layout.write_whole(&layout.root().join(FILE), text.as_bytes())?;
        }
        Ok(marks)
    }

    /// Counts a purge of `tag` (softly, or not) at `ms`, from now on.
    pub(crate) fn note(&mut self, tag: &str, ms: u64, soft: bool) {
        let mark = self.marks.entry(tag.into()).or_default();
        let at = if soft { &mut mark.1 } else { &mut mark.0 };
        *at = (*at).max(ms);
    }

    /// Purges `tag` (softly, or not) at `ms`, written down before it counts.
    #[cfg(test)]
    fn add(&mut self, layout: &Layout, ms: u64, tag: &str, soft: bool) -> io::Result<()> {
        write_down(layout, ms, tag, soft)?;
        self.note(tag, ms, soft);
        Ok(())
    }

    /// What the purges say of a record carrying `tags` stored at `stored_ms`.
    pub(crate) fn judge(&self, tags: &[Box<str>], stored_ms: u64) -> TagVerdict {
        let mut verdict = TagVerdict::Intact;
        for tag in tags {
            let Some(&(hard, soft)) = self.marks.get(tag) else {
                continue;
            };
            if stored_ms <= hard {
                return TagVerdict::Purged;
            }
            if stored_ms <= soft {
                verdict = match verdict {
                    TagVerdict::Softened(at) if at <= soft => verdict,
                    _ => TagVerdict::Softened(soft),
                };
            }
        }
        verdict
    }
}

/// Appends a purge of `tag` at `ms` to `tags`, and syncs it: what is written down
/// outlasts a crash. Appends are whole lines, so purges made at once do not mix.
pub(crate) fn write_down(layout: &Layout, ms: u64, tag: &str, soft: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.root().join(FILE))?;
    file.write_all(line(ms, if soft { "s" } else { "h" }, tag).as_bytes())?;
    file.sync_data()
}

fn line(ms: u64, kind: &str, tag: &str) -> String {
    format!("{ms} {kind} {}\n", tag.escape_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Box<str>> {
        names.iter().map(|t| Box::from(*t)).collect()
    }

    #[test]
    fn tag_purges_cover_what_was_stored_before_them_and_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!("corral-disk-tags-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::open(&dir).unwrap();
        let mut marks = TagMarks::default();
        marks.add(&layout, 100, "a b\n", false).unwrap();
        marks.add(&layout, 200, "soft", true).unwrap();
        marks.add(&layout, 150, "a b\n", false).unwrap();
        for marks in [&marks, &TagMarks::load(&layout).unwrap()] {
            assert_eq!(marks.judge(&tags(&["a b\n"]), 150), TagVerdict::Purged);
            assert_eq!(marks.judge(&tags(&["a b\n"]), 151), TagVerdict::Intact);
            assert_eq!(
                marks.judge(&tags(&["x", "soft"]), 50),
                TagVerdict::Softened(200)
            );
            assert_eq!(
                marks.judge(&tags(&["soft", "a b\n"]), 120),
                TagVerdict::Purged
            );
            assert_eq!(marks.judge(&tags(&[]), 1), TagVerdict::Intact);
        }
        for n in 0..100 {
            marks.add(&layout, 300 + n, "again", false).unwrap();
        }
        let compacted = TagMarks::load(&layout).unwrap();
        assert_eq!(compacted.judge(&tags(&["again"]), 399), TagVerdict::Purged);
        let text = std::fs::read_to_string(layout.root().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
