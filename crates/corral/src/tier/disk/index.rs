//! What the disk tier knows of its files without reading them: which hashes have a
//! file, how much disk each takes, and which to evict, by S3-FIFO (Yang et al., SOSP
//! 2023): a new entry waits in a small queue (a tenth of the bytes) and is evicted from
//! there unless it was read again meanwhile, so a cache full of one-hit wonders keeps
//! its popular entries in the main queue; a ghost list of recently evicted hashes sends
//! an entry that comes back straight to the main queue.
//!
//! The index also remembers which files are known whole: those this process wrote
//! (renamed into place only once complete) and those it has read and checked. Only the
//! others, left by an earlier process, have their checksum computed on a read.
//!
//! An entry costs the index about 60 bytes (a slot in the map, a place in a queue and,
//! once evicted, a ghost); its key stays in its file.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// The disk a file takes is counted in blocks of this many bytes (a file system's
/// usual block), so that many small files cannot overrun the bound.
pub(crate) const BLOCK: u64 = 4096;

/// The disk a file of `len` bytes takes, in blocks (at least one).
pub(crate) fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1)
}

/// Hashes that are already keyed hashes (see `layout.rs`) are their own hash.
#[derive(Default, Clone, Copy)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;
type Set = HashSet<u64, BuildHasherDefault<Prehashed>>;

#[derive(Debug, Clone, Copy)]
struct Slot {
    blocks: u32,
    /// Reads since it was queued (or last given a second chance), up to 3.
    reads: u8,
    main: bool,
    /// Whether its file is known whole: this process wrote it, or read and checked it.
    checked: bool,
}

/// The entries on disk, their blocks, and the order they go in.
#[derive(Debug, Default)]
pub(crate) struct Index {
    slots: Map<Slot>,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghosts: VecDeque<u64>,
    ghost_set: Set,
    small_blocks: u64,
    blocks: u64,
    /// Blocks promised to files still being written (streamed), not yet indexed.
    reserved: u64,
    max_blocks: u64,
}

impl Index {
    /// An index bounded to `max_bytes` of disk.
    pub(crate) fn new(max_bytes: u64) -> Self {
        Index {
            max_blocks: (max_bytes / BLOCK).max(1),
            ..Index::default()
        }
    }

    /// Entries indexed.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Disk the indexed entries take, in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.blocks * BLOCK
    }

    /// Whether `hash` has a file.
    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.slots.contains_key(&hash)
    }

    /// Whether `hash` has a file known to be whole (see [`read`](Self::read)): `None`
    /// if it has none indexed.
    pub(crate) fn checked(&self, hash: u64) -> Option<bool> {
        self.slots.get(&hash).map(|slot| slot.checked)
    }

    /// Counts a read of `hash`'s entry, whose file the read found whole.
    pub(crate) fn read(&mut self, hash: u64) {
        if let Some(slot) = self.slots.get_mut(&hash) {
            slot.reads = (slot.reads + 1).min(3);
            slot.checked = true;
        }
    }

    /// Whether one file of `len` bytes can be kept at all.
    pub(crate) fn fits(&self, len: u64) -> bool {
        blocks(len) <= self.max_blocks
    }

    /// Keeps room for a file of `len` bytes that is still being written (see
    /// [`unreserve`](Self::unreserve)), and returns the hashes evicted to make it;
    /// `None` if the files being written would then take more than half the bound (so
    /// that streams never crowd out the whole tier, nor overrun it together).
    pub(crate) fn reserve(&mut self, len: u64) -> Option<Vec<u64>> {
        let wanted = self.reserved + blocks(len);
        if wanted > self.max_blocks / 2 {
            return None;
        }
        self.reserved = wanted;
        Some(self.evict())
    }

    /// Gives back the room [`reserve`](Self::reserve) kept for a file of `len` bytes
    /// (it is indexed now, or was abandoned).
    pub(crate) fn unreserve(&mut self, len: u64) {
        self.reserved = self.reserved.saturating_sub(blocks(len));
    }

    /// Indexes a file this process wrote for `hash`, of `len` bytes (replacing any),
    /// and returns the hashes evicted to make room, whose files the caller removes.
    pub(crate) fn insert(&mut self, hash: u64, len: u64) -> Vec<u64> {
        let main = self.ghost_set.remove(&hash);
        self.place(hash, len, main, true)
    }

    /// Indexes a file an earlier process left (its entry had earned its place before);
    /// it is checked when first read.
    pub(crate) fn recovered(&mut self, hash: u64, len: u64) -> Vec<u64> {
        if self.slots.contains_key(&hash) {
            return Vec::new();
        }
        self.place(hash, len, true, false)
    }

    fn place(&mut self, hash: u64, len: u64, main: bool, checked: bool) -> Vec<u64> {
        self.remove(hash);
        let blocks = u32::try_from(blocks(len)).unwrap_or(u32::MAX);
        self.slots.insert(
            hash,
            Slot {
                blocks,
                reads: 0,
                main,
                checked,
            },
        );
        self.blocks += u64::from(blocks);
        if main {
            self.main.push_back(hash);
        } else {
            self.small.push_back(hash);
            self.small_blocks += u64::from(blocks);
        }
        self.evict()
    }

    /// Forgets `hash`'s file (the caller removes it); returns whether it was indexed.
    pub(crate) fn remove(&mut self, hash: u64) -> bool {
        let Some(slot) = self.slots.remove(&hash) else {
            return false;
        };
        self.blocks -= u64::from(slot.blocks);
        if !slot.main {
            self.small_blocks -= u64::from(slot.blocks);
        }
        self.compact();
        true
    }

    /// Evicts until the bound holds; returns the evicted hashes.
    fn evict(&mut self) -> Vec<u64> {
        let mut evicted = Vec::new();
        while self.blocks + self.reserved > self.max_blocks
            && !(self.small.is_empty() && self.main.is_empty())
        {
            let from_small = self.small_blocks * 10 >= self.max_blocks || self.main.is_empty();
            let victim = if from_small {
                self.evict_small()
            } else {
                self.evict_main()
            };
            evicted.extend(victim);
        }
        evicted
    }

    /// Takes the oldest entry of the small queue: to the main queue if it was read
    /// since it came, else out (and into the ghosts).
    fn evict_small(&mut self) -> Option<u64> {
        let hash = self.small.pop_front()?;
        let slot = self.slots.get_mut(&hash).filter(|s| !s.main)?;
        self.small_blocks -= u64::from(slot.blocks);
        if slot.reads > 0 {
            slot.main = true;
            slot.reads = 0;
            self.main.push_back(hash);
            return None;
        }
        let blocks = slot.blocks;
        self.slots.remove(&hash);
        self.blocks -= u64::from(blocks);
        self.ghost(hash);
        Some(hash)
    }

    /// Takes the oldest entry of the main queue: once more round if it was read since
    /// its last turn, else out.
    fn evict_main(&mut self) -> Option<u64> {
        let hash = self.main.pop_front()?;
        let slot = self.slots.get_mut(&hash).filter(|s| s.main)?;
        if slot.reads > 0 {
            slot.reads -= 1;
            self.main.push_back(hash);
            return None;
        }
        let blocks = slot.blocks;
        self.slots.remove(&hash);
        self.blocks -= u64::from(blocks);
        Some(hash)
    }

    fn ghost(&mut self, hash: u64) {
        if self.ghost_set.insert(hash) {
            self.ghosts.push_back(hash);
        }
        while self.ghosts.len() > self.slots.len().max(1024) {
            if let Some(old) = self.ghosts.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Checks the index's own accounting: the blocks it counts are its slots' blocks
    /// (and the small queue's its small slots'), within the bound, and the queues hold
    /// no more than the compaction allows.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn assert_consistent(&self) {
        let counted: u64 = self.slots.values().map(|s| u64::from(s.blocks)).sum();
        assert_eq!(self.blocks, counted);
        let small: u64 = self
            .slots
            .values()
            .filter(|s| !s.main)
            .map(|s| u64::from(s.blocks))
            .sum();
        assert_eq!(self.small_blocks, small);
        // A re-inserted entry's new place comes after the compaction its removal ran.
        assert!(self.small.len() + self.main.len() <= 2 * self.len() + 1024 + 1);
        assert!(self.blocks + self.reserved <= self.max_blocks || self.slots.is_empty());
        assert!(self.reserved <= self.max_blocks / 2);
    }

    /// Drops the queue places of removed entries once they outnumber the live ones.
    fn compact(&mut self) {
        let live = self.slots.len();
        if self.small.len() + self.main.len() > 2 * live + 1024 {
            let slots = &self.slots;
            self.small.retain(|h| slots.get(h).is_some_and(|s| !s.main));
            self.main.retain(|h| slots.get(h).is_some_and(|s| s.main));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_kept_for_a_file_being_written_evicts_others_and_is_given_back() {
        let mut index = Index::new(10 * BLOCK);
        for hash in 0..10 {
            assert!(index.insert(hash, BLOCK).is_empty());
        }
        let evicted = index.reserve(4 * BLOCK).unwrap();
        assert_eq!(evicted.len(), 4, "room for the stream, made at once");
        assert!(
            index.reserve(2 * BLOCK).is_none(),
            "streams take half the bound at most"
        );
        index.assert_consistent();
        assert!(
            !index.insert(100, BLOCK).is_empty(),
            "the kept room is not given away"
        );
        index.unreserve(4 * BLOCK);
        assert!(index.insert(101, 3 * BLOCK).is_empty(), "given back");
        index.assert_consistent();
    }

    const KIB4: u64 = BLOCK;

    fn evict_all(index: &mut Index, hashes: impl IntoIterator<Item = u64>) -> Vec<u64> {
        hashes
            .into_iter()
            .flat_map(|h| index.insert(h, KIB4))
            .collect()
    }

    #[test]
    fn the_bound_holds_in_blocks_whatever_the_sizes() {
        let mut index = Index::new(100 * BLOCK);
        for hash in 0..1_000u64 {
            index.insert(hash, 1 + hash % (3 * BLOCK));
            assert!(index.bytes() <= 100 * BLOCK);
        }
        assert!(index.len() >= 33);
        assert_eq!(blocks(0), 1, "an empty file still takes a block");
        assert!(!index.fits(101 * BLOCK) && index.fits(100 * BLOCK));
    }

    #[test]
    fn one_hit_wonders_pass_through_while_entries_read_again_stay() {
        let mut index = Index::new(100 * BLOCK);
        let popular: Vec<u64> = (0..50).collect();
        evict_all(&mut index, popular.iter().copied());
        for &h in &popular {
            index.read(h);
        }
        let evicted = evict_all(&mut index, 1_000..11_000);
        assert!(
            popular.iter().all(|h| index.contains(*h)),
            "read again: kept"
        );
        assert!(
            evicted.iter().all(|h| *h >= 1_000),
            "only one-hit wonders went"
        );
    }

    #[test]
    fn an_entry_that_comes_back_soon_after_eviction_goes_to_the_main_queue() {
        let mut index = Index::new(10 * BLOCK);
        evict_all(&mut index, 0..20);
        assert!(!index.contains(0));
        index.insert(0, KIB4);
        evict_all(&mut index, 100..105);
        assert!(index.contains(0), "a ghost returns to the main queue");
    }

    #[test]
    fn removing_and_reinserting_keeps_the_count_exact() {
        let mut index = Index::new(10 * BLOCK);
        for round in 0..5_000u64 {
            let h = round % 7;
            if round % 3 == 0 {
                index.remove(h);
            } else {
                index.insert(h, (round % 5 + 1) * 1000);
            }
            index.read(round % 11);
        }
        index.assert_consistent();
        assert!(index.small.len() + index.main.len() <= 2 * index.len() + 1024);
    }

    #[test]
    fn recovered_entries_never_replace_newer_ones() {
        let mut index = Index::new(100 * BLOCK);
        index.insert(7, 3 * BLOCK);
        assert!(index.recovered(7, BLOCK).is_empty());
        assert_eq!(index.bytes(), 3 * BLOCK);
    }
}
