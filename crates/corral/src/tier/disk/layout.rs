//! Where the disk tier keeps things under its directory, and the names it gives them:
//!
//! | path | holds |
//! |---|---|
//! | `CORRAL-DISK-TIER` | the mark that the directory is a disk tier's (never write into one without it unless it is empty) |
//! | `secret` | 192 random bytes, the key of the hash that names objects (so nobody outside can aim keys at one file or one hash bucket) |
//! | `objects/XX/<hash>` | one entry per file, named by its key's 64-bit hash in hex, `XX` its top byte |
//! | `tmp/` | files being written; renamed into `objects/` when whole, so a reader never sees half a file |
//! | `purges` | prefix purges not yet swept from every file (one `unix-ms prefix` a line) |
//! | `tags` | tag purges (one `unix-ms h\|s tag` a line; `tags.rs`) |

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use xxhash_rust::xxh3::xxh3_64_with_secret;

const MARK: &str = "CORRAL-DISK-TIER";
const SECRET: &str = "secret";
const SECRET_LEN: usize = 192;

/// A disk tier's directory.
#[derive(Debug)]
pub(crate) struct Layout {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    secret: Box<[u8]>,
    /// This process's prefix for temporary files (its own are never swept).
    instance: u64,
    next_temp: AtomicU64,
}

/// Why a directory cannot hold a disk tier.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutError {
    /// The directory has other files in it and no mark of a disk tier.
    #[error(
        "{0} is not empty and is not a corral disk tier (no {MARK} file); refusing to write into it"
    )]
    Foreign(PathBuf),
    /// Another disk tier (in this process or another) has the directory open.
    #[error("{0} is in use by another disk tier (its lock file is held)")]
    InUse(PathBuf),
    /// The directory could not be made or read.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Layout {
    /// Opens (making it if need be) the directory `root`: its secret is read, or made
    /// when the directory is new.
    pub(crate) fn open(root: &Path) -> Result<Self, LayoutError> {
        fs::create_dir_all(root).map_err(at(root))?;
        let mark = root.join(MARK);
        if !mark.exists() && fs::read_dir(root).map_err(at(root))?.next().is_some() {
            return Err(LayoutError::Foreign(root.to_owned()));
        }
        let secret_path = root.join(SECRET);
        let secret = match fs::read(&secret_path) {
            Ok(secret) if secret.len() == SECRET_LEN => secret,
            Ok(_) => {
                let wrong = io::Error::new(io::ErrorKind::InvalidData, "not 192 bytes");
                return Err(at(&secret_path)(wrong));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut secret = vec![0; SECRET_LEN];
                getrandom::fill(&mut secret).map_err(|e| at(root)(io::Error::other(e)))?;
                secret
            }
            Err(e) => return Err(at(&secret_path)(e)),
        };
        let mut instance = [0u8; 8];
        getrandom::fill(&mut instance).map_err(|e| at(root)(io::Error::other(e)))?;
        let layout = Layout {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            root: root.to_owned(),
            secret: secret.into_boxed_slice(),
            instance: u64::from_le_bytes(instance),
            next_temp: AtomicU64::new(0),
        };
        layout.prepare().map_err(at(root))?;
        Ok(layout)
    }

    /// Makes whatever of the directory is missing (all of it, if it vanished): its mark
    /// first (so that a directory of ours is never taken for a foreign one), its
    /// folders, then its secret.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        let mark = self.root.join(MARK);
        if !mark.exists() {
            fs::create_dir_all(&self.root)?;
            fs::write(&mark, b"a corral disk tier: see corral::disk\n")?;
        }
        fs::create_dir_all(&self.objects)?;
        fs::create_dir_all(&self.tmp)?;
        let secret = self.root.join(SECRET);
        if !secret.exists() {
            self.write_whole(&secret, &self.secret)?;
        }
        Ok(())
    }

    /// Writes a small file whole (through a temporary file, renamed into place).
    pub(crate) fn write_whole(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = self.temp();
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    }

    /// The directory itself.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The hash that names `key`'s file.
    pub(crate) fn hash(&self, key: &str) -> u64 {
        xxh3_64_with_secret(key.as_bytes(), &self.secret)
    }

    /// The file that holds the entry whose key hashes to `hash`.
    pub(crate) fn object(&self, hash: u64) -> PathBuf {
        let mut path = self.objects.join(format!("{:02x}", hash >> 56));
        path.push(format!("{hash:016x}"));
        path
    }

    /// The folders that hold objects.
    pub(crate) fn object_folders(&self) -> io::Result<Vec<PathBuf>> {
        let mut folders = Vec::new();
        for entry in fs::read_dir(&self.objects)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                folders.push(entry.path());
            }
        }
        Ok(folders)
    }

    /// A fresh name for a file being written.
    pub(crate) fn temp(&self) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Relaxed);
        self.tmp.join(format!("{:016x}-{n}", self.instance))
    }

    /// Removes files other processes left half-written (killed while writing).
    pub(crate) fn sweep_temp(&self) -> io::Result<usize> {
        let own = format!("{:016x}-", self.instance);
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if !entry.file_name().to_string_lossy().starts_with(&own) {
                remove(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Checks that a file can be written and removed here now (after a fault).
    pub(crate) fn probe(&self) -> io::Result<()> {
        self.prepare()?;
        let probe = self.temp();
        let mut file = fs::File::create(&probe)?;
        file.write_all(&[0; 4096])?;
        file.sync_all()?;
        drop(file);
        fs::remove_file(&probe)
    }
}

/// The hash an object's file name gives, if it is one.
pub(crate) fn object_hash(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    if name.len() != 16 {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// Removes a file; one already gone is not an error.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-layout-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_reopened_directory_names_keys_as_before() {
        let dir = temp_dir("reopen");
        let first = Layout::open(&dir).unwrap();
        let again = Layout::open(&dir).unwrap();
        assert_eq!(first.hash("/a"), again.hash("/a"));
        assert_ne!(first.hash("/a"), first.hash("/b"));
        let path = first.object(first.hash("/a"));
        assert_eq!(
            object_hash(path.file_name().unwrap()),
            Some(first.hash("/a"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_directory_hashes_differently() {
        let (one, two) = (temp_dir("one"), temp_dir("two"));
        let (a, b) = (Layout::open(&one).unwrap(), Layout::open(&two).unwrap());
        assert_ne!(
            a.hash("/a"),
            b.hash("/a"),
            "each directory has its own secret"
        );
        fs::remove_dir_all(&one).unwrap();
        fs::remove_dir_all(&two).unwrap();
    }

    #[test]
    fn a_directory_with_other_files_is_refused() {
        let dir = temp_dir("foreign");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("notes.txt"), "mine").unwrap();
        assert!(matches!(Layout::open(&dir), Err(LayoutError::Foreign(_))));
        assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_vanished_directory_is_made_again_with_the_same_secret() {
        let dir = temp_dir("vanish");
        let layout = Layout::open(&dir).unwrap();
        let hash = layout.hash("/a");
        fs::remove_dir_all(&dir).unwrap();
        layout.probe().unwrap();
        assert_eq!(Layout::open(&dir).unwrap().hash("/a"), hash);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_written_files_of_other_processes_are_swept_but_not_our_own() {
        let dir = temp_dir("sweep");
        let layout = Layout::open(&dir).unwrap();
        fs::write(dir.join("tmp/0000000000000001-7"), "killed mid-write").unwrap();
        let own = layout.temp();
        fs::write(&own, "being written").unwrap();
        assert_eq!(layout.sweep_temp().unwrap(), 1);
        assert!(own.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
