//! The disk tier: a tier below memory on a local disk, larger than memory and kept
//! across restarts. Build a [`DiskTier`] and give it to
//! [`CacheBuilder::disk_tier`](crate::CacheBuilder::disk_tier) (or call
//! [`CacheBuilder::disk`](crate::CacheBuilder::disk)).
//!
//! - **One file per entry** (as nginx's `proxy_cache` keeps them), named by a keyed
//!   hash of its key, holding the entry's lifetime in wall-clock time (so a restarted
//!   process sees its remaining freshness), the key, the value as the codec encoded it,
//!   and a checksum over all of it. A file is written under a temporary name and
//!   renamed into place whole. A file an earlier process left is checked (length and
//!   checksum) the first time it is read; one that fails (torn by a power cut, changed
//!   on disk while no process held it) is never served: it is counted, removed, and
//!   read as a miss. Files this process wrote, or has read and checked, are read
//!   without summing them again (a quarter of a disk hit's instructions).
//! - **Warm restarts.** At start a background walk indexes the files an earlier process
//!   left, after a clean stop or a `SIGKILL` alike; the cache answers meanwhile, and a
//!   key the walk has not reached yet is looked for in its file all the same. Files half
//!   written when a process was killed are removed.
//! - **Bounded.** The files take at most `max_bytes` of disk, counted in 4 KiB blocks;
//!   S3-FIFO picks what to evict, so one-hit wonders pass through a small queue without
//!   pushing out what is read again.
//! - **Large values stream.** A value too large for memory (an HTTP response body
//!   beyond the memory tier's limit) is written as it arrives
//!   ([`Cache::stream_to_disk`](crate::Cache::stream_to_disk), [`DiskWriter`]), and
//!   read meanwhile by whoever wants it: its readers follow the writer. A file over
//!   1 MiB is read back in chunks: its codec may keep its bytes in the file
//!   ([`Codec::decode_file`](crate::codec::Codec::decode_file), [`DiskBlob`]), and one
//!   an earlier process left is checked in chunks before its first use.
//! - **Faults.** An I/O error (disk full, a read-only or vanished directory) turns the
//!   tier off, logged once and counted: loads go on with the other tiers and the loader.
//!   A probe brings it back once the directory works (see `health.rs`). Invalidations
//!   made while it is off are still kept, in memory, for when it is back.
//! - **Invalidations** reach disk at once: a key's file is removed, a prefix purge is
//!   written down and checked on every read until a walk has swept its files. A load
//!   that started before an invalidation does not store after it.
//!
//! It is the same `Tier` as the Redis tier, for a store that no other server writes:
//! its lock is always granted. Reads and writes run on Tokio's blocking threads.
//!
//! # Files
//!
//! | file | what it holds |
//! |---|---|
//! | `builder.rs` | [`DiskTier`] and the defaults |
//! | `store.rs` | the tier as the engine sees it: values encoded, file work on blocking threads |
//! | `files.rs` | the directory's files: read, write, remove, purge |
//! | `open.rs` | opening one file and checking it: whole, or its payload left in the file |
//! | `stream.rs`, `blob.rs` | an entry written as it arrives; a value's bytes left in its file |
//! | `walk.rs` | the walk through every file: indexing at start, sweeping after a purge |
//! | `layout.rs`, `record.rs` | where things are under the directory; the format of a file |
//! | `index.rs` | which files exist, their sizes, and S3-FIFO eviction |
//! | `purge.rs` | prefix purges kept until swept; the ledger that stops stale writes |
//! | `tags.rs` | tag purges, kept across restarts; each record carries its tags |
//! | `health.rs`, `metrics.rs` | on or off after a fault; the counters |

mod blob;
mod builder;
mod files;
mod health;
pub(crate) mod index;
mod layout;
mod metrics;
mod open;
pub(crate) mod purge;
pub(crate) mod record;
mod store;
mod stream;
mod tags;
mod walk;

pub use blob::{DiskBlob, FilePayload};
pub(crate) use builder::DiskSpec;
pub use builder::{DEFAULT_MAX_ENTRY_BYTES, DEFAULT_WRITES_AT_ONCE, DiskTier};
pub use stream::{DiskWriter, WriteMark};
