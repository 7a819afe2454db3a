//! The disk tier with real files in temporary directories: warm restarts (in process,
//! and after a `SIGKILL` in the middle of writes), checked files, the bound, faults,
//! and invalidations that reach disk and outlast a restart.
#![cfg(feature = "disk")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral::{Cache, Loaded};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-disk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A test's own directory, removed when the test ends, passing or not.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        Scratch(temp_dir(name))
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cache(dir: &Path, max_bytes: u64) -> Cache<String> {
    Cache::builder()
        .max_bytes(1 << 20)
        .fresh_for(Duration::from_secs(600))
        .ttl(Duration::from_secs(3600))
        .disk(dir, max_bytes)
        .build()
        .expect("the directory opens")
}

/// Waits until the walk at start has indexed the directory.
async fn recovered(cache: &Cache<String>) -> corral::DiskStats {
    for _ in 0..500 {
        let disk = cache.stats().disk.expect("a disk tier");
        if disk.recovery_time.is_some() {
            return disk;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the walk at start never ended");
}

async fn refuse() -> Result<String, std::io::Error> {
    Err(std::io::Error::other(
        "the loader must not run: disk has it",
    ))
}

/// The object files under a tier's directory.
fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in std::fs::read_dir(dir.join("objects")).unwrap() {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files
}

fn disk_usage(dir: &Path) -> u64 {
    objects(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len().div_ceil(4096).max(1) * 4096))
        .sum()
}

#[tokio::test]
async fn a_restarted_cache_serves_what_was_on_disk_with_its_remaining_lifetime() {
    let dir = Scratch::new("restart");
    let first = cache(&dir, 1 << 30);
    recovered(&first).await;
    for i in 0..100 {
        let value = Loaded::new(format!("value {i}")).fresh_for(Duration::from_secs(300));
        first.insert(&format!("/k/{i}"), value).await;
    }
    let fresh_until = first.peek("/k/7").unwrap().fresh_until();
    drop(first);

    let second = cache(&dir, 1 << 30);
    let disk = recovered(&second).await;
    assert_eq!(disk.recovered, 100);
    assert!(second.peek("/k/7").is_none(), "memory starts empty");
    for i in 0..100 {
        let value = second.get_or_load(&format!("/k/{i}"), refuse).await;
        assert_eq!(value.unwrap(), format!("value {i}"));
    }
    let again = second.peek("/k/7").expect("copied up into memory");
    let drift = if again.fresh_until() > fresh_until {
        again.fresh_until() - fresh_until
    } else {
        fresh_until - again.fresh_until()
    };
    assert!(
        drift < Duration::from_millis(50),
        "remaining lifetime kept: {drift:?}"
    );
    let stats = second.stats();
    assert_eq!((stats.disk.unwrap().hits, stats.loads_ok), (100, 0));
}

#[tokio::test]
async fn a_second_tier_on_the_same_directory_is_refused() {
    let dir = Scratch::new("in-use");
    let first = cache(&dir, 1 << 20);
    let second = Cache::<String>::builder().disk(&*dir, 1 << 20).build();
    let error = second.unwrap_err().to_string();
    assert!(error.contains("in use"), "{error}");
    drop(first);
}

#[tokio::test]
async fn a_corrupt_file_is_a_miss_counted_and_removed() {
    let dir = Scratch::new("corrupt");
    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    cache.insert("/page", "the right bytes".to_owned()).await;
    let [file] = objects(&dir).try_into().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();

    // Memory still has it; a fresh cache on the directory reads the file.
    drop(cache);
    let cache = self::cache(&dir, 1 << 30);
    recovered(&cache).await;
    let value = cache
        .get_or_load("/page", || async {
            Ok::<_, std::io::Error>("from the origin".to_owned())
        })
        .await;
    assert_eq!(value.unwrap(), "from the origin");
    let disk = cache.stats().disk.unwrap();
    assert_eq!((disk.corrupt, disk.hits), (1, 0));
    let [rewritten] = objects(&dir).try_into().unwrap();
    assert_ne!(
        std::fs::read(rewritten).unwrap(),
        bytes,
        "the corrupt file is gone"
    );
}

#[tokio::test]
async fn a_truncated_file_is_never_served() {
    let dir = Scratch::new("torn");
    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    cache.insert("/page", "x".repeat(10_000)).await;
    drop(cache);
    let [file] = objects(&dir).try_into().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let cache = self::cache(&dir, 1 << 30);
    let disk = recovered(&cache).await;
    assert_eq!(
        (disk.recovered, disk.corrupt),
        (0, 1),
        "the walk removes it"
    );
    assert!(objects(&dir).is_empty());
}

#[tokio::test]
async fn the_bound_holds_under_tenfold_overfill() {
    let dir = Scratch::new("bound");
    let max = 4 << 20;
    let cache = cache(&dir, max);
    recovered(&cache).await;
    for i in 0..1_000 {
        // 40 MiB in all, of mixed sizes.
        let value = "v".repeat(1_000 + (i * 7919) % 80_000);
        cache.insert(&format!("/o/{i}"), value).await;
        assert!(disk_usage(&dir) <= max, "over the bound after {i} writes");
    }
    let disk = cache.stats().disk.unwrap();
    assert!(disk.evictions > 500, "{disk:?}");
    assert!(disk.bytes <= max && disk.bytes > max / 2, "{disk:?}");
    assert_eq!(disk.entries as usize, objects(&dir).len());
}

#[tokio::test]
async fn invalidations_reach_disk_and_outlast_a_restart() {
    let dir = Scratch::new("invalidate");
    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    for key in ["/docs/a", "/docs/b", "/blog/c", "/blog/d", "/x"] {
        cache.insert(key, key.to_owned()).await;
    }
    cache.invalidate("/x").await;
    cache.invalidate_prefix("/docs/").await;
    drop(cache);

    let cache = self::cache(&dir, 1 << 30);
    recovered(&cache).await;
    let reload = |v: &'static str| move || async move { Ok::<_, std::io::Error>(v.to_owned()) };
    assert_eq!(
        cache.get_or_load("/docs/a", reload("new")).await.unwrap(),
        "new"
    );
    assert_eq!(cache.get_or_load("/x", reload("new")).await.unwrap(), "new");
    assert_eq!(
        cache.get_or_load("/blog/c", refuse).await.unwrap(),
        "/blog/c"
    );
    cache.clear().await;
    drop(cache);

    let cache = self::cache(&dir, 1 << 30);
    recovered(&cache).await;
    assert_eq!(
        cache.get_or_load("/blog/d", reload("new")).await.unwrap(),
        "new"
    );
}

#[tokio::test]
async fn a_load_invalidated_while_it_runs_does_not_land_on_disk() {
    let dir = Scratch::new("race");
    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn({
        let cache = cache.clone();
        async move {
            let loader = || async move {
                let _ = started.send(());
                let _ = gate.await;
                Ok::<_, std::io::Error>("old".to_owned())
            };
            cache.get_or_load("/k", loader).await
        }
    });
    running.await.unwrap();
    cache.invalidate("/k").await;
    go.send(()).unwrap();
    assert_eq!(load.await.unwrap().unwrap(), "old");
    assert!(
        objects(&dir).is_empty(),
        "nothing written after the invalidation"
    );
}

#[tokio::test]
async fn a_vanished_directory_fails_no_load_and_the_tier_comes_back() {
    let dir = Scratch::new("vanish");
    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    cache.insert("/before", "kept in memory".to_owned()).await;
    std::fs::remove_dir_all(&dir).unwrap();
    for i in 0..50 {
        let key = format!("/during/{i}");
        let value = cache
            .get_or_load(&key, move || async move {
                Ok::<_, std::io::Error>(format!("{i}"))
            })
            .await;
        assert_eq!(value.unwrap(), format!("{i}"), "no failed load");
    }
    let disk = cache.stats().disk.unwrap();
    assert!(disk.off && disk.faults == 1, "{disk:?}");
    // The probe makes the directory again after its back-off (a second).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..20 {
        let key = format!("/after/{i}");
        let value = cache
            .get_or_load(&key, move || async move {
                Ok::<_, std::io::Error>(format!("{i}"))
            })
            .await;
        assert_eq!(value.unwrap(), format!("{i}"));
    }
    let disk = cache.stats().disk.unwrap();
    assert!(!disk.off, "{disk:?}");
    assert!(!objects(&dir).is_empty(), "written again");
}

/// A small tmpfs, if this machine lets the test mount one (root on Linux).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Self> {
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).ok()?;
        let options = format!("size={size}");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?
            .success();
        if !mounted {
            eprintln!("cannot mount a tmpfs here: the disk-full and read-only cases are not run");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_full_or_read_only_disk_fails_no_load() {
    let Some(tmpfs) = Tmpfs::mount("full", "1m") else {
        return;
    };
    // The tier believes it has 64 MiB: the file system fills first.
    let cache = cache(&tmpfs.0.join("tier"), 64 << 20);
    recovered(&cache).await;
    for i in 0..100 {
        let key = format!("/big/{i}");
        let value = cache
            .get_or_load(&key, move || async move {
                Ok::<_, std::io::Error>("b".repeat(100_000))
            })
            .await;
        assert_eq!(value.unwrap().len(), 100_000, "no failed load");
    }
    let disk = cache.stats().disk.unwrap();
    assert!(disk.faults >= 1 && disk.writes >= 5, "{disk:?}");
    cache.clear().await;

    tmpfs.remount("ro");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..50 {
        let key = format!("/small/{i}");
        let value = cache
            .get_or_load(&key, move || async move {
                Ok::<_, std::io::Error>(format!("{i}"))
            })
            .await;
        assert_eq!(value.unwrap(), format!("{i}"));
    }
    assert!(cache.stats().disk.unwrap().off);
    tmpfs.remount("rw");
    drop(cache);
}

/// The child of the `SIGKILL` test: writes entries until it is killed.
#[tokio::test]
async fn child_writing_until_killed() {
    let Ok(dir) = std::env::var("CORRAL_DISK_CHILD_DIR") else {
        return;
    };
    let cache = cache(Path::new(&dir), 1 << 30);
    for i in 0.. {
        cache
            .insert(&format!("/k/{i}"), format!("{i}:").repeat(500))
            .await;
        if i == 200 {
            println!("200 written");
        }
    }
}

#[tokio::test]
async fn after_a_sigkill_mid_write_every_entry_served_is_whole() {
    let dir = Scratch::new("sigkill");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writing_until_killed", "--nocapture"])
        .env("CORRAL_DISK_CHILD_DIR", &*dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("200 written") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the child ended"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let cache = cache(&dir, 1 << 30);
    let disk = recovered(&cache).await;
    assert!(disk.recovered > 200, "{disk:?}");
    let (mut served, mut missed) = (0, 0);
    for i in 0..disk.recovered + 50 {
        let key = format!("/k/{i}");
        match cache.get_or_load(&key, refuse).await {
            Ok(value) => {
                assert_eq!(value, format!("{i}:").repeat(500), "{key} whole");
                served += 1;
            }
            Err(_) => missed += 1,
        }
    }
    assert!(
        served >= disk.recovered,
        "{served} served, {missed} missed, {disk:?}"
    );
    let tmp_left = std::fs::read_dir(dir.join("tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "half-written files swept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_answered_from_disk_learn_that_no_loader_ran() {
    let dir = Scratch::new("source");
    let first = cache(&dir, 1 << 30);
    recovered(&first).await;
    first.insert("/k", "on disk".to_owned()).await;
    drop(first);

    let cache = cache(&dir, 1 << 30);
    recovered(&cache).await;
    let calls = (0..50).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.load("/k", |_| true, refuse).await })
    });
    let mut sources = Vec::new();
    for call in futures_util::future::join_all(calls).await {
        let (value, source) = call.unwrap().unwrap();
        assert_eq!(value, "on disk");
        sources.push(source);
    }
    assert!(sources.contains(&corral::Source::Tier));
    assert!(
        sources
            .iter()
            .all(|s| matches!(s, corral::Source::Tier | corral::Source::Stored)),
        "{sources:?}"
    );
    assert_eq!(
        cache.stats().disk.unwrap().hits,
        1,
        "one load read the file"
    );
}
