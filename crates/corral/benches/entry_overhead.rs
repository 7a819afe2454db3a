//! Per-entry memory overhead: heap bytes per entry beyond the key and value bytes, for
//! 1 million small entries, measured exactly with a counting allocator. Compares a
//! bare moka cache (same key/value types, weigher, no expiry) and corral's memory tier.
//!
//! `cargo bench -p corral --bench entry_overhead` prints the figures; under
//! `cargo test` it runs with 10 000 entries as a smoke test.

// A counting allocator is a `GlobalAlloc`, unsafe by nature: allowed here alone.
#![allow(unsafe_code)]
// moka's weigher is handed keys as stored (`&Box<str>`); clippy's advice cannot apply.
#![allow(clippy::borrowed_box)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const VALUE: &[u8] = b"12345678";

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
fn rss() -> isize {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<isize>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes per entry beyond key and value after `insert` ran for `n` entries: as
/// requested from the allocator, and as resident memory grown.
fn per_entry(n: usize, insert: impl FnOnce(usize)) -> (f64, f64) {
    let (heap0, rss0) = (LIVE.load(Ordering::SeqCst), rss());
    insert(n);
    let (heap1, rss1) = (LIVE.load(Ordering::SeqCst), rss());
    let payload = (key(0).len() + VALUE.len()) as f64;
    let per = |grown: isize| grown as f64 / n as f64 - payload;
    (per(heap1 - heap0), per(rss1 - rss0))
}

fn main() {
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };

    let moka_overhead = per_entry(n, |n| {
        let moka: moka::sync::Cache<Box<str>, Bytes> = moka::sync::Cache::builder()
            .max_capacity(1 << 34)
            .weigher(|k: &Box<str>, v: &Bytes| (k.len() + v.len()) as u32)
            .build();
        for i in 0..n {
            moka.insert(key(i).into_boxed_str(), Bytes::copy_from_slice(VALUE));
        }
        moka.run_pending_tasks();
        std::mem::forget(moka);
    });
    let corral_overhead = per_entry(n, |n| {
        let cache: corral::Cache<Bytes> = corral::Cache::builder()
            .max_bytes(1 << 34)
            .fresh_for(Duration::from_secs(3600))
            .build()
            .unwrap();
        for i in 0..n {
            futures_util::FutureExt::now_or_never(
                cache.insert(&key(i), Bytes::copy_from_slice(VALUE)),
            )
            .expect("without a Redis tier an insert completes at once");
        }
        cache.run_pending_tasks();
        assert_eq!(cache.stats().entries, n as u64);
        std::mem::forget(cache);
    });
    println!(
        "entries: {n} (key {} B, value {} B)",
        key(0).len(),
        VALUE.len()
    );
    println!("overhead per entry beyond key and value: heap requested / resident memory");
    println!(
        "  moka (bare):   {:.0} B / {:.0} B",
        moka_overhead.0, moka_overhead.1
    );
    println!(
        "  corral memory: {:.0} B / {:.0} B",
        corral_overhead.0, corral_overhead.1
    );
    println!(
        "  corral's weigher counts {} B per entry here (ENTRY_OVERHEAD + the value's inline size)",
        corral::ENTRY_OVERHEAD + std::mem::size_of::<Bytes>()
    );
}
