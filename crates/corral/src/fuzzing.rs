//! Fuzz targets for what the Redis tier reads back from Redis (value records and
//! pub/sub events), and [`replay`], which runs any crate's targets on their
//! checked-in corpus in the ordinary tests. A target panics when an invariant
//! breaks; `fuzz/` at the repository's root runs it under libFuzzer.

use std::path::Path;

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
            assert_eq!(data[0], VERSION);
            assert_eq!(decoded.payload, &data[26..]);
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
        let entry = Entry::new((), now.checked_sub(age).unwrap_or(now), fresh_for, ttl);
        let bytes = record::encode(&entry, codec, rest);
        let decoded = record::decode(&bytes, codec)
            .unwrap_or_else(|error| panic!("an encoded record does not decode: {error}"));
        assert_eq!(decoded.payload, rest);
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
            Some(Event::Done(key) | Event::Invalidated(key) | Event::Purged(key)) => key,
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

#[cfg(test)]
mod tests {
    #[cfg(feature = "redis")]
    #[test]
    fn redis_records_and_events_survive_their_corpus_and_its_mutants() {
        super::replay("redis_tier", super::redis_tier, 4000);
    }
}
