//! The file an entry is stored in: a fixed header, the key, the payload, with a
//! checksum over all three, so that a file torn by a crash or changed on disk is
//! never served.
//!
//! ```text
//! 0       4     5      6       8               16              24              32
//! | CRLD  | ver | codec | 0 0  | stored_at (ms) | fresh_until   | stale_until   |
//! 32         36              44           52
//! | key len  | payload len    | checksum   | key... | payload...
//! ```
//! Integers are big-endian; times are Unix milliseconds; the checksum is XXH3-64 of the
//! header's first 44 bytes, the key and the payload.

use xxhash_rust::xxh3::Xxh3;

const MAGIC: &[u8; 4] = b"CRLD";
/// The record format this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// The header's length.
pub(crate) const HEADER: usize = 52;

/// A record's lifetime, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) stored_ms: u64,
    pub(crate) fresh_ms: u64,
    pub(crate) stale_ms: u64,
}

/// What a record's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) codec: u8,
    pub(crate) times: Times,
    pub(crate) key_len: usize,
    pub(crate) payload_len: u64,
    checksum: u64,
}

impl Head {
    /// The length of the whole record.
    pub(crate) fn record_len(&self) -> u64 {
        ((HEADER + self.key_len) as u64).saturating_add(self.payload_len)
    }
}

/// Why a file is not a usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("shorter than its header ({0} bytes)")]
    Short(usize),
    #[error("not a corral record")]
    Magic,
    #[error("record format version {0}, expected {VERSION}")]
    Version(u8),
    #[error("lifetime out of order")]
    Lifetime,
    #[error("{found} bytes where the header promises {promised}")]
    Length { found: u64, promised: u64 },
    #[error("checksum mismatch")]
    Checksum,
}

/// The header of a record of `key` and `payload`.
pub(crate) fn header(codec: u8, times: Times, key: &str, payload: &[u8]) -> [u8; HEADER] {
    let mut sealing = Sealing::begin(codec, times, key.as_bytes(), payload.len() as u64);
    sealing.update(payload);
    sealing.seal()
}

/// A record's header being made while its payload is written: everything but the
/// checksum is known first; the checksum once the last byte has gone through
/// [`update`](Self::update).
pub(crate) struct Sealing {
    head: [u8; HEADER],
    hash: Box<Xxh3>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing").finish_non_exhaustive()
    }
}

impl Sealing {
    /// The header of a record of `key` with a payload of `payload_len` bytes.
    pub(crate) fn begin(codec: u8, times: Times, key: &[u8], payload_len: u64) -> Self {
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(MAGIC);
        head[4] = VERSION;
        head[5] = codec;
        head[8..16].copy_from_slice(&times.stored_ms.to_be_bytes());
        head[16..24].copy_from_slice(&times.fresh_ms.to_be_bytes());
        head[24..32].copy_from_slice(&times.stale_ms.to_be_bytes());
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        head[32..36].copy_from_slice(&key_len.to_be_bytes());
        head[36..44].copy_from_slice(&payload_len.to_be_bytes());
        let mut hash = Box::new(Xxh3::new());
        hash.update(&head[..44]);
        hash.update(key);
        Sealing { head, hash }
    }

    /// The next bytes of the payload, in order.
    pub(crate) fn update(&mut self, payload: &[u8]) {
        self.hash.update(payload);
    }

    /// The whole header, with the checksum of everything given.
    pub(crate) fn seal(mut self) -> [u8; HEADER] {
        let checksum = self.hash.digest();
        self.head[44..52].copy_from_slice(&checksum.to_be_bytes());
        self.head
    }
}

fn checksum(head: &[u8], key: &[u8], payload: &[u8]) -> u64 {
    let mut hash = Xxh3::new();
    hash.update(head);
    hash.update(key);
    hash.update(payload);
    hash.digest()
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Reads a record's header (the first [`HEADER`] bytes of `bytes`, or more).
pub(crate) fn head(bytes: &[u8]) -> Result<Head, RecordError> {
    if bytes.len() < HEADER {
        return Err(RecordError::Short(bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(RecordError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(RecordError::Version(bytes[4]));
    }
    let times = Times {
        stored_ms: be64(bytes, 8),
        fresh_ms: be64(bytes, 16),
        stale_ms: be64(bytes, 24),
    };
    if !(times.stored_ms <= times.fresh_ms && times.fresh_ms <= times.stale_ms) {
        return Err(RecordError::Lifetime);
    }
    let mut key_len = [0u8; 4];
    key_len.copy_from_slice(&bytes[32..36]);
    Ok(Head {
        codec: bytes[5],
        times,
        key_len: u32::from_be_bytes(key_len) as usize,
        payload_len: be64(bytes, 36),
        checksum: be64(bytes, 44),
    })
}

/// A whole record, checked: its header, key and payload.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) head: Head,
    pub(crate) key: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// Reads a whole record, checking its length, and its checksum if `verify`.
pub(crate) fn open(bytes: &[u8], verify: bool) -> Result<Record<'_>, RecordError> {
    let head = head(bytes)?;
    let promised = head.record_len();
    if bytes.len() as u64 != promised {
        return Err(RecordError::Length {
            found: bytes.len() as u64,
            promised,
        });
    }
    let (key, payload) = bytes[HEADER..].split_at(head.key_len);
    if verify && checksum(&bytes[..44], key, payload) != head.checksum {
        return Err(RecordError::Checksum);
    }
    Ok(Record { head, key, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMES: Times = Times {
        stored_ms: 1_000,
        fresh_ms: 2_000,
        stale_ms: 3_000,
    };

    fn record(key: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(3, TIMES, key, payload).to_vec();
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_record_reads_back_whole() {
        let bytes = record("/a", b"body");
        let record = open(&bytes, true).unwrap();
        assert_eq!((record.key, record.payload), (&b"/a"[..], &b"body"[..]));
        assert_eq!((record.head.codec, record.head.times), (3, TIMES));
    }

    #[test]
    fn a_torn_or_changed_record_is_refused_never_read() {
        let bytes = record("/a", b"the body of a response");
        for cut in [0, 10, HEADER, bytes.len() - 1] {
            assert!(open(&bytes[..cut], true).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            open(&longer, true),
            Err(RecordError::Length { .. })
        ));
        for flip in [HEADER, HEADER + 3, bytes.len() - 1, 9, 40] {
            let mut changed = bytes.clone();
            changed[flip] ^= 0x20;
            assert!(open(&changed, true).is_err(), "byte {flip} changed");
        }
        let mut zeroed = bytes.clone();
        zeroed[HEADER..].fill(0);
        assert_eq!(open(&zeroed, true).unwrap_err(), RecordError::Checksum);
    }

    #[test]
    fn a_foreign_or_newer_file_is_not_a_record() {
        assert_eq!(head(&[0; HEADER]).unwrap_err(), RecordError::Magic);
        let mut newer = record("/a", b"x");
        newer[4] = VERSION + 1;
        assert_eq!(head(&newer).unwrap_err(), RecordError::Version(VERSION + 1));
        let mut backwards = record("/a", b"x");
        backwards[24..32].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(head(&backwards).unwrap_err(), RecordError::Lifetime);
    }
}
