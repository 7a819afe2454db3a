//! Fuzz targets for what the Redis tier reads back from Redis (value records and
//! pub/sub events) and what the disk tier reads back from its directory (files, the
//! purge list) and keeps of it (its index), and [`replay`], which runs any crate's targets on their
//! checked-in corpus in the ordinary tests. A target panics when an invariant
//! breaks; `fuzz/` at the repository's root runs it under libFuzzer.

use std::path::Path;

#[cfg(feature = "disk")]
pub use disk_tier::disk_tier;
#[cfg(feature = "redis")]
pub use redis_tier::redis_tier;

/// Runs `target` on every checked-in input of its corpus, `fuzz/corpus/<name>/` at
/// the repository's root (the `seed-*` files, and the `crash-*` inputs of bugs
/// found), then on `mutants` byte-level mutations of them drawn from a fixed-seed
/// generator; a failure names its input.
pub fn replay(name: &str, target: fn(&[u8]), mutants: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("seed-") || name.starts_with("crash-")
        })
        .map(|path| std::fs::read(path).expect("a readable corpus file"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} has no seeds", dir.display());
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mutated: Vec<Vec<u8>> = (0..mutants).map(|_| rng.mutant(&inputs)).collect();
    for input in inputs.iter().chain(&mutated) {
        if let Err(panic) = std::panic::catch_unwind(|| target(input)) {
            eprintln!("{name} failed on {:?}", String::from_utf8_lossy(input));
            std::panic::resume_unwind(panic);
        }
    }
}

/// A small deterministic generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `seeds`, changed in one to four places: a byte set, inserted or
    /// removed, a run of bytes repeated, or the tail of another seed spliced in.
    fn mutant(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        const BYTES: &[u8] = b"\0\t\n\r ,;:=\"*?-./0123456789aZ\x7f\x80\xff";
        let mut input = seeds[self.below(seeds.len())].clone();
        for _ in 0..=self.below(4) {
            let at = self.below(input.len() + 1);
            match self.below(6) {
                0 if at < input.len() => input[at] ^= 1 << self.below(8),
                1 if at < input.len() => input[at] = BYTES[self.below(BYTES.len())],
                2 => input.insert(at, BYTES[self.below(BYTES.len())]),
                3 if at < input.len() => {
                    input.remove(at);
                }
                4 => {
                    let end = (at + 1 + self.below(16)).min(input.len());
                    let run = input[at.min(end)..end].to_vec();
                    input.splice(at..at, run);
                }
                _ => {
                    let other = &seeds[self.below(seeds.len())];
                    input.truncate(at);
                    input.extend_from_slice(&other[self.below(other.len() + 1)..]);
                }
            }
        }
        input
    }
}

/// The Redis tier's target.
#[cfg(feature = "redis")]
mod redis_tier {
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::entry::Entry;
    use crate::tier::redis::events::Event;
    use crate::tier::redis::record::{self, VERSION};

    /// The longest age a round-tripped record is given: a day, so that its instants
    /// exist.
    const LONGEST_AGE_MS: u64 = 24 * 3600 * 1000;
    /// How far an instant may move in a round trip: records keep milliseconds, and
    /// the wall clock is read again on each side.
    const CLOCK_SLACK: Duration = Duration::from_secs(1);

    /// Decodes `data` as a value record and as an event; round-trips a record and events
    /// built from it.
    pub fn redis_tier(data: &[u8]) {
        decode_record(data);
        record_round_trip(data);
        parse_event(&String::from_utf8_lossy(data));
        event_round_trip(data);
    }

    /// Any bytes decode to a record or an error; a record's payload is the bytes after
    /// the header, and its instants are in order.
    fn decode_record(data: &[u8]) {
        let codec = data.get(25).copied().unwrap_or_default();
        if let Ok(decoded) = record::decode(data, codec) {
            let payload_at = match data[0] {
                1 => 26,
                2 => 30,
                version => {
                    assert_eq!(version, VERSION);
                    let tags_len = u32::from_be_bytes([data[46], data[47], data[48], data[49]]);
                    50 + tags_len as usize
                }
            };
            assert_eq!(decoded.payload, &data[payload_at..]);
            assert!(decoded.stored_at <= decoded.fresh_until);
            assert!(decoded.fresh_until <= decoded.stale_until);
        }
    }

    /// An entry built from the input decodes to its payload, codec and lifetime.
    fn record_round_trip(data: &[u8]) {
        let mut rest = data;
        let [codec] = take(&mut rest);
        let age = Duration::from_millis(u64::from_le_bytes(take(&mut rest)) % LONGEST_AGE_MS);
        let fresh_for = Duration::from_millis(u64::from_le_bytes(take(&mut rest)));
        let ttl = Duration::from_millis(u64::from_le_bytes(take(&mut rest)));
        let now = Instant::now();
        let mut entry = Entry::new((), now.checked_sub(age).unwrap_or(now), fresh_for, ttl);
        // Tags from the input's first bytes, as text.
        let text = String::from_utf8_lossy(&rest[..rest.len().min(24)]);
        let tags: Vec<Box<str>> = text.split('/').map(Box::from).collect();
        let tags: Vec<Box<str>> = tags.into_iter().filter(|t| !t.is_empty()).collect();
        entry.tagged = crate::tags::Tagged::new(&tags, 7);
        let bytes = record::encode(&entry, 7, codec, rest).expect("short tags");
        let decoded = record::decode(&bytes, codec)
            .unwrap_or_else(|error| panic!("an encoded record does not decode: {error}"));
        assert_eq!(decoded.payload, rest);
        assert_eq!(decoded.tags, tags);
        for (sent, received) in [
            (entry.stored_at, decoded.stored_at),
            (entry.fresh_until, decoded.fresh_until),
            (entry.stale_until, decoded.stale_until),
        ] {
            let moved = sent.max(received) - sent.min(received);
            assert!(moved < CLOCK_SLACK, "an instant moved by {moved:?}");
        }
    }

    /// An event names the key that follows its kind and origin, whole.
    fn parse_event(message: &str) {
        let key = match Event::parse(message, 0) {
            Some(
                Event::Done(key)
                | Event::Invalidated(key)
                | Event::Purged(key)
                | Event::Softened(key)
                | Event::SoftPurged(key)
                | Event::TagPurged { tag: key, .. },
            ) => key,
            Some(Event::Cleared) | None => return,
        };
        assert_eq!(message.splitn(3, ' ').nth(2), Some(key));
    }

    /// What a server publishes reaches every other server as it was sent; `done` also
    /// reaches the sender, the others do not.
    fn event_round_trip(data: &[u8]) {
        let mut rest = data;
        let sender = u64::from_le_bytes(take(&mut rest));
        let receiver = u64::from_le_bytes(take(&mut rest));
        let key = String::from_utf8_lossy(rest);
        let key = key.as_ref();
        let others = sender != receiver;
        let message = |kind: &str, key: &str| format!("{kind} {sender:x} {key}");
        let done = message("done", key);
        assert_eq!(Event::parse(&done, receiver), Some(Event::Done(key)));
        let inval = message("inval", key);
        assert_eq!(
            Event::parse(&inval, receiver),
            others.then_some(Event::Invalidated(key))
        );
        let purge = message("purge", key);
        assert_eq!(
            Event::parse(&purge, receiver),
            others.then_some(Event::Purged(key))
        );
        let clear = message("clear", "-");
        assert_eq!(
            Event::parse(&clear, receiver),
            others.then_some(Event::Cleared)
        );
    }

    /// The next `N` bytes of the input (zeros past its end), consumed.
    fn take<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(rest.len());
        out[..n].copy_from_slice(&rest[..n]);
        *rest = &rest[n..];
        out
    }
}

/// The disk tier's target.
#[cfg(feature = "disk")]
mod disk_tier {
    use crate::tier::disk::index::{BLOCK, Index};
    use crate::tier::disk::purge::unescape;
    use crate::tier::disk::record::{self, HEADER, Times};

    /// Reads `data` as a file of the disk tier and as a purge-list prefix; round-trips
    /// a record built from it; runs the index through operations it spells.
    pub fn disk_tier(data: &[u8]) {
        read_file(data);
        record_round_trip(data);
        let prefix = String::from_utf8_lossy(data);
        let written = prefix.escape_default().to_string();
        assert!(!written.contains('\n'), "one purge a line");
        assert_eq!(unescape(&written).as_deref(), Some(prefix.as_ref()));
        index_operations(data);
    }

    /// Any bytes are a checked record or an error: a record's parts are the file's
    /// bytes in order, and its lifetime is in order.
    fn read_file(data: &[u8]) {
        for verify in [true, false] {
            let Ok(record) = record::open(data, verify) else {
                continue;
            };
            let head = record.head;
            assert_eq!(head.record_len(), data.len() as u64);
            let tags_at = HEADER + head.key_len;
            assert_eq!(record.key, &data[HEADER..tags_at]);
            assert_eq!(record.tags, &data[tags_at..tags_at + head.tags_len]);
            assert_eq!(record.payload, &data[tags_at + head.tags_len..]);
            assert!(head.times.stored_ms <= head.times.fresh_ms);
            assert!(head.times.fresh_ms <= head.times.stale_ms);
            // Tags read, or refused; never a panic.
            let _ = record::read_tags(record.tags);
        }
        if let Ok(head) = record::head(data) {
            assert!(data.len() >= HEADER);
            let _ = head.record_len();
        }
    }

    /// A record built from the input (a key, tags, a payload) reads back whole; any
    /// one byte changed is refused.
    fn record_round_trip(data: &[u8]) {
        let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
        let (key, payload) = data.split_at(split);
        let key = String::from_utf8_lossy(key);
        let tags: Vec<&str> = key.split('/').filter(|t| !t.is_empty()).collect();
        let section = record::tags_section(tags.iter().copied()).expect("short tags");
        let times = Times {
            stored_ms: 1,
            fresh_ms: 2,
            stale_ms: 3,
        };
        let mut file = record::header(7, times, (&key, &section), payload).to_vec();
        file.extend_from_slice(key.as_bytes());
        file.extend_from_slice(&section);
        file.extend_from_slice(payload);
        let record = record::open(&file, true).expect("a written record reads back");
        assert_eq!((record.key, record.payload), (key.as_bytes(), payload));
        let read: Vec<Box<str>> = tags.iter().map(|t| Box::from(*t)).collect();
        assert_eq!(record::read_tags(record.tags).expect("its tags"), read);
        assert_eq!((record.head.codec, record.head.times), (7, times));
        let at = usize::from(data.get(1).copied().unwrap_or(0)) * 7 % file.len();
        file[at] ^= 0x01;
        assert!(record::open(&file, true).is_err(), "byte {at} changed");
    }

    /// Inserts, recoveries, reads, removals, and room kept and given back for files
    /// being written, spelled by the input, keep the index's accounting exact and within
    /// its bound.
    fn index_operations(data: &[u8]) {
        let mut index = Index::new(64 * BLOCK);
        let mut kept = Vec::new();
        for pair in data.chunks(2) {
            let (op, hash) = (pair[0], u64::from(pair.get(1).copied().unwrap_or(0) % 97));
            let len = u64::from(op) * 512;
            match op % 6 {
                0 => drop(index.insert(hash, len)),
                1 => drop(index.recovered(hash, len)),
                2 => index.read(hash),
                3 => drop(index.remove(hash)),
                4 => {
                    if index.reserve(len).is_some() {
                        kept.push(len);
                    }
                }
                _ => {
                    if let Some(len) = kept.pop() {
                        index.unreserve(len);
                    }
                }
            }
            index.assert_consistent();
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "disk")]
    #[test]
    fn disk_files_purges_and_the_index_survive_their_corpus_and_its_mutants() {
        super::replay("disk_tier", super::disk_tier, 4000);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_records_and_events_survive_their_corpus_and_its_mutants() {
        super::replay("redis_tier", super::redis_tier, 4000);
    }
}
