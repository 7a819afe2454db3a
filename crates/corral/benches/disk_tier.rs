//! The disk tier's figures (BENCHMARKS.md, "Disk tier"): a warm restart over many 1 KiB
//! entries (time to open, time to index everything, hits on a first pass made while
//! the walk runs, resident memory per indexed entry), and loads answered from disk for
//! 100 KiB and 1 MiB values (memory holding none of them).
//!
//! ```sh
//! cargo bench -p corral --features disk --bench disk_tier -- --bench          # 1M entries
//! DISK_BENCH_ENTRIES=100000 cargo bench -p corral --features disk --bench disk_tier -- --bench
//! ```
//! Without `--bench` (as `cargo test --benches` runs it) every part runs small.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use corral::Cache;
use corral::codec::Raw;
use corral::disk::DiskTier;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn open(dir: &Path, disk_bytes: u64) -> Cache<Bytes> {
    Cache::builder()
        .max_bytes(1)
        .fresh_for(Duration::from_secs(3600))
        .disk_tier(DiskTier::new(dir, disk_bytes).codec(Raw))
        .build()
        .expect("the directory opens")
}

async fn until_indexed(cache: &Cache<Bytes>) -> corral::DiskStats {
    loop {
        let disk = cache.stats().disk.expect("a disk tier");
        if disk.recovery_time.is_some() {
            return disk;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn never() -> impl std::future::Future<Output = Result<Bytes, std::io::Error>> {
    std::future::ready(Err(std::io::Error::other("a miss")))
}

async fn restart(dir: &Path, entries: usize) {
    let cache = open(dir, 64 << 30);
    until_indexed(&cache).await;
    let value = Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    for i in 0..entries {
        cache
            .insert(&format!("https://example.com/object/{i}"), value.clone())
            .await;
    }
    let wrote = started.elapsed();
    drop(cache);

    let before = rss_bytes();
    let opening = Instant::now();
    let cache = open(dir, 64 << 30);
    let opened = opening.elapsed();
    let mut hits = 0;
    for i in 0..entries {
        let key = format!("https://example.com/object/{i}");
        if cache.get_or_load(&key, never).await.is_ok() {
            hits += 1;
        }
    }
    let first_pass = opening.elapsed();
    let disk = until_indexed(&cache).await;
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "restart, {entries} x 1 KiB: written in {wrote:.2?}; open {opened:.2?}; first pass {first_pass:.2?} \
         with {hits} hits ({:.2}%); walk indexed {} in {:.2?}; resident memory {:.0} B per entry",
        100.0 * hits as f64 / entries as f64,
        disk.recovered,
        disk.recovery_time.unwrap_or_default(),
        grown as f64 / entries as f64,
    );
}

async fn hits(dir: &Path, size: usize, entries: usize, rounds: usize) {
    let cache = open(dir, 64 << 30);
    until_indexed(&cache).await;
    let value = Bytes::from(vec![b'y'; size]);
    for i in 0..entries {
        cache.insert(&format!("/v/{size}/{i}"), value.clone()).await;
    }
    let started = Instant::now();
    let mut served = 0u64;
    for round in 0..rounds {
        for i in 0..entries {
            let key = format!("/v/{size}/{}", (i * 7 + round) % entries);
            let got = cache.get_or_load(&key, never).await.expect("on disk");
            served += got.len() as u64;
        }
    }
    let took = started.elapsed();
    let n = (entries * rounds) as f64;
    println!(
        "disk hits, {} KiB: {:.0} loads/s, {:.0} MiB/s ({} loads, one task)",
        size / 1024,
        n / took.as_secs_f64(),
        served as f64 / took.as_secs_f64() / f64::from(1 << 20),
        n,
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let entries = match std::env::var("DISK_BENCH_ENTRIES") {
        Ok(n) => n.parse().expect("a number"),
        Err(_) if full => 1_000_000,
        Err(_) => 500,
    };
    let base: PathBuf = std::env::var_os("DISK_BENCH_DIR")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("corral-disk-bench-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        restart(&base.join("restart"), entries).await;
        let (small, large) = if full { (2_000, 400) } else { (20, 4) };
        hits(
            &base.join("100k"),
            100 * 1024,
            small,
            if full { 5 } else { 1 },
        )
        .await;
        hits(&base.join("1m"), 1 << 20, large, if full { 5 } else { 1 }).await;
    });
    let _ = std::fs::remove_dir_all(&base);
}
