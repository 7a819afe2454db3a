//! The record a value is stored as in Redis: a format version, the entry's lifetime in
//! wall-clock time (so every server agrees on freshness), the codec, how long the
//! entry's load took (version 2: so that every server can refresh it early), and the
//! payload.
//!
//! ```text
//! 0      1                9               17              25      26            30
//! | ver  | stored_at (ms) | fresh_until   | stale_until   | codec | load (µs)   | payload...
//! ```
//! Times are Unix milliseconds, big-endian. Version 1 records (no load time, the payload
//! at 26) are still read, so that servers of both versions can share a tier while they
//! are upgraded; a server of version 1 reads a version 2 record as a miss. Anything
//! that does not parse is a miss.

use tokio::time::Instant;

use crate::entry::Entry;
use crate::tier::wall::Clocks;

/// The record format this build writes (it reads version 1 too).
pub(crate) const VERSION: u8 = 2;
/// The header's length in version 1, and in version 2.
const HEADER_V1: usize = 26;
const HEADER: usize = 30;

/// Why a record was not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("record format version {0}, expected 1 or {VERSION}")]
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
    out.extend_from_slice(&entry.load_micros.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The header of a record, and its payload.
pub(crate) struct Record<'a> {
    pub stored_at: Instant,
    pub fresh_until: Instant,
    pub stale_until: Instant,
    /// How long the entry's load took, in microseconds (0 in a version 1 record).
    pub load_micros: u32,
    pub payload: &'a [u8],
}

/// Reads a record's header, checking its version and codec.
pub(crate) fn decode(bytes: &[u8], codec: u8) -> Result<Record<'_>, RecordError> {
    let header = match bytes.first() {
        Some(1) => HEADER_V1,
        Some(&VERSION) => HEADER,
        Some(&other) if bytes.len() >= HEADER_V1 => return Err(RecordError::Version(other)),
        _ => return Err(RecordError::Short(bytes.len())),
    };
    if bytes.len() < header {
        return Err(RecordError::Short(bytes.len()));
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
    let load_micros = match header {
        HEADER => u32::from_be_bytes([bytes[26], bytes[27], bytes[28], bytes[29]]),
        _ => 0,
    };
    let clocks = Clocks::now();
    Ok(Record {
        stored_at: clocks.instant(stored),
        fresh_until: clocks.instant(fresh),
        stale_until: clocks.instant(stale),
        load_micros,
        payload: &bytes[header..],
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
    fn the_load_time_travels_and_a_version_1_record_still_reads() {
        let now = Instant::now();
        let entry = Entry::new((), now, Duration::from_secs(10), Duration::from_secs(60))
            .loaded_in(Duration::from_millis(50));
        let bytes = encode(&entry, 7, b"payload");
        assert_eq!(decode(&bytes, 7).unwrap().load_micros, 50_000);
        // The same record as a version 1 server writes it: no load time.
        let mut v1 = vec![1];
        v1.extend_from_slice(&bytes[1..26]);
        v1.extend_from_slice(b"payload");
        let record = decode(&v1, 7).unwrap();
        assert_eq!((record.load_micros, record.payload), (0, &b"payload"[..]));
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
