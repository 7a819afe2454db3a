//! Opening one object file and checking it: a short file is read whole, a long one is
//! checked in chunks and its payload left in the file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::blob::{FilePayload, HeldFile};
use super::record::{self, HEADER, Head, RecordError, Sealing};

/// Files up to this long are read whole; a longer one is checked in chunks and its
/// payload left in the file ([`Payload::File`]).
pub(crate) const READ_WHOLE: u64 = 1 << 20;

/// The chunks a long file is checked in.
const CHECK_CHUNK: usize = 1 << 20;

/// A checked entry's payload: the value as its codec encoded it.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Read into memory (a file of at most [`READ_WHOLE`] bytes).
    Bytes(Bytes),
    /// Left in its open file, for the codec to read what it needs of.
    File(FilePayload),
}

/// What opening an object file found.
pub(crate) enum Opened {
    /// A good record of the key: its header, tags and payload.
    Checked(Head, Vec<Box<str>>, Payload),
    /// A whole record, of another key whose hash is the same.
    OtherKey,
    Corrupt(RecordError),
}

/// Reads a short file (of `len` bytes, at most [`READ_WHOLE`]) whole, and checks it.
pub(crate) fn read_whole(mut file: File, len: u64, key: &str, verify: bool) -> io::Result<Opened> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    (&mut file).take(READ_WHOLE + 1).read_to_end(&mut bytes)?;
    Ok(match record::open(&bytes, verify) {
        Ok(record) if record.key != key.as_bytes() => Opened::OtherKey,
        Ok(record) => match record::read_tags(record.tags) {
            Ok(tags) => {
                let (head, payload_at) = (record.head, bytes.len() - record.payload.len());
                let payload = Payload::Bytes(Bytes::from(bytes).slice(payload_at..));
                Opened::Checked(head, tags, payload)
            }
            Err(error) => Opened::Corrupt(error),
        },
        Err(error) => Opened::Corrupt(error),
    })
}

/// Opens a long file (of `len` bytes): its header, key and tags are read, its payload left
/// in the file, after reading it through in chunks to check its checksum if `verify`.
pub(crate) fn open_long(
    (file, reads): (File, &Arc<Semaphore>),
    len: u64,
    key: &str,
    verify: bool,
) -> io::Result<Opened> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, 0)?;
    let head = match record::head(&header) {
        Ok(head) if head.record_len() == len => head,
        Ok(head) => {
            let promised = head.record_len();
            return Ok(Opened::Corrupt(RecordError::Length {
                found: len,
                promised,
            }));
        }
        Err(error) => return Ok(Opened::Corrupt(error)),
    };
    if head.key_len != key.len() {
        return Ok(Opened::OtherKey);
    }
    let mut stored_key = vec![0u8; head.key_len];
    file.read_exact_at(&mut stored_key, HEADER as u64)?;
    if stored_key != key.as_bytes() {
        return Ok(Opened::OtherKey);
    }
    let mut tags = vec![0u8; head.tags_len];
    file.read_exact_at(&mut tags, (HEADER + head.key_len) as u64)?;
    let payload_at = head.payload_at();
    if verify {
        let start = (stored_key.as_slice(), tags.as_slice());
        let mut sealing = Sealing::begin(head.codec, head.times, start, head.payload_len);
        let mut chunk = vec![0u8; CHECK_CHUNK];
        let mut at = payload_at;
        while at < len {
            let n = usize::try_from(len - at).map_or(CHECK_CHUNK, |left| left.min(CHECK_CHUNK));
            file.read_exact_at(&mut chunk[..n], at)?;
            sealing.update(&chunk[..n]);
            at += n as u64;
        }
        // The header made again from its fields must be the header read, byte for
        // byte (as a short file's checksum covers its header's bytes as they are).
        if sealing.seal() != header {
            return Ok(Opened::Corrupt(RecordError::Checksum));
        }
    }
    let tags = match record::read_tags(&tags) {
        Ok(tags) => tags,
        Err(error) => return Ok(Opened::Corrupt(error)),
    };
    let file = (HeldFile::new(file), Arc::clone(reads));
    let payload = FilePayload::new(file, payload_at, head.payload_len);
    Ok(Opened::Checked(head, tags, Payload::File(payload)))
}
