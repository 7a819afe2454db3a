//! Purge by tag: the time of the purge call with 10 000, 100 000 and 1 000 000 stored
//! entries of which a tenth carry the tag (it should not grow with them), and what a
//! read costs afterwards: every tagged entry misses from the purge's return on (no
//! sweep to wait for), and the check costs a read of a tagged entry a few
//! nanoseconds.
//!
//! ```sh
//! cargo bench -p corral --bench tag_purge -- --bench
//! ```
//! Without `--bench` (as `cargo test --benches` runs it) only the smallest size runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use corral::{Cache, Loaded};

/// Purges timed per size (each of a tag of its own, carried by a tenth of the entries).
const PURGES: usize = 9;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if full {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000]
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for &entries in sizes {
            measure(entries).await;
        }
    });
}

async fn measure(entries: usize) {
    let cache: Cache<u64> = Cache::builder()
        .max_bytes(4 << 30)
        .fresh_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    // Entry n carries tag `t{n % 10}`, and one of 1000 other tags.
    let filled = Instant::now();
    for n in 0..entries {
        let loaded = Loaded::new(n as u64)
            .tag(format!("t{}", n % 10))
            .tag(format!("other-{}", n % 1000));
        cache.insert(&format!("/item/{n}"), loaded).await;
    }
    let filled = filled.elapsed();
    let keys: Vec<String> = (0..entries).map(|n| format!("/item/{n}")).collect();
    let read_all = |of: usize| {
        let started = Instant::now();
        let mut found = 0usize;
        for key in keys.iter().skip(of).step_by(10) {
            found += usize::from(black_box(cache.get(key)).is_some());
        }
        (started.elapsed(), found)
    };
    let (before, found_before) = read_all(0);
    assert_eq!(found_before, entries / 10);
    let mut calls = Vec::with_capacity(PURGES);
    let mut after = Vec::with_capacity(PURGES);
    for tag in 0..PURGES {
        let started = Instant::now();
        cache.invalidate_tag(&format!("t{tag}")).await;
        calls.push(started.elapsed());
        // Every entry it covered misses at once.
        let (took, found) = read_all(tag);
        assert_eq!(found, 0, "every entry tagged t{tag} misses");
        after.push(took);
    }
    // Reads of untagged-by-the-purge entries (tag t9: never purged, but purges
    // happened since it was stored, so each read checks its tags).
    let (survivors, found) = read_all(9);
    assert_eq!(found, entries / 10);
    calls.sort();
    after.sort();
    let per_read = |d: Duration| d.as_nanos() as f64 / (entries / 10) as f64;
    println!(
        "entries {entries:>9} (filled in {filled:.1?}): purge call median {:?} (min {:?}, max {:?}); \
         reads of the {} tagged entries: before {:.0} ns each, after the purge {:.0} ns each \
         (median; all misses), of never-purged tagged entries {:.0} ns each",
        calls[PURGES / 2],
        calls[0],
        calls[PURGES - 1],
        entries / 10,
        per_read(before),
        per_read(after[PURGES / 2]),
        per_read(survivors),
    );
}
