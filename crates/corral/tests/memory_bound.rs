//! The memory tier stays within `max_bytes`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use corral::{Cache, ENTRY_OVERHEAD};

const MAX_BYTES: u64 = 1024 * 1024;

fn bounded() -> Cache<Bytes> {
    Cache::builder()
        .max_bytes(MAX_BYTES)
        .fresh_for(Duration::from_secs(3600))
        .build()
        .unwrap()
}

#[tokio::test]
async fn inserting_ten_times_the_bound_stays_within_it() {
    let cache = bounded();
    let value = Bytes::from(vec![7u8; 10 * 1024]);
    let per_entry = (value.len() + size_of::<Bytes>() + ENTRY_OVERHEAD + "key0000".len()) as u64;
    let count = 10 * MAX_BYTES / per_entry + 1;
    for i in 0..count {
        cache.insert(&format!("key{i:04}"), value.clone()).await;
        let stats = cache.stats();
        assert!(
            stats.weighted_bytes <= MAX_BYTES,
            "after {i} inserts the weighted size is {} > {MAX_BYTES}",
            stats.weighted_bytes
        );
    }
    cache.run_pending_tasks();
    let stats = cache.stats();
    assert!(stats.weighted_bytes <= MAX_BYTES);
    assert!(
        stats.weighted_bytes >= MAX_BYTES / 2,
        "the cache is actually used"
    );
    assert!(stats.evictions >= count - MAX_BYTES / per_entry);
    assert_eq!(stats.entries * per_entry, stats.weighted_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_loads_of_large_values_stay_within_the_bound() {
    let cache = bounded();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let key = format!("t{t}-{i}");
                    cache
                        .get_or_load(&key, || async {
                            Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 40 * 1024]))
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    cache.run_pending_tasks();
    let stats = cache.stats();
    assert!(
        stats.weighted_bytes <= MAX_BYTES,
        "{} > {MAX_BYTES}",
        stats.weighted_bytes
    );
    assert!(stats.evictions > 0);
}

#[tokio::test]
async fn a_value_larger_than_the_whole_bound_is_served_but_not_stored() {
    let cache = bounded();
    cache.insert("small", Bytes::from_static(b"keep me")).await;
    let huge = cache
        .get_or_load("huge", || async {
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 2 * MAX_BYTES as usize]))
        })
        .await
        .unwrap();
    assert_eq!(huge.len(), 2 * MAX_BYTES as usize);
    assert_eq!(cache.get("huge"), None);
    assert_eq!(cache.get("small").as_deref(), Some(&b"keep me"[..]));
}

#[tokio::test]
async fn a_value_too_large_to_store_still_replaces_the_older_one() {
    let cache = bounded();
    cache.insert("k", Bytes::from_static(b"old")).await;
    cache
        .insert("k", Bytes::from(vec![0u8; 2 * MAX_BYTES as usize]))
        .await;
    assert_eq!(cache.get("k"), None, "the old value is not served after it");
}
