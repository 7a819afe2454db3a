//! What a stored response's body is: bytes in memory, or (with the disk tier) a region
//! of a file on disk, read in chunks as it is served and never held whole.

use bytes::Bytes;

use crate::body::Body;

/// The memory a body kept on disk is charged in the memory tier: it holds an open
/// file, so the memory tier's bound also bounds the files it keeps open (256 for the
/// default 256 MiB).
#[cfg(feature = "disk")]
const ON_DISK_WEIGHT: usize = 1 << 20;

/// A stored response's body.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// Held in memory.
    Memory(Bytes),
    /// Kept in a file of the disk tier, perhaps still being written (read-while-writer).
    #[cfg(feature = "disk")]
    Disk(corral::disk::DiskBlob),
}

impl Content {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Content::Memory(bytes) => bytes.len() as u64,
            #[cfg(feature = "disk")]
            Content::Disk(blob) => blob.len(),
        }
    }

    /// The whole of it, to send.
    pub(crate) fn body(&self) -> Body {
        match self {
            Content::Memory(bytes) => Body::full(bytes.clone()),
            #[cfg(feature = "disk")]
            Content::Disk(blob) => Body::disk(blob.clone()),
        }
    }

    /// Its bytes `first..=last` (within its length).
    pub(crate) fn slice(&self, first: u64, last: u64) -> Content {
        match self {
            Content::Memory(bytes) => Content::Memory(bytes.slice(first as usize..=last as usize)),
            #[cfg(feature = "disk")]
            Content::Disk(blob) => Content::Disk(blob.slice(first, last - first + 1)),
        }
    }

    /// Its bytes, when it is held in memory.
    pub(crate) fn in_memory(&self) -> Option<&Bytes> {
        match self {
            Content::Memory(bytes) => Some(bytes),
            #[cfg(feature = "disk")]
            Content::Disk(_) => None,
        }
    }

    /// Whether the response holding it counts as gone: kept on disk by a writer that
    /// gave up (it can never be sent whole), or in a file the disk tier has let go of
    /// (evicted or replaced: dropping the response frees the file's space, which the
    /// tier no longer counts).
    pub(crate) fn gone(&self) -> bool {
        match self {
            Content::Memory(_) => false,
            #[cfg(feature = "disk")]
            Content::Disk(blob) => blob.failed() || blob.released(),
        }
    }

    /// What keeping it costs the memory tier.
    pub(crate) fn weigh(&self) -> usize {
        match self {
            Content::Memory(bytes) => bytes.len(),
            #[cfg(feature = "disk")]
            Content::Disk(_) => ON_DISK_WEIGHT,
        }
    }
}

impl From<Bytes> for Content {
    fn from(bytes: Bytes) -> Self {
        Content::Memory(bytes)
    }
}

/// Bodies in memory are equal by their bytes; bodies on disk only when they are the
/// same region of the same file.
impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Content::Memory(a), Content::Memory(b)) => a == b,
            #[cfg(feature = "disk")]
            (Content::Disk(a), Content::Disk(b)) => a.same_region(b),
            #[cfg(feature = "disk")]
            _ => false,
        }
    }
}

impl Eq for Content {}

impl PartialEq<[u8]> for Content {
    fn eq(&self, other: &[u8]) -> bool {
        self.in_memory().is_some_and(|bytes| bytes[..] == *other)
    }
}
