//! The walk through every object file, on a thread of its own: at start, to index what
//! an earlier process left (the tier answers meanwhile); after a purge, to remove the
//! files it covers. One walk at a time; a walk stops once its tier is dropped, letting
//! go of it between files.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::files::{Disk, MAX_KEY, fault, now_ms};
use super::layout;
use super::record::{self, HEADER, Head, RecordError};

/// Starts a walk: the one at start (`recovery`), or a sweep after a purge.
pub(crate) fn start(disk: &Arc<Disk>, recovery: bool) -> io::Result<()> {
    let weak = Arc::downgrade(disk);
    let name = if recovery {
        "corral-disk-recovery"
    } else {
        "corral-disk-purge"
    };
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || walk(&weak, recovery))?;
    Ok(())
}

fn walk(disk: &Weak<Disk>, recovery: bool) {
    let Some(walking) = disk.upgrade().map(|tier| tier.walking()) else {
        return;
    };
    let _one_at_a_time = walking.lock().unwrap_or_else(|p| p.into_inner());
    let (started, started_ms) = (Instant::now(), now_ms());
    let outcome = walk_files(disk, recovery, started_ms);
    let Some(tier) = disk.upgrade() else { return };
    match outcome {
        Ok(indexed) => {
            if recovery {
                tier.indexed(indexed, started.elapsed());
            }
            if let Err(error) = tier.swept(started_ms) {
                fault(&tier, "writing the purge list", &error);
            }
        }
        // After a failed walk at start, keys it did not reach are still looked for in
        // their own files; purges stay written down until a walk ends.
        Err(error) => fault(&tier, "walking the directory", &error),
    }
}

fn walk_files(disk: &Weak<Disk>, recovery: bool, now: u64) -> io::Result<u64> {
    let folders = {
        let Some(tier) = disk.upgrade() else {
            return Ok(0);
        };
        if recovery {
            tier.layout().sweep_temp()?;
        }
        tier.layout().object_folders()?
    };
    let mut indexed = 0;
    for folder in folders {
        let files = match fs::read_dir(&folder) {
            Ok(files) => files,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for file in files {
            let file = file?;
            let Some(hash) = layout::object_hash(&file.file_name()) else {
                continue;
            };
            let Some(tier) = disk.upgrade() else {
                return Ok(indexed);
            };
            let found = match read_head(&file.path()) {
                Ok(found) => found,
                Err(Skip::Gone) => continue,
                Err(Skip::Io(e)) => return Err(e),
                Err(Skip::Bad(error)) => {
                    tier.corrupt(hash, &error)?;
                    continue;
                }
            };
            if tier.visit(hash, found, recovery, now)? {
                indexed += 1;
            }
        }
    }
    Ok(indexed)
}

/// Why a walk skipped a file.
enum Skip {
    /// Removed meanwhile.
    Gone,
    Io(io::Error),
    Bad(RecordError),
}

/// Reads a file's header and key, and its length.
fn read_head(path: &Path) -> Result<(Head, Vec<u8>, u64), Skip> {
    let io = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            Skip::Gone
        } else {
            Skip::Io(e)
        }
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut header = [0u8; HEADER];
    let read = read_up_to(&mut file, &mut header).map_err(io)?;
    let head = record::head(&header[..read]).map_err(Skip::Bad)?;
    if head.key_len > MAX_KEY {
        return Err(Skip::Bad(RecordError::Length {
            found: len,
            promised: head.record_len(),
        }));
    }
    let mut key = vec![0u8; head.key_len];
    let read = read_up_to(&mut file, &mut key).map_err(io)?;
    key.truncate(read);
    Ok((head, key, len))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
