//! The disk tier's files, and everything done to them: reading and checking an entry,
//! writing one (whole, through a temporary file renamed into place), removing, purging,
//! and settling each file the walk (`walk.rs`) reads. The calls here block: the tier
//! runs them on Tokio's blocking threads.
//!
//! What the directory holds and the index say the same thing: every change to the
//! directory's object files (a rename into place, a removal) is made holding the lock
//! on the index, and reads open a file without it (a file replaced or removed while it
//! is read is read whole, as it was).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use super::blob::{CHUNK_READS, HeldFile};
use super::health::Health;
use super::index::Index;
use super::layout::{self, Layout, LayoutError};
use super::metrics::DiskMetrics;
use super::open::{self, Opened, Payload, READ_WHOLE};
use super::purge::{Ledger, Purges, Scope};
use super::record::{self, HEADER, Head, RecordError, Times};
use super::tags::{TagMarks, TagVerdict, write_down};
use crate::stats::DiskStats;

/// The longest key a file holds.
pub(crate) const MAX_KEY: usize = 64 * 1024;

/// One disk tier's directory, index and state.
#[derive(Debug)]
pub(crate) struct Disk {
    layout: Layout,
    inner: Mutex<Inner>,
    pub(crate) health: Health,
    pub(crate) metrics: DiskMetrics,
    /// While the walk at start runs, a key missing from the index may still have a file.
    recovering: AtomicBool,
    max_entry_bytes: u64,
    /// Chunk reads of long files running at once ([`CHUNK_READS`]).
    pub(super) chunk_reads: Arc<Semaphore>,
    /// One walk at a time.
    walking: Arc<Mutex<()>>,
    /// Held (locked) for as long as the tier is open: one process per directory.
    _lock: File,
}

#[derive(Debug)]
struct Inner {
    index: Index,
    ledger: Ledger,
    purges: Purges,
    tag_marks: TagMarks,
    /// Long files whose payload was handed out in them (streamed, or read back as a
    /// [`FilePayload`](super::FilePayload)): a value may hold such a file open. When
    /// the tier lets go of one (evicts, replaces or removes it), it is marked, so that
    /// the value counts as out of date and is dropped, freeing the file's space.
    held: HashMap<u64, Weak<HeldFile>>,
}

/// An entry read from disk and checked.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) head: Head,
    pub(crate) tags: Vec<Box<str>>,
    /// When a soft purge of one of its tags made it stale (Unix ms).
    pub(crate) softened_ms: Option<u64>,
    pub(crate) payload: Payload,
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Disk {
    /// Opens the directory `root` for a tier of at most `max_bytes`; until the walk at
    /// start (`walk.rs`) has indexed it, reads look in the files themselves.
    pub(crate) fn open(
        root: &Path,
        max_bytes: u64,
        max_entry_bytes: u64,
        cache: &str,
    ) -> Result<Arc<Self>, LayoutError> {
        let layout = Layout::open(root)?;
        let lock_path = root.join("lock");
        let io = |source| LayoutError::Io {
            path: lock_path.clone(),
            source,
        };
        if !lock_path.exists() {
            File::create(&lock_path).map_err(io)?;
        }
        // Held open for reading only, so that the file system can still be made
        // read-only under a running tier.
        let lock = File::open(&lock_path).map_err(io)?;
        // A tier just dropped in this process may still be ending a walk (it lets go
        // after the file it is on): wait for it a moment.
        let mut tries = 0;
        while lock.try_lock().is_err() {
            tries += 1;
            if tries > 50 {
                return Err(LayoutError::InUse(root.to_owned()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let purges = Purges::load(&layout).map_err(io)?;
        let tag_marks = TagMarks::load(&layout).map_err(io)?;
        let disk = Arc::new(Disk {
            layout,
            inner: Mutex::new(Inner {
                index: Index::new(max_bytes),
                ledger: Ledger::default(),
                purges,
                tag_marks,
                held: HashMap::new(),
            }),
            health: Health::default(),
            metrics: DiskMetrics::new(cache),
            recovering: AtomicBool::new(true),
            max_entry_bytes,
            chunk_reads: Arc::new(Semaphore::new(CHUNK_READS)),
            walking: Arc::default(),
            _lock: lock,
        });
        Ok(disk)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `key`'s entry: `None` if there is none, or none that passes its check (a
    /// corrupt file is counted and removed), or it has expired or was purged (removed).
    pub(crate) fn read(&self, key: &str) -> io::Result<Option<Checked>> {
        let hash = self.layout.hash(key);
        // A file indexed as whole is not checksummed again; one left by an earlier
        // process is, on its first read (and one not indexed yet, during the walk).
        let verify = match self.lock().index.checked(hash) {
            Some(checked) => !checked,
            None if self.recovering.load(Ordering::Acquire) => true,
            None => return Ok(None),
        };
        let path = self.layout.object(hash);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut inner = self.lock();
                inner.index.remove(hash);
                release(&mut inner, hash);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len > self.max_entry_bytes {
            let error = format!("larger than max_entry_bytes ({})", self.max_entry_bytes);
            self.corrupt(hash, &error)?;
            return Ok(None);
        }
        let opened = if len <= READ_WHOLE {
            open::read_whole(file, len, key, verify)?
        } else {
            open::open_long((file, &self.chunk_reads), len, key, verify)?
        };
        self.settle(hash, key, opened)
    }

    /// Settles what opening `key`'s file (of `hash`) found: a corrupt file counted and
    /// removed, an expired or purged one removed, a good one indexed and counted read.
    fn settle(&self, hash: u64, key: &str, opened: Opened) -> io::Result<Option<Checked>> {
        let (head, tags, payload) = match opened {
            Opened::Checked(head, tags, payload) => (head, tags, payload),
            Opened::OtherKey => return Ok(None),
            Opened::Corrupt(error) => {
                self.corrupt(hash, &error)?;
                return Ok(None);
            }
        };
        let mut inner = self.lock();
        let stored_ms = head.times.stored_ms;
        let verdict = inner.tag_marks.judge(&tags, stored_ms);
        if head.times.stale_ms <= now_ms()
            || inner.purges.covers(key.as_bytes(), stored_ms)
            || verdict == TagVerdict::Purged
        {
            self.remove_locked(&mut inner, hash)?;
            return Ok(None);
        }
        let softened_ms = match verdict {
            TagVerdict::Softened(ms) => Some(ms),
            _ => None,
        };
        if !inner.index.contains(hash) {
            let victims = inner.index.recovered(hash, head.record_len());
            self.evict_locked(&mut inner, victims)?;
        }
        inner.index.read(hash);
        if let Payload::File(file) = &payload {
            inner.held.insert(hash, Arc::downgrade(file.held()));
        }
        Ok(Some(Checked {
            head,
            tags,
            softened_ms,
            payload,
        }))
    }

    /// The number of the latest invalidation, for a write to start from.
    pub(crate) fn since(&self) -> u64 {
        self.lock().ledger.last()
    }

    /// Writes `key`'s entry carrying `tags`, unless it is too large or an
    /// invalidation after `since` covers it; evicts what the bound asks.
    pub(crate) fn write(
        &self,
        (key, tags): (&str, &[Box<str>]),
        codec: u8,
        times: Times,
        payload: &[u8],
        since: u64,
    ) -> io::Result<()> {
        let section = record::tags_section(tags.iter().map(|t| &**t));
        let Some(section) = section.filter(|_| key.len() <= MAX_KEY) else {
            self.metrics.writes_skipped.add(1);
            return Ok(());
        };
        let len = (HEADER + key.len() + section.len()) as u64 + payload.len() as u64;
        if len > self.max_entry_bytes || !self.lock().index.fits(len) {
            self.metrics.writes_skipped.add(1);
            return Ok(());
        }
        let temp = self.layout.temp();
        let header = record::header(codec, times, (key, &section), payload);
        let written = File::create(&temp).and_then(|mut file| {
            file.write_all(&header)?;
            file.write_all(key.as_bytes())?;
            file.write_all(&section)?;
            file.write_all(payload)
        });
        if let Err(e) = written {
            let _ = layout::remove(&temp);
            return Err(e);
        }
        let hash = self.layout.hash(key);
        let mut inner = self.lock();
        if inner.ledger.covers_since(since, (hash, key), tags) {
            drop(inner);
            return layout::remove(&temp);
        }
        let path = self.layout.object(hash);
        if let Err(e) = rename_into(&temp, &path) {
            drop(inner);
            let _ = layout::remove(&temp);
            return Err(e);
        }
        release(&mut inner, hash);
        let victims = inner.index.insert(hash, len);
        self.evict_locked(&mut inner, victims)?;
        self.metrics.writes.add(1);
        self.metrics.write_bytes.add(len);
        Ok(())
    }

    /// Starts writing `key`'s entry as a stream (see `stream.rs`): a file of `len`
    /// bytes under a temporary name, its header left blank for now, and room kept for
    /// it in the bound. `None` (counted as a skipped write) if it is too large.
    pub(crate) fn begin_stream(&self, key: &str, len: u64) -> io::Result<Option<(PathBuf, File)>> {
        if key.len() > MAX_KEY || len > self.max_entry_bytes {
            self.metrics.writes_skipped.add(1);
            return Ok(None);
        }
        {
            // Refused when it would not fit in half the bound with the others.
            let mut inner = self.lock();
            let Some(victims) = inner.index.reserve(len) else {
                self.metrics.writes_skipped.add(1);
                return Ok(None);
            };
            if let Err(e) = self.evict_locked(&mut inner, victims) {
                inner.index.unreserve(len);
                return Err(e);
            }
        }
        let temp = self.layout.temp();
        let created = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp);
        match created {
            Ok(file) => Ok(Some((temp, file))),
            Err(e) => {
                self.lock().index.unreserve(len);
                Err(e)
            }
        }
    }

    /// Puts a streamed entry's finished file (`len` bytes, under `temp`) in place, unless
    /// an invalidation after `since` covers its key or one of its `tags`. Returns whether it landed; the
    /// room kept for it is given back, and the temporary file gone, either way.
    pub(crate) fn commit_stream(
        &self,
        (key, tags): (&str, &[Box<str>]),
        (temp, file): (&Path, &Arc<HeldFile>),
        len: u64,
        since: u64,
    ) -> io::Result<bool> {
        let hash = self.layout.hash(key);
        let mut inner = self.lock();
        inner.index.unreserve(len);
        if inner.ledger.covers_since(since, (hash, key), tags) {
            drop(inner);
            layout::remove(temp)?;
            return Ok(false);
        }
        if let Err(e) = rename_into(temp, &self.layout.object(hash)) {
            drop(inner);
            let _ = layout::remove(temp);
            return Err(e);
        }
        release(&mut inner, hash);
        inner.held.insert(hash, Arc::downgrade(file));
        let victims = inner.index.insert(hash, len);
        self.metrics.writes.add(1);
        self.metrics.write_bytes.add(len);
        // The entry has landed; a victim that cannot be removed is the tier's fault,
        // not the entry's.
        if let Err(error) = self.evict_locked(&mut inner, victims) {
            drop(inner);
            fault(self, "evicting", &error);
        }
        Ok(true)
    }

    /// Drops a streamed entry's unfinished file, and the room kept for it.
    pub(crate) fn abandon_stream(&self, temp: &Path, len: u64) -> io::Result<()> {
        self.lock().index.unreserve(len);
        self.metrics.writes_skipped.add(1);
        layout::remove(temp)
    }

    /// Removes `key`'s entry; a write that started before this does not land.
    pub(crate) fn remove(&self, key: &str) -> io::Result<()> {
        let hash = self.layout.hash(key);
        let mut inner = self.lock();
        inner.ledger.record(Scope::Key(hash));
        let removed = self.remove_locked(&mut inner, hash);
        if removed.is_err() {
            // The file stays (a read-only directory, say): a mark in memory keeps it
            // from being served once the tier is back. It covers the key as a prefix,
            // so it may cover a few more keys: misses, never a stale answer.
            let _ = inner.purges.add(&self.layout, now_ms(), key);
        }
        removed
    }

    /// Purges the entries whose keys start with `prefix` (all, when empty) for reads at
    /// once; a walk (`walk.rs`) then removes their files.
    pub(crate) fn purge(&self, prefix: &str) -> io::Result<()> {
        let mut inner = self.lock();
        inner.ledger.record(Scope::Prefix(prefix.into()));
        inner.purges.add(&self.layout, now_ms(), prefix)
    }

    /// Purges the entries carrying `tag` (softly: stale from now) for reads at once,
    /// and for writes that began before; written down, so it outlasts a restart.
    ///
    /// Counted at once, then written down without holding the lock every read needs.
    pub(crate) fn purge_tag(&self, tag: &str, soft: bool) -> io::Result<()> {
        let ms = now_ms();
        {
            let mut inner = self.lock();
            inner.ledger.record(Scope::Tag(tag.into()));
            inner.tag_marks.note(tag, ms, soft);
        }
        write_down(&self.layout, ms, tag, soft)
    }

    /// Checks that the directory works again (after a fault).
    pub(crate) fn probe(&self) -> io::Result<()> {
        self.layout.probe()
    }

    /// The tier's counters.
    pub(crate) fn stats(&self) -> DiskStats {
        let (entries, bytes) = {
            let inner = self.lock();
            (inner.index.len() as u64, inner.index.bytes())
        };
        self.metrics.size(entries as usize, bytes);
        self.metrics.snapshot(entries, bytes, self.health.is_off())
    }

    fn remove_locked(&self, inner: &mut Inner, hash: u64) -> io::Result<()> {
        inner.index.remove(hash);
        release(inner, hash);
        layout::remove(&self.layout.object(hash))
    }

    /// Removes the files the bound evicted (marking those values hold open).
    fn evict_locked(&self, inner: &mut Inner, victims: Vec<u64>) -> io::Result<()> {
        self.metrics.evictions.add(victims.len() as u64);
        for hash in victims {
            release(inner, hash);
            layout::remove(&self.layout.object(hash))?;
        }
        self.metrics.size(inner.index.len(), inner.index.bytes());
        Ok(())
    }

    /// Removes `key`'s file, whose payload its codec could not decode.
    pub(crate) fn undecodable(&self, key: &str, error: &dyn std::fmt::Display) -> io::Result<()> {
        self.corrupt(self.layout.hash(key), error)
    }

    /// Counts and removes the file of `hash`, which failed its check.
    pub(super) fn corrupt(&self, hash: u64, error: &dyn std::fmt::Display) -> io::Result<()> {
        let path = self.layout.object(hash);
        self.metrics.corrupt.add(1);
        tracing::warn!(path = %path.display(), %error, "corrupt file in the disk tier: removed, read as a miss");
        let mut inner = self.lock();
        self.remove_locked(&mut inner, hash)
    }

    /// Settles one object file a walk read (its header, key and length): removes it if
    /// it is corrupt, expired or purged; indexes it if `recovery` and it is none of those.
    /// Returns whether it was indexed.
    pub(super) fn visit(
        &self,
        hash: u64,
        (head, key, len): (Head, Vec<u8>, u64),
        recovery: bool,
        now: u64,
    ) -> io::Result<bool> {
        if len != head.record_len() {
            let error = RecordError::Length {
                found: len,
                promised: head.record_len(),
            };
            self.corrupt(hash, &error)?;
            return Ok(false);
        }
        let mut inner = self.lock();
        if head.times.stale_ms <= now || inner.purges.covers(&key, head.times.stored_ms) {
            self.remove_locked(&mut inner, hash)?;
            return Ok(false);
        }
        if !recovery {
            return Ok(false);
        }
        let victims = inner.index.recovered(hash, len);
        self.evict_locked(&mut inner, victims)?;
        Ok(true)
    }

    /// The directory.
    pub(super) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The lock that keeps walks one at a time.
    pub(super) fn walking(&self) -> Arc<Mutex<()>> {
        Arc::clone(&self.walking)
    }

    /// The walk at start indexed `indexed` files in `took`: the index is whole.
    pub(super) fn indexed(&self, indexed: u64, took: std::time::Duration) {
        self.metrics.recovered(indexed, took);
        self.recovering.store(false, Ordering::Release);
        tracing::info!(entries = indexed, ?took, "disk tier indexed");
    }

    /// A walk that started at `started_ms` has ended: the purges made before it are
    /// swept.
    pub(super) fn swept(&self, started_ms: u64) -> io::Result<()> {
        self.lock().purges.swept(&self.layout, started_ms)
    }
}

/// The tier lets go of `hash`'s file: a value that holds it open is told so.
fn release(inner: &mut Inner, hash: u64) {
    if let Some(held) = inner.held.remove(&hash).and_then(|held| held.upgrade()) {
        held.release();
    }
}

/// Renames a finished file into place, making its folder if need be.
fn rename_into(temp: &Path, path: &Path) -> io::Result<()> {
    match fs::rename(temp, path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(folder) = path.parent() {
                fs::create_dir_all(folder)?;
            }
            fs::rename(temp, path)
        }
        other => other,
    }
}

/// Turns the tier off after an I/O error.
pub(crate) fn fault(disk: &Disk, doing: &str, error: &io::Error) {
    if disk.health.fault(doing, error) {
        disk.metrics.faults.add(1);
        disk.metrics.off(true);
    }
}
