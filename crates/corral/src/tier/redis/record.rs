//! The record a value is stored as in Redis: a format version, the entry's lifetime in
//! wall-clock time (so every server agrees on freshness), the codec, how long the
//! entry's load took (so that every server can refresh it early), the cluster's tag
//! clock when its load began, when a soft purge made it stale, its tags, and the
//! payload.
//!
//! ```text
//! 0      1                9               17              25      26            30
//! | ver  | stored_at (ms) | fresh_until   | stale_until   | codec | load (µs)   |
//! 30          38               46             50
//! | tick      | softened (ms)  | tags length  | tags...  | payload...
//! ```
//! Times are Unix milliseconds, big-endian; a softened time of 0 means none. Each tag is
//! its length (u16, big-endian) and its UTF-8 bytes. Version 1 (the payload at 26) and
//! version 2 (the payload at 30) records, untagged, are still read, so that servers of
//! several versions can share a tier while they are upgraded; an older server reads a
//! newer record as a miss. Anything that does not parse is a miss.

use tokio::time::Instant;

use crate::entry::Entry;
use crate::tags;
use crate::tier::wall::Clocks;

/// The record format this build writes (it reads versions 1 and 2 too).
pub(crate) const VERSION: u8 = 3;
/// The header's length in version 1, in version 2, and in version 3.
const HEADER_V1: usize = 26;
const HEADER_V2: usize = 30;
const HEADER: usize = 50;
/// Where version 3 keeps the instant a soft purge made the entry stale (the soften
/// script rewrites it in place).
pub(crate) const SOFTENED_AT: usize = 38;

/// Why a record was not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("record format version {0}, expected 1 to {VERSION}")]
    Version(u8),
    #[error("record written by codec {found}, this cache uses codec {expected}")]
    Codec { found: u8, expected: u8 },
    #[error("record lifetime is inconsistent")]
    Lifetime,
    #[error("record tags are malformed")]
    Tags,
    #[error(transparent)]
    Payload(#[from] crate::codec::CodecError),
}

/// Encodes an entry whose value the codec turned into `payload`, its load having
/// begun at the cluster's tag clock `tick`; `None` if one of its tags is longer than
/// 65 535 bytes.
pub(crate) fn encode<V>(entry: &Entry<V>, tick: u64, codec: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let clocks = Clocks::now();
    let tags = tags::write_section(entry.tags())?;
    let mut out = Vec::with_capacity(HEADER + tags.len() + payload.len());
    out.push(VERSION);
    for instant in [entry.stored_at, entry.fresh_until, entry.stale_until] {
        out.extend_from_slice(&clocks.unix_ms(instant).to_be_bytes());
    }
    out.push(codec);
    out.extend_from_slice(&entry.load_micros.to_be_bytes());
    out.extend_from_slice(&tick.to_be_bytes());
    let softened = entry.softened.map_or(0, |at| clocks.unix_ms(at).max(1));
    out.extend_from_slice(&softened.to_be_bytes());
    let tags_len = u32::try_from(tags.len()).ok()?;
    out.extend_from_slice(&tags_len.to_be_bytes());
    out.extend_from_slice(&tags);
    out.extend_from_slice(payload);
    Some(out)
}

/// The header of a record, its tags and its payload.
pub(crate) struct Record<'a> {
    pub stored_at: Instant,
    pub fresh_until: Instant,
    pub stale_until: Instant,
    /// How long the entry's load took, in microseconds (0 in a version 1 record).
    pub load_micros: u32,
    /// The cluster's tag clock when its load began (0 before version 3).
    pub tick: u64,
    /// When a soft purge made it stale.
    pub softened: Option<Instant>,
    pub tags: Vec<Box<str>>,
    pub payload: &'a [u8],
}

/// Reads a record's header, checking its version and codec.
pub(crate) fn decode(bytes: &[u8], codec: u8) -> Result<Record<'_>, RecordError> {
    let header = match bytes.first() {
        Some(1) => HEADER_V1,
        Some(2) => HEADER_V2,
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
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (stored, fresh, stale) = (u64_at(1), u64_at(9), u64_at(17));
    if !(stored <= fresh && fresh <= stale) {
        return Err(RecordError::Lifetime);
    }
    let load_micros = match header {
        HEADER_V1 => 0,
        _ => u32::from_be_bytes([bytes[26], bytes[27], bytes[28], bytes[29]]),
    };
    let clocks = Clocks::now();
    let (tick, softened, tags, payload_at) = if header == HEADER {
        let tags_len = u32::from_be_bytes([bytes[46], bytes[47], bytes[48], bytes[49]]) as usize;
        let section = bytes
            .get(HEADER..HEADER.saturating_add(tags_len))
            .ok_or(RecordError::Tags)?;
        let softened = u64_at(SOFTENED_AT);
        (
            u64_at(30),
            (softened != 0).then(|| clocks.instant(softened)),
            tags::read_section(section).ok_or(RecordError::Tags)?,
            HEADER + tags_len,
        )
    } else {
        (0, None, Vec::new(), header)
    };
    Ok(Record {
        stored_at: clocks.instant(stored),
        fresh_until: clocks.instant(fresh),
        stale_until: clocks.instant(stale),
        load_micros,
        tick,
        softened,
        tags,
        payload: &bytes[payload_at..],
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
        let bytes = encode(&entry, 0, 7, b"payload").unwrap();
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
    fn load_time_tags_and_softening_travel_and_older_records_still_read() {
        let now = Instant::now();
        let mut entry = Entry::new((), now, Duration::from_secs(10), Duration::from_secs(60))
            .loaded_in(Duration::from_millis(50))
            .soften(now + Duration::from_secs(1));
        entry.tagged = crate::tags::Tagged::new(&["a".into(), "é b".into()], 0);
        let bytes = encode(&entry, 41, 7, b"payload").unwrap();
        let record = decode(&bytes, 7).unwrap();
        assert_eq!((record.load_micros, record.tick), (50_000, 41));
        assert_eq!(record.tags, vec![Box::from("a"), Box::from("é b")]);
        assert_eq!(record.payload, b"payload");
        assert!(record.softened.is_some());
        // The same record as a version 2 server writes it: no tags.
        let mut v2 = vec![2];
        v2.extend_from_slice(&bytes[1..30]);
        v2.extend_from_slice(b"payload");
        let record = decode(&v2, 7).unwrap();
        assert_eq!((record.load_micros, record.tick), (50_000, 0));
        assert!(record.tags.is_empty() && record.softened.is_none());
        // As a version 1 server writes it: no load time either.
        let mut v1 = vec![1];
        v1.extend_from_slice(&bytes[1..26]);
        v1.extend_from_slice(b"payload");
        let record = decode(&v1, 7).unwrap();
        assert_eq!((record.load_micros, record.payload), (0, &b"payload"[..]));
    }

    #[test]
    fn malformed_tags_are_an_error_not_a_panic() {
        let mut entry = Entry::new((), Instant::now(), Duration::ZERO, Duration::from_secs(2));
        entry.tagged = crate::tags::Tagged::new(&["tag".into()], 0);
        let good = encode(&entry, 0, 1, b"x").unwrap();
        let mut long = good.clone();
        long[46..50].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&long, 1), Err(RecordError::Tags)));
        let mut torn = good.clone();
        torn[51] = 200; // the tag's length runs past its section
        assert!(matches!(decode(&torn, 1), Err(RecordError::Tags)));
        let mut invalid = good;
        invalid[52] = 0xff;
        assert!(matches!(decode(&invalid, 1), Err(RecordError::Tags)));
    }

    #[test]
    fn anything_malformed_is_an_error_not_a_panic() {
        let entry = Entry::new(
            (),
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let good = encode(&entry, 0, 1, b"x").unwrap();
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
