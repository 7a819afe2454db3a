//! [`DiskWriter`]: an entry too large for memory, written to disk as its bytes arrive
//! (a large HTTP response body as it comes from the origin) and readable meanwhile.
//!
//! The file is written under a temporary name: its header left blank, then its key and
//! payload in order, each chunk summed into the checksum as it goes. Readers of the
//! value ([`DiskBlob`]s) read what has been written so far and wait for the rest. Once
//! the last byte is written, the header is filled in and the file renamed into place,
//! as a whole write's is; a writer dropped before that (its source failed, the process
//! stops) leaves no file, and its readers' waits fail.

use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::blob::{DiskBlob, End, HeldFile, Progress};
use super::files::{Disk, fault};
use super::record::{HEADER, Sealing};

/// Writes one entry to the disk tier as its payload arrives. Made by
/// [`Cache::stream_to_disk`](crate::Cache::stream_to_disk); give it the rest of the
/// payload with [`append`](Self::append), then call [`finish`](Self::finish).
pub struct DiskWriter {
    disk: Arc<Disk>,
    key: String,
    temp: PathBuf,
    file: Arc<HeldFile>,
    /// Taken while a chunk is written on a blocking thread.
    sealing: Option<Sealing>,
    /// Where the next byte goes, and the file's whole length.
    at: u64,
    len: u64,
    /// Where the part given to [`append`](Self::append) starts.
    rest_at: u64,
    /// The latest invalidation when the load began.
    since: u64,
    /// The entry's tags (a tag purge since the load began keeps it out too).
    tags: Vec<Box<str>>,
    progress: watch::Sender<Progress>,
    finished: bool,
    _running: OwnedSemaphorePermit,
}

impl fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskWriter")
            .field("key", &self.key)
            .field("written", &self.at)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The invalidations made up to a moment, for an entry written as it arrives
/// ([`Cache::write_mark`](crate::Cache::write_mark)): an invalidation of its key made
/// after it keeps the entry off disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteMark(pub(crate) u64);

/// What a stream's file starts with, and how long it will be.
pub(crate) struct Start<'a> {
    pub(crate) key: &'a str,
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) codec: u8,
    pub(crate) times: super::record::Times,
    /// The payload's first bytes, given at once.
    pub(crate) head: Vec<u8>,
    /// How many bytes follow them.
    pub(crate) rest_len: u64,
    pub(crate) since: u64,
}

impl DiskWriter {
    /// Creates the file and writes its key and `start.head` (blocking). `None` if the
    /// entry is not to be written (too large for the tier).
    pub(crate) fn create(
        disk: &Arc<Disk>,
        start: Start<'_>,
        running: OwnedSemaphorePermit,
    ) -> io::Result<Option<DiskWriter>> {
        let payload_len = start.head.len() as u64 + start.rest_len;
        let Some(section) = super::record::tags_section(start.tags.iter().map(|t| &**t)) else {
            disk.metrics.writes_skipped.add(1);
            return Ok(None);
        };
        let len = (HEADER + start.key.len() + section.len()) as u64 + payload_len;
        let Some((temp, file)) = disk.begin_stream(start.key, len)? else {
            return Ok(None);
        };
        let mut sealing = Sealing::begin(
            start.codec,
            start.times,
            (start.key.as_bytes(), &section),
            payload_len,
        );
        sealing.update(&start.head);
        let mut first = vec![0u8; HEADER];
        first.extend_from_slice(start.key.as_bytes());
        first.extend_from_slice(&section);
        first.extend_from_slice(&start.head);
        if let Err(e) = file.write_all_at(&first, 0) {
            let _ = disk.abandon_stream(&temp, len);
            return Err(e);
        }
        let rest_at = first.len() as u64;
        let (progress, _) = watch::channel(Progress {
            written: rest_at,
            end: End::Writing,
        });
        Ok(Some(DiskWriter {
            disk: Arc::clone(disk),
            key: start.key.to_owned(),
            temp,
            file: HeldFile::new(file),
            sealing: Some(sealing),
            at: rest_at,
            len,
            rest_at,
            since: start.since,
            tags: start.tags,
            progress,
            finished: false,
            _running: running,
        }))
    }

    /// The rest of the payload (what [`append`](Self::append) writes), for readers:
    /// they read what has been written so far and wait for the rest.
    pub fn blob(&self) -> DiskBlob {
        DiskBlob::new(
            (Arc::clone(&self.file), Arc::clone(&self.disk.chunk_reads)),
            self.rest_at,
            self.len - self.rest_at,
            Some(self.progress.subscribe()),
        )
    }

    /// How many bytes of the rest are still to come.
    pub fn remaining(&self) -> u64 {
        self.len - self.at
    }

    /// Writes the next bytes of the payload. An error if they run past the length
    /// promised, or the disk fails (which turns the tier off); either way the entry is
    /// then not written, and its readers' waits fail.
    pub async fn append(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.len() as u64 > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than the entry's length",
            ));
        }
        let Some(mut sealing) = self.sealing.take() else {
            return Err(io::Error::other("an earlier write failed"));
        };
        let (file, at) = (Arc::clone(&self.file), self.at);
        let written = tokio::task::spawn_blocking(move || {
            file.file().write_all_at(&chunk, at)?;
            sealing.update(&chunk);
            Ok::<_, io::Error>((sealing, chunk.len() as u64))
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written);
        match written {
            Ok((sealing, n)) => {
                self.sealing = Some(sealing);
                self.at += n;
                let at = self.at;
                self.progress.send_modify(|p| p.written = at);
                Ok(())
            }
            Err(error) => {
                fault(&self.disk, "writing", &error);
                Err(error)
            }
        }
    }

    /// Seals the file and puts it in place: the entry is on disk now, unless an
    /// invalidation of its key came after its load began (`Ok(false)`). An error if
    /// fewer bytes were appended than promised.
    pub async fn finish(mut self) -> io::Result<bool> {
        if self.remaining() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes short of the entry's length", self.remaining()),
            ));
        }
        let Some(sealing) = self.sealing.take() else {
            return Err(io::Error::other("an earlier write failed"));
        };
        let (disk, file, temp) = (
            Arc::clone(&self.disk),
            Arc::clone(&self.file),
            self.temp.clone(),
        );
        let (key, len, since) = (self.key.clone(), self.len, self.since);
        let tags = std::mem::take(&mut self.tags);
        let landed = tokio::task::spawn_blocking(move || {
            if let Err(error) = file.file().write_all_at(&sealing.seal(), 0) {
                let _ = disk.abandon_stream(&temp, len);
                return Err(error);
            }
            disk.commit_stream((&key, &tags), (&temp, &file), len, since)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|landed| landed);
        // Every byte is written: readers may read them all, whether or not the file
        // made it into place.
        self.finished = true;
        self.progress.send_modify(|p| p.end = End::Done);
        landed.inspect_err(|error| fault(&self.disk, "writing", error))
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.progress.send_modify(|p| p.end = End::Failed);
        // Its readers fail now; emptied, the file holds no space while they let go.
        let _ = self.file.file().set_len(0);
        if let Err(error) = self.disk.abandon_stream(&self.temp, self.len) {
            fault(&self.disk, "removing", &error);
        }
    }
}
