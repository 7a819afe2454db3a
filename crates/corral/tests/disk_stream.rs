//! Entries written to the disk tier as they arrive (`Cache::stream_to_disk`), with real
//! files: read while they are written, read back in chunks from their files after a
//! restart, checked before their first use, and gone without a trace when their writer
//! gives up.
#![cfg(feature = "disk")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use corral::codec::{Codec, CodecError};
use corral::disk::{DiskBlob, DiskTier, DiskWriter, FilePayload};
use corral::{Cache, Loaded};

/// A value whose bytes are in memory, or left in their file.
#[derive(Debug, Clone)]
enum Big {
    Inline(Bytes),
    OnDisk(DiskBlob),
}

impl corral::Weigh for Big {
    fn weigh(&self) -> usize {
        match self {
            Big::Inline(bytes) => bytes.len(),
            Big::OnDisk(_) => 64,
        }
    }
}

/// Encodes in-memory bytes as they are; decodes a long payload as a blob of its file.
struct BigCodec;

impl Codec<Big> for BigCodec {
    fn id(&self) -> u8 {
        40
    }

    fn encode(&self, value: &Big) -> Result<Vec<u8>, CodecError> {
        match value {
            Big::Inline(bytes) => Ok(bytes.to_vec()),
            Big::OnDisk(_) => Err(CodecError::new("big", "already on disk")),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<Big, CodecError> {
        Ok(Big::Inline(Bytes::copy_from_slice(bytes)))
    }

    fn decode_file(&self, payload: &FilePayload) -> Option<Result<Big, CodecError>> {
        Some(Ok(Big::OnDisk(payload.blob_from(0))))
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corral-stream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cache(dir: &Path, max_bytes: u64) -> Cache<Big> {
    Cache::builder()
        .max_bytes(1 << 20)
        .disk_tier(
            DiskTier::new(dir, max_bytes)
                .max_entry_bytes(8 << 20)
                .codec(BigCodec),
        )
        .build()
        .expect("the directory opens")
}

/// Starts streaming `key`'s entry, fresh for a minute: `head`, then `len` more bytes.
async fn stream(cache: &Cache<Big>, key: &str, head: Vec<u8>, len: u64) -> Option<DiskWriter> {
    let minute = Duration::from_secs(60);
    let mark = cache.write_mark().expect("a disk tier");
    cache
        .stream_to_disk(key, &[], (minute, minute), mark, head, len)
        .await
}

/// `len` bytes that differ from chunk to chunk.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 4096) as u8).collect()
}

/// Reads a blob to its end, in chunks of at most 100 000 bytes.
async fn read_all(blob: &DiskBlob) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while (out.len() as u64) < blob.len() {
        let chunk = blob.read(out.len() as u64, 100_000).await?;
        assert!(!chunk.is_empty(), "a read before the end returns bytes");
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.file_type().unwrap().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_follow_the_writer_and_a_restart_reads_the_file_in_chunks() {
    let dir = Scratch::new("follow");
    let body = pattern(3 << 20);
    {
        let cache = cache(&dir.0, 64 << 20);
        let mut writer = cache
            .stream_to_disk(
                "big",
                &["big-tag".to_owned()],
                (Duration::from_secs(60), Duration::from_secs(600)),
                cache.write_mark().unwrap(),
                b"head:".to_vec(),
                body.len() as u64,
            )
            .await
            .expect("a disk tier takes the stream");
        let blob = writer.blob();
        assert!(blob.writing());
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let blob = blob.clone();
                tokio::spawn(async move { read_all(&blob).await })
            })
            .collect();
        for chunk in body.chunks(64 << 10) {
            writer.append(Bytes::copy_from_slice(chunk)).await.unwrap();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        assert!(writer.finish().await.unwrap(), "the entry landed");
        for reader in readers {
            assert!(
                reader.await.unwrap().unwrap() == body,
                "every reader read it whole"
            );
        }
        assert!(!blob.writing());
        let disk = cache.stats().disk.unwrap();
        assert_eq!(disk.writes, 1);
        assert!(disk.bytes >= body.len() as u64);
    }
    // A new process: the file is found, checked in chunks, and its bytes left in it.
    let cache = cache(&dir.0, 64 << 20);
    let found = cache
        .get_or_load("big", || async {
            Err::<Big, _>(std::io::Error::other("disk has it"))
        })
        .await
        .unwrap();
    let Big::OnDisk(blob) = found else {
        panic!("a long payload is left in its file")
    };
    let read = read_all(&blob).await.unwrap();
    assert_eq!(&read[..5], b"head:");
    assert!(read[5..] == body[..]);
    assert_eq!(cache.stats().disk.unwrap().corrupt, 0);
    // Its file kept its tag: a purge of the tag reaches it.
    let entry = cache.peek("big").unwrap();
    assert_eq!(entry.tags().collect::<Vec<_>>(), ["big-tag"]);
    drop(entry);
    cache.invalidate_tag("big-tag").await;
    assert!(cache.peek("big").is_none());
    drop(cache);
    let cache = self::cache(&dir.0, 64 << 20);
    let refused = cache
        .get_or_load("big", || async {
            Err::<Big, _>(std::io::Error::other("miss"))
        })
        .await;
    assert!(refused.is_err(), "purged by tag, on disk too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_a_long_file_is_found_before_it_is_served() {
    let body = pattern(2 << 20);
    // A header byte only the checksum catches (the stored time's last), the key, and
    // the middle of the payload.
    for at in [15, 53, 1 << 20] {
        let dir = Scratch::new(&format!("changed-{at}"));
        {
            let cache = cache(&dir.0, 64 << 20);
            let mut writer = stream(&cache, "big", Vec::new(), body.len() as u64)
                .await
                .unwrap();
            writer.append(Bytes::from(body.clone())).await.unwrap();
            assert!(writer.finish().await.unwrap());
        }
        let object = std::fs::read_dir(dir.0.join("objects"))
            .unwrap()
            .flat_map(|folder| std::fs::read_dir(folder.unwrap().path()).unwrap())
            .map(|file| file.unwrap().path())
            .next()
            .expect("one object file");
        let mut bytes = std::fs::read(&object).unwrap();
        bytes[at] ^= 1;
        std::fs::write(&object, bytes).unwrap();
        let cache = cache(&dir.0, 64 << 20);
        let loaded = cache
            .get_or_load("big", || async {
                Ok::<_, std::io::Error>(Big::Inline(Bytes::from_static(b"origin")))
            })
            .await
            .unwrap();
        assert!(
            matches!(loaded, Big::Inline(b) if b == "origin"),
            "byte {at}: a miss, not the changed file"
        );
        // A changed key is another key's file, not a corrupt one.
        let corrupt = cache.stats().disk.unwrap().corrupt;
        assert_eq!(corrupt, u64::from(at != 53), "byte {at}");
        let now = std::fs::metadata(&object).map_or(0, |m| m.len());
        assert!(now < 1 << 20, "byte {at}: replaced by the loaded value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_gives_up_leaves_nothing_and_its_readers_fail() {
    let dir = Scratch::new("gives-up");
    // Streams may take half the bound, room for one 3 MiB entry: an abandoned one must
    // give its room back.
    let cache = cache(&dir.0, 8 << 20);
    let mut writer = stream(&cache, "big", Vec::new(), 3 << 20).await.unwrap();
    let blob = writer.blob();
    writer.append(Bytes::from(pattern(1 << 20))).await.unwrap();
    let reader = tokio::spawn({
        let blob = blob.clone();
        async move { read_all(&blob).await }
    });
    assert!(
        writer.append(Bytes::from(pattern(3 << 20))).await.is_err(),
        "more than promised is refused"
    );
    drop(writer);
    assert!(
        reader.await.unwrap().is_err(),
        "a reader waiting for the rest fails"
    );
    assert!(blob.failed());
    assert_eq!(files_under(&dir.0.join("tmp")), 0, "no file left");
    assert_eq!(files_under(&dir.0.join("objects")), 0);

    let mut again = stream(&cache, "big", Vec::new(), 3 << 20)
        .await
        .expect("the room came back");
    again.append(Bytes::from(pattern(3 << 20))).await.unwrap();
    assert!(again.finish().await.unwrap());

    let short = stream(&cache, "short", Vec::new(), 10).await.unwrap();
    assert!(
        short.finish().await.is_err(),
        "fewer bytes than promised never land"
    );
    assert!(
        stream(&cache, "huge", Vec::new(), 9 << 20).await.is_none(),
        "larger than max_entry_bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_after_the_mark_keeps_a_stream_off_disk() {
    let dir = Scratch::new("marked");
    let cache = cache(&dir.0, 64 << 20);
    // The load began (its mark taken), then the key was invalidated, then the stream
    // started: the invalidation still wins.
    let mark = cache.write_mark().unwrap();
    cache.invalidate("big").await;
    let ten = Duration::from_secs(10);
    let mut writer = cache
        .stream_to_disk("big", &[], (ten, ten), mark, Vec::new(), 1 << 20)
        .await
        .unwrap();
    writer.append(Bytes::from(pattern(1 << 20))).await.unwrap();
    assert!(!writer.finish().await.unwrap(), "not put in place");
    assert_eq!(files_under(&dir.0.join("objects")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_while_streaming_keeps_the_entry_off_disk() {
    let dir = Scratch::new("invalidated");
    let cache = cache(&dir.0, 64 << 20);
    let mut writer = stream(&cache, "big", Vec::new(), 2 << 20).await.unwrap();
    let blob = writer.blob();
    cache
        .insert("big", Loaded::new(Big::OnDisk(blob.clone())).memory_only())
        .await;
    writer.append(Bytes::from(pattern(1 << 20))).await.unwrap();
    cache.invalidate("big").await;
    writer.append(Bytes::from(pattern(1 << 20))).await.unwrap();
    assert!(
        !writer.finish().await.unwrap(),
        "invalidated: not put in place"
    );
    assert_eq!(
        read_all(&blob).await.unwrap().len(),
        2 << 20,
        "its readers still read it whole"
    );
    assert_eq!(files_under(&dir.0.join("objects")), 0);
    assert!(cache.get("big").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_holding_a_file_the_tier_let_go_of_is_told_so() {
    let dir = Scratch::new("released");
    // Room for two 3 MiB entries on disk.
    let cache = cache(&dir.0, 7 << 20);
    let mut blobs = Vec::new();
    for key in ["first", "second", "third"] {
        let mut writer = stream(&cache, key, Vec::new(), 3 << 20).await.unwrap();
        blobs.push(writer.blob());
        writer.append(Bytes::from(pattern(3 << 20))).await.unwrap();
        assert!(writer.finish().await.unwrap());
    }
    // "third" took the room "first" had: a value holding "first"'s file is out of date
    // (and still reads whole meanwhile); the others are not.
    let released: Vec<bool> = blobs.iter().map(DiskBlob::released).collect();
    assert_eq!(released, [true, false, false]);
    assert_eq!(read_all(&blobs[0]).await.unwrap().len(), 3 << 20);
    // A value read back from a file, then the file replaced: out of date too.
    drop(cache);
    let cache = self::cache(&dir.0, 7 << 20);
    let Big::OnDisk(read_back) = cache
        .get_or_load("second", || async {
            Err::<Big, _>(std::io::Error::other("disk has it"))
        })
        .await
        .unwrap()
    else {
        panic!("a long payload is left in its file")
    };
    assert!(!read_back.released());
    let mut writer = stream(&cache, "second", Vec::new(), 3 << 20).await.unwrap();
    let newest = writer.blob();
    writer.append(Bytes::from(pattern(3 << 20))).await.unwrap();
    assert!(writer.finish().await.unwrap());
    assert!(read_back.released(), "replaced by a newer file");
    assert!(!newest.released());
    cache.invalidate("second").await;
    assert!(newest.released(), "and removed by an invalidation");
}
