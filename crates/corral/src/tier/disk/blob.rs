//! Values too large to hold in memory, left in their files: a [`FilePayload`] is what
//! a codec decodes such a value from, and a [`DiskBlob`] is a region of its file that
//! the value keeps and reads in chunks, following the file's writer while it is still
//! being written ([`DiskWriter`](super::DiskWriter)).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, watch};

/// The most chunks of a tier's files read at once (each on one of Tokio's blocking
/// threads, whose pool other work shares); more readers wait their turn.
pub(crate) const CHUNK_READS: usize = 64;

/// An open file of the tier whose bytes a value keeps, and whether the tier has let go
/// of it since (evicted, replaced or removed it): a value still holding it is then out
/// of date, and its holder should drop it so that its space is freed.
#[derive(Debug)]
pub(crate) struct HeldFile {
    file: File,
    released: AtomicBool,
}

impl HeldFile {
    pub(crate) fn new(file: File) -> Arc<Self> {
        Arc::new(HeldFile {
            file,
            released: AtomicBool::new(false),
        })
    }

    /// The tier has let go of the file.
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::Release);
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

/// How far the writer of a file has got: bytes up to `written` (an offset in the
/// file) are there to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) written: u64,
    pub(crate) end: End,
}

/// Whether a file's writer is still at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Writing,
    /// Every byte is there.
    Done,
    /// The writer gave up: what is missing will never come.
    Failed,
}

/// Bytes of a value kept in a file of the disk tier rather than in memory (a large
/// HTTP response body): a region of an open file, read in chunks on Tokio's blocking
/// threads. While its file is still being written, reads wait for the bytes they ask
/// for (read-while-writer), and fail if the writer gives up before writing them.
///
/// The file stays readable for as long as a `DiskBlob` of it lives, even once the
/// tier has evicted or replaced it.
#[derive(Clone)]
pub struct DiskBlob {
    file: Arc<HeldFile>,
    /// The tier's chunk reads running at once (see [`CHUNK_READS`]).
    reads: Arc<Semaphore>,
    /// Where the region starts in the file.
    start: u64,
    len: u64,
    /// The file's writer, while the file is being written.
    writer: Option<watch::Receiver<Progress>>,
}

impl fmt::Debug for DiskBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskBlob")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("writing", &self.writing())
            .finish()
    }
}

impl DiskBlob {
    pub(crate) fn new(
        (file, reads): (Arc<HeldFile>, Arc<Semaphore>),
        start: u64,
        len: u64,
        writer: Option<watch::Receiver<Progress>>,
    ) -> Self {
        DiskBlob {
            file,
            reads,
            start,
            len,
            writer,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes from `at` (as much of them as there is).
    pub fn slice(&self, at: u64, len: u64) -> DiskBlob {
        let at = at.min(self.len);
        DiskBlob {
            file: Arc::clone(&self.file),
            reads: Arc::clone(&self.reads),
            start: self.start + at,
            len: len.min(self.len - at),
            writer: self.writer.clone(),
        }
    }

    /// Whether `other` is the same region of the same file.
    pub fn same_region(&self, other: &DiskBlob) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && (self.start, self.len) == (other.start, other.len)
    }

    /// Whether its file is still being written.
    pub fn writing(&self) -> bool {
        self.progress().is_some_and(|p| p.end == End::Writing)
    }

    /// Whether its file's writer gave up before writing it whole: it will never be
    /// read to its end.
    pub fn failed(&self) -> bool {
        self.progress().is_some_and(|p| p.end == End::Failed)
    }

    /// Whether the tier has let go of its file since (evicted, replaced or removed
    /// it): the value holding it is out of date, and dropping it frees the file's space.
    /// Reads still succeed meanwhile.
    pub fn released(&self) -> bool {
        self.file.released.load(Ordering::Acquire)
    }

    fn progress(&self) -> Option<Progress> {
        self.writer.as_ref().map(|w| *w.borrow())
    }

    /// Reads up to `max` bytes from `at`: at least one unless `at` is at its end,
    /// waiting for the writer if need be. An error if the file ends short of its
    /// length, or its writer gave up before writing them.
    pub async fn read(&self, at: u64, max: usize) -> io::Result<Bytes> {
        if at >= self.len || max == 0 {
            return Ok(Bytes::new());
        }
        let from = self.start + at;
        let mut until = from + (self.len - at).min(max as u64);
        if let Some(writer) = &self.writer {
            let mut writer = writer.clone();
            let progress = *writer
                .wait_for(|p| p.written > from || p.end != End::Writing)
                .await
                .map_err(|_| io::Error::other("the file's writer is gone"))?;
            if progress.written <= from {
                return Err(io::Error::other(
                    "the file's writer gave up before writing these bytes",
                ));
            }
            until = until.min(progress.written);
        }
        let file = Arc::clone(&self.file);
        let len = usize::try_from(until - from).map_err(io::Error::other)?;
        let running = Arc::clone(&self.reads)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        tokio::task::spawn_blocking(move || {
            let read = read_exact(file.file(), from, len);
            drop(running);
            read
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn read_exact(file: &File, at: u64, len: usize) -> io::Result<Bytes> {
    let mut buffer = vec![0; len];
    file.read_exact_at(&mut buffer, at)?;
    Ok(Bytes::from(buffer))
}

/// A value's payload left in its file, as the disk tier hands it to
/// [`Codec::decode_file`](crate::codec::Codec::decode_file): whole and checked. Its
/// reads block (the codec runs on a blocking thread).
pub struct FilePayload {
    file: Arc<HeldFile>,
    reads: Arc<Semaphore>,
    start: u64,
    len: u64,
}

impl fmt::Debug for FilePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePayload")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl FilePayload {
    pub(crate) fn new(
        (file, reads): (Arc<HeldFile>, Arc<Semaphore>),
        start: u64,
        len: u64,
    ) -> Self {
        FilePayload {
            file,
            reads,
            start,
            len,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `len` bytes from `at`; an error if they run past the payload's end.
    pub fn read_at(&self, at: u64, len: usize) -> io::Result<Bytes> {
        match at.checked_add(len as u64) {
            Some(end) if end <= self.len => read_exact(self.file.file(), self.start + at, len),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a read past the payload's end",
            )),
        }
    }

    /// The payload from `at` to its end, kept in its file.
    pub fn blob_from(&self, at: u64) -> DiskBlob {
        let at = at.min(self.len);
        let file = (Arc::clone(&self.file), Arc::clone(&self.reads));
        DiskBlob::new(file, self.start + at, self.len - at, None)
    }

    /// The whole payload, read into memory.
    pub(crate) fn read_all(&self) -> io::Result<Bytes> {
        let len = usize::try_from(self.len).map_err(io::Error::other)?;
        read_exact(self.file.file(), self.start, len)
    }

    /// The file, for the tier to mark when it lets go of it.
    pub(crate) fn held(&self) -> &Arc<HeldFile> {
        &self.file
    }
}
