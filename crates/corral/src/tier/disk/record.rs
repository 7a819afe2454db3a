//! The file an entry is stored in: a fixed header, the key, the entry's tags, the
//! payload, with a checksum over all of them, so that a file torn by a crash or changed
//! on disk is never served.
//!
//! ```text
//! 0       4     5      6          8               16              24              32
//! | CRLD  | ver | codec | tags len | stored_at (ms) | fresh_until   | stale_until   |
//! 32         36              44           52
//! | key len  | payload len    | checksum   | key... | tags... | payload...
//! ```
//! Integers are big-endian; times are Unix milliseconds; the checksum is XXH3-64 of the
//! header's first 44 bytes, the key, the tags and the payload. Each tag is its length
//! (u16) and its UTF-8 bytes. A record without tags is written as version 1 (whose
//! bytes 6..8 are zero, and which a build that knows no tags reads); one with tags as
//! version 2.

use xxhash_rust::xxh3::Xxh3;

const MAGIC: &[u8; 4] = b"CRLD";
/// The record formats this build writes and reads: without tags, and with them.
pub(crate) const VERSION: u8 = 1;
pub(crate) const VERSION_TAGGED: u8 = 2;
/// The most bytes of tags a record holds (an entry with more is not written).
pub(crate) const MAX_TAGS_LEN: usize = u16::MAX as usize;
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
    pub(crate) tags_len: usize,
    pub(crate) payload_len: u64,
    checksum: u64,
}

impl Head {
    /// Where the payload starts.
    pub(crate) fn payload_at(&self) -> u64 {
        (HEADER + self.key_len + self.tags_len) as u64
    }

    /// The length of the whole record.
    pub(crate) fn record_len(&self) -> u64 {
        self.payload_at().saturating_add(self.payload_len)
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
    #[error("tags malformed")]
    Tags,
}

/// The tags section of a record of `tags`; `None` if it would be longer than
/// [`MAX_TAGS_LEN`].
pub(crate) fn tags_section<'a>(tags: impl Iterator<Item = &'a str>) -> Option<Vec<u8>> {
    crate::tags::write_section(tags).filter(|section| section.len() <= MAX_TAGS_LEN)
}

/// The tags a record's tags section holds.
pub(crate) fn read_tags(section: &[u8]) -> Result<Vec<Box<str>>, RecordError> {
    crate::tags::read_section(section).ok_or(RecordError::Tags)
}

/// The header of a record of `key`, its tags section and `payload`.
pub(crate) fn header(
    codec: u8,
    times: Times,
    (key, tags): (&str, &[u8]),
    payload: &[u8],
) -> [u8; HEADER] {
    let mut sealing = Sealing::begin(codec, times, (key.as_bytes(), tags), payload.len() as u64);
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
    /// The header of a record of `key` and its tags section (at most
    /// [`MAX_TAGS_LEN`] bytes) with a payload of `payload_len` bytes.
    pub(crate) fn begin(
        codec: u8,
        times: Times,
        (key, tags): (&[u8], &[u8]),
        payload_len: u64,
    ) -> Self {
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(MAGIC);
        let tags_len = u16::try_from(tags.len()).unwrap_or(u16::MAX);
        head[4] = if tags_len == 0 {
            VERSION
        } else {
            VERSION_TAGGED
        };
        head[5] = codec;
        head[6..8].copy_from_slice(&tags_len.to_be_bytes());
        head[8..16].copy_from_slice(&times.stored_ms.to_be_bytes());
        head[16..24].copy_from_slice(&times.fresh_ms.to_be_bytes());
        head[24..32].copy_from_slice(&times.stale_ms.to_be_bytes());
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        head[32..36].copy_from_slice(&key_len.to_be_bytes());
        head[36..44].copy_from_slice(&payload_len.to_be_bytes());
        let mut hash = Box::new(Xxh3::new());
        hash.update(&head[..44]);
        hash.update(key);
        hash.update(&tags[..usize::from(tags_len)]);
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

fn checksum(head: &[u8], rest: &[u8]) -> u64 {
    let mut hash = Xxh3::new();
    hash.update(head);
    hash.update(rest);
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
    let tags_len = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    match bytes[4] {
        VERSION if tags_len == 0 => {}
        VERSION_TAGGED if tags_len > 0 => {}
        VERSION | VERSION_TAGGED => return Err(RecordError::Tags),
        other => return Err(RecordError::Version(other)),
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
        tags_len,
        payload_len: be64(bytes, 36),
        checksum: be64(bytes, 44),
    })
}

/// A whole record, checked: its header, key, tags section and payload.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) head: Head,
    pub(crate) key: &'a [u8],
    pub(crate) tags: &'a [u8],
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
    if verify && checksum(&bytes[..44], &bytes[HEADER..]) != head.checksum {
        return Err(RecordError::Checksum);
    }
    let (key, rest) = bytes[HEADER..].split_at(head.key_len);
    let (tags, payload) = rest.split_at(head.tags_len);
    Ok(Record {
        head,
        key,
        tags,
        payload,
    })
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
        tagged(key, &[], payload)
    }

    fn tagged(key: &str, tags: &[&str], payload: &[u8]) -> Vec<u8> {
        let section = tags_section(tags.iter().copied()).unwrap();
        let mut bytes = header(3, TIMES, (key, &section), payload).to_vec();
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&section);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn tags_travel_in_a_version_2_record_and_none_make_a_version_1() {
        assert_eq!(record("/a", b"x")[4], VERSION);
        let bytes = tagged("/a", &["p-1", "é x"], b"body");
        assert_eq!(bytes[4], VERSION_TAGGED);
        let record = open(&bytes, true).unwrap();
        assert_eq!((record.key, record.payload), (&b"/a"[..], &b"body"[..]));
        assert_eq!(
            read_tags(record.tags).unwrap(),
            vec![Box::from("p-1"), Box::from("é x")]
        );
        // A version that does not match the tags section is refused.
        let mut lying = bytes.clone();
        lying[4] = VERSION;
        assert_eq!(head(&lying).unwrap_err(), RecordError::Tags);
        let mut torn = bytes;
        torn[HEADER + 3] = 0xff; // the first tag's length runs past its section
        assert!(open(&torn, false).is_ok_and(|r| read_tags(r.tags).is_err()));
        assert_eq!(
            tags_section(["x".repeat(70_000).as_str()].into_iter()),
            None
        );
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
        newer[4] = VERSION_TAGGED + 1;
        assert_eq!(
            head(&newer).unwrap_err(),
            RecordError::Version(VERSION_TAGGED + 1)
        );
        let mut backwards = record("/a", b"x");
        backwards[24..32].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(head(&backwards).unwrap_err(), RecordError::Lifetime);
    }
}
