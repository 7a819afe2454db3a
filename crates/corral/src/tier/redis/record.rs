//! The record a value is stored as in Redis: a format version, the entry's lifetime in
//! wall-clock time (so every server agrees on freshness), the codec, and the payload.
//!
//! ```text
//! 0      1                9               17              25     26
//! | ver  | stored_at (ms) | fresh_until   | stale_until   | codec | payload...
//! ```
//! Times are Unix milliseconds, big-endian. Anything that does not parse is a miss.

use tokio::time::Instant;

use crate::entry::Entry;
use crate::tier::wall::Clocks;

/// The record format this build writes and reads.
pub(crate) const VERSION: u8 = 1;
const HEADER: usize = 26;

/// Why a record was not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("record format version {0}, expected {VERSION}")]
    Version(u8),
    #[error("record written by codec {found}, this cache uses codec {expected}")]
    Codec { found: u8, expected: u8 },
    #[error("record lifetime is inconsistent")]
    Lifetime,
    #[error(transparent)]
    Payload(#[from] crate::codec::CodecError),
}

/// Encodes an entry whose value the codec turned into `payload`.
pub(crate) fn encode<V>(entry: &Entry<V>, codec: u8, payload: &[u8]) -> Vec<u8> {
    let clocks = Clocks::now();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(VERSION);
    for instant in [entry.stored_at, entry.fresh_until, entry.stale_until] {
        out.extend_from_slice(&clocks.unix_ms(instant).to_be_bytes());
    }
    out.push(codec);
    out.extend_from_slice(payload);
    out
}

/// The header of a record, and its payload.
pub(crate) struct Record<'a> {
    pub stored_at: Instant,
    pub fresh_until: Instant,
    pub stale_until: Instant,
    pub payload: &'a [u8],
}

/// Reads a record's header, checking its version and codec.
pub(crate) fn decode(bytes: &[u8], codec: u8) -> Result<Record<'_>, RecordError> {
    if bytes.len() < HEADER {
        return Err(RecordError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(RecordError::Version(bytes[0]));
    }
    if bytes[25] != codec {
        return Err(RecordError::Codec {
            found: bytes[25],
            expected: codec,
        });
    }
    let ms = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (stored, fresh, stale) = (ms(1), ms(9), ms(17));
    if !(stored <= fresh && fresh <= stale) {
        return Err(RecordError::Lifetime);
    }
    let clocks = Clocks::now();
    Ok(Record {
        stored_at: clocks.instant(stored),
        fresh_until: clocks.instant(fresh),
        stale_until: clocks.instant(stale),
        payload: &bytes[HEADER..],
    })
}

/// Milliseconds from now until `instant` (for Redis's `PX`), at least 1.
pub(crate) fn millis_until(instant: Instant) -> u64 {
    (instant
        .saturating_duration_since(Instant::now())
        .as_millis() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_record_round_trips_its_lifetime_to_the_millisecond() {
        let now = Instant::now();
        let entry = Entry::new((), now, Duration::from_secs(10), Duration::from_secs(60));
        let bytes = encode(&entry, 7, b"payload");
        let record = decode(&bytes, 7).unwrap();
        assert_eq!(record.payload, b"payload");
        let close = |a: Instant, b: Instant| {
            let d = if a > b { a - b } else { b - a };
            d < Duration::from_millis(5)
        };
        assert!(close(record.fresh_until, entry.fresh_until));
        assert!(close(record.stale_until, entry.stale_until));
        assert!(close(record.stored_at, entry.stored_at));
    }

    #[test]
    fn anything_malformed_is_an_error_not_a_panic() {
        let entry = Entry::new(
            (),
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let good = encode(&entry, 1, b"x");
        assert!(matches!(
            decode(&good[..10], 1),
            Err(RecordError::Short(10))
        ));
        let mut old = good.clone();
        old[0] = 0;
        assert!(matches!(decode(&old, 1), Err(RecordError::Version(0))));
        assert!(matches!(
            decode(&good, 2),
            Err(RecordError::Codec {
                found: 1,
                expected: 2
            })
        ));
        let mut backwards = good.clone();
        backwards[9..17].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(decode(&backwards, 1), Err(RecordError::Lifetime)));
        assert!(decode(b"", 1).is_err());
    }
}
